//! Remote-write 1.0 sender: one [`Endpoint`] per `remote_write` entry, with a bounded queue,
//! per-series-ordered shards, batching, retries with backoff, and a flush on shutdown.
//!
//! What this is: Prometheus' queue manager in small. Samples are queued (bounded by
//! `queue_config.capacity` samples: a full queue makes the scrape loops wait, never drops), split
//! to shards by a stable hash of the series so each series' samples stay in order, batched up to
//! `max_samples_per_send` or `batch_send_deadline`, encoded ([`crate::encode`]) and POSTed with
//! the headers the spec requires. 5xx, 429 (`retry_on_http_429`) and network errors are retried
//! with the same body, with exponential backoff between `min_backoff` and `max_backoff`, honouring
//! `Retry-After`; other 4xx drop the batch with an error log and a counter, as the spec demands
//! (a sender MUST NOT retry them). What this is not: the durable outage buffer (a later stage).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use crate::config::common::{Authorization, BasicAuth, Duration};
use crate::config::{HttpClientConfig, TlsConfig};
use crate::encode::Encoder;
use crate::http_client::Client;
use crate::labels::Labels;
use crate::relabel::RelabelConfig;
use crate::ring::{Batch, Sample};

/// Header names the spec reserves; custom `headers` may not override them.
mod headers {
    pub const VERSION: &str = "X-Prometheus-Remote-Write-Version";
    pub const RESERVED: [&str; 4] =
        ["content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent"];
}

/// The longest `Retry-After` we honour; a receiver asking for more gets this (a buggy or hostile
/// header must not park a shard for hours while its queue fills).
const MAX_RETRY_AFTER: StdDuration = StdDuration::from_secs(300);

/// How much of an error response body is logged (the spec: log it verbatim, but bounded).
const MAX_ERROR_BODY_BYTES: usize = 1024;

/// `queue_config`, with Prometheus' defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Samples buffered per endpoint before scrape loops have to wait.
    pub capacity: usize,
    /// Parallel senders (each keeps its series in order).
    pub max_shards: usize,
    /// Shards to start with.
    pub min_shards: usize,
    /// Samples per request at most.
    pub max_samples_per_send: usize,
    /// A partial batch is sent after this long.
    pub batch_send_deadline: Duration,
    /// First retry delay; doubled per attempt.
    pub min_backoff: Duration,
    /// Largest retry delay.
    pub max_backoff: Duration,
    /// Retry 429 responses. Prometheus defaults this to false; trawl defaults it to true
    /// because the point of a per-node agent is to lose nothing, and a 429 from Mimir or
    /// VictoriaMetrics is a request to slow down, not a verdict on the data.
    pub retry_on_http_429: bool,
    /// Accepted for compatibility (Prometheus' sample age limit); not used yet.
    pub sample_age_limit: Option<Duration>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
            sample_age_limit: None,
        }
    }
}

/// Accepted for compatibility with Prometheus configs (`metadata_config`); metadata is not sent yet.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// Whether to send metadata.
    #[serde(default)]
    pub send: Option<bool>,
    /// How often.
    #[serde(default)]
    pub send_interval: Option<Duration>,
    /// Per request limit.
    #[serde(default)]
    pub max_samples_per_send: Option<usize>,
}

