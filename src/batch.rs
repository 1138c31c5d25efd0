//! The hand-off unit between the scrape loops and the remote-write senders: a [`Batch`] of
//! encoded series records.
//!
//! What this is: the batch type every stage after parsing shares, and the one byte format of a
//! series in flight, the *record*. A record is a series' full, sorted label set, already encoded
//! as the remote-write 1.0 `TimeSeries.labels` fields (`Label{name, value}` messages, each behind
//! its field key and length). A scrape loop writes records straight from the page bytes it has
//! just parsed (see [`crate::scrape::page`]), so no stage holds a label set per series: a 1.0
//! request is the samples' frames (below) as they lie, a 2.0 request interns the names and
//! values it reads back out of the records. What this is not: the
//! queueing and sending ([`crate::remote_write`]) or the per-protocol request layout
//! ([`crate::encode`]).
//!
//! Why records and not shared label sets: at 1M active series, one `Arc<Labels>` per series (its
//! slots, interned strings and cached encoded fields) was ~740 bytes of RSS per series, 2.8×
//! vmagent's; the records of a scrape exist only while its samples are in flight (bounded by the
//! hand-off and the endpoint queue's `capacity`), and what a target keeps between scrapes is a
//! hash per series (perf/README.md, "Dense node").
//!
//! # Layout
//!
//! ```text
//! bytes:   [frame 0][frame 1]…          frames back to back, in sample order
//! frame:   0x0a len [record] 0x12 len 0x09 value 0x10 timestamp
//!          = the sample's remote-write 1.0 `WriteRequest.timeseries` field
//! samples: Rec { off, len, series, timestamp_ms, value }   32 bytes a sample (off, len: the record)
//! ```
//!
//! Each record is written inside its sample's whole `TimeSeries` field, so the 1.0 request of a
//! run of plain samples (no native histogram, no exemplar to send) *is* a range of these bytes:
//! the encoder compresses it where it lies instead of copying every record behind a key
//! ([`crate::encode`]; the copy and its loop were ~10 % of trawl's CPU at 1M series). The frame
//! costs 14–20 bytes a sample while the batch is in flight, nothing between scrapes.
//!
//! Metadata (TYPE/HELP/UNIT), exemplars, created timestamps and native histograms travel
//! *beside* the samples: metadata as runs (`from` index → one shared [`Metadata`], usually one
//! run per metric family per scrape), the others as side lists indexed by sample (all rare: a
//! native histogram is one sample where its classic form is dozens). A sample with a histogram
//! is sent as that histogram, not as a float.
//!
//! # External labels
//!
//! A batch says which external labels its records already hold ([`Batch::external`]). The scrape
//! loops merge the global `external_labels` in while they write records (series labels win, as
//! Prometheus' remote write does), so an endpoint sends them as they are; a batch built without
//! them (a test, or one written before a reload changed them) is re-encoded by the endpoint.
//!
//! # Hand-off
//!
//! A scrape's batch travels through one bounded Tokio channel ([`crate::app::HANDOFF_BATCHES`])
//! to the fan-out, then into each endpoint's bounded, sharded queue; a scrape loop reserves its
//! place in the channel before it scrapes, so a full pipeline holds back scrapes instead of
//! filled batches. Why a Tokio channel and not a hand-written lock-free ring: the hand-off moves
//! one batch per scrape, a few hundred a second on a dense node, and `benches/handoff.rs` puts
//! the whole hop (channel, fan-out, shard routing, request assembly) at a few percent of a
//! sample's cost; a ring would bring `unsafe` for nothing measurable.

use std::sync::Arc;

use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

use crate::encode::{DOUBLE_LEN_BYTES, KEY_LEN_BYTES, field as wire, write_point};

use crate::labels::Labels;
use crate::parse::MetricType;

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

// === records ===

/// Field numbers of the 1.0 messages a record is made of.
mod field {
    // A frame's own fields (`WriteRequest.timeseries`, `TimeSeries.samples`, `Sample`'s) are
    // the encoder's: `crate::encode::field`.
    /// `TimeSeries.labels`.
    pub const TIMESERIES_LABELS: u32 = 1;
    /// `Label.name`.
    pub const LABEL_NAME: u32 = 1;
    /// `Label.value`.
    pub const LABEL_VALUE: u32 = 2;
}

/// Bytes of one label's field in a record (key, length, `Label{name, value}`).
#[inline]
pub fn label_field_len(name_len: usize, value_len: usize) -> usize {
    let inner = label_message_len(name_len, value_len);
    1 + encoded_len_varint(inner as u64) + inner
}

#[inline]
fn label_message_len(name_len: usize, value_len: usize) -> usize {
    1 + encoded_len_varint(name_len as u64) + name_len + 1 + encoded_len_varint(value_len as u64) + value_len
}

/// Appends `v` as a protobuf varint. Lengths in records are nearly always below 128, one byte:
/// this path inline, and prost's general one (an out-of-line call, ~5 % of trawl's CPU at 1M
/// series when every varint went through it) for the rest.
#[inline(always)]
pub fn push_varint(v: u64, out: &mut Vec<u8>) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        encode_varint(v, out);
    }
}

/// The key byte of a length-delimited field with a number below 16.
const fn len_key(field: u32) -> u8 {
    ((field << 3) | 2) as u8
}

