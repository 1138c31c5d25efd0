//! Remote-write sender (1.0, and 2.0 with fallback): one [`Endpoint`] per `remote_write` entry.
//!
//! What this is: the `remote_write` config block (Prometheus' dialect, checked at load time), the
//! sender's own metrics, and the endpoint handle the pipeline feeds batches into. Behind it,
//! `queue` keeps a bounded, sharded queue (per-series order kept, shard count adjusted to the
//! load as Prometheus' queue manager does), `request` splits by tenant, encodes and picks the
//! protocol, and `retry` makes the HTTP requests, with retries. With `--storage.path`, `disk`
//! adds a durable outage buffer per endpoint (see its docs); without it nothing is persisted:
//! what is queued at exit is flushed up to a deadline, then counted as dropped.
//! What this is not: 1.0 metadata (`metadata_config` is accepted so Prometheus configs load;
//! 1.0 sends none, 2.0 sends it inline). Exemplars and native histograms are sent when
//! `send_exemplars` / `send_native_histograms` say so, as Prometheus' queue manager does.
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

mod disk;
mod queue;
mod request;
mod retry;

pub use disk::{DiskBufferConfig, DiskMetrics};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::batch::Batch;
use crate::config::common::{Duration, HttpClientConfig};
use crate::http_client;
use crate::labels::Labels;
use crate::relabel::RelabelConfig;

/// Header names remote write reserves; configured `headers` may not set them (any case).
pub mod header {
    /// `Content-Encoding`, always `snappy`.
    pub const CONTENT_ENCODING: &str = "Content-Encoding";
    /// `Content-Type`, always `application/x-protobuf` for 1.0.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// The protocol version header, `0.1.0` for 1.0.
    pub const VERSION: &str = "X-Prometheus-Remote-Write-Version";
    /// `User-Agent`, `trawl/<version>`.
    pub const USER_AGENT: &str = "User-Agent";
    /// All of the above.
    pub const RESERVED: [&str; 4] = [CONTENT_ENCODING, CONTENT_TYPE, VERSION, USER_AGENT];
    /// The tenant header of Cortex, Mimir and Loki; set per request when `tenant` is configured.
    pub const ORG_ID: &str = "X-Scope-OrgID";
    /// Response header: samples the receiver wrote (RW 2.0).
    pub const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
    /// Response header: native histograms the receiver wrote (RW 2.0).
    pub const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
    /// Response header: exemplars the receiver wrote (RW 2.0).
    pub const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";
}

/// The remote write 1.0 message (the default).
pub const PROTOBUF_MESSAGE_V1: &str = "prometheus.WriteRequest";
/// The remote write 2.0 message.
pub const PROTOBUF_MESSAGE_V2: &str = "io.prometheus.write.v2.Request";

/// `tenant`: split each request by a label's value and send it as `X-Scope-OrgID`.
///
/// Named after cortex-tenant (`tenant: {label, default, label_remove}`), the proxy Mimir and
/// Cortex users put in front of a single-tenant Prometheus for exactly this; Vector's
/// `tenant_id` template and vmagent's per-tenant URLs do the same job with other spellings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The label whose value is the tenant, e.g. `namespace`. Read after external labels and
    /// `write_relabel_configs`, so a rule can derive it.
    pub label: String,
    /// Tenant of series without the label; when unset such series are dropped (counted as
    /// `samples_dropped_total{reason="no_tenant"}`), since a multi-tenant receiver refuses
    /// requests without a tenant anyway.
    #[serde(default)]
    pub default: Option<String>,
}

