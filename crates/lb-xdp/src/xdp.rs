//! The XDP program (`bpf/lbd.bpf.c`, built by `build.rs`): loading it,
//! attaching it to the interface, and its maps — the address set that
//! picks what `lbd` gets, the VIPs and ports of the HTTP and HTTPS
//! listeners whose TCP it leaves to the host's stack, the socket of each
//! queue, and its counters.
//!
//! The program is loaded, given its addresses and every queue's socket,
//! and only then attached: from its first packet on, all that it steers
//! has a socket to go to, so a start never drops the balancer's traffic.
//!
//! With a pin directory, the attachment is a BPF link pinned in bpffs
//! (`PIN_DIR/INTERFACE/link`) and outlives `lbd`: a restart, or a crash,
//! leaves the program in place, and while no socket is bound it drops the
//! traffic of the VIPs and local addresses (`no_socket`), so the host's
//! own stack never answers for them (no RST to a balanced connection, no
//! ping answered by a balancer that is down) and the clients' TCP
//! retransmissions reach the next `lbd`. The next `lbd` swaps its own
//! program into the pinned link in one step (`BPF_LINK_UPDATE`) once its
//! sockets are in place. `lbd detach` removes the pin, which detaches.
//! Without a pin directory, dropping [`XdpProgram`] detaches the program
//! (aya detaches the links a program owns when it is dropped).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, XskMap};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode as AyaMode};
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
/// since this process loaded it. Every packet the program saw on the
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

/// The program's counters: the per-CPU array `lbd_stats`, keyed by
/// `queue * STAT_COUNT + stat`. Each `lbd` loads a program and a map of
/// its own, so they count from its start; what the last `lbd`'s program
/// counted while no `lbd` ran (its `no_socket` drops during a restart) is
/// not published.
struct StatsMap {
    map: PerCpuArray<MapData, u64>,
}

impl StatsMap {
    /// The counter at `key`, summed over CPUs.
    fn sum(&self, key: u32) -> Result<u64, XdpError> {
        Ok(self
            .map
            .get(&key, 0)?
            .iter()
            .fold(0u64, |a, n| a.wrapping_add(*n)))
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
    /// The pin directory or the link's pin could not be made or read.
    #[error("pinning the XDP link at {path}: {error}")]
    Pin {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
}

/// How [`XdpProgram::attach`] attached the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// Attached now, detached when `lbd` exits.
    Owned,
    /// Attached now through a new link, pinned.
    Pinned,
    /// Swapped in for the program of a pinned link an earlier `lbd` left.
    Replaced,
}

/// Where the link of `interface` is pinned under `pin_dir`.
pub fn link_pin(pin_dir: &Path, interface: &str) -> PathBuf {
    pin_dir.join(interface).join("link")
}

/// Remove the pinned link of `interface` under `pin_dir`, which detaches
/// the program an earlier `lbd` left there; false if there was none.
///
/// # Errors
/// The pin exists but cannot be removed.
pub fn detach_pinned(pin_dir: &Path, interface: &str) -> Result<bool, XdpError> {
    let path = link_pin(pin_dir, interface);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            // The directory is ours; it may hold nothing else.
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(XdpError::Pin {
            path,
            error: e.to_string(),
        }),
    }
}

/// The loaded, attached program and its maps.
pub struct XdpProgram {
    addrs: BpfHashMap<MapData, [u8; 16], u8>,
    l7: BpfHashMap<MapData, [u8; 20], u8>,
    installed_l7: Vec<[u8; 20]>,
    xsks: XskMap<MapData>,
    stats: StatsMap,
    installed: Vec<[u8; 16]>,
    /// The pinned link, once attached through one: dropping it only closes
    /// a descriptor, the pin keeps the program attached.
    _pinned: Option<PinnedLink>,
    // Last: dropping it unloads the program, and detaches it unless the
    // link is pinned.
    _ebpf: Ebpf,
}

impl XdpProgram {
    /// Load the program and its maps, not yet attached.
    ///
    /// # Errors
    /// The kernel refuses the program.
    pub fn load() -> Result<XdpProgram, XdpError> {
        let mut ebpf = EbpfLoader::new().load(OBJECT)?;
        program(&mut ebpf)?.load()?;
        let addrs = BpfHashMap::try_from(
            ebpf.take_map("lbd_addrs")
                .ok_or(XdpError::Missing("map lbd_addrs"))?,
        )?;
        let l7 = BpfHashMap::try_from(
            ebpf.take_map("lbd_l7")
                .ok_or(XdpError::Missing("map lbd_l7"))?,
        )?;
        let xsks = XskMap::try_from(
            ebpf.take_map("lbd_xsks")
                .ok_or(XdpError::Missing("map lbd_xsks"))?,
        )?;
        let stats = StatsMap {
            map: PerCpuArray::try_from(
                ebpf.take_map("lbd_stats")
                    .ok_or(XdpError::Missing("map lbd_stats"))?,
            )?,
        };
        Ok(XdpProgram {
            addrs,
            l7,
            installed_l7: Vec::new(),
            xsks,
            stats,
            installed: Vec::new(),
            _pinned: None,
            _ebpf: ebpf,
        })
    }

