//! The protobuf exposition format: a body of varint-length-delimited
//! `io.prometheus.client.MetricFamily` messages (`application/vnd.google.protobuf;
//! proto=io.prometheus.client.MetricFamily; encoding=delimited`), read without copying.
//!
//! What this is: a pull reader over the wire format itself. Every string and every repeated
//! field borrows from the body; a [`Metric`] is a set of byte ranges plus the few scalars, so
//! reading a page allocates nothing (the buckets, spans and labels are walked where they lie,
//! with [`Fields`]). Field numbers are those of Prometheus' `prompb/io/prometheus/client/
//! metrics.proto`. What this is not: the mapping of a family to series (Prometheus'
//! `ProtobufParser` state machine) — that is [`crate::scrape`]'s, which turns a family into the
//! same series the text formats give.
//!
//! Why hand-rolled and not prost: prost decodes into owned `String`s and `Vec`s per metric, one
//! allocation per label and per bucket list; the reader here costs a varint walk (see
//! `benches/parse.rs`, "protobuf").

use std::fmt;
use std::ops::Range;

/// Why a protobuf page could not be read. Not retryable: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protobuf exposition: {what} at byte {offset}")]
pub struct ProtoError {
    /// Byte offset in the body where reading failed.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// One field of a message as it is on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (`double`, `fixed64`).
    Fixed64(u64),
    /// Wire type 2 (strings, messages, packed repeated fields).
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl<'a> Value<'a> {
    /// The value as a `double` (0 for another wire type, as a mismatched field is skipped).
    pub fn f64(self) -> f64 {
        match self {
            Value::Fixed64(b) => f64::from_bits(b),
            _ => 0.0,
        }
    }

    /// The value as an unsigned varint.
    pub fn u64(self) -> u64 {
        match self {
            Value::Varint(v) => v,
            _ => 0,
        }
    }

    /// The value as a zigzag (`sint32`/`sint64`) varint.
    pub fn zigzag(self) -> i64 {
        let v = self.u64();
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    /// The payload of a length-delimited field (empty for another wire type).
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Value::Bytes(b) => b,
            _ => &[],
        }
    }
}

/// Reads a varint at `*pos`, advancing it.
fn varint(buf: &[u8], pos: &mut usize, base: usize) -> Result<u64, ProtoError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(ProtoError { offset: base + *pos, what: "truncated varint" });
        };
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(ProtoError { offset: base + *pos - 1, what: "varint overflows 64 bits" });
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtoError { offset: base + *pos, what: "varint longer than 10 bytes" })
}

/// The fields of one message, in wire order. `base` is the message's offset in the body (for
/// error offsets).
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Fields<'a> {
    /// The fields of `buf`, a message starting at byte `base` of the body.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, pos: 0, base }
    }

    /// Offset in the body of the next field.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>, usize), ProtoError>;

    /// The next field: its number, value, and the body offset of its payload.
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read())
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<(u32, Value<'a>, usize), ProtoError> {
        let at = self.base + self.pos;
        let key = varint(self.buf, &mut self.pos, self.base)?;
        let field = (key >> 3) as u32;
        if field == 0 || key >> 3 > u64::from(u32::MAX >> 3) {
            return Err(ProtoError { offset: at, what: "invalid field number" });
        }
        let payload = self.base + self.pos;
        let value = match key & 7 {
            0 => Value::Varint(varint(self.buf, &mut self.pos, self.base)?),
            1 => {
                let b = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            2 => {
                let len = varint(self.buf, &mut self.pos, self.base)?;
                let len = usize::try_from(len)
                    .map_err(|_| ProtoError { offset: at, what: "length-delimited field too long" })?;
                let payload = self.base + self.pos;
                let b = self.take(len)?;
                return Ok((field, Value::Bytes(b), payload));
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => return Err(ProtoError { offset: at, what: "unsupported wire type (groups are not used)" }),
        };
        Ok((field, value, payload))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(ProtoError {
                offset: self.base + self.pos,
                what: "field runs past the end of its message",
            });
        };
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }
}

/// `MetricFamily.type` (`io.prometheus.client.MetricType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 0.
    Counter,
    /// 1.
    Gauge,
    /// 2.
    Summary,
    /// 3.
    Untyped,
    /// 4.
    Histogram,
    /// 5.
    GaugeHistogram,
}

