//! The access log's line format: every record written reads back the same,
//! whatever its strings hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, UNIX_EPOCH};

use lb_l7::access_log::format::{FIELDS, write_line};
use lb_l7::access_log::{Record, parse_line};
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// Any text: quotes, backslashes, control bytes, DEL, `-`, UTF-8.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('-'),
                Just(' '),
                Just('x'),
                Just('\u{7f}'),
                Just('é'),
                Just('中'),
                Just('\u{1F600}'),
                (0u8..0x20).prop_map(char::from),
            ],
            0..12
        )
        .prop_map(|c| c.into_iter().collect()),
        Just("-".to_owned()),
        Just(String::new()),
    ]
}

fn millis() -> impl Strategy<Value = Duration> {
    (0u64..10_000_000_000).prop_map(Duration::from_millis)
}

prop_compose! {
    fn record()(
        time in 0u64..253_402_300_799_999,
        remote in addr(),
        server in addr(),
        upstream_addr in proptest::option::of(addr()),
        request_time in millis(),
        upstream_response_time in proptest::option::of(millis()),
        status in 100u16..1000,
        upstream_status in proptest::option::of(100u16..1000),
        request_length in any::<u64>(),
        body_bytes_sent in any::<u64>(),
        request_method in text(),
        http_host in proptest::option::of(text()),
        request_uri in text(),
        server_protocol in text(),
        http_referer in proptest::option::of(text()),
        http_user_agent in proptest::option::of(text()),
    ) -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_millis(time),
            remote,
            server,
            upstream_addr,
            request_time,
            upstream_response_time,
            status,
            upstream_status,
            request_length,
            body_bytes_sent,
            request_method,
            http_host,
            request_uri,
            server_protocol,
            http_referer,
            http_user_agent,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_record_reads_back(r in record()) {
        let mut line = String::new();
        write_line(&r, &mut line);
        prop_assert!(line.ends_with('\n'));
        prop_assert_eq!(line.matches('\n').count(), 1, "one line: {:?}", line);
        prop_assert!(!line.contains('\r'));
        prop_assert_eq!(parse_line(&line), Ok(r));
    }

    #[test]
    fn a_damaged_line_is_an_error_not_a_panic(r in record(), cut in any::<prop::sample::Index>()) {
        let mut line = String::new();
        write_line(&r, &mut line);
        let body = line.trim_end_matches('\n');
        let mut at = cut.index(body.len().max(1));
        while !body.is_char_boundary(at) {
            at -= 1;
        }
        // Any strict prefix of a line lacks at least its last field's end.
        prop_assert!(parse_line(&body[..at]).is_err());
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = parse_line(&s);
    }
}

#[test]
fn sixteen_fields_in_the_faqs_order() {
    assert_eq!(FIELDS.len(), 16);
    assert_eq!(FIELDS[0], "time_iso8601");
    assert_eq!(FIELDS[15], "http_user_agent");
    let r = Record {
        time: UNIX_EPOCH + Duration::from_millis(1_764_966_087_123),
        remote: "192.0.2.7:51234".parse().unwrap(),
        server: "10.77.0.10:443".parse().unwrap(),
        upstream_addr: Some("10.77.1.2:8080".parse().unwrap()),
        request_time: Duration::from_millis(12),
        upstream_response_time: Some(Duration::from_millis(10)),
        status: 200,
        upstream_status: Some(200),
        request_length: 431,
        body_bytes_sent: 5120,
        request_method: "GET".into(),
        http_host: Some("example.com".into()),
        request_uri: "/a?b=1".into(),
        server_protocol: "HTTP/1.1".into(),
        http_referer: None,
        http_user_agent: Some("curl/8.5.0".into()),
    };
    let mut line = String::new();
    write_line(&r, &mut line);
    // The example of the module's documentation.
    assert_eq!(
        line,
        "2025-12-05T20:21:27.123Z 192.0.2.7:51234 10.77.0.10:443 10.77.1.2:8080 0.012 0.010 \
         200 200 431 5120 \"GET\" \"example.com\" \"/a?b=1\" \"HTTP/1.1\" - \"curl/8.5.0\"\n"
    );
    assert_eq!(line.trim_end().split(' ').count(), 16);
}
