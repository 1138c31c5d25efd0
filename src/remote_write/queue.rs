//! The bounded, sharded queue between [`super::Endpoint::send`] and the HTTP requests.
//!
//! What this is: admission (a semaphore of `capacity` sample permits: a full queue makes
//! `send` wait), routing to shards by a stable hash of the series labels, the shard tasks that
//! batch (up to `max_samples_per_send`, or `batch_send_deadline` after the first queued sample),
//! apply `write_relabel_configs` (cached per series), encode and send, and the resharding loop.
//! It also runs the disk buffer's replayer (records read back from [`super::disk`], sent in
//! order). What this is not: HTTP or retry policy ([`super::retry`]), or the wire format
//! ([`crate::encode`]).
//!
//! # Ordering
//!
//! A series always hashes to the same shard, and a shard sends one request at a time, retrying
//! it until it is accepted or refused before building the next; so each series' samples reach
//! the receiver in the order `send` got them. Resharding keeps this by stopping the old shards,
//! letting them flush everything they hold, and only then starting the new ones (as Prometheus'
//! queue manager does); `send` waits meanwhile.
//!
//! # Resharding
//!
//! Every [`SHARD_UPDATE_INTERVAL`] the loop estimates, from exponentially weighted rates, how
//! many shards keep up: `time per sample × (incoming rate + 5 % of the backlog)`, where the time
//! per sample is the send time spent per sample sent. Changes within ±30 % are ignored, the
//! result is clamped to `min_shards..=max_shards`, and nothing changes while sends are failing
//! or, for a decrease, while more than 10 s behind. These are Prometheus' rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::{RwLock, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64;

use super::config::MetadataConfig;
use super::disk::{self, DiskQueue, Pos};
use super::metadata::{self, MetadataSource};
use super::metrics::RemoteWriteMetrics;
use super::record::{self, Body, RecordMeta};
use super::request::{self, Encoders};
use super::retry::{Outcome, Receiver};
use crate::batch::{Batch, Keep, Slice};
use crate::labels::Labels;
use crate::relabel::RelabelConfig;

/// How often the shard count is reconsidered (Prometheus: 10 s).
const SHARD_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// Weight of the newest interval in the rate averages (Prometheus: 0.2).
const EWMA_WEIGHT: f64 = 0.2;
/// Shard count changes smaller than this fraction are ignored (Prometheus: 0.3).
const SHARD_TOLERANCE_FRACTION: f64 = 0.3;
/// Fraction of the backlog to catch up on per second when behind (Prometheus: 0.05).
const BACKLOG_CATCHUP_FRACTION: f64 = 0.05;
/// No downsharding while the newest sent sample is this far behind the newest received one.
const MAX_DOWNSHARD_DELAY_SECS: f64 = 10.0;
/// How long a generation of the write-relabel cache lasts: a series not sent for one to two of
/// these is forgotten (and relabeled again if it comes back). Far above any scrape interval, so
/// live series stay cached; short enough that a churning node does not pile up dead ones.
const RELABEL_CACHE_GENERATION: Duration = Duration::from_secs(10 * 60);

/// What a queue needs; built by [`super::Endpoint::start`] from a checked config.
pub(crate) struct Settings {
    /// Where and how to POST.
    pub receiver: Receiver,
    /// Labels merged into every series (the series' own labels win).
    pub external: Arc<Labels>,
    /// `write_relabel_configs`; they see the external labels, as in Prometheus.
    pub relabel: Vec<RelabelConfig>,
    /// Samples queued or in flight, at most.
    pub capacity: usize,
    /// Fewest shards (and the starting count).
    pub min_shards: usize,
    /// Most shards.
    pub max_shards: usize,
    /// Most samples per request.
    pub max_samples_per_send: usize,
    /// Longest wait for a request to fill.
    pub batch_send_deadline: Duration,
    /// Samples older than this when their request is built are dropped (zero: off).
    pub sample_age_limit: Duration,
    /// The on-disk outage buffer (`--storage.path`), if any.
    pub disk: Option<Arc<DiskQueue>>,
}

/// Counters the resharding loop reads (deltas are taken with `swap(0)`).
#[derive(Debug, Default)]
struct Stats {
    /// Samples admitted by `send`.
    samples_in: AtomicU64,
    /// Samples whose request ended (sent or refused).
    samples_out: AtomicU64,
    /// Samples dropped before sending (relabeling, age limit).
    samples_dropped: AtomicU64,
    /// Time spent in requests, summed over shards, in ns.
    send_nanos: AtomicU64,
    /// Newest timestamp admitted, in ms.
    highest_in_ms: AtomicI64,
    /// When the last request ended, in ms since the queue started (0: never).
    last_send_ms: AtomicU64,
}