impl Kind {
    fn from_wire(v: u64) -> Option<Kind> {
        Some(match v {
            0 => Kind::Counter,
            1 => Kind::Gauge,
            2 => Kind::Summary,
            3 => Kind::Untyped,
            4 => Kind::Histogram,
            5 => Kind::GaugeHistogram,
            _ => return None,
        })
    }
}

/// One `MetricFamily`, borrowed from the body.
#[derive(Clone, Debug)]
pub struct Family<'a> {
    /// `name` (valid UTF-8, checked).
    pub name: &'a str,
    /// `help` (valid UTF-8, checked).
    pub help: &'a str,
    /// `type`.
    pub kind: Kind,
    /// `unit`.
    pub unit: &'a str,
    /// The `metric` messages: (payload, its offset in the body).
    metrics: Vec<(&'a [u8], usize)>,
}

/// Why a family is refused, in Prometheus' words (`ProtobufParser.Next`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FamilyError {
    /// The wire format is broken.
    #[error(transparent)]
    Wire(#[from] ProtoError),
    /// An empty or non-UTF-8 name.
    #[error("invalid metric name: {0}")]
    Name(String),
    /// HELP that is not UTF-8.
    #[error("invalid help for metric {0:?}")]
    Help(String),
    /// A type number Prometheus does not know.
    #[error("unknown metric type for metric {0:?}: {1}")]
    Type(String, u64),
    /// A string field (label name or value, unit) that is not UTF-8.
    #[error("invalid UTF-8 in a string of metric {0:?}")]
    Utf8(String),
}

impl<'a> Family<'a> {
    /// The family's metrics, in order.
    pub fn metrics(&self) -> impl ExactSizeIterator<Item = (&'a [u8], usize)> + '_ {
        self.metrics.iter().copied()
    }

    /// Whether the family has no metric (Prometheus skips such a family: no HELP, no TYPE).
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }
}

/// The delimited `MetricFamily` messages of a body.
#[derive(Debug)]
pub struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
    /// The metric ranges of the current family (kept to reuse its buffer).
    metrics: Vec<(&'a [u8], usize)>,
}

impl<'a> Reader<'a> {
    /// A reader of `body`.
    pub fn new(body: &'a [u8]) -> Self {
        Reader { body, pos: 0, metrics: Vec::new() }
    }

    /// The next family, or `None` at the end of the body.
    pub fn next_family(&mut self) -> Result<Option<Family<'a>>, FamilyError> {
        if self.pos >= self.body.len() {
            return Ok(None);
        }
        let at = self.pos;
        let len = varint(self.body, &mut self.pos, 0)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&e| e <= self.body.len())
            .ok_or(ProtoError { offset: at, what: "message length runs past the end of the body" })?;
        let msg = &self.body[self.pos..end];
        let base = self.pos;
        self.pos = end;
        let (mut name, mut help, mut kind, mut unit) = (&[][..], &[][..], 0u64, &[][..]);
        self.metrics.clear();
        for f in Fields::new(msg, base) {
            match f? {
                (1, v, _) => name = v.bytes(),
                (2, v, _) => help = v.bytes(),
                (3, v, _) => kind = v.u64(),
                (4, v, off) => self.metrics.push((v.bytes(), off)),
                (5, v, _) => unit = v.bytes(),
                _ => {}
            }
        }
        let name = match std::str::from_utf8(name) {
            Ok(n) if !n.is_empty() => n,
            _ => return Err(FamilyError::Name(String::from_utf8_lossy(name).into_owned())),
        };
        let help = std::str::from_utf8(help).map_err(|_| FamilyError::Help(name.to_owned()))?;
        let unit = std::str::from_utf8(unit).map_err(|_| FamilyError::Utf8(name.to_owned()))?;
        let kind = Kind::from_wire(kind).ok_or_else(|| FamilyError::Type(name.to_owned(), kind))?;
        Ok(Some(Family { name, help, kind, unit, metrics: std::mem::take(&mut self.metrics) }))
    }

    /// Gives a family's buffer back for the next one.
    pub fn recycle(&mut self, family: Family<'a>) {
        let mut m = family.metrics;
        m.clear();
        self.metrics = m;
    }
}

