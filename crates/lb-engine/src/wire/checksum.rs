//! Internet checksums (RFC 1071), their incremental update (RFC 1624), and
//! the verification of a TCP or UDP checksum over its pseudo-header.
//!
//! The engine rewrites addresses and ports without summing the payload:
//! for each changed 16-bit word `m -> m'`, RFC 1624 eqn. 3 gives the new
//! checksum `HC' = ~(~HC + ~m + m')`. A changed 32-bit address is two
//! words. UDP over IPv4 may carry checksum 0 ("none", RFC 768): it is left
//! at 0, and a computed 0 is sent as 0xffff. Over IPv6 a UDP checksum of 0
//! is not allowed (RFC 8200 §8.1): [`transport_ok`] refuses it.

use super::PROTO_UDP;

/// Add `data` to a running one's-complement sum (not yet folded).
///
/// Summed in the machine's byte order as 64-bit words with end-around
/// carry, four independent sums over each 32 bytes so that the carries
/// do not wait for each other; then folded to 16 bits and put in network
/// order. The one's-complement sum is the same whatever the word size,
/// and the sum of byte-swapped words is the byte-swapped sum (RFC 1071 §2
/// (B) and (C)): wide words and no byte swaps in the loop take a fraction
/// of the instructions and time of a word-by-word sum, which matters for
/// a whole segment's checksum.
pub(crate) fn sum(acc: u32, data: &[u8]) -> u32 {
    /// `total + word` with end-around carry.
    #[inline(always)]
    fn add(total: u64, word: u64) -> u64 {
        let (sum, carry) = total.overflowing_add(word);
        sum + u64::from(carry)
    }
    let word = |b: &[u8]| match *b {
        [a, b, c, d, e, f, g, h] => u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    };
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = add(*lane, word(w));
        }
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for (lane, w) in lanes.iter_mut().zip(&mut words) {
        *lane = add(*lane, word(w));
    }
    // Each lane folded below 2^33: their sum and the tail's few words
    // cannot overflow.
    let mut wide: u64 = lanes.iter().map(|l| (l & 0xffff_ffff) + (l >> 32)).sum();
    let mut pairs = words.remainder().chunks_exact(2);
    for pair in &mut pairs {
        if let &[a, b] = pair {
            wide += u64::from(u16::from_ne_bytes([a, b]));
        }
    }
    if let &[last] = pairs.remainder() {
        // An odd byte is the high byte of a word padded with zero.
        wide += u64::from(u16::from_ne_bytes([last, 0]));
    }
    // 64 bits to 32 (twice: the first fold can carry), then 32 to 16.
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    let mut folded = wide as u32;
    folded = (folded & 0xffff) + (folded >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    // The machine's byte order to network order: a swap on little-endian.
    let network = u16::from_be(folded as u16);
    // Added to `acc` folded, so that no call can overflow; at most 17 bits.
    let acc = (acc & 0xffff) + (acc >> 16) + u32::from(network);
    (acc & 0xffff) + (acc >> 16)
}

/// The sum of a TCP or UDP pseudo-header over IPv4 (RFC 9293 §3.1, RFC
/// 768): the addresses, the protocol and the transport length.
pub(crate) fn pseudo4(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let [a, b, c, d] = src;
    let [e, f, g, h] = dst;
    let word = |hi: u8, lo: u8| u32::from(u16::from_be_bytes([hi, lo]));
    let len = len as u32;
    word(a, b)
        + word(c, d)
        + word(e, f)
        + word(g, h)
        + (len >> 16)
        + (len & 0xffff)
        + u32::from(proto)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): the addresses, the
/// upper-layer length (32 bits) and the next header.
pub(crate) fn pseudo6(src: &[u8; 16], dst: &[u8; 16], len: usize, next: u8) -> u32 {
    let len = len as u32;
    sum(sum(0, src), dst) + (len >> 16) + (len & 0xffff) + u32::from(next)
}

/// Whether the checksum of a TCP or UDP packet is right: `segment` is its
/// transport header and payload, `pseudo` its pseudo-header's sum
/// ([`pseudo4`] or [`pseudo6`]). UDP's checksum 0 means "none" over IPv4
/// (RFC 768) and passes; over IPv6 it is invalid (RFC 8200 §8.1: "IPv6
/// receivers must discard UDP packets containing a zero checksum").
///
/// A right checksum makes the words of pseudo-header and segment sum to
/// 0xffff (RFC 1071); the sum cannot be 0, since the pseudo-header's
/// protocol word is not.
pub(crate) fn transport_ok(pseudo: u32, proto: u8, segment: &[u8], v6: bool) -> bool {
    if proto == PROTO_UDP && segment.get(6..8) == Some(&[0, 0]) {
        return !v6;
    }
    finish(sum(pseudo, segment)) == 0
}

