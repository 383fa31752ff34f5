//! A request's access-log record (the FAQ's sixteen fields, see
//! [`crate::access_log`]) from what the hooks saw.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use http::header::{HOST, REFERER, USER_AGENT};
use pingora::proxy::Session;

use crate::access_log::Record;

/// The times and backend status of one request, taken by the hooks.
#[derive(Debug)]
pub(super) struct Timing {
    /// When the request came (its head read).
    pub(super) received: SystemTime,
    pub(super) start: Instant,
    /// When the request was handed to the backend.
    pub(super) upstream_sent: Option<Instant>,
    /// When the backend's response ended.
    pub(super) upstream_done: Option<Instant>,
    /// The backend's status.
    pub(super) upstream_status: Option<u16>,
}

impl Timing {
    pub(super) fn new() -> Timing {
        Timing {
            received: SystemTime::now(),
            start: Instant::now(),
            upstream_sent: None,
            upstream_done: None,
            upstream_status: None,
        }
    }
}

/// A header's value as text (invalid UTF-8 replaced); `None` if absent.
fn header(session: &Session, name: http::header::HeaderName) -> Option<String> {
    session
        .req_header()
        .headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// What the request did, as one access-log record.
pub(super) struct Outcome {
    pub(super) listener: SocketAddr,
    pub(super) client: SocketAddr,
    pub(super) backend: Option<SocketAddr>,
    pub(super) status: u16,
    pub(super) request_length: u64,
    pub(super) body_bytes_sent: u64,
}

/// The record of a request that ended now.
pub(super) fn record(session: &Session, t: &Timing, o: Outcome) -> Record {
    let now = Instant::now();
    let req = session.req_header();
    let server = session
        .server_addr()
        .and_then(|a| a.as_inet())
        .copied()
        .unwrap_or(o.listener);
    let answered = t.upstream_status.is_some();
    let upstream_response_time = match (answered, t.upstream_sent) {
        (true, Some(sent)) => Some(
            t.upstream_done
                .unwrap_or(now)
                .saturating_duration_since(sent),
        ),
        _ => None,
    };
    Record {
        time: t.received,
        remote: o.client,
        server,
        upstream_addr: o.backend.filter(|_| t.upstream_sent.is_some()),
        request_time: now.saturating_duration_since(t.start),
        upstream_response_time,
        status: o.status,
        upstream_status: t.upstream_status,
        request_length: o.request_length,
        body_bytes_sent: o.body_bytes_sent,
        request_method: req.method.as_str().to_string(),
        http_host: header(session, HOST),
        request_uri: String::from_utf8_lossy(req.raw_path()).into_owned(),
        server_protocol: format!("{:?}", req.version),
        http_referer: header(session, REFERER),
        http_user_agent: header(session, USER_AGENT),
    }
}
