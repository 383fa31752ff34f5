//! The hand-off between queues: a frame that arrives on a queue whose
//! engine does not own it (see [`crate::owner`]) goes to its owner's loop,
//! which handles and sends it.
//!
//! Every socket shares one UMEM (`XDP_SHARED_UMEM`, see
//! [`crate::xsk::bind_all`]), so a hand-off moves a frame's address, not
//! its bytes. Per ordered pair of queues `(from, to)` there are two
//! wait-free single-producer/single-consumer rings (`rtrb`):
//!
//! * `frames`: the frames `from` hands to `to` ([`FRAME_RING`] entries); a
//!   full ring is a counted drop (`handoff_full`), never a wait.
//! * `chunks`: chunks of `to`'s share of the UMEM that `from` freed (a
//!   frame handed to `from` and sent by it comes back on `from`'s
//!   completion ring), going home. Each queue keeps its own chunks, so a
//!   queue that hands off most of what it receives does not run dry. The
//!   ring holds [`crate::xsk::FRAMES`] entries, every chunk a queue has,
//!   so it cannot overflow.
//!
//! The ring's release/acquire ordering is what makes the receiver see the
//! bytes the sender wrote (and the kernel received). A loop that pushed
//! frames to a sleeping peer in a pass wakes it through the peer's
//! eventfd, which the peer polls beside its socket, so a handed frame
//! never waits for a sleeping loop's timeout. A busy peer is not woken (no
//! system call): a loop says it sleeps ([`Links::may_sleep`]) before it
//! looks at its rings a last time, and a sender looks at that after it
//! pushed, each with a sequentially consistent fence between, so that at
//! least one of the two sees the other (the frame, or the need to wake).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::xsk::{FRAMES, Held};

/// Entries of each ring of frames between two queues.
pub const FRAME_RING: usize = 1024;

/// An eventfd that wakes a queue's loop.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    /// Set while the loop may be asleep (or about to be).
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointer; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            fd,
            sleeping: AtomicBool::new(false),
        })
    }

    /// Wake the loop that polls this eventfd.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }

    /// Take the wake-ups made so far (the eventfd is readable no more).
    pub fn reset(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; non-blocking.
        unsafe {
            libc::read(self.fd.as_raw_fd(), (&raw mut n).cast(), 8);
        }
    }

    /// The descriptor, to poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One queue's ends of the rings, by peer (`None` at its own index).
pub struct Links {
    /// This queue's index.
    queue: usize,
    frames_out: Vec<Option<Producer<Held>>>,
    frames_in: Vec<Option<Consumer<Held>>>,
    chunks_out: Vec<Option<Producer<u64>>>,
    chunks_in: Vec<Option<Consumer<u64>>>,
    /// Every queue's waker, by index.
    wakers: Vec<Arc<Waker>>,
    /// Peers pushed to since the last [`Links::wake_peers`].
    pushed: Vec<bool>,
    /// The peer whose ring is read first, turn by turn.
    next_in: usize,
}

/// The rings between `queues` queues: one [`Links`] per queue, by index.
///
/// # Errors
/// An eventfd could not be made.
pub fn mesh(queues: usize) -> io::Result<Vec<Links>> {
    let wakers = (0..queues)
        .map(|_| Waker::new().map(Arc::new))
        .collect::<io::Result<Vec<_>>>()?;
    let mut links: Vec<Links> = (0..queues)
        .map(|queue| Links {
            queue,
            frames_out: (0..queues).map(|_| None).collect(),
            frames_in: (0..queues).map(|_| None).collect(),
            chunks_out: (0..queues).map(|_| None).collect(),
            chunks_in: (0..queues).map(|_| None).collect(),
            wakers: wakers.clone(),
            pushed: vec![false; queues],
            next_in: 0,
        })
        .collect();
    for from in 0..queues {
        for to in (0..queues).filter(|&to| to != from) {
            let (p, c) = RingBuffer::new(FRAME_RING);
            let (cp, cc) = RingBuffer::new(FRAMES as usize);
            if let Some(l) = links.get_mut(from) {
                l.frames_out[to] = Some(p);
                l.chunks_out[to] = Some(cp);
            }
            if let Some(l) = links.get_mut(to) {
                l.frames_in[from] = Some(c);
                l.chunks_in[from] = Some(cc);
            }
        }
    }
    Ok(links)
}

impl Links {
    /// This queue's index.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// The number of queues.
    pub fn queues(&self) -> usize {
        self.wakers.len()
    }

    /// This queue's waker (to poll, and reset each pass).
    pub fn waker(&self) -> &Waker {
        // `mesh` makes one waker per queue, this one's included.
        &self.wakers[self.queue]
    }

    /// Whether `to`'s ring of frames has room for one more.
    pub fn has_room(&self, to: usize) -> bool {
        self.frames_out
            .get(to)
            .and_then(Option::as_ref)
            .is_some_and(|p| !p.is_full())
    }

    /// Hand `frame` to `to`; it comes back if the ring is full or `to` is
    /// not a peer.
    pub fn push(&mut self, to: usize, frame: Held) -> Result<(), Held> {
        let Some(p) = self.frames_out.get_mut(to).and_then(Option::as_mut) else {
            return Err(frame);
        };
        p.push(frame).map_err(|rtrb::PushError::Full(f)| f)?;
        if let Some(b) = self.pushed.get_mut(to) {
            *b = true;
        }
        Ok(())
    }

