//! The durable per-endpoint outage buffer under `--storage.path`: a write-ahead log of encoded
//! remote-write requests, replayed in order once the receiver is back.
//!
//! What this is: append-only segment files of records, each record one request body exactly as
//! it would have been POSTed (already snappy-compressed protobuf, so replay is a read and a POST,
//! no re-encoding), a persisted read cursor, and the caps (`disk_buffer.max_bytes`,
//! `disk_buffer.max_age`) that drop the *oldest* data. Like vmagent's persistent queue, and
//! unlike Prometheus (whose WAL holds scraped samples, not requests, and whose agent forgets its
//! backlog on restart).
//! What this is not: the replay loop or the decision when a batch goes to disk (both
//! [`super::queue`]), the record's bytes ([`super::record`]), or anything HTTP: this is pure
//! storage, tested without a receiver.
//!
//! # Layout
//!
//! `<storage.path>/remote_write/<16 hex digits of xxh3(url, name)>/` holds `endpoint` (the URL and
//! name, for humans only), `cursor` and `<20-digit id>.seg` segments. A segment is a sequence of
//! records in [`super::record`]'s format (magic, length, CRC, metadata, envelope).
//!
//! The magic lets the reader resynchronise after damage: a record that fails any check (magic,
//! length cap, CRC, short read) is skipped by searching for the next magic whose record checks
//! out, with an ERROR log and `trawl_remote_write_disk_corrupt_records_total`; nothing in a
//! segment can make the reader panic or loop (every step moves forward at least one byte).
//! `cursor` is `segment: u64 LE | offset: u64 LE | crc32: u32 LE`, replaced atomically (write
//! then rename) after every delivered record; a missing or damaged cursor restarts the replay at
//! the oldest segment (duplicates, never losses).
//!
//! # Durability
//!
//! Each record is handed to the kernel with one `write` before the samples leave the memory
//! queue, so a SIGKILL loses nothing that was written. Segments are `fsync`ed at rotation, at
//! shutdown and at most [`FSYNC_INTERVAL`] after a write, so a power loss (or kernel crash) can
//! lose up to about one second of spilled records, and the cursor (not fsynced) can fall back,
//! which re-sends delivered records. Delivery is therefore at least once: a request cancelled
//! after the receiver stored it, or acknowledged just before a crash, is sent again (Prometheus
//! ignores an identical sample it already has).
//!
//! # Order
//!
//! One replayer per endpoint sends records strictly in file order, one at a time, and the memory
//! queue appends everything to disk while anything is pending there, so a series' samples reach
//! the receiver in scrape order across outages and restarts.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::config::DiskBufferConfig;
use super::metrics::DiskMetrics;
use super::record::{Read, RecordMeta, encode_record, read_record, resync};
use crate::now_ms;

/// Largest segment before rotation, in bytes (16 MiB), when `max_bytes` does not ask for less.
const SEGMENT_MAX_BYTES: u64 = 16 << 20;
/// Smallest segment before rotation, in bytes (4 KiB), however small `max_bytes` is.
const SEGMENT_MIN_BYTES: u64 = 4 << 10;
/// Segments per `max_bytes`: dropping the oldest segment then frees about 1/8 of the cap, and
/// the bytes on disk stay within `max_bytes` plus one segment.
const SEGMENTS_PER_CAP: u64 = 8;
/// Longest a written record waits for `fsync` (see the module docs on durability).
pub const FSYNC_INTERVAL: StdDuration = StdDuration::from_secs(1);
/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".seg";
/// Name of the cursor file.
const CURSOR_FILE: &str = "cursor";

/// A disk buffer failure. Not retryable as such: the buffer is unusable for this record (disk
/// full, read-only, gone), and the queue falls back to holding the batch in memory.
#[derive(Debug, thiserror::Error)]
#[error("disk buffer {path}: {source}")]
pub struct DiskError {
    /// The file or directory involved.
    path: PathBuf,
    /// What the OS said.
    source: std::io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError { path: path.to_owned(), source }
}

// === The buffer ===

