//! Golden-packet fixtures: {description, input frame, verdict, expected
//! output frame}, run through an engine and compared byte for byte.

use lb_engine::{Engine, Frame, Instant, Verdict};

/// One golden packet.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// What the fixture shows (the assertion messages name it).
    pub what: &'static str,
    /// The frame given to the engine.
    pub input: Vec<u8>,
    /// The verdict it must get.
    pub verdict: Verdict,
    /// The frame after the engine, when it is forwarded or passed.
    pub output: Option<Vec<u8>>,
}

/// Run `fixtures` in order through `engine` at 1 s, each from a buffer
/// with `Frame::HEADROOM` before it and 64 bytes after: each gets its
/// verdict and, when it has one, its output byte for byte; a drop adds
/// exactly one to the drop counters, and its reason's counter is not 0.
///
/// # Panics
///
/// At the first fixture that does not hold, naming it.
pub fn run(engine: &mut Engine, fixtures: &[Fixture]) {
    for f in fixtures {
        let mut buf = vec![0u8; Frame::HEADROOM + f.input.len() + 64];
        let start = Frame::HEADROOM;
        buf[start..start + f.input.len()].copy_from_slice(&f.input);
        let mut frame = Frame::new(&mut buf, start, start + f.input.len())
            .unwrap_or_else(|| panic!("{}: frame", f.what));
        let drops_before = engine.counters().dropped_total();
        let verdict = engine.handle_packet(Instant::from_secs(1), &mut frame);
        assert_eq!(verdict, f.verdict, "{}: verdict", f.what);
        if let Some(want) = &f.output {
            assert_eq!(frame.bytes(), want.as_slice(), "{}: output frame", f.what);
        }
        if let Verdict::Drop(reason) = verdict {
            assert_eq!(
                engine.counters().dropped_total(),
                drops_before + 1,
                "{}",
                f.what
            );
            assert!(
                engine.counters().dropped(reason) >= 1,
                "{}: counter",
                f.what
            );
        }
    }
}
