//! The configuration file, in the Prometheus dialect: plain data, defaults and validation.
//!
//! What this is: serde structs that mirror Prometheus' `config.Config` for the parts an agent uses
//! (`global`, `scrape_configs`, `remote_write`), environment expansion, and the checks Prometheus
//! makes at load time. Every error names the file, line and reason, as `promtool check config`
//! does. What this is not: anything that runs; [`crate::app`] builds the pipeline from a [`Config`].
//!
//! Unknown fields are errors (`deny_unknown_fields`), as in Prometheus' strict YAML unmarshal, and
//! so are duplicate keys (serde-saphyr's default).

pub mod common;
pub mod dump;
pub mod otel;
pub mod scrape_protocols;
mod unknown_field;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use common::{ByteSize, Duration, HttpClientConfig, TlsConfig};
pub use scrape_protocols::{EscapingScheme, Negotiation, ProtocolName, ScrapeProtocol, ValidationScheme};

use crate::relabel::RelabelConfig;
use crate::remote_write::RemoteWriteConfig;

/// A config that failed to load. Not retryable: the file must be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. The I/O error is part of the message, not a `source`, so a
    /// caller printing the error chain (`{:#}`) says it once.
    #[error("{path}: cannot read the config file: {error}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid YAML for this schema, or a check failed.
    #[error("{path}:{line}:{column}: {reason}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line, 0 if unknown.
        line: u64,
        /// 1-based column, 0 if unknown.
        column: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults for every job, and the external labels.
    #[serde(default)]
    pub global: GlobalConfig,
    /// The scrape jobs: those written here, then (after [`load_str`]) those of the
    /// `scrape_config_files`, in file order.
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Files (the last path element may hold a `*` glob) each holding more `scrape_configs`;
    /// read again at every reload, as in Prometheus 2.43+. Relative to the config file.
    #[serde(default)]
    pub scrape_config_files: Vec<String>,
    /// Where samples go. None configured: trawl prints what it scrapes to stdout.
    #[serde(default)]
    pub remote_write: Vec<RemoteWriteConfig>,
    /// What trawl prints of the samples it scrapes: in the Prometheus dialect, every sample when
    /// no `remote_write` is configured; in the collector dialect, what a `debug` exporter asks for.
    #[serde(skip)]
    pub debug_output: DebugOutput,
    /// The log level the file asks for (collector dialect: `service.telemetry.logs.level`), used
    /// when `--log.level` is not given.
    #[serde(skip)]
    pub log_level: Option<String>,
}

/// What trawl prints of the samples it scrapes (ordered: more output is greater).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum DebugOutput {
    /// Nothing.
    #[default]
    None,
    /// One log line per scrape batch with its sample count (the collector's `basic` verbosity).
    Summary,
    /// Every sample, as exposition text on stdout.
    Samples,
}

/// The `global` block.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// Default scrape interval (Prometheus: 1m).
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval: Duration,
    /// Default scrape timeout (Prometheus: 10s, capped at the interval); filled in by [`load_str`].
    #[serde(default)]
    pub scrape_timeout: Option<Duration>,
    /// Accepted for compatibility with Prometheus server configs; trawl evaluates no rules.
    #[serde(default)]
    pub evaluation_interval: Option<Duration>,
    /// Labels added to every sample sent by remote write (series labels win on a clash).
    /// A null value (e.g. an unset `${env:VAR}`) reads as empty, which removes the label.
    #[serde(default, deserialize_with = "common::string_map")]
    pub external_labels: BTreeMap<String, String>,
    /// Default per-scrape body size limit (0 = none).
    #[serde(default)]
    pub body_size_limit: ByteSize,
    /// Default per-scrape sample limit (0 = none).
    #[serde(default)]
    pub sample_limit: u64,
    /// Default per-series label count limit (0 = none).
    #[serde(default)]
    pub label_limit: u64,
    /// Default label name length limit (0 = none).
    #[serde(default)]
    pub label_name_length_limit: u64,
    /// Default label value length limit (0 = none).
    #[serde(default)]
    pub label_value_length_limit: u64,
    /// Default target limit per job (0 = none).
    #[serde(default)]
    pub target_limit: u64,
    /// Default number of dropped targets a job keeps for the targets API (0 = all).
    #[serde(default)]
    pub keep_dropped_targets: u64,
    /// Default protocols to negotiate (unset: chosen per job, see [`scrape_protocols::resolve`]).
    #[serde(default)]
    pub scrape_protocols: Option<Vec<ProtocolName>>,
    /// Default for scraping native histograms (Prometheus 3.9+; false).
    #[serde(default)]
    pub scrape_native_histograms: Option<bool>,
    /// Default for keeping classic histograms also exposed as native ones.
    #[serde(default)]
    pub always_scrape_classic_histograms: bool,
    /// Default for converting classic histograms to native ones with custom buckets.
    #[serde(default)]
    pub convert_classic_histograms_to_nhcb: bool,
    /// `legacy` or `utf8` (unset: `utf8`, Prometheus 3's default).
    #[serde(default)]
    pub metric_name_validation_scheme: ValidationScheme,
    /// The `escaping` asked of targets (unset: from the validation scheme).
    #[serde(default)]
    pub metric_name_escaping_scheme: Option<String>,
    /// Default for writing `scrape_timeout_seconds`, `scrape_sample_limit` and
    /// `scrape_body_size_bytes` per scrape (false).
    #[serde(default)]
    pub extra_scrape_metrics: Option<bool>,
    /// Default file failed scrapes are logged to, as JSON lines (relative to the config file).
    #[serde(default)]
    pub scrape_failure_log_file: Option<String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: default_scrape_interval(),
            scrape_timeout: Some(default_scrape_timeout()),
            evaluation_interval: None,
            external_labels: BTreeMap::new(),
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            target_limit: 0,
            keep_dropped_targets: 0,
            scrape_protocols: None,
            scrape_native_histograms: None,
            always_scrape_classic_histograms: false,
            convert_classic_histograms_to_nhcb: false,
            metric_name_validation_scheme: ValidationScheme::Unset,
            metric_name_escaping_scheme: None,
            extra_scrape_metrics: None,
            scrape_failure_log_file: None,
        }
    }
}

