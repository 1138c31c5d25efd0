//! The `remote_write` config block: Prometheus' dialect, checked at load time, plus trawl's own
//! `tenant` and `disk_buffer` keys, and the header names the protocol reserves.
//!
//! What this is: plain data and its validation; the lowest floor of `remote_write`, imported by
//! every other file in it and importing none of them. What this is not: what the settings do
//! (the queue, the sender and the disk buffer read them).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::common::{ByteSize, Duration, HttpClientConfig};
use crate::http_client;
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
    /// Samples queued or in flight per endpoint before [`Endpoint::send`](super::Endpoint::send) waits. Prometheus
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

/// `metadata_config`: remote write 1.0 metadata (`super::metadata`); 2.0 sends it inline.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// Whether metadata is sent (Prometheus: true).
    pub send: bool,
    /// How often (Prometheus: 1m).
    pub send_interval: Duration,
    /// Most metadata entries per request (Prometheus since 2.44: 2,000; 500 before).
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig { send: true, send_interval: Duration::from_secs(60), max_samples_per_send: 2_000 }
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
    /// Whether exemplars are sent, in 1.0 and 2.0 (Prometheus' default: false).
    pub send_exemplars: bool,
    /// Whether native histogram samples are sent (Prometheus' default: false).
    pub send_native_histograms: bool,
    /// Remote write 1.0 metadata: whether, how often and how many entries a request.
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

    /// The load-time checks. [`Endpoint::start`](super::Endpoint::start) runs them again for configs built in code.
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

pub(super) fn parse_url(url: &str) -> Result<hyper::Uri, String> {
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

/// `disk_buffer` in a `remote_write` entry: the caps of the on-disk buffer, used only when trawl
/// runs with `--storage.path`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskBufferConfig {
    /// Most bytes on disk for this endpoint (vmagent: `-remoteWrite.maxDiskUsagePerURL`); the
    /// oldest segments are dropped beyond it. `0`: no limit.
    pub max_bytes: ByteSize,
    /// Records whose newest sample is older than this are dropped instead of sent. `0`: no
    /// limit. Receivers refuse very old samples anyway (Prometheus: older than its head block).
    pub max_age: Duration,
}

impl Default for DiskBufferConfig {
    fn default() -> Self {
        DiskBufferConfig { max_bytes: ByteSize(1 << 30), max_age: Duration::from_secs(0) }
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
}
