//! The last-scraped series of each target, kept under `--storage.path` so staleness survives a
//! restart.
//!
//! What this is: one small file per target (`<storage.path>/staleness/<16 hex digits>.series`,
//! named from a hash of the job, the target's labels and URL) holding the records the last
//! scrape sent, rewritten by the scrape loop whenever that set changes, and read back when the
//! target's loop starts. The loop then stale-marks, at its first scrape, every remembered series
//! the page no longer has: a series that vanished while trawl was down ends as it would have
//! without the restart. What this is not: the staleness logic itself (in [`crate::scrape`]).
//! A target that is gone from discovery after the restart gets no markers (nothing scrapes it);
//! its file stays until the target comes back.
//!
//! # Format and durability
//!
//! `"TRWLSER2" | the target's compressed last series set ([`LastSeries::to_bytes`]: count, raw
//! length, a deflate stream of records) | crc32 of everything before: u32`, little endian. The
//! first format, `"TRWLSER1"` (label sets, written before trawl kept records), is still read,
//! with the external labels of this run merged in. Written to a temporary file and renamed over
//! the old one, so a reader sees the old set or the new one, never half; not fsynced (a power
//! loss can bring back an older set: extra markers for series that are already stale,
//! harmless). A file that fails any check is ignored with an ERROR log. The file is read and
//! written for the scrape loop (a few KB, once per change of a target's series set) in Tokio's
//! blocking pool ([`load_async`], [`save_async`], [`remove_async`]), so a slow disk never
//! stalls a runtime worker that scrapes; [`load`], [`save`] and [`remove`] are the same
//! operations for callers that may block.

use std::path::{Path, PathBuf};

use crate::labels::Labels;
use crate::scrape::LastSeries;

/// File magic and format version.
const MAGIC: &[u8; 8] = b"TRWLSER2";
/// The first format's magic: label sets.
const MAGIC_V1: &[u8; 8] = b"TRWLSER1";
/// Most bytes read from one file (64 MiB): far above a real target (a 10 000-series page with
/// 10 labels of 30 bytes is 3 MB) and small enough to read in one go.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// A store failure. Not retryable as such; the next change of the series set writes again.
#[derive(Debug, thiserror::Error)]
#[error("staleness state {path}: {source}")]
pub struct Error {
    path: PathBuf,
    source: std::io::Error,
}

/// The per-target series files under one storage root.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) `<root>/staleness`.
    pub fn open(root: &Path) -> Result<Store, Error> {
        let dir = root.join("staleness");
        std::fs::create_dir_all(&dir).map_err(|source| Error { path: dir.clone(), source })?;
        Ok(Store { dir })
    }

    /// The file of one target.
    pub fn path(&self, job: &str, target: &Labels, url: &str) -> PathBuf {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for part in [job, url] {
            h.update(part.as_bytes());
            h.update(&[0xff]);
        }
        for l in target.iter() {
            h.update(l.name.as_bytes());
            h.update(&[0xfe]);
            h.update(l.value.as_bytes());
            h.update(&[0xff]);
        }
        self.dir.join(format!("{:016x}.series", h.digest()))
    }
}

/// Writes `series` to `path` atomically. Blocks: from a runtime worker use [`save_async`].
pub fn save(path: &Path, series: &LastSeries) -> Result<(), Error> {
    write_file(path, &encode(series))
}

/// [`save`] with the file written in Tokio's blocking pool; the series are encoded on the
/// caller's thread (CPU only). Returns once the file is in place, so two saves of one target
/// never race on its temporary file.
pub async fn save_async(path: &Path, series: &LastSeries) -> Result<(), Error> {
    let buf = encode(series);
    let owned = path.to_owned();
    off_runtime(move || write_file(&owned, &buf))
        .await
        .unwrap_or_else(|| Err(Error { path: path.to_owned(), source: shutting_down() }))
}

/// Reads what [`save`] wrote; `None` when there is no file or it is damaged (logged). A file in
/// the first format gets `external` merged into its label sets. Blocks: from a runtime worker
/// use [`load_async`].
pub fn load(path: &Path, external: &Labels) -> Option<LastSeries> {
    check(path, read_file(path), external)
}

/// [`load`] with the file read in Tokio's blocking pool (decoded on the caller's thread).
pub async fn load_async(path: &Path, external: &Labels) -> Option<LastSeries> {
    let owned = path.to_owned();
    let read = off_runtime(move || read_file(&owned)).await.unwrap_or_else(|| Err(shutting_down()));
    check(path, read, external)
}

/// Removes a target's file (the target went away and its series were stale-marked). Blocks:
/// from a runtime worker use [`remove_async`].
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// [`remove`] in Tokio's blocking pool.
pub async fn remove_async(path: &Path) {
    let owned = path.to_owned();
    off_runtime(move || remove(&owned)).await;
}

/// Runs `f` in Tokio's blocking pool, as the disk buffer does its I/O: opening, reading,
/// writing and renaming files block the thread (milliseconds on a slow or busy disk), and on a
/// runtime worker that stalls every scrape scheduled on it. `None` when the runtime is shutting
/// down and did not run `f`.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

fn shutting_down() -> std::io::Error {
    std::io::Error::other("the runtime is shutting down")
}

/// The file's bytes for `series`: magic, the compressed set, CRC.
pub(crate) fn encode(series: &LastSeries) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 + series.heap_bytes());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&series.to_bytes());
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Writes `buf` to a temporary file and renames it over `path`.
fn write_file(path: &Path, buf: &[u8]) -> Result<(), Error> {
    let err = |source| Error { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, buf).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads at most [`MAX_FILE_BYTES`] + 1 bytes of `path` (one more tells a file over the cap).
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf))?;
    Ok(buf)
}

