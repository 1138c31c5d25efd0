//! Native histograms from a scraped protobuf page to the remote-write `Histogram` message.
//!
//! What this is: Prometheus' handling of a native histogram between its protobuf parser and its
//! remote-write queue, in the same order and with the same errors:
//!
//! ```text
//! parse     deltas → absolute counts; spans must cover the buckets       (ProtobufParser.Histogram,
//!           Compact(0): empty buckets dropped, runs merged                 checkNativeHistogramConsistency)
//! schema    native_histogram_min_bucket_factor → a highest schema; a histogram above it is
//!           reduced to it                                                 (maxSchemaAppender, pickSchema)
//! limit     native_histogram_bucket_limit: halve the resolution until the buckets fit, or fail
//!           the scrape with "histogram bucket limit exceeded"             (bucketLimitAppender)
//! validate  schema, counts, spans (agent mode's appender; a failure fails the scrape)
//! encode    remote write `Histogram` fields 1–14 (the sender adds the timestamp, 15, and 2.0's
//!           start timestamp, 17)
//! ```
//!
//! A side is kept as its non-empty buckets, `(index, absolute count)` in index order: that is
//! what `Compact(0)` leaves (maximal runs of non-empty buckets), resolution reduction keeps
//! (merged buckets stay in index order, no compaction after), and spans are the runs of it. What
//! this is not: custom-bucket histograms (NHCB, `convert_classic_histograms_to_nhcb`, which trawl
//! refuses), or histogram arithmetic.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::parse::proto;

/// Lowest exponential schema (`histogram.ExponentialSchemaMin`).
pub const SCHEMA_MIN: i32 = -4;
/// Highest exponential schema (`histogram.ExponentialSchemaMax`).
pub const SCHEMA_MAX: i32 = 8;
/// The reserved range a higher-resolution schema may be reduced from
/// (`ExponentialSchemaMinReserved`/`MaxReserved`).
const SCHEMA_RESERVED: std::ops::RangeInclusive<i32> = -9..=52;
/// The custom-buckets schema.
const SCHEMA_CUSTOM: i32 = -53;

/// Why a native histogram fails its scrape, in Prometheus' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// The spans do not cover the bucket counts given (`checkNativeHistogramConsistency`).
    #[error("histogram {0:?}: {1} side: spans require {2} buckets, have {3}")]
    Inconsistent(String, &'static str, u64, usize),
    /// More buckets than `native_histogram_bucket_limit` even at the lowest resolution.
    #[error("histogram bucket limit exceeded")]
    BucketLimit,
    /// `Histogram.Validate` failed.
    #[error("{0}")]
    Invalid(String),
}

/// Bucket counts: integers (a counter histogram as client libraries expose it) or floats.
#[derive(Clone, Debug, PartialEq)]
pub enum Counts {
    /// Absolute integer counts (from the `*_delta` fields).
    Int(Vec<(i32, i64)>),
    /// Absolute float counts (from the `*_count` fields).
    Float(Vec<(i32, f64)>),
}

impl Counts {
    fn len(&self) -> usize {
        match self {
            Counts::Int(v) => v.len(),
            Counts::Float(v) => v.len(),
        }
    }

    fn indexes(&self) -> Vec<i32> {
        match self {
            Counts::Int(v) => v.iter().map(|b| b.0).collect(),
            Counts::Float(v) => v.iter().map(|b| b.0).collect(),
        }
    }
}

/// A native histogram (exponential schema), canonical as Prometheus stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Native {
    /// A gauge histogram (remote write `reset_hint` GAUGE).
    pub gauge: bool,
    /// Resolution: bucket boundaries grow by 2^(2^-schema).
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations (`count_int` or `count_float`).
    pub count: Count,
    /// In the zero bucket.
    pub zero_count: Count,
    /// Sum of observations.
    pub sum: f64,
    /// Positive buckets.
    pub positive: Counts,
    /// Negative buckets.
    pub negative: Counts,
}

/// A count of the integer or the float kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Count {
    /// `uint64`.
    Int(u64),
    /// `double`.
    Float(f64),
}

