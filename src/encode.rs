//! Batch → remote-write 1.0 request body: a `prometheus.WriteRequest` protobuf, snappy-compressed.
//!
//! What this is: a hand-rolled protobuf writer that goes straight from [`Sample`]s to wire bytes
//! in buffers the [`Encoder`] owns and reuses, then snappy's raw block format (not the framed
//! format, which the spec forbids). What this is not: the HTTP side ([`crate::remote_write`]) or a
//! general protobuf library; [`crate::prompb`] has the derived structs used to check this output.
//!
//! # Algorithm
//!
//! ```text
//! group:  for each sample i (arrival order):
//!             s = table[hash(labels)] or a new series   // by value, not by Arc pointer
//!             append i to s's linked list               // keeps per-series arrival order
//! write:  for each series s (order of first appearance):
//!             fields = s's cached label fields, or encode them once and cache them on the
//!                      label set: series ∪ external, sorted merge, series wins
//!             key(1, LEN) varint(len) fields… samples…  // one TimeSeries per distinct series
//! snappy: compress the protobuf into the reused output buffer (max_compress_len bytes)
//! ```
//!
//! Grouping is by label *value* because two `Arc<Labels>` with equal contents are the same
//! series to a receiver: sending them as two TimeSeries could reorder that series' samples.
//! Nothing is allocated per sample: the table, the per-series vectors and the byte buffers are
//! cleared and reused, so after warm-up an encode allocates nothing. The label fields are
//! encoded once per interned series and kept on its label set ([`Labels::derived_bytes`]),
//! so a steady-state request is copies of cached label bytes plus each sample's value and
//! timestamp (see `benches/encode.rs` for the cached and uncached figures).

use std::sync::Arc;

use hashbrown::HashTable;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::labels::{Label, Labels};
use crate::ring::Sample;

pub mod v2;

/// Field numbers of `prometheus.WriteRequest` and the messages inside it.
mod field {
    /// `WriteRequest.timeseries`.
    pub const WRITE_REQUEST_TIMESERIES: u32 = 1;
    /// `TimeSeries.labels`.
    pub const TIMESERIES_LABELS: u32 = 1;
    /// `TimeSeries.samples`.
    pub const TIMESERIES_SAMPLES: u32 = 2;
    /// `Label.name`.
    pub const LABEL_NAME: u32 = 1;
    /// `Label.value`.
    pub const LABEL_VALUE: u32 = 2;
    /// `Sample.value` (double).
    pub const SAMPLE_VALUE: u32 = 1;
    /// `Sample.timestamp` (int64).
    pub const SAMPLE_TIMESTAMP: u32 = 2;
}

/// Bytes of a field key for the field numbers used here (all below 16).
pub(crate) const KEY_LEN_BYTES: usize = 1;
/// Bytes of a `double` payload.
pub(crate) const DOUBLE_LEN_BYTES: usize = 8;
/// End of a per-series sample list.
pub(crate) const NONE: u32 = u32::MAX;

/// Why a batch could not be encoded. Not retryable: the same batch fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// More samples than one request can index (over 4 billion).
    #[error("batch of {0} samples is too large for one request")]
    TooManySamples(usize),
    /// Snappy refused the input (it is over snappy's 4 GiB block limit).
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
}

/// Per distinct series in the batch being encoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeriesSlot {
    /// Hash of the label set, kept so the table can grow without rehashing labels.
    hash: u64,
    /// Index of the series' first sample (its labels are read from there).
    pub(crate) first: u32,
    /// Index of its most recent sample, where the next one is linked on.
    last: u32,
}

/// Samples grouped by series (by label value), each series' samples linked in arrival order.
/// Shared by the 1.0 and 2.0 encoders; its vectors are reused between batches.
#[derive(Default)]
pub(crate) struct Grouping {
    table: HashTable<u32>,
    series: Vec<SeriesSlot>,
    /// `next[i]`: the index of the next sample of sample i's series, or [`NONE`].
    next: Vec<u32>,
    highest_timestamp_ms: i64,
}

