//! ICMP and ICMPv6: echo requests to a VIP answered, errors about a
//! session forwarded to its other side, everything else dropped or
//! passed.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::keys::{key_hash4, key_hash6};
use super::listeners::Listener;
use super::{Engine, client4, client16, u32_of};
use crate::frame::Frame;
use crate::table::Dir;
use crate::verdict::{DropReason, Verdict};
use crate::wire::checksum::Delta;
use crate::wire::ipv6::{self, Ipv6};
use crate::wire::{Ipv4, icmpv4, icmpv6, ipv4};
use crate::xlat;

impl Engine {
    /// ICMP to a VIP (`Dir::In`) or to a local address (`Dir::Out`): an
    /// echo request to a VIP is answered; destination unreachable and time
    /// exceeded about a session are forwarded to its other side; any other
    /// error, and any other ICMP to a VIP, is dropped; other ICMP to a
    /// local address (an echo request, say) is the host's.
    pub(super) fn icmp4(&mut self, frame: &mut Frame<'_>, ip: &Ipv4, dir: Dir) -> Verdict {
        let kind = message(frame.bytes(), ip.l4_off())
            .map(|m| icmpv4::Packet::new_unchecked(m).msg_type());
        match (kind, dir) {
            (Some(xlat::icmp_type::V4_ECHO_REQUEST), Dir::In) => self.icmp_to_vip(frame, ip),
            (Some(xlat::icmp_type::V4_DEST_UNREACHABLE | xlat::icmp_type::V4_TIME_EXCEEDED), _) => {
                self.icmp4_error(frame, ip, dir)
                    .unwrap_or_else(Verdict::Drop)
            }
            (None, _) => Verdict::Drop(DropReason::Truncated),
            // Other errors (source quench, redirect, parameter problem):
            // never forwarded.
            (Some(4 | 5 | xlat::icmp_type::V4_PARAMETER_PROBLEM), _) | (_, Dir::In) => {
                Verdict::Drop(DropReason::IcmpUnsupported)
            }
            (_, Dir::Out) => Verdict::Pass,
        }
    }

    /// ICMPv6 to an IPv6 VIP (`Dir::In`) or local address (`Dir::Out`),
    /// as [`Engine::icmp4`] does for ICMP.
    pub(super) fn icmp6(&mut self, frame: &mut Frame<'_>, ip6: &Ipv6, dir: Dir) -> Verdict {
        let kind =
            message(frame.bytes(), ip6.l4_off).map(|m| icmpv6::Packet::new_unchecked(m).msg_type());
        match (kind, dir) {
            (Some(xlat::icmp_type::V6_ECHO_REQUEST), Dir::In) => self.icmp6_to_vip(frame, ip6),
            (
                Some(
                    xlat::icmp_type::V6_DEST_UNREACHABLE
                    | xlat::icmp_type::V6_PACKET_TOO_BIG
                    | xlat::icmp_type::V6_TIME_EXCEEDED,
                ),
                _,
            ) => self
                .icmp6_error(frame, ip6, dir)
                .unwrap_or_else(Verdict::Drop),
            (None, _) => Verdict::Drop(DropReason::Truncated),
            // Neighbour discovery (RFC 4861: router and neighbour
            // solicitations and advertisements, redirect), to a VIP too
            // (unicast reachability probes): the host's.
            (Some(133..=137), _) => Verdict::Pass,
            // Other errors (parameter problem, types below 128) are never
            // forwarded; other informational messages to a local address
            // are the host's.
            (Some(kind), _) if kind < 128 => Verdict::Drop(DropReason::IcmpUnsupported),
            (Some(_), Dir::In) => Verdict::Drop(DropReason::IcmpUnsupported),
            (Some(_), Dir::Out) => Verdict::Pass,
        }
    }

