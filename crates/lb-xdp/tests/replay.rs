//! `lbd replay` over captures built here with etherparse and pcap-file:
//! the forwarded frames and their rewritten addresses, the TTM option on
//! the third ACK, echo replies, the RSTs of idle expiry, exact summaries,
//! and bad captures (another link type, cut-short records, a file that
//! ends in a record, garbage).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use lb_engine::DropReason;
use lb_testkit::frame::{Link, Tcp, tcp_on, udp_on};
use lb_xdp::config::Config;
use lb_xdp::replay::{ReplayError, Summary, replay};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use ttm_core::KindSet;

/// The client's router, the balancer, the real server.
const MAC_ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_LB: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const MAC_RS: [u8; 6] = [2, 0, 0, 0, 0, 2];

const CIP: [u8; 4] = [192, 0, 2, 10];
const VIP: [u8; 4] = [198, 51, 100, 1];
const RIP: [u8; 4] = [10, 0, 0, 2];
const LIP: [u8; 4] = [10, 0, 0, 100];
const C: ([u8; 4], u16) = (CIP, 40000);
const V: ([u8; 4], u16) = (VIP, 80);
const R: ([u8; 4], u16) = (RIP, 8080);
/// The pool's one local port (see replay/web.toml).
const L: ([u8; 4], u16) = (LIP, 50000);

/// The capture's epoch: records are stamped from here.
const T0: Duration = Duration::from_secs(1_700_000_000);

fn config() -> Config {
    let text = include_str!("replay/web.toml");
    match Config::parse(text) {
        Ok(c) => c,
        Err(errors) => panic!("replay/web.toml: {errors:?}"),
    }
}

/// A fresh path under Cargo's scratch directory for this test target.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lb-xdp-replay");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", std::process::id()))
}

fn tcp(
    macs: ([u8; 6], [u8; 6]),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    t: Tcp,
    payload: &[u8],
) -> Vec<u8> {
    tcp_on(
        Link::DEFAULT.macs(macs.0, macs.1),
        src,
        dst,
        t,
        &[],
        payload,
    )
}

fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let link = Link::DEFAULT.macs(MAC_ROUTER, MAC_LB);
    udp_on(link, src, dst, b"query")
}

fn echo_request(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_ROUTER, MAC_LB)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, b"ping")
        .unwrap();
    out
}

/// One record: timestamp since [`T0`], wire length, captured bytes.
struct Rec {
    at: Duration,
    orig_len: u32,
    data: Vec<u8>,
}

fn rec(at_micros: u64, data: Vec<u8>) -> Rec {
    Rec {
        at: Duration::from_micros(at_micros),
        orig_len: u32::try_from(data.len()).unwrap(),
        data,
    }
}

fn write_pcap(
    path: &PathBuf,
    datalink: DataLink,
    ts_resolution: TsResolution,
    endianness: Endianness,
    recs: &[Rec],
) {
    let header = PcapHeader {
        datalink,
        ts_resolution,
        endianness,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for r in recs {
        w.write_packet(&PcapPacket::new(T0 + r.at, r.orig_len, &r.data))
            .unwrap();
    }
}

/// The output's header and records.
fn read_pcap(path: &PathBuf) -> (PcapHeader, Vec<PcapPacket<'static>>) {
    let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().into_owned());
    }
    (r.header(), out)
}

/// What the tests check of an output TCP frame.
#[derive(Debug)]
struct Seg {
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddr,
    dst: SocketAddr,
    syn: bool,
    rst: bool,
    seq: u32,
    options: Vec<u8>,
    payload: Vec<u8>,
}

/// Parse a TCP/IPv4 frame, checking both checksums.
fn seg(frame: &[u8]) -> Seg {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let eth = p.link.unwrap().to_header().unwrap().ethernet2().unwrap();
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum, "IPv4 checksum");
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    assert_eq!(
        t.calc_checksum_ipv4(h.source, h.destination).unwrap(),
        t.checksum(),
        "TCP checksum"
    );
    Seg {
        macs: (eth.source, eth.destination),
        src: SocketAddr::from((h.source, t.source_port())),
        dst: SocketAddr::from((h.destination, t.destination_port())),
        syn: t.syn(),
        rst: t.rst(),
        seq: t.sequence_number(),
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
    }
}

fn sa(a: ([u8; 4], u16)) -> SocketAddr {
    SocketAddr::from(a)
}

