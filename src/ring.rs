//! The hand-off between scrape tasks and the remote-write senders.
//!
//! A batch of samples per scrape travels through one bounded Tokio channel
//! ([`crate::app::HANDOFF_BATCHES`] batches) to the fan-out, then into each endpoint's bounded,
//! sharded queue. The queue is bounded and a full one is back-pressure on the scraper, counted
//! (`trawl_queue_full_waits_total`), never a silent drop.
//!
//! Why not a hand-written lock-free ring: the hand-off moves one batch per scrape, not one
//! sample, so it runs a few hundred times a second on a dense node; a send and receive on Tokio's
//! bounded mpsc (lock-free in the common case, a waiter list only when full) is on the order of a
//! microsecond, against ~0.6 ms of warm parse-and-intern work for a 2,500-series page
//! (`benches/relabel.rs`: 0.23 µs per sample). A custom ring would bring `unsafe` for no
//! measurable gain. The per-sample
//! work that matters is allocation-free already (`tests/pipeline_alloc.rs`: 0 allocations per
//! steady-state scrape, parse to snappy).
//!
//! # Metadata and exemplars
//!
//! Remote write 2.0 carries TYPE/HELP/UNIT per series and exemplars per sample. They travel
//! *beside* the samples, never inside [`Sample`] (24 bytes, the unit every stage copies):
//! metadata as runs (`from` index → one shared [`Metadata`], usually one run per metric family
//! per scrape, since an exposition groups a family's samples), exemplars as a side list indexed
//! by sample (exemplars are rare). A batch without either costs two empty `Vec`s.

use std::sync::Arc;

use crate::labels::Labels;
use crate::parse::MetricType;

/// One sample on its way out: the full, sorted label set (with `__name__`), a timestamp in
/// milliseconds since the epoch and the value (StaleNaN marks staleness).
#[derive(Clone, Debug)]
pub struct Sample {
    /// The series' labels, shared between the samples of a series and across endpoints.
    pub series: Arc<Labels>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; see [`STALE_NAN`] for staleness markers.
    pub value: f64,
}

/// A metric family's metadata as exposed (`# TYPE`, `# HELP`, `# UNIT`), shared by all the
/// family's series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The type; [`MetricType::Unknown`] when not given.
    pub kind: MetricType,
    /// HELP text, unescaped ("" when not given).
    pub help: String,
    /// UNIT ("" when not given).
    pub unit: String,
}

/// An exemplar attached to one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// The exemplar's own labels (e.g. `trace_id`).
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Milliseconds since the epoch; the scrape time when the exposition gave none (RW 2.0:
    /// an exemplar MUST have a timestamp).
    pub timestamp_ms: i64,
}

/// Metadata of the samples from index `from` up to the next run's `from`.
#[derive(Clone, Debug)]
pub struct MetadataRun {
    /// Index of the first sample of the run.
    pub from: u32,
    /// Their metadata; `None` for samples of no known family (e.g. `up`, stale markers).
    pub metadata: Option<Arc<Metadata>>,
}

/// A scrape's worth of samples, handed over as one unit so per-series order is kept, with the
/// samples' metadata and exemplars alongside.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The samples, in scrape order.
    pub samples: Vec<Sample>,
    /// Metadata runs, `from` strictly increasing; samples before the first run have none.
    pub metadata: Vec<MetadataRun>,
    /// Exemplars by the index of their sample, indexes increasing.
    pub exemplars: Vec<(u32, Exemplar)>,
    /// Created timestamps (ms) by the index of their sample, indexes increasing: the start of
    /// a counter's, histogram's or summary's accumulation, from OpenMetrics `_created` lines
    /// (remote write 2.0 `TimeSeries.created_timestamp`).
    pub created: Vec<(u32, i64)>,
}

impl Batch {
    /// An empty batch.
    pub const fn new() -> Self {
        Batch { samples: Vec::new(), metadata: Vec::new(), exemplars: Vec::new(), created: Vec::new() }
    }

