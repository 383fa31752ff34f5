//! Loopback servers and clients for the L7 proxy's tests: real sockets,
//! HTTP/1.1 written and parsed by hand so that every byte is visible.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lb_l7::config::{Backend, Forwarded, HttpTimeouts, L7Listener};
use lb_l7::server::L7;

/// How a test backend behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers every request 200 with `backend=<name>` and the request's
    /// head and body as they arrived, keep-alive.
    Echo,
    /// Reads the request and never answers.
    Silent,
    /// Answers `Upgrade: websocket` with 101, then echoes every byte.
    WebSocket,
    /// Answers `Upgrade: websocket` with 101, then reads and never writes.
    WebSocketSink,
}

/// A backend on a loopback port, serving until the test ends.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub name: String,
    /// Requests it has read.
    pub requests: Arc<AtomicUsize>,
    /// Bytes it has read after answering an upgrade (WebSocket modes).
    pub upgraded_bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

impl TestBackend {
    pub fn start(name: &str, mode: Mode) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let upgraded_bytes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, r, s) = (name.to_string(), requests.clone(), stop.clone());
        let u = upgraded_bytes.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (n, r, u) = (n.clone(), r.clone(), u.clone());
                thread::spawn(move || serve(conn, &n, mode, &r, &u));
            }
        });
        TestBackend {
            addr,
            name: name.to_string(),
            requests,
            upgraded_bytes,
            stop,
        }
    }

    pub fn backend(&self, weight: u16) -> Backend {
        Backend {
            addr: self.addr,
            weight,
        }
    }
}

/// Reads one request head (through the blank line); `None` at EOF.
fn read_head(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn serve(conn: TcpStream, name: &str, mode: Mode, requests: &AtomicUsize, upgraded: &AtomicUsize) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some(head) = read_head(&mut r) {
        requests.fetch_add(1, Ordering::Relaxed);
        let mut body = vec![0; content_length(&head)];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        match mode {
            Mode::Silent => {
                // Hold the connection open, answer nothing.
                let mut sink = [0u8; 1024];
                while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Mode::Echo => {
                let text = format!("backend={name}\n{head}{}", String::from_utf8_lossy(&body));
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            Mode::WebSocket | Mode::WebSocketSink => {
                let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                            Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
                // Everything after the upgrade is echoed, byte for byte.
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) if mode == Mode::WebSocketSink => {
                            upgraded.fetch_add(n, Ordering::Relaxed);
                        }
                        Ok(n) => {
                            upgraded.fetch_add(n, Ordering::Relaxed);
                            if w.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A response as the client read it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The backend that answered (from its echo).
    pub fn backend(&self) -> &str {
        self.body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("backend="))
            .unwrap_or("")
    }

    /// A request header as the backend saw it (from its echo).
    pub fn seen(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// A byte stream a client talks over: TCP, or TLS over TCP.
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// A keep-alive HTTP/1.1 client connection.
pub struct Client {
    pub reader: BufReader<Box<dyn Io>>,
    /// Bytes of requests written by [`Client::send`].
    pub sent: usize,
    /// Bytes of responses read by [`Client::read`].
    pub received: usize,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::over(Box::new(tcp(addr)))
    }

    /// A client over `io`.
    pub fn over(io: Box<dyn Io>) -> Client {
        Client {
            reader: BufReader::new(io),
            sent: 0,
            received: 0,
        }
    }

    /// Writes raw bytes.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)?;
        self.reader.get_mut().flush()
    }

    pub fn send(&mut self, extra_headers: &str) -> std::io::Result<()> {
        let req = format!("GET /path?q=1 HTTP/1.1\r\nHost: test.example\r\n{extra_headers}\r\n");
        self.sent += req.len();
        self.write_all(req.as_bytes())
    }

    /// Reads one response; `Err` if the connection closed first.
    pub fn read(&mut self) -> std::io::Result<Response> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.received += status_line.len();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.received += line.len();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut resp = Response {
            status,
            headers,
            body: String::new(),
        };
        if status != 101 {
            let len = resp
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body)?;
            self.received += len;
            resp.body = String::from_utf8_lossy(&body).into_owned();
        }
        Ok(resp)
    }

    /// Sends a POST of `body` and reads the response.
    pub fn post(&mut self, body: &str) -> std::io::Result<Response> {
        let req = format!(
            "POST /form HTTP/1.1\r\nHost: test.example\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.sent += req.len();
        self.write_all(req.as_bytes())?;
        self.read()
    }

    pub fn get(&mut self, extra_headers: &str) -> std::io::Result<Response> {
        self.send(extra_headers)?;
        self.read()
    }

    /// Waits for the server to close the connection: `Ok` at EOF (or a
    /// reset), `Err` if bytes arrive or nothing happens within the
    /// client's read timeout.
    pub fn wait_closed(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 64];
        match self.reader.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} unexpected bytes: {:?}", &buf[..n])),
            // A reset, or a TLS connection closed without close_notify.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(format!("not closed: {e}")),
        }
    }
}

/// A TCP connection with a 20 s read timeout (no test waits that long).
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// One request on a new connection.
pub fn get(addr: SocketAddr, extra_headers: &str) -> Response {
    let mut c = Client::connect(addr);
    c.get(extra_headers).unwrap()
}

/// A loopback address with a port free at the time of the call.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An HTTP listener on a free loopback port.
pub fn listener(name: &str, backends: Vec<Backend>) -> L7Listener {
    L7Listener {
        name: name.to_string(),
        addr: free_addr(),
        backends,
        scheduler: Default::default(),
        forwarded: Forwarded::default(),
        cookie: None,
        tls: None,
        timeouts: HttpTimeouts::default(),
        access_log: false,
    }
}

/// `listeners` served (no access log, one thread, hash seed 0).
pub fn start(listeners: &[L7Listener]) -> L7 {
    L7::start(listeners, None, 1, 0).unwrap()
}

/// The value of the metric line that starts with `line_prefix`.
pub fn metric(l7: &L7, line_prefix: &str) -> i64 {
    let mut out = String::new();
    l7.render_metrics(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{out}"))
}

/// Asserts that the counter reaches `want` within a few seconds (the
/// proxy counts a request after its response has been sent).
pub fn assert_metric(l7: &L7, line_prefix: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = metric(l7, line_prefix);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{line_prefix}: {got}, want {want}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
