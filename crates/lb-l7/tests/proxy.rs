//! The L7 proxy over plain HTTP on loopback: real backends, real clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proxy_support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lb_l7::server::{L7, L7Error};
use proxy_support::{Client, Mode, TestBackend, assert_metric, get, listener, metric, start};

#[test]
fn weights_1_to_3_give_the_smooth_wrr_sequence() {
    let a = TestBackend::start("a", Mode::Echo);
    let b = TestBackend::start("b", Mode::Echo);
    let l = listener("web", vec![a.backend(1), b.backend(3)]);
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut c = Client::connect(addr);
    let mut seq = String::new();
    for _ in 0..400 {
        let r = c.get("").unwrap();
        assert_eq!(r.status, 200);
        seq.push_str(r.backend());
    }
    // nginx's smooth weighted round robin over weights 1 and 3: b a b b.
    assert_eq!(seq, "babb".repeat(100));
    assert_eq!(a.requests.load(Ordering::Relaxed), 100);
    assert_eq!(b.requests.load(Ordering::Relaxed), 300);
    // Host is kept; the forwarded headers are added.
    let r = get(addr, "X-Forwarded-For: 192.0.2.1\r\n");
    assert_eq!(r.seen("host"), Some("test.example"));
    assert_eq!(r.seen("x-forwarded-for"), Some("192.0.2.1, 127.0.0.1"));
    assert_eq!(r.seen("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(r.seen("x-forwarded-proto"), Some("http"));
    assert_eq!(
        r.seen("x-forwarded-port"),
        Some(addr.port().to_string().as_str())
    );
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"web\",class=\"2xx\"}",
        401,
    );
    let backend_label = |x: &TestBackend| {
        format!(
            "lbd_l7_backend_requests_total{{listener=\"web\",backend=\"{}\"}}",
            x.addr
        )
    };
    assert_metric(&l7, &backend_label(&a), 100);
    assert_metric(&l7, &backend_label(&b), 301);
    assert_metric(&l7, "lbd_l7_connections_total{listener=\"web\"}", 2);
    // The keep-alive client is still connected; the other one is gone.
    assert_metric(&l7, "lbd_l7_connections_active{listener=\"web\"}", 1);
    drop(c);
    l7.stop();
}

#[test]
fn request_bodies_reach_the_backend() {
    let a = TestBackend::start("a", Mode::Echo);
    let l = listener("web", vec![a.backend(1)]);
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut c = Client::connect(addr);
    let body = "name=value&".repeat(2000);
    let r = c.post(&body).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with(&body), "{}", r.body.len());
    assert_eq!(
        r.seen("content-length"),
        Some(body.len().to_string().as_str())
    );
    // The connection serves on.
    assert_eq!(c.get("").unwrap().status, 200);
    l7.stop();
}

#[test]
fn bytes_each_way_are_the_http_bytes() {
    let a = TestBackend::start("a", Mode::Echo);
    let l = listener("web", vec![a.backend(1)]);
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut c = Client::connect(addr);
    for i in 0..3 {
        let r = c
            .get(&format!("X-Pad: {}\r\n", "x".repeat(i * 100)))
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(
        c.sent > 300 && c.received > c.sent,
        "{} {}",
        c.sent,
        c.received
    );
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"web\",class=\"2xx\"}",
        3,
    );
    assert_metric(
        &l7,
        "lbd_l7_client_received_bytes_total{listener=\"web\"}",
        c.sent as i64,
    );
    assert_metric(
        &l7,
        "lbd_l7_client_sent_bytes_total{listener=\"web\"}",
        c.received as i64,
    );
    // The same bytes, on the one backend that served them; its three
    // answers, over one connection that Pingora kept for reuse.
    let backend = |family: &str, extra: &str| {
        format!(
            "lbd_l7_backend_{family}{{listener=\"web\",backend=\"{}\"{extra}}}",
            a.addr
        )
    };
    assert_metric(&l7, &backend("received_bytes_total", ""), c.sent as i64);
    assert_metric(&l7, &backend("sent_bytes_total", ""), c.received as i64);
    assert_metric(&l7, &backend("responses_total", ",class=\"2xx\""), 3);
    assert_metric(&l7, &backend("responses_total", ",class=\"5xx\""), 0);
    assert_metric(&l7, &backend("connections_total", ""), 1);
    l7.stop();
}

