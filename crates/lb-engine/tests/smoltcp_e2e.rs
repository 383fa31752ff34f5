//! Two real TCP/IP stacks (smoltcp) talking through the engine on a
//! simulated clock: a client on one side, a real server on the other.
//!
//! The client connects to the VIP; the engine rewrites to the server and
//! back (FULLNAT). Frames travel as Ethernet frames through the engine and
//! as IP packets between smoltcp and the shim here. The clock jumps to the
//! next deadline of either stack or the engine when nothing is in flight.
//!
//! Each scenario runs for an IPv4 client (an IPv4 VIP, 4to4) and for an
//! IPv6 client (an IPv6 VIP of a 6to4 listener: the engine translates per
//! RFC 7915 toward the same IPv4 server, from the same IPv4 local address).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;

use lb_engine::{
    BackendConfig, DropReason, Engine, EngineConfig, Instant, ListenerConfig, LocalPool, Protocol,
    Transmit, Verdict,
};
use lb_testkit::checksum;
use lb_testkit::sim::send_at;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv6Address};

const CLIENT: Ipv4Address = Ipv4Address::new(192, 0, 2, 10);
const CLIENT_GW: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);
const VIP: Ipv4Address = Ipv4Address::new(198, 51, 100, 1);
const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const LIP: Ipv4Address = Ipv4Address::new(10, 0, 0, 100);
const CLIENT6: Ipv6Address = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const CLIENT6_GW: Ipv6Address = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Address = Ipv6Address::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// The client's side: an IPv4 client of an IPv4 VIP, or an IPv6 client of
/// an IPv6 VIP (a 6to4 listener). The server's side is IPv4 either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn client(self) -> IpAddress {
        match self {
            Family::V4 => IpAddress::Ipv4(CLIENT),
            Family::V6 => IpAddress::Ipv6(CLIENT6),
        }
    }

    fn client_cidr(self) -> IpCidr {
        match self {
            Family::V4 => IpCidr::new(self.client(), 24),
            Family::V6 => IpCidr::new(self.client(), 64),
        }
    }

    fn gateway(self) -> IpAddress {
        match self {
            Family::V4 => IpAddress::Ipv4(CLIENT_GW),
            Family::V6 => IpAddress::Ipv6(CLIENT6_GW),
        }
    }

    fn vip(self) -> IpAddress {
        match self {
            Family::V4 => IpAddress::Ipv4(VIP),
            Family::V6 => IpAddress::Ipv6(VIP6),
        }
    }

    /// The IP version number of the client's packets.
    fn version(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// The TTM option's length for this client (ttm-core's encoding).
    fn option_len(self) -> usize {
        match self {
            Family::V4 => ttm_core::V4_LEN,
            Family::V6 => ttm_core::V6_LEN,
        }
    }

    /// How much the engine lowers the server's MSS: the option's length.
    /// (A 6to4 client's full-size segment loses 20 bytes of header when
    /// translated to IPv4, which is what its 20-byte option takes back.)
    fn mss_cut(self) -> u16 {
        match self {
            Family::V4 => 8,
            Family::V6 => 20,
        }
    }

    /// The length of an RST frame the engine sends to the client.
    fn rst_frame_len(self) -> usize {
        match self {
            Family::V4 => 14 + 20 + 20,
            Family::V6 => 14 + 40 + 20,
        }
    }
}

/// The EtherType of an IP packet, by its version.
fn ethertype(ip: &[u8]) -> u16 {
    match ip[0] >> 4 {
        4 => 0x0800,
        6 => 0x86dd,
        v => panic!("IP version {v}"),
    }
}

