//! Editing a TCP segment's options in place: inserting the TTM option,
//! removing spoofed ones, stripping timestamps
//! ([`Segment::edit_options`]), and lowering the SYN-ACK's MSS to make
//! room for the option ([`Segment::lower_mss`]).
//!
//! The engine decides *when* (see ARCHITECTURE.md, "When the engine
//! inserts it"); this module does *how*, on a [`Segment`]: where a TCP
//! segment's headers are in a [`Frame`], and the lengths and flags an edit
//! reads. The engine hands over what its classification has already read
//! ([`Segment::known`]), so the headers are not parsed twice;
//! [`Segment::parse`] reads them from the frame. No allocation, no panic
//! whatever the bytes, a [`DropReason`] when the headers do not hold
//! together. Every header field is read and written through the views of
//! [`crate::wire`] and every checksum through [`checksum`]; only the
//! option walk reads the options area byte by byte.
//!
//! # Layout
//!
//! The new options area is built in a 40-byte stack buffer: the TTM option
//! first, right after the fixed TCP header, then the options that are kept,
//! in their original order and byte for byte, then NOPs up to a multiple of
//! 4 bytes. The payload never moves: everything before the options area
//! (the Ethernet header, the IP header and the fixed 20 bytes of TCP) moves
//! toward the headroom by the growth, and the frame's start with it.
//!
//! ```text
//! before: [ headroom        | eth | ip | tcp 20 | NOP NOP TS          | payload ] tailroom
//! after:  [ headroom | eth | ip | tcp 20 | TTM (8/20) | NOP NOP TS    | payload ] tailroom
//!                    ^ start - grown                                  ^ unchanged
//! ```
//!
//! When the area shrinks (a spoofed option or the timestamps removed and
//! nothing inserted), the same bytes move toward the payload instead and
//! the start moves forward. Growth is at most 40 bytes (an empty area
//! becoming a full one), so [`Frame::HEADROOM`] (64) always suffices; a
//! frame with less headroom than the growth gets no option
//! ([`Insertion::NoHeadroom`]) but is still stripped, which never grows.
//!
//! Padding is NOPs at the end, never EOL and zeros: both are legal (RFC
//! 9293 §3.1), but a NOP never ends a walk, so every parser on the RS
//! (Linux's `tcp_parse_options`, the TOA modules of DPVS and LVS, which
//! return at an EOL, and `ttm_core::TcpOptions`) reads the whole area the
//! same way. An EOL in the original area and whatever follows it (RFC 9293:
//! "must be header padding (i.e., zero)") is dropped when the area is
//! rebuilt; non-zero bytes after an EOL force a rebuild, so that nothing
//! hides there for a parser that reads past the end of the list.
//!
//! # Pruning order
//!
//! When the kept options and the TTM option exceed the 40 bytes of option
//! space, lesser options are removed, one at a time, last first within
//! each class, until the rest fits:
//!
//! 1. NOPs: padding only, nothing is lost (not counted as pruning);
//! 2. MSS, window scale, SACK-permitted: meaningful only on a SYN (RFC 9293
//!    §3.2: MSS "MUST only be sent in the initial connection request";
//!    RFC 7323 §2.2: "A Window Scale option in a segment without a `<SYN>`
//!    bit SHOULD be ignored"; RFC 2018 §2 for SACK-permitted), and the
//!    option is never inserted on a SYN, so the receiver ignores them;
//! 3. SACK blocks, the last (oldest) block first, keeping the first one
//!    (RFC 2018 §4: the first block reports the most recent data) until
//!    the option itself goes: SACK is advisory, and the next ACK repeats
//!    the blocks;
//! 4. other options (unknown kinds), last first.
//!
//! Timestamps are never removed for room: RFC 7323 §3.2, once negotiated
//! "the TSopt MUST be sent in every non-`<RST>` segment", and "if a non-`<RST>`
//! segment is received without a TSopt, a TCP SHOULD silently drop the
//! segment". Since everything but the timestamps may go, the option always
//! fits in the option space (10 + 20 ≤ 40 bytes); what can still refuse it
//! is an IP length that would pass 65535 bytes ([`Insertion::NoRoom`]) or
//! a frame without the headroom ([`Insertion::NoHeadroom`]). Then nothing
//! is pruned and nothing inserted; spoofed options are still removed.
//!
//! # Spoofed options
//!
//! Every option whose kind is in [`OptionEdit::strip`] is removed, whatever
//! its length, before anything is inserted, so that a client never chooses
//! the address the RS sees. This also removes RFC 6994 experiments that
//! share kinds 253 and 254; TCP Fast Open has its own kind (34) since RFC
//! 7413.
//!
//! # Timestamps stripped
//!
//! [`OptionEdit::strip_timestamps`] removes timestamps from the segment it
//! is given. The engine sets it, for a listener that strips them, on the
//! SYN (client to RS) and the SYN-ACK (RS to client) only: RFC 7323 §3.2
//! uses timestamps only when both SYNs carry them, so neither end
//! negotiates them and no later segment carries any. Stripping them from
//! the later segments of a session that did negotiate them (one opened
//! before a configuration change) would make the receiver drop those
//! segments (the "SHOULD silently drop" above), so the engine does not.
//!
//! # Checksums
//!
//! All incremental (RFC 1624): the TCP checksum for the old options area
//! against the new one (it starts 20 bytes into the segment, an even
//! offset, and both lengths are multiples of 4, so the payload keeps its
//! word alignment), the data-offset word, and the pseudo-header's TCP
//! length; the IPv4 header checksum for the total length. IPv6 has no
//! header checksum; its payload length is rewritten.

use ttm_core::{KindSet, TcpOption, TcpOptions, TtmOption};

use crate::frame::Frame;
use crate::verdict::DropReason;
use crate::wire::checksum::{self, Delta};
use crate::wire::{L4, ipv4, ipv6, tcp, tcp_flags};

/// The largest TCP options area: a data offset of 15 words less the fixed
/// header.
pub(crate) const OPTIONS_MAX: usize = 40;

/// The NOP option, used for padding.
const NOP: u8 = 1;

/// The lowest MSS that [`Segment::lower_mss`] writes: Linux's
/// `TCP_MIN_MSS` (88), the smallest MSS a Linux endpoint accepts to be
/// configured with; a guard against nonsense values only. Not the default
/// MSS (536 for IPv4, 1220 for IPv6, RFC 9293 §3.7.1): an RS on a
/// 1280-byte IPv6 path announces 1220 and needs the lowering most.
pub(crate) const MSS_FLOOR: u16 = 88;

/// The network header in front of the TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv4: the TCP header follows the IPv4 header (IHL words).
    V4,
    /// IPv6: the TCP header follows the fixed header and any extension
    /// headers the caller has skipped.
    // Constructed by the engine once IPv6 listeners are wired in.
    #[cfg_attr(not(test), allow(dead_code))]
    V6,
}

/// Where a TCP segment's headers are in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    /// The network header's family.
    pub(crate) family: Family,
    /// Offset of the IP header from the frame's start.
    pub(crate) l3: usize,
    /// Offset of the TCP header from the frame's start: for IPv4 it must be
    /// `l3 + IHL * 4`; for IPv6 at least `l3 + 40`.
    pub(crate) l4: usize,
}

/// What [`Segment::edit_options`] does to one segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptionEdit<'a> {
    /// Option kinds to remove wherever they are (the accepted TTM/TOA
    /// kinds, on every client-to-RS segment).
    pub(crate) strip: &'a KindSet,
    /// Remove the timestamps option (a listener that strips them: SYN and
    /// SYN-ACK only, see the module docs).
    pub(crate) strip_timestamps: bool,
    /// The option to put right after the fixed header.
    pub(crate) insert: Option<TtmOption>,
}

impl OptionEdit<'_> {
    /// Whether the edit asks for nothing: no kind to strip, timestamps
    /// kept, no option to insert.
    #[inline]
    fn asks_nothing(&self) -> bool {
        self.insert.is_none() && !self.strip_timestamps && self.strip.is_empty()
    }
}

/// Whether the option asked for was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Insertion {
    /// No option was asked for.
    #[default]
    NotAsked,
    /// The option is in the segment, right after the fixed header.
    Inserted,
    /// Not enough option space even after pruning (or the IP length would
    /// pass 65535): the segment carries no TTM option.
    NoRoom,
    /// The frame's headroom is smaller than the growth: the caller broke
    /// [`Frame::HEADROOM`]; the segment carries no TTM option.
    NoHeadroom,
    /// A SYN or an RST: never carries the option.
    Refused,
}

/// What [`Segment::edit_options`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Edited {
    /// Whether the option asked for was inserted.
    pub(crate) insertion: Insertion,
    /// Options removed because their kind is in [`OptionEdit::strip`]: a
    /// client's attempt to choose its address.
    pub(crate) spoofed: u8,
    /// Options (or SACK blocks) removed to make room; NOPs not counted.
    pub(crate) pruned: u8,
    /// Bytes the frame grew by at its start (negative: it shrank).
    pub(crate) grown: isize,
}