fn default_scrape_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_scrape_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}

common::with_http_client_fields! {
/// One entry of `scrape_configs`, after defaults from `global` are filled in by [`load_str`].
/// The HTTP client keys (auth, TLS, proxy) are added by [`common::with_http_client_fields`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The job name, also the `job` label and the scrape pool name. Unique.
    pub job_name: Spanned<String>,
    /// Keep the target's own `job`/`instance`/... labels on a clash instead of renaming them
    /// `exported_*`.
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target exposes (Prometheus' default: true).
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// Stale-mark series with explicit timestamps too.
    #[serde(default)]
    pub track_timestamps_staleness: bool,
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Path of the metrics page (default `/metrics`).
    #[serde(default)]
    pub metrics_path: Option<String>,
    /// URL parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// How often to scrape (default: global).
    #[serde(default)]
    pub scrape_interval: Option<Duration>,
    /// Per-scrape timeout (default: global, capped at the interval).
    #[serde(default)]
    pub scrape_timeout: Option<Duration>,
    /// Ask for gzip (Prometheus' default: true).
    #[serde(default = "default_true")]
    pub enable_compression: bool,
    /// More samples than this after metric relabeling fails the scrape (0 = none).
    #[serde(default)]
    pub sample_limit: Option<u64>,
    /// More labels than this on a series fails the scrape (0 = none).
    #[serde(default)]
    pub label_limit: Option<u64>,
    /// A label name longer than this fails the scrape (0 = none).
    #[serde(default)]
    pub label_name_length_limit: Option<u64>,
    /// A label value longer than this fails the scrape (0 = none).
    #[serde(default)]
    pub label_value_length_limit: Option<u64>,
    /// A body larger than this (uncompressed) fails the scrape (0 = none).
    #[serde(default)]
    pub body_size_limit: Option<ByteSize>,
    /// More targets than this after relabeling fails all scrapes of the job in Prometheus
    /// (0 = none, or the global value); trawl refuses a non-zero value for now.
    #[serde(default)]
    pub target_limit: u64,
    /// At most this many dropped targets are kept for the targets API in Prometheus (0 = all, or
    /// the global value); trawl refuses a non-zero value for now.
    #[serde(default)]
    pub keep_dropped_targets: u64,
    /// Protocols to negotiate, most wanted first (default: see [`scrape_protocols::resolve`]).
    #[serde(default)]
    pub scrape_protocols: Option<Vec<ProtocolName>>,
    /// The protocol a response with a blank or unknown `Content-Type` is read as.
    #[serde(default)]
    pub fallback_scrape_protocol: Option<String>,
    /// Scrape native histograms (default: global).
    #[serde(default)]
    pub scrape_native_histograms: Option<bool>,
    /// Keep the classic buckets of histograms also exposed as native ones (default: global).
    #[serde(default)]
    pub always_scrape_classic_histograms: Option<bool>,
    /// The Prometheus 2.x name of `always_scrape_classic_histograms`.
    #[serde(default)]
    pub scrape_classic_histograms: Option<bool>,
    /// Convert classic histograms to native histograms with custom buckets (default: global).
    #[serde(default)]
    pub convert_classic_histograms_to_nhcb: Option<bool>,
    /// Most buckets of a native histogram; more are merged by lowering its resolution (0 = none).
    #[serde(default)]
    pub native_histogram_bucket_limit: u64,
    /// Least growth factor from one bucket to the next; smaller is merged (0 = none).
    #[serde(default)]
    pub native_histogram_min_bucket_factor: f64,
    /// `legacy` or `utf8` (default: global).
    #[serde(default)]
    pub metric_name_validation_scheme: ValidationScheme,
    /// The `escaping` asked of targets (default: from the validation scheme, see
    /// [`scrape_protocols::resolve`]).
    #[serde(default)]
    pub metric_name_escaping_scheme: Option<String>,
    /// Write `scrape_timeout_seconds`, `scrape_sample_limit` and `scrape_body_size_bytes` per
    /// scrape (default: global).
    #[serde(default)]
    pub extra_scrape_metrics: Option<bool>,
    /// File failed scrapes are logged to, as JSON lines (default: global).
    #[serde(default)]
    pub scrape_failure_log_file: Option<String>,
    /// The negotiation settings, resolved by [`load_str`].
    #[serde(skip)]
    pub negotiation: Option<Negotiation>,
    /// Fixed target lists.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Target lists read from JSON or YAML files, re-read when they change.
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Target lists fetched from HTTP endpoints, re-fetched every `refresh_interval`.
    #[serde(default)]
    pub http_sd_configs: Vec<crate::discovery::http::HttpSdConfig>,
    /// Kubernetes API discovery.
    #[serde(default)]
    pub kubernetes_sd_configs: Vec<crate::discovery::kubernetes::KubernetesSdConfig>,
    /// Rules applied to discovered targets.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to every scraped series.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}
}

impl ScrapeConfig {
    /// The job name.
    pub fn job(&self) -> &str {
        &self.job_name.value
    }
    /// The scheme, `http` unless set.
    pub fn scheme(&self) -> &str {
        self.scheme.as_deref().unwrap_or("http")
    }
    /// The metrics path, `/metrics` unless set.
    pub fn metrics_path(&self) -> &str {
        self.metrics_path.as_deref().unwrap_or("/metrics")
    }
    /// The effective scrape interval (filled in by [`load_str`]).
    pub fn interval(&self) -> Duration {
        self.scrape_interval.unwrap_or_default()
    }
    /// The effective scrape timeout (filled in by [`load_str`]).
    pub fn timeout(&self) -> Duration {
        self.scrape_timeout.unwrap_or_default()
    }
    /// `params` as a list, for [`crate::relabel::TargetDefaults`].
    pub fn param_list(&self) -> Vec<(String, Vec<String>)> {
        self.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
    /// The job's defaults for [`crate::relabel::populate_target`]; `params` is
    /// [`param_list`](Self::param_list).
    pub fn target_defaults<'a>(
        &'a self,
        params: &'a [(String, Vec<String>)],
    ) -> crate::relabel::TargetDefaults<'a> {
        crate::relabel::TargetDefaults {
            job: self.job(),
            scheme: self.scheme(),
            metrics_path: self.metrics_path(),
            params,
            scrape_interval: self.interval(),
            scrape_timeout: self.timeout(),
        }
    }
}

