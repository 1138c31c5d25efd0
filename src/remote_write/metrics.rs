//! The remote-write sender's own metrics, one set per endpoint, and its disk buffer's.
//!
//! What this is: counters and gauges as relaxed atomics, updated by the queue, the sender and
//! the disk buffer, and their families for `/metrics`. What this is not: how they are rendered
//! ([`crate::telemetry`]).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::telemetry::{self, Family, Kind, MetricSet, Section, Value};

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
    /// Samples accepted by [`Endpoint::send`](super::Endpoint::send) and not yet sent, failed or dropped.
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
    /// Metadata entries in requests the receiver accepted (1.0 `metadata_config`).
    pub metadata_sent_total: AtomicU64,
    /// Metadata entries in requests the receiver refused or that could not be encoded.
    pub metadata_failed_total: AtomicU64,
    /// Compressed bytes of accepted metadata requests.
    pub metadata_bytes_total: AtomicU64,
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

impl MetricSet for RemoteWriteMetrics {
    const LABEL: &'static str = "endpoint";
    const FAMILIES: &'static [Family<Self>] = &[
        Family {
            name: "trawl_remote_write_samples_sent_total",
            kind: Kind::Counter,
            help: "Samples in remote-write requests the receiver accepted.",
            series: &[("", |m| float(&m.samples_sent_total))],
        },
        Family {
            name: "trawl_remote_write_samples_failed_total",
            kind: Kind::Counter,
            help: "Samples dropped after a non-retryable answer from the receiver.",
            series: &[("", |m| float(&m.samples_failed_total))],
        },
        Family {
            name: "trawl_remote_write_samples_retried_total",
            kind: Kind::Counter,
            help: "Samples in remote-write requests that were retried, counted per retry.",
            series: &[("", |m| float(&m.samples_retried_total))],
        },
        Family {
            name: "trawl_remote_write_samples_dropped_total",
            kind: Kind::Counter,
            help: "Samples dropped before being sent, by reason.",
            series: &[
                ("reason=\"shutdown\"", |m| float(&m.samples_dropped_shutdown_total)),
                ("reason=\"too_old\"", |m| float(&m.samples_dropped_too_old_total)),
                ("reason=\"write_relabel\"", |m| float(&m.samples_dropped_relabel_total)),
                ("reason=\"no_tenant\"", |m| float(&m.samples_dropped_no_tenant_total)),
            ],
        },
        Family {
            name: "trawl_remote_write_exemplars_sent_total",
            kind: Kind::Counter,
            help: "Exemplars in remote-write requests the receiver accepted.",
            series: &[("", |m| float(&m.exemplars_sent_total))],
        },
        Family {
            name: "trawl_remote_write_metadata_sent_total",
            kind: Kind::Counter,
            help: "Metadata entries in remote-write 1.0 requests the receiver accepted.",
            series: &[("", |m| float(&m.metadata_sent_total))],
        },
        Family {
            name: "trawl_remote_write_metadata_failed_total",
            kind: Kind::Counter,
            help: "Metadata entries in remote-write 1.0 requests the receiver refused.",
            series: &[("", |m| float(&m.metadata_failed_total))],
        },
        Family {
            name: "trawl_remote_write_metadata_bytes_total",
            kind: Kind::Counter,
            help: "Compressed bytes of remote-write 1.0 metadata requests the receiver accepted.",
            series: &[("", |m| float(&m.metadata_bytes_total))],
        },
        Family {
            name: "trawl_remote_write_written_total",
            kind: Kind::Counter,
            help: "Items the receiver confirmed in X-Prometheus-Remote-Write-*-Written headers, by kind.",
            series: &[
                ("kind=\"samples\"", |m| float(&m.samples_written_total)),
                ("kind=\"histograms\"", |m| float(&m.histograms_written_total)),
                ("kind=\"exemplars\"", |m| float(&m.exemplars_written_total)),
            ],
        },
        Family {
            name: "trawl_remote_write_unwritten_total",
            kind: Kind::Counter,
            help: "Items of accepted remote-write 2.0 requests the receiver did not confirm as written.",
            series: &[
                ("kind=\"samples\"", |m| float(&m.samples_unwritten_total)),
                ("kind=\"exemplars\"", |m| float(&m.exemplars_unwritten_total)),
            ],
        },
        Family {
            name: "trawl_remote_write_requests_partially_written_total",
            kind: Kind::Counter,
            help: "Accepted remote-write 2.0 requests whose X-Prometheus-Remote-Write-*-Written headers \
                   confirmed fewer items than sent.",
            series: &[("", |m| float(&m.requests_partially_written_total))],
        },
        Family {
            name: "trawl_remote_write_protocol",
            kind: Kind::Gauge,
            help: "The remote-write protocol version in use (1 for the labelled version).",
            series: &[
                ("version=\"2.0\"", |m| Value::Float(f64::from(u8::from(m.protocol_v2.load(Relaxed))))),
                ("version=\"1.0\"", |m| Value::Float(f64::from(u8::from(!m.protocol_v2.load(Relaxed))))),
            ],
        },
        Family {
            name: "trawl_remote_write_bytes_sent_total",
            kind: Kind::Counter,
            help: "Compressed bytes of remote-write requests the receiver accepted.",
            series: &[("", |m| float(&m.bytes_sent_total))],
        },
        Family {
            name: "trawl_remote_write_requests_total",
            kind: Kind::Counter,
            help: "Remote-write request attempts, by outcome.",
            series: &[
                ("outcome=\"success\"", |m| float(&m.requests_success_total)),
                ("outcome=\"retried\"", |m| float(&m.requests_retried_total)),
                ("outcome=\"failed\"", |m| float(&m.requests_failed_total)),
            ],
        },
        Family {
            name: "trawl_remote_write_queue_length",
            kind: Kind::Gauge,
            help: "Samples queued or in flight.",
            series: &[("", |m| Value::Float(m.queue_length.load(Relaxed) as f64))],
        },
        Family {
            name: "trawl_remote_write_queue_capacity",
            kind: Kind::Gauge,
            help: "Most samples queued or in flight before senders wait.",
            series: &[("", |m| float(&m.queue_capacity))],
        },
        Family {
            name: "trawl_remote_write_shards",
            kind: Kind::Gauge,
            help: "Concurrent senders.",
            series: &[("", |m| float(&m.shards))],
        },
        Family {
            name: "trawl_remote_write_highest_sent_timestamp_seconds",
            kind: Kind::Gauge,
            help: "Highest sample timestamp the receiver accepted, in seconds since the epoch.",
            series: &[("", |m| Value::Float(m.highest_sent_timestamp_ms.load(Relaxed) as f64 / 1000.0))],
        },
        Family {
            name: "trawl_remote_write_last_send_error_timestamp_seconds",
            kind: Kind::Gauge,
            help: "When the last remote-write attempt failed, in seconds since the epoch (0: never).",
            series: &[("", |m| Value::Float(m.last_send_error_timestamp_ms.load(Relaxed) as f64 / 1000.0))],
        },
    ];
}