/// Appends one label's field to a record. Labels must be written sorted by name, with unique
/// names and non-empty values (remote write 1.0: "MUST be sorted", "MUST NOT have empty values").
#[inline]
pub fn write_label_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    const _: () = assert!(field::TIMESERIES_LABELS < 16 && field::LABEL_VALUE < 16);
    let inner = name.len() + value.len() + 4;
    if inner < 0x80 {
        // Every length one byte (nearly all labels): the keys and lengths as two fixed-size
        // writes, not six pushes that each check the capacity.
        out.reserve(inner + 2);
        out.extend_from_slice(&[
            len_key(field::TIMESERIES_LABELS),
            inner as u8,
            len_key(field::LABEL_NAME),
            name.len() as u8,
        ]);
        out.extend_from_slice(name);
        out.extend_from_slice(&[len_key(field::LABEL_VALUE), value.len() as u8]);
        out.extend_from_slice(value);
        return;
    }
    out.reserve(label_field_len(name.len(), value.len()));
    out.push(len_key(field::TIMESERIES_LABELS));
    push_varint(label_message_len(name.len(), value.len()) as u64, out);
    out.push(len_key(field::LABEL_NAME));
    push_varint(name.len() as u64, out);
    out.extend_from_slice(name);
    out.push(len_key(field::LABEL_VALUE));
    push_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// Bytes of a `Sample{value, timestamp}` message: two keys, a double, a varint.
#[inline]
pub(crate) fn sample_len(timestamp_ms: i64) -> usize {
    2 * KEY_LEN_BYTES + DOUBLE_LEN_BYTES + encoded_len_varint(timestamp_ms as u64)
}

/// Bytes of the `TimeSeries.samples` field a frame ends with (its length always fits one byte).
#[inline]
fn sample_field_len(timestamp_ms: i64) -> usize {
    KEY_LEN_BYTES + 1 + sample_len(timestamp_ms)
}

/// Appends the `TimeSeries.samples` field of one sample.
#[inline]
fn write_sample_field(value: f64, timestamp_ms: i64, out: &mut Vec<u8>) {
    out.push(len_key(wire::TIMESERIES_SAMPLES));
    out.push(sample_len(timestamp_ms) as u8);
    write_point(wire::SAMPLE_VALUE, value, wire::SAMPLE_TIMESTAMP, timestamp_ms, out);
}

/// Appends the record of `labels` (already sorted and unique, as a [`Labels`] is).
pub fn write_labels(labels: &Labels, out: &mut Vec<u8>) {
    for l in labels.iter() {
        write_label_field(l.name.as_bytes(), l.value.as_bytes(), out);
    }
}

/// The record of `series` with `external` merged in (sorted; the series' label wins on a clash).
pub fn write_merged(series: &Labels, external: &Labels, out: &mut Vec<u8>) {
    for l in crate::encode::merged(series, external) {
        write_label_field(l.name.as_bytes(), l.value.as_bytes(), out);
    }
}

/// A record that does not decode: only possible for bytes from outside (a damaged file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed series record at byte {0}")]
pub struct RecordError(pub usize);

/// The `(name, value)` pairs of a record, in order. Records built in this process always
/// decode; bytes from a file may not, and then the iterator yields one `Err` and stops.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    rest: &'a [u8],
    at: usize,
}

/// The fields of `record`.
pub fn fields(record: &[u8]) -> Fields<'_> {
    Fields { rest: record, at: 0 }
}

impl<'a> Fields<'a> {
    fn take_len_delimited(&mut self, want_tag: u8) -> Option<&'a [u8]> {
        let (&tag, mut rest) = self.rest.split_first()?;
        if tag != want_tag {
            return None;
        }
        let len = decode_varint(&mut rest).ok()? as usize;
        let body = rest.get(..len)?;
        self.at += self.rest.len() - rest.len() + len;
        self.rest = &rest[len..];
        Some(body)
    }

    fn next_field(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let message = self.take_len_delimited(0x0a)?;
        let mut inner = Fields { rest: message, at: 0 };
        let name = inner.take_len_delimited(0x0a)?;
        let value = inner.take_len_delimited(0x12)?;
        inner.rest.is_empty().then_some((name, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), RecordError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let at = self.at;
        match self.next_field() {
            Some(f) => Some(Ok(f)),
            None => {
                self.rest = &[];
                Some(Err(RecordError(at)))
            }
        }
    }
}

/// The value of label `name` in `record`, if present (a linear scan: records hold ~10 labels).
pub fn label_value<'a>(record: &'a [u8], name: &str) -> Option<&'a [u8]> {
    fields(record).map_while(Result::ok).find(|(n, _)| *n == name.as_bytes()).map(|(_, v)| v)
}

/// The label set of a record (for tests, debugging and the rare paths that rewrite a series).
pub fn decode_labels(record: &[u8]) -> Result<Labels, RecordError> {
    let mut out = Labels::new();
    for f in fields(record) {
        let (n, v) = f?;
        let (Ok(n), Ok(v)) = (std::str::from_utf8(n), std::str::from_utf8(v)) else {
            return Err(RecordError(0));
        };
        out.set(n, v);
    }
    Ok(out)
}

// === batch ===

/// One sample of a batch: where its series record is in [`Batch`]'s bytes, and its point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rec {
    off: u32,
    /// The record's length; the top bit is [`TRACKED`].
    len: u32,
    /// The scrape loop's key for the raw series the sample came from (a seeded hash of its
    /// bytes on the page), or 0 for samples made by trawl (report series, stale markers).
    pub series: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; see [`STALE_NAN`] for staleness markers.
    pub value: f64,
}

/// Top bit of [`Rec::len`]: the sample's series is in its target's staleness set (a page sample
/// without an explicit timestamp); only the scrape loop reads it.
const TRACKED: u32 = 1 << 31;