/// A `static_configs` entry: target addresses and labels for all of them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels attached to every target of the group (null reads as empty).
    #[serde(default, deserialize_with = "common::string_map")]
    pub labels: BTreeMap<String, String>,
}

/// A `file_sd_configs` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// File paths; the last path element may be a glob (`*.json`).
    pub files: Vec<String>,
    /// How often to re-read even without a change notice (Prometheus: 5m).
    #[serde(default = "default_file_sd_refresh")]
    pub refresh_interval: Duration,
}

fn default_file_sd_refresh() -> Duration {
    Duration::from_secs(300)
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    load_str(&text, path)
}

/// Checks a config given as text; `path` is used in error messages and to resolve relative paths.
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    load_str_with_dialect(text, path).map(|(cfg, _)| cfg)
}

/// Reads and checks a config file, and says which dialect it is written in.
pub fn load_with_dialect(path: &Path) -> Result<(Config, otel::Dialect), ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    load_str_with_dialect(&text, path)
}

fn load_str_with_dialect(text: &str, path: &Path) -> Result<(Config, otel::Dialect), ConfigError> {
    let invalid = |line: u64, column: u64, reason: String| ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        reason,
    };
    let dialect = otel::detect(text);
    let mut cfg = match dialect {
        otel::Dialect::Prometheus => {
            let expanded = expand_env(text, &|k| std::env::var(k).ok())
                .map_err(|(line, reason)| invalid(line, 0, reason))?;
            let mut cfg: Config =
                serde_saphyr::from_str(&expanded.text).map_err(|e| yaml_error(&e, &expanded.unset, path))?;
            expanded.warn_unset();
            if cfg.remote_write.is_empty() {
                cfg.debug_output = DebugOutput::Samples;
            }
            cfg
        }
        _ => otel::load(text, path, dialect)?,
    };
    validate(&mut cfg, path)?;
    Ok((cfg, dialect))
}

/// A YAML error of `path` as a [`ConfigError`] with its position. When an environment variable
/// that is not set was expanded on the error's line, the error says so and what to set: an unset
/// `${env:URL}` otherwise reads as a type error ("a value is required") about a value the user
/// never wrote.
pub(crate) fn yaml_error(e: &serde_saphyr::Error, unset: &[Unset], path: &Path) -> ConfigError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let mut reason = yaml_reason(e);
    if let Some(u) = unset.iter().find(|u| u.line == line) {
        reason = format!(
            "environment variable {name} is not set, so `{written}` expanded to nothing ({reason}); \
             set {name} in trawl's environment (e.g. the container's `env`, or `extraEnvs` in the \
             Helm chart)",
            name = u.name,
            written = u.written,
        );
    } else if !unset.is_empty() {
        let list: Vec<String> = unset.iter().map(|u| format!("{} (line {})", u.name, u.line)).collect();
        reason = format!("{reason} (environment variables not set: {})", list.join(", "));
    }
    ConfigError::Invalid { path: path.to_owned(), line, column, reason }
}

/// The reason of a serde-saphyr error without its location prefix and snippet, which we render
/// ourselves as `file:line:column:`. Unknown keys get [`unknown_field::reason`] (a Prometheus
/// setting trawl does not support, or a typo); an empty value where a string is required says so
/// instead of naming Rust types.
pub(crate) fn yaml_reason(e: &serde_saphyr::Error) -> String {
    let mut inner = e;
    while let serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } =
        inner
    {
        inner = error;
    }
    match inner {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => {
            return unknown_field::reason(field, expected);
        }
        serde_saphyr::Error::NullIntoString { .. } => {
            return "a value is required here, but it is empty".into();
        }
        _ => {}
    }
    let msg = e.without_snippet().to_string();
    let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
    // "line 3 column 5: unknown field ..." → "unknown field ..."
    let msg = match msg.strip_prefix("line ").and_then(|rest| rest.split_once(": ")) {
        Some((loc, reason)) if loc.contains("column") => reason,
        _ => msg,
    };
    // "unknown field `x`, expected ... at line 5, column 5" → without the suffix.
    match msg.rsplit_once(" at line ") {
        Some((reason, loc)) if is_line_column(loc) => reason.to_string(),
        _ => msg.to_string(),
    }
}

/// Whether `s` is `N, column M` (what follows " at line " in a located YAML error).
fn is_line_column(s: &str) -> bool {
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    s.split_once(", column ").is_some_and(|(l, c)| digits(l) && digits(c))
}

