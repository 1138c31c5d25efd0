//! The per-job manager and the views of the targets that the admin pages read.
//!
//! What this is: [`run_job`] watches a job's discovered targets, relabels them, and keeps exactly
//! one [`TargetLoop`] per distinct target running; the [`TargetsView`] it keeps up to date is what
//! `/targets` and the targets API show. What this is not: scraping ([`super::target`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{JobSettings, TargetLoop};
use crate::batch::Batch;
use crate::budget::MemoryBudget;
use crate::config::ScrapeConfig;
use crate::discovery::Discovered;
use crate::http_client::Client;
use crate::labels::Labels;
use crate::relabel::{self, ScrapeTarget, TargetOutcome};
use crate::telemetry::JobMetrics;

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
    /// Metric family name → its TYPE, HELP and UNIT, sorted by name: the families of the last
    /// scrapes (`/api/v1/targets/metadata`).
    pub metadata: Arc<Vec<(Box<str>, Arc<crate::batch::Metadata>)>>,
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
    /// The job's config these targets were relabeled with (the relabeling debugger replays it).
    pub config: Option<Arc<ScrapeConfig>>,
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
    /// The global external labels, merged into every record the job's loops write.
    pub external: Arc<Labels>,
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
    /// The global external labels.
    pub external: Arc<Labels>,
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
        let params = sc.param_list();
        let defaults = sc.target_defaults(&params);
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
                        external: job.external.clone(),
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
                external: job.external.clone(),
            });
            let lp = TargetLoop::new(
                settings.clone(),
                active.target.clone(),
                job.external.clone(),
                job.client.clone(),
                out.clone(),
                active.status.clone(),
                metrics.clone(),
            )
            .with_updates(updates_rx)
            .with_budget(budget.clone());
            let lp = match &staleness {
                Some(store) => {
                    lp.remember_series(store.path(sc.job(), &active.target.labels, &active.target.url)).await
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
            v.insert(sc.job().to_owned(), PoolView { active, dropped, config: Some(sc.clone()) });
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
