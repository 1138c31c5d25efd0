//! Batch → remote-write 2.0 request body: an `io.prometheus.write.v2.Request`, snappy-compressed.
//!
//! What this is: the 2.0 counterpart of [`super::Encoder`], writing protobuf bytes straight from a
//! [`Batch`] into reused buffers: the symbols table (interned per request, `""` first as the spec
//! requires, so a `*_ref` of 0 means "none"), one `TimeSeries` per distinct series with its label
//! refs (name/value pairs, sorted by name), samples in arrival order, metadata (type, HELP, UNIT
//! refs) and exemplars. What this is not: histograms (trawl sends none) or created timestamps
//! (the scrape path does not keep `_created` yet); [`crate::prompb::v2`] is the decode oracle.
//!
//! # Algorithm
//!
//! ```text
//! group:    as for 1.0 (series by label value, samples linked in order)
//! intern:   for each series: labels (series ∪ external) → refs into a flat buffer;
//!           its first sample's metadata → (type, help ref, unit ref)
//!           for each exemplar: its labels → refs, filed under its sample's series
//! write:    symbols (field 4), then per series (field 5): lengths first, then the bytes
//! snappy:   as for 1.0
//! ```
//!
//! Symbols are interned into a byte arena with a hash table of indexes; both are cleared, not
//! freed, between requests, so after warm-up an encode allocates nothing.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::{DOUBLE_LEN_BYTES, EncodeError, Grouping, KEY_LEN_BYTES, NONE, merged, nested_len};
use crate::labels::Labels;
use crate::parse::MetricType;
use crate::ring::{Batch, Metadata};

/// Field numbers of `io.prometheus.write.v2.Request` and the messages inside it
/// (`prompb/io/prometheus/write/v2/types.proto`).
mod field {
    pub const REQUEST_SYMBOLS: u32 = 4;
    pub const REQUEST_TIMESERIES: u32 = 5;
    pub const TIMESERIES_LABELS_REFS: u32 = 1;
    pub const TIMESERIES_SAMPLES: u32 = 2;
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
        self.intern("");
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

