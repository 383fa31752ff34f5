//! What became of every frame a queue handled: the counts behind the
//! accounting identity that the metrics publish (see [`crate::metrics`]).
//!
//! A frame comes to a queue's loop in one of two ways: taken from the
//! socket's RX ring (*received*), or made by `lbd` itself, the RSTs of
//! expiry (*own*). Either way it ends in exactly one of three places: on
//! the TX ring (*sent*), dropped for one reason, or still held by `lbd`
//! (waiting for its next hop's MAC address, or for room in the TX ring).
//! So, per queue and per origin, at every moment between two passes of
//! the loop:
//!
//! ```text
//! received + handed in = sent + Σ dropped by reason + held now + handed out
//! own                  = sent + Σ dropped by reason + held now
//! ```
//!
//! With several queues, a received frame that another queue's engine owns
//! is *handed out* to it (see [`crate::handoff`]) and *handed in* there:
//! it leaves one queue's ledger and enters the other's. Summed over the
//! queues, the handed-out frames equal the handed-in ones plus those in
//! the rings between queues at that moment. Own frames are never handed
//! over (the engine that makes one holds its session).
//!
//! The socket ([`crate::xsk::Xsk`]) keeps the [`Ledger`]: every received
//! frame is counted as it is taken from the RX ring, every own frame as it
//! is made, and a held frame leaves `lbd` only through the socket, either
//! onto the TX ring or dropped with a [`Loss`]. The frames held are counted
//! where they wait (the neighbour queue and the TX backlog), not derived,
//! so that a frame lost without a count breaks the identity.

use lb_engine::DropReason;

/// Where a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Taken from the RX ring.
    Received,
    /// Made by `lbd` (an RST of expiry).
    Own,
}

impl Origin {
    /// Both origins, in index order.
    pub const ALL: [Origin; 2] = [Origin::Received, Origin::Own];

    /// The metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Origin::Received => "received",
            Origin::Own => "own",
        }
    }

    /// The index into per-origin arrays.
    pub const fn index(self) -> usize {
        match self {
            Origin::Received => 0,
            Origin::Own => 1,
        }
    }
}

macro_rules! losses {
    ($($(#[doc = $doc:literal])* $name:ident = $label:literal,)*) => {
        /// Why `lbd` itself dropped a frame: after the engine's verdict,
        /// or without one. The engine's own reasons are [`DropReason`]s.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Loss {
            $($(#[doc = $doc])* $name,)*
        }

        impl Loss {
            /// Every reason, in index order.
            pub const ALL: &'static [Loss] = &[$(Loss::$name,)*];

            /// The number of reasons.
            pub const COUNT: usize = Loss::ALL.len();

            /// The metrics label (distinct from every engine reason's).
            pub const fn label(self) -> &'static str {
                match self {
                    $(Loss::$name => $label,)*
                }
            }

            /// The index into per-reason arrays, `0..COUNT`.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

losses! {
    /// The engine said to pass the frame to the host's stack, which `lbd`
    /// cannot do with a frame from its socket (an echo request to a local
    /// address, say: the XDP program sends `lbd` everything for its
    /// addresses).
    ForHost = "for_host",
    /// No route to the next hop leads out of the interface.
    NoRoute = "no_route",
    /// The kernel's route or neighbour table could not be read.
    NetlinkError = "netlink_error",
    /// The next hop was being resolved and its queue (or the queues of
    /// every next hop together) was full.
    NeighbourQueueFull = "neighbour_queue_full",
    /// The next hop did not resolve in time.
    NoNeighbour = "no_neighbour",
    /// The TX ring was full and so was the backlog behind it.
    TxFull = "tx_full",
    /// The frame's owner is another queue, and the ring to it was full.
    HandoffFull = "handoff_full",
    /// The frame broke the UMEM bookkeeping (a descriptor outside the
    /// UMEM, a frame too long for its chunk): 0 unless something is wrong.
    Bookkeeping = "bookkeeping",
}

/// Why a frame was dropped: the engine's verdict or `lbd`'s own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// The engine's verdict.
    Engine(DropReason),
    /// `lbd`'s reason.
    Lbd(Loss),
}

/// What became of the frames of one origin on one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Frames put on the TX ring.
    pub sent: u64,
    /// Frames dropped by the engine's verdict, by [`DropReason::index`]
    /// (always 0 for own frames, which the engine makes, not judges).
    pub engine: [u64; DropReason::COUNT],
    /// Frames dropped by `lbd`, by [`Loss::index`].
    pub lbd: [u64; Loss::COUNT],
    /// Frames held now: waiting for a next hop, or in the TX backlog.
    pub held: u64,
    /// Frames handed to the queue that owns them.
    pub handed_out: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            sent: 0,
            engine: [0; DropReason::COUNT],
            lbd: [0; Loss::COUNT],
            held: 0,
            handed_out: 0,
        }
    }
}

impl Tally {
    /// Frames dropped, for every reason.
    pub fn dropped(&self) -> u64 {
        self.engine.iter().sum::<u64>() + self.lbd.iter().sum::<u64>()
    }

    /// The frames dropped for `why`.
    pub fn dropped_for(&self, why: Dropped) -> u64 {
        match why {
            Dropped::Engine(r) => self.engine.get(r.index()).copied().unwrap_or(0),
            Dropped::Lbd(l) => self.lbd.get(l.index()).copied().unwrap_or(0),
        }
    }

    /// Sent, dropped, held and handed out: equal to the frames that came,
    /// when every one is accounted for.
    pub fn accounted(&self) -> u64 {
        self.sent + self.dropped() + self.held + self.handed_out
    }
}

/// The counts of one queue (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Frames taken from the RX ring.
    pub received: u64,
    /// Frames `lbd` made.
    pub own: u64,
    /// Frames another queue received and handed to this one, its owner.
    pub handed_in: u64,
    /// What became of the received frames, and of the own ones, by
    /// [`Origin::index`].
    pub fate: [Tally; 2],
}

