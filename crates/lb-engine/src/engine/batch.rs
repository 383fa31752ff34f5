//! The packet path's entry points: [`Engine::handle_packet`] and
//! [`Engine::handle_batch`], which parse, dispatch and count each frame.

use super::classify::{Net, Packet, Parsed};
use super::fast::FastPacket;
use super::{CACHED_SESSIONS, Engine};
use crate::frame::Frame;
use crate::table::Dir;
use crate::time::Instant;
use crate::verdict::Verdict;
use crate::wire;

impl Engine {
    /// Process one frame; see [`Verdict`].
    pub fn handle_packet(&mut self, now: Instant, frame: &mut Frame<'_>) -> Verdict {
        self.latest = self.latest.max(now);
        match self.fast_parse(frame) {
            Some(p) => {
                let mut verdict = Verdict::Pass;
                match self.fast_forward(now, frame, &p, &mut verdict) {
                    Ok(()) => verdict,
                    Err(found) => self.fast_decline(now, frame, p, found),
                }
            }
            None => {
                let parsed = self.parse(frame);
                self.finish(now, frame, &parsed, None)
            }
        }
    }

    /// [`Engine::handle_packet`] once `latest` is set, into `verdict`: the
    /// fast path if it takes the frame, the general path otherwise. (Each
    /// path writes the verdict itself: merged, the verdicts of a call and
    /// of the fast path would meet in a copy through the stack. For the
    /// same reason `handle_packet` returns the general path's as it is.)
    #[inline(always)]
    fn packet(&mut self, now: Instant, frame: &mut Frame<'_>, verdict: &mut Verdict) {
        match self.fast_parse(frame) {
            Some(p) => self.fast_into(now, frame, &p, verdict),
            None => *verdict = self.general(now, frame),
        }
    }

    /// [`Engine::parse`], cold: see [`Engine::general`].
    #[cold]
    #[inline(never)]
    fn parse_cold(&self, frame: &mut Frame<'_>) -> Result<Packet, Verdict> {
        self.parse(frame)
    }

    /// [`Engine::finish`] of a frame the fast path did not read, cold: see
    /// [`Engine::general`].
    #[cold]
    #[inline(never)]
    fn finish_cold(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        parsed: &Result<Packet, Verdict>,
    ) -> Verdict {
        self.finish(now, frame, parsed, None)
    }

    /// The general path for a frame the fast path does not read: cold in
    /// a batch, so that the fast path's spills stay off its own path.
    #[cold]
    #[inline(never)]
    fn general(&mut self, now: Instant, frame: &mut Frame<'_>) -> Verdict {
        let parsed = self.parse(frame);
        self.finish(now, frame, &parsed, None)
    }

    /// The fast path's outcome for a frame it read, into `verdict`.
    #[inline(always)]
    fn fast_into(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &FastPacket,
        verdict: &mut Verdict,
    ) {
        if let Err(found) = self.fast_forward(now, frame, p, verdict) {
            *verdict = self.fast_decline(now, frame, *p, found);
        }
    }

