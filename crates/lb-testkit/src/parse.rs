//! A frame the engine forwarded, read back by etherparse.

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::Ep;

/// The IP addresses of a frame (IPv4 or IPv6).
///
/// # Panics
///
/// If the frame is not Ethernet with IP.
pub fn addresses(frame: &[u8]) -> (IpAddr, IpAddr) {
    let p = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("frame: {e}"));
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        other => panic!("not IP: {other:?}"),
    }
}

/// Source and destination of a TCP or UDP frame of either family.
///
/// # Panics
///
/// If the frame is not TCP or UDP over IP.
pub fn endpoints(frame: &[u8]) -> (Ep, Ep) {
    let (src, dst) = addresses(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("frame: {e}"));
    let (sport, dport) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        other => panic!("not TCP or UDP: {other:?}"),
    };
    ((src, sport), (dst, dport))
}

/// A TCP segment as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Source endpoint.
    pub src: Ep,
    /// Destination endpoint.
    pub dst: Ep,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (whatever the ACK flag says).
    pub ack: u32,
    /// The flags byte (CWR ECE URG ACK PSH RST SYN FIN, high to low).
    pub flags: u8,
    /// The window.
    pub window: u16,
    /// The options area, padding included.
    pub options: Vec<u8>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Segment {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// Whether every flag of `mask` is set.
    pub fn has(&self, mask: u8) -> bool {
        self.flags & mask == mask
    }
}

/// The TCP segment of a frame, if it is TCP over IP.
pub fn segment(frame: &[u8]) -> Option<Segment> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        return None;
    };
    let header = t.header_slice();
    Some(Segment {
        src: (src, t.source_port()),
        dst: (dst, t.destination_port()),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        flags: *header.get(13)?,
        window: t.window_size(),
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
    })
}

/// The options of a TCP options area as (kind, whole option bytes), NOPs
/// and the end-of-list marker left out.
///
/// # Panics
///
/// If an option's length runs past the area or is below 2.
pub fn options(area: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&kind) = area.get(at) {
        match kind {
            0 => break,
            1 => at += 1,
            _ => {
                let len = usize::from(*area.get(at + 1).unwrap_or_else(|| panic!("{area:?}")));
                assert!(
                    len >= 2 && at + len <= area.len(),
                    "option at {at}: {area:?}"
                );
                out.push((kind, area[at..at + len].to_vec()));
                at += len;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use etherparse::TcpOptionElement;

    use super::{Segment, addresses, endpoints, options, segment};
    use crate::frame::{Link, Tcp, options as encode, tcp_on, udp};

    /// What the builders write is what the parser reads back, field by
    /// field, in both families, tagged or not.
    #[test]
    fn built_segments_read_back() {
        let ends: [(IpAddr, IpAddr); 2] = [
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
            ),
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ),
        ];
        for (a, b) in ends {
            for link in [Link::DEFAULT.ttl(9), Link::DEFAULT.vlan(7)] {
                let opts = encode(&[
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::Noop,
                    TcpOptionElement::Timestamp(1, 2),
                ]);
                assert_eq!(opts.len() % 4, 0);
                let t = Tcp::fin(7, 9).psh().window(1000);
                let f = tcp_on(link, (a, 1), (b, 2), t, &opts, b"data");
                let s = segment(&f).unwrap();
                assert_eq!((s.src, s.dst), ((a, 1), (b, 2)));
                assert_eq!((s.seq, s.ack, s.window), (7, 9, 1000));
                assert!(s.has(Segment::FIN | Segment::ACK | Segment::PSH));
                assert!(!s.has(Segment::SYN) && !s.has(Segment::RST));
                assert_eq!(s.payload, b"data");
                assert_eq!(s.options, opts);
                let kinds: Vec<u8> = options(&s.options).iter().map(|o| o.0).collect();
                assert_eq!(kinds, [2, 8]);
                assert_eq!(endpoints(&f), ((a, 1), (b, 2)));
            }
            let d = udp((a, 53), (b, 5353), b"q");
            assert_eq!(endpoints(&d), ((a, 53), (b, 5353)));
            assert_eq!(addresses(&d), (a, b));
            assert!(segment(&d).is_none());
        }
    }
}