/// A device that queues IP packets.
#[derive(Default)]
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((Rx(packet), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

struct Host {
    iface: Interface,
    dev: Queue,
    sockets: SocketSet<'static>,
}

impl Host {
    fn new(addr: IpCidr, gateway: Option<IpAddress>, seed: u64) -> Host {
        let mut dev = Queue::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, SmolInstant::from_millis(0));
        iface.update_ip_addrs(|a| a.push(addr).unwrap());
        match gateway {
            Some(IpAddress::Ipv4(gw)) => {
                iface.routes_mut().add_default_ipv4_route(gw).unwrap();
            }
            Some(IpAddress::Ipv6(gw)) => {
                iface.routes_mut().add_default_ipv6_route(gw).unwrap();
            }
            None => {}
        }
        Host {
            iface,
            dev,
            sockets: SocketSet::new(vec![]),
        }
    }

    fn tcp(&mut self) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(vec![0; 65536]);
        let tx = tcp::SocketBuffer::new(vec![0; 65536]);
        self.sockets.add(tcp::Socket::new(rx, tx))
    }

    fn udp(&mut self) -> SocketHandle {
        let meta = || vec![udp::PacketMetadata::EMPTY; 16];
        let rx = udp::PacketBuffer::new(meta(), vec![0; 16384]);
        let tx = udp::PacketBuffer::new(meta(), vec![0; 16384]);
        self.sockets.add(udp::Socket::new(rx, tx))
    }

    fn poll(&mut self, now_ms: u64) {
        self.iface.poll(
            SmolInstant::from_millis(now_ms as i64),
            &mut self.dev,
            &mut self.sockets,
        );
    }

    fn delay_ms(&mut self, now_ms: u64) -> Option<u64> {
        self.iface
            .poll_delay(SmolInstant::from_millis(now_ms as i64), &self.sockets)
            .map(|d| d.total_millis())
    }
}

/// The client, the engine and the server, and everything that crossed.
struct Net {
    family: Family,
    engine: Engine,
    client: Host,
    server: Host,
    now_ms: u64,
    drops: Vec<DropReason>,
    /// Packets delivered to the server and to the client (after the
    /// engine's rewrite).
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
    /// The acknowledgment number of the last TCP segment each stack sent.
    last_ack_from_client: Option<u32>,
    last_ack_from_server: Option<u32>,
    /// The frames the engine sent on its own (idle-expiry RSTs), as
    /// `Engine::poll_transmit` wrote them (Ethernet header included).
    emitted: Vec<(Transmit, Vec<u8>)>,
}

/// An engine with a TCP listener (port 80 to the server's 8080) and a UDP
/// one (53 to 5353) on the family's VIP; IPv4 local address and server
/// either way, so that the IPv6 VIP's listeners are 6to4.
fn engine(family: Family) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        capacity: 1024,
        ..EngineConfig::default()
    })
    .unwrap();
    let local = LocalPool::new(vec![std::net::IpAddr::V4(LIP)]);
    for (port, protocol, server_port) in [(80, Protocol::Tcp, 8080), (53, Protocol::Udp, 5353)] {
        let mut listener = ListenerConfig::new(family.vip().into(), port, protocol, local.clone());
        listener
            .backends
            .push(BackendConfig::new(SERVER.into(), server_port));
        engine.add_listener(listener).unwrap();
    }
    engine
}

impl Net {
    fn new(family: Family) -> Net {
        Net {
            family,
            engine: engine(family),
            client: Host::new(family.client_cidr(), Some(family.gateway()), 1),
            server: Host::new(IpCidr::new(IpAddress::Ipv4(SERVER), 24), None, 2),
            now_ms: 1,
            drops: Vec::new(),
            to_server: Vec::new(),
            to_client: Vec::new(),
            last_ack_from_client: None,
            last_ack_from_server: None,
            emitted: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.now_ms)
    }

    /// Hand one IP packet to the engine as an Ethernet frame and deliver
    /// what comes out.
    fn through_engine(&mut self, packet: &[u8]) {
        let mut input = vec![0u8; 14];
        input[12..14].copy_from_slice(&ethertype(packet).to_be_bytes());
        input.extend_from_slice(packet);
        let now = self.now();
        let (verdict, out) = send_at(&mut self.engine, now, &input);
        self.deliver(verdict, &out);
    }