/// Buckets from spans and per-bucket values, with `absolute` turning the i-th value into a count.
fn side<T: Copy, U: Copy + PartialEq + Default>(
    spans: &[proto::Span],
    values: &[T],
    mut absolute: impl FnMut(T) -> U,
) -> Vec<(i32, U)> {
    let mut out = Vec::with_capacity(values.len());
    let mut idx = 0i32;
    let mut values = values.iter();
    for (n, s) in spans.iter().enumerate() {
        // The first span's offset is the first index; later ones are gaps after the last.
        idx = if n == 0 { s.offset } else { idx.wrapping_add(s.offset) };
        for _ in 0..s.length {
            let Some(&v) = values.next() else { return out };
            let c = absolute(v);
            if c != U::default() {
                out.push((idx, c));
            }
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// Sum of span lengths.
fn span_buckets(spans: &[proto::Span]) -> u64 {
    spans.iter().map(|s| u64::from(s.length)).sum()
}

/// The highest schema for `native_histogram_min_bucket_factor` (Prometheus' `pickSchema`):
/// the coarsest resolution whose growth factor from bucket to bucket is still at least
/// `factor`. A factor of 1 or less means the finest schema.
pub fn pick_schema(factor: f64) -> i32 {
    let factor = if factor <= 1.0 { 1.00271 } else { factor };
    let floor = (-(factor.log2().log2())).floor();
    if floor >= f64::from(SCHEMA_MAX) {
        SCHEMA_MAX
    } else if floor <= f64::from(SCHEMA_MIN) {
        SCHEMA_MIN
    } else {
        floor as i32
    }
}

impl Native {
    /// The native part of a protobuf histogram, as Prometheus' protobuf parser gives it
    /// (compacted). `name` is for the error message.
    pub fn from_proto(h: &proto::Histogram<'_>, gauge: bool, name: &str) -> Result<Native, HistogramError> {
        let float = h.is_float();
        let (pn, nn) = if float {
            (h.positive_counts.len(), h.negative_counts.len())
        } else {
            (h.positive_deltas.len(), h.negative_deltas.len())
        };
        for (label, spans, n) in [("positive", &h.positive_spans, pn), ("negative", &h.negative_spans, nn)] {
            let need = span_buckets(spans);
            if need != n as u64 {
                return Err(HistogramError::Inconsistent(name.to_owned(), label, need, n));
            }
        }
        for spans in [&h.positive_spans, &h.negative_spans] {
            if let Some((n, s)) = spans.iter().enumerate().skip(1).find(|(_, s)| s.offset < 0) {
                return Err(HistogramError::Invalid(format!(
                    "span number {} with offset {}: histogram has a span whose offset is negative",
                    n + 1,
                    s.offset
                )));
            }
        }
        let (count, zero_count, positive, negative) = if float {
            (
                Count::Float(h.count_float),
                Count::Float(h.zero_count_float),
                Counts::Float(side(&h.positive_spans, &h.positive_counts, |c| c)),
                Counts::Float(side(&h.negative_spans, &h.negative_counts, |c| c)),
            )
        } else {
            let running = || {
                let mut last = 0i64;
                move |d: i64| {
                    last = last.wrapping_add(d);
                    last
                }
            };
            (
                Count::Int(h.count),
                Count::Int(h.zero_count),
                Counts::Int(side(&h.positive_spans, &h.positive_deltas, running())),
                Counts::Int(side(&h.negative_spans, &h.negative_deltas, running())),
            )
        };
        Ok(Native {
            gauge,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            count,
            zero_count,
            sum: h.sum,
            positive,
            negative,
        })
    }

    /// Buckets on both sides.
    pub fn buckets(&self) -> usize {
        self.positive.len() + self.negative.len()
    }

    /// Lowers the resolution to `target` (below the current schema): each bucket goes to
    /// index `((i-1) >> (schema-target)) + 1` and buckets that meet are summed
    /// (`reduceResolution`; indexes in order stay in order, so merging neighbours suffices).
    pub fn reduce(&mut self, target: i32) {
        let shift = (i64::from(self.schema) - i64::from(target)).clamp(0, 63);
        let to = |i: i32| (((i64::from(i) - 1) >> shift) + 1) as i32;
        fn merge<T: Copy + std::ops::Add<Output = T>>(v: &mut Vec<(i32, T)>, to: impl Fn(i32) -> i32) {
            let mut out: Vec<(i32, T)> = Vec::with_capacity(v.len());
            for &(i, c) in v.iter() {
                let t = to(i);
                match out.last_mut() {
                    Some(last) if last.0 == t => last.1 = last.1 + c,
                    _ => out.push((t, c)),
                }
            }
            *v = out;
        }
        for side in [&mut self.positive, &mut self.negative] {
            match side {
                Counts::Int(v) => {
                    let mut w: Vec<(i32, std::num::Wrapping<i64>)> =
                        v.iter().map(|&(i, c)| (i, std::num::Wrapping(c))).collect();
                    merge(&mut w, to);
                    *v = w.into_iter().map(|(i, c)| (i, c.0)).collect();
                }
                Counts::Float(v) => merge(v, to),
            }
        }
        self.schema = target;
    }

    /// Applies a job's `native_histogram_min_bucket_factor` (as its highest schema) and
    /// `native_histogram_bucket_limit` (0: none), in Prometheus' order.
    pub fn limit(&mut self, max_schema: i32, bucket_limit: u64) -> Result<(), HistogramError> {
        if max_schema < SCHEMA_MAX && SCHEMA_RESERVED.contains(&self.schema) && self.schema > max_schema {
            self.reduce(max_schema);
        }
        if bucket_limit > 0 {
            let limit = bucket_limit as usize;
            if self.buckets() > limit && !(SCHEMA_MIN..=SCHEMA_MAX).contains(&self.schema) {
                return Err(HistogramError::BucketLimit);
            }
            while self.buckets() > limit {
                if self.schema <= SCHEMA_MIN {
                    return Err(HistogramError::BucketLimit);
                }
                self.reduce(self.schema - 1);
            }
        }
        Ok(())
    }

    /// `Histogram.Validate` / `FloatHistogram.Validate` (what agent mode's appender checks).
    pub fn validate(&self) -> Result<(), HistogramError> {
        let invalid = |s: String| Err(HistogramError::Invalid(s));
        if self.schema == SCHEMA_CUSTOM {
            if self.positive.len() > 0 {
                return invalid("custom buckets: histogram custom bounds are too few".into());
            }
            if self.negative.len() > 0 {
                return invalid("custom buckets: must not have negative buckets".into());
            }
            if self.zero_threshold != 0.0 {
                return invalid("custom buckets: must have zero threshold of 0".into());
            }
        } else if !(SCHEMA_MIN..=SCHEMA_MAX).contains(&self.schema) {
            return invalid(format!(
                "histogram has an invalid schema, which must be between {SCHEMA_MIN} and {SCHEMA_MAX} for exponential buckets, or {SCHEMA_CUSTOM} for custom buckets, got schema {}",
                self.schema
            ));
        }
        let negative_bucket = |side: &str, n: usize, c: String| {
            format!(
                "{side} side: bucket number {n} has observation count of {c}: histogram has a bucket whose observation count is negative"
            )
        };
        match (&self.count, &self.zero_count, &self.positive, &self.negative) {
            (Count::Int(count), Count::Int(zero), Counts::Int(p), Counts::Int(n)) => {
                let mut total = *zero;
                for (label, side) in [("negative", n), ("positive", p)] {
                    for (k, &(_, c)) in side.iter().enumerate() {
                        if c < 0 {
                            return invalid(negative_bucket(label, k + 1, c.to_string()));
                        }
                        total = total.wrapping_add(c as u64);
                    }
                }
                if self.sum.is_nan() {
                    if total > *count {
                        return invalid(format!(
                            "{total} observations found in buckets, but the Count field is {count}: histogram's observation count should be at least the number of observations found in the buckets"
                        ));
                    }
                } else if total != *count {
                    return invalid(format!(
                        "{total} observations found in buckets, but the Count field is {count}: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"
                    ));
                }
            }
            (Count::Float(count), Count::Float(zero), Counts::Float(p), Counts::Float(n)) => {
                for (label, side) in [("negative", n), ("positive", p)] {
                    if let Some((k, &(_, c))) = side.iter().enumerate().find(|(_, (_, c))| *c < 0.0) {
                        return invalid(negative_bucket(label, k + 1, c.to_string()));
                    }
                }
                if *zero < 0.0 {
                    return invalid(format!(
                        "zero bucket has observation count of {zero}: histogram has a bucket whose observation count is negative"
                    ));
                }
                if *count < 0.0 {
                    return invalid(format!(
                        "observation count is  {count}: histogram's observation count is negative"
                    ));
                }
            }
            _ => return invalid("histogram mixes integer and float counts".into()),
        }
        Ok(())
    }

    /// Writes the remote-write `Histogram` fields 1 to 14 (both protocol versions share them).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self.count {
            Count::Int(c) => {
                encode_key(1, WireType::Varint, out);
                encode_varint(c, out);
            }
            Count::Float(c) => double(2, c, out),
        }
        double(3, self.sum, out);
        encode_key(4, WireType::Varint, out);
        encode_varint(zigzag(i64::from(self.schema)), out);
        double(5, self.zero_threshold, out);
        match self.zero_count {
            Count::Int(c) => {
                encode_key(6, WireType::Varint, out);
                encode_varint(c, out);
            }
            Count::Float(c) => double(7, c, out),
        }
        for (spans_field, side) in [(8, &self.negative), (11, &self.positive)] {
            for (offset, length) in spans(&side.indexes()) {
                let len =
                    2 + encoded_len_varint(zigzag(i64::from(offset))) + encoded_len_varint(u64::from(length));
                encode_key(spans_field, WireType::LengthDelimited, out);
                encode_varint(len as u64, out);
                encode_key(1, WireType::Varint, out);
                encode_varint(zigzag(i64::from(offset)), out);
                encode_key(2, WireType::Varint, out);
                encode_varint(u64::from(length), out);
            }
            match side {
                Counts::Int(v) if !v.is_empty() => {
                    let deltas = |mut emit: Box<dyn FnMut(u64) + '_>| {
                        let mut last = 0i64;
                        for &(_, c) in v {
                            emit(zigzag(c.wrapping_sub(last)));
                            last = c;
                        }
                    };
                    let mut len = 0usize;
                    deltas(Box::new(|d| len += encoded_len_varint(d)));
                    encode_key(spans_field + 1, WireType::LengthDelimited, out);
                    encode_varint(len as u64, out);
                    deltas(Box::new(|d| encode_varint(d, out)));
                }
                Counts::Float(v) if !v.is_empty() => {
                    encode_key(spans_field + 2, WireType::LengthDelimited, out);
                    encode_varint((v.len() * 8) as u64, out);
                    for &(_, c) in v {
                        out.extend_from_slice(&c.to_bits().to_le_bytes());
                    }
                }
                _ => {}
            }
        }
        if self.gauge {
            // `ResetHint.GAUGE`; a counter histogram's hint stays UNKNOWN (0, not written), as
            // Prometheus' scrape leaves it.
            encode_key(14, WireType::Varint, out);
            encode_varint(3, out);
        }
    }
}

