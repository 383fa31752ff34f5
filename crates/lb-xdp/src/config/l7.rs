//! The layer-7 part of the configuration file: `protocol = "http"` and
//! `"https"` listeners with their `[listener.http]`, `[listener.cookie]`
//! and `[listener.tls]` tables, and the process-wide `[l7]` and
//! `[access_log]` sections. They become `lb_l7`'s configuration values
//! ([`L7Listener`], [`AccessLogConfig`]); every error is reported, like the
//! rest of the file's, at its line and column.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lb_l7::config::{
    AccessLogConfig, Backend, CertificateFiles, CookieConfig, Forwarded, HttpTimeouts, L7Listener,
    S3Config, SameSite, TlsConfig, XffMode,
};
use lb_l7::tls::TlsError;
use serde::Deserialize;
use toml::Spanned;

use super::{
    HealthCheck, ListenerDoc, ProtocolDoc, Report, Span, TIMEOUT_BOUNDS, TIMEOUT_RANGE, bounded,
    duration, health, parse_at, scheduler,
};

/// An HTTP or HTTPS listener: what `lb_l7` serves, and the health check
/// `lbd` runs on its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L7ListenerCfg {
    /// The listener as `lb_l7` takes it.
    pub listener: L7Listener,
    /// The health check every backend gets, if any (its results reach
    /// the listener through `L7::set_up`).
    pub health: Option<HealthCheck>,
}

// ----- the file as serde reads it ------------------------------------------

/// `[listener.http]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpDoc {
    x_forwarded_for: Option<XffDoc>,
    x_real_ip: Option<bool>,
    x_forwarded_proto: Option<bool>,
    x_forwarded_port: Option<bool>,
    idle_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    read_timeout: Option<Spanned<String>>,
    websocket_idle_timeout: Option<Spanned<String>>,
    access_log: Option<Spanned<bool>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum XffDoc {
    Append,
    Replace,
    Remove,
}

/// `[listener.cookie]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CookieDoc {
    name: Option<Spanned<String>>,
    secret: Spanned<String>,
    max_age: Option<Spanned<String>>,
    same_site: Option<Spanned<SameSiteDoc>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum SameSiteDoc {
    Lax,
    Strict,
    None,
}

/// `[listener.tls]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsDoc {
    certificates: Spanned<Vec<Spanned<CertDoc>>>,
    client_ca: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertDoc {
    cert: Spanned<String>,
    key: Spanned<String>,
}

/// `[l7]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct L7Doc {
    threads: Option<Spanned<usize>>,
}

/// `[access_log]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessLogDoc {
    dir: Spanned<String>,
    queue: Option<Spanned<usize>>,
    period: Option<Spanned<String>>,
    s3: Option<Spanned<S3Doc>>,
}

/// `[access_log.s3]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Doc {
    bucket: Spanned<String>,
    prefix: Option<String>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
}

// ----- values --------------------------------------------------------------

/// Where an L7 listener's values are written, for the checks that look
/// at several listeners at once.
pub(super) struct L7Spans {
    pub(super) vip: Span,
}

/// The most Pingora worker threads.
const MAX_THREADS: usize = 256;
/// The shortest cookie secret: 128 bits.
const MIN_SECRET: usize = 16;
/// The longest cookie lifetime (a day, as the FAQ's balancer allows).
const MAX_COOKIE_AGE: Duration = Duration::from_secs(86_400);
/// The most access-log lines waiting to be written (the access log's own
/// bound: its queue is allocated up front).
const MAX_QUEUE: usize = lb_l7::access_log::MAX_QUEUE;
/// The most HTTP and HTTPS listeners: the entries of the XDP program's
/// `lbd_l7` map (`MAX_L7` in `bpf/lbd.bpf.c`).
const MAX_L7_LISTENERS: usize = 1024;
/// The access log's file period: an hour at most, a second at least
/// (shorter than an hour only for tests).
const PERIOD_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// `[l7] threads`: 1 unless given.
pub(super) fn threads(r: &mut Report<'_>, doc: Option<&L7Doc>) -> usize {
    bounded(
        r,
        doc.and_then(|d| d.threads.as_ref()),
        1,
        (1, MAX_THREADS),
        "threads",
    )
}