impl Rec {
    fn range(&self) -> std::ops::Range<usize> {
        let start = self.off as usize;
        start..start + (self.len & !TRACKED) as usize
    }

    /// Whether the scrape loop tracks this sample's series for staleness.
    pub fn tracked(&self) -> bool {
        self.len & TRACKED != 0
    }

    /// Where the sample's whole frame is in the batch's bytes (see the module docs).
    #[inline]
    fn frame(&self) -> std::ops::Range<usize> {
        let r = self.range();
        let inner = r.len() + sample_field_len(self.timestamp_ms);
        r.start - KEY_LEN_BYTES - encoded_len_varint(inner as u64)
            ..r.end + sample_field_len(self.timestamp_ms)
    }
}

/// One sample as a batch shows it: its record and its point.
#[derive(Clone, Copy, Debug)]
pub struct SampleRef<'a> {
    /// The series record (see the module docs).
    pub record: &'a [u8],
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

impl SampleRef<'_> {
    /// The series' label set, decoded (slow: for tests and debugging).
    pub fn labels(&self) -> Labels {
        decode_labels(self.record).unwrap_or_default()
    }
}

/// A sample with its label set: the convenient (allocating) way to build a batch in tests and on
/// rare paths; the scrape path writes records directly.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The series' labels (sorted, unique; `__name__` included).
    pub series: Arc<Labels>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; see [`STALE_NAN`] for staleness markers.
    pub value: f64,
}

/// A scrape's worth of samples, handed over as one unit so per-series order is kept, with the
/// samples' metadata, exemplars and created timestamps alongside.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    samples: Vec<Rec>,
    /// Metadata runs, `from` strictly increasing; samples before the first run have none.
    pub metadata: Vec<MetadataRun>,
    /// Exemplars by the index of their sample, indexes increasing.
    pub exemplars: Vec<(u32, Exemplar)>,
    /// Created timestamps (ms) by the index of their sample, indexes increasing: the start of
    /// a counter's, histogram's or summary's accumulation, from OpenMetrics `_created` lines
    /// (remote write 2.0 `Sample.start_timestamp`).
    pub created: Vec<(u32, i64)>,
    /// Native histograms by the index of their sample, indexes increasing: the remote-write
    /// `Histogram` message's fields 1 to 14 ([`crate::histogram::Native::encode`]); the sample's
    /// value is then not sent, its timestamp is the histogram's.
    pub histograms: Vec<(u32, Box<[u8]>)>,
    /// The external labels merged into the records (`None`: none were).
    external: Option<Arc<Labels>>,
    /// The head size of the last frame pushed, the guess for the next one (0: none yet).
    head_guess: u8,
}

impl Batch {
    /// An empty batch.
    pub const fn new() -> Self {
        Batch {
            bytes: Vec::new(),
            samples: Vec::new(),
            metadata: Vec::new(),
            exemplars: Vec::new(),
            created: Vec::new(),
            histograms: Vec::new(),
            external: None,
            head_guess: 0,
        }
    }

    /// An empty batch with room for `n` samples of `record_bytes` bytes of records in all.
    pub fn with_capacity(n: usize, record_bytes: usize) -> Self {
        Batch { samples: Vec::with_capacity(n), bytes: Vec::with_capacity(record_bytes), ..Batch::new() }
    }

    /// The external labels the records hold (`None`: none were merged in).
    pub fn external(&self) -> Option<&Arc<Labels>> {
        self.external.as_ref()
    }

    /// Says the records pushed into this batch hold `external` (see the module docs).
    pub fn set_external(&mut self, external: Option<Arc<Labels>>) {
        self.external = external;
    }

    /// Whether the records were written with `external` merged in (the same set, or an equal
    /// one; an empty set and none are the same).
    pub fn has_external(&self, external: &Arc<Labels>) -> bool {
        match &self.external {
            Some(mine) => Arc::ptr_eq(mine, external) || **mine == **external,
            None => external.is_empty(),
        }
    }

    /// Appends a sample whose record is `record`.
    #[inline]
    pub fn push_record(&mut self, record: &[u8], series: u64, timestamp_ms: i64, value: f64) {
        self.push_with(series, false, timestamp_ms, value, |out| out.extend_from_slice(record));
    }

    /// Appends a sample whose record `write` appends to the batch's bytes; `tracked` marks a
    /// page series in its target's staleness set (see [`Rec::tracked`]).
    ///
    /// The frame's head (key and length) comes before the record, and its length is known only
    /// after `write`: room for the head is left by guessing its size from the last frame (a
    /// page's records are of similar lengths), and the record is moved only when the guess was
    /// wrong (a naive push that measured the record first would walk every label twice).
    #[inline]
    pub fn push_with(
        &mut self,
        series: u64,
        tracked: bool,
        timestamp_ms: i64,
        value: f64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let frame = self.bytes.len();
        let guess = usize::from(self.head_guess.clamp(2, 3));
        // Pushed, not `resize`d: a `memset` call for two or three bytes was ~1 % of the
        // pipeline bench.
        self.bytes.push(0);
        self.bytes.push(0);
        if guess == 3 {
            self.bytes.push(0);
        }
        write(&mut self.bytes);
        let len = self.bytes.len() - frame - guess;
        let inner = len + sample_field_len(timestamp_ms);
        let head = KEY_LEN_BYTES + encoded_len_varint(inner as u64);
        if head != guess {
            if head > guess {
                self.bytes.resize(frame + head + len, 0);
            }
            self.bytes.copy_within(frame + guess..frame + guess + len, frame + head);
            self.bytes.truncate(frame + head + len);
            self.head_guess = head as u8;
        }
        self.bytes[frame] = len_key(wire::WRITE_REQUEST_TIMESERIES);
        encode_varint(inner as u64, &mut &mut self.bytes[frame + 1..frame + head]);
        write_sample_field(value, timestamp_ms, &mut self.bytes);
        let off = frame + head;
        let flag = if tracked { TRACKED } else { 0 };
        self.samples.push(Rec { off: off as u32, len: len as u32 | flag, series, timestamp_ms, value });
    }