/// `queue_config`, with Prometheus' defaults except `retry_on_http_429`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Samples queued or in flight per endpoint before [`Endpoint::send`] waits. Prometheus
    /// counts this per shard; trawl bounds the whole endpoint, which keeps memory predictable.
    pub capacity: usize,
    /// Most concurrent senders.
    pub max_shards: usize,
    /// Fewest concurrent senders (and how many run at start).
    pub min_shards: usize,
    /// Most samples per request.
    pub max_samples_per_send: usize,
    /// Longest a sample waits for its request to fill up.
    pub batch_send_deadline: Duration,
    /// First retry delay; doubled per retry.
    pub min_backoff: Duration,
    /// Longest retry delay (a server's `Retry-After` may ask for longer).
    pub max_backoff: Duration,
    /// Whether 429 Too Many Requests is retried.
    ///
    /// Prometheus defaults this to false; trawl defaults it to true. Prometheus re-reads
    /// unsent samples from its WAL, trawl has no WAL: a dropped batch is lost for good, while
    /// the receiver only asked us to slow down (Cortex, Mimir and Thanos answer 429 for
    /// per-tenant rate limits). Retrying honours `Retry-After` and backs off, and the bounded
    /// queue pushes back on the scrapers instead of growing. RW 1.0 allows retrying 429 (MAY).
    pub retry_on_http_429: bool,
    /// Samples older than this when their request is built are dropped (0: no limit).
    pub sample_age_limit: Duration,
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
            sample_age_limit: Duration::from_secs(0),
        }
    }
}

/// `metadata_config`: accepted for compatibility; trawl sends no metadata yet.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// Whether metadata would be sent (Prometheus: true).
    pub send: bool,
    /// How often (Prometheus: 1m).
    pub send_interval: Duration,
    /// Most metadata entries per request (Prometheus: 500).
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig { send: true, send_interval: Duration::from_secs(60), max_samples_per_send: 500 }
    }
}

/// One `remote_write` entry. The HTTP client fields are direct fields rather than a flattened
/// [`HttpClientConfig`] because serde's `flatten` ignores `deny_unknown_fields`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawRemoteWriteConfig")]
pub struct RemoteWriteConfig {
    /// Where to POST; http or https with a host.
    pub url: String,
    /// Name used in logs and metrics instead of the URL.
    pub name: Option<String>,
    /// Extra request headers; may not set the reserved ones (see [`header::RESERVED`]).
    pub headers: BTreeMap<String, String>,
    /// Timeout of one request, body included.
    pub remote_timeout: Duration,
    /// Queue and retry tuning.
    pub queue_config: QueueConfig,
    /// Relabeling applied to every series before it is sent; a dropped series is not sent.
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// `prometheus.WriteRequest` (the default, 1.0) or `io.prometheus.write.v2.Request` (2.0,
    /// with fallback to 1.0 when the receiver does not take it).
    pub protobuf_message: Option<String>,
    /// Split requests by tenant, taken from a label.
    pub tenant: Option<TenantConfig>,
    /// Accepted; trawl sends no exemplars.
    pub send_exemplars: bool,
    /// Accepted; trawl sends no native histograms.
    pub send_native_histograms: bool,
    /// Accepted; trawl sends no metadata.
    pub metadata_config: MetadataConfig,
    /// Caps of the on-disk outage buffer; used only with `--storage.path`.
    pub disk_buffer: DiskBufferConfig,
    /// The HTTP client settings (auth, TLS, proxy): Prometheus' inline `HTTPClientConfig`.
    pub http: HttpClientConfig,
    /// Sign requests with AWS Signature Version 4 (Amazon Managed Service for Prometheus).
    pub sigv4: Option<crate::sigv4::SigV4Config>,
}

crate::config::common::with_http_client_fields! {
/// The wire shape of [`RemoteWriteConfig`]; checked by `TryFrom`, so errors carry the YAML
/// position of the entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteWriteConfig {
    url: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "crate::config::common::string_map")]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_remote_timeout")]
    remote_timeout: Duration,
    #[serde(default)]
    queue_config: QueueConfig,
    #[serde(default)]
    write_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    protobuf_message: Option<String>,
    #[serde(default)]
    tenant: Option<TenantConfig>,
    #[serde(default)]
    send_exemplars: bool,
    #[serde(default)]
    send_native_histograms: bool,
    #[serde(default)]
    metadata_config: MetadataConfig,
    #[serde(default)]
    disk_buffer: DiskBufferConfig,
    #[serde(default)]
    sigv4: Option<crate::sigv4::SigV4Config>,
}
}

