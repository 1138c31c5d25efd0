//! Scraping: per job, a manager that keeps one loop per target; per target, a loop that fetches
//! the page and a synchronous processor that turns it into a batch of series records.
//!
//! What this is: the data plane for one target. Every interval, at a fixed per-target offset:
//! fetch → parse → merge target labels → metric relabeling → limits → staleness → hand the batch
//! on, then the five synthetic series Prometheus reports per scrape. A failed scrape (HTTP error,
//! parse error, a limit) discards the whole page, reports `up 0` and stale-marks the previous
//! scrape's series, exactly as Prometheus' `scrapeLoop` does. What this is not: HTTP details
//! ([`crate::fetch`]), parsing ([`crate::parse`]), rule semantics ([`crate::relabel`]).
//!
//! # The parts, in the order a page meets them
//!
//! - [`job`]: the per-job manager ([`run_job`]) and the views the admin pages read.
//! - [`target`]: the async loop of one target ([`TargetLoop`]): schedule, fetch, hand-off.
//! - [`page`]: the synchronous page processor ([`Page`]), which benches and tests call without
//!   an HTTP client or a channel. Inside it: `series` (the per-target table of raw series, 16
//!   bytes each), `verdict` (relabeling, once per new series), `record` (writing a series' record
//!   from the page bytes), `last` (the compressed last series set, for stale markers).
//!
//! # Memory per series
//!
//! A target keeps, per series it exposes, one 16-byte table entry and its share of the compressed
//! copy of its last series set (a few bytes); no label text. `tests/pipeline_alloc.rs` measures it
//! and perf/README.md has the dense-node figures and the design's evidence.

use crate::config::ScrapeConfig;
use crate::fetch::FetchError;
use crate::labels::Str;
use crate::parse;
use crate::relabel::RelabelConfig;

pub mod job;
mod last;
pub mod page;
pub mod protobuf;
mod record;
mod series;
pub mod target;
mod verdict;

#[cfg(test)]
mod tests;

pub use job::{
    ActiveTarget, Health, JobUpdate, LoopUpdate, Output, PoolView, TargetStatus, TargetsView, run_job,
};
pub use last::LastSeries;
pub use page::{Counts, Page};
pub use target::{TargetLoop, offset};

