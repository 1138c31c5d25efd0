//! Remote-write 1.0 protobuf messages (`prometheus.WriteRequest`, from Prometheus'
//! `prompb/remote.proto` and `prompb/types.proto`), hand-written with `prost` derives.
//!
//! What this is: the decoded form of a request, and [`decode_snappy`], the capped snappy +
//! protobuf decode. Tests and test receivers use it as the decode oracle; production uses
//! [`v2::decode_snappy`] to turn a 2.0 body a 1.x receiver refused back into samples, re-sent as
//! 1.0 (`remote_write::request`). What this is not: the hot-path encoder; the sender writes the
//! wire format directly in [`crate::encode`] without building these structs.
//! [`Histogram`] serves both protocol versions (2.0 only adds `start_timestamp`, field 17).

pub mod v2;

/// `prometheus.WriteRequest`: the body of a remote-write 1.0 request (field 2 is reserved).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (TYPE, HELP, UNIT), sent separately from samples in 1.0.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: one label set with its samples in timestamp order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars (trawl sends none).
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Histogram` (and `io.prometheus.write.v2.Histogram`, which adds field 17): a
/// native histogram. The two `oneof`s are read as optional fields, so a decoder sees which kind
/// (integer or float) was sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// `count_int`.
    #[prost(uint64, optional, tag = "1")]
    pub count_int: Option<u64>,
    /// `count_float`.
    #[prost(double, optional, tag = "2")]
    pub count_float: Option<f64>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Resolution.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// `zero_count_int`.
    #[prost(uint64, optional, tag = "6")]
    pub zero_count_int: Option<u64>,
    /// `zero_count_float`.
    #[prost(double, optional, tag = "7")]
    pub zero_count_float: Option<f64>,
    /// Negative spans.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket deltas (integer histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket counts (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Positive spans.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket deltas (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket counts (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// 0 unknown, 1 yes, 2 no, 3 gauge.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom bucket bounds (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
    /// Remote write 2.0: when the histogram started accumulating, in ms (0: unknown).
    #[prost(int64, tag = "17")]
    pub start_timestamp: i64,
}

/// `prometheus.BucketSpan`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span (the first span: the first index).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value (StaleNaN marks staleness; compare bits, not values).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// The exemplar's own labels (e.g. `trace_id`).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The exemplar value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// The metric type: 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram,
    /// 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The metric family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// HELP text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// UNIT text.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Why a remote-write body could not be decoded. Not retryable: the same bytes fail again.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The snappy header announces more than the caller allows (a decompression bomb guard).
    #[error("decompressed body would be {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The length announced by the snappy header.
        len: usize,
        /// The caller's cap.
        limit: usize,
    },
    /// Not a valid snappy raw block.
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    /// Not a valid `prometheus.WriteRequest`.
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decodes a remote-write 1.0 body: snappy raw block, then protobuf. The length announced in
/// the snappy header is checked against `limit` before anything is allocated, because a 10-byte
/// header can otherwise ask for gigabytes.
pub fn decode_snappy(body: &[u8], limit: usize) -> Result<WriteRequest, DecodeError> {
    use prost::Message as _;
    let len = snap::raw::decompress_len(body)?;
    if len > limit {
        return Err(DecodeError::TooLarge { len, limit });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(WriteRequest::decode(raw.as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn round_trip_with_cap() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label { name: "__name__".into(), value: "up".into() }],
                samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![],
        };
        let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
        assert_eq!(decode_snappy(&body, 1 << 20).unwrap(), req);
        assert!(matches!(decode_snappy(&body, 4), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn bomb_header_is_refused_before_allocating() {
        // A varint header announcing ~4 GiB followed by nothing.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_snappy(&body, 64 << 20).is_err());
    }
}