/// Where a record starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    /// Segment id.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// One segment file and what in it is still undelivered.
#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    /// Undelivered records (the one being sent included).
    records: u64,
    /// Samples in them.
    samples: u64,
    /// Newest sample timestamp in the segment, in ms (`i64::MIN`: none).
    newest_ms: i64,
}

/// The record handed to the replayer and not yet acknowledged.
#[derive(Clone, Copy, Debug)]
struct Inflight {
    pos: Pos,
    next: u64,
    samples: u64,
}

struct State {
    dir: PathBuf,
    /// Oldest first; the last one is being written.
    segments: VecDeque<Segment>,
    writer: File,
    /// Next record to hand to the replayer.
    read: Pos,
    reader: Option<(u64, File)>,
    inflight: Option<Inflight>,
    last_sync: Instant,
    unsynced: bool,
    segment_target: u64,
    scratch: Vec<u8>,
}

/// One endpoint's on-disk buffer. All file access happens under one mutex, briefly (one record
/// write or read, in the caller's task: records are small, see the module docs).
pub(crate) struct DiskQueue {
    name: String,
    cfg: DiskBufferConfig,
    state: Mutex<State>,
    /// Wakes the replayer after an append.
    notify: Notify,
    metrics: Arc<DiskMetrics>,
}

impl std::fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueue").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The directory of an endpoint's buffer under the storage root: stable across restarts and
/// config reorderings, different for different URLs or names.
pub(crate) fn endpoint_dir(root: &Path, url: &str, name: Option<&str>) -> PathBuf {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(url.as_bytes());
    h.update(&[0xff]);
    h.update(name.unwrap_or("").as_bytes());
    root.join("remote_write").join(format!("{:016x}", h.digest()))
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

fn read_cursor(dir: &Path) -> Option<Pos> {
    let path = dir.join(CURSOR_FILE);
    let mut buf = Vec::new();
    match File::open(&path).and_then(|mut f| f.read_to_end(&mut buf)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "Cannot read the disk buffer cursor; replaying from the oldest segment.");
            return None;
        }
    }
    let ok = buf.len() == 20 && crc32fast::hash(&buf[..16]).to_le_bytes() == buf[16..20];
    if !ok {
        tracing::error!(path = %path.display(), "The disk buffer cursor is damaged; replaying from the oldest segment (delivered records may be sent again).");
        return None;
    }
    let mut s = [0u8; 8];
    let mut o = [0u8; 8];
    s.copy_from_slice(&buf[..8]);
    o.copy_from_slice(&buf[8..16]);
    Some(Pos { segment: u64::from_le_bytes(s), offset: u64::from_le_bytes(o) })
}

fn write_cursor(dir: &Path, pos: Pos) -> std::io::Result<()> {
    let mut buf = [0u8; 20];
    buf[..8].copy_from_slice(&pos.segment.to_le_bytes());
    buf[8..16].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&buf[..16]);
    buf[16..].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    fs::write(&tmp, buf)?;
    fs::rename(&tmp, dir.join(CURSOR_FILE))
}

/// Counts the valid records of a segment from `offset` (silently: damage is reported when the
/// replayer reaches it). Returns (records, samples, newest ms).
fn scan(file: &File, len: u64, mut offset: u64) -> std::io::Result<(u64, u64, i64)> {
    let src = (file, len);
    let (mut records, mut samples, mut newest) = (0, 0, i64::MIN);
    loop {
        match read_record(&src, offset)? {
            Read::Record { meta, next, .. } => {
                records += 1;
                samples += meta.samples as u64;
                newest = newest.max(meta.newest_ms);
                offset = next;
            }
            Read::End => return Ok((records, samples, newest)),
            Read::Corrupt(_) => match resync(&src, offset)? {
                Some(next) => offset = next,
                None => return Ok((records, samples, newest)),
            },
        }
    }
}