#[test]
fn a_backend_marked_down_gets_nothing_until_up() {
    let a = TestBackend::start("a", Mode::Echo);
    let b = TestBackend::start("b", Mode::Echo);
    let l = listener("web", vec![a.backend(1), b.backend(1)]);
    let addr = l.addr;
    let l7 = start(&[l]);
    l7.set_up("web", b.addr, false);
    let up = format!(
        "lbd_l7_backend_up{{listener=\"web\",backend=\"{}\"}}",
        b.addr
    );
    assert_metric(&l7, &up, 0);
    let mut c = Client::connect(addr);
    for _ in 0..50 {
        assert_eq!(c.get("").unwrap().backend(), "a");
    }
    assert_eq!(b.requests.load(Ordering::Relaxed), 0);
    // Unknown listeners and backends are ignored.
    l7.set_up("nope", a.addr, false);
    l7.set_up("web", "127.0.0.1:1".parse().unwrap(), false);
    l7.set_up("web", b.addr, true);
    assert_metric(&l7, &up, 1);
    let seen: String = (0..10)
        .map(|_| c.get("").unwrap().backend().to_string())
        .collect();
    assert_eq!(seen.matches('b').count(), 5, "{seen}");
    // Both down: 503, counted.
    l7.set_up("web", a.addr, false);
    l7.set_up("web", b.addr, false);
    let r = get(addr, "");
    assert_eq!(r.status, 503);
    assert_metric(&l7, "lbd_l7_no_backend_total{listener=\"web\"}", 1);
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"web\",class=\"5xx\"}",
        1,
    );
    l7.stop();
}

#[test]
fn a_silent_backend_gives_504_after_the_read_timeout() {
    let s = TestBackend::start("s", Mode::Silent);
    let mut l = listener("web", vec![s.backend(1)]);
    l.timeouts.read = Duration::from_secs(1);
    let addr = l.addr;
    let l7 = start(&[l]);
    let t = Instant::now();
    let r = get(addr, "");
    let waited = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let label = format!(
        "lbd_l7_backend_timeouts_total{{listener=\"web\",backend=\"{}\"}}",
        s.addr
    );
    assert_metric(&l7, &label, 1);
    // The 504 is the balancer's: the backend gave no response.
    let responses = format!(
        "lbd_l7_backend_responses_total{{listener=\"web\",backend=\"{}\",class=\"5xx\"}}",
        s.addr
    );
    assert_metric(&l7, &responses, 0);
    l7.stop();
}

#[test]
fn a_closed_port_gives_502() {
    let closed = proxy_support::free_addr();
    let l = listener(
        "web",
        vec![lb_l7::config::Backend {
            addr: closed,
            weight: 1,
        }],
    );
    let addr = l.addr;
    let l7 = start(&[l]);
    let r = get(addr, "");
    assert_eq!(r.status, 502);
    let label =
        format!("lbd_l7_backend_connect_failures_total{{listener=\"web\",backend=\"{closed}\"}}");
    assert_metric(&l7, &label, 1);
    // Never sent to the backend: not one of its requests.
    let sent = format!("lbd_l7_backend_requests_total{{listener=\"web\",backend=\"{closed}\"}}");
    assert_eq!(metric(&l7, &sent), 0);
    l7.stop();
}

#[test]
fn an_upload_to_a_backend_that_stops_reading_gets_504() {
    use std::io::{Read, Write};
    // Accepts, and never reads a byte.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for c in backend.incoming() {
            held.push(c);
        }
    });
    let mut l = listener(
        "web",
        vec![lb_l7::config::Backend {
            addr: backend_addr,
            weight: 1,
        }],
    );
    l.timeouts.read = Duration::from_secs(1);
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Far more than the socket buffers on the way hold.
    let len: usize = 64 << 20;
    let mut w = s.try_clone().unwrap();
    thread::spawn(move || {
        let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
        w.write_all(head.as_bytes())?;
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..len / chunk.len() {
            w.write_all(&chunk)?;
        }
        std::io::Result::Ok(())
    });
    let t = Instant::now();
    let mut status = [0u8; 12];
    s.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 504", "after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let label =
        format!("lbd_l7_backend_timeouts_total{{listener=\"web\",backend=\"{backend_addr}\"}}");
    assert_metric(&l7, &label, 1);
    l7.stop();
}

