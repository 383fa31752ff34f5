//! Classification of a frame: the headers checked, the direction (to a
//! VIP or to a local address), the listener and the flow hash
//! ([`Packet`]); nothing here touches the session table.

use super::keys::{key_hash4, key_hash6};
use super::listeners::{listener_key, port_proto};
use super::{Engine, ListenerId, u32_of};
use crate::frame::Frame;
use crate::table::Dir;
use crate::tcp_edit::{Family, Headers};
use crate::verdict::{DropReason, Verdict};
use crate::wire::checksum;
use crate::wire::ipv6::{self, Ipv6};
use crate::wire::{self, Ipv4, L4, ipv4, tcp_flags};

/// What [`Engine::parse`] learned of a frame for us.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packet {
    pub(super) net: Net,
    pub(super) l4: L4,
    pub(super) dir: Dir,
    /// The listener, for a packet to a VIP.
    pub(super) listener: ListenerId,
    /// The flow hash of the packet's 5-tuple as received.
    pub(super) hash: u64,
}

/// A frame of a batch, read by the fast path's parser or else the general
/// one ([`Engine::handle_batch`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Parsed {
    Fast(super::fast::FastPacket),
    General(Result<Packet, Verdict>),
}

impl Parsed {
    /// The flow hash and direction to look the session up by.
    pub(super) fn key(&self) -> Option<(u64, Dir)> {
        match self {
            Parsed::Fast(p) => Some((p.hash, p.dir)),
            Parsed::General(Ok(p)) => Some((p.hash, p.dir)),
            Parsed::General(Err(_)) => None,
        }
    }
}

/// The network header of a packet for us.
#[derive(Debug, Clone, Copy)]
pub(super) enum Net {
    V4(Ipv4),
    /// IPv6, to an IPv6 VIP (6to4 listeners).
    V6(Ipv6),
}

/// Where a packet's TCP header is, for `tcp_edit`.
pub(super) trait TcpAt {
    fn headers(&self) -> Headers;
}

impl TcpAt for Ipv4 {
    fn headers(&self) -> Headers {
        Headers {
            family: Family::V4,
            l3: self.off,
            l4: self.l4_off(),
        }
    }
}

impl TcpAt for Ipv6 {
    fn headers(&self) -> Headers {
        Headers {
            family: Family::V6,
            l3: self.off,
            l4: self.l4_off,
        }
    }
}

impl Engine {
    /// Read a frame and decide everything that needs no table: `Err` with
    /// the verdict for a frame that is not ours or is dropped on its
    /// headers alone; otherwise the packet, its direction, its listener
    /// (inbound) and its flow hash. Cuts Ethernet padding off the frame.
    #[inline]
    pub(super) fn parse(&self, frame: &mut Frame<'_>) -> Result<Packet, Verdict> {
        let bytes = frame.bytes();
        let (ethertype, l3) = wire::ethernet(bytes).map_err(Verdict::Drop)?;
        if ethertype == wire::ETHERTYPE_IPV6 {
            return self.parse6(frame, l3);
        }
        if ethertype != wire::ETHERTYPE_IPV4 {
            return Err(Verdict::Pass);
        }
        let ip = Ipv4::parse(bytes, l3).map_err(Verdict::Drop)?;
        let dst = u32_of(ip.dst);
        let to_vip = self.vips.binary_search(&dst).is_ok();
        if !to_vip && self.locals.binary_search(&dst).is_err() {
            return Err(Verdict::Pass);
        }
        if ip.hlen != ipv4::HEADER_LEN {
            return Err(Verdict::Drop(DropReason::IpOptions));
        }
        if ip.fragment {
            return Err(Verdict::Drop(DropReason::Fragment));
        }
        if !ip.checksum_ok {
            return Err(Verdict::Drop(DropReason::BadIpChecksum));
        }
        frame.truncate(l3 + ip.total);
        let bytes = frame.bytes();
        let l4 = match ip.proto {
            wire::PROTO_TCP => L4::tcp(bytes, ip.l4_off(), ip.l4_len()),
            wire::PROTO_UDP => L4::udp(bytes, ip.l4_off(), ip.l4_len()),
            wire::PROTO_ICMP => {
                return Ok(Packet {
                    net: Net::V4(ip),
                    l4: L4::default(),
                    dir: if to_vip { Dir::In } else { Dir::Out },
                    listener: 0,
                    hash: 0,
                });
            }
            _ => return Err(Verdict::Drop(DropReason::UnsupportedProtocol)),
        }
        .map_err(Verdict::Drop)?;
        if ip.proto == wire::PROTO_TCP && !tcp_flags_valid(l4.flags) {
            return Err(Verdict::Drop(DropReason::BadTcpFlags));
        }
        let listener = if to_vip {
            self.find_listener(dst, l4.dport, ip.proto)
                .ok_or(Verdict::Drop(DropReason::NoListener))?
        } else {
            0
        };
        let hash = key_hash4(
            self.config.hash_seed,
            ip.proto,
            (ip.src, l4.sport),
            (ip.dst, l4.dport),
        );
        Ok(Packet {
            net: Net::V4(ip),
            l4,
            dir: if to_vip { Dir::In } else { Dir::Out },
            listener,
            hash,
        })
    }