/// Fills defaults from `global` and makes the checks Prometheus makes in `config.Load`, then
/// reads the `scrape_config_files` (each job checked the same way, against that file).
fn validate(cfg: &mut Config, path: &Path) -> Result<(), ConfigError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let invalid =
        |line: u64, reason: String| ConfigError::Invalid { path: path.to_owned(), line, column: 0, reason };
    let g = &mut cfg.global;
    match g.scrape_timeout {
        Some(t) if t > g.scrape_interval => {
            return Err(invalid(
                0,
                format!("global scrape timeout greater than scrape interval ({t} > {})", g.scrape_interval),
            ));
        }
        Some(_) => {}
        None => g.scrape_timeout = Some(default_scrape_timeout().min(g.scrape_interval)),
    }
    // Prometheus 3 checks external label names with the global validation scheme (UTF-8 unless
    // `metric_name_validation_scheme: legacy`).
    let legacy = cfg.global.metric_name_validation_scheme == ValidationScheme::Legacy;
    for name in cfg.global.external_labels.keys() {
        if name.is_empty() || (legacy && !crate::labels::is_valid_label_name(name)) {
            return Err(invalid(0, format!("{name:?} is not a valid label name in external_labels")));
        }
    }
    if let Some(protocols) = &cfg.global.scrape_protocols {
        scrape_protocols::validate_global_protocols(protocols).map_err(|e| invalid(0, e))?;
    }
    refuse_unsupported_global(&cfg.global).map_err(|e| invalid(0, e))?;
    if let Some(f) = &mut cfg.global.scrape_failure_log_file {
        *f = join_dir(base, f);
    }
    for rw in &mut cfg.remote_write {
        rw.http.resolve_paths(base);
    }
    // Job name → where it was first defined, for the duplicate message.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for sc in &mut cfg.scrape_configs {
        let line = sc.job_name.referenced.line();
        validate_job(sc, &cfg.global, base, &mut seen, &format!("line {line}"))
            .map_err(|reason| invalid(line, reason))?;
    }
    for pattern in &mut cfg.scrape_config_files {
        // Prometheus' patRulePath: a '*' only in the last path element.
        let star_ok = match pattern.find('*') {
            None => true,
            Some(i) => !pattern[i..].contains('/'),
        };
        if !star_ok {
            return Err(invalid(0, format!("invalid scrape config file path {pattern:?}")));
        }
        if Path::new(pattern.as_str()).is_relative() {
            *pattern = base.join(pattern.as_str()).to_string_lossy().into_owned();
        }
    }
    for pattern in cfg.scrape_config_files.clone() {
        // Go's filepath.Glob: a pattern without a wildcard names the file only if it exists.
        for file in crate::discovery::expand_pattern(&pattern) {
            if !file.exists() {
                continue;
            }
            let jobs = read_scrape_config_file(&file, &cfg.global, &mut seen)?;
            cfg.scrape_configs.extend(jobs);
        }
    }
    Ok(())
}

/// The `scrape_configs` of one of the `scrape_config_files`, each checked as a job of the main
/// file is, with its relative paths resolved against its own directory.
fn read_scrape_config_file(
    file: &Path,
    global: &GlobalConfig,
    seen: &mut BTreeMap<String, String>,
) -> Result<Vec<ScrapeConfig>, ConfigError> {
    /// The shape of the file: only `scrape_configs`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ScrapeConfigs {
        #[serde(default)]
        scrape_configs: Vec<ScrapeConfig>,
    }
    let invalid = |line: u64, column: u64, reason: String| ConfigError::Invalid {
        path: file.to_owned(),
        line,
        column,
        reason,
    };
    let text =
        std::fs::read_to_string(file).map_err(|error| ConfigError::Read { path: file.to_owned(), error })?;
    let expanded =
        expand_env(&text, &|k| std::env::var(k).ok()).map_err(|(line, reason)| invalid(line, 0, reason))?;
    let parsed: ScrapeConfigs = if expanded.text.trim().is_empty() {
        ScrapeConfigs { scrape_configs: Vec::new() }
    } else {
        serde_saphyr::from_str(&expanded.text).map_err(|e| yaml_error(&e, &expanded.unset, file))?
    };
    expanded.warn_unset();
    let base = file.parent().unwrap_or(Path::new("."));
    let mut jobs = parsed.scrape_configs;
    for sc in &mut jobs {
        let line = sc.job_name.referenced.line();
        validate_job(sc, global, base, seen, &format!("{:?}", file.display().to_string()))
            .map_err(|reason| invalid(line, 0, reason))?;
    }
    Ok(jobs)
}

/// Fills one job's defaults from `global` and checks it; `seen` maps job names to where they
/// were defined (`origin` for this one).
fn validate_job(
    sc: &mut ScrapeConfig,
    g: &GlobalConfig,
    base: &Path,
    seen: &mut BTreeMap<String, String>,
    origin: &str,
) -> Result<(), String> {
    let global_timeout = g.scrape_timeout.unwrap_or_else(default_scrape_timeout);
    let job = sc.job_name.value.clone();
    if job.is_empty() {
        return Err("job_name is empty".into());
    }
    if let Some(first) = seen.get(&job) {
        return Err(format!("found multiple scrape configs with job name {job:?} (first at {first})"));
    }
    seen.insert(job.clone(), origin.to_owned());
    let interval = *sc.scrape_interval.get_or_insert(g.scrape_interval);
    if sc.scrape_timeout.is_none() {
        // Prometheus: the global timeout, capped at the job's interval.
        sc.scrape_timeout = Some(global_timeout.min(interval));
    }
    if sc.timeout() > interval {
        return Err(format!(
            "scrape timeout greater than scrape interval for scrape config with job name {job:?}"
        ));
    }
    if interval.get().is_zero() {
        return Err(format!("scrape interval of job {job:?} must be positive"));
    }
    match sc.scheme.as_deref() {
        None | Some("http") | Some("https") => {}
        Some(other) => return Err(format!("invalid scheme {other:?} in job {job:?}: want http or https")),
    }
    if let Some(p) = &sc.metrics_path
        && !p.starts_with('/')
    {
        return Err(format!("metrics_path {p:?} of job {job:?} must start with /"));
    }
    crate::http_client::validate(&sc.http_client_config()).map_err(|e| format!("job {job:?}: {e}"))?;
    sc.sample_limit.get_or_insert(g.sample_limit);
    sc.label_limit.get_or_insert(g.label_limit);
    sc.label_name_length_limit.get_or_insert(g.label_name_length_limit);
    sc.label_value_length_limit.get_or_insert(g.label_value_length_limit);
    sc.body_size_limit.get_or_insert(g.body_size_limit);
    prometheus3_defaults(sc, g, base)?;
    // Prometheus resolves every file a config names against the config file's directory.
    let mut http = sc.http_client_config();
    http.resolve_paths(base);
    sc.set_http_client_config(http);
    for k in &mut sc.kubernetes_sd_configs {
        if let Some(path) = &mut k.kubeconfig_file
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
        k.http.resolve_paths(base);
    }
    for h in &mut sc.http_sd_configs {
        h.http.resolve_paths(base);
    }
    for sd in &mut sc.file_sd_configs {
        for f in &mut sd.files {
            let p = Path::new(f.as_str());
            if p.is_relative() {
                *f = base.join(p).to_string_lossy().into_owned();
            }
            let name = Path::new(f.as_str()).file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !(name.ends_with(".json") || name.ends_with(".yml") || name.ends_with(".yaml")) {
                return Err(format!("file_sd path {f:?} of job {job:?} must end in .json, .yml or .yaml"));
            }
        }
    }
    for st in &sc.static_configs {
        for k in st.labels.keys() {
            if !crate::labels::is_valid_label_name(k) {
                return Err(format!("{k:?} is not a valid label name in static_configs of job {job:?}"));
            }
        }
    }
    Ok(())
}

