//! The memory budget (`--memory.limit`): trawl keeps its resident memory under a limit by
//! back-pressure, not by being OOM-killed.
//!
//! What this is: a sampler that reads the process' RSS every [`SAMPLE_INTERVAL`] and a pressure
//! flag with hysteresis: on above [`PRESSURE_ON_FRACTION`] of the limit, off again below
//! [`PRESSURE_OFF_FRACTION`]. Under pressure, scrape loops skip their scrape (counted per job in
//! `trawl_scrapes_skipped_total{reason="memory"}`, one WARN line per episode), which stops new
//! samples and new series from adding to memory while the remote-write queues drain (mimalloc
//! returns the pages they free to the OS on its own). The default, `auto`, is 90 % of the
//! container's cgroup memory limit (a Kubernetes `limits.memory`), so a DaemonSet pod degrades by
//! skipping scrapes instead of restarting and losing its queue.
//!
//! What this is not: a hard cap. Memory already held (series state of every target, queued
//! samples up to each endpoint's `queue_config.capacity`) is not shed; size those for the node.
//! A skipped scrape writes no `up` sample, as a scrape that never happened would not.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often RSS is read (a few µs from /proc each time).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// Pressure starts above this fraction of the limit…
pub const PRESSURE_ON_FRACTION: f64 = 0.9;
/// …and ends below this one, so a process hovering at the line does not flap.
pub const PRESSURE_OFF_FRACTION: f64 = 0.8;
/// `auto` takes this fraction of the cgroup limit: room for what the budget cannot shed.
pub const AUTO_CGROUP_FRACTION: f64 = 0.9;
/// cgroup v1 reports "no limit" as a huge number (page-rounded i64::MAX); beyond this is none.
const UNLIMITED_BYTES: u64 = 1 << 60;
const PAGE_BYTES: u64 = 4096;

/// A `--memory.limit` value that does not parse. Not retryable: the flag must be fixed.
#[derive(Debug, thiserror::Error)]
#[error("--memory.limit: {0}")]
pub struct BudgetError(String);

/// The process' memory budget, shared by the sampler and the scrape loops.
#[derive(Debug)]
pub struct MemoryBudget {
    limit_bytes: u64,
    rss_bytes: AtomicU64,
    pressure: AtomicBool,
}

impl MemoryBudget {
    /// A budget of `limit_bytes`; not under pressure until the sampler says so.
    pub fn new(limit_bytes: u64) -> Self {
        MemoryBudget { limit_bytes, rss_bytes: AtomicU64::new(0), pressure: AtomicBool::new(false) }
    }

    /// The limit in bytes.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Whether scrapes should be skipped now.
    pub fn under_pressure(&self) -> bool {
        self.pressure.load(Relaxed)
    }

    /// Records an RSS reading and updates the pressure flag; returns it, and whether it changed.
    pub fn observe(&self, rss_bytes: u64) -> (bool, bool) {
        self.rss_bytes.store(rss_bytes, Relaxed);
        let was = self.pressure.load(Relaxed);
        let limit = self.limit_bytes as f64;
        let now = if was {
            rss_bytes as f64 >= limit * PRESSURE_OFF_FRACTION
        } else {
            rss_bytes as f64 > limit * PRESSURE_ON_FRACTION
        };
        self.pressure.store(now, Relaxed);
        (now, now != was)
    }

    /// Samples RSS until `stop` (see [`MemoryBudget::check`]).
    pub async fn run(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.check(),
            }
        }
    }

    /// Reads RSS once, updates the pressure flag, and logs when pressure starts or ends.
    pub fn check(&self) {
        let Some(rss) = resident_bytes() else { return };
        match self.observe(rss) {
            (true, true) => tracing::warn!(
                rss_bytes = rss,
                limit_bytes = self.limit_bytes,
                "Memory above the budget: skipping scrapes until it is back under {:.0} %.",
                PRESSURE_OFF_FRACTION * 100.0
            ),
            (false, true) => tracing::info!(rss_bytes = rss, "Memory back under the budget; scraping again."),
            _ => {}
        }
    }
}

/// Parses `--memory.limit`: a size (`256MiB`, `1GB`, bytes), `0`/`none` for no budget, or
/// `auto` for [`AUTO_CGROUP_FRACTION`] of the cgroup's limit (none if there is no limit).
pub fn parse_limit(flag: &str) -> Result<Option<u64>, BudgetError> {
    match flag.trim() {
        "" | "0" | "none" => Ok(None),
        "auto" => {
            Ok(cgroup_limit(Path::new("/sys/fs/cgroup")).map(|l| (l as f64 * AUTO_CGROUP_FRACTION) as u64))
        }
        s => crate::config::ByteSize::parse(s).map(|b| Some(b.0).filter(|b| *b > 0)).map_err(BudgetError),
    }
}

/// The memory limit of the cgroup mounted at `root`: v2 `memory.max`, else v1
/// `memory/memory.limit_in_bytes`; `None` when unlimited or unreadable.
pub fn cgroup_limit(root: &Path) -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    let raw = read("memory.max").or_else(|| read("memory/memory.limit_in_bytes"))?;
    raw.trim().parse::<u64>().ok().filter(|l| *l > 0 && *l < UNLIMITED_BYTES)
}

/// The process' resident set size, from `/proc/self/statm` (pages).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    statm.split_whitespace().nth(1)?.parse::<u64>().ok().map(|pages| pages * PAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_has_hysteresis() {
        let b = MemoryBudget::new(1000);
        // (rss, pressure after, why)
        let steps: &[(u64, bool, &str)] = &[
            (500, false, "well under"),
            (900, false, "at 90 % is not above it"),
            (901, true, "above 90 %: pressure"),
            (850, true, "between 80 and 90 %: still under pressure"),
            (800, true, "at 80 % is not below it"),
            (799, false, "below 80 %: pressure over"),
            (850, false, "between 80 and 90 % again: no pressure"),
        ];
        for (rss, want, why) in steps {
            assert_eq!(b.observe(*rss).0, *want, "{why}");
            assert_eq!(b.under_pressure(), *want, "{why}");
        }
    }

    #[test]
    fn limit_flag_forms() {
        let cases: &[(&str, Option<u64>, &str)] = &[
            ("256MiB", Some(256 << 20), "binary units"),
            ("1GB", Some(1 << 30), "GB is 1024^3, as Prometheus reads sizes"),
            ("0", None, "zero: no budget"),
            ("none", None, "explicitly none"),
        ];
        for (flag, want, why) in cases {
            assert_eq!(parse_limit(flag).unwrap(), *want, "{why}");
        }
        assert!(parse_limit("lots").is_err(), "not a size");
    }

    #[test]
    fn cgroup_limits() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_limit(d.path()), None, "no cgroup files");
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit(d.path()), None, "v2 unlimited");
        std::fs::write(d.path().join("memory.max"), "268435456\n").unwrap();
        assert_eq!(cgroup_limit(d.path()), Some(256 << 20), "v2 limit");
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir(v1.path().join("memory")).unwrap();
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_limit(v1.path()), None, "v1 unlimited");
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "536870912\n").unwrap();
        assert_eq!(cgroup_limit(v1.path()), Some(512 << 20), "v1 limit");
    }

    #[test]
    fn reads_own_rss() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
