//! Scrape loops: one task per target, and the per-job manager that starts and stops them.
//!
//! What this is: the data plane for one target. Every interval, at a fixed per-target offset:
//! fetch → parse → merge target labels → metric relabeling → limits → staleness → hand the batch
//! on, then the five synthetic series Prometheus reports per scrape. A failed scrape (HTTP error,
//! parse error, a limit) discards the whole page, reports `up 0` and stale-marks the previous
//! scrape's series, exactly as Prometheus' `scrapeLoop` does. What this is not: HTTP details
//! ([`crate::fetch`]), parsing ([`crate::parse`]), rule semantics ([`crate::relabel`]).
//!
//! Per-target state is reused across scrapes: the body buffers, and a series cache from the
//! raw `name{labels}` bytes to the final label set, so a steady-state scrape does a hash lookup
//! per line instead of rebuilding labels and re-running metric relabeling.

use std::collections::{HashMap, HashSet};

/// foldhash: seeded per process (so untrusted label values cannot flood the tables) and several
/// times faster than std's SipHash on short keys.
type Fast = foldhash::fast::RandomState;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::budget::MemoryBudget;
use crate::config::ScrapeConfig;
use crate::discovery::Discovered;
use crate::fetch::{self, FetchError};
use crate::http_client::Client;
use crate::labels::{self, Labels, Str};
use crate::parse::{self, Parser};
use crate::relabel::{self, RelabelConfig, ScrapeTarget, TargetOutcome};
use crate::ring::{Batch, Exemplar, Metadata, STALE_NAN, Sample};
use crate::telemetry::JobMetrics;

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
}

impl JobSettings {
    /// The settings of a loaded (defaults filled) scrape config.
    pub fn from_config(sc: &ScrapeConfig) -> Self {
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
        }
    }
}

/// Health of a target, as the targets API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Health {
    /// Not scraped yet.
    #[default]
    Unknown,
    /// Last scrape succeeded.
    Up,
    /// Last scrape failed.
    Down,
}

impl Health {
    /// `"up"`, `"down"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// What the targets API shows about a target's last scrape.
#[derive(Clone, Debug, Default)]
pub struct TargetStatus {
    /// Health of the last scrape.
    pub health: Health,
    /// Error of the last scrape, empty if it succeeded.
    pub last_error: String,
    /// When the last scrape started.
    pub last_scrape: Option<SystemTime>,
    /// How long it took, in seconds.
    pub last_scrape_duration: f64,
}

/// An active target as the targets API shows it.
#[derive(Clone, Debug)]
pub struct ActiveTarget {
    /// Labels before relabeling.
    pub discovered: Labels,
    /// The target after relabeling.
    pub target: ScrapeTarget,
    /// Live status, written by the scrape loop.
    pub status: Arc<Mutex<TargetStatus>>,
}

/// One job's targets, as the targets API shows them.
#[derive(Clone, Debug, Default)]
pub struct PoolView {
    /// Targets being scraped.
    pub active: Vec<ActiveTarget>,
    /// Label sets dropped by relabeling.
    pub dropped: Vec<Labels>,
}

/// All jobs' targets, shared read-only with the web server.
pub type TargetsView = Arc<Mutex<std::collections::BTreeMap<String, PoolView>>>;

/// Where scrape loops hand their batches.
pub type Output = mpsc::Sender<Batch>;

/// What a job runs with; a reload sends a new one (see [`run_job`]).
#[derive(Clone, Debug)]
pub struct JobUpdate {
    /// The job's checked config.
    pub sc: Arc<ScrapeConfig>,
    /// Its discovered target groups.
    pub discovered: watch::Receiver<Discovered>,
    /// The HTTP client built from its config.
    pub client: Client,
}

/// What a running scrape loop is told when its job's config changes, or discovery changes its
/// interval or timeout: the loop keeps its state (series seen, staleness tracking, schedule).
#[derive(Clone, Debug)]
pub struct LoopUpdate {
    /// The job's settings.
    pub settings: Arc<JobSettings>,
    /// The target, with the same identity (labels and URL) as before.
    pub target: ScrapeTarget,
    /// The HTTP client.
    pub client: Client,
}

/// A running scrape loop, as its job manager keeps it.
struct Running {
    stop: CancellationToken,
    active: ActiveTarget,
    update: watch::Sender<LoopUpdate>,
}

/// Runs one job: watches its discovered targets, relabels them, and keeps exactly one scrape
/// loop per distinct target (labels and URL) running.
///
/// A new [`JobUpdate`] (a reload that changed the job) is applied in place: loops of targets
/// that are still there keep running with the new settings and keep their state, as Prometheus'
/// scrape pool reload does; loops of targets that are gone stop with end-of-run stale markers.
/// `stop` (the job was removed from the config) ends every loop with stale markers; `shutdown`
/// (process exit) ends them without, as Prometheus does. `stop` must be a child of `shutdown`.
///
/// With `staleness` (`--storage.path`), each target's last series set is kept on disk, so series
/// that vanish while trawl is down are stale-marked after the restart.
#[allow(clippy::too_many_arguments)]
pub async fn run_job(
    mut updates: watch::Receiver<JobUpdate>,
    out: Output,
    view: TargetsView,
    metrics: Arc<JobMetrics>,
    budget: Option<Arc<MemoryBudget>>,
    staleness: Option<Arc<crate::staleness::Store>>,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut job = updates.borrow_and_update().clone();
    let mut settings = Arc::new(JobSettings::from_config(&job.sc));
    let mut reconfigured = false;
    let mut sd_open = true;
    let mut running: HashMap<(Labels, String), Running> = HashMap::new();
    loop {
        let sc = job.sc.clone();
        let params: Vec<(String, Vec<String>)> =
            sc.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let defaults = relabel::TargetDefaults {
            job: sc.job(),
            scheme: sc.scheme(),
            metrics_path: sc.metrics_path(),
            params: &params,
            scrape_interval: sc.interval(),
            scrape_timeout: sc.timeout(),
        };
        let sets = job.discovered.borrow_and_update().clone();
        let mut next: HashMap<(Labels, String), ActiveTarget> = HashMap::new();
        let mut order: Vec<(Labels, String)> = Vec::new();
        let mut dropped = Vec::new();
        for d in sets.iter() {
            match relabel::populate_target(d, &defaults, &sc.relabel_configs) {
                Ok(TargetOutcome::Keep { target, discovered }) => {
                    let key = (target.labels.clone(), target.url.clone());
                    if let std::collections::hash_map::Entry::Vacant(slot) = next.entry(key) {
                        order.push(slot.key().clone());
                        slot.insert(ActiveTarget { discovered, target, status: Arc::default() });
                    }
                }
                Ok(TargetOutcome::Drop { discovered }) => dropped.push(discovered),
                // Prometheus lists such targets nowhere; it logs them.
                Err(e) => {
                    tracing::warn!(job = sc.job(), error = %e, labels = %d, "Ignoring an invalid target.")
                }
            }
        }
        // Stop loops whose target went away; they write end-of-run stale markers.
        running.retain(|key, r| {
            let keep = next.contains_key(key);
            if !keep {
                r.stop.cancel();
            }
            keep
        });
        for key in &order {
            let Some(active) = next.remove(key) else { continue };
            if let Some(r) = running.get_mut(key) {
                // Still there: tell the loop what changed, if anything; it keeps its state.
                if reconfigured || r.active.target != active.target {
                    r.update.send_replace(LoopUpdate {
                        settings: settings.clone(),
                        target: active.target.clone(),
                        client: job.client.clone(),
                    });
                }
                r.active.target = active.target;
                r.active.discovered = active.discovered;
                continue;
            }
            let loop_stop = stop.child_token();
            let (update, updates_rx) = watch::channel(LoopUpdate {
                settings: settings.clone(),
                target: active.target.clone(),
                client: job.client.clone(),
            });
            let lp = TargetLoop::new(
                settings.clone(),
                active.target.clone(),
                job.client.clone(),
                out.clone(),
                active.status.clone(),
                metrics.clone(),
            )
            .with_updates(updates_rx)
            .with_budget(budget.clone());
            let lp = match &staleness {
                Some(store) => {
                    lp.remember_series(store.path(sc.job(), &active.target.labels, &active.target.url))
                }
                None => lp,
            };
            tokio::spawn(lp.run(loop_stop.clone(), shutdown.clone()));
            running.insert(key.clone(), Running { stop: loop_stop, active, update });
        }
        reconfigured = false;
        metrics.targets_active.store(running.len() as i64, std::sync::atomic::Ordering::Relaxed);
        metrics.targets_dropped.store(dropped.len() as i64, std::sync::atomic::Ordering::Relaxed);
        {
            let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
            let active = order.iter().filter_map(|k| running.get(k).map(|r| r.active.clone())).collect();
            v.insert(sc.job().to_owned(), PoolView { active, dropped });
        }
        tokio::select! {
            _ = stop.cancelled() => {
                // Removed (or exiting): the loops are children of `stop` and end with it.
                let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
                v.remove(sc.job());
                return;
            }
            changed = job.discovered.changed(), if sd_open => {
                // Discovery ends only when it is replaced or at shutdown; keep the targets.
                sd_open = changed.is_ok();
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    // The app dropped its handle: only at shutdown.
                    stop.cancelled().await;
                    continue;
                }
                job = updates.borrow_and_update().clone();
                settings = Arc::new(JobSettings::from_config(&job.sc));
                reconfigured = true;
                sd_open = true;
            }
        }
    }
}

