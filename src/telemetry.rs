//! trawl's own metrics, served on `/metrics`: scrape counters per job, queue state, process figures.
//!
//! What this is: typed structs of atomics passed explicitly to the stages that count (no globals),
//! and the one way they are declared and rendered: a [`MetricSet`] lists its [`Family`]s (name,
//! type, HELP, and per series the labels and how to read the value) next to its fields, and
//! [`render`] writes any set in the Prometheus text format. Adding a metric is a field and a
//! table entry in the same file. Stages downstream of this vocabulary module (remote write)
//! register what they render as a [`Section`], replaced at each reload, so nothing is stitched
//! together by the caller. Rendering allocates nothing per series (values through `itoa` or
//! `f64`'s `Display`, label values escaped only when they need it); the body is written into
//! one `String` sized from the previous render (`benches/metrics.rs`).
//!
//! Scrape loops count in locals during a scrape and publish once per scrape, so nothing here is
//! touched per sample. Labels are low-cardinality only (the job, never the target URL). What
//! this is not: the synthetic per-target series (`up`, `scrape_duration_seconds`, …), which
//! travel with the scraped samples; see [`crate::scrape`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// A metric family's type, as `# TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset at restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample value as it is written: integers exactly, others with `f64`'s shortest `Display`
/// (`1.5`, `7`), as the sets rendered them before they shared this code.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// Written as a decimal integer.
    Int(i64),
    /// Written with `f64`'s `Display`.
    Float(f64),
}

/// How one series of a family reads its value from a set.
pub type Read<M> = fn(&M) -> Value;

/// One metric family of the set `M`: its name, type, HELP, and its series.
pub struct Family<M: 'static> {
    /// The full metric name, `trawl_…`.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its HELP text.
    pub help: &'static str,
    /// One entry per series of an instance: the labels after the instance's own label, already
    /// in text form (`reason="memory"`; `""` for none), and how to read its value.
    pub series: &'static [(&'static str, Read<M>)],
}

/// A set of metrics rendered per instance (a job, an endpoint), told apart by one label.
pub trait MetricSet: Sized + 'static {
    /// The label naming the instance (`scrape_job`, `endpoint`); `""` for a set with a single,
    /// unlabelled instance.
    const LABEL: &'static str;
    /// Its families, in render order.
    const FAMILIES: &'static [Family<Self>];
}

/// Renders every family of `M` over `instances`: HELP and TYPE once per family (as the text
/// format requires), then one line per instance and series.
pub fn render<'a, M, I>(instances: I, out: &mut String)
where
    M: MetricSet,
    I: IntoIterator<Item = (&'a str, &'a M)>,
    I::IntoIter: Clone,
{
    let instances = instances.into_iter();
    for f in M::FAMILIES {
        for line in [("# HELP ", f.help), ("# TYPE ", f.kind.as_str())] {
            out.push_str(line.0);
            out.push_str(f.name);
            out.push(' ');
            out.push_str(line.1);
            out.push('\n');
        }
        for (instance, m) in instances.clone() {
            for (labels, read) in f.series {
                out.push_str(f.name);
                if !M::LABEL.is_empty() {
                    out.push('{');
                    out.push_str(M::LABEL);
                    out.push_str("=\"");
                    out.push_str(&crate::labels::escape_value(instance));
                    out.push('"');
                    if !labels.is_empty() {
                        out.push(',');
                        out.push_str(labels);
                    }
                    out.push('}');
                } else if !labels.is_empty() {
                    out.push('{');
                    out.push_str(labels);
                    out.push('}');
                }
                out.push(' ');
                match read(m) {
                    Value::Int(v) => out.push_str(itoa::Buffer::new().format(v)),
                    Value::Float(v) => {
                        let _ = write!(out, "{v}");
                    }
                }
                out.push('\n');
            }
        }
    }
}

/// What a stage downstream of this module renders into `/metrics` (the remote-write endpoints
/// and their disk buffers), registered with [`Metrics::set_section`].
pub trait Section: Send + Sync {
    /// Appends this section's families.
    fn render(&self, out: &mut String);
}

/// Reads a counter.
pub fn counter(a: &AtomicU64) -> Value {
    Value::Int(a.load(Relaxed) as i64)
}

/// Reads a gauge.
pub fn gauge(a: &AtomicI64) -> Value {
    Value::Int(a.load(Relaxed))
}

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

impl MetricSet for JobMetrics {
    const LABEL: &'static str = "scrape_job";
    const FAMILIES: &'static [Family<Self>] = &[
        Family {
            name: "trawl_scrapes_total",
            kind: Kind::Counter,
            help: "Scrapes attempted.",
            series: &[("", |m| counter(&m.scrapes))],
        },
        Family {
            name: "trawl_scrape_failures_total",
            kind: Kind::Counter,
            help: "Scrapes that failed (up=0).",
            series: &[("", |m| counter(&m.scrape_failures))],
        },
        Family {
            name: "trawl_scraped_samples_total",
            kind: Kind::Counter,
            help: "Samples parsed from target pages.",
            series: &[("", |m| counter(&m.samples_scraped))],
        },
        Family {
            name: "trawl_kept_samples_total",
            kind: Kind::Counter,
            help: "Samples kept after metric relabeling.",
            series: &[("", |m| counter(&m.samples_kept))],
        },
        Family {
            name: "trawl_scraped_bytes_total",
            kind: Kind::Counter,
            help: "Page bytes received on the wire.",
            series: &[("", |m| counter(&m.bytes_scraped))],
        },
        Family {
            name: "trawl_stale_markers_total",
            kind: Kind::Counter,
            help: "Staleness markers emitted.",
            series: &[("", |m| counter(&m.stale_markers))],
        },
        Family {
            name: "trawl_targets_active",
            kind: Kind::Gauge,
            help: "Targets being scraped.",
            series: &[("", |m| gauge(&m.targets_active))],
        },
        Family {
            name: "trawl_scrapes_skipped_total",
            kind: Kind::Counter,
            help: "Scrapes skipped, by reason.",
            // The one reason a scrape is skipped today; the label leaves room for more.
            series: &[("reason=\"memory\"", |m| counter(&m.scrapes_skipped_memory))],
        },
        Family {
            name: "trawl_targets_dropped",
            kind: Kind::Gauge,
            help: "Discovered targets dropped by relabeling.",
            series: &[("", |m| gauge(&m.targets_dropped))],
        },
        Family {
            name: "trawl_created_lines_unmatched_total",
            kind: Kind::Counter,
            help: "OpenMetrics _created lines that matched no metric point before them (ignored).",
            series: &[("", |m| counter(&m.created_lines_unmatched))],
        },
    ];
}

