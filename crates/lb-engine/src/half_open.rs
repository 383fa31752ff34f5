//! [`HalfOpen`]: the TCP sessions whose client has not yet acknowledged the
//! server's SYN-ACK, oldest first, so that a SYN that meets a full table
//! can take the place of the oldest of them in O(1).
//!
//! An intrusive doubly-linked list kept beside the session table, in an
//! array indexed by session id: 8 bytes a session (`prev` and `next`), so
//! that the 64-byte session stays one cache line. The engine links a TCP
//! session when it makes it, and unlinks it when the handshake completes
//! or the session ends. Linking, unlinking and finding the oldest each
//! read or write the entry, its two neighbours and the ends of the list:
//! no scan, whatever the number of sessions.
//!
//! Invariants: an id is in the list exactly when it is the head or its
//! `prev` is not [`NIL`]; the list's `len` ids are reached from `head` by
//! `next` and from `tail` by `prev`; an id not in the list has both links
//! [`NIL`]. Every operation checks its id against the array and treats an
//! id that is not (or already) in the list as a no-op, so no call can
//! corrupt the list or panic.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::mem::size_of;

/// No entry: the end of the list, or a link of an id not in it.
const NIL: u32 = u32::MAX;

/// One id's place in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    /// The next older id, or [`NIL`] at the head.
    prev: u32,
    /// The next newer id, or [`NIL`] at the tail.
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

/// The half-open TCP sessions, oldest first. See the module documentation.
#[derive(Debug)]
pub(crate) struct HalfOpen {
    /// `links[id]`, one per possible session id.
    links: Vec<Link>,
    /// The oldest id, or [`NIL`].
    head: u32,
    /// The newest id, or [`NIL`].
    tail: u32,
    len: u32,
}

impl HalfOpen {
    /// An empty list for session ids `0..capacity`, with its whole array
    /// allocated now.
    pub(crate) fn with_capacity(capacity: u32) -> Result<HalfOpen, TryReserveError> {
        let n = usize::try_from(capacity).unwrap_or(usize::MAX);
        let mut links = Vec::new();
        links.try_reserve_exact(n)?;
        links.resize(n, UNLINKED);
        Ok(HalfOpen {
            links,
            head: NIL,
            tail: NIL,
            len: 0,
        })
    }

