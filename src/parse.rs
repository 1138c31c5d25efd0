//! Exposition-format parsing: Prometheus text 0.0.4 (plus the Prometheus 3 UTF-8 quoted-name
//! syntax) and OpenMetrics 1.0 text, from a scraped body to borrowed [`Entry`] values.
//!
//! # What it is
//!
//! - [`Parser`]: the scrape path. A zero-copy, pull-style tokenizer over the whole body:
//!   every name, label set and HELP text borrows from the input, and it allocates nothing
//!   per line (a label value is copied only when it contains a backslash escape, and only
//!   when the caller asks for it). It accepts what Prometheus' own parsers
//!   (`model/textparse/promparse.go`, `openmetricsparse.go`) accept, so a page is rejected
//!   here exactly when Prometheus would fail the scrape, with a few documented exceptions
//!   (see [`Parser`]).
//! - [`validate_openmetrics`]: strict OpenMetrics 1.0 validation of a whole exposition, the
//!   rules of the official parser test suite (family grouping, suffixes, histogram and
//!   counter value rules, exemplar rules, clashing names). Used by `trawl check metrics`,
//!   not on the scrape path.
//! - [`naive`]: a deliberately slow reference parser used by the property tests and the
//!   fuzz target to cross-check [`Parser`].
//!
//! # What it is not
//!
//! It does not build label sets, sort labels, drop empty values, validate families in the
//! Prometheus text format, or decode the protobuf format; those belong to later stages.
//! It reads a complete body: there is no incremental (streaming) mode.

use std::borrow::Cow;
use std::fmt;

mod lex;
#[doc(hidden)]
pub mod naive;
mod number;
mod parser;
pub mod proto;
mod validate;

pub use lex::{Labels, RawLabel, unescape_label_into};
pub use parser::Parser;
pub use validate::validate_openmetrics;

/// Longest record (line, without its `\n`) the parser accepts, in bytes: 1 MiB.
///
/// Prometheus has no per-line cap, only a body-size limit. Real lines are far shorter: the
/// longest in our fixtures (kube-state-metrics label sets) are about 2 KiB. The cap bounds
/// the work spent on a single record (duplicate-label checks, lazy re-scans of the label
/// set) and keeps one garbage "line" of a huge body from being reported as anything but
/// what it is.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The exposition formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and `1.0.0`, which only adds quoted UTF-8 names).
    PrometheusText,
    /// `application/openmetrics-text; version=1.0.0` (or `0.0.1`).
    OpenMetrics,
    /// `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
    /// encoding=delimited`: read by [`proto`], not by [`Parser`] (the page processor turns it
    /// into text lines first, see `scrape::protobuf`).
    PrometheusProto,
}

impl Format {
    /// The format of a `fallback_scrape_protocol`.
    pub fn of_protocol(p: crate::config::ScrapeProtocol) -> Format {
        use crate::config::ScrapeProtocol::*;
        match p {
            PrometheusProto => Format::PrometheusProto,
            PrometheusText0_0_4 | PrometheusText1_0_0 => Format::PrometheusText,
            OpenMetricsText0_0_1 | OpenMetricsText1_0_0 => Format::OpenMetrics,
        }
    }
}

