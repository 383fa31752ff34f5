//! Uploading finished access-log files to a real S3-compatible server
//! (`s3s-fs`, started on loopback by the test), and an upload that keeps
//! failing: retried, counted, the file kept, `log` never held up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod access_log_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use access_log_support::{TestClock, TestDir, read_file, record, wait_for};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use lb_l7::access_log::writer::relative_path;
use lb_l7::access_log::{AccessLog, Options};
use lb_l7::config::{AccessLogConfig, S3Config};
use object_store::ObjectStoreExt;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T0: u64 = 1_548_086_400;
const KEY_ID: &str = "lbd-test-key";
const SECRET: &str = "lbd-test-secret-0123456789";

/// Starts `s3s-fs` serving `root` (a folder per bucket) on 127.0.0.1, in
/// `runtime`; returns its address.
fn start_s3(runtime: &tokio::runtime::Runtime, root: &std::path::Path) -> SocketAddr {
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(KEY_ID, SECRET));
    let service = builder.build();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}

fn options(clock: &TestClock) -> Options {
    Options {
        clock: clock.clock(),
        upload_retries: 3,
        upload_backoff: Duration::from_millis(50),
        upload_grace: Duration::from_secs(10),
        upload_part: 5 << 20,
        s3_credentials: Some((KEY_ID.into(), SECRET.into())),
    }
}

fn config(dir: &TestDir, endpoint: String) -> AccessLogConfig {
    AccessLogConfig {
        dir: dir.0.join("logs"),
        queue: 1024,
        period: Duration::from_secs(3600),
        upload: Some(S3Config {
            bucket: "access-logs".into(),
            prefix: "lbd/".into(),
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
        }),
    }
}

#[test]
fn finished_files_are_uploaded_byte_for_byte() {
    let dir = TestDir::new("upload");
    let root = dir.0.join("s3");
    std::fs::create_dir_all(root.join("access-logs")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let s3 = start_s3(&runtime, &root);

    let clock = TestClock::at(T0 + 5);
    let config = config(&dir, format!("http://{s3}"));
    let log = AccessLog::start_with(&config, options(&clock)).unwrap();
    let a: SocketAddr = "10.77.0.10:443".parse().unwrap();
    // 1000 lines with 8 KiB of noise each: over 5 MiB compressed, so the
    // file goes up in two parts (a multipart upload; S3's least part is
    // 5 MiB).
    let mut noise = 0x9e37_79b9_7f4a_7c15_u64;
    let sent: Vec<_> = (0..1000)
        .map(|n| {
            let mut r = record(n, clock.now(), a);
            r.http_user_agent = Some(
                (0..8192)
                    .map(|_| {
                        noise ^= noise << 13;
                        noise ^= noise >> 7;
                        noise ^= noise << 17;
                        char::from(
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                                [(noise % 64) as usize],
                        )
                    })
                    .collect(),
            );
            r
        })
        .collect();
    for r in &sent {
        log.log(a, r.clone());
    }
    wait_for(&log, "lines written", |s| s.lines_written == 1000);
    // The hour ends: the file is finished by the timer, then uploaded.
    clock.set(T0 + 3600);
    let s = wait_for(&log, "the upload", |s| s.uploads_ok == 1);
    assert_eq!(s.uploads_failed, 0);

    let relative = relative_path(a, T0);
    let local = std::fs::read(config.dir.join(&relative)).unwrap();
    assert!(local.len() > 5 << 20, "large enough for a multipart upload");
    assert_eq!(read_file(&config.dir.join(&relative)), sent);
    // On the server's disk, and through the S3 API.
    let stored = std::fs::read(root.join("access-logs/lbd").join(&relative)).unwrap();
    assert_eq!(stored, local);
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("access-logs")
        .with_region("us-east-1")
        .with_endpoint(format!("http://{s3}"))
        .with_allow_http(true)
        .with_access_key_id(KEY_ID)
        .with_secret_access_key(SECRET)
        .build()
        .unwrap();
    let key = object_store::path::Path::parse(format!("lbd/{relative}")).unwrap();
    let got = runtime
        .block_on(async { store.get(&key).await.unwrap().bytes().await })
        .unwrap();
    assert_eq!(&got[..], &local[..]);

    // A file still open at stop is finished and uploaded (in one request,
    // being small) before stop returns.
    let b: SocketAddr = "10.77.0.11:80".parse().unwrap();
    log.log(b, record(7, clock.now(), b));
    let handle = log.clone();
    log.stop();
    let s = handle.stats();
    assert_eq!(
        (s.files_finished, s.uploads_ok, s.uploads_failed),
        (2, 2, 0)
    );
    let relative = relative_path(b, T0 + 3600);
    let local = std::fs::read(config.dir.join(&relative)).unwrap();
    assert!(local.len() < 5 << 20);
    let stored = std::fs::read(root.join("access-logs/lbd").join(&relative)).unwrap();
    assert_eq!(stored, local);
}

#[test]
fn a_failing_store_is_retried_then_counted_and_the_file_kept() {
    let dir = TestDir::new("upload-fail");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A server that answers every request 503 and counts them.
    let attempts = Arc::new(AtomicUsize::new(0));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let failing = listener.local_addr().unwrap();
    let counted = Arc::clone(&attempts);
    runtime.spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });

    let clock = TestClock::at(T0);
    let failing_config = config(&dir, format!("http://{failing}"));
    let log = AccessLog::start_with(&failing_config, options(&clock)).unwrap();
    let a: SocketAddr = "10.77.0.10:443".parse().unwrap();
    log.log(a, record(1, clock.now(), a));
    wait_for(&log, "the line written", |s| s.lines_written == 1);
    clock.set(T0 + 3600);
    wait_for(&log, "the file finished", |s| s.files_finished == 1);
    // While the upload is retried, lines are still taken and written.
    let (done, returned) = mpsc::channel();
    let logger = log.clone();
    let now = clock.now();
    std::thread::spawn(move || {
        for n in 0..200 {
            logger.log(a, record(n, now, a));
        }
        done.send(()).unwrap();
    });
    returned
        .recv_timeout(Duration::from_secs(30))
        .expect("log() was held up by the failing upload");
    let s = wait_for(&log, "the upload to fail", |s| s.uploads_failed == 1);
    assert_eq!(s.uploads_ok, 0);
    wait_for(&log, "the lines written", |s| s.lines_written == 201);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        4,
        "one attempt and three retries"
    );
    let kept = failing_config.dir.join(relative_path(a, T0));
    assert_eq!(read_file(&kept).len(), 1, "the file stays on disk");

    // An endpoint where nothing listens: refused, retried, counted.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let dir2 = TestDir::new("upload-nowhere");
    let nowhere_config = config(&dir2, format!("http://{nowhere}"));
    let log2 = AccessLog::start_with(&nowhere_config, options(&clock)).unwrap();
    log2.log(a, record(2, clock.now(), a));
    let handle = log2.clone();
    log2.stop();
    let s = handle.stats();
    assert_eq!(
        (s.files_finished, s.uploads_ok, s.uploads_failed),
        (1, 0, 1)
    );
    let kept = nowhere_config.dir.join(relative_path(a, T0 + 3600));
    assert_eq!(read_file(&kept).len(), 1);
    log.stop();
}
