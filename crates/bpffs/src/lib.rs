//! The BPF file system, for the crates that pin BPF objects in it (`lbd`'s
//! XDP link, `ttm-agent`'s maps): systemd mounts it on `/sys/fs/bpf` at
//! boot, a bare host may not have it.

use std::io;
use std::path::Path;

/// Where bpffs is mounted on a usual host.
pub const ROOT: &str = "/sys/fs/bpf";

/// Mount bpffs on [`ROOT`] if `dir` is under it and nothing is mounted
/// there. A directory elsewhere is the caller's to mount (tests mount
/// their own).
///
/// # Errors
/// `/proc/mounts` cannot be read, or the mount is refused.
pub fn ensure_mounted(dir: &Path) -> io::Result<()> {
    if !dir.starts_with(ROOT) {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut f = line.split_whitespace();
        matches!(
            (f.next(), f.next(), f.next()),
            (Some(_), Some(ROOT), Some("bpf"))
        )
    });
    if mounted {
        return Ok(());
    }
    tracing::info!("mounting bpffs on {ROOT}");
    let c = |s: &str| std::ffi::CString::new(s).map_err(io::Error::other);
    let (source, target, fstype) = (c("bpf")?, c(ROOT)?, c("bpf")?);
    // SAFETY: valid NUL-terminated strings that outlive the call, and no
    // data argument.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