/// One `remote_write` entry, validated at load time.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawRemoteWriteConfig")]
pub struct RemoteWriteConfig {
    /// Where to POST.
    pub url: String,
    /// Name used in logs and metrics (default: the URL).
    pub name: Option<String>,
    /// Extra headers (not the reserved ones).
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout.
    pub remote_timeout: Duration,
    /// Queueing and retries.
    pub queue_config: QueueConfig,
    /// Rules applied to each series before it is sent to this endpoint.
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// `prometheus.WriteRequest` (1.0) only for now.
    pub protobuf_message: Option<String>,
    /// Accepted; exemplars are not sent yet.
    pub send_exemplars: bool,
    /// Accepted; native histograms are not scraped yet.
    pub send_native_histograms: bool,
    /// Accepted; see [`MetadataConfig`].
    pub metadata_config: MetadataConfig,
    /// Auth.
    pub basic_auth: Option<BasicAuth>,
    /// Auth.
    pub authorization: Option<Authorization>,
    /// Auth.
    pub bearer_token: Option<String>,
    /// Auth, re-read per request.
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// TLS.
    pub tls_config: Option<TlsConfig>,
    /// Whether to follow redirects (accepted; hyper does not follow them).
    pub follow_redirects: Option<bool>,
    /// Accepted; HTTP/1.1 is used.
    pub enable_http2: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteWriteConfig {
    url: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    remote_timeout: Option<Duration>,
    #[serde(default)]
    queue_config: QueueConfig,
    #[serde(default)]
    write_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    protobuf_message: Option<String>,
    #[serde(default)]
    send_exemplars: bool,
    #[serde(default)]
    send_native_histograms: bool,
    #[serde(default)]
    metadata_config: MetadataConfig,
    #[serde(default)]
    basic_auth: Option<BasicAuth>,
    #[serde(default)]
    authorization: Option<Authorization>,
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    bearer_token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    tls_config: Option<TlsConfig>,
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    follow_redirects: Option<bool>,
    #[serde(default)]
    enable_http2: Option<bool>,
}

impl TryFrom<RawRemoteWriteConfig> for RemoteWriteConfig {
    type Error = String;
    fn try_from(r: RawRemoteWriteConfig) -> Result<Self, String> {
        let uri: hyper::Uri =
            r.url.parse().map_err(|e| format!("invalid remote_write url {:?}: {e}", r.url))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
            return Err(format!("remote_write url {:?} must be http(s)://host[:port]/path", r.url));
        }
        for name in r.headers.keys() {
            if headers::RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!("{name} is a reserved header. It must not be changed"));
            }
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
        }
        for v in r.headers.values() {
            HeaderValue::from_str(v).map_err(|_| format!("invalid header value {v:?}"))?;
        }
        if r.proxy_url.is_some() {
            return Err("proxy_url is not supported by trawl yet".into());
        }
        match r.protobuf_message.as_deref() {
            None | Some("prometheus.WriteRequest") => {}
            Some(other) => {
                return Err(format!(
                    "protobuf_message {other:?} is not supported yet (only prometheus.WriteRequest)"
                ));
            }
        }
        let auths = [
            r.basic_auth.is_some(),
            r.authorization.is_some(),
            r.bearer_token.is_some() || r.bearer_token_file.is_some(),
        ];
        if auths.iter().filter(|x| **x).count() > 1 {
            return Err(
                "at most one of basic_auth, authorization and bearer_token(_file) may be configured".into()
            );
        }
        let q = &r.queue_config;
        if q.max_samples_per_send == 0 || q.capacity == 0 || q.min_shards == 0 || q.max_shards < q.min_shards
        {
            return Err("queue_config: capacity, max_samples_per_send and min_shards must be positive, max_shards ≥ min_shards".into());
        }
        if q.min_backoff > q.max_backoff {
            return Err("queue_config: min_backoff must not exceed max_backoff".into());
        }
        Ok(RemoteWriteConfig {
            url: r.url,
            name: r.name,
            headers: r.headers,
            remote_timeout: r.remote_timeout.unwrap_or(Duration::from_secs(30)),
            queue_config: r.queue_config,
            write_relabel_configs: r.write_relabel_configs,
            protobuf_message: r.protobuf_message,
            send_exemplars: r.send_exemplars,
            send_native_histograms: r.send_native_histograms,
            metadata_config: r.metadata_config,
            basic_auth: r.basic_auth,
            authorization: r.authorization,
            bearer_token: r.bearer_token,
            bearer_token_file: r.bearer_token_file,
            tls_config: r.tls_config,
            follow_redirects: r.follow_redirects,
            enable_http2: r.enable_http2,
        })
    }
}

impl RemoteWriteConfig {
    /// The HTTP client settings of this endpoint.
    pub fn http_client_config(&self) -> HttpClientConfig {
        HttpClientConfig {
            basic_auth: self.basic_auth.clone(),
            authorization: self.authorization.clone(),
            bearer_token: self.bearer_token.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            tls_config: self.tls_config.clone(),
            proxy_url: None,
            follow_redirects: self.follow_redirects,
            enable_http2: self.enable_http2,
        }
    }
}