/// `path` taken from `dir` when it is relative and a directory is known.
fn resolve(dir: Option<&Path>, path: &str) -> PathBuf {
    match dir {
        Some(dir) if Path::new(path).is_relative() => dir.join(path),
        _ => PathBuf::from(path),
    }
}

/// `[access_log]`, if present.
pub(super) fn access_log(
    r: &mut Report<'_>,
    doc: Option<&Spanned<AccessLogDoc>>,
    dir: Option<&Path>,
) -> Option<AccessLogConfig> {
    let d = doc?.get_ref();
    if d.dir.get_ref().is_empty() {
        r.at(&d.dir.span(), "dir must name a directory");
    }
    let period = duration(
        r,
        d.period.as_ref(),
        Duration::from_secs(3600),
        PERIOD_RANGE,
        "period must be at least \"1s\" and at most \"1h\" (an hour: shorter only for tests)",
    )
    .unwrap_or(Duration::from_secs(3600));
    let upload = d.s3.as_ref().map(|s| {
        let s = s.get_ref();
        if s.bucket.get_ref().is_empty() {
            r.at(&s.bucket.span(), "bucket must not be empty");
        }
        if let Some(e) = &s.endpoint
            && !(e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://"))
        {
            r.at(
                &e.span(),
                format!(
                    "`{}` is not an endpoint URL: it starts with http:// or https://",
                    e.get_ref()
                ),
            );
        }
        if let Some(region) = s.region.as_ref().filter(|g| g.get_ref().is_empty()) {
            r.at(&region.span(), "region must not be empty");
        }
        S3Config {
            bucket: s.bucket.get_ref().clone(),
            prefix: s.prefix.clone().unwrap_or_default(),
            endpoint: s.endpoint.as_ref().map(|e| e.get_ref().clone()),
            region: s
                .region
                .as_ref()
                .map_or_else(|| "us-east-1".to_owned(), |g| g.get_ref().clone()),
        }
    });
    Some(AccessLogConfig {
        dir: resolve(dir, d.dir.get_ref()),
        queue: bounded(r, d.queue.as_ref(), 65536, (1, MAX_QUEUE), "queue"),
        period,
        upload,
    })
}

/// The keys of a TCP or UDP listener that an L7 listener refuses, each
/// with why.
fn l4_only_keys(d: &ListenerDoc) -> [(Option<Span>, &'static str); 6] {
    [
        (
            d.local.as_ref().map(Spanned::span),
            "`local` is for TCP and UDP listeners only: an HTTP or HTTPS listener's \
             backend connections leave from the host's own address",
        ),
        (
            d.ttm.as_ref().map(Spanned::span),
            "`ttm` is for TCP listeners only: an HTTP or HTTPS listener tells the \
             backend the client's address in X-Forwarded-For ([listener.http])",
        ),
        (
            d.timeouts.as_ref().map(Spanned::span),
            "`timeouts` is for TCP and UDP listeners only: an HTTP or HTTPS listener's \
             are in [listener.http]",
        ),
        (
            d.verify_checksums.as_ref().map(Spanned::span),
            "`verify_checksums` is for TCP and UDP listeners only: the host's TCP stack \
             checks an HTTP or HTTPS listener's",
        ),
        (
            d.ping.as_ref().map(Spanned::span),
            "`ping` is for TCP and UDP listeners only: the host answers an HTTP or HTTPS \
             listener's VIP",
        ),
        (
            d.affinity.as_ref().map(Spanned::span),
            "`affinity` is for TCP and UDP listeners only: an HTTP or HTTPS listener keeps \
             a client on its backend with [listener.cookie]",
        ),
    ]
}

/// The L7 tables a TCP or UDP listener refuses (see [`super::listener`]).
pub(super) fn refuse_l7_tables(r: &mut Report<'_>, d: &ListenerDoc) {
    for (span, table) in [
        (d.http.as_ref().map(Spanned::span), "http"),
        (d.cookie.as_ref().map(Spanned::span), "cookie"),
        (d.tls.as_ref().map(Spanned::span), "tls"),
    ] {
        if let Some(span) = span {
            r.at(
                &span,
                format!(
                    "[listener.{table}] is for protocol = \"http\" or \"https\" listeners only"
                ),
            );
        }
    }
}

/// One HTTP or HTTPS listener's values, or `None` (with errors reported)
/// if any is wrong. With `dir` (the configuration file's directory),
/// relative certificate paths are taken from it and the certificates are
/// checked. `access_log`: whether the file has an `[access_log]` section,
/// which `access_log = true` needs.
pub(super) fn listener(
    r: &mut Report<'_>,
    doc: &Spanned<ListenerDoc>,
    https: bool,
    dir: Option<&Path>,
    access_log: bool,
) -> Option<(L7ListenerCfg, L7Spans)> {
    let before = r.errors.len();
    let d = doc.get_ref();
    for (span, message) in l4_only_keys(d) {
        if let Some(span) = span {
            r.at(&span, message);
        }
    }
    let name = d.name.get_ref().clone();
    if name.is_empty() {
        r.at(&d.name.span(), "a listener's name must not be empty");
    }
    let vip: Option<IpAddr> = parse_at(r, &d.vip, "an IP address");
    if let Some(v) = vip.filter(|v| v.is_unspecified() || v.is_multicast()) {
        r.at(
            &d.vip.span(),
            format!("{v} is not a VIP: an L7 listener's VIP is one address of this host"),
        );
    }
    let port = *d.port.get_ref();
    if port == 0 {
        r.at(&d.port.span(), "port must be above zero");
    }
    let scheduler = scheduler(r, d);
    let health = d.health.as_ref().map(|h| health(r, h));
    let mut backends: Vec<Backend> = Vec::new();
    for b in &d.backend {
        let b = b.get_ref();
        let backend_port = b.port.as_ref().map_or(port, |p| *p.get_ref());
        if let Some(p) = b.port.as_ref().filter(|p| *p.get_ref() == 0) {
            r.at(&p.span(), "port must be above zero");
        }
        let Some(addr) = parse_at::<IpAddr>(r, &b.addr, "an IP address") else {
            continue;
        };
        let addr = SocketAddr::new(addr, backend_port);
        if backends.iter().any(|o| o.addr == addr) {
            r.at(
                &b.addr.span(),
                format!(
                    "listener `{name}`: backend {} port {} is in the pool already",
                    addr.ip(),
                    addr.port()
                ),
            );
        }
        backends.push(Backend {
            addr,
            weight: b.weight.unwrap_or(1),
        });
    }
    let (forwarded, timeouts, logged) = http(r, d.http.as_ref());
    if let Some(at) = d
        .http
        .as_ref()
        .and_then(|h| h.get_ref().access_log.as_ref())
        .filter(|a| *a.get_ref() && !access_log)
    {
        r.at(
            &at.span(),
            "access_log = true needs an [access_log] section (where the lines go)",
        );
    }
    let cookie = d.cookie.as_ref().map(|c| cookie(r, c.get_ref(), https));
    let tls = match (&d.tls, https) {
        (Some(t), true) => Some(tls(r, t, dir)),
        (None, true) => {
            let at = d.protocol.as_ref().map_or(doc.span(), Spanned::span);
            r.at(
                &at,
                "protocol = \"https\" needs a [listener.tls] table naming its certificates",
            );
            None
        }
        (Some(t), false) => {
            r.at(
                &t.span(),
                "[listener.tls] is for protocol = \"https\" listeners only",
            );
            None
        }
        (None, false) => None,
    };
    if r.errors.len() > before {
        return None;
    }
    let listener = L7Listener {
        name,
        addr: SocketAddr::new(vip?, port),
        backends,
        scheduler,
        forwarded,
        cookie: cookie.flatten(),
        tls: tls.flatten(),
        timeouts,
        access_log: logged,
    };
    if let (Some(dir), Some(t), Some(config)) = (dir, &d.tls, &listener.tls) {
        certificates(r, &listener.name, t, config, dir);
    }
    if r.errors.len() > before {
        return None;
    }
    let spans = L7Spans { vip: d.vip.span() };
    Some((L7ListenerCfg { listener, health }, spans))
}

/// `[listener.http]`: the forwarding headers, the timeouts, and whether
/// requests are logged.
fn http(r: &mut Report<'_>, doc: Option<&Spanned<HttpDoc>>) -> (Forwarded, HttpTimeouts, bool) {
    let (f, t) = (Forwarded::default(), HttpTimeouts::default());
    let Some(doc) = doc else {
        return (f, t, false);
    };
    let d = doc.get_ref();
    let forwarded = Forwarded {
        xff: match d.x_forwarded_for {
            None => f.xff,
            Some(XffDoc::Append) => XffMode::Append,
            Some(XffDoc::Replace) => XffMode::Replace,
            Some(XffDoc::Remove) => XffMode::Remove,
        },
        real_ip: d.x_real_ip.unwrap_or(f.real_ip),
        proto: d.x_forwarded_proto.unwrap_or(f.proto),
        port: d.x_forwarded_port.unwrap_or(f.port),
    };
    let mut one = |value: &Option<Spanned<String>>, default: Duration| {
        duration(r, value.as_ref(), default, TIMEOUT_RANGE, TIMEOUT_BOUNDS).unwrap_or(default)
    };
    let timeouts = HttpTimeouts {
        idle: one(&d.idle_timeout, t.idle),
        connect: one(&d.connect_timeout, t.connect),
        read: one(&d.read_timeout, t.read),
        websocket_idle: one(&d.websocket_idle_timeout, t.websocket_idle),
    };
    let access_log = d.access_log.as_ref().is_some_and(|a| *a.get_ref());
    (forwarded, timeouts, access_log)
}

/// `[listener.cookie]`; `None` (with errors reported) if wrong.
fn cookie(r: &mut Report<'_>, d: &CookieDoc, https: bool) -> Option<CookieConfig> {
    let before = r.errors.len();
    let name = d
        .name
        .as_ref()
        .map_or("LBD_SERVER", |n| n.get_ref().as_str());
    if let Some(n) = d
        .name
        .as_ref()
        .filter(|_| !lb_l7::cookie::is_valid_name(name))
    {
        r.at(
            &n.span(),
            format!(
                "`{name}` is not a cookie name: visible ASCII characters, no space nor any of ()<>@,;:\\\"/[]?={{}}"
            ),
        );
    }
    let secret = d.secret.get_ref().as_bytes().to_vec();
    if secret.len() < MIN_SECRET {
        r.at(
            &d.secret.span(),
            format!(
                "the cookie's secret is {} bytes long: it must be at least {MIN_SECRET}",
                secret.len()
            ),
        );
    }
    let max_age = duration(
        r,
        d.max_age.as_ref(),
        Duration::from_secs(3600),
        (Duration::from_secs(1), MAX_COOKIE_AGE),
        "max_age must be at least \"1s\" and at most a day (\"24h\")",
    );
    let same_site = match d.same_site.as_ref().map(|s| (*s.get_ref(), s.span())) {
        None | Some((SameSiteDoc::Lax, _)) => SameSite::Lax,
        Some((SameSiteDoc::Strict, _)) => SameSite::Strict,
        Some((SameSiteDoc::None, span)) => {
            if !https {
                r.at(
                    &span,
                    "same_site = \"none\" needs protocol = \"https\": browsers refuse \
                     SameSite=None on a cookie without Secure, which HTTP cannot set",
                );
            }
            SameSite::None
        }
    };
    if r.errors.len() > before {
        return None;
    }
    Some(CookieConfig {
        name: name.to_owned(),
        secret,
        max_age: max_age?,
        same_site,
    })
}

/// `[listener.tls]`; `None` (with errors reported) if wrong. Paths are
/// taken from `dir` when relative.
fn tls(r: &mut Report<'_>, doc: &Spanned<TlsDoc>, dir: Option<&Path>) -> Option<TlsConfig> {
    let d = doc.get_ref();
    let before = r.errors.len();
    if d.certificates.get_ref().is_empty() {
        r.at(
            &d.certificates.span(),
            "certificates must name at least one certificate (the first is the default)",
        );
    }
    let mut path = |s: &Spanned<String>| {
        if s.get_ref().is_empty() {
            r.at(&s.span(), "a file name must not be empty");
        }
        resolve(dir, s.get_ref())
    };
    let certificates = d
        .certificates
        .get_ref()
        .iter()
        .map(|c| CertificateFiles {
            cert: path(&c.get_ref().cert),
            key: path(&c.get_ref().key),
        })
        .collect();
    let client_ca = d.client_ca.as_ref().map(path);
    if r.errors.len() > before {
        return None;
    }
    Some(TlsConfig {
        certificates,
        client_ca,
    })
}

/// The certificates of listener `name` checked (readable, matching keys,
/// not expired...); an error is reported at the key naming the file at
/// fault, or at the table when none does.
fn certificates(
    r: &mut Report<'_>,
    name: &str,
    doc: &Spanned<TlsDoc>,
    tls: &TlsConfig,
    dir: &Path,
) {
    let Err(e) = check_certificates(tls, SystemTime::now()) else {
        return;
    };
    let d = doc.get_ref();
    let spans = d
        .certificates
        .get_ref()
        .iter()
        .flat_map(|c| [&c.get_ref().cert, &c.get_ref().key])
        .chain(&d.client_ca);
    let at = spans
        .into_iter()
        .find(|s| resolve(Some(dir), s.get_ref()) == e.file())
        .map_or(doc.span(), Spanned::span);
    r.at(&at, format!("listener `{name}`: {e}"));
}

/// Whether `tls`'s files make a usable certificate set at `now`: the
/// check `lbd check` and a reload make before anything changes.
///
/// # Errors
/// The first file at fault, and why.
fn check_certificates(tls: &TlsConfig, now: SystemTime) -> Result<(), TlsError> {
    lb_l7::tls::check(tls, now)
}

/// The checks across the two kinds of listener, each error on the later
/// listener in the file (`order`: each listener's index in `l4` or `l7`,
/// and which): two listeners on one VIP, port and TCP (the engine checks
/// the TCP and UDP listeners among themselves), and an L7 VIP that is a
/// TCP or UDP listener's local address (the host would have to accept
/// connections on an address whose packets go to `lbd`).
pub(super) fn shared_addresses(
    r: &mut Report<'_>,
    order: &[(usize, bool)],
    l4: &[(super::Listener, super::ListenerSpans)],
    l7: &[(L7ListenerCfg, L7Spans)],
) {
    // (name, VIP and port over TCP, where the VIP is written), in file order.
    let sockets: Vec<(&str, SocketAddr, &Span, bool)> = order
        .iter()
        .filter_map(|&(i, is_l7)| {
            if is_l7 {
                let (l, s) = l7.get(i)?;
                Some((l.listener.name.as_str(), l.listener.addr, &s.vip, true))
            } else {
                let (l, s) = l4.get(i)?;
                (l.engine.protocol == lb_engine::Protocol::Tcp).then(|| {
                    let addr = SocketAddr::new(l.engine.vip, l.engine.port);
                    (l.name.as_str(), addr, &s.vip, false)
                })
            }
        })
        .collect();
    for (i, &(name, addr, at, is_l7)) in sockets.iter().enumerate() {
        // Two TCP listeners: the engine's error already.
        if let Some((other, ..)) = sockets
            .iter()
            .take(i)
            .find(|(_, a, _, l)| *a == addr && (is_l7 || *l))
        {
            r.at(
                at,
                format!(
                    "listener `{name}`: a listener for {} port {} (Tcp) exists already \
                     (listener `{other}`)",
                    addr.ip(),
                    addr.port()
                ),
            );
        }
    }
    for (l, s) in l7.iter().skip(MAX_L7_LISTENERS) {
        r.at(
            &s.vip,
            format!(
                "listener `{}`: more than {MAX_L7_LISTENERS} HTTP and HTTPS listeners",
                l.listener.name
            ),
        );
    }
    same_host_cookies(r, l7);
    for (l, s) in l7 {
        let vip = l.listener.addr.ip();
        if let Some((other, _)) = l4
            .iter()
            .find(|(o, _)| o.engine.local.addresses.contains(&vip))
        {
            r.at(
                &s.vip,
                format!(
                    "listener `{}`: {vip} is a local address of listener `{}`: an HTTP or \
                     HTTPS listener's VIP is the host's, and lbd takes every packet to a \
                     local address",
                    l.listener.name, other.name
                ),
            );
        }
    }
}

/// Two listeners on one VIP (other ports) whose persistence cookies have
/// the same name must take each other's cookies: a browser sends a host's
/// cookies to every port, so with another secret or other backends each
/// listener would find the other's cookie invalid and replace it, and
/// neither would keep its clients. Refused at the later listener's VIP.
fn same_host_cookies(r: &mut Report<'_>, l7: &[(L7ListenerCfg, L7Spans)]) {
    let backends = |l: &L7ListenerCfg| {
        let mut v: Vec<SocketAddr> = l.listener.backends.iter().map(|b| b.addr).collect();
        v.sort_unstable();
        v
    };
    for (i, (l, s)) in l7.iter().enumerate() {
        let Some(c) = &l.listener.cookie else {
            continue;
        };
        let clash = l7.iter().take(i).find(|(o, _)| {
            o.listener.addr.ip() == l.listener.addr.ip()
                && o.listener.cookie.as_ref().is_some_and(|oc| {
                    oc.name == c.name && (oc.secret != c.secret || backends(o) != backends(l))
                })
        });
        if let Some((other, _)) = clash {
            r.at(
                &s.vip,
                format!(
                    "listener `{}`: its cookie `{}` has the name of listener `{}`'s on the same \
                     VIP, with another secret or other backends: a browser sends a host's \
                     cookies to every port, so each would replace the other's; give one \
                     another `name`, or both the same secret and backends",
                    l.listener.name, c.name, other.listener.name
                ),
            );
        }
    }
}

/// Whether `d`'s protocol is one of layer 7, and which.
pub(super) fn protocol(d: &ListenerDoc) -> Option<bool> {
    match d.protocol.as_ref().map(|p| *p.get_ref()) {
        Some(ProtocolDoc::Http) => Some(false),
        Some(ProtocolDoc::Https) => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_check_names_the_file_at_fault() {
        let dir = std::env::temp_dir().join(format!("lbd-l7-check-{}", std::process::id()));
        let tls = TlsConfig {
            certificates: vec![CertificateFiles {
                cert: dir.join("none.pem"),
                key: dir.join("none.key"),
            }],
            client_ca: None,
        };
        let e = check_certificates(&tls, SystemTime::now()).unwrap_err();
        assert_eq!(e.file(), dir.join("none.pem"));
        assert!(e.to_string().contains("none.pem"), "{e}");
    }
}