fn default_remote_timeout() -> Duration {
    Duration::from_secs(30)
}

impl TryFrom<RawRemoteWriteConfig> for RemoteWriteConfig {
    type Error = String;

    fn try_from(r: RawRemoteWriteConfig) -> Result<Self, String> {
        let http = r.http_client_config();
        let cfg = RemoteWriteConfig {
            url: r.url,
            name: r.name,
            headers: r.headers,
            remote_timeout: r.remote_timeout,
            queue_config: r.queue_config,
            write_relabel_configs: r.write_relabel_configs,
            protobuf_message: r.protobuf_message,
            tenant: r.tenant,
            send_exemplars: r.send_exemplars,
            send_native_histograms: r.send_native_histograms,
            metadata_config: r.metadata_config,
            disk_buffer: r.disk_buffer,
            http,
            sigv4: r.sigv4,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl RemoteWriteConfig {
    /// A config for `url` with every default, as if only `url:` were written.
    pub fn new(url: impl Into<String>) -> Self {
        RemoteWriteConfig {
            url: url.into(),
            name: None,
            headers: BTreeMap::new(),
            remote_timeout: default_remote_timeout(),
            queue_config: QueueConfig::default(),
            write_relabel_configs: Vec::new(),
            protobuf_message: None,
            tenant: None,
            send_exemplars: false,
            send_native_histograms: false,
            metadata_config: MetadataConfig::default(),
            disk_buffer: DiskBufferConfig::default(),
            http: HttpClientConfig::default(),
            sigv4: None,
        }
    }

    /// The HTTP client part, as the shared [`HttpClientConfig`].
    pub fn http_client_config(&self) -> HttpClientConfig {
        self.http.clone()
    }

    /// The name used in logs and the `endpoint` metric label: `name`, or else the URL.
    pub fn endpoint_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }

    /// The load-time checks. [`Endpoint::start`] runs them again for configs built in code.
    pub fn validate(&self) -> Result<(), String> {
        parse_url(&self.url)?;
        for (name, value) in &self.headers {
            if header::RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(format!("remote_write header {name:?} is reserved and cannot be set"));
            }
            hyper::header::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("remote_write header name {name:?} is not valid"))?;
            hyper::header::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("remote_write header {name:?} has a value not allowed in HTTP"))?;
        }
        match self.protobuf_message.as_deref() {
            None | Some(PROTOBUF_MESSAGE_V1 | PROTOBUF_MESSAGE_V2) => {}
            Some(other) => {
                return Err(format!(
                    "protobuf_message {other:?} is not supported; use {PROTOBUF_MESSAGE_V1:?} (remote \
                     write 1.0) or {PROTOBUF_MESSAGE_V2:?} (2.0)"
                ));
            }
        }
        if let Some(t) = &self.tenant {
            if !crate::labels::is_valid_label_name(&t.label) {
                return Err(format!("tenant.label {:?} is not a valid label name", t.label));
            }
            if self.headers.keys().any(|h| h.eq_ignore_ascii_case(header::ORG_ID)) {
                return Err(format!("headers cannot set {} when tenant is configured", header::ORG_ID));
            }
            if let Some(d) = &t.default
                && (d.is_empty() || hyper::header::HeaderValue::try_from(d.as_str()).is_err())
            {
                return Err(format!("tenant.default {d:?} is not a valid header value"));
            }
        }
        if self.remote_timeout.get().is_zero() {
            return Err("remote_timeout must be greater than 0".into());
        }
        let q = &self.queue_config;
        if q.capacity == 0 || q.capacity > MAX_CAPACITY {
            return Err(format!("queue_config.capacity must be between 1 and {MAX_CAPACITY}"));
        }
        if q.max_samples_per_send == 0 {
            return Err("queue_config.max_samples_per_send must be greater than 0".into());
        }
        if q.min_shards == 0 || q.max_shards < q.min_shards {
            return Err("queue_config needs 1 <= min_shards <= max_shards".into());
        }
        if q.batch_send_deadline.get().is_zero() {
            return Err("queue_config.batch_send_deadline must be greater than 0".into());
        }
        if q.min_backoff > q.max_backoff {
            return Err("queue_config.min_backoff must not exceed max_backoff".into());
        }
        http_client::validate(&self.http).map_err(|e| e.to_string())?;
        // Prometheus' validateAuthConfigs, after HTTPClientConfig.Validate has turned a legacy
        // bearer token into `authorization`.
        let h = &self.http;
        let bearer = h.bearer_token.is_some() || h.bearer_token_file.is_some();
        let auth: Vec<&str> = [
            (h.basic_auth.is_some(), "basic_auth"),
            (h.authorization.is_some() || bearer, "authorization"),
            (h.oauth2.is_some(), "oauth2"),
            (self.sigv4.is_some(), "sigv4"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if auth.len() > 1 {
            return Err(format!(
                "at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam must be \
                 configured. Currently configured: [{}]",
                auth.join(" ")
            ));
        }
        if let Some(s) = &self.sigv4 {
            s.validate()?;
        }
        Ok(())
    }
}

/// Largest `queue_config.capacity`: what one semaphore acquire can ask for.
const MAX_CAPACITY: usize = u32::MAX as usize;

fn parse_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("remote_write url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("remote_write url {url:?} must use http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("remote_write url {url:?} has no host"));
    }
    Ok(uri)
}

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