/// Everything trawl counts about itself.
#[derive(Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<String, Arc<JobMetrics>>>,
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
    /// What downstream stages render, by name, in registration order.
    sections: Mutex<Vec<(&'static str, Arc<dyn Section>)>>,
    /// Length of the last render, so the next one is written without growing its buffer.
    last_len: AtomicUsize,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl MetricSet for Metrics {
    const LABEL: &'static str = "";
    const FAMILIES: &'static [Family<Self>] = &[
        Family {
            name: "trawl_memory_limit_bytes",
            kind: Kind::Gauge,
            help: "The memory budget (--memory.limit), 0 for none.",
            series: &[("", |m| counter(&m.memory_limit_bytes))],
        },
        Family {
            name: "trawl_queue_full_waits_total",
            kind: Kind::Counter,
            help: "Batches that waited for room in a full remote-write queue.",
            series: &[("", |m| counter(&m.queue_full_waits))],
        },
        Family {
            name: "trawl_printed_samples_total",
            kind: Kind::Counter,
            help: "Samples printed to stdout (no remote_write configured).",
            series: &[("", |m| counter(&m.samples_printed))],
        },
        Family {
            name: "trawl_config_last_reload_successful",
            kind: Kind::Gauge,
            help: "Whether the last configuration load succeeded.",
            series: &[("", |m| gauge(&m.config_last_reload_successful))],
        },
        Family {
            name: "trawl_config_last_reload_success_timestamp_seconds",
            kind: Kind::Gauge,
            help: "Timestamp of the last successful configuration load.",
            series: &[("", |m| gauge(&m.config_last_reload_success_timestamp_seconds))],
        },
    ];
}

impl Metrics {
    /// The counters of `job`, created on first use.
    pub fn job(&self, job: &str) -> Arc<JobMetrics> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.entry(job.to_owned()).or_default().clone()
    }

    /// Registers `section` under `name`, replacing what was registered under it (a reload
    /// replaces the remote-write endpoints as a whole).
    pub fn set_section(&self, name: &'static str, section: Arc<dyn Section>) {
        let mut sections = self.sections.lock().unwrap_or_else(|e| e.into_inner());
        match sections.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = section,
            None => sections.push((name, section)),
        }
    }

    /// Renders all metrics: per job, the globals, the process, then the registered sections.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.last_len.load(Relaxed).max(4096));
        {
            // Rendered under the lock rather than from a copy: `job` takes it only when a job
            // starts, and a copy would allocate per job.
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            render(jobs.iter().map(|(job, m)| (job.as_str(), m.as_ref())), &mut out);
        }
        render([("", self)], &mut out);
        render_process(&mut out);
        let sections = self.sections.lock().unwrap_or_else(|e| e.into_inner());
        for (_, section) in sections.iter() {
            section.render(&mut out);
        }
        self.last_len.store(out.len(), Relaxed);
        out
    }
}

/// `process_*` metrics from /proc, as client libraries export them: the perf harness reads
/// CPU and RSS from here as well as from /proc directly.
fn render_process(out: &mut String) {
    // `/proc/self/stat` is one line of a few hundred bytes (the command name is at most 16);
    // read into the stack, so the render allocates nothing for it.
    let mut buf = [0u8; 1024];
    let Ok(mut file) = std::fs::File::open("/proc/self/stat") else { return };
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return,
        }
    }
    let Ok(stat) = std::str::from_utf8(&buf[..len]) else { return };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return };
    let mut f = rest.split_whitespace();
    // Clock ticks per second: 100 on every Linux we target (CONFIG_HZ does not affect USER_HZ).
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_BYTES: u64 = 4096;
    let (utime, stime, rss) = (f.nth(11), f.next(), f.nth(8));
    let (Some(utime), Some(stime), Some(rss)) = (utime, stime, rss) else { return };
    // Field 23 (vsize) must exist too, as before: a stat line cut short is not rendered.
    if f.next().is_none() {
        return;
    }
    let cpu = (utime.parse::<f64>().unwrap_or(0.0) + stime.parse::<f64>().unwrap_or(0.0)) / TICKS_PER_SECOND;
    let rss = rss.parse::<u64>().unwrap_or(0) * PAGE_BYTES;
    let _ = writeln!(
        out,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
         # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n\
         # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_job_and_process() {
        let m = Metrics::default();
        m.job("node").scrapes.fetch_add(3, Relaxed);
        let text = m.render();
        assert!(text.contains("trawl_scrapes_total{scrape_job=\"node\"} 3"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