/// State shared by `send`, the shards and the resharding loop.
struct Shared {
    settings: Settings,
    /// One permit per sample queued or in flight.
    permits: Semaphore,
    /// Hard stop: shards abandon what they hold (the shutdown deadline passed).
    hard: CancellationToken,
    stats: Stats,
    started: Instant,
}

impl Shared {
    /// Samples that left the queue (sent, refused or dropped): make room for new ones.
    fn resolve(&self, n: usize) {
        if n > 0 {
            self.settings.receiver.metrics.queue_length.fetch_sub(n as i64, Relaxed);
            self.permits.add_permits(n);
        }
    }

    fn metrics(&self) -> &RemoteWriteMetrics {
        &self.settings.receiver.metrics
    }
}

/// The running shards. Empty once stopped for good.
#[derive(Default)]
struct ShardSet {
    senders: Vec<mpsc::UnboundedSender<Batch>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ShardSet {
    fn spawn(shared: &Arc<Shared>, n: usize) -> ShardSet {
        let mut set = ShardSet::default();
        for id in 0..n {
            // Unbounded is safe here: admission is bounded by the permits, not by the channel.
            let (tx, rx) = mpsc::unbounded_channel();
            set.senders.push(tx);
            set.tasks.push(tokio::spawn(run_shard(shared.clone(), id, rx)));
        }
        shared.metrics().shards.store(n as u64, Relaxed);
        set
    }

    /// Routes samples to their shards; on failure returns how many were not handed over.
    fn route(&self, batch: Batch) -> Result<(), usize> {
        let n = self.senders.len();
        if n == 1 {
            let len = batch.len();
            return self.senders[0].send(batch).map_err(|_| len);
        }
        let parts = batch.split_by(n, |s| shard_of(s.record, n));
        let mut lost = 0;
        for (tx, part) in self.senders.iter().zip(parts) {
            if !part.is_empty() {
                let len = part.len();
                if tx.send(part).is_err() {
                    lost += len;
                }
            }
        }
        if lost == 0 { Ok(()) } else { Err(lost) }
    }
}

/// The shard of a series: xxh3 of its record (its sorted labels, encoded), stable across
/// restarts and versions.
fn shard_of(record: &[u8], shards: usize) -> usize {
    (xxh3_64(record) % shards as u64) as usize
}

/// An endpoint's queue: admission, shards and the resharding loop.
pub(crate) struct Queue {
    shared: Arc<Shared>,
    router: Arc<RwLock<ShardSet>>,
    resharder: Option<JoinHandle<()>>,
    resharder_stop: CancellationToken,
    /// Sends the disk buffer's records; stopped after the shards at shutdown.
    replayer: Option<JoinHandle<()>>,
    replay_stop: CancellationToken,
    /// Sends 1.0 metadata ([`super::metadata`]); stopped first at shutdown.
    metadata: Option<JoinHandle<()>>,
    metadata_stop: CancellationToken,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("receiver", &self.shared.settings.receiver)
            .field("capacity", &self.shared.settings.capacity)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Starts `min_shards` shards and the resharding loop on the current runtime.
    pub(crate) fn start(settings: Settings) -> Queue {
        let shared = Arc::new(Shared {
            permits: Semaphore::new(settings.capacity),
            settings,
            hard: CancellationToken::new(),
            stats: Stats::default(),
            started: Instant::now(),
        });
        let router = Arc::new(RwLock::new(ShardSet::spawn(&shared, shared.settings.min_shards)));
        let resharder_stop = CancellationToken::new();
        let resharder = (shared.settings.max_shards > shared.settings.min_shards)
            .then(|| tokio::spawn(reshard_loop(shared.clone(), router.clone(), resharder_stop.clone())));
        let replay_stop = CancellationToken::new();
        let replayer = shared.settings.disk.clone().map(|d| {
            let (shared, stop) = (shared.clone(), replay_stop.clone());
            tokio::spawn(async move { replay(d, &shared.settings.receiver, stop).await })
        });
        Queue {
            shared,
            router,
            resharder,
            resharder_stop,
            replayer,
            replay_stop,
            metadata: None,
            metadata_stop: CancellationToken::new(),
        }
    }

    /// Starts sending the metadata of `source` (remote write 1.0); a second call replaces the
    /// first's task.
    pub(crate) fn send_metadata(&mut self, cfg: MetadataConfig, source: MetadataSource) {
        let (shared, stop) = (self.shared.clone(), self.metadata_stop.clone());
        let task =
            tokio::spawn(async move { metadata::run(&shared.settings.receiver, cfg, source, stop).await });
        if let Some(old) = self.metadata.replace(task) {
            old.abort();
        }
    }