    /// An ICMP error about a packet the engine sent: to a client (it came
    /// back to the VIP, `Dir::In`) or to a server (it came back to the
    /// local address, `Dir::Out`). It goes to the session's other side
    /// with its outer addresses and its quoted packet rewritten as that
    /// side sent it, so that path MTU discovery and unreachables work
    /// through the balancer (6to4: translated to ICMPv6, RFC 7915 §4.2).
    fn icmp4_error(
        &mut self,
        frame: &mut Frame<'_>,
        ip: &Ipv4,
        dir: Dir,
    ) -> Result<Verdict, DropReason> {
        let err = xlat::parse_icmp4_error(frame.bytes(), ip)?;
        let f = err.flow;
        let seed = self.config.hash_seed;
        let id = match dir {
            // We sent VIP:vport -> client:cport.
            Dir::In => {
                let lid = self
                    .find_listener(u32_of(f.src), f.sport, f.proto)
                    .ok_or(DropReason::IcmpNoSession)?;
                let h = key_hash4(seed, f.proto, (f.dst, f.dport), (f.src, f.sport));
                let client = client16(f.dst);
                self.table
                    .find(h, Dir::In, |s| s.of_client(lid, &client, f.dport))
                    .ok_or(DropReason::IcmpNoSession)?
            }
            // We sent lip:lport -> rip:rport.
            Dir::Out => {
                let h = key_hash4(seed, f.proto, (f.dst, f.dport), (f.src, f.sport));
                self.find_outbound(h, f.proto, (f.dst, f.dport), (f.src, f.sport))
                    .ok_or(DropReason::IcmpNoSession)?
            }
        };
        let s = *self.table.get(id).ok_or(DropReason::IcmpNoSession)?;
        let l = self.listener(s.listener).ok_or(DropReason::IcmpNoSession)?;
        let (rip, rport) = l
            .backend_addr4(s.backend)
            .ok_or(DropReason::IcmpNoSession)?;
        let lip = l.lip4(s.lip).ok_or(DropReason::IcmpNoSession)?;
        let vport = l.config.port;
        let verdict = match (dir, s.path.client_v6(), l.vip6) {
            (Dir::In, _, _) => {
                let to = xlat::ErrorRewrite {
                    src: lip,
                    dst: rip,
                    inner_src: (rip, rport),
                    inner_dst: (lip, s.lport),
                };
                xlat::icmp4_error_rewrite(frame, ip, &err, &to)?;
                Verdict::ToServer {
                    next_hop: IpAddr::V4(Ipv4Addr::from(rip)),
                }
            }
            (Dir::Out, false, _) => {
                let (vip, client) = (l.vip4, client4(&s));
                let to = xlat::ErrorRewrite {
                    src: vip,
                    dst: client,
                    inner_src: (client, s.cport),
                    inner_dst: (vip, vport),
                };
                xlat::icmp4_error_rewrite(frame, ip, &err, &to)?;
                Verdict::ToClient {
                    next_hop: IpAddr::V4(Ipv4Addr::from(client)),
                }
            }
            // A 6to4 listener has an IPv6 VIP.
            (Dir::Out, true, None) => return Err(DropReason::IcmpNoSession),
            (Dir::Out, true, Some(vip6)) => {
                let to = xlat::ErrorRewrite {
                    src: vip6,
                    dst: s.client,
                    inner_src: (s.client, s.cport),
                    inner_dst: (vip6, vport),
                };
                xlat::icmp4_error_to_v6(frame, ip, &err, &to, xlat::NO_MTU_CAP)?;
                Verdict::ToClient {
                    next_hop: IpAddr::V6(Ipv6Addr::from(s.client)),
                }
            }
        };
        self.counters.icmp_errors_forwarded += 1;
        Ok(verdict)
    }