impl DiskQueue {
    /// Opens (creating if needed) the buffer in `dir`: finds what the previous run left, applies
    /// the cursor, and starts a new segment for writing.
    pub(crate) fn open(
        dir: PathBuf,
        name: &str,
        url: &str,
        cfg: DiskBufferConfig,
    ) -> Result<DiskQueue, DiskError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let label = dir.join("endpoint");
        fs::write(&label, format!("url: {url}\nname: {name}\n")).map_err(io_err(&label))?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let file_name = entry.file_name();
            let Some(id) = file_name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else { continue };
            match id.parse::<u64>() {
                Ok(id) => ids.push(id),
                Err(_) => {
                    tracing::warn!(file = %entry.path().display(), "Ignoring a file that is not a segment in the disk buffer.")
                }
            }
        }
        ids.sort_unstable();
        let cursor = read_cursor(&dir);
        let mut read = match (cursor, ids.first()) {
            (Some(c), Some(_)) if ids.contains(&c.segment) => c,
            (_, first) => Pos { segment: first.copied().unwrap_or(0), offset: 0 },
        };
        let mut segments = VecDeque::new();
        for &id in &ids {
            let path = segment_path(&dir, id);
            if id < read.segment {
                // Delivered before the last run ended; its deletion did not happen or persist.
                let _ = fs::remove_file(&path);
                continue;
            }
            let file = File::open(&path).map_err(io_err(&path))?;
            let len = file.metadata().map_err(io_err(&path))?.len();
            let from = if id == read.segment { read.offset } else { 0 };
            let (records, samples, newest_ms) = scan(&file, len, from).map_err(io_err(&path))?;
            segments.push_back(Segment { id, bytes: len, records, samples, newest_ms });
        }
        let next_id = ids.last().map_or(1, |l| l + 1);
        if segments.is_empty() {
            read = Pos { segment: next_id, offset: 0 };
        }
        let path = segment_path(&dir, next_id);
        let writer = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        sync_dir(&dir);
        segments.push_back(Segment { id: next_id, bytes: 0, records: 0, samples: 0, newest_ms: i64::MIN });
        let segment_target = match cfg.max_bytes.0 {
            0 => SEGMENT_MAX_BYTES,
            cap => (cap / SEGMENTS_PER_CAP).clamp(SEGMENT_MIN_BYTES, SEGMENT_MAX_BYTES),
        };
        let q = DiskQueue {
            name: name.to_owned(),
            cfg,
            state: Mutex::new(State {
                dir,
                segments,
                writer,
                read,
                reader: None,
                inflight: None,
                last_sync: Instant::now(),
                unsynced: false,
                segment_target,
                scratch: Vec::new(),
            }),
            notify: Notify::new(),
            metrics: Arc::default(),
        };
        {
            let mut st = q.lock();
            q.enforce_caps(&mut st);
            q.publish(&st);
            let (records, samples) = totals(&st);
            if records > 0 {
                tracing::info!(endpoint = %q.name, records, samples, "Replaying the disk buffer left by the previous run.");
            }
        }
        Ok(q)
    }

    /// This buffer's metrics.
    pub(crate) fn metrics(&self) -> &Arc<DiskMetrics> {
        &self.metrics
    }

    /// Completes after the next append (or at once if one happened since the last call): the
    /// replayer waits on it when the buffer is empty.
    pub(crate) async fn appended(&self) {
        self.notify.notified().await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state (every step is a whole
        // record), so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether anything is pending on disk: a lock and a compare, no I/O, so the async side can
    /// skip a trip to the blocking pool in the common case (nothing pending).
    pub(crate) fn has_pending(&self) -> bool {
        totals(&self.lock()).0 > 0
    }

    /// Appends a request if anything is already pending on disk (then the request must queue
    /// behind it to keep per-series order). Returns whether it was appended.
    pub(crate) fn append_if_pending(&self, meta: RecordMeta, body: &[u8]) -> Result<bool, DiskError> {
        let mut st = self.lock();
        if totals(&st).0 == 0 {
            return Ok(false);
        }
        self.append_locked(&mut st, meta, body)?;
        Ok(true)
    }

    /// Appends a request unconditionally.
    pub(crate) fn append(&self, meta: RecordMeta, body: &[u8]) -> Result<(), DiskError> {
        let mut st = self.lock();
        self.append_locked(&mut st, meta, body)
    }

    fn append_locked(&self, st: &mut State, meta: RecordMeta, body: &[u8]) -> Result<(), DiskError> {
        let mut buf = std::mem::take(&mut st.scratch);
        buf.clear();
        encode_record(meta, body, &mut buf);
        let active_id = st.segments.back().map_or(0, |s| s.id);
        let path = segment_path(&st.dir, active_id);
        let written = st.writer.write_all(&buf);
        let len = buf.len() as u64;
        st.scratch = buf;
        if let Err(e) = written {
            // A partial write leaves a damaged tail that readers skip; start a clean segment so
            // later records are not behind it.
            let _ = self.rotate(st);
            return Err(DiskError { path, source: e });
        }
        if let Some(seg) = st.segments.back_mut() {
            seg.bytes += len;
            seg.records += 1;
            seg.samples += meta.samples as u64;
            seg.newest_ms = seg.newest_ms.max(meta.newest_ms);
        }
        st.unsynced = true;
        self.metrics.written_samples_total.fetch_add(meta.samples as u64, Relaxed);
        if st.segments.back().is_some_and(|s| s.bytes >= st.segment_target) {
            self.rotate(st)?;
        } else if st.last_sync.elapsed() >= FSYNC_INTERVAL {
            st.writer.sync_data().map_err(io_err(&path))?;
            st.last_sync = Instant::now();
            st.unsynced = false;
        }
        self.enforce_caps(st);
        self.publish(st);
        self.notify.notify_one();
        Ok(())
    }

    /// Closes the active segment (fsynced) and starts the next.
    fn rotate(&self, st: &mut State) -> Result<(), DiskError> {
        let active = st.segments.back().map_or(0, |s| s.id);
        let _ = st.writer.sync_data();
        let next = active + 1;
        let path = segment_path(&st.dir, next);
        st.writer = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        sync_dir(&st.dir);
        st.segments.push_back(Segment { id: next, bytes: 0, records: 0, samples: 0, newest_ms: i64::MIN });
        st.last_sync = Instant::now();
        st.unsynced = false;
        Ok(())
    }

    /// Flushes written records to stable storage (shutdown).
    pub(crate) fn sync(&self) {
        let mut st = self.lock();
        if st.unsynced {
            if let Err(e) = st.writer.sync_data() {
                tracing::warn!(endpoint = %self.name, error = %e, "Cannot fsync the disk buffer.");
            }
            st.unsynced = false;
        }
    }

    /// Drops the oldest closed segments beyond `max_bytes`, and closed segments whose newest
    /// sample is older than `max_age`.
    fn enforce_caps(&self, st: &mut State) {
        let cutoff = (!self.cfg.max_age.get().is_zero())
            .then(|| now_ms().saturating_sub(self.cfg.max_age.get().as_millis() as i64));
        loop {
            if st.segments.len() < 2 {
                return; // the active segment is never dropped
            }
            let total: u64 = st.segments.iter().map(|s| s.bytes).sum();
            let Some(oldest) = st.segments.front() else { return };
            let reason = if self.cfg.max_bytes.0 > 0 && total > self.cfg.max_bytes.0 {
                "max_bytes"
            } else if cutoff.is_some_and(|c| oldest.newest_ms < c) {
                "max_age"
            } else {
                return;
            };
            self.drop_oldest(st, reason);
        }
    }

    fn drop_oldest(&self, st: &mut State, reason: &'static str) {
        let Some(seg) = st.segments.pop_front() else { return };
        let inflight = st.inflight.filter(|i| i.pos.segment == seg.id);
        // The record being sent is not counted as dropped: it may still be delivered.
        let samples = seg.samples - inflight.map_or(0, |i| i.samples.min(seg.samples));
        let records = seg.records - inflight.map_or(0, |_| 1.min(seg.records));
        let _ = fs::remove_file(segment_path(&st.dir, seg.id));
        if st.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            st.reader = None;
        }
        if st.read.segment <= seg.id {
            let next = st.segments.front().map_or(seg.id + 1, |s| s.id);
            st.read = Pos { segment: next, offset: 0 };
            if st.inflight.is_none() {
                self.save_cursor(st, st.read);
            }
        }
        let counter = match reason {
            "max_age" => &self.metrics.dropped_max_age_total,
            _ => &self.metrics.dropped_max_bytes_total,
        };
        counter.fetch_add(samples, Relaxed);
        if records > 0 || samples > 0 {
            tracing::warn!(
                endpoint = %self.name,
                reason,
                segment = seg.id,
                records,
                samples,
                "Dropped the oldest disk buffer segment: a cap was reached."
            );
        }
    }

    fn save_cursor(&self, st: &State, pos: Pos) {
        if let Err(e) = write_cursor(&st.dir, pos) {
            tracing::warn!(endpoint = %self.name, error = %e, "Cannot save the disk buffer cursor; delivered records may be sent again after a restart.");
        }
    }

    fn publish(&self, st: &State) {
        let (records, samples) = totals(st);
        self.metrics.records_pending.store(records as i64, Relaxed);
        self.metrics.samples_pending.store(samples as i64, Relaxed);
        self.metrics.bytes.store(st.segments.iter().map(|s| s.bytes).sum::<u64>() as i64, Relaxed);
    }

    /// The next record to send, if any; it stays pending until [`ack`](Self::ack). Skips damage
    /// (logged and counted), drops records older than `max_age`, deletes delivered segments.
    pub(crate) fn next(&self) -> Option<(Pos, RecordMeta, Bytes)> {
        let mut st = self.lock();
        if st.inflight.is_some() {
            return None;
        }
        self.enforce_caps(&mut st);
        let cutoff = (!self.cfg.max_age.get().is_zero())
            .then(|| now_ms().saturating_sub(self.cfg.max_age.get().as_millis() as i64));
        let result = loop {
            let read = st.read;
            let active = st.segments.back().map_or(0, |s| s.id);
            if st.reader.as_ref().is_none_or(|(id, _)| *id != read.segment) {
                let path = segment_path(&st.dir, read.segment);
                match File::open(&path) {
                    Ok(f) => st.reader = Some((read.segment, f)),
                    Err(e) => {
                        if read.segment >= active {
                            break None;
                        }
                        tracing::error!(endpoint = %self.name, path = %path.display(), error = %e, "A disk buffer segment cannot be read; skipping it.");
                        self.finish_segment(&mut st, read.segment);
                        continue;
                    }
                }
            }
            let Some((_, file)) = st.reader.as_ref() else { break None };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let src = (file, len);
            let outcome = read_record(&src, read.offset).and_then(|r| match r {
                Read::Corrupt(why) => Ok((Read::Corrupt(why), resync(&src, read.offset)?)),
                other => Ok((other, None)),
            });
            match outcome {
                Ok((Read::Record { meta, body, next }, _)) => {
                    if cutoff.is_some_and(|c| meta.newest_ms < c) {
                        self.metrics.dropped_max_age_total.fetch_add(meta.samples as u64, Relaxed);
                        tracing::warn!(endpoint = %self.name, samples = meta.samples, "Dropped a disk buffer record older than max_age.");
                        self.settle(&mut st, read.segment, meta.samples as u64);
                        st.read.offset = next;
                        self.save_cursor(&st, st.read);
                        continue;
                    }
                    st.inflight = Some(Inflight { pos: read, next, samples: meta.samples as u64 });
                    break Some((read, meta, body));
                }
                Ok((Read::End, _)) => {
                    if read.segment >= active {
                        break None;
                    }
                    self.finish_segment(&mut st, read.segment);
                }
                Ok((Read::Corrupt(why), resynced)) => {
                    self.metrics.corrupt_records_total.fetch_add(1, Relaxed);
                    tracing::error!(
                        endpoint = %self.name,
                        segment = read.segment,
                        offset = read.offset,
                        reason = why,
                        resumed_at = resynced.map_or(-1, |o| o as i64),
                        "Skipping damaged data in the disk buffer; the requests in it are lost."
                    );
                    match resynced {
                        Some(o) => st.read.offset = o,
                        None if read.segment >= active => {
                            // Damage at the tail of the segment being written: only possible
                            // after a failed write, which rotated; wait for new records.
                            st.read.offset = len;
                            break None;
                        }
                        None => self.finish_segment(&mut st, read.segment),
                    }
                }
                Err(e) => {
                    tracing::error!(endpoint = %self.name, segment = read.segment, error = %e, "Cannot read the disk buffer; skipping the rest of the segment.");
                    if read.segment >= active {
                        break None;
                    }
                    self.finish_segment(&mut st, read.segment);
                }
            }
        };
        self.publish(&st);
        result
    }

    /// The reader has passed the end of `segment`: delete it and move to the next. Whatever it
    /// still counted as pending was damaged data.
    fn finish_segment(&self, st: &mut State, segment: u64) {
        if st.segments.front().is_some_and(|s| s.id == segment) {
            st.segments.pop_front();
        }
        st.reader = None;
        let _ = fs::remove_file(segment_path(&st.dir, segment));
        let next = st.segments.front().map_or(segment + 1, |s| s.id);
        st.read = Pos { segment: next, offset: 0 };
        self.save_cursor(st, st.read);
    }

    /// One record of `segment` with `samples` samples left the buffer.
    fn settle(&self, st: &mut State, segment: u64, samples: u64) {
        if let Some(seg) = st.segments.iter_mut().find(|s| s.id == segment) {
            seg.records = seg.records.saturating_sub(1);
            seg.samples = seg.samples.saturating_sub(samples);
        }
    }

    /// The record from [`next`](Self::next) at `pos` was delivered (`delivered`) or refused.
    pub(crate) fn ack(&self, pos: Pos, delivered: bool) {
        let mut st = self.lock();
        let Some(i) = st.inflight.take().filter(|i| i.pos == pos) else { return };
        if delivered {
            self.metrics.replayed_samples_total.fetch_add(i.samples, Relaxed);
        }
        let segment_alive = st.segments.iter().any(|s| s.id == pos.segment);
        if segment_alive {
            self.settle(&mut st, pos.segment, i.samples);
            if st.read.segment == pos.segment {
                st.read.offset = i.next;
            }
        }
        self.save_cursor(&st, st.read);
        self.publish(&st);
    }

    /// Whether nothing is pending on disk.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        totals(&self.lock()).0 == 0
    }
}