impl RemoteWriteMetrics {
    /// Renders this endpoint's metrics in the Prometheus text format, with HELP and TYPE.
    pub fn render(&self, endpoint: &str, out: &mut String) {
        telemetry::render([(endpoint, self)], out);
    }

    /// Renders several endpoints' metrics with each family's HELP and TYPE written once, as the
    /// text format requires when more than one endpoint is configured.
    pub fn render_all<'a, I>(endpoints: I, out: &mut String)
    where
        I: IntoIterator<Item = (&'a str, &'a RemoteWriteMetrics)>,
        I::IntoIter: Clone,
    {
        telemetry::render(endpoints, out);
    }

    /// The last failed attempt's error message, if any attempt has failed.
    pub fn last_send_error(&self) -> Option<String> {
        self.last_send_error.lock().ok().and_then(|e| e.clone())
    }

    pub(super) fn record_error(&self, message: String) {
        self.last_send_error_timestamp_ms.store(crate::now_ms(), Relaxed);
        if let Ok(mut e) = self.last_send_error.lock() {
            *e = Some(message);
        }
    }
}

/// The buffer's own metrics, per endpoint.
#[derive(Debug, Default)]
pub struct DiskMetrics {
    /// Bytes of segment files.
    pub bytes: AtomicI64,
    /// Records written and not yet delivered or dropped.
    pub records_pending: AtomicI64,
    /// Samples in those records.
    pub samples_pending: AtomicI64,
    /// Samples written to disk.
    pub written_samples_total: AtomicU64,
    /// Samples read back from disk and accepted by the receiver.
    pub replayed_samples_total: AtomicU64,
    /// Samples dropped because `max_bytes` was reached.
    pub dropped_max_bytes_total: AtomicU64,
    /// Samples dropped because they were older than `max_age`.
    pub dropped_max_age_total: AtomicU64,
    /// Damaged or truncated records skipped.
    pub corrupt_records_total: AtomicU64,
}

