//! A session's keys: its inbound and outbound key hashes and checksum
//! changes ([`SessionKeys`]), the hash of the key a packet carries
//! ([`key_hash4`], [`key_hash6`]), and the outbound key match the table's
//! candidates are checked with. Every key hash of the engine is built
//! here (the fast path's and ICMP's aside, for now), so that a packet's
//! and its session's always agree.

use core::net::IpAddr;

use super::client4_of;
use super::listeners::Listener;
use crate::hash;
use crate::lport::LocalTuple;
use crate::session::{Path, Session};
use crate::table::{Dir, Table};
use crate::wire::checksum::Delta;

/// The hash of an IPv4 key as a packet carries it, source then
/// destination, each an address and a port: the inbound key (client,
/// VIP) of a packet to a VIP, the outbound key (server, local address) of
/// one to a local address. A session's keys are hashed by it in the
/// same order ([`Listener::keys`]), so that its packets find it.
#[inline(always)]
pub(super) fn key_hash4(
    seed: u64,
    proto: u8,
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
) -> u64 {
    hash::flow4(seed, proto, src, sport, dst, dport)
}

/// [`key_hash4`] for an IPv6 key.
#[inline]
pub(super) fn key_hash6(
    seed: u64,
    proto: u8,
    (src, sport): (&[u8; 16], u16),
    (dst, dport): (&[u8; 16], u16),
) -> u64 {
    hash::flow6(seed, proto, src, sport, dst, dport)
}

/// What [`Listener::keys`] computes of a session.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionKeys {
    /// The hash of its inbound key (client, VIP).
    pub(super) in_hash: u64,
    /// The hash of its outbound key (server, local address).
    pub(super) out_hash: u64,
    /// [`Session::ip_delta`].
    pub(super) ip_delta: u16,
    /// [`Session::l4_delta`].
    pub(super) l4_delta: u16,
}

impl Listener {
    /// A session's two key hashes and the checksum changes of its inbound
    /// rewrite, from its path, addresses and ports: the one place they are
    /// computed, for a new session, a restored one and one that ends.
    /// `None` when its backend or local address is not in the listener.
    pub(super) fn keys(&self, seed: u64, s: &Session) -> Option<SessionKeys> {
        self.keys_with(seed, s, None)
    }

    /// [`Listener::keys`], with the two hashes taken from `hashes` (inbound,
    /// outbound) when the caller has them already (a new session: the
    /// packet's flow hash, and the outbound hash [`tuple_live`] computed
    /// of the tuple the port allocator chose) rather than computed again.
    /// `None` in the same cases.
    #[inline]
    pub(super) fn keys_with(
        &self,
        seed: u64,
        s: &Session,
        hashes: Option<(u64, u64)>,
    ) -> Option<SessionKeys> {
        let b = self.backends.get(s.backend as usize)?;
        let (rip, rport, vport) = (b.addr4, b.config.port, self.config.port);
        // 4to4 and 6to6: the addresses and ports change in place (no IPv6
        // header checksum, but the transport's covers the addresses).
        // 6to4: translation redoes the checksums for the addresses; only
        // the ports are ours.
        let (in_hash, ip_delta, addr_delta, out_hash) = match s.path {
            Path::FourToFour => {
                let (client, lip4) = (client4_of(s.client), self.lip4(s.lip)?);
                let (in_hash, out_hash) = hashes.unwrap_or_else(|| {
                    (
                        key_hash4(seed, s.proto, (client, s.cport), (self.vip4, vport)),
                        key_hash4(seed, s.proto, (rip, rport), (lip4, s.lport)),
                    )
                });
                let (ip_delta, l4_delta) = deltas4(b.delta4, client, lip4, s);
                return Some(SessionKeys {
                    in_hash,
                    out_hash,
                    ip_delta,
                    l4_delta,
                });
            }
            Path::SixToSix => {
                let (vip6, rip6, lip6) = (self.vip6?, b.addr6?, self.lip6(s.lip)?);
                let (in_hash, out_hash) = hashes.unwrap_or_else(|| {
                    (
                        key_hash6(seed, s.proto, (&s.client, s.cport), (&vip6, vport)),
                        key_hash6(seed, s.proto, (&rip6, rport), (&lip6, s.lport)),
                    )
                });
                (
                    in_hash,
                    Delta::default(),
                    Delta::default()
                        .addr16(&s.client, &lip6)
                        .addr16(&vip6, &rip6),
                    out_hash,
                )
            }
            Path::SixToFour => {
                let (vip6, lip4) = (self.vip6?, self.lip4(s.lip)?);
                let (in_hash, out_hash) = hashes.unwrap_or_else(|| {
                    (
                        key_hash6(seed, s.proto, (&s.client, s.cport), (&vip6, vport)),
                        key_hash4(seed, s.proto, (rip, rport), (lip4, s.lport)),
                    )
                });
                (in_hash, Delta::default(), Delta::default(), out_hash)
            }
        };
        Some(SessionKeys {
            in_hash,
            out_hash,
            ip_delta: ip_delta.folded(),
            l4_delta: addr_delta
                .word(s.cport, s.lport)
                .word(vport, rport)
                .folded(),
        })
    }
}

