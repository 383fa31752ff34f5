//! One AF_XDP socket and its UMEM: the memory frames live in, and the four
//! rings (fill, completion, RX, TX) that pass frames between `lbd` and the
//! kernel. Built on xdpilone; this module owns the memory and the frame
//! bookkeeping, and holds the crate's only `unsafe` on packet memory.
//!
//! Every chunk of the UMEM is, at any time, in exactly one place: free
//! (on the socket's free list), in the kernel (fill, RX or TX ring), or
//! held by `lbd` (a received frame being processed, a frame of its own, or
//! one waiting for its next hop's MAC address). Chunks are [`FRAME_SIZE`]
//! bytes, aligned, so a descriptor's chunk is its address rounded down.
//! `Book` records each chunk's place and checks every move, so that the
//! bytes of a chunk are handed out only while `lbd` holds it, whatever a
//! caller (or a kernel) does wrong: a wrong move is refused and counted.
//!
//! Frames that find the TX ring full wait in a bounded backlog, first in
//! first out, and go out first as the kernel frees room; only a frame that
//! finds the backlog full too is dropped. The socket also keeps the
//! queue's [`Ledger`]: a held frame leaves `lbd` only through
//! [`Xsk::transmit`] or [`Xsk::drop_frame`], each of which counts it.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroU32;
use std::ptr::NonNull;

use xdpilone::xdp::{XdpDesc, XdpStatisticsV2};
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use crate::ledger::{Dropped, Ledger, Loss, Origin};

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
/// Chunks kept off the fill ring, for the frames `lbd` makes itself (at
/// most this many a pass of the loop, see `datapath`).
pub const RESERVE: usize = 64;
/// `sendto` calls at most per [`Xsk::kick`]: with the kernel's copy-mode
/// budget of 32 frames a call, enough for a full batch and its replies.
const KICKS: u32 = 8;
/// Frames that may wait for room in the TX ring, at most: the backlog's
/// bound. The loop takes no more frames in a pass than the backlog has
/// room for (see `datapath`), so that a TX ring that stays full makes the
/// kernel hold (and, past its rings, count) what arrives, rather than
/// `lbd` drop what it has.
pub const BACKLOG: usize = 512;

/// A frame `lbd` holds: the chunk, and where the packet lies in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The chunk's offset in the UMEM.
    pub chunk: u64,
    /// The packet's first byte, from the chunk's start.
    pub start: usize,
    /// One past the packet's last byte, from the chunk's start.
    pub end: usize,
    /// Received, or made by `lbd`.
    pub origin: Origin,
}

/// Where a chunk is: the bookkeeping that makes handing out its bytes
/// sound, checked on every transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// On the free list.
    Free,
    /// In the fill ring, the RX ring or the TX ring: the kernel's.
    Kernel,
    /// Held by `lbd` (received and being processed, waiting for a next
    /// hop, or allocated for a frame of its own).
    Held,
    /// Lent out by [`Xsk::chunks_mut`] while it checks a batch.
    Lent,
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
    /// Frames that found the TX ring full and waited in the backlog.
    pub tx_ring_full: u64,
    /// `sendto` calls that the kernel answered with an error other than
    /// "try again".
    pub tx_wakeup_errors: u64,
    /// Descriptors or chunks that broke the bookkeeping (a descriptor
    /// outside the UMEM, a chunk released twice, an empty frame to send):
    /// refused, never touched. Stays 0 unless something is wrong.
    pub bookkeeping_errors: u64,
}

/// Where every chunk is, and the free list.
struct Book {
    /// The state of each chunk, by index (offset / FRAME_SIZE).
    state: Vec<State>,
    free: Vec<u64>,
    counters: XskCounters,
}

impl Book {
    fn new() -> Book {
        Book {
            state: vec![State::Free; FRAMES as usize],
            free: (0..FRAMES)
                .rev()
                .map(|i| u64::from(i * FRAME_SIZE))
                .collect(),
            counters: XskCounters::default(),
        }
    }

    /// The index of the chunk at `offset`, if it is one: aligned, inside
    /// the UMEM.
    fn index(&self, offset: u64) -> Option<usize> {
        if !offset.is_multiple_of(u64::from(FRAME_SIZE)) {
            return None;
        }
        let i = usize::try_from(offset / u64::from(FRAME_SIZE)).ok()?;
        (i < self.state.len()).then_some(i)
    }