    /// Admits `batch` (waiting for room), then hands it to the shards. `Err(n)`: the queue is
    /// stopping and `n` samples were not taken.
    pub(crate) async fn send(&self, mut batch: Batch) -> Result<(), usize> {
        let Some(highest) = batch.iter().map(|s| s.timestamp_ms).max() else { return Ok(()) };
        let shared = &*self.shared;
        // A batch larger than the whole queue goes in pieces, in order.
        while !batch.is_empty() {
            let rest = if batch.len() > shared.settings.capacity {
                batch.split_off(shared.settings.capacity)
            } else {
                Batch::new()
            };
            let n = batch.len();
            // `capacity` fits in u32 (checked by the config), so this cast is exact.
            match shared.permits.acquire_many(n as u32).await {
                Ok(permit) => permit.forget(),
                Err(_closed) => return Err(n + rest.len()),
            }
            shared.metrics().queue_length.fetch_add(n as i64, Relaxed);
            shared.stats.samples_in.fetch_add(n as u64, Relaxed);
            let set = self.router.read().await;
            let routed = if set.senders.is_empty() { Err(n) } else { set.route(batch) };
            drop(set);
            if let Err(lost) = routed {
                shared.resolve(lost);
                return Err(lost + rest.len());
            }
            batch = rest;
        }
        shared.stats.highest_in_ms.fetch_max(highest, Relaxed);
        Ok(())
    }

