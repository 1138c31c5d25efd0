//! The OpenTelemetry Collector dialect: a collector config (or the Helm values file of the
//! collector's chart, whose `config:` block is one) read as a trawl [`Config`].
//!
//! What this is: the move from the collector's DaemonSet setup made a copy-paste. The metrics
//! pipelines (`service.pipelines.metrics[/name]`) say which `prometheus` receivers and which
//! exporters run; each receiver's `config:` is a Prometheus config (its `scrape_configs` become
//! trawl's jobs), each `prometheusremotewrite` exporter becomes a `remote_write` endpoint, and a
//! `debug` (or the older `logging`) exporter prints what was scraped. `service.telemetry.logs.level`
//! sets the log level when `--log.level` is not given.
//!
//! What this is not: a collector. Other receivers, processors, extensions and connectors are
//! accepted (so the file loads unchanged) and named in one WARN line each, since trawl does not run
//! them; `batch` and `memory_limiter` have trawl equivalents that are always on (the remote-write
//! queue batches, `--memory.limit`-style back-pressure bounds memory).
//!
//! # `$` in the collector dialect
//!
//! The collector expands environment variables in every value before its components see them,
//! and so does this dialect (on the file text, so errors keep their line numbers): `${env:VAR}`
//! and `${VAR}` become the variable's value (`""` when unset, with a warning), `$$` is an escaped
//! `$` (so `$$1` reaches relabeling as `$1`, and `$${env:X}` as the literal `${env:X}`), and a `$`
//! followed by anything else is left alone (collector ≥ v0.105, where bare `$VAR` is no longer
//! expanded). `${1}` is an error, as in the collector ("invalid name"), with a hint to write
//! `$${1}`. Unlike the Prometheus dialect, nothing is expanded a second time.
//!
//! # How exporter options map
//!
//! `prometheusremotewrite`: `endpoint` → `url`; `headers`; `timeout` → `remote_timeout`;
//! `tls.{ca_file,cert_file,key_file,insecure_skip_verify,server_name_override,min_version}`;
//! `external_labels` → `global.external_labels` (so every endpoint must agree on them);
//! `namespace` → a write relabel rule prefixing every metric name with `<namespace>_`;
//! `remote_write_queue.num_consumers` → `queue_config.max_shards`;
//! `retry_on_failure.{initial_interval,max_interval}` → `min_backoff`/`max_backoff`.
//! `retry_on_failure.max_elapsed_time` is not copied: the collector gives up (and drops data)
//! after it, trawl keeps retrying, which is its point. `protobuf_message` selects the remote
//! write version as in Prometheus. The remaining HTTP client knobs are accepted and ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::common::{Duration, TlsConfig};
use super::{Config, ConfigError, DebugOutput};
use crate::relabel::RelabelConfig;
use crate::remote_write::RemoteWriteConfig;

/// Which configuration language a file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// A Prometheus config (`global`, `scrape_configs`, `remote_write`).
    Prometheus,
    /// An OpenTelemetry Collector config (`receivers`, `exporters`, `service`, …).
    Collector,
    /// The Helm values of the collector's chart; its `config:` block is a collector config.
    CollectorHelmValues,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Prometheus => "Prometheus",
            Dialect::Collector => "OpenTelemetry Collector",
            Dialect::CollectorHelmValues => "OpenTelemetry Collector, Helm chart values",
        })
    }
}

/// Top-level keys that only a collector config has.
const COLLECTOR_KEYS: [&str; 6] =
    ["receivers", "exporters", "processors", "extensions", "connectors", "service"];