/// Picks the parser for a response's `Content-Type` as Prometheus 3 does
/// (`model/textparse/interface.go`, `extractMediaType`): the media type (parameters ignored, as
/// Go's `mime.ParseMediaType` lower-cases it) must be `application/openmetrics-text`,
/// `application/vnd.google.protobuf` or `text/plain`. A blank, unparsable or other type fails
/// the scrape with Prometheus' message unless the job has a `fallback_scrape_protocol`, which is
/// then used (the second value is the message Prometheus logs at debug level then).
pub fn format_from_content_type(
    ct: Option<&str>,
    fallback: Option<crate::config::ScrapeProtocol>,
) -> Result<(Format, Option<String>), String> {
    let ct = ct.unwrap_or("");
    let use_fallback = |no: String, yes: String| match fallback {
        Some(f) => Ok((Format::of_protocol(f), Some(yes))),
        None => Err(no),
    };
    let fb = fallback.map(|f| f.media_type()).unwrap_or("");
    if ct.is_empty() {
        return use_fallback(
            "non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target".into(),
            format!("non-compliant scrape target sending blank Content-Type, using fallback_scrape_protocol {fb:?}"),
        );
    }
    let media = match media_type(ct) {
        Ok(m) => m,
        Err(e) => {
            return use_fallback(
                format!("cannot parse Content-Type {ct:?} and no fallback_scrape_protocol for target\n{e}"),
                format!(
                    "could not parse received Content-Type {ct:?}, using fallback_scrape_protocol {fb:?}\n{e}"
                ),
            );
        }
    };
    match media.as_str() {
        "application/openmetrics-text" => Ok((Format::OpenMetrics, None)),
        "application/vnd.google.protobuf" => Ok((Format::PrometheusProto, None)),
        "text/plain" => Ok((Format::PrometheusText, None)),
        _ => use_fallback(
            format!(
                "received unsupported Content-Type {ct:?} and no fallback_scrape_protocol specified for target"
            ),
            format!("received unsupported Content-Type {ct:?}, using fallback_scrape_protocol {fb:?}"),
        ),
    }
}

/// The media type of a `Content-Type` value as Go's `mime.ParseMediaType` reads it, with its
/// errors: the part before the first `;`, trimmed and lower-cased, must be `token` or
/// `token/token`; each parameter must be `; name = value` (a token or a quoted string), a
/// trailing `;` allowed, and a name given twice must have the same value.
fn media_type(v: &str) -> Result<String, &'static str> {
    let (base, _) = v.split_once(';').unwrap_or((v, ""));
    let media = base.trim().to_ascii_lowercase();
    let (kind, rest) = consume_token(&media);
    if kind.is_empty() {
        return Err("mime: no media type");
    }
    if !rest.is_empty() {
        let Some(rest) = rest.strip_prefix('/') else { return Err("mime: expected slash after first token") };
        let (sub, rest) = consume_token(rest);
        if sub.is_empty() {
            return Err("mime: expected token after slash");
        }
        if !rest.is_empty() {
            return Err("mime: unexpected content after media subtype");
        }
    }
    let mut params: Vec<(String, String)> = Vec::new();
    let mut v = &v[base.len()..];
    loop {
        v = v.trim_start_matches(char::is_whitespace);
        if v.is_empty() {
            break;
        }
        let Some((name, value, rest)) = consume_param(v) else {
            if v.trim() == ";" {
                break; // a trailing semicolon is not an error
            }
            return Err("mime: invalid media parameter");
        };
        match params.iter().find(|(n, _)| *n == name) {
            Some((_, old)) if *old != value => return Err("mime: duplicate parameter name"),
            Some(_) => {}
            None => params.push((name, value)),
        }
        v = rest;
    }
    Ok(media)
}

/// Go's `consumeToken`: the leading run of token characters, and the rest.
fn consume_token(v: &str) -> (&str, &str) {
    let n = v.bytes().take_while(|&b| is_token_byte(b)).count();
    v.split_at(n)
}

/// Go's `consumeMediaParam`: `; name = value`, the name lower-cased, the value unquoted.
fn consume_param(v: &str) -> Option<(String, String, &str)> {
    let rest = v.trim_start_matches(char::is_whitespace).strip_prefix(';')?;
    let (name, rest) = consume_token(rest.trim_start_matches(char::is_whitespace));
    if name.is_empty() {
        return None;
    }
    let rest = rest.trim_start_matches(char::is_whitespace).strip_prefix('=')?;
    let rest = rest.trim_start_matches(char::is_whitespace);
    let (value, after) = match rest.strip_prefix('"') {
        Some(quoted) => {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            loop {
                match chars.next()? {
                    (i, '"') => break (value, &quoted[i + 1..]),
                    (_, '\\') => value.push(chars.next()?.1),
                    (_, c) => value.push(c),
                }
            }
        }
        None => {
            let (t, after) = consume_token(rest);
            if t.is_empty() {
                return None;
            }
            (t.to_owned(), after)
        }
    };
    Some((name.to_ascii_lowercase(), value, after))
}