/// The sender's own counters and gauges, one set per endpoint. Updated with relaxed atomics;
/// read by [`render`](Self::render).
#[derive(Debug, Default)]
pub struct RemoteWriteMetrics {
    /// Samples in requests the receiver accepted (2xx).
    pub samples_sent_total: AtomicU64,
    /// Samples dropped after a non-retryable answer (4xx other than 429, 3xx).
    pub samples_failed_total: AtomicU64,
    /// Samples in requests that were retried, counted per retry.
    pub samples_retried_total: AtomicU64,
    /// Samples still unsent when the shutdown deadline passed.
    pub samples_dropped_shutdown_total: AtomicU64,
    /// Samples older than `sample_age_limit` when their request was built.
    pub samples_dropped_too_old_total: AtomicU64,
    /// Samples whose series `write_relabel_configs` dropped.
    pub samples_dropped_relabel_total: AtomicU64,
    /// Compressed bytes of the requests the receiver accepted.
    pub bytes_sent_total: AtomicU64,
    /// Requests answered 2xx.
    pub requests_success_total: AtomicU64,
    /// Attempts that failed with a retryable error (5xx, 429, network, timeout).
    pub requests_retried_total: AtomicU64,
    /// Requests dropped after a non-retryable answer.
    pub requests_failed_total: AtomicU64,
    /// Samples accepted by [`Endpoint::send`] and not yet sent, failed or dropped.
    pub queue_length: AtomicI64,
    /// `queue_config.capacity`.
    pub queue_capacity: AtomicU64,
    /// Current number of shards.
    pub shards: AtomicU64,
    /// Highest sample timestamp the receiver accepted, in ms (0: none yet).
    pub highest_sent_timestamp_ms: AtomicI64,
    /// When the last failed attempt happened, in ms since the epoch (0: never).
    pub last_send_error_timestamp_ms: AtomicI64,
    /// Samples without the tenant label (and no `tenant.default`).
    pub samples_dropped_no_tenant_total: AtomicU64,
    /// Exemplars in requests the receiver accepted.
    pub exemplars_sent_total: AtomicU64,
    /// Sum of `X-Prometheus-Remote-Write-Samples-Written` answers.
    pub samples_written_total: AtomicU64,
    /// Sum of `X-Prometheus-Remote-Write-Histograms-Written` answers.
    pub histograms_written_total: AtomicU64,
    /// Sum of `X-Prometheus-Remote-Write-Exemplars-Written` answers.
    pub exemplars_written_total: AtomicU64,
    /// Samples of accepted 2.0 requests the receiver did not confirm as written.
    pub samples_unwritten_total: AtomicU64,
    /// Exemplars of accepted 2.0 requests the receiver did not confirm as written.
    pub exemplars_unwritten_total: AtomicU64,
    /// Accepted 2.0 requests whose `*-Written` headers confirmed fewer items than sent.
    pub requests_partially_written_total: AtomicU64,
    /// Whether the "confirmed fewer items than sent" warning was logged (once per endpoint).
    pub partially_written_warned: AtomicBool,
    /// Whether requests are sent as 2.0 (false: 1.0, configured or fallen back to).
    pub protocol_v2: AtomicBool,
    /// Whether a 2.0 request was ever confirmed (2xx with `*-Written` headers); after that a
    /// 400 is a refusal of the data, not of the protocol.
    pub v2_confirmed: AtomicBool,
    /// The last failed attempt's error, for status pages.
    last_send_error: Mutex<Option<String>>,
}

