//! The memory budget (`--memory.limit`): a ceiling on trawl's memory, kept by refusing the
//! growth that would cross it, not by being OOM-killed.
//!
//! What this is: the process' usage, sampled every [`SAMPLE_INTERVAL`] (resident memory, or the
//! cgroup's working set when trawl runs in a memory-limited cgroup, whichever is larger), and
//! the bytes scrapes in flight have reserved on top of it. A scrape reserves before it grows:
//! its last size to start with, then more as its page arrives (the decoded bytes, or the
//! `Content-Length` up front) and as its batch of records grows. A reservation that would take
//! usage + reservations over the limit is refused, and that scrape fails with `up` 0 and the
//! reason as its `lastError`, counted in `trawl_scrapes_skipped_total{reason="memory"}`.
//!
//! # Policy: the growth that would cross the line is refused
//!
//! Only the scrape asking for more than is left is refused, so a target whose page or series
//! growth does not fit is the one that fails, every time, while small targets, whose requests
//! fit, go on (not every target in turn, as skipping by a pressure flag did). So that one big
//! scrape cannot take the room small ones need, the last eighth of the budget is kept for small
//! scrapes: a scrape whose reservation would pass a sixty-fourth of the limit (1 MiB of 64 MiB,
//! a few thousand series) may not use it. Bytes a scrape
//! gives back stay counted until the next sample, when the usage shows whether they were really
//! freed, and memory a scrape holds is counted twice meanwhile (in the sample and in its
//! reservation): both err on the side of the ceiling. When usage alone is over the limit (the
//! remote-write queues hold a backlog, say), every scrape is refused until it is back under:
//! that is back-pressure on the scrapes, and one WARN line per episode says so.
//!
//! The default, `auto`, is 90 % of the container's cgroup memory limit (a Kubernetes
//! `limits.memory`), the rest being room for what the budget cannot refuse (the queues,
//! the allocator's own slack).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often usage is read (a few µs from /proc each time).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// `auto` takes this fraction of the cgroup limit: room for what the budget cannot refuse.
pub const AUTO_CGROUP_FRACTION: f64 = 0.9;
/// cgroup v1 reports "no limit" as a huge number (page-rounded i64::MAX); beyond this is none.
const UNLIMITED_BYTES: u64 = 1 << 60;
const PAGE_BYTES: u64 = 4096;
/// Reservations grow in steps of at least this (1 MiB), so a page arriving in 16 KiB frames
/// does not touch the shared counters per frame.
pub const RESERVE_STEP_BYTES: u64 = 1 << 20;
/// The share of the limit kept for small scrapes (an eighth), see the policy.
const SMALL_SCRAPE_RESERVE_DIVISOR: u64 = 8;
/// A scrape is small while its reservation is at most this share of the limit (a sixty-fourth).
const SMALL_SCRAPE_DIVISOR: u64 = 64;

/// A `--memory.limit` value that does not parse. Not retryable: the flag must be fixed.
#[derive(Debug, thiserror::Error)]
#[error("--memory.limit: {0}")]
pub struct BudgetError(String);

/// A reservation the budget refused: the scrape that asked must not grow. Not retryable within
/// the scrape; the next scrape asks again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "memory budget: the scrape needs {wanted} bytes more; {free} of the {limit}-byte --memory.limit are free, \
     of which {kept} are kept for small scrapes"
)]
pub struct Refused {
    /// Bytes asked for.
    pub wanted: u64,
    /// Bytes left under the limit when asked.
    pub free: u64,
    /// Of those, bytes this scrape had to leave for small scrapes.
    pub kept: u64,
    /// The limit.
    pub limit: u64,
}

/// The process' memory budget, shared by the sampler and the scrape loops.
#[derive(Debug)]
pub struct MemoryBudget {
    limit_bytes: u64,
    /// The last sampled usage.
    used_bytes: AtomicU64,
    /// Bytes reserved by scrapes in flight.
    reserved_bytes: AtomicU64,
    /// Bytes released since the last sample (still counted until a sample shows them freed).
    released_bytes: AtomicU64,
    /// Whether reservations are being refused (for one log line per episode).
    refusing: AtomicBool,
    /// The cgroup whose working set counts, when trawl runs in a memory-limited one.
    cgroup: Option<PathBuf>,
}

