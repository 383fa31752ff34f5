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
//! With several queues ([`bind_all`]) every socket shares one UMEM
//! (`XDP_SHARED_UMEM`), each queue with its own fill and completion rings
//! and its own share of the chunks ([`FRAMES`] each, its *home* chunks).
//! Each queue's `Book` covers the whole UMEM: a chunk that another queue
//! holds is `Away` in it. A frame handed to another queue
//! ([`Xsk::hand_out`], [`Xsk::hand_in`], through the rings of
//! [`crate::handoff`]) leaves one book and enters the other, so a chunk's
//! bytes are still handed out by one queue at most; a freed chunk that is
//! not the queue's own goes home ([`Xsk::take_foreign`],
//! [`Xsk::take_home`]) rather than to this queue's free list.
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
use std::sync::Arc;

use xdpilone::xdp::{XdpDesc, XdpStatisticsV2};
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use crate::ledger::{Dropped, Ledger, Loss, Origin};

/// Bytes per UMEM chunk: one page. A received frame starts after the
/// kernel's 256-byte XDP headroom, which leaves room in front for the
/// engine's in-place growth (the TTM option) and at least 1.5 KiB behind.
pub const FRAME_SIZE: u32 = 4096;
/// Chunks per socket (its share of a shared UMEM): 16 MiB of packet
/// memory.
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
    /// Another queue's (a shared UMEM): held by it, in its rings, on its
    /// free list, or on the way between two queues.
    Away,
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

// SAFETY: the area is plain memory; which thread may touch which chunk is
// decided by the queues' books (a chunk is `Held` in one book at most, and
// moves between books only through the hand-off rings, whose
// release/acquire ordering orders the accesses).
unsafe impl Send for Area {}
// SAFETY: as for `Send`: shared references reach the memory only through
// `Xsk`, which touches only the chunks its own book holds.
unsafe impl Sync for Area {}

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
    /// The state of each chunk of the UMEM, by index (offset / FRAME_SIZE).
    state: Vec<State>,
    /// Free chunks, all of this queue's share.
    free: Vec<u64>,
    /// This queue's index: its share is the chunks `home * FRAMES ..
    /// (home + 1) * FRAMES`.
    home: usize,
    /// Chunks of other queues freed here, to go home.
    foreign: Vec<u64>,
    counters: XskCounters,
}

impl Book {
    /// The book of queue `home` of `queues` sharing one UMEM: its own
    /// chunks free, the others' away.
    fn new(home: usize, queues: usize) -> Book {
        let share = FRAMES as usize;
        let mut state = vec![State::Away; share * queues];
        for s in state.iter_mut().skip(home * share).take(share) {
            *s = State::Free;
        }
        let first = u64::try_from(home * share).unwrap_or(0);
        Book {
            state,
            free: (0..u64::from(FRAMES))
                .rev()
                .map(|i| (first + i) * u64::from(FRAME_SIZE))
                .collect(),
            home,
            foreign: Vec::new(),
            counters: XskCounters::default(),
        }
    }

    /// The queue whose share holds the chunk at `offset`.
    fn home_of(offset: u64) -> usize {
        usize::try_from(offset / u64::from(FRAME_SIZE) / u64::from(FRAMES)).unwrap_or(usize::MAX)
    }

