//! A protobuf page as the text lines of the same series, plus what text cannot say.
//!
//! What this is: Prometheus' `ProtobufParser` mapping from `MetricFamily` messages to series
//! (which names, which `le`/`quantile` labels, in which order, what counts as a native
//! histogram), written out as Prometheus text lines into a reused buffer, with side lists by
//! sample ordinal for what the text format has no room for: exemplars, start ("created")
//! timestamps, native histograms and the family's real type and unit. The page processor then
//! reads those lines with the text parser, so relabeling, limits, staleness, metadata and
//! record writing are the same code for every format.
//!
//! Why through text: one sample path is one set of semantics to keep equal to Prometheus';
//! writing a line costs about what reading it does (`benches/parse.rs`, "protobuf" against
//! "text" on the same series), and protobuf pages are the minority (client_golang and Java only
//! when asked). A native histogram is a line `name{labels} 0` that carries the histogram in the
//! side list: it is one sample for limits and staleness, as it is for Prometheus.

use std::io::Write as _;
use std::ops::Range;

use crate::batch::Exemplar;
use crate::histogram::{HistogramError, Native};
use crate::labels::{Labels, is_valid_label_name, is_valid_metric_name};
use crate::parse::MetricType;
use crate::parse::proto::{self, FamilyError, Kind, ProtoError};

