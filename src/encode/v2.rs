//! Batch → remote-write 2.0 request body: an `io.prometheus.write.v2.Request`, snappy-compressed.
//!
//! What this is: the 2.0 counterpart of [`super::Encoder`], writing protobuf bytes straight from a
//! [`Batch`] into reused buffers: the symbols table (interned per request, `""` first as the spec
//! requires, so a `*_ref` of 0 means "none"), one `TimeSeries` per sample with its label refs
//! (name/value pairs read back out of the sample's record, sorted by name), its metadata (type,
//! HELP, UNIT refs), exemplars and created timestamp, and a native histogram in place of the
//! sample where the batch has one. [`crate::prompb::v2`] is the decode oracle.
//!
//! # Algorithm
//!
//! ```text
//! intern:   for each sample: its record's names and values → refs into a flat buffer;
//!           each metadata run once → (type, help ref, unit ref); each exemplar's labels → refs
//! write:    symbols (field 4), then per sample (field 5): lengths first, then the bytes
//! snappy:   as for 1.0
//! ```
//!
//! Symbols are interned into a byte arena with a hash table of indexes; both are cleared, not
//! freed, between requests, so after warm-up an encode allocates nothing.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::{DOUBLE_LEN_BYTES, EncodeError, KEY_LEN_BYTES, nested_len, write_point};
use crate::batch::{self, Batch, Metadata, Slice, side_entries};
use crate::parse::MetricType;

/// Field numbers of `io.prometheus.write.v2.Request` and the messages inside it
/// (`prompb/io/prometheus/write/v2/types.proto`).
mod field {
    pub const REQUEST_SYMBOLS: u32 = 4;
    pub const REQUEST_TIMESERIES: u32 = 5;
    pub const TIMESERIES_LABELS_REFS: u32 = 1;
    pub const TIMESERIES_SAMPLES: u32 = 2;
    pub const TIMESERIES_HISTOGRAMS: u32 = 3;
    pub const HISTOGRAM_TIMESTAMP: u32 = 15;
    pub const HISTOGRAM_START_TIMESTAMP: u32 = 17;
    pub const TIMESERIES_EXEMPLARS: u32 = 4;
    pub const TIMESERIES_METADATA: u32 = 5;
    pub const SAMPLE_VALUE: u32 = 1;
    pub const SAMPLE_TIMESTAMP: u32 = 2;
    /// `Sample.start_timestamp` (spec 2.0-rc.4, Prometheus 3.9+).
    pub const SAMPLE_START_TIMESTAMP: u32 = 3;
    /// `TimeSeries.created_timestamp` (Prometheus up to 3.8; reserved since).
    pub const TIMESERIES_CREATED_TIMESTAMP: u32 = 6;
    pub const EXEMPLAR_LABELS_REFS: u32 = 1;
    pub const EXEMPLAR_VALUE: u32 = 2;
    pub const EXEMPLAR_TIMESTAMP: u32 = 3;
    pub const METADATA_TYPE: u32 = 1;
    pub const METADATA_HELP_REF: u32 = 3;
    pub const METADATA_UNIT_REF: u32 = 4;
}