    /// Stops admission, lets the shards flush until `deadline`, then stops them hard.
    pub(crate) async fn shutdown(mut self, deadline: Instant) {
        let shared = self.shared.clone();
        self.metadata_stop.cancel();
        if let Some(m) = self.metadata.take() {
            let _ = m.await;
        }
        shared.permits.close();
        self.resharder_stop.cancel();
        if let Some(mut resharder) = self.resharder.take() {
            // A reshard in progress flushes the old shards; it gets the same deadline.
            if tokio::time::timeout_at(deadline, &mut resharder).await.is_err() {
                shared.hard.cancel();
                let _ = resharder.await;
            }
        }
        let set = std::mem::take(&mut *self.router.write().await);
        drop(set.senders); // closed channels: each shard sends what it holds, then exits
        let mut tasks = set.tasks;
        let all = async {
            for t in &mut tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            shared.hard.cancel();
            for t in tasks {
                let _ = t.await;
            }
        }
        // The shards wrote what they could not send to disk; the rest of the replay waits for
        // the next run (an in-flight replayed request is not acknowledged, so it is sent again).
        self.replay_stop.cancel();
        if let Some(r) = self.replayer.take() {
            let _ = r.await;
        }
        if let Some(d) = &shared.settings.disk {
            d.sync();
        }
        shared.metrics().shards.store(0, Relaxed);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Dropped without shutdown: the resharder lets go of the router, whose senders then
        // close, and the shards flush in the background.
        self.resharder_stop.cancel();
        self.replay_stop.cancel();
        self.metadata_stop.cancel();
    }
}

/// The samples a shard holds: the admitted batches as they came, and how far the first one is
/// sent. A request takes the first samples as slices of these batches, so assembling it copies
/// no record (taking 2,000 of a scrape's 2,500 samples used to copy them, and appending the
/// rest to the next scrape's batch copied that one: ~11 % of trawl's CPU was `memmove` at 1M
/// series, perf/README.md). A batch is given back to the pool once all of it is sent.
#[derive(Default)]
struct Pending {
    batches: std::collections::VecDeque<Batch>,
    /// Samples of the first batch already sent.
    head: usize,
    len: usize,
}

impl Pending {
    fn push(&mut self, b: Batch) {
        if b.is_empty() {
            b.recycle();
            return;
        }
        self.len += b.len();
        self.batches.push_back(b);
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` samples, as slices.
    fn front(&self, n: usize) -> smallvec::SmallVec<[Slice<'_>; 4]> {
        let mut out = smallvec::SmallVec::new();
        let mut left = n;
        let mut start = self.head;
        for b in &self.batches {
            if left == 0 {
                break;
            }
            let take = (b.len() - start).min(left);
            out.push(b.slice(start..start + take));
            left -= take;
            start = 0;
        }
        out
    }

    /// Drops the first `n` samples (they were sent, refused or dropped).
    fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(first) = self.batches.front() else { break };
            let rest = first.len() - self.head;
            if n < rest {
                self.head += n;
                return;
            }
            n -= rest;
            self.head = 0;
            if let Some(b) = self.batches.pop_front() {
                b.recycle();
            }
        }
    }
}

/// One shard: gathers samples into requests and sends them one at a time.
async fn run_shard(shared: Arc<Shared>, id: usize, mut rx: mpsc::UnboundedReceiver<Batch>) {
    let s = &shared.settings;
    let max = s.max_samples_per_send;
    let mut encoder = Encoders::new();
    let mut relabel = RelabelCache::default();
    let mut pending = Pending::default();
    // When the oldest pending sample must be sent by: set when `pending` becomes non-empty.
    let mut deadline: Option<Instant> = None;
    let mut closed = false;
    loop {
        while !pending.is_empty()
            && (closed || pending.len() >= max || deadline.is_some_and(|d| d <= Instant::now()))
        {
            let n = pending.len().min(max);
            if !send_batch(&shared, &mut encoder, &pending.front(n)).await {
                tracing::debug!(endpoint = %s.receiver.name, shard = id, "Remote-write shard stopped.");
                return;
            }
            pending.consume(n);
            if pending.is_empty() {
                deadline = None;
            }
        }
        if closed {
            return;
        }
        tokio::select! {
            biased;
            // With a disk buffer a hard stop still takes every queued chunk: it goes to disk.
            _ = shared.hard.cancelled(), if s.disk.is_none() => return,
            msg = rx.recv() => match msg {
                Some(chunk) => {
                    accept(&shared, &mut relabel, chunk, &mut pending);
                    if deadline.is_none() && !pending.is_empty() {
                        deadline = Some(Instant::now() + s.batch_send_deadline);
                    }
                }
                None => closed = true,
            },
            _ = sleep_until_opt(deadline) => {}
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Moves admitted samples into `pending`: the external labels merged in (when the scrape loops
/// did not already, e.g. a batch from before a reload changed them), then
/// `write_relabel_configs` applied, as Prometheus does (rules see the external labels).
fn accept(shared: &Shared, cache: &mut RelabelCache, chunk: Batch, pending: &mut Pending) {
    let mut chunk = chunk.with_external(&shared.settings.external);
    let rules = &shared.settings.relabel;
    let dropped = if rules.is_empty() {
        0
    } else {
        let now = Instant::now();
        chunk.retain_map(|sample| cache.get(sample.record, rules, now))
    };
    pending.push(chunk);
    if dropped > 0 {
        shared.metrics().samples_dropped_relabel_total.fetch_add(dropped as u64, Relaxed);
        shared.stats.samples_dropped.fetch_add(dropped as u64, Relaxed);
        shared.resolve(dropped);
    }
}

/// Sends the samples of `slices` (the first pending ones) as one request, or one per tenant.
/// Returns false when the shard must stop (hard cancellation); the samples it held stay counted
/// in `queue_length`.
async fn send_batch(shared: &Shared, encoder: &mut Encoders, slices: &[Slice<'_>]) -> bool {
    let s = &shared.settings;
    let count: usize = slices.iter().map(|s| s.range.len()).sum();
    if !s.sample_age_limit.is_zero() {
        let oldest_ms = crate::now_ms().saturating_sub(s.sample_age_limit.as_millis() as i64);
        // Samples older than `sample_age_limit` are dropped; only then is a copy made.
        if slices.iter().any(|sl| sl.recs().iter().any(|r| r.timestamp_ms < oldest_ms)) {
            let fresh = Batch::from_slices(slices, |sample| sample.timestamp_ms >= oldest_ms);
            let too_old = count - fresh.len();
            shared.metrics().samples_dropped_too_old_total.fetch_add(too_old as u64, Relaxed);
            shared.stats.samples_dropped.fetch_add(too_old as u64, Relaxed);
            shared.resolve(too_old);
            let sent = fresh.is_empty() || send_slices(shared, encoder, &[fresh.whole()], fresh.len()).await;
            fresh.recycle();
            return sent;
        }
    }
    count == 0 || send_slices(shared, encoder, slices, count).await
}

/// [`send_batch`] after the age filter: `count` samples in `slices`.
async fn send_slices(shared: &Shared, encoder: &mut Encoders, slices: &[Slice<'_>], count: usize) -> bool {
    let s = &shared.settings;
    let started = Instant::now();
    let outcome = match &s.disk {
        None => encoder.send(&s.receiver, slices, &shared.hard).await,
        Some(disk) => {
            let mut outcome = Outcome::Sent;
            for body in encoder.bodies(&s.receiver, slices) {
                match send_or_spill(shared, disk, body).await {
                    Outcome::Cancelled => {
                        outcome = Outcome::Cancelled;
                        break;
                    }
                    Outcome::Failed => outcome = Outcome::Failed,
                    Outcome::Sent | Outcome::Unsupported => {}
                }
            }
            outcome
        }
    };
    let ended = Instant::now();
    shared.stats.send_nanos.fetch_add((ended - started).as_nanos() as u64, Relaxed);
    shared.stats.last_send_ms.store((ended - shared.started).as_millis().max(1) as u64, Relaxed);
    match outcome {
        Outcome::Sent | Outcome::Failed | Outcome::Unsupported => {
            shared.stats.samples_out.fetch_add(count as u64, Relaxed);
            shared.resolve(count);
            true
        }
        Outcome::Cancelled => false,
    }
}

/// With a disk buffer: appends the request to disk if anything is pending there (order), else
/// sends it directly, giving it `batch_send_deadline` (tries included) before writing it to
/// disk and moving on. A cancelled try may have reached the receiver: at least once. A disk
/// failure falls back to the memory-only behaviour (retry until accepted or stopped).
async fn send_or_spill(shared: &Shared, disk: &Arc<DiskQueue>, body: Body) -> Outcome {
    let s = &shared.settings;
    let meta = RecordMeta { samples: body.samples as u32, newest_ms: body.highest_ms };
    let spilled = |r: Option<Result<(), disk::DiskError>>| match r {
        Some(Ok(())) => true,
        Some(Err(e)) => {
            tracing::error!(endpoint = %s.receiver.name, error = %e, "Cannot write to the disk buffer; holding the batch in memory.");
            false
        }
        None => false, // shutting down: the memory path sends or hands it back
    };
    // The check needs no I/O; only a request that must queue behind pending ones goes to the
    // blocking pool (which checks again under the lock: the replay may have drained the disk).
    // The disk record (a copy of the body) is made only for a request that goes to disk.
    if disk.has_pending() {
        let record = record::envelope(&body);
        match disk::off_runtime(disk, move |d| d.append_if_pending(meta, &record)).await {
            Some(Ok(true)) => return Outcome::Sent,
            Some(Ok(false)) => {}
            other => {
                spilled(other.map(|r| r.map(|_| ())));
                return request::send_body(&s.receiver, body, &shared.hard).await;
            }
        }
    }
    let direct = tokio::time::timeout(
        s.batch_send_deadline,
        request::send_body(&s.receiver, body.clone(), &shared.hard),
    );
    match direct.await {
        Ok(o @ (Outcome::Sent | Outcome::Failed | Outcome::Unsupported)) => o,
        Ok(Outcome::Cancelled) | Err(_) => {
            let record = record::envelope(&body);
            if spilled(disk::off_runtime(disk, move |d| d.append(meta, &record)).await) {
                Outcome::Sent
            } else {
                request::send_body(&s.receiver, body, &shared.hard).await
            }
        }
    }
}

/// How often the replayer applies `max_age` while it has nothing to send.
const AGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The disk buffer's replayer: sends its records in order, one at a time, until `stop`. A record is acknowledged
/// (and its space reclaimed) once the receiver accepted or refused it for good.
async fn replay(disk: Arc<DiskQueue>, receiver: &Receiver, stop: CancellationToken) {
    let ack = async |pos: Pos, delivered: bool| {
        disk::off_runtime(&disk, move |d| d.ack(pos, delivered)).await;
    };
    loop {
        if stop.is_cancelled() {
            return;
        }
        let Some(next) = disk::off_runtime(&disk, DiskQueue::next).await else { return };
        match next {
            Some((pos, meta, record)) => {
                let Some(body) = record::from_envelope(record, meta.samples as usize, meta.newest_ms) else {
                    tracing::error!(endpoint = %receiver.name, samples = meta.samples, "A disk-buffer record is not a request; skipped.");
                    disk.metrics().corrupt_records_total.fetch_add(1, Relaxed);
                    ack(pos, false).await;
                    continue;
                };
                match request::send_body(receiver, body, &stop).await {
                    Outcome::Sent => ack(pos, true).await,
                    Outcome::Failed | Outcome::Unsupported => ack(pos, false).await,
                    Outcome::Cancelled => return,
                }
            }
            None => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = disk.appended() => {}
                    _ = tokio::time::sleep(AGE_CHECK_INTERVAL) => {}
                }
            }
        }
    }
}

/// Relabel outcomes per series under `write_relabel_configs`, keyed by a hash of the series'
/// record (its labels with the external ones merged in). Two generations of
/// [`RELABEL_CACHE_GENERATION`] each: a lookup moves an entry from the old map into the current
/// one, and at the end of a generation the old map (series not sent for a whole generation) is
/// dropped. So the cache holds the series sent in the last one to two generations, however the
/// node churns.
#[derive(Default)]
struct RelabelCache {
    current: HashMap<u64, Keep, foldhash::fast::RandomState>,
    old: HashMap<u64, Keep, foldhash::fast::RandomState>,
    /// When the current generation started.
    since: Option<Instant>,
}

impl RelabelCache {
    fn get(&mut self, record: &[u8], rules: &[RelabelConfig], now: Instant) -> Keep {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= RELABEL_CACHE_GENERATION {
            self.old = std::mem::take(&mut self.current);
            self.since = Some(now);
        }
        let key = xxh3_64(record);
        if let Some(k) = self.current.get(&key) {
            return k.clone();
        }
        let k = match self.old.remove(&key) {
            Some(k) => k,
            None => relabel_record(record, rules),
        };
        self.current.insert(key, k.clone());
        k
    }
}

/// The fate of one series under `rules` (its record already holds the external labels).
fn relabel_record(record: &[u8], rules: &[RelabelConfig]) -> Keep {
    let Ok(original) = crate::batch::decode_labels(record) else { return Keep::Same };
    let mut labels = original.clone();
    if !crate::relabel::process(rules, &mut labels) || labels.is_empty() {
        Keep::Drop
    } else if labels == original {
        Keep::Same
    } else {
        let mut out = Vec::new();
        crate::batch::write_labels(&labels, &mut out);
        Keep::Record(out)
    }
}

/// Exponentially weighted rate of a counter, per second.
#[derive(Debug, Default)]
struct Ewma {
    rate: f64,
    primed: bool,
}

impl Ewma {
    fn update(&mut self, delta: u64, interval: Duration) {
        let instant = delta as f64 / interval.as_secs_f64();
        if self.primed {
            self.rate += EWMA_WEIGHT * (instant - self.rate);
        } else {
            self.rate = instant;
            self.primed = true;
        }
    }
}

/// What the shard estimate is computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ShardInputs {
    /// Samples admitted per second.
    in_rate: f64,
    /// Samples whose request ended, per second.
    out_rate: f64,
    /// Samples dropped before sending, per second.
    dropped_rate: f64,
    /// Seconds spent sending per second (summed over shards).
    out_duration: f64,
    /// How far the newest sent sample is behind the newest admitted one, in seconds.
    delay_secs: f64,
}

/// Prometheus' `calculateDesiredShards`: the shard count that keeps up with the input.
fn desired_shards(i: &ShardInputs, current: usize, min: usize, max: usize) -> usize {
    if i.out_rate <= 0.0 {
        return current;
    }
    let kept_ratio = i.out_rate / (i.dropped_rate + i.out_rate);
    let backlog = i.delay_secs * i.in_rate * kept_ratio;
    let time_per_sample = i.out_duration / i.out_rate;
    let desired = (time_per_sample * (i.in_rate * kept_ratio + BACKLOG_CATCHUP_FRACTION * backlog)).ceil();
    let lower = current as f64 * (1.0 - SHARD_TOLERANCE_FRACTION);
    let upper = current as f64 * (1.0 + SHARD_TOLERANCE_FRACTION);
    if (lower..=upper).contains(&desired) {
        return current;
    }
    let n = desired.clamp(0.0, max as f64) as usize;
    if n < current && i.delay_secs > MAX_DOWNSHARD_DELAY_SECS {
        return current;
    }
    n.clamp(min, max)
}

async fn reshard_loop(shared: Arc<Shared>, router: Arc<RwLock<ShardSet>>, stop: CancellationToken) {
    let s = &shared.settings;
    let (mut in_rate, mut out_rate, mut dropped_rate, mut out_duration) =
        (Ewma::default(), Ewma::default(), Ewma::default(), Ewma::default());
    let mut ticks = tokio::time::interval_at(Instant::now() + SHARD_UPDATE_INTERVAL, SHARD_UPDATE_INTERVAL);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let st = &shared.stats;
        in_rate.update(st.samples_in.swap(0, Relaxed), SHARD_UPDATE_INTERVAL);
        out_rate.update(st.samples_out.swap(0, Relaxed), SHARD_UPDATE_INTERVAL);
        dropped_rate.update(st.samples_dropped.swap(0, Relaxed), SHARD_UPDATE_INTERVAL);
        out_duration.update(st.send_nanos.swap(0, Relaxed), SHARD_UPDATE_INTERVAL);
        let highest_sent = shared.metrics().highest_sent_timestamp_ms.load(Relaxed);
        let delay_ms =
            if highest_sent == 0 { 0 } else { st.highest_in_ms.load(Relaxed).saturating_sub(highest_sent) };
        let inputs = ShardInputs {
            in_rate: in_rate.rate,
            out_rate: out_rate.rate,
            dropped_rate: dropped_rate.rate,
            out_duration: out_duration.rate / 1e9,
            delay_secs: delay_ms.max(0) as f64 / 1000.0,
        };
        let current = router.read().await.senders.len();
        let desired = desired_shards(&inputs, current, s.min_shards, s.max_shards);
        tracing::debug!(endpoint = %s.receiver.name, ?inputs, current, desired, "Remote-write shard estimate.");
        if desired == current || current == 0 {
            continue;
        }
        // Don't reshard while the endpoint is failing: more shards would only retry more.
        let last = st.last_send_ms.load(Relaxed);
        let now = (Instant::now() - shared.started).as_millis() as u64;
        if last == 0 || now.saturating_sub(last) > 2 * s.batch_send_deadline.as_millis() as u64 {
            tracing::warn!(endpoint = %s.receiver.name, current, desired, "Skipping remote-write resharding: no request has completed recently.");
            continue;
        }
        if stop.is_cancelled() {
            return; // shutting down: the shards are about to be flushed anyway
        }
        tracing::info!(endpoint = %s.receiver.name, from = current, to = desired, "Remote-write resharding.");
        reshard(&shared, &router, desired).await;
    }
}

/// Replaces the shards with `n` new ones once the old ones have flushed everything they hold.
async fn reshard(shared: &Arc<Shared>, router: &RwLock<ShardSet>, n: usize) {
    let mut set = router.write().await;
    let old = std::mem::take(&mut *set);
    drop(old.senders);
    for t in old.tasks {
        let _ = t.await;
    }
    if shared.hard.is_cancelled() {
        return; // stopping: leave no shards, so `send` refuses
    }
    *set = ShardSet::spawn(shared, n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Sample;
    use bytes::Bytes;

    fn record(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::batch::write_labels(&Labels::from_pairs(pairs.iter().copied()), &mut out);
        out
    }

    #[test]
    fn shard_hash_is_stable_and_spreads() {
        let a = record(&[("__name__", "up"), ("job", "a")]);
        assert_eq!(shard_of(&a, 7), shard_of(&a.clone(), 7));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            seen.insert(shard_of(&record(&[("i", &i.to_string())]), 4));
        }
        assert_eq!(seen.len(), 4, "200 series use all 4 shards");
        // Label boundaries matter: {a="bc"} and {ab="c"} are different series.
        let x = record(&[("a", "bc")]);
        let y = record(&[("ab", "c")]);
        assert_ne!(
            (0..16).map(|n| shard_of(&x, n + 1)).collect::<Vec<_>>(),
            (0..16).map(|n| shard_of(&y, n + 1)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn desired_shards_follows_prometheus() {
        let base =
            ShardInputs { in_rate: 10_000.0, out_rate: 10_000.0, out_duration: 4.0, ..Default::default() };
        // 4 s of sending per second at 10k samples/s: 0.4 ms per sample → 4 shards.
        assert_eq!(desired_shards(&base, 1, 1, 50), 4);
        assert_eq!(desired_shards(&base, 4, 1, 50), 4);
        assert_eq!(desired_shards(&base, 5, 1, 50), 5, "within 30 %: no change");
        assert_eq!(desired_shards(&base, 1, 1, 3), 3, "clamped to max_shards");
        assert_eq!(desired_shards(&base, 20, 1, 50), 4, "downshard when idle capacity");
        let behind = ShardInputs { delay_secs: 60.0, ..base };
        assert_eq!(desired_shards(&behind, 20, 1, 50), 20, "no downsharding while far behind");
        // A backlog adds 5 %/s of it: 60 s × 10k/s × 5 % = 30k/s more → 16 shards.
        assert_eq!(desired_shards(&behind, 1, 1, 50), 16);
        let idle = ShardInputs { out_rate: 0.0, ..base };
        assert_eq!(desired_shards(&idle, 3, 1, 50), 3, "nothing sent: no estimate");
        let quiet = ShardInputs { in_rate: 1.0, out_rate: 1.0, out_duration: 0.01, ..Default::default() };
        assert_eq!(desired_shards(&quiet, 5, 2, 50), 2, "clamped to min_shards");
    }

    #[test]
    fn ewma_primes_then_smooths() {
        let mut e = Ewma::default();
        e.update(100, Duration::from_secs(10));
        assert_eq!(e.rate, 10.0);
        e.update(200, Duration::from_secs(10));
        assert!((e.rate - 12.0).abs() < 1e-9);
    }

    /// A loopback receiver that records `(i label, timestamp)` of every accepted sample.
    async fn receiver() -> (String, Arc<std::sync::Mutex<Vec<(String, i64)>>>) {
        use http_body_util::{BodyExt as _, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/write", listener.local_addr().unwrap());
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let record = record.clone();
                let service =
                    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let wr = crate::prompb::decode_snappy(&body, 1 << 24).expect("valid body");
                            // Uneven answer times, so shards race each other.
                            tokio::time::sleep(Duration::from_millis(body.len() as u64 % 5)).await;
                            let mut r = record.lock().unwrap();
                            for ts in wr.timeseries {
                                let i = ts.labels.iter().find(|l| l.name == "i").map(|l| l.value.clone());
                                for s in ts.samples {
                                    r.push((i.clone().unwrap_or_default(), s.timestamp));
                                }
                            }
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        (url, got)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resharding_keeps_every_series_in_order() {
        let (url, got) = receiver().await;
        let metrics = Arc::new(RemoteWriteMetrics::default());
        let receiver = Receiver {
            name: "test".into(),
            uri: url.parse().unwrap(),
            headers: Vec::new(),
            http: Default::default(),
            client: crate::http_client::build(None).unwrap(),
            remote_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            retry_on_http_429: true,
            tenant: None,
            metrics: metrics.clone(),
        };
        let queue = Queue::start(Settings {
            receiver,
            external: Arc::new(Labels::new()),
            relabel: Vec::new(),
            capacity: 200,
            min_shards: 1,
            max_shards: 8,
            max_samples_per_send: 9,
            batch_send_deadline: Duration::from_millis(5),
            sample_age_limit: Duration::ZERO,
            disk: None,
        });
        let series: Vec<_> = (0..30).map(|i| Arc::new(Labels::from_pairs([("i", i.to_string())]))).collect();
        let batch = |t: i64| {
            series.iter().map(|s| Sample { series: s.clone(), timestamp_ms: t, value: 0.0 }).collect()
        };
        for t in 1..=40 {
            queue.send(batch(t)).await.unwrap();
            match t {
                10 => reshard(&queue.shared, &queue.router, 4).await,
                20 => reshard(&queue.shared, &queue.router, 7).await,
                30 => reshard(&queue.shared, &queue.router, 2).await,
                _ => {}
            }
        }
        assert_eq!(metrics.shards.load(Relaxed), 2);
        queue.shutdown(Instant::now() + Duration::from_secs(10)).await;

        let mut per_series: HashMap<String, Vec<i64>> = HashMap::new();
        for (i, t) in got.lock().unwrap().iter() {
            per_series.entry(i.clone()).or_default().push(*t);
        }
        assert_eq!(per_series.len(), 30);
        for (i, ts) in per_series {
            assert_eq!(ts, (1..=40).collect::<Vec<i64>>(), "series {i}: complete and in order");
        }
        assert_eq!(metrics.queue_length.load(Relaxed), 0);
        assert_eq!(metrics.samples_sent_total.load(Relaxed), 30 * 40);
    }

    #[test]
    fn relabel_cache_holds_and_sweeps() {
        let rules: Vec<RelabelConfig> = serde_saphyr::from_str(
            "- {source_labels: [i], regex: '1.*', action: drop}\n- {target_label: seen, replacement: 'y'}\n",
        )
        .unwrap();
        let mut cache = RelabelCache::default();
        let t0 = Instant::now();
        for round in 0..2 {
            for i in 0..3000 {
                let r = record(&[("i", &i.to_string())]);
                let got = cache.get(&r, &rules, t0);
                let want = if i.to_string().starts_with('1') {
                    Keep::Drop
                } else {
                    Keep::Record(record(&[("i", &i.to_string()), ("seen", "y")]))
                };
                assert_eq!(got, want, "round {round}, series {i}");
            }
        }
        // Churn: every 5 minutes 2,000 all-new series, for an hour. The cache holds what was
        // sent in the last one or two generations, not every series ever seen.
        for round in 0..12u64 {
            let now = t0 + Duration::from_secs(300 * (round + 1));
            for i in 0..2_000 {
                cache.get(&record(&[("round", &round.to_string()), ("i", &i.to_string())]), &rules, now);
            }
        }
        let entries = cache.current.len() + cache.old.len();
        assert!(
            entries <= 2 * RELABEL_CACHE_GENERATION.as_secs() as usize / 300 * 2_000,
            "bounded: {entries}"
        );
        assert!(entries < 12 * 2_000 / 2, "dead series were dropped: {entries}");
        let none: Vec<RelabelConfig> =
            serde_saphyr::from_str("- {source_labels: [x], regex: 'nomatch', action: drop}\n").unwrap();
        assert_eq!(RelabelCache::default().get(&record(&[("i", "1")]), &none, t0), Keep::Same, "unchanged");
    }
}