/// Why a protobuf page fails its scrape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtobufError {
    /// The wire format or a family is broken.
    #[error(transparent)]
    Family(#[from] FamilyError),
    /// A native histogram is inconsistent.
    #[error(transparent)]
    Histogram(#[from] HistogramError),
}

impl From<ProtoError> for ProtobufError {
    fn from(e: ProtoError) -> Self {
        ProtobufError::Family(FamilyError::Wire(e))
    }
}

/// The family of a `# TYPE` line of the translation.
#[derive(Clone, Debug)]
pub(super) struct FamilyInfo {
    /// The real type (the text says `histogram` for a gauge histogram).
    pub kind: MetricType,
    /// The unit, as a range of the protobuf body.
    pub unit: Range<u32>,
}

/// What to read from a histogram, from the job's settings.
#[derive(Clone, Copy, Debug)]
pub(super) struct Options {
    /// `scrape_native_histograms`.
    pub native: bool,
    /// `always_scrape_classic_histograms`.
    pub classic_too: bool,
}

/// A page's translation; buffers are reused between scrapes.
#[derive(Debug, Default)]
pub(super) struct Translation {
    /// The series as Prometheus text lines.
    pub text: Vec<u8>,
    /// Per `# TYPE` line, in order.
    pub families: Vec<FamilyInfo>,
    /// Exemplars by sample ordinal (ordinals increasing).
    pub exemplars: Vec<(u32, Exemplar)>,
    /// Start timestamps (ms) by sample ordinal.
    pub created: Vec<(u32, i64)>,
    /// Native histograms by sample ordinal.
    pub natives: Vec<(u32, Native)>,
    /// Samples written so far.
    ordinal: u32,
}

/// Bytes of translation buffer kept between scrapes; a larger one (a huge page) is freed.
const KEEP_TEXT_BYTES: usize = 4 << 20;

impl Translation {
    /// Translates `body`. On error the translation is incomplete and must not be used.
    pub fn translate(&mut self, body: &[u8], opts: Options) -> Result<(), ProtobufError> {
        if self.text.capacity() > KEEP_TEXT_BYTES {
            self.text = Vec::new();
        }
        self.text.clear();
        self.families.clear();
        self.exemplars.clear();
        self.created.clear();
        self.natives.clear();
        self.ordinal = 0;
        let mut reader = proto::Reader::new(body);
        let mut metric = proto::Metric::default();
        let mut summary = proto::Summary::default();
        let mut hist = proto::Histogram::default();
        let mut labels: Vec<(&str, &str)> = Vec::new();
        while let Some(family) = reader.next_family()? {
            if family.is_empty() {
                // Prometheus skips a family without metrics altogether.
                reader.recycle(family);
                continue;
            }
            let name = family.name;
            if !family.help.is_empty() {
                self.text.extend_from_slice(b"# HELP ");
                write_name(&mut self.text, name);
                self.text.push(b' ');
                for &b in family.help.as_bytes() {
                    match b {
                        b'\\' => self.text.extend_from_slice(b"\\\\"),
                        b'\n' => self.text.extend_from_slice(b"\\n"),
                        _ => self.text.push(b),
                    }
                }
                self.text.push(b'\n');
            }
            self.text.extend_from_slice(b"# TYPE ");
            write_name(&mut self.text, name);
            let (word, kind) = match family.kind {
                Kind::Counter => ("counter", MetricType::Counter),
                Kind::Gauge => ("gauge", MetricType::Gauge),
                Kind::Summary => ("summary", MetricType::Summary),
                Kind::Untyped => ("untyped", MetricType::Unknown),
                Kind::Histogram => ("histogram", MetricType::Histogram),
                Kind::GaugeHistogram => ("histogram", MetricType::GaugeHistogram),
            };
            self.text.push(b' ');
            self.text.extend_from_slice(word.as_bytes());
            self.text.push(b'\n');
            self.families.push(FamilyInfo { kind, unit: proto::range_of(body, family.unit.as_bytes()) });
            for (msg, off) in family.metrics() {
                metric.read(msg, off)?;
                labels.clear();
                for &(l, o) in &metric.labels {
                    let (n, v) = proto::label_pair(l, o)?;
                    let utf8 = |b| std::str::from_utf8(b).map_err(|_| FamilyError::Utf8(name.to_owned()));
                    labels.push((utf8(n)?, utf8(v)?));
                }
                let ts = metric.timestamp_ms;
                let first = self.ordinal;
                match family.kind {
                    Kind::Counter | Kind::Gauge | Kind::Untyped => {
                        self.line(name, "", &labels, None, Value::F(metric.value), ts);
                        if family.kind == Kind::Counter
                            && let Some((e, o)) = metric.exemplar
                        {
                            self.exemplar(e, o, false)?;
                        }
                    }
                    Kind::Summary => {
                        match metric.summary {
                            Some((m, o)) => summary.read(m, o)?,
                            None => summary = proto::Summary::default(),
                        }
                        self.line(name, "_count", &labels, None, Value::U(summary.count), ts);
                        self.line(name, "_sum", &labels, None, Value::F(summary.sum), ts);
                        for &(q, v) in &summary.quantiles {
                            self.line(name, "", &labels, Some(("quantile", q)), Value::F(v), ts);
                        }
                    }
                    Kind::Histogram | Kind::GaugeHistogram => {
                        match metric.histogram {
                            Some((m, o)) => hist.read(m, o)?,
                            None => hist.read(&[], 0)?,
                        }
                        let native = opts.native && hist.is_native();
                        if native {
                            let n = Native::from_proto(&hist, family.kind == Kind::GaugeHistogram, name)?;
                            self.line(name, "", &labels, None, Value::F(0.0), ts);
                            self.natives.push((self.ordinal - 1, n));
                            // Prometheus attaches the `exemplars` field's exemplars that have a
                            // timestamp, or else the buckets' exemplars that have one.
                            for &(e, o) in &hist.exemplars {
                                self.exemplar(e, o, true)?;
                            }
                            if hist.exemplars.is_empty() {
                                for b in &hist.buckets {
                                    if let Some((e, o)) = b.exemplar {
                                        self.exemplar(e, o, true)?;
                                    }
                                }
                            }
                        }
                        if !native || (opts.classic_too && !hist.buckets.is_empty()) {
                            self.classic(name, &labels, &hist, ts)?;
                        }
                    }
                }
                if let Some(ms) =
                    metric.start_ms.filter(|_| family.kind != Kind::Gauge && family.kind != Kind::Untyped)
                {
                    self.created.extend((first..self.ordinal).map(|i| (i, ms)));
                }
            }
            reader.recycle(family);
        }
        Ok(())
    }

    /// The classic series of a histogram: `_count`, `_sum`, then `_bucket` per bucket up to the
    /// first `+Inf` one, with a `+Inf` bucket of the count added if there is none.
    fn classic(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &proto::Histogram<'_>,
        ts: i64,
    ) -> Result<(), ProtobufError> {
        let count = if h.count_float != 0.0 { Value::F(h.count_float) } else { Value::U(h.count) };
        self.line(name, "_count", labels, None, count, ts);
        self.line(name, "_sum", labels, None, Value::F(h.sum), ts);
        let mut inf = false;
        for b in &h.buckets {
            let v = if b.count_float != 0.0 { Value::F(b.count_float) } else { Value::U(b.count) };
            self.line(name, "_bucket", labels, Some(("le", b.upper)), v, ts);
            if let Some((e, o)) = b.exemplar {
                self.exemplar(e, o, false)?;
            }
            if b.upper == f64::INFINITY {
                inf = true;
                break;
            }
        }
        if !inf {
            self.line(name, "_bucket", labels, Some(("le", f64::INFINITY)), count, ts);
        }
        Ok(())
    }

    /// Attaches an exemplar to the last written sample; with `need_ts`, only one that has a
    /// timestamp (native histograms). Returns whether it was attached.
    fn exemplar(&mut self, msg: &[u8], off: usize, need_ts: bool) -> Result<bool, ProtobufError> {
        let e = proto::Exemplar::read(msg, off)?;
        if need_ts && e.timestamp_ms.is_none() {
            return Ok(false);
        }
        let mut pairs = Vec::with_capacity(e.labels.len());
        for &(l, o) in &e.labels {
            let (n, v) = proto::label_pair(l, o)?;
            pairs.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()));
        }
        // The scrape's timestamp fills in a missing one (remote write 2.0 requires one); the
        // page processor does that, as it does for text exemplars.
        self.exemplars.push((
            self.ordinal - 1,
            Exemplar {
                labels: Labels::from_pairs(pairs),
                value: e.value,
                timestamp_ms: e.timestamp_ms.unwrap_or(i64::MIN),
            },
        ));
        Ok(true)
    }

    /// Writes one sample line.
    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        magic: Option<(&str, f64)>,
        value: Value,
        ts: i64,
    ) {
        let t = &mut self.text;
        let legacy = is_valid_metric_name(name) && is_legacy_suffix(suffix);
        if legacy {
            t.extend_from_slice(name.as_bytes());
            t.extend_from_slice(suffix.as_bytes());
            t.push(b'{');
        } else {
            // Prometheus 3's quoted form: `{"name", label="value"}`.
            t.extend_from_slice(b"{\"");
            escape(t, name);
            escape(t, suffix);
            t.extend_from_slice(b"\",");
        }
        for (n, v) in labels {
            write_label(t, n, v);
        }
        if let Some((n, v)) = magic {
            t.extend_from_slice(n.as_bytes());
            t.extend_from_slice(b"=\"");
            format_openmetrics_float(v, t);
            t.extend_from_slice(b"\",");
        }
        if t.last() == Some(&b',') {
            t.pop();
        }
        t.extend_from_slice(b"} ");
        match value {
            Value::U(u) => t.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
            Value::F(f) => write_value(f, t),
        }
        if ts != 0 {
            t.push(b' ');
            t.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
        }
        t.push(b'\n');
        self.ordinal += 1;
    }
}

