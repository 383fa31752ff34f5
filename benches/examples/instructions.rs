//! The packet mixes of `scripts/instructions`, which runs this program
//! under `valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no`
//! and prints the instructions each mix costs per packet.
//!
//! Each mix is a fixed list of frames (sessions drawn with a fixed seed)
//! handed to an engine built first: the set-up runs uninstrumented, at
//! near native speed. For each mix the program starts callgrind's
//! instrumentation, turns collection on just around each call into the
//! engine (`handle_batch` for a batch of 32, or `handle_packet` on each
//! of the 32), and ends the mix with a dump named after it; copying the
//! frames in, building `Frame`s and checking verdicts are not counted.
//! It prints one line per mix, `name packets`, in the order of the dumps:
//!
//! - `forward_established/{1k,1m}`: a client's data segment (64 bytes,
//!   no options) of an established session drawn from 1,000 or
//!   1,000,000, through `handle_batch` (as the criterion benchmark
//!   `engine/forward_established`);
//! - `forward_reply/{1k,1m}`: the server's data segment (10 bytes) of such
//!   a session, to the client, through `handle_batch`;
//! - `new_session/{1k,1m}`: a SYN from a new client into those tables,
//!   through `handle_packet`;
//! - `new_session_quarantined/1k`: the same into a table of 1,000
//!   sessions while the quarantine holds the tuples of 60,000 sessions
//!   that ended before, as a busy balancer's does (with an empty one the
//!   port allocator's quarantine check costs almost nothing);
//! - `ttm_insert_v4`: the client's third ACK (NOP, NOP, timestamps, 64
//!   bytes) that gets the TTM option, in sessions drawn from 1,000 past
//!   the server's SYN-ACK, through `handle_packet`;
//! - `forward_6to4`: an IPv6 client's segment (the same options and
//!   data) through a 6to4 listener, translated to IPv4 without an option,
//!   sessions drawn from 1,000, through `handle_packet`.
//!
//! Every packet of a mix must get the verdict the mix is about (and the
//! option, or a new session, when that is its point): the program panics
//! otherwise. Run natively it does the same, with the client requests as
//! no-ops.
//!
//! ```sh
//! cargo build --release -p benches --example instructions
//! ```

use std::ffi::CString;

use benches::{
    Rng, SLOT, client, client_frame, client6, client6_frame, data_frame, engine_6to4,
    engine_with_established_sessions, engine_with_quarantine, engine_with_synacked_sessions,
    server_data_for, third_ack_frame,
};
use crabgrind::callgrind;
use lb_engine::{Engine, Frame, Instant, Verdict};

/// Packets per mix.
const PACKETS: usize = 8192;
/// Frames per call of `handle_batch` (and per collected stretch).
const BATCH: usize = 32;

/// How a mix hands its frames to the engine.
#[derive(Clone, Copy)]
enum Call {
    /// `handle_batch` on the 32 frames.
    Batch,
    /// `handle_packet` on each frame in turn.
    Single,
}

/// What every packet of a mix must come out as.
#[derive(Clone, Copy, Debug)]
enum Want {
    ToServer,
    ToClient,
}

impl Want {
    fn matches(self, verdict: &Verdict) -> bool {
        match self {
            Want::ToServer => matches!(verdict, Verdict::ToServer { .. }),
            Want::ToClient => matches!(verdict, Verdict::ToClient { .. }),
        }
    }
}

/// One mix: its frames, how they go in, and what must come out.
struct Mix {
    name: String,
    frames: Vec<Vec<u8>>,
    call: Call,
    want: Want,
    /// The time the packets arrive.
    now: Instant,
}

/// The sessions of `PACKETS` frames, drawn from `0..sessions` with `seed`.
fn picks(seed: u64, sessions: u32) -> Vec<u32> {
    let mut rng = Rng(seed ^ u64::from(sessions));
    (0..PACKETS)
        .map(|_| (rng.next_u64() % u64::from(sessions)) as u32)
        .collect()
}

/// The server's data segment of client `i`'s established session: the
/// client's data segment is forwarded first (uncounted), to learn the
/// local address and port the engine gave the session.
fn reply_frame(engine: &mut Engine, i: u32) -> Vec<u8> {
    let mut buf = vec![0u8; SLOT];
    let data = data_frame(client(i), 80, 64);
    let start = Frame::HEADROOM;
    buf[start..start + data.len()].copy_from_slice(&data);
    let mut f = Frame::new(&mut buf, start, start + data.len()).expect("fits");
    let verdict = engine.handle_packet(Instant::from_secs(1), &mut f);
    assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
    server_data_for(f.bytes())
}