impl MemoryBudget {
    /// A budget of `limit_bytes`, measuring this process (and its cgroup, if limited).
    pub fn new(limit_bytes: u64) -> Self {
        Self::with_cgroup(limit_bytes, own_cgroup(Path::new("/sys/fs/cgroup")))
    }

    /// A budget that counts the working set of the cgroup at `cgroup` too (tests).
    pub fn with_cgroup(limit_bytes: u64, cgroup: Option<PathBuf>) -> Self {
        MemoryBudget {
            limit_bytes,
            used_bytes: AtomicU64::new(0),
            reserved_bytes: AtomicU64::new(0),
            released_bytes: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            cgroup,
        }
    }

    /// The limit in bytes.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// The last sampled usage in bytes.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Relaxed)
    }

    /// Bytes scrapes in flight hold in reservations.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved_bytes.load(Relaxed)
    }

    /// Records a usage sample: bytes released before it are no longer counted apart.
    pub fn observe(&self, used_bytes: u64) {
        self.used_bytes.store(used_bytes, Relaxed);
        self.released_bytes.store(0, Relaxed);
        if self.refusing.load(Relaxed) && self.free_bytes() > self.limit_bytes / 10 {
            self.refusing.store(false, Relaxed);
            tracing::info!(used_bytes, "Memory back under the budget; scrapes are not refused any more.");
        }
    }

    /// Bytes left under the limit now.
    pub fn free_bytes(&self) -> u64 {
        let held = self.used_bytes.load(Relaxed)
            + self.reserved_bytes.load(Relaxed)
            + self.released_bytes.load(Relaxed);
        self.limit_bytes.saturating_sub(held)
    }

    /// Reserves `bytes`, or refuses if they would take usage and reservations over the limit.
    pub fn try_reserve(&self, bytes: u64) -> Result<(), Refused> {
        self.reserve(bytes, 0).inspect_err(|r| self.refused(r))
    }

    /// Bytes of the limit a scrape holding `total` bytes of reservations must leave free: none
    /// for a small scrape, the small scrapes' reserve for a big one.
    fn keep_free(&self, total: u64) -> u64 {
        if total <= self.limit_bytes / SMALL_SCRAPE_DIVISOR {
            0
        } else {
            self.limit_bytes / SMALL_SCRAPE_RESERVE_DIVISOR
        }
    }

    /// Logs the start of a refusal episode.
    fn refused(&self, r: &Refused) {
        if !self.refusing.swap(true, Relaxed) {
            tracing::warn!(
                used_bytes = self.used_bytes.load(Relaxed),
                reserved_bytes = self.reserved_bytes.load(Relaxed),
                limit_bytes = r.limit,
                wanted_bytes = r.wanted,
                "Memory above the budget: refusing the scrapes that would cross it."
            );
        }
    }

    /// [`try_reserve`](Self::try_reserve) without the log line, leaving `keep_free` bytes free.
    fn reserve(&self, bytes: u64, keep_free: u64) -> Result<(), Refused> {
        let mut reserved = self.reserved_bytes.load(Relaxed);
        loop {
            let used = self.used_bytes.load(Relaxed) + self.released_bytes.load(Relaxed);
            let free = self.limit_bytes.saturating_sub(used + reserved);
            if bytes > free.saturating_sub(keep_free) {
                return Err(Refused {
                    wanted: bytes,
                    free,
                    kept: keep_free.min(free),
                    limit: self.limit_bytes,
                });
            }
            match self.reserved_bytes.compare_exchange_weak(reserved, reserved + bytes, Relaxed, Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => reserved = now,
            }
        }
    }

    /// Gives back `bytes` of reservations (counted as released until the next sample).
    pub fn release(&self, bytes: u64) {
        self.reserved_bytes.fetch_sub(bytes.min(self.reserved_bytes.load(Relaxed)), Relaxed);
        self.released_bytes.fetch_add(bytes, Relaxed);
    }

    /// Samples usage until `stop` (see [`MemoryBudget::check`]).
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

    /// Reads usage once: resident memory, or the cgroup's working set if that is larger.
    pub fn check(&self) {
        let rss = resident_bytes().unwrap_or(0);
        let cgroup = self.cgroup.as_deref().and_then(cgroup_working_set).unwrap_or(0);
        self.observe(rss.max(cgroup));
    }
}

