//! The balancer's behaviour in Pingora's hooks, for one listener.
//!
//! - `request_filter`: the client connection's keep-alive idle timeout,
//!   when the connection is kept alive at all (Pingora has turned it off
//!   for `Connection: close`, and for HTTP/1.0 without
//!   `Connection: keep-alive`); for a WebSocket upgrade, no client-side
//!   read timeout (the backend-side timeouts close it).
//! - `upstream_peer`: the backend. With a persistence cookie configured, a
//!   valid cookie naming a backend that is up picks it, also when the
//!   backend is drained by weight 0 (which turns away new clients only,
//!   as the engine and HAProxy do); a missing one, a bad, expired or
//!   foreign one, or one naming a backend down or gone falls back to the
//!   engine's scheduler over the pool. None eligible: 503. Connect timeout; read and
//!   write timeouts both the read timeout (the WebSocket idle timeout for
//!   an upgrade). The write timeout ends an upload to a backend that stops
//!   reading: Pingora reads the backend only while the body write is not
//!   blocked, so the read timeout alone would never fire.
//! - `upstream_request_filter`: the forwarded headers; the balancer's
//!   cookie taken out of `Cookie`. `Host` is kept as the client sent it.
//! - A WebSocket is closed when no message goes between the client and
//!   the backend, in either direction, for `websocket_idle` (FAQ Q17):
//!   Pingora's read timeout on the backend, set to `websocket_idle`,
//!   restarts with every message either way once the connection is
//!   upgraded, so traffic in one direction alone keeps it open.
//! - `connected_to_upstream`: the request counted as sent to its backend
//!   (on a new or a reused connection); a new connection counted.
//! - `response_filter`: the persistence cookie set or refreshed on every
//!   response from a backend (`Secure` on HTTPS); not on the balancer's
//!   own error responses.
//! - `fail_to_connect`, `fail_to_proxy`: a failed connect is 502, a
//!   backend that does not answer (or take the request's body) within the
//!   read timeout 504; no retry
//!   on another backend (health checks take a dead backend out).
//! - `logging`: the counters of [`crate::metrics`]; the access-log record
//!   (`access.rs`) when the listener has `access_log = true`. A request
//!   whose client left before any response is logged with status 499, as
//!   nginx does.
//!
//! The listener's settings are read once per request (one `ArcSwap` load),
//! so a reload never mixes two versions within a request.

mod access;
mod headers;
mod persist;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use lb_engine::SchedError;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, Result};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};

use crate::access_log::AccessLog;
use crate::config::L7Listener;
use crate::metrics::ListenerMetrics;
use crate::pool::{Lease, Pool};
use crate::tls::Tls;
use access::{Outcome, Timing};
use persist::{Lookup, Persistence};

/// One version of a listener's configuration, with its pool.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) cfg: L7Listener,
    pub(crate) pool: Pool,
    /// `Some` when the listener inserts a persistence cookie.
    persistence: Option<Persistence>,
}

impl Settings {
    /// The settings of `cfg`; backends at an address of `previous` keep
    /// their state.
    /// Clients are hashed under `seed` (see [`Pool::new`]).
    pub(crate) fn new(
        cfg: L7Listener,
        previous: Option<&Pool>,
        seed: u64,
    ) -> Result<Settings, SchedError> {
        let pool = Pool::new(&cfg.scheduler, &cfg.backends, previous, seed)?;
        let persistence = cfg
            .cookie
            .as_ref()
            .map(|c| Persistence::new(c, &cfg.backends));
        Ok(Settings {
            cfg,
            pool,
            persistence,
        })
    }
}

/// What a listener's requests share for the listener's whole life.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Swapped whole by a reload.
    pub(crate) settings: ArcSwap<Settings>,
    pub(crate) metrics: ListenerMetrics,
    /// The certificates of an HTTPS listener (reloaded in place).
    pub(crate) tls: Option<Tls>,
}

/// The [`ProxyHttp`] of one listener.
pub(crate) struct Proxy {
    pub(crate) shared: Arc<Shared>,
    /// Where the requests of a listener with `access_log = true` go.
    pub(crate) access_log: Option<AccessLog>,
}

/// What the hooks of one request decide.
pub(crate) struct Ctx {
    settings: Arc<Settings>,
    lease: Option<Lease>,
    upgrade: bool,
    /// For the access log.
    timing: Timing,
    /// The status of the balancer's own error response.
    fail_status: Option<u16>,
}

/// The status logged for a request whose client left before any response
/// (nginx's "client closed request").
const CLIENT_CLOSED: u16 = 499;

