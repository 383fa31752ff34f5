//! Internet checksums (RFC 1071) and their incremental update (RFC 1624).
//!
//! The engine rewrites addresses and ports without summing the payload:
//! for each changed 16-bit word `m -> m'`, RFC 1624 eqn. 3 gives the new
//! checksum `HC' = ~(~HC + ~m + m')`. A changed 32-bit address is two
//! words. UDP over IPv4 may carry checksum 0 ("none", RFC 768): it is left
//! at 0, and a computed 0 is sent as 0xffff.

/// Add `data` to a running one's-complement sum (not yet folded).
pub(crate) fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        if let &[hi, lo] = pair {
            acc = acc.wrapping_add(u32::from(u16::from_be_bytes([hi, lo])));
        }
    }
    if let &[last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(last) << 8);
    }
    // Fold early enough that many calls cannot overflow.
    (acc & 0xffff) + (acc >> 16)
}

/// Fold a sum to 16 bits and complement it: the checksum field's value.
pub(crate) fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` alone (an IPv4 header, an ICMP message).
pub(crate) fn of(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// Whether a 20-byte IPv4 header's checksum is right: its words sum to
/// 0xffff. Fixed-size, so the compiler unrolls it with no bounds checks.
#[inline]
pub(crate) fn fixed_header_ok(h: &[u8; 20]) -> bool {
    let [
        a0,
        a1,
        b0,
        b1,
        c0,
        c1,
        d0,
        d1,
        e0,
        e1,
        f0,
        f1,
        g0,
        g1,
        h0,
        h1,
        i0,
        i1,
        j0,
        j1,
    ] = *h;
    let w = |hi: u8, lo: u8| u32::from(u16::from_be_bytes([hi, lo]));
    let acc = w(a0, a1)
        + w(b0, b1)
        + w(c0, c1)
        + w(d0, d1)
        + w(e0, e1)
        + w(f0, f1)
        + w(g0, g1)
        + w(h0, h1)
        + w(i0, i1)
        + w(j0, j1);
    finish(acc) == 0
}

/// An incremental update of a checksum field for a set of word changes.
#[derive(Clone, Copy, Default)]
pub(crate) struct Delta(u32);

impl Delta {
    /// Account for a 16-bit word changing from `old` to `new`.
    #[inline]
    pub(crate) fn word(mut self, old: u16, new: u16) -> Delta {
        self.0 += u32::from(!old) + u32::from(new);
        self
    }

    /// Account for a 32-bit value (an IPv4 address) changing.
    #[inline]
    pub(crate) fn addr4(self, old: [u8; 4], new: [u8; 4]) -> Delta {
        let [a, b, c, d] = old;
        let [e, f, g, h] = new;
        self.word(u16::from_be_bytes([a, b]), u16::from_be_bytes([e, f]))
            .word(u16::from_be_bytes([c, d]), u16::from_be_bytes([g, h]))
    }

    /// Account for a 16-byte value (an IPv6 address) changing.
    #[inline]
    pub(crate) fn addr16(mut self, old: &[u8; 16], new: &[u8; 16]) -> Delta {
        for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
            if let (&[o0, o1], &[n0, n1]) = (o, n) {
                self = self.word(u16::from_be_bytes([o0, o1]), u16::from_be_bytes([n0, n1]));
            }
        }
        self
    }

    /// The change folded to 16 bits, to be stored and applied later.
    pub(crate) fn folded(self) -> u16 {
        let mut acc = self.0;
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// A stored change; `inverse` gives the change that undoes it (old and
    /// new swapped), its one's complement.
    pub(crate) fn from_folded(folded: u16, inverse: bool) -> Delta {
        Delta(u32::from(if inverse { !folded } else { folded }))
    }

    /// The updated checksum field (RFC 1624 eqn. 3).
    #[inline]
    pub(crate) fn apply(self, field: u16) -> u16 {
        let acc = u32::from(!field) + self.0;
        finish(acc)
    }

    /// The updated checksum of a UDP datagram over IPv4: 0 stays 0 (no
    /// checksum), and a result of 0 is written as 0xffff (RFC 768).
    #[inline]
    pub(crate) fn apply_udp4(self, field: u16) -> u16 {
        match field {
            0 => 0,
            _ => match self.apply(field) {
                0 => 0xffff,
                sum => sum,
            },
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// RFC 1071 §3's example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(of(&[0x12, 0x34, 0x56]), of(&[0x12, 0x34, 0x56, 0x00]));
    }

    /// An incremental update equals a full recomputation, for many edits.
    #[test]
    fn incremental_matches_full() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut data = [0u8; 40];
            for b in data.iter_mut() {
                *b = next() as u8;
            }
            // A checksum field at bytes 10..12, valid for the data.
            data[10] = 0;
            data[11] = 0;
            let c = of(&data).to_be_bytes();
            data[10..12].copy_from_slice(&c);
            assert_eq!(of(&data), 0);
            let old: [u8; 4] = data[12..16].try_into().unwrap();
            let new = (next() as u32).to_be_bytes();
            let old_port = u16::from_be_bytes([data[20], data[21]]);
            let new_port = next() as u16;
            data[12..16].copy_from_slice(&new);
            data[20..22].copy_from_slice(&new_port.to_be_bytes());
            let field = u16::from_be_bytes([data[10], data[11]]);
            let updated = Delta::default()
                .addr4(old, new)
                .word(old_port, new_port)
                .apply(field);
            data[10..12].copy_from_slice(&updated.to_be_bytes());
            assert_eq!(of(&data), 0, "incremental update disagrees");
        }
    }

    /// A stored change and its inverse undo each other.
    #[test]
    fn folded_inverse_undoes() {
        let d = Delta::default()
            .addr4([10, 0, 0, 1], [192, 0, 2, 77])
            .word(1234, 80);
        for field in [0x0000u16, 0x1234, 0xfffe, 0xabcd] {
            let there = Delta::from_folded(d.folded(), false).apply(field);
            assert_eq!(there, d.apply(field));
            let back = Delta::from_folded(d.folded(), true).apply(there);
            // One's complement: 0x0000 and 0xffff are the same number.
            assert!(back == field || (back, field) == (0xffff, 0) || (back, field) == (0, 0xffff));
        }
    }

    #[test]
    fn udp_zero_rules() {
        assert_eq!(Delta::default().word(1, 2).apply_udp4(0), 0);
        // A field whose update gives 0 is sent as 0xffff.
        let d = Delta::default().word(0x0000, 0x0001);
        let field = 0x0001u16; // ~(~1 + ~0 + 1) = ~(0xfffe + 0xffff + 1) = 0 -> 0xffff
        assert_eq!(d.apply_udp4(field), 0xffff);
    }
}
