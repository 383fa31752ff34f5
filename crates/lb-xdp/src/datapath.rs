//! The loop of one queue: AF_XDP RX in batches, the engine's batch, layer
//! 2, TX; the engine's timers and the RSTs of expiry; sleeping in `poll`
//! when the rings are idle.
//!
//! Every frame ends in the socket's ledger (see [`crate::ledger`]): sent,
//! dropped with a reason, or held. A pass takes no more frames (received,
//! made, or released by layer 2) than the TX backlog has room for, so that
//! no frame is ever dropped for a full TX ring: while the ring stays full,
//! received frames wait in the kernel's RX ring instead.
//!
//! With several queues, a received frame whose owner (see
//! [`crate::owner`]) is another queue's engine is handed to that queue
//! (see [`crate::handoff`]) before the engine sees the batch, and the
//! frames other queues handed to this one join the batch; a ring to a
//! busy owner that is full drops the frame, counted.
//!
//! The queue's engine lives in a [`Shared`] behind a mutex, which the loop
//! holds while it works on a batch and releases before it sleeps, so that
//! the control thread (health checks, reloads, metrics) changes or reads
//! the engine between batches. Uncontended, the lock costs a few
//! nanoseconds per batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant as StdInstant;

use arrayvec::ArrayVec;

use lb_engine::{Engine, Frame, Instant, Verdict};

use crate::handoff::Links;
use crate::install::Installed;
use crate::l2::{L2, L2Counters, Lookup, swap_macs};
use crate::ledger::{Dropped, Ledger, Loss};
use crate::owner::Owners;
use crate::xsk::{FRAME_SIZE, Held, Xsk, XskCounters};

/// Frames taken from the RX ring at once.
pub const BATCH: usize = 64;
/// Where `lbd` writes frames it makes itself (RSTs) in a chunk: the same
/// headroom the kernel leaves in front of received frames.
const OWN_FRAME_OFFSET: usize = 256;
/// Frames of its own (the RSTs of expiry) `lbd` makes at most per pass of
/// the loop: the chunks kept in reserve, refilled every pass, so that a
/// mass expiry neither starves the fill ring nor delays received frames;
/// the engine keeps the rest for the next pass.
const OWN_FRAMES_PER_PASS: usize = crate::xsk::RESERVE;
/// The longest sleep in `poll`, so that the stop flag is seen promptly.
const MAX_SLEEP_MS: i32 = 100;
/// How often the kernel's counters of the socket are read.
const KERNEL_STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Counters of the queue's loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Non-empty batches received.
    pub rx_batches: u64,
    /// Frames queued for sending.
    pub tx_packets: u64,
    /// Times the loop slept in `poll`.
    pub poll_sleeps: u64,
    /// Frames the engine said to pass to the kernel: `lbd` cannot hand a
    /// frame back, so they are dropped here (the XDP program only gives
    /// `lbd` frames for its own addresses, so this stays near zero).
    pub pass_dropped: u64,
    /// Frames dropped because their batch broke the UMEM bookkeeping
    /// (stays 0 unless something is wrong).
    pub batch_errors: u64,
}

/// One queue's engine and figures, shared with the control thread.
pub struct Shared {
    /// The queue's engine.
    pub engine: Engine,
    /// The configuration installed in it.
    pub installed: Installed,
    /// The loop's counters.
    pub counters: LoopCounters,
    /// The socket's ring counters.
    pub xsk: XskCounters,
    /// The kernel's counters of the socket, when it gives them.
    pub kernel: Option<xdpilone::xdp::XdpStatisticsV2>,
    /// Neighbour resolution counters.
    pub l2: L2Counters,
    /// What became of every frame.
    pub ledger: Ledger,
    /// Which queue owns a frame (the same on every queue).
    pub owners: Owners,
}

/// The engines' clock at `wall`: the time since `epoch`, the start of the
/// run (shared by every queue).
pub fn engine_time(epoch: StdInstant, wall: StdInstant) -> Instant {
    Instant::from_nanos(u64::try_from(wall.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX))
}