    /// A chunk that was `from` becomes free: onto the free list if it is
    /// this queue's, else away, to go home.
    fn free_from(&mut self, offset: u64, from: State) {
        if Book::home_of(offset) == self.home {
            if self.transition(offset, from, State::Free) {
                self.free.push(offset);
            }
        } else if self.transition(offset, from, State::Away) {
            self.foreign.push(offset);
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

    /// A held chunk back to the free list (or home).
    fn release(&mut self, offset: u64) {
        self.free_from(offset, State::Held);
    }

    /// Whether `h` may go to the kernel for sending: a whole, non-empty
    /// frame in a chunk that `lbd` holds.
    fn sendable(&self, h: &Held) -> bool {
        h.start < h.end && h.end <= FRAME_SIZE as usize && self.is(h.chunk, State::Held)
    }
}

/// An AF_XDP socket bound to one queue of an interface, with its share of
/// a UMEM that every queue's socket may share.
pub struct Xsk {
    // Field order is drop order: rings and sockets before the UMEM, the
    // UMEM before its memory.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    user: User,
    _socket: Socket,
    area: Arc<Area>,
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

/// One UMEM shared by a socket on each of the queues `0..queues` of the
/// interface `ifindex` (`XDP_SHARED_UMEM`; each socket with its own fill
/// and completion rings and its own [`FRAMES`] chunks), each socket's fill
/// ring filled. With one queue, one socket with a UMEM of its own.
///
/// # Errors
/// The kernel refused a step (no AF_XDP, no such queue, no memory, no
/// shared UMEM across queues).
pub fn bind_all(ifindex: u32, queues: u32) -> io::Result<Vec<Xsk>> {
    bind_range(ifindex, 0, queues)
}

/// [`bind_all`] for the queues `first..first + queues`.
fn bind_range(ifindex: u32, first: u32, queues: u32) -> io::Result<Vec<Xsk>> {
    let count = queues.max(1) as usize;
    let area = Arc::new(Area::new(FRAME_SIZE as usize * FRAMES as usize * count)?);
    let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
    let config = UmemConfig {
        fill_size: FQ_SIZE,
        complete_size: FQ_SIZE,
        frame_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: `slice` is a page-aligned mapping that lives as long as any
    // socket bound to the UMEM (each `Xsk` holds the area and drops it
    // after its socket) and that nothing else in this process reads or
    // writes except through the `Xsk`s, each only in the chunks its book
    // holds.
    let umem = unsafe { Umem::new(config, slice) }.map_err(errno)?;
    let mut out = Vec::with_capacity(count);
    for index in 0..queues.max(1) {
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex).map_err(errno)?;
        info.set_queue(first + index);
        // The first socket is the UMEM's own descriptor; the others bind
        // to it with XDP_SHARED_UMEM (xdpilone sets the flag).
        let socket = if index == 0 {
            Socket::with_shared(&info, &umem).map_err(errno)?
        } else {
            Socket::new(&info).map_err(errno)?
        };
        let device = umem.fq_cq(&socket).map_err(errno)?;
        // A socket that shares the UMEM may set no bind flag (the kernel
        // refuses one): it takes need-wakeup from the UMEM's socket.
        let bind_flags = if index == 0 {
            SocketConfig::XDP_BIND_NEED_WAKEUP
        } else {
            0
        };
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(RING_SIZE),
                    tx_size: NonZeroU32::new(RING_SIZE),
                    bind_flags,
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
            area: Arc::clone(&area),
            book: Book::new(index as usize, count),
            in_flight: 0,
            backlog: VecDeque::with_capacity(BACKLOG),
            backlog_by_origin: [0; 2],
            ledger: Ledger::default(),
        };
        xsk.refill();
        out.push(xsk);
    }
    // The kernel keeps the UMEM while a socket is bound to it; the first
    // socket keeps its descriptor.
    drop(umem);
    Ok(out)
}

impl Xsk {
    /// Create a UMEM and one socket, bind it to `queue` of the interface
    /// `ifindex`, and fill the fill ring.
    ///
    /// # Errors
    /// The kernel refused a step (no AF_XDP, no such queue, no memory).
    pub fn bind(ifindex: u32, queue: u32) -> io::Result<Xsk> {
        bind_range(ifindex, queue, 1)?
            .pop()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
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
                book.free_from(chunk, State::Kernel);
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
            // area (aligned, its index below the book's length, which is
            // the area's chunk count, so its FRAME_SIZE bytes lie inside
            // the mapping), to be held by `lbd` (so the
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
        self.wait_or(timeout_ms, None);
    }

    /// [`Xsk::wait`], woken also when `also` (an eventfd: frames handed
    /// over by another queue) is readable.
    pub fn wait_or(&mut self, timeout_ms: i32, also: Option<std::os::fd::RawFd>) {
        if self.device.needs_wakeup() {
            self.book.counters.rx_wakeups += 1;
        }
        let events = if self.backlog.is_empty() {
            libc::POLLIN
        } else {
            libc::POLLOUT
        };
        let mut pfds = [
            libc::pollfd {
                fd: self.user.as_raw_fd(),
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: also.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n: libc::nfds_t = if also.is_some() { 2 } else { 1 };
        // SAFETY: `n` valid pollfds, for the duration of the call.
        unsafe {
            libc::poll(pfds.as_mut_ptr(), n, timeout_ms);
        }
    }

    /// Give a held (received) frame to another queue: it leaves this
    /// queue's book (counted as handed out) until it comes back as a free
    /// chunk. False (and counted) if `frame` is not held.
    pub fn hand_out(&mut self, frame: &Held) -> bool {
        if !self.book.transition(frame.chunk, State::Held, State::Away) {
            return false;
        }
        self.ledger.handed_out(frame.origin);
        true
    }

    /// Take a frame another queue handed over: held here from now on
    /// (counted as handed in). False, and counted as a bookkeeping drop,
    /// if the chunk is not away from this queue (a bug: never touched).
    pub fn hand_in(&mut self, frame: &Held) -> bool {
        self.ledger.handed_in += 1;
        if !self.book.transition(frame.chunk, State::Away, State::Held) {
            self.ledger
                .dropped(frame.origin, Dropped::Lbd(Loss::Bookkeeping));
            return false;
        }
        true
    }

    /// A frame for [`Xsk::hand_out`] whose owner's ring is full: dropped,
    /// counted (`handoff_full`).
    pub fn drop_handoff(&mut self, frame: Held) {
        self.drop_frame(frame, Dropped::Lbd(Loss::HandoffFull));
    }

    /// Chunks of other queues that this queue freed: they go home.
    pub fn take_foreign(&mut self) -> std::vec::Drain<'_, u64> {
        self.book.foreign.drain(..)
    }

    /// Put back a chunk that could not go home yet (tried again later).
    pub fn keep_foreign(&mut self, chunk: u64) {
        self.book.foreign.push(chunk);
    }

    /// A chunk of this queue's share, freed by another queue, is home.
    pub fn take_home(&mut self, chunk: u64) {
        if Book::home_of(chunk) == self.book.home
            && self.book.transition(chunk, State::Away, State::Free)
        {
            self.book.free.push(chunk);
        } else {
            self.book.counters.bookkeeping_errors += 1;
        }
    }

    /// The queue whose share of the UMEM holds `chunk`.
    pub fn home_of(chunk: u64) -> usize {
        Book::home_of(chunk)
    }

    /// Whether received frames are waiting.
    pub fn rx_ready(&mut self) -> bool {
        self.rx.available() > 0
    }
}

fn errno(e: xdpilone::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw())
}

#[cfg(test)]
mod test {
    use super::*;

    const CHUNK: u64 = FRAME_SIZE as u64;

    #[test]
    fn a_book_frees_its_own_chunks_and_sends_the_others_home() {
        // Queue 1 of 2: chunks FRAMES.. are its own, the rest away.
        let mut book = Book::new(1, 2);
        let own = u64::from(FRAMES) * CHUNK;
        assert_eq!(book.free.len(), FRAMES as usize);
        assert!(book.free.iter().all(|&c| Book::home_of(c) == 1));
        assert!(book.is(0, State::Away));
        assert!(book.is(own, State::Free));
        assert_eq!(Book::home_of(own - CHUNK), 0);
        assert_eq!(Book::home_of(2 * own), 2);

        // Queue 0's chunk arrives (handed in), is sent, and completes:
        // freed here, it goes home.
        assert!(book.transition(0, State::Away, State::Held));
        assert!(book.transition(0, State::Held, State::Kernel));
        book.free_from(0, State::Kernel);
        assert_eq!(book.foreign, [0]);
        assert!(book.is(0, State::Away));
        assert_eq!(book.free.len(), FRAMES as usize);

        // An own chunk, held and released, is free again here.
        let c = book.free.pop().unwrap();
        assert!(book.transition(c, State::Free, State::Held));
        book.release(c);
        assert!(book.is(c, State::Free));
        assert_eq!(book.free.len(), FRAMES as usize);

        // A chunk away cannot be released, sent or lent: counted.
        book.release(CHUNK);
        assert!(book.is(CHUNK, State::Away));
        assert_eq!(book.counters.bookkeeping_errors, 1);
        let h = Held {
            chunk: CHUNK,
            start: 256,
            end: 300,
            origin: Origin::Received,
        };
        assert!(!book.sendable(&h));
        // Beyond the UMEM.
        assert!(!book.transition(2 * own, State::Away, State::Held));
    }
}