    pub(super) fn find_listener6(&self, vip: u128, port: u16, proto: u8) -> Option<ListenerId> {
        let key = (vip, port_proto(port, proto));
        let i = self.by_key6.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        self.by_key6.get(i).map(|&(_, id)| id)
    }

    /// [`Engine::parse`] for an IPv6 frame: ours toward an IPv6 VIP (6to4
    /// and 6to6 listeners) or an IPv6 local address (6to6 replies).
    fn parse6(&self, frame: &mut Frame<'_>, l3: usize) -> Result<Packet, Verdict> {
        let bytes = frame.bytes();
        // The destination decides whether the frame is ours before the
        // header is judged: the fixed header, unchecked.
        let fixed = bytes
            .get(l3..l3 + ipv6::HLEN)
            .ok_or(Verdict::Drop(DropReason::Truncated))?;
        let dst = ipv6::Packet::new_unchecked(fixed).dst_addr();
        let to_vip = self.vips6.binary_search(&u128::from_be_bytes(dst)).is_ok();
        if !to_vip
            && self
                .locals6
                .binary_search(&u128::from_be_bytes(dst))
                .is_err()
        {
            return Err(Verdict::Pass);
        }
        let dir = if to_vip { Dir::In } else { Dir::Out };
        let ip6 = Ipv6::parse(bytes, l3).map_err(Verdict::Drop)?;
        if ip6.fragment {
            return Err(Verdict::Drop(DropReason::Fragment));
        }
        frame.truncate(ip6.end());
        let bytes = frame.bytes();
        let l4 = match ip6.proto {
            wire::PROTO_TCP => L4::tcp(bytes, ip6.l4_off, ip6.l4_len()),
            wire::PROTO_UDP => L4::udp(bytes, ip6.l4_off, ip6.l4_len()),
            wire::PROTO_ICMPV6 => {
                return Ok(Packet {
                    net: Net::V6(ip6),
                    l4: L4::default(),
                    dir,
                    listener: 0,
                    hash: 0,
                });
            }
            _ => return Err(Verdict::Drop(DropReason::UnsupportedProtocol)),
        }
        .map_err(Verdict::Drop)?;
        if ip6.proto == wire::PROTO_TCP && !tcp_flags_valid(l4.flags) {
            return Err(Verdict::Drop(DropReason::BadTcpFlags));
        }
        let listener = match dir {
            Dir::In => self
                .find_listener6(u128::from_be_bytes(dst), l4.dport, ip6.proto)
                .ok_or(Verdict::Drop(DropReason::NoListener))?,
            Dir::Out => 0,
        };
        let hash = key_hash6(
            self.config.hash_seed,
            ip6.proto,
            (&ip6.src, l4.sport),
            (&ip6.dst, l4.dport),
        );
        Ok(Packet {
            net: Net::V6(ip6),
            l4,
            dir,
            listener,
            hash,
        })
    }

    #[inline]
    pub(super) fn find_listener(&self, vip: u32, port: u16, proto: u8) -> Option<ListenerId> {
        let key = listener_key(vip, port, proto);
        let i = self.by_key.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        self.by_key.get(i).map(|&(_, id)| id)
    }
}

/// Verify the TCP or UDP checksum of the packet whose network header is
/// `net` (see [`checksum::transport4_ok`] and [`checksum::transport_ok`]):
/// `BadL4Checksum` if it is wrong. Inlined, so that where the family is
/// known (a new session's SYN in [`Engine::fast_decline`]) the other
/// branch goes.
///
/// [`Engine::fast_decline`]: super::Engine::fast_decline
#[inline(always)]
pub(super) fn transport_checksum(bytes: &[u8], net: &Net) -> Result<(), DropReason> {
    let ok = match net {
        Net::V4(ip) => {
            let (off, len) = (ip.l4_off(), ip.l4_len());
            let seg = bytes.get(off..off + len).ok_or(DropReason::Truncated)?;
            checksum::transport4_ok(ip.src, ip.dst, ip.proto, seg)
        }
        Net::V6(ip6) => {
            let seg = bytes
                .get(ip6.l4_off..ip6.end())
                .ok_or(DropReason::Truncated)?;
            let pseudo = checksum::pseudo6(&ip6.src, &ip6.dst, seg.len(), ip6.proto);
            checksum::transport_ok(pseudo, ip6.proto, seg, true)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::BadL4Checksum)
    }
}

/// Flags no segment may carry: none of SYN, ACK, RST set; SYN with RST
/// or FIN.
pub(super) fn tcp_flags_valid(flags: u8) -> bool {
    use tcp_flags::{ACK, FIN, RST, SYN};
    if flags & (SYN | ACK | RST) == 0 {
        return false;
    }
    !(flags & SYN != 0 && flags & (RST | FIN) != 0)
}