/// Lock a queue's shared state, whether or not a thread panicked while
/// holding it (the engine never leaves a half-done change behind).
pub fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The loop of one queue, moved onto the queue's own thread with its
/// socket (made on the control thread with the others, over one UMEM).
pub struct Worker {
    /// The queue number, for logs.
    pub queue: u32,
    /// The socket.
    pub xsk: Xsk,
    /// Layer 2.
    pub l2: L2,
    /// The engine and figures.
    pub shared: Arc<Mutex<Shared>>,
    /// Set to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// The clock's epoch (shared by every queue).
    pub epoch: StdInstant,
    /// The rings to and from the other queues.
    pub links: Links,
}

impl Worker {
    /// Run until `stop` is set.
    pub fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let mut rx: Vec<Held> = Vec::with_capacity(BATCH);
        // A pass sends no more than the backlog has room for.
        let mut tx: Vec<Held> = Vec::with_capacity(crate::xsk::BACKLOG);
        let mut verdicts = [Verdict::Pass; BATCH];
        let mut ready = Vec::new();
        let mut expired = Vec::new();
        let mut counters = LoopCounters::default();
        let mut kernel_read = StdInstant::now();
        let mut kernel = self.xsk.kernel_stats();
        let mut handed: Vec<Held> = Vec::with_capacity(BATCH);
        let mut stuck: Vec<u64> = Vec::new();
        let multi = self.links.queues() > 1;
        while !self.stop.load(Ordering::Relaxed) {
            if multi {
                self.links.awake();
            }
            self.xsk.recycle();
            if multi {
                let xsk = &mut self.xsk;
                self.links.take_back(|chunk| xsk.take_home(chunk));
            }
            // The backlog first, as completions made room; then frames
            // still in the TX ring from the last pass (copy mode sends a
            // budget per wakeup).
            self.xsk.flush();
            rx.clear();
            tx.clear();
            // The frames this pass may add to the TX backlog, at most:
            // each received frame makes at most one to send; room is kept
            // for the frames of our own.
            let room = self.xsk.backlog_room();
            let take = room.saturating_sub(OWN_FRAMES_PER_PASS).min(BATCH);
            // Frames other queues handed over first, up to half the batch,
            // so that a queue whose RX ring stays full still takes them
            // (else its peers' rings would fill and drop).
            handed.clear();
            if multi && take > 0 {
                self.links.pop(take / 2, &mut handed);
            }
            let take_rx = take - handed.len();
            if take_rx > 0 {
                self.xsk.receive(take_rx as u32, &mut rx);
            }
            let wall = StdInstant::now();
            let now = engine_time(self.epoch, wall);
            let next_timer;
            {
                let mut guard = lock(&shared);
                let shared = &mut *guard;
                if !rx.is_empty() {
                    counters.rx_packets += rx.len() as u64;
                    counters.rx_batches += 1;
                }
                if multi && take > 0 {
                    self.steer(&shared.owners, &mut rx);
                    // And more, as far as the batch has room.
                    let more = take.saturating_sub(rx.len() + handed.len());
                    self.links.pop(more, &mut handed);
                    for held in &handed {
                        if self.xsk.hand_in(held) {
                            rx.push(*held);
                        }
                    }
                }
                if !rx.is_empty() {
                    if self.process(&mut shared.engine, now, &mut rx, &mut verdicts) {
                        for (held, verdict) in rx.iter().zip(verdicts.iter()) {
                            self.route(*held, *verdict, wall, &mut tx, &mut counters);
                        }
                    } else {
                        counters.batch_errors += rx.len() as u64;
                        for held in &rx {
                            self.xsk.drop_frame(*held, Dropped::Lbd(Loss::Bookkeeping));
                        }
                    }
                }
                if shared.engine.poll_timeout().is_some_and(|t| t <= now) {
                    shared.engine.handle_timeout(now);
                }
                let own = room.saturating_sub(tx.len()).min(OWN_FRAMES_PER_PASS);
                self.transmit_own(&mut shared.engine, wall, own, &mut tx, &mut counters);
                ready.clear();
                expired.clear();
                let release = room.saturating_sub(tx.len());
                self.l2.poll(wall, release, &mut ready, &mut expired);
                for (held, mac) in ready.drain(..) {
                    if let Some(chunk) = self.xsk.chunk_mut(held.chunk)
                        && let Some(frame) = chunk.get_mut(held.start..held.end)
                    {
                        self.l2.write_header(frame, mac);
                    }
                    tx.push(held);
                }
                for held in expired.drain(..) {
                    self.xsk.drop_frame(held, Dropped::Lbd(Loss::NoNeighbour));
                }
                next_timer = shared.engine.poll_timeout();
                counters.tx_packets += u64::from(self.xsk.transmit(&tx));
                if wall.duration_since(kernel_read) >= KERNEL_STATS_EVERY {
                    kernel_read = wall;
                    kernel = self.xsk.kernel_stats();
                }
                shared.counters = counters;
                shared.xsk = self.xsk.counters();
                shared.l2 = self.l2.counters();
                shared.ledger = self.xsk.ledger(self.l2.held_by_origin());
                shared.kernel = kernel;
            }
            if multi {
                // Chunks of other queues freed here go home; peers handed
                // frames wake up.
                for chunk in self.xsk.take_foreign() {
                    if let Err(chunk) = self.links.give_back(Xsk::home_of(chunk), chunk) {
                        stuck.push(chunk);
                    }
                }
                for chunk in stuck.drain(..) {
                    self.xsk.keep_foreign(chunk);
                }
                self.links.wake_peers();
            }
            if self.xsk.backlog() > 0 {
                // The TX ring is full: wait (briefly) for room rather
                // than take more.
                counters.poll_sleeps += 1;
                self.xsk.wait(1);
            } else if rx.is_empty() && !self.xsk.rx_ready() && (!multi || self.links.may_sleep()) {
                let mut sleep_ms = MAX_SLEEP_MS;
                if let Some(t) = next_timer {
                    let ms = t.saturating_duration_since(now).as_millis();
                    sleep_ms = sleep_ms.min(i32::try_from(ms).unwrap_or(i32::MAX));
                }
                if self.l2.held() > 0 || self.xsk.in_flight() > 0 {
                    sleep_ms = sleep_ms.min(1);
                }
                counters.poll_sleeps += 1;
                let wake = multi.then(|| self.links.waker().raw_fd());
                self.xsk.wait_or(sleep_ms, wake);
                if multi {
                    // Taken after the sleep only (a read a pass would cost
                    // a system call a pass): a wake-up that came while the
                    // loop was not asleep makes one sleep end at once.
                    self.links.waker().reset();
                }
            }
        }
    }

    /// Hand each frame of `rx` that another queue owns to that queue, and
    /// keep the rest in `rx`. A frame whose owner's ring is full is
    /// dropped (`handoff_full`).
    fn steer(&mut self, owners: &Owners, rx: &mut Vec<Held>) {
        let me = self.links.queue();
        let (xsk, links) = (&mut self.xsk, &mut self.links);
        rx.retain(|held| {
            let owner = xsk
                .chunk_mut(held.chunk)
                .and_then(|chunk| chunk.get(held.start..held.end))
                .and_then(|frame| owners.of(frame));
            let Some(to) = owner.map(usize::from).filter(|&to| to != me) else {
                return true;
            };
            if !links.has_room(to) {
                xsk.drop_handoff(*held);
            } else if !xsk.hand_out(held) {
                xsk.drop_frame(*held, Dropped::Lbd(Loss::Bookkeeping));
            } else if let Err(back) = links.push(to, *held) {
                // Never: the ring had room and this loop is its only
                // producer. Taken back and dropped, counted.
                if xsk.hand_in(&back) {
                    xsk.drop_handoff(back);
                }
            }
            false
        });
    }

    /// The engine's batch over the received frames; each frame's range is
    /// updated to what the engine made of it, and `verdicts` starts with
    /// one verdict per frame. False, with nothing done, if the batch breaks
    /// the UMEM bookkeeping (a bug: the caller drops the frames).
    fn process(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        rx: &mut [Held],
        verdicts: &mut [Verdict; BATCH],
    ) -> bool {
        let mut ranges: ArrayVec<(usize, usize), BATCH> = ArrayVec::new();
        {
            let Some(chunks) = self.xsk.chunks_mut(rx) else {
                return false;
            };
            let mut frames: ArrayVec<Frame<'_>, BATCH> = ArrayVec::new();
            for (chunk, held) in chunks.zip(rx.iter()) {
                let Some(frame) = Frame::new(chunk, held.start, held.end) else {
                    return false;
                };
                if frames.try_push(frame).is_err() {
                    return false;
                }
            }
            let Some(out) = verdicts.get_mut(..frames.len()) else {
                return false;
            };
            engine.handle_batch(now, &mut frames, out);
            ranges.extend(frames.iter().map(|f| (f.start(), f.end())));
        }
        for (held, (start, end)) in rx.iter_mut().zip(ranges) {
            held.start = start;
            held.end = end;
        }
        true
    }

    /// Send a processed frame on, hold it for its next hop, or free it.
    fn route(
        &mut self,
        held: Held,
        verdict: Verdict,
        wall: StdInstant,
        tx: &mut Vec<Held>,
        counters: &mut LoopCounters,
    ) {
        match verdict {
            Verdict::ToServer { next_hop } | Verdict::ToClient { next_hop } => {
                match self.l2.lookup(next_hop, wall) {
                    Lookup::Mac(mac) => {
                        if let Some(chunk) = self.xsk.chunk_mut(held.chunk)
                            && let Some(frame) = chunk.get_mut(held.start..held.end)
                        {
                            self.l2.write_header(frame, mac);
                        }
                        tx.push(held);
                    }
                    Lookup::Wait(hop) => {
                        if let Err(held) = self.l2.hold(hop, held, wall) {
                            self.xsk
                                .drop_frame(held, Dropped::Lbd(Loss::NeighbourQueueFull));
                        }
                    }
                    Lookup::Drop(loss) => self.xsk.drop_frame(held, Dropped::Lbd(loss)),
                }
            }
            Verdict::Reply { .. } => {
                if let Some(chunk) = self.xsk.chunk_mut(held.chunk)
                    && let Some(frame) = chunk.get_mut(held.start..held.end)
                {
                    swap_macs(frame);
                }
                tx.push(held);
            }
            Verdict::Pass => {
                counters.pass_dropped += 1;
                self.xsk.drop_frame(held, Dropped::Lbd(Loss::ForHost));
            }
            Verdict::Drop(reason) => self.xsk.drop_frame(held, Dropped::Engine(reason)),
        }
    }

    /// Frames the engine makes itself (the RSTs of expiry): each into a
    /// free chunk, then on like a forwarded frame. At most `max` (never
    /// more than [`OWN_FRAMES_PER_PASS`]) a pass.
    fn transmit_own(
        &mut self,
        engine: &mut Engine,
        wall: StdInstant,
        max: usize,
        tx: &mut Vec<Held>,
        counters: &mut LoopCounters,
    ) {
        for _ in 0..max.min(OWN_FRAMES_PER_PASS) {
            let Some(chunk) = self.xsk.alloc() else {
                return;
            };
            let made = self
                .xsk
                .chunk_mut(chunk)
                .and_then(|buf| buf.get_mut(OWN_FRAME_OFFSET..FRAME_SIZE as usize))
                .and_then(|buf| engine.poll_transmit(buf));
            let Some((len, to)) = made else {
                self.xsk.release(chunk);
                return;
            };
            let held = self
                .xsk
                .own_frame(chunk, OWN_FRAME_OFFSET, OWN_FRAME_OFFSET + len);
            // Routed as a forwarded frame going the same way.
            self.route(held, Verdict::from(to), wall, tx, counters);
        }
    }
}