    /// Appends a sample of `labels` (with this batch's external labels merged in).
    pub fn push_labels(&mut self, labels: &Labels, timestamp_ms: i64, value: f64) {
        let external = self.external.clone();
        self.push_with(0, false, timestamp_ms, value, |out| match external {
            Some(e) => write_merged(labels, &e, out),
            None => write_labels(labels, out),
        });
    }

    /// Appends a [`Sample`].
    pub fn push(&mut self, s: Sample) {
        self.push_labels(&s.series, s.timestamp_ms, s.value);
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

    /// Bytes of records held (for memory accounting).
    pub fn record_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The samples' headers.
    #[inline]
    pub fn recs(&self) -> &[Rec] {
        &self.samples
    }

    /// The record of sample `i`.
    #[inline]
    pub fn record(&self, i: usize) -> &[u8] {
        &self.bytes[self.samples[i].range()]
    }

    /// The record of `rec` (a sample of this batch).
    #[inline]
    pub fn record_of(&self, rec: &Rec) -> &[u8] {
        &self.bytes[rec.range()]
    }

    /// The frame of `rec` (a sample of this batch): its 1.0 `WriteRequest.timeseries` field.
    #[inline]
    pub fn frame_of(&self, rec: &Rec) -> &[u8] {
        &self.bytes[rec.frame()]
    }

    /// Sample `i`.
    pub fn get(&self, i: usize) -> SampleRef<'_> {
        let r = &self.samples[i];
        SampleRef { record: &self.bytes[r.range()], timestamp_ms: r.timestamp_ms, value: r.value }
    }