/// Encodes batches into remote-write 1.0 bodies, reusing its buffers between calls. One per
/// sender shard; not shared.
pub struct Encoder {
    external: Arc<Labels>,
    groups: Grouping,
    proto: Vec<u8>,
    /// Label fields of a series whose cached ones belong to other external labels.
    scratch: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("external", &self.external)
            .field("proto_capacity", &self.proto.capacity())
            .field("compressed_capacity", &self.compressed.capacity())
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder that merges `external` labels into every series (series labels win on a clash).
    pub fn new(external: Arc<Labels>) -> Self {
        Encoder {
            external,
            groups: Grouping::default(),
            proto: Vec::new(),
            scratch: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Encodes `samples` into one `WriteRequest` and returns the snappy-compressed body. The slice
    /// is valid until the next call.
    pub fn encode(&mut self, samples: &[Sample]) -> Result<&[u8], EncodeError> {
        self.encode_proto(samples)?;
        compress(&mut self.snappy, &self.proto, &mut self.compressed)
    }

    /// The uncompressed protobuf of the last [`encode`](Self::encode).
    pub fn proto(&self) -> &[u8] {
        &self.proto
    }

    /// Number of distinct series (TimeSeries messages) in the last encode.
    pub fn series_count(&self) -> usize {
        self.groups.series.len()
    }

    /// The highest sample timestamp of the last encode, in ms (`i64::MIN` if it was empty).
    pub fn highest_timestamp_ms(&self) -> i64 {
        self.groups.highest_timestamp_ms
    }

    /// Groups and writes the protobuf into `self.proto`.
    fn encode_proto(&mut self, samples: &[Sample]) -> Result<(), EncodeError> {
        if samples.len() >= NONE as usize {
            return Err(EncodeError::TooManySamples(samples.len()));
        }
        self.groups.group(samples);
        self.proto.clear();
        let external = &*self.external;
        // The cached label fields of a series hold the external labels merged in, so they are
        // kept under the external set's hash; an encoder with other external labels (another
        // endpoint) finds a different key and encodes that series' labels itself each time.
        let key = external.content_hash();
        let next = &self.groups.next;
        for slot in &self.groups.series {
            let labels = &*samples[slot.first as usize].series;
            let fields = match labels.derived_bytes(key, |l, b| {
                b.reserve_exact(label_fields_len(l, external));
                write_label_fields(l, external, b);
            }) {
                Some(cached) => cached,
                None => {
                    self.scratch.clear();
                    write_label_fields(labels, external, &mut self.scratch);
                    &self.scratch
                }
            };
            let mut len = fields.len();
            let mut i = slot.first;
            while i != NONE {
                len += nested_len(sample_len(&samples[i as usize]));
                i = next[i as usize];
            }
            let buf = &mut self.proto;
            encode_key(field::WRITE_REQUEST_TIMESERIES, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            buf.extend_from_slice(fields);
            let mut i = slot.first;
            while i != NONE {
                let s = &samples[i as usize];
                encode_key(field::TIMESERIES_SAMPLES, WireType::LengthDelimited, buf);
                encode_varint(sample_len(s) as u64, buf);
                // Both fields are always written, even at their defaults: prost would skip a
                // value of -0.0 (it equals 0.0) and lose its sign.
                encode_key(field::SAMPLE_VALUE, WireType::SixtyFourBit, buf);
                buf.extend_from_slice(&s.value.to_bits().to_le_bytes());
                encode_key(field::SAMPLE_TIMESTAMP, WireType::Varint, buf);
                encode_varint(s.timestamp_ms as u64, buf);
                i = next[i as usize];
            }
        }
        Ok(())
    }
}

/// Bytes of the `TimeSeries.labels` fields of `series` with `external` merged in.
fn label_fields_len(series: &Labels, external: &Labels) -> usize {
    merged(series, external).map(|l| nested_len(label_len(l))).sum()
}

/// Writes the `TimeSeries.labels` fields of `series` with `external` merged in (sorted, the
/// series' label wins on a clash): what a series' TimeSeries starts with in every request.
fn write_label_fields(series: &Labels, external: &Labels, buf: &mut Vec<u8>) {
    for l in merged(series, external) {
        encode_key(field::TIMESERIES_LABELS, WireType::LengthDelimited, buf);
        encode_varint(label_len(l) as u64, buf);
        encode_str(field::LABEL_NAME, &l.name, buf);
        encode_str(field::LABEL_VALUE, &l.value, buf);
    }
}

impl Grouping {
    /// Fills `series` and `next`: one slot per distinct label set, samples linked in order.
    pub(crate) fn group(&mut self, samples: &[Sample]) {
        self.table.clear();
        self.series.clear();
        self.next.clear();
        self.next.resize(samples.len(), NONE);
        self.highest_timestamp_ms = i64::MIN;
        for (i, s) in samples.iter().enumerate() {
            self.highest_timestamp_ms = self.highest_timestamp_ms.max(s.timestamp_ms);
            let hash = s.series.content_hash();
            let series = &mut self.series;
            let found = self.table.find(hash, |&slot| {
                let slot = &series[slot as usize];
                let first = &samples[slot.first as usize].series;
                // The full hash first: the table's 7-bit tags match other series often enough
                // that comparing their labels was 1.7 % of trawl's CPU.
                slot.hash == hash && (Arc::ptr_eq(first, &s.series) || **first == *s.series)
            });
            let i = i as u32;
            match found {
                Some(&slot) => {
                    let slot = &mut series[slot as usize];
                    self.next[slot.last as usize] = i;
                    slot.last = i;
                }
                None => {
                    let slot = series.len() as u32;
                    series.push(SeriesSlot { hash, first: i, last: i });
                    self.table.insert_unique(hash, slot, |&s| series[s as usize].hash);
                }
            }
        }
    }
}

/// Snappy-compresses `input` into `out` and returns the compressed bytes. `out` only grows:
/// it is not cleared or zeroed per call (re-zeroing it for every request was 1.5 % of trawl's
/// CPU at 1M series).
pub(crate) fn compress<'a>(
    snappy: &mut snap::raw::Encoder,
    input: &[u8],
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], EncodeError> {
    // `max_compress_len` is 0 when the input is over snappy's limit; compress then errors.
    let need = snap::raw::max_compress_len(input.len());
    if out.len() < need {
        out.resize(need, 0);
    }
    let n = snappy.compress(input, &mut out[..need])?;
    Ok(&out[..n])
}

/// Length of a length-delimited field whose payload is `len` bytes.
pub(crate) fn nested_len(len: usize) -> usize {
    KEY_LEN_BYTES + encoded_len_varint(len as u64) + len
}

/// Length of a `Label` message.
fn label_len(l: &Label) -> usize {
    nested_len(l.name.len()) + nested_len(l.value.len())
}

/// Length of a `Sample` message with both fields written.
fn sample_len(s: &Sample) -> usize {
    KEY_LEN_BYTES + DOUBLE_LEN_BYTES + KEY_LEN_BYTES + encoded_len_varint(s.timestamp_ms as u64)
}

fn encode_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

/// The sorted union of `series` and `external`; on equal names the series label wins.
pub fn merged<'a>(series: &'a Labels, external: &'a Labels) -> Merged<'a> {
    Merged { a: series.as_slice(), b: external.as_slice() }
}

/// Iterator returned by [`merged`].
#[derive(Debug)]
pub struct Merged<'a> {
    a: &'a [Label],
    b: &'a [Label],
}

impl<'a> Iterator for Merged<'a> {
    type Item = &'a Label;

