//! One AF_XDP socket and its UMEM: the memory frames live in, and the four
//! rings (fill, completion, RX, TX) that pass frames between `lbd` and the
//! kernel. Built on xdpilone; this module owns the memory and the frame
//! bookkeeping, and holds the crate's only `unsafe` on packet memory.
//!
//! Every chunk of the UMEM is, at any time, in exactly one place: free
//! (on the socket's free list), in the kernel (fill or TX ring), or held by `lbd`
//! (a received frame being processed, or waiting for its next hop's MAC
//! address). Chunks are [`FRAME_SIZE`] bytes, aligned, so a descriptor's
//! chunk is its address rounded down.

use std::io;
use std::num::NonZeroU32;
use std::ptr::NonNull;

use xdpilone::xdp::{XdpDesc, XdpStatisticsV2};
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// Bytes per UMEM chunk: one page. A received frame starts after the
/// kernel's 256-byte XDP headroom, which leaves room in front for the
/// engine's in-place growth (the TTM option) and at least 1.5 KiB behind.
pub const FRAME_SIZE: u32 = 4096;
/// Chunks per socket: 16 MiB of packet memory.
pub const FRAMES: u32 = 4096;
/// Entries of the fill and completion rings.
const FQ_SIZE: u32 = 2048;
/// Entries of the RX and TX rings.
const RING_SIZE: u32 = 2048;

/// A frame `lbd` holds: the chunk, and where the packet lies in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The chunk's offset in the UMEM.
    pub chunk: u64,
    /// The packet's first byte, from the chunk's start.
    pub start: usize,
    /// One past the packet's last byte, from the chunk's start.
    pub end: usize,
}

/// Anonymous, page-aligned memory for a UMEM, unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> io::Result<Area> {
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Area { ptr, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what mmap returned, and the
        // UMEM that the kernel reads from is dropped before the area (field
        // order in `Xsk`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Ring statistics kept by `lbd` itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct XskCounters {
    /// `sendto` calls made because the TX ring asked for a wakeup.
    pub tx_wakeups: u64,
    /// `poll` calls made because the fill ring asked for a wakeup.
    pub rx_wakeups: u64,
    /// Times the fill ring could not be topped up because every chunk was
    /// in use.
    pub fill_starved: u64,
    /// Frames dropped because the TX ring was full.
    pub tx_ring_full: u64,
}

/// An AF_XDP socket bound to one queue of an interface, with its own UMEM.
pub struct Xsk {
    // Field order is drop order: rings and sockets before the UMEM, the
    // UMEM before its memory.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    user: User,
    _socket: Socket,
    _umem: Umem,
    area: Area,
    free: Vec<u64>,
    /// Frames the TX ring holds, not yet completed.
    in_flight: u32,
    counters: XskCounters,
}