    fn is(&self, offset: u64, state: State) -> bool {
        self.index(offset).and_then(|i| self.state.get(i)) == Some(&state)
    }

    /// Move the chunk at `offset` from `from` to `to`; false (and counted)
    /// if it is not a chunk or not in `from`.
    fn transition(&mut self, offset: u64, from: State, to: State) -> bool {
        match self.index(offset) {
            Some(i) if self.state.get(i) == Some(&from) => {
                if let Some(s) = self.state.get_mut(i) {
                    *s = to;
                }
                true
            }
            _ => {
                self.counters.bookkeeping_errors += 1;
                false
            }
        }
    }

    /// A held chunk back to the free list.
    fn release(&mut self, offset: u64) {
        if self.transition(offset, State::Held, State::Free) {
            self.free.push(offset);
        }
    }

    /// Whether `h` may go to the kernel for sending: a whole, non-empty
    /// frame in a chunk that `lbd` holds.
    fn sendable(&self, h: &Held) -> bool {
        h.start < h.end && h.end <= FRAME_SIZE as usize && self.is(h.chunk, State::Held)
    }
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
    book: Book,
    /// Frames the TX ring holds, not yet completed.
    in_flight: u32,
    /// Frames waiting for room in the TX ring, oldest first; allocated
    /// once, never beyond [`BACKLOG`].
    backlog: VecDeque<Held>,
    /// Frames in the backlog, by [`Origin::index`].
    backlog_by_origin: [u64; 2],
    /// What became of every frame.
    ledger: Ledger,
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
        let mut xsk = Xsk {
            rx,
            tx,
            device,
            user,
            _socket: socket,
            _umem: umem,
            area,
            book: Book::new(),
            in_flight: 0,
            backlog: VecDeque::with_capacity(BACKLOG),
            backlog_by_origin: [0; 2],
            ledger: Ledger::default(),
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
        self.book.counters
    }

    /// The ledger of every frame this socket took or `lbd` made, with the
    /// frames held: those in the backlog, plus `held_elsewhere` (by
    /// [`Origin::index`]: the frames waiting for a next hop).
    pub fn ledger(&self, held_elsewhere: [u64; 2]) -> Ledger {
        let mut ledger = self.ledger;
        for origin in Origin::ALL {
            let i = origin.index();
            let here = self.backlog_by_origin.get(i).copied().unwrap_or(0);
            let there = held_elsewhere.get(i).copied().unwrap_or(0);
            ledger.set_held(origin, here + there);
        }
        ledger
    }

    /// The kernel's counters for this socket.
    pub fn kernel_stats(&self) -> Option<XdpStatisticsV2> {
        self.user.statistics_v2().ok()
    }

    /// Chunks neither in the kernel nor held: free for a new frame.
    pub fn free_chunks(&self) -> usize {
        self.book.free.len()
    }

    /// Take back what the kernel has sent, and top the fill ring up.
    pub fn recycle(&mut self) {
        {
            let book = &mut self.book;
            let mut done = self.device.complete(FQ_SIZE);
            while let Some(addr) = done.read() {
                let chunk = addr - addr % u64::from(FRAME_SIZE);
                self.in_flight = self.in_flight.saturating_sub(1);
                if book.transition(chunk, State::Kernel, State::Free) {
                    book.free.push(chunk);
                }
            }
            done.release();
        }
        self.refill();
    }

    fn refill(&mut self) {
        // Keep a reserve for RSTs and replies; the rest goes to the kernel.
        let book = &mut self.book;
        let spare = book.free.len().saturating_sub(RESERVE);
        if spare == 0 {
            book.counters.fill_starved += 1;
            return;
        }
        let n = u32::try_from(spare).unwrap_or(u32::MAX).min(FQ_SIZE);
        let at = book.free.len() - n as usize;
        let mut fill = self.device.fill(n);
        let inserted = fill.insert(book.free[at..].iter().copied()) as usize;
        fill.commit();
        let Book { free, state, .. } = book;
        for chunk in free.drain(at..at + inserted) {
            // Chunks on the free list are aligned and in range.
            if let Some(s) = usize::try_from(chunk / u64::from(FRAME_SIZE))
                .ok()
                .and_then(|i| state.get_mut(i))
            {
                *s = State::Kernel;
            }
        }
    }

