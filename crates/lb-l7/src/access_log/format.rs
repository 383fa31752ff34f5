//! One access-log line: the [`Record`] of a request, how it is written
//! ([`write_line`]) and read back ([`parse_line`]).
//!
//! The format is described in the [parent module](super).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// The latest time a line can carry: 9999-12-31T23:59:59.999Z (later
/// clocks are written as this).
const MAX_UNIX_MILLIS: u64 = 253_402_300_799_999;

/// What is logged of one request: exactly the FAQ's fields, in its order.
///
/// Times are kept to the millisecond: a line carries no finer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `time_iso8601`: when the line was logged, at the request's end (as
    /// nginx's `$time_iso8601`).
    pub time: SystemTime,
    /// `remote_addr:remote_port`: the client.
    pub remote: SocketAddr,
    /// `server_addr:server_port`: the listener's address.
    pub server: SocketAddr,
    /// `upstream_addr`: the backend chosen, also when connecting to it
    /// failed or it timed out; `None` when none was chosen.
    pub upstream_addr: Option<SocketAddr>,
    /// `request_time`: from the end of the request's head (Pingora gives
    /// no time of its first byte) to the response's last byte.
    pub request_time: Duration,
    /// `upstream_response_time`: from the start of the connect attempt to
    /// the backend's last response byte, or to its failure; `None` when
    /// no backend was chosen.
    pub upstream_response_time: Option<Duration>,
    /// `status`: the status sent to the client.
    pub status: u16,
    /// `upstream_status`: the backend's status; 502 when connecting to it
    /// failed (or it closed without a response), 504 when it timed out;
    /// `None` when no backend was chosen or the client left first.
    pub upstream_status: Option<u16>,
    /// `request_length`: bytes of the request (line, headers and body).
    pub request_length: u64,
    /// `body_bytes_sent`: bytes of the response body sent to the client
    /// (headers not counted).
    pub body_bytes_sent: u64,
    /// `request_method`, e.g. `GET`.
    pub request_method: String,
    /// `http_host`: the `Host` header; `None` when absent.
    pub http_host: Option<String>,
    /// `request_uri`: the request target as the client sent it.
    pub request_uri: String,
    /// `server_protocol`, e.g. `HTTP/1.1`.
    pub server_protocol: String,
    /// `http_referer`: the `Referer` header; `None` when absent.
    pub http_referer: Option<String>,
    /// `http_user_agent`: the `User-Agent` header; `None` when absent.
    pub http_user_agent: Option<String>,
}

/// Why a line is not a valid access-log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access-log line: field {field} ({index} of 16): {reason}")]
pub struct ParseError {
    /// The FAQ's name of the field that is wrong.
    pub field: &'static str,
    /// Its position, 1 to 16 (17: text after the last field).
    pub index: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The fields' names, in order (the FAQ's).
pub const FIELDS: [&str; 16] = [
    "time_iso8601",
    "remote_addr:remote_port",
    "server_addr:server_port",
    "upstream_addr",
    "request_time",
    "upstream_response_time",
    "status",
    "upstream_status",
    "request_length",
    "body_bytes_sent",
    "request_method",
    "http_host",
    "request_uri",
    "server_protocol",
    "http_referer",
    "http_user_agent",
];

/// Appends `record` to `out` as one line, with its `\n`.
pub fn write_line(record: &Record, out: &mut String) {
    write_time(record.time, out);
    let _ = write!(out, " {} {} ", record.remote, record.server);
    match record.upstream_addr {
        Some(addr) => {
            let _ = write!(out, "{addr}");
        }
        None => out.push('-'),
    }
    out.push(' ');
    write_seconds(Some(record.request_time), out);
    out.push(' ');
    write_seconds(record.upstream_response_time, out);
    let _ = write!(out, " {} ", record.status);
    match record.upstream_status {
        Some(status) => {
            let _ = write!(out, "{status}");
        }
        None => out.push('-'),
    }
    let _ = write!(out, " {} {}", record.request_length, record.body_bytes_sent);
    for text in [
        Some(record.request_method.as_str()),
        record.http_host.as_deref(),
        Some(record.request_uri.as_str()),
        Some(record.server_protocol.as_str()),
        record.http_referer.as_deref(),
        record.http_user_agent.as_deref(),
    ] {
        out.push(' ');
        write_text(text, out);
    }
    out.push('\n');
}

/// `2026-12-05T20:41:27.123Z`: UTC, to the millisecond (times before
/// 1970 or after 9999 are written as those bounds).
fn write_time(time: SystemTime, out: &mut String) {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .min(MAX_UNIX_MILLIS);
    let millis = i64::try_from(millis).unwrap_or(0);
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(t) => out.push_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => out.push_str("1970-01-01T00:00:00.000Z"),
    }
}