    /// An empty batch with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Batch { samples: Vec::with_capacity(n), ..Batch::new() }
    }

    /// Appends a sample.
    #[inline]
    pub fn push(&mut self, s: Sample) {
        self.samples.push(s);
    }

    /// Number of samples.
    #[inline]
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples.
    pub fn iter(&self) -> std::slice::Iter<'_, Sample> {
        self.samples.iter()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.metadata.clear();
        self.exemplars.clear();
        self.created.clear();
    }

    /// Makes the samples pushed from now on carry `metadata` (a new run only when it differs
    /// from the current one, by pointer).
    pub fn set_metadata(&mut self, metadata: Option<&Arc<Metadata>>) {
        if !self.continues_run(metadata) {
            self.push_run(self.samples.len() as u32, metadata.cloned());
        }
    }

    /// Whether samples with `metadata` continue the current run (the same `Arc`, or both none).
    fn continues_run(&self, metadata: Option<&Arc<Metadata>>) -> bool {
        match (self.metadata.last().and_then(|r| r.metadata.as_ref()), metadata) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Starts a metadata run at sample index `from` (at or after the last run's start), unless
    /// it continues the current one.
    fn push_run(&mut self, from: u32, metadata: Option<Arc<Metadata>>) {
        if self.continues_run(metadata.as_ref()) {
            return;
        }
        match self.metadata.last_mut() {
            // Nothing pushed under the current run yet: replace it.
            Some(last) if last.from == from => last.metadata = metadata,
            _ => self.metadata.push(MetadataRun { from, metadata }),
        }
    }

    /// Attaches an exemplar to the last pushed sample.
    pub fn push_exemplar(&mut self, e: Exemplar) {
        if let Some(i) = self.samples.len().checked_sub(1) {
            self.exemplars.push((i as u32, e));
        }
    }

    /// Drops the metadata, exemplars and created timestamps, keeping the samples.
    pub fn drop_extras(&mut self) {
        self.metadata.clear();
        self.exemplars.clear();
        self.created.clear();
    }

    /// Gives the samples from index `from` to the end the created timestamp `ms`.
    pub fn set_created_from(&mut self, from: usize, ms: i64) {
        for i in from..self.samples.len() {
            self.created.push((i as u32, ms));
        }
    }

    /// The metadata of each sample in order, walking the runs (no lookups).
    pub fn metadata_iter(&self) -> impl Iterator<Item = Option<&Arc<Metadata>>> + '_ {
        let mut run = 0;
        let mut current: Option<&Arc<Metadata>> = None;
        (0..self.samples.len()).map(move |i| {
            while run < self.metadata.len() && self.metadata[run].from as usize <= i {
                current = self.metadata[run].metadata.as_ref();
                run += 1;
            }
            current
        })
    }

    /// Whether the batch carries no metadata and no exemplars (the common 1.0 case).
    fn is_plain(&self) -> bool {
        self.metadata.is_empty() && self.exemplars.is_empty() && self.created.is_empty()
    }

    /// Pushes a sample with its metadata and exemplars.
    fn push_entry(&mut self, (s, metadata, exemplars, created): Entry) {
        self.set_metadata(metadata.as_ref());
        self.samples.push(s);
        for e in exemplars {
            self.push_exemplar(e);
        }
        if let Some(ms) = created {
            self.created.push((self.samples.len() as u32 - 1, ms));
        }
    }

    /// The samples, each with its metadata and exemplars.
    fn into_entries(self) -> Entries {
        Entries {
            samples: self.samples.into_iter(),
            runs: self.metadata,
            run: 0,
            current: None,
            exemplars: self.exemplars.into_iter().peekable(),
            created: self.created.into_iter().peekable(),
            index: 0,
        }
    }

    /// Splits into `parts` batches by `part_of(sample)`, keeping order, metadata and exemplars.
    pub fn split_by(self, parts: usize, mut part_of: impl FnMut(&Sample) -> usize) -> Vec<Batch> {
        let mut out: Vec<Batch> = (0..parts).map(|_| Batch::new()).collect();
        let last = parts.saturating_sub(1);
        if self.is_plain() {
            for s in self.samples {
                out[part_of(&s).min(last)].samples.push(s);
            }
        } else {
            for entry in self.into_entries() {
                out[part_of(&entry.0).min(last)].push_entry(entry);
            }
        }
        out
    }

    /// Keeps the samples `f` maps to `Some` (possibly changed), with their metadata and
    /// exemplars; returns how many were dropped.
    pub fn filter_map(&mut self, mut f: impl FnMut(Sample) -> Option<Sample>) -> usize {
        let before = self.len();
        let this = std::mem::take(self);
        if this.is_plain() {
            self.samples = this.samples.into_iter().filter_map(f).collect();
        } else {
            for (s, m, e, c) in this.into_entries() {
                if let Some(s) = f(s) {
                    self.push_entry((s, m, e, c));
                }
            }
        }
        before - self.len()
    }

    /// Appends `other`, keeping its metadata, exemplars and created timestamps with their
    /// samples. Per metadata run, not per sample: a shard's queue appends every scrape's batch
    /// (sample by sample this was ~4 % of trawl's CPU at 1M series).
    pub fn append(&mut self, other: Batch) {
        if self.is_empty() && self.metadata.is_empty() {
            *self = other;
            return;
        }
        let base = self.samples.len() as u32;
        // `other`'s samples before its first run have no metadata.
        if other.metadata.first().is_none_or(|r| r.from > 0) && !other.samples.is_empty() {
            self.set_metadata(None);
        }
        self.samples.extend(other.samples);
        for run in other.metadata {
            self.push_run(base + run.from, run.metadata);
        }
        self.exemplars.extend(other.exemplars.into_iter().map(|(i, e)| (i + base, e)));
        self.created.extend(other.created.into_iter().map(|(i, c)| (i + base, c)));
    }

    /// Splits off the samples from `at` on (with their metadata, exemplars and created
    /// timestamps).
    pub fn split_off(&mut self, at: usize) -> Batch {
        if at >= self.samples.len() {
            return Batch::new();
        }
        let samples = self.samples.split_off(at);
        let at32 = at as u32;
        // Runs starting after `at` move; the run covering `at` continues at 0 in the rest.
        let k = self.metadata.partition_point(|r| r.from <= at32);
        let mut metadata = self.metadata.split_off(k);
        for r in &mut metadata {
            r.from -= at32;
        }
        if let Some(covering) = self.metadata.last() {
            metadata.insert(0, MetadataRun { from: 0, metadata: covering.metadata.clone() });
            if covering.from == at32 {
                self.metadata.pop();
            }
        }
        let e = self.exemplars.partition_point(|(i, _)| *i < at32);
        let mut exemplars = self.exemplars.split_off(e);
        for (i, _) in &mut exemplars {
            *i -= at32;
        }
        let c = self.created.partition_point(|(i, _)| *i < at32);
        let mut created = self.created.split_off(c);
        for (i, _) in &mut created {
            *i -= at32;
        }
        Batch { samples, metadata, exemplars, created }
    }

    /// Removes and returns the first `n` samples (with their metadata, exemplars and created
    /// timestamps).
    pub fn take_front(&mut self, n: usize) -> Batch {
        let rest = self.split_off(n);
        std::mem::replace(self, rest)
    }
}

