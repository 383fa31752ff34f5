//! `handle_batch` equals `handle_packet` frame by frame, below and above
//! the size where it loads the table ahead of the work.
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use rules_common::*;

// ----- 9. handle_batch ---------------------------------------------------------------

/// Above this many sessions `handle_batch` loads the table ahead of the
/// work (`CACHED_SESSIONS` in engine.rs); below it, it is a loop over
/// `handle_packet`. Both regimes are compared.
const PREFETCH_ABOVE: u32 = 8192;

fn batch_sim() -> Sim {
    let config = EngineConfig {
        capacity: 16384,
        ..cfg()
    };
    let mut s = Sim::new(config, Instant::from_secs(50));
    let mut tcp = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080)],
        &[LIP],
        1024..=65535,
    );
    tcp.backends[1].weight = 2;
    s.e.add_listener(tcp).unwrap();
    let udp = listener(
        VIP,
        53,
        Protocol::Udp,
        &[(RIP3, 5353)],
        &[LIP],
        1024..=65535,
    );
    s.e.add_listener(udp).unwrap();
    let fill = listener(VIP2, 53, Protocol::Udp, &[(RIP4, 53)], &[LIP], 1024..=65535);
    s.e.add_listener(fill).unwrap();
    s
}

fn filler_client(i: u32) -> Ep {
    (ip([172, 16, (i >> 8) as u8, i as u8]), 7000)
}

fn run_batch(
    e: &mut Engine,
    now: Instant,
    inputs: &[Vec<u8>],
    verdicts: &mut [Verdict],
) -> Vec<Vec<u8>> {
    let start = Frame::HEADROOM;
    let mut bufs: Vec<Vec<u8>> = inputs
        .iter()
        .map(|f| {
            let mut buf = vec![0u8; start + f.len() + 64];
            buf[start..start + f.len()].copy_from_slice(f);
            buf
        })
        .collect();
    let mut frames: Vec<Frame<'_>> = bufs
        .iter_mut()
        .zip(inputs)
        .map(|(buf, f)| Frame::new(buf, start, start + f.len()).unwrap())
        .collect();
    e.handle_batch(now, &mut frames, verdicts);
    frames.iter().map(|f| f.bytes().to_vec()).collect()
}

fn vlan_syn(src: Ep, dst: Ep) -> Vec<u8> {
    tcp_vlan(Some(7), src, dst, syn(C_ISN), &[], b"")
}