impl Edited {
    /// Whether the option was asked for and could not be carried: the
    /// counter of segments that went without it.
    pub(crate) fn missed(&self) -> bool {
        matches!(self.insertion, Insertion::NoRoom | Insertion::NoHeadroom)
    }
}

/// A TCP segment in a frame, as an edit reads and changes it: where its
/// headers are, and the lengths and flags that an edit reads or changes.
///
/// Made by [`Segment::parse`], which checks the headers in the frame, or
/// by [`Segment::known`] from what the engine's classification has
/// already checked and read of them; [`Segment::edit_options`] keeps it
/// true of the frame as it changes the segment. Both constructors hold it
/// to: `at.l4` past the IP header's fixed part; `20 <= hlen <= tcp_len`;
/// `at.l4 + tcp_len` without overflow; `ip_len` at most 65535 and equal
/// to `tcp_len` plus the header bytes the IP length counts before the TCP
/// header (IPv4: the whole header, `at.l4 - at.l3`; IPv6: the extension
/// headers, `at.l4 - at.l3 - 40`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Where the headers are.
    at: Headers,
    /// The IP length field: IPv4 total length, or IPv6 payload length.
    ip_len: usize,
    /// TCP header and payload.
    tcp_len: usize,
    /// TCP header length, options included.
    hlen: usize,
    /// TCP flags.
    flags: u8,
}

impl Segment {
    /// Check the IP and TCP headers at `at` in `bytes` and read what an
    /// edit needs.
    ///
    /// # Errors
    /// `Truncated` when `bytes` end inside a fixed header; `BadIpHeader`
    /// for an IP header of another version (or an IHL below 5) or a TCP
    /// header that is not where `at.l4` says; `BadIpLength` for an IP
    /// length shorter than the headers or longer than `bytes`;
    /// `BadL4Header` for a data offset below 5 words or past the segment.
    pub(crate) fn parse(bytes: &[u8], at: Headers) -> Result<Segment, DropReason> {
        let ip = bytes.get(at.l3..).ok_or(DropReason::Truncated)?;
        let (ip_len, end) = match at.family {
            Family::V4 => {
                if ip.len() < ipv4::HEADER_LEN {
                    return Err(DropReason::Truncated);
                }
                let ip = ipv4::Packet::new_unchecked(ip);
                let ihl = ip.header_len();
                if ip.version() != 4 || ihl < ipv4::HEADER_LEN {
                    return Err(DropReason::BadIpHeader);
                }
                if at.l3.saturating_add(ihl) != at.l4 {
                    return Err(DropReason::BadIpHeader);
                }
                let total = usize::from(ip.total_len());
                if total < ihl {
                    return Err(DropReason::BadIpLength);
                }
                (total, at.l3.saturating_add(total))
            }
            Family::V6 => {
                let ip = ipv6::Packet::new_unchecked(ip);
                ip.check_header()?;
                if at.l4 < at.l3.saturating_add(ipv6::HLEN) {
                    return Err(DropReason::BadIpHeader);
                }
                let payload = usize::from(ip.payload_len());
                (payload, at.l3.saturating_add(ipv6::HLEN + payload))
            }
        };
        if end > bytes.len() {
            return Err(DropReason::BadIpLength);
        }
        let tcp_len = end.checked_sub(at.l4).ok_or(DropReason::BadIpLength)?;
        let segment = bytes.get(at.l4..end).ok_or(DropReason::Truncated)?;
        let tcp = tcp::Packet::new_checked(segment)?;
        Ok(Segment {
            at,
            ip_len,
            tcp_len,
            hlen: tcp.header_len(),
            flags: tcp.flags(),
        })
    }

    /// The segment at `at` whose headers the engine's classification has
    /// checked and read into `l4` (TCP header length, payload length,
    /// flags): what [`Segment::parse`] reads from the frame, without
    /// reading it. The caller answers for `at` and `l4` describing the
    /// frame as it is now.
    ///
    /// # Errors
    /// Never for a segment the classification accepted: `BadIpHeader` for
    /// an `at.l4` inside the IP header's fixed part, `BadL4Header` for a
    /// header length below 20 bytes, `BadIpLength` for lengths past 65535
    /// bytes.
    #[inline(always)]
    pub(crate) fn known(at: Headers, l4: &L4) -> Result<Segment, DropReason> {
        let (fixed, ip_len_from) = match at.family {
            Family::V4 => (ipv4::HEADER_LEN, 0),
            Family::V6 => (ipv6::HLEN, ipv6::HLEN),
        };
        let ip_header = at.l4.saturating_sub(at.l3);
        if ip_header < fixed {
            return Err(DropReason::BadIpHeader);
        }
        if l4.hlen < tcp::HEADER_LEN {
            return Err(DropReason::BadL4Header);
        }
        let tcp_len = l4.hlen.saturating_add(l4.payload);
        let ip_len = (ip_header - ip_len_from).saturating_add(tcp_len);
        if ip_len > usize::from(u16::MAX) || at.l4.checked_add(tcp_len).is_none() {
            return Err(DropReason::BadIpLength);
        }
        Ok(Segment {
            at,
            ip_len,
            tcp_len,
            hlen: l4.hlen,
            flags: l4.flags,
        })
    }

    /// Where the options area starts in the frame: the end of the fixed
    /// TCP header.
    #[inline]
    fn options_at(&self) -> usize {
        self.at.l4 + tcp::HEADER_LEN
    }

