//! The balancer's behaviour in Pingora's hooks, for one listener.
//!
//! - `request_filter`: the client connection's keep-alive idle timeout;
//!   for a WebSocket upgrade, no client-side read timeout (the backend's
//!   silence is what closes it).
//! - `upstream_peer`: the backend (persistence cookie first, when the
//!   listener has one, else the engine's scheduler over the pool); none
//!   eligible: 503. Connect timeout, and read timeout (the WebSocket idle
//!   timeout for an upgrade).
//! - `upstream_request_filter`: the forwarded headers; the balancer's
//!   cookie taken out of `Cookie`. `Host` is kept as the client sent it.
//! - `response_filter`: the persistence cookie set or refreshed.
//! - `fail_to_connect`, `fail_to_proxy`: a failed connect is 502, a
//!   backend that does not answer within the read timeout 504; no retry
//!   on another backend (health checks take a dead backend out).
//! - `logging`: the counters of [`crate::metrics`].
//!
//! The listener's settings are read once per request (one `ArcSwap` load),
//! so a reload never mixes two versions within a request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::{HttpPeer, Result};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};

use crate::config::{Forwarded, L7Listener, XffMode};
use crate::metrics::ListenerMetrics;
use crate::pool::{Lease, Pool};

/// One version of a listener's configuration, with its pool.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) cfg: L7Listener,
    pub(crate) pool: Pool,
}

/// What a listener's requests share for the listener's whole life.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Swapped whole by a reload.
    pub(crate) settings: ArcSwap<Settings>,
    pub(crate) metrics: ListenerMetrics,
}

/// The [`ProxyHttp`] of one listener.
pub(crate) struct Proxy {
    pub(crate) shared: Arc<Shared>,
}

/// What the hooks of one request decide.
pub(crate) struct Ctx {
    settings: Arc<Settings>,
    lease: Option<Lease>,
    upgrade: bool,
}

/// A duration in whole seconds for Pingora's keep-alive, rounded up, at
/// least 1 (Pingora reads 0 as "no timeout").
pub(crate) fn keepalive_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
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

/// The client's address as a standard socket address.
fn client_addr(session: &Session) -> Option<SocketAddr> {
    session.client_addr().and_then(|a| a.as_inet()).copied()
}

/// Sets `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto` and
/// `X-Forwarded-Port` as `cfg` says.
// Interim: replaced by `crate::forwarded` once it lands.
fn apply_forwarded(
    req: &mut RequestHeader,
    cfg: &Forwarded,
    client: Option<IpAddr>,
    https: bool,
    port: u16,
) -> Result<()> {
    let client = client.map(|c| c.to_string());
    match (cfg.xff, &client) {
        (XffMode::Append, Some(c)) => {
            let prior: Vec<&str> = req
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let value = if prior.is_empty() {
                c.clone()
            } else {
                format!("{}, {c}", prior.join(", "))
            };
            req.insert_header("x-forwarded-for", value)?;
        }
        (XffMode::Replace, Some(c)) => req.insert_header("x-forwarded-for", c.as_str())?,
        (XffMode::Append | XffMode::Replace, None) => {}
        (XffMode::Remove, _) => {
            req.remove_header("x-forwarded-for");
        }
    }
    if cfg.real_ip
        && let Some(c) = &client
    {
        req.insert_header("x-real-ip", c.as_str())?;
    }
    if cfg.proto {
        req.insert_header("x-forwarded-proto", if https { "https" } else { "http" })?;
    }
    if cfg.port {
        req.insert_header("x-forwarded-port", port.to_string())?;
    }
    Ok(())
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            settings: self.shared.settings.load_full(),
            lease: None,
            upgrade: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let t = &ctx.settings.cfg.timeouts;
        session.set_keepalive(Some(keepalive_secs(t.idle)));
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
        let Some(lease) = ctx.settings.pool.pick(client) else {
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
        peer.options.read_timeout = Some(if ctx.upgrade {
            t.websocket_idle
        } else {
            t.read
        });
        ctx.lease = Some(lease);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let cfg = &ctx.settings.cfg;
        apply_forwarded(
            upstream_request,
            &cfg.forwarded,
            client_addr(session).map(|c| c.ip()),
            cfg.tls.is_some(),
            cfg.addr.port(),
        )
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
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

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = status_for(e);
        if code > 0 && session.response_written().is_none() {
            // The client may be gone already; nothing else to do then.
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let m = &self.shared.metrics;
        let read = u64::try_from(session.body_bytes_read()).unwrap_or(u64::MAX);
        let sent = u64::try_from(session.body_bytes_sent()).unwrap_or(u64::MAX);
        m.received_bytes.fetch_add(read, Ordering::Relaxed);
        m.sent_bytes.fetch_add(sent, Ordering::Relaxed);
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