/// The main capture: a handshake with data, a frame for the host, two bad
/// ones, a ping, two unreadable records, and (when `late`) a frame 20 s
/// later, after the 5 s established timeout.
fn main_capture(late: bool) -> Vec<Rec> {
    let mut recs = vec![
        rec(
            0,
            tcp(
                (MAC_ROUTER, MAC_LB),
                C,
                V,
                Tcp {
                    syn: true,
                    seq: 1000,
                    ..Tcp::default()
                },
                b"",
            ),
        ),
        rec(
            100,
            tcp(
                (MAC_RS, MAC_LB),
                R,
                L,
                Tcp {
                    syn: true,
                    ack: Some(1001),
                    seq: 5000,
                    ..Tcp::default()
                },
                b"",
            ),
        ),
        rec(
            200,
            tcp(
                (MAC_ROUTER, MAC_LB),
                C,
                V,
                Tcp {
                    ack: Some(5001),
                    seq: 1001,
                    ..Tcp::default()
                },
                b"hello",
            ),
        ),
        // For the host (not a VIP or local address): passed.
        rec(
            300,
            tcp(
                (MAC_ROUTER, MAC_LB),
                C,
                ([192, 0, 2, 1], 22),
                Tcp {
                    syn: true,
                    seq: 1,
                    ..Tcp::default()
                },
                b"",
            ),
        ),
        // Another client port without SYN: no session.
        rec(
            400,
            tcp(
                (MAC_ROUTER, MAC_LB),
                (CIP, 40001),
                V,
                Tcp {
                    ack: Some(1),
                    seq: 1,
                    ..Tcp::default()
                },
                b"",
            ),
        ),
        // UDP to the VIP, which has no UDP listener.
        rec(500, udp((CIP, 5000), (VIP, 53))),
        rec(600, echo_request(CIP, VIP)),
    ];
    // Cut short: captured 30 of its bytes.
    let mut cut = rec(700, echo_request(CIP, VIP));
    cut.data.truncate(30);
    recs.push(cut);
    // Shorter than an Ethernet header.
    recs.push(rec(800, vec![0xff; 10]));
    if late {
        recs.push(rec(
            20_000_000,
            tcp(
                (MAC_ROUTER, MAC_LB),
                C,
                ([192, 0, 2, 1], 22),
                Tcp {
                    syn: true,
                    seq: 2,
                    ..Tcp::default()
                },
                b"",
            ),
        ));
    }
    recs
}

fn expected_summary(rsts: u64, late: bool) -> Summary {
    Summary {
        frames: 7 + u64::from(late),
        to_server: 2,
        to_client: 1,
        replies: 1,
        passed: 1 + u64::from(late),
        dropped: 2,
        drops: vec![(DropReason::NoListener, 1), (DropReason::NoSession, 1)],
        rsts,
        unreadable: 2,
    }
}

/// The forwarded frames of the main capture, in order, at their input
/// timestamps.
fn check_forwarded(out: &[PcapPacket<'_>]) {
    // The SYN: lip:lport -> rip:rport, layer 2 as captured, no option.
    let syn = seg(&out[0].data);
    assert_eq!(out[0].timestamp, T0);
    assert_eq!((syn.src, syn.dst), (sa(L), sa(R)));
    assert!(syn.syn && !syn.rst);
    assert_eq!(syn.seq, 1000);
    assert_eq!(syn.macs, (MAC_ROUTER, MAC_LB));
    assert_eq!(
        ttm_core::find(&syn.options, &KindSet::DEFAULT).unwrap(),
        None
    );

    // The SYN-ACK: VIP:vport -> cip:cport.
    let synack = seg(&out[1].data);
    assert_eq!(out[1].timestamp, T0 + Duration::from_micros(100));
    assert_eq!((synack.src, synack.dst), (sa(V), sa(C)));
    assert!(synack.syn);
    assert_eq!(synack.seq, 5000);
    assert_eq!(synack.macs, (MAC_RS, MAC_LB));

    // The third ACK: the TTM option with the client's address, and the
    // payload intact.
    let ack = seg(&out[2].data);
    assert_eq!(out[2].timestamp, T0 + Duration::from_micros(200));
    assert_eq!((ack.src, ack.dst), (sa(L), sa(R)));
    assert_eq!(ack.payload, b"hello");
    let option = ttm_core::find(&ack.options, &KindSet::DEFAULT)
        .unwrap()
        .expect("no TTM option on the third ACK");
    assert_eq!(option.client(), sa(C));
    assert_eq!(option.kind(), ttm_core::DEFAULT_KIND);
    assert_eq!(out[2].orig_len as usize, out[2].data.len());

    // The echo reply: IP and MAC addresses swapped.
    let reply = &out[3].data;
    assert_eq!(out[3].timestamp, T0 + Duration::from_micros(600));
    let p = SlicedPacket::from_ethernet(reply).unwrap();
    let eth = p.link.unwrap().to_header().unwrap().ethernet2().unwrap();
    assert_eq!((eth.source, eth.destination), (MAC_LB, MAC_ROUTER));
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        (VIP, CIP)
    );
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!("not ICMP")
    };
    assert!(matches!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::EchoReply(_)
    ));
}