/// Why a scrape failed after the page arrived. Per-scrape, never fatal: the next scrape tries
/// again, so all kinds are retryable at the loop's interval.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The request failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The page does not parse.
    #[error("{0}")]
    Parse(#[from] parse::ParseError),
    /// More samples than `sample_limit` after metric relabeling.
    #[error("sample limit exceeded")]
    SampleLimit,
    /// A series has more labels than `label_limit`.
    #[error("label_limit exceeded (metric: {0}, number of labels: {1}, limit: {2})")]
    LabelLimit(String, usize, u64),
    /// A label name is longer than `label_name_length_limit`.
    #[error("label_name_length_limit exceeded (metric: {0}, label name: {1}, limit: {2})")]
    LabelNameLength(String, String, u64),
    /// A label value is longer than `label_value_length_limit`.
    #[error("label_value_length_limit exceeded (metric: {0}, label name: {1}, limit: {2})")]
    LabelValueLength(String, String, u64),
    /// A series is not valid after relabeling (no metric name, or a limit hit).
    #[error("{0}")]
    Series(Str),
    /// `scrape_timeout` passed while the page was being processed.
    #[error("context deadline exceeded")]
    Timeout,
    /// A protobuf page, or a native histogram on it, is broken or over a limit.
    #[error("{0}")]
    Protobuf(#[from] protobuf::ProtobufError),
    /// The memory budget refused the memory the page's samples need.
    #[error(transparent)]
    Memory(#[from] crate::budget::Refused),
    /// The response's `Content-Type` names no format trawl reads and the job has no
    /// `fallback_scrape_protocol` (Prometheus 3's messages, see
    /// [`parse::format_from_content_type`]).
    #[error("{0}")]
    ContentType(String),
}

/// Settings shared by all targets of a job.
#[derive(Debug, PartialEq)]
pub struct JobSettings {
    /// The job name.
    pub job: String,
    /// Keep exposed labels on a clash with target labels.
    pub honor_labels: bool,
    /// Use exposed timestamps.
    pub honor_timestamps: bool,
    /// Stale-mark series that carry explicit timestamps too.
    pub track_timestamps_staleness: bool,
    /// 0 = none.
    pub sample_limit: u64,
    /// 0 = none.
    pub label_limit: u64,
    /// 0 = none.
    pub label_name_length_limit: u64,
    /// 0 = none.
    pub label_value_length_limit: u64,
    /// 0 = none.
    pub body_size_limit: u64,
    /// Ask for gzip.
    pub gzip: bool,
    /// The job's `metric_relabel_configs`.
    pub metric_relabel: Vec<RelabelConfig>,
    /// Auth and TLS for the targets.
    pub http: crate::config::HttpClientConfig,
    /// The `Accept` header of every scrape, built from `scrape_protocols` and the escaping
    /// scheme exactly as Prometheus 3 builds it.
    pub accept: String,
    /// How a response with a blank or unknown `Content-Type` is read
    /// (`fallback_scrape_protocol`); `None` fails such a scrape.
    pub fallback_scrape_protocol: Option<crate::config::ScrapeProtocol>,
    /// `metric_name_validation_scheme`: `true` for `utf8` (Prometheus 3's default), `false` for
    /// `legacy`, which fails a scrape with a series whose names are not legacy names.
    pub metric_name_validation_utf8: bool,
    /// `scrape_native_histograms`: ingest native histograms (when false, Prometheus reads a
    /// histogram exposed both ways as classic, and a native-only one as classic with just the
    /// `+Inf` bucket, count and sum).
    pub scrape_native_histograms: bool,
    /// `always_scrape_classic_histograms` (old name `scrape_classic_histograms`): keep the classic
    /// buckets of a histogram also exposed as native.
    pub always_scrape_classic_histograms: bool,
    /// `native_histogram_bucket_limit`: more buckets than this lower the resolution until they
    /// fit; if they never do, the scrape fails (0 = none).
    pub native_histogram_bucket_limit: u64,
    /// `native_histogram_min_bucket_factor`: lower the resolution until the growth factor from
    /// one bucket to the next is at least this (0 = none).
    pub native_histogram_min_bucket_factor: f64,
    /// `convert_classic_histograms_to_nhcb`: always false (the config refuses `true`: trawl
    /// does not make custom-bucket histograms yet).
    pub convert_classic_histograms_to_nhcb: bool,
}

impl Default for JobSettings {
    /// Prometheus' defaults for a job named `j` with no target labels' config: what tests and
    /// benches start from.
    fn default() -> Self {
        let protocols = crate::config::scrape_protocols::DEFAULT_SCRAPE_PROTOCOLS;
        JobSettings {
            job: "j".into(),
            honor_labels: false,
            honor_timestamps: true,
            track_timestamps_staleness: false,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: 0,
            gzip: true,
            metric_relabel: Vec::new(),
            http: Default::default(),
            accept: crate::config::scrape_protocols::accept_header(
                &protocols,
                crate::config::EscapingScheme::AllowUtf8,
            ),
            fallback_scrape_protocol: None,
            metric_name_validation_utf8: true,
            scrape_native_histograms: false,
            always_scrape_classic_histograms: false,
            native_histogram_bucket_limit: 0,
            native_histogram_min_bucket_factor: 0.0,
            convert_classic_histograms_to_nhcb: false,
        }
    }
}

impl JobSettings {
    /// The settings of a loaded (defaults filled) scrape config.
    pub fn from_config(sc: &ScrapeConfig) -> Self {
        // Filled in by `config::load_str`; a config built in code gets Prometheus' defaults.
        let negotiation = sc.negotiation.clone().unwrap_or_else(|| crate::config::Negotiation {
            protocols: crate::config::scrape_protocols::DEFAULT_SCRAPE_PROTOCOLS.to_vec(),
            fallback: None,
            utf8_names: true,
            escaping: crate::config::EscapingScheme::AllowUtf8,
        });
        JobSettings {
            job: sc.job().to_owned(),
            honor_labels: sc.honor_labels,
            honor_timestamps: sc.honor_timestamps,
            track_timestamps_staleness: sc.track_timestamps_staleness,
            sample_limit: sc.sample_limit.unwrap_or(0),
            label_limit: sc.label_limit.unwrap_or(0),
            label_name_length_limit: sc.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: sc.label_value_length_limit.unwrap_or(0),
            body_size_limit: sc.body_size_limit.map(|b| b.0).unwrap_or(0),
            gzip: sc.enable_compression,
            metric_relabel: sc.metric_relabel_configs.clone(),
            http: sc.http_client_config(),
            accept: crate::config::scrape_protocols::accept_header(
                &negotiation.protocols,
                negotiation.escaping,
            ),
            fallback_scrape_protocol: negotiation.fallback,
            metric_name_validation_utf8: negotiation.utf8_names,
            scrape_native_histograms: sc.scrape_native_histograms.unwrap_or(false),
            always_scrape_classic_histograms: sc.always_scrape_classic_histograms.unwrap_or(false),
            native_histogram_bucket_limit: sc.native_histogram_bucket_limit,
            native_histogram_min_bucket_factor: sc.native_histogram_min_bucket_factor,
            convert_classic_histograms_to_nhcb: sc.convert_classic_histograms_to_nhcb.unwrap_or(false),
        }
    }
}
