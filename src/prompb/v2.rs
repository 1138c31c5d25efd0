//! Remote-write 2.0 protobuf messages (`io.prometheus.write.v2.Request`), hand-written with
//! `prost` derives from Prometheus' `prompb/io/prometheus/write/v2/types.proto`.
//!
//! What this is: the decode oracle for tests and test receivers, plus [`decode_snappy`], which
//! production uses too (a 2.0 request body buffered on disk is read back to resend it as 1.0 when
//! the receiver turns out to be older, `remote_write::request`). What this is not: the sender's
//! encoder ([`crate::encode::v2`] writes the wire format directly). Native histograms use
//! [`super::Histogram`] (the same message, with `start_timestamp`). The start of a counter is in
//! both places Prometheus has had it:
//! `TimeSeries.created_timestamp` (field 6, up to v3.8) and `Sample.start_timestamp` (field 3,
//! the spec since 2.0-rc.4, v3.9+, which reserves 6); trawl's encoder writes both.

use super::DecodeError;

/// `io.prometheus.write.v2.Request` (fields 1 to 3 are reserved so a 1.0 decoder sees nothing).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The interned strings; `symbols[0]` MUST be `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// The series.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Label name/value pairs as indexes into `symbols`, sorted by name.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms.
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<super::Histogram>,
    /// Exemplars.
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    /// Type, help and unit.
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// When the counter started, in ms (0: unknown).
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
    /// When the counter started, in ms (0: unknown); spec 2.0-rc.4, Prometheus 3.9+.
    #[prost(int64, tag = "3")]
    pub start_timestamp: i64,
}

/// `io.prometheus.write.v2.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Label pairs as indexes into `symbols`.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    /// `MetricType`: 0 unspecified, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram,
    /// 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// HELP as an index into `symbols` (0: none).
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// UNIT as an index into `symbols` (0: none).
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// Decodes a remote-write 2.0 body (snappy raw block, then protobuf), checking the announced
/// length against `limit` first, as [`super::decode_snappy`] does.
pub fn decode_snappy(body: &[u8], limit: usize) -> Result<Request, DecodeError> {
    use prost::Message as _;
    let len = snap::raw::decompress_len(body)?;
    if len > limit {
        return Err(DecodeError::TooLarge { len, limit });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(Request::decode(raw.as_slice())?)
}
