//! The scrape loop of one target: its schedule, the request, the hand-off.
//!
//! What this is: the async shell around a [`Page`] processor. Every interval, at the target's
//! fixed phase, it reserves a place in the hand-off (so a full pipeline holds back scrapes, not
//! filled batches), fetches the page, lets the processor turn it into a batch, adds the report
//! series and sends the batch on. It also keeps the target's last series set on disk with
//! `--storage.path`, takes reload updates in place, and writes end-of-run stale markers when the
//! target goes away. What this is not: per-sample work ([`super::page`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::page::{Counts, Page};
use super::{Health, JobSettings, LoopUpdate, Output, ScrapeError, TargetStatus};
use crate::batch::Batch;
use crate::budget::{MemoryBudget, Reservation};
use crate::fetch::{self, FetchError};
use crate::http_client::Client;
use crate::labels::Labels;
use crate::parse;
use crate::relabel::ScrapeTarget;
use crate::telemetry::JobMetrics;

/// The per-target state of a scrape loop.
pub struct TargetLoop {
    settings: Arc<JobSettings>,
    target: ScrapeTarget,
    client: Client,
    out: Output,
    status: Arc<Mutex<TargetStatus>>,
    metrics: Arc<JobMetrics>,
    page: Page,
    /// New settings from a reload, if the loop is managed by [`super::run_job`].
    updates: Option<watch::Receiver<LoopUpdate>>,
    /// The memory budget: under pressure, scrapes are skipped.
    budget: Option<Arc<MemoryBudget>>,
    /// With `--storage.path`: where this target's last series set is kept (see
    /// [`crate::staleness`]), and whether it must be saved after the next scrape.
    persist: Option<(std::path::PathBuf, bool)>,
    /// The memory the last scrape needed (body and batch), reserved up front by the next.
    last_need: u64,
}

/// The least a scrape reserves up front (64 KiB): a small target's page and batch.
const MIN_RESERVATION_BYTES: u64 = 64 << 10;
/// Pages above this (4 MiB, a few milliseconds of parsing) are processed in
/// `block_in_place`, see [`TargetLoop::fetch_and_process`].
const BLOCK_IN_PLACE_BYTES: usize = 4 << 20;

/// The memory a batch holds: its records and a 32-byte header per sample.
fn batch_bytes(b: &Batch) -> u64 {
    (b.record_bytes() + b.len() * std::mem::size_of::<crate::batch::Rec>()) as u64
}

impl TargetLoop {
    /// A loop for `target`, not yet running; its records carry `external` labels.
    pub fn new(
        settings: Arc<JobSettings>,
        target: ScrapeTarget,
        external: Arc<Labels>,
        client: Client,
        out: Output,
        status: Arc<Mutex<TargetStatus>>,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        let page = Page::new(settings.clone(), target.labels.clone(), external);
        TargetLoop {
            settings,
            target,
            client,
            out,
            status,
            metrics,
            page,
            updates: None,
            budget: None,
            persist: None,
            last_need: MIN_RESERVATION_BYTES,
        }
    }

    /// Keeps the last series set in `path`, and stale-marks at the first scrape what a previous
    /// run's last scrape had and this page does not.
    pub async fn remember_series(mut self, path: std::path::PathBuf) -> Self {
        if let Some(last) = crate::staleness::load_async(&path, self.page.external()).await {
            self.page.remember(last);
        }
        // The first scrape always saves.
        self.persist = Some((path, true));
        self
    }