/// What [`load`] makes of a read: the set, or `None` (no file, or damage, logged).
fn check(path: &Path, read: std::io::Result<Vec<u8>>, external: &Labels) -> Option<LastSeries> {
    let buf = match read {
        Ok(buf) => buf,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "Cannot read a target's last series; no stale markers for what vanished while trawl was down.");
            return None;
        }
    };
    let decoded = decode(&buf, external);
    if decoded.is_none() {
        tracing::error!(path = %path.display(), "A target's last-series file is damaged; ignoring it.");
    }
    decoded
}

/// Decodes a file's bytes; `None` for anything that is not a file [`save`] wrote (a file
/// over `MAX_FILE_BYTES` (64 MiB), a CRC mismatch, an unknown magic, a damaged set). Never panics:
/// it reads untrusted bytes (fuzzed: `fuzz/fuzz_targets/staleness.rs`).
pub fn decode(buf: &[u8], external: &Labels) -> Option<LastSeries> {
    if buf.len() as u64 > MAX_FILE_BYTES {
        return None;
    }
    let (body, crc) = buf.split_at_checked(buf.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    if let Some(rest) = body.strip_prefix(MAGIC.as_slice()) {
        return LastSeries::from_bytes(rest).ok();
    }
    let sets = decode_v1(body.strip_prefix(MAGIC_V1.as_slice())?)?;
    let records: Vec<Vec<u8>> = sets
        .iter()
        .map(|l| {
            let mut r = Vec::new();
            crate::batch::write_merged(l, external, &mut r);
            r
        })
        .collect();
    Some(LastSeries::encode(records.iter().map(Vec::as_slice)))
}

/// The label sets of a first-format file (after its magic).
fn decode_v1(body: &[u8]) -> Option<Vec<Labels>> {
    let mut r = Reader(body);
    let count = r.u32()?;
    // Each series takes at least 2 bytes: a count that cannot fit is damage.
    let mut out = Vec::with_capacity((count as usize).min(r.0.len() / 2));
    for _ in 0..count {
        let n = r.u16()?;
        let mut labels = Labels::new();
        for _ in 0..n {
            let name = r.str()?;
            let value = r.str()?;
            labels.set(name, value);
        }
        out.push(labels);
    }
    r.0.is_empty().then_some(out)
}

/// A bounds-checked cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets_to_last(sets: &[Labels]) -> LastSeries {
        let recs: Vec<Vec<u8>> = sets
            .iter()
            .map(|l| {
                let mut r = Vec::new();
                crate::batch::write_labels(l, &mut r);
                r
            })
            .collect();
        LastSeries::encode(recs.iter().map(Vec::as_slice))
    }

    fn decoded(last: &LastSeries) -> Vec<Labels> {
        let mut out = Vec::new();
        last.for_each(|r| out.push(crate::batch::decode_labels(r).unwrap())).unwrap();
        out
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let target = Labels::from_pairs([("job", "j"), ("instance", "h:1")]);
        let path = store.path("j", &target, "http://h:1/metrics");
        assert_ne!(path, store.path("j", &target, "http://h:2/metrics"), "URL is part of the key");
        assert_eq!(load(&path, &Labels::new()), None, "no file yet");
        let series = [
            Labels::from_pairs([("__name__", "a"), ("job", "j")]),
            Labels::from_pairs([("__name__", "b"), ("x", "")]),
            Labels::new(),
        ];
        save(&path, &sets_to_last(&series)).unwrap();
        let got = decoded(&load(&path, &Labels::new()).unwrap());
        assert_eq!(got, series.to_vec(), "the sets come back in order");
        assert_eq!(got[1].get("__name__"), Some("b"));

        let clean = std::fs::read(&path).unwrap();
        // (damage, why)
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (clean[..clean.len() - 1].to_vec(), "truncated trailer"),
            (clean[..10].to_vec(), "truncated body"),
            (Vec::new(), "empty"),
            (
                {
                    let mut b = clean.clone();
                    b[12] ^= 1;
                    b
                },
                "a flipped bit",
            ),
            (b"TRWLSER1\xff\xff\xff\xff\0\0\0\0".to_vec(), "huge count, bad CRC"),
        ];
        for (bytes, why) in cases {
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(load(&path, &Labels::new()), None, "{why}");
        }
    }

    /// The async forms do the same file operations, from the blocking pool.
    #[tokio::test]
    async fn async_forms_round_trip_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = store.path("j", &Labels::new(), "http://h:1/metrics");
        assert_eq!(load_async(&path, &Labels::new()).await, None, "no file yet");
        let series = [Labels::from_pairs([("__name__", "a"), ("job", "j")])];
        save_async(&path, &sets_to_last(&series)).await.unwrap();
        assert_eq!(load(&path, &Labels::new()), Some(sets_to_last(&series)), "what save_async wrote");
        let got = decoded(&load_async(&path, &Labels::new()).await.unwrap());
        assert_eq!(got, series.to_vec());
        remove_async(&path).await;
        assert!(!path.exists(), "removed");
    }

    #[test]
    fn first_format_files_are_read_with_external_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.series");
        // A file as trawl wrote it before records: magic, count, per set (labels, then name
        // and value with u32 lengths), CRC.
        let mut buf = MAGIC_V1.to_vec();
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        for s in ["__name__", "gone", "job", "j"] {
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, buf).unwrap();
        let external = Labels::from_pairs([("cluster", "c"), ("job", "ext")]);
        let got = decoded(&load(&path, &external).unwrap());
        assert_eq!(got, [Labels::from_pairs([("__name__", "gone"), ("cluster", "c"), ("job", "j")])]);
    }
}
