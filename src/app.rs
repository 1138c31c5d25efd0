//! Wiring: builds the stages from a [`Config`], owns the channels, spawns the top-level tasks
//! (the stages spawn their own, see the crate docs' `# Tasks`) and shuts them down in order (stop scrapes → drain the hand-off → flush remote write).
//!
//! What this is: the only module that knows all the others. What this is not: policy; each
//! stage's behaviour lives in its own module.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, ReloadRequest};
use crate::batch::{self, Batch, is_stale_nan};
use crate::budget::MemoryBudget;
use crate::config::{self, Config, DebugOutput, ScrapeConfig};
use crate::discovery;
use crate::labels::{self, Labels};
use crate::remote_write::{Endpoint, EndpointsSection};
use crate::scrape::{self, TargetsView};
use crate::telemetry::Metrics;

/// Batches in flight between the scrape loops and the fan-out to endpoints. Each holds one
/// scrape of one target (its records: ~250 KB for a 1,000-series page), so this bounds the
/// hand-off at 32 scrapes; beyond it scrape loops wait before scraping (back-pressure), they do
/// not drop, and a waiting loop holds no batch.
pub const HANDOFF_BATCHES: usize = 32;

/// How long shutdown may take to flush what is queued before giving up and counting the rest
/// as dropped. Kubernetes' default termination grace period is 30 s; we stay under it.
pub const FLUSH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Command-line settings the app needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--config.file`.
    pub config_file: PathBuf,
    /// `--web.listen-address`.
    pub listen_address: String,
    /// `--web.enable-lifecycle`: allow `POST /-/reload`, as Prometheus requires.
    pub enable_lifecycle: bool,
    /// `--memory.limit` in bytes (see [`crate::budget`]); `None` for no budget.
    pub memory_limit: Option<u64>,
    /// `--storage.path`: where the remote-write disk buffers and the staleness state live;
    /// `None` keeps everything in memory.
    pub storage_path: Option<PathBuf>,
    /// Every command-line flag and its value, for `/api/v1/status/flags`.
    pub flags: Vec<(String, String)>,
    /// The log level to re-apply after each (re)load: `--log.level`, else the config's; `None`
    /// when logging is not set up by [`crate::logging::init`] (e.g. in tests).
    pub log_level: Option<crate::logging::Level>,
}

/// Where batches go: the remote-write endpoints and what is printed. Replaced as a whole when a
/// reload changes it; the fan-out reads the current one per batch.
struct Sinks {
    /// Shared, so a reload that changes only `output` keeps the same endpoints without a gap.
    endpoints: Arc<Vec<Endpoint>>,
    output: DebugOutput,
    /// The fan-out waits for the next `Sinks` (a reload is swapping disk-backed endpoints).
    paused: bool,
}

/// A running job: what a reload compares and what it can change.
struct Job {
    cfg: Arc<ScrapeConfig>,
    /// Ends the job's discovery (replaced when the job's discovery config changes).
    sd_stop: CancellationToken,
    discovered: watch::Receiver<discovery::Discovered>,
    update: watch::Sender<scrape::JobUpdate>,
    /// Ends the job and its loops with stale markers (removed from the config).
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Everything a config decides, and how to change it in place.
struct Pipeline {
    cfg: Config,
    jobs: BTreeMap<String, Job>,
    sinks: watch::Sender<Arc<Sinks>>,
    /// Endpoints a reload replaced, flushing in the background.
    retired: Vec<tokio::task::JoinHandle<()>>,
    out: mpsc::Sender<Batch>,
    targets: TargetsView,
    metrics: Arc<Metrics>,
    /// The memory budget the scrape loops respect.
    budget: Option<Arc<MemoryBudget>>,
    /// `--storage.path`: the endpoints' disk buffers live under it.
    storage: Option<PathBuf>,
    /// Where targets' last series sets are kept (`--storage.path`).
    staleness: Option<Arc<crate::staleness::Store>>,
    /// Process exit: loops stop without stale markers.
    shutdown: CancellationToken,
}

/// Runs trawl until `shutdown` is cancelled, then flushes and returns. SIGHUP and (with
/// `--web.enable-lifecycle`) `POST /-/reload` reload the config file in place: see
/// [`Pipeline::apply`]; a config that does not load leaves the running one untouched.
pub async fn run(opts: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = config::load(&opts.config_file)?;
    let metrics = Arc::new(Metrics::default());
    record_reload(&metrics, true);
    let budget = opts.memory_limit.map(|l| Arc::new(MemoryBudget::new(l)));
    let budget_stop = CancellationToken::new();
    if let Some(b) = &budget {
        metrics.memory_limit_bytes.store(b.limit_bytes(), Ordering::Relaxed);
        tracing::info!(limit_bytes = b.limit_bytes(), "Memory budget set.");
        // Before any scrape starts, so the first scrapes already respect it.
        b.check();
        let (b, stop) = (b.clone(), budget_stop.clone());
        tokio::spawn(async move { b.run(stop).await });
    }

    let addr: SocketAddr = opts
        .listen_address
        .parse()
        .with_context(|| format!("invalid --web.listen-address {:?}", opts.listen_address))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr().unwrap_or(addr), "Listening.");

    // Held until `run` returns; the OS releases it if the process dies, so a restart after
    // SIGKILL finds it free.
    let _storage_lock = opts.storage_path.as_deref().map(lock_storage).transpose()?;
    let staleness = match &opts.storage_path {
        Some(root) => Some(Arc::new(crate::staleness::Store::open(root)?)),
        None => None,
    };
    let targets: TargetsView = TargetsView::default();
    let sinks = Sinks {
        endpoints: Arc::new(start_endpoints(&cfg, opts.storage_path.as_deref(), &targets)?),
        output: cfg.debug_output,
        paused: false,
    };
    metrics.set_section(REMOTE_WRITE_SECTION, endpoint_metrics(&sinks.endpoints));
    let (sinks_tx, sinks_rx) = watch::channel(Arc::new(sinks));
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let state = Arc::new(admin::State {
        metrics: metrics.clone(),
        targets: targets.clone(),
        ready: false.into(),
        reload: opts.enable_lifecycle.then(|| reload_tx.clone()),
        config: Mutex::new(Arc::new(cfg.clone())),
        flags: opts.flags.clone(),
    });
    let web_stop = CancellationToken::new();
    let web = tokio::spawn(admin::serve(listener, state.clone(), web_stop.clone()));
    tokio::spawn(forward_sighup(reload_tx));

    let (out_tx, out_rx) = mpsc::channel::<Batch>(HANDOFF_BATCHES);
    let mut fanout = tokio::spawn(fan_out(out_rx, sinks_rx, metrics.clone()));

    let mut pipeline = Pipeline {
        cfg: Config::default(),
        jobs: BTreeMap::new(),
        sinks: sinks_tx,
        retired: Vec::new(),
        out: out_tx,
        targets,
        metrics: metrics.clone(),
        budget,
        storage: opts.storage_path.clone(),
        staleness,
        shutdown: CancellationToken::new(),
    };
    pipeline.cfg.remote_write = cfg.remote_write.clone();
    pipeline.cfg.global.external_labels = cfg.global.external_labels.clone();
    pipeline.cfg.debug_output = cfg.debug_output;
    pipeline.apply(cfg).await?;
    applied(&state, &pipeline.cfg, opts.log_level.as_ref());
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        jobs = pipeline.cfg.scrape_configs.len(),
        remote_write = pipeline.cfg.remote_write.len(),
        config = %opts.config_file.display(),
        "Started."
    );

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(req) = reload_rx.recv() => {
                let outcome = pipeline.reload(&opts.config_file).await;
                record_reload(&metrics, outcome.is_ok());
                match &outcome {
                    Ok(()) => {
                        applied(&state, &pipeline.cfg, opts.log_level.as_ref());
                        tracing::info!(
                            file = %opts.config_file.display(),
                            jobs = pipeline.cfg.scrape_configs.len(),
                            "Completed loading of configuration file."
                        )
                    }
                    Err(e) => tracing::error!(
                        file = %opts.config_file.display(),
                        error = %e,
                        "Error reloading config; the running config stays."
                    ),
                }
                if let Some(reply) = req {
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    tracing::info!("Shutting down: stopping scrapes and flushing queued samples.");
    state.ready.store(false, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + FLUSH_DEADLINE;
    let Pipeline { jobs, sinks, retired, out, shutdown: scrape_stop, .. } = pipeline;
    scrape_stop.cancel();
    for (_, j) in jobs {
        let _ = j.task.await;
    }
    drop(out);
    // The fan-out ends once every scrape loop has dropped its sender.
    if tokio::time::timeout_at(deadline, &mut fanout).await.is_err() {
        tracing::error!("Scrape loops did not stop before the flush deadline; their last batches are lost.");
        fanout.abort();
        let _ = fanout.await;
    }
    let last = sinks.send_replace(Arc::new(Sinks {
        endpoints: Arc::default(),
        output: DebugOutput::None,
        paused: false,
    }));
    let endpoints =
        Arc::try_unwrap(last).ok().and_then(|s| Arc::try_unwrap(s.endpoints).ok()).unwrap_or_else(|| {
            tracing::error!(
                "Remote-write endpoints still in use at shutdown; queued samples are not flushed."
            );
            Vec::new()
        });
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    for e in endpoints {
        e.shutdown(remaining).await;
    }
    for r in retired {
        let _ = tokio::time::timeout_at(deadline, r).await;
    }
    web_stop.cancel();
    budget_stop.cancel();
    let _ = web.await;
    tracing::info!("Stopped.");
    Ok(())
}

/// After a config is applied: the web views show it, and the log level is re-applied (the flag,
/// else the config's `logs.level`).
fn applied(state: &admin::State, cfg: &Config, log_level: Option<&crate::logging::Level>) {
    *state.config.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg.clone());
    if let Some(l) = log_level {
        l.apply(cfg.log_level.as_deref());
    }
}

/// Sets `config_last_reload_successful` and, on success, its timestamp.
fn record_reload(metrics: &Metrics, ok: bool) {
    metrics.config_last_reload_successful.store(i64::from(ok), Ordering::Relaxed);
    if ok {
        let now = crate::now_ms() / 1000;
        metrics.config_last_reload_success_timestamp_seconds.store(now, Ordering::Relaxed);
    }
}

/// Turns each SIGHUP into a reload request, as Prometheus does.
async fn forward_sighup(reload: mpsc::Sender<ReloadRequest>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("Cannot install a SIGHUP handler; reload with POST /-/reload.");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "Received a signal; reloading the config.");
        if reload.send(None).await.is_err() {
            return;
        }
    }
}

/// Equal apart from where in the file the job was written (moving a job is not a change).
fn same_job(a: &ScrapeConfig, b: &ScrapeConfig) -> bool {
    let mut b = b.clone();
    if b.job_name.value != a.job_name.value {
        return false;
    }
    b.job_name = a.job_name.clone();
    *a == b
}

/// Whether two versions of a job discover targets the same way.
fn same_discovery(a: &ScrapeConfig, b: &ScrapeConfig) -> bool {
    a.static_configs == b.static_configs
        && a.file_sd_configs == b.file_sd_configs
        && a.http_sd_configs == b.http_sd_configs
        && a.kubernetes_sd_configs == b.kubernetes_sd_configs
}

impl Pipeline {
    async fn reload(&mut self, path: &std::path::Path) -> Result<(), String> {
        let cfg = config::load(path).map_err(|e| e.to_string())?;
        self.apply(cfg).await.map_err(|e| format!("{e:#}"))
    }

    /// Moves the running pipeline to `cfg`. Everything that can fail (HTTP clients, endpoints)
    /// is built first, so a failure changes nothing. Then, as Prometheus' reload does: jobs whose
    /// config is unchanged are not touched (loops, schedules, staleness state all stay); changed
    /// jobs get the new config in place (see [`scrape::run_job`]), with discovery restarted only
    /// if the discovery part changed; removed jobs stop with stale markers; remote-write
    /// endpoints are replaced only if `remote_write` or the external labels changed, the old
    /// ones flushing what they hold in the background. With disk buffers (`--storage.path`) an
    /// endpoint's directory is open in one place only, so instead the fan-out pauses (scrapes
    /// queue up in the hand-off), the old endpoints write what they hold to disk and close, and
    /// the new ones open the directories and replay it.
    async fn apply(&mut self, cfg: Config) -> anyhow::Result<()> {
        let mut clients = BTreeMap::new();
        for sc in &cfg.scrape_configs {
            let unchanged = self.jobs.get(sc.job()).is_some_and(|j| same_job(&j.cfg, sc));
            if !unchanged {
                let client = crate::http_client::from_config(&sc.http_client_config())
                    .with_context(|| format!("job {:?}: building the HTTP client", sc.job()))?;
                clients.insert(sc.job().to_owned(), client);
            }
        }
        let external_changed = cfg.global.external_labels != self.cfg.global.external_labels;
        let sinks_changed = cfg.remote_write != self.cfg.remote_write || external_changed;
        let external = external_labels(&cfg);
        let new_endpoints = if sinks_changed && self.storage.is_none() {
            Some(start_endpoints(&cfg, None, &self.targets)?)
        } else {
            None
        };

        // Jobs.
        let wanted: std::collections::BTreeSet<&str> = cfg.scrape_configs.iter().map(|sc| sc.job()).collect();
        let removed: Vec<String> =
            self.jobs.keys().filter(|k| !wanted.contains(k.as_str())).cloned().collect();
        for name in removed {
            if let Some(j) = self.jobs.remove(&name) {
                tracing::info!(job = name.as_str(), "Job removed; its targets get stale markers.");
                j.sd_stop.cancel();
                j.stop.cancel();
            }
        }
        for sc in &cfg.scrape_configs {
            let Some(client) = clients.remove(sc.job()) else {
                // An unchanged job: only the external labels its records carry may change.
                if let Some(j) = self.jobs.get(sc.job()).filter(|_| external_changed) {
                    let mut u = j.update.borrow().clone();
                    u.external = external.clone();
                    j.update.send_replace(u);
                }
                continue;
            };
            let sc = Arc::new(sc.clone());
            match self.jobs.get_mut(sc.job()) {
                Some(j) => {
                    if !same_discovery(&j.cfg, &sc) {
                        j.sd_stop.cancel();
                        j.sd_stop = self.shutdown.child_token();
                        j.discovered = discovery::spawn_job(&sc, j.sd_stop.clone());
                    }
                    j.cfg = sc.clone();
                    j.update.send_replace(scrape::JobUpdate {
                        sc,
                        discovered: j.discovered.clone(),
                        client,
                        external: external.clone(),
                    });
                    tracing::info!(job = j.cfg.job(), "Job changed; applied in place.");
                }
                None => {
                    let sd_stop = self.shutdown.child_token();
                    let discovered = discovery::spawn_job(&sc, sd_stop.clone());
                    let (update, updates) = watch::channel(scrape::JobUpdate {
                        sc: sc.clone(),
                        discovered: discovered.clone(),
                        client,
                        external: external.clone(),
                    });
                    let stop = self.shutdown.child_token();
                    let task = tokio::spawn(scrape::run_job(
                        updates,
                        self.out.clone(),
                        self.targets.clone(),
                        self.metrics.job(sc.job()),
                        self.budget.clone(),
                        self.staleness.clone(),
                        stop.clone(),
                        self.shutdown.clone(),
                    ));
                    self.jobs.insert(
                        sc.job().to_owned(),
                        Job { cfg: sc, sd_stop, discovered, update, stop, task },
                    );
                }
            }
        }

        // Sinks.
        if let Some(endpoints) = new_endpoints {
            self.metrics.set_section(REMOTE_WRITE_SECTION, endpoint_metrics(&endpoints));
            let old = self.sinks.send_replace(Arc::new(Sinks {
                endpoints: Arc::new(endpoints),
                output: cfg.debug_output,
                paused: false,
            }));
            if !old.endpoints.is_empty() {
                tracing::info!("remote_write changed; old endpoints flush in the background.");
                self.retired.push(tokio::spawn(retire(old.endpoints.clone())));
            }
        } else if sinks_changed {
            let old = self.sinks.send_replace(Arc::new(Sinks {
                endpoints: Arc::default(),
                output: cfg.debug_output,
                paused: true,
            }));
            tracing::info!(
                "remote_write changed; pausing the hand-off while the disk-backed endpoints are swapped."
            );
            let old_endpoints = old.endpoints.clone();
            drop(old);
            retire(old_endpoints).await;
            let started = match start_endpoints(&cfg, self.storage.as_deref(), &self.targets) {
                Ok(e) => e,
                Err(e) => {
                    // Put the old endpoints back (their data is on disk) and refuse the change.
                    let old = start_endpoints(&self.cfg, self.storage.as_deref(), &self.targets)
                        .map_err(|e2| e2.context("restarting the previous remote_write endpoints"))?;
                    self.metrics.set_section(REMOTE_WRITE_SECTION, endpoint_metrics(&old));
                    self.sinks.send_replace(Arc::new(Sinks {
                        endpoints: Arc::new(old),
                        output: self.cfg.debug_output,
                        paused: false,
                    }));
                    return Err(e);
                }
            };
            self.metrics.set_section(REMOTE_WRITE_SECTION, endpoint_metrics(&started));
            self.sinks.send_replace(Arc::new(Sinks {
                endpoints: Arc::new(started),
                output: cfg.debug_output,
                paused: false,
            }));
        } else if cfg.debug_output != self.cfg.debug_output {
            let endpoints = self.sinks.borrow().endpoints.clone();
            self.sinks.send_replace(Arc::new(Sinks { endpoints, output: cfg.debug_output, paused: false }));
        }
        self.cfg = cfg;
        Ok(())
    }
}

/// Flushes the endpoints a reload replaced, once the fan-out has let go of them (it holds the
/// current sinks for one batch at a time).
async fn retire(mut old: Arc<Vec<Endpoint>>) {
    let endpoints = loop {
        match Arc::try_unwrap(old) {
            Ok(e) => break e,
            Err(still) => {
                old = still;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    for e in endpoints {
        e.shutdown(FLUSH_DEADLINE).await;
    }
}

/// The `/metrics` section of the remote-write endpoints, replaced when they are.
const REMOTE_WRITE_SECTION: &str = "remote_write";

/// Names and counters of the remote-write endpoints (and of their disk buffers), for `/metrics`.
fn endpoint_metrics(endpoints: &[Endpoint]) -> Arc<EndpointsSection> {
    let endpoints = endpoints
        .iter()
        .map(|e| (e.name().to_owned(), e.metrics().clone(), e.disk_metrics().cloned()))
        .collect();
    Arc::new(EndpointsSection { endpoints })
}

/// Takes an exclusive lock on `DIR/lock` for `--storage.path=DIR`. Two trawl processes on one
/// storage path would append to the same disk-buffer segments and cursors and replay each
/// other's data, so the second one refuses to start (Prometheus locks its data directory the
/// same way, with a `lock` file).
fn lock_storage(root: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("--storage.path {}: cannot create it", root.display()))?;
    let path = root.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("--storage.path: cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "--storage.path {} is in use by another trawl process (it holds the lock on {})",
            root.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("--storage.path: cannot lock {}", path.display()))
        }
    }
}

/// The global external labels of `cfg`.
fn external_labels(cfg: &Config) -> Arc<Labels> {
    Arc::new(Labels::from_pairs(cfg.global.external_labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

/// The metric families of all active targets, for remote write 1.0 metadata (Prometheus'
/// metadata watcher reads `TargetsActive()` the same way).
fn metadata_source(targets: &TargetsView) -> crate::remote_write::MetadataSource {
    let targets = targets.clone();
    Arc::new(move || {
        // The targets' statuses, taken under the view's lock and read after it is released (no
        // lock held inside another, and no copy of the whole view).
        let statuses: Vec<_> = {
            let pools = targets.lock().unwrap_or_else(|e| e.into_inner());
            pools.values().flat_map(|p| p.active.iter().map(|t| t.status.clone())).collect()
        };
        let mut out = Vec::new();
        for status in statuses {
            let families = status.lock().unwrap_or_else(|e| e.into_inner()).metadata.clone();
            out.extend(families.iter().cloned());
        }
        out
    })
}

fn start_endpoints(
    cfg: &Config,
    storage: Option<&std::path::Path>,
    targets: &TargetsView,
) -> anyhow::Result<Vec<Endpoint>> {
    let external = external_labels(cfg);
    let mut out = Vec::new();
    for rw in &cfg.remote_write {
        // Prometheus 3 (`DefaultRemoteWriteHTTPClientConfig`) sends remote write over HTTP/1.1
        // unless `enable_http2: true`; scrapes and discovery default to HTTP/2 over TLS.
        let mut http = rw.http.clone();
        http.enable_http2.get_or_insert(false);
        let client = crate::http_client::from_config(&http)
            .with_context(|| format!("remote_write {}: building the HTTP client", rw.url))?;
        let mut endpoint = Endpoint::start_with_storage(rw.clone(), external.clone(), client, storage)
            .with_context(|| format!("remote_write {}", rw.url))?;
        endpoint.send_metadata_of(metadata_source(targets));
        out.push(endpoint);
    }
    Ok(out)
}

/// Hands every batch to every current endpoint (each gets each sample), and prints it or logs
/// its size as the config's [`DebugOutput`] asks.
async fn fan_out(
    mut rx: mpsc::Receiver<Batch>,
    mut sinks: watch::Receiver<Arc<Sinks>>,
    metrics: Arc<Metrics>,
) {
    let mut text = Vec::with_capacity(64 * 1024);
    let mut printing = true;
    while let Some(batch) = rx.recv().await {
        let current = loop {
            let current = sinks.borrow_and_update().clone();
            if !current.paused {
                break current;
            }
            if sinks.changed().await.is_err() {
                return;
            }
        };
        match current.output {
            DebugOutput::None => {}
            DebugOutput::Summary => {
                tracing::info!(samples = batch.len(), "Scraped batch (debug exporter, basic verbosity).")
            }
            DebugOutput::Samples if printing => {
                text.clear();
                write_exposition(&batch, &mut text);
                let mut stdout = std::io::stdout().lock();
                if stdout.write_all(&text).and_then(|_| stdout.flush()).is_err() {
                    // stdout closed (e.g. piped into `head`): keep running, stop printing.
                    printing = false;
                } else {
                    metrics.samples_printed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
            DebugOutput::Samples => {}
        }
        let n = current.endpoints.len();
        if n == 0 {
            batch.recycle();
            continue;
        }
        let mut batch = Some(batch);
        for (i, e) in current.endpoints.iter().enumerate() {
            let b =
                if i + 1 == n { batch.take().unwrap_or_default() } else { batch.clone().unwrap_or_default() };
            if e.send(b).await.is_err() {
                tracing::error!(endpoint = e.name(), "Remote-write queue closed; batch lost.");
            }
        }
    }
}

/// Writes samples as exposition text lines `name{labels} value timestamp_ms` (the labels as
/// they would be sent, external labels included; a native histogram's value as
/// `{count:…, sum:…, schema:…, buckets:…}`); staleness markers are written as `NaN` with a
/// `# stale` comment, so the debug output shows them.
pub fn write_exposition(batch: &Batch, out: &mut Vec<u8>) {
    let mut histograms = batch.histograms.iter().peekable();
    for (i, s) in batch.iter().enumerate() {
        while histograms.next_if(|(at, _)| (*at as usize) < i).is_some() {}
        let histogram = histograms.next_if(|(at, _)| *at as usize == i).map(|(_, h)| h);
        let fields = || batch::fields(s.record).map_while(Result::ok);
        let name = fields().find(|(n, _)| *n == labels::METRIC_NAME.as_bytes()).map(|(_, v)| v);
        out.extend_from_slice(name.unwrap_or_default());
        let mut first = true;
        for (n, v) in fields().filter(|(n, _)| *n != labels::METRIC_NAME.as_bytes()) {
            out.push(if first { b'{' } else { b',' });
            first = false;
            out.extend_from_slice(n);
            out.extend_from_slice(b"=\"");
            out.extend_from_slice(labels::escape_value(&String::from_utf8_lossy(v)).as_bytes());
            out.push(b'"');
        }
        if !first {
            out.push(b'}');
        }
        out.push(b' ');
        match histogram.map(|h| <crate::prompb::Histogram as prost::Message>::decode(&h[..])) {
            // A native histogram, shown as Prometheus' UI shows one.
            Some(Ok(h)) => {
                let count = h.count_float.unwrap_or(h.count_int.unwrap_or(0) as f64);
                let buckets = h.positive_deltas.len().max(h.positive_counts.len())
                    + h.negative_deltas.len().max(h.negative_counts.len());
                out.extend_from_slice(b"{count:");
                format_value(count, out);
                out.extend_from_slice(b", sum:");
                format_value(h.sum, out);
                out.extend_from_slice(format!(", schema:{}, buckets:{buckets}}}", h.schema).as_bytes());
            }
            _ => format_value(s.value, out),
        }
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(s.timestamp_ms).as_bytes());
        if is_stale_nan(s.value) {
            out.extend_from_slice(b" # stale");
        }
        out.push(b'\n');
    }
}

/// Formats a value as Prometheus' text format does: `NaN`, `+Inf`, `-Inf`, integers without a
/// fraction, otherwise the shortest round-tripping decimal.
pub fn format_value(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{STALE_NAN, Sample};

    #[test]
    fn exposition_lines() {
        let s = |l: &[(&str, &str)], v: f64| Sample {
            series: Arc::new(Labels::from_pairs(l.iter().copied())),
            timestamp_ms: 1000,
            value: v,
        };
        let mut out = Vec::new();
        write_exposition(
            &Batch::from(vec![
                s(&[("__name__", "up"), ("job", "a\"b")], 1.0),
                s(&[("__name__", "x")], 0.25),
                s(&[("__name__", "x")], STALE_NAN),
                s(&[("__name__", "y")], f64::NEG_INFINITY),
            ]),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "up{job=\"a\\\"b\"} 1 1000\nx 0.25 1000\nx NaN 1000 # stale\ny -Inf 1000\n"
        );
    }
}