/// One metric family: name suffix, type, help, and how to read it for one endpoint.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// `(extra label, value)` pairs for one endpoint; the extra label is `""` for none.
    values: fn(&RemoteWriteMetrics) -> Vec<(&'static str, f64)>,
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Relaxed) as f64
}

const FAMILIES: &[Family] = &[
    Family {
        name: "samples_sent_total",
        kind: "counter",
        help: "Samples in remote-write requests the receiver accepted.",
        values: |m| vec![("", load(&m.samples_sent_total))],
    },
    Family {
        name: "samples_failed_total",
        kind: "counter",
        help: "Samples dropped after a non-retryable answer from the receiver.",
        values: |m| vec![("", load(&m.samples_failed_total))],
    },
    Family {
        name: "samples_retried_total",
        kind: "counter",
        help: "Samples in remote-write requests that were retried, counted per retry.",
        values: |m| vec![("", load(&m.samples_retried_total))],
    },
    Family {
        name: "samples_dropped_total",
        kind: "counter",
        help: "Samples dropped before being sent, by reason.",
        values: |m| {
            vec![
                ("reason=\"shutdown\"", load(&m.samples_dropped_shutdown_total)),
                ("reason=\"too_old\"", load(&m.samples_dropped_too_old_total)),
                ("reason=\"write_relabel\"", load(&m.samples_dropped_relabel_total)),
                ("reason=\"no_tenant\"", load(&m.samples_dropped_no_tenant_total)),
            ]
        },
    },
    Family {
        name: "exemplars_sent_total",
        kind: "counter",
        help: "Exemplars in remote-write requests the receiver accepted.",
        values: |m| vec![("", load(&m.exemplars_sent_total))],
    },
    Family {
        name: "written_total",
        kind: "counter",
        help: "Items the receiver confirmed in X-Prometheus-Remote-Write-*-Written headers, by kind.",
        values: |m| {
            vec![
                ("kind=\"samples\"", load(&m.samples_written_total)),
                ("kind=\"histograms\"", load(&m.histograms_written_total)),
                ("kind=\"exemplars\"", load(&m.exemplars_written_total)),
            ]
        },
    },
    Family {
        name: "unwritten_total",
        kind: "counter",
        help: "Items of accepted remote-write 2.0 requests the receiver did not confirm as written.",
        values: |m| {
            vec![
                ("kind=\"samples\"", load(&m.samples_unwritten_total)),
                ("kind=\"exemplars\"", load(&m.exemplars_unwritten_total)),
            ]
        },
    },
    Family {
        name: "requests_partially_written_total",
        kind: "counter",
        help: "Accepted remote-write 2.0 requests whose X-Prometheus-Remote-Write-*-Written headers \
               confirmed fewer items than sent.",
        values: |m| vec![("", load(&m.requests_partially_written_total))],
    },
    Family {
        name: "protocol",
        kind: "gauge",
        help: "The remote-write protocol version in use (1 for the labelled version).",
        values: |m| {
            let v2 = m.protocol_v2.load(Relaxed);
            vec![("version=\"2.0\"", f64::from(u8::from(v2))), ("version=\"1.0\"", f64::from(u8::from(!v2)))]
        },
    },
    Family {
        name: "bytes_sent_total",
        kind: "counter",
        help: "Compressed bytes of remote-write requests the receiver accepted.",
        values: |m| vec![("", load(&m.bytes_sent_total))],
    },
    Family {
        name: "requests_total",
        kind: "counter",
        help: "Remote-write request attempts, by outcome.",
        values: |m| {
            vec![
                ("outcome=\"success\"", load(&m.requests_success_total)),
                ("outcome=\"retried\"", load(&m.requests_retried_total)),
                ("outcome=\"failed\"", load(&m.requests_failed_total)),
            ]
        },
    },
    Family {
        name: "queue_length",
        kind: "gauge",
        help: "Samples queued or in flight.",
        values: |m| vec![("", m.queue_length.load(Relaxed) as f64)],
    },
    Family {
        name: "queue_capacity",
        kind: "gauge",
        help: "Most samples queued or in flight before senders wait.",
        values: |m| vec![("", load(&m.queue_capacity))],
    },
    Family {
        name: "shards",
        kind: "gauge",
        help: "Concurrent senders.",
        values: |m| vec![("", load(&m.shards))],
    },
    Family {
        name: "highest_sent_timestamp_seconds",
        kind: "gauge",
        help: "Highest sample timestamp the receiver accepted, in seconds since the epoch.",
        values: |m| vec![("", m.highest_sent_timestamp_ms.load(Relaxed) as f64 / 1000.0)],
    },
    Family {
        name: "last_send_error_timestamp_seconds",
        kind: "gauge",
        help: "When the last remote-write attempt failed, in seconds since the epoch (0: never).",
        values: |m| vec![("", m.last_send_error_timestamp_ms.load(Relaxed) as f64 / 1000.0)],
    },
];