    fn next(&mut self) -> Option<&'a Label> {
        use std::cmp::Ordering;
        match (self.a.split_first(), self.b.split_first()) {
            (Some((x, ra)), Some((y, rb))) => match x.name.cmp(&y.name) {
                Ordering::Less => {
                    self.a = ra;
                    Some(x)
                }
                Ordering::Greater => {
                    self.b = rb;
                    Some(y)
                }
                Ordering::Equal => {
                    self.a = ra;
                    self.b = rb;
                    Some(x)
                }
            },
            (Some((x, ra)), None) => {
                self.a = ra;
                Some(x)
            }
            (None, Some((y, rb))) => {
                self.b = rb;
                Some(y)
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb;
    use crate::ring::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn sample(labels: &Arc<Labels>, t: i64, v: f64) -> Sample {
        Sample { series: labels.clone(), timestamp_ms: t, value: v }
    }

    /// The naive model: group by label value in order of first appearance, merge external
    /// labels by building a fresh set (series set last, so it wins).
    /// Series as (labels, [(value bits, timestamp)]), in request order.
    type Decoded = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;

    fn model(samples: &[Sample], external: &Labels) -> Decoded {
        let mut out: Vec<(Labels, Vec<(u64, i64)>)> = Vec::new();
        for s in samples {
            let point = (s.value.to_bits(), s.timestamp_ms);
            match out.iter_mut().find(|(l, _)| *l == *s.series) {
                Some((_, pts)) => pts.push(point),
                None => out.push(((*s.series).clone(), vec![point])),
            }
        }
        out.into_iter()
            .map(|(l, pts)| {
                let merged = Labels::from_pairs(
                    external.iter().chain(l.iter()).map(|l| (l.name.clone(), l.value.clone())),
                );
                (merged.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect(), pts)
            })
            .collect()
    }

    fn decoded(body: &[u8]) -> Decoded {
        let req = prompb::decode_snappy(body, 64 << 20).expect("a valid body");
        req.timeseries
            .into_iter()
            .map(|ts| {
                (
                    ts.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                    ts.samples.into_iter().map(|s| (s.value.to_bits(), s.timestamp)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn groups_by_value_and_merges_external_labels() {
        let a1 = Arc::new(Labels::from_pairs([("__name__", "up"), ("job", "x")]));
        let a2 = Arc::new((*a1).clone()); // equal labels, different allocation
        let b = Arc::new(Labels::from_pairs([("__name__", "b"), ("env", "series")]));
        let external = Arc::new(Labels::from_pairs([("env", "ext"), ("region", "eu"), ("a", "1")]));
        let batch = vec![
            sample(&a1, 1, 1.0),
            sample(&b, 1, 2.0),
            sample(&a2, 2, f64::from_bits(STALE_NAN_BITS)),
            sample(&a1, 3, -0.0),
        ];
        let mut enc = Encoder::new(external.clone());
        let body = enc.encode(&batch).unwrap().to_vec();
        assert_eq!(enc.series_count(), 2, "a1 and a2 are one series");
        assert_eq!(enc.highest_timestamp_ms(), 3);
        let got = decoded(&body);
        assert_eq!(got, model(&batch, &external));
        let b_labels: Vec<_> = got[1].0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(b_labels, ["__name__=b", "a=1", "env=series", "region=eu"], "series wins over external");
        assert_eq!(got[0].1[1].0, STALE_NAN_BITS, "StaleNaN bits survive");
        assert_eq!(got[0].1[2].0, (-0.0f64).to_bits(), "the sign of -0.0 survives");
    }

    #[test]
    fn matches_prost_encoding_for_simple_input() {
        use prost::Message as _;
        let s = Arc::new(Labels::from_pairs([("__name__", "m"), ("i", "1")]));
        let batch = vec![sample(&s, 1_700_000_000_000, 42.5), sample(&s, -5, 1.0)];
        let mut enc = Encoder::new(Arc::new(Labels::new()));
        enc.encode(&batch).unwrap();
        let want = prompb::WriteRequest {
            timeseries: vec![prompb::TimeSeries {
                labels: vec![
                    prompb::Label { name: "__name__".into(), value: "m".into() },
                    prompb::Label { name: "i".into(), value: "1".into() },
                ],
                samples: vec![
                    prompb::Sample { value: 42.5, timestamp: 1_700_000_000_000 },
                    prompb::Sample { value: 1.0, timestamp: -5 },
                ],
                exemplars: vec![],
            }],
            metadata: vec![],
        };
        assert_eq!(enc.proto(), want.encode_to_vec().as_slice(), "byte-identical to prost");
    }

    #[test]
    fn cached_label_fields_follow_the_encoder_external_labels() {
        let s = Arc::new(Labels::from_pairs([("__name__", "m"), ("job", "j")]));
        let batch = vec![sample(&s, 1, 1.0)];
        let x = Labels::from_pairs([("cluster", "x")]);
        let y = Labels::from_pairs([("region", "y")]);
        let mut a = Encoder::new(Arc::new(x.clone()));
        let mut b = Encoder::new(Arc::new(y.clone()));
        for round in 0..2 {
            let got_a = decoded(a.encode(&batch).unwrap());
            assert_eq!(got_a, model(&batch, &x), "round {round}: the encoder that filled the cache");
            let got_b = decoded(b.encode(&batch).unwrap());
            assert_eq!(got_b, model(&batch, &y), "round {round}: another endpoint's encoder");
        }
        let filled_for_x = s.derived_bytes(x.content_hash(), |_, _| {}).is_some();
        assert!(filled_for_x, "the first encoder's fields are the ones kept");
    }

    #[test]
    fn empty_batch_is_an_empty_request() {
        let mut enc = Encoder::new(Arc::new(Labels::new()));
        let body = enc.encode(&[]).unwrap().to_vec();
        assert!(decoded(&body).is_empty());
        assert_eq!(enc.highest_timestamp_ms(), i64::MIN);
    }

    fn labels_strategy() -> impl Strategy<Value = Labels> {
        // Few names so external labels often collide with series labels.
        let name = prop::sample::select(vec!["__name__", "a", "b", "env", "job", "zz"]);
        let value = "[a-z0-9é\"\\\\]{1,6}";
        prop::collection::vec((name, value), 0..5)
            .prop_map(|pairs| Labels::from_pairs(pairs.into_iter().map(|(n, v)| (n.to_owned(), v))))
    }

    fn value_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::from_bits(STALE_NAN_BITS)),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            pool in prop::collection::vec(labels_strategy(), 1..8),
            external in labels_strategy(),
            picks in prop::collection::vec((0usize..64, any::<bool>(), any::<i64>(), value_strategy()), 0..64),
        ) {
            // Each label set gets two Arcs, so grouping by pointer alone would be caught.
            let arcs: Vec<[Arc<Labels>; 2]> =
                pool.iter().map(|l| [Arc::new(l.clone()), Arc::new(l.clone())]).collect();
            let batch: Vec<Sample> = picks
                .iter()
                .map(|&(i, twin, t, v)| sample(&arcs[i % arcs.len()][usize::from(twin)], t, v))
                .collect();
            let mut enc = Encoder::new(Arc::new(external.clone()));
            // Encode twice with the same encoder: reused buffers must not leak state, and the
            // second encode reads the label fields the first one cached.
            enc.encode(&batch[..batch.len() / 2]).unwrap();
            let body = enc.encode(&batch).unwrap().to_vec();
            let got = decoded(&body);
            prop_assert_eq!(&got, &model(&batch, &external));
            // Another endpoint's encoder with other external labels on the same label sets
            // must not send the first one's cached fields.
            let other = Labels::from_pairs([("zz_other", "1")]);
            let mut enc2 = Encoder::new(Arc::new(other.clone()));
            let body2 = enc2.encode(&batch).unwrap().to_vec();
            prop_assert_eq!(&decoded(&body2), &model(&batch, &other));
            for (labels, _) in &got {
                prop_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
            }
        }
    }
}