    /// The samples in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SampleRef<'_>> + '_ {
        self.samples.iter().map(|r| SampleRef {
            record: &self.bytes[r.range()],
            timestamp_ms: r.timestamp_ms,
            value: r.value,
        })
    }

    /// The highest sample timestamp, if any.
    pub fn highest_timestamp_ms(&self) -> Option<i64> {
        self.samples.iter().map(|s| s.timestamp_ms).max()
    }

    /// Removes everything, keeping the buffers' capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.samples.clear();
        self.metadata.clear();
        self.exemplars.clear();
        self.created.clear();
        self.histograms.clear();
    }

    /// Gives back buffer capacity beyond `keep_bytes` of records (a batch reused after a very
    /// large page should not hold that page's size forever).
    pub fn trim(&mut self, keep_bytes: usize) {
        if self.bytes.capacity() > keep_bytes {
            self.bytes = Vec::new();
            self.samples = Vec::new();
        }
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

    /// Makes the last pushed sample a native histogram, `encoded` as [`Batch::histograms`] says.
    pub fn push_histogram(&mut self, encoded: Box<[u8]>) {
        if let Some(i) = self.samples.len().checked_sub(1) {
            self.histograms.push((i as u32, encoded));
        }
    }

    /// Removes the samples that are native histograms (an endpoint without
    /// `send_native_histograms`); returns how many.
    pub fn drop_histogram_samples(&mut self) -> usize {
        // Taken out first: the kept samples have none, and the walk reads the indexes.
        let histograms = std::mem::take(&mut self.histograms);
        let (mut cursor, mut i) = (0, 0);
        self.retain_map(|_| {
            let drop = !side_entries(&histograms, &mut cursor, i).is_empty();
            i += 1;
            if drop { Keep::Drop } else { Keep::Same }
        })
    }

    /// Drops the metadata, exemplars and created timestamps, keeping the samples (and their
    /// histograms, which are their values).
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

    /// Gives sample `at` the created timestamp `ms`; `at` must not be below an index that
    /// already has one (the list stays sorted).
    pub fn set_created(&mut self, at: usize, ms: i64) {
        debug_assert!(self.created.last().is_none_or(|(i, _)| (*i as usize) < at));
        self.created.push((at as u32, ms));
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

    /// Whether the batch carries no metadata, exemplars or created timestamps (the 1.0 case).
    fn is_plain(&self) -> bool {
        self.metadata.is_empty()
            && self.exemplars.is_empty()
            && self.created.is_empty()
            && self.histograms.is_empty()
    }

    /// A batch for the same external labels, with room for `n` samples.
    fn sibling(&self, n: usize) -> Batch {
        Batch { external: self.external.clone(), ..Batch::with_capacity(n, 0) }
    }

    /// Copies sample `i` (with its metadata, exemplars and created timestamp, given as the
    /// cursors of a walk in sample order) into `out`, with `record` as its record.
    fn copy_sample<'a>(&'a self, i: usize, record: &[u8], cursors: &mut Cursors<'a>, out: &mut Batch) {
        let r = &self.samples[i];
        if !self.is_plain() {
            while let Some(run) = self.metadata.get(cursors.run).filter(|run| run.from as usize <= i) {
                cursors.current = run.metadata.as_ref();
                cursors.run += 1;
            }
            out.set_metadata(cursors.current);
        }
        let at = out.samples.len() as u32;
        let tracked = r.tracked();
        out.push_with(r.series, tracked, r.timestamp_ms, r.value, |b| b.extend_from_slice(record));
        let mine = side_entries(&self.exemplars, &mut cursors.exemplar, i);
        out.exemplars.extend(mine.iter().map(|(_, e)| (at, e.clone())));
        let mine = side_entries(&self.created, &mut cursors.created, i);
        out.created.extend(mine.iter().map(|&(_, ms)| (at, ms)));
        let mine = side_entries(&self.histograms, &mut cursors.histogram, i);
        out.histograms.extend(mine.iter().map(|(_, h)| (at, h.clone())));
    }

    /// Splits into `parts` batches by `part_of(sample)`, keeping order, metadata and exemplars.
    pub fn split_by(self, parts: usize, mut part_of: impl FnMut(SampleRef<'_>) -> usize) -> Vec<Batch> {
        let mut out: Vec<Batch> =
            (0..parts.max(1)).map(|_| self.sibling(self.len() / parts.max(1))).collect();
        let last = out.len() - 1;
        let mut cursors = Cursors::default();
        for i in 0..self.samples.len() {
            let p = part_of(self.get(i)).min(last);
            self.copy_sample(i, self.record(i), &mut cursors, &mut out[p]);
        }
        out
    }

    /// Keeps the samples `f` keeps, possibly with another record, with their metadata,
    /// exemplars and created timestamps; returns how many were dropped.
    pub fn retain_map(&mut self, mut f: impl FnMut(SampleRef<'_>) -> Keep) -> usize {
        let before = self.len();
        let mut out = self.sibling(before);
        out.bytes.reserve(self.bytes.len());
        let mut cursors = Cursors::default();
        for i in 0..self.samples.len() {
            match f(self.get(i)) {
                Keep::Drop => {}
                Keep::Same => self.copy_sample(i, self.record(i), &mut cursors, &mut out),
                Keep::Record(r) => self.copy_sample(i, &r, &mut cursors, &mut out),
            }
        }
        *self = out;
        before - self.len()
    }

    /// Appends `other`, keeping its metadata, exemplars and created timestamps with their
    /// samples. Per metadata run, not per sample: a shard's queue appends every scrape's batch
    /// (sample by sample this was ~4 % of trawl's CPU at 1M series). Both batches must hold the
    /// same external labels.
    pub fn append(&mut self, other: Batch) {
        if self.is_empty() && self.metadata.is_empty() {
            let (bytes, samples) = (std::mem::take(&mut self.bytes), std::mem::take(&mut self.samples));
            *self = other;
            if self.bytes.capacity() < bytes.capacity() && self.samples.is_empty() {
                // Keep the larger buffers when `other` is empty.
                self.bytes = bytes;
                self.samples = samples;
            }
            return;
        }
        let base = self.samples.len() as u32;
        let shift = self.bytes.len() as u32;
        // `other`'s samples before its first run have no metadata.
        if other.metadata.first().is_none_or(|r| r.from > 0) && !other.samples.is_empty() {
            self.set_metadata(None);
        }
        self.bytes.extend_from_slice(&other.bytes);
        self.samples.extend(other.samples.iter().map(|r| Rec { off: r.off + shift, ..*r }));
        for run in other.metadata {
            self.push_run(base + run.from, run.metadata);
        }
        self.exemplars.extend(other.exemplars.into_iter().map(|(i, e)| (i + base, e)));
        self.created.extend(other.created.into_iter().map(|(i, c)| (i + base, c)));
        self.histograms.extend(other.histograms.into_iter().map(|(i, h)| (i + base, h)));
    }

    /// Removes and returns the first `n` samples (with their metadata, exemplars and created
    /// timestamps). Taking them all moves the buffers instead of copying.
    pub fn take_front(&mut self, n: usize) -> Batch {
        if n >= self.samples.len() {
            let external = self.external.clone();
            return std::mem::replace(self, Batch { external, ..Batch::new() });
        }
        let at = n as u32;
        let cut = self.samples[n].frame().start;
        let mut front = self.sibling(n);
        front.bytes.extend_from_slice(&self.bytes[..cut]);
        front.samples.extend_from_slice(&self.samples[..n]);
        self.bytes.drain(..cut);
        self.samples.drain(..n);
        for r in &mut self.samples {
            r.off -= cut as u32;
        }
        // Runs starting before `n` go to the front; the run covering sample `n` (the last one
        // starting at or before it) continues at 0 in the rest, and later runs move along.
        let k = self.metadata.partition_point(|r| r.from <= at);
        let mut rest = self.metadata.split_off(k);
        for r in &mut rest {
            r.from -= at;
        }
        if let Some(covering) = self.metadata.last() {
            rest.insert(0, MetadataRun { from: 0, metadata: covering.metadata.clone() });
            if covering.from == at {
                self.metadata.pop();
            }
        }
        front.metadata = std::mem::replace(&mut self.metadata, rest);
        let e = self.exemplars.partition_point(|(i, _)| *i < at);
        front.exemplars = self.exemplars.drain(..e).collect();
        for (i, _) in &mut self.exemplars {
            *i -= at;
        }
        let c = self.created.partition_point(|(i, _)| *i < at);
        front.created = self.created.drain(..c).collect();
        for (i, _) in &mut self.created {
            *i -= at;
        }
        let h = self.histograms.partition_point(|(i, _)| *i < at);
        front.histograms = self.histograms.drain(..h).collect();
        for (i, _) in &mut self.histograms {
            *i -= at;
        }
        front
    }

    /// Splits off the samples from `at` on (with their metadata, exemplars and created
    /// timestamps).
    pub fn split_off(&mut self, at: usize) -> Batch {
        let front = self.take_front(at);
        std::mem::replace(self, front)
    }

    /// The batch with `external` merged into every record (series labels win), for an endpoint
    /// whose external labels the records do not hold. Records that already hold other external
    /// labels keep them (the series' own labels cannot be told from them any more).
    pub fn with_external(mut self, external: &Arc<Labels>) -> Batch {
        if self.has_external(external) {
            return self;
        }
        if self.external.as_ref().is_none_or(|e| e.is_empty()) {
            let mut scratch = Vec::new();
            self.retain_map(|s| {
                let labels = s.labels();
                scratch.clear();
                write_merged(&labels, external, &mut scratch);
                Keep::Record(scratch.clone())
            });
        }
        self.external = Some(external.clone());
        self
    }
}

/// The entries of a side list (exemplars, created timestamps, histograms: sorted by sample
/// index) that belong to sample `i`, for a walk in sample order: `cursor` moves past the entries
/// of earlier samples and past those returned.
#[inline]
pub fn side_entries<'a, T>(list: &'a [(u32, T)], cursor: &mut usize, i: usize) -> &'a [(u32, T)] {
    while list.get(*cursor).is_some_and(|(at, _)| (*at as usize) < i) {
        *cursor += 1;
    }
    let start = *cursor;
    while list.get(*cursor).is_some_and(|(at, _)| *at as usize == i) {
        *cursor += 1;
    }
    &list[start..*cursor]
}

