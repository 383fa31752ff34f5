//! Layer 2 for forwarded frames: the next hop's MAC address, from the
//! kernel's route and neighbour tables, with a small cache per queue, and a
//! bounded wait for next hops still being resolved.
//!
//! A destination's answer is cached for [`TTL`] and then asked again, so a
//! changed route or MAC address is followed within that time. While a next
//! hop is resolved (the kernel sends the ARP request or neighbour
//! solicitation), up to `queue_limit` frames wait for it; more are dropped
//! and counted, and frames still waiting after [`GIVE_UP`] are dropped and
//! counted too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ledger::Loss;
use crate::netlink::Rtnl;
use crate::xsk::Held;

/// How long a destination's next hop and MAC address are trusted.
pub const TTL: Duration = Duration::from_secs(10);
/// How long frames wait for a next hop to resolve.
pub const GIVE_UP: Duration = Duration::from_secs(3);
/// How often a waiting next hop is asked about again.
const RECHECK: Duration = Duration::from_millis(5);
/// Destinations cached at most; the cache is emptied when it is full.
const CACHE_LIMIT: usize = 1 << 16;
/// How long a destination with no route out of our interface is
/// remembered as such, so that a flood of packets toward it costs one
/// netlink request a second, not one a packet.
const UNREACHABLE_TTL: Duration = Duration::from_secs(1);
/// Frames held for unresolved next hops, at most, over all next hops: a
/// scan of unresolvable addresses must not take the chunks the fill ring
/// needs.
pub const HELD_LIMIT: usize = 512;

/// What [`L2::lookup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Send to this MAC address.
    Mac([u8; 6]),
    /// The next hop is being resolved: hold the frame with [`L2::hold`].
    Wait(IpAddr),
    /// Drop, for this reason: no route out of our interface
    /// ([`Loss::NoRoute`]), or the kernel's tables could not be read
    /// ([`Loss::NetlinkError`]).
    Drop(Loss),
}

/// Counters of neighbour resolution.
#[derive(Debug, Clone, Copy, Default)]
pub struct L2Counters {
    /// Next hops resolved while frames waited.
    pub resolved: u64,
    /// Frames that waited for a next hop.
    pub queued: u64,
    /// Frames dropped because their next hop's queue was full.
    pub queue_dropped: u64,
    /// Frames dropped because their next hop did not resolve in time.
    pub unresolved_dropped: u64,
    /// Frames dropped because no route leads out of our interface.
    pub unreachable: u64,
    /// Netlink requests that failed.
    pub netlink_errors: u64,
}

#[derive(Debug, Clone, Copy)]
struct Hop {
    /// `None`: no route out of our interface.
    mac: Option<[u8; 6]>,
    checked: Instant,
}

#[derive(Debug)]
struct Waiting {
    frames: Vec<Held>,
    since: Instant,
    checked: Instant,
}

/// The next-hop resolver of one queue.
pub struct L2 {
    rtnl: Rtnl,
    ifindex: u32,
    mac: [u8; 6],
    hops: HashMap<IpAddr, Hop>,
    waiting: HashMap<IpAddr, Waiting>,
    /// Frames in `waiting`, over all next hops, by [`Origin::index`].
    held_by_origin: [u64; 2],
    queue_limit: usize,
    counters: L2Counters,
}

impl L2 {
    /// A resolver for frames leaving by `ifindex`, whose MAC is `mac`.
    ///
    /// # Errors
    /// No netlink socket.
    pub fn new(ifindex: u32, mac: [u8; 6], queue_limit: usize) -> std::io::Result<L2> {
        Ok(L2 {
            rtnl: Rtnl::new()?,
            ifindex,
            mac,
            hops: HashMap::new(),
            waiting: HashMap::new(),
            held_by_origin: [0; 2],
            queue_limit,
            counters: L2Counters::default(),
        })
    }

    /// Our interface's MAC address (the source of every frame sent).
    pub fn own_mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The counters.
    pub fn counters(&self) -> L2Counters {
        self.counters
    }

    /// Where a frame for `dst` goes.
    pub fn lookup(&mut self, dst: IpAddr, now: Instant) -> Lookup {
        if let Some(hop) = self.hops.get(&dst) {
            match hop.mac {
                Some(mac) if now.duration_since(hop.checked) < TTL => return Lookup::Mac(mac),
                None if now.duration_since(hop.checked) < UNREACHABLE_TTL => {
                    self.counters.unreachable += 1;
                    return Lookup::Drop(Loss::NoRoute);
                }
                _ => {}
            }
        }
        let route = match self.rtnl.route(dst) {
            Ok(Some(r)) if r.ifindex == self.ifindex => r,
            Ok(_) => {
                self.remember(dst, None, now);
                self.counters.unreachable += 1;
                return Lookup::Drop(Loss::NoRoute);
            }
            Err(_) => {
                self.counters.netlink_errors += 1;
                return Lookup::Drop(Loss::NetlinkError);
            }
        };
        match self.rtnl.neighbour(route.next_hop, self.ifindex) {
            Ok(Some(mac)) => {
                self.remember(dst, Some(mac), now);
                Lookup::Mac(mac)
            }
            Ok(None) => {
                if !self.waiting.contains_key(&route.next_hop)
                    && self.rtnl.resolve(route.next_hop, self.ifindex).is_err()
                {
                    self.counters.netlink_errors += 1;
                }
                Lookup::Wait(route.next_hop)
            }
            Err(_) => {
                self.counters.netlink_errors += 1;
                Lookup::Drop(Loss::NetlinkError)
            }
        }
    }