/// [`transport_ok`] over IPv4's pseudo-header ([`pseudo4`]): whether the
/// checksum of a TCP or UDP packet from `src` to `dst` whose transport
/// header and payload are `segment` is right.
///
/// A segment of 20 or 40 bytes (a TCP SYN, without options or with the
/// 20 bytes a Linux client sends; short UDP datagrams) is summed as
/// [`fixed_header_ok`] sums, in native-endian 32-bit words that the
/// compiler unrolls, pseudo-header included: a few tens of instructions,
/// where [`sum`]'s loop and folds cost some 150 on so little. Any other
/// length takes [`sum`].
#[inline]
pub(crate) fn transport4_ok(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> bool {
    if proto == PROTO_UDP && segment.get(6..8) == Some(&[0, 0]) {
        return true;
    }
    let words = match segment.len() {
        20 => segment.first_chunk::<20>().map(words32),
        40 => segment.first_chunk::<40>().map(words32),
        _ => None,
    };
    let Some(words) = words else {
        return transport_ok(
            pseudo4(src, dst, proto, segment.len()),
            proto,
            segment,
            false,
        );
    };
    // The pseudo-header as three words: the addresses, then zero, the
    // protocol and the length (below 2^16 here).
    let len = segment.len() as u16;
    let [hi, lo] = len.to_be_bytes();
    let acc = words
        + u64::from(u32::from_ne_bytes(src))
        + u64::from(u32::from_ne_bytes(dst))
        + u64::from(u32::from_ne_bytes([0, proto, hi, lo]));
    // As in `fixed_header_ok`: right when 0xffff divides the sum (which
    // the nonzero length word keeps from being 0).
    acc != 0 && acc.is_multiple_of(0xffff)
}

/// The sum of `data`'s native-endian 32-bit words (`N` a multiple of 4),
/// unrolled by the compiler. Folded with end-around carry it is the
/// one's-complement sum of the 16-bit words, byte-swapped on a
/// little-endian machine (RFC 1071 §2 (B) and (C)).
#[inline(always)]
fn words32<const N: usize>(data: &[u8; N]) -> u64 {
    data.chunks_exact(4)
        .map(|w| u64::from(<[u8; 4]>::try_from(w).map_or(0, u32::from_ne_bytes)))
        .sum()
}

/// Fold a sum to 16 bits and complement it: the checksum field's value.
/// Two folds are enough for any `u32`: the first leaves at most 0x1fffe,
/// and the second at most 0xffff; no loop, no branch.
#[inline]
pub(crate) fn finish(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// The checksum of `data` alone (an IPv4 header, an ICMP message).
pub(crate) fn of(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// The sum of a pair of addresses (either family), not folded: the part
/// of a pseudo-header that address translation changes.
#[inline]
pub(crate) fn addr_pair(src: &[u8], dst: &[u8]) -> u32 {
    sum(sum(0, src), dst)
}

/// [`addr_pair`] for addresses of a fixed size (4 or 16 bytes): the same
/// sum folded to 16 bits, in native-endian 32-bit words that the compiler
/// unrolls (RFC 1071 §2 (B) and (C), as [`fixed_header_ok`]) rather than
/// [`sum`]'s loop, which costs some 70 instructions a call on so little.
#[inline]
pub(crate) fn fixed_addr_pair<const N: usize>(src: &[u8; N], dst: &[u8; N]) -> u32 {
    let words = |a: &[u8; N]| -> u64 {
        a.chunks_exact(4)
            .map(|w| u64::from(<[u8; 4]>::try_from(w).map_or(0, u32::from_ne_bytes)))
            .sum()
    };
    // At most eight 32-bit words: below 2^35, four folds leave 16 bits.
    let acc = words(src) + words(dst);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    // The machine's byte order to network order: a swap on little-endian.
    u32::from(u16::from_be(acc as u16))
}

/// A 16-bit word of two bytes, as a sum.
#[inline]
pub(crate) fn word(hi: u8, lo: u8) -> u32 {
    u32::from(u16::from_be_bytes([hi, lo]))
}

/// A one's-complement sum of `data` folded to 16 bits (not complemented):
/// what a block of bytes adds to a checksum, for [`Delta::word`].
#[inline]
pub(crate) fn folded(data: &[u8]) -> u16 {
    !finish(sum(0, data))
}

/// A checksum field updated for covered bytes whose sum goes from `old`
/// to `new` (RFC 1624 eqn. 3, the sums folded to one word each).
#[inline]
pub(crate) fn replace(field: u16, old: u32, new: u32) -> u16 {
    let fold = |acc: u32| !finish(acc);
    Delta::default().word(fold(old), fold(new)).apply(field)
}

/// A UDP checksum as sent: a computed 0 is 0xffff (RFC 768, RFC 8200
/// §8.1).
#[inline]
pub(crate) fn udp_nonzero(check: u16) -> u16 {
    if check == 0 { 0xffff } else { check }
}

/// The checksum of a 20-byte IPv4 header whose checksum field is 0: what
/// [`of`] gives, summed as [`fixed_header_ok`] sums (five native-endian
/// 32-bit words, unrolled), which costs a fraction of [`sum`]'s loop.
#[inline]
pub(crate) fn fixed_header(h: &[u8; 20]) -> u16 {
    let acc: u64 = h
        .chunks_exact(4)
        .map(|w| u64::from(<[u8; 4]>::try_from(w).map_or(0, u32::from_ne_bytes)))
        .sum();
    // Below 2^35: four folds leave at most 0xffff.
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    // The folded sum in the machine's byte order, to network order.
    !u16::from_be(acc as u16)
}

/// Whether a 20-byte IPv4 header's checksum is right: its words sum to
/// 0xffff. Summed as five native-endian 32-bit words, which gives the same
/// folded sum byte-swapped (RFC 1071 §2 (A) and (B)), and 0xffff is its
/// own swap; fixed-size, so the compiler unrolls it with no bounds checks.
#[inline]
pub(crate) fn fixed_header_ok(h: &[u8; 20]) -> bool {
    let acc: u64 = h
        .chunks_exact(4)
        .map(|w| u64::from(<[u8; 4]>::try_from(w).map_or(0, u32::from_ne_bytes)))
        .sum();
    // Folding a nonzero sum to 16 bits with end-around carry keeps its
    // residue modulo 0xffff (2^16 is 1 modulo 0xffff) and ends in
    // 1..=0xffff: it ends in 0xffff exactly when 0xffff divides the sum,
    // which a multiply tests in fewer steps than four folds.
    acc != 0 && acc.is_multiple_of(0xffff)
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

    /// The change folded to 16 bits, to be stored and applied later: two
    /// folds, as in [`finish`] (no loop, no branch), since a fold leaves
    /// a sum at most 0xffff unchanged.
    #[inline]
    pub(crate) fn folded(self) -> u16 {
        let acc = (self.0 & 0xffff) + (self.0 >> 16);
        let acc = (acc & 0xffff) + (acc >> 16);
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

/// A stored change (see [`Delta::from_folded`]: `folded`, or its inverse)
/// applied to a checksum field: [`Delta::apply`] of it, in one add with
/// end-around carry, since the change and the field both fit in 16 bits.
#[inline]
pub(crate) fn apply_folded(field: u16, folded: u16, inverse: bool) -> u16 {
    let change = if inverse { !folded } else { folded };
    let (sum, carry) = (!field).overflowing_add(change);
    // With a carry the sum is at most 0xfffe: adding it cannot wrap.
    !sum.wrapping_add(u16::from(carry))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::test_rng::Rng;

    /// `apply_folded` is `Delta::apply` of the stored change.
    #[test]
    fn apply_folded_is_apply() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let edges = [0u16, 1, 0x7fff, 0x8000, 0xfffe, 0xffff];
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (mut field, mut folded) = (x as u16, (x >> 16) as u16);
            if i < 36 {
                field = edges[(i % 6) as usize];
                folded = edges[(i / 6) as usize];
            }
            for inverse in [false, true] {
                assert_eq!(
                    apply_folded(field, folded, inverse),
                    Delta::from_folded(folded, inverse).apply(field),
                    "{field:#x} {folded:#x} {inverse}"
                );
            }
        }
    }

    /// RFC 1071 §3's example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    /// Two folds give what folding until it fits gives, for any sum.
    #[test]
    fn finish_folds_any_sum() {
        let looped = |mut acc: u32| {
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            !(acc as u16)
        };
        let mut x = 0x9e37_79b9u32;
        let edges = [
            0,
            1,
            0xfffe,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0x1_ffff,
            0xfffe_ffff,
        ];
        for acc in edges.into_iter().chain([u32::MAX, u32::MAX - 1]) {
            assert_eq!(finish(acc), looped(acc), "{acc:#x}");
        }
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            assert_eq!(finish(x), looped(x), "{x:#x}");
        }
    }

    /// The fixed-size address sums fold to what [`addr_pair`] gives, for
    /// random, all-zero and all-ones addresses of both families.
    #[test]
    fn fixed_header_is_of() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let mut h = [0u8; 20];
            h.iter_mut().for_each(|b| *b = rng.byte());
            match i % 4 {
                0 => h = [0; 20],
                1 => h = [0xff; 20],
                _ => {}
            }
            h[10] = 0;
            h[11] = 0;
            assert_eq!(fixed_header(&h), of(&h), "{h:?}");
            let sum = fixed_header(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            assert!(fixed_header_ok(&h), "{h:?}");
        }
    }

    #[test]
    fn fixed_addr_pair_is_addr_pair() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut next = || rng.byte();
        for i in 0..20_000 {
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            a.iter_mut().chain(b.iter_mut()).for_each(|v| *v = next());
            match i % 5 {
                0 => (a, b) = ([0; 16], [0; 16]),
                1 => (a, b) = ([0xff; 16], [0xff; 16]),
                _ => {}
            }
            assert_eq!(
                finish(fixed_addr_pair(&a, &b)),
                finish(addr_pair(&a, &b)),
                "{a:02x?} {b:02x?}"
            );
            let (a4, b4) = (a.first_chunk::<4>().unwrap(), b.first_chunk::<4>().unwrap());
            assert_eq!(finish(fixed_addr_pair(a4, b4)), finish(addr_pair(a4, b4)));
        }
    }

    /// The IPv4 header check agrees with the checksum computed the plain
    /// way, on right, wrong and extreme headers.
    #[test]
    fn fixed_header_ok_is_the_plain_check() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for i in 0..200_000 {
            let mut h = [0u8; 20];
            h.iter_mut().for_each(|b| *b = rng.byte());
            match i % 4 {
                0 => h = [0xff; 20],
                1 => h = [0; 20],
                _ => {}
            }
            if i % 2 == 0 {
                h[10..12].copy_from_slice(&[0, 0]);
                let c = finish(sum(0, &h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(fixed_header_ok(&h), finish(sum(0, &h)) == 0, "{h:02x?}");
        }
    }

    /// The sum of 16-bit words, one at a time, as RFC 1071 §4.1 writes it.
    fn naive(data: &[u8]) -> u16 {
        let mut acc = 0u64;
        for pair in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// The wide sum folds to what 16-bit words give, for every length
    /// from 0 to past a few chunks, on random and on all-ones data (the
    /// carries), and from a running sum.
    #[test]
    fn wide_sum_matches_sixteen_bit_words() {
        let mut state = 0x0123_4567_89ab_cdefu64;
        for len in 0..200 {
            for fill in [None, Some(0xffu8), Some(0)] {
                let data: alloc::vec::Vec<u8> = (0..len)
                    .map(|_| {
                        fill.unwrap_or_else(|| {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            state as u8
                        })
                    })
                    .collect();
                assert_eq!(!finish(sum(0, &data)), naive(&data), "{len} bytes");
                let start = 0x1_2345;
                let mut with_start = alloc::vec![0x00, 0x01, 0x23, 0x45];
                with_start.extend_from_slice(&data);
                assert_eq!(!finish(sum(start, &data)), naive(&with_start));
            }
        }
        let ones = alloc::vec![0xffu8; 65535];
        assert_eq!(!finish(sum(0, &ones)), naive(&ones));
    }

    /// A TCP segment and a UDP datagram, checksummed by hand: right, one
    /// bit off, and UDP's checksum 0 in each family.
    #[test]
    fn transport_checksums() {
        let (src, dst) = ([192, 0, 2, 10], [198, 51, 100, 1]);
        let mut tcp = [0u8; 24];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        tcp[12] = 5 << 4;
        tcp[13] = 0x02;
        tcp[20..].copy_from_slice(b"data");
        let pseudo = pseudo4(src, dst, 6, tcp.len());
        let c = finish(sum(pseudo, &tcp)).to_be_bytes();
        tcp[16..18].copy_from_slice(&c);
        assert!(transport_ok(pseudo, 6, &tcp, false));
        tcp[21] ^= 1;
        assert!(!transport_ok(pseudo, 6, &tcp, false));
        tcp[21] ^= 1;
        assert!(!transport_ok(
            pseudo4(src, [198, 51, 100, 2], 6, 24),
            6,
            &tcp,
            false
        ));
        assert!(!transport_ok(pseudo4(src, dst, 6, 23), 6, &tcp, false));

        let (src6, dst6) = (
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            [0xfe; 16],
        );
        let mut udp = [0u8; 12];
        udp[..6].copy_from_slice(&[0x9c, 0x40, 0, 53, 0, 12]);
        udp[8..].copy_from_slice(b"quiz");
        assert!(
            transport_ok(pseudo4(src, dst, 17, 12), 17, &udp, false),
            "none"
        );
        assert!(!transport_ok(pseudo6(&src6, &dst6, 12, 17), 17, &udp, true));
        let pseudo = pseudo6(&src6, &dst6, 12, 17);
        let c = finish(sum(pseudo, &udp)).to_be_bytes();
        udp[6..8].copy_from_slice(&c);
        assert!(transport_ok(pseudo, 17, &udp, true));
        udp[11] ^= 0x80;
        assert!(!transport_ok(pseudo, 17, &udp, true));
        // Too short to hold a UDP checksum: summed as it is.
        assert!(!transport_ok(pseudo, 17, &udp[..4], true));
    }

    /// A Linux client's SYN (MSS, SACK permitted, timestamps, NOP, window
    /// scale: 40 bytes), checksummed independently: right, and wrong by
    /// one bit in the options, the address or the length.
    #[test]
    fn fixed_size_syn() {
        let (src, dst) = ([192, 0, 2, 10], [198, 51, 100, 1]);
        let mut syn: [u8; 40] = [
            0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02,
            0xfa, 0xf0, 0xae, 0x05, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
            0x00, 0x00, 0x12, 0x34, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
        ];
        assert!(transport4_ok(src, dst, 6, &syn));
        assert!(!transport4_ok(src, [198, 51, 100, 2], 6, &syn));
        assert!(!transport4_ok(src, dst, 17, &syn));
        syn[39] ^= 1;
        assert!(!transport4_ok(src, dst, 6, &syn));
        syn[39] ^= 1;
        // The same header cut to 20 bytes (no options), its data offset
        // and checksum set to match.
        let mut bare = [0u8; 20];
        bare.copy_from_slice(&syn[..20]);
        bare[12] = 5 << 4;
        bare[16..18].copy_from_slice(&[0, 0]);
        let c = finish(sum(pseudo4(src, dst, 6, 20), &bare)).to_be_bytes();
        bare[16..18].copy_from_slice(&c);
        assert!(transport4_ok(src, dst, 6, &bare));
        assert!(!transport4_ok(src, dst, 6, &syn[..20]));
    }

    /// `transport4_ok` agrees with `transport_ok` over `pseudo4` for
    /// every length up to 64 bytes (the fixed-size sums and the loop), on
    /// right, wrong and extreme segments, TCP and UDP.
    #[test]
    fn transport4_ok_is_transport_ok() {
        let mut rng = Rng(0x5851_f42d_4c95_7f2d);
        for i in 0..40_000u32 {
            let len = (i % 65) as usize;
            let mut seg = [0u8; 64];
            seg.iter_mut().for_each(|b| *b = rng.byte());
            match i / 65 % 5 {
                0 => seg = [0xff; 64],
                1 => seg = [0; 64],
                _ => {}
            }
            let seg = &mut seg[..len];
            let proto = if i % 3 == 0 { 17 } else { 6 };
            let (mut src, mut dst) = ([0u8; 4], [0u8; 4]);
            src.iter_mut()
                .chain(dst.iter_mut())
                .for_each(|b| *b = rng.byte());
            if i % 7 == 0 {
                (src, dst) = ([0xff; 4], [0xff; 4]);
            }
            let field = if proto == 17 { 6 } else { 16 };
            if i % 2 == 0 && len >= field + 2 {
                seg[field..field + 2].copy_from_slice(&[0, 0]);
                let c = finish(sum(pseudo4(src, dst, proto, len), seg));
                seg[field..field + 2].copy_from_slice(&c.to_be_bytes());
            }
            let plain = transport_ok(pseudo4(src, dst, proto, len), proto, seg, false);
            assert_eq!(transport4_ok(src, dst, proto, seg), plain, "{seg:02x?}");
        }
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

    /// Two folds give what folding until the change fits gives, for any
    /// accumulated change.
    #[test]
    fn folded_folds_any_change() {
        let looped = |mut acc: u32| {
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        };
        let mut x = 0x2545_f491u32;
        let edges = [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0x1_ffff, u32::MAX - 1];
        for acc in edges.into_iter().chain([u32::MAX]) {
            assert_eq!(Delta(acc).folded(), looped(acc), "{acc:#x}");
        }
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            assert_eq!(Delta(x).folded(), looped(x), "{x:#x}");
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
