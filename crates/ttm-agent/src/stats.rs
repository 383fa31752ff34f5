//! The agent's counters: the BPF programs count per CPU into the array
//! `ttm_stats` (see `enum ttm_stat` in `bpf/ttm_agent.bpf.c`, whose order
//! [`COUNTERS`] follows); `ttm-agent status` sums and prints them.

use std::fmt;

/// Each counter's name and meaning, in the BPF program's order.
pub const COUNTERS: [(&str, &str); 8] = [
    (
        "connections",
        "passively opened TCP connections whose handshake completed",
    ),
    ("seen", "TTM options of a believed kind seen"),
    (
        "accepted",
        "client addresses kept (the connection came from a balancer range)",
    ),
    (
        "refused_source",
        "options refused: the connection came from outside the balancer ranges",
    ),
    (
        "malformed",
        "options of a believed kind whose length is neither 8 nor 20",
    ),
    (
        "late",
        "addresses found after the segment that completed the handshake",
    ),
    ("getsockopt", "getsockopt(SOL_IP, 1345) calls answered"),
    (
        "getpeername",
        "getpeername() and accept() results rewritten to the client",
    ),
];

/// The counters, summed over CPUs, in [`COUNTERS`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats(pub [u64; COUNTERS.len()]);

impl Stats {
    /// The counter called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = COUNTERS.iter().position(|(n, _)| *n == name)?;
        self.0.get(i).copied()
    }
}

impl fmt::Display for Stats {
    /// One line per counter: `name value  # meaning`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((name, help), value) in COUNTERS.iter().zip(self.0) {
            writeln!(f, "{name:<15} {value:>12}  # {help}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn named_lines() {
        let s = Stats([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.get("accepted"), Some(3));
        assert_eq!(s.get("getpeername"), Some(8));
        assert_eq!(s.get("nope"), None);
        let text = s.to_string();
        assert_eq!(text.lines().count(), 8);
        assert!(text.starts_with("connections                1  # passively"));
        assert!(text.contains("\nrefused_source             4  # options refused"));
    }

    #[test]
    fn the_bpf_program_counts_in_this_order() {
        // The enum in the C source is the other half of this table.
        let source = include_str!("../bpf/ttm_agent.bpf.c");
        for (i, (name, _)) in COUNTERS.iter().enumerate() {
            let line = format!("STAT_{} = {i},", name.to_uppercase());
            assert!(source.contains(&line), "{line} not in the BPF source");
        }
        assert!(source.contains(&format!("STAT_COUNT = {},", COUNTERS.len())));
    }
}