/// A backend's part of the checksum changes of its 4to4 sessions' inbound
/// rewrite, folded: the VIP becoming the server's address (the IPv4
/// header's), and that and the VIP's port becoming the server's port (the
/// transport's). [`Backend::delta4`](super::listeners::Backend) keeps it.
pub(super) fn backend_delta4(
    (vip, vport): ([u8; 4], u16),
    (rip, rport): ([u8; 4], u16),
) -> (u16, u16) {
    let ip = Delta::default().addr4(vip, rip);
    (ip.folded(), ip.word(vport, rport).folded())
}

/// A 4to4 session's `(ip_delta, l4_delta)`, from its backend's part
/// ([`backend_delta4`]) and its own: the client `client:s.cport`
/// becoming the local address and port `lip:s.lport`. A one's complement
/// sum folds to the same 16 bits in any grouping, so this is what the
/// whole sum folds to (`word(0xffff, x)` adds `x`).
#[inline(always)]
fn deltas4((ip, l4): (u16, u16), client: [u8; 4], lip: [u8; 4], s: &Session) -> (u16, u16) {
    let d = Delta::default().addr4(client, lip);
    (
        d.word(0xffff, ip).folded(),
        d.word(0xffff, l4).word(s.cport, s.lport).folded(),
    )
}

/// Whether a session is the one of a packet from a server to a local
/// address on port `lport`: the protocol and local port, then the
/// addresses that `server_is` compares through the session's listener.
/// The outbound lookup both families share (the table's candidates for
/// the packet's hash are checked with it).
#[inline]
pub(super) fn outbound_key(
    listeners: &[Option<Listener>],
    proto: u8,
    lport: u16,
    server_is: impl Fn(&Listener, &Session) -> bool,
) -> impl Fn(&Session) -> bool {
    move |s: &Session| {
        s.lport == lport
            && s.proto == proto
            && listeners
                .get(usize::from(s.listener))
                .and_then(Option::as_ref)
                .is_some_and(|l| server_is(l, s))
    }
}

/// [`outbound_key`] for an IPv4 server and local address (4to4, 6to4).
#[inline]
pub(super) fn outbound4(
    listeners: &[Option<Listener>],
    proto: u8,
    (rip, rport): ([u8; 4], u16),
    (lip, lport): ([u8; 4], u16),
) -> impl Fn(&Session) -> bool {
    outbound_key(listeners, proto, lport, move |l, s| {
        l.backend_addr4(s.backend) == Some((rip, rport)) && l.lip4(s.lip) == Some(lip)
    })
}

/// Whether an outbound tuple is held by a live session, and the hash of
/// its outbound key (what [`Listener::keys`] computes of a session with
/// this tuple; 0 for mixed families, which no session has). A match on
/// the index's tag and the local port is taken as live without checking
/// the rest of the key: a rare false positive only skips a free port.
pub(super) fn tuple_live(table: &Table<Session>, seed: u64, t: &LocalTuple) -> (bool, u64) {
    let h = match (t.rip, t.lip) {
        (IpAddr::V4(rip), IpAddr::V4(lip)) => key_hash4(
            seed,
            t.proto,
            (rip.octets(), t.rport),
            (lip.octets(), t.lport),
        ),
        (IpAddr::V6(rip), IpAddr::V6(lip)) => key_hash6(
            seed,
            t.proto,
            (&rip.octets(), t.rport),
            (&lip.octets(), t.lport),
        ),
        _ => return (false, 0),
    };
    let live = table
        .find(h, Dir::Out, |s| s.lport == t.lport && s.proto == t.proto)
        .is_some();
    (live, h)
}

#[cfg(test)]
mod test {
    use super::*;
    use lb_testkit::rng::Rng;

    #[test]
    fn the_backend_part_folds_to_the_whole_changes() {
        // Random words, and a quarter of them drawn from the extremes of
        // one's complement arithmetic (0, 0xffff and their mixes).
        let mut rng = Rng::new(14);
        let extremes = [0u32, 0xffff_ffff, 0x0000_ffff, 0xffff_0000, 0x0001_0000];
        let word32 = |rng: &mut Rng, edge: bool| {
            if edge {
                extremes[rng.below(extremes.len() as u64) as usize]
            } else {
                rng.next_u64() as u32
            }
        };
        for i in 0..200_000u32 {
            let edge = i % 4 == 0;
            let [client, lip, vip, rip] = [0; 4].map(|_: u8| word32(&mut rng, edge).to_be_bytes());
            let [cport, lport, vport, rport] = [0; 4].map(|_: u8| word32(&mut rng, edge) as u16);
            let whole = Delta::default().addr4(client, lip).addr4(vip, rip);
            let want = (
                whole.folded(),
                whole.word(cport, lport).word(vport, rport).folded(),
            );
            let part = backend_delta4((vip, vport), (rip, rport));
            let session = Session {
                cport,
                lport,
                ..Session::default()
            };
            assert_eq!(
                deltas4(part, client, lip, &session),
                want,
                "{client:?}:{cport} {lip:?}:{lport} {vip:?}:{vport} {rip:?}:{rport}"
            );
        }
    }
}