/// RFC 2045 token characters: printable ASCII but space and `()<>@,;:\"/[]?=`.
fn is_token_byte(b: u8) -> bool {
    b > b' ' && b < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// Metric family type from `# TYPE`. The text format's `untyped` is [`MetricType::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    /// The type word of the Prometheus text format (`counter gauge histogram summary untyped`).
    fn from_text(s: &[u8]) -> Option<Self> {
        Some(match s {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"summary" => MetricType::Summary,
            b"untyped" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// The type word of OpenMetrics 1.0 (`untyped` is not one of them).
    fn from_openmetrics(s: &[u8]) -> Option<Self> {
        Some(match s {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"gaugehistogram" => MetricType::GaugeHistogram,
            b"summary" => MetricType::Summary,
            b"info" => MetricType::Info,
            b"stateset" => MetricType::StateSet,
            b"unknown" => MetricType::Unknown,
            _ => return None,
        })
    }
}

/// One parsed line (record) of an exposition. Comments and blank lines produce nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text`. The name is as written between the quotes for a quoted name
    /// (not unescaped, as in Prometheus). The text is unescaped: `\\` and `\n` in the text
    /// format, also `\"` in OpenMetrics.
    Help { name: &'a str, help: Cow<'a, str> },
    /// `# TYPE name type`.
    Type { name: &'a str, kind: MetricType },
    /// `# UNIT name unit` (OpenMetrics only). An empty unit means "no unit".
    Unit { name: &'a str, unit: &'a str },
    /// A sample line.
    Sample(Sample<'a>),
}

/// One sample, borrowed from the input. Labels are decoded lazily by [`Sample::labels`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    pub(crate) series: &'a str,
    /// The name as written: inside the quotes for the quoted syntax.
    pub(crate) name: &'a str,
    /// Non-zero if the name is quoted and contains a backslash, so it needs unescaping.
    /// A `u32`, not a `bool`: a `bool` offers `Entry` a one-byte niche for its tag, and
    /// copying an entry then reloaded that byte at an unaligned offset (a store-forwarding
    /// stall that cost ~25% of a HELP/TYPE line).
    pub(crate) name_escaped: u32,
    /// Everything between the braces ("" without braces).
    pub(crate) labels: &'a str,
    pub(crate) value: f64,
    pub(crate) timestamp_ms: Option<i64>,
    /// OpenMetrics: the timestamp in seconds as written (the strict validator compares
    /// these, not the truncated milliseconds). NaN when absent or in the text format.
    pub(crate) timestamp_secs: f64,
    pub(crate) exemplar: Option<Exemplar<'a>>,
}

impl<'a> Sample<'a> {
    /// The metric name; unescaped for a quoted name (`{"my.metric"}`) containing escapes.
    #[inline]
    pub fn name(&self) -> Cow<'a, str> {
        if self.name_escaped != 0 { lex::unescape_label(self.name) } else { Cow::Borrowed(self.name) }
    }

    /// The metric name as written (inside the quotes for a quoted name), and whether it needs
    /// unescaping ([`unescape_label_into`]).
    #[inline]
    pub fn raw_name(&self) -> (&'a str, bool) {
        (self.name, self.name_escaped != 0)
    }

    /// The labels in the order written, without the metric name. Values are unescaped only
    /// if they contain a backslash. Empty values are returned as written (`a=""`).
    #[inline]
    pub fn labels(&self) -> Labels<'a> {
        Labels::new(self.labels)
    }

    /// The sample value. A written `NaN` (any case) is Prometheus' normal NaN
    /// (`0x7ff8000000000001`), never the staleness marker.
    #[inline]
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The explicit timestamp in milliseconds: as written in the text format; in
    /// OpenMetrics, float seconds × 1000 truncated toward zero, like Prometheus
    /// (saturating where Go's conversion is undefined).
    #[inline]
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// The exemplar (OpenMetrics only).
    #[inline]
    pub fn exemplar(&self) -> Option<Exemplar<'a>> {
        self.exemplar
    }

    /// The exact bytes of `name{labels}` as written (from the first byte of the name or the
    /// `{` through the `}`), suitable as a per-target cache key for the series.
    #[inline]
    pub fn raw_series(&self) -> &'a [u8] {
        self.series.as_bytes()
    }
}

