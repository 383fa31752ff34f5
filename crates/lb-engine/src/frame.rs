//! [`Frame`]: one Ethernet frame in a caller's buffer, with room around it.
//!
//! ```text
//! buf: [ headroom | frame: start .. end | tailroom ]
//! ```
//!
//! The caller owns layer 2: the engine reads the Ethernet header only to
//! find the network layer (the EtherType, behind at most two VLAN tags),
//! and rewrites IP and the transport layer in place. Where a rewrite
//! changes the length of the headers (a TCP option added later, an IPv6
//! header translated to IPv4), the engine moves the headers into the
//! headroom and moves `start`; it never moves the payload. A caller that
//! wants every rewrite to succeed leaves [`Frame::HEADROOM`] bytes before
//! the frame.

/// A frame in a buffer: `buf[start..end]` is the Ethernet frame.
#[derive(Debug)]
pub struct Frame<'a> {
    buf: &'a mut [u8],
    start: usize,
    end: usize,
}

impl<'a> Frame<'a> {
    /// Headroom that lets the engine grow any frame's headers in place.
    pub const HEADROOM: usize = 64;

    /// The frame `buf[start..end]`; `None` if the range is not inside
    /// `buf`.
    pub fn new(buf: &'a mut [u8], start: usize, end: usize) -> Option<Frame<'a>> {
        if start <= end && end <= buf.len() {
            Some(Frame { buf, start, end })
        } else {
            None
        }
    }

    /// A frame filling the whole buffer (no head- or tailroom).
    pub fn whole(buf: &'a mut [u8]) -> Frame<'a> {
        let end = buf.len();
        Frame { buf, start: 0, end }
    }

    /// Where the frame starts in the buffer.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Where the frame ends in the buffer (exclusive).
    pub fn end(&self) -> usize {
        self.end
    }

    /// The frame's length.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes free before the frame.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes free after the frame.
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// The frame's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.start..self.end).unwrap_or_default()
    }

    /// The frame's first `N` bytes, and the frame's length; `None` if it
    /// is shorter.
    #[inline(always)]
    pub(crate) fn head<const N: usize>(&self) -> Option<(&[u8; N], usize)> {
        let bytes = self.buf.get(self.start..self.end)?;
        Some((bytes.first_chunk::<N>()?, bytes.len()))
    }

    /// The frame's first `N` bytes and the rest of it, writable; `None`
    /// if it is shorter than `N`.
    #[inline(always)]
    pub(crate) fn head_mut<const N: usize>(&mut self) -> Option<(&mut [u8; N], &mut [u8])> {
        self.buf
            .get_mut(self.start..self.end)?
            .split_first_chunk_mut::<N>()
    }

    /// Set the frame's range; `false` (and no change) if it is not inside
    /// the buffer.
    pub fn set_range(&mut self, start: usize, end: usize) -> bool {
        if start <= end && end <= self.buf.len() {
            self.start = start;
            self.end = end;
            true
        } else {
            false
        }
    }

    /// Cut the frame to `len` bytes (drops Ethernet padding after the IP
    /// packet); no change if it is already shorter.
    #[inline]
    pub(crate) fn truncate(&mut self, len: usize) {
        // `start + len` cannot overflow when it is below `end`.
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ranges() {
        let mut buf = [0u8; 100];
        assert!(Frame::new(&mut buf, 10, 9).is_none());
        assert!(Frame::new(&mut buf, 0, 101).is_none());
        let mut f = Frame::new(&mut buf, 64, 90).unwrap();
        assert_eq!((f.len(), f.headroom(), f.tailroom()), (26, 64, 10));
        f.bytes_mut()[0] = 7;
        assert_eq!(f.bytes()[0], 7);
        f.truncate(20);
        assert_eq!(f.len(), 20);
        f.truncate(50);
        assert_eq!(f.len(), 20);
        assert!(!f.set_range(50, 101));
        assert!(f.set_range(0, 100));
        assert_eq!(f.len(), 100);
    }
}