/// Run `mix` through `engine` with callgrind collecting only inside the
/// engine's calls, then dump the counts under the mix's name and print
/// `name packets`.
fn measure(engine: &mut Engine, mix: &Mix) {
    let now = mix.now;
    let mut buf = vec![0u8; BATCH * SLOT];
    let mut verdicts = [Verdict::Pass; BATCH];
    let drops = engine.counters().dropped_total();
    callgrind::start_instrumentation();
    callgrind::zero_stats();
    for chunk in mix.frames.chunks(BATCH) {
        let mut frames: Vec<Frame<'_>> = buf
            .chunks_exact_mut(SLOT)
            .zip(chunk)
            .map(|(slot, t)| {
                let end = Frame::HEADROOM + t.len();
                slot[Frame::HEADROOM..end].copy_from_slice(t);
                Frame::new(slot, Frame::HEADROOM, end).expect("fits")
            })
            .collect();
        let out = &mut verdicts[..chunk.len()];
        callgrind::toggle_collect();
        match mix.call {
            Call::Batch => engine.handle_batch(now, &mut frames, out),
            Call::Single => {
                for (frame, verdict) in frames.iter_mut().zip(out.iter_mut()) {
                    *verdict = engine.handle_packet(now, frame);
                }
            }
        }
        callgrind::toggle_collect();
        if let Some(v) = out.iter().find(|v| !mix.want.matches(v)) {
            panic!("{}: {v:?}, not {:?}", mix.name, mix.want);
        }
    }
    let name = CString::new(mix.name.as_str()).expect("no NUL");
    callgrind::dump_stats(name.as_c_str());
    callgrind::stop_instrumentation();
    assert_eq!(
        engine.counters().dropped_total(),
        drops,
        "{}: no drop",
        mix.name
    );
    println!("{} {}", mix.name, mix.frames.len());
}

/// Established forwarding both ways, then new sessions, in a table of
/// `sessions` established sessions.
fn established(sessions: u32, label: &str) {
    let mut engine = engine_with_established_sessions(sessions, sessions + 65_536);
    let picks = picks(0x9e37_79b9_7f4a_7c15, sessions);
    let to_server = picks
        .iter()
        .map(|&i| data_frame(client(i), 80, 64))
        .collect();
    let to_client = picks.iter().map(|&i| reply_frame(&mut engine, i)).collect();
    let syns = (0..PACKETS as u32)
        .map(|k| client_frame(client(sessions + k), 80, true))
        .collect();
    let mixes = [
        (
            "forward_established",
            to_server,
            Call::Batch,
            Want::ToServer,
        ),
        ("forward_reply", to_client, Call::Batch, Want::ToClient),
        ("new_session", syns, Call::Single, Want::ToServer),
    ];
    for (name, frames, call, want) in mixes {
        let mix = Mix {
            name: format!("{name}/{label}"),
            frames,
            call,
            want,
            now: Instant::from_secs(2),
        };
        measure(&mut engine, &mix);
    }
    assert_eq!(
        engine.session_count(),
        sessions + PACKETS as u32,
        "new_session/{label}: a session per SYN"
    );
}

/// The third ACK that gets the TTM option.
fn ttm_insert_v4() {
    const SESSIONS: u32 = 1_000;
    let mut engine = engine_with_synacked_sessions(SESSIONS, SESSIONS + 1024);
    let frames = picks(0x5eed, SESSIONS)
        .iter()
        .map(|&i| third_ack_frame(client(i)))
        .collect();
    let before = engine.counters().ttm_inserted;
    let mix = Mix {
        name: "ttm_insert_v4".into(),
        frames,
        call: Call::Single,
        want: Want::ToServer,
        now: Instant::from_secs(2),
    };
    measure(&mut engine, &mix);
    assert_eq!(
        engine.counters().ttm_inserted - before,
        PACKETS as u64,
        "ttm_insert_v4: an option per packet"
    );
}

/// A 6to4 segment past the server's first byte: translated, no option.
fn forward_6to4() {
    const SESSIONS: u32 = 1_000;
    let mut engine = engine_6to4(SESSIONS, true);
    let frames = picks(0x6704, SESSIONS)
        .iter()
        .map(|&i| client6_frame(client6(i), false))
        .collect();
    let before = engine.counters().ttm_inserted;
    let mix = Mix {
        name: "forward_6to4".into(),
        frames,
        call: Call::Single,
        want: Want::ToServer,
        now: Instant::from_secs(2),
    };
    measure(&mut engine, &mix);
    assert_eq!(
        engine.counters().ttm_inserted,
        before,
        "forward_6to4: no option"
    );
}

/// New sessions while the quarantine holds many tuples.
fn new_session_quarantined() {
    const ENDED: u32 = 60_000;
    const SESSIONS: u32 = 1_000;
    let (mut engine, now) = engine_with_quarantine(ENDED, SESSIONS, SESSIONS + 65_536);
    let frames = (0..PACKETS as u32)
        .map(|k| client_frame(client(ENDED + SESSIONS + k), 80, true))
        .collect();
    let mix = Mix {
        name: "new_session_quarantined/1k".into(),
        frames,
        call: Call::Single,
        want: Want::ToServer,
        now,
    };
    measure(&mut engine, &mix);
    assert_eq!(
        engine.session_count(),
        SESSIONS + PACKETS as u32,
        "new_session_quarantined/1k: a session per SYN"
    );
    assert_eq!(
        engine.quarantined(),
        ENDED,
        "new_session_quarantined/1k: the quarantine still holds its tuples"
    );
}

/// Runs every group of mixes, or only those named on the command line
/// (`1k`, `1m`, `ttm`, `6to4`, `quarantined`), e.g. to profile one.
fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let run = |group: &str| only.is_empty() || only.iter().any(|o| o == group);
    if run("1k") {
        established(1_000, "1k");
    }
    if run("1m") {
        established(1_000_000, "1m");
    }
    if run("ttm") {
        ttm_insert_v4();
    }
    if run("6to4") {
        forward_6to4();
    }
    if run("quarantined") {
        new_session_quarantined();
    }
}