    /// Deliver an Ethernet frame out of the engine: its IP packet goes to
    /// the stack the verdict names, after checks on the EtherType, the IP
    /// version and every checksum.
    fn deliver(&mut self, verdict: Verdict, frame: &[u8]) {
        let ip = frame[14..].to_vec();
        check_checksums(&ip);
        if matches!(verdict, Verdict::ToServer { .. } | Verdict::ToClient { .. }) {
            assert_eq!(
                u16::from_be_bytes([frame[12], frame[13]]),
                ethertype(&ip),
                "the EtherType follows the IP version"
            );
        }
        match verdict {
            Verdict::ToServer { next_hop } => {
                assert_eq!(next_hop, std::net::IpAddr::V4(SERVER));
                assert_eq!(ip[0] >> 4, 4, "the server's side is IPv4");
                self.to_server.push(ip.clone());
                self.server.dev.rx.push_back(ip);
            }
            Verdict::ToClient { next_hop } => {
                assert_eq!(next_hop, std::net::IpAddr::from(self.family.client()));
                assert_eq!(ip[0] >> 4, self.family.version(), "the client's family");
                self.to_client.push(ip.clone());
                self.client.dev.rx.push_back(ip);
            }
            Verdict::Drop(reason) => self.drops.push(reason),
            other => panic!("unexpected verdict {other:?}"),
        }
    }

    /// One round: both stacks poll, their packets cross the engine, and
    /// the engine's timers run. Whether anything moved.
    fn step(&mut self) -> bool {
        let now = self.now_ms;
        self.client.poll(now);
        self.server.poll(now);
        let mut moved = false;
        while let Some(p) = self.client.dev.tx.pop_front() {
            self.last_ack_from_client = tcp_ack(&p).or(self.last_ack_from_client);
            self.through_engine(&p);
            moved = true;
        }
        while let Some(p) = self.server.dev.tx.pop_front() {
            self.last_ack_from_server = tcp_ack(&p).or(self.last_ack_from_server);
            self.through_engine(&p);
            moved = true;
        }
        let t = self.now();
        self.engine.handle_timeout(t);
        let mut buf = [0u8; Engine::TRANSMIT_LEN];
        while let Some((len, to)) = self.engine.poll_transmit(&mut buf) {
            self.emitted.push((to, buf[..len].to_vec()));
            self.deliver(to.into(), &buf[..len]);
            moved = true;
        }
        moved
    }

    /// Run until `done`, jumping the clock when idle; panics after
    /// `limit_ms` of simulated time.
    fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&mut Net) -> bool) {
        let end = self.now_ms + limit_ms;
        while !done(self) {
            assert!(
                self.now_ms < end,
                "not done after {limit_ms} ms of simulated time"
            );
            if !self.step() {
                let now = self.now_ms;
                let next = [
                    self.client.delay_ms(now),
                    self.server.delay_ms(now),
                    self.engine
                        .poll_timeout()
                        .map(|t| t.as_millis().saturating_sub(now)),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(10);
                self.now_ms += next.clamp(1, 1000);
            }
        }
    }
}

/// The acknowledgment number of a TCP segment with ACK set.
fn tcp_ack(ip: &[u8]) -> Option<u32> {
    let packet = etherparse::SlicedPacket::from_ip(ip).ok()?;
    match packet.transport {
        Some(etherparse::TransportSlice::Tcp(tcp)) if tcp.ack() => {
            Some(tcp.acknowledgment_number())
        }
        _ => None,
    }
}

/// The flags and sequence and acknowledgment numbers of a TCP segment.
fn tcp_fields(ip: &[u8]) -> (bool, bool, u32, u32, u16, u16) {
    let packet = etherparse::SlicedPacket::from_ip(ip).unwrap();
    let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
        panic!("not TCP");
    };
    (
        tcp.rst(),
        tcp.ack(),
        tcp.sequence_number(),
        tcp.acknowledgment_number(),
        tcp.source_port(),
        tcp.destination_port(),
    )
}

/// Checksums recomputed by the test kit's oracle, independently of the
/// engine: the IPv4 header's, and TCP's or UDP's over the IPv4 or IPv6
/// pseudo-header.
fn check_checksums(ip: &[u8]) {
    let p = checksum::ip_at(ip, 0).expect("a valid IP packet");
    assert!(p.end <= ip.len(), "the IP packet is whole");
    if p.v6 {
        assert_eq!(p.l4, 40, "no extension headers");
    } else {
        assert!(checksum::header_sum_ok(ip, &p), "IPv4 header checksum");
    }
    assert!(
        [checksum::PROTO_TCP, checksum::PROTO_UDP].contains(&p.proto),
        "unexpected transport {}",
        p.proto
    );
    assert_eq!(
        checksum::l4_sum_of(ip, &p),
        checksum::L4Sum::Valid,
        "TCP or UDP checksum"
    );
}