/// Pending (records, samples) over all segments.
fn totals(st: &State) -> (u64, u64) {
    let mut records: u64 = st.segments.iter().map(|s| s.records).sum();
    let mut samples: u64 = st.segments.iter().map(|s| s.samples).sum();
    // An in-flight record whose segment was dropped is still pending until acknowledged.
    if let Some(i) = st.inflight
        && !st.segments.iter().any(|s| s.id == i.pos.segment)
    {
        records += 1;
        samples += i.samples;
    }
    (records, samples)
}

fn sync_dir(dir: &Path) {
    // Makes a new segment's directory entry durable; failure only weakens power-loss safety.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Runs `f` on the disk queue in Tokio's blocking pool. Disk writes, `fsync`s (up to one a
/// second while spilling, and at every segment rotation) and the cursor's write-and-rename after
/// every replayed record block the calling thread; on a runtime worker that would stall every
/// scrape and send scheduled on it (two workers on a 2-core node). `None` when the runtime is
/// shutting down and did not run `f`.
pub(crate) async fn off_runtime<T: Send + 'static>(
    disk: &Arc<DiskQueue>,
    f: impl FnOnce(&DiskQueue) -> T + Send + 'static,
) -> Option<T> {
    let d = disk.clone();
    match tokio::task::spawn_blocking(move || f(&d)).await {
        Ok(v) => Some(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{HEADER_BYTES, META_BYTES};
    use super::*;
    use crate::config::common::{ByteSize, Duration};

    fn meta(samples: u32, newest_ms: i64) -> RecordMeta {
        RecordMeta { samples, newest_ms }
    }

    fn open(dir: &Path, max_bytes: u64) -> DiskQueue {
        let cfg = DiskBufferConfig { max_bytes: ByteSize(max_bytes), max_age: Duration::from_secs(0) };
        DiskQueue::open(dir.to_owned(), "t", "http://x/", cfg).expect("opens")
    }

    /// Takes every pending record, acknowledging each as delivered.
    fn drain(q: &DiskQueue) -> Vec<(RecordMeta, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((pos, m, body)) = q.next() {
            out.push((m, body.to_vec()));
            q.ack(pos, true);
        }
        out
    }

    #[test]
    fn queue_round_trip_in_order_and_deletes_delivered_segments() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), 64 << 10); // 8 KiB segments
        assert!(q.is_empty());
        assert!(!q.append_if_pending(meta(1, 1), b"x").unwrap(), "nothing pending: not appended");
        let body = vec![b'b'; 1000];
        for i in 0..40 {
            q.append(meta(i, i as i64), &body).unwrap();
        }
        assert!(q.lock().segments.len() > 2, "40 KB rotated through 8 KiB segments");
        assert!(q.append_if_pending(meta(40, 40), &body).unwrap(), "pending: appended behind");
        let got = drain(&q);
        assert_eq!(got.iter().map(|(m, _)| m.samples).collect::<Vec<_>>(), (0..=40).collect::<Vec<_>>());
        assert!(q.is_empty());
        let segs = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(SEGMENT_SUFFIX));
        assert_eq!(segs.count(), 1, "only the active segment is left");
        assert_eq!(q.metrics.replayed_samples_total.load(Relaxed), (0..=40).sum::<u32>() as u64);
    }

    #[test]
    fn cursor_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(dir.path(), 0);
            for i in 0..5 {
                q.append(meta(i, 0), b"r").unwrap();
            }
            for _ in 0..2 {
                let (pos, _, _) = q.next().unwrap();
                q.ack(pos, true);
            }
            let _unacked = q.next().unwrap(); // in flight at the "crash": sent again
        }
        let q = open(dir.path(), 0);
        assert_eq!(q.metrics.records_pending.load(Relaxed), 3);
        q.append(meta(9, 0), b"new").unwrap();
        let got: Vec<u32> = drain(&q).iter().map(|(m, _)| m.samples).collect();
        assert_eq!(got, [2, 3, 4, 9], "resumes at the unacknowledged record, new data behind");
    }

    #[test]
    fn damaged_cursor_replays_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(dir.path(), 0);
            q.append(meta(1, 0), b"a").unwrap();
            let (pos, _, _) = q.next().unwrap();
            q.ack(pos, true);
        }
        fs::write(dir.path().join(CURSOR_FILE), b"garbage").unwrap();
        let q = open(dir.path(), 0);
        assert_eq!(drain(&q).len(), 1, "a duplicate, not a loss");
    }

    #[test]
    fn max_bytes_drops_the_oldest_segments() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), 32 << 10); // 4 KiB segments
        let body = vec![0u8; 1000];
        for i in 0..100 {
            q.append(meta(1, i), &body).unwrap();
        }
        let dropped = q.metrics.dropped_max_bytes_total.load(Relaxed);
        assert!(dropped > 0);
        assert!(q.metrics.bytes.load(Relaxed) as u64 <= (32 << 10) + 4096 + 1100);
        let got = drain(&q);
        assert_eq!(got.len() as u64 + dropped, 100, "every record delivered or counted as dropped");
        assert_eq!(got.last().map(|(m, _)| m.newest_ms), Some(99), "the newest is kept");
        assert_eq!(got.first().map(|(m, _)| m.newest_ms), Some(dropped as i64), "the oldest went");
    }

    #[test]
    fn max_age_drops_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DiskBufferConfig { max_bytes: ByteSize(0), max_age: Duration::from_secs(60) };
        let q = DiskQueue::open(dir.path().to_owned(), "t", "http://x/", cfg).unwrap();
        q.append(meta(3, now_ms() - 3_600_000), b"old").unwrap();
        q.append(meta(4, now_ms()), b"new").unwrap();
        let got = drain(&q);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"new");
        assert_eq!(q.metrics.dropped_max_age_total.load(Relaxed), 3);
    }

    #[test]
    fn damaged_segment_on_disk_is_skipped_at_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(dir.path(), 0);
            for i in 0..3 {
                q.append(meta(i, 0), &[b'x'; 100]).unwrap();
            }
        }
        let seg = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[HEADER_BYTES + META_BYTES + 10] ^= 0xff; // inside the first record's body
        fs::write(&seg, &bytes).unwrap();
        let q = open(dir.path(), 0);
        let got: Vec<u32> = drain(&q).iter().map(|(m, _)| m.samples).collect();
        assert_eq!(got, [1, 2]);
        assert_eq!(q.metrics.corrupt_records_total.load(Relaxed), 1);
        assert!(q.is_empty());
    }
}
