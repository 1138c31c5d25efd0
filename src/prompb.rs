//! Remote-write 1.0 protobuf messages (`prometheus.WriteRequest`), written by hand from
//! Prometheus' `prompb/remote.proto` and `prompb/types.proto` (no protoc, no build script).
//!
//! What this is: the decode oracle for tests and test receivers. What this is not: the hot path;
//! [`crate::encode`] writes the same bytes directly, without building these structs.

/// `prometheus.WriteRequest`: field 2 is reserved; metadata is field 3.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (type, help, unit).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
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
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Exemplar labels (e.g. trace_id).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// UNKNOWN=0, COUNTER=1, GAUGE=2, HISTOGRAM=3, GAUGEHISTOGRAM=4, SUMMARY=5, INFO=6, STATESET=7.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// HELP text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// UNIT.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Decodes a snappy-compressed `WriteRequest`, refusing bodies that claim to decompress to more
/// than `limit` bytes (a 10-byte header can otherwise ask for gigabytes; see crates.md).
pub fn decode_snappy(body: &[u8], limit: usize) -> Result<WriteRequest, String> {
    let len = snap::raw::decompress_len(body).map_err(|e| e.to_string())?;
    if len > limit {
        return Err(format!("decompressed size {len} over the limit {limit}"));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| e.to_string())?;
    <WriteRequest as prost::Message>::decode(&raw[..]).map_err(|e| e.to_string())
}