/// A cached outcome for one raw series: its final labels, or why it is not sent.
#[derive(Clone, Debug)]
enum Cached {
    Keep(Arc<Labels>),
    Dropped,
    Invalid(Str),
}

/// The per-target state of a scrape loop.
pub struct TargetLoop {
    settings: Arc<JobSettings>,
    target: ScrapeTarget,
    client: Client,
    out: Output,
    status: Arc<Mutex<TargetStatus>>,
    metrics: Arc<JobMetrics>,
    /// Raw `name{labels}` bytes, by [`raw_key`] → outcome, in page order.
    cache: SeriesCache,
    /// One shared `Arc` per distinct final label set, so two spellings of a series on a page
    /// (`a{x="1"}` and `a{x="1",}`) are the same series, and the sets below can test
    /// membership on the shared set itself (its marks) instead of hashing whole label sets (a
    /// 5× faster warm scrape in `benches/relabel.rs` when they keyed on the pointer: 1.9 µs →
    /// see perf/README.md). Each loop interns its own sets, so no other loop marks them.
    interned: HashSet<Arc<Labels>, Fast>,
    /// One copy of every label name and value of the interned sets: a series' labels repeat
    /// the target's labels and a few dozen names and values, so sharing them takes a node
    /// exporter series from 810 to 612 bytes of heap (a counting-allocator probe on
    /// perf/fixtures/node_exporter.prom with four target labels).
    strings: HashSet<Str, Fast>,
    generation: u64,
    /// Series sent in the previous successful scrape (for staleness), and in this one, as
    /// interned label sets (mark slots 0 and 1).
    prev: SeriesSet,
    cur: SeriesSet,
    report: ReportSeries,
    /// New settings from a reload, if the loop is managed by [`run_job`].
    updates: Option<watch::Receiver<LoopUpdate>>,
    /// The memory budget: under pressure, scrapes are skipped.
    budget: Option<Arc<MemoryBudget>>,
    /// Metric family name → its metadata, with the generation it was last seen in; the `Arc`
    /// is reused while HELP/TYPE/UNIT stay the same, so a steady scrape allocates none.
    families: HashMap<Box<str>, (Arc<Metadata>, u64), Fast>,
    /// With `--storage.path`: where this target's last series set is kept (see
    /// [`crate::staleness`]), and, until the first scrape, the set a previous run left there.
    persist: Option<(std::path::PathBuf, Option<Vec<Labels>>)>,
}

/// The per-target cache of raw series (by [`raw_key`]) → [`Cached`] outcome, kept in the order
/// the page lists its series.
///
/// Why not a hash map: at 1M series over 400 targets, a target's table is cold when its next
/// scrape comes (399 other targets ran in between), so each line's probe was a cache miss at a
/// random place in a ~160 KB table: 38 % of `process_page`'s self time, ~10 % of trawl's CPU
/// (`perf annotate` of a 1M-series run, perf/README.md). Exporters list their series in the same
/// order every scrape, so each line is first compared with the entry after the previous line's
/// (a sequential walk the hardware prefetcher streams); the hash index is the fallback, for new
/// series and reordered pages. A scrape with many fallbacks re-sorts the entries into its order.
///
/// The reference model is a `HashMap<[u64; 2], (Cached, generation)>` whose entries unused for two
/// scrapes are evicted; the property test in this module's tests compares the two.
#[derive(Default)]
struct SeriesCache {
    /// Entries in page order (new series are appended until the next re-sort).
    entries: Vec<CacheEntry>,
    /// Key → position in `entries`, hashed by the key's first word (the key is already a seeded
    /// 128-bit hash, so it needs no hashing again).
    index: hashbrown::HashTable<u32>,
    /// Where the next line is expected: the position after the previous line's entry.
    cursor: usize,
    /// This scrape's line number (of the lines that reached the cache).
    line: u32,
    /// Entries used in this scrape (the first time each), and lookups that missed the cursor.
    used: usize,
    jumps: usize,
}

struct CacheEntry {
    key: [u64; 2],
    cached: Cached,
    /// The scrape generation (low 32 bits) the entry was last used in.
    generation: u32,
    /// Its line number in that scrape, for re-sorting into page order.
    line: u32,
}

impl SeriesCache {
    fn begin_scrape(&mut self) {
        self.cursor = 0;
        self.line = 0;
        self.used = 0;
        self.jumps = 0;
    }

    /// The outcome cached for `key`, marking it used in `generation`.
    fn get(&mut self, key: [u64; 2], generation: u64) -> Option<&Cached> {
        let pos = match self.entries.get(self.cursor) {
            Some(e) if e.key == key => self.cursor,
            _ => {
                self.jumps += 1;
                let entries = &self.entries;
                *self.index.find(key[0], |&p| entries[p as usize].key == key)? as usize
            }
        };
        self.cursor = pos + 1;
        let e = &mut self.entries[pos];
        if e.generation != generation as u32 {
            e.generation = generation as u32;
            self.used += 1;
        }
        e.line = self.line;
        self.line = self.line.wrapping_add(1);
        Some(&e.cached)
    }

    /// Adds `key` (not in the cache) as used in `generation`. The cursor stays: the next line
    /// is most likely the one the cursor expects.
    fn insert(&mut self, key: [u64; 2], cached: Cached, generation: u64) {
        let pos = self.entries.len() as u32;
        self.entries.push(CacheEntry { key, cached, generation: generation as u32, line: self.line });
        self.line = self.line.wrapping_add(1);
        self.used += 1;
        let entries = &self.entries;
        self.index.insert_unique(key[0], pos, |&p| entries[p as usize].key[0]);
    }