impl Xsk {
    /// Create the UMEM and the socket, bind it to `queue` of the interface
    /// `ifindex`, and fill the fill ring.
    ///
    /// # Errors
    /// The kernel refused a step (no AF_XDP, no such queue, no memory).
    pub fn bind(ifindex: u32, queue: u32) -> io::Result<Xsk> {
        let area = Area::new((FRAME_SIZE * FRAMES) as usize)?;
        let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
        let config = UmemConfig {
            fill_size: FQ_SIZE,
            complete_size: FQ_SIZE,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `slice` is a page-aligned mapping that lives as long as
        // the UMEM (it is dropped after it) and that nothing else in this
        // process reads or writes except through this `Xsk`.
        let umem = unsafe { Umem::new(config, slice) }.map_err(errno)?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex).map_err(errno)?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem).map_err(errno)?;
        let device = umem.fq_cq(&socket).map_err(errno)?;
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(RING_SIZE),
                    tx_size: NonZeroU32::new(RING_SIZE),
                    bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(errno)?;
        let rx = user.map_rx().map_err(errno)?;
        let tx = user.map_tx().map_err(errno)?;
        umem.bind(&user).map_err(errno)?;
        let free = (0..FRAMES)
            .rev()
            .map(|i| u64::from(i * FRAME_SIZE))
            .collect();
        let mut xsk = Xsk {
            rx,
            tx,
            device,
            user,
            _socket: socket,
            _umem: umem,
            area,
            free,
            in_flight: 0,
            counters: XskCounters::default(),
        };
        xsk.refill();
        Ok(xsk)
    }

    /// The socket, for the XSKMAP.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor is open for as long as `self.user` is,
        // and the borrow cannot outlive `self`.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.user.as_raw_fd()) }
    }

    /// `lbd`'s own ring counters.
    pub fn counters(&self) -> XskCounters {
        self.counters
    }

    /// The kernel's counters for this socket.
    pub fn kernel_stats(&self) -> Option<XdpStatisticsV2> {
        self.user.statistics_v2().ok()
    }

    /// Chunks neither in the kernel nor held: free for a new frame.
    pub fn free_chunks(&self) -> usize {
        self.free.len()
    }

    /// Take back what the kernel has sent, and top the fill ring up.
    pub fn recycle(&mut self) {
        {
            let mut done = self.device.complete(FQ_SIZE);
            while let Some(addr) = done.read() {
                self.free.push(addr & !u64::from(FRAME_SIZE - 1));
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            done.release();
        }
        self.refill();
    }

    fn refill(&mut self) {
        // Keep a reserve for RSTs and replies; the rest goes to the kernel.
        let reserve = 64;
        let spare = self.free.len().saturating_sub(reserve);
        if spare == 0 {
            self.counters.fill_starved += 1;
            return;
        }
        let n = u32::try_from(spare).unwrap_or(u32::MAX).min(FQ_SIZE);
        let mut fill = self.device.fill(n);
        let at = self.free.len() - n as usize;
        let inserted = fill.insert(self.free[at..].iter().copied()) as usize;
        fill.commit();
        self.free.drain(at..at + inserted);
    }

    /// Take up to `max` received frames into `out`.
    pub fn receive(&mut self, max: u32, out: &mut Vec<Held>) {
        let mut rx = self.rx.receive(max);
        while let Some(desc) = rx.read() {
            let chunk = desc.addr & !u64::from(FRAME_SIZE - 1);
            let start = (desc.addr - chunk) as usize;
            let end = start + desc.len as usize;
            if chunk + u64::from(FRAME_SIZE) > self.area.len as u64 || end > FRAME_SIZE as usize {
                continue; // cannot happen with a sane kernel; never touch it
            }
            out.push(Held { chunk, start, end });
        }
        rx.release();
    }

    /// Whether the kernel wants a `poll` to go on filling the RX ring.
    pub fn rx_needs_wakeup(&self) -> bool {
        self.device.needs_wakeup()
    }

    /// A free chunk, for a frame `lbd` makes itself (an RST).
    pub fn alloc(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Give a held chunk back.
    pub fn release(&mut self, chunk: u64) {
        self.free.push(chunk);
    }

    /// The bytes of each chunk in `frames`, all at once, mutable.
    ///
    /// Returns `None` if two frames name the same chunk or one lies outside
    /// the UMEM (either would be a bookkeeping bug).
    pub fn chunks_mut<'a>(&'a mut self, frames: &[Held]) -> Option<Vec<&'a mut [u8]>> {
        let mut seen: Vec<u64> = frames.iter().map(|h| h.chunk).collect();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1])
            || seen
                .last()
                .is_some_and(|&c| c + u64::from(FRAME_SIZE) > self.area.len as u64)
        {
            return None;
        }
        Some(
            frames
                .iter()
                .map(|h| {
                    // SAFETY: the chunk lies inside the mapping (checked
                    // above), the chunks are pairwise distinct (checked
                    // above), and each is held by `lbd`, so the kernel does
                    // not write it; the slices borrow `self` mutably, so no
                    // other slice of the area exists meanwhile.
                    unsafe {
                        std::slice::from_raw_parts_mut(
                            self.area.ptr.as_ptr().add(h.chunk as usize),
                            FRAME_SIZE as usize,
                        )
                    }
                })
                .collect(),
        )
    }

    /// One chunk's bytes, mutable.
    pub fn chunk_mut(&mut self, chunk: u64) -> Option<&mut [u8]> {
        let held = [Held {
            chunk,
            start: 0,
            end: 0,
        }];
        self.chunks_mut(&held)?.pop()
    }

    /// Queue frames for sending; the chunks go to the kernel. Frames that
    /// do not fit in the TX ring are released and counted; returns how
    /// many were queued.
    pub fn transmit(&mut self, frames: &[Held]) -> u32 {
        if frames.is_empty() {
            return 0;
        }
        let n = u32::try_from(frames.len()).unwrap_or(u32::MAX);
        let sent = {
            let mut tx = self.tx.transmit(n);
            let sent = tx.insert(frames.iter().map(|h| XdpDesc {
                addr: h.chunk + h.start as u64,
                len: (h.end - h.start) as u32,
                options: 0,
            }));
            tx.commit();
            sent
        };
        self.in_flight += sent;
        for h in frames.iter().skip(sent as usize) {
            self.counters.tx_ring_full += 1;
            self.free.push(h.chunk);
        }
        if sent > 0 && self.tx.needs_wakeup() {
            self.tx.wake();
            self.counters.tx_wakeups += 1;
        }
        sent
    }

    /// Frames handed to the kernel for sending and not yet completed.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Sleep until a frame arrives or `timeout_ms` passes; also wakes the
    /// kernel's RX side if the fill ring asked for it.
    pub fn wait(&mut self, timeout_ms: i32) {
        if self.device.needs_wakeup() {
            self.counters.rx_wakeups += 1;
        }
        let mut pfd = libc::pollfd {
            fd: self.user.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        unsafe {
            libc::poll(&mut pfd, 1, timeout_ms);
        }
    }

    /// Whether received frames are waiting.
    pub fn rx_ready(&mut self) -> bool {
        self.rx.available() > 0
    }
}

fn errno(e: xdpilone::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw())
}