/// An OpenMetrics exemplar: `# {labels} value [timestamp]` after a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar<'a> {
    pub(crate) labels: &'a str,
    pub(crate) value: f64,
    pub(crate) timestamp_ms: Option<i64>,
}

impl<'a> Exemplar<'a> {
    /// The exemplar's labels, as for [`Sample::labels`].
    #[inline]
    pub fn labels(&self) -> Labels<'a> {
        Labels::new(self.labels)
    }

    /// The exemplar value.
    #[inline]
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The exemplar timestamp in milliseconds (seconds × 1000, truncated).
    #[inline]
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }
}

/// A parse or validation failure. Small and `Copy`: it never holds input bytes. Parse errors
/// are not retryable: the same body fails the same way, and the whole scrape must be
/// discarded (as Prometheus does, reporting `up 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    /// Byte offset into the input of the offending byte or token.
    pub offset: usize,
    /// 1-based line number of `offset`.
    pub line: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} (byte offset {}): {}", self.line, self.offset, self.kind)
    }
}

impl std::error::Error for ParseError {}

/// Why parsing or validation failed; one variant per reason.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    // --- Syntax (both formats) ---
    /// Bytes that are not UTF-8 outside a comment.
    InvalidUtf8,
    /// A NUL byte outside a label value, HELP text or comment.
    NulByte,
    /// A record longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// A line that starts with something other than a metric name, `{`, `#` or a line break.
    ExpectedMetricName,
    /// `# HELP`/`# TYPE`/`# UNIT` without a valid metric name.
    ExpectedMetadataName,
    /// `# HELP`/`# TYPE`/`# UNIT` whose name is not followed by a single space and text.
    MissingMetadataText,
    /// A `# TYPE` with an unknown type word.
    InvalidMetricType,
    /// A label set that has something other than a label name where one is needed.
    ExpectedLabelName,
    /// A label name not followed by `=`.
    ExpectedEquals,
    /// `=` not followed by a quoted value.
    ExpectedLabelValue,
    /// A quoted string with no closing quote.
    UnterminatedString,
    /// A backslash directly before a line break inside a quoted string.
    InvalidEscape,
    /// OpenMetrics: a label value followed by something other than `,` or `}`.
    ExpectedCommaOrBrace,
    /// A sample without a metric name (`{a="b"} 1`).
    MissingMetricName,
    /// Two metric names in one sample (`a{"b"}` or `{"a","b"}`).
    MetricNameTwice,
    /// An empty quoted metric or label name (`{""}`).
    EmptyName,
    /// The same label name twice in one label set (Prometheus fails the scrape for it).
    DuplicateLabelName,
    /// A sample without a value.
    MissingValue,
    /// OpenMetrics: a metric name running into a byte that cannot be part of it (`a.b 1`).
    InvalidMetricName,
    /// OpenMetrics: no space between the label set and the value (`a{}1`).
    ExpectedSpace,
    /// A value that is not a number in Go `ParseFloat` syntax (or has `p`, `P`, `_`).
    InvalidValue,
    /// A timestamp that is not an integer (text) or a finite number (OpenMetrics), or overflows.
    InvalidTimestamp,
    /// Text after the last token of a sample.
    TrailingText,
    // --- OpenMetrics syntax ---
    /// A space or tab where OpenMetrics allows none or exactly one space.
    UnexpectedWhitespace,
    /// An empty line.
    BlankLine,
    /// A `#` line that is not `# HELP`, `# TYPE`, `# UNIT` or `# EOF`.
    InvalidComment,
    /// A malformed exemplar (`# {labels} value [timestamp]`).
    InvalidExemplar,
    /// A `# UNIT` that is not a `_unit` suffix of the metric name.
    UnitNotSuffix,
    /// The exposition does not end with `# EOF`.
    MissingEof,
    /// A protobuf page given to the text parser ([`proto`] reads those).
    ProtobufNotSupported,
    /// Bytes after `# EOF` (other than one line break).
    TextAfterEof,
    // --- Strict OpenMetrics 1.0 (validate_openmetrics only) ---
    /// A comma directly before `}`.
    TrailingComma,
    /// The quoted-name syntax, which OpenMetrics 1.0 does not have.
    QuotedName,
    /// A second HELP, TYPE or UNIT for one family.
    DuplicateMetadata,
    /// HELP, TYPE or UNIT after the family's first sample.
    MetadataAfterSamples,
    /// A family whose name, or a suffixed sample name, was already used (this also catches
    /// families split into non-contiguous parts).
    ClashingName,
    /// A UNIT on an info or stateset family.
    UnitNotAllowed,
    /// A histogram bucket with a missing, unparsable, NaN or non-canonical (`+INF`) `le`.
    InvalidBucketLabel,
    /// A summary quantile with a missing, unparsable or out-of-range `quantile` label.
    InvalidQuantileLabel,
    /// A stateset sample without the label named after the family.
    MissingStateLabel,
    /// The samples of one metric (label set) are interleaved with another's.
    InterleavedMetric,
    /// Some samples of a metric have a timestamp and some do not.
    MixedTimestamps,
    /// A metric's timestamps go backwards.
    DecreasingTimestamp,
    /// A stateset value other than 0 or 1.
    InvalidStateSetValue,
    /// An info value other than 1.
    InvalidInfoValue,
    /// A negative counter total, sum, count, bucket or quantile value.
    NegativeValue,
    /// A NaN counter total, sum, count or bucket.
    NanValue,
    /// An exemplar on anything but a counter `_total` or a histogram `_bucket`.
    ExemplarNotAllowed,
    /// Exemplar label names and values longer than 128 code points in total.
    ExemplarTooLong,
    /// A histogram without a `+Inf` bucket.
    MissingInfBucket,
    /// Buckets whose `le` does not increase.
    BucketsOutOfOrder,
    /// Bucket values that decrease (they are cumulative).
    BucketValuesDecrease,
    /// A histogram `_count` that differs from the `+Inf` bucket.
    CountMismatch,
    /// `_sum` without `_count` or `_count` without `_sum` (`_gsum`/`_gcount`).
    SumCountMismatch,
    /// A `_sum` in a histogram that has negative buckets.
    SumWithNegativeBuckets,
    /// A negative `_gsum` in a gauge histogram without negative buckets.
    NegativeGsum,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        f.write_str(match self {
            InvalidUtf8 => "invalid UTF-8",
            NulByte => "NUL byte where none is allowed",
            LineTooLong => "line longer than the 1 MiB limit",
            ExpectedMetricName => "expected a metric name, `#` or a line break",
            ExpectedMetadataName => "expected a metric name after HELP/TYPE/UNIT",
            MissingMetadataText => "expected a space and text after the metadata name",
            InvalidMetricType => "unknown metric type",
            ExpectedLabelName => "expected a label name or `}`",
            ExpectedEquals => "expected `=` after the label name",
            ExpectedLabelValue => "expected a quoted label value",
            UnterminatedString => "unterminated quoted string",
            InvalidEscape => "backslash before a line break in a quoted string",
            ExpectedCommaOrBrace => "expected `,` or `}` after the label value",
            MissingMetricName => "sample has no metric name",
            MetricNameTwice => "metric name given twice",
            EmptyName => "empty metric or label name",
            DuplicateLabelName => "duplicate label name",
            MissingValue => "sample has no value",
            InvalidMetricName => "invalid character in the metric name",
            ExpectedSpace => "expected a space before the value",
            InvalidValue => "invalid sample value",
            InvalidTimestamp => "invalid timestamp",
            TrailingText => "unexpected text after the sample",
            UnexpectedWhitespace => "unexpected whitespace (OpenMetrics wants exactly one space)",
            BlankLine => "blank line (not allowed in OpenMetrics)",
            InvalidComment => "`#` line is not HELP, TYPE, UNIT or EOF",
            InvalidExemplar => "invalid exemplar",
            UnitNotSuffix => "unit is not a suffix of the metric name",
            MissingEof => "missing `# EOF` at the end",
            ProtobufNotSupported => "the text parser does not read protobuf",
            TextAfterEof => "text after `# EOF`",
            TrailingComma => "trailing comma in a label set",
            QuotedName => "quoted names are not OpenMetrics 1.0",
            DuplicateMetadata => "repeated HELP, TYPE or UNIT for a family",
            MetadataAfterSamples => "HELP, TYPE or UNIT after the family's samples",
            ClashingName => "metric family name clashes with an earlier family",
            UnitNotAllowed => "UNIT is not allowed on info and stateset families",
            InvalidBucketLabel => "histogram bucket has a missing or invalid `le` label",
            InvalidQuantileLabel => "summary quantile has a missing or invalid `quantile` label",
            MissingStateLabel => "stateset sample lacks the label named after the family",
            InterleavedMetric => "samples of a metric are not grouped together",
            MixedTimestamps => "some samples of a metric have a timestamp and some do not",
            DecreasingTimestamp => "timestamps of a metric go backwards",
            InvalidStateSetValue => "stateset value must be 0 or 1",
            InvalidInfoValue => "info value must be 1",
            NegativeValue => "counter-like value or quantile is negative",
            NanValue => "counter-like value is NaN",
            ExemplarNotAllowed => "exemplar on a sample that cannot have one",
            ExemplarTooLong => "exemplar labels exceed 128 code points",
            MissingInfBucket => "histogram has no `+Inf` bucket",
            BucketsOutOfOrder => "histogram buckets are not in increasing `le` order",
            BucketValuesDecrease => "histogram bucket values decrease",
            CountMismatch => "histogram count differs from the `+Inf` bucket",
            SumCountMismatch => "histogram needs both or neither of sum and count",
            SumWithNegativeBuckets => "histogram with negative buckets cannot have a sum",
            NegativeGsum => "negative gsum without negative buckets",
        })
    }
}

