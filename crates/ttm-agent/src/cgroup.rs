//! Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a host
//! with the unified hierarchy only, often `/sys/fs/cgroup/unified` on a
//! hybrid one (v1 controllers beside it). Read from `/proc/mounts`, never
//! assumed.

use std::io;
use std::path::PathBuf;

/// The mount point of the first `cgroup2` file system in `mounts` (the
/// text of `/proc/mounts`), with the kernel's octal escapes (`\040` for a
/// space) undone.
#[must_use]
pub fn cgroup2_root(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_device, path, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape(path)))
    })
}

/// The cgroup v2 root of this host.
///
/// # Errors
/// `/proc/mounts` is unreadable, or no cgroup2 file system is mounted.
pub fn find_root() -> io::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    cgroup2_root(&mounts).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 file system is mounted (see /proc/mounts); mount one with \
             `mount -t cgroup2 none /sys/fs/cgroup/unified`",
        )
    })
}

/// Undo the octal escapes of `/proc/mounts` (`\040` space, `\011` tab,
/// `\012` newline, `\134` backslash).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn hybrid_host() {
        let mounts = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
        assert_eq!(
            cgroup2_root(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unified_host_escapes_and_none() {
        assert_eq!(
            cgroup2_root("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup2_root("none /mnt/my\\040cgroups cgroup2 rw 0 0\n"),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
        assert_eq!(
            cgroup2_root("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"),
            None
        );
        assert_eq!(cgroup2_root(""), None);
        assert_eq!(unescape("a\\134b\\04"), "a\\b\\04");
    }
}