/// A sample with its metadata, exemplars and created timestamp.
type Entry = (Sample, Option<Arc<Metadata>>, Vec<Exemplar>, Option<i64>);

/// Iterator of [`Batch::into_entries`].
struct Entries {
    samples: std::vec::IntoIter<Sample>,
    runs: Vec<MetadataRun>,
    run: usize,
    current: Option<Arc<Metadata>>,
    exemplars: std::iter::Peekable<std::vec::IntoIter<(u32, Exemplar)>>,
    created: std::iter::Peekable<std::vec::IntoIter<(u32, i64)>>,
    index: usize,
}

impl Iterator for Entries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let s = self.samples.next()?;
        let i = self.index;
        self.index += 1;
        while let Some(r) = self.runs.get(self.run).filter(|r| r.from as usize <= i) {
            self.current = r.metadata.clone();
            self.run += 1;
        }
        let mut exemplars = Vec::new();
        while let Some((_, e)) = self.exemplars.next_if(|(at, _)| *at as usize == i) {
            exemplars.push(e);
        }
        let created = self.created.next_if(|(at, _)| *at as usize == i).map(|(_, ms)| ms);
        Some((s, self.current.clone(), exemplars, created))
    }
}

impl From<Vec<Sample>> for Batch {
    fn from(samples: Vec<Sample>) -> Self {
        Batch { samples, ..Batch::new() }
    }
}