/// Seconds with three decimals (`0.005`), or `-`.
fn write_seconds(duration: Option<Duration>, out: &mut String) {
    match duration {
        Some(d) => {
            let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
        }
        None => out.push('-'),
    }
}

/// A quoted string with `"`, `\`, control bytes and DEL as `\xHH`, or a
/// bare `-` for an absent value.
fn write_text(text: Option<&str>, out: &mut String) {
    let Some(text) = text else {
        out.push('-');
        return;
    };
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' || c.is_ascii_control() {
            let _ = write!(out, "\\x{:02X}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// Reads one line written by [`write_line`] (a trailing `\n` is allowed).
pub fn parse_line(line: &str) -> Result<Record, ParseError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut fields = Fields {
        rest: line,
        index: 0,
    };
    let time = parse_time(fields.bare()?).ok_or(fields.error("not an RFC 3339 UTC time"))?;
    let remote = fields
        .bare()?
        .parse()
        .map_err(|_| fields.error("not an address:port"))?;
    let server = fields
        .bare()?
        .parse()
        .map_err(|_| fields.error("not an address:port"))?;
    let upstream_addr = fields
        .optional(|s| s.parse().ok())?
        .ok_or(fields.error("not an address:port or -"))?;
    let request_time = parse_seconds(fields.bare()?).ok_or(fields.error("not seconds (1.234)"))?;
    let upstream_response_time = fields
        .optional(parse_seconds)?
        .ok_or(fields.error("not seconds (1.234) or -"))?;
    let status = parse_status(fields.bare()?).ok_or(fields.error("not a status"))?;
    let upstream_status = fields
        .optional(parse_status)?
        .ok_or(fields.error("not a status or -"))?;
    let request_length = parse_count(fields.bare()?).ok_or(fields.error("not a byte count"))?;
    let body_bytes_sent = parse_count(fields.bare()?).ok_or(fields.error("not a byte count"))?;
    let request_method = fields.quoted()?;
    let http_host = fields.text()?;
    let request_uri = fields.quoted()?;
    let server_protocol = fields.quoted()?;
    let http_referer = fields.text()?;
    let http_user_agent = fields.text()?;
    if !fields.rest.is_empty() {
        fields.index += 1;
        return Err(fields.error("text after the last field"));
    }
    Ok(Record {
        time,
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
    })
}

/// The fields of a line not yet read.
struct Fields<'a> {
    rest: &'a str,
    /// The number of the field last taken (1-based).
    index: usize,
}

impl<'a> Fields<'a> {
    fn error(&self, reason: &'static str) -> ParseError {
        ParseError {
            field: FIELDS
                .get(self.index.wrapping_sub(1))
                .copied()
                .unwrap_or("end of line"),
            index: self.index,
            reason,
        }
    }

    /// Takes the separator before every field but the first.
    fn start(&mut self) -> Result<(), ParseError> {
        self.index += 1;
        if self.index > 1 {
            self.rest = self
                .rest
                .strip_prefix(' ')
                .ok_or(self.error("missing (no space before it)"))?;
        }
        Ok(())
    }

    /// An unquoted field: up to the next space.
    fn bare(&mut self) -> Result<&'a str, ParseError> {
        self.start()?;
        let end = self.rest.find(' ').unwrap_or(self.rest.len());
        let (field, rest) = self.rest.split_at(end);
        if field.is_empty() {
            return Err(self.error("empty"));
        }
        self.rest = rest;
        Ok(field)
    }

    /// An unquoted field that may be `-`: `Some(None)` for `-`,
    /// `Some(Some(v))` when `parse` accepts it, `None` when it does not.
    fn optional<T>(
        &mut self,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<Option<T>>, ParseError> {
        let field = self.bare()?;
        Ok(if field == "-" {
            Some(None)
        } else {
            parse(field).map(Some)
        })
    }

    /// A quoted string that must be present.
    fn quoted(&mut self) -> Result<String, ParseError> {
        self.text()?.ok_or(self.error("absent (-) but required"))
    }

    /// A quoted string, or `-` for absent.
    fn text(&mut self) -> Result<Option<String>, ParseError> {
        self.start()?;
        if let Some(rest) = self.rest.strip_prefix('-')
            && (rest.is_empty() || rest.starts_with(' '))
        {
            self.rest = rest;
            return Ok(None);
        }
        let body = self
            .rest
            .strip_prefix('"')
            .ok_or(self.error("not a quoted string or -"))?;
        let end = body.find('"').ok_or(self.error("no closing quote"))?;
        let (text, rest) = body.split_at(end);
        self.rest = rest.get(1..).unwrap_or("");
        unescape(text)
            .map(Some)
            .ok_or(self.error("a backslash not followed by xHH"))
    }
}

