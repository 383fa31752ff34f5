//! Session persistence by inserted cookie, for one version of a
//! listener's settings: which backend a request's cookie names, and the
//! cookie to give back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::COOKIE;
use pingora::http::RequestHeader;

use crate::config::{Backend, CookieConfig};
use crate::cookie::{self, Codec};

/// What a request's cookie says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// No cookie of ours.
    Missing,
    /// A valid cookie naming a backend of the listener.
    Backend(SocketAddr),
    /// Forged, malformed, expired, or naming no backend of the listener.
    Invalid,
}

/// A listener's cookie codec and the backends its tokens name.
#[derive(Debug)]
pub(crate) struct Persistence {
    pub(super) config: CookieConfig,
    codec: Codec,
    tokens: HashMap<u64, SocketAddr>,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Persistence {
    pub(crate) fn new(config: &CookieConfig, backends: &[Backend]) -> Persistence {
        let codec = Codec::new(config);
        let tokens = backends
            .iter()
            .map(|b| (codec.token(b.addr), b.addr))
            .collect();
        Persistence {
            config: config.clone(),
            codec,
            tokens,
        }
    }

    /// The backend the request's cookie names, if any.
    pub(super) fn lookup(&self, req: &RequestHeader) -> Lookup {
        let Some(value) = cookie::find(req.headers.get_all(COOKIE), &self.config.name) else {
            return Lookup::Missing;
        };
        match self.codec.decode(value, now_unix()) {
            Ok(token) => self
                .tokens
                .get(&token)
                .map_or(Lookup::Invalid, |&a| Lookup::Backend(a)),
            Err(_) => Lookup::Invalid,
        }
    }

    /// The `Set-Cookie` line that sends the client to `backend` for the
    /// configured lifetime from now.
    pub(super) fn set_cookie(&self, backend: SocketAddr, secure: bool) -> String {
        let value = self.codec.issue(backend, now_unix());
        cookie::set_cookie(&value, &self.config, secure)
    }
}