impl FromIterator<Sample> for Batch {
    fn from_iter<I: IntoIterator<Item = Sample>>(iter: I) -> Self {
        Batch::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a Sample;
    type IntoIter = std::slice::Iter<'a, Sample>;
    fn into_iter(self) -> Self::IntoIter {
        self.samples.iter()
    }
}

/// Prometheus' staleness marker: a NaN with this exact bit pattern (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an f64. Compare with [`is_stale_nan`], never with `==`.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// Whether `v` is the staleness marker (not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(i: i64) -> Sample {
        Sample { series: Arc::new(Labels::from_pairs([("i", i.to_string())])), timestamp_ms: i, value: 0.0 }
    }

    fn meta(help: &str) -> Arc<Metadata> {
        Arc::new(Metadata { kind: MetricType::Gauge, help: help.into(), unit: String::new() })
    }

    fn ex(v: f64) -> Exemplar {
        Exemplar { labels: Labels::new(), value: v, timestamp_ms: 0 }
    }

    /// (timestamp, help, exemplar values, created timestamp) per sample, for comparing splits.
    fn view(b: &Batch) -> Vec<(i64, String, Vec<f64>, Option<i64>)> {
        b.samples
            .iter()
            .zip(b.metadata_iter())
            .enumerate()
            .map(|(i, (s, m))| {
                let exs = b.exemplars.iter().filter(|(at, _)| *at as usize == i).map(|(_, e)| e.value);
                let created = b.created.iter().find(|(at, _)| *at as usize == i).map(|(_, c)| *c);
                (s.timestamp_ms, m.map_or(String::new(), |m| m.help.clone()), exs.collect(), created)
            })
            .collect()
    }

    fn sample_batch() -> Batch {
        let (a, b) = (meta("a"), meta("b"));
        let mut batch = Batch::new();
        batch.set_metadata(Some(&a));
        batch.push(s(0));
        batch.push(s(1));
        batch.push_exemplar(ex(1.5));
        batch.set_metadata(Some(&b));
        batch.set_metadata(Some(&b)); // no new run for the same pointer
        batch.push(s(2));
        batch.set_created_from(1, 100); // samples 1 and 2 started accumulating at t=100
        batch.set_metadata(None);
        batch.push(s(3));
        batch.push_exemplar(ex(3.5));
        batch
    }

    #[test]
    fn runs_and_exemplars_follow_their_samples() {
        let b = sample_batch();
        assert_eq!(b.metadata.len(), 3, "one run per change");
        let want = vec![
            (0, "a".into(), vec![], None),
            (1, "a".into(), vec![1.5], Some(100)),
            (2, "b".into(), vec![], Some(100)),
            (3, String::new(), vec![3.5], None),
        ];
        assert_eq!(view(&b), want);
    }

    #[test]
    fn split_by_keeps_each_samples_extras() {
        let b = sample_batch();
        let whole = view(&b);
        let parts = b.split_by(2, |s| (s.timestamp_ms % 2) as usize);
        for (p, part) in parts.iter().enumerate() {
            let want: Vec<_> = whole.iter().filter(|(t, ..)| (*t % 2) as usize == p).cloned().collect();
            assert_eq!(view(part), want, "part {p}");
        }
    }

    #[test]
    fn append_and_filter_map_keep_each_samples_extras() {
        let whole = view(&sample_batch());
        let mut b = Batch::from(vec![s(-1)]);
        b.append(sample_batch());
        assert_eq!(view(&b)[1..], whole[..], "appended after a plain sample");
        assert_eq!(view(&b)[0], (-1, String::new(), vec![], None), "the plain sample has no metadata");
        let mut twice = sample_batch();
        twice.append(sample_batch());
        assert_eq!(view(&twice), [whole.clone(), whole.clone()].concat(), "appended after extras");
        assert_eq!(
            twice.metadata.len(),
            6,
            "runs are not merged across the seam (the last was None, the first a)"
        );
        let mut f = sample_batch();
        assert_eq!(f.filter_map(|x| (x.timestamp_ms != 1).then_some(x)), 1);
        let want: Vec<_> = whole.iter().filter(|(t, ..)| *t != 1).cloned().collect();
        assert_eq!(view(&f), want, "a dropped sample takes its exemplar along");
        let mut t = sample_batch();
        let head = t.take_front(3);
        assert_eq!((view(&head), view(&t)), (whole[..3].to_vec(), whole[3..].to_vec()));
    }

    #[test]
    fn split_off_keeps_each_samples_extras() {
        // (split point, why)
        for (at, why) in [
            (0, "all moves"),
            (2, "inside the first run and between created timestamps"),
            (3, "run boundary"),
            (9, "past the end"),
        ] {
            let mut b = sample_batch();
            let whole = view(&b);
            let rest = b.split_off(at);
            let at = at.min(whole.len());
            assert_eq!(view(&b), whole[..at], "{why}");
            assert_eq!(view(&rest), whole[at..], "{why}");
        }
    }
}