/// Undoes [`write_text`]'s `\xHH` escapes (only ASCII is escaped).
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('\\');
    out.push_str(parts.next().unwrap_or(""));
    for part in parts {
        let hex = part.strip_prefix('x')?.get(..2)?;
        let byte = u8::from_str_radix(hex, 16).ok()?;
        if !byte.is_ascii() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push(char::from(byte));
        out.push_str(part.get(3..)?);
    }
    Some(out)
}

fn parse_time(field: &str) -> Option<SystemTime> {
    if !field.ends_with('Z') {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(field).ok()?;
    let millis = u64::try_from(t.timestamp_millis()).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

fn parse_seconds(field: &str) -> Option<Duration> {
    let (secs, millis) = field.split_once('.')?;
    if millis.len() != 3 {
        return None;
    }
    let secs = parse_count(secs)?;
    let millis = parse_count(millis)?;
    Some(Duration::from_secs(secs) + Duration::from_millis(millis))
}

fn parse_status(field: &str) -> Option<u16> {
    if field.len() == 3 {
        field.parse().ok().filter(|s| (100..=999).contains(s))
    } else {
        None
    }
}

/// Decimal digits only (no sign, no spaces).
fn parse_count(field: &str) -> Option<u64> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_millis(1_548_086_401_250),
            remote: "192.0.2.7:51234".parse().unwrap(),
            server: "[fd77::10]:443".parse().unwrap(),
            upstream_addr: Some("10.77.1.2:8080".parse().unwrap()),
            request_time: Duration::from_millis(1_234),
            upstream_response_time: Some(Duration::from_millis(5)),
            status: 200,
            upstream_status: Some(200),
            request_length: 512,
            body_bytes_sent: 1_048_576,
            request_method: "GET".into(),
            http_host: Some("example.com".into()),
            request_uri: "/a b?q=\"x\"&p=\\".into(),
            server_protocol: "HTTP/1.1".into(),
            http_referer: None,
            http_user_agent: Some("curl/8 \u{7f}\t\r\n é 中".into()),
        }
    }

    #[test]
    fn a_line_reads_as_documented() {
        let mut line = String::new();
        write_line(&record(), &mut line);
        assert_eq!(
            line,
            "2019-01-21T16:00:01.250Z 192.0.2.7:51234 [fd77::10]:443 10.77.1.2:8080 \
             1.234 0.005 200 200 512 1048576 \"GET\" \"example.com\" \
             \"/a b?q=\\x22x\\x22&p=\\x5C\" \"HTTP/1.1\" - \
             \"curl/8 \\x7F\\x09\\x0D\\x0A é 中\"\n"
        );
        assert_eq!(parse_line(&line), Ok(record()));
    }

    #[test]
    fn absent_values_are_dashes_and_a_quoted_dash_is_text() {
        let mut r = record();
        r.upstream_addr = None;
        r.upstream_response_time = None;
        r.upstream_status = None;
        r.status = 502;
        r.http_host = Some("-".into());
        r.http_user_agent = None;
        let mut line = String::new();
        write_line(&r, &mut line);
        assert!(line.contains(" - 1.234 - 502 - 512 "), "{line}");
        assert!(line.contains(" \"-\" "), "{line}");
        assert!(line.ends_with(" - -\n"), "{line}");
        assert_eq!(parse_line(&line), Ok(r));
    }

    #[test]
    fn bad_lines_name_the_field() {
        let mut line = String::new();
        write_line(&record(), &mut line);
        let bad = line.replace(" 200 200 ", " 200 2x0 ");
        assert_eq!(
            parse_line(&bad).map_err(|e| e.field),
            Err("upstream_status")
        );
        let bad = line.replace("\"GET\"", "GET");
        assert_eq!(parse_line(&bad).map_err(|e| e.field), Err("request_method"));
        let bad = line.replace("1.234", "1.23");
        assert_eq!(parse_line(&bad).map_err(|e| e.field), Err("request_time"));
        let bad = line.replace("\\x22", "\\q22");
        assert_eq!(parse_line(&bad).map_err(|e| e.field), Err("request_uri"));
        let bad = line.replace('\n', " extra");
        assert_eq!(parse_line(&bad).map_err(|e| e.index), Err(17));
        assert_eq!(parse_line("").map_err(|e| e.index), Err(1));
        let cut = line.get(..line.len() - 10).unwrap();
        assert!(parse_line(cut).is_err());
    }

    #[test]
    fn out_of_range_clocks_are_clamped() {
        let mut r = record();
        r.time = UNIX_EPOCH - Duration::from_secs(5);
        let mut line = String::new();
        write_line(&r, &mut line);
        assert!(line.starts_with("1970-01-01T00:00:00.000Z "), "{line}");
        assert_eq!(parse_line(&line).map(|r| r.time), Ok(UNIX_EPOCH));
    }
}
