//! What the engine tells the caller to do with a frame: [`Verdict`] for a
//! frame it was given, [`Transmit`] for one it writes itself, and
//! [`DropReason`], whose every value has its own counter.

use core::net::IpAddr;

/// What to do with a frame after [`crate::Engine::handle_packet`].
///
/// For the forwarding verdicts the engine has rewritten IP and the
/// transport layer; the caller writes layer 2 (the next hop's MAC address,
/// found from `next_hop`) and transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send toward the real servers; `next_hop` is the server's address.
    ToServer {
        /// The real server the packet is now addressed to.
        next_hop: IpAddr,
    },
    /// Send toward the clients; `next_hop` is the client's address (route
    /// it as the host would).
    ToClient {
        /// The client the packet is now addressed to.
        next_hop: IpAddr,
    },
    /// Send the frame back where it came from (an echo reply): the engine
    /// has swapped the IP addresses; the caller swaps the MAC addresses.
    Reply {
        /// The address the reply goes to.
        next_hop: IpAddr,
    },
    /// Drop the frame; the reason has been counted.
    Drop(DropReason),
    /// Not addressed to a VIP or local address of this engine: give it to
    /// the host's own stack unchanged.
    Pass,
}

/// Where a frame the engine wrote itself goes
/// ([`crate::Engine::poll_transmit`]: the RSTs of idle expiry).
///
/// The frame is a whole IPv4 or IPv6 packet in an Ethernet frame with zero
/// MAC addresses: the caller writes layer 2 (the next hop's MAC address,
/// found from `next_hop`, as for [`Verdict::ToServer`] and
/// [`Verdict::ToClient`]) and transmits. Unlike a [`Verdict`], it is never
/// a drop, a pass or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// Send toward the real servers; `next_hop` is the server's address.
    ToServer {
        /// The real server the packet is addressed to.
        next_hop: IpAddr,
    },
    /// Send toward the clients; `next_hop` is the client's address (route
    /// it as the host would).
    ToClient {
        /// The client the packet is addressed to.
        next_hop: IpAddr,
    },
}

impl Transmit {
    /// The address the packet is sent to, whichever side it goes to.
    pub fn next_hop(self) -> IpAddr {
        match self {
            Transmit::ToServer { next_hop } | Transmit::ToClient { next_hop } => next_hop,
        }
    }
}

/// The forwarding verdict that sends a frame the same way, for a caller
/// that routes both kinds of frame by one path.
impl From<Transmit> for Verdict {
    fn from(t: Transmit) -> Verdict {
        match t {
            Transmit::ToServer { next_hop } => Verdict::ToServer { next_hop },
            Transmit::ToClient { next_hop } => Verdict::ToClient { next_hop },
        }
    }
}

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $name:ident = $label:literal,)*) => {
        /// Why a frame was dropped. Each value maps one-to-one onto a
        /// counter (see [`crate::Counters::drops`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum DropReason {
            $($(#[doc = $doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];

            /// The number of reasons (and of drop counters).
            pub const COUNT: usize = DropReason::ALL.len();

            /// A stable `snake_case` name, for metrics labels and logs.
            pub const fn label(self) -> &'static str {
                match self {
                    $(DropReason::$name => $label,)*
                }
            }

            /// The reason's counter index, `0..COUNT`.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// A header is cut short by the end of the frame.
    Truncated = "truncated",
    /// IPv4 version or header length (IHL) is wrong.
    BadIpHeader = "bad_ip_header",
    /// The IP total length is shorter than the header or longer than the frame.
    BadIpLength = "bad_ip_length",
    /// The IPv4 header checksum is wrong.
    BadIpChecksum = "bad_ip_checksum",
    /// An IPv4 packet for us carries IP options.
    IpOptions = "ip_options",
    /// An IP fragment for us (the engine does not reassemble).
    Fragment = "fragment",
    /// The TCP data offset or the UDP length does not fit the packet.
    BadL4Header = "bad_l4_header",
    /// Addressed to a VIP, but no listener has that port and protocol.
    NoListener = "no_listener",
    /// Matches no session and cannot start one (a TCP segment without SYN,
    /// or a reply to a local address that has no session).
    NoSession = "no_session",
    /// The listener has no backend that is up with a weight above 0.
    NoBackend = "no_backend",
    /// The session table is full.
    TableFull = "table_full",
    /// No free local port (every candidate tuple is live or quarantined).
    PortsExhausted = "ports_exhausted",
    /// The local address pool has no address of the backend's family.
    NoLocalAddress = "no_local_address",
    /// An echo request to a VIP that does not answer ping.
    PingDisabled = "ping_disabled",
    /// An echo request to a VIP whose listeners have no live backend.
    PingNoBackend = "ping_no_backend",
    /// ICMP to a VIP or local address other than an echo request.
    IcmpUnsupported = "icmp_unsupported",
    /// An IP protocol other than TCP, UDP and ICMP to a VIP or local address.
    UnsupportedProtocol = "unsupported_protocol",
    /// TCP flags that no segment may carry (SYN with FIN or RST, none).
    BadTcpFlags = "bad_tcp_flags",
    /// An IPv6 extension header the engine does not skip (anything but
    /// hop-by-hop, routing and destination options), or too many of them.
    Ipv6Extension = "ipv6_extension",
    /// An ICMP or ICMPv6 error that quotes no live session, or quotes too
    /// little of the packet to find one.
    IcmpNoSession = "icmp_no_session",
    /// The TCP or UDP checksum (pseudo-header included) is wrong, or a UDP
    /// datagram over IPv6 carries none (RFC 8200 §8.1), in a packet the
    /// listener's [`crate::ChecksumPolicy`] has checked: one that would
    /// start a session by default, every packet with `All`.
    BadL4Checksum = "bad_l4_checksum",
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn one_counter_per_reason() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let mut labels: alloc::vec::Vec<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::COUNT);
    }

    /// Reasons are numbered in the order they were added, new ones last:
    /// the numbers are the C API's and the metrics' and must not move.
    #[test]
    fn numbers_are_stable() {
        assert_eq!(DropReason::IcmpNoSession.index(), 19);
        assert_eq!(DropReason::BadL4Checksum.index(), 20);
        assert_eq!(DropReason::BadL4Checksum.label(), "bad_l4_checksum");
        assert_eq!(DropReason::COUNT, 21);
    }
}