/// Prefix of every metric name.
const METRIC_PREFIX: &str = "trawl_remote_write_";

impl RemoteWriteMetrics {
    /// Renders this endpoint's metrics in the Prometheus text format, with HELP and TYPE.
    pub fn render(&self, endpoint: &str, out: &mut String) {
        Self::render_all([(endpoint, self)], out);
    }

    /// Renders several endpoints' metrics with each family's HELP and TYPE written once, as the
    /// text format requires when more than one endpoint is configured.
    pub fn render_all<'a, I>(endpoints: I, out: &mut String)
    where
        I: IntoIterator<Item = (&'a str, &'a RemoteWriteMetrics)>,
        I::IntoIter: Clone,
    {
        let endpoints = endpoints.into_iter();
        for f in FAMILIES {
            let _ = writeln!(out, "# HELP {METRIC_PREFIX}{} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {METRIC_PREFIX}{} {}", f.name, f.kind);
            for (endpoint, m) in endpoints.clone() {
                for (extra, v) in (f.values)(m) {
                    let sep = if extra.is_empty() { "" } else { "," };
                    let endpoint = crate::labels::escape_value(endpoint);
                    let _ =
                        writeln!(out, "{METRIC_PREFIX}{}{{endpoint=\"{endpoint}\"{sep}{extra}}} {v}", f.name);
                }
            }
        }
    }

    /// The last failed attempt's error message, if any attempt has failed.
    pub fn last_send_error(&self) -> Option<String> {
        self.last_send_error.lock().ok().and_then(|e| e.clone())
    }