/// What the server received carries the client's real address in the TTM
/// option exactly where it should (ttm-core decodes it, at the length of
/// the client's family): on the client's segments that acknowledge the
/// server's SYN-ACK before the server's first byte, and on no other
/// segment; and every packet each way still fits the 1500-byte MTU, with
/// full-size segments (the SYN-ACK's MSS was lowered by the option's
/// length, and for 6to4 by the IPv6 header's growth too).
fn check_ttm_on_the_server_side(
    to_server: &[Vec<u8>],
    to_client: &[Vec<u8>],
    client: std::net::SocketAddr,
) {
    let family = if client.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let synack = to_client
        .iter()
        .find_map(|ip| {
            let packet = etherparse::SlicedPacket::from_ip(ip).ok()?;
            match packet.transport {
                Some(etherparse::TransportSlice::Tcp(t)) if t.syn() && t.ack() => {
                    Some(t.to_header())
                }
                _ => None,
            }
        })
        .expect("a SYN-ACK reached the client");
    let mss = synack.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    assert_eq!(
        mss,
        Some(1460 - family.mss_cut()),
        "the SYN-ACK's MSS is lowered by the option (and the header growth)"
    );
    let mut largest_to_client = 0;
    for ip in to_client {
        assert!(ip.len() <= 1500, "{} bytes to the client", ip.len());
        let packet = etherparse::SlicedPacket::from_ip(ip).unwrap();
        if let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport {
            largest_to_client = largest_to_client.max(tcp.payload().len());
        }
    }
    assert!(
        largest_to_client >= 1400,
        "full-size segments to the client: {largest_to_client}"
    );
    let mut with_option = 0;
    let mut largest_payload = 0;
    for ip in to_server {
        assert!(ip.len() <= 1500, "{} bytes", ip.len());
        let packet = etherparse::SlicedPacket::from_ip(ip).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
            continue;
        };
        let found = ttm_core::find(tcp.options(), &ttm_core::KindSet::DEFAULT).unwrap();
        largest_payload = largest_payload.max(tcp.payload().len());
        if tcp.syn() {
            assert!(found.is_none(), "never on a SYN");
            continue;
        }
        if let Some(option) = found {
            assert_eq!(option.client(), client);
            assert_eq!(option.buffer_len(), family.option_len());
            assert_eq!(
                tcp.acknowledgment_number(),
                synack.sequence_number.wrapping_add(1),
                "only before the server's first byte"
            );
            with_option += 1;
        }
    }
    assert!(with_option >= 1, "the third ACK carries the option");
    assert!(
        largest_payload >= 1400,
        "full-size segments: {largest_payload}"
    );
}

fn pattern(i: usize, salt: u8) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 11) as u8
}

const MB: usize = 1 << 20;

#[test]
fn tcp_one_megabyte_each_way_then_close() {
    one_megabyte_each_way_then_close(Family::V4);
}

#[test]
fn tcp_6to4_one_megabyte_each_way_then_close() {
    one_megabyte_each_way_then_close(Family::V6);
}

