//! A NIC's RSS configuration, read through the kernel's ethtool ioctl
//! (`SIOCETHTOOL`), as `ethtool -x IF` and `ethtool -n IF rx-flow-hash
//! tcp4` show it: the hash function, the key and the indirection table
//! (`ETHTOOL_GRSSH`), and the fields hashed for TCP and UDP over IPv4 and
//! IPv6 (`ETHTOOL_GRXFH`). [`read`] turns them into the engine's
//! [`RssConfig`] when the NIC hashes as the engine can follow (Toeplitz,
//! no symmetric transform, addresses and ports of every flow type), and
//! says why not otherwise (veth answers neither request; virtio_net
//! reports no hashed fields; many NICs hash UDP by its addresses only):
//! the interface then runs in hand-off mode.
//!
//! The requests' results are native-endian C structures; their parsing
//! ([`parse_rxfh`], [`hash_fields`]) is separate from the system calls, so
//! that it is tested with static byte vectors.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use lb_engine::rss::{FlowFields, HashFields, RssConfig};

/// `ETHTOOL_GRSSH`: get the RSS hash function, key and indirection table.
const ETHTOOL_GRSSH: u32 = 0x46;
/// `ETHTOOL_GRXFH`: get the fields hashed for a flow type.
const ETHTOOL_GRXFH: u32 = 0x29;
/// `struct ethtool_rxfh` up to its flexible array: `cmd`, `rss_context`,
/// `indir_size`, `key_size` (each `u32`), `hfunc`, `input_xfrm`,
/// `rsvd8[2]`, `rsvd32`.
const RXFH_HEADER: usize = 24;
/// `ETH_RSS_HASH_TOP`: the Toeplitz hash function (a bit of `hfunc`).
pub const HASH_TOEPLITZ: u8 = 1 << 0;
/// Flow types of `ETHTOOL_GRXFH`.
const TCP_V4_FLOW: u32 = 0x01;
const UDP_V4_FLOW: u32 = 0x02;
const TCP_V6_FLOW: u32 = 0x05;
const UDP_V6_FLOW: u32 = 0x06;
/// Bits of `ethtool_rxnfc.data` for `ETHTOOL_GRXFH`.
const RXH_IP_SRC: u64 = 1 << 4;
const RXH_IP_DST: u64 = 1 << 5;
const RXH_L4_B_0_1: u64 = 1 << 6;
const RXH_L4_B_2_3: u64 = 1 << 7;
/// `struct ethtool_rxnfc`'s size (192 bytes on 64-bit Linux), as `u64`s.
const RXNFC_WORDS: usize = 24;

/// What `ETHTOOL_GRSSH` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rxfh {
    /// The hash function in use, as `ETH_RSS_HASH_*` bits (0: unknown).
    pub hfunc: u8,
    /// Transforms of the input (`RXH_XFRM_*`, 0 for none).
    pub input_xfrm: u8,
    /// The indirection table: a queue per entry.
    pub indirection: Vec<u32>,
    /// The key.
    pub key: Vec<u8>,
}

/// Why an interface's RSS cannot be followed (it then runs in hand-off
/// mode).
#[derive(Debug, thiserror::Error)]
pub enum NotRss {
    /// The kernel or the driver refused a request (veth: "operation not
    /// supported").
    #[error("{what}: {error}")]
    Unreadable {
        /// The request.
        what: &'static str,
        /// The kernel's answer.
        error: io::Error,
    },
    /// A result that is not what the request returns.
    #[error("{0}")]
    Malformed(&'static str),
    /// The hash is not Toeplitz, or its input is transformed.
    #[error(
        "hash function bits {hfunc:#x}, input transform {input_xfrm:#x}: only plain Toeplitz is followed"
    )]
    NotToeplitz {
        /// `ETH_RSS_HASH_*` bits.
        hfunc: u8,
        /// `RXH_XFRM_*` bits.
        input_xfrm: u8,
    },
    /// A flow type's hashed fields are neither the addresses nor the
    /// addresses and ports.
    #[error("{flow} hashes fields {data:#x}: addresses, or addresses and ports, are followed")]
    Fields {
        /// The flow type (`tcp4`, ...).
        flow: &'static str,
        /// `RXH_*` bits.
        data: u64,
    },
    /// A flow type's ports are not hashed: its replies reach one queue
    /// per pair of addresses, whatever the local port, so the engines of
    /// the other queues could not make sessions towards that server.
    #[error(
        "{0} hashes the addresses only (`ethtool -N IF rx-flow-hash {0} sdfn` would hash the ports too)"
    )]
    PortsNotHashed(&'static str),
    /// A queue number does not fit, or the engine refused the
    /// configuration.
    #[error("{0}")]
    Config(String),
}

