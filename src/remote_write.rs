//! Remote-write sender (1.0, and 2.0 with fallback): one [`Endpoint`] per `remote_write` entry.
//!
//! What this is: the endpoint handle the pipeline feeds batches into. Behind it, one file per
//! floor, each importing only the floors below it:
//!
//! ```text
//! remote_write.rs  Endpoint: starts the queue, shutdown
//!   queue          bounded, sharded queue (per-series order kept, shard count adjusted to the
//!    │             load as Prometheus' queue manager does), spills to disk, replays the disk
//!    ├─► request   splits by tenant, encodes, picks the protocol (2.0, or 1.0 on fallback)
//!    │    └─► retry    the HTTP POST to the Receiver, with retries and backoff
//!    └─► disk      the durable outage buffer (`--storage.path`): pure storage, no HTTP
//!   record         the on-disk record format and the request Body, used by disk and sender
//!   metrics        the sender's and the disk buffer's own metrics
//!   config         the `remote_write` block, checked at load time
//! ```
//!
//! Imports, before (issue 17): `disk → retry, request` (for replay); `request → retry,
//! remote_write`; `retry → remote_write`; `queue → disk, request, retry, remote_write`: three
//! files imported their parent, which imported them back, and `disk`, the lowest floor, climbed
//! to the HTTP side. After: `queue → request, retry, disk, record, metrics`; `request → retry,
//! record, config`; `retry → record, metrics, config`; `disk → record, metrics, config`;
//! `record`, `metrics` and `config` import nothing of `remote_write`; `remote_write.rs` imports
//! its children only. Without `--storage.path` nothing is persisted: what is queued at exit is
//! flushed up to a deadline, then counted as dropped.
//! Beside the queue, `metadata` sends remote write 1.0 metadata (`metadata_config`: the TYPE,
//! HELP and UNIT of the targets' metric families every `send_interval`, in requests of their
//! own, as Prometheus' metadata watcher does; 2.0 carries it inline with each series).
//! Exemplars and native histograms are sent when `send_exemplars` / `send_native_histograms`
//! say so, as Prometheus' queue manager does.
//!
//! # Protocol
//!
//! `protobuf_message: prometheus.WriteRequest` (default) sends remote write 1.0;
//! `io.prometheus.write.v2.Request` sends 2.0 (`Content-Type:
//! application/x-protobuf;proto=io.prometheus.write.v2.Request`, version `2.0.0`): a symbols
//! table, label refs, samples, metadata (type/help/unit) and exemplars per series. A receiver
//! that turns 2.0 down (415; 400 before any 2.0 request was confirmed; or a 2xx without
//! `X-Prometheus-Remote-Write-*-Written` headers, which is how a 1.x receiver such as
//! Prometheus 2.42 answers a 2.0 body it decoded as an empty `WriteRequest`) makes the endpoint
//! re-send that batch as 1.0 and stay on 1.0, with one WARN line;
//! `trawl_remote_write_protocol{version}` shows which is in use. The `*-Written` headers are
//! counted (`trawl_remote_write_written_total`), and a 2xx confirming fewer items than a 2.0
//! request held is counted (`trawl_remote_write_unwritten_total` per item,
//! `trawl_remote_write_requests_partially_written_total` per request) and logged once per
//! endpoint (a receiver that does not confirm exemplars would otherwise log it on every request).
//!
//! Each request is snappy-compressed (raw block) and POSTed with the reserved headers
//! (`Content-Encoding`, `Content-Type`, `X-Prometheus-Remote-Write-Version`, `User-Agent`) that
//! configured `headers` cannot override. 5xx, 429 (when `retry_on_http_429`) and network errors
//! are retried with the *same* body, with jittered exponential backoff or the server's
//! `Retry-After`; any other non-2xx drops the request's samples with one ERROR log carrying the
//! response body. Response bodies of 2xx answers are never interpreted. Credential files
//! (`bearer_token_file`, `password_file`, `credentials_file`) are read for every request, so a
//! rotated token is used from the next request on.
//!
//! # Tenants
//!
//! `tenant: {label: namespace, default: shared}` splits every request by the value of `label`
//! (after external labels and write relabeling) and sends each part with that value as
//! `X-Scope-OrgID` (Cortex, Mimir): a request never mixes tenants. The key follows
//! cortex-tenant's `tenant.label` / `tenant.default`, the proxy Mimir users run for this today.
//! Series without the label use `default`, or are dropped and counted
//! (`samples_dropped_total{reason="no_tenant"}`) when it is unset.
//!
//! # Memory bounds
//!
//! `queue_config.capacity` samples per endpoint, queued or in flight, across all shards;
//! [`Endpoint::send`] waits for room (back-pressure on the scrapers) rather than dropping.
//! Each shard holds one encoder with reused buffers of about one request's size.

