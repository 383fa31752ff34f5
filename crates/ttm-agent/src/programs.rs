//! Loading the BPF programs (`bpf/ttm_agent.bpf.c`, built by `build.rs`),
//! attaching them to a cgroup, filling the balancer ranges, and pinning the
//! counters and ranges for `ttm-agent status`.
//!
//! The programs are attached through BPF links owned by this process: when
//! it exits, however it exits, the kernel detaches them. [`Agent`]'s drop
//! also removes the pins.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData, PerCpuArray};
use aya::programs::{CgroupAttachMode, Program};
use aya::{Ebpf, EbpfLoader};
use ttm_core::KindSet;

use crate::ranges::Range;
use crate::stats::Stats;

/// The object clang made of `bpf/ttm_agent.bpf.c`, aligned as the ELF
/// parser wants it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ttm_agent.bpf.o"));

/// The programs, by their function names in the C source, and the hook
/// each goes to.
pub const PROGRAMS: [(&str, &str); 4] = [
    (
        "ttm_sockops",
        "sock_ops: read the option from the handshake",
    ),
    (
        "ttm_getsockopt",
        "cgroup/getsockopt: answer getsockopt(SOL_IP, 1345)",
    ),
    (
        "ttm_getpeername4",
        "cgroup/getpeername4: the client as an IPv4 socket's peer",
    ),
    (
        "ttm_getpeername6",
        "cgroup/getpeername6: the client as an IPv6 socket's peer",
    ),
];