fn one_megabyte_each_way_then_close(family: Family) {
    let mut net = Net::new(family);
    let c = net.client.tcp();
    let s = net.server.tcp();
    net.server
        .sockets
        .get_mut::<tcp::Socket>(s)
        .listen(8080)
        .unwrap();
    let cx = net.client.iface.context();
    net.client
        .sockets
        .get_mut::<tcp::Socket>(c)
        .connect(cx, (family.vip(), 80), 40000)
        .unwrap();

    let (mut c_sent, mut c_recv, mut s_sent, mut s_recv) = (0usize, 0usize, 0usize, 0usize);
    net.run_until(120_000, |net| {
        let cs = net.client.sockets.get_mut::<tcp::Socket>(c);
        if cs.may_send() && c_sent < MB {
            c_sent += cs
                .send(|buf| {
                    let n = buf.len().min(MB - c_sent);
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        *b = pattern(c_sent + i, 1);
                    }
                    (n, n)
                })
                .unwrap();
        }
        while cs.can_recv() {
            c_recv += cs
                .recv(|buf| {
                    for (i, b) in buf.iter().enumerate() {
                        assert_eq!(*b, pattern(c_recv + i, 2), "client byte {}", c_recv + i);
                    }
                    (buf.len(), buf.len())
                })
                .unwrap();
        }
        let ss = net.server.sockets.get_mut::<tcp::Socket>(s);
        if ss.is_active() {
            // The server sees the local address, never the client (FULLNAT).
            assert_eq!(ss.remote_endpoint().unwrap().addr, IpAddress::Ipv4(LIP));
        }
        while ss.can_recv() {
            s_recv += ss
                .recv(|buf| {
                    for (i, b) in buf.iter().enumerate() {
                        assert_eq!(*b, pattern(s_recv + i, 1), "server byte {}", s_recv + i);
                    }
                    (buf.len(), buf.len())
                })
                .unwrap();
        }
        if ss.may_send() && s_sent < MB {
            s_sent += ss
                .send(|buf| {
                    let n = buf.len().min(MB - s_sent);
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        *b = pattern(s_sent + i, 2);
                    }
                    (n, n)
                })
                .unwrap();
        }
        c_recv == MB && s_recv == MB
    });
    assert_eq!(net.engine.session_count(), 1);
    check_ttm_on_the_server_side(
        &net.to_server,
        &net.to_client,
        std::net::SocketAddr::new(family.client().into(), 40000),
    );
    let traffic = *net.engine.listener_traffic(0).unwrap();
    assert!(
        traffic.bytes_in > MB as u64 && traffic.bytes_out > MB as u64,
        "{traffic:?}"
    );
    assert_eq!(traffic.new_sessions, 1);

    // FIN close from both ends.
    net.client.sockets.get_mut::<tcp::Socket>(c).close();
    net.run_until(60_000, |net| {
        let ss = net.server.sockets.get_mut::<tcp::Socket>(s);
        if ss.state() == tcp::State::CloseWait {
            ss.close();
        }
        ss.state() == tcp::State::Closed
            && matches!(
                net.client.sockets.get::<tcp::Socket>(c).state(),
                tcp::State::TimeWait | tcp::State::Closed
            )
    });
    assert!(net.drops.is_empty(), "drops: {:?}", net.drops);

    // The closed session leaves after its short TIME_WAIT, well before
    // the 900 s of an established one.
    net.run_until(30_000, |net| net.engine.session_count() == 0);
    assert_eq!(net.engine.counters().rst_sent, 0);
}

#[test]
fn udp_request_and_reply() {
    udp_request_and_reply_for(Family::V4);
}

#[test]
fn udp_6to4_request_and_reply() {
    udp_request_and_reply_for(Family::V6);
}

fn udp_request_and_reply_for(family: Family) {
    let mut net = Net::new(family);
    let c = net.client.udp();
    let s = net.server.udp();
    net.client
        .sockets
        .get_mut::<udp::Socket>(c)
        .bind(5000)
        .unwrap();
    net.server
        .sockets
        .get_mut::<udp::Socket>(s)
        .bind(5353)
        .unwrap();
    let vip = IpEndpoint::new(family.vip(), 53);
    for i in 0..5u8 {
        net.client
            .sockets
            .get_mut::<udp::Socket>(c)
            .send_slice(&[i; 100], vip)
            .unwrap();
        net.run_until(1000, |net| {
            net.server.sockets.get_mut::<udp::Socket>(s).can_recv()
        });
        let (data, meta) = net.server.sockets.get_mut::<udp::Socket>(s).recv().unwrap();
        assert_eq!(data, &[i; 100]);
        assert_eq!(meta.endpoint.addr, IpAddress::Ipv4(LIP));
        let back = meta.endpoint;
        net.server
            .sockets
            .get_mut::<udp::Socket>(s)
            .send_slice(&[i ^ 0xff; 60], back)
            .unwrap();
        net.run_until(1000, |net| {
            net.client.sockets.get_mut::<udp::Socket>(c).can_recv()
        });
        let (data, meta) = net.client.sockets.get_mut::<udp::Socket>(c).recv().unwrap();
        assert_eq!(data, &[i ^ 0xff; 60]);
        assert_eq!(meta.endpoint, vip);
    }
    assert_eq!(
        net.engine.session_count(),
        1,
        "one session for the 5 datagrams"
    );
    // UDP idles out silently after 120 s.
    net.run_until(125_000, |net| net.engine.session_count() == 0);
    assert!(net.now_ms >= 120_000);
    assert_eq!(net.engine.counters().rst_sent, 0);
    assert_eq!(net.engine.counters().sessions_expired, 1);
}

