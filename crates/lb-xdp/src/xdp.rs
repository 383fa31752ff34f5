//! The XDP program (`bpf/lbd.bpf.c`, built by `build.rs`): loading it,
//! attaching it to the interface, and its maps — the address set that
//! picks what `lbd` gets, the socket of each queue, and its counters.
//!
//! Dropping [`XdpProgram`] detaches the program (aya detaches the links a
//! program owns when it is dropped).

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode as AyaMode};
use aya::{Ebpf, EbpfLoader};

use crate::config::XdpMode;

/// The object file clang made of `bpf/lbd.bpf.c`, aligned as the ELF
/// parser wants it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lbd.bpf.o"));

/// Receive queues the program counts one by one (`MAX_QUEUES` in
/// `bpf/lbd.bpf.c`); the queues from this one on are counted together.
pub const STATS_QUEUES: u32 = 64;
/// Counters per queue (`STAT_COUNT` in `bpf/lbd.bpf.c`).
const STAT_COUNT: u32 = 3;

/// Counters of the XDP program for one receive queue, summed over CPUs,
/// since this process attached it. Every packet the program saw on the
/// queue is in exactly one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Packets handed to the queue's AF_XDP socket (which the kernel may
    /// still drop: see its `XDP_STATISTICS`).
    pub redirected: u64,
    /// Packets passed to the kernel.
    pub passed: u64,
    /// Packets for the balancer that arrived on a queue without a socket,
    /// dropped.
    pub no_socket: u64,
}

/// The program's counters (the per-CPU array `lbd_stats`, keyed by
/// `queue * STAT_COUNT + stat`), and what they held when this process
/// attached: a program kept attached across restarts (and its map) goes
/// on counting, and the figures are this process's.
struct StatsMap {
    map: PerCpuArray<MapData, u64>,
    base: Vec<u64>,
}

impl StatsMap {
    fn new(map: PerCpuArray<MapData, u64>) -> Result<StatsMap, XdpError> {
        let mut stats = StatsMap {
            map,
            base: Vec::new(),
        };
        stats.base = (0..(STATS_QUEUES + 1) * STAT_COUNT)
            .map(|key| stats.sum(key))
            .collect::<Result<_, _>>()?;
        Ok(stats)
    }

    /// The counter at `key`, summed over CPUs, as the map holds it.
    fn sum(&self, key: u32) -> Result<u64, XdpError> {
        Ok(self
            .map
            .get(&key, 0)?
            .iter()
            .fold(0u64, |a, n| a.wrapping_add(*n)))
    }

    /// The counter at `key` since the baseline.
    fn since(&self, key: u32) -> Result<u64, XdpError> {
        let base = usize::try_from(key)
            .ok()
            .and_then(|i| self.base.get(i))
            .copied()
            .unwrap_or(0);
        Ok(self.sum(key)?.wrapping_sub(base))
    }
}

/// Why the program could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// aya failed to load the object.
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The kernel refused the program or its attachment.
    #[error("XDP program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    /// A map operation failed.
    #[error("XDP map: {0}")]
    Map(#[from] aya::maps::MapError),
    /// The object lacks something `lbd` expects (a build mismatch).
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
}

/// The loaded, attached program and its maps.
pub struct XdpProgram {
    addrs: BpfHashMap<MapData, [u8; 16], u8>,
    xsks: XskMap<MapData>,
    stats: StatsMap,
    installed: Vec<[u8; 16]>,
    // Last: dropping it detaches and unloads the program.
    _ebpf: Ebpf,
}

impl XdpProgram {
    /// Load the program and attach it to `interface`.
    ///
    /// # Errors
    /// The kernel refuses the program, the mode or the interface.
    pub fn attach(interface: &str, mode: XdpMode) -> Result<XdpProgram, XdpError> {
        let mut ebpf = EbpfLoader::new().load(OBJECT)?;
        let program: &mut Xdp = ebpf
            .program_mut("lbd_xdp")
            .ok_or(XdpError::Missing("program lbd_xdp"))?
            .try_into()?;
        program.load()?;
        let flags = match mode {
            XdpMode::Driver => AyaMode::Driver,
            XdpMode::Generic => AyaMode::Skb,
        };
        program.attach(interface, flags)?;
        let addrs = BpfHashMap::try_from(
            ebpf.take_map("lbd_addrs")
                .ok_or(XdpError::Missing("map lbd_addrs"))?,
        )?;
        let xsks = XskMap::try_from(
            ebpf.take_map("lbd_xsks")
                .ok_or(XdpError::Missing("map lbd_xsks"))?,
        )?;
        let stats = StatsMap::new(PerCpuArray::try_from(
            ebpf.take_map("lbd_stats")
                .ok_or(XdpError::Missing("map lbd_stats"))?,
        )?)?;
        Ok(XdpProgram {
            addrs,
            xsks,
            stats,
            installed: Vec::new(),
            _ebpf: ebpf,
        })
    }

    /// Make the address set exactly `addresses`: new ones are added before
    /// old ones are removed, so that an address in both sets never misses
    /// a packet.
    ///
    /// # Errors
    /// The map is full or the kernel refused.
    pub fn set_addresses(&mut self, addresses: &[IpAddr]) -> Result<(), XdpError> {
        let wanted: Vec<[u8; 16]> = addresses.iter().map(|a| key(*a)).collect();
        for k in &wanted {
            self.addrs.insert(k, 1, 0)?;
        }
        for k in self.installed.iter().filter(|k| !wanted.contains(k)) {
            self.addrs.remove(k)?;
        }
        self.installed = wanted;
        Ok(())
    }

    /// Steer `queue`'s packets to the AF_XDP socket `socket`.
    ///
    /// # Errors
    /// The queue is beyond the map or the kernel refused the socket.
    pub fn set_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), XdpError> {
        self.xsks.set(queue, socket.as_raw_fd(), 0)?;
        Ok(())
    }

    /// The program's counters for receive queue `queue`, summed over
    /// CPUs, since this process attached it. Queues from
    /// [`STATS_QUEUES`] on share one set of counters.
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn stats(&self, queue: u32) -> Result<XdpStats, XdpError> {
        let row = queue.min(STATS_QUEUES) * STAT_COUNT;
        Ok(XdpStats {
            redirected: self.stats.since(row)?,
            passed: self.stats.since(row + 1)?,
            no_socket: self.stats.since(row + 2)?,
        })
    }
}

/// The map key of an address: IPv6, or IPv4-mapped IPv6.
fn key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}