/// The pin of the counters, in the pin directory.
const STATS_PIN: &str = "stats";
/// The pin of the ranges, in the pin directory.
const RANGES_PIN: &str = "lb_ranges";
/// Why the agent could not start, or `status` could not read it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// aya could not load the object (or the kernel refused a map).
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The kernel refused a program (the verifier's log follows) or its
    /// attachment.
    #[error("BPF program {name}: {}", chain(.error))]
    Program {
        /// The program.
        name: &'static str,
        /// What the kernel said.
        error: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("BPF map {name}: {error}")]
    Map {
        /// The map.
        name: &'static str,
        /// What failed.
        error: aya::maps::MapError,
    },
    /// The cgroup could not be opened.
    #[error("cgroup {path}: {error}")]
    Cgroup {
        /// Its path.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// Pinning (or reading pins) failed.
    #[error("pins in {path}: {error}")]
    Pin {
        /// The pin directory.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The object lacks something the agent expects (a build mismatch).
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
}

/// An error and its causes, `: `-separated (aya's errors keep the
/// kernel's errno in their source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// What `ttm-agent run` is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cgroup whose processes' sockets get the peer (and its
    /// descendants).
    pub cgroup: PathBuf,
    /// The balancer's local-address ranges.
    pub ranges: Vec<Range>,
    /// The option kinds believed.
    pub kinds: KindSet,
    /// Where the counters and ranges are pinned.
    pub pin_dir: PathBuf,
}

/// The 256-bit bitmap of `kinds` that the programs read (`ttm_kinds`).
#[must_use]
pub fn kind_bitmap(kinds: &KindSet) -> [u8; 32] {
    let mut bits = [0u8; 32];
    for k in kinds.iter() {
        if let Some(byte) = bits.get_mut(usize::from(k >> 3)) {
            *byte |= 1 << (k & 7);
        }
    }
    bits
}

/// Load the object and every program into the kernel (the verifier runs),
/// attaching nothing. `ttm-agent check` calls this on its own.
///
/// # Errors
/// The kernel refused a map or a program.
pub fn load(kinds: &KindSet) -> Result<Ebpf, AgentError> {
    let bitmap = kind_bitmap(kinds);
    let mut ebpf = EbpfLoader::new()
        .override_global("ttm_kinds", &bitmap, true)
        .load(OBJECT)?;
    for (name, _) in PROGRAMS {
        let program = ebpf
            .program_mut(name)
            .ok_or(AgentError::Missing("program"))?;
        let loaded = match program {
            Program::SockOps(p) => p.load(),
            Program::CgroupSockopt(p) => p.load(),
            Program::CgroupSockAddr(p) => p.load(),
            _ => return Err(AgentError::Missing("program of the expected type")),
        };
        loaded.map_err(|error| AgentError::Program { name, error })?;
    }
    Ok(ebpf)
}

/// The running agent: programs attached, maps pinned.
pub struct Agent {
    // Dropping it detaches the programs (their links close).
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

impl Agent {
    /// Load, fill the ranges, attach to the cgroup, pin.
    ///
    /// The ranges are in the map before any program is attached, so no
    /// connection is ever judged against an empty set.
    ///
    /// # Errors
    /// Anything the kernel refused; nothing stays attached or pinned.
    pub fn start(options: &Options) -> Result<Agent, AgentError> {
        let mut ebpf = load(&options.kinds)?;
        {
            let map = ebpf
                .map_mut("ttm_lb_ranges")
                .ok_or(AgentError::Missing("map ttm_lb_ranges"))?;
            let mut trie: LpmTrie<&mut MapData, [u8; 16], u8> =
                LpmTrie::try_from(map).map_err(|error| AgentError::Map {
                    name: "ttm_lb_ranges",
                    error,
                })?;
            for r in &options.ranges {
                let (len, addr) = r.key();
                trie.insert(&Key::new(len, addr), 1, 0)
                    .map_err(|error| AgentError::Map {
                        name: "ttm_lb_ranges",
                        error,
                    })?;
            }
        }
        let cgroup = File::open(&options.cgroup).map_err(|error| AgentError::Cgroup {
            path: options.cgroup.clone(),
            error,
        })?;
        for (name, _) in PROGRAMS {
            let program = ebpf
                .program_mut(name)
                .ok_or(AgentError::Missing("program"))?;
            // Through a BPF link (Linux 5.7 and later), which composes
            // with other programs on the cgroup whatever the mode; the
            // kernel refuses the multi flag on link creation.
            let mode = CgroupAttachMode::Single;
            let attached = match program {
                Program::SockOps(p) => p.attach(&cgroup, mode).map(drop),
                Program::CgroupSockopt(p) => p.attach(&cgroup, mode).map(drop),
                Program::CgroupSockAddr(p) => p.attach(&cgroup, mode).map(drop),
                _ => return Err(AgentError::Missing("program of the expected type")),
            };
            attached.map_err(|error| AgentError::Program { name, error })?;
        }
        let agent = Agent {
            ebpf,
            pin_dir: options.pin_dir.clone(),
        };
        agent.pin()?;
        Ok(agent)
    }

    fn pin(&self) -> Result<(), AgentError> {
        let dir = &self.pin_dir;
        let pin_error = |error: String| AgentError::Pin {
            path: dir.clone(),
            error,
        };
        bpffs::ensure_mounted(dir).map_err(|e| pin_error(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| pin_error(e.to_string()))?;
        for (map, file) in [("ttm_stats", STATS_PIN), ("ttm_lb_ranges", RANGES_PIN)] {
            let path = dir.join(file);
            // A pin left by an agent that was killed: ours replaces it.
            if path.exists() {
                tracing::warn!(path = %path.display(), "replacing a stale pin");
                std::fs::remove_file(&path).map_err(|e| pin_error(e.to_string()))?;
            }
            self.ebpf
                .map(map)
                .ok_or(AgentError::Missing("map to pin"))?
                .pin(&path)
                .map_err(|e| pin_error(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// The counters now.
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn stats(&self) -> Result<Stats, AgentError> {
        let map = self
            .ebpf
            .map("ttm_stats")
            .ok_or(AgentError::Missing("map ttm_stats"))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|error| AgentError::Map {
                name: "ttm_stats",
                error,
            })?;
        sum(&array)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        for file in [STATS_PIN, RANGES_PIN] {
            let _ = std::fs::remove_file(self.pin_dir.join(file));
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}

fn sum<T: std::borrow::Borrow<MapData>>(array: &PerCpuArray<T, u64>) -> Result<Stats, AgentError> {
    let mut stats = Stats::default();
    for (i, slot) in stats.0.iter_mut().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let values = array.get(&index, 0).map_err(|error| AgentError::Map {
            name: "ttm_stats",
            error,
        })?;
        *slot = values.iter().copied().sum();
    }
    Ok(stats)
}

/// What a running agent pinned in `pin_dir`: its counters and ranges.
///
/// # Errors
/// No agent pinned there (or not readable).
pub fn read_pinned(pin_dir: &Path) -> Result<(Stats, Vec<Range>), AgentError> {
    let open = |file: &str| -> Result<Map, AgentError> {
        let path = pin_dir.join(file);
        let data = MapData::from_pin(&path).map_err(|e| AgentError::Pin {
            path: pin_dir.to_owned(),
            error: format!(
                "{}: {e} (is ttm-agent running with --pin-dir {}?)",
                path.display(),
                pin_dir.display()
            ),
        })?;
        Map::from_map_data(data).map_err(|error| AgentError::Map {
            name: "pinned",
            error,
        })
    };
    let stats_map = open(STATS_PIN)?;
    let array: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(&stats_map).map_err(|error| AgentError::Map {
            name: "ttm_stats",
            error,
        })?;
    let stats = sum(&array)?;
    let ranges_map = open(RANGES_PIN)?;
    let trie: LpmTrie<&MapData, [u8; 16], u8> =
        LpmTrie::try_from(&ranges_map).map_err(|error| AgentError::Map {
            name: "ttm_lb_ranges",
            error,
        })?;
    let mut ranges = Vec::new();
    for key in trie.keys() {
        let key = key.map_err(|error| AgentError::Map {
            name: "ttm_lb_ranges",
            error,
        })?;
        ranges.push(Range::from_key(key.prefix_len(), key.data()));
    }
    Ok((stats, ranges))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn kind_bitmaps() {
        let bits = kind_bitmap(&KindSet::DEFAULT);
        assert_eq!(bits[31], 0b0100_0000);
        assert_eq!(bits.iter().filter(|b| **b != 0).count(), 1);
        let Ok(set) = KindSet::new(&[253, 254, 200]) else {
            panic!("a valid set")
        };
        let bits = kind_bitmap(&set);
        assert_eq!(bits[31], 0b0110_0000);
        assert_eq!(bits[25], 0b0000_0001);
    }
}