/// The Prometheus 3 fields of a job: defaults from `global` and the checks of
/// `ScrapeConfig.Validate`, in its order and with its messages (see [`scrape_protocols`]).
fn prometheus3_defaults(sc: &mut ScrapeConfig, g: &GlobalConfig, base: &Path) -> Result<(), String> {
    let job = sc.job_name.value.clone();
    refuse_unsupported_job(sc)?;
    if sc.target_limit == 0 {
        sc.target_limit = g.target_limit;
    }
    if sc.keep_dropped_targets == 0 {
        sc.keep_dropped_targets = g.keep_dropped_targets;
    }
    match &mut sc.scrape_failure_log_file {
        Some(f) if !f.is_empty() => *f = join_dir(base, f),
        _ => sc.scrape_failure_log_file = g.scrape_failure_log_file.clone().filter(|f| !f.is_empty()),
    }
    let native = *sc.scrape_native_histograms.get_or_insert(g.scrape_native_histograms.unwrap_or(false));
    sc.extra_scrape_metrics.get_or_insert(g.extra_scrape_metrics.unwrap_or(false));
    let negotiation = scrape_protocols::resolve(&scrape_protocols::Written {
        job: &job,
        protocols: sc.scrape_protocols.as_deref(),
        global_protocols: g.scrape_protocols.as_deref(),
        native_histograms: native,
        fallback: sc.fallback_scrape_protocol.as_deref(),
        validation: sc.metric_name_validation_scheme,
        global_validation: g.metric_name_validation_scheme,
        escaping: sc.metric_name_escaping_scheme.as_deref(),
        global_escaping: g.metric_name_escaping_scheme.as_deref(),
    })?;
    sc.negotiation = Some(negotiation);
    sc.convert_classic_histograms_to_nhcb.get_or_insert(g.convert_classic_histograms_to_nhcb);
    // trawl reads both spellings: Prometheus 2.45-2.55 `scrape_classic_histograms`, 3.x
    // `always_scrape_classic_histograms`. Both at once would be ambiguous.
    if sc.always_scrape_classic_histograms.is_some() && sc.scrape_classic_histograms.is_some() {
        return Err(format!(
            "job {job:?}: set always_scrape_classic_histograms or its old name scrape_classic_histograms, not both"
        ));
    }
    let always = sc.always_scrape_classic_histograms.or(sc.scrape_classic_histograms);
    sc.always_scrape_classic_histograms = Some(always.unwrap_or(g.always_scrape_classic_histograms));
    Ok(())
}

/// Why a value is refused: a setting Prometheus acts on and trawl cannot act on yet. Loading it
/// and doing nothing would scrape differently from Prometheus without a word, so the config is
/// refused instead, worded as [`unknown_field::reason`] words a key trawl lacks.
fn not_supported(field: &str, value: &str, block: &str, instead: &str) -> String {
    format!(
        "`{field}: {value}` is a Prometheus setting (in {block}) that trawl does not support yet; {instead} \
         to run this config with trawl"
    )
}

/// The values of `global` that trawl refuses (see [`not_supported`]); jobs inherit them, so
/// they are refused where they are written.
fn refuse_unsupported_global(g: &GlobalConfig) -> Result<(), String> {
    let block = "global";
    if g.convert_classic_histograms_to_nhcb {
        return Err(not_supported(
            "convert_classic_histograms_to_nhcb",
            "true",
            block,
            "remove it or set it to false",
        ));
    }
    if g.target_limit > 0 {
        return Err(not_supported("target_limit", &g.target_limit.to_string(), block, "remove it"));
    }
    if g.keep_dropped_targets > 0 {
        return Err(not_supported(
            "keep_dropped_targets",
            &g.keep_dropped_targets.to_string(),
            block,
            "remove it",
        ));
    }
    if g.extra_scrape_metrics == Some(true) {
        return Err(not_supported("extra_scrape_metrics", "true", block, "remove it or set it to false"));
    }
    if let Some(f) = g.scrape_failure_log_file.as_deref().filter(|f| !f.is_empty()) {
        return Err(not_supported("scrape_failure_log_file", f, block, "remove it"));
    }
    Ok(())
}

