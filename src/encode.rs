//! Batch → remote-write 1.0 request body: a `prometheus.WriteRequest` protobuf, snappy-compressed.
//!
//! What this is: the request assembly of a sender shard. A [`Batch`] holds each sample as its
//! whole 1.0 `TimeSeries` field already (the record, the labels written by the scrape loops
//! straight from the page, inside a frame with the sample; see [`crate::batch`]), so a request of
//! plain samples is those bytes compressed where they lie, one part per batch the request
//! spans ([`compress_parts`]). A request with native histograms or exemplars to send is written
//! sample by sample: a `TimeSeries` key and length, the record copied, and the `Sample` (or the
//! stored `Histogram` fields and timestamp) and exemplars. Snappy's raw block format (not the
//! framed format, which the spec forbids), into buffers the [`Encoder`] owns and reuses.
//! What this is not: the HTTP side ([`crate::remote_write`]) or a general protobuf library;
//! [`crate::prompb`] has the derived structs used to check this output.
//!
//! # One `TimeSeries` per sample
//!
//! Samples are not grouped by series: a request holds one scrape's series once each unless the
//! queue is behind, and grouping cost a hash-table probe per sample. Prometheus' own queue
//! manager sends one `TimeSeries` per sample too, so receivers see the same shape. After
//! warm-up an encode allocates nothing (`tests/pipeline_alloc.rs`).

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::batch::{Batch, Slice, push_varint, sample_len, side_entries};
use crate::labels::{Label, Labels};

pub mod v2;

/// Field numbers of `prometheus.WriteRequest` and the messages inside it.
pub(crate) mod field {
    /// `WriteRequest.timeseries`.
    pub const WRITE_REQUEST_TIMESERIES: u32 = 1;
    /// `TimeSeries.samples`.
    pub const TIMESERIES_SAMPLES: u32 = 2;
    /// `Sample.value` (double).
    pub const SAMPLE_VALUE: u32 = 1;
    /// `Sample.timestamp` (int64).
    pub const SAMPLE_TIMESTAMP: u32 = 2;
    /// `TimeSeries.exemplars`.
    pub const TIMESERIES_EXEMPLARS: u32 = 3;
    /// `Exemplar.value` (double).
    pub const EXEMPLAR_VALUE: u32 = 2;
    /// `Exemplar.timestamp` (int64).
    pub const EXEMPLAR_TIMESTAMP: u32 = 3;
    /// `TimeSeries.histograms`.
    pub const TIMESERIES_HISTOGRAMS: u32 = 4;
    /// `Histogram.timestamp` (int64; the same number in remote write 2.0).
    pub const HISTOGRAM_TIMESTAMP: u32 = 15;
}

/// Bytes of a field key for the field numbers used here (all below 16).
pub(crate) const KEY_LEN_BYTES: usize = 1;
/// Bytes of a `double` payload.
pub(crate) const DOUBLE_LEN_BYTES: usize = 8;

/// Why a batch could not be encoded. Not retryable: the same batch fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Snappy refused the input (it is over snappy's 4 GiB block limit).
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
}

/// Encodes batches into remote-write 1.0 bodies, reusing its buffers between calls. One per
/// sender shard; not shared.
pub struct Encoder {
    proto: Vec<u8>,
    compressed: Vec<u8>,
    /// Bytes of `compressed` the last encode wrote.
    compressed_len: usize,
    snappy: snap::raw::Encoder,
    highest_timestamp_ms: i64,
    /// Write the batch's exemplars (`send_exemplars`); off, as in Prometheus, by default.
    exemplars: bool,
    /// A sample's exemplars' encoded labels, back to back, and each one's length (reused).
    scratch: Vec<u8>,
    lens: Vec<usize>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("proto_capacity", &self.proto.capacity())
            .field("compressed_capacity", &self.compressed.capacity())
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder with empty buffers.
    pub fn new() -> Self {
        Encoder {
            proto: Vec::new(),
            compressed: Vec::new(),
            compressed_len: 0,
            snappy: snap::raw::Encoder::new(),
            highest_timestamp_ms: i64::MIN,
            exemplars: false,
            scratch: Vec::new(),
            lens: Vec::new(),
        }
    }