/// A scrape's share of the budget: grown as the scrape grows, given back when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Reservation {
    /// Reserves `bytes` to start with.
    pub fn new(budget: &Arc<MemoryBudget>, bytes: u64) -> Result<Reservation, Refused> {
        budget.reserve(bytes, budget.keep_free(bytes)).inspect_err(|r| budget.refused(r))?;
        Ok(Reservation { budget: budget.clone(), bytes })
    }

    /// Makes the reservation at least `bytes`, in steps of [`RESERVE_STEP_BYTES`] (capped at
    /// `cap`, the most the scrape could need); refused if that would cross the limit.
    pub fn grow_to(&mut self, bytes: u64, cap: u64) -> Result<(), Refused> {
        if bytes <= self.bytes {
            return Ok(());
        }
        // A whole step if it fits, else just what is asked.
        let b = &self.budget;
        let step = bytes.max(self.bytes + RESERVE_STEP_BYTES).min(cap.max(bytes));
        let target = if b.reserve(step - self.bytes, b.keep_free(step)).is_ok() {
            step
        } else {
            b.reserve(bytes - self.bytes, b.keep_free(bytes)).inspect_err(|r| b.refused(r))?;
            bytes
        };
        self.bytes = target;
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
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
        // A bare number of bytes is fine here (trawl's own flag); a size with a unit is read
        // as the config's sizes are.
        s if s.bytes().all(|c| c.is_ascii_digit()) => s
            .parse::<u64>()
            .map(|b| Some(b).filter(|b| *b > 0))
            .map_err(|_| BudgetError(format!("not a size: {s:?}"))),
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

/// The working set of the cgroup at `dir`: its usage (`memory.current`, or v1's
/// `memory.usage_in_bytes`) less its inactive file cache, as the kubelet counts it for eviction.
pub fn cgroup_working_set(dir: &Path) -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).ok();
    let usage: u64 = read("memory.current").or_else(|| read("memory.usage_in_bytes"))?.trim().parse().ok()?;
    let inactive = read("memory.stat")
        .and_then(|stat| {
            stat.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                matches!(k, "inactive_file" | "total_inactive_file").then(|| v.trim().parse::<u64>().ok())?
            })
        })
        .unwrap_or(0);
    Some(usage.saturating_sub(inactive))
}

/// This process' cgroup directory under `root` (from `/proc/self/cgroup`), if it has a memory
/// limit: outside a limited cgroup, the working set of a parent (the whole machine, say) says
/// nothing about trawl, so only RSS counts.
fn own_cgroup(root: &Path) -> Option<PathBuf> {
    cgroup_dir(root, &std::fs::read_to_string("/proc/self/cgroup").ok()?)
}

