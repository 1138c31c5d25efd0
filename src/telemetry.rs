//! trawl's own metrics, served on `/metrics`: scrape counters per job, queue state, process figures.
//!
//! What this is: a typed struct of atomics passed explicitly to the stages that count (no globals),
//! rendered in the Prometheus text format on request. Scrape loops count in locals during a scrape
//! and publish once per scrape, so nothing here is touched per sample. Labels are low-cardinality
//! only (the job, never the target URL). What this is not: the synthetic per-target series (`up`,
//! `scrape_duration_seconds`, …), which travel with the scraped samples; see [`crate::scrape`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters of one scrape job.
#[derive(Debug, Default)]
pub struct JobMetrics {
    /// Scrapes attempted.
    pub scrapes: AtomicU64,
    /// Scrapes that failed (`up` = 0).
    pub scrape_failures: AtomicU64,
    /// Samples parsed from pages.
    pub samples_scraped: AtomicU64,
    /// Samples kept after metric relabeling (what is sent, synthetic series excluded).
    pub samples_kept: AtomicU64,
    /// Body bytes received on the wire.
    pub bytes_scraped: AtomicU64,
    /// Staleness markers emitted.
    pub stale_markers: AtomicU64,
    /// Active targets (running scrape loops).
    pub targets_active: AtomicI64,
    /// Targets dropped by relabeling.
    pub targets_dropped: AtomicI64,
    /// Scrapes skipped because memory was over `--memory.limit`'s budget.
    pub scrapes_skipped_memory: AtomicU64,
    /// OpenMetrics `_created` lines that matched no metric point before them (ignored).
    pub created_lines_unmatched: AtomicU64,
}

/// Everything trawl counts about itself.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<String, std::sync::Arc<JobMetrics>>>,
    /// Batches that had to wait because a remote-write queue was full.
    pub queue_full_waits: AtomicU64,
    /// Samples printed to stdout (no remote write configured).
    pub samples_printed: AtomicU64,
    /// 1 if the last config load succeeded.
    pub config_last_reload_successful: AtomicI64,
    /// Unix seconds of the last successful config load.
    pub config_last_reload_success_timestamp_seconds: AtomicI64,
    /// `--memory.limit` in bytes, 0 for none.
    pub memory_limit_bytes: AtomicU64,
}

impl Metrics {
    /// The counters of `job`, created on first use.
    pub fn job(&self, job: &str) -> std::sync::Arc<JobMetrics> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.entry(job.to_owned()).or_default().clone()
    }

    /// Renders all metrics, plus `extra` (remote-write endpoints render themselves into it).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(4096);
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        type Field = fn(&JobMetrics) -> i64;
        let per_job: [(&str, &str, &str, Field); 10] = [
            ("trawl_scrapes_total", "counter", "Scrapes attempted.", |m| m.scrapes.load(Relaxed) as i64),
            ("trawl_scrape_failures_total", "counter", "Scrapes that failed (up=0).", |m| {
                m.scrape_failures.load(Relaxed) as i64
            }),
            ("trawl_scraped_samples_total", "counter", "Samples parsed from target pages.", |m| {
                m.samples_scraped.load(Relaxed) as i64
            }),
            ("trawl_kept_samples_total", "counter", "Samples kept after metric relabeling.", |m| {
                m.samples_kept.load(Relaxed) as i64
            }),
            ("trawl_scraped_bytes_total", "counter", "Page bytes received on the wire.", |m| {
                m.bytes_scraped.load(Relaxed) as i64
            }),
            ("trawl_stale_markers_total", "counter", "Staleness markers emitted.", |m| {
                m.stale_markers.load(Relaxed) as i64
            }),
            ("trawl_targets_active", "gauge", "Targets being scraped.", |m| m.targets_active.load(Relaxed)),
            ("trawl_scrapes_skipped_total", "counter", "Scrapes skipped, by reason.", |m| {
                m.scrapes_skipped_memory.load(Relaxed) as i64
            }),
            ("trawl_targets_dropped", "gauge", "Discovered targets dropped by relabeling.", |m| {
                m.targets_dropped.load(Relaxed)
            }),
            (
                "trawl_created_lines_unmatched_total",
                "counter",
                "OpenMetrics _created lines that matched no metric point before them (ignored).",
                |m| m.created_lines_unmatched.load(Relaxed) as i64,
            ),
        ];
        for (name, kind, help, get) in per_job {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            // The one reason a scrape is skipped today; the label leaves room for more.
            let reason = if name == "trawl_scrapes_skipped_total" { ",reason=\"memory\"" } else { "" };
            for (job, m) in &jobs {
                let job = crate::labels::escape_value(job);
                let _ = writeln!(out, "{name}{{scrape_job=\"{job}\"{reason}}} {}", get(m));
            }
        }
        let globals: [(&str, &str, &str, i64); 5] = [
            (
                "trawl_memory_limit_bytes",
                "gauge",
                "The memory budget (--memory.limit), 0 for none.",
                self.memory_limit_bytes.load(Relaxed) as i64,
            ),
            (
                "trawl_queue_full_waits_total",
                "counter",
                "Batches that waited for room in a full remote-write queue.",
                self.queue_full_waits.load(Relaxed) as i64,
            ),
            (
                "trawl_printed_samples_total",
                "counter",
                "Samples printed to stdout (no remote_write configured).",
                self.samples_printed.load(Relaxed) as i64,
            ),
            (
                "trawl_config_last_reload_successful",
                "gauge",
                "Whether the last configuration load succeeded.",
                self.config_last_reload_successful.load(Relaxed),
            ),
            (
                "trawl_config_last_reload_success_timestamp_seconds",
                "gauge",
                "Timestamp of the last successful configuration load.",
                self.config_last_reload_success_timestamp_seconds.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in globals {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        render_process(&mut out);
        out.push_str(extra);
        out
    }
}

/// `process_*` metrics from /proc, as client libraries export them: the perf harness reads
/// CPU and RSS from here as well as from /proc directly.
fn render_process(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Clock ticks per second: 100 on every Linux we target (CONFIG_HZ does not affect USER_HZ).
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_BYTES: u64 = 4096;
    if f.len() > 22 {
        let cpu =
            (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / TICKS_PER_SECOND;
        let rss = f[21].parse::<u64>().unwrap_or(0) * PAGE_BYTES;
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_job_and_process() {
        let m = Metrics::default();
        m.job("node").scrapes.fetch_add(3, Relaxed);
        let text = m.render("");
        assert!(text.contains("trawl_scrapes_total{scrape_job=\"node\"} 3"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