/// Two identical engines with `fillers` long-lived UDP sessions each; one
/// takes a mixed batch of 100 frames through `handle_batch`, the other
/// the same frames one by one through `handle_packet`.
fn batch_equals_frame_by_frame(fillers: u32) {
    let mut a = batch_sim();
    let mut b = batch_sim();
    let v = (VIP, 80);
    for i in 0..fillers {
        let f = udp_frame(filler_client(i), (VIP2, 53), b"f");
        assert_eq!(a.verdict(&f), to_server(RIP4));
        assert_eq!(b.verdict(&f), to_server(RIP4));
    }
    // Sessions from before the batch, on both.
    let mut conns = Vec::new();
    for i in 0..6 {
        let ca = a.establish((CIP, 40000 + i), v);
        let cb = b.establish((CIP, 40000 + i), v);
        assert_eq!(ca.tuple(), cb.tuple());
        conns.push(ca);
    }
    same_everywhere(&a.e, &b.e, "after the warm-up");
    let now = Instant::from_secs(51);
    b.now = now;

    // The batch is chosen frame by frame from what `b` answers, so that
    // it also holds server replies to sessions the batch itself starts.
    let mut rng = Rng::new(7);
    let mut inputs = Vec::new();
    let mut want = Vec::new();
    let mut udp_sessions: HashMap<Ep, (Ep, Ep)> = HashMap::new();
    let mut next_port = 20000u16;
    for _ in 0..100 {
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        next_port += 1;
        let f = match rng.below(15) {
            0 | 1 => tcp_frame((CIP2, next_port), v, syn(C_ISN), b""),
            2 | 3 => {
                let c = conns[pick(&mut rng, conns.len())];
                c.client(ack(C_ISN + 1, S_ISN + 1), b"data")
            }
            4 | 5 => {
                let c = conns[pick(&mut rng, conns.len())];
                c.server(ack(S_ISN + 1, C_ISN + 1), b"reply")
            }
            6 => udp_frame((CIP3, 5000 + rng.below(4) as u16), (VIP, 53), b"u"),
            7 if !udp_sessions.is_empty() => {
                let mut keys: Vec<_> = udp_sessions.keys().copied().collect();
                keys.sort_unstable();
                let (l, r) = udp_sessions[&keys[pick(&mut rng, keys.len())]];
                udp_frame(r, l, b"ua")
            }
            8 => tcp_frame((CIP3, 9), v, ack(1, 1), b""),
            9 => match rng.below(4) {
                0 => tcp_frame((CIP, 1), (OTHER, 22), syn(1), b""),
                1 => arp(),
                2 => echo_frame(CIP, VIP, false),
                _ => tcp_frame((CIP, 1), v, syn(1), b"")[..30].to_vec(),
            },
            10 => tcp_frame(
                (CIP3, 10),
                v,
                Tcp {
                    syn: true,
                    fin: true,
                    ..Tcp::default()
                },
                b"",
            ),
            11 => {
                // A minimum-size Ethernet frame: padding after the datagram.
                let mut f = udp_frame((CIP3, next_port), (VIP, 53), b"p");
                f.resize(60, 0);
                f
            }
            12 => vlan_syn((CIP3, next_port), v),
            13 if fillers > 0 => {
                let client = filler_client(rng.below(u64::from(fillers)) as u32);
                udp_frame(client, (VIP2, 53), b"again")
            }
            _ => {
                let c = conns[pick(&mut rng, conns.len())];
                if rng.below(2) == 0 {
                    c.client(fin(C_ISN + 1, S_ISN + 1), b"")
                } else {
                    c.client(rst(C_ISN + 1), b"")
                }
            }
        };
        let (verdict, out) = b.send(&f);
        if let Verdict::ToServer { .. } = verdict {
            let ((src, sport), dst) = endpoints(&f);
            let (l, r) = endpoints(&out);
            if dst == v && src == CIP2 {
                conns.push(Conn {
                    c: (src, sport),
                    v,
                    l,
                    r,
                });
            } else if dst.1 == 53 {
                udp_sessions.insert((src, sport), (l, r));
            }
        }
        inputs.push(f);
        want.push((verdict, out));
    }
    let kinds: HashSet<_> = want
        .iter()
        .map(|(v, _)| std::mem::discriminant(v))
        .collect();
    assert_eq!(kinds.len(), 5, "every kind of verdict is in the batch");
    assert_eq!(
        a.e.session_count() > PREFETCH_ABOVE,
        fillers > PREFETCH_ABOVE,
        "the regime asked for"
    );

    let sentinel = Verdict::Drop(DropReason::BadTcpFlags);
    let mut verdicts = vec![sentinel; 101];
    let outputs = run_batch(&mut a.e, now, &inputs, &mut verdicts);
    for (i, ((verdict, out), (got_v, got_out))) in
        want.iter().zip(verdicts.iter().zip(&outputs)).enumerate()
    {
        assert_eq!(got_v, verdict, "frame {i}: verdict");
        assert_eq!(got_out, out, "frame {i}: output");
    }
    assert_eq!(verdicts[100], sentinel, "an extra verdict is left alone");
    same_everywhere(&a.e, &b.e, "after the batch");

    // Fewer verdicts than frames: the extra frames are left alone.
    let more = vec![
        tcp_frame((CIP2, 60000), v, syn(1), b""),
        tcp_frame((CIP2, 60001), v, syn(1), b""),
        tcp_frame((CIP2, 60002), v, syn(1), b""),
    ];
    let mut two = [sentinel; 2];
    let outputs = run_batch(&mut a.e, now, &more, &mut two);
    for (i, f) in more.iter().take(2).enumerate() {
        let (verdict, out) = b.send(f);
        assert_eq!((two[i], &outputs[i]), (verdict, &out));
    }
    assert_eq!(outputs[2], more[2], "not processed");
    same_everywhere(&a.e, &b.e, "after a short batch");

    // The deadlines the batch set are the same: both engines expire the
    // same sessions at the same times, with the same RSTs.
    a.now = now;
    for (i, t) in [11, 31, 61, 121, 901].into_iter().enumerate() {
        a.advance_to(now + secs(t));
        b.advance_to(now + secs(t));
        same_everywhere(&a.e, &b.e, &format!("expiry step {i}"));
        assert_eq!(
            a.take_transmits(),
            b.take_transmits(),
            "expiry step {i}: RSTs"
        );
    }
    assert_eq!(a.e.session_count(), 0);
}

#[test]
fn handle_batch_gives_what_handle_packet_gives_on_a_small_table() {
    batch_equals_frame_by_frame(0);
}

#[test]
fn handle_batch_gives_what_handle_packet_gives_on_a_large_table() {
    batch_equals_frame_by_frame(PREFETCH_ABOVE + 500);
}