    /// An ICMPv6 error about a packet the engine sent: to an IPv6 client
    /// (`Dir::In`) or to an IPv6 server (`Dir::Out`, 6to6). Toward an IPv4
    /// server (6to4) it is translated to ICMP (RFC 7915 §5.2, packet too
    /// big becoming fragmentation needed with the MTU less 20); otherwise
    /// rewritten as the other side sent the quoted packet.
    fn icmp6_error(
        &mut self,
        frame: &mut Frame<'_>,
        ip6: &Ipv6,
        dir: Dir,
    ) -> Result<Verdict, DropReason> {
        let err = xlat::parse_icmp6_error(frame.bytes(), ip6)?;
        let f = err.flow;
        let h = key_hash6(
            self.config.hash_seed,
            f.proto,
            (&f.dst, f.dport),
            (&f.src, f.sport),
        );
        let id = match dir {
            // We sent VIP6:vport -> client:cport.
            Dir::In => {
                let lid = self
                    .find_listener6(u128::from_be_bytes(f.src), f.sport, f.proto)
                    .ok_or(DropReason::IcmpNoSession)?;
                self.table
                    .find(h, Dir::In, |s| s.of_client(lid, &f.dst, f.dport))
            }
            // We sent lip6:lport -> rip6:rport.
            Dir::Out => self.find_outbound6(h, f.proto, (f.dst, f.dport), (f.src, f.sport)),
        }
        .ok_or(DropReason::IcmpNoSession)?;
        let s = *self.table.get(id).ok_or(DropReason::IcmpNoSession)?;
        let l = self.listener(s.listener).ok_or(DropReason::IcmpNoSession)?;
        let vip6 = l.vip6.ok_or(DropReason::IcmpNoSession)?;
        let vport = l.config.port;
        let verdict = match (dir, l.v6_path(&s)) {
            (Dir::In, Some((rip6, rport, lip6))) => {
                let to = xlat::ErrorRewrite {
                    src: lip6,
                    dst: rip6,
                    inner_src: (rip6, rport),
                    inner_dst: (lip6, s.lport),
                };
                xlat::icmp6_error_rewrite(frame, ip6, &err, &to)?;
                Verdict::ToServer {
                    next_hop: IpAddr::V6(Ipv6Addr::from(rip6)),
                }
            }
            (Dir::In, None) => {
                let (rip, rport) = l
                    .backend_addr4(s.backend)
                    .ok_or(DropReason::IcmpNoSession)?;
                let lip = l.lip4(s.lip).ok_or(DropReason::IcmpNoSession)?;
                let to = xlat::ErrorRewrite {
                    src: lip,
                    dst: rip,
                    inner_src: (rip, rport),
                    inner_dst: (lip, s.lport),
                };
                xlat::icmp6_error_to_v4(frame, ip6, &err, &to, xlat::NO_MTU_CAP)?;
                Verdict::ToServer {
                    next_hop: IpAddr::V4(Ipv4Addr::from(rip)),
                }
            }
            (Dir::Out, _) => {
                let to = xlat::ErrorRewrite {
                    src: vip6,
                    dst: s.client,
                    inner_src: (s.client, s.cport),
                    inner_dst: (vip6, vport),
                };
                xlat::icmp6_error_rewrite(frame, ip6, &err, &to)?;
                Verdict::ToClient {
                    next_hop: IpAddr::V6(Ipv6Addr::from(s.client)),
                }
            }
        };
        self.counters.icmp_errors_forwarded += 1;
        Ok(verdict)
    }