    /// Attach the program to `interface`: fill its maps first (addresses,
    /// sockets). With `pin_dir`, through a link pinned there, replacing
    /// the program of a link an earlier `lbd` pinned (its mode stays); a
    /// pin whose link no longer works (the interface was made anew) is
    /// removed and a new link made.
    ///
    /// # Errors
    /// The kernel refuses the program, the mode or the interface, or the
    /// pin cannot be made.
    pub fn attach(
        &mut self,
        interface: &str,
        mode: XdpMode,
        pin_dir: Option<&Path>,
    ) -> Result<Attached, XdpError> {
        let flags = match mode {
            XdpMode::Driver => AyaMode::Driver,
            XdpMode::Generic => AyaMode::Skb,
        };
        let Some(pin_dir) = pin_dir else {
            program(&mut self._ebpf)?.attach(interface, flags)?;
            return Ok(Attached::Owned);
        };
        let path = link_pin(pin_dir, interface);
        let pin_error = |e: &dyn std::fmt::Display| XdpError::Pin {
            path: path.clone(),
            error: e.to_string(),
        };
        bpffs::ensure_mounted(pin_dir).map_err(|e| pin_error(&e))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| pin_error(&e))?;
        }
        let program = program(&mut self._ebpf)?;
        if path.exists() {
            // Ours only if its program is the one attached to our
            // interface: a pin left for an interface since renamed, or made
            // anew under the same name, is stale.
            let replaced = PinnedLink::from_pin(&path)
                .map_err(|e| pin_error(&e))
                .and_then(|pinned| {
                    let link = FdLink::from(pinned);
                    let linked = link.info().map_err(|e| pin_error(&e))?.program_id();
                    if attached_program(interface).map_err(|e| pin_error(&e))? != Some(linked) {
                        return Err(pin_error(&"its program is not the interface's"));
                    }
                    let link = XdpLink::try_from(link).map_err(|e| pin_error(&e))?;
                    Ok(program.attach_to_link(link)?)
                });
            match replaced {
                Ok(id) => {
                    let link =
                        FdLink::try_from(program.take_link(id)?).map_err(|e| pin_error(&e))?;
                    // Our descriptor of the link the pin already holds.
                    drop(link);
                    self._pinned = Some(PinnedLink::from_pin(&path).map_err(|e| pin_error(&e))?);
                    return Ok(Attached::Replaced);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "removing a stale pinned XDP link");
                    std::fs::remove_file(&path).map_err(|e| pin_error(&e))?;
                }
            }
        }
        let id = program.attach(interface, flags)?;
        let link = FdLink::try_from(program.take_link(id)?).map_err(|e| pin_error(&e))?;
        self._pinned = Some(link.pin(&path).map_err(|e| pin_error(&e))?);
        Ok(Attached::Pinned)
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

    /// Make the set of HTTP and HTTPS listeners' VIPs and ports exactly
    /// `sockets`: TCP to one of them goes to the host's stack even when
    /// its address is in the address set. New ones are added before old
    /// ones are removed.
    ///
    /// # Errors
    /// The map is full or the kernel refused.
    pub fn set_l7(&mut self, sockets: &[SocketAddr]) -> Result<(), XdpError> {
        let wanted: Vec<[u8; 20]> = sockets.iter().map(|s| l7_key(*s)).collect();
        for k in &wanted {
            self.l7.insert(k, 1, 0)?;
        }
        for k in self.installed_l7.iter().filter(|k| !wanted.contains(k)) {
            self.l7.remove(k)?;
        }
        self.installed_l7 = wanted;
        Ok(())
    }

    /// Run the program once over `frame` (an Ethernet frame, as if it
    /// arrived on queue 0) in the kernel (`BPF_PROG_TEST_RUN`), attached
    /// nowhere, and return its verdict: `XDP_PASS` (2) for the host's
    /// stack; for `lbd`, `XDP_REDIRECT` (4), or `XDP_DROP` (1) while
    /// queue 0 has no socket. The run is counted like a packet.
    ///
    /// # Errors
    /// The kernel refused the run.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<u32, XdpError> {
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        Ok(program(&mut self._ebpf)?.test_run(options)?.return_value)
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
            redirected: self.stats.sum(row)?,
            passed: self.stats.sum(row + 1)?,
            no_socket: self.stats.sum(row + 2)?,
        })
    }
}

/// The id of the XDP program attached to `interface`, if any.
fn attached_program(interface: &str) -> std::io::Result<Option<u32>> {
    let ifindex = crate::netlink::ifindex(interface)?;
    crate::netlink::Rtnl::new()?.xdp_program(ifindex)
}

/// The program in the object.
fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    Ok(ebpf
        .program_mut("lbd_xdp")
        .ok_or(XdpError::Missing("program lbd_xdp"))?
        .try_into()?)
}

/// The map key of an address: IPv6, or IPv4-mapped IPv6.
fn key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The `lbd_l7` key of a VIP and port (`struct l7_key`): the address as
/// [`key`] makes it, the port in network order, two zero bytes.
fn l7_key(socket: SocketAddr) -> [u8; 20] {
    let mut out = [0u8; 20];
    let (addr, port) = out.split_at_mut(16);
    addr.copy_from_slice(&key(socket.ip()));
    if let Some(port) = port.get_mut(..2) {
        port.copy_from_slice(&socket.port().to_be_bytes());
    }
    out
}