    /// The options area in `bytes`: the TCP header past its fixed part.
    #[inline]
    fn options<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], DropReason> {
        let area = bytes.get(self.options_at()..self.at.l4 + self.hlen);
        area.ok_or(DropReason::Truncated)
    }

    /// The TCP segment in `bytes`, header and payload, writable.
    #[inline]
    fn tcp_mut<'a>(&self, bytes: &'a mut [u8]) -> Result<tcp::Packet<&'a mut [u8]>, DropReason> {
        let segment = bytes.get_mut(self.at.l4..self.at.l4 + self.tcp_len);
        Ok(tcp::Packet::new_unchecked(
            segment.ok_or(DropReason::Truncated)?,
        ))
    }

    /// The fixed TCP header in `bytes`, writable: a view of its 20 bytes
    /// only, whose fields are then plain loads and stores (the options
    /// area is reached through [`Segment::tcp_mut`]).
    #[inline]
    fn tcp_fixed_mut<'a>(
        &self,
        bytes: &'a mut [u8],
    ) -> Result<tcp::Packet<&'a mut [u8; tcp::HEADER_LEN]>, DropReason> {
        let fixed = bytes
            .get_mut(self.at.l4..)
            .and_then(<[u8]>::first_chunk_mut);
        Ok(tcp::Packet::new_unchecked(
            fixed.ok_or(DropReason::Truncated)?,
        ))
    }

    /// Write `new` as the IP length field, and update the IPv4 header
    /// checksum for it.
    #[inline]
    fn set_ip_len(&self, bytes: &mut [u8], new: u16) -> Result<(), DropReason> {
        let ip = bytes.get_mut(self.at.l3..).ok_or(DropReason::Truncated)?;
        match self.at.family {
            Family::V4 => {
                let fixed = ip.first_chunk_mut::<{ ipv4::HEADER_LEN }>();
                let mut ip = ipv4::Packet::new_unchecked(fixed.ok_or(DropReason::Truncated)?);
                let sum = Delta::default()
                    .word(ip.total_len(), new)
                    .apply(ip.checksum());
                ip.set_total_len(new);
                ip.set_checksum(sum);
            }
            Family::V6 => {
                let fixed = ip.first_chunk_mut::<{ ipv6::HLEN }>();
                ipv6::Packet::new_unchecked(fixed.ok_or(DropReason::Truncated)?)
                    .set_payload_len(new);
            }
        }
        Ok(())
    }

    /// Follow a change of the options area's length by `by` bytes.
    #[inline]
    fn grow(&mut self, by: isize) {
        self.ip_len = self.ip_len.saturating_add_signed(by);
        self.tcp_len = self.tcp_len.saturating_add_signed(by);
        self.hlen = self.hlen.saturating_add_signed(by);
    }

    /// Edit the segment's options in `frame`: remove the kinds in
    /// `edit.strip` (and the timestamps if asked), then insert
    /// `edit.insert` right after the fixed header, pruning lesser options
    /// if the 40 bytes of option space are short (see the module docs).
    /// The data offset, the IP length, the IPv4 header checksum and the
    /// TCP checksum are updated, and `self` with them; the frame's start
    /// moves by [`Edited::grown`], its end and the payload do not.
    ///
    /// The option is not inserted on a SYN or an RST, where there is no
    /// room, or where the frame has less headroom than the growth; the
    /// segment is still stripped. An edit that asks for nothing returns at
    /// once, without reading the frame; one that changes nothing leaves
    /// the frame untouched.
    ///
    /// # Errors
    /// `BadL4Header` for a malformed options area (an option whose length
    /// is wrong or runs past the area); `Truncated` or `BadIpLength` when
    /// `self` does not fit the frame. On an error the frame is to be
    /// dropped.
    pub(crate) fn edit_options(
        &mut self,
        frame: &mut Frame<'_>,
        edit: &OptionEdit<'_>,
    ) -> Result<Edited, DropReason> {
        if edit.asks_nothing() {
            return Ok(Edited::default());
        }
        self.edit(frame, edit)
    }

    /// [`Segment::edit_options`] for an edit that asks for something.
    fn edit(&mut self, frame: &mut Frame<'_>, edit: &OptionEdit<'_>) -> Result<Edited, DropReason> {
        let mut done = Edited::default();
        debug_assert_eq!(
            Segment::parse(frame.bytes(), self.at),
            Ok(*self),
            "the segment is what the frame holds"
        );
        if let Some(done) = self.fast_path(frame, edit)? {
            return Ok(done);
        }
        let area = Area::copy(self.options(frame.bytes())?)?;
        let area = area.as_slice();
        let walked = walk(area, edit)?;
        done.spoofed = walked.spoofed;

        let mut plan = walked.plan;
        let mut insert = None;
        if let Some(option) = edit.insert {
            done.insertion = if self.flags & (tcp_flags::SYN | tcp_flags::RST) != 0 {
                Insertion::Refused
            } else {
                let need = option.buffer_len();
                let mut pruned_plan = walked.plan;
                let pruned = pruned_plan.prune(OPTIONS_MAX - need);
                let new_len = (pruned_plan.total + need).next_multiple_of(4);
                let growth = new_len.saturating_sub(area.len());
                if new_len > OPTIONS_MAX || self.ip_len + growth > usize::from(u16::MAX) {
                    Insertion::NoRoom
                } else if growth > frame.headroom() {
                    Insertion::NoHeadroom
                } else {
                    plan = pruned_plan;
                    insert = Some(option);
                    done.pruned = pruned;
                    Insertion::Inserted
                }
            };
        }
        if insert.is_none() && !walked.removed {
            return Ok(done);
        }

        let mut new = [0u8; OPTIONS_MAX];
        let new_len = build(area, &plan, insert.as_ref(), &mut new)?;
        let new_area = new.get(..new_len).ok_or(DropReason::BadL4Header)?;
        done.grown = new_len as isize - area.len() as isize;
        self.rewrite_headers(frame.bytes_mut(), area, new_area)?;
        move_headers(frame, self.options_at(), done.grown)?;
        self.grow(done.grown);
        self.tcp_mut(frame.bytes_mut())?
            .options_mut()
            .get_mut(..new_len)
            .ok_or(DropReason::Truncated)?
            .copy_from_slice(new_area);
        Ok(done)
    }

    /// The common cases without building a new area: nothing to remove
    /// (no option of a stripped kind, no EOL, timestamps kept) and either
    /// nothing to insert, or an option that fits after the existing ones
    /// without pruning. The option is then written right after the fixed
    /// header and the existing options follow it unchanged (the same
    /// layout the general path builds, since both lengths are multiples
    /// of 4 and no padding changes). `None` sends the segment down the
    /// general path.
    #[inline]
    fn fast_path(
        &mut self,
        frame: &mut Frame<'_>,
        edit: &OptionEdit<'_>,
    ) -> Result<Option<Edited>, DropReason> {
        if edit.strip_timestamps {
            return Ok(None);
        }
        let Ok(area) = self.options(frame.bytes()) else {
            return Ok(None);
        };
        if !nothing_to_strip(area, edit.strip) {
            return Ok(None);
        }
        let Some(option) = edit.insert else {
            return Ok(Some(Edited::default()));
        };
        if self.flags & (tcp_flags::SYN | tcp_flags::RST) != 0 {
            return Ok(Some(Edited {
                insertion: Insertion::Refused,
                ..Edited::default()
            }));
        }
        let need = option.buffer_len();
        if area.len() + need > OPTIONS_MAX
            || self.ip_len + need > usize::from(u16::MAX)
            || need > frame.headroom()
        {
            return Ok(None);
        }
        // The option (at most the IPv6 one's 20 bytes), then the checksum
        // and length changes, made before the move.
        let mut opt = [0u8; ttm_core::V6_LEN];
        let rest = option
            .emit(&mut opt)
            .map_err(|_| DropReason::Truncated)?
            .len();
        let opt = opt
            .get(..ttm_core::V6_LEN - rest)
            .ok_or(DropReason::Truncated)?;
        let bytes = frame.bytes_mut();
        let mut tcp = self.tcp_fixed_mut(bytes)?;
        let doff_word = tcp.data_off_flags();
        tcp.set_header_len(self.hlen + need);
        let (old_len, new_len) = (self.tcp_len as u16, (self.tcp_len + need) as u16);
        let tcp_delta = Delta::default()
            .word(0, checksum::folded(opt))
            .word(doff_word, tcp.data_off_flags())
            .word(old_len, new_len);
        tcp.set_checksum(tcp_delta.apply(tcp.checksum()));
        self.set_ip_len(bytes, (self.ip_len + need) as u16)?;
        let area_at = self.options_at();
        move_headers(frame, area_at, need as isize)?;
        // Within the bounds checked above: the option space and 65535.
        self.ip_len += need;
        self.tcp_len += need;
        self.hlen += need;
        frame
            .bytes_mut()
            .get_mut(area_at..area_at + need)
            .ok_or(DropReason::Truncated)?
            .copy_from_slice(opt);
        Ok(Some(Edited {
            insertion: Insertion::Inserted,
            grown: need as isize,
            ..Edited::default()
        }))
    }

    /// Update, in place and before the move, the fields that depend on
    /// the options area's length and contents: the data offset, the TCP
    /// checksum, the IP length and the IPv4 header checksum. `self` is
    /// not changed.
    fn rewrite_headers(&self, bytes: &mut [u8], old: &[u8], new: &[u8]) -> Result<(), DropReason> {
        let too_long = |n: usize| u16::try_from(n).map_err(|_| DropReason::BadIpLength);
        let tcp_len = too_long(self.tcp_len)?;
        let new_tcp_len = too_long(self.tcp_len - old.len() + new.len())?;
        let new_ip_len = too_long(self.ip_len - old.len() + new.len())?;

        let mut tcp = self.tcp_fixed_mut(bytes)?;
        let doff_word = tcp.data_off_flags();
        tcp.set_header_len(tcp::HEADER_LEN + new.len());
        // The pseudo-header's length is 16 bits for IPv4 and 32 for IPv6;
        // its high half is 0 both before and after, so one word changes.
        let delta = Delta::default()
            .word(checksum::folded(old), checksum::folded(new))
            .word(doff_word, tcp.data_off_flags())
            .word(tcp_len, new_tcp_len);
        tcp.set_checksum(delta.apply(tcp.checksum()));
        self.set_ip_len(bytes, new_ip_len)
    }

    /// Lower every MSS option of the segment by `by` bytes (the TTM
    /// option's length, on the SYN-ACK from the RS), but not below
    /// [`MSS_FLOOR`], and never raise one; the TCP checksum is updated.
    /// The MSS now in the segment (the last one, which Linux's parser uses
    /// when there are several), or `None` if it has no MSS option.
    ///
    /// # Errors
    /// As [`Segment::edit_options`].
    pub(crate) fn lower_mss(
        &self,
        frame: &mut Frame<'_>,
        by: u16,
    ) -> Result<Option<u16>, DropReason> {
        debug_assert_eq!(
            Segment::parse(frame.bytes(), self.at),
            Ok(*self),
            "the segment is what the frame holds"
        );
        let mut area = Area::copy(self.options(frame.bytes())?)?;
        // Where the MSS options are, and their values: at most 10 fit in 40
        // bytes.
        let mut found = [(0usize, 0u16); OPTIONS_MAX / 4];
        let mut n = 0;
        for step in walk_offsets(area.as_slice()) {
            if let (off, TcpOption::MaxSegmentSize(old)) = step? {
                let slot = found.get_mut(n).ok_or(DropReason::BadL4Header)?;
                *slot = (off, old);
                n += 1;
            }
        }
        let found = found.get(..n).unwrap_or_default();
        let before = checksum::folded(area.as_slice());
        let mut changed = false;
        let mut mss = None;
        for &(off, old) in found {
            let new = if old > MSS_FLOOR {
                old.saturating_sub(by).max(MSS_FLOOR)
            } else {
                old
            };
            changed |= new != old;
            mss = Some(new);
            *mss_value(&mut area.bytes, off)? = new.to_be_bytes();
        }
        if !changed {
            return Ok(mss);
        }
        let after = checksum::folded(area.as_slice());
        let mut tcp = self.tcp_mut(frame.bytes_mut())?;
        let options = tcp.options_mut();
        for &(off, _) in found {
            *mss_value(options, off)? = *mss_value(&mut area.bytes, off)?;
        }
        let updated = Delta::default().word(before, after).apply(tcp.checksum());
        tcp.set_checksum(updated);
        Ok(mss)
    }
}

