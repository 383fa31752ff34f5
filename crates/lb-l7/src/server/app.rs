//! One client connection, from accept to close: for HTTPS the TLS
//! handshake, then Pingora's HTTP/1.1 proxy with the listener's keep-alive
//! idle timeout; counted all along.
//!
//! Pingora's listener would do the TLS handshake itself, but it only logs
//! a failure; here it is done (with Pingora's acceptor, from
//! [`crate::tls::Tls::settings`]) where failures can be counted. A client
//! has the listener's idle timeout to complete it.
//!
//! Pingora's own connection loop gives a new connection 60 s to send its
//! first request; here the listener's idle timeout applies from the start,
//! and between requests (set again by the proxy on every request).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::ALPN;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use super::AcceptorSlot;
use crate::proxy::{Proxy, Shared};

/// The application of one listener's Pingora service.
pub(crate) struct App {
    pub(crate) proxy: Arc<HttpProxy<Proxy>>,
    pub(crate) shared: Arc<Shared>,
    /// `Some` on an HTTPS listener: the acceptor of the listener's
    /// current certificates (replaced when they change).
    pub(crate) tls: Option<AcceptorSlot>,
}

/// Holds a connection in the active gauge until dropped (also when the
/// runtime drops the task at shutdown).
struct Active<'a>(&'a Shared);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl App {
    /// The TLS handshake of a new HTTPS connection, counted; `None` if it
    /// failed or timed out.
    async fn handshake(&self, acceptor: &Acceptor, stream: Stream) -> Option<Stream> {
        let m = &self.shared.metrics;
        // Pingora's listener hands over its TCP stream type, boxed.
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            m.tls_failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let idle = self.shared.settings.load().cfg.timeouts.idle;
        match tokio::time::timeout(idle, acceptor.tls_handshake(*l4)).await {
            Ok(Ok(tls)) => {
                m.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                Some(Box::new(tls))
            }
            Ok(Err(_)) | Err(_) => {
                m.tls_failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    async fn serve_http1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let mut session = ServerSession::new_http1(stream);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            let idle = self.shared.settings.load().cfg.timeouts.idle;
            session.set_keepalive(Some(crate::proxy::keepalive_secs(idle)));
        }
        let mut next = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = next.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            next = self.proxy.process_new_http(session, shutdown).await;
        }
    }
}

#[async_trait]
impl ServerApp for App {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = match &self.tls {
            Some(slot) => {
                // This connection keeps the acceptor it started with.
                let acceptor = slot.load_full();
                self.handshake(&acceptor, stream).await?
            }
            None => stream,
        };
        let m = &self.shared.metrics;
        m.connections.fetch_add(1, Ordering::Relaxed);
        m.connections_active.fetch_add(1, Ordering::Relaxed);
        let _active = Active(&self.shared);
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // Only if a TLS configuration offers h2: Pingora's own loop.
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        self.serve_http1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        // Wakes keep-alive connections waiting for a request, so that they
        // close at shutdown.
        self.proxy.http_cleanup().await;
    }
}