    fn intern(&mut self, s: &str) -> u32 {
        let hash = self.hasher.hash_one(s.as_bytes());
        let (entries, bytes) = (&self.entries, &self.bytes);
        if let Some(&i) = self.table.find(hash, |&i| &bytes[Self::span(entries, i)] == s.as_bytes()) {
            return i;
        }
        let i = self.entries.len() as u32;
        self.bytes.extend_from_slice(s.as_bytes());
        self.entries.push((hash, self.bytes.len()));
        let entries = &self.entries;
        self.table.insert_unique(hash, i, |&j| entries[j as usize].0);
        i
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Per series: where its label refs are, and its metadata refs.
#[derive(Clone, Copy, Debug)]
struct SeriesRefs {
    labels: (u32, u32),
    /// `(type, help ref, unit ref)`.
    metadata: Option<(i32, u32, u32)>,
}

/// One exemplar, filed under its series.
#[derive(Clone, Copy, Debug)]
struct ExemplarRefs {
    slot: u32,
    /// Index into the batch's exemplars.
    index: u32,
    labels: (u32, u32),
}

/// Encodes batches into remote-write 2.0 bodies, reusing its buffers between calls. One per
/// sender shard; not shared.
pub struct Encoder {
    external: Arc<Labels>,
    groups: Grouping,
    symbols: Symbols,
    /// Label refs of every series and exemplar, back to back.
    refs: Vec<u32>,
    series: Vec<SeriesRefs>,
    exemplars: Vec<ExemplarRefs>,
    /// The series slot of each sample (filled only when there are exemplars).
    slot_of: Vec<u32>,
    /// The created timestamp of each sample, 0 for none (filled only when there are any).
    created_of: Vec<i64>,
    proto: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("v2::Encoder")
            .field("external", &self.external)
            .field("proto_capacity", &self.proto.capacity())
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder that merges `external` labels into every series (series labels win on a clash).
    pub fn new(external: Arc<Labels>) -> Self {
        Encoder {
            external,
            groups: Grouping::default(),
            symbols: Symbols::default(),
            refs: Vec::new(),
            series: Vec::new(),
            exemplars: Vec::new(),
            slot_of: Vec::new(),
            created_of: Vec::new(),
            proto: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Encodes `batch` into one `Request` and returns the snappy-compressed body, valid until
    /// the next call.
    pub fn encode(&mut self, batch: &Batch) -> Result<&[u8], EncodeError> {
        self.encode_proto(batch)?;
        super::compress(&mut self.snappy, &self.proto, &mut self.compressed)
    }

    /// The uncompressed protobuf of the last encode.
    pub fn proto(&self) -> &[u8] {
        &self.proto
    }

    /// The highest sample timestamp of the last encode, in ms (`i64::MIN` if it was empty).
    pub fn highest_timestamp_ms(&self) -> i64 {
        self.groups.highest_timestamp_ms
    }

    /// Exemplars in the last encode.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars.len()
    }

    fn encode_proto(&mut self, batch: &Batch) -> Result<(), EncodeError> {
        let samples = &batch.samples;
        if samples.len() >= NONE as usize {
            return Err(EncodeError::TooManySamples(samples.len()));
        }
        self.groups.group(samples);
        self.intern(batch);
        self.write(batch);
        Ok(())
    }

    /// Fills the symbols, `refs`, `series` and `exemplars`.
    fn intern(&mut self, batch: &Batch) {
        let samples = &batch.samples;
        self.symbols.reset();
        self.refs.clear();
        self.series.clear();
        self.exemplars.clear();
        // Slots are created in order of first appearance, so their first samples increase and
        // one pass over the metadata runs finds each series' metadata.
        let mut metadata = batch.metadata_iter().enumerate();
        for slot in &self.groups.series {
            let start = self.refs.len() as u32;
            for l in merged(&samples[slot.first as usize].series, &self.external) {
                self.refs.push(self.symbols.intern(&l.name));
                self.refs.push(self.symbols.intern(&l.value));
            }
            let labels = (start, self.refs.len() as u32);
            let m: Option<&Arc<Metadata>> =
                metadata.by_ref().find(|(i, _)| *i == slot.first as usize).and_then(|(_, m)| m);
            let metadata =
                m.map(|m| (metric_type(m.kind), self.symbols.intern(&m.help), self.symbols.intern(&m.unit)));
            self.series.push(SeriesRefs { labels, metadata });
        }
        if batch.exemplars.is_empty() {
            return;
        }
        self.slot_of.clear();
        self.slot_of.resize(samples.len(), NONE);
        for (slot, s) in self.groups.series.iter().enumerate() {
            let mut i = s.first;
            while i != NONE {
                self.slot_of[i as usize] = slot as u32;
                i = self.groups.next[i as usize];
            }
        }
        for (index, (at, e)) in batch.exemplars.iter().enumerate() {
            let Some(&slot) = self.slot_of.get(*at as usize) else { continue };
            let start = self.refs.len() as u32;
            for l in e.labels.iter() {
                self.refs.push(self.symbols.intern(&l.name));
                self.refs.push(self.symbols.intern(&l.value));
            }
            let labels = (start, self.refs.len() as u32);
            self.exemplars.push(ExemplarRefs { slot, index: index as u32, labels });
        }
        // Stable: a series' exemplars stay in sample order.
        self.exemplars.sort_by_key(|e| e.slot);
    }

    fn write(&mut self, batch: &Batch) {
        let samples = &batch.samples;
        self.created_of.clear();
        if !batch.created.is_empty() {
            self.created_of.resize(samples.len(), 0);
            for &(at, ms) in &batch.created {
                if let Some(c) = self.created_of.get_mut(at as usize) {
                    // 0 means "unset" on the wire; a real start at the epoch is sent as 1 ms.
                    *c = if ms == 0 { 1 } else { ms };
                }
            }
        }
        let created_of = |i: u32| self.created_of.get(i as usize).copied().unwrap_or(0);
        let buf = &mut self.proto;
        buf.clear();
        for i in 0..self.symbols.len() {
            let s = self.symbols.get(i as u32);
            encode_key(field::REQUEST_SYMBOLS, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s);
        }
        let mut exemplars = self.exemplars.iter().peekable();
        for (slot_index, (slot, refs)) in self.groups.series.iter().zip(&self.series).enumerate() {
            let labels = &self.refs[refs.labels.0 as usize..refs.labels.1 as usize];
            // This series' exemplars are the next `mine` (sorted by slot).
            let mine = exemplars.clone().take_while(|e| e.slot as usize == slot_index).count();
            // Lengths first.
            let mut len = packed_len(labels);
            // The series' created timestamp: its latest sample's (a counter reset moves it).
            let mut created = 0;
            let mut i = slot.first;
            while i != NONE {
                let st = created_of(i);
                created = if st != 0 { st } else { created };
                len += nested_len(sample_len(samples[i as usize].timestamp_ms, st));
                i = self.groups.next[i as usize];
            }
            if created != 0 {
                len += KEY_LEN_BYTES + encoded_len_varint(created as u64);
            }
            for e in exemplars.clone().take(mine) {
                let ex = &batch.exemplars[e.index as usize].1;
                len += nested_len(exemplar_len(
                    &self.refs[e.labels.0 as usize..e.labels.1 as usize],
                    ex.timestamp_ms,
                ));
            }
            if let Some(m) = refs.metadata {
                len += nested_len(metadata_len(m));
            }
            encode_key(field::REQUEST_TIMESERIES, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            write_packed(field::TIMESERIES_LABELS_REFS, labels, buf);
            let mut i = slot.first;
            while i != NONE {
                let s = &samples[i as usize];
                let st = created_of(i);
                encode_key(field::TIMESERIES_SAMPLES, WireType::LengthDelimited, buf);
                encode_varint(sample_len(s.timestamp_ms, st) as u64, buf);
                // Both fields always written, so -0.0 keeps its sign (as in 1.0).
                encode_key(field::SAMPLE_VALUE, WireType::SixtyFourBit, buf);
                buf.extend_from_slice(&s.value.to_bits().to_le_bytes());
                encode_key(field::SAMPLE_TIMESTAMP, WireType::Varint, buf);
                encode_varint(s.timestamp_ms as u64, buf);
                if st != 0 {
                    encode_key(field::SAMPLE_START_TIMESTAMP, WireType::Varint, buf);
                    encode_varint(st as u64, buf);
                }
                i = self.groups.next[i as usize];
            }
            for e in exemplars.by_ref().take(mine) {
                let ex = &batch.exemplars[e.index as usize].1;
                let refs = &self.refs[e.labels.0 as usize..e.labels.1 as usize];
                encode_key(field::TIMESERIES_EXEMPLARS, WireType::LengthDelimited, buf);
                encode_varint(exemplar_len(refs, ex.timestamp_ms) as u64, buf);
                write_packed(field::EXEMPLAR_LABELS_REFS, refs, buf);
                encode_key(field::EXEMPLAR_VALUE, WireType::SixtyFourBit, buf);
                buf.extend_from_slice(&ex.value.to_bits().to_le_bytes());
                encode_key(field::EXEMPLAR_TIMESTAMP, WireType::Varint, buf);
                encode_varint(ex.timestamp_ms as u64, buf);
            }
            if let Some(m) = refs.metadata {
                encode_key(field::TIMESERIES_METADATA, WireType::LengthDelimited, buf);
                encode_varint(metadata_len(m) as u64, buf);
                encode_key(field::METADATA_TYPE, WireType::Varint, buf);
                encode_varint(m.0 as u64, buf);
                encode_key(field::METADATA_HELP_REF, WireType::Varint, buf);
                encode_varint(u64::from(m.1), buf);
                encode_key(field::METADATA_UNIT_REF, WireType::Varint, buf);
                encode_varint(u64::from(m.2), buf);
            }
            // Both places a receiver may read the start from: `Sample.start_timestamp` (the
            // spec since 2.0-rc.4, Prometheus 3.9+) above, and `TimeSeries.created_timestamp`
            // (Prometheus 3.0 to 3.8). Each side skips the field it does not know.
            if created != 0 {
                encode_key(field::TIMESERIES_CREATED_TIMESTAMP, WireType::Varint, buf);
                encode_varint(created as u64, buf);
            }
        }
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
    use crate::prompb::v2 as pb;
    use crate::ring::{Exemplar, STALE_NAN_BITS, Sample};
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
    /// symbols and series), encoded by prost.
    fn naive(batch: &Batch, external: &Labels) -> Vec<u8> {
        use prost::Message as _;
        let mut symbols = vec![String::new()];
        let mut intern = |s: &str| match symbols.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                symbols.push(s.to_owned());
                (symbols.len() - 1) as u32
            }
        };
        let mut series: Vec<(Labels, pb::TimeSeries)> = Vec::new();
        let metadata: Vec<_> = batch.metadata_iter().collect();
        for (i, s) in batch.samples.iter().enumerate() {
            let pos = match series.iter().position(|(l, _)| *l == *s.series) {
                Some(p) => p,
                None => {
                    let merged = Labels::from_pairs(
                        external.iter().chain(s.series.iter()).map(|l| (l.name.clone(), l.value.clone())),
                    );
                    let labels_refs =
                        merged.iter().flat_map(|l| [intern(&l.name), intern(&l.value)]).collect();
                    let metadata = metadata[i].map(|m| pb::Metadata {
                        r#type: metric_type(m.kind),
                        help_ref: intern(&m.help),
                        unit_ref: intern(&m.unit),
                    });
                    let ts = pb::TimeSeries { labels_refs, metadata, ..Default::default() };
                    series.push(((*s.series).clone(), ts));
                    series.len() - 1
                }
            };
            let ts = &mut series[pos].1;
            // 0 is "unset" on the wire: a real start at the epoch goes as 1 ms.
            let start = match batch.created.iter().find(|(at, _)| *at as usize == i) {
                Some(&(_, 0)) => 1,
                Some(&(_, c)) => c,
                None => 0,
            };
            ts.samples.push(pb::Sample { value: s.value, timestamp: s.timestamp_ms, start_timestamp: start });
            if start != 0 {
                ts.created_timestamp = start;
            }
            for (_, e) in batch.exemplars.iter().filter(|(at, _)| *at as usize == i) {
                let labels_refs = e.labels.iter().flat_map(|l| [intern(&l.name), intern(&l.value)]).collect();
                ts.exemplars.push(pb::Exemplar { labels_refs, value: e.value, timestamp: e.timestamp_ms });
            }
        }
        pb::Request { symbols, timeseries: series.into_iter().map(|(_, ts)| ts).collect() }.encode_to_vec()
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
        let mut enc = Encoder::new(external.clone());
        enc.encode(&batch).unwrap();
        assert_eq!(enc.exemplar_count(), 1);
        assert_eq!(enc.highest_timestamp_ms(), 2_000);
        let got = resolve(&decode(enc.proto()));
        let s =
            |p: &[(&str, &str)]| p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(got.len(), 2, "two series");
        assert_eq!(got[0].0, s(&[("__name__", "http_requests_total"), ("cluster", "c"), ("code", "200")]));
        assert_eq!(
            got[0].1,
            Some((1, "Requests.\nAll.".into(), String::new())),
            "counter with HELP, no UNIT"
        );
        assert_eq!(
            got[0].2,
            [(5.0f64.to_bits(), 1_000, 500), (STALE_NAN_BITS, 2_000, 0)],
            "in order, StaleNaN exact, the start timestamp on the sample that has one"
        );
        assert_eq!(got[0].4, 500, "and as the series' created timestamp (Prometheus 3.0 to 3.8)");
        assert_eq!(got[1].4, 0, "none for up");
        assert_eq!(got[0].3, [(s(&[("trace_id", "abc")]), 0.5f64.to_bits(), 999)]);
        assert_eq!(got[1].1, None, "no metadata for up");
        assert_eq!(got, resolve(&decode(&naive(&batch, &external))), "agrees with the naive encoding");
    }

    #[test]
    fn empty_batch_has_only_the_empty_symbol() {
        let mut enc = Encoder::new(Arc::new(Labels::new()));
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
            let external = Arc::new(external);
            let mut enc = Encoder::new(external.clone());
            // Twice with one encoder: reused buffers must not leak state between requests.
            enc.encode(&batch.clone().take_front(batch.len() / 2)).unwrap();
            enc.encode(&batch).unwrap();
            let fast = resolve(&decode(enc.proto()));
            let slow = resolve(&decode(&naive(&batch, &external)));
            prop_assert_eq!(fast, slow);
        }
    }
}
