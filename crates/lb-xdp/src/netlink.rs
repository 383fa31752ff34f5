//! The kernel's route and neighbour tables over rtnetlink: where a packet
//! for an address goes next, and that next hop's MAC address.
//!
//! `lbd` does not keep tables of its own: the host's routes and ARP/NDP
//! state are the truth, as for any router. [`Rtnl::route`] is `ip route
//! get`, [`Rtnl::neighbour`] is `ip neigh get`, and [`Rtnl::resolve`] is
//! `ip neigh replace ADDR dev IF use`: it asks the kernel to resolve an
//! address it has no entry for (an ARP request or a neighbour
//! solicitation goes out). [`Rtnl::xdp_program`] is the id of the XDP
//! program attached to an interface (`ip link show`'s `prog/xdp id`).

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Where a packet for a destination goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The gateway, or the destination itself when it is on-link.
    pub next_hop: IpAddr,
    /// The interface the kernel would send it out of.
    pub ifindex: u32,
}

/// A route-netlink socket for synchronous requests.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Open the socket.
    ///
    /// # Errors
    /// The socket cannot be made (no netlink in this namespace).
    pub fn new() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            socket,
            sequence: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The kernel's route to `dst` (`ip route get`); `None` when it has
    /// none (unreachable).
    ///
    /// # Errors
    /// The request or its answer failed.
    pub fn route(&mut self, dst: IpAddr) -> io::Result<Option<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst);
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let answer = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_REQUEST)?;
        let Some(RouteNetlinkMessage::NewRoute(route)) = answer else {
            return Ok(None);
        };
        let mut next_hop = dst;
        let mut ifindex = 0;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => next_hop = IpAddr::V4(*a),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => next_hop = IpAddr::V6(*a),
                RouteAttribute::Oif(i) => ifindex = *i,
                _ => {}
            }
        }
        Ok(Some(Route { next_hop, ifindex }))
    }

    /// The MAC address the kernel holds for `addr` on `ifindex`, if its
    /// entry is usable (reachable, stale, delayed, probed or permanent).
    ///
    /// # Errors
    /// The request or its answer failed.
    pub fn neighbour(&mut self, addr: IpAddr, ifindex: u32) -> io::Result<Option<[u8; 6]>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(addr);
        msg.header.ifindex = ifindex;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(addr)));
        let answer = self.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_REQUEST)?;
        let Some(RouteNetlinkMessage::NewNeighbour(n)) = answer else {
            return Ok(None);
        };
        if !matches!(
            n.header.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
        ) {
            return Ok(None);
        }
        Ok(n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        }))
    }

    /// The id of the XDP program attached to the interface `ifindex`,
    /// if any.
    ///
    /// # Errors
    /// The request or its answer failed (no such interface).
    pub fn xdp_program(&mut self, ifindex: u32) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let answer = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST)?;
        let Some(RouteNetlinkMessage::NewLink(link)) = answer else {
            return Ok(None);
        };
        Ok(link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
                LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Ask the kernel to resolve `addr` on `ifindex` (NTF_USE): it creates
    /// the entry if needed and sends an ARP request or a neighbour
    /// solicitation; [`Rtnl::neighbour`] finds the answer later.
    ///
    /// # Errors
    /// The kernel refused.
    pub fn resolve(&mut self, addr: IpAddr, ifindex: u32) -> io::Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(addr);
        msg.header.ifindex = ifindex;
        msg.header.state = NeighbourState::None;
        msg.header.flags = NeighbourFlags::Use;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(addr)));
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(|_| ())
    }

    /// Send one request and read its one answer: the message, `None` for
    /// "no such entry" (ENOENT, ENETUNREACH, EHOSTUNREACH) or a bare
    /// acknowledgement, or the kernel's error.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Option<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut at = 0;
            while at < n {
                let bytes = self.buf.get(at..n).unwrap_or_default();
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                at += len.next_multiple_of(4);
                if reply.header.sequence_number != self.sequence {
                    continue; // an answer to an earlier, abandoned request
                }
                return match reply.payload {
                    NetlinkPayload::InnerMessage(m) => Ok(Some(m)),
                    NetlinkPayload::Error(e) => match e.code {
                        None => Ok(None),
                        Some(code) => {
                            let errno = -code.get();
                            if [libc::ENOENT, libc::ENETUNREACH, libc::EHOSTUNREACH]
                                .contains(&errno)
                            {
                                Ok(None)
                            } else {
                                Err(io::Error::from_raw_os_error(errno))
                            }
                        }
                    },
                    _ => Ok(None),
                };
            }
        }
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn neighbour_address(addr: IpAddr) -> NeighbourAddress {
    match addr {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

/// The index of the interface called `name`.
///
/// # Errors
/// No such interface.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name holds a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// How many receive queues the interface called `name` has (its `rx-N`
/// queues in sysfs).
///
/// # Errors
/// No such interface.
pub fn rx_queues(name: &str) -> io::Result<u32> {
    let mut n = 0;
    for entry in std::fs::read_dir(format!("/sys/class/net/{name}/queues"))? {
        if entry?.file_name().to_string_lossy().starts_with("rx-") {
            n += 1;
        }
    }
    Ok(n)
}

/// The MAC address of the interface called `name`, from sysfs.
///
/// # Errors
/// No such interface, or its address is not a 6-byte MAC.
pub fn mac_address(name: &str) -> io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    parse_mac(text.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad MAC {text:?}")))
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01"),
            Some([2, 0, 0x0a, 0xff, 0, 1])
        );
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }

    #[test]
    fn loopback_routes_and_has_no_neighbour() -> io::Result<()> {
        let mut rtnl = Rtnl::new()?;
        let lo = ifindex("lo")?;
        let route = rtnl.route("127.0.0.1".parse().map_err(io::Error::other)?)?;
        assert_eq!(route.map(|r| r.ifindex), Some(lo));
        assert_eq!(
            rtnl.neighbour("127.0.0.1".parse().map_err(io::Error::other)?, lo)?,
            None
        );
        Ok(())
    }
}