    /// Take up to `max` received frames into `out`. Each is counted as
    /// received; a descriptor that breaks the bookkeeping is counted as
    /// dropped too, and left out.
    pub fn receive(&mut self, max: u32, out: &mut Vec<Held>) {
        let book = &mut self.book;
        let ledger = &mut self.ledger;
        let mut rx = self.rx.receive(max);
        while let Some(desc) = rx.read() {
            ledger.received += 1;
            let chunk = desc.addr - desc.addr % u64::from(FRAME_SIZE);
            if !book.transition(chunk, State::Kernel, State::Held) {
                // Not a chunk the kernel had: never touch it.
                ledger.dropped(Origin::Received, Dropped::Lbd(Loss::Bookkeeping));
                continue;
            }
            let start = (desc.addr - chunk) as usize;
            let end = start + desc.len as usize;
            if end > FRAME_SIZE as usize {
                book.counters.bookkeeping_errors += 1;
                book.release(chunk);
                ledger.dropped(Origin::Received, Dropped::Lbd(Loss::Bookkeeping));
                continue;
            }
            out.push(Held {
                chunk,
                start,
                end,
                origin: Origin::Received,
            });
        }
        rx.release();
    }

    /// A free chunk, for a frame `lbd` makes itself (an RST). The fill ring
    /// is never given the last [`RESERVE`] free chunks, so these are there
    /// even when the kernel holds the rest.
    pub fn alloc(&mut self) -> Option<u64> {
        let chunk = self.book.free.pop()?;
        self.book
            .transition(chunk, State::Free, State::Held)
            .then_some(chunk)
    }

    /// Give back a chunk from [`Xsk::alloc`] that no frame was made in.
    pub fn release(&mut self, chunk: u64) {
        self.book.release(chunk);
    }

    /// The frame `lbd` made in `chunk` (from [`Xsk::alloc`]), at
    /// `start..end`: counted as an own frame.
    pub fn own_frame(&mut self, chunk: u64, start: usize, end: usize) -> Held {
        self.ledger.own += 1;
        Held {
            chunk,
            start,
            end,
            origin: Origin::Own,
        }
    }

    /// Drop a held frame, counted for `why`; its chunk is free again.
    pub fn drop_frame(&mut self, frame: Held, why: Dropped) {
        self.ledger.dropped(frame.origin, why);
        self.book.release(frame.chunk);
    }