    /// After a scrape: saves the set when it changed (or on the first scrape).
    async fn persist_series(&mut self, changed: bool) {
        let Some((path, first)) = &mut self.persist else { return };
        if *first || changed {
            *first = false;
            if let Err(e) = crate::staleness::save_async(path, self.page.last()).await {
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

    /// Applies new settings (see [`Page::reconfigure`]).
    fn reconfigure(&mut self, u: LoopUpdate) {
        self.page.reconfigure(u.settings.clone(), &u.target.labels, &u.external);
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
            // A place in the hand-off first: when the senders are behind, the scrape waits here
            // holding nothing, instead of holding a filled batch.
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                p = self.out.clone().reserve_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let t = SystemTime::now();
            last_scrape = Some(t);
            let batch = self.scrape_once(t).await;
            permit.send(batch);
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
        let mut batch = Batch::new();
        let n = self.page.end_of_run(stale_at, &mut batch);
        self.metrics.stale_markers.fetch_add(n as u64, Relaxed);
        if let Some((path, _)) = &self.persist {
            crate::staleness::remove_async(path).await; // every series is stale-marked now
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
    ///
    /// `scrape_timeout` covers all of it: connect, headers, body, decoding and parsing. With
    /// `--memory.limit`, the scrape first reserves what its last one needed, then grows the
    /// reservation as the body and the batch grow; a refusal fails it (see [`crate::budget`]).
    pub async fn scrape_once(&mut self, start: SystemTime) -> Batch {
        let started = tokio::time::Instant::now();
        let deadline = started + self.target.timeout.get();
        let ts = now_ms(start);
        let mut batch = self.page.new_batch();
        let result = self.fetch_and_process(ts, deadline, &mut batch).await;
        let duration = started.elapsed().as_secs_f64();
        let (counts, err) = match result {
            Ok(c) => (c, None),
            Err((e, c)) => {
                // Discard the page; stale-mark everything the previous scrape sent.
                let marked = self.page.fail(ts, &mut batch) as u64;
                (Counts { series_changed: marked > 0, stale_markers: marked, ..c }, Some(e))
            }
        };
        self.persist_series(counts.series_changed).await;
        let up = if err.is_none() { 1.0 } else { 0.0 };
        self.page.push_report(
            &mut batch,
            ts,
            [up, duration, counts.scraped as f64, counts.post_relabel as f64, counts.added as f64],
        );
        let m = &self.metrics;
        let refused =
            matches!(err, Some(ScrapeError::Memory(_)) | Some(ScrapeError::Fetch(FetchError::Memory(_))));
        if refused {
            // Refused by the memory budget: counted as skipped, not as a scrape that failed.
            m.scrapes_skipped_memory.fetch_add(1, Relaxed);
        } else {
            m.scrapes.fetch_add(1, Relaxed);
            if err.is_some() {
                m.scrape_failures.fetch_add(1, Relaxed);
            }
        }
        m.samples_scraped.fetch_add(counts.scraped, Relaxed);
        m.samples_kept.fetch_add(counts.post_relabel, Relaxed);
        m.stale_markers.fetch_add(counts.stale_markers, Relaxed);
        m.created_lines_unmatched.fetch_add(counts.created_unmatched, Relaxed);
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.health = if err.is_none() { Health::Up } else { Health::Down };
        st.last_error = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        st.last_scrape = Some(start);
        st.last_scrape_duration = duration;
        if let Some(families) = self.page.take_families() {
            st.metadata = Arc::new(families);
        }
        if let Some(e) = &err {
            tracing::debug!(job = %self.settings.job, target = %self.target.url, error = %e, "Scrape failed.");
        }
        batch
    }

    /// The request and the page's processing, under `deadline` and the memory budget.
    async fn fetch_and_process(
        &mut self,
        ts: i64,
        deadline: tokio::time::Instant,
        batch: &mut Batch,
    ) -> Result<Counts, (ScrapeError, Counts)> {
        let fail = |e: ScrapeError| (e, Counts::default());
        let req = self.request().map_err(|e| fail(ScrapeError::Fetch(e)))?;
        let mut reservation = match &self.budget {
            Some(b) => Some(Reservation::new(b, self.last_need).map_err(|e| fail(ScrapeError::Memory(e)))?),
            None => None,
        };
        let mut bufs = fetch::Buffers::take();
        let resp = match fetch::fetch(&self.client, &req, &mut bufs, deadline, reservation.as_mut()).await {
            Ok(resp) => resp,
            Err(e) => {
                bufs.give_back();
                return Err(fail(ScrapeError::Fetch(e)));
            }
        };
        self.metrics.bytes_scraped.fetch_add(resp.wire_bytes, Relaxed);
        let format = match parse::format_from_content_type(
            resp.content_type.as_deref(),
            self.settings.fallback_scrape_protocol,
        ) {
            Ok((format, fallback)) => {
                if let Some(note) = fallback {
                    // Prometheus logs this at debug level too, and scrapes on.
                    tracing::debug!(job = %self.settings.job, target = %self.target.url, "{note}");
                }
                format
            }
            Err(e) => {
                bufs.give_back();
                return Err(fail(ScrapeError::ContentType(e)));
            }
        };
        let body_bytes = bufs.body().len() as u64;
        let limit = req.body_limit;
        let page = &mut self.page;
        let mut process = || {
            page.process_page_within(bufs.body(), format, ts, batch, |b| {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ScrapeError::Timeout);
                }
                if let Some(r) = reservation.as_mut() {
                    r.grow_to(body_bytes + batch_bytes(b), u64::MAX)?;
                }
                Ok(())
            })
        };
        // A big page is parsed with the runtime told this worker is busy, so other scrapes and
        // the senders move to another worker meanwhile; small ones are not worth the hand-over.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if bufs.body().len() > BLOCK_IN_PLACE_BYTES && multi_thread {
            tokio::task::block_in_place(process)
        } else {
            process()
        };
        // What this scrape needed: the next one reserves it up front.
        self.last_need =
            (body_bytes + batch_bytes(batch)).clamp(MIN_RESERVATION_BYTES, limit.saturating_mul(4));
        bufs.give_back();
        result
    }

    fn request(&self) -> Result<fetch::Request, FetchError> {
        let uri: hyper::Uri =
            self.target.url.parse().map_err(|_| FetchError::Url(self.target.url.clone()))?;
        let auth = crate::http_client::auth_header(&self.settings.http)
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let body_limit = match self.settings.body_size_limit {
            0 => fetch::DEFAULT_BODY_LIMIT_BYTES,
            n => n,
        };
        Ok(fetch::Request {
            uri,
            accept: hyper::header::HeaderValue::from_str(&self.settings.accept)
                .map_err(|e| FetchError::Http(format!("Accept header: {e}")))?,
            gzip: self.settings.gzip,
            timeout: self.target.timeout.get(),
            body_limit,
            auth,
        })
    }

    /// The page processor (for tests).
    #[doc(hidden)]
    pub fn page_mut(&mut self) -> &mut Page {
        &mut self.page
    }
}

/// Milliseconds since the epoch of `t`.
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