/// The sender's counters, rendered on trawl's `/metrics`.
#[derive(Debug, Default)]
pub struct RemoteWriteMetrics {
    /// Samples the receiver accepted.
    pub samples_sent: AtomicU64,
    /// Samples dropped after a non-retryable answer (4xx other than 429).
    pub samples_failed: AtomicU64,
    /// Samples sent again after a retryable failure.
    pub samples_retried: AtomicU64,
    /// Samples dropped for other reasons (shutdown deadline, write relabeling excluded).
    pub samples_dropped: AtomicU64,
    /// Samples removed by `write_relabel_configs`.
    pub samples_relabel_dropped: AtomicU64,
    /// Compressed bytes sent (accepted requests).
    pub bytes_sent: AtomicU64,
    /// Requests by outcome: 2xx, retried, failed.
    pub requests_ok: AtomicU64,
    /// Requests answered with a retryable error or not answered.
    pub requests_retried: AtomicU64,
    /// Requests answered with a non-retryable error.
    pub requests_failed: AtomicU64,
    /// Samples queued and not yet sent.
    pub pending_samples: AtomicI64,
    /// Newest timestamp accepted by the receiver, in ms.
    pub highest_sent_timestamp_ms: AtomicI64,
}

impl RemoteWriteMetrics {
    /// Appends this endpoint's metrics in the text format.
    pub fn render(&self, endpoint: &str, out: &mut String) {
        let e = crate::labels::escape_value(endpoint);
        let rows: [(&str, &str, &str, f64); 11] = [
            (
                "samples_sent_total",
                "counter",
                "Samples accepted by the receiver.",
                self.samples_sent.load(Relaxed) as f64,
            ),
            (
                "samples_failed_total",
                "counter",
                "Samples dropped after a non-retryable error.",
                self.samples_failed.load(Relaxed) as f64,
            ),
            (
                "samples_retried_total",
                "counter",
                "Samples sent again after a retryable error.",
                self.samples_retried.load(Relaxed) as f64,
            ),
            (
                "samples_dropped_total",
                "counter",
                "Samples dropped unsent (shutdown deadline).",
                self.samples_dropped.load(Relaxed) as f64,
            ),
            (
                "samples_relabel_dropped_total",
                "counter",
                "Samples removed by write_relabel_configs.",
                self.samples_relabel_dropped.load(Relaxed) as f64,
            ),
            (
                "bytes_sent_total",
                "counter",
                "Compressed bytes accepted by the receiver.",
                self.bytes_sent.load(Relaxed) as f64,
            ),
            (
                "requests_ok_total",
                "counter",
                "Requests answered with 2xx.",
                self.requests_ok.load(Relaxed) as f64,
            ),
            (
                "requests_retried_total",
                "counter",
                "Requests that failed retryably.",
                self.requests_retried.load(Relaxed) as f64,
            ),
            (
                "requests_failed_total",
                "counter",
                "Requests answered with a non-retryable error.",
                self.requests_failed.load(Relaxed) as f64,
            ),
            (
                "pending_samples",
                "gauge",
                "Samples queued and not yet accepted.",
                self.pending_samples.load(Relaxed) as f64,
            ),
            (
                "highest_sent_timestamp_seconds",
                "gauge",
                "Newest sample timestamp accepted by the receiver.",
                self.highest_sent_timestamp_ms.load(Relaxed) as f64 / 1000.0,
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP trawl_remote_write_{name} {help}\n# TYPE trawl_remote_write_{name} {kind}\n\
                 trawl_remote_write_{name}{{endpoint=\"{e}\"}} {v}"
            );
        }
    }
}

/// Why an endpoint refused work. Not retryable: the endpoint is shutting down or misconfigured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint has begun shutting down.
    #[error("remote write endpoint {0} is shut down")]
    Closed(String),
    /// The configured URL or headers are not usable.
    #[error("remote write endpoint {0}: {1}")]
    Config(String, String),
}

/// A running endpoint: its queue and sender shards.
pub struct Endpoint {
    name: String,
    metrics: Arc<RemoteWriteMetrics>,
    /// Free queue slots, in samples.
    room: Arc<Semaphore>,
    capacity: usize,
    shards: Vec<mpsc::UnboundedSender<Batch>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Tells the shards the time by which they must give up on a shutdown flush.
    deadline: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
    rules: Vec<RelabelConfig>,
    relabel_cache: std::sync::Mutex<RelabelCache>,
}

/// Per-series outcome of `write_relabel_configs`, keyed by the address of the shared label set
/// (the scrape loops reuse one `Arc` per series, so this is a pointer lookup per sample). The
/// entry keeps its `Arc`, so an address cannot be reused while cached; the cache is cleared when
/// it outgrows [`RELABEL_CACHE_MAX`] entries so churned series do not pile up.
type RelabelCache = HashMap<usize, (Arc<Labels>, Option<Arc<Labels>>)>;
const RELABEL_CACHE_MAX: usize = 1 << 20;

/// What every shard of an endpoint shares.
struct Shared {
    name: String,
    uri: hyper::Uri,
    client: Client,
    custom: Vec<(HeaderName, HeaderValue)>,
    http: HttpClientConfig,
    timeout: StdDuration,
    queue: QueueConfig,
    metrics: Arc<RemoteWriteMetrics>,
    external: Arc<Labels>,
}

impl Endpoint {
    /// Starts the sender tasks on the current Tokio runtime.
    pub fn start(
        cfg: RemoteWriteConfig,
        external_labels: Arc<Labels>,
        client: Client,
    ) -> Result<Endpoint, Error> {
        let name = cfg.name.clone().unwrap_or_else(|| cfg.url.clone());
        let uri: hyper::Uri = cfg.url.parse().map_err(|e| Error::Config(name.clone(), format!("{e}")))?;
        let metrics = Arc::new(RemoteWriteMetrics::default());
        let q = cfg.queue_config.clone();
        // Shards are fixed at min_shards for now; scaling with the backlog comes with the
        // outage buffer. One shard keeps up with a dense node: encoding is a copy per sample.
        let n = q.min_shards.max(1);
        let custom = cfg
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?))
            })
            .collect();
        let shared = Arc::new(Shared {
            name: name.clone(),
            uri,
            client,
            custom,
            http: cfg.http_client_config(),
            timeout: cfg.remote_timeout.get(),
            queue: q.clone(),
            metrics: metrics.clone(),
            external: external_labels,
        });
        let room = Arc::new(Semaphore::new(q.capacity));
        let (deadline, deadline_rx) = tokio::sync::watch::channel(None);
        let mut shards = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(shard(shared.clone(), rx, room.clone(), deadline_rx.clone())));
            shards.push(tx);
        }
        Ok(Endpoint {
            name,
            metrics,
            room,
            capacity: q.capacity,
            shards,
            tasks,
            deadline,
            rules: cfg.write_relabel_configs,
            relabel_cache: std::sync::Mutex::default(),
        })
    }

    /// The endpoint's name in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint's counters.
    pub fn metrics(&self) -> &Arc<RemoteWriteMetrics> {
        &self.metrics
    }

    /// Queues a scrape's batch. Waits while the queue is full (back-pressure on the scraper);
    /// never drops. Errors only once shutdown has begun.
    pub async fn send(&self, batch: Batch) -> Result<(), Error> {
        let mut batch = self.write_relabel(batch);
        while !batch.is_empty() {
            // A batch larger than the whole queue goes in pieces, so it can never wait forever.
            let take = batch.len().min(self.capacity);
            let rest = batch.split_off(take);
            let permits =
                self.room.acquire_many(take as u32).await.map_err(|_| Error::Closed(self.name.clone()))?;
            permits.forget();
            self.metrics.pending_samples.fetch_add(take as i64, Relaxed);
            if self.shards.len() == 1 {
                self.shards[0].send(batch).map_err(|_| Error::Closed(self.name.clone()))?;
            } else {
                let mut parts: Vec<Batch> = vec![Vec::new(); self.shards.len()];
                for s in batch {
                    let i = (series_hash(&s.series) % self.shards.len() as u64) as usize;
                    parts[i].push(s);
                }
                for (tx, part) in self.shards.iter().zip(parts) {
                    if !part.is_empty() {
                        tx.send(part).map_err(|_| Error::Closed(self.name.clone()))?;
                    }
                }
            }
            batch = rest;
        }
        Ok(())
    }

    fn write_relabel(&self, mut batch: Batch) -> Batch {
        if self.rules.is_empty() {
            return batch;
        }
        let mut cache = self.relabel_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > RELABEL_CACHE_MAX {
            cache.clear();
        }
        let before = batch.len();
        batch.retain_mut(|s| {
            let key = Arc::as_ptr(&s.series) as usize;
            let out = cache
                .entry(key)
                .or_insert_with(|| {
                    let mut l = (*s.series).clone();
                    let kept = crate::relabel::process(&self.rules, &mut l) && !l.is_empty();
                    (s.series.clone(), kept.then(|| Arc::new(l)))
                })
                .1
                .clone();
            match out {
                Some(l) => {
                    s.series = l;
                    true
                }
                None => false,
            }
        });
        self.metrics.samples_relabel_dropped.fetch_add((before - batch.len()) as u64, Relaxed);
        batch
    }

    /// Stops accepting, sends everything queued (with retries) until `deadline` from now, then
    /// stops; what is still unsent then is counted as dropped and logged.
    pub async fn shutdown(self, deadline: StdDuration) {
        let until = tokio::time::Instant::now() + deadline;
        let _ = self.deadline.send(Some(until));
        self.room.close();
        drop(self.shards);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A stable hash of a series' labels, for shard choice (the same across restarts).
fn series_hash(l: &Labels) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for x in l.iter() {
        h.update(x.name.as_bytes());
        h.update(&[0xff]);
        h.update(x.value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

/// One shard: batches samples and sends them in order, retrying until accepted or refused.
async fn shard(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    room: Arc<Semaphore>,
    deadline: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
) {
    let max = shared.queue.max_samples_per_send;
    let mut pending: Vec<Sample> = Vec::with_capacity(max);
    let mut encoder = Encoder::new(shared.external.clone());
    let mut open = true;
    while open || !pending.is_empty() {
        // Fill up to a full batch, or until `batch_send_deadline` after the first pending sample.
        let mut flush_at = (!pending.is_empty())
            .then(|| tokio::time::Instant::now() + shared.queue.batch_send_deadline.get());
        while open && pending.len() < max {
            let sleep_until = flush_at.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                b = rx.recv() => match b {
                    Some(b) => {
                        if flush_at.is_none() {
                            flush_at = Some(tokio::time::Instant::now() + shared.queue.batch_send_deadline.get());
                        }
                        pending.extend(b);
                    }
                    None => open = false,
                },
                _ = tokio::time::sleep_until(sleep_until), if flush_at.is_some() => break,
            }
        }
        while !pending.is_empty() {
            let n = pending.len().min(max);
            let chunk: Vec<Sample> = pending.drain(..n).collect();
            let sent = send_with_retries(&shared, &mut encoder, &chunk, &deadline).await;
            room.add_permits(n);
            shared.metrics.pending_samples.fetch_sub(n as i64, Relaxed);
            if !sent {
                // Shutdown deadline passed: everything still queued is lost.
                let mut lost = n + pending.len();
                pending.clear();
                while let Ok(b) = rx.try_recv() {
                    lost += b.len();
                }
                shared.metrics.samples_dropped.fetch_add(lost as u64, Relaxed);
                tracing::error!(endpoint = %shared.name, samples = lost, "Shutdown deadline reached; dropping unsent samples.");
                return;
            }
            if open && pending.len() < max {
                break;
            }
        }
    }
}

/// How a send attempt ended.
enum Outcome {
    Ok,
    /// Retry, after at least this long if the receiver said so.
    Retry(Option<StdDuration>, String),
    /// Drop the batch.
    Drop(String),
}

/// Sends one chunk until it is accepted (true), refused (true: it is dropped and counted), or the
/// shutdown deadline passes (false).
async fn send_with_retries(
    shared: &Shared,
    encoder: &mut Encoder,
    chunk: &[Sample],
    deadline: &tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
) -> bool {
    let body = match encoder.encode(chunk) {
        Ok(b) => Bytes::copy_from_slice(b),
        Err(e) => {
            shared.metrics.samples_failed.fetch_add(chunk.len() as u64, Relaxed);
            tracing::error!(endpoint = %shared.name, error = %e, samples = chunk.len(), "Encoding failed; dropping samples.");
            return true;
        }
    };
    let mut backoff = shared.queue.min_backoff.get();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match post(shared, body.clone()).await {
            Outcome::Ok => {
                let m = &shared.metrics;
                m.samples_sent.fetch_add(chunk.len() as u64, Relaxed);
                m.bytes_sent.fetch_add(body.len() as u64, Relaxed);
                m.requests_ok.fetch_add(1, Relaxed);
                if let Some(newest) = chunk.iter().map(|s| s.timestamp_ms).max() {
                    m.highest_sent_timestamp_ms.fetch_max(newest, Relaxed);
                }
                return true;
            }
            Outcome::Drop(reason) => {
                shared.metrics.samples_failed.fetch_add(chunk.len() as u64, Relaxed);
                shared.metrics.requests_failed.fetch_add(1, Relaxed);
                tracing::error!(endpoint = %shared.name, samples = chunk.len(), error = %reason, "Remote write refused the batch; dropping it (not retryable).");
                return true;
            }
            Outcome::Retry(after, reason) => {
                shared.metrics.requests_retried.fetch_add(1, Relaxed);
                shared.metrics.samples_retried.fetch_add(chunk.len() as u64, Relaxed);
                let wait = match after {
                    Some(a) => a.min(MAX_RETRY_AFTER),
                    None => jitter(backoff),
                };
                tracing::warn!(endpoint = %shared.name, attempt, error = %reason, retry_in = ?wait, "Remote write failed; retrying.");
                backoff = (backoff * 2).min(shared.queue.max_backoff.get());
                let give_up = *deadline.borrow();
                if let Some(d) = give_up
                    && tokio::time::Instant::now() + wait > d
                {
                    return false;
                }
                let mut deadline = deadline.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // Shutdown began while we waited: re-check against its deadline.
                    _ = deadline.changed() => {}
                }
            }
        }
    }
}