    /// The bytes of each chunk in `frames`, mutable, in order.
    ///
    /// Returns `None` (and counts it) if a frame names a chunk that `lbd`
    /// does not hold, or two frames name the same chunk: either would be a
    /// bookkeeping bug. Allocates nothing.
    pub fn chunks_mut<'a>(
        &'a mut self,
        frames: &'a [Held],
    ) -> Option<impl Iterator<Item = &'a mut [u8]> + 'a> {
        // Lend each chunk once: a second mention finds it lent already.
        let lent = frames
            .iter()
            .take_while(|h| self.book.transition(h.chunk, State::Held, State::Lent))
            .count();
        for h in frames.iter().take(lent) {
            self.book.transition(h.chunk, State::Lent, State::Held);
        }
        if lent < frames.len() {
            return None;
        }
        let base = self.area.ptr;
        Some(frames.iter().map(move |h| {
            // SAFETY: every chunk was checked above to be a chunk of the
            // area (aligned, its index below FRAMES, so its FRAME_SIZE
            // bytes lie inside the mapping), to be held by `lbd` (so the
            // kernel neither reads nor writes it), and to appear once in
            // `frames` (so the slices do not overlap). The slices borrow
            // `self` mutably for 'a: no other slice of the area, and no
            // change of state, can happen while they live.
            unsafe {
                std::slice::from_raw_parts_mut(
                    base.as_ptr().add(h.chunk as usize),
                    FRAME_SIZE as usize,
                )
            }
        }))
    }

    /// One held chunk's bytes, mutable.
    pub fn chunk_mut(&mut self, chunk: u64) -> Option<&mut [u8]> {
        if !self.book.is(chunk, State::Held) {
            self.book.counters.bookkeeping_errors += 1;
            return None;
        }
        // SAFETY: the chunk lies inside the mapping (aligned, its index
        // below FRAMES) and is held by `lbd`, so the kernel does not touch
        // it; the slice borrows `self` mutably, so no other slice of the
        // area exists while it lives.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.area.ptr.as_ptr().add(chunk as usize),
                FRAME_SIZE as usize,
            )
        })
    }

    /// Send frames: the backlog first, then `frames` in order, onto the TX
    /// ring as far as it has room; the rest wait at the end of the backlog
    /// (counted in `tx_ring_full`), and a frame that finds the backlog
    /// full is dropped (`tx_full`). Frames that are empty or not held
    /// (which the kernel would never complete, or must never get) are
    /// dropped as bookkeeping errors. Returns how many frames went onto
    /// the ring.
    pub fn transmit(&mut self, frames: &[Held]) -> u32 {
        let mut added = 0usize;
        for h in frames {
            if !self.book.sendable(h) {
                self.book.counters.bookkeeping_errors += 1;
                if self.book.is(h.chunk, State::Held) {
                    self.book.release(h.chunk);
                }
                self.ledger
                    .dropped(h.origin, Dropped::Lbd(Loss::Bookkeeping));
            } else if self.backlog.len() >= BACKLOG {
                self.book.release(h.chunk);
                self.ledger.dropped(h.origin, Dropped::Lbd(Loss::TxFull));
            } else {
                self.backlog.push_back(*h);
                if let Some(n) = self.backlog_by_origin.get_mut(h.origin.index()) {
                    *n += 1;
                }
                added += 1;
            }
        }
        let sent = self.flush();
        // This call's frames are the backlog's newest: those still there
        // found the ring full.
        self.book.counters.tx_ring_full += added.min(self.backlog.len()) as u64;
        sent
    }

    /// Put what the backlog holds onto the TX ring, as far as it has room,
    /// and make the kernel send; returns how many frames went onto the
    /// ring.
    pub fn flush(&mut self) -> u32 {
        let mut sent = 0;
        if !self.backlog.is_empty() {
            let want = u32::try_from(self.backlog.len()).unwrap_or(u32::MAX);
            let mut tx = self.tx.transmit(want);
            // In order; `insert` stops where the ring has no more room.
            sent = tx.insert(self.backlog.iter().map(|h| XdpDesc {
                addr: h.chunk + h.start as u64,
                len: (h.end - h.start) as u32,
                options: 0,
            }));
            tx.commit();
            for h in self.backlog.drain(..sent as usize) {
                self.book.transition(h.chunk, State::Held, State::Kernel);
                self.ledger.sent(h.origin, 1);
                if let Some(n) = self.backlog_by_origin.get_mut(h.origin.index()) {
                    *n -= 1;
                }
            }
            self.in_flight += sent;
        }
        self.kick();
        sent
    }

    /// Frames waiting in the backlog.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Frames the backlog can still take.
    pub fn backlog_room(&self) -> usize {
        BACKLOG.saturating_sub(self.backlog.len())
    }

    /// Make the kernel send what the TX ring holds, if it asked to be
    /// woken for that. In copy mode (veth, generic XDP) the flag is always
    /// set and each `sendto` sends a small budget of frames (32), so the
    /// loop calls this on every pass while frames are pending, and it
    /// repeats the call while the kernel says "again".
    pub fn kick(&mut self) {
        for _ in 0..KICKS {
            if self.tx.pending() == 0 || !self.tx.needs_wakeup() {
                return;
            }
            self.book.counters.tx_wakeups += 1;
            // SAFETY: `sendto` with no buffer and no address, on the
            // socket's descriptor, which is open while `self.tx` lives.
            let r = unsafe {
                libc::sendto(
                    self.tx.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    // This call's budget is spent, or the device is busy:
                    // again.
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => {}
                    _ => {
                        self.book.counters.tx_wakeup_errors += 1;
                        return;
                    }
                }
            }
        }
    }

    /// Frames handed to the kernel for sending and not yet completed.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Sleep until a frame arrives or `timeout_ms` passes; also wakes the
    /// kernel's RX side if the fill ring asked for it. While the backlog
    /// holds frames, sleep instead until the TX ring has room (`poll`
    /// also makes the kernel send): the backlog must go out before the
    /// loop takes much more.
    pub fn wait(&mut self, timeout_ms: i32) {
        if self.device.needs_wakeup() {
            self.book.counters.rx_wakeups += 1;
        }
        let events = if self.backlog.is_empty() {
            libc::POLLIN
        } else {
            libc::POLLOUT
        };
        let mut pfd = libc::pollfd {
            fd: self.user.as_raw_fd(),
            events,
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