    /// An echo request to a VIP is answered while any listener of the VIP
    /// that answers ping has a live backend (FAQ Q1).
    fn icmp_to_vip(&mut self, frame: &mut Frame<'_>, ip: &Ipv4) -> Verdict {
        let vip = ip.dst;
        let reply = (|| -> Result<(), DropReason> {
            let (head, message) = frame
                .bytes_mut()
                .split_at_mut_checked(ip.l4_off())
                .ok_or(DropReason::Truncated)?;
            let mut icmp = icmpv4::Packet::new_checked(message)?;
            if (icmp.msg_type(), icmp.msg_code()) != (xlat::icmp_type::V4_ECHO_REQUEST, 0) {
                return Err(DropReason::IcmpUnsupported);
            }
            let header = head.get_mut(ip.off..);
            let header = header.filter(|h| h.len() >= ipv4::HEADER_LEN);
            let mut header = ipv4::Packet::new_unchecked(header.ok_or(DropReason::Truncated)?);
            self.answers_ping(|l| l.vip6.is_none() && l.vip4 == vip)?;
            // Echo reply: type 8 -> 0 (RFC 792); swap the addresses, which
            // leaves both checksums' address terms unchanged; fresh TTL.
            let old = icmp.type_code();
            icmp.set_msg_type(xlat::icmp_type::V4_ECHO_REPLY);
            // A sum of 0 is sent as 0xffff: an all-zero message's checksum
            // (RFC 1071), which receivers check as such.
            let icmp_sum = match Delta::default()
                .word(old, icmp.type_code())
                .apply(icmp.checksum())
            {
                0 => 0xffff,
                sum => sum,
            };
            icmp.set_checksum(icmp_sum);
            let old = header.ttl_protocol();
            header.set_ttl(64);
            let ip_sum = Delta::default()
                .word(old, header.ttl_protocol())
                .apply(header.checksum());
            header.set_checksum(ip_sum);
            header.set_src_addr(ip.dst);
            header.set_dst_addr(ip.src);
            Ok(())
        })();
        match reply {
            Ok(()) => {
                self.counters.echo_replies += 1;
                Verdict::Reply {
                    next_hop: IpAddr::V4(Ipv4Addr::from(ip.src)),
                }
            }
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// Whether a VIP (the listeners `of_vip` picks) answers ping: one of
    /// its listeners answers ping and has a live backend (FAQ Q1).
    fn answers_ping(&self, of_vip: impl Fn(&Listener) -> bool) -> Result<(), DropReason> {
        let mut answering = self
            .listeners
            .iter()
            .flatten()
            .filter(|l| of_vip(l) && l.config.ping)
            .peekable();
        if answering.peek().is_none() {
            return Err(DropReason::PingDisabled);
        }
        if !answering.any(Listener::has_live_backend) {
            return Err(DropReason::PingNoBackend);
        }
        Ok(())
    }

    /// An ICMPv6 echo request to an IPv6 VIP, answered as for IPv4: type
    /// 128 becomes 129 (RFC 4443 §4.2), the addresses swap (which leaves
    /// the pseudo-header's sum as it was), and the hop limit is fresh.
    fn icmp6_to_vip(&mut self, frame: &mut Frame<'_>, ip6: &Ipv6) -> Verdict {
        let vip = ip6.dst;
        let reply = (|| -> Result<(), DropReason> {
            let (head, message) = frame
                .bytes_mut()
                .split_at_mut_checked(ip6.l4_off)
                .ok_or(DropReason::Truncated)?;
            let mut icmp = icmpv6::Packet::new_checked(message)?;
            if (icmp.msg_type(), icmp.msg_code()) != (xlat::icmp_type::V6_ECHO_REQUEST, 0) {
                return Err(DropReason::IcmpUnsupported);
            }
            let header = head.get_mut(ip6.off..);
            let header = header.filter(|h| h.len() >= ipv6::HLEN);
            let mut header = ipv6::Packet::new_unchecked(header.ok_or(DropReason::Truncated)?);
            self.answers_ping(|l| l.vip6 == Some(vip))?;
            let old = icmp.type_code();
            icmp.set_msg_type(xlat::icmp_type::V6_ECHO_REPLY);
            let sum = match Delta::default()
                .word(old, icmp.type_code())
                .apply(icmp.checksum())
            {
                0 => 0xffff,
                sum => sum,
            };
            icmp.set_checksum(sum);
            header.set_hop_limit(64);
            header.set_src_addr(ip6.dst);
            header.set_dst_addr(ip6.src);
            Ok(())
        })();
        match reply {
            Ok(()) => {
                self.counters.echo_replies += 1;
                Verdict::Reply {
                    next_hop: IpAddr::V6(Ipv6Addr::from(ip6.src)),
                }
            }
            Err(reason) => Verdict::Drop(reason),
        }
    }
}

/// The ICMP message at `l4` in `frame`, if it holds at least its type.
fn message(frame: &[u8], l4: usize) -> Option<&[u8]> {
    frame.get(l4..).filter(|m| !m.is_empty())
}