fn cgroup_dir(root: &Path, proc_cgroup: &str) -> Option<PathBuf> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        let dir = match controllers {
            "" => root.join(rel),
            c if c.split(',').any(|c| c == "memory") => root.join("memory").join(rel),
            _ => continue,
        };
        let limited = ["memory.max", "memory.limit_in_bytes"].iter().any(|f| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .is_some_and(|l| l > 0 && l < UNLIMITED_BYTES)
        });
        if limited {
            return Some(dir);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_growth_that_would_cross_the_limit_is_refused() {
        // 6,400 bytes: a scrape of up to 100 is small, a big one leaves 800 free.
        let b = Arc::new(MemoryBudget::with_cgroup(6400, None));
        b.observe(4000);
        let mut small = Reservation::new(&b, 100).expect("fits");
        let big = Reservation::new(&b, 2000);
        assert_eq!(
            big.unwrap_err(),
            Refused { wanted: 2000, free: 2300, kept: 800, limit: 6400 },
            "2000 > 2300 - 800"
        );
        assert!(
            Reservation::new(&b, 1400).is_ok(),
            "a big one that leaves 800 fits (and is dropped at once)"
        );
        assert_eq!(b.free_bytes(), 900, "its 1400 stay counted as released until the next sample");
        assert!(small.grow_to(150, 6400).is_ok(), "grows within what is free");
        assert_eq!(small.bytes(), 150, "a step is capped at what is free, not forced to 1 MiB");
        assert!(small.grow_to(1000, 6400).is_err(), "a growth that does not fit is refused");
        assert_eq!(small.bytes(), 150, "and nothing is taken");
        b.observe(4000);
        assert_eq!(b.free_bytes(), 2250, "the sample forgets the released bytes");
        drop(small);
        assert_eq!(
            (b.reserved_bytes(), b.free_bytes()),
            (0, 2250),
            "released: counted until the next sample"
        );
        b.observe(3000);
        assert_eq!(b.free_bytes(), 3400);
        b.observe(7000);
        assert!(Reservation::new(&b, 1).is_err(), "over the limit: everything is refused");
    }

    #[test]
    fn big_scrapes_leave_an_eighth_for_small_ones() {
        let b = Arc::new(MemoryBudget::with_cgroup(64 << 20, None));
        b.observe(20 << 20);
        let mut big = Reservation::new(&b, 1 << 20).expect("starts small");
        // 64 MiB limit, 20 used: a big scrape may grow to 64 - 8 - 20 = 36 MiB.
        assert!(big.grow_to(36 << 20, u64::MAX).is_ok());
        assert!(big.grow_to((36 << 20) + 1, u64::MAX).is_err(), "not into the small scrapes' eighth");
        let small = Reservation::new(&b, 512 << 10);
        assert!(small.is_ok(), "a small scrape still fits, in the eighth");
        let another_big = Reservation::new(&b, 2 << 20);
        assert!(another_big.is_err(), "a big start does not");
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
    fn cgroup_working_set_is_usage_minus_inactive_file() {
        // (files, working set, why)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<u64>, &'a str);
        let cases: &[Case] = &[
            (
                &[("memory.current", "1000\n"), ("memory.stat", "anon 600\ninactive_file 300\n")],
                Some(700),
                "v2",
            ),
            (
                &[("memory.usage_in_bytes", "1000\n"), ("memory.stat", "cache 1\ntotal_inactive_file 100\n")],
                Some(900),
                "v1",
            ),
            (&[("memory.current", "1000\n")], Some(1000), "no stat: usage"),
            (&[], None, "nothing to read"),
        ];
        for (files, want, why) in cases {
            let d = tempfile::tempdir().unwrap();
            for (name, text) in *files {
                std::fs::write(d.path().join(name), text).unwrap();
            }
            assert_eq!(cgroup_working_set(d.path()), *want, "{why}");
        }
    }

    #[test]
    fn own_cgroup_is_found_only_when_limited() {
        let root = tempfile::tempdir().unwrap();
        let pod = root.path().join("kubepods/pod1");
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(pod.join("memory.max"), "268435456\n").unwrap();
        assert_eq!(cgroup_dir(root.path(), "0::/kubepods/pod1\n"), Some(pod.clone()), "v2, limited");
        std::fs::write(pod.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_dir(root.path(), "0::/kubepods/pod1\n"), None, "v2, unlimited: RSS only");
        let v1 = root.path().join("memory/kubepods/pod2");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "536870912\n").unwrap();
        assert_eq!(cgroup_dir(root.path(), "5:memory:/kubepods/pod2\n3:cpu:/x\n"), Some(v1), "v1, limited");
    }

    #[test]
    fn reads_own_rss() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