// Top to bottom: each file imports only the ones listed after it (and `crate::` modules).
mod queue;
mod metadata;
mod request;
mod retry;
mod disk;
pub(crate) mod record;
mod metrics;
mod config;

pub use config::{
    DiskBufferConfig, MetadataConfig, PROTOBUF_MESSAGE_V1, PROTOBUF_MESSAGE_V2, QueueConfig,
    RemoteWriteConfig, TenantConfig, header,
};
pub use metadata::MetadataSource;
pub use metrics::{DiskMetrics, EndpointsSection, RemoteWriteMetrics};

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::batch::Batch;
use crate::http_client;
use crate::labels::Labels;

/// Why an endpoint could not start or no longer accepts samples. Not retryable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config failed validation.
    #[error("invalid remote_write config: {0}")]
    Config(String),
    /// [`Endpoint::shutdown`] has begun (or the endpoint's tasks were stopped).
    #[error("remote-write endpoint {0} is shutting down")]
    ShuttingDown(String),
    /// The disk buffer under `--storage.path` cannot be opened.
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
}

/// One remote-write destination: a bounded queue feeding sender shards.
#[derive(Debug)]
pub struct Endpoint {
    name: String,
    /// `metadata_config` (1.0 metadata, sent once [`Endpoint::send_metadata_of`] gives a source).
    metadata_config: MetadataConfig,
    /// Configured for remote write 1.0, whose messages carry only samples: metadata,
    /// exemplars and created timestamps are dropped on entry instead of travelling through
    /// the queue (carrying them cost ~4 % of trawl's CPU at 1M series, `perf/README.md`).
    samples_only: bool,
    /// `send_exemplars` (Prometheus' default: false, for 1.0 and 2.0 alike).
    send_exemplars: bool,
    /// `send_native_histograms` (Prometheus' default: false; the samples are then not sent).
    send_native_histograms: bool,
    metrics: Arc<RemoteWriteMetrics>,
    disk_metrics: Option<Arc<DiskMetrics>>,
    queue: queue::Queue,
}

impl Endpoint {
    /// Starts the sender task(s) on the current Tokio runtime, memory only.
    pub fn start(
        cfg: RemoteWriteConfig,
        external_labels: Arc<Labels>,
        client: http_client::Client,
    ) -> Result<Endpoint, Error> {
        Self::start_with_storage(cfg, external_labels, client, None)
    }

    /// Starts the sender task(s); with `storage` (`--storage.path`), batches the receiver does
    /// not take in time go to a disk buffer under it, and what a previous run left there is
    /// replayed first.
    pub fn start_with_storage(
        cfg: RemoteWriteConfig,
        external_labels: Arc<Labels>,
        client: http_client::Client,
        storage: Option<&std::path::Path>,
    ) -> Result<Endpoint, Error> {
        cfg.validate().map_err(Error::Config)?;
        let uri = config::parse_url(&cfg.url).map_err(Error::Config)?;
        let mut headers = Vec::with_capacity(cfg.headers.len());
        for (name, value) in &cfg.headers {
            let name = hyper::header::HeaderName::try_from(name.as_str())
                .map_err(|e| Error::Config(format!("header {name:?}: {e}")))?;
            let value = hyper::header::HeaderValue::try_from(value.as_str())
                .map_err(|e| Error::Config(format!("header {name:?}: {e}")))?;
            headers.push((name, value));
        }
        let name = cfg.endpoint_name().to_owned();
        let sigv4 = match &cfg.sigv4 {
            Some(s) => Some(crate::sigv4::Signer::new(s).map_err(|e| Error::Config(e.to_string()))?),
            None => None,
        };
        let disk = match storage {
            Some(root) => {
                let dir = disk::endpoint_dir(root, &cfg.url, cfg.name.as_deref());
                Some(Arc::new(disk::DiskQueue::open(dir, &name, &cfg.url, cfg.disk_buffer.clone())?))
            }
            None => None,
        };
        let disk_metrics = disk.as_ref().map(|d| d.metrics().clone());
        let metrics = Arc::new(RemoteWriteMetrics::default());
        metrics.queue_capacity.store(cfg.queue_config.capacity as u64, Relaxed);
        let v2 = cfg.protobuf_message.as_deref() == Some(PROTOBUF_MESSAGE_V2);
        metrics.protocol_v2.store(v2, Relaxed);
        let receiver = retry::Receiver {
            name: name.clone(),
            uri,
            headers,
            http: retry::Auth { http: cfg.http_client_config(), sigv4 },
            client,
            remote_timeout: cfg.remote_timeout.get(),
            min_backoff: cfg.queue_config.min_backoff.get(),
            max_backoff: cfg.queue_config.max_backoff.get(),
            retry_on_http_429: cfg.queue_config.retry_on_http_429,
            tenant: cfg.tenant.clone(),
            metrics: metrics.clone(),
        };
        let queue = queue::Queue::start(queue::Settings {
            receiver,
            external: external_labels,
            relabel: cfg.write_relabel_configs,
            capacity: cfg.queue_config.capacity,
            min_shards: cfg.queue_config.min_shards,
            max_shards: cfg.queue_config.max_shards,
            max_samples_per_send: cfg.queue_config.max_samples_per_send,
            batch_send_deadline: cfg.queue_config.batch_send_deadline.get(),
            sample_age_limit: cfg.queue_config.sample_age_limit.get(),
            disk,
        });
        tracing::info!(
            endpoint = %name,
            shards = cfg.queue_config.min_shards,
            capacity = cfg.queue_config.capacity,
            disk_buffer = disk_metrics.is_some(),
            "Remote-write endpoint started."
        );
        Ok(Endpoint {
            name,
            metadata_config: cfg.metadata_config.clone(),
            samples_only: !v2,
            send_exemplars: cfg.send_exemplars,
            send_native_histograms: cfg.send_native_histograms,
            metrics,
            disk_metrics,
            queue,
        })
    }