fn double(field: u32, v: f64, out: &mut Vec<u8>) {
    encode_key(field, WireType::SixtyFourBit, out);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The spans of sorted bucket indexes: runs of consecutive indexes; the first span's offset is
/// its first index, a later one's the gap after the previous span.
pub fn spans(indexes: &[i32]) -> Vec<(i32, u32)> {
    let mut out: Vec<(i32, u32)> = Vec::new();
    let mut last = 0i32;
    for (k, &i) in indexes.iter().enumerate() {
        match out.last_mut() {
            Some(s) if i == last.wrapping_add(1) => s.1 += 1,
            _ if k == 0 => out.push((i, 1)),
            _ => out.push((i.wrapping_sub(last).wrapping_sub(1), 1)),
        }
        last = i;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hist(schema: i32, spans: &[(i32, u32)], deltas: &[i64], count: u64) -> proto::Histogram<'static> {
        proto::Histogram {
            schema,
            count,
            positive_spans: spans.iter().map(|&(offset, length)| proto::Span { offset, length }).collect(),
            positive_deltas: deltas.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn pick_schema_matches_prometheus_table() {
        // (factor, schema): Prometheus' `TestNativeHistogramMinBucketFactor`-style points; the
        // factor of schema s is 2^(2^-s).
        for (factor, want) in [
            (0.0, 8),            // unset: the finest schema
            (1.0, 8),            // 1 or less: the finest
            (1.00271, 8),        // schema 8's own factor
            (1.1, 2),            // 2^(1/4)=1.19 ≥ 1.1 > 2^(1/8)=1.09
            (2.0, 0),            // exactly schema 0's factor
            (4.0, -1),           // schema -1: factor 4
            (1e300, SCHEMA_MIN), // coarser than the coarsest: clamped
        ] {
            assert_eq!(pick_schema(factor), want, "factor {factor}");
        }
    }

    #[test]
    fn compaction_drops_empty_buckets_and_merges_runs() {
        // counts 1,0,2 | 0,3 at indexes 0,1,2 | 4,5 → runs {0}, {2}, {5}
        let h = hist(0, &[(0, 3), (1, 2)], &[1, -1, 2, -2, 3], 6);
        let n = Native::from_proto(&h, false, "x").unwrap();
        assert_eq!(n.positive, Counts::Int(vec![(0, 1), (2, 2), (5, 3)]));
        let mut out = Vec::new();
        n.encode(&mut out);
        let pb = <crate::prompb::Histogram as prost::Message>::decode(out.as_slice()).unwrap();
        let got: Vec<(i32, u32)> = pb.positive_spans.iter().map(|s| (s.offset, s.length)).collect();
        assert_eq!(got, vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(pb.positive_deltas, vec![1, 1, 1]);
    }

    #[test]
    fn inconsistent_spans_fail_with_prometheus_message() {
        let h = hist(0, &[(0, 3)], &[1, 1], 3);
        let e = Native::from_proto(&h, false, "lat").unwrap_err();
        assert_eq!(e.to_string(), "histogram \"lat\": positive side: spans require 3 buckets, have 2");
    }

    #[test]
    fn validation_cases() {
        // (schema, spans, deltas, count, sum, ok?, reason)
        type Case = (i32, &'static [(i32, u32)], &'static [i64], u64, f64, bool, &'static str);
        let cases: &[Case] = &[
            (3, &[(0, 2)], &[1, 1], 3, 1.0, true, "counts add up"),
            (3, &[(0, 2)], &[1, 1], 4, 1.0, false, "count larger than the buckets' total"),
            (3, &[(0, 2)], &[1, 1], 4, f64::NAN, true, "with a NaN sum the count may be larger"),
            (3, &[(0, 2)], &[1, -2], 0, 1.0, false, "a negative bucket"),
            (9, &[(0, 1)], &[1], 1, 1.0, false, "schema above 8"),
            (-5, &[(0, 1)], &[1], 1, 1.0, false, "schema below -4"),
        ];
        for &(schema, spans, deltas, count, sum, ok, why) in cases {
            let mut h = hist(schema, spans, deltas, count);
            h.sum = sum;
            let n = Native::from_proto(&h, false, "x").unwrap();
            assert_eq!(n.validate().is_ok(), ok, "{why}: {:?}", n.validate());
        }
    }

    #[test]
    fn bucket_limit_halves_resolution_until_it_fits() {
        // 8 consecutive buckets at schema 3 (indexes 1..=8) merge pairwise per step.
        let h = hist(3, &[(1, 8)], &[1, 0, 0, 0, 0, 0, 0, 0], 8);
        let mut n = Native::from_proto(&h, false, "x").unwrap();
        n.limit(SCHEMA_MAX, 2).unwrap();
        assert_eq!(n.schema, 1, "8 buckets → 4 at schema 2 → 2 at schema 1");
        assert_eq!(n.positive, Counts::Int(vec![(1, 4), (2, 4)]));
        let mut n = Native::from_proto(&hist(-4, &[(0, 1), (5, 1)], &[1, 0], 2), false, "x").unwrap();
        assert_eq!(n.limit(SCHEMA_MAX, 1), Err(HistogramError::BucketLimit), "cannot go below -4");
    }

    /// The naive reduction: every bucket's upper bound, and which coarse bucket holds it.
    fn naive_reduce(buckets: &[(i32, i64)], from: i32, to: i32) -> Vec<(i32, i64)> {
        let mut m = std::collections::BTreeMap::new();
        for &(i, c) in buckets {
            // Bucket i at schema s has upper bound 2^(i * 2^-s); the coarse bucket holding it is
            // ceil(i / 2^(from-to)), computed in exact integer arithmetic.
            let f = 1i64 << (from - to);
            let t = (i as i64).div_euclid(f) + if (i as i64).rem_euclid(f) == 0 { 0 } else { 1 };
            *m.entry(t as i32).or_insert(0) += c;
        }
        m.into_iter().collect()
    }

    proptest! {
        #[test]
        fn reduce_agrees_with_naive(
            idx in prop::collection::btree_set(-200i32..200, 0..30),
            from in -2i32..=8,
            down in 0i32..6,
        ) {
            let to = (from - down).max(SCHEMA_MIN);
            let buckets: Vec<(i32, i64)> = idx.iter().map(|&i| (i, (i.unsigned_abs() % 7 + 1) as i64)).collect();
            let mut n = Native {
                gauge: false, schema: from, zero_threshold: 0.0, count: Count::Int(0),
                zero_count: Count::Int(0), sum: 0.0,
                positive: Counts::Int(buckets.clone()), negative: Counts::Int(vec![]),
            };
            n.reduce(to);
            prop_assert_eq!(n.positive, Counts::Int(naive_reduce(&buckets, from, to)));
        }

        #[test]
        fn spans_round_trip(idx in prop::collection::btree_set(-100i32..100, 0..30)) {
            let idx: Vec<i32> = idx.into_iter().collect();
            let mut back = Vec::new();
            let mut at = 0i32;
            for (k, (off, len)) in spans(&idx).into_iter().enumerate() {
                at = if k == 0 { off } else { at + off };
                for _ in 0..len { back.push(at); at += 1; }
            }
            prop_assert_eq!(back, idx);
        }
    }
}