/// A NIC's RSS configuration as the engines follow it.
#[derive(Debug)]
pub struct Nic {
    /// The configuration.
    pub config: RssConfig,
    /// A hash of the key, the indirection table and the fields hashed
    /// (FNV-1a, 64 bits): sessions saved under one configuration are
    /// restored only under the same (see [`crate::state`]).
    pub fingerprint: u64,
}

/// FNV-1a (64 bits) of `rxfh`'s key and table and of `fields`: stable
/// across builds, unlike the standard library's hasher.
pub fn fingerprint(rxfh: &Rxfh, fields: FlowFields) -> u64 {
    let field = |f: HashFields| u8::from(f == HashFields::AddressesAndPorts);
    let bytes = rxfh
        .key
        .iter()
        .copied()
        .chain(rxfh.indirection.iter().flat_map(|q| q.to_le_bytes()))
        .chain([fields.tcp4, fields.udp4, fields.tcp6, fields.udp6].map(field));
    bytes.fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The RSS configuration of interface `name`, whose queues `0..queues`
/// are served, or why it cannot be followed.
///
/// # Errors
/// See [`NotRss`].
pub fn read(name: &str, queues: u16) -> Result<Nic, NotRss> {
    let socket = Socket::new(name).map_err(|error| NotRss::Unreadable {
        what: "socket",
        error,
    })?;
    let rxfh = socket.rxfh()?;
    let mut fields = [HashFields::Addresses; 4];
    for (slot, (flow, name)) in fields.iter_mut().zip([
        (TCP_V4_FLOW, "tcp4"),
        (UDP_V4_FLOW, "udp4"),
        (TCP_V6_FLOW, "tcp6"),
        (UDP_V6_FLOW, "udp6"),
    ]) {
        let data = socket
            .rx_flow_hash(flow)
            .map_err(|error| NotRss::Unreadable {
                what: "ETHTOOL_GRXFH",
                error,
            })?;
        *slot = hash_fields(data).ok_or(NotRss::Fields { flow: name, data })?;
    }
    let [tcp4, udp4, tcp6, udp6] = fields;
    let fields = FlowFields {
        tcp4,
        udp4,
        tcp6,
        udp6,
    };
    Ok(Nic {
        config: rss_config(&rxfh, fields, queues)?,
        fingerprint: fingerprint(&rxfh, fields),
    })
}

/// The engine's configuration of a NIC that returned `rxfh` and hashes
/// `fields`, for queues `0..queues`.
///
/// # Errors
/// A hash other than plain Toeplitz, a flow type whose ports are not
/// hashed, or a table or key the engine refuses.
pub fn rss_config(rxfh: &Rxfh, fields: FlowFields, queues: u16) -> Result<RssConfig, NotRss> {
    if rxfh.hfunc != HASH_TOEPLITZ || rxfh.input_xfrm != 0 {
        return Err(NotRss::NotToeplitz {
            hfunc: rxfh.hfunc,
            input_xfrm: rxfh.input_xfrm,
        });
    }
    for (hashed, flow) in [
        (fields.tcp4, "tcp4"),
        (fields.udp4, "udp4"),
        (fields.tcp6, "tcp6"),
        (fields.udp6, "udp6"),
    ] {
        if hashed != HashFields::AddressesAndPorts {
            return Err(NotRss::PortsNotHashed(flow));
        }
    }
    let table = rxfh
        .indirection
        .iter()
        .map(|&q| u16::try_from(q))
        .collect::<Result<Vec<u16>, _>>()
        .map_err(|_| NotRss::Config("an indirection entry names a queue above 65535".into()))?;
    RssConfig::new(&rxfh.key, &table, fields, queues).map_err(|e| NotRss::Config(e.to_string()))
}

/// The fields of `ETHTOOL_GRXFH`'s `data`, if the engine can follow them:
/// the two addresses, or the two addresses and the two ports, and nothing
/// else (no VLAN, layer 2 address, protocol or discard bit).
pub fn hash_fields(data: u64) -> Option<HashFields> {
    const ADDRESSES: u64 = RXH_IP_SRC | RXH_IP_DST;
    const PORTS: u64 = ADDRESSES | RXH_L4_B_0_1 | RXH_L4_B_2_3;
    match data {
        ADDRESSES => Some(HashFields::Addresses),
        PORTS => Some(HashFields::AddressesAndPorts),
        _ => None,
    }
}

/// The native-endian `u32` at `at`.
fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// `ETHTOOL_GRSSH`'s result: the header's sizes, then `indir_size`
/// entries of 4 bytes and `key_size` bytes of key.
///
/// # Errors
/// A buffer shorter than its header says, or of another command.
pub fn parse_rxfh(buf: &[u8]) -> Result<Rxfh, NotRss> {
    let short = NotRss::Malformed("ETHTOOL_GRSSH: result shorter than its sizes");
    if u32_at(buf, 0) != Some(ETHTOOL_GRSSH) {
        return Err(NotRss::Malformed("ETHTOOL_GRSSH: another command's result"));
    }
    let (Some(indir_size), Some(key_size)) = (u32_at(buf, 8), u32_at(buf, 12)) else {
        return Err(short);
    };
    let (hfunc, input_xfrm) = match (buf.get(16), buf.get(17)) {
        (Some(&h), Some(&x)) => (h, x),
        _ => return Err(short),
    };
    let indir_end = (indir_size as usize)
        .checked_mul(4)
        .and_then(|n| n.checked_add(RXFH_HEADER))
        .ok_or(NotRss::Malformed("ETHTOOL_GRSSH: sizes overflow"))?;
    let indirection = buf
        .get(RXFH_HEADER..indir_end)
        .ok_or(NotRss::Malformed(
            "ETHTOOL_GRSSH: result shorter than its sizes",
        ))?
        .chunks_exact(4)
        .filter_map(|c| c.try_into().ok().map(u32::from_ne_bytes))
        .collect();
    let key = buf
        .get(indir_end..indir_end.saturating_add(key_size as usize))
        .ok_or(short)?
        .to_vec();
    Ok(Rxfh {
        hfunc,
        input_xfrm,
        indirection,
        key,
    })
}

/// An `AF_INET` datagram socket to send ethtool requests about one
/// interface on.
struct Socket {
    fd: OwnedFd,
    /// The interface's name, NUL-padded (`IFNAMSIZ`).
    name: [u8; 16],
}

/// `struct ifreq` with its `ifr_data` member: 40 bytes on 64-bit Linux.
#[repr(C)]
struct IfreqData {
    name: [u8; 16],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

impl Socket {
    fn new(name: &str) -> io::Result<Socket> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= 16 || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an interface name",
            ));
        }
        let mut padded = [0u8; 16];
        padded
            .iter_mut()
            .zip(bytes)
            .for_each(|(slot, &b)| *slot = b);
        // SAFETY: socket takes no pointer; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Socket { fd, name: padded })
    }

    /// `SIOCETHTOOL` with `data`, a buffer at least as large as the
    /// request's structure, which starts with the command.
    fn ethtool(&self, data: *mut libc::c_void) -> io::Result<()> {
        let mut request = IfreqData {
            name: self.name,
            data,
            _pad: [0; 16],
        };
        // SAFETY: `request` is a live `struct ifreq` whose `ifr_data`
        // points at a buffer that the callers size for the command they
        // put in it (the kernel writes no more than that structure and the
        // sizes the buffer's header announces); both outlive the call.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SIOCETHTOOL,
                (&raw mut request).cast::<libc::c_void>(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// `ETHTOOL_GRSSH`: first for the sizes, then for the table and key.
    fn rxfh(&self) -> Result<Rxfh, NotRss> {
        let unreadable = |error| NotRss::Unreadable {
            what: "ETHTOOL_GRSSH",
            error,
        };
        // In `u32`s, so that the structure is aligned.
        let mut header = [0u32; RXFH_HEADER / 4];
        header[0] = ETHTOOL_GRSSH;
        self.ethtool(header.as_mut_ptr().cast())
            .map_err(unreadable)?;
        let (indir_size, key_size) = (header[2] as usize, header[3] as usize);
        if indir_size > 1 << 16 || key_size > 1024 {
            return Err(NotRss::Malformed("ETHTOOL_GRSSH: sizes out of range"));
        }
        let words = RXFH_HEADER / 4 + indir_size + key_size.div_ceil(4);
        let mut buf = vec![0u32; words];
        buf[0] = ETHTOOL_GRSSH;
        buf[2] = header[2];
        buf[3] = header[3];
        self.ethtool(buf.as_mut_ptr().cast()).map_err(unreadable)?;
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        parse_rxfh(&bytes)
    }

    /// `ETHTOOL_GRXFH` for `flow`: its `data`, the `RXH_*` bits.
    fn rx_flow_hash(&self, flow: u32) -> io::Result<u64> {
        let mut rxnfc = [0u64; RXNFC_WORDS];
        // `cmd` and `flow_type`, the first two `u32`s.
        rxnfc[0] = u64::from_ne_bytes(
            [ETHTOOL_GRXFH.to_ne_bytes(), flow.to_ne_bytes()]
                .concat()
                .try_into()
                .unwrap_or([0; 8]),
        );
        self.ethtool(rxnfc.as_mut_ptr().cast())?;
        Ok(rxnfc[1])
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const KEY: [u8; 40] = lb_engine::rss::MICROSOFT_KEY;

    /// A `GRSSH` result as the kernel writes it (little-endian words, as
    /// on x86-64 and arm64): 4 entries `0 1 0 1`, the 40-byte key,
    /// Toeplitz.
    fn result(hfunc: u8, input_xfrm: u8) -> Vec<u8> {
        let mut b = vec![
            0x46, 0, 0, 0, // cmd
            0, 0, 0, 0, // rss_context
            4, 0, 0, 0, // indir_size
            40, 0, 0, 0, // key_size
            hfunc, input_xfrm, 0, 0, // hfunc, input_xfrm, rsvd8
            0, 0, 0, 0, // rsvd32
            0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, // indirection
        ];
        b.extend_from_slice(&KEY);
        b
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn rxfh_construct_and_deconstruct() {
        let r = parse_rxfh(&result(1, 0)).unwrap();
        assert_eq!(
            r,
            Rxfh {
                hfunc: HASH_TOEPLITZ,
                input_xfrm: 0,
                indirection: vec![0, 1, 0, 1],
                key: KEY.to_vec(),
            }
        );
        let c = rss_config(&r, FlowFields::ALL_PORTS, 2).unwrap();
        assert_eq!(c.indirection(), [0, 1, 0, 1]);
        assert_eq!(c.queues(), 2);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn rxfh_truncated_and_malformed() {
        let full = result(1, 0);
        for len in 0..full.len() {
            assert!(parse_rxfh(&full[..len]).is_err(), "{len}");
        }
        let mut other = full.clone();
        other[0] = 0x29;
        assert!(matches!(parse_rxfh(&other), Err(NotRss::Malformed(_))));
        let mut huge = full.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_rxfh(&huge).is_err());
        // XOR, CRC32 and symmetric Toeplitz are not followed.
        for (hfunc, xfrm) in [(2, 0), (4, 0), (0, 0), (1, 1), (3, 0)] {
            let r = parse_rxfh(&result(hfunc, xfrm)).unwrap();
            assert!(
                matches!(
                    rss_config(&r, FlowFields::ALL_PORTS, 2),
                    Err(NotRss::NotToeplitz { .. })
                ),
                "{hfunc} {xfrm}"
            );
        }
        // UDP over IPv4 hashed by its addresses only (many NICs' default).
        let udp_sd = FlowFields {
            udp4: HashFields::Addresses,
            ..FlowFields::ALL_PORTS
        };
        let r = parse_rxfh(&result(1, 0)).unwrap();
        assert!(matches!(
            rss_config(&r, udp_sd, 2),
            Err(NotRss::PortsNotHashed("udp4"))
        ));
        // A table naming a queue not served.
        let r = parse_rxfh(&result(1, 0)).unwrap();
        assert!(matches!(
            rss_config(&r, FlowFields::ALL_PORTS, 1),
            Err(NotRss::Config(_))
        ));
        // A short key.
        let mut short = result(1, 0);
        short[12] = 36;
        short.truncate(short.len() - 4);
        let r = parse_rxfh(&short).unwrap();
        assert!(matches!(
            rss_config(&r, FlowFields::ALL_PORTS, 2),
            Err(NotRss::Config(_))
        ));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn fingerprint_follows_key_table_and_fields() {
        let r = parse_rxfh(&result(1, 0)).unwrap();
        let f = FlowFields::ALL_PORTS;
        let base = fingerprint(&r, f);
        // FNV-1a of these exact bytes (checked by an independent
        // computation): the same in every build.
        assert_eq!(base, fingerprint(&r, f));
        assert_eq!(base, 0x7017_c306_751f_38d1, "{base:#x}");
        let mut key = r.clone();
        key.key[0] ^= 1;
        let mut table = r.clone();
        table.indirection.swap(0, 1);
        let udp = FlowFields {
            udp4: HashFields::Addresses,
            ..f
        };
        for other in [
            fingerprint(&key, f),
            fingerprint(&table, f),
            fingerprint(&r, udp),
        ] {
            assert_ne!(other, base);
        }
    }

    #[test]
    fn rx_flow_hash_fields() {
        // `ethtool -n IF rx-flow-hash tcp4`: "IP SA, IP DA, L4 bytes 0 & 1
        // [TCP/UDP src port], L4 bytes 2 & 3 [TCP/UDP dst port]" is 0xf0.
        assert_eq!(hash_fields(0xf0), Some(HashFields::AddressesAndPorts));
        assert_eq!(hash_fields(0x30), Some(HashFields::Addresses));
        // Source only, ports only, with VLAN, protocol or discard: no.
        for data in [0, 0x10, 0xc0, 0xf4, 0xf8, 0x38, 1 << 31] {
            assert_eq!(hash_fields(data), None, "{data:#x}");
        }
    }

    #[test]
    fn rxnfc_request_layout() {
        // `cmd` then `flow_type` in the first 8 bytes, `data` in the next.
        let w = u64::from_ne_bytes(
            [ETHTOOL_GRXFH.to_ne_bytes(), TCP_V6_FLOW.to_ne_bytes()]
                .concat()
                .try_into()
                .unwrap(),
        );
        let b = w.to_ne_bytes();
        assert_eq!(u32_at(&b, 0), Some(0x29));
        assert_eq!(u32_at(&b, 4), Some(5));
        assert_eq!(std::mem::size_of::<IfreqData>(), 40);
    }

    #[test]
    fn a_bad_name_is_refused() {
        assert!(read("", 1).is_err());
        assert!(read("a-name-far-too-long", 1).is_err());
        // Loopback answers neither request.
        assert!(matches!(read("lo", 1), Err(NotRss::Unreadable { .. })));
    }
}