    /// Sends the metric metadata of `source` every `metadata_config.send_interval` while the
    /// endpoint speaks remote write 1.0, unless `metadata_config.send` is false (see
    /// `remote_write::metadata`).
    pub fn send_metadata_of(&mut self, source: MetadataSource) {
        if self.metadata_config.send {
            self.queue.send_metadata(self.metadata_config.clone(), source);
        }
    }

    /// Enqueues a scrape's batch. Waits when the queue is full (back-pressure on the scraper),
    /// never drops silently; returns `Err` only after shutdown began.
    pub async fn send(&self, batch: impl Into<Batch>) -> Result<(), Error> {
        let mut batch = batch.into();
        // What Prometheus' queue manager leaves out: native histograms unless
        // `send_native_histograms`, exemplars unless `send_exemplars` (`AppendHistograms`,
        // `AppendExemplars` return early).
        if !self.send_native_histograms && !batch.histograms.is_empty() {
            batch.drop_histogram_samples();
        }
        if self.samples_only {
            let exemplars = std::mem::take(&mut batch.exemplars);
            batch.drop_extras();
            if self.send_exemplars {
                batch.exemplars = exemplars;
            }
        } else if !self.send_exemplars {
            batch.exemplars.clear();
        }
        self.queue.send(batch).await.map_err(|lost| {
            if lost > 0 {
                self.metrics.samples_dropped_shutdown_total.fetch_add(lost as u64, Relaxed);
            }
            Error::ShuttingDown(self.name.clone())
        })
    }

    /// This endpoint's metrics.
    pub fn metrics(&self) -> &Arc<RemoteWriteMetrics> {
        &self.metrics
    }

    /// The disk buffer's metrics, when trawl runs with `--storage.path`.
    pub fn disk_metrics(&self) -> Option<&Arc<DiskMetrics>> {
        self.disk_metrics.as_ref()
    }

    /// The endpoint's name: the configured `name`, or else the URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops accepting, flushes everything queued (with retries) until `deadline`, then stops;
    /// samples still unsent at the deadline are counted as dropped and logged.
    pub async fn shutdown(self, deadline: std::time::Duration) {
        let started = tokio::time::Instant::now();
        self.queue.shutdown(started + deadline).await;
        let lost = self.metrics.queue_length.swap(0, Relaxed).max(0) as u64;
        if lost > 0 {
            self.metrics.samples_dropped_shutdown_total.fetch_add(lost, Relaxed);
            let deadline_s = deadline.as_secs_f64();
            if self.disk_metrics.is_none() {
                // Memory only: say what would have kept them.
                tracing::error!(
                    endpoint = %self.name,
                    samples = lost,
                    deadline_s,
                    "Dropped {lost} samples that the receiver did not take before the shutdown \
                     deadline ({deadline_s:.0}s); with --storage.path they would have been kept on disk \
                     and sent after the restart."
                );
            } else {
                tracing::error!(
                    endpoint = %self.name,
                    samples = lost,
                    deadline_s,
                    "Dropped {lost} samples that were neither sent nor written to the disk buffer before \
                     the shutdown deadline ({deadline_s:.0}s)."
                );
            }
        } else {
            tracing::info!(
                endpoint = %self.name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Remote-write endpoint flushed and stopped."
            );
        }
    }
}