/// The values of a scrape config that trawl refuses (see [`not_supported`]).
fn refuse_unsupported_job(sc: &ScrapeConfig) -> Result<(), String> {
    let block = format!("scrape_configs, job {:?}", sc.job());
    if sc.convert_classic_histograms_to_nhcb == Some(true) {
        return Err(not_supported(
            "convert_classic_histograms_to_nhcb",
            "true",
            &block,
            "remove it or set it to false",
        ));
    }
    if sc.target_limit > 0 {
        return Err(not_supported("target_limit", &sc.target_limit.to_string(), &block, "remove it"));
    }
    if sc.keep_dropped_targets > 0 {
        return Err(not_supported(
            "keep_dropped_targets",
            &sc.keep_dropped_targets.to_string(),
            &block,
            "remove it",
        ));
    }
    if sc.extra_scrape_metrics == Some(true) {
        return Err(not_supported("extra_scrape_metrics", "true", &block, "remove it or set it to false"));
    }
    if let Some(f) = sc.scrape_failure_log_file.as_deref().filter(|f| !f.is_empty()) {
        return Err(not_supported("scrape_failure_log_file", f, &block, "remove it"));
    }
    Ok(())
}

/// `config.JoinDir`: `file` made absolute against `dir` unless it already is (or is empty).
fn join_dir(dir: &Path, file: &str) -> String {
    if file.is_empty() || Path::new(file).is_absolute() {
        return file.to_owned();
    }
    dir.join(file).to_string_lossy().into_owned()
}

/// A `${env:VAR}` whose variable is not set, expanded to nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unset {
    /// 1-based line of the reference.
    pub line: u64,
    /// The variable.
    pub name: String,
    /// The reference as written, e.g. `${env:URL}`.
    pub written: String,
}

/// Config text after environment expansion.
#[derive(Debug, PartialEq, Eq)]
pub struct Expanded {
    /// The text to parse.
    pub text: String,
    /// References to variables that are not set (expanded to nothing).
    pub unset: Vec<Unset>,
}

impl Expanded {
    /// Logs each unset variable of a config that loaded: the file means something without it
    /// (e.g. an external label removed), but it may not be what the user meant.
    pub fn warn_unset(&self) {
        for u in &self.unset {
            tracing::warn!(
                variable = u.name.as_str(),
                line = u.line,
                "Environment variable is not set; expanding to an empty string."
            );
        }
    }
}

