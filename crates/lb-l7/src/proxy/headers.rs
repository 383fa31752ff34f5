//! The header edits of a proxied request and response, made through
//! Pingora's header types (which keep the names' case): the forwarded
//! headers ([`crate::forwarded`]), the balancer's cookie taken out of
//! `Cookie` and given in `Set-Cookie` ([`crate::cookie`]).

use std::net::IpAddr;

use http::header::{COOKIE, SET_COOKIE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::Result;

use crate::config::L7Listener;
use crate::cookie;
use crate::forwarded::{self, Edit, Scheme};

/// Sets the forwarded headers of a request from `client` as the
/// listener says; true if the `X-Forwarded-For` that came in could not
/// be extended (and was replaced by the client's address).
pub(super) fn forward(req: &mut RequestHeader, client: IpAddr, cfg: &L7Listener) -> Result<bool> {
    let rewrite = forwarded::rewrite(
        &req.headers,
        client,
        Scheme::of(cfg),
        cfg.addr.port(),
        &cfg.forwarded,
    );
    for edit in rewrite.edits {
        match edit {
            Edit::Set(name, value) => req.insert_header(name, value)?,
            Edit::Remove(name) => {
                req.remove_header(&name);
            }
        }
    }
    Ok(rewrite.malformed_xff)
}

/// Takes every cookie called `name` out of the request's `Cookie` lines.
pub(super) fn strip_cookie(req: &mut RequestHeader, name: &str) -> Result<()> {
    if let Some(lines) = cookie::strip_all(req.headers.get_all(COOKIE), name) {
        req.remove_header(&COOKIE);
        for line in lines {
            req.append_header(COOKIE, line)?;
        }
    }
    Ok(())
}

/// Adds a `Set-Cookie` line (after any the backend sent).
pub(super) fn set_cookie(resp: &mut ResponseHeader, line: String) -> Result<()> {
    resp.append_header(SET_COOKIE, line).map(|_| ())
}