    fn record_error(&self, message: String) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.last_send_error_timestamp_ms.store(now_ms, Relaxed);
        if let Ok(mut e) = self.last_send_error.lock() {
            *e = Some(message);
        }
    }
}

/// One remote-write destination: a bounded queue feeding sender shards.
#[derive(Debug)]
pub struct Endpoint {
    name: String,
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
        let uri = parse_url(&cfg.url).map_err(Error::Config)?;
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
        let target = retry::Target {
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
            target,
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
            samples_only: !v2,
            send_exemplars: cfg.send_exemplars,
            send_native_histograms: cfg.send_native_histograms,
            metrics,
            disk_metrics,
            queue,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RemoteWriteConfig, String> {
        serde_saphyr::from_str::<RemoteWriteConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_prometheus_except_429() {
        let c = parse("url: http://localhost:9090/api/v1/write\n").unwrap();
        assert_eq!(c, RemoteWriteConfig::new("http://localhost:9090/api/v1/write"));
        let q = &c.queue_config;
        assert_eq!((q.capacity, q.max_shards, q.min_shards, q.max_samples_per_send), (10_000, 50, 1, 2_000));
        assert_eq!(q.batch_send_deadline, Duration::from_secs(5));
        assert_eq!(q.min_backoff, Duration::from_millis(30));
        assert_eq!(q.max_backoff, Duration::from_secs(5));
        assert!(q.retry_on_http_429, "trawl retries 429 by default (no WAL to replay from)");
        assert_eq!(c.remote_timeout, Duration::from_secs(30));
        assert_eq!(c.endpoint_name(), "http://localhost:9090/api/v1/write");
    }

    #[test]
    fn full_block_parses() {
        let c = parse(
            "url: https://mimir.example/api/v1/push\n\
             name: mimir\n\
             remote_timeout: 10s\n\
             headers:\n  X-Scope-OrgID: tenant-1\n\
             queue_config:\n  capacity: 500\n  max_shards: 4\n  retry_on_http_429: false\n\
             write_relabel_configs:\n  - source_labels: [__name__]\n    regex: go_.*\n    action: drop\n\
             protobuf_message: prometheus.WriteRequest\n\
             send_exemplars: false\n\
             metadata_config:\n  send: false\n\
             basic_auth:\n  username: u\n  password: p\n\
             tls_config:\n  insecure_skip_verify: true\n\
             follow_redirects: true\n\
             enable_http2: false\n",
        )
        .unwrap();
        assert_eq!(c.endpoint_name(), "mimir");
        assert_eq!(c.queue_config.capacity, 500);
        assert_eq!(c.queue_config.max_samples_per_send, 2_000, "unset keys keep their default");
        assert!(!c.queue_config.retry_on_http_429);
        assert_eq!(c.headers.get("X-Scope-OrgID").map(String::as_str), Some("tenant-1"));
        assert_eq!(c.write_relabel_configs.len(), 1);
        assert_eq!(c.http_client_config().basic_auth.map(|b| b.username), Some("u".to_owned()));
    }

    #[test]
    fn rejections() {
        // (yaml, expected fragment of the error, why)
        let cases: &[(&str, &str, &str)] = &[
            ("url: ftp://x/y\n", "http or https", "scheme"),
            ("url: http:///write\n", "", "no host"),
            ("url: /api/v1/write\n", "http or https", "relative URL"),
            ("url: http://x/\nheaders:\n  content-type: text/plain\n", "reserved", "reserved, any case"),
            ("url: http://x/\nheaders:\n  User-Agent: curl\n", "reserved", "User-Agent is reserved"),
            (
                "url: http://x/\nheaders:\n  X-Prometheus-Remote-Write-Version: 2.0.0\n",
                "reserved",
                "version header",
            ),
            (
                "url: http://x/\nprotobuf_message: io.prometheus.write.v3.Request\n",
                "not supported",
                "unknown message",
            ),
            ("url: http://x/\ntenant:\n  label: 1bad\n", "tenant.label", "tenant label must be a label name"),
            ("url: http://x/\ntenant:\n  default: a\n", "label", "tenant needs a label"),
            (
                "url: http://x/\ntenant:\n  label: ns\nheaders:\n  x-scope-orgid: t\n",
                "X-Scope-OrgID",
                "a fixed tenant header and a per-request one clash",
            ),
            (
                "url: http://x/\nno_proxy: example.com\n",
                "if no_proxy is configured, proxy_url must also be configured",
                "ProxyConfig.Validate",
            ),
            (
                "url: http://x/\nsigv4: {region: eu-west-1}\nbearer_token: t\n",
                "Currently configured: [authorization sigv4]",
                "a legacy bearer token is authorization, and excludes sigv4 (validateAuthConfigs)",
            ),
            ("url: http://x/\nsigv4: {access_key: a}\n", "Secret Key", "access key without secret key"),
            ("url: http://x/\nsigv4: {region: r, bogus: 1}\n", "bogus", "unknown sigv4 key"),
            ("url: http://x/\nqueue_config:\n  capacity: 0\n", "capacity", "zero capacity"),
            ("url: http://x/\nqueue_config:\n  min_shards: 5\n  max_shards: 2\n", "min_shards", "shards"),
            ("url: http://x/\nqueue_config:\n  bogus: 1\n", "bogus", "unknown queue key"),
            ("url: http://x/\nbearer_token: a\nbearer_token_file: /f\n", "at most one", "two tokens"),
        ];
        for (yaml, want, why) in cases {
            let err = parse(yaml).expect_err(why);
            assert!(err.contains(want), "{why}: {err}");
        }
    }

    #[test]
    fn v2_and_tenant_parse() {
        let c = parse(
            "url: http://x/\nprotobuf_message: io.prometheus.write.v2.Request\n\
             tenant:\n  label: namespace\n  default: shared\n",
        )
        .unwrap();
        assert_eq!(c.protobuf_message.as_deref(), Some(PROTOBUF_MESSAGE_V2));
        let t = c.tenant.unwrap();
        assert_eq!((t.label.as_str(), t.default.as_deref()), ("namespace", Some("shared")));
    }

    #[test]
    fn reserved_header_error_has_a_position() {
        let yaml = "remote_write:\n  - url: http://x/\n    headers:\n      Content-Encoding: gzip\n";
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            remote_write: Vec<RemoteWriteConfig>,
        }
        let err = serde_saphyr::from_str::<File>(yaml).unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
        assert!(err.contains("line 2"), "the entry's position is reported: {err}");
    }

    #[test]
    fn render_has_help_type_and_endpoint_label() {
        let m = RemoteWriteMetrics::default();
        m.samples_sent_total.store(7, Relaxed);
        m.highest_sent_timestamp_ms.store(1_500, Relaxed);
        let mut out = String::new();
        m.render("http://a/\"q\"", &mut out);
        assert!(out.contains("# HELP trawl_remote_write_samples_sent_total "));
        assert!(out.contains("# TYPE trawl_remote_write_samples_sent_total counter\n"));
        assert!(out.contains("trawl_remote_write_samples_sent_total{endpoint=\"http://a/\\\"q\\\"\"} 7\n"));
        assert!(out.contains(
            "trawl_remote_write_requests_total{endpoint=\"http://a/\\\"q\\\"\",outcome=\"success\"} 0\n"
        ));
        assert!(out.contains(
            "trawl_remote_write_highest_sent_timestamp_seconds{endpoint=\"http://a/\\\"q\\\"\"} 1.5\n"
        ));

        let other = RemoteWriteMetrics::default();
        let mut two = String::new();
        RemoteWriteMetrics::render_all([("a", &m), ("b", &other)], &mut two);
        assert_eq!(two.matches("# TYPE trawl_remote_write_samples_sent_total ").count(), 1);
        assert_eq!(two.matches("trawl_remote_write_samples_sent_total{").count(), 2);
    }
}