/// Full jitter in [d/2, d], so shards that failed together do not retry in lockstep.
fn jitter(d: StdDuration) -> StdDuration {
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

async fn post(shared: &Shared, body: Bytes) -> Outcome {
    let mut req = hyper::Request::post(shared.uri.clone())
        .header(header::CONTENT_ENCODING, "snappy")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(headers::VERSION, "0.1.0")
        .header(header::USER_AGENT, crate::USER_AGENT);
    for (k, v) in &shared.custom {
        req = req.header(k, v);
    }
    match crate::http_client::auth_header(&shared.http) {
        Ok(Some(a)) => req = req.header(header::AUTHORIZATION, a),
        Ok(None) => {}
        Err(e) => return Outcome::Retry(None, format!("credentials: {e}")),
    }
    let req = match req.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Outcome::Drop(format!("building the request: {e}")),
    };
    let resp = match tokio::time::timeout(shared.timeout, shared.client.request(req)).await {
        Err(_) => return Outcome::Retry(None, "request timed out".into()),
        Ok(Err(e)) => return Outcome::Retry(None, crate::fetch::error_chain(&e)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        // The spec: MUST ignore the body of a 2xx. Drain it so the connection can be reused.
        let _ = tokio::time::timeout(shared.timeout, resp.into_body().collect()).await;
        return Outcome::Ok;
    }
    let retry_after =
        resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let body = match tokio::time::timeout(shared.timeout, resp.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY_BYTES)]).into_owned();
    let reason = format!("server returned HTTP status {status}: {}", text.trim_end());
    if status.is_server_error() || (status.as_u16() == 429 && shared.queue.retry_on_http_429) {
        Outcome::Retry(retry_after, reason)
    } else {
        Outcome::Drop(reason)
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<StdDuration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(StdDuration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<RemoteWriteConfig, String> {
        serde_saphyr::from_str::<RemoteWriteConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_validation() {
        let c = load("url: http://r:9090/api/v1/write\n").unwrap();
        assert_eq!(c.queue_config, QueueConfig::default());
        assert_eq!(c.remote_timeout, Duration::from_secs(30));
        // (yaml, fragment, why)
        let bad: &[(&str, &str, &str)] = &[
            ("url: ftp://r/\n", "must be http", "scheme"),
            ("url: http://r/\nheaders:\n  Content-Type: x\n", "reserved header", "reserved header"),
            ("url: http://r/\nqueue_config:\n  capacity: 0\n", "must be positive", "zero capacity"),
            ("url: http://r/\nbogus: 1\n", "unknown field", "unknown field"),
            ("url: http://r/\nbearer_token: a\nbasic_auth: {username: u}\n", "at most one", "two auths"),
        ];
        for (y, frag, why) in bad {
            let e = load(y).unwrap_err();
            assert!(e.contains(frag), "{why}: {e}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(StdDuration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(StdDuration::ZERO),
            "a past date: retry now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let j = jitter(StdDuration::from_millis(100));
            assert!(j >= StdDuration::from_millis(50) && j <= StdDuration::from_millis(100));
        }
    }
}