#[test]
fn idle_established_session_gets_rst_both_ways() {
    idle_established_session_gets_rst(Family::V4);
}

#[test]
fn idle_6to4_established_session_gets_rst_both_ways() {
    idle_established_session_gets_rst(Family::V6);
}

fn idle_established_session_gets_rst(family: Family) {
    let mut net = Net::new(family);
    let c = net.client.tcp();
    let s = net.server.tcp();
    net.server
        .sockets
        .get_mut::<tcp::Socket>(s)
        .listen(8080)
        .unwrap();
    let cx = net.client.iface.context();
    net.client
        .sockets
        .get_mut::<tcp::Socket>(c)
        .connect(cx, (family.vip(), 80), 40001)
        .unwrap();
    net.run_until(10_000, |net| {
        net.client.sockets.get::<tcp::Socket>(c).state() == tcp::State::Established
            && net.server.sockets.get::<tcp::Socket>(s).state() == tcp::State::Established
    });
    // Some data each way, so that sequence numbers have moved.
    net.client
        .sockets
        .get_mut::<tcp::Socket>(c)
        .send_slice(b"hello")
        .unwrap();
    net.run_until(10_000, |net| {
        net.server.sockets.get::<tcp::Socket>(s).recv_queue() == 5
    });
    net.server
        .sockets
        .get_mut::<tcp::Socket>(s)
        .send_slice(b"world!")
        .unwrap();
    net.run_until(10_000, |net| {
        net.client.sockets.get::<tcp::Socket>(c).recv_queue() == 6
    });
    let start = net.now_ms;

    // Idle: nothing is sent (no keep-alive) until the 900 s timeout.
    net.run_until(1_000_000, |net| {
        net.client.sockets.get::<tcp::Socket>(c).state() == tcp::State::Closed
            && net.server.sockets.get::<tcp::Socket>(s).state() == tcp::State::Closed
    });
    let idle = net.now_ms - start;
    assert!((900_000..=902_000).contains(&idle), "reset after {idle} ms");
    assert_eq!(net.engine.counters().rst_sent, 2);
    // RFC 5961 §3.2: each RST carries exactly the sequence number its
    // receiver expects next, so that it is accepted at once.
    assert_eq!(net.emitted.len(), 2);
    // What each stack acknowledged last is what it expects next.
    let client_rcv_nxt = net.last_ack_from_client.unwrap();
    let server_rcv_nxt = net.last_ack_from_server.unwrap();
    for (to, frame) in &net.emitted {
        let ip = &frame[14..];
        let (rst, ack, seq, _, sport, dport) = tcp_fields(ip);
        assert!(rst && ack);
        match to {
            Transmit::ToClient { .. } => {
                // 14 + 20 + 20 bytes for IPv4, 14 + 40 + 20 for IPv6.
                assert_eq!(
                    frame.len(),
                    family.rst_frame_len(),
                    "RST frame to the client"
                );
                assert_eq!(ip[0] >> 4, family.version());
                assert_eq!((sport, dport), (80, 40001));
                assert_eq!(seq, client_rcv_nxt, "RST to the client");
            }
            Transmit::ToServer { .. } => {
                assert_eq!(frame.len(), 14 + 20 + 20, "RST frame to the server");
                assert_eq!(ip[0] >> 4, 4);
                assert_eq!(dport, 8080);
                assert_eq!(seq, server_rcv_nxt, "RST to the server");
            }
        }
    }
    assert_eq!(net.engine.counters().sessions_expired, 1);
    assert_eq!(net.engine.session_count(), 0);
    assert!(net.drops.is_empty(), "drops: {:?}", net.drops);
}