    /// Ends a scrape: evicts entries unused in this scrape and the one before (the cache follows
    /// churn instead of growing), and re-sorts into this scrape's order when many lines missed
    /// the cursor. Returns whether anything was evicted. In the steady state (every entry used,
    /// in order) this is O(1).
    fn end_scrape(&mut self, generation: u64) -> bool {
        let (before, reorder) = (self.entries.len(), self.jumps > 16 && self.jumps > self.entries.len() / 8);
        if self.used == before && !reorder {
            self.trim();
            return false;
        }
        let g = generation as u32;
        self.entries.retain(|e| g.wrapping_sub(e.generation) <= 1);
        let evicted = self.entries.len() < before;
        if reorder {
            // This scrape's entries by line, then last scrape's leftovers in their old order.
            self.entries.sort_by_key(|e| (e.generation != g, if e.generation == g { e.line } else { 0 }));
        }
        if evicted || reorder {
            self.trim();
            let len = self.entries.len();
            self.index.clear();
            let entries = &self.entries;
            for (pos, e) in entries.iter().enumerate() {
                self.index.insert_unique(e.key[0], pos as u32, |&p| entries[p as usize].key[0]);
            }
            if self.index.capacity() > 2 * len + 64 {
                self.index.shrink_to(len, |&p| entries[p as usize].key[0]);
            }
        }
        evicted
    }

    /// Gives back the vector's slack beyond an eighth (~40 B a series): the first scrape grew it
    /// by doubling, and an eviction shrinks it. O(1) when there is nothing to give back.
    fn trim(&mut self) {
        let len = self.entries.len();
        if self.entries.capacity() > len + len / 4 + 64 {
            self.entries.shrink_to(len + len / 8);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
        self.cursor = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A set of a target loop's interned label sets, in insertion order, whose membership is a mark
/// in each label set ([`Labels::mark`]): the set has a slot (0 or 1, one per set a loop keeps)
/// and an id, and a label set is a member while its mark in that slot equals the id. Clearing
/// takes a new id, so no label set needs unmarking.
///
/// Why not a hash table of pointers (as before): at 1M series the table of a target is cold at
/// its next scrape and each probe was a cache miss (18 % of `process_page`'s self time in a
/// `perf annotate`); the mark sits next to the reference count the loop has just incremented.
/// A `Vec` of 8-byte entries also has no hash-table slack. The ids are per set and wrap after
/// 2^32 clears, two per scrape: 2^31 scrapes (680 years at a 10 s interval).
struct SeriesSet {
    items: Vec<Arc<Labels>>,
    slot: usize,
    id: u32,
}

impl SeriesSet {
    /// An empty set using mark slot `slot`. A loop's two sets must use different slots.
    fn new(slot: usize) -> SeriesSet {
        SeriesSet { items: Vec::new(), slot, id: 1 }
    }

    fn contains(&self, s: &Labels) -> bool {
        s.mark(self.slot) == self.id
    }

    /// Adds `s`; false if it was already there.
    fn insert(&mut self, s: &Arc<Labels>) -> bool {
        if self.contains(s) {
            return false;
        }
        s.set_mark(self.slot, self.id);
        self.items.push(s.clone());
        true
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Labels>> {
        self.items.iter()
    }

    /// Takes every member out, leaving the set empty.
    fn drain(&mut self) -> impl Iterator<Item = Arc<Labels>> + '_ {
        self.renew();
        self.items.drain(..)
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn clear(&mut self) {
        self.renew();
        self.items.clear();
    }

    /// A fresh id (never 0, the mark of a label set no set has claimed).
    fn renew(&mut self) {
        self.id = self.id.wrapping_add(1).max(1);
    }
}

/// The synthetic series of a target, built once.
struct ReportSeries {
    up: Arc<Labels>,
    duration: Arc<Labels>,
    scraped: Arc<Labels>,
    post_relabel: Arc<Labels>,
    added: Arc<Labels>,
}

impl ReportSeries {
    fn new(target: &Labels) -> Self {
        let mk = |name: &str| {
            let mut l = target.clone();
            l.set(labels::METRIC_NAME, name);
            Arc::new(l)
        };
        ReportSeries {
            up: mk("up"),
            duration: mk("scrape_duration_seconds"),
            scraped: mk("scrape_samples_scraped"),
            post_relabel: mk("scrape_samples_post_metric_relabeling"),
            added: mk("scrape_series_added"),
        }
    }
    fn all(&self) -> [&Arc<Labels>; 5] {
        [&self.up, &self.duration, &self.scraped, &self.post_relabel, &self.added]
    }
}

/// The metric family whose HELP/TYPE/UNIT lines were read last, borrowed from the page.
struct Family<'a> {
    name: Option<&'a str>,
    kind: parse::MetricType,
    help: std::borrow::Cow<'a, str>,
    unit: &'a str,
    /// Its shared metadata, once a sample of it was kept.
    resolved: Option<Arc<Metadata>>,
}

impl Default for Family<'_> {
    fn default() -> Self {
        Family { name: None, kind: parse::MetricType::Unknown, help: "".into(), unit: "", resolved: None }
    }
}

impl<'a> Family<'a> {
    /// The family `name`: the current one, or a fresh one if the name differs.
    fn start(&mut self, name: &'a str) -> &mut Self {
        if self.name != Some(name) {
            *self = Family { name: Some(name), ..Family::default() };
        }
        self.resolved = None;
        self
    }
}

/// Suffixes a family's samples may add to its name (text format and OpenMetrics).
const FAMILY_SUFFIXES: [&str; 8] =
    ["_total", "_bucket", "_count", "_sum", "_created", "_info", "_gcount", "_gsum"];

/// Whether a sample named `sample` belongs to the family `family`.
fn belongs_to_family(sample: &str, family: &str) -> bool {
    match sample.strip_prefix(family) {
        Some("") => true,
        Some(rest) => FAMILY_SUFFIXES.contains(&rest),
        None => false,
    }
}

/// The series cache's key for a series' raw `name{labels}` bytes: a 128-bit xxh3 hash, seeded
/// once per process. Keeping the hash instead of a copy of the bytes saves the copy (~60–100
/// bytes and an allocation per series on the pages in `perf/fixtures`) and the byte compare on
/// every hit (`memcmp` was 3 % of trawl's CPU at 1M series). Two spellings colliding would give
/// one the other's labels; at 128 bits that takes ~2^64 series for even odds, and the cache is
/// per target, so a page could at worst confuse its own series.
///
/// As two `u64`s rather than a `u128`: a `u128` is 16-byte aligned, which would pad each cache
/// entry from 40 to 48 bytes and give back most of what dropping the copy saved.
fn raw_key(raw: &[u8]) -> [u64; 2] {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(raw, *SEED.get_or_init(rand::random));
    [h as u64, (h >> 64) as u64]
}

/// Whether a family of this type may have `_created` lines (OpenMetrics: counters,
/// histograms and summaries).
fn has_created(kind: parse::MetricType) -> bool {
    matches!(kind, parse::MetricType::Counter | parse::MetricType::Histogram | parse::MetricType::Summary)
}

/// Whether `s` is the `_created` line of the family `family`.
fn is_created_of(s: &parse::Sample<'_>, family: Option<&str>) -> bool {
    family.is_some_and(|f| s.name().strip_prefix(f) == Some("_created"))
}

/// Whether the `_created` line `created` belongs to the metric point whose first sample is
/// `first`: the same labels in the same order, but for a bucket's `le` or a quantile's
/// `quantile` (OpenMetrics keeps a point's lines together, `_created` last).
fn same_point(first: &parse::Sample<'_>, created: &parse::Sample<'_>) -> bool {
    first.labels().filter(|(n, _)| n != "le" && n != "quantile").eq(created.labels())
}

/// Counts of one scrape, for the report series.
#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    /// Samples on the page.
    pub scraped: u64,
    /// Samples kept after metric relabeling.
    pub post_relabel: u64,
    /// Series not in the previous scrape.
    pub added: u64,
    /// Whether the set of series differs from the previous scrape's.
    pub series_changed: bool,
}

fn now_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The phase of a target within its interval: a stable hash of its identity, so targets of a
/// job spread evenly over the interval and a restart keeps the same schedule (Prometheus'
/// `Target.offset`).
pub fn offset(target: &ScrapeTarget, interval: std::time::Duration) -> std::time::Duration {
    let mut key = target.url.clone().into_bytes();
    for l in target.labels.iter() {
        key.extend_from_slice(l.name.as_bytes());
        key.push(0xff);
        key.extend_from_slice(l.value.as_bytes());
        key.push(0xff);
    }
    let h = xxhash_rust::xxh3::xxh3_64(&key);
    let ns = interval.as_nanos().max(1) as u64;
    std::time::Duration::from_nanos(h % ns)
}

impl TargetLoop {
    /// A loop for `target`, not yet running.
    pub fn new(
        settings: Arc<JobSettings>,
        target: ScrapeTarget,
        client: Client,
        out: Output,
        status: Arc<Mutex<TargetStatus>>,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        let report = ReportSeries::new(&target.labels);
        TargetLoop {
            settings,
            target,
            client,
            out,
            status,
            metrics,
            cache: SeriesCache::default(),
            interned: HashSet::default(),
            strings: HashSet::default(),
            generation: 0,
            prev: SeriesSet::new(0),
            cur: SeriesSet::new(1),
            report,
            updates: None,
            budget: None,
            families: HashMap::default(),
            persist: None,
        }
    }