/// Counts from [`check`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Sample lines.
    pub samples: usize,
    /// Metric families: in OpenMetrics as the validator groups them; in the text format,
    /// distinct names from HELP/TYPE plus sample names outside the current HELP/TYPE family.
    pub families: usize,
}

/// For `trawl check metrics`: parses a whole page in `format` and returns the counts or the
/// first error. OpenMetrics gets the strict [`validate_openmetrics`] rules; the text format
/// gets exactly what the scrape path accepts.
pub fn check(input: &[u8], format: Format) -> Result<CheckStats, ParseError> {
    match format {
        Format::OpenMetrics => validate::validate(input),
        Format::PrometheusText => check_text(input),
        Format::PrometheusProto => Err(error_at(input, ErrorKind::ProtobufNotSupported, 0)),
    }
}

fn check_text(input: &[u8]) -> Result<CheckStats, ParseError> {
    use std::collections::HashSet;
    const SUFFIXES: [&str; 8] =
        ["_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info"];
    let mut parser = Parser::new(input, Format::PrometheusText);
    let mut families: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = 0;
    while let Some(entry) = parser.next_entry()? {
        match entry {
            Entry::Help { name, .. } | Entry::Type { name, .. } | Entry::Unit { name, .. } => {
                families.insert(name.to_owned());
                current = Some(name.to_owned());
            }
            Entry::Sample(s) => {
                samples += 1;
                let name = s.name();
                let member = current.as_deref().is_some_and(|fam| {
                    name.strip_prefix(fam).is_some_and(|rest| rest.is_empty() || SUFFIXES.contains(&rest))
                });
                if !member {
                    families.insert(name.clone().into_owned());
                    current = Some(name.into_owned());
                }
            }
        }
    }
    Ok(CheckStats { samples, families: families.len() })
}