    /// Process a batch of frames, writing `verdicts[i]` for `frames[i]`
    /// (extra frames or verdicts are left alone). The same result as
    /// [`Engine::handle_packet`] on each frame in order; faster, because
    /// the table's memory is touched for the whole batch before any
    /// packet is processed, so that cache misses overlap.
    pub fn handle_batch(
        &mut self,
        now: Instant,
        frames: &mut [Frame<'_>],
        verdicts: &mut [Verdict],
    ) {
        const CHUNK: usize = 32;
        self.latest = self.latest.max(now);
        let mut start = 0;
        while start < frames.len().min(verdicts.len()) {
            let end = (start + CHUNK).min(frames.len()).min(verdicts.len());
            let (Some(chunk), Some(out)) =
                (frames.get_mut(start..end), verdicts.get_mut(start..end))
            else {
                break;
            };
            // With few sessions the table is in the caches already, and
            // touching it ahead would only cost instructions.
            if self.table.len() <= CACHED_SESSIONS {
                self.chunk_cached(now, chunk, out);
            } else {
                self.chunk_touched(now, chunk, out);
            }
            start = end;
        }
    }

    /// [`Engine::handle_batch`]'s work on a chunk of frames whose sessions
    /// are taken to be in the caches: each frame in turn. (A function of
    /// its own, so that the per-packet loop gets the registers to itself.)
    #[inline(never)]
    fn chunk_cached(&mut self, now: Instant, chunk: &mut [Frame<'_>], out: &mut [Verdict]) {
        for (frame, verdict) in chunk.iter_mut().zip(out.iter_mut()) {
            self.packet(now, frame, verdict);
        }
    }

    /// [`Engine::handle_batch`]'s work on a chunk of at most 32 frames
    /// (more are left alone) in a large table: 1. parse and hash every
    /// frame; 2. load each home slot of the index; 3. find each candidate
    /// entry and load it; 4. do the work, by now mostly from cache.
    #[inline(never)]
    fn chunk_touched(&mut self, now: Instant, chunk: &mut [Frame<'_>], out: &mut [Verdict]) {
        let mut parsed = [Parsed::General(Err(Verdict::Pass)); 32];
        let chunk_len = chunk.len().min(parsed.len());
        // Each arm stores its own variant: merged, the two would meet in a
        // copy of the whole (large) enum.
        for (frame, p) in chunk.iter_mut().zip(parsed.iter_mut()) {
            match self.fast_parse(frame) {
                Some(fast) => *p = Parsed::Fast(fast),
                None => *p = Parsed::General(self.parse_cold(frame)),
            }
        }
        // Tight loops, so that the out-of-order window holds many of these
        // loads at once and their misses overlap.
        let mut sink = 0u64;
        for p in parsed.iter().take(chunk_len) {
            if let Some((hash, _)) = p.key() {
                sink ^= self.table.touch(hash);
            }
        }
        for p in parsed.iter().take(chunk_len) {
            if let Some(id) = p.key().and_then(|(h, dir)| self.table.candidate(h, dir)) {
                sink ^= u64::from(self.table.touch_entry(id, |s| s.flags));
            }
        }
        core::hint::black_box(sink);
        for ((frame, verdict), p) in chunk.iter_mut().zip(out.iter_mut()).zip(&parsed) {
            match p {
                Parsed::Fast(fast) => self.fast_into(now, frame, fast, verdict),
                Parsed::General(general) => *verdict = self.finish_cold(now, frame, general),
            }
        }
    }

    /// Count a verdict that is a drop or a pass.
    #[inline]
    pub(super) fn count(&mut self, verdict: Verdict) -> Verdict {
        match verdict {
            Verdict::Drop(reason) => self.counters.drop(reason),
            Verdict::Pass => self.counters.passed += 1,
            _ => {}
        }
        verdict
    }

    /// Act on a parsed frame, and count the verdict. `found` is the
    /// session lookup already made for a packet to a VIP, if one was (the
    /// fast path's, [`Engine::inbound`]).
    #[inline]
    pub(super) fn finish(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        parsed: &Result<Packet, Verdict>,
        found: Option<Option<u32>>,
    ) -> Verdict {
        let verdict = match parsed {
            Err(verdict) => *verdict,
            Ok(p) => {
                let result = match (&p.net, p.dir) {
                    (Net::V4(ip), dir) if ip.proto == wire::PROTO_ICMP => {
                        Ok(self.icmp4(frame, ip, dir))
                    }
                    (Net::V6(ip6), dir) if ip6.proto == wire::PROTO_ICMPV6 => {
                        Ok(self.icmp6(frame, ip6, dir))
                    }
                    (_, Dir::In) => self.inbound(now, frame, p, found),
                    (_, Dir::Out) => self.outbound(now, frame, p),
                };
                result.unwrap_or_else(Verdict::Drop)
            }
        };
        self.count(verdict)
    }
}