/// One `Metric` message: scalars decoded, repeated fields as the raw bytes of their messages.
#[derive(Clone, Debug, Default)]
pub struct Metric<'a> {
    /// `label` messages (`LabelPair`), as payloads with their body offsets.
    pub labels: Vec<(&'a [u8], usize)>,
    /// The value of `gauge`, `counter` or `untyped` (whichever is present; 0 if none is).
    pub value: f64,
    /// `counter.exemplar`.
    pub exemplar: Option<(&'a [u8], usize)>,
    /// `counter`, `summary` or `histogram` `start_timestamp`, in ms (`None`: unset).
    pub start_ms: Option<i64>,
    /// `summary` (with `start_timestamp` read into `start_ms`).
    pub summary: Option<(&'a [u8], usize)>,
    /// `histogram`.
    pub histogram: Option<(&'a [u8], usize)>,
    /// `timestamp_ms` (0: none, as Prometheus reads it).
    pub timestamp_ms: i64,
}

/// A `google.protobuf.Timestamp` as ms (`seconds*1000 + nanos/1e6`, as Prometheus computes it).
pub fn timestamp_ms(msg: &[u8], base: usize) -> Result<i64, ProtoError> {
    let (mut s, mut n) = (0i64, 0i64);
    for f in Fields::new(msg, base) {
        match f? {
            (1, v, _) => s = v.u64() as i64,
            (2, v, _) => n = i64::from(v.u64() as i32),
            _ => {}
        }
    }
    Ok(s.wrapping_mul(1000).wrapping_add(n / 1_000_000))
}

impl<'a> Metric<'a> {
    /// Reads a `Metric` message into `self` (cleared first, buffers reused).
    pub fn read(&mut self, msg: &'a [u8], base: usize) -> Result<(), ProtoError> {
        self.labels.clear();
        self.value = 0.0;
        self.exemplar = None;
        self.start_ms = None;
        self.summary = None;
        self.histogram = None;
        self.timestamp_ms = 0;
        for f in Fields::new(msg, base) {
            match f? {
                (1, v, off) => self.labels.push((v.bytes(), off)),
                (2 | 5, v, off) => {
                    // Gauge / Untyped { double value = 1 }
                    for g in Fields::new(v.bytes(), off) {
                        if let (1, x, _) = g? {
                            self.value = x.f64();
                        }
                    }
                }
                (3, v, off) => {
                    // Counter { value = 1, exemplar = 2, start_timestamp = 3 }
                    for g in Fields::new(v.bytes(), off) {
                        match g? {
                            (1, x, _) => self.value = x.f64(),
                            (2, x, o) => self.exemplar = Some((x.bytes(), o)),
                            (3, x, o) => self.start_ms = Some(timestamp_ms(x.bytes(), o)?),
                            _ => {}
                        }
                    }
                }
                (4, v, off) => {
                    for g in Fields::new(v.bytes(), off) {
                        if let (4, x, o) = g? {
                            self.start_ms = Some(timestamp_ms(x.bytes(), o)?);
                        }
                    }
                    self.summary = Some((v.bytes(), off));
                }
                (6, v, _) => self.timestamp_ms = v.u64() as i64,
                (7, v, off) => {
                    for g in Fields::new(v.bytes(), off) {
                        if let (15, x, o) = g? {
                            self.start_ms = Some(timestamp_ms(x.bytes(), o)?);
                        }
                    }
                    self.histogram = Some((v.bytes(), off));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A `LabelPair`'s name and value.
pub fn label_pair(msg: &[u8], base: usize) -> Result<(&[u8], &[u8]), ProtoError> {
    let (mut n, mut v) = (&[][..], &[][..]);
    for f in Fields::new(msg, base) {
        match f? {
            (1, x, _) => n = x.bytes(),
            (2, x, _) => v = x.bytes(),
            _ => {}
        }
    }
    Ok((n, v))
}

/// A `Summary`: count, sum and the (quantile, value) pairs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// `sample_count`.
    pub count: u64,
    /// `sample_sum`.
    pub sum: f64,
    /// `quantile` messages as (quantile, value).
    pub quantiles: Vec<(f64, f64)>,
}

impl Summary {
    /// Reads a `Summary` message into `self`.
    pub fn read(&mut self, msg: &[u8], base: usize) -> Result<(), ProtoError> {
        self.count = 0;
        self.sum = 0.0;
        self.quantiles.clear();
        for f in Fields::new(msg, base) {
            match f? {
                (1, v, _) => self.count = v.u64(),
                (2, v, _) => self.sum = v.f64(),
                (3, v, off) => {
                    let (mut q, mut x) = (0.0, 0.0);
                    for g in Fields::new(v.bytes(), off) {
                        match g? {
                            (1, y, _) => q = y.f64(),
                            (2, y, _) => x = y.f64(),
                            _ => {}
                        }
                    }
                    self.quantiles.push((q, x));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A classic bucket: (cumulative count, cumulative count float, upper bound, exemplar).
#[derive(Clone, Debug, Default)]
pub struct Bucket<'a> {
    /// `cumulative_count`.
    pub count: u64,
    /// `cumulative_count_float` (overrides `count` if > 0).
    pub count_float: f64,
    /// `upper_bound`.
    pub upper: f64,
    /// `exemplar`.
    pub exemplar: Option<(&'a [u8], usize)>,
}

/// A `BucketSpan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Gap to the previous span, or the first bucket's index for the first span.
    pub offset: i32,
    /// Consecutive buckets.
    pub length: u32,
}

/// A `Histogram` message, classic and native parts.
#[derive(Clone, Debug, Default)]
pub struct Histogram<'a> {
    /// `sample_count`.
    pub count: u64,
    /// `sample_count_float`.
    pub count_float: f64,
    /// `sample_sum`.
    pub sum: f64,
    /// `bucket`.
    pub buckets: Vec<Bucket<'a>>,
    /// `schema`.
    pub schema: i32,
    /// `zero_threshold`.
    pub zero_threshold: f64,
    /// `zero_count`.
    pub zero_count: u64,
    /// `zero_count_float`.
    pub zero_count_float: f64,
    /// `negative_span`.
    pub negative_spans: Vec<Span>,
    /// `negative_delta`.
    pub negative_deltas: Vec<i64>,
    /// `negative_count`.
    pub negative_counts: Vec<f64>,
    /// `positive_span`.
    pub positive_spans: Vec<Span>,
    /// `positive_delta`.
    pub positive_deltas: Vec<i64>,
    /// `positive_count`.
    pub positive_counts: Vec<f64>,
    /// `exemplars`.
    pub exemplars: Vec<(&'a [u8], usize)>,
}

/// Appends a repeated scalar field, packed or not, with `one` reading one element.
fn repeated<T>(
    v: Value<'_>,
    off: usize,
    out: &mut Vec<T>,
    one: impl Fn(Value<'_>) -> T,
    fixed64: bool,
) -> Result<(), ProtoError> {
    match v {
        Value::Bytes(b) if fixed64 => {
            if b.len() % 8 != 0 {
                return Err(ProtoError { offset: off, what: "packed doubles not a multiple of 8 bytes" });
            }
            out.extend(b.chunks_exact(8).map(|c| {
                one(Value::Fixed64(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])))
            }));
        }
        Value::Bytes(b) => {
            let mut pos = 0;
            while pos < b.len() {
                out.push(one(Value::Varint(varint(b, &mut pos, off)?)));
            }
        }
        v => out.push(one(v)),
    }
    Ok(())
}

fn span(msg: &[u8], base: usize) -> Result<Span, ProtoError> {
    let mut s = Span::default();
    for f in Fields::new(msg, base) {
        match f? {
            (1, v, _) => s.offset = v.zigzag() as i32,
            (2, v, _) => s.length = v.u64() as u32,
            _ => {}
        }
    }
    Ok(s)
}

impl<'a> Histogram<'a> {
    /// Reads a `Histogram` message into `self` (buffers reused).
    pub fn read(&mut self, msg: &'a [u8], base: usize) -> Result<(), ProtoError> {
        self.count = 0;
        self.count_float = 0.0;
        self.sum = 0.0;
        self.buckets.clear();
        self.schema = 0;
        self.zero_threshold = 0.0;
        self.zero_count = 0;
        self.zero_count_float = 0.0;
        self.negative_spans.clear();
        self.negative_deltas.clear();
        self.negative_counts.clear();
        self.positive_spans.clear();
        self.positive_deltas.clear();
        self.positive_counts.clear();
        self.exemplars.clear();
        for f in Fields::new(msg, base) {
            match f? {
                (1, v, _) => self.count = v.u64(),
                (2, v, _) => self.sum = v.f64(),
                (3, v, off) => {
                    let mut b = Bucket::default();
                    for g in Fields::new(v.bytes(), off) {
                        match g? {
                            (1, x, _) => b.count = x.u64(),
                            (2, x, _) => b.upper = x.f64(),
                            (3, x, o) => b.exemplar = Some((x.bytes(), o)),
                            (4, x, _) => b.count_float = x.f64(),
                            _ => {}
                        }
                    }
                    self.buckets.push(b);
                }
                (4, v, _) => self.count_float = v.f64(),
                (5, v, _) => self.schema = v.zigzag() as i32,
                (6, v, _) => self.zero_threshold = v.f64(),
                (7, v, _) => self.zero_count = v.u64(),
                (8, v, _) => self.zero_count_float = v.f64(),
                (9, v, off) => self.negative_spans.push(span(v.bytes(), off)?),
                (10, v, off) => repeated(v, off, &mut self.negative_deltas, |v| v.zigzag(), false)?,
                (11, v, off) => repeated(v, off, &mut self.negative_counts, |v| v.f64(), true)?,
                (12, v, off) => self.positive_spans.push(span(v.bytes(), off)?),
                (13, v, off) => repeated(v, off, &mut self.positive_deltas, |v| v.zigzag(), false)?,
                (14, v, off) => repeated(v, off, &mut self.positive_counts, |v| v.f64(), true)?,
                (16, v, off) => self.exemplars.push((v.bytes(), off)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether it has a native part (Prometheus' `isNativeHistogram`).
    pub fn is_native(&self) -> bool {
        !self.positive_spans.is_empty()
            || !self.negative_spans.is_empty()
            || self.zero_threshold > 0.0
            || self.zero_count > 0
    }

    /// Whether the native part is a float histogram.
    pub fn is_float(&self) -> bool {
        self.count_float > 0.0 || self.zero_count_float > 0.0
    }
}

/// An `Exemplar`: its labels (payloads of `LabelPair`s), value and timestamp in ms.
#[derive(Clone, Debug, Default)]
pub struct Exemplar<'a> {
    /// `label` messages.
    pub labels: Vec<(&'a [u8], usize)>,
    /// `value`.
    pub value: f64,
    /// `timestamp`, in ms.
    pub timestamp_ms: Option<i64>,
}

impl<'a> Exemplar<'a> {
    /// Reads an `Exemplar` message.
    pub fn read(msg: &'a [u8], base: usize) -> Result<Self, ProtoError> {
        let mut e = Exemplar::default();
        for f in Fields::new(msg, base) {
            match f? {
                (1, v, off) => e.labels.push((v.bytes(), off)),
                (2, v, _) => e.value = v.f64(),
                (3, v, off) => e.timestamp_ms = Some(timestamp_ms(v.bytes(), off)?),
                _ => {}
            }
        }
        Ok(e)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
            Kind::Untyped => "untyped",
            Kind::Histogram => "histogram",
            Kind::GaugeHistogram => "gaugehistogram",
        })
    }
}

/// Body range of a borrowed sub-slice (for keeping references without lifetimes).
pub fn range_of(body: &[u8], part: &[u8]) -> Range<u32> {
    let start = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    if part.is_empty() || start > body.len() {
        return 0..0;
    }
    start as u32..(start + part.len()) as u32
}

/// The exposition messages as prost structs: the oracle for this reader's tests and the way
/// tests, benches and the fuzz target write protobuf pages. Not used on the scrape path.
#[doc(hidden)]
pub mod model {
    #![allow(missing_docs)]

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        #[prost(double, tag = "1")]
        pub value: f64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(message, optional, tag = "3")]
        pub timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Counter {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(message, optional, tag = "2")]
        pub exemplar: Option<Exemplar>,
        #[prost(message, optional, tag = "3")]
        pub start_timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quantile {
        #[prost(double, tag = "1")]
        pub quantile: f64,
        #[prost(double, tag = "2")]
        pub value: f64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(uint64, tag = "1")]
        pub sample_count: u64,
        #[prost(double, tag = "2")]
        pub sample_sum: f64,
        #[prost(message, repeated, tag = "3")]
        pub quantile: Vec<Quantile>,
        #[prost(message, optional, tag = "4")]
        pub start_timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bucket {
        #[prost(uint64, tag = "1")]
        pub cumulative_count: u64,
        #[prost(double, tag = "4")]
        pub cumulative_count_float: f64,
        #[prost(double, tag = "2")]
        pub upper_bound: f64,
        #[prost(message, optional, tag = "3")]
        pub exemplar: Option<Exemplar>,
    }

    /// The same message as remote write's (`offset` sint32 = 1, `length` uint32 = 2).
    pub use crate::prompb::BucketSpan;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, tag = "1")]
        pub sample_count: u64,
        #[prost(double, tag = "4")]
        pub sample_count_float: f64,
        #[prost(double, tag = "2")]
        pub sample_sum: f64,
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
        #[prost(message, optional, tag = "15")]
        pub start_timestamp: Option<Timestamp>,
        #[prost(sint32, tag = "5")]
        pub schema: i32,
        #[prost(double, tag = "6")]
        pub zero_threshold: f64,
        #[prost(uint64, tag = "7")]
        pub zero_count: u64,
        #[prost(double, tag = "8")]
        pub zero_count_float: f64,
        #[prost(message, repeated, tag = "9")]
        pub negative_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "10")]
        pub negative_delta: Vec<i64>,
        #[prost(double, repeated, tag = "11")]
        pub negative_count: Vec<f64>,
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "13")]
        pub positive_delta: Vec<i64>,
        #[prost(double, repeated, tag = "14")]
        pub positive_count: Vec<f64>,
        #[prost(message, repeated, tag = "16")]
        pub exemplars: Vec<Exemplar>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Gauge>,
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Counter>,
        #[prost(message, optional, tag = "4")]
        pub summary: Option<Summary>,
        #[prost(message, optional, tag = "5")]
        pub untyped: Option<Gauge>,
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
        #[prost(int64, tag = "6")]
        pub timestamp_ms: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub help: String,
        #[prost(int32, tag = "3")]
        pub r#type: i32,
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// The delimited page of `families`.
    pub fn page(families: &[MetricFamily]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in families {
            prost::Message::encode_length_delimited(f, &mut out).expect("a Vec grows");
        }
        out
    }

    /// A label pair.
    pub fn label(name: &str, value: &str) -> LabelPair {
        LabelPair { name: name.into(), value: value.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::model::{self as pb, label, page};
    use super::*;
    use proptest::prelude::*;

    fn hist_strategy() -> impl Strategy<Value = pb::Histogram> {
        (
            any::<u64>(),
            any::<f64>(),
            -4i32..=8,
            prop::collection::vec((-10i32..10, 0u32..5), 0..4),
            prop::collection::vec(any::<i64>(), 0..10),
            prop::collection::vec(any::<f64>(), 0..10),
            prop::collection::vec((any::<u64>(), any::<f64>()), 0..5),
        )
            .prop_map(|(count, sum, schema, spans, deltas, counts, buckets)| pb::Histogram {
                sample_count: count,
                sample_sum: sum,
                schema,
                positive_span: spans
                    .iter()
                    .map(|&(offset, length)| pb::BucketSpan { offset, length })
                    .collect(),
                positive_delta: deltas.clone(),
                negative_delta: deltas,
                negative_count: counts,
                bucket: buckets
                    .into_iter()
                    .map(|(c, u)| pb::Bucket { cumulative_count: c, upper_bound: u, ..Default::default() })
                    .collect(),
                ..Default::default()
            })
    }

    proptest! {
        /// Whatever prost writes, the reader reads back the same values.
        #[test]
        fn reader_agrees_with_prost(
            names in prop::collection::vec("[a-z_]{1,8}", 1..4),
            values in prop::collection::vec(any::<f64>(), 1..4),
            h in hist_strategy(),
            ts in any::<i64>(),
        ) {
            let families: Vec<pb::MetricFamily> = names.iter().zip(&values).map(|(n, &v)| pb::MetricFamily {
                name: n.clone(),
                help: format!("help of {n}"),
                r#type: 4,
                unit: "seconds".into(),
                metric: vec![pb::Metric {
                    label: vec![label("a", n)],
                    counter: Some(pb::Counter { value: v, ..Default::default() }),
                    histogram: Some(h.clone()),
                    timestamp_ms: ts,
                    ..Default::default()
                }],
            }).collect();
            let body = page(&families);
            let mut r = Reader::new(&body);
            let mut m = super::Metric::default();
            let mut hist = super::Histogram::default();
            for want in &families {
                let f = r.next_family().unwrap().unwrap();
                prop_assert_eq!(f.name, want.name.as_str());
                prop_assert_eq!(f.help, want.help.as_str());
                prop_assert_eq!(f.unit, "seconds");
                prop_assert_eq!(f.kind, Kind::Histogram);
                let (msg, off) = f.metrics().next().unwrap();
                m.read(msg, off).unwrap();
                prop_assert_eq!(m.timestamp_ms, ts);
                // prost leaves out a field equal to its default, -0.0 included (it == 0.0).
                let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0);
                prop_assert!(same(m.value, want.metric[0].counter.as_ref().unwrap().value));
                let (l, lo) = m.labels[0];
                prop_assert_eq!(label_pair(l, lo).unwrap(), (&b"a"[..], want.name.as_bytes()));
                let (hm, ho) = m.histogram.unwrap();
                hist.read(hm, ho).unwrap();
                prop_assert_eq!(hist.count, h.sample_count);
                prop_assert!(same(hist.sum, h.sample_sum));
                prop_assert_eq!(hist.schema, h.schema);
                prop_assert_eq!(&hist.positive_deltas, &h.positive_delta);
                prop_assert_eq!(&hist.negative_deltas, &h.negative_delta);
                prop_assert_eq!(
                    hist.negative_counts.iter().map(|c| c.to_bits()).collect::<Vec<_>>(),
                    h.negative_count.iter().map(|c| c.to_bits()).collect::<Vec<_>>()
                );
                let spans: Vec<(i32, u32)> = hist.positive_spans.iter().map(|s| (s.offset, s.length)).collect();
                let want_spans: Vec<(i32, u32)> = h.positive_span.iter().map(|s| (s.offset, s.length)).collect();
                prop_assert_eq!(spans, want_spans);
                prop_assert_eq!(hist.buckets.len(), h.bucket.len());
                for (a, b) in hist.buckets.iter().zip(&h.bucket) {
                    prop_assert_eq!(a.count, b.cumulative_count);
                    prop_assert!(same(a.upper, b.upper_bound));
                }
                r.recycle(f);
            }
            prop_assert!(r.next_family().unwrap().is_none());
        }

        /// Any bytes: an error or families, never a panic; a truncated page is an error.
        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut r = Reader::new(&bytes);
            let mut m = super::Metric::default();
            let mut h = super::Histogram::default();
            while let Ok(Some(f)) = r.next_family() {
                for (msg, off) in f.metrics() {
                    if m.read(msg, off).is_ok() && let Some((hm, ho)) = m.histogram {
                        let _ = h.read(hm, ho);
                    }
                }
                r.recycle(f);
            }
        }
    }

    #[test]
    fn prometheus_refusals() {
        // (family, expected error, reason)
        let cases = [
            (
                pb::MetricFamily { name: String::new(), r#type: 0, ..Default::default() },
                "invalid metric name: ",
                "empty name",
            ),
            (
                pb::MetricFamily { name: "x".into(), r#type: 9, ..Default::default() },
                "unknown metric type for metric \"x\": 9",
                "type 9",
            ),
        ];
        for (f, want, why) in cases {
            let body = page(&[f]);
            assert_eq!(Reader::new(&body).next_family().unwrap_err().to_string(), want, "{why}");
        }
        let body = page(&[pb::MetricFamily { name: "x".into(), ..Default::default() }]);
        let cut = &body[..body.len() - 1];
        assert!(Reader::new(cut).next_family().is_err(), "a truncated message");
    }
}