/// [`Segment::edit_options`] on the segment at `at` whose TCP header the
/// engine's classification has read into `l4` ([`Segment::known`]); an
/// edit that asks for nothing returns at once.
///
/// # Errors
/// As [`Segment::known`] and [`Segment::edit_options`].
pub(crate) fn edit_options(
    frame: &mut Frame<'_>,
    at: Headers,
    l4: &L4,
    edit: &OptionEdit<'_>,
) -> Result<Edited, DropReason> {
    if edit.asks_nothing() {
        return Ok(Edited::default());
    }
    Segment::known(at, l4)?.edit(frame, edit)
}

/// The value of the MSS option at `off` in an options area: the two bytes
/// after its kind and length.
#[inline]
fn mss_value(area: &mut [u8], off: usize) -> Result<&mut [u8; 2], DropReason> {
    area.get_mut(off + 2..)
        .and_then(<[u8]>::first_chunk_mut)
        .ok_or(DropReason::Truncated)
}

/// A copy of a segment's options area (at most 40 bytes), so that it can
/// be read while the frame is rewritten.
struct Area {
    bytes: [u8; OPTIONS_MAX],
    len: usize,
}

impl Area {
    fn copy(src: &[u8]) -> Result<Area, DropReason> {
        let len = src.len();
        let mut area = Area {
            bytes: [0; OPTIONS_MAX],
            len,
        };
        area.bytes
            .get_mut(..len)
            .ok_or(DropReason::BadL4Header)?
            .copy_from_slice(src);
        Ok(area)
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// How an option ranks for pruning (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Nop,
    SynOnly,
    Sack,
    Timestamps,
    Other,
}

/// The order in which classes are pruned; timestamps never are.
const PRUNE_ORDER: [Class; 4] = [Class::Nop, Class::SynOnly, Class::Sack, Class::Other];

/// An option kept from the old area: where it is there, and how many of
/// its bytes stay (fewer for a trimmed SACK option, 0 once pruned).
#[derive(Debug, Clone, Copy)]
struct Kept {
    off: u8,
    len: u8,
    class: Class,
}

/// The options kept from the old area, in their order.
#[derive(Debug, Clone, Copy)]
struct Plan {
    kept: [Kept; OPTIONS_MAX],
    n: usize,
    /// The sum of the kept lengths.
    total: usize,
}

impl Plan {
    const EMPTY: Plan = Plan {
        kept: [Kept {
            off: 0,
            len: 0,
            class: Class::Nop,
        }; OPTIONS_MAX],
        n: 0,
        total: 0,
    };

    fn push(&mut self, off: usize, len: usize, class: Class) -> Result<(), DropReason> {
        let slot = self.kept.get_mut(self.n).ok_or(DropReason::BadL4Header)?;
        let (Ok(off), Ok(len)) = (u8::try_from(off), u8::try_from(len)) else {
            return Err(DropReason::BadL4Header);
        };
        *slot = Kept { off, len, class };
        self.n += 1;
        self.total += usize::from(len);
        Ok(())
    }

    fn kept(&self) -> impl Iterator<Item = &Kept> {
        self.kept.iter().take(self.n).filter(|k| k.len > 0)
    }