    /// Wake every peer pushed to since the last call that sleeps (or is
    /// about to).
    pub fn wake_peers(&mut self) {
        if !self.pushed.contains(&true) {
            return;
        }
        // Orders the pushes before the looks at the peers' flags (see the
        // module documentation).
        fence(Ordering::SeqCst);
        for (to, pushed) in self.pushed.iter_mut().enumerate() {
            if std::mem::take(pushed)
                && let Some(w) = self.wakers.get(to)
                && w.sleeping.load(Ordering::SeqCst)
            {
                w.wake();
            }
        }
    }

    /// This loop is about to sleep: true if it may (no frame waits in its
    /// rings), and from now on a peer that hands it a frame wakes it.
    pub fn may_sleep(&self) -> bool {
        self.waker().sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        !self.pending()
    }

    /// This loop is awake: peers need not wake it.
    pub fn awake(&self) {
        self.waker().sleeping.store(false, Ordering::Relaxed);
    }

    /// Take up to `max` frames handed to this queue into `out`, the peers
    /// in turn (a different one first each call).
    pub fn pop(&mut self, max: usize, out: &mut Vec<Held>) {
        let n = self.frames_in.len();
        let mut taken = 0;
        for k in 0..n {
            let from = (self.next_in + k) % n;
            let Some(c) = self.frames_in.get_mut(from).and_then(Option::as_mut) else {
                continue;
            };
            while taken < max {
                match c.pop() {
                    Ok(h) => {
                        out.push(h);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        self.next_in = (self.next_in + 1) % n.max(1);
    }

    /// Whether a peer has handed this queue frames, or sent back chunks of
    /// its share, not yet taken: a queue whose chunks are all away has
    /// nothing in its fill ring, so receives nothing, and must not sleep
    /// while they wait to come home.
    pub fn pending(&self) -> bool {
        self.frames_in.iter().flatten().any(|c| !c.is_empty())
            || self.chunks_in.iter().flatten().any(|c| !c.is_empty())
    }

    /// Send a chunk of `home`'s share back to it (and wake it at the next
    /// [`Links::wake_peers`] if it sleeps); the chunk comes back if that
    /// cannot be done (never, with rings as large as a share).
    pub fn give_back(&mut self, home: usize, chunk: u64) -> Result<(), u64> {
        let Some(p) = self.chunks_out.get_mut(home).and_then(Option::as_mut) else {
            return Err(chunk);
        };
        p.push(chunk).map_err(|rtrb::PushError::Full(c)| c)?;
        if let Some(b) = self.pushed.get_mut(home) {
            *b = true;
        }
        Ok(())
    }

    /// Take back every chunk of this queue's share that peers freed.
    pub fn take_back(&mut self, mut each: impl FnMut(u64)) {
        for c in self.chunks_in.iter_mut().flatten() {
            while let Ok(chunk) = c.pop() {
                each(chunk);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::ledger::Origin;

    fn held(chunk: u64) -> Held {
        Held {
            chunk,
            start: 256,
            end: 320,
            origin: Origin::Received,
        }
    }

    #[test]
    fn frames_reach_their_owner_and_a_full_ring_refuses() {
        let mut links = mesh(3).unwrap();
        let mut q2 = links.pop().unwrap();
        let mut q1 = links.pop().unwrap();
        let mut q0 = links.pop().unwrap();
        assert!(q0.push(0, held(0)).is_err(), "not to itself");
        for i in 0..FRAME_RING as u64 {
            q0.push(1, held(i * 4096)).unwrap();
        }
        assert!(!q0.has_room(1));
        assert_eq!(q0.push(1, held(1)), Err(held(1)));
        q2.push(1, held(7)).unwrap();
        assert!(q1.pending());
        let mut out = Vec::new();
        q1.pop(usize::MAX, &mut out);
        assert_eq!(out.len(), FRAME_RING + 1);
        assert!(out.contains(&held(7)));
        assert!(!q1.pending());
        // The wake-up is an eventfd made readable, for a peer that sleeps
        // only.
        q2.push(1, held(9)).unwrap();
        q2.wake_peers();
        let mut pfd = libc::pollfd {
            fd: q1.waker().raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0, "q1 was awake");
        assert!(!q1.may_sleep(), "a frame waits");
        q1.pop(usize::MAX, &mut out);
        assert!(q1.may_sleep());
        q2.push(1, held(10)).unwrap();
        q2.wake_peers();
        let mut pfd = libc::pollfd {
            fd: q1.waker().raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
        q1.waker().reset();
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
        // Chunks go home, and wake their home if it sleeps: with its
        // chunks away it could receive nothing to wake it.
        assert!(q0.may_sleep());
        q1.give_back(0, 8192).unwrap();
        assert!(!q0.may_sleep(), "a chunk waits to come home");
        q1.wake_peers();
        let mut pfd = libc::pollfd {
            fd: q0.waker().raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1, "q0 slept");
        let mut back = Vec::new();
        q0.take_back(|c| back.push(c));
        assert_eq!(back, [8192]);
        assert!(q0.may_sleep());
    }
}