/// Sends `request` and reads until the server closes: the response, and
/// how long the close took after the request.
fn until_closed(addr: SocketAddr, request: &[u8]) -> (String, Duration) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let t = Instant::now();
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("not closed: {e}: {}", String::from_utf8_lossy(&all)));
    (String::from_utf8_lossy(&all).into_owned(), t.elapsed())
}

#[test]
fn a_client_that_asks_no_keepalive_is_closed_after_its_response() {
    let a = TestBackend::start("a", Mode::Echo);
    let mut l = listener("web", vec![a.backend(1)]);
    // Longer than the test: only the client's wish can close it.
    l.timeouts.idle = Duration::from_secs(60);
    let addr = l.addr;
    let l7 = start(&[l]);
    for request in [
        // HTTP/1.0 is not kept alive unless asked.
        &b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let (response, waited) = until_closed(addr, request);
        assert!(response.contains(" 200 "), "{response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{response}"
        );
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
    // Asked for, HTTP/1.0 is kept alive.
    let mut c = Client::connect(addr);
    c.write_all(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(c.read().unwrap().status, 200);
    assert_eq!(c.get("").unwrap().status, 200);
    l7.stop();
}

#[test]
fn an_idle_keepalive_connection_is_closed_at_the_idle_timeout() {
    let a = TestBackend::start("a", Mode::Echo);
    let mut l = listener("web", vec![a.backend(1)]);
    l.timeouts.idle = Duration::from_secs(1);
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut c = Client::connect(addr);
    assert_eq!(c.get("").unwrap().status, 200);
    // Within the idle timeout the connection serves again.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(c.get("").unwrap().status, 200);
    let t = Instant::now();
    c.wait_closed().unwrap();
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // A connection that never sends a request is closed as well.
    let mut idle = Client::connect(addr);
    idle.wait_closed().unwrap();
    l7.stop();
}

#[test]
fn reload_changes_weights_with_no_failed_request() {
    let a = TestBackend::start("a", Mode::Echo);
    let b = TestBackend::start("b", Mode::Echo);
    let mut l = listener("web", vec![a.backend(1), b.backend(1)]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let done = done.clone();
            thread::spawn(move || {
                let mut n = 0;
                let mut c = Client::connect(addr);
                while !done.load(Ordering::Relaxed) {
                    // Every other round on a new connection.
                    if n % 2 == i {
                        c = Client::connect(addr);
                    }
                    let r = c.get("").unwrap();
                    assert_eq!(r.status, 200, "{r:?}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for w in [3u16, 1, 5, 2, 0] {
        thread::sleep(Duration::from_millis(100));
        l.backends[1].weight = w;
        l7.reload(std::slice::from_ref(&l)).unwrap();
    }
    thread::sleep(Duration::from_millis(100));
    done.store(true, Ordering::Relaxed);
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(total > 10, "{total}");
    // Weight 0 drains b: everything goes to a.
    let before = b.requests.load(Ordering::Relaxed);
    let mut c = Client::connect(addr);
    for _ in 0..20 {
        assert_eq!(c.get("").unwrap().backend(), "a");
    }
    assert_eq!(b.requests.load(Ordering::Relaxed), before);
    // The counters survived the reloads.
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"web\",class=\"2xx\"}",
        i64::try_from(total + 20).unwrap(),
    );
    // A health state survives a reload that keeps the backend.
    l7.set_up("web", a.addr, false);
    l.backends[1].weight = 1;
    l7.reload(std::slice::from_ref(&l)).unwrap();
    for _ in 0..5 {
        assert_eq!(c.get("").unwrap().backend(), "b");
    }
    l7.stop();
}

#[test]
fn reload_refuses_other_addresses_and_keeps_running() {
    let a = TestBackend::start("a", Mode::Echo);
    let l = listener("web", vec![a.backend(1)]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    let mut moved = l.clone();
    moved.addr = proxy_support::free_addr();
    let err = l7.reload(&[moved]).unwrap_err();
    assert!(matches!(err, L7Error::RestartNeeded(_)), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    let err = l7
        .reload(&[l.clone(), listener("two", vec![])])
        .unwrap_err();
    assert!(matches!(err, L7Error::RestartNeeded(_)), "{err}");
    // A bad scheduler refuses the whole reload.
    let mut bad = l.clone();
    bad.scheduler = lb_l7::config::L7Listener::clone(&l).scheduler;
    bad.scheduler = lb_engine::SchedulerKind::Maglev {
        table_size: 1000,
        key: Default::default(),
    };
    bad.backends.clear();
    let err = l7.reload(&[bad]).unwrap_err();
    assert!(matches!(err, L7Error::Scheduler { .. }), "{err}");
    assert_eq!(get(addr, "").backend(), "a");
    l7.stop();
}

#[test]
fn start_reports_an_address_in_use_and_stop_closes() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut l = listener("web", vec![]);
    l.addr = busy.local_addr().unwrap();
    let err = L7::start(&[l], None, 1, 0).unwrap_err();
    assert!(
        matches!(&err, L7Error::Bind { listener, addr, .. } if listener == "web" && *addr == busy.local_addr().unwrap()),
        "{err}"
    );
    let a = listener("a", vec![]);
    let mut dup = listener("a", vec![]);
    let err = L7::start(&[a.clone(), dup.clone()], None, 1, 0).unwrap_err();
    assert!(matches!(err, L7Error::Duplicate { .. }), "{err}");
    dup.name = "b".into();
    dup.addr = a.addr;
    let err = L7::start(&[a.clone(), dup], None, 1, 0).unwrap_err();
    assert!(matches!(err, L7Error::Duplicate { .. }), "{err}");

    let addr: SocketAddr = a.addr;
    let l7 = start(&[a]);
    assert_eq!(get(addr, "").status, 503);
    let t = Instant::now();
    l7.stop();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn stop_returns_with_connections_open_and_closes_them() {
    let silent = TestBackend::start("s", Mode::Silent);
    let echo = TestBackend::start("e", Mode::Echo);
    let waiting = listener("waiting", vec![silent.backend(1)]);
    let idle = listener("idle", vec![echo.backend(1)]);
    let l7 = start(&[waiting.clone(), idle.clone()]);
    // A keep-alive connection between requests, and a request waiting for
    // a backend that never answers (read timeout 60 s).
    let mut kept = Client::connect(idle.addr);
    assert_eq!(kept.get("").unwrap().status, 200);
    let mut stuck = Client::connect(waiting.addr);
    stuck.send("").unwrap();
    while silent.requests.load(Ordering::Relaxed) == 0 {
        thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    l7.stop();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    kept.wait_closed().unwrap();
    // The waiting client gets no answer: its connection is closed (a 5xx
    // written by the proxy as it stops would do too).
    match stuck.read() {
        Err(_) => {}
        Ok(r) => assert!(r.status >= 500, "{r:?}"),
    }
    assert!(TcpStream::connect(waiting.addr).is_err());
    assert!(TcpStream::connect(idle.addr).is_err());
    // The addresses are free again: a new server (a restart) binds them.
    let l7 = start(&[waiting, idle.clone()]);
    assert_eq!(get(idle.addr, "").status, 200);
    l7.stop();
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn a_websocket_passes_through_and_closes_when_both_sides_are_silent() {
    use std::io::Read;
    let ws = TestBackend::start("ws", Mode::WebSocket);
    let mut l = listener("web", vec![ws.backend(1)]);
    l.timeouts.websocket_idle = Duration::from_secs(1);
    // Longer than the test: only the WebSocket idle timeout can close it.
    l.timeouts.read = Duration::from_secs(60);
    l.timeouts.idle = Duration::from_secs(60);
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut c = Client::connect(addr);
    let r = c.get(UPGRADE).unwrap();
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("upgrade"), Some("websocket"));
    // Messages every 400 ms for 2 s (twice the idle timeout), each echoed.
    for i in 0..5u8 {
        let msg = [0x81, 0x02, b'h', b'0' + i];
        c.write_all(&msg).unwrap();
        let mut back = [0u8; 4];
        c.reader.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
        thread::sleep(Duration::from_millis(400));
    }
    // Then silence on both sides: closed after the idle timeout (less the
    // 400 ms already silent), give or take a timer's slack.
    let t = Instant::now();
    c.wait_closed().unwrap();
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"web\",class=\"1xx\"}",
        1,
    );
    assert!(metric(&l7, "lbd_l7_client_sent_bytes_total{listener=\"web\"}") >= 20);
    assert!(metric(&l7, "lbd_l7_client_received_bytes_total{listener=\"web\"}") >= 20);
    l7.stop();
}

#[test]
fn a_websocket_stays_open_while_the_client_talks_to_a_backend_that_only_listens() {
    use std::io::{Read, Write};
    let sink = TestBackend::start("sink", Mode::WebSocketSink);
    let mut l = listener("web", vec![sink.backend(1)]);
    let idle = Duration::from_secs(1);
    l.timeouts.websocket_idle = idle;
    l.timeouts.read = Duration::from_secs(60);
    l.timeouts.idle = Duration::from_secs(60);
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut c = Client::connect(addr);
    assert_eq!(c.get(UPGRADE).unwrap().status, 101);
    let mut s = c.reader.into_inner();
    // A message every idle/3 for three idle timeouts, each read by the
    // backend: nothing closes the socket.
    let t = Instant::now();
    while t.elapsed() < 3 * idle {
        s.write_all(&[0x81, 0x01, b'x']).unwrap();
        s.flush().unwrap();
        thread::sleep(idle / 3);
    }
    // Still open: a last message goes through to the backend.
    s.write_all(&[0x81, 0x01, b'y']).unwrap();
    let quiet = Instant::now();
    // Nine messages or more, three bytes each (the last may be on its way).
    let read = sink.upgraded_bytes.load(Ordering::Relaxed);
    assert!(read >= 3 * 9, "the backend read {read} bytes");
    let mut buf = [0u8; 16];
    // Then the client is silent too: closed after the idle timeout.
    let closed = match s.read(&mut buf) {
        Ok(0) | Err(_) => quiet.elapsed(),
        Ok(n) => panic!("{n} bytes from a backend that never writes"),
    };
    assert!(closed >= idle - Duration::from_millis(100), "{closed:?}");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    let label = format!(
        "lbd_l7_backend_timeouts_total{{listener=\"web\",backend=\"{}\"}}",
        sink.addr
    );
    assert_metric(&l7, &label, 1);
    l7.stop();
}

#[test]
fn maglev_by_source_and_by_flow_through_the_proxy() {
    let backends: Vec<TestBackend> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| TestBackend::start(n, Mode::Echo))
        .collect();
    let mut by_source = listener("src", backends.iter().map(|b| b.backend(1)).collect());
    by_source.scheduler = lb_engine::SchedulerKind::Maglev {
        table_size: 65537,
        key: lb_engine::MaglevKey::SourceAddress,
    };
    let mut by_flow = listener("flow", backends.iter().map(|b| b.backend(1)).collect());
    by_flow.scheduler = lb_engine::SchedulerKind::maglev();
    let l7 = start(&[by_source.clone(), by_flow.clone()]);
    // One client address, many connections (ports): one backend by source,
    // several by flow.
    let seen = |addr| {
        let mut s: Vec<String> = (0..24)
            .map(|_| get(addr, "").backend().to_string())
            .collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(seen(by_source.addr).len(), 1);
    assert!(seen(by_flow.addr).len() >= 2);
    l7.stop();
}

/// The backend that serves one request from a client at `source` (a
/// loopback address) through `addr`.
fn backend_for(addr: SocketAddr, source: std::net::IpAddr) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut c = Client::over(Box::new(stream));
    c.get("").unwrap().backend().to_string()
}

#[test]
fn maglev_agrees_across_instances_with_one_hash_seed() {
    let backends: Vec<TestBackend> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|n| TestBackend::start(n, Mode::Echo))
        .collect();
    let by_source = || {
        let mut l = listener("src", backends.iter().map(|b| b.backend(1)).collect());
        l.scheduler = lb_engine::SchedulerKind::Maglev {
            table_size: 65537,
            key: lb_engine::MaglevKey::SourceAddress,
        };
        l
    };
    // Two nodes (or one restarted) with one seed, and one with another.
    let (one, two, other) = (by_source(), by_source(), by_source());
    let l7s = [
        L7::start(std::slice::from_ref(&one), None, 1, 42).unwrap(),
        L7::start(std::slice::from_ref(&two), None, 1, 42).unwrap(),
        L7::start(std::slice::from_ref(&other), None, 1, 43).unwrap(),
    ];
    let clients: Vec<std::net::IpAddr> = (2..22u8)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i).into())
        .collect();
    let of = |addr| -> Vec<String> { clients.iter().map(|&c| backend_for(addr, c)).collect() };
    let first = of(one.addr);
    assert_eq!(first, of(two.addr));
    // Twenty clients over eight backends: another seed moves some.
    assert_ne!(first, of(other.addr));
    for l7 in l7s {
        l7.stop();
    }
}

#[test]
fn revert_puts_back_the_weights_of_before_the_reload() {
    let a = TestBackend::start("a", Mode::Echo);
    let b = TestBackend::start("b", Mode::Echo);
    let mut l = listener("web", vec![a.backend(1), b.backend(1)]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    l.backends[0].weight = 0;
    l7.reload(std::slice::from_ref(&l)).unwrap();
    let mut c = Client::connect(addr);
    for _ in 0..4 {
        assert_eq!(c.get("").unwrap().backend(), "b");
    }
    // b goes down after the reload: the revert keeps that.
    l7.set_up("web", b.addr, false);
    assert!(l7.revert());
    for _ in 0..4 {
        assert_eq!(c.get("").unwrap().backend(), "a");
    }
    l7.set_up("web", b.addr, true);
    let seq: String = (0..4)
        .map(|_| c.get("").unwrap().backend().to_string())
        .collect();
    assert_eq!(seq.matches('a').count(), 2, "{seq}");
    l7.stop();
}

#[test]
fn least_connections_counts_requests_in_flight() {
    let stuck = TestBackend::start("s", Mode::Silent);
    let free = TestBackend::start("e", Mode::Echo);
    let mut l = listener("wlc", vec![stuck.backend(1), free.backend(3)]);
    l.scheduler = lb_engine::SchedulerKind::LeastConnections;
    let addr = l.addr;
    let l7 = start(&[l]);
    // The first request goes to the lowest slot (a tie at 0) and stays.
    let mut waiting = Client::connect(addr);
    waiting.send("").unwrap();
    while stuck.requests.load(Ordering::Relaxed) == 0 {
        thread::sleep(Duration::from_millis(10));
    }
    let active = format!(
        "lbd_l7_backend_active{{listener=\"wlc\",backend=\"{}\"}}",
        stuck.addr
    );
    assert_metric(&l7, &active, 1);
    // 1 in flight per weight 1 there; at most 1 per weight 3 here.
    for _ in 0..10 {
        assert_eq!(get(addr, "").backend(), "e");
    }
    assert_eq!(stuck.requests.load(Ordering::Relaxed), 1);
    l7.stop();
}

#[test]
fn the_longest_timeouts_are_accepted() {
    let a = TestBackend::start("a", Mode::Echo);
    let mut l = listener("web", vec![a.backend(1)]);
    l.timeouts = lb_l7::config::HttpTimeouts {
        idle: Duration::MAX,
        connect: Duration::MAX,
        read: Duration::MAX,
        websocket_idle: Duration::MAX,
    };
    let addr = l.addr;
    let l7 = start(&[l]);
    let mut c = Client::connect(addr);
    for _ in 0..3 {
        assert_eq!(c.get("").unwrap().status, 200);
    }
    let r = c
        .get("Upgrade: websocket\r\nConnection: Upgrade\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    l7.stop();
}

#[test]
fn several_threads_share_the_listener_its_backends_and_counters() {
    let a = TestBackend::start("a", Mode::Echo);
    let b = TestBackend::start("b", Mode::Echo);
    let l = listener("web", vec![a.backend(1), b.backend(3)]);
    let addr = l.addr;
    // One service per thread, all accepting on the listener's socket.
    let l7 = L7::start(&[l], None, 4, 0).unwrap();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..50 {
                    assert_eq!(c.get("").unwrap().status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // One scheduler for all threads: the weights hold over the total.
    assert_eq!(a.requests.load(Ordering::Relaxed), 100);
    assert_eq!(b.requests.load(Ordering::Relaxed), 300);
    assert_metric(&l7, "lbd_l7_connections_total{listener=\"web\"}", 8);
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"web\",class=\"2xx\"}",
        400,
    );
    // A backend marked down is down for every thread.
    l7.set_up("web", b.addr, false);
    for _ in 0..20 {
        assert_eq!(get(addr, "").backend(), "a");
    }
    l7.stop();
    assert!(TcpStream::connect(addr).is_err());
}