    /// Bytes allocated: 8 per session id.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.links.capacity().saturating_mul(size_of::<Link>())
    }

    /// The oldest id, if any.
    pub(crate) fn oldest(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Whether `id` is in the list.
    pub(crate) fn contains(&self, id: u32) -> bool {
        id != NIL
            && self
                .links
                .get(id as usize)
                .is_some_and(|l| l.prev != NIL || self.head == id)
    }

    /// Add `id` as the newest; nothing if it is in the list already or
    /// beyond the capacity.
    pub(crate) fn push(&mut self, id: u32) {
        let (head, tail) = (self.head, self.tail);
        let Some(l) = self.links.get_mut(id as usize) else {
            return;
        };
        // In the list already (as `contains` tells).
        if l.prev != NIL || head == id {
            return;
        }
        *l = Link {
            prev: tail,
            next: NIL,
        };
        match self.links.get_mut(tail as usize) {
            Some(t) => t.next = id,
            None => self.head = id,
        }
        self.tail = id;
        self.len += 1;
    }

    /// Take `id` out of the list; nothing if it is not in it.
    pub(crate) fn remove(&mut self, id: u32) {
        if !self.contains(id) {
            return;
        }
        let Some(&Link { prev, next }) = self.links.get(id as usize) else {
            return;
        };
        match self.links.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.links.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        if let Some(l) = self.links.get_mut(id as usize) {
            *l = UNLINKED;
        }
        self.len -= 1;
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::collections::VecDeque;

    /// The ids from oldest to newest, walked both ways, checked against
    /// `len` and against each other.
    fn walk(h: &HalfOpen) -> Vec<u32> {
        let mut forward = Vec::new();
        let mut at = h.head;
        while at != NIL {
            forward.push(at);
            assert!(forward.len() <= h.links.len(), "a cycle");
            at = h.links[at as usize].next;
        }
        let mut backward = Vec::new();
        let mut at = h.tail;
        while at != NIL {
            backward.push(at);
            assert!(backward.len() <= h.links.len(), "a cycle");
            at = h.links[at as usize].prev;
        }
        backward.reverse();
        assert_eq!(forward, backward);
        assert_eq!(forward.len(), h.len as usize);
        for id in 0..h.links.len() as u32 {
            assert_eq!(h.contains(id), forward.contains(&id), "{id}");
            if !forward.contains(&id) {
                assert_eq!(h.links[id as usize], UNLINKED, "{id}");
            }
        }
        forward
    }

    #[test]
    fn fifo_order_and_removal_anywhere() {
        let mut h = HalfOpen::with_capacity(8).unwrap();
        assert_eq!(h.oldest(), None);
        for id in [5, 2, 7, 0] {
            h.push(id);
        }
        assert_eq!(walk(&h), [5, 2, 7, 0]);
        assert_eq!(h.oldest(), Some(5));
        h.push(2); // in the list already: stays where it is
        h.push(8); // beyond the capacity
        h.push(NIL);
        assert_eq!(walk(&h), [5, 2, 7, 0]);
        h.remove(7); // the middle
        assert_eq!(walk(&h), [5, 2, 0]);
        h.remove(0); // the newest
        assert_eq!(walk(&h), [5, 2]);
        h.remove(5); // the oldest
        assert_eq!(walk(&h), [2]);
        assert_eq!(h.oldest(), Some(2));
        h.remove(5); // not in the list
        h.remove(NIL);
        h.remove(100);
        assert_eq!(walk(&h), [2]);
        h.remove(2);
        assert_eq!(walk(&h), []);
        assert_eq!((h.oldest(), h.head, h.tail), (None, NIL, NIL));
        h.push(2);
        assert_eq!(walk(&h), [2]);
    }

    /// Random pushes and removals agree with a `VecDeque` model.
    #[test]
    fn agrees_with_a_model() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n) as u32
        };
        let mut h = HalfOpen::with_capacity(40).unwrap();
        let mut model: VecDeque<u32> = VecDeque::new();
        for step in 0..20_000 {
            let id = next(44);
            match next(3) {
                0 | 1 => {
                    h.push(id);
                    if id < 40 && !model.contains(&id) {
                        model.push_back(id);
                    }
                }
                _ => {
                    let take = if next(2) == 0 {
                        h.oldest().unwrap_or(id)
                    } else {
                        id
                    };
                    h.remove(take);
                    model.retain(|&m| m != take);
                }
            }
            assert_eq!(h.oldest(), model.front().copied(), "step {step}");
            if step % 97 == 0 {
                assert_eq!(walk(&h), model.iter().copied().collect::<Vec<_>>());
            }
        }
    }

    /// O(1) by construction: whatever the length of the list, pushing,
    /// removing (the oldest or any other) and finding the oldest change at
    /// most the entry itself and its two neighbours' links.
    #[test]
    fn each_operation_touches_at_most_three_links() {
        for n in [1u32, 2, 3, 10, 1000] {
            let mut h = HalfOpen::with_capacity(n + 1).unwrap();
            for id in 0..n {
                let before = h.links.clone();
                h.push(id);
                assert!(changed(&before, &h.links) <= 2, "push into {id}");
            }
            for victim in [n / 2, 0, n - 1] {
                let before = h.links.clone();
                let oldest = h.oldest();
                assert_eq!(h.links, before, "oldest() writes nothing");
                let id = if victim == 0 {
                    oldest.unwrap_or(0)
                } else {
                    victim
                };
                h.remove(id);
                assert!(changed(&before, &h.links) <= 3, "remove {id} of {n}");
            }
        }
    }

    fn changed(a: &[Link], b: &[Link]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn eight_bytes_per_session() {
        assert_eq!(size_of::<Link>(), 8);
        let h = HalfOpen::with_capacity(1000).unwrap();
        assert_eq!(h.memory_bytes(), 8000);
    }
}