    /// Remove options in [`PRUNE_ORDER`] until at most `budget` bytes
    /// remain (or nothing more may go); the number of options and SACK
    /// blocks removed, NOPs not counted.
    fn prune(&mut self, budget: usize) -> u8 {
        let mut pruned = 0u8;
        for class in PRUNE_ORDER {
            for k in self.kept.iter_mut().take(self.n).rev() {
                while self.total > budget && k.class == class && k.len > 0 {
                    // A SACK option loses its last block while it has more
                    // than one (2 + 8n bytes), then goes whole.
                    let cut = if class == Class::Sack && k.len > 10 {
                        8
                    } else {
                        k.len
                    };
                    k.len -= cut;
                    self.total -= usize::from(cut);
                    if class != Class::Nop {
                        pruned = pruned.saturating_add(1);
                    }
                }
            }
        }
        pruned
    }
}

/// The walk's result: what is kept, and what was removed.
struct Walked {
    plan: Plan,
    spoofed: u8,
    /// Whether anything was removed (the area must be rebuilt).
    removed: bool,
}

/// Sort the options of `area` into kept and removed; a malformed area is
/// `BadL4Header`.
fn walk(area: &[u8], edit: &OptionEdit<'_>) -> Result<Walked, DropReason> {
    let mut out = Walked {
        plan: Plan::EMPTY,
        spoofed: 0,
        removed: false,
    };
    for step in walk_offsets(area) {
        let (off, option) = step?;
        let class = match option {
            TcpOption::EndOfList => {
                let rest = area.get(off + 1..).unwrap_or_default();
                out.removed |= rest.iter().any(|&b| b != 0);
                break;
            }
            TcpOption::NoOperation => Class::Nop,
            TcpOption::MaxSegmentSize(_) | TcpOption::WindowScale(_) | TcpOption::SackPermitted => {
                Class::SynOnly
            }
            TcpOption::SackRange(_) => Class::Sack,
            TcpOption::Timestamps { .. } if edit.strip_timestamps => {
                out.removed = true;
                continue;
            }
            TcpOption::Timestamps { .. } => Class::Timestamps,
            TcpOption::Unknown { kind, .. } if edit.strip.contains(kind) => {
                out.spoofed = out.spoofed.saturating_add(1);
                out.removed = true;
                continue;
            }
            TcpOption::Unknown { .. } => Class::Other,
        };
        out.plan.push(off, option.buffer_len(), class)?;
    }
    Ok(out)
}

/// Write the new area into `out`: `insert`, the kept options of `area`,
/// NOPs to a multiple of 4. Its length.
fn build(
    area: &[u8],
    plan: &Plan,
    insert: Option<&TtmOption>,
    out: &mut [u8; OPTIONS_MAX],
) -> Result<usize, DropReason> {
    let mut w = 0;
    if let Some(option) = insert {
        option.emit(out).map_err(|_| DropReason::BadL4Header)?;
        w = option.buffer_len();
    }
    for k in plan.kept() {
        let (off, len) = (usize::from(k.off), usize::from(k.len));
        let src = area.get(off..off + len).ok_or(DropReason::BadL4Header)?;
        let dst = out.get_mut(w..w + len).ok_or(DropReason::BadL4Header)?;
        dst.copy_from_slice(src);
        if k.class == Class::Sack
            && let Some(len_byte) = dst.get_mut(1)
        {
            *len_byte = k.len;
        }
        w += len;
    }
    let padded = w.next_multiple_of(4);
    out.get_mut(w..padded)
        .ok_or(DropReason::BadL4Header)?
        .fill(NOP);
    Ok(padded)
}

/// The options of `area` with their offsets; a malformed area is
/// `BadL4Header` (once, then the walk ends).
fn walk_offsets(area: &[u8]) -> impl Iterator<Item = Result<(usize, TcpOption<'_>), DropReason>> {
    let mut options = TcpOptions::new(area);
    core::iter::from_fn(move || {
        let off = options.offset();
        let item = options.next()?;
        Some(
            item.map(|option| (off, option))
                .map_err(|_| DropReason::BadL4Header),
        )
    })
}

/// Whether [`Segment::edit_options`], asked to strip `strip` and nothing else,
/// leaves an options area as it is: every option well-formed, none of a
/// kind in `strip`, no EOL. (`false` does not say it would change it.)
#[inline]
pub(crate) fn nothing_to_strip(area: &[u8], strip: &KindSet) -> bool {
    let mut i = 0;
    while let Some(&kind) = area.get(i) {
        match kind {
            0 => return false,
            1 => i += 1,
            _ => {
                let len = usize::from(area.get(i + 1).copied().unwrap_or(0));
                if len < 2 || i + len > area.len() || strip.contains(kind) {
                    return false;
                }
                i += len;
            }
        }
    }
    true
}

/// Move the frame's first `prefix` bytes by `grown`: into the headroom when
/// positive, toward the payload when negative; the frame's start follows,
/// its end stays.
fn move_headers(frame: &mut Frame<'_>, prefix: usize, grown: isize) -> Result<(), DropReason> {
    let (start, end) = (frame.start(), frame.end());
    let by = grown.unsigned_abs();
    if grown > 0 {
        let new_start = start.checked_sub(by).ok_or(DropReason::Truncated)?;
        if !frame.set_range(new_start, end) {
            return Err(DropReason::Truncated);
        }
        // The window is `by + prefix` long, so both ranges are inside it.
        frame
            .bytes_mut()
            .get_mut(..by + prefix)
            .ok_or(DropReason::Truncated)?
            .copy_within(by.., 0);
    } else if grown < 0 {
        frame
            .bytes_mut()
            .get_mut(..by + prefix)
            .ok_or(DropReason::Truncated)?
            .copy_within(..prefix, by);
        if !frame.set_range(start + by, end) {
            return Err(DropReason::Truncated);
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::test_rng::Rng;
    use alloc::vec::Vec;
    use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TransportSlice};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const LIP4: [u8; 4] = [10, 0, 0, 100];
    const RIP4: [u8; 4] = [10, 0, 0, 2];
    const LIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64];
    const RIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const V4: Headers = Headers {
        family: Family::V4,
        l3: 14,
        l4: 34,
    };
    const V6: Headers = Headers {
        family: Family::V6,
        l3: 14,
        l4: 54,
    };
    const HEAD: usize = Frame::HEADROOM;
    const TAIL: usize = 16;
    /// The fixed TCP header's length.
    const TCP_FIXED: usize = tcp::HEADER_LEN;
    /// Bytes of the buffer outside the frame, to see that nothing else
    /// is written.
    const FILL: u8 = 0xee;

    const NOP2: [u8; 2] = [1, 1];
    const TS: [u8; 10] = [8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    /// NOP, NOP, timestamps: a Linux ACK's options.
    const NOP_NOP_TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    /// A Linux SYN's options: MSS 1460, SACK permitted, timestamps, NOP,
    /// window scale 7.
    const LINUX_SYN: [u8; 20] = [
        2, 4, 5, 180, 4, 2, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 1, 3, 3, 7,
    ];

    /// [`Segment::edit_options`] on the segment at `at`, its headers
    /// checked first ([`Segment::parse`]): nothing is read when the edit
    /// asks for nothing. (It shadows the engine's [`super::edit_options`],
    /// which takes the headers as classification read them.)
    fn edit_options(
        frame: &mut Frame<'_>,
        at: Headers,
        edit: &OptionEdit<'_>,
    ) -> Result<Edited, DropReason> {
        if edit.asks_nothing() {
            return Ok(Edited::default());
        }
        Segment::parse(frame.bytes(), at)?.edit_options(frame, edit)
    }

    /// [`Segment::lower_mss`] on the segment at `at`, its headers checked
    /// first.
    fn lower_mss(frame: &mut Frame<'_>, at: Headers, by: u16) -> Result<Option<u16>, DropReason> {
        Segment::parse(frame.bytes(), at)?.lower_mss(frame, by)
    }

    fn client4() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 40000))
    }

    fn client6() -> SocketAddr {
        SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10), 40001))
    }

    fn ttm4() -> TtmOption {
        TtmOption::new(254, client4())
    }

    fn ttm6() -> TtmOption {
        TtmOption::new(254, client6())
    }

    fn kinds() -> KindSet {
        KindSet::new(&[253, 254]).unwrap()
    }

    /// A spoofed option: an accepted kind carrying an address the client
    /// chose.
    fn spoof(kind: u8) -> [u8; 8] {
        [kind, 8, 0, 80, 6, 6, 6, 6]
    }

    #[derive(Clone, Copy, Default)]
    struct Flags {
        syn: bool,
        ack: bool,
        fin: bool,
        rst: bool,
    }

    const ACK: Flags = Flags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// An Ethernet frame LIP:lport -> RIP:rport, built and checksummed by
    /// etherparse; `options` is padded with zeros to a multiple of 4.
    fn tcp_frame(v6: bool, flags: Flags, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut tcp = TcpHeader::new(50000, 8080, 1000, 64240);
        tcp.syn = flags.syn;
        tcp.fin = flags.fin;
        tcp.rst = flags.rst;
        tcp.ack = flags.ack;
        tcp.acknowledgment_number = if flags.ack { 5001 } else { 0 };
        tcp.set_options_raw(options).unwrap();
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B);
        let b = if v6 {
            b.ipv6(LIP6, RIP6, 64)
        } else {
            b.ipv4(LIP4, RIP4, 64)
        };
        let mut out = Vec::new();
        b.tcp_header(tcp).write(&mut out, payload).unwrap();
        out
    }

    fn at(v6: bool) -> Headers {
        if v6 { V6 } else { V4 }
    }

    /// The result of one edit: what the function said, the frame after it,
    /// and the whole buffer.
    struct Run {
        result: Result<Edited, DropReason>,
        start: usize,
        out: Vec<u8>,
        buf: Vec<u8>,
    }

    fn run_with(input: &[u8], head: usize, at: Headers, edit: &OptionEdit<'_>) -> Run {
        let mut buf = alloc::vec![FILL; head];
        buf.extend_from_slice(input);
        buf.extend_from_slice(&[FILL; TAIL]);
        let end = head + input.len();
        let mut frame = Frame::new(&mut buf, head, end).unwrap();
        let result = edit_options(&mut frame, at, edit);
        assert_eq!(frame.end(), end, "the frame's end never moves");
        let start = frame.start();
        if let Ok(done) = result {
            assert_eq!(start as isize, head as isize - done.grown);
        }
        let out = frame.bytes().to_vec();
        Run {
            result,
            start,
            out,
            buf,
        }
    }

    fn run(input: &[u8], at: Headers, edit: &OptionEdit<'_>) -> Run {
        run_with(input, HEAD, at, edit)
    }

    /// What etherparse reads back from a frame whose lengths and checksums
    /// it has verified.
    #[derive(Debug)]
    struct Parsed {
        options: Vec<u8>,
        payload: Vec<u8>,
        syn: bool,
        fin: bool,
    }

    /// Parse `frame` with etherparse and check every length and checksum by
    /// its own computation.
    fn verify(frame: &[u8]) -> Parsed {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("no TCP")
        };
        match p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                assert_eq!(usize::from(h.total_len()), frame.len() - 14);
                assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                assert_eq!(
                    tcp.checksum(),
                    tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap(),
                    "TCP checksum (IPv4)"
                );
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                assert_eq!(usize::from(h.payload_length()), frame.len() - 54);
                assert_eq!(
                    tcp.checksum(),
                    tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap(),
                    "TCP checksum (IPv6)"
                );
            }
            _ => panic!("no IP"),
        }
        assert_eq!(usize::from(tcp.data_offset()) * 4, 20 + tcp.options().len());
        Parsed {
            options: tcp.options().to_vec(),
            payload: tcp.payload().to_vec(),
            syn: tcp.syn(),
            fin: tcp.fin(),
        }
    }

    /// The kinds of the options in `area` that are in `set`.
    fn accepted_kinds(area: &[u8], set: &KindSet) -> Vec<u8> {
        TcpOptions::new(area)
            .map(|o| o.unwrap().kind())
            .filter(|&k| set.contains(k))
            .collect()
    }

    fn insert(option: TtmOption, strip: &KindSet) -> OptionEdit<'_> {
        OptionEdit {
            strip,
            strip_timestamps: false,
            insert: Some(option),
        }
    }

    fn strip_only(strip: &KindSet) -> OptionEdit<'_> {
        OptionEdit {
            strip,
            strip_timestamps: false,
            insert: None,
        }
    }

    fn emitted(option: TtmOption) -> Vec<u8> {
        let mut buf = [0u8; 20];
        option.emit(&mut buf).unwrap();
        buf[..option.buffer_len()].to_vec()
    }

    /// The third ACK (and the IPv6 client's): the option right after the
    /// fixed header, NOP NOP TS behind it, the frame grown into the
    /// headroom by the option's length, the payload where it was.
    #[test]
    fn third_ack_gets_the_option() {
        let set = kinds();
        for (v6, option) in [
            (false, ttm4()),
            (true, ttm6()),
            (false, ttm6()),
            (true, ttm4()),
        ] {
            let input = tcp_frame(v6, ACK, &NOP_NOP_TS, b"");
            let r = run(&input, at(v6), &insert(option, &set));
            let done = r.result.unwrap();
            let len = option.buffer_len();
            assert_eq!(
                done,
                Edited {
                    insertion: Insertion::Inserted,
                    spoofed: 0,
                    pruned: 0,
                    grown: len as isize,
                }
            );
            assert_eq!(r.start, HEAD - len);
            assert_eq!(r.out.len(), input.len() + len);
            let p = verify(&r.out);
            assert_eq!(p.options, cat(&[&emitted(option), &NOP_NOP_TS]));
            assert!(p.payload.is_empty());
            let found = ttm_core::find(&p.options, &set).unwrap().unwrap();
            assert_eq!(found, option);
            // Everything before the options moved as one block; only the
            // lengths, the data offset and the checksums changed.
            let l4 = at(v6).l4;
            let changed: &[usize] = if v6 {
                &[18, 19, l4 + 12, l4 + 16, l4 + 17]
            } else {
                &[16, 17, 24, 25, l4 + 12, l4 + 16, l4 + 17]
            };
            for (i, (a, b)) in r.out.iter().zip(&input).enumerate().take(l4 + TCP_FIXED) {
                if !changed.contains(&i) {
                    assert_eq!(a, b, "byte {i}");
                }
            }
            assert_eq!(r.out[l4 + 12], input[l4 + 12] + ((len as u8 / 4) << 4));
            // Nothing outside the new frame was written.
            assert!(r.buf[..r.start].iter().all(|&b| b == FILL));
            assert!(r.buf[HEAD + input.len()..].iter().all(|&b| b == FILL));
        }
    }

    #[test]
    fn data_and_fin_segments() {
        let set = kinds();
        let payload = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
        for v6 in [false, true] {
            for (flags, payload) in [
                (ACK, &payload[..]),
                (ACK, &payload[..33]), // odd length
                (Flags { fin: true, ..ACK }, &b""[..]),
                (Flags { fin: true, ..ACK }, &payload[..]),
            ] {
                for option in [ttm4(), ttm6()] {
                    let input = tcp_frame(v6, flags, &NOP_NOP_TS, payload);
                    let r = run(&input, at(v6), &insert(option, &set));
                    assert_eq!(r.result.unwrap().insertion, Insertion::Inserted);
                    let p = verify(&r.out);
                    assert_eq!(p.payload, payload);
                    assert_eq!(p.fin, flags.fin);
                    assert_eq!(&p.options[..option.buffer_len()], &emitted(option)[..]);
                    // The payload has not moved in the buffer.
                    let at_end = HEAD + input.len();
                    assert_eq!(&r.buf[at_end - payload.len()..at_end], payload);
                }
            }
        }
    }

    #[test]
    fn no_options_at_all() {
        let set = kinds();
        for v6 in [false, true] {
            let input = tcp_frame(v6, ACK, &[], b"x");
            let r = run(&input, at(v6), &insert(ttm6(), &set));
            assert_eq!(r.result.unwrap().grown, 20);
            assert_eq!(verify(&r.out).options, emitted(ttm6()));
        }
    }

    /// Timestamps and three SACK blocks fill the 40 bytes: NOPs go first,
    /// then SACK blocks from the last; the timestamps stay.
    #[test]
    fn full_option_space_is_pruned() {
        let set = kinds();
        let sack3: Vec<u8> = cat(&[&[5, 26], &[0xa1; 8], &[0xb2; 8], &[0xc3; 8]]);
        let area = cat(&[&NOP2, &TS, &NOP2, &sack3]);
        assert_eq!(area.len(), 40);
        for v6 in [false, true] {
            let input = tcp_frame(v6, ACK, &area, b"data");

            let r = run(&input, at(v6), &insert(ttm4(), &set));
            let done = r.result.unwrap();
            assert_eq!(
                (done.insertion, done.pruned, done.grown),
                (Insertion::Inserted, 1, -4)
            );
            let p = verify(&r.out);
            let sack2 = cat(&[&[5, 18], &[0xa1; 8], &[0xb2; 8]]);
            assert_eq!(p.options, cat(&[&emitted(ttm4()), &TS, &sack2]));
            assert_eq!(p.payload, b"data");

            let r = run(&input, at(v6), &insert(ttm6(), &set));
            let done = r.result.unwrap();
            assert_eq!(
                (done.insertion, done.pruned, done.grown),
                (Insertion::Inserted, 2, 0)
            );
            let p = verify(&r.out);
            let sack1 = cat(&[&[5, 10], &[0xa1; 8]]);
            assert_eq!(p.options, cat(&[&emitted(ttm6()), &TS, &sack1]));
            assert!(!done.missed());
        }
    }

    /// SYN-only options on an ACK go before SACK blocks; unknown options
    /// go last, the last one first.
    #[test]
    fn pruning_order() {
        let set = kinds();
        let mss = [2u8, 4, 5, 180];
        let ws = [3u8, 3, 7];
        let sack1 = cat(&[&[5, 10], &[0xa1; 8]]);
        let mptcp = [30u8, 6, 1, 2, 3, 4];
        let exp = [200u8, 4, 9, 9];
        // 4 + 3 + 10 + 10 + 6 + 4 = 37, then one NOP: 38.
        let area = cat(&[&mss, &ws, &TS, &sack1, &mptcp, &exp, &[1]]);
        let input = tcp_frame(false, ACK, &area, b"");
        let case = |option: TtmOption| {
            let r = run(&input, V4, &insert(option, &set));
            (r.result.unwrap(), verify(&r.out).options)
        };
        // 8 bytes: NOP (1) and MSS (4) and WS (3) go: 30 + 8 = 38.
        let (done, options) = case(ttm4());
        assert_eq!(done.pruned, 2);
        assert_eq!(
            options,
            cat(&[&emitted(ttm4()), &TS, &sack1, &mptcp, &exp, &[1, 1]])
        );
        // 20 bytes: then the SACK option (10): 20 + 20 = 40.
        let (done, options) = case(ttm6());
        assert_eq!(done.pruned, 3);
        assert_eq!(options, cat(&[&emitted(ttm6()), &TS, &mptcp, &exp]));
        // Unknown options go last, the last one first: 36 - 10 - 6 = 20.
        let other = [201u8, 6, 0, 0, 0, 0];
        let area = cat(&[&TS, &mptcp, &exp, &other, &sack1]);
        let input = tcp_frame(true, ACK, &area, b"");
        let r = run(&input, V6, &insert(ttm6(), &set));
        assert_eq!(r.result.unwrap().pruned, 2);
        assert_eq!(
            verify(&r.out).options,
            cat(&[&emitted(ttm6()), &TS, &mptcp, &exp])
        );
    }

    /// With only the timestamps unprunable, option space never runs out;
    /// the IP length can: an IPv6 payload that would pass 65535 bytes
    /// gets no option, and is still stripped.
    #[test]
    fn no_room_when_the_ip_length_would_overflow() {
        let set = kinds();
        let area = cat(&[&spoof(254), &NOP_NOP_TS]);
        let payload = alloc::vec![7u8; 65535 - 20 - area.len() - 4];
        let input = tcp_frame(true, ACK, &area, &payload);
        let r = run(&input, V6, &insert(ttm6(), &set));
        let done = r.result.unwrap();
        // The spoofed option (8) goes; the new option (20) would add 12.
        assert_eq!(done.insertion, Insertion::NoRoom);
        assert!(done.missed());
        assert_eq!((done.spoofed, done.grown), (1, -8));
        let p = verify(&r.out);
        assert_eq!(p.options, NOP_NOP_TS);
        // The same with room to spare: inserted.
        let r = run(&input, V6, &insert(ttm4(), &set));
        assert_eq!(r.result.unwrap().insertion, Insertion::Inserted);
        verify(&r.out);
    }

    #[test]
    fn no_headroom_means_no_option_but_still_stripped() {
        let set = kinds();
        let area = cat(&[&NOP_NOP_TS, &spoof(253)]);
        let input = tcp_frame(false, ACK, &area, b"abc");
        for head in [0, 3] {
            let r = run_with(&input, head, V4, &insert(ttm6(), &set));
            let done = r.result.unwrap();
            assert_eq!(done.insertion, Insertion::NoHeadroom);
            assert_eq!((done.spoofed, done.grown), (1, -8));
            assert_eq!(verify(&r.out).options, NOP_NOP_TS);
        }
        // Exactly the growth (20 - 8 = 12) is enough.
        let r = run_with(&input, 12, V4, &insert(ttm6(), &set));
        assert_eq!(r.result.unwrap().insertion, Insertion::Inserted);
        assert_eq!(r.start, 0);
        verify(&r.out);
    }

    /// A client-supplied option of an accepted kind never survives,
    /// wherever it is, with or without insertion; other kinds do.
    #[test]
    fn spoofed_options_are_removed() {
        let set = kinds();
        let other = [200u8, 8, 0, 80, 5, 5, 5, 5];
        for kind in [253u8, 254] {
            let s = spoof(kind);
            let mut s6 = [0u8; 20];
            s6[..2].copy_from_slice(&[kind, 20]);
            let areas: [Vec<u8>; 5] = [
                cat(&[&s, &NOP_NOP_TS]),
                cat(&[&NOP_NOP_TS, &s, &other]),
                cat(&[&NOP_NOP_TS, &other, &s]),
                cat(&[&s6, &NOP_NOP_TS]),
                cat(&[&s, &NOP_NOP_TS, &s6]),
            ];
            for area in &areas {
                let spoofs = accepted_kinds(area, &set).len() as u8;
                for v6 in [false, true] {
                    let input = tcp_frame(v6, ACK, area, b"hi");
                    for option in [None, Some(ttm4()), Some(ttm6())] {
                        let edit = OptionEdit {
                            strip: &set,
                            strip_timestamps: false,
                            insert: option,
                        };
                        let r = run(&input, at(v6), &edit);
                        let done = r.result.unwrap();
                        assert_eq!(done.spoofed, spoofs);
                        let p = verify(&r.out);
                        assert_eq!(p.payload, b"hi");
                        let left = accepted_kinds(&p.options, &set);
                        match option {
                            None => {
                                assert_eq!(done.insertion, Insertion::NotAsked);
                                assert!(left.is_empty(), "{area:?} left {left:?}");
                            }
                            Some(option) => {
                                assert_eq!(done.insertion, Insertion::Inserted);
                                assert_eq!(left, [option.kind()]);
                                assert_eq!(ttm_core::find(&p.options, &set), Ok(Some(option)));
                            }
                        }
                        // Timestamps and the other kind survive.
                        assert!(p.options.windows(10).any(|w| w == TS));
                        if area.windows(8).any(|w| w == other) {
                            assert!(p.options.windows(8).any(|w| w == other));
                        }
                    }
                }
            }
        }
        // A kind outside the set is not touched, and then nothing changes.
        let input = tcp_frame(false, ACK, &cat(&[&other, &NOP_NOP_TS]), b"");
        let r = run(&input, V4, &strip_only(&KindSet::DEFAULT));
        assert_eq!(r.result.unwrap(), Edited::default());
        assert_eq!(r.out, input);
    }

    /// The spoofed options also go on a SYN and an RST, which never get
    /// the option.
    #[test]
    fn syn_and_rst_are_stripped_but_refused() {
        let set = kinds();
        for (flags, base) in [
            (
                Flags {
                    syn: true,
                    ..Flags::default()
                },
                &LINUX_SYN[..],
            ),
            (Flags { syn: true, ..ACK }, &LINUX_SYN[..]),
            (Flags { rst: true, ..ACK }, &NOP_NOP_TS[..]),
        ] {
            let input = tcp_frame(false, flags, &cat(&[&spoof(254), base]), b"");
            let r = run(&input, V4, &insert(ttm4(), &set));
            let done = r.result.unwrap();
            assert_eq!(done.insertion, Insertion::Refused);
            assert!(!done.missed());
            assert_eq!((done.spoofed, done.grown), (1, -8));
            assert_eq!(verify(&r.out).options, base);
        }
    }

    #[test]
    fn timestamps_stripped_or_kept() {
        let set = kinds();
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        let syn_ack = Flags { syn: true, ..ACK };
        for v6 in [false, true] {
            for flags in [syn, syn_ack] {
                let input = tcp_frame(v6, flags, &LINUX_SYN, b"");
                let edit = OptionEdit {
                    strip: &KindSet::EMPTY,
                    strip_timestamps: true,
                    insert: None,
                };
                let r = run(&input, at(v6), &edit);
                let done = r.result.unwrap();
                assert_eq!(done.grown, -8);
                let p = verify(&r.out);
                assert!(p.syn);
                // MSS, SACK permitted, NOP, window scale, then NOP padding.
                assert_eq!(p.options, [2, 4, 5, 180, 4, 2, 1, 3, 3, 7, 1, 1]);
                // Kept (the default): the SYN is not touched.
                let r = run(&input, at(v6), &strip_only(&set));
                assert_eq!(r.result.unwrap(), Edited::default());
                assert_eq!(r.out, input);
            }
            // On an ACK that gets the option too.
            let input = tcp_frame(v6, ACK, &NOP_NOP_TS, b"");
            let edit = OptionEdit {
                strip: &set,
                strip_timestamps: true,
                insert: Some(ttm4()),
            };
            let r = run(&input, at(v6), &edit);
            // NOP NOP TS (12) becomes the option, NOP NOP, and padding.
            assert_eq!(r.result.unwrap().grown, 0);
            assert_eq!(
                verify(&r.out).options,
                cat(&[&emitted(ttm4()), &[1, 1, 1, 1]])
            );
        }
    }

    /// What follows an EOL is dropped when the area is rebuilt; non-zero
    /// bytes there force the rebuild.
    #[test]
    fn end_of_list() {
        let set = kinds();
        let input = tcp_frame(false, ACK, &cat(&[&TS, &[0, 0]]), b"");
        let r = run(&input, V4, &insert(ttm4(), &set));
        assert_eq!(
            verify(&r.out).options,
            cat(&[&emitted(ttm4()), &TS, &[1, 1]])
        );
        // Nothing to do when the padding is zero.
        let r = run(&input, V4, &strip_only(&set));
        assert_eq!(r.out, input);
        // A spoofed option hidden after the EOL.
        let input = tcp_frame(false, ACK, &cat(&[&[1, 0], &spoof(254), &[0, 0]]), b"");
        let r = run(&input, V4, &strip_only(&set));
        let done = r.result.unwrap();
        assert_eq!((done.spoofed, done.grown), (0, -8));
        assert_eq!(verify(&r.out).options, [1, 1, 1, 1]);
    }

    #[test]
    fn nothing_asked_reads_nothing() {
        let edit = strip_only(&KindSet::EMPTY);
        let r = run(&[1, 2, 3], V4, &edit);
        assert_eq!(r.result, Ok(Edited::default()));
        assert_eq!(r.out, [1, 2, 3]);
    }

    #[test]
    fn malformed_options_are_refused() {
        let set = kinds();
        for area in [
            &[2u8, 3, 5, 180][..],                     // MSS of length 3
            &[1, 1, 254, 30][..],                      // runs past the area
            &[1, 1, 1, 254][..],                       // length byte missing
            &[254, 1, 0, 0][..],                       // length below 2
            &[8, 10, 0, 0, 0, 0, 0, 0][..],            // timestamps cut short
            &[5, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], // SACK of 7 bytes
        ] {
            for v6 in [false, true] {
                let input = tcp_frame(v6, ACK, area, b"");
                for option in [None, Some(ttm4())] {
                    let edit = OptionEdit {
                        strip: &set,
                        strip_timestamps: false,
                        insert: option,
                    };
                    let r = run(&input, at(v6), &edit);
                    assert_eq!(r.result, Err(DropReason::BadL4Header), "{area:?}");
                }
                let mut buf = input.clone();
                let mut frame = Frame::whole(&mut buf);
                assert_eq!(
                    lower_mss(&mut frame, at(v6), 8),
                    Err(DropReason::BadL4Header)
                );
            }
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let set = kinds();
        let edit = insert(ttm4(), &set);
        let input = tcp_frame(false, ACK, &NOP_NOP_TS, b"xyz");
        let mut bad = input.clone();
        bad[34 + 12] = 4 << 4; // data offset below 5
        assert_eq!(run(&bad, V4, &edit).result, Err(DropReason::BadL4Header));
        bad[34 + 12] = 15 << 4; // past the segment
        assert_eq!(run(&bad, V4, &edit).result, Err(DropReason::BadL4Header));
        let wrong_l4 = Headers { l4: 38, ..V4 };
        assert_eq!(
            run(&input, wrong_l4, &edit).result,
            Err(DropReason::BadIpHeader)
        );
        assert_eq!(run(&input, V6, &edit).result, Err(DropReason::BadIpHeader));
        let input6 = tcp_frame(true, ACK, &NOP_NOP_TS, b"xyz");
        assert_eq!(run(&input6, V4, &edit).result, Err(DropReason::BadIpHeader));
        // Every cut of the frame is refused: the IP length says more.
        for input in [&input, &input6] {
            let v6 = input.len() == input6.len();
            for len in 0..input.len() {
                let r = run(&input[..len], at(v6), &edit);
                assert!(r.result.is_err(), "cut at {len}");
                let mut buf = input[..len].to_vec();
                let mut frame = Frame::whole(&mut buf);
                assert!(lower_mss(&mut frame, at(v6), 8).is_err());
            }
        }
    }

    fn lower(input: &[u8], at: Headers, by: u16) -> (Result<Option<u16>, DropReason>, Vec<u8>) {
        let mut buf = input.to_vec();
        let mut frame = Frame::whole(&mut buf);
        let r = lower_mss(&mut frame, at, by);
        assert_eq!((frame.start(), frame.end()), (0, input.len()));
        (r, buf)
    }

    #[test]
    fn lower_mss_on_syn_ack() {
        let syn_ack = Flags { syn: true, ..ACK };
        for (v6, by, before, after) in [
            (false, 8u16, 1460u16, 1452u16),
            (true, 20, 1440, 1420),
            (true, 20, 1220, 1200),
            (false, 20, 100, MSS_FLOOR),
        ] {
            let mut area = LINUX_SYN;
            area[2..4].copy_from_slice(&before.to_be_bytes());
            let input = tcp_frame(v6, syn_ack, &area, b"");
            let (r, out) = lower(&input, at(v6), by);
            assert_eq!(r, Ok(Some(after)));
            let p = verify(&out);
            assert_eq!(p.options[2..4], after.to_be_bytes());
            assert_eq!(p.options[4..], area[4..]);
        }
    }

    #[test]
    fn lower_mss_edge_cases() {
        let syn_ack = Flags { syn: true, ..ACK };
        // No MSS option: nothing to do.
        let input = tcp_frame(false, syn_ack, &NOP_NOP_TS, b"");
        assert_eq!(lower(&input, V4, 8), (Ok(None), input.clone()));
        // Never raised, never below the floor.
        for mss in [60u16, MSS_FLOOR] {
            let input = tcp_frame(false, syn_ack, &[2, 4, (mss >> 8) as u8, mss as u8], b"");
            assert_eq!(lower(&input, V4, 8), (Ok(Some(mss)), input.clone()));
        }
        // At an odd offset, and twice (Linux uses the last one).
        let area = [1u8, 2, 4, 5, 180, 1, 1, 1, 1, 2, 4, 4, 0];
        let input = tcp_frame(true, syn_ack, &area, b"");
        let (r, out) = lower(&input, V6, 20);
        assert_eq!(r, Ok(Some(1004)));
        let p = verify(&out);
        assert_eq!(p.options[3..5], 1440u16.to_be_bytes());
        assert_eq!(p.options[11..13], 1004u16.to_be_bytes());
    }

    /// An options area of up to 40 bytes: mostly real options (some of
    /// accepted kinds), sometimes garbage.
    fn random_area(rng: &mut Rng) -> Vec<u8> {
        let mut area = Vec::new();
        if rng.below(8) == 0 {
            for _ in 0..rng.below(41) {
                area.push(rng.byte());
            }
            return area;
        }
        for _ in 0..rng.below(12) {
            let option: Vec<u8> = match rng.below(10) {
                0 => alloc::vec![1],
                1 => alloc::vec![0, 0],
                2 => alloc::vec![2, 4, rng.byte(), rng.byte()],
                3 => alloc::vec![3, 3, 7],
                4 => alloc::vec![4, 2],
                5 => {
                    let n = 1 + rng.below(4);
                    let mut o = alloc::vec![5, 2 + 8 * n as u8];
                    o.extend((0..8 * n).map(|_| rng.byte()));
                    o
                }
                6 => TS.to_vec(),
                7 | 8 => {
                    let kind = [253, 254, 200, 30][rng.below(4)];
                    let len = [8, 20, 2, 4, 6][rng.below(5)];
                    let mut o = alloc::vec![kind, len as u8];
                    o.extend((2..len).map(|_| rng.byte()));
                    o
                }
                _ => alloc::vec![rng.byte(), rng.byte(), rng.byte()],
            };
            if area.len() + option.len() > 40 {
                break;
            }
            area.extend(option);
        }
        area
    }

    /// Many random segments: never a panic; when the edit succeeds the
    /// frame parses, its checksums verify, the payload has not moved, no
    /// spoofed option is left, and an inserted option is first.
    #[test]
    fn random_segments() {
        let set = kinds();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut inserted = 0;
        for _ in 0..4000 {
            let area = random_area(&mut rng);
            let v6 = rng.below(2) == 0;
            let flags = Flags {
                syn: rng.below(6) == 0,
                ack: true,
                fin: rng.below(4) == 0,
                rst: rng.below(10) == 0,
            };
            let payload: Vec<u8> = (0..rng.below(50)).map(|_| rng.byte()).collect();
            let input = tcp_frame(v6, flags, &area, &payload);
            let option = [None, Some(ttm4()), Some(ttm6())][rng.below(3)];
            let edit = OptionEdit {
                strip: &set,
                strip_timestamps: rng.below(4) == 0,
                insert: option,
            };
            let head = [0, 8, 20, HEAD][rng.below(4)];
            let r = run_with(&input, head, at(v6), &edit);
            let Ok(done) = r.result else {
                assert_eq!(r.result, Err(DropReason::BadL4Header), "{area:?}");
                continue;
            };
            let p = verify(&r.out);
            assert_eq!(p.payload, payload);
            let end = head + input.len();
            assert_eq!(&r.buf[end - payload.len()..end], &payload[..]);
            let left = accepted_kinds(&p.options, &set);
            if done.insertion == Insertion::Inserted {
                inserted += 1;
                let option = option.unwrap();
                assert_eq!(left, [254]);
                assert_eq!(&p.options[..option.buffer_len()], &emitted(option)[..]);
            } else {
                assert!(left.is_empty());
            }
            if edit.strip_timestamps {
                assert!(TcpOptions::new(&p.options).all(|o| o.unwrap().kind() != 8));
            }
        }
        assert!(inserted > 500, "only {inserted} insertions");
    }

    /// Random bytes where the headers should be: never a panic.
    #[test]
    fn random_bytes_never_panic() {
        let set = kinds();
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for i in 0..20_000 {
            let mut input = tcp_frame(i % 2 == 0, ACK, &random_area(&mut rng), b"payload");
            for _ in 0..rng.below(4) {
                let at = rng.below(input.len());
                input[at] = rng.byte();
            }
            input.truncate(rng.below(input.len() + 1));
            let headers = Headers {
                family: if rng.below(2) == 0 {
                    Family::V4
                } else {
                    Family::V6
                },
                l3: [14, 14, 0, 60, usize::MAX][rng.below(5)],
                l4: [34, 54, 0, 40, usize::MAX][rng.below(5)],
            };
            let edit = insert(if i % 3 == 0 { ttm6() } else { ttm4() }, &set);
            let _ = run_with(&input, rng.below(70), headers, &edit);
            let mut buf = input.clone();
            let _ = lower_mss(&mut Frame::whole(&mut buf), headers, 20);
        }
    }

    /// What the engine's classification reads of a well-formed frame's
    /// TCP header: the L4 summary, as `Engine::parse` makes it.
    fn classified(input: &[u8], at: Headers) -> L4 {
        L4::tcp(input, at.l4, input.len() - at.l4).unwrap()
    }

    /// [`Segment::known`] is what [`Segment::parse`] reads, and the
    /// engine's [`super::edit_options`] edits a frame exactly as the
    /// checked path does, on many random segments.
    #[test]
    fn known_segments_are_parsed_segments() {
        let set = kinds();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let v6 = rng.below(2) == 0;
            let flags = Flags {
                syn: rng.below(6) == 0,
                ack: true,
                fin: rng.below(4) == 0,
                rst: rng.below(10) == 0,
            };
            let payload: Vec<u8> = (0..rng.below(50)).map(|_| rng.byte()).collect();
            let input = tcp_frame(v6, flags, &random_area(&mut rng), &payload);
            let at = at(v6);
            let l4 = classified(&input, at);
            assert_eq!(Segment::known(at, &l4), Segment::parse(&input, at));
            let edit = OptionEdit {
                strip: &set,
                strip_timestamps: rng.below(4) == 0,
                insert: [None, Some(ttm4()), Some(ttm6())][rng.below(3)],
            };
            let head = [0, 8, HEAD][rng.below(3)];
            let checked = run_with(&input, head, at, &edit);
            let mut buf = alloc::vec![FILL; head];
            buf.extend_from_slice(&input);
            buf.extend_from_slice(&[FILL; TAIL]);
            let end = head + input.len();
            let mut frame = Frame::new(&mut buf, head, end).unwrap();
            let result = super::edit_options(&mut frame, at, &l4, &edit);
            assert_eq!(result, checked.result);
            assert_eq!(frame.start(), checked.start);
            assert_eq!(buf, checked.buf);
        }
    }

    /// The SYN-ACK's two edits on one segment, as the engine makes them:
    /// the timestamps stripped, then the MSS lowered on the segment as the
    /// first edit left it.
    #[test]
    fn a_segment_follows_its_edits() {
        let syn_ack = Flags { syn: true, ..ACK };
        for v6 in [false, true] {
            let input = tcp_frame(v6, syn_ack, &LINUX_SYN, b"");
            let at = at(v6);
            let mut seg = Segment::known(at, &classified(&input, at)).unwrap();
            let mut buf = alloc::vec![FILL; HEAD];
            buf.extend_from_slice(&input);
            let end = buf.len();
            let mut frame = Frame::new(&mut buf, HEAD, end).unwrap();
            let edit = OptionEdit {
                strip: &KindSet::EMPTY,
                strip_timestamps: true,
                insert: None,
            };
            assert_eq!(seg.edit_options(&mut frame, &edit).unwrap().grown, -8);
            assert_eq!(Segment::parse(frame.bytes(), at), Ok(seg));
            assert_eq!(seg.lower_mss(&mut frame, 20), Ok(Some(1440)));
            let p = verify(frame.bytes());
            assert_eq!(p.options, [2, 4, 5, 160, 4, 2, 1, 3, 3, 7, 1, 1]);
        }
    }

    #[test]
    fn known_refuses_what_classification_never_gives() {
        let l4 = L4 {
            hlen: 20,
            payload: 10,
            ..L4::default()
        };
        let inside = Headers { l4: 14 + 19, ..V4 };
        assert_eq!(Segment::known(inside, &l4), Err(DropReason::BadIpHeader));
        let inside6 = Headers { l4: 14 + 39, ..V6 };
        assert_eq!(Segment::known(inside6, &l4), Err(DropReason::BadIpHeader));
        let before = Headers { l3: 40, ..V4 };
        assert_eq!(Segment::known(before, &l4), Err(DropReason::BadIpHeader));
        let short = L4 { hlen: 16, ..l4 };
        assert_eq!(Segment::known(V4, &short), Err(DropReason::BadL4Header));
        let long = L4 {
            payload: 65535 - 40 + 1,
            ..l4
        };
        assert_eq!(Segment::known(V4, &long), Err(DropReason::BadIpLength));
        let fits = L4 {
            payload: 65535 - 40,
            ..l4
        };
        assert!(Segment::known(V4, &fits).is_ok());
        let far = Headers {
            l3: usize::MAX - 60,
            l4: usize::MAX - 20,
            family: Family::V6,
        };
        assert_eq!(Segment::known(far, &l4), Err(DropReason::BadIpLength));
    }
}
