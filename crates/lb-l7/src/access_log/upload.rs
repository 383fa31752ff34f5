//! The uploader: its own thread and small tokio runtime, putting each
//! finished file into the S3-compatible store with `object_store`, which
//! retries with backoff.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;

use super::writer::Finished;
use super::{Counters, Options};
use crate::config::S3Config;

/// A running uploader: the writer sends it finished files.
pub(super) struct Uploader {
    pub(super) files: UnboundedSender<Finished>,
    pub(super) thread: JoinHandle<()>,
}

/// Builds the store client (an error for a bad endpoint or prefix) and
/// starts the uploader's thread.
pub(super) fn start(
    config: &S3Config,
    options: &Options,
    counters: Arc<Counters>,
) -> io::Result<Uploader> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    // reqwest's rustls needs a process-wide provider: Pingora's (ring).
    pingora::tls::install_default_crypto_provider();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: options.upload_backoff,
                max_backoff: options.upload_backoff.saturating_mul(32),
                base: 2.0,
            },
            max_retries: options.upload_retries,
            retry_timeout: Duration::from_secs(600),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some((key_id, secret)) = &options.s3_credentials {
        builder = builder
            .with_access_key_id(key_id)
            .with_secret_access_key(secret);
    }
    let store: Arc<dyn ObjectStore> = Arc::new(
        builder
            .build()
            .map_err(|e| invalid(format!("access log upload: {e}")))?,
    );
    ObjectPath::parse(format!("{}x", config.prefix))
        .map_err(|e| invalid(format!("access log upload prefix {:?}: {e}", config.prefix)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (files, queue) = unbounded_channel();
    let prefix = config.prefix.clone();
    let grace = options.upload_grace;
    let part = options.upload_part;
    let thread = std::thread::Builder::new()
        .name("lbd-log-upload".into())
        .spawn(move || runtime.block_on(run(store, prefix, queue, counters, grace, part)))?;
    Ok(Uploader { files, thread })
}

/// Uploads every file sent, each in its own task; once the writer is gone,
/// waits up to `grace` for the uploads under way (those cut short are
/// counted as failed).
async fn run(
    store: Arc<dyn ObjectStore>,
    prefix: String,
    mut queue: UnboundedReceiver<Finished>,
    counters: Arc<Counters>,
    grace: Duration,
    part: usize,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            file = queue.recv() => match file {
                Some(file) => {
                    let store = Arc::clone(&store);
                    let counters = Arc::clone(&counters);
                    let key = format!("{prefix}{}", file.relative);
                    tasks.spawn(async move {
                        match put(store, &key, &file, part).await {
                            Ok(()) => counters.uploads_ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                tracing::warn!(
                                    "access log: upload of {} failed (kept on disk): {e}",
                                    file.path.display()
                                );
                                counters.uploads_failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    });
                }
                None => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => count_panic(done, &counters),
        }
    }
    let _ = tokio::time::timeout(grace, async {
        while let Some(done) = tasks.join_next().await {
            count_panic(done, &counters);
        }
    })
    .await;
    let cut = tasks.len();
    if cut > 0 {
        counters
            .uploads_failed
            .fetch_add(u64::try_from(cut).unwrap_or(u64::MAX), Ordering::Relaxed);
        tasks.abort_all();
    }
}

/// An upload task that panicked has failed (it counted nothing itself).
fn count_panic(done: Result<(), tokio::task::JoinError>, counters: &Counters) {
    if done.is_err() {
        counters.uploads_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Streams one file to `key`: a single PUT when under `part` bytes, else
/// a multipart upload of `part`-byte parts.
async fn put(
    store: Arc<dyn ObjectStore>,
    key: &str,
    file: &Finished,
    part: usize,
) -> io::Result<()> {
    let path = ObjectPath::parse(key).map_err(io::Error::other)?;
    let mut source = tokio::fs::File::open(&file.path).await?;
    let mut sink = BufWriter::with_capacity(store, path, part);
    if let Err(e) = tokio::io::copy(&mut source, &mut sink).await {
        // A multipart upload begun is cancelled (a failed shutdown cleans
        // up by itself, and must not be aborted again: it would panic).
        let _ = sink.abort().await;
        return Err(e);
    }
    sink.shutdown().await
}
