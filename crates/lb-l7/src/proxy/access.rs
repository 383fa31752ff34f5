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
    /// When the request's head had been read (Pingora gives no earlier
    /// time of the request's first byte).
    pub(super) start: Instant,
    /// When the connect attempt to the backend started.
    pub(super) upstream_start: Option<Instant>,
    /// When the backend's response ended, or the backend failed.
    pub(super) upstream_done: Option<Instant>,
    /// The backend's status.
    pub(super) upstream_status: Option<u16>,
}

impl Timing {
    pub(super) fn new() -> Timing {
        Timing {
            start: Instant::now(),
            upstream_start: None,
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
    /// The backend chosen, if one was.
    pub(super) backend: Option<SocketAddr>,
    /// The backend's status, or 502 or 504 for its failure.
    pub(super) upstream_status: Option<u16>,
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
    let upstream_response_time = t.upstream_start.map(|start| {
        t.upstream_done
            .unwrap_or(now)
            .saturating_duration_since(start)
    });
    Record {
        // As nginx's `$time_iso8601`: when the line is logged.
        time: SystemTime::now(),
        remote: o.client,
        server,
        upstream_addr: o.backend,
        request_time: now.saturating_duration_since(t.start),
        upstream_response_time,
        status: o.status,
        upstream_status: o.upstream_status,
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