impl Ledger {
    /// What became of the frames of `origin`.
    pub fn tally(&self, origin: Origin) -> &Tally {
        match origin {
            Origin::Received => &self.fate[0],
            Origin::Own => &self.fate[1],
        }
    }

    fn tally_mut(&mut self, origin: Origin) -> &mut Tally {
        match origin {
            Origin::Received => &mut self.fate[0],
            Origin::Own => &mut self.fate[1],
        }
    }

    /// The frames that came from `origin` (received ones: here or, handed
    /// in, on another queue).
    pub fn came(&self, origin: Origin) -> u64 {
        match origin {
            Origin::Received => self.received + self.handed_in,
            Origin::Own => self.own,
        }
    }

    /// Count frames put on the TX ring.
    pub fn sent(&mut self, origin: Origin, n: u64) {
        self.tally_mut(origin).sent += n;
    }

    /// Count a frame handed to another queue.
    pub fn handed_out(&mut self, origin: Origin) {
        self.tally_mut(origin).handed_out += 1;
    }

    /// Count a frame dropped.
    pub fn dropped(&mut self, origin: Origin, why: Dropped) {
        let t = self.tally_mut(origin);
        let n = match why {
            Dropped::Engine(r) => t.engine.get_mut(r.index()),
            Dropped::Lbd(l) => t.lbd.get_mut(l.index()),
        };
        if let Some(n) = n {
            *n += 1;
        }
    }

    /// Set the frames of `origin` held now.
    pub fn set_held(&mut self, origin: Origin, n: u64) {
        self.tally_mut(origin).held = n;
    }

    /// Frames that came and are not accounted for (positive), or
    /// accounted for twice (negative): 0 for both origins when the
    /// identity holds.
    pub fn unaccounted(&self, origin: Origin) -> i128 {
        i128::from(self.came(origin)) - i128::from(self.tally(origin).accounted())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn labels_are_distinct_from_the_engines() {
        for l in Loss::ALL {
            assert!(
                DropReason::ALL.iter().all(|r| r.label() != l.label()),
                "{l:?}"
            );
        }
        for (i, l) in Loss::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
        }
    }

    #[test]
    fn identity() {
        let mut l = Ledger {
            received: 5,
            own: 2,
            ..Ledger::default()
        };
        l.sent(Origin::Received, 2);
        l.dropped(Origin::Received, Dropped::Engine(DropReason::NoSession));
        l.dropped(Origin::Received, Dropped::Lbd(Loss::TxFull));
        assert_eq!(l.unaccounted(Origin::Received), 1);
        l.set_held(Origin::Received, 1);
        assert_eq!(l.unaccounted(Origin::Received), 0);
        assert_eq!(l.unaccounted(Origin::Own), 2);
        l.sent(Origin::Own, 1);
        l.dropped(Origin::Own, Dropped::Lbd(Loss::NoRoute));
        assert_eq!(l.unaccounted(Origin::Own), 0);
        l.handed_in += 2;
        assert_eq!(l.unaccounted(Origin::Received), 2);
        l.handed_out(Origin::Received);
        l.sent(Origin::Received, 1);
        assert_eq!(l.unaccounted(Origin::Received), 0);
        let t = l.tally(Origin::Received);
        assert_eq!(t.dropped_for(Dropped::Lbd(Loss::TxFull)), 1);
        assert_eq!(t.dropped_for(Dropped::Engine(DropReason::NoSession)), 1);
        assert_eq!(t.dropped(), 2);
    }
}