/// `Metadata.MetricType` of a parsed type (`METRIC_TYPE_UNSPECIFIED` is 0).
pub fn metric_type(kind: MetricType) -> i32 {
    match kind {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

/// The strings of one request, each stored once in an arena.
#[derive(Default)]
struct Symbols {
    hasher: foldhash::fast::RandomState,
    /// Symbol indexes, keyed by the hash of their bytes.
    table: HashTable<u32>,
    /// Per symbol: its hash (so the table can grow without rehashing) and end offset in `bytes`.
    entries: Vec<(u64, usize)>,
    bytes: Vec<u8>,
}

impl Symbols {
    /// Empties the table and interns `""` as symbol 0 (RW 2.0: symbols MUST start with "").
    fn reset(&mut self) {
        self.table.clear();
        self.entries.clear();
        self.bytes.clear();
        self.intern(b"");
    }

    /// Where symbol `i` is in the arena.
    fn span(entries: &[(u64, usize)], i: u32) -> std::ops::Range<usize> {
        let i = i as usize;
        let start = if i == 0 { 0 } else { entries[i - 1].1 };
        start..entries[i].1
    }

    fn get(&self, i: u32) -> &[u8] {
        &self.bytes[Self::span(&self.entries, i)]
    }

    fn intern(&mut self, s: &[u8]) -> u32 {
        let hash = self.hasher.hash_one(s);
        let (entries, bytes) = (&self.entries, &self.bytes);
        if let Some(&i) = self.table.find(hash, |&i| &bytes[Self::span(entries, i)] == s) {
            return i;
        }
        let i = self.entries.len() as u32;
        self.bytes.extend_from_slice(s);
        self.entries.push((hash, self.bytes.len()));
        let entries = &self.entries;
        self.table.insert_unique(hash, i, |&j| entries[j as usize].0);
        i
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One exemplar's label refs.
#[derive(Clone, Copy, Debug)]
struct ExemplarRefs {
    /// Index into the batch's exemplars.
    index: u32,
    labels: (u32, u32),
}

/// Encodes batches into remote-write 2.0 bodies, reusing its buffers between calls. One per
/// sender shard; not shared.
pub struct Encoder {
    symbols: Symbols,
    /// Label refs of every sample and exemplar, back to back.
    refs: Vec<u32>,
    /// Per sample: its range in `refs`.
    labels: Vec<(u32, u32)>,
    /// Per metadata run: `(type, help ref, unit ref)`, `None` for a run without metadata.
    runs: Vec<Option<(i32, u32, u32)>>,
    exemplars: Vec<ExemplarRefs>,
    proto: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
    highest_timestamp_ms: i64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("v2::Encoder").field("proto_capacity", &self.proto.capacity()).finish_non_exhaustive()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder with empty buffers.
    pub fn new() -> Self {
        Encoder {
            symbols: Symbols::default(),
            refs: Vec::new(),
            labels: Vec::new(),
            runs: Vec::new(),
            exemplars: Vec::new(),
            proto: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            highest_timestamp_ms: i64::MIN,
        }
    }

    /// Encodes `batch` into one `Request` and returns the snappy-compressed body, valid until
    /// the next call.
    pub fn encode(&mut self, batch: &Batch) -> Result<&[u8], EncodeError> {
        self.encode_slices(&[batch.whole()])
    }

    /// [`encode`](Self::encode) for the samples of `slices`, in order.
    pub fn encode_slices(&mut self, slices: &[Slice<'_>]) -> Result<&[u8], EncodeError> {
        self.intern(slices);
        self.write(slices);
        super::compress(&mut self.snappy, &self.proto, &mut self.compressed)
    }

    /// The uncompressed protobuf of the last encode.
    pub fn proto(&self) -> &[u8] {
        &self.proto
    }

    /// The highest sample timestamp of the last encode, in ms (`i64::MIN` if it was empty).
    pub fn highest_timestamp_ms(&self) -> i64 {
        self.highest_timestamp_ms
    }

    /// Exemplars in the last encode.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars.len()
    }

    /// Fills the symbols, `refs`, `labels`, `runs` and `exemplars`: per slice, the runs from
    /// the one covering its first sample, and the exemplars of its samples, in order.
    fn intern(&mut self, slices: &[Slice<'_>]) {
        self.symbols.reset();
        self.refs.clear();
        self.labels.clear();
        self.runs.clear();
        self.exemplars.clear();
        for s in slices {
            let batch = s.batch;
            for rec in s.recs() {
                let start = self.refs.len() as u32;
                // Records are written by this process, so they decode; a field that did not
                // would end the sample's labels there.
                for (name, value) in batch::fields(batch.record_of(rec)).map_while(Result::ok) {
                    self.refs.push(self.symbols.intern(name));
                    self.refs.push(self.symbols.intern(value));
                }
                self.labels.push((start, self.refs.len() as u32));
            }
            let end = s.range.end as u32;
            for run in batch.metadata[s.first_run()..].iter().take_while(|r| r.from < end) {
                let m: Option<&Arc<Metadata>> = run.metadata.as_ref();
                let refs = m.map(|m| {
                    let help = self.symbols.intern(m.help.as_bytes());
                    (metric_type(m.kind), help, self.symbols.intern(m.unit.as_bytes()))
                });
                self.runs.push(refs);
            }
            for (index, (_, e)) in batch
                .exemplars
                .iter()
                .enumerate()
                .skip(s.first_exemplar())
                .take_while(|(_, (at, _))| *at < end)
            {
                let start = self.refs.len() as u32;
                for l in e.labels.iter() {
                    self.refs.push(self.symbols.intern(l.name.as_bytes()));
                    self.refs.push(self.symbols.intern(l.value.as_bytes()));
                }
                let labels = (start, self.refs.len() as u32);
                self.exemplars.push(ExemplarRefs { index: index as u32, labels });
            }
        }
    }

    fn write(&mut self, slices: &[Slice<'_>]) {
        let buf = &mut self.proto;
        buf.clear();
        for i in 0..self.symbols.len() {
            let s = self.symbols.get(i as u32);
            encode_key(field::REQUEST_SYMBOLS, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s);
        }
        let mut highest = i64::MIN;
        let mut labels = self.labels.iter();
        // Where the slices' runs and exemplars start in `self.runs` and `self.exemplars`.
        let (mut run_base, mut exemplar_base) = (0, 0);
        for s in slices {
            let batch = s.batch;
            let (first_run, first_exemplar) = (s.first_run(), s.first_exemplar());
            let (mut run, mut metadata) = (first_run, None);
            let (mut exemplar, mut created) = (first_exemplar, s.first_created());
            let mut hist = s.first_histogram();
            for i in s.range.clone() {
                let rec = &batch.recs()[i];
                let Some(&(from, to)) = labels.next() else { break };
                highest = highest.max(rec.timestamp_ms);
                while batch.metadata.get(run).is_some_and(|r| r.from as usize <= i) {
                    metadata = self.runs.get(run_base + run - first_run).copied().flatten();
                    run += 1;
                }
                // 0 means "unset" on the wire; a real start at the epoch is sent as 1 ms.
                let mut start_ms = 0;
                while let Some(&(at, ms)) = batch.created.get(created).filter(|(at, _)| *at as usize <= i) {
                    if at as usize == i {
                        start_ms = if ms == 0 { 1 } else { ms };
                    }
                    created += 1;
                }
                // This sample's exemplars are `first..exemplar` of the batch's.
                let first = {
                    let mine = side_entries(&batch.exemplars, &mut exemplar, i).len();
                    exemplar - mine
                };
                let refs_of = |k: usize| {
                    let e = &self.exemplars[exemplar_base + k - first_exemplar];
                    (
                        &batch.exemplars[e.index as usize].1,
                        &self.refs[e.labels.0 as usize..e.labels.1 as usize],
                    )
                };
                let labels = &self.refs[from as usize..to as usize];
                let histogram = side_entries(&batch.histograms, &mut hist, i).first().map(|(_, h)| &**h);
                // Lengths first.
                let sample = match histogram {
                    // The stored fields 1 to 14, the timestamp, and the start if known (field 17:
                    // a two-byte key).
                    Some(h) => {
                        h.len() + sample_len(rec.timestamp_ms, start_ms) - DOUBLE_LEN_BYTES - KEY_LEN_BYTES
                            + usize::from(start_ms != 0)
                    }
                    None => sample_len(rec.timestamp_ms, start_ms),
                };
                let mut len = packed_len(labels) + nested_len(sample);
                if start_ms != 0 {
                    len += KEY_LEN_BYTES + encoded_len_varint(start_ms as u64);
                }
                for k in first..exemplar {
                    let (ex, refs) = refs_of(k);
                    len += nested_len(exemplar_len(refs, ex.timestamp_ms));
                }
                if let Some(m) = metadata {
                    len += nested_len(metadata_len(m));
                }
                encode_key(field::REQUEST_TIMESERIES, WireType::LengthDelimited, buf);
                encode_varint(len as u64, buf);
                write_packed(field::TIMESERIES_LABELS_REFS, labels, buf);
                if let Some(h) = histogram {
                    encode_key(field::TIMESERIES_HISTOGRAMS, WireType::LengthDelimited, buf);
                    encode_varint(sample as u64, buf);
                    buf.extend_from_slice(h);
                    encode_key(field::HISTOGRAM_TIMESTAMP, WireType::Varint, buf);
                    encode_varint(rec.timestamp_ms as u64, buf);
                    if start_ms != 0 {
                        encode_key(field::HISTOGRAM_START_TIMESTAMP, WireType::Varint, buf);
                        encode_varint(start_ms as u64, buf);
                    }
                } else {
                    encode_key(field::TIMESERIES_SAMPLES, WireType::LengthDelimited, buf);
                    encode_varint(sample as u64, buf);
                    write_point(
                        field::SAMPLE_VALUE,
                        rec.value,
                        field::SAMPLE_TIMESTAMP,
                        rec.timestamp_ms,
                        buf,
                    );
                    if start_ms != 0 {
                        encode_key(field::SAMPLE_START_TIMESTAMP, WireType::Varint, buf);
                        encode_varint(start_ms as u64, buf);
                    }
                }
                for k in first..exemplar {
                    let (ex, refs) = refs_of(k);
                    encode_key(field::TIMESERIES_EXEMPLARS, WireType::LengthDelimited, buf);
                    encode_varint(exemplar_len(refs, ex.timestamp_ms) as u64, buf);
                    write_packed(field::EXEMPLAR_LABELS_REFS, refs, buf);
                    write_point(
                        field::EXEMPLAR_VALUE,
                        ex.value,
                        field::EXEMPLAR_TIMESTAMP,
                        ex.timestamp_ms,
                        buf,
                    );
                }
                if let Some(m) = metadata {
                    encode_key(field::TIMESERIES_METADATA, WireType::LengthDelimited, buf);
                    encode_varint(metadata_len(m) as u64, buf);
                    encode_key(field::METADATA_TYPE, WireType::Varint, buf);
                    encode_varint(m.0 as u64, buf);
                    encode_key(field::METADATA_HELP_REF, WireType::Varint, buf);
                    encode_varint(u64::from(m.1), buf);
                    encode_key(field::METADATA_UNIT_REF, WireType::Varint, buf);
                    encode_varint(u64::from(m.2), buf);
                }
                // Both places a receiver may read the start from: `Sample.start_timestamp`
                // (the spec since 2.0-rc.4, Prometheus 3.9+) above, and
                // `TimeSeries.created_timestamp` (Prometheus 3.0 to 3.8). Each side skips the
                // field it does not know.
                if start_ms != 0 {
                    encode_key(field::TIMESERIES_CREATED_TIMESTAMP, WireType::Varint, buf);
                    encode_varint(start_ms as u64, buf);
                }
            }
            let end = s.range.end as u32;
            run_base += batch.metadata[first_run..].iter().take_while(|r| r.from < end).count();
            exemplar_base += batch.exemplars[first_exemplar..].iter().take_while(|(at, _)| *at < end).count();
        }
        self.highest_timestamp_ms = highest;
    }
}

/// Length of a packed repeated `uint32` field (nothing when empty, as protobuf omits it).
fn packed_len(refs: &[u32]) -> usize {
    if refs.is_empty() {
        return 0;
    }
    nested_len(refs.iter().map(|&r| encoded_len_varint(u64::from(r))).sum())
}

fn write_packed(tag: u32, refs: &[u32], buf: &mut Vec<u8>) {
    if refs.is_empty() {
        return;
    }
    let payload: usize = refs.iter().map(|&r| encoded_len_varint(u64::from(r))).sum();
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(payload as u64, buf);
    for &r in refs {
        encode_varint(u64::from(r), buf);
    }
}

/// Length of a `Sample` with both fields written.
/// Length of a `Sample` with value and timestamp written, and the start timestamp if not 0.
fn sample_len(timestamp_ms: i64, start_ms: i64) -> usize {
    let start = if start_ms == 0 { 0 } else { KEY_LEN_BYTES + encoded_len_varint(start_ms as u64) };
    KEY_LEN_BYTES + DOUBLE_LEN_BYTES + KEY_LEN_BYTES + encoded_len_varint(timestamp_ms as u64) + start
}

/// Length of an `Exemplar` with value and timestamp written.
fn exemplar_len(refs: &[u32], timestamp_ms: i64) -> usize {
    packed_len(refs) + sample_len(timestamp_ms, 0)
}

/// Length of a `Metadata` with all three fields written.
fn metadata_len((kind, help, unit): (i32, u32, u32)) -> usize {
    3 * KEY_LEN_BYTES
        + encoded_len_varint(kind as u64)
        + encoded_len_varint(u64::from(help))
        + encoded_len_varint(u64::from(unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Exemplar, STALE_NAN_BITS, Sample};
    use crate::labels::Labels;
    use crate::prompb::v2 as pb;
    use proptest::prelude::*;

    /// A request with its symbols resolved: per series (labels, metadata (type, help, unit),
    /// samples as (value bits, ts, start ts), exemplars as (labels, value bits, ts), created ts).
    type Resolved = Vec<(
        Vec<(String, String)>,
        Option<(i32, String, String)>,
        Vec<(u64, i64, i64)>,
        Vec<(Vec<(String, String)>, u64, i64)>,
        i64,
    )>;

    /// Resolves a decoded request, asserting the spec's MUSTs about symbols on the way.
    fn resolve(req: &pb::Request) -> Resolved {
        assert_eq!(req.symbols.first().map(String::as_str), Some(""), "symbols[0] MUST be \"\"");
        let mut unique = req.symbols.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), req.symbols.len(), "symbols are deduplicated");
        let sym = |r: u32| req.symbols.get(r as usize).cloned().expect("ref in range");
        let pairs = |refs: &[u32]| {
            assert_eq!(refs.len() % 2, 0, "label refs come in pairs");
            refs.chunks(2).map(|p| (sym(p[0]), sym(p[1]))).collect::<Vec<_>>()
        };
        req.timeseries
            .iter()
            .map(|ts| {
                let labels = pairs(&ts.labels_refs);
                assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique names");
                let meta = ts.metadata.as_ref().map(|m| (m.r#type, sym(m.help_ref), sym(m.unit_ref)));
                let samples =
                    ts.samples.iter().map(|s| (s.value.to_bits(), s.timestamp, s.start_timestamp)).collect();
                let exemplars = ts
                    .exemplars
                    .iter()
                    .map(|e| (pairs(&e.labels_refs), e.value.to_bits(), e.timestamp))
                    .collect();
                (labels, meta, samples, exemplars, ts.created_timestamp)
            })
            .collect()
    }

    /// The naive encoding: prost structs built the obvious way (a `Vec` searched linearly for
    /// symbols, one series per sample, labels decoded from the records), encoded by prost.
    fn naive(batch: &Batch) -> Vec<u8> {
        use prost::Message as _;
        let mut symbols = vec![String::new()];
        let mut intern = |s: &str| match symbols.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                symbols.push(s.to_owned());
                (symbols.len() - 1) as u32
            }
        };
        let mut series: Vec<pb::TimeSeries> = Vec::new();
        let metadata: Vec<_> = batch.metadata_iter().collect();
        for (i, s) in batch.iter().enumerate() {
            let labels_refs = s.labels().iter().flat_map(|l| [intern(&l.name), intern(&l.value)]).collect();
            let metadata = metadata[i].map(|m| pb::Metadata {
                r#type: metric_type(m.kind),
                help_ref: intern(&m.help),
                unit_ref: intern(&m.unit),
            });
            let mut ts = pb::TimeSeries { labels_refs, metadata, ..Default::default() };
            // 0 is "unset" on the wire: a real start at the epoch goes as 1 ms.
            let start = match batch.created.iter().find(|(at, _)| *at as usize == i) {
                Some(&(_, 0)) => 1,
                Some(&(_, c)) => c,
                None => 0,
            };
            ts.samples.push(pb::Sample { value: s.value, timestamp: s.timestamp_ms, start_timestamp: start });
            ts.created_timestamp = start;
            for (_, e) in batch.exemplars.iter().filter(|(at, _)| *at as usize == i) {
                let labels_refs = e.labels.iter().flat_map(|l| [intern(&l.name), intern(&l.value)]).collect();
                ts.exemplars.push(pb::Exemplar { labels_refs, value: e.value, timestamp: e.timestamp_ms });
            }
            series.push(ts);
        }
        pb::Request { symbols, timeseries: series }.encode_to_vec()
    }

    fn decode(proto: &[u8]) -> pb::Request {
        use prost::Message as _;
        pb::Request::decode(proto).expect("a valid Request")
    }

    fn sample(l: &Arc<Labels>, t: i64, v: f64) -> Sample {
        Sample { series: l.clone(), timestamp_ms: t, value: v }
    }

    #[test]
    fn symbols_metadata_and_exemplars() {
        let a = Arc::new(Labels::from_pairs([("__name__", "http_requests_total"), ("code", "200")]));
        let b = Arc::new(Labels::from_pairs([("__name__", "up")]));
        let meta = Arc::new(Metadata {
            kind: MetricType::Counter,
            help: "Requests.\nAll.".into(),
            unit: String::new(),
        });
        let mut batch = Batch::new();
        batch.set_metadata(Some(&meta));
        batch.push(sample(&a, 1_000, 5.0));
        batch.set_created_from(0, 500);
        batch.push_exemplar(Exemplar {
            labels: Labels::from_pairs([("trace_id", "abc")]),
            value: 0.5,
            timestamp_ms: 999,
        });
        batch.set_metadata(None);
        batch.push(sample(&b, 1_000, 1.0));
        batch.push(sample(&a, 2_000, f64::from_bits(STALE_NAN_BITS)));
        let external = Arc::new(Labels::from_pairs([("cluster", "c")]));
        let batch = batch.with_external(&external);
        let mut enc = Encoder::new();
        enc.encode(&batch).unwrap();
        assert_eq!(enc.exemplar_count(), 1);
        assert_eq!(enc.highest_timestamp_ms(), 2_000);
        let got = resolve(&decode(enc.proto()));
        let s =
            |p: &[(&str, &str)]| p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(got.len(), 3, "one series per sample, as Prometheus sends them");
        assert_eq!(got[0].0, s(&[("__name__", "http_requests_total"), ("cluster", "c"), ("code", "200")]));
        assert_eq!(
            got[0].1,
            Some((1, "Requests.\nAll.".into(), String::new())),
            "counter with HELP, no UNIT"
        );
        assert_eq!(got[0].2, [(5.0f64.to_bits(), 1_000, 500)], "the start timestamp on the sample");
        assert_eq!(got[2].2, [(STALE_NAN_BITS, 2_000, 0)], "StaleNaN exact, in order");
        assert_eq!(got[2].0, got[0].0, "the same series again");
        assert_eq!(got[0].4, 500, "and as the series' created timestamp (Prometheus 3.0 to 3.8)");
        assert_eq!(got[1].4, 0, "none for up");
        assert_eq!(got[0].3, [(s(&[("trace_id", "abc")]), 0.5f64.to_bits(), 999)]);
        assert_eq!(got[1].1, None, "no metadata for up");
        assert_eq!(got, resolve(&decode(&naive(&batch))), "agrees with the naive encoding");
    }

    #[test]
    fn empty_batch_has_only_the_empty_symbol() {
        let mut enc = Encoder::new();
        enc.encode(&Batch::new()).unwrap();
        let req = decode(enc.proto());
        assert_eq!(req.symbols, [""]);
        assert!(req.timeseries.is_empty());
    }

    fn labels_strategy() -> impl Strategy<Value = Labels> {
        let name = prop::sample::select(vec!["__name__", "a", "b", "env", "job", "zz"]);
        prop::collection::vec((name, "[a-z0-9é\"]{1,4}"), 0..5)
            .prop_map(|pairs| Labels::from_pairs(pairs.into_iter().map(|(n, v)| (n.to_owned(), v))))
    }

    fn metadata_strategy() -> impl Strategy<Value = Option<Metadata>> {
        let kind = prop::sample::select(vec![MetricType::Counter, MetricType::Gauge, MetricType::Unknown]);
        prop::option::of((kind, "[a-z ]{0,5}", "(|seconds|bytes)"))
            .prop_map(|m| m.map(|(kind, help, unit)| Metadata { kind, help, unit }))
    }

    /// Any f64 but -0.0: prost skips a field equal to its default, and -0.0 == 0.0, so the naive
    /// encoding loses the sign that the fast one keeps (checked for 1.0 in `encode::tests`).
    fn value() -> impl Strategy<Value = f64> {
        any::<f64>().prop_map(|v| if v == 0.0 { 0.0 } else { v })
    }

    proptest! {
        #[test]
        fn fast_agrees_with_naive(
            pool in prop::collection::vec((labels_strategy(), metadata_strategy()), 1..6),
            external in labels_strategy(),
            picks in prop::collection::vec((0usize..32, any::<i64>(), value(), prop::option::of((labels_strategy(), value()))), 0..40),
            created in prop::collection::vec(prop::option::of(prop_oneof![Just(0i64), any::<i64>()]), 0..40),
        ) {
            // Metadata belongs to the series, as the scrape assigns it per family.
            let series: Vec<(Arc<Labels>, Option<Arc<Metadata>>)> =
                pool.into_iter().map(|(l, m)| (Arc::new(l), m.map(Arc::new))).collect();
            let mut batch = Batch::new();
            for (i, t, v, ex) in picks {
                let (l, m) = &series[i % series.len()];
                batch.set_metadata(m.as_ref());
                batch.push(sample(l, t, v));
                if let Some(&Some(c)) = created.get(batch.len() - 1) {
                    batch.set_created_from(batch.len() - 1, c);
                }
                if let Some((labels, value)) = ex {
                    batch.push_exemplar(Exemplar { labels, value, timestamp_ms: t });
                }
            }
            let batch = batch.with_external(&Arc::new(external));
            let mut enc = Encoder::new();
            // Twice with one encoder: reused buffers must not leak state between requests.
            enc.encode(&batch.clone().take_front(batch.len() / 2)).unwrap();
            enc.encode(&batch).unwrap();
            let fast = resolve(&decode(enc.proto()));
            let slow = resolve(&decode(&naive(&batch)));
            prop_assert_eq!(fast, slow);
            // Slices of the batch (cut inside metadata runs, between exemplars): the same request
            // (symbols may be numbered in another order).
            let whole = resolve(&decode(enc.proto()));
            for cut in [0, batch.len() / 3, batch.len() / 2, batch.len()] {
                let copy = batch.clone();
                enc.encode_slices(&[batch.slice(0..cut), copy.slice(cut..copy.len())]).unwrap();
                prop_assert_eq!(&resolve(&decode(enc.proto())), &whole, "cut at {}", cut);
            }
        }
    }
}