/// Tells the dialect from the top-level keys, read off the text (not the YAML) so that a file
/// with a syntax error is still reported by the right loader.
pub fn detect(text: &str) -> Dialect {
    let top: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k))
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    if top.iter().any(|k| COLLECTOR_KEYS.contains(k)) {
        return Dialect::Collector;
    }
    if top.contains(&"config") && !top.contains(&"scrape_configs") {
        // The chart's values: `config:` holds the collector config (`mode:`, `image:` … beside it).
        let nested = text.lines().filter_map(|l| l.strip_prefix(' ')).any(|l| {
            let k = l.trim_start().split(':').next().unwrap_or_default();
            l.trim_start().len() > k.len() && COLLECTOR_KEYS.contains(&k)
        });
        if nested {
            return Dialect::CollectorHelmValues;
        }
    }
    Dialect::Prometheus
}

/// Expands `${env:VAR}`, `${VAR}` and `$$` as the collector does (see the module docs). Comment
/// lines are copied as they are, since the collector never sees them.
pub fn expand_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<super::Expanded, (u64, String)> {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i as u64 + 1;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("$$") {
                out.push('$');
                rest = after;
                continue;
            }
            let Some(body) = rest.strip_prefix("${") else {
                out.push('$');
                rest = &rest[1..];
                continue;
            };
            let Some(end) = body.find('}') else {
                return Err((n, format!("unterminated ${{ in {:?}", rest.trim_end())));
            };
            let inner = &body[..end];
            let name = match inner.split_once(':') {
                None => inner,
                Some(("env", name)) => name,
                Some((scheme, _)) => {
                    return Err((
                        n,
                        format!("${{{inner}}}: the {scheme:?} config provider is not supported (only env)"),
                    ));
                }
            };
            let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err((
                    n,
                    format!(
                        "environment variable {name:?} has an invalid name (as in the collector); \
                         write $${{{inner}}} for a literal ${{{inner}}}, e.g. a relabeling capture group"
                    ),
                ));
            }
            match lookup(name) {
                Some(v) if v.contains('\n') => {
                    return Err((n, format!("environment variable {name} contains a newline")));
                }
                Some(v) => out.push_str(&v),
                None => unset.push(super::Unset {
                    line: n,
                    name: name.to_owned(),
                    written: rest[..end + 3].to_owned(),
                }),
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(super::Expanded { text: out, unset })
}

/// Reads a collector config or chart values file into a trawl [`Config`] (not yet validated).
pub(super) fn load(text: &str, path: &Path, dialect: Dialect) -> Result<Config, ConfigError> {
    let invalid = |line: u64, column: u64, reason: String| ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        reason,
    };
    let expanded =
        expand_env(text, &|k| std::env::var(k).ok()).map_err(|(line, reason)| invalid(line, 0, reason))?;
    let yaml_error = |e: serde_saphyr::Error| super::yaml_error(&e, &expanded.unset, path);
    let collector = match dialect {
        Dialect::CollectorHelmValues => {
            // Everything beside `config:` is for the chart (image, mode, resources …).
            #[derive(Deserialize)]
            struct Values {
                config: Collector,
            }
            serde_saphyr::from_str::<Values>(&expanded.text).map_err(yaml_error)?.config
        }
        _ => serde_saphyr::from_str::<Collector>(&expanded.text).map_err(yaml_error)?,
    };
    let cfg = collector.into_config().map_err(|(line, reason)| invalid(line, 0, reason))?;
    expanded.warn_unset();
    Ok(cfg)
}

/// A collector config, as far as trawl reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct Collector {
    #[serde(default)]
    receivers: Components<PrometheusReceiver>,
    #[serde(default)]
    processors: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(default)]
    exporters: Components<Exporter>,
    #[serde(default)]
    extensions: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(default)]
    connectors: Option<BTreeMap<String, IgnoredAny>>,
    service: Service,
}

/// A component map (`receivers:` or `exporters:`): ids whose type trawl runs are read as `T`,
/// the others are skipped and remembered by name.
struct Components<T> {
    known: BTreeMap<String, (u64, T)>,
    other: Vec<String>,
}

impl<T> Default for Components<T> {
    fn default() -> Self {
        Components { known: BTreeMap::new(), other: Vec::new() }
    }
}

