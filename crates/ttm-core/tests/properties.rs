//! Property tests: round trips for every family, port and kind, and no
//! panic (and no endless walk) on arbitrary bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use ttm_core::{Error, KindSet, PeerRecord, TcpOption, TcpOptions, TtmOption, find};

const RESERVED: [u8; 7] = [0, 1, 2, 3, 4, 5, 8];

fn client() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ];
    (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn ttm_kind() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("standard option kind", |k| !RESERVED.contains(k))
}

fn kind_set() -> impl Strategy<Value = KindSet> {
    proptest::collection::vec(ttm_kind(), 0..4).prop_map(|kinds| KindSet::new(&kinds).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn option_round_trip(kind in ttm_kind(), client in client(), slack in 0usize..24) {
        let option = TtmOption::new(kind, client);
        let mut buf = vec![0xa5u8; option.buffer_len() + slack];
        let rest = option.emit(&mut buf).unwrap().len();
        prop_assert_eq!(rest, slack);
        let len = option.buffer_len();
        prop_assert_eq!(len, if client.is_ipv4() { 8 } else { 20 });
        prop_assert_eq!(buf[1] as usize, len);
        let accept = KindSet::new(&[kind]).unwrap();
        prop_assert_eq!(TtmOption::decode(&buf[..len], &accept), Ok(option));
        prop_assert_eq!(find(&buf[..len], &accept), Ok(Some(option)));
    }

    #[test]
    fn record_round_trip(client in client()) {
        let record = PeerRecord::new(client);
        let bytes = record.to_bytes();
        prop_assert_eq!(PeerRecord::from_bytes(&bytes), Ok(record));
    }

    #[test]
    fn decode_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..32), accept in kind_set()) {
        if let Ok(option) = TtmOption::decode(&bytes, &accept) {
            prop_assert!(accept.contains(option.kind()));
            let mut out = [0u8; 20];
            let rest = option.emit(&mut out).unwrap().len();
            prop_assert_eq!(&out[..20 - rest], bytes.as_slice());
        }
        if let Ok(record) = PeerRecord::from_bytes(&bytes) {
            prop_assert_eq!(record.to_bytes().to_vec(), bytes);
        }
    }

    #[test]
    fn record_arbitrary_bytes(bytes in any::<[u8; 20]>()) {
        match PeerRecord::from_bytes(&bytes) {
            Ok(record) => prop_assert_eq!(record.to_bytes(), bytes),
            Err(Error::BadFamily { af }) => prop_assert!(af != 2 && af != 10),
            Err(Error::NonZeroPadding { offset }) => prop_assert!((8..20).contains(&offset) && bytes[offset] != 0),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn walk_arbitrary_bytes(area in proptest::collection::vec(any::<u8>(), 0..64), accept in kind_set()) {
        let mut walk = TcpOptions::new(&area);
        let mut steps = 0;
        let mut consumed = 0;
        let mut first_ttm = None;
        let mut failed = false;
        loop {
            let offset = walk.offset();
            let Some(item) = walk.next() else { break };
            steps += 1;
            prop_assert!(steps <= area.len() + 1, "walk did not end");
            prop_assert_eq!(offset, consumed);
            match item {
                Ok(option) => {
                    prop_assert_eq!(area[offset], option.kind());
                    consumed += option.buffer_len();
                    prop_assert!(consumed <= area.len());
                    if let TcpOption::Unknown { kind, data } = option
                        && first_ttm.is_none()
                        && accept.contains(kind)
                        && matches!(data.len(), 6 | 18)
                    {
                        first_ttm = Some(TtmOption::decode(&area[offset..consumed], &accept).unwrap());
                    }
                }
                Err(_) => {
                    failed = true;
                    prop_assert!(walk.next().is_none(), "the walk goes on after an error");
                }
            }
        }
        match find(&area, &accept) {
            Ok(found) => prop_assert_eq!(found, first_ttm),
            Err(_) => prop_assert!(failed && first_ttm.is_none()),
        }
    }
}