/// Builds an error, computing the line number by counting line breaks before `offset`
/// (errors are rare, so the parser does not track lines as it goes).
pub(crate) fn error_at(input: &[u8], kind: ErrorKind, offset: usize) -> ParseError {
    let offset = offset.min(input.len());
    let line = 1 + memchr::memchr_iter(b'\n', &input[..offset]).count();
    ParseError { kind, offset, line }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)] // a case table: one tuple per row reads best
    fn content_type_like_prometheus_3() {
        use crate::config::ScrapeProtocol as P;
        use Format::*;
        // (Content-Type, fallback, expected format or error, why)
        let cases: &[(Option<&str>, Option<P>, Result<Format, &str>, &str)] = &[
            (Some("text/plain; version=0.0.4"), None, Ok(PrometheusText), "text"),
            (Some("text/plain;version=1.0.0;escaping=allow-utf-8"), None, Ok(PrometheusText), "text 1.0.0"),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                None,
                Ok(OpenMetrics),
                "OpenMetrics",
            ),
            (
                Some(" Application/OpenMetrics-Text "),
                None,
                Ok(OpenMetrics),
                "case and spaces, as Go lower-cases",
            ),
            (
                Some(
                    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
                ),
                None,
                Ok(PrometheusProto),
                "protobuf",
            ),
            (Some("text/plain;"), None, Ok(PrometheusText), "a trailing semicolon is allowed"),
            (
                None,
                None,
                Err(
                    "non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target",
                ),
                "no header fails without a fallback",
            ),
            (
                Some(""),
                None,
                Err(
                    "non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target",
                ),
                "an empty header is blank too",
            ),
            (None, Some(P::PrometheusText0_0_4), Ok(PrometheusText), "blank with a fallback"),
            (
                Some("application/json"),
                None,
                Err(
                    "received unsupported Content-Type \"application/json\" and no fallback_scrape_protocol specified for target",
                ),
                "unknown type",
            ),
            (
                Some("application/json"),
                Some(P::OpenMetricsText1_0_0),
                Ok(OpenMetrics),
                "unknown type with a fallback",
            ),
            (
                Some("text/plain; version"),
                None,
                Err(
                    "cannot parse Content-Type \"text/plain; version\" and no fallback_scrape_protocol for target\nmime: invalid media parameter",
                ),
                "a parameter without a value does not parse in Go",
            ),
            (
                Some("text/plain; a=1; a=2"),
                None,
                Err(
                    "cannot parse Content-Type \"text/plain; a=1; a=2\" and no fallback_scrape_protocol for target\nmime: duplicate parameter name",
                ),
                "a parameter twice with different values",
            ),
            (
                Some("text/plain; a=1; A=1"),
                None,
                Ok(PrometheusText),
                "the same parameter twice with one value is allowed",
            ),
            (Some("text/plain; a=\"x;y\""), None, Ok(PrometheusText), "quoted values may hold a semicolon"),
            (
                Some("text/plain/x"),
                Some(P::PrometheusProto),
                Ok(PrometheusProto),
                "unparsable (content after the subtype), with a fallback",
            ),
        ];
        for (ct, fallback, want, why) in cases {
            let got = format_from_content_type(*ct, *fallback).map(|(f, _)| f);
            assert_eq!(got.as_ref().map_err(String::as_str).copied(), want.map_err(|e| e), "{why}");
        }
        let (_, note) = format_from_content_type(Some("x/y"), Some(P::PrometheusText1_0_0)).unwrap();
        assert_eq!(
            note.as_deref(),
            Some("received unsupported Content-Type \"x/y\", using fallback_scrape_protocol \"text/plain\""),
            "the message Prometheus logs when it falls back"
        );
    }

    #[test]
    fn protobuf_is_refused_by_the_text_parser() {
        let e = check(b"\x10\x0a", Format::PrometheusProto).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProtobufNotSupported);
        let mut p = Parser::new(b"a 1\n", Format::PrometheusProto);
        assert_eq!(p.next_entry().unwrap_err().kind, ErrorKind::ProtobufNotSupported, "never read as text");
    }

    #[test]
    fn error_display() {
        let e = error_at(b"a 1\nb x\n", ErrorKind::InvalidValue, 6);
        assert_eq!(e.line, 2);
        assert_eq!(e.to_string(), "line 2 (byte offset 6): invalid sample value");
    }

    #[test]
    fn check_counts() {
        let page = b"# HELP a x\n# TYPE a histogram\na_bucket{le=\"1\"} 1\na_sum 1\na_count 1\nb 2\nb 3\n";
        assert_eq!(check(page, Format::PrometheusText), Ok(CheckStats { samples: 5, families: 2 }));
    }
}