#[test]
fn a_handshake_is_rewritten_and_idle_expiry_sends_rsts() {
    let input = scratch("main.pcap");
    let output = scratch("main-out.pcap");
    write_pcap(
        &input,
        DataLink::ETHERNET,
        TsResolution::MicroSecond,
        Endianness::Little,
        &main_capture(true),
    );
    let summary = replay(&config(), &input, &output).unwrap();
    assert_eq!(summary, expected_summary(2, true));

    let (header, out) = read_pcap(&output);
    assert_eq!(header.datalink, DataLink::ETHERNET);
    assert_eq!(header.ts_resolution, TsResolution::MicroSecond);
    assert_eq!(out.len(), 6, "4 forwarded frames and 2 RSTs");
    check_forwarded(&out);

    // The RSTs: to the client from the VIP, at the client's last ACK; to
    // the server from the local address, at the server's last ACK; after
    // the 5 s timeout (within a sweep period), before the late frame, and
    // with zero MAC addresses (replay has no neighbour table).
    let to_client = seg(&out[4].data);
    let to_server = seg(&out[5].data);
    for (p, s) in out[4..].iter().zip([&to_client, &to_server]) {
        assert!(s.rst, "{s:?}");
        assert_eq!(s.macs, ([0; 6], [0; 6]));
        assert!(
            p.timestamp >= T0 + Duration::from_millis(4999)
                && p.timestamp <= T0 + Duration::from_millis(6200),
            "RST at {:?}",
            p.timestamp - T0
        );
    }
    assert_eq!((to_client.src, to_client.dst), (sa(V), sa(C)));
    assert_eq!(to_client.seq, 5001);
    assert_eq!((to_server.src, to_server.dst), (sa(L), sa(R)));
    assert_eq!(to_server.seq, 1001);

    let text = summary.to_string();
    assert!(text.contains("no_session"), "{text}");
    assert!(text.contains("no_listener"), "{text}");
    assert!(text.ends_with('\n'));
}

#[test]
fn no_rst_when_the_capture_ends_before_the_timeout() {
    let input = scratch("short.pcap");
    let output = scratch("short-out.pcap");
    write_pcap(
        &input,
        DataLink::ETHERNET,
        TsResolution::MicroSecond,
        Endianness::Big,
        &main_capture(false),
    );
    let summary = replay(&config(), &input, &output).unwrap();
    assert_eq!(summary, expected_summary(0, false));
    let (header, out) = read_pcap(&output);
    assert_eq!(header.endianness, Endianness::Big);
    assert_eq!(out.len(), 4);
    check_forwarded(&out);
}

#[test]
fn nanosecond_captures_keep_their_timestamps() {
    let input = scratch("nano.pcap");
    let output = scratch("nano-out.pcap");
    let mut recs = main_capture(true);
    for (i, r) in recs.iter_mut().enumerate() {
        r.at += Duration::from_nanos(i as u64 + 1);
    }
    write_pcap(
        &input,
        DataLink::ETHERNET,
        TsResolution::NanoSecond,
        Endianness::Little,
        &recs,
    );
    let summary = replay(&config(), &input, &output).unwrap();
    assert_eq!(summary, expected_summary(2, true));
    let (header, out) = read_pcap(&output);
    assert_eq!(header.ts_resolution, TsResolution::NanoSecond);
    let ack = seg(&out[2].data);
    assert!(
        ttm_core::find(&ack.options, &KindSet::DEFAULT)
            .unwrap()
            .is_some()
    );
    assert_eq!(out[2].timestamp, T0 + recs[2].at);
    assert_eq!(out[3].timestamp, T0 + recs[6].at);
}

#[test]
fn records_at_one_instant_are_batched_with_the_same_results() {
    // 100 SYNs from different client ports (and a few frames the engine
    // drops among them): once all at one instant (batches of 32), once
    // 1 µs apart (one by one). A wide local port range, so that every SYN
    // gets a session; the hash seed is fixed, so the ports repeat.
    let mut config = config();
    config.listeners[0].engine.local.ports = 1024..=65535;
    let frames: Vec<Vec<u8>> = (0..100u16)
        .map(|i| {
            if i % 10 == 9 {
                udp((CIP, 6000 + i), (VIP, 53))
            } else {
                tcp(
                    (MAC_ROUTER, MAC_LB),
                    (CIP, 30000 + i),
                    V,
                    Tcp {
                        syn: true,
                        seq: u32::from(i),
                        ..Tcp::default()
                    },
                    b"",
                )
            }
        })
        .collect();
    let run = |name: &str, step_micros: u64| {
        let input = scratch(&format!("{name}.pcap"));
        let output = scratch(&format!("{name}-out.pcap"));
        let recs: Vec<Rec> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| rec(i as u64 * step_micros, f.clone()))
            .collect();
        write_pcap(
            &input,
            DataLink::ETHERNET,
            TsResolution::MicroSecond,
            Endianness::Little,
            &recs,
        );
        let summary = replay(&config, &input, &output).unwrap();
        let (_, out) = read_pcap(&output);
        let bytes: Vec<Vec<u8>> = out.iter().map(|p| p.data.to_vec()).collect();
        (summary, bytes)
    };
    let (batched, batched_out) = run("same-instant", 0);
    let (single, single_out) = run("one-by-one", 1);
    assert_eq!(batched, single);
    assert_eq!(batched_out, single_out);
    assert_eq!(batched.frames, 100);
    assert_eq!(batched.to_server, 90);
    assert_eq!(batched.drops, vec![(DropReason::NoListener, 10)]);
    assert_eq!(batched_out.len(), 90);
}