impl MetricSet for DiskMetrics {
    const LABEL: &'static str = "endpoint";
    const FAMILIES: &'static [Family<Self>] = &[
        Family {
            name: "trawl_remote_write_disk_bytes",
            kind: Kind::Gauge,
            help: "Bytes of the on-disk buffer's segment files.",
            series: &[("", |m| float_i(&m.bytes))],
        },
        Family {
            name: "trawl_remote_write_disk_records_pending",
            kind: Kind::Gauge,
            help: "Requests on disk not yet delivered.",
            series: &[("", |m| float_i(&m.records_pending))],
        },
        Family {
            name: "trawl_remote_write_disk_samples_pending",
            kind: Kind::Gauge,
            help: "Samples on disk not yet delivered.",
            series: &[("", |m| float_i(&m.samples_pending))],
        },
        Family {
            name: "trawl_remote_write_disk_written_samples_total",
            kind: Kind::Counter,
            help: "Samples written to the on-disk buffer.",
            series: &[("", |m| float(&m.written_samples_total))],
        },
        Family {
            name: "trawl_remote_write_disk_replayed_samples_total",
            kind: Kind::Counter,
            help: "Samples replayed from disk and accepted by the receiver.",
            series: &[("", |m| float(&m.replayed_samples_total))],
        },
        Family {
            name: "trawl_remote_write_disk_dropped_samples_total",
            kind: Kind::Counter,
            help: "Samples dropped from disk by a cap, by reason.",
            series: &[
                ("reason=\"max_bytes\"", |m| float(&m.dropped_max_bytes_total)),
                ("reason=\"max_age\"", |m| float(&m.dropped_max_age_total)),
            ],
        },
        Family {
            name: "trawl_remote_write_disk_corrupt_records_total",
            kind: Kind::Counter,
            help: "Damaged or truncated on-disk records skipped.",
            series: &[("", |m| float(&m.corrupt_records_total))],
        },
    ];
}

impl DiskMetrics {
    /// Renders every endpoint's buffer metrics with each family's HELP and TYPE once.
    pub fn render_all<'a>(endpoints: &[(&'a str, &'a DiskMetrics)], out: &mut String) {
        telemetry::render(endpoints.iter().copied(), out);
    }
}

/// The endpoints' metrics as one `/metrics` section: the sender's families over every
/// endpoint, then the disk buffers' over the endpoints that have one (none: not rendered).
/// Registered with [`telemetry::Metrics::set_section`] at start and at every reload.
#[derive(Default)]
pub struct EndpointsSection {
    /// Each endpoint's name, its metrics and its disk buffer's.
    pub endpoints: Vec<(String, Arc<RemoteWriteMetrics>, Option<Arc<DiskMetrics>>)>,
}

impl Section for EndpointsSection {
    fn render(&self, out: &mut String) {
        let eps = &self.endpoints;
        telemetry::render(eps.iter().map(|(n, m, _)| (n.as_str(), m.as_ref())), out);
        if eps.iter().any(|(_, _, d)| d.is_some()) {
            telemetry::render(eps.iter().filter_map(|(n, _, d)| Some((n.as_str(), d.as_deref()?))), out);
        }
    }
}

/// A counter, rendered as `f64` (as the sender's metrics always were).
fn float(a: &AtomicU64) -> Value {
    Value::Float(a.load(Relaxed) as f64)
}

/// A gauge, rendered as `f64`.
fn float_i(a: &AtomicI64) -> Value {
    Value::Float(a.load(Relaxed) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