/// A sample's value: an integer count or a float.
#[derive(Clone, Copy)]
enum Value {
    U(u64),
    F(f64),
}

/// Whether `suffix` (`_count`, `_bucket`, …) keeps a legacy metric name legacy.
fn is_legacy_suffix(suffix: &str) -> bool {
    suffix.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn write_name(t: &mut Vec<u8>, name: &str) {
    if is_valid_metric_name(name) {
        t.extend_from_slice(name.as_bytes());
    } else {
        t.push(b'"');
        escape(t, name);
        t.push(b'"');
    }
}

fn write_label(t: &mut Vec<u8>, n: &str, v: &str) {
    if is_valid_label_name(n) {
        t.extend_from_slice(n.as_bytes());
    } else {
        t.push(b'"');
        escape(t, n);
        t.push(b'"');
    }
    t.extend_from_slice(b"=\"");
    escape(t, v);
    t.extend_from_slice(b"\",");
}

/// The text format's escaping inside quotes: backslash, double quote, line feed.
fn escape(t: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => t.extend_from_slice(b"\\\\"),
            b'"' => t.extend_from_slice(b"\\\""),
            b'\n' => t.extend_from_slice(b"\\n"),
            _ => t.push(b),
        }
    }
}

/// A sample value the text parser reads back to the same bits (shortest round-trip digits).
fn write_value(f: f64, t: &mut Vec<u8>) {
    if f.is_nan() {
        t.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        t.extend_from_slice(if f > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        // ryu: the shortest digits that read back to the same bits, without allocating.
        t.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    }
}

/// Prometheus' `labels.FormatOpenMetricsFloat`: Go's `strconv.FormatFloat(f, 'g', -1, 64)`, with
/// `.0` added when that has neither a `.` nor an exponent (`1` → `1.0`, `1e+06` stays).
pub fn format_openmetrics_float(f: f64, t: &mut Vec<u8>) {
    if f.is_nan() {
        t.extend_from_slice(b"NaN");
        return;
    }
    if f.is_infinite() {
        t.extend_from_slice(if f > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    // Shortest round-trip digits and the decimal point's position, from ryu's output ("123.45",
    // "0.001", "1.5e16", "1e-7"), on the stack.
    let mut buf = ryu::Buffer::new();
    let out = buf.format_finite(f.abs()).as_bytes();
    let (mantissa, exp) = match out.iter().position(|&c| c == b'e') {
        Some(e) => (
            &out[..e],
            std::str::from_utf8(&out[e + 1..]).ok().and_then(|x| x.parse::<i32>().ok()).unwrap_or(0),
        ),
        None => (out, 0),
    };
    let mut digits = [0u8; 40];
    let mut n = 0;
    let mut point = mantissa.len() as i32;
    for (i, &c) in mantissa.iter().enumerate() {
        if c == b'.' {
            point = i as i32;
        } else if n < digits.len() {
            digits[n] = c;
            n += 1;
        }
    }
    point += exp;
    // Leading and trailing zeros are not significant digits.
    let lead = digits[..n].iter().take_while(|&&c| c == b'0').count();
    let digits = &digits[lead..n];
    point -= lead as i32;
    let trail = digits.iter().rev().take_while(|&&c| c == b'0').count();
    let digits = &digits[..digits.len() - trail];
    let exp = point - 1;
    if f.is_sign_negative() {
        t.push(b'-');
    }
    let start = t.len();
    // Go's %g with the shortest precision: %e when the exponent is < -4 or >= 6.
    let x = if digits.is_empty() { -1 } else { exp };
    if !digits.is_empty() && !(-4..6).contains(&x) {
        t.push(digits[0]);
        if digits.len() > 1 {
            t.push(b'.');
            t.extend_from_slice(&digits[1..]);
        }
        let _ = write!(t, "e{}{:02}", if x < 0 { '-' } else { '+' }, x.unsigned_abs());
    } else if digits.is_empty() {
        t.push(b'0');
    } else {
        // %f: `dp` digits before the point.
        let dp = exp + 1;
        let d = digits;
        if dp <= 0 {
            t.extend_from_slice(b"0.");
            t.extend(std::iter::repeat_n(b'0', (-dp) as usize));
            t.extend_from_slice(d);
        } else {
            let dp = dp as usize;
            for i in 0..dp {
                t.push(*d.get(i).unwrap_or(&b'0'));
            }
            if d.len() > dp {
                t.push(b'.');
                t.extend_from_slice(&d[dp..]);
            }
        }
    }
    if !t[start..].iter().any(|&c| c == b'.' || c == b'e') {
        t.extend_from_slice(b".0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The label text reads back to the same number, and has Go's shape: a `.` or an
        /// exponent, and an exponent only outside 1e-4..1e6.
        #[test]
        fn openmetrics_floats_read_back(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut t = Vec::new();
            format_openmetrics_float(f, &mut t);
            let s = String::from_utf8(t).unwrap();
            prop_assert_eq!(s.parse::<f64>().unwrap(), f, "{}", s);
            prop_assert!(s.contains('.') || s.contains('e'));
            let a = f.abs();
            prop_assert_eq!(s.contains('e'), a != 0.0 && !(1e-4..1e6).contains(&a), "{}", s);
        }
    }

    #[test]
    fn openmetrics_floats_as_go_formats_them() {
        // (value, Prometheus' FormatOpenMetricsFloat)
        for (f, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1.5e6, "1.5e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (-3.25, "-3.25"),
            (1e300, "1e+300"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.1, "0.1"),
            (12.75, "12.75"),
        ] {
            let mut t = Vec::new();
            format_openmetrics_float(f, &mut t);
            assert_eq!(String::from_utf8(t).unwrap(), want, "{f}");
        }
    }
}