#[test]
fn another_link_type_is_refused() {
    let input = scratch("raw.pcap");
    let output = scratch("raw-out.pcap");
    // Linux cooked capture (113), as `tcpdump -i any` writes.
    write_pcap(
        &input,
        DataLink::LINUX_SLL,
        TsResolution::MicroSecond,
        Endianness::Little,
        &[rec(0, vec![0; 60])],
    );
    match replay(&config(), &input, &output) {
        Err(ReplayError::NotEthernet(113)) => {}
        other => panic!("{other:?}"),
    }
    let e = replay(&config(), &input, &output).unwrap_err();
    assert!(e.to_string().contains("113"), "{e}");
}

#[test]
fn a_capture_cut_in_a_record_ends_the_replay_there() {
    let input = scratch("cut.pcap");
    let output = scratch("cut-out.pcap");
    write_pcap(
        &input,
        DataLink::ETHERNET,
        TsResolution::MicroSecond,
        Endianness::Little,
        &main_capture(false)[..3],
    );
    // Cut the last record (the third ACK) in the middle of its data.
    let len = std::fs::metadata(&input).unwrap().len();
    File::options()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let summary = replay(&config(), &input, &output).unwrap();
    assert_eq!(
        (
            summary.frames,
            summary.to_server,
            summary.to_client,
            summary.unreadable
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(read_pcap(&output).1.len(), 2);
}

#[test]
fn garbage_frames_are_counted_not_fatal() {
    let input = scratch("garbage.pcap");
    let output = scratch("garbage-out.pcap");
    // Deterministic junk of every length from 0 to 200, some of it with an
    // IPv4 EtherType and our addresses in place.
    let mut x: u32 = 0x1234_5678;
    let mut recs = Vec::new();
    for len in 0..200usize {
        let mut data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if len >= 34 && len % 2 == 0 {
            data[12..14].copy_from_slice(&[0x08, 0x00]);
            data[14] = 0x45;
            data[30..34].copy_from_slice(&VIP);
        }
        recs.push(rec(len as u64, data));
    }
    write_pcap(
        &input,
        DataLink::ETHERNET,
        TsResolution::MicroSecond,
        Endianness::Little,
        &recs,
    );
    let summary = replay(&config(), &input, &output).unwrap();
    // Records below an Ethernet header are unreadable; the rest reach the
    // engine.
    assert_eq!(summary.unreadable, 14);
    assert_eq!(summary.frames, 186);
    assert_eq!(
        summary.to_server + summary.to_client + summary.replies + summary.passed + summary.dropped,
        summary.frames
    );
    assert_eq!(
        summary.drops.iter().map(|(_, n)| n).sum::<u64>(),
        summary.dropped
    );
}

#[test]
fn files_that_are_not_captures() {
    let output = scratch("none-out.pcap");
    let missing = scratch("does-not-exist.pcap");
    match replay(&config(), &missing, &output) {
        Err(ReplayError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    let text = scratch("text.pcap");
    std::fs::write(&text, "this is not a capture file, it is text\n").unwrap();
    match replay(&config(), &text, &output) {
        Err(ReplayError::Pcap { path, .. }) => assert_eq!(path, text),
        other => panic!("{other:?}"),
    }
    let empty = scratch("empty.pcap");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        replay(&config(), &empty, &output),
        Err(ReplayError::Pcap { .. })
    ));
}

#[test]
fn an_empty_capture_gives_an_empty_output() {
    let input = scratch("nothing.pcap");
    let output = scratch("nothing-out.pcap");
    write_pcap(
        &input,
        DataLink::ETHERNET,
        TsResolution::NanoSecond,
        Endianness::Little,
        &[],
    );
    let summary = replay(&config(), &input, &output).unwrap();
    assert_eq!(summary, Summary::default());
    let (header, out) = read_pcap(&output);
    assert_eq!(header.ts_resolution, TsResolution::NanoSecond);
    assert!(out.is_empty());
}
