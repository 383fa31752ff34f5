//! `ttm-agent check`: whether this host can run the agent, and if not,
//! why. It asks the kernel itself where it can: the object and every
//! program are loaded (so the verifier runs) without attaching anything.

use std::fmt;

use ttm_core::KindSet;

use crate::{cgroup, programs};

/// The oldest kernel with everything the programs use: the TCP header in
/// sock_ops header-option and established callbacks (5.10), getpeername
/// hooks (5.8), socket storage from these program types.
pub const MIN_KERNEL: (u32, u32) = (5, 10);

/// One thing checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked.
    pub what: &'static str,
    /// Whether it is fine.
    pub ok: bool,
    /// What was found, or why it is not fine.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {}: {}", self.what, self.detail)
    }
}

/// `(major, minor)` of a kernel release string such as
/// `6.1.0-13-amd64` or `5.10.0`.
#[must_use]
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// This kernel's release (`uname -r`).
fn release() -> Option<String> {
    // SAFETY: `uname` fills the zeroed struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname, for the duration of the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates `release` within its array.
    let c = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    Some(c.to_string_lossy().into_owned())
}

/// Every check, in order.
#[must_use]
pub fn run() -> Vec<Finding> {
    let mut findings = Vec::new();
    let release = release().unwrap_or_default();
    findings.push(match kernel_version(&release) {
        Some(v) if v >= MIN_KERNEL => Finding {
            what: "kernel",
            ok: true,
            detail: release.clone(),
        },
        Some(_) => Finding {
            what: "kernel",
            ok: false,
            detail: format!(
                "{release} is older than {}.{}, which the programs need",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        },
        None => Finding {
            what: "kernel",
            ok: false,
            detail: format!("cannot read the kernel's version from {release:?}"),
        },
    });
    findings.push(match cgroup::find_root() {
        Ok(root) => Finding {
            what: "cgroup v2",
            ok: true,
            detail: format!("mounted at {}", root.display()),
        },
        Err(e) => Finding {
            what: "cgroup v2",
            ok: false,
            detail: e.to_string(),
        },
    });
    findings.push(match programs::load(&KindSet::DEFAULT) {
        Ok(_loaded) => Finding {
            what: "BPF programs",
            ok: true,
            detail: format!(
                "the kernel loads all {}: {}",
                programs::PROGRAMS.len(),
                programs::PROGRAMS
                    .iter()
                    .map(|(_, hook)| *hook)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        },
        Err(e) => Finding {
            what: "BPF programs",
            ok: false,
            detail: format!("{e} (as root? CAP_BPF and CAP_NET_ADMIN are needed)"),
        },
    });
    findings
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(kernel_version("5.10.0-28-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("4.19.0"), Some((4, 19)));
        assert_eq!(kernel_version("3.10.0-957.1.3.el7.x86_64"), Some((3, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("4.19.0").is_some_and(|v| v < MIN_KERNEL));
        assert!(kernel_version("5.10.0").is_some_and(|v| v >= MIN_KERNEL));
        assert!(kernel_version("6.1.0").is_some_and(|v| v >= MIN_KERNEL));
    }
}
