//! What an L7 listener is configured with: plain, validated values.
//!
//! `lbd`'s configuration file is parsed (with line and column for every
//! error) by `lb-xdp`'s `config` module, which builds these. Nothing here
//! reads a file: certificates are loaded by [`crate::tls`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lb_engine::SchedulerKind;

/// An HTTP or HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L7Listener {
    /// Unique among all listeners (the metrics' `listener` label).
    pub name: String,
    /// The VIP and port the host's TCP stack accepts on.
    pub addr: SocketAddr,
    /// The backends, in file order; each starts up.
    pub backends: Vec<Backend>,
    /// How a request without a valid persistence cookie chooses its
    /// backend (the engine's schedulers).
    pub scheduler: SchedulerKind,
    /// The headers that tell the backend who the client is.
    pub forwarded: Forwarded,
    /// Session persistence by inserted cookie; `None`: off.
    pub cookie: Option<CookieConfig>,
    /// `Some` for HTTPS (certificates), `None` for HTTP.
    pub tls: Option<TlsConfig>,
    /// Client and backend timeouts.
    pub timeouts: HttpTimeouts,
    /// Whether requests are written to the access log (see
    /// [`AccessLogConfig`], one for the whole process).
    pub access_log: bool,
}

impl L7Listener {
    /// `"https"` when the listener has TLS, else `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// A backend (real server) of an L7 listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Where requests are sent (plain HTTP/1.1).
    pub addr: SocketAddr,
    /// 0..=65535; 0 drains: no new clients (a client whose persistence
    /// cookie names the backend still reaches it while it is up).
    pub weight: u16,
}

/// The `X-Forwarded-*` and `X-Real-IP` request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// What happens to `X-Forwarded-For`.
    pub xff: XffMode,
    /// Set `X-Real-IP` to the client's address (replacing any sent).
    pub real_ip: bool,
    /// Set `X-Forwarded-Proto` to `http` or `https` (replacing any sent).
    pub proto: bool,
    /// Set `X-Forwarded-Port` to the listener's port (replacing any sent).
    pub port: bool,
}

impl Default for Forwarded {
    fn default() -> Self {
        Forwarded {
            xff: XffMode::Append,
            real_ip: true,
            proto: true,
            port: true,
        }
    }
}

/// What happens to the `X-Forwarded-For` a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XffMode {
    /// The client's address appended to the list that came in (nginx's
    /// `$proxy_add_x_forwarded_for`).
    #[default]
    Append,
    /// Whatever came in is dropped; the header is the client's address.
    Replace,
    /// Whatever came in is dropped; no header is sent.
    Remove,
}

/// Session persistence by a cookie the balancer inserts (FAQ Q7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// The cookie's name.
    pub name: String,
    /// The key that signs the cookie's value (at least 16 bytes), so that
    /// a client can neither choose nor forge a backend.
    pub secret: Vec<u8>,
    /// The cookie's lifetime (`Max-Age`, and the expiry signed in it).
    pub max_age: Duration,
    /// The cookie's `SameSite` attribute.
    pub same_site: SameSite,
}

/// A cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// `SameSite=Lax`.
    #[default]
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (browsers require `Secure` with it: HTTPS only).
    None,
}

/// An HTTPS listener's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Server certificates, chosen by SNI among the names each covers;
    /// the first is the default (no SNI, or a name none covers).
    pub certificates: Vec<CertificateFiles>,
    /// CA certificates (PEM) that client certificates must chain to; when
    /// set, a client without a valid certificate is refused.
    pub client_ca: Option<PathBuf>,
}

/// A server certificate and its private key, each a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The unencrypted private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Client-side and backend-side timeouts of an L7 listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// A keep-alive client connection idle this long between requests is
    /// closed (FAQ: 300 s).
    pub idle: Duration,
    /// Connecting to a backend; past it the client gets 502.
    pub connect: Duration,
    /// Waiting for the backend's response (and between its reads), and
    /// for the backend to take more of a request body; past it the client
    /// gets 504.
    pub read: Duration,
    /// A WebSocket on which no message goes between the client and the
    /// backend, in either direction, this long is closed (FAQ Q17: 60 s);
    /// traffic either way keeps it open.
    pub websocket_idle: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            idle: Duration::from_secs(300),
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            websocket_idle: Duration::from_secs(60),
        }
    }
}

/// The access log (FAQ's access-log section): one for the process, fed by
/// every listener with `access_log = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Where the files are written: `dir/YYYYMMDD/` a folder per day.
    pub dir: PathBuf,
    /// Lines waiting to be written; more are counted as lost.
    pub queue: usize,
    /// How long a file is written before the next one starts: an hour,
    /// shorter only for tests.
    pub period: Duration,
    /// Where each finished file is uploaded, if anywhere.
    pub upload: Option<S3Config>,
}

/// An S3-compatible object store. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Prepended to every object's name (e.g. `"lbd/"`).
    pub prefix: String,
    /// The endpoint URL, e.g. `http://10.77.0.9:9000`; `None`: AWS.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when not given).
    pub region: String,
}