/// Batches kept for reuse by [`Batch::take`]: a scrape's batch is a page's worth of records
/// (~0.3–1 MB on a dense node's pages), and allocating it fresh per scrape cost page faults and
/// reallocation copies (`clear_page` and `memmove` were ~15 % of trawl's CPU at 1M series before
/// the pool, perf/README.md). A few batches are in flight at a time (scrape, fan-out, shard), so
/// a few are kept.
const POOL_BATCHES: usize = 8;
/// A batch whose record buffer grew past this (2 MiB) is freed after use, not kept.
const POOL_MAX_RECORD_BYTES: usize = 2 << 20;

fn pool() -> &'static crossbeam_queue::ArrayQueue<Batch> {
    static POOL: std::sync::OnceLock<crossbeam_queue::ArrayQueue<Batch>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| crossbeam_queue::ArrayQueue::new(POOL_BATCHES))
}

impl Batch {
    /// An empty batch from the pool (or a new one), with room for `samples` samples and
    /// `record_bytes` bytes of records.
    pub fn take(samples: usize, record_bytes: usize) -> Batch {
        let mut b = pool().pop().unwrap_or_default();
        b.samples.reserve(samples);
        b.bytes.reserve(record_bytes);
        b
    }

    /// Gives the batch's buffers back to the pool (or frees them, if the pool is full or they
    /// are very large).
    pub fn recycle(mut self) {
        if self.bytes.capacity() > POOL_MAX_RECORD_BYTES || self.bytes.capacity() == 0 {
            return;
        }
        self.clear();
        self.external = None;
        let _ = pool().push(self);
    }

    /// Samples `range` of this batch.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Slice<'_> {
        Slice { batch: self, range }
    }

    /// All samples of this batch.
    pub fn whole(&self) -> Slice<'_> {
        self.slice(0..self.len())
    }

    /// The samples of `slices` that `keep` keeps, copied into one batch with their metadata,
    /// exemplars and created timestamps (all slices must hold the same external labels).
    pub fn from_slices(slices: &[Slice<'_>], mut keep: impl FnMut(SampleRef<'_>) -> bool) -> Batch {
        let n = slices.iter().map(|s| s.range.len()).sum();
        let mut out =
            Batch { external: slices.first().and_then(|s| s.batch.external.clone()), ..Batch::take(n, 0) };
        for s in slices {
            let mut cursors = Cursors::default();
            for i in s.range.clone() {
                if keep(s.batch.get(i)) {
                    s.batch.copy_sample(i, s.batch.record(i), &mut cursors, &mut out);
                }
            }
        }
        out
    }
}

/// A run of consecutive samples of one batch: what a request is assembled from, so a request
/// that takes part of a scrape's batch copies nothing.
#[derive(Clone, Debug)]
pub struct Slice<'a> {
    /// The batch.
    pub batch: &'a Batch,
    /// The samples, by index.
    pub range: std::ops::Range<usize>,
}

impl<'a> Slice<'a> {
    /// The samples' headers.
    pub fn recs(&self) -> &'a [Rec] {
        &self.batch.samples[self.range.clone()]
    }

    /// The samples.
    pub fn iter(&self) -> impl Iterator<Item = SampleRef<'a>> + 'a {
        let b = self.batch;
        self.range.clone().map(move |i| b.get(i))
    }

    /// The metadata runs that cover the slice: the index of the first one to walk (the run
    /// covering the slice's first sample, or the first run after it).
    pub fn first_run(&self) -> usize {
        let start = self.range.start as u32;
        self.batch.metadata.partition_point(|r| r.from <= start).saturating_sub(1)
    }

    /// The index of the first exemplar at or after the slice's first sample.
    pub fn first_exemplar(&self) -> usize {
        let start = self.range.start as u32;
        self.batch.exemplars.partition_point(|(i, _)| *i < start)
    }

    /// The index of the first created timestamp at or after the slice's first sample.
    pub fn first_created(&self) -> usize {
        let start = self.range.start as u32;
        self.batch.created.partition_point(|(i, _)| *i < start)
    }

    /// The index of the first native histogram at or after the slice's first sample.
    pub fn first_histogram(&self) -> usize {
        let start = self.range.start as u32;
        self.batch.histograms.partition_point(|(i, _)| *i < start)
    }

    /// The slice's samples as 1.0 `WriteRequest.timeseries` fields, as they lie in the batch
    /// (see the module docs), if that is all they are: `None` when a sample of the slice is a
    /// native histogram, or has exemplars and `exemplars` says they are sent.
    pub fn frames(&self, exemplars: bool) -> Option<&'a [u8]> {
        let (Some(first), Some(last)) = (self.recs().first(), self.recs().last()) else { return Some(&[]) };
        let end = self.range.end as u32;
        let has = |at: Option<u32>| at.is_some_and(|i| i < end);
        if has(self.batch.histograms.get(self.first_histogram()).map(|h| h.0))
            || (exemplars && has(self.batch.exemplars.get(self.first_exemplar()).map(|e| e.0)))
        {
            return None;
        }
        Some(&self.batch.bytes[first.frame().start..last.frame().end])
    }
}