/// A component type trawl reads; the others are skipped.
trait Component: Sized {
    /// Reads the component with id type `kind`, or `None` if trawl does not run that type.
    fn read<'de, A: MapAccess<'de>>(kind: &str, map: &mut A) -> Result<Option<Self>, A::Error>;
}

impl<'de, T: Component> Deserialize<'de> for Components<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Component> Visitor<'de> for V<T> {
            type Value = Components<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of component ids to their settings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Components::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Components::default();
                while let Some(id) = map.next_key::<Spanned<String>>()? {
                    let kind = id.value.split('/').next().unwrap_or_default().to_owned();
                    match T::read(&kind, &mut map)? {
                        Some(c) => {
                            out.known.insert(id.value, (id.referenced.line(), c));
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                            out.other.push(id.value);
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The `prometheus` receiver.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct PrometheusReceiver {
    /// The Prometheus config (`global`, `scrape_configs`).
    #[serde(default)]
    config: Option<Config>,
    // Accepted, not used: trawl's series keep Prometheus' names and start times.
    #[serde(default)]
    target_allocator: Option<IgnoredAny>,
    #[serde(default)]
    trim_metric_suffixes: Option<IgnoredAny>,
    #[serde(default)]
    use_start_time_metric: Option<IgnoredAny>,
    #[serde(default)]
    start_time_metric_regex: Option<IgnoredAny>,
    #[serde(default)]
    report_extra_scrape_metrics: Option<IgnoredAny>,
    #[serde(default)]
    api_server: Option<IgnoredAny>,
}

impl Component for PrometheusReceiver {
    fn read<'de, A: MapAccess<'de>>(kind: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
        if kind != "prometheus" {
            return Ok(None);
        }
        Ok(Some(map.next_value::<Option<PrometheusReceiver>>()?.unwrap_or_default()))
    }
}

/// The exporters trawl runs.
enum Exporter {
    RemoteWrite(Box<RemoteWriteExporter>),
    Debug(DebugExporter),
}

impl Component for Exporter {
    fn read<'de, A: MapAccess<'de>>(kind: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
        Ok(match kind {
            "prometheusremotewrite" => Some(Exporter::RemoteWrite(map.next_value()?)),
            "debug" | "logging" => {
                Some(Exporter::Debug(map.next_value::<Option<DebugExporter>>()?.unwrap_or_default()))
            }
            _ => None,
        })
    }
}

/// The `prometheusremotewrite` exporter (its settings and confighttp's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct RemoteWriteExporter {
    endpoint: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    tls: Option<CollectorTls>,
    #[serde(default)]
    remote_write_queue: Option<RemoteWriteQueue>,
    #[serde(default)]
    retry_on_failure: Option<RetryOnFailure>,
    #[serde(default)]
    protobuf_message: Option<String>,
    #[serde(default)]
    compression: Option<String>,
    // Accepted, not used (OTLP-specific conversions, or HTTP knobs trawl sets itself).
    #[serde(default)]
    resource_to_telemetry_conversion: Option<IgnoredAny>,
    #[serde(default)]
    target_info: Option<IgnoredAny>,
    #[serde(default)]
    export_created_metric: Option<IgnoredAny>,
    #[serde(default)]
    add_metric_suffixes: Option<IgnoredAny>,
    #[serde(default)]
    send_metadata: Option<IgnoredAny>,
    #[serde(default)]
    max_batch_size_bytes: Option<IgnoredAny>,
    #[serde(default)]
    max_batch_request_parallelism: Option<IgnoredAny>,
    #[serde(default)]
    wal: Option<IgnoredAny>,
    #[serde(default)]
    auth: Option<IgnoredAny>,
    #[serde(default)]
    proxy_url: Option<IgnoredAny>,
    #[serde(default)]
    read_buffer_size: Option<IgnoredAny>,
    #[serde(default)]
    write_buffer_size: Option<IgnoredAny>,
    #[serde(default)]
    max_idle_conns: Option<IgnoredAny>,
    #[serde(default)]
    max_idle_conns_per_host: Option<IgnoredAny>,
    #[serde(default)]
    max_conns_per_host: Option<IgnoredAny>,
    #[serde(default)]
    idle_conn_timeout: Option<IgnoredAny>,
    #[serde(default)]
    disable_keep_alives: Option<IgnoredAny>,
    #[serde(default)]
    http2_read_idle_timeout: Option<IgnoredAny>,
    #[serde(default)]
    http2_ping_timeout: Option<IgnoredAny>,
    #[serde(default)]
    cookies: Option<IgnoredAny>,
}

/// configtls' client settings.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct CollectorTls {
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    cert_file: Option<std::path::PathBuf>,
    #[serde(default)]
    key_file: Option<std::path::PathBuf>,
    #[serde(default)]
    server_name_override: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<IgnoredAny>,
    #[serde(default)]
    include_system_ca_certs_pool: Option<IgnoredAny>,
    #[serde(default)]
    reload_interval: Option<IgnoredAny>,
    #[serde(default)]
    cipher_suites: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct RemoteWriteQueue {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    queue_size: Option<IgnoredAny>,
    #[serde(default)]
    num_consumers: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct RetryOnFailure {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    initial_interval: Option<Duration>,
    #[serde(default)]
    max_interval: Option<Duration>,
    #[serde(default)]
    max_elapsed_time: Option<IgnoredAny>,
    #[serde(default)]
    multiplier: Option<IgnoredAny>,
    #[serde(default)]
    randomization_factor: Option<IgnoredAny>,
}

/// The `debug` exporter (and `logging`, its predecessor).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct DebugExporter {
    #[serde(default)]
    verbosity: Option<String>,
    #[serde(default)]
    loglevel: Option<IgnoredAny>,
    #[serde(default)]
    sampling_initial: Option<IgnoredAny>,
    #[serde(default)]
    sampling_thereafter: Option<IgnoredAny>,
    #[serde(default)]
    use_internal_logger: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Fields accepted so collector configs load as written; trawl does not use them.
struct Service {
    #[serde(default)]
    extensions: Option<IgnoredAny>,
    #[serde(default)]
    pipelines: BTreeMap<String, Pipeline>,
    #[serde(default)]
    telemetry: Option<Telemetry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pipeline {
    #[serde(default)]
    receivers: Vec<Spanned<String>>,
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default)]
    exporters: Vec<Spanned<String>>,
}

/// `service.telemetry`: only `logs.level` means something to trawl; the rest (the collector's own
/// metrics and traces) is accepted as written.
#[derive(Deserialize)]
struct Telemetry {
    #[serde(default)]
    logs: Option<TelemetryLogs>,
}

#[derive(Deserialize)]
struct TelemetryLogs {
    #[serde(default)]
    level: Option<String>,
}

impl Collector {
    fn into_config(mut self) -> Result<Config, (u64, String)> {
        let mut receivers: Vec<String> = Vec::new();
        let mut exporters: Vec<(u64, String)> = Vec::new();
        let mut processors: Vec<String> = Vec::new();
        for (id, p) in &self.service.pipelines {
            if id.split('/').next() != Some("metrics") {
                continue;
            }
            for r in &p.receivers {
                if !self.receivers.known.contains_key(&r.value) && !self.receivers.other.contains(&r.value) {
                    return Err((
                        r.referenced.line(),
                        format!("pipeline {id:?} references receiver {:?}, which is not configured", r.value),
                    ));
                }
                if !receivers.contains(&r.value) {
                    receivers.push(r.value.clone());
                }
            }
            for e in &p.exporters {
                if !self.exporters.known.contains_key(&e.value) && !self.exporters.other.contains(&e.value) {
                    return Err((
                        e.referenced.line(),
                        format!("pipeline {id:?} references exporter {:?}, which is not configured", e.value),
                    ));
                }
                if !exporters.iter().any(|(_, x)| x == &e.value) {
                    exporters.push((e.referenced.line(), e.value.clone()));
                }
            }
            processors
                .extend(p.processors.iter().filter(|p| !processors.contains(p)).cloned().collect::<Vec<_>>());
        }
        if receivers.is_empty() || exporters.is_empty() {
            return Err((
                0,
                "no metrics pipeline with a receiver and an exporter (service.pipelines.metrics)".into(),
            ));
        }

        let mut cfg = Config::default();
        let mut first_global = true;
        for id in &receivers {
            let Some((line, r)) = self.receivers.known.remove(id) else {
                tracing::warn!(receiver = id.as_str(), "Receiver type not run by trawl; ignored.");
                continue;
            };
            let Some(inner) = r.config else { continue };
            if !inner.remote_write.is_empty() {
                return Err((line, format!("receiver {id:?}: remote_write belongs in an exporter")));
            }
            if first_global {
                cfg.global = inner.global;
                first_global = false;
            }
            cfg.scrape_configs.extend(inner.scrape_configs);
        }

        let mut external: Option<BTreeMap<String, String>> = None;
        for (line, id) in exporters {
            let Some((_, e)) = self.exporters.known.remove(&id) else {
                tracing::warn!(exporter = id.as_str(), "Exporter type not run by trawl; ignored.");
                continue;
            };
            match e {
                Exporter::Debug(d) => {
                    let level = match d.verbosity.as_deref() {
                        None | Some("basic") | Some("normal") => DebugOutput::Summary,
                        Some("detailed") => DebugOutput::Samples,
                        Some(v) => return Err((line, format!("exporter {id:?}: unknown verbosity {v:?}"))),
                    };
                    cfg.debug_output = cfg.debug_output.max(level);
                }
                Exporter::RemoteWrite(e) => {
                    match &external {
                        None => external = Some(e.external_labels.clone()),
                        Some(x) if *x != e.external_labels => {
                            return Err((
                                line,
                                format!(
                                    "exporter {id:?}: external_labels differ between exporters; trawl \
                                     applies one set to every endpoint"
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                    cfg.remote_write.push(e.into_remote_write(&id).map_err(|r| (line, r))?);
                }
            }
        }
        if let Some(x) = external {
            cfg.global.external_labels.extend(x);
        }
        let ignored: Vec<String> = (self.receivers.other.iter().filter(|r| receivers.contains(r)))
            // `batch` and `memory_limiter` have trawl equivalents that are always on.
            .chain(
                processors
                    .iter()
                    .filter(|p| !matches!(p.split('/').next(), Some("batch" | "memory_limiter"))),
            )
            .cloned()
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(
                components = ignored.join(","),
                "Collector components in the metrics pipeline that trawl does not run; ignored."
            );
        }
        cfg.log_level = self.service.telemetry.and_then(|t| t.logs).and_then(|l| l.level);
        Ok(cfg)
    }
}

impl RemoteWriteExporter {
    fn into_remote_write(self, id: &str) -> Result<RemoteWriteConfig, String> {
        let mut rw = RemoteWriteConfig::new(self.endpoint);
        rw.name = Some(id.to_owned());
        rw.headers = self.headers;
        if let Some(t) = self.timeout {
            rw.remote_timeout = t;
        }
        rw.protobuf_message = self.protobuf_message;
        match self.compression.as_deref() {
            None | Some("snappy") => {}
            Some(c) => {
                return Err(format!("exporter {id:?}: compression {c:?} is not supported (snappy only)"));
            }
        }
        if let Some(t) = self.tls {
            // `insecure` is gRPC-only in the collector; an http:// endpoint is already plain.
            rw.http.tls_config = Some(TlsConfig {
                ca_file: t.ca_file,
                cert_file: t.cert_file,
                key_file: t.key_file,
                server_name: t.server_name_override,
                insecure_skip_verify: t.insecure_skip_verify,
                min_version: t.min_version.map(|v| format!("TLS{}", v.replace('.', ""))),
            });
        }
        if let Some(q) = self.remote_write_queue
            && q.enabled != Some(false)
            && let Some(n) = q.num_consumers
        {
            rw.queue_config.max_shards = n.max(1);
            rw.queue_config.min_shards = rw.queue_config.min_shards.min(rw.queue_config.max_shards);
        }
        if let Some(r) = self.retry_on_failure
            && r.enabled != Some(false)
        {
            if let Some(d) = r.initial_interval {
                rw.queue_config.min_backoff = d;
            }
            if let Some(d) = r.max_interval {
                rw.queue_config.max_backoff = d;
            }
        }
        if let Some(ns) = self.namespace.filter(|n| !n.is_empty()) {
            // The exporter prefixes every metric name with `<namespace>_`.
            let rule: RelabelConfig = serde_saphyr::from_str(&format!(
                "source_labels: [__name__]\nregex: '(.+)'\ntarget_label: __name__\nreplacement: '{}_$1'\n",
                ns.replace('\'', "''")
            ))
            .map_err(|e| format!("exporter {id:?}: namespace {ns:?}: {e}"))?;
            rw.write_relabel_configs.push(rule);
        }
        Ok(rw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "NODE" => Some("node-a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn collector_env_expansion_table() {
        let cases: &[(&str, Result<&str, &str>, &str)] = &[
            ("a: ${env:NODE}", Ok("a: node-a"), "explicit env provider"),
            ("a: ${NODE}", Ok("a: node-a"), "no scheme means env"),
            ("a: ${env:UNSET}", Ok("a: "), "unset expands to empty, as the collector does"),
            ("a: $$1:$$2", Ok("a: $1:$2"), "$$ is an escaped $: capture groups reach relabeling"),
            ("a: $${env:NODE}", Ok("a: ${env:NODE}"), "escaped reference stays literal, not expanded again"),
            ("a: $1:$2", Ok("a: $1:$2"), "bare $ is left alone (collector >= 0.105)"),
            ("a: $NODE", Ok("a: $NODE"), "bare $VAR is no longer expanded"),
            ("a: x$", Ok("a: x$"), "trailing $"),
            ("# ${1} in a comment\na: 1", Ok("# ${1} in a comment\na: 1"), "comments are not expanded"),
            ("a: ${1}", Err("invalid name"), "${1} is an error in the collector"),
            ("a: ${file:/x}", Err("not supported"), "other providers are refused"),
            ("a: ${NODE", Err("unterminated"), "unterminated reference"),
        ];
        for (input, want, why) in cases {
            let got = expand_env(input, &env).map(|e| e.text);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{why}"),
                (Err(w), Err((_, g))) => assert!(g.contains(w), "{why}: {g}"),
                _ => panic!("{why}: {input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn detects_the_dialect() {
        let cases: &[(&str, Dialect, &str)] = &[
            ("scrape_configs: []\n", Dialect::Prometheus, "Prometheus keys"),
            ("global: {}\n", Dialect::Prometheus, "Prometheus keys"),
            ("receivers: {}\nservice: {}\n", Dialect::Collector, "collector keys"),
            ("mode: daemonset\nconfig:\n  receivers: {}\n", Dialect::CollectorHelmValues, "chart values"),
            ("config: {a: 1}\n", Dialect::Prometheus, "a config: key without collector keys"),
            ("- not a map\n", Dialect::Prometheus, "not a mapping: the Prometheus loader reports it"),
            ("receivers: {a: [}\n", Dialect::Collector, "broken YAML is still told apart"),
            ("scrape_configs:\n  - job_name: receivers\n", Dialect::Prometheus, "values are not keys"),
        ];
        for (text, want, why) in cases {
            assert_eq!(detect(text), *want, "{why}");
        }
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        super::super::load_str(text, Path::new("/etc/otel/values.yaml"))
    }

    const COLLECTOR: &str = "\
receivers:
  otlp: {protocols: {grpc: {}}}
  prometheus:
    config:
      global: {scrape_interval: 15s}
      scrape_configs:
        - job_name: a
          static_configs: [{targets: ['x:1']}]
          relabel_configs:
            - {source_labels: [__address__], regex: '(.*):1', target_label: host, replacement: $$1}
processors:
  batch: {}
exporters:
  prometheusremotewrite:
    endpoint: http://rw:9090/api/v1/write
    headers: {X-Scope-OrgID: team}
    external_labels: {cluster: c1}
    namespace: ns
    tls: {insecure: true}
    remote_write_queue: {num_consumers: 3}
  debug: {verbosity: detailed}
  otlp: {endpoint: x:4317}
service:
  telemetry: {logs: {level: debug}, metrics: {address: ':8888'}}
  pipelines:
    traces: {receivers: [otlp], exporters: [otlp]}
    metrics:
      receivers: [prometheus]
      processors: [batch]
      exporters: [prometheusremotewrite, debug]
";

    #[test]
    fn collector_config_becomes_a_trawl_config() {
        let cfg = load_text(COLLECTOR).unwrap();
        assert_eq!(cfg.scrape_configs.len(), 1);
        let sc = &cfg.scrape_configs[0];
        assert_eq!(sc.job(), "a");
        assert_eq!(sc.interval().to_string(), "15s", "defaults from the receiver's global");
        let rule = &sc.relabel_configs[0];
        assert_eq!(rule.replacement, "$1", "$$1 reached relabeling as $1");
        assert_eq!(cfg.remote_write.len(), 1);
        let rw = &cfg.remote_write[0];
        assert_eq!(rw.url, "http://rw:9090/api/v1/write");
        assert_eq!(rw.endpoint_name(), "prometheusremotewrite");
        assert_eq!(rw.headers.get("X-Scope-OrgID").map(String::as_str), Some("team"));
        assert_eq!(rw.queue_config.max_shards, 3);
        assert_eq!(rw.write_relabel_configs.len(), 1, "namespace prefix");
        assert_eq!(cfg.global.external_labels.get("cluster").map(String::as_str), Some("c1"));
        assert_eq!(cfg.debug_output, DebugOutput::Samples);
        assert_eq!(cfg.log_level.as_deref(), Some("debug"));
    }

    #[test]
    fn collector_errors_name_the_line() {
        let cases: &[(&str, &str, &str, u64)] = &[
            (
                "exporters: [prometheusremotewrite, debug]",
                "exporters: [prometheusremotewrite, nope]",
                "exporter \"nope\"",
                30,
            ),
            ("    namespace: ns\n", "    namespace: ns\n    bogus: 1\n", "unknown field", 19),
            ("replacement: $$1}", "replacement: '${1}'}", "invalid name", 10),
            ("    tls: {insecure: true}\n", "    compression: gzip\n", "compression", 0),
        ];
        for (from, to, reason, line) in cases {
            let text = COLLECTOR.replace(from, to);
            assert_ne!(text, COLLECTOR);
            match load_text(&text) {
                Err(ConfigError::Invalid { line: l, reason: r, .. }) => {
                    assert!(r.contains(reason), "{to}: {r}");
                    if *line > 0 {
                        assert_eq!(l, *line, "{to}: {r}");
                    }
                }
                other => panic!("{to}: {other:?}"),
            }
        }
    }

    #[test]
    fn helm_values_read_the_config_block() {
        let values = format!(
            "mode: daemonset\nimage: {{repository: otel/opentelemetry-collector-contrib}}\nconfig:\n{}",
            COLLECTOR.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        assert_eq!(detect(&values), Dialect::CollectorHelmValues);
        let cfg = load_text(&values).unwrap();
        assert_eq!(cfg.scrape_configs.len(), 1);
        assert_eq!(cfg.remote_write.len(), 1);
    }
}