/// Expands `${VAR}` and `${env:VAR}` in the raw file text, keeping line numbers.
///
/// Left exactly as written, because relabeling reads them: `$1`, `${1}` (a capture group),
/// `$$` (an escaped `$`, which also protects what follows it: `$${VAR}` stays), and `${name}` when
/// no environment variable `name` is set (it may be a named capture group). `${env:VAR}` is
/// always expanded, to `""` when unset, as the OpenTelemetry Collector does. A value containing a
/// newline is an error, since it would shift every line number after it and could inject YAML.
pub fn expand_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Expanded, (u64, String)> {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    let mut rest = text;
    let mut line: u64 = 1;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        line += rest[..i].matches('\n').count() as u64;
        rest = &rest[i..];
        if rest.starts_with("$$") {
            out.push_str("$$");
            rest = &rest[2..];
            continue;
        }
        let Some(body) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let inner = &body[..end];
        let (explicit, name) = match inner.strip_prefix("env:") {
            Some(n) => (true, n),
            None => (false, inner),
        };
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let value = if valid { lookup(name) } else { None };
        match value {
            Some(v) => {
                if v.contains('\n') {
                    return Err((line, format!("environment variable {name} contains a newline")));
                }
                out.push_str(&v);
            }
            None if explicit && valid => {
                unset.push(Unset { line, name: name.to_owned(), written: rest[..end + 3].to_owned() });
            }
            None => out.push_str(&rest[..end + 3]),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(Expanded { text: out, unset })
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
    fn env_expansion_table() {
        // (input, expected, why)
        let cases: &[(&str, &str, &str)] = &[
            ("a ${NODE} b", "a node-a b", "plain ${VAR}"),
            ("spec.nodeName=${env:NODE}", "spec.nodeName=node-a", "the OTel-style env: prefix"),
            ("$1:$2", "$1:$2", "capture groups stay for relabeling"),
            ("${1}x", "${1}x", "braced capture groups stay"),
            ("$$", "$$", "an escaped dollar stays for relabeling to read"),
            ("$${NODE}", "$${NODE}", "an escaped dollar protects what follows"),
            ("${group}", "${group}", "an unset name may be a named capture group"),
            ("${env:UNSET}", "", "env: always expands, to empty when unset"),
            ("x${EMPTY}y", "xy", "a set but empty variable expands to empty"),
            ("${NODE", "${NODE", "unterminated stays as written"),
            ("cost $5", "cost $5", "a lone dollar stays"),
        ];
        for (input, want, why) in cases {
            assert_eq!(expand_env(input, &env).unwrap().text, *want, "{input:?}: {why}");
        }
    }

    #[test]
    fn env_value_with_newline_is_an_error_with_line() {
        let lookup = |_: &str| Some("a\nb".to_string());
        let err = expand_env("x: 1\ny: ${V}\n", &lookup).unwrap_err();
        assert_eq!(err.0, 2);
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_str(text, Path::new("/etc/trawl/trawl.yml"))
    }

    #[test]
    fn defaults_follow_prometheus() {
        let cfg =
            load("scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_interval: 5s\n").unwrap();
        assert_eq!(cfg.global.scrape_interval, Duration::from_secs(60));
        let a = &cfg.scrape_configs[0];
        assert_eq!((a.interval(), a.timeout()), (Duration::from_secs(60), Duration::from_secs(10)));
        assert!(a.honor_timestamps && !a.honor_labels && a.enable_compression);
        let b = &cfg.scrape_configs[1];
        assert_eq!(b.timeout(), Duration::from_secs(5), "the global timeout is capped at the job's interval");
        assert_eq!((a.scheme(), a.metrics_path()), ("http", "/metrics"));
    }

    #[test]
    fn prometheus_3_scrape_settings_default_from_global() {
        use crate::scrape::JobSettings;
        let cfg = load(concat!(
            "global:\n",
            "  scrape_native_histograms: true\n",
            "  always_scrape_classic_histograms: true\n",
            "scrape_configs:\n",
            "  - job_name: inherits\n",
            "  - job_name: own\n",
            "    scrape_native_histograms: false\n",
            "    scrape_classic_histograms: false\n",
            "    fallback_scrape_protocol: PrometheusText0.0.4\n",
            "    metric_name_validation_scheme: legacy\n",
            "    native_histogram_bucket_limit: 160\n",
            "    native_histogram_min_bucket_factor: 1.1\n",
        ))
        .unwrap();
        let a = JobSettings::from_config(&cfg.scrape_configs[0]);
        assert!(
            a.scrape_native_histograms && a.always_scrape_classic_histograms && a.metric_name_validation_utf8
        );
        assert!(
            a.accept.starts_with("application/vnd.google.protobuf;"),
            "native histograms put protobuf first"
        );
        let b = JobSettings::from_config(&cfg.scrape_configs[1]);
        assert!(!b.scrape_native_histograms && !b.always_scrape_classic_histograms, "the old name is read");
        assert!(!b.metric_name_validation_utf8);
        assert!(
            b.accept.starts_with("application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6")
        );
        assert_eq!(b.fallback_scrape_protocol, Some(ScrapeProtocol::PrometheusText0_0_4));
        assert_eq!((b.native_histogram_bucket_limit, b.native_histogram_min_bucket_factor), (160, 1.1));
    }

    #[test]
    fn settings_trawl_cannot_act_on_are_refused() {
        // (config, fragment of the message, why)
        let job = |extra: &str| format!("scrape_configs:\n  - job_name: j\n    {extra}\n");
        let cases: Vec<(String, &str, &str)> = vec![
            (
                job("convert_classic_histograms_to_nhcb: true"),
                "`convert_classic_histograms_to_nhcb: true` is a Prometheus setting (in scrape_configs, job \"j\") \
                 that trawl does not support yet; remove it or set it to false",
                "no custom-bucket histograms yet",
            ),
            (job("target_limit: 5"), "`target_limit: 5` is a Prometheus setting", "no target limit yet"),
            (
                job("keep_dropped_targets: 5"),
                "`keep_dropped_targets: 5` is a Prometheus",
                "all dropped targets are kept",
            ),
            (
                job("extra_scrape_metrics: true"),
                "`extra_scrape_metrics: true` is a Prometheus",
                "no extra report series",
            ),
            (
                job("scrape_failure_log_file: f.log"),
                "`scrape_failure_log_file: f.log` is a",
                "no failure log",
            ),
            (
                "global:\n  target_limit: 1\n".into(),
                "(in global) that trawl does not support yet",
                "global too",
            ),
            (
                "global:\n  convert_classic_histograms_to_nhcb: true\n".into(),
                "`convert_classic_histograms_to_nhcb: true` is a Prometheus setting (in global)",
                "global nhcb",
            ),
            (
                job("always_scrape_classic_histograms: true\n    scrape_classic_histograms: true"),
                "not both",
                "both spellings at once",
            ),
        ];
        for (text, want, why) in cases {
            let e = load(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{why}: {e}");
        }
        for ok in
            ["convert_classic_histograms_to_nhcb: false", "target_limit: 0", "extra_scrape_metrics: false"]
        {
            assert!(load(&job(ok)).is_ok(), "{ok} is what trawl does");
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        // (config, line, fragment of the reason, why)
        let cases: &[(&str, u64, &str, &str)] = &[
            ("global:\n  scrape_interval: 15s\n  bogus: 1\n", 3, "unknown field", "unknown field"),
            (
                "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
                3,
                "multiple scrape configs",
                "duplicate job",
            ),
            ("global:\n  scrape_interval: 15x\n", 2, "duration", "bad duration"),
            (
                "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n",
                2,
                "timeout greater",
                "timeout over interval",
            ),
            ("scrape_configs:\n  - job_name: a\n    scheme: ftp\n", 2, "invalid scheme", "scheme"),
            ("global: {}\nglobal: {}\n", 2, "duplicate", "duplicate keys, as Go's strict YAML"),
        ];
        for (text, line, frag, why) in cases {
            let err = load(text).expect_err(why);
            let ConfigError::Invalid { line: got, reason, .. } = &err else { panic!("{why}: {err}") };
            assert_eq!(*got, *line, "{why}: {err}");
            assert!(reason.contains(frag), "{why}: {err}");
            assert!(!reason.contains(", column "), "{why}: the location is said once, up front: {err}");
            assert!(err.to_string().starts_with(&format!("/etc/trawl/trawl.yml:{line}:")), "{err}");
        }
    }

    #[test]
    fn credential_and_tls_paths_resolve_against_the_config_dir() {
        let cfg = load(
            "scrape_configs:\n  - job_name: a\n    bearer_token_file: token\n    tls_config:\n      ca_file: /abs/ca.pem\n      \
             cert_file: c.pem\n      key_file: k.pem\n    kubernetes_sd_configs:\n      - role: pod\n        \
             kubeconfig_file: kube/config\nremote_write:\n  - url: http://r/w\n    basic_auth:\n      username: u\n      \
             password_file: pw\n",
        )
        .unwrap();
        let sc = &cfg.scrape_configs[0];
        assert_eq!(sc.bearer_token_file.as_deref(), Some(Path::new("/etc/trawl/token")));
        let tls = sc.tls_config.as_ref().unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/abs/ca.pem")), "absolute paths stay");
        assert_eq!(tls.key_file.as_deref(), Some(Path::new("/etc/trawl/k.pem")));
        let k = &sc.kubernetes_sd_configs[0];
        assert_eq!(k.kubeconfig_file.as_deref(), Some(Path::new("/etc/trawl/kube/config")));
        let pw = cfg.remote_write[0].http.basic_auth.as_ref().and_then(|b| b.password_file.as_deref());
        assert_eq!(pw, Some(Path::new("/etc/trawl/pw")));
    }

    #[test]
    fn inline_credentials_never_show_in_debug_output() {
        // Every place a credential can be written inline, each with a distinct value.
        let cfg = load(
            "scrape_configs:\n  - job_name: a\n    bearer_token: tok-scrape\n    kubernetes_sd_configs:\n      \
             - role: pod\n        api_server: https://k\n        bearer_token: tok-kube\n  - job_name: b\n    \
             basic_auth:\n      username: u\n      password: pw-scrape\n  - job_name: c\n    authorization:\n      \
             credentials: cred-scrape\nremote_write:\n  - url: http://r/w\n    bearer_token: tok-rw\n  - url: http://r/x\n    \
             basic_auth:\n      username: u\n      password: pw-rw\n",
        )
        .unwrap();
        assert_eq!(
            cfg.scrape_configs[1].basic_auth.as_ref().and_then(|b| b.password.as_ref()).map(|p| p.expose()),
            Some("pw-scrape"),
            "the value is kept for building headers"
        );
        let shown = format!("{cfg:?}");
        for secret in ["tok-scrape", "tok-kube", "pw-scrape", "cred-scrape", "tok-rw", "pw-rw"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        assert_eq!(shown.matches("<secret>").count(), 6, "{shown}");
    }

    #[test]
    fn new_secrets_never_show_in_debug_output() {
        // oauth2 client secrets, a sigv4 secret key, proxy credentials in a URL and in CONNECT
        // headers, each with a distinct value, in every block that can hold them.
        let cfg = load(
            "scrape_configs:\n  - job_name: a\n    oauth2: {client_id: c, client_secret: oauth-scrape, token_url: 'http://t/',\
             \n      proxy_url: 'http://u:proxy-oauth@p:1'}\n    proxy_url: 'http://u:proxy-scrape@p:1/'\n    \
             proxy_connect_header: {X-Auth: [hdr-scrape]}\n    http_sd_configs:\n      - url: http://sd/x\n        \
             oauth2: {client_id: c, client_secret: oauth-sd, token_url: 'http://t/'}\n    kubernetes_sd_configs:\n      \
             - role: pod\n        api_server: https://k\n        proxy_url: 'http://u:proxy-kube@p:1'\n\
             remote_write:\n  - url: http://r/w\n    sigv4: {region: r, access_key: AKID, secret_key: sigv4-secret}\n    \
             proxy_url: 'http://proxy-user:proxy-rw@p:1'\n",
        )
        .unwrap();
        let shown = format!("{cfg:?}");
        for secret in [
            "oauth-scrape",
            "proxy-oauth",
            "proxy-scrape",
            "hdr-scrape",
            "oauth-sd",
            "proxy-kube",
            "sigv4-secret",
            "proxy-rw",
        ] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        assert!(
            shown.contains("http://proxy-user:<secret>@p:1"),
            "the proxy URL shows without its password: {shown}"
        );
        assert!(shown.contains("AKID"), "an access key id is not a secret");
    }

    #[test]
    fn file_sd_paths_resolve_against_the_config_dir() {
        let cfg =
            load("scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: [targets/*.json]\n")
                .unwrap();
        assert_eq!(cfg.scrape_configs[0].file_sd_configs[0].files[0], "/etc/trawl/targets/*.json");
    }
}

#[cfg(test)]
mod scrape_config_files_tests {
    use super::*;

    #[test]
    fn files_are_globbed_resolved_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("trawl.yml");
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        std::fs::write(
            dir.path().join("jobs/b.yml"),
            "scrape_configs:\n  - job_name: b\n    bearer_token_file: token\n    file_sd_configs: [{files: [t.json]}]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("jobs/a.yml"), "scrape_configs:\n  - job_name: a\n").unwrap();
        std::fs::write(dir.path().join("jobs/empty.yml"), "").unwrap();
        let text = "global:\n  scrape_interval: 7s\nscrape_configs:\n  - job_name: main\n\
                    scrape_config_files: ['jobs/*.yml', 'missing.yml']\n";
        let cfg = load_str(text, &main).unwrap();
        let jobs: Vec<&str> = cfg.scrape_configs.iter().map(|s| s.job()).collect();
        assert_eq!(
            jobs,
            ["main", "a", "b"],
            "main file first, then files in sorted order; a missing plain path is no file"
        );
        let b = &cfg.scrape_configs[2];
        assert_eq!(b.interval(), Duration::from_secs(7), "global defaults apply");
        assert_eq!(
            b.bearer_token_file.as_deref(),
            Some(dir.path().join("jobs/token").as_path()),
            "relative to its file"
        );
        assert_eq!(b.file_sd_configs[0].files[0], dir.path().join("jobs/t.json").to_string_lossy());

        // (extra file content or pattern, expected fragment, why)
        let cases: &[(&str, &str, &str)] = &[
            (
                "scrape_configs:\n  - job_name: main\n",
                "found multiple scrape configs with job name \"main\" (first at line 4)",
                "duplicate of a main job",
            ),
            ("scrape_configs:\n  - job_name: z\n    bogus: 1\n", "unknown field", "strict YAML in the file"),
            ("global: {}\n", "unknown field", "only scrape_configs in the file"),
        ];
        for (content, want, why) in cases {
            std::fs::write(dir.path().join("jobs/zz.yml"), content).unwrap();
            let err = load_str(text, &main).unwrap_err().to_string();
            assert!(err.contains("zz.yml") && err.contains(want), "{why}: {err}");
        }
        std::fs::remove_file(dir.path().join("jobs/zz.yml")).unwrap();
        let err = load_str("scrape_config_files: ['*/jobs.yml']\n", &main).unwrap_err().to_string();
        assert!(err.contains("invalid scrape config file path"), "a glob only in the last element: {err}");
    }
}