    fn remember(&mut self, dst: IpAddr, mac: Option<[u8; 6]>, now: Instant) {
        if self.hops.len() >= CACHE_LIMIT {
            self.hops.clear();
        }
        self.hops.insert(dst, Hop { mac, checked: now });
    }

    /// Hold `frame` until `next_hop` resolves; gives it back (to be dropped,
    /// and counted here) if that next hop's queue is full, or if
    /// [`HELD_LIMIT`] frames are held already.
    pub fn hold(&mut self, next_hop: IpAddr, frame: Held, now: Instant) -> Result<(), Held> {
        if self.held() >= HELD_LIMIT {
            self.counters.queue_dropped += 1;
            return Err(frame);
        }
        let w = self.waiting.entry(next_hop).or_insert_with(|| Waiting {
            frames: Vec::new(),
            since: now,
            checked: now,
        });
        if w.frames.len() >= self.queue_limit {
            self.counters.queue_dropped += 1;
            return Err(frame);
        }
        self.counters.queued += 1;
        w.frames.push(frame);
        if let Some(n) = self.held_by_origin.get_mut(frame.origin.index()) {
            *n += 1;
        }
        Ok(())
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        usize::try_from(self.held_by_origin.iter().sum::<u64>()).unwrap_or(usize::MAX)
    }

    /// Frames held now, by [`crate::ledger::Origin::index`].
    pub fn held_by_origin(&self) -> [u64; 2] {
        self.held_by_origin
    }

    /// Ask again about next hops frames wait for: frames whose next hop
    /// resolved go to `ready` with its MAC address, no more than `max` of
    /// them (the next hops whose frames would pass `max` are asked about
    /// in a later call); frames that waited too long go to `expired`.
    pub fn poll(
        &mut self,
        now: Instant,
        max: usize,
        ready: &mut Vec<(Held, [u8; 6])>,
        expired: &mut Vec<Held>,
    ) {
        if self.waiting.is_empty() {
            return;
        }
        let mut done = Vec::new();
        for (next_hop, w) in &mut self.waiting {
            if now.duration_since(w.checked) < RECHECK {
                continue;
            }
            let late = now.duration_since(w.since) >= GIVE_UP;
            // Without room to send them should it have resolved, they are
            // asked about next time (the TX ring is full; they wait longer
            // only while it stays so), but never past GIVE_UP.
            let room = ready.len() + w.frames.len() <= max;
            if !room && !late {
                continue;
            }
            w.checked = now;
            let mac = if room {
                match self.rtnl.neighbour(*next_hop, self.ifindex) {
                    Ok(mac) => mac,
                    // Netlink failing: the frames wait no longer than
                    // GIVE_UP either way.
                    Err(_) => {
                        self.counters.netlink_errors += 1;
                        None
                    }
                }
            } else {
                None
            };
            if mac.is_none() && !late {
                continue;
            }
            for f in &w.frames {
                if let Some(n) = self.held_by_origin.get_mut(f.origin.index()) {
                    *n -= 1;
                }
            }
            match mac {
                Some(mac) => {
                    self.counters.resolved += 1;
                    ready.extend(w.frames.drain(..).map(|f| (f, mac)));
                }
                None => {
                    self.counters.unresolved_dropped += w.frames.len() as u64;
                    expired.append(&mut w.frames);
                }
            }
            done.push(*next_hop);
        }
        for hop in done {
            self.waiting.remove(&hop);
        }
    }

    /// Write the Ethernet addresses of a frame going to `mac`.
    pub fn write_header(&self, frame: &mut [u8], mac: [u8; 6]) {
        if let Some(dst) = frame.get_mut(0..6) {
            dst.copy_from_slice(&mac);
        }
        if let Some(src) = frame.get_mut(6..12) {
            src.copy_from_slice(&self.mac);
        }
    }
}

/// Swap a frame's Ethernet source and destination (an echo reply).
pub fn swap_macs(frame: &mut [u8]) {
    if let Some(head) = frame.get_mut(0..12) {
        let (dst, src) = head.split_at_mut(6);
        dst.swap_with_slice(src);
    }
}
