//! The remote-write sender's own metrics, one set per endpoint, and its disk buffer's.
//!
//! What this is: counters and gauges as relaxed atomics, updated by the queue, the sender and
//! the disk buffer, and their families for `/metrics`. What this is not: how they are rendered
//! ([`crate::telemetry`]).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

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

impl DiskMetrics {
    /// Renders every endpoint's buffer metrics with each family's HELP and TYPE once.
    pub fn render_all<'a>(endpoints: &[(&'a str, &'a DiskMetrics)], out: &mut String) {
        use std::fmt::Write as _;
        type Values = fn(&DiskMetrics) -> Vec<(&'static str, f64)>;
        let families: [(&str, &str, &str, Values); 7] = [
            ("disk_bytes", "gauge", "Bytes of the on-disk buffer's segment files.", |m| {
                vec![("", m.bytes.load(Relaxed) as f64)]
            }),
            ("disk_records_pending", "gauge", "Requests on disk not yet delivered.", |m| {
                vec![("", m.records_pending.load(Relaxed) as f64)]
            }),
            ("disk_samples_pending", "gauge", "Samples on disk not yet delivered.", |m| {
                vec![("", m.samples_pending.load(Relaxed) as f64)]
            }),
            ("disk_written_samples_total", "counter", "Samples written to the on-disk buffer.", |m| {
                vec![("", m.written_samples_total.load(Relaxed) as f64)]
            }),
            (
                "disk_replayed_samples_total",
                "counter",
                "Samples replayed from disk and accepted by the receiver.",
                |m| vec![("", m.replayed_samples_total.load(Relaxed) as f64)],
            ),
            (
                "disk_dropped_samples_total",
                "counter",
                "Samples dropped from disk by a cap, by reason.",
                |m| {
                    vec![
                        ("reason=\"max_bytes\"", m.dropped_max_bytes_total.load(Relaxed) as f64),
                        ("reason=\"max_age\"", m.dropped_max_age_total.load(Relaxed) as f64),
                    ]
                },
            ),
            ("disk_corrupt_records_total", "counter", "Damaged or truncated on-disk records skipped.", |m| {
                vec![("", m.corrupt_records_total.load(Relaxed) as f64)]
            }),
        ];
        for (name, kind, help, values) in families {
            let _ = writeln!(out, "# HELP trawl_remote_write_{name} {help}");
            let _ = writeln!(out, "# TYPE trawl_remote_write_{name} {kind}");
            for (endpoint, m) in endpoints {
                let endpoint = crate::labels::escape_value(endpoint);
                for (extra, v) in values(m) {
                    let sep = if extra.is_empty() { "" } else { "," };
                    let _ =
                        writeln!(out, "trawl_remote_write_{name}{{endpoint=\"{endpoint}\"{sep}{extra}}} {v}");
                }
            }
        }
    }
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