/// A duration in whole seconds for Pingora's keep-alive, rounded up, at
/// least 1 (Pingora reads 0 as "no timeout").
pub(crate) fn keepalive_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

/// The status sent to the client when the request fails with `e`, 0 when
/// the client is gone.
fn status_for(e: &Error) -> u16 {
    match (e.esource(), e.etype()) {
        (_, ErrorType::HTTPStatus(code)) => *code,
        (ErrorSource::Upstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => 504,
        (ErrorSource::Upstream, _) => 502,
        (
            ErrorSource::Downstream,
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
        ) => 0,
        (ErrorSource::Downstream, _) => 400,
        (ErrorSource::Internal | ErrorSource::Unset, _) => 500,
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The length of a response head in HTTP/1.1: status line, header lines,
/// blank line.
fn head_len(resp: &ResponseHeader) -> usize {
    let reason = resp
        .get_reason_phrase()
        .or(resp.status.canonical_reason())
        .unwrap_or("");
    // "HTTP/1.1 200 " + reason + CRLF, and the final CRLF.
    let fixed = 13 + reason.len() + 2 + 2;
    resp.headers.iter().fold(fixed, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

/// The client's address as a standard socket address.
fn client_addr(session: &Session) -> Option<SocketAddr> {
    session.client_addr().and_then(|a| a.as_inet()).copied()
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            settings: self.shared.settings.load_full(),
            lease: None,
            upgrade: false,
            timing: Timing::new(),
            fail_status: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let t = &ctx.settings.cfg.timeouts;
        // Pingora has read the request's wish: `None` is a connection to
        // close after this response, which must stay so.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(keepalive_secs(t.idle)));
        }
        ctx.upgrade = session.is_upgrade_req();
        if ctx.upgrade {
            session.set_read_timeout(None);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // A retry gives back the previous choice first.
        ctx.lease = None;
        let client = client_addr(session);
        let m = &self.shared.metrics;
        let settings = &ctx.settings;
        let by_cookie = settings.persistence.as_ref().and_then(|p| {
            let (counter, lease) = match p.lookup(session.req_header()) {
                Lookup::Missing => (&m.cookie_misses, None),
                Lookup::Invalid => (&m.cookie_invalid, None),
                Lookup::Backend(addr) => match settings.pool.pick_addr(addr) {
                    Some(lease) => (&m.cookie_hits, Some(lease)),
                    // Down, drained, or no longer eligible: a new backend
                    // and a new cookie.
                    None => (&m.cookie_invalid, None),
                },
            };
            counter.fetch_add(1, Ordering::Relaxed);
            lease
        });
        let Some(lease) = by_cookie.or_else(|| settings.pool.pick(client)) else {
            self.shared
                .metrics
                .no_backend
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no backend is eligible",
            ));
        };
        let t = &ctx.settings.cfg.timeouts;
        let mut peer = HttpPeer::new(lease.backend().addr, false, String::new());
        peer.options.connection_timeout = Some(t.connect);
        let wait = if ctx.upgrade {
            t.websocket_idle
        } else {
            t.read
        };
        peer.options.read_timeout = Some(wait);
        peer.options.write_timeout = Some(wait);
        ctx.lease = Some(lease);
        // The connect attempt starts now (`upstream_response_time`).
        ctx.timing.upstream_start = Some(Instant::now());
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let settings = &ctx.settings;
        if let Some(client) = client_addr(session)
            && headers::forward(upstream_request, client.ip(), &settings.cfg)?
        {
            self.shared
                .metrics
                .xff_malformed
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(p) = &settings.persistence {
            headers::strip_cookie(upstream_request, &p.config.name)?;
        }
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(lease) = &ctx.lease {
            let m = &lease.backend().metrics;
            // The request is about to be sent to the backend.
            m.requests.fetch_add(1, Ordering::Relaxed);
            if !reused {
                m.connections.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.timing.upstream_status = Some(upstream_response.status.as_u16());
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            ctx.timing.upstream_done = Some(Instant::now());
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Given (or refreshed) on every response from a backend.
        if let (Some(p), Some(lease)) = (&ctx.settings.persistence, &ctx.lease) {
            let secure = ctx.settings.cfg.tls.is_some();
            headers::set_cookie(
                upstream_response,
                p.set_cookie(lease.backend().addr, secure),
            )?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.timing.upstream_done = Some(Instant::now());
        if let Some(lease) = &ctx.lease {
            let m = &lease.backend().metrics;
            m.connect_failures.fetch_add(1, Ordering::Relaxed);
            if matches!(e.etype(), ErrorType::ConnectTimedout) {
                m.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
        e.set_retry(false);
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if ctx.timing.upstream_start.is_some() && ctx.timing.upstream_done.is_none() {
            ctx.timing.upstream_done = Some(Instant::now());
        }
        let code = status_for(e);
        if code > 0 && session.response_written().is_none() {
            // The client may be gone already; nothing else to do then.
            let _ = session.respond_error(code).await;
            ctx.fail_status = Some(code);
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let m = &self.shared.metrics;
        let head_in = session
            .as_http1()
            .map_or(0, |h| h.get_headers_raw_bytes().len());
        let head_out = session.response_written().map_or(0, head_len);
        let read = to_u64(head_in.saturating_add(session.body_bytes_read()));
        let sent = to_u64(head_out.saturating_add(session.body_bytes_sent()));
        m.received_bytes.fetch_add(read, Ordering::Relaxed);
        m.sent_bytes.fetch_add(sent, Ordering::Relaxed);
        if let Some(lease) = &ctx.lease {
            let b = &lease.backend().metrics;
            b.received_bytes.fetch_add(read, Ordering::Relaxed);
            b.sent_bytes.fetch_add(sent, Ordering::Relaxed);
            if let Some(status) = ctx.timing.upstream_status {
                b.count_response(status);
            }
        }
        let cfg = &ctx.settings.cfg;
        if let (true, Some(log), Some(client)) =
            (cfg.access_log, &self.access_log, client_addr(session))
        {
            // The client's address is known for every TCP connection.
            let status = session
                .response_written()
                .map(|r| r.status.as_u16())
                .or(ctx.fail_status)
                .unwrap_or(CLIENT_CLOSED);
            // What the backend did: its status, or the balancer's
            // verdict on its failure (502 connect, 504 timeout).
            let upstream_status = ctx.timing.upstream_status.or_else(|| {
                e.filter(|e| matches!(e.esource(), ErrorSource::Upstream))
                    .filter(|_| ctx.lease.is_some())
                    .map(status_for)
            });
            let outcome = Outcome {
                listener: cfg.addr,
                client,
                backend: ctx.lease.as_ref().map(|l| l.backend().addr),
                upstream_status,
                status,
                request_length: read,
                body_bytes_sent: to_u64(session.body_bytes_sent()),
            };
            log.log(cfg.addr, access::record(session, &ctx.timing, outcome));
        }
        // Last, so that a reader who sees the request counted sees its bytes.
        if let Some(resp) = session.response_written() {
            m.count_status(resp.status.as_u16());
        }
        if let (Some(e), Some(lease)) = (e, &ctx.lease)
            && matches!(e.esource(), ErrorSource::Upstream)
            && matches!(
                e.etype(),
                ErrorType::ReadTimedout | ErrorType::WriteTimedout
            )
        {
            let m = &lease.backend().metrics;
            m.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        ctx.lease = None;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn keepalive_rounds_up_to_whole_seconds() {
        assert_eq!(keepalive_secs(Duration::from_millis(1)), 1);
        assert_eq!(keepalive_secs(Duration::ZERO), 1);
        assert_eq!(keepalive_secs(Duration::from_millis(1500)), 2);
        assert_eq!(keepalive_secs(Duration::from_secs(300)), 300);
        assert_eq!(keepalive_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn response_head_length() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("Content-Length", "5").unwrap();
        resp.insert_header("X-A", "b").unwrap();
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        resp.header_to_h1_wire(&mut wire);
        wire.extend_from_slice(b"\r\n");
        assert_eq!(head_len(&resp), wire.len());
    }

    #[test]
    fn errors_map_to_statuses() {
        let up = |t| {
            let mut e = Error::new(t);
            e.as_up();
            e
        };
        let down = |t| {
            let mut e = Error::new(t);
            e.as_down();
            e
        };
        assert_eq!(status_for(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(status_for(&up(ErrorType::ConnectTimedout)), 502);
        assert_eq!(status_for(&up(ErrorType::ConnectRefused)), 502);
        assert_eq!(status_for(&up(ErrorType::ConnectionClosed)), 502);
        assert_eq!(status_for(&Error::new(ErrorType::HTTPStatus(503))), 503);
        assert_eq!(status_for(&down(ErrorType::ConnectionClosed)), 0);
        assert_eq!(status_for(&down(ErrorType::InvalidHTTPHeader)), 400);
        assert_eq!(status_for(&Error::new(ErrorType::InternalError)), 500);
    }
}