    /// Sends the batches' exemplars as `TimeSeries.exemplars` (`send_exemplars: true`).
    pub fn with_exemplars(mut self, on: bool) -> Self {
        self.exemplars = on;
        self
    }

    /// Encodes `batch` into one `WriteRequest` and returns the snappy-compressed body. The slice
    /// is valid until the next call.
    pub fn encode(&mut self, batch: &Batch) -> Result<&[u8], EncodeError> {
        self.encode_slices(&[batch.whole()])
    }

    /// [`encode`](Self::encode) for the samples of `slices`, in order.
    ///
    /// When every slice is plain (no native histogram, no exemplar to send), its samples'
    /// frames in the batch are already the request's `TimeSeries` fields
    /// ([`Slice::frames`]), so they are compressed where they lie; otherwise the request is
    /// written out sample by sample first.
    pub fn encode_slices(&mut self, slices: &[Slice<'_>]) -> Result<&[u8], EncodeError> {
        let frames: Option<smallvec::SmallVec<[&[u8]; 4]>> =
            slices.iter().map(|s| s.frames(self.exemplars)).collect();
        let n = if let Some(frames) = frames {
            self.highest_timestamp_ms =
                slices.iter().flat_map(|s| s.recs()).map(|r| r.timestamp_ms).max().unwrap_or(i64::MIN);
            compress_parts(&mut self.snappy, &frames, &mut self.compressed)?.len()
        } else {
            self.encode_proto(slices);
            compress(&mut self.snappy, &self.proto, &mut self.compressed)?.len()
        };
        self.compressed_len = n;
        Ok(&self.compressed[..n])
    }

    /// The uncompressed protobuf of the last [`encode`](Self::encode) (decompressed again: the
    /// encoder does not keep it; for tests and debugging).
    pub fn proto(&self) -> Vec<u8> {
        snap::raw::Decoder::new().decompress_vec(&self.compressed[..self.compressed_len]).unwrap_or_default()
    }

    /// The highest sample timestamp of the last encode, in ms (`i64::MIN` if it was empty).
    pub fn highest_timestamp_ms(&self) -> i64 {
        self.highest_timestamp_ms
    }

    /// Writes the protobuf into `self.proto`.
    fn encode_proto(&mut self, slices: &[Slice<'_>]) {
        let buf = &mut self.proto;
        buf.clear();
        let mut highest = i64::MIN;
        let (scratch, lens) = (&mut self.scratch, &mut self.lens);
        for s in slices {
            let batch = s.batch;
            let mut hist = s.first_histogram();
            let mut exemplar = s.first_exemplar();
            for (i, rec) in s.range.clone().zip(s.recs()) {
                let record = batch.record_of(rec);
                highest = highest.max(rec.timestamp_ms);
                if let Some((_, h)) = side_entries(&batch.histograms, &mut hist, i).first() {
                    // `TimeSeries.histograms` in place of the sample: the stored fields 1 to 14
                    // plus the timestamp (15).
                    let hlen = h.len() + KEY_LEN_BYTES + encoded_len_varint(rec.timestamp_ms as u64);
                    encode_key(field::WRITE_REQUEST_TIMESERIES, WireType::LengthDelimited, buf);
                    push_varint((record.len() + nested_len(hlen)) as u64, buf);
                    buf.extend_from_slice(record);
                    encode_key(field::TIMESERIES_HISTOGRAMS, WireType::LengthDelimited, buf);
                    push_varint(hlen as u64, buf);
                    buf.extend_from_slice(h);
                    encode_key(field::HISTOGRAM_TIMESTAMP, WireType::Varint, buf);
                    encode_varint(rec.timestamp_ms as u64, buf);
                    continue;
                }
                let mine =
                    if self.exemplars { side_entries(&batch.exemplars, &mut exemplar, i) } else { &[] };
                if mine.is_empty() {
                    // Its frame is its `TimeSeries` field already (see `crate::batch`).
                    buf.extend_from_slice(batch.frame_of(rec));
                    continue;
                }
                // The sample with its exemplars (`send_exemplars`): their labels encoded into
                // `scratch` back to back, each run's end recorded after it.
                let sample = sample_len(rec.timestamp_ms);
                scratch.clear();
                lens.clear();
                let mut exemplars_len = 0;
                for (_, e) in mine {
                    let from = scratch.len();
                    crate::batch::write_labels(&e.labels, scratch);
                    lens.push(scratch.len() - from);
                    exemplars_len += nested_len(scratch.len() - from + sample_len(e.timestamp_ms));
                }
                buf.reserve(record.len() + 2 * KEY_LEN_BYTES + 2 * 5 + sample);
                encode_key(field::WRITE_REQUEST_TIMESERIES, WireType::LengthDelimited, buf);
                push_varint((record.len() + nested_len(sample) + exemplars_len) as u64, buf);
                buf.extend_from_slice(record);
                encode_key(field::TIMESERIES_SAMPLES, WireType::LengthDelimited, buf);
                push_varint(sample as u64, buf);
                write_point(field::SAMPLE_VALUE, rec.value, field::SAMPLE_TIMESTAMP, rec.timestamp_ms, buf);
                // `Exemplar{labels = 1, value = 2, timestamp = 3}`: the labels encoded above,
                // then the point (the same length as a `Sample`'s two fields).
                let mut from = 0;
                for ((_, e), &len) in mine.iter().zip(lens.iter()) {
                    encode_key(field::TIMESERIES_EXEMPLARS, WireType::LengthDelimited, buf);
                    push_varint((len + sample_len(e.timestamp_ms)) as u64, buf);
                    buf.extend_from_slice(&scratch[from..from + len]);
                    from += len;
                    write_point(
                        field::EXEMPLAR_VALUE,
                        e.value,
                        field::EXEMPLAR_TIMESTAMP,
                        e.timestamp_ms,
                        buf,
                    );
                }
            }
        }
        self.highest_timestamp_ms = highest;
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

/// Snappy-compresses the concatenation of `parts` into `out` without concatenating them: each
/// part is compressed on its own and the parts' element streams follow one preamble (the total
/// length). That is a valid raw snappy block: its elements are decoded one after another, and
/// a part's copies reach back only into that part's output. A part's own preamble is written
/// over the end of the previous part's elements, which are saved and put back.
pub(crate) fn compress_parts<'a>(
    snappy: &mut snap::raw::Encoder,
    parts: &[&[u8]],
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], EncodeError> {
    if let [one] = parts {
        return compress(snappy, one, out);
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if snap::raw::max_compress_len(total) == 0 {
        return Err(snap::Error::TooBig { given: total as u64, max: u32::MAX as u64 }.into());
    }
    let preamble = encoded_len_varint(total as u64);
    let need = preamble + parts.iter().map(|p| snap::raw::max_compress_len(p.len())).sum::<usize>();
    if out.len() < need {
        out.resize(need, 0);
    }
    encode_varint(total as u64, &mut &mut out[..preamble]);
    let mut at = preamble;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        // Its preamble (at most 5 bytes) goes just before `at`; `at` is past the total's
        // preamble, which is at least as long.
        let own = encoded_len_varint(part.len() as u64);
        let start = at - own;
        let mut saved = [0u8; 10];
        saved[..own].copy_from_slice(&out[start..at]);
        let n = snappy.compress(part, &mut out[start..start + snap::raw::max_compress_len(part.len())])?;
        out[start..at].copy_from_slice(&saved[..own]);
        at = start + n;
    }
    Ok(&out[..at])
}

/// Writes a point: a `double` field and an `int64` timestamp field (a `Sample` or an `Exemplar`,
/// in 1.0 and 2.0). Both are always written, even at their defaults: prost would skip a value
/// of -0.0 (it equals 0.0) and lose its sign.
/// The field numbers must be below 16 (one-byte keys, as all of remote write's point fields are):
/// the keys are single pushes, not prost's out-of-line varint writer, since the scrape loop
/// writes one point per sample ([`crate::batch`]).
#[inline]
pub(crate) fn write_point(
    value_field: u32,
    value: f64,
    timestamp_field: u32,
    timestamp_ms: i64,
    buf: &mut Vec<u8>,
) {
    debug_assert!(value_field < 16 && timestamp_field < 16, "one-byte keys");
    buf.push((value_field << 3 | WireType::SixtyFourBit as u32) as u8);
    buf.extend_from_slice(&value.to_bits().to_le_bytes());
    buf.push((timestamp_field << 3 | WireType::Varint as u32) as u8);
    push_varint(timestamp_ms as u64, buf);
}

/// Length of a length-delimited field whose payload is `len` bytes.
pub(crate) fn nested_len(len: usize) -> usize {
    KEY_LEN_BYTES + encoded_len_varint(len as u64) + len
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
    use crate::batch::{STALE_NAN_BITS, Sample};
    use crate::prompb;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn sample(labels: &Arc<Labels>, t: i64, v: f64) -> Sample {
        Sample { series: labels.clone(), timestamp_ms: t, value: v }
    }

    /// Series as (labels, [(value bits, timestamp)]), in request order.
    type Decoded = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;

    /// The naive model: one TimeSeries per sample, external labels merged by building a fresh
    /// set (series set last, so it wins).
    fn model(samples: &[Sample], external: &Labels) -> Decoded {
        samples
            .iter()
            .map(|s| {
                let merged = Labels::from_pairs(
                    external.iter().chain(s.series.iter()).map(|l| (l.name.clone(), l.value.clone())),
                );
                (
                    merged.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect(),
                    vec![(s.value.to_bits(), s.timestamp_ms)],
                )
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
    fn one_series_per_sample_with_external_labels_merged() {
        let a = Arc::new(Labels::from_pairs([("__name__", "up"), ("job", "x")]));
        let b = Arc::new(Labels::from_pairs([("__name__", "b"), ("env", "series")]));
        let external = Arc::new(Labels::from_pairs([("env", "ext"), ("region", "eu"), ("a", "1")]));
        let samples = vec![
            sample(&a, 1, 1.0),
            sample(&b, 1, 2.0),
            sample(&a, 2, f64::from_bits(STALE_NAN_BITS)),
            sample(&a, 3, -0.0),
        ];
        let batch = Batch::from(samples.clone()).with_external(&external);
        let mut enc = Encoder::new();
        let body = enc.encode(&batch).unwrap().to_vec();
        assert_eq!(enc.highest_timestamp_ms(), 3);
        let got = decoded(&body);
        assert_eq!(got, model(&samples, &external));
        let b_labels: Vec<_> = got[1].0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(b_labels, ["__name__=b", "a=1", "env=series", "region=eu"], "series wins over external");
        assert_eq!(got[2].1[0].0, STALE_NAN_BITS, "StaleNaN bits survive");
        assert_eq!(got[3].1[0].0, (-0.0f64).to_bits(), "the sign of -0.0 survives");
    }

    #[test]
    fn matches_prost_encoding_for_simple_input() {
        use prost::Message as _;
        let s = Arc::new(Labels::from_pairs([("__name__", "m"), ("i", "1")]));
        let batch = Batch::from(vec![sample(&s, 1_700_000_000_000, 42.5), sample(&s, -5, 1.0)]);
        let mut enc = Encoder::new();
        enc.encode(&batch).unwrap();
        let labels = vec![
            prompb::Label { name: "__name__".into(), value: "m".into() },
            prompb::Label { name: "i".into(), value: "1".into() },
        ];
        let series = |value, timestamp| prompb::TimeSeries {
            labels: labels.clone(),
            samples: vec![prompb::Sample { value, timestamp }],
            exemplars: vec![],
            histograms: vec![],
        };
        let want = prompb::WriteRequest {
            timeseries: vec![series(42.5, 1_700_000_000_000), series(1.0, -5)],
            metadata: vec![],
        };
        assert_eq!(enc.proto().as_slice(), want.encode_to_vec().as_slice(), "byte-identical to prost");
    }

    #[test]
    fn exemplars_only_with_send_exemplars() {
        use prost::Message as _;
        let l = Arc::new(Labels::from_pairs([("__name__", "req_total"), ("i", "1")]));
        let mut batch = Batch::new();
        batch.push(Sample { series: l.clone(), timestamp_ms: 10, value: 1.0 });
        batch.push(Sample { series: l.clone(), timestamp_ms: 20, value: 2.0 });
        for (t, v) in [(15, 0.5), (16, 0.25)] {
            batch.push_exemplar(crate::batch::Exemplar {
                labels: Labels::from_pairs([("trace_id", "abc")]),
                value: v,
                timestamp_ms: t,
            });
        }
        let mut on = Encoder::new().with_exemplars(true);
        on.encode(&batch).unwrap();
        let req = prompb::WriteRequest::decode(on.proto().as_slice()).unwrap();
        assert!(req.timeseries[0].exemplars.is_empty(), "the first sample has none");
        let got: Vec<_> = req.timeseries[1]
            .exemplars
            .iter()
            .map(|e| (e.labels[0].name.clone(), e.labels[0].value.clone(), e.value, e.timestamp))
            .collect();
        assert_eq!(
            got,
            [("trace_id".into(), "abc".into(), 0.5, 15), ("trace_id".into(), "abc".into(), 0.25, 16)]
        );
        assert_eq!(req.timeseries[1].samples[0].value, 2.0);
        let mut off = Encoder::new();
        off.encode(&batch).unwrap();
        let req = prompb::WriteRequest::decode(off.proto().as_slice()).unwrap();
        assert!(req.timeseries.iter().all(|t| t.exemplars.is_empty()), "Prometheus' default: none");
    }

    #[test]
    fn empty_batch_is_an_empty_request() {
        let mut enc = Encoder::new();
        let body = enc.encode(&Batch::new()).unwrap().to_vec();
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
        // Few cases: inputs past the 64 KiB block size are slow to generate in debug.
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Parts compressed apart and joined decode to the parts joined (the reference), for
        /// any cut, empty parts and parts over snappy's 64 KiB block size included.
        #[test]
        fn parts_compress_to_their_concatenation(
            data in prop::collection::vec(prop_oneof![Just(b'a'), any::<u8>()], 0..150_000),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for &c in &at {
                parts.push(&data[from..c]);
                from = c;
            }
            parts.push(&data[from..]);
            let mut out = vec![0xAA; 7];
            let body = compress_parts(&mut snap::raw::Encoder::new(), &parts, &mut out).unwrap().to_vec();
            prop_assert_eq!(snap::raw::Decoder::new().decompress_vec(&body).unwrap(), data);
        }
    }

    proptest! {

        #[test]
        fn round_trip(
            pool in prop::collection::vec(labels_strategy(), 1..8),
            external in labels_strategy(),
            picks in prop::collection::vec((0usize..64, any::<i64>(), value_strategy()), 0..64),
        ) {
            let arcs: Vec<Arc<Labels>> = pool.into_iter().map(Arc::new).collect();
            let samples: Vec<Sample> =
                picks.iter().map(|&(i, t, v)| sample(&arcs[i % arcs.len()], t, v)).collect();
            let external = Arc::new(external);
            let batch = Batch::from(samples.clone()).with_external(&external);
            let mut enc = Encoder::new();
            // Encode twice with the same encoder: reused buffers must not leak state.
            enc.encode(&batch.clone().split_off(batch.len() / 2)).unwrap();
            let body = enc.encode(&batch).unwrap().to_vec();
            let got = decoded(&body);
            prop_assert_eq!(&got, &model(&samples, &external));
            // A request assembled from slices of batches is byte for byte the same.
            let whole = enc.proto();
            let (a, b) = (batch.clone().split_off(0), batch.clone());
            let cut = picks.len() / 3;
            enc.encode_slices(&[a.slice(0..cut), b.slice(cut..b.len())]).unwrap();
            prop_assert_eq!(enc.proto(), whole.clone());
            // And byte for byte what the sample-by-sample writer makes.
            enc.encode_proto(&[batch.whole()]);
            prop_assert_eq!(&enc.proto, &whole);
            for (labels, _) in &got {
                prop_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
            }
        }
    }
}