    /// Keeps the last series set in `path`, and stale-marks at the first scrape what a previous
    /// run's last scrape had and this page does not.
    pub fn remember_series(mut self, path: std::path::PathBuf) -> Self {
        // `Some` even when nothing is remembered: the first scrape always saves.
        let remembered = crate::staleness::load(&path).unwrap_or_default();
        self.persist = Some((path, Some(remembered)));
        self
    }

    /// After a scrape (`prev` now holds its series): stale-marks remembered series that are
    /// gone (first scrape only), and saves the set when it changed.
    fn persist_series(&mut self, ts: i64, changed: bool, batch: &mut Batch) {
        let Some((path, remembered)) = &mut self.persist else { return };
        let first = remembered.is_some();
        if let Some(old) = remembered.take() {
            let before = batch.len();
            for labels in old {
                let present = self.interned.get(&labels).is_some_and(|l| self.prev.contains(l));
                if !present {
                    batch.push(Sample { series: Arc::new(labels), timestamp_ms: ts, value: STALE_NAN });
                }
            }
            self.metrics
                .stale_markers
                .fetch_add((batch.len() - before) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if first || changed {
            let series: Vec<&Labels> = self.prev.iter().map(|l| &**l).collect();
            if let Err(e) = crate::staleness::save(path, series.into_iter()) {
                tracing::warn!(target = %self.target.url, error = %e, "Cannot save the target's series for staleness after a restart.");
            }
        }
    }

    /// Makes the loop skip scrapes while `budget` is under pressure.
    pub fn with_budget(mut self, budget: Option<Arc<MemoryBudget>>) -> Self {
        self.budget = budget;
        self
    }

    /// Makes the loop take new settings from `updates` between scrapes.
    pub fn with_updates(mut self, mut updates: watch::Receiver<LoopUpdate>) -> Self {
        updates.mark_unchanged();
        self.updates = Some(updates);
        self
    }

    /// Waits for the next settings update; never returns if there is none to come.
    async fn next_update(updates: &mut Option<watch::Receiver<LoopUpdate>>) -> LoopUpdate {
        if let Some(rx) = updates {
            if rx.changed().await.is_ok() {
                return rx.borrow_and_update().clone();
            }
            *updates = None;
        }
        std::future::pending().await
    }

    /// Applies new settings. The series cache depends on the settings and the target labels, so
    /// it starts over if they changed; what was sent last (for staleness) is kept.
    fn reconfigure(&mut self, u: LoopUpdate) {
        if *u.settings != *self.settings || u.target.labels != self.target.labels {
            self.cache.clear();
        }
        self.settings = u.settings;
        self.target = u.target;
        self.client = u.client;
    }

    /// Scrapes until `stop` (target removed: write end-of-run stale markers) or `shutdown`
    /// (process exit: no stale markers, as Prometheus).
    pub async fn run(mut self, stop: CancellationToken, shutdown: CancellationToken) {
        let mut interval = self.target.interval.get();
        let mut ticker = self.ticker(interval);
        let mut last_scrape: Option<SystemTime> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                u = Self::next_update(&mut self.updates) => {
                    self.reconfigure(u);
                    if self.target.interval.get() != interval {
                        interval = self.target.interval.get();
                        ticker = self.ticker(interval);
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            if self.budget.as_ref().is_some_and(|b| b.under_pressure()) {
                self.metrics.scrapes_skipped_memory.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let t = SystemTime::now();
            last_scrape = Some(t);
            let batch = self.scrape_once(t).await;
            if !batch.is_empty() && self.out.send(batch).await.is_err() {
                return;
            }
        }
        if shutdown.is_cancelled() || last_scrape.is_none() {
            return;
        }
        // End-of-run staleness, as Prometheus' `endOfRunStaleness`: wait for when the next scrape
        // would have been (its time is the markers' timestamp), then one more interval plus 10 %
        // so a re-created target (e.g. a relabel change) has written its samples first.
        tokio::select! { _ = shutdown.cancelled() => return, _ = ticker.tick() => {} }
        let stale_at = now_ms(SystemTime::now());
        tokio::select! { _ = shutdown.cancelled() => return, _ = ticker.tick() => {} }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval / 10) => {}
        }
        let mut batch = Batch::with_capacity(self.prev.len() + 5);
        for s in self.prev.drain() {
            batch.push(Sample { series: s, timestamp_ms: stale_at, value: STALE_NAN });
        }
        for s in self.report.all() {
            batch.push(Sample { series: s.clone(), timestamp_ms: stale_at, value: STALE_NAN });
        }
        self.metrics.stale_markers.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some((path, _)) = &self.persist {
            crate::staleness::remove(path); // every series is stale-marked now
        }
        let _ = self.out.send(batch).await;
    }

    /// Ticks at the instants whose position in `interval` is the target's phase, starting with
    /// the next one.
    fn ticker(&self, interval: std::time::Duration) -> tokio::time::Interval {
        let phase = offset(&self.target, interval);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let ns = interval.as_nanos().max(1);
        let wait = (phase.as_nanos() + ns - now.as_nanos() % ns) % ns;
        let start = tokio::time::Instant::now() + std::time::Duration::from_nanos(wait as u64);
        let mut ticker = tokio::time::interval_at(start, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    }

    /// One scrape: returns the samples to send (page samples or stale markers, plus the report).
    pub async fn scrape_once(&mut self, start: SystemTime) -> Batch {
        let started = tokio::time::Instant::now();
        let ts = now_ms(start);
        let req = self.request();
        // Sized for the last scrape's series plus the report series: the batch is handed
        // over, so it cannot be reused, but it need not grow sample by sample (its growth was
        // 1.3 % of trawl's CPU at 1M series).
        let mut batch = Batch::with_capacity(self.prev.len() + 8);
        let result = match req {
            Ok(req) => {
                let mut bufs = fetch::Buffers::take();
                let r = match fetch::fetch(&self.client, &req, &mut bufs).await {
                    Ok(resp) => {
                        self.metrics
                            .bytes_scraped
                            .fetch_add(resp.wire_bytes, std::sync::atomic::Ordering::Relaxed);
                        let format = parse::format_from_content_type(resp.content_type.as_deref());
                        self.process_page(&bufs.body, format, ts, &mut batch)
                    }
                    Err(e) => Err((ScrapeError::Fetch(e), Counts::default())),
                };
                bufs.give_back();
                r
            }
            Err(e) => Err((ScrapeError::Fetch(e), Counts::default())),
        };
        let duration = started.elapsed().as_secs_f64();
        let (counts, err) = match result {
            Ok(c) => (c, None),
            Err((e, c)) => {
                // Discard the page; stale-mark everything the previous scrape sent.
                batch.clear();
                self.cur.clear();
                let marked = self.emit_stale(ts, false, &mut batch);
                (Counts { series_changed: marked > 0, ..c }, Some(e))
            }
        };
        self.persist_series(ts, counts.series_changed, &mut batch);
        let up = if err.is_none() { 1.0 } else { 0.0 };
        batch.set_metadata(None);
        for (series, value) in [
            (&self.report.up, up),
            (&self.report.duration, duration),
            (&self.report.scraped, counts.scraped as f64),
            (&self.report.post_relabel, counts.post_relabel as f64),
            (&self.report.added, counts.added as f64),
        ] {
            batch.push(Sample { series: series.clone(), timestamp_ms: ts, value });
        }
        let m = &self.metrics;
        use std::sync::atomic::Ordering::Relaxed;
        m.scrapes.fetch_add(1, Relaxed);
        m.samples_scraped.fetch_add(counts.scraped, Relaxed);
        m.samples_kept.fetch_add(counts.post_relabel, Relaxed);
        if err.is_some() {
            m.scrape_failures.fetch_add(1, Relaxed);
        }
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.health = if err.is_none() { Health::Up } else { Health::Down };
        st.last_error = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        st.last_scrape = Some(start);
        st.last_scrape_duration = duration;
        if let Some(e) = &err {
            tracing::debug!(job = %self.settings.job, target = %self.target.url, error = %e, "Scrape failed.");
        }
        batch
    }

    fn request(&self) -> Result<fetch::Request, FetchError> {
        let uri: hyper::Uri =
            self.target.url.parse().map_err(|_| FetchError::Url(self.target.url.clone()))?;
        let auth = crate::http_client::auth_header(&self.settings.http)
            .map_err(|e| FetchError::Http(e.to_string()))?;
        Ok(fetch::Request {
            uri,
            accept: hyper::header::HeaderValue::from_static(parse::ACCEPT_HEADER),
            gzip: self.settings.gzip,
            timeout: self.target.timeout.get(),
            body_limit: self.settings.body_size_limit,
            auth,
        })
    }

    /// Moves every series of the previous scrape that is not in this one into `batch` as a
    /// stale marker, then makes this scrape's set the previous one.
    /// `unchanged`: the caller knows both sets are equal, so there is nothing to mark.
    fn emit_stale(&mut self, ts: i64, unchanged: bool, batch: &mut Batch) -> usize {
        batch.set_metadata(None);
        let before = batch.len();
        if !unchanged {
            for s in self.prev.iter() {
                if !self.cur.contains(s) {
                    batch.push(Sample { series: s.clone(), timestamp_ms: ts, value: STALE_NAN });
                }
            }
        }
        self.metrics
            .stale_markers
            .fetch_add((batch.len() - before) as u64, std::sync::atomic::Ordering::Relaxed);
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.cur.clear();
        batch.len() - before
    }

    /// Parses a page into `batch`. On error the caller discards `batch`. Public for the
    /// benches; the scrape loop is its only other caller.
    #[doc(hidden)]
    pub fn process_page(
        &mut self,
        body: &[u8],
        format: parse::Format,
        ts: i64,
        batch: &mut Batch,
    ) -> Result<Counts, (ScrapeError, Counts)> {
        self.generation += 1;
        let generation = self.generation;
        let mut counts = Counts::default();
        let mut parser = Parser::new(body, format);
        self.cur.clear();
        let mut family = Family::default();
        self.cache.begin_scrape();
        // OpenMetrics created timestamps: where the current metric point's samples start in
        // the batch, and its first sample (a `_created` line must have its labels).
        let om = format == parse::Format::OpenMetrics;
        let mut point: Option<(usize, parse::Sample<'_>)> = None;
        loop {
            let entry = match parser.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err((ScrapeError::Parse(e), counts)),
            };
            let s = match entry {
                parse::Entry::Sample(s) => s,
                parse::Entry::Help { name, help } => {
                    family.start(name).help = help;
                    point = None;
                    continue;
                }
                parse::Entry::Type { name, kind } => {
                    family.start(name).kind = kind;
                    point = None;
                    continue;
                }
                parse::Entry::Unit { name, unit } => {
                    family.start(name).unit = unit;
                    point = None;
                    continue;
                }
            };
            counts.scraped += 1;
            if om && has_created(family.kind) {
                if is_created_of(&s, family.name) {
                    if let Some((from, first)) = point.take()
                        && same_point(&first, &s)
                        && s.value().is_finite()
                    {
                        batch.set_created_from(from, (s.value() * 1000.0).round() as i64);
                    }
                } else if point.is_none() {
                    point = Some((batch.len(), s));
                }
            }
            let raw = raw_key(s.raw_series());
            let cached = match self.cache.get(raw, generation) {
                Some(c) => c.clone(),
                None => {
                    let c = match self.build_series(&s) {
                        Cached::Keep(l) => Cached::Keep(match self.interned.get(&l) {
                            Some(shared) => shared.clone(),
                            None => {
                                let mut l = Arc::unwrap_or_clone(l);
                                let strings = &mut self.strings;
                                l.share_strings(|s| match strings.get(s.as_str()) {
                                    Some(shared) => shared.clone(),
                                    None => {
                                        strings.insert(s.clone());
                                        s.clone()
                                    }
                                });
                                let l = Arc::new(l);
                                self.interned.insert(l.clone());
                                l
                            }
                        }),
                        other => other,
                    };
                    self.cache.insert(raw, c.clone(), generation);
                    c
                }
            };
            let series = match cached {
                Cached::Keep(l) => l,
                Cached::Dropped => continue,
                Cached::Invalid(e) => return Err((ScrapeError::Series(e), counts)),
            };
            let explicit = if self.settings.honor_timestamps { s.timestamp_ms() } else { None };
            // Duplicates within one page: Prometheus keeps the first and rejects the rest.
            if (explicit.is_none() || self.settings.track_timestamps_staleness) && !self.cur.insert(&series) {
                continue;
            }
            counts.post_relabel += 1;
            if self.settings.sample_limit > 0 && counts.post_relabel > self.settings.sample_limit {
                return Err((ScrapeError::SampleLimit, counts));
            }
            if !self.prev.contains(&series) {
                counts.added += 1;
            }
            batch.set_metadata(self.family_metadata(&mut family, &s, generation));
            batch.push(Sample { series, timestamp_ms: explicit.unwrap_or(ts), value: s.value() });
            if let Some(e) = s.exemplar() {
                batch.push_exemplar(Exemplar {
                    labels: Labels::from_pairs(e.labels().map(|(n, v)| (n.into_owned(), v.into_owned()))),
                    value: e.value(),
                    // RW 2.0: an exemplar MUST have a timestamp; the scrape time when none is given.
                    timestamp_ms: e.timestamp_ms().unwrap_or(ts),
                });
            }
        }
        // Forget series not seen for two scrapes, so the cache follows churn instead of growing.
        let evicted = self.cache.end_scrape(generation);
        self.families.retain(|_, (_, g)| *g + 1 >= generation);
        if evicted {
            // Only an eviction can leave an interned set (and so its strings) held by nobody
            // else: the cache holds every set a page produced, the staleness maps a subset.
            self.interned.retain(|l| Arc::strong_count(l) > 1);
            self.strings.retain(|s| s.share_count() > 1);
        }
        // Every series in this scrape's set was checked against the last one's: with none
        // added, this set is within the last one, so equal sizes mean nothing vanished and the
        // per-series walk for stale markers can be skipped (the steady state).
        let unchanged = counts.added == 0 && self.cur.len() == self.prev.len();
        let marked = self.emit_stale(ts, unchanged, batch);
        counts.series_changed = counts.added > 0 || marked > 0;
        Ok(counts)
    }

    /// The metadata of sample `s` if it belongs to the family whose HELP/TYPE/UNIT came last
    /// (its name is the family name, or that plus a suffix such as `_total` or `_bucket`), as
    /// Prometheus' scrape cache looks metadata up by family.
    /// Borrowed from `family`, so a steady scrape touches no reference count per sample.
    fn family_metadata<'f>(
        &mut self,
        family: &'f mut Family<'_>,
        s: &parse::Sample<'_>,
        generation: u64,
    ) -> Option<&'f Arc<Metadata>> {
        let name = family.name?;
        if !belongs_to_family(&s.name(), name) {
            return None;
        }
        if family.resolved.is_some() {
            return family.resolved.as_ref();
        }
        let m = match self.families.get_mut(name) {
            Some((m, g)) if m.kind == family.kind && m.help == family.help && m.unit == family.unit => {
                *g = generation;
                m.clone()
            }
            _ => {
                let m = Arc::new(Metadata {
                    kind: family.kind,
                    help: family.help.clone().into_owned(),
                    unit: family.unit.to_owned(),
                });
                self.families.insert(name.into(), (m.clone(), generation));
                m
            }
        };
        family.resolved = Some(m);
        family.resolved.as_ref()
    }

    /// Builds the final label set of a page series: exposed labels, target labels merged with
    /// Prometheus' `mutateSampleLabels` rules, metric relabeling, then the limits.
    fn build_series(&self, s: &parse::Sample<'_>) -> Cached {
        let mut exposed = Labels::new();
        exposed.set(labels::METRIC_NAME, s.name().into_owned());
        for (n, v) in s.labels() {
            exposed.set(n.into_owned(), v.into_owned());
        }
        let mut l = exposed.clone();
        if self.settings.honor_labels {
            for t in self.target.labels.iter() {
                if !exposed.contains(&t.name) {
                    l.set(t.name.as_str(), t.value.as_str());
                }
            }
        } else {
            let mut conflicts: Vec<(&str, &str)> = Vec::new();
            for t in self.target.labels.iter() {
                if let Some(v) = exposed.get(&t.name) {
                    conflicts.push((t.name.as_str(), v));
                }
                l.set(t.name.as_str(), t.value.as_str());
            }
            // Shorter names first, then `exported_` prepended until the name is free.
            conflicts.sort_by_key(|(n, _)| n.len());
            for (name, value) in conflicts {
                let mut new_name = name.to_owned();
                loop {
                    new_name.insert_str(0, "exported_");
                    if !l.contains(&new_name) {
                        l.set(new_name, value);
                        break;
                    }
                }
            }
        }
        if !relabel::process(&self.settings.metric_relabel, &mut l) {
            return Cached::Dropped;
        }
        if l.is_empty() {
            return Cached::Dropped;
        }
        let Some(name) = l.get(labels::METRIC_NAME).map(str::to_owned) else {
            return Cached::Invalid("__name__ label is mandatory".into());
        };
        let st = &self.settings;
        if st.label_limit > 0 && l.len() as u64 > st.label_limit {
            return Cached::Invalid(
                ScrapeError::LabelLimit(name, l.len(), st.label_limit).to_string().into(),
            );
        }
        for lb in l.iter() {
            if st.label_name_length_limit > 0 && lb.name.len() as u64 > st.label_name_length_limit {
                let e = ScrapeError::LabelNameLength(name, lb.name.to_string(), st.label_name_length_limit);
                return Cached::Invalid(e.to_string().into());
            }
            if st.label_value_length_limit > 0 && lb.value.len() as u64 > st.label_value_length_limit {
                let e = ScrapeError::LabelValueLength(name, lb.name.to_string(), st.label_value_length_limit);
                return Cached::Invalid(e.to_string().into());
            }
        }
        Cached::Keep(Arc::new(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration;
    use crate::ring::is_stale_nan;

    fn lp(honor_labels: bool, sample_limit: u64) -> TargetLoop {
        let settings = JobSettings {
            job: "j".into(),
            honor_labels,
            honor_timestamps: true,
            track_timestamps_staleness: false,
            sample_limit,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: 0,
            gzip: true,
            metric_relabel: Vec::new(),
            http: Default::default(),
        };
        let target = ScrapeTarget {
            labels: Labels::from_pairs([("job", "j"), ("instance", "h:1"), ("zone", "z")]),
            url: "http://h:1/metrics".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            params: Vec::new(),
        };
        let (tx, _rx) = mpsc::channel(1);
        TargetLoop::new(
            Arc::new(settings),
            target,
            crate::http_client::build(None).unwrap(),
            tx,
            Arc::default(),
            Arc::default(),
        )
    }

    fn page(l: &mut TargetLoop, body: &str, ts: i64) -> Result<(Batch, Counts), String> {
        let mut b = Batch::new();
        l.process_page(body.as_bytes(), parse::Format::PrometheusText, ts, &mut b)
            .map(|c| (b, c))
            .map_err(|(e, _)| e.to_string())
    }

    fn show(b: &Batch) -> Vec<String> {
        b.iter()
            .map(|s| {
                let v = if is_stale_nan(s.value) { "stale".to_string() } else { s.value.to_string() };
                format!("{} {v} {}", s.series, s.timestamp_ms)
            })
            .collect()
    }

    #[test]
    fn target_labels_win_and_exposed_ones_are_exported() {
        let mut l = lp(false, 0);
        let (b, _) = page(&mut l, "m{job=\"orig\",instance=\"foo\",exported_job=\"x\"} 1\n", 5).unwrap();
        assert_eq!(
            show(&b),
            [
                r#"{__name__="m", exported_exported_job="orig", exported_instance="foo", exported_job="x", instance="h:1", job="j", zone="z"} 1 5"#
            ]
        );
    }

    #[test]
    fn series_share_label_strings_and_churn_frees_them() {
        let mut l = lp(false, 0);
        let (b, _) = page(&mut l, "a{x=\"1\"} 1\nb{x=\"1\"} 2\n", 1).unwrap();
        let value = |i: usize, name: &str| {
            b.samples[i].series.iter().find(|l| l.name == name).map(|l| l.value.clone()).unwrap()
        };
        for name in ["x", "job", "instance", "zone"] {
            assert!(Str::ptr_eq(&value(0, name), &value(1, name)), "{name}'s value is one allocation");
        }
        drop(b);
        // The page changes for good: a and b are evicted two scrapes later, and with them the
        // strings only they used.
        for ts in 2..=4 {
            page(&mut l, "c{y=\"2\"} 1\n", ts).unwrap();
        }
        let left: Vec<&str> = l.strings.iter().map(|s| s.as_str()).collect();
        for gone in ["a", "b", "x", "1"] {
            assert!(!left.contains(&gone), "{gone:?} still interned: {left:?}");
        }
        for kept in ["c", "y", "2", "job", "h:1"] {
            assert!(left.contains(&kept), "{kept:?} missing: {left:?}");
        }
    }

    #[test]
    fn honor_labels_keeps_exposed_ones() {
        let mut l = lp(true, 0);
        let (b, _) = page(&mut l, "m{job=\"orig\"} 1\n", 5).unwrap();
        assert_eq!(show(&b), [r#"{__name__="m", instance="h:1", job="orig", zone="z"} 1 5"#]);
    }

    #[test]
    fn vanished_series_get_stale_markers_at_the_next_scrape() {
        let mut l = lp(false, 0);
        let (_, c) = page(&mut l, "a 1\nb 2\n", 1000).unwrap();
        assert_eq!((c.scraped, c.post_relabel, c.added), (2, 2, 2));
        let (b, c) = page(&mut l, "a 3\n", 2000).unwrap();
        assert_eq!(c.added, 0, "a is not new");
        assert_eq!(
            show(&b),
            [
                r#"{__name__="a", instance="h:1", job="j", zone="z"} 3 2000"#,
                r#"{__name__="b", instance="h:1", job="j", zone="z"} stale 2000"#
            ]
        );
        let (b, _) = page(&mut l, "a 3\n", 3000).unwrap();
        assert_eq!(b.len(), 1, "a marker is written once");
    }

    proptest::proptest! {
        /// The naive model of staleness over a run of scrapes (some failing): a series gets a
        /// marker when it was on the last successful page and is not on this one (every series
        /// on a failed scrape's predecessor). Catches the steady-state shortcut in `emit_stale`
        /// skipping a walk it needed.
        #[test]
        fn stale_markers_match_the_set_model(
            pages in proptest::collection::vec(
                (proptest::collection::vec(0u8..6, 0..8), proptest::bool::weighted(0.15)),
                1..12,
            ),
        ) {
            let mut l = lp(false, 0);
            let mut last: std::collections::BTreeSet<u8> = Default::default();
            for (i, (series, fail)) in pages.iter().enumerate() {
                let ts = 1000 * (i as i64 + 1);
                let mut body: String = series.iter().map(|n| format!("m{n} 1\n")).collect();
                if *fail {
                    body.push_str("broken{\n");
                }
                let now: std::collections::BTreeSet<u8> =
                    if *fail { Default::default() } else { series.iter().copied().collect() };
                let mut b = Batch::new();
                match l.process_page(body.as_bytes(), parse::Format::PrometheusText, ts, &mut b) {
                    Ok(_) => {}
                    Err(_) => {
                        // What the scrape loop does with a failed page.
                        b.clear();
                        l.cur.clear();
                        l.emit_stale(ts, false, &mut b);
                    }
                }
                let mut stale: Vec<String> = b
                    .iter()
                    .filter(|s| is_stale_nan(s.value))
                    .map(|s| s.series.get("__name__").unwrap_or("").to_owned())
                    .collect();
                stale.sort();
                let want: Vec<String> = last.difference(&now).map(|n| format!("m{n}")).collect();
                proptest::prop_assert_eq!(stale, want, "scrape {}", i);
                last = now;
            }
        }

        /// `SeriesCache` against its reference model, a hash map evicting what two scrapes did
        /// not use: the same hits, misses and evictions over pages that repeat, reorder, drop,
        /// add and duplicate series. Keys share their first word often (the index's hash), so
        /// the full-key compare is exercised.
        #[test]
        fn series_cache_matches_the_map_model(
            pages in proptest::collection::vec(
                proptest::collection::vec(0u64..24, 0..40),
                1..16,
            ),
        ) {
            let key = |k: u64| [k % 5, k];
            let mut cache = SeriesCache::default();
            let mut model: HashMap<[u64; 2], (String, u64)> = HashMap::new();
            for (i, page) in pages.iter().enumerate() {
                let generation = i as u64 + 1;
                cache.begin_scrape();
                for &k in page {
                    let got = match cache.get(key(k), generation) {
                        Some(Cached::Invalid(v)) => Some(v.to_string()),
                        Some(other) => panic!("not what was inserted: {other:?}"),
                        None => None,
                    };
                    let want = model.get_mut(&key(k)).map(|(v, g)| {
                        *g = generation;
                        v.clone()
                    });
                    proptest::prop_assert_eq!(&got, &want, "page {} key {}", i, k);
                    if got.is_none() {
                        let v = format!("{k}@{generation}");
                        cache.insert(key(k), Cached::Invalid(v.as_str().into()), generation);
                        model.insert(key(k), (v, generation));
                    }
                }
                let before = model.len();
                model.retain(|_, (_, g)| *g + 1 >= generation);
                proptest::prop_assert_eq!(cache.end_scrape(generation), model.len() < before, "page {}", i);
                proptest::prop_assert_eq!(cache.len(), model.len(), "page {}", i);
            }
        }
    }

    #[test]
    fn remembered_series_go_stale_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.series");
        let mut before = lp(false, 0).remember_series(path.clone());
        page(&mut before, "a 1\nb 2\n", 1000).unwrap();
        let mut b = Batch::new();
        before.persist_series(1000, false, &mut b);
        assert!(b.is_empty(), "nothing remembered on a first run");
        drop(before); // the "kill"

        let mut after = lp(false, 0).remember_series(path.clone());
        let (mut b, _) = page(&mut after, "a 3\nc 4\n", 5000).unwrap();
        after.persist_series(5000, true, &mut b);
        assert_eq!(
            show(&b),
            [
                r#"{__name__="a", instance="h:1", job="j", zone="z"} 3 5000"#,
                r#"{__name__="c", instance="h:1", job="j", zone="z"} 4 5000"#,
                r#"{__name__="b", instance="h:1", job="j", zone="z"} stale 5000"#
            ],
            "b vanished while trawl was down: marked once, at the first scrape"
        );
        let mut saved: Vec<String> = crate::staleness::load(&path)
            .unwrap()
            .iter()
            .map(|l| l.get("__name__").unwrap().to_owned())
            .collect();
        saved.sort();
        assert_eq!(saved, ["a", "c"], "the new set is saved");
        let (mut b, _) = page(&mut after, "a 3\nc 4\n", 6000).unwrap();
        after.persist_series(6000, false, &mut b);
        assert_eq!(b.len(), 2, "no more markers after the first scrape");
    }

    #[test]
    fn explicit_timestamps_are_kept_and_not_stale_tracked() {
        let mut l = lp(false, 0);
        let (b, _) = page(&mut l, "a 1 123\n", 1000).unwrap();
        assert_eq!(b.samples[0].timestamp_ms, 123);
        let (b, _) = page(&mut l, "", 2000).unwrap();
        assert!(b.is_empty(), "series with explicit timestamps get no staleness markers");
    }

    #[test]
    fn duplicates_keep_the_first_sample() {
        let mut l = lp(false, 0);
        let (b, c) = page(&mut l, "a 1\na 2\na{} 3\n", 1000).unwrap();
        assert_eq!((b.len(), c.scraped), (1, 3));
        assert_eq!(b.samples[0].value, 1.0);
    }

    #[test]
    fn sample_limit_fails_the_scrape() {
        let mut l = lp(false, 2);
        assert!(page(&mut l, "a 1\nb 1\n", 1).is_ok());
        assert_eq!(page(&mut l, "a 1\nb 1\nc 1\n", 2).unwrap_err(), "sample limit exceeded");
    }

    #[test]
    fn bad_pages_fail_whole() {
        // (page, why)
        let cases = [
            ("a{x=\"1\",x=\"1\"} 1\n", "a repeated label name fails the scrape (compliance: RepeatedLabels)"),
            ("{label=\"value\"} 1\n", "a series without a name fails the scrape (compliance: NameLabel)"),
            ("1234notvali}{ 444\n", "garbage fails the scrape (compliance: Invalid)"),
        ];
        for (body, why) in cases {
            let mut l = lp(false, 0);
            assert!(page(&mut l, body, 1).is_err(), "{why}");
        }
    }

    #[test]
    fn empty_label_values_are_absent() {
        let mut l = lp(false, 0);
        let (b, _) = page(&mut l, "test{a=\"\"} 1\n", 1).unwrap();
        assert_eq!(show(&b), [r#"{__name__="test", instance="h:1", job="j", zone="z"} 1 1"#]);
    }

    #[test]
    fn metadata_and_exemplars_travel_beside_the_samples() {
        let mut l = lp(false, 0);
        let body = "# TYPE req counter\n# HELP req Requests.\nreq_total 3 # {trace_id=\"t1\"} 1.5 1.0\n\
                    req_created 1.0\n# TYPE temp_celsius gauge\n# UNIT temp_celsius celsius\ntemp_celsius 20\n\
                    other 1\n# EOF\n";
        let run = |l: &mut TargetLoop, ts| {
            let mut b = Batch::new();
            l.process_page(body.as_bytes(), parse::Format::OpenMetrics, ts, &mut b)
                .map_err(|(e, _)| e)
                .unwrap();
            b
        };
        let b = run(&mut l, 5_000);
        type Meta = Option<(parse::MetricType, String, String)>;
        let got: Vec<(String, Meta)> = b
            .iter()
            .zip(b.metadata_iter())
            .map(|(s, m)| {
                let name = s.series.get("__name__").unwrap_or("").to_owned();
                (name, m.map(|m| (m.kind, m.help.clone(), m.unit.clone())))
            })
            .collect();
        let counter = Some((parse::MetricType::Counter, "Requests.".to_owned(), String::new()));
        // (sample, metadata, why)
        let want = [
            ("req_total", counter.clone(), "a counter's _total sample belongs to its family"),
            ("req_created", counter, "so does _created"),
            ("temp_celsius", Some((parse::MetricType::Gauge, String::new(), "celsius".into())), "UNIT kept"),
            ("other", None, "no HELP/TYPE for it"),
        ];
        for ((name, meta), (want_name, want_meta, why)) in got.iter().zip(want) {
            assert_eq!((name.as_str(), meta), (want_name, &want_meta), "{why}");
        }
        assert_eq!(b.exemplars.len(), 1);
        let (at, e) = &b.exemplars[0];
        assert_eq!(
            (*at, e.value, e.timestamp_ms),
            (0, 1.5, 1_000),
            "exemplar of req_total, its own timestamp"
        );
        assert_eq!(e.labels.get("trace_id"), Some("t1"));
        let first = b.metadata[0].metadata.clone();
        let b2 = run(&mut l, 6_000);
        assert!(
            Arc::ptr_eq(first.as_ref().unwrap(), b2.metadata[0].metadata.as_ref().unwrap()),
            "unchanged metadata is shared across scrapes, not rebuilt"
        );
    }

    #[test]
    fn openmetrics_created_lines_give_their_points_a_created_timestamp() {
        let mut l = lp(false, 0);
        let body = "# TYPE req counter\n\
                    req_total{code=\"200\"} 3\nreq_created{code=\"200\"} 1700000000.5\n\
                    req_total{code=\"500\"} 1\nreq_created{code=\"500\"} 1700000100\n\
                    # TYPE lat histogram\n\
                    lat_bucket{le=\"1.0\",path=\"/\"} 1\nlat_bucket{le=\"+Inf\",path=\"/\"} 2\n\
                    lat_count{path=\"/\"} 2\nlat_sum{path=\"/\"} 1.5\nlat_created{path=\"/\"} 1600000000\n\
                    # TYPE jobs counter\n\
                    jobs_total{q=\"a\"} 1\njobs_total{q=\"b\"} 2\njobs_created{q=\"b\"} 1500000000\n\
                    # TYPE temp gauge\ntemp 20\n# EOF\n";
        let mut b = Batch::new();
        l.process_page(body.as_bytes(), parse::Format::OpenMetrics, 5_000, &mut b)
            .map_err(|(e, _)| e)
            .unwrap();
        let got: Vec<(String, Option<i64>)> = b
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let created = b.created.iter().find(|(at, _)| *at as usize == i).map(|(_, c)| *c);
                (s.series.to_string(), created)
            })
            .collect();
        let series = |name: &str, extra: &[(&str, &str)]| {
            let mut l = Labels::from_pairs(extra.iter().copied());
            for (n, v) in [("__name__", name), ("instance", "h:1"), ("job", "j"), ("zone", "z")] {
                l.set(n, v);
            }
            l.to_string()
        };
        let ms = |secs: i64| Some(secs * 1000);
        // (series, created timestamp, why)
        let want = [
            (series("req_total", &[("code", "200")]), Some(1_700_000_000_500), "seconds to ms"),
            (
                series("req_created", &[("code", "200")]),
                None,
                "the _created series is still sent, as Prometheus does",
            ),
            (series("req_total", &[("code", "500")]), ms(1_700_000_100), "each point its own"),
            (series("req_created", &[("code", "500")]), None, ""),
            (series("lat_bucket", &[("le", "1.0"), ("path", "/")]), ms(1_600_000_000), "buckets: le ignored"),
            (series("lat_bucket", &[("le", "+Inf"), ("path", "/")]), ms(1_600_000_000), ""),
            (series("lat_count", &[("path", "/")]), ms(1_600_000_000), "_count"),
            (series("lat_sum", &[("path", "/")]), ms(1_600_000_000), "_sum"),
            (series("lat_created", &[("path", "/")]), None, ""),
            (
                series("jobs_total", &[("q", "a")]),
                None,
                "a point without _created gets none (nor the next point's)",
            ),
            (series("jobs_total", &[("q", "b")]), None, "the conservative side: its point started earlier"),
            (series("jobs_created", &[("q", "b")]), None, ""),
            (series("temp", &[]), None, "gauges have none"),
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for ((g, c), (w, wc, why)) in got.iter().zip(want) {
            assert_eq!((g.as_str(), *c), (w.as_str(), wc), "{why}");
        }
        let mut text = Batch::new();
        l.process_page(b"req_total 1\nreq_created 5\n", parse::Format::PrometheusText, 5_000, &mut text)
            .map_err(|(e, _)| e)
            .unwrap();
        assert!(text.created.is_empty(), "only OpenMetrics defines _created");
    }

    #[test]
    fn offsets_are_stable_and_within_the_interval() {
        let l = lp(false, 0);
        let i = std::time::Duration::from_secs(15);
        assert_eq!(offset(&l.target, i), offset(&l.target, i));
        assert!(offset(&l.target, i) < i);
    }
}