/// What [`Batch::retain_map`] does with a sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Keep {
    /// Keep it as it is.
    Same,
    /// Keep it with this record instead.
    Record(Vec<u8>),
    /// Drop it.
    Drop,
}

/// Where a walk in sample order is in a batch's side lists.
#[derive(Default)]
struct Cursors<'a> {
    run: usize,
    current: Option<&'a Arc<Metadata>>,
    exemplar: usize,
    created: usize,
    histogram: usize,
}

impl From<Vec<Sample>> for Batch {
    fn from(samples: Vec<Sample>) -> Self {
        samples.into_iter().collect()
    }
}

impl FromIterator<Sample> for Batch {
    fn from_iter<I: IntoIterator<Item = Sample>>(iter: I) -> Self {
        let mut b = Batch::new();
        for s in iter {
            b.push(s);
        }
        b
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

    /// (series label, timestamp, help, exemplar values, created timestamp) per sample.
    type View = Vec<(String, i64, String, Vec<f64>, Option<i64>)>;

    fn view(b: &Batch) -> View {
        b.iter()
            .zip(b.metadata_iter())
            .enumerate()
            .map(|(i, (s, m))| {
                let exs = b.exemplars.iter().filter(|(at, _)| *at as usize == i).map(|(_, e)| e.value);
                let created = b.created.iter().find(|(at, _)| *at as usize == i).map(|(_, c)| *c);
                let label = s.labels().get("i").unwrap_or("").to_owned();
                (label, s.timestamp_ms, m.map_or(String::new(), |m| m.help.clone()), exs.collect(), created)
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

    /// The frames of a batch are the 1.0 request of its samples, whatever the record sizes
    /// (each crossing of a frame-head size makes the guess wrong, once up and once down), and
    /// after `take_front`, `append` and `retain_map`.
    #[test]
    fn frames_are_the_request() {
        use prost::Message as _;
        // (value length, why)
        let sizes: &[(usize, &str)] = &[
            (1, "head of 2 bytes"),
            (200, "head of 3: the guess of 2 is short"),
            (5, "back to 2: the guess of 3 is long"),
            (20_000, "head of 4, past what the guess reserves"),
            (100, "the inner length straddles 128 with the sample field"),
            (17_000, "long again"),
            (0, "only __name__"),
        ];
        let mut b = Batch::new();
        let mut want = Vec::new();
        for (k, &(n, _)) in sizes.iter().enumerate() {
            let mut l = Labels::from_pairs([("__name__", "m")]);
            if n > 0 {
                l.set("v", "x".repeat(n));
            }
            let (t, v) = (k as i64 * 1_000_000_007 - 3, if k == 2 { -0.0 } else { k as f64 * 1.5 });
            b.push_labels(&l, t, v);
            want.push(crate::prompb::TimeSeries {
                labels: l
                    .iter()
                    .map(|l| crate::prompb::Label { name: l.name.to_string(), value: l.value.to_string() })
                    .collect(),
                samples: vec![crate::prompb::Sample { value: v, timestamp: t }],
                exemplars: vec![],
                histograms: vec![],
            });
        }
        let decode =
            |bytes: &[u8]| crate::prompb::WriteRequest::decode(bytes).expect("frames decode").timeseries;
        let check = |b: &Batch, want: &[crate::prompb::TimeSeries], why: &str| {
            let got = decode(b.whole().frames(false).expect("plain"));
            assert_eq!(got.len(), want.len(), "{why}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g.labels, w.labels, "{why}");
                assert_eq!(g.samples[0].timestamp, w.samples[0].timestamp, "{why}");
                assert_eq!(g.samples[0].value.to_bits(), w.samples[0].value.to_bits(), "{why}");
            }
        };
        check(&b, &want, "as pushed");
        for (i, (_, why)) in sizes.iter().enumerate() {
            assert_eq!(decode_labels(b.record(i)).unwrap().len(), want[i].labels.len(), "record of: {why}");
        }
        for cut in 0..=sizes.len() {
            let mut rest = b.clone();
            let front = rest.take_front(cut);
            check(&front, &want[..cut], "front");
            check(&rest, &want[cut..], "rest");
            let mut joined = front;
            joined.append(rest);
            check(&joined, &want, "appended again");
        }
        let mut odd = b.clone();
        odd.retain_map(|s| if s.timestamp_ms % 2 == 0 { Keep::Same } else { Keep::Drop });
        let kept: Vec<_> = want.iter().filter(|w| w.samples[0].timestamp % 2 == 0).cloned().collect();
        check(&odd, &kept, "retain_map");
        assert!(b.slice(1..3).frames(false).is_some());
    }

    #[test]
    fn records_round_trip_and_match_prost() {
        use prost::Message as _;
        let labels = Labels::from_pairs([("__name__", "m"), ("a", "é\"x"), ("zz", &*"v".repeat(300))]);
        let mut record = Vec::new();
        write_labels(&labels, &mut record);
        assert_eq!(decode_labels(&record).unwrap(), labels, "decodes back");
        let want = crate::prompb::TimeSeries {
            labels: labels
                .iter()
                .map(|l| crate::prompb::Label { name: l.name.to_string(), value: l.value.to_string() })
                .collect(),
            samples: vec![],
            exemplars: vec![],
            histograms: vec![],
        };
        assert_eq!(record, want.encode_to_vec(), "byte-identical to prost's TimeSeries.labels");
        assert_eq!(label_value(&record, "a"), Some("é\"x".as_bytes()));
        assert_eq!(label_value(&record, "b"), None);
        let len: usize = labels.iter().map(|l| label_field_len(l.name.len(), l.value.len())).sum();
        assert_eq!(len, record.len(), "label_field_len adds up");
        // (bytes, why)
        let junk: &[(&[u8], &str)] = &[
            (b"\x0b\x00", "wrong field key"),
            (b"\x0a\x05\x0a\x01a", "length past the end"),
            (b"\x0a\x03\x0a\x01a", "label without a value"),
            (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "varint overflow"),
        ];
        for (raw, why) in junk {
            assert!(decode_labels(raw).is_err(), "{why}");
        }
    }

    #[test]
    fn runs_and_exemplars_follow_their_samples() {
        let b = sample_batch();
        assert_eq!(b.metadata.len(), 3, "one run per change");
        let want = vec![
            ("0".into(), 0, "a".into(), vec![], None),
            ("1".into(), 1, "a".into(), vec![1.5], Some(100)),
            ("2".into(), 2, "b".into(), vec![], Some(100)),
            ("3".into(), 3, String::new(), vec![3.5], None),
        ];
        assert_eq!(view(&b), want);
    }

    #[test]
    fn split_by_keeps_each_samples_extras() {
        let b = sample_batch();
        let whole = view(&b);
        let parts = b.split_by(2, |s| (s.timestamp_ms % 2) as usize);
        for (p, part) in parts.iter().enumerate() {
            let want: Vec<_> = whole.iter().filter(|(_, t, ..)| (*t % 2) as usize == p).cloned().collect();
            assert_eq!(view(part), want, "part {p}");
        }
    }

    #[test]
    fn append_and_retain_map_keep_each_samples_extras() {
        let whole = view(&sample_batch());
        let mut b = Batch::from(vec![s(-1)]);
        b.append(sample_batch());
        assert_eq!(view(&b)[1..], whole[..], "appended after a plain sample");
        assert_eq!(view(&b)[0], ("-1".into(), -1, String::new(), vec![], None), "no metadata");
        let mut twice = sample_batch();
        twice.append(sample_batch());
        assert_eq!(view(&twice), [whole.clone(), whole.clone()].concat(), "appended after extras");
        let mut f = sample_batch();
        assert_eq!(f.retain_map(|x| if x.timestamp_ms == 1 { Keep::Drop } else { Keep::Same }), 1);
        let want: Vec<_> = whole.iter().filter(|(_, t, ..)| *t != 1).cloned().collect();
        assert_eq!(view(&f), want, "a dropped sample takes its exemplar along");
        let mut r = sample_batch();
        r.retain_map(|x| {
            let mut rec = Vec::new();
            write_labels(&Labels::from_pairs([("i", format!("r{}", x.timestamp_ms))]), &mut rec);
            Keep::Record(rec)
        });
        let got: Vec<String> = view(&r).into_iter().map(|v| v.0).collect();
        assert_eq!(got, ["r0", "r1", "r2", "r3"], "records replaced in place");
    }

    #[test]
    fn take_front_and_split_off_keep_each_samples_extras() {
        // (split point, why)
        for (at, why) in [
            (0, "all moves"),
            (2, "inside the first run and between created timestamps"),
            (3, "run boundary"),
            (4, "everything"),
            (9, "past the end"),
        ] {
            let mut b = sample_batch();
            let whole = view(&b);
            let rest = b.split_off(at);
            let at = at.min(whole.len());
            assert_eq!(view(&b), whole[..at], "{why}");
            assert_eq!(view(&rest), whole[at..], "{why}");
            let mut c = sample_batch();
            let front = c.take_front(at);
            assert_eq!((view(&front), view(&c)), (whole[..at].to_vec(), whole[at..].to_vec()), "{why}");
            // The rest keeps working after the front left.
            c.push(s(9));
            assert_eq!(view(&c).last().map(|v| v.1), Some(9), "{why}");
        }
    }

    #[test]
    fn external_labels_are_merged_once() {
        let ext = Arc::new(Labels::from_pairs([("cluster", "c"), ("i", "ext")]));
        let b = Batch::from(vec![s(1)]).with_external(&ext);
        let got = b.get(0).labels();
        assert_eq!(got.get("cluster"), Some("c"));
        assert_eq!(got.get("i"), Some("1"), "the series wins");
        assert!(b.has_external(&ext));
        let again = b.clone().with_external(&ext);
        assert_eq!(again.record(0), b.record(0), "merged once");
        assert!(Batch::new().has_external(&Arc::new(Labels::new())), "none and empty are the same");
    }
}
