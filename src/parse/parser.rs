//! The scrape-path parser: one forward pass over the body, borrowing every token.
//!
//! The grammar is that of Prometheus' golex lexers (`promlex.l`, `openmetricslex.l`) and the
//! parsers driving them, re-expressed as a hand-written scanner. Label sets are checked for
//! syntax and duplicate names here but decoded only on demand ([`super::Labels`]).
//!
//! # Performance notes (figures in perf/README.md)
//!
//! - Each record is scanned once. Names and short quoted strings are scanned 8 bytes at a
//!   time in a u64 (SWAR, see `lex.rs`); memchr takes over for long strings and line ends.
//! - A fast path ([`Parser::fast_sample`]) handles the shape exporters actually write and
//!   builds the entry in place; everything else, and every error, goes through the general
//!   scanner, which is the reference for the fast one.
//! - UTF-8 is validated once for the whole body; tokens become `&str` by slicing that.
//! - What limits it now is instructions per line (~80-100 cycles fixed per record plus a
//!   few per byte), not memory: see perf/README.md for what would come next.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use super::lex::{self, QuoteError};
use super::number;
use super::{Entry, ErrorKind, Exemplar, Format, MAX_LINE_BYTES, MetricType, ParseError, Sample, error_at};

type Result<T> = std::result::Result<T, ParseError>;

/// Label sets with up to this many names are checked for duplicates as they are scanned,
/// through a 256-bit filter of name hashes (a name is compared only with earlier names of
/// the same hash). Longer ones are sorted and compared once at the end, so a hostile 1 MiB
/// label set costs O(n log n), not O(n^2). Before the filter, the pairwise check of
/// kube-state-metrics' 10-15 unsorted labels took ~25% of its parse time.
const FILTERED_DUP_CHECK_MAX: usize = 64;

/// Label sets the fast path handles (more go to the general path).
const FAST_PATH_MAX_LABELS: usize = 16;

/// A key for the fast path's duplicate check: equal names have equal keys; on equal keys
/// the fast path gives up and the general path compares exactly. Mixes the length, the
/// first and the last (up to) 8 bytes of `b[start..end]`.
#[inline(always)]
fn name_key(b: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    let word = |at: usize| b.get(at..at + 8).and_then(|w| w.try_into().ok()).map(u64::from_le_bytes);
    let head = match word(start) {
        Some(w) if len >= 8 => w,
        Some(w) => w & ((1u64 << (len * 8)) - 1),
        None => b[start..end].iter().take(8).rev().fold(0, |h, &c| (h << 8) | u64::from(c)),
    };
    let tail = if len > 8 { word(end - 8).unwrap_or(0) } else { 0 };
    head ^ tail.rotate_left(29) ^ ((len as u64) << 56)
}

/// A label name inside the input: `start..end` excludes quotes; `escaped` means it is
/// quoted and contains a backslash, so its bytes are not its value.
#[derive(Clone, Copy, Debug)]
struct NameSpan {
    start: usize,
    end: usize,
    escaped: bool,
    /// Filter slot of the name; see [`name_hash`].
    hash: u8,
}

/// An 8-bit hash of the name `b[start..end]`: its length and first (up to) 8 bytes. It reads
/// a whole word at `start` when the buffer allows (a name is followed by at least `="`) and
/// masks off what lies past the name, to avoid a variable-length copy.
#[inline(always)]
fn name_hash(b: &[u8], start: usize, end: usize) -> u8 {
    let len = end - start;
    let head = match b.get(start..start + 8) {
        Some(w) => {
            let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
            if len >= 8 { w } else { w & ((1u64 << (len * 8)) - 1) }
        }
        None => b[start..end].iter().take(8).rev().fold(0u64, |h, &c| (h << 8) | u64::from(c)),
    };
    let x = head ^ (len as u64).rotate_left(59);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

fn names_equal(b: &[u8], x: &NameSpan, y: &NameSpan) -> bool {
    let (xb, yb) = (&b[x.start..x.end], &b[y.start..y.end]);
    if !x.escaped && !y.escaped { xb == yb } else { lex::unescaped_bytes(xb).eq(lex::unescaped_bytes(yb)) }
}

/// What [`Parser::label_set`] found.
struct LabelSetEnd {
    /// Index just past the closing `}`.
    end: usize,
    /// A quoted metric name inside the braces: `(start, end, escaped)`.
    name: Option<(usize, usize, bool)>,
    /// Offset of an explicit `__name__` label.
    dunder_name: Option<usize>,
}

/// Pull parser over a complete exposition body.
///
/// Call [`Parser::next_entry`] until it returns `Ok(None)`. The first error ends the parse:
/// Prometheus fails the whole scrape on any parse error, and so should the caller.
///
/// # Prometheus text format
///
/// Exactly what `promlex.l`/`promparse.go` accept: spaces and tabs between all tokens
/// (also inside braces), optional commas between labels and a trailing comma, blank lines,
/// comments (`#` not followed by blanks and `HELP`/`TYPE` plus a blank), an optional integer
/// millisecond timestamp, the quoted-name syntax `{"name", "label"="v"}`, and quoted strings
/// spanning lines (the lexer's `[^\\"]` matches a line break). One difference is more lenient:
/// - Blanks (spaces, tabs) before a metric name are ignored, as the exposition format's
///   description of the text format allows; Prometheus 2.42's lexer fails the scrape on them.
///
/// The other differences are all stricter, and all about inputs Prometheus would not store
/// anyway:
/// - A duplicate label name, including `__name__` next to a metric name, is a parse error
///   (Prometheus fails the scrape on append instead). An empty quoted name is an error
///   (Prometheus fails it on name validation).
/// - Invalid UTF-8 anywhere but in a comment is an error (Prometheus does not check
///   quoted HELP/TYPE names).
/// - A NUL byte at the start of a line is an error; Prometheus' lexer treats it as the end
///   of the input and silently drops the rest of the page.
///
/// # OpenMetrics
///
/// Syntax-strict like Prometheus' OpenMetrics parser: `# EOF` is mandatory and must be last
/// (one line break after it is allowed), exactly one space separates tokens, no blank
/// lines or other comments, timestamps are float seconds, exemplars are parsed, `# UNIT`
/// must be a suffix of the name. Like Prometheus it accepts a trailing comma in a label set
/// and the quoted-name syntax; [`super::validate_openmetrics`] rejects both. Unlike
/// Prometheus, a raw line break is not accepted inside a quoted name.
#[derive(Debug)]
pub struct Parser<'a> {
    input: &'a [u8],
    /// Start of the next record.
    pos: usize,
    format: Format,
    /// Strict OpenMetrics 1.0 syntax (for the validator).
    strict: bool,
    done: bool,
    /// A window `utf8_start..utf8_start + utf8.len()` of the input known to be UTF-8; every
    /// `&str` handed out is a sub-slice of it, so UTF-8 is checked once per byte, not per token.
    utf8: &'a str,
    utf8_start: usize,
    /// Start of the current record and the end of the bytes it may use: one past
    /// `MAX_LINE_BYTES`, so running into `limit` means the record is too long.
    rec_start: usize,
    limit: usize,
    /// Label names of the current label set (reused; grows to the widest label set seen).
    names: Vec<NameSpan>,
    /// The labels of the last fast-path sample, see [`Parser::fast_label_spans`].
    spans: [[u32; 4]; FAST_PATH_MAX_LABELS],
    span_count: usize,
    /// The record start `spans` belong to (`usize::MAX`: none).
    spans_at: usize,
}

impl<'a> Parser<'a> {
    /// A parser over the whole body `input` in `format`.
    pub fn new(input: &'a [u8], format: Format) -> Self {
        let mut p = Parser {
            input,
            pos: 0,
            format,
            strict: false,
            done: false,
            utf8: "",
            utf8_start: 0,
            rec_start: 0,
            limit: 0,
            names: Vec::new(),
            spans: [[0; 4]; FAST_PATH_MAX_LABELS],
            span_count: 0,
            spans_at: usize::MAX,
        };
        p.revalidate(0);
        p
    }

    /// OpenMetrics with the strict 1.0 syntax: no trailing commas, no quoted names.
    pub(crate) fn new_strict_openmetrics(input: &'a [u8]) -> Self {
        let mut p = Parser::new(input, Format::OpenMetrics);
        p.strict = true;
        p
    }

    /// Byte offset where the last returned entry's record starts.
    pub(crate) fn record_start(&self) -> usize {
        self.rec_start
    }

    /// The labels of the last returned sample, when it took the fast path (the usual line
    /// shape): per label, `[name start, name end, value start, value end]` as offsets into the
    /// input. Such names are unquoted and such values have no escapes, so the spans are the
    /// labels. `None` for other lines, whose labels [`Sample::labels`] decodes. The scrape path
    /// writes a series' record from these instead of scanning the labels a second time (the
    /// second scan was ~9 % of trawl's CPU at 1M series, perf/README.md).
    #[inline]
    pub fn fast_label_spans(&self) -> Option<&[[u32; 4]]> {
        (self.spans_at == self.rec_start).then(|| &self.spans[..self.span_count])
    }

    /// The next entry; `Ok(None)` at the end. After an error the parser is done (further
    /// calls return `Ok(None)`).
    pub fn next_entry(&mut self) -> Result<Option<Entry<'a>>> {
        if self.done {
            return Ok(None);
        }
        if self.format == Format::PrometheusProto {
            // Protobuf pages go to `proto` (the page processor gives this parser their
            // translation as text), never here.
            self.done = true;
            return Err(error_at(self.input, ErrorKind::ProtobufNotSupported, 0));
        }
        if let Some(entry) = self.try_fast_sample() {
            return Ok(Some(entry));
        }
        let r = match self.format {
            Format::PrometheusText => self.next_text(),
            Format::OpenMetrics => self.next_openmetrics(),
            Format::PrometheusProto => Ok(None), // refused above
        };
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r
    }

    // === records ===

    /// The common case first: a record that starts with a metric name and matches the fast
    /// path's shape, built straight into the returned entry. Returning the 128-byte sample
    /// through `Option<Sample>` and two more layers cost ~15 ns a line in copies (stalled
    /// store-to-load forwarding); this keeps one construction site.
    #[inline(always)]
    fn try_fast_sample(&mut self) -> Option<Entry<'a>> {
        let start = self.pos;
        if !self.input.get(start).copied().is_some_and(lex::is_metric_start) {
            return None;
        }
        self.begin_record(start);
        let b = &self.input[..self.limit];
        self.fast_sample(b, start).map(Entry::Sample)
    }

    fn begin_record(&mut self, start: usize) {
        self.rec_start = start;
        self.limit = start.saturating_add(MAX_LINE_BYTES + 1).min(self.input.len());
    }

    #[inline(always)]
    fn next_text(&mut self) -> Result<Option<Entry<'a>>> {
        loop {
            let start = self.pos;
            if start >= self.input.len() {
                return Ok(None);
            }
            self.begin_record(start);
            let b = &self.input[..self.limit];
            let i = lex::skip_blanks(b, start);
            match b.get(i) {
                None if self.limit < self.input.len() => {
                    return Err(self.fail(ErrorKind::LineTooLong, i));
                }
                None => {
                    self.pos = i;
                    return Ok(None);
                }
                Some(b'\n') => self.pos = i + 1,
                // Passed through whole: unpacking `Result<Option<Entry>>` with `?` and
                // re-wrapping it made rustc store and reload the tag at an unaligned offset,
                // a store-forwarding stall that cost ~40% of a HELP/TYPE line.
                Some(b'#') => match self.text_hash(b, i) {
                    Ok(None) => {}
                    other => return other,
                },
                Some(&c) if lex::is_metric_start(c) || c == b'{' => {
                    return self.sample(b, i).map(|s| Some(Entry::Sample(s)));
                }
                Some(_) => return Err(self.fail(ErrorKind::ExpectedMetricName, i)),
            }
        }
    }

    /// A `#` line in the text format: HELP or TYPE (`#`, blanks, keyword, blanks), otherwise
    /// a comment, skipped whatever it holds.
    #[inline(always)]
    fn text_hash(&mut self, b: &'a [u8], hash: usize) -> Result<Option<Entry<'a>>> {
        let after = lex::skip_blanks(b, hash + 1);
        if after > hash + 1 {
            let kw = b.get(after..after + 4);
            let is_help = kw == Some(b"HELP");
            if (is_help || kw == Some(b"TYPE")) && matches!(b.get(after + 4), Some(b' ' | b'\t')) {
                return self.text_metadata(b, after + 4, is_help);
            }
        }
        self.pos = self.line_end(b, hash + 1)?.saturating_add(1).min(self.input.len());
        Ok(None)
    }

    #[inline(always)]
    fn text_metadata(&mut self, b: &'a [u8], from: usize, is_help: bool) -> Result<Option<Entry<'a>>> {
        let m = lex::skip_blanks(b, from);
        let (ns, ne, next) = match b.get(m) {
            Some(&c) if lex::is_metric_start(c) => {
                let e = lex::scan_metric_name(b, m);
                (m, e, e)
            }
            Some(b'"') => {
                let (e, _) = lex::scan_quoted(b, m, true).map_err(|q| self.quote_error(q))?;
                (m + 1, e - 1, e)
            }
            _ => return Err(self.fail(ErrorKind::ExpectedMetadataName, m)),
        };
        // One pass finds the line end and whether a backslash (an escape) comes before it.
        let (eol, escaped) = match lex::find2(b, next, b'\n', b'\\') {
            Some(k) if b[k] == b'\\' => (self.line_end(b, k)?, true),
            Some(k) => (k, false),
            None => (self.line_end(b, b.len())?, false),
        };
        // Lexer rule `<sMeta2>{C}*` against `<*>[ \t]+`: blanks-only text loses the tie and
        // is skipped, so the text is empty; otherwise the token's first byte is dropped.
        let (ts, te) =
            if b[next..eol].iter().all(|&c| c == b' ' || c == b'\t') { (eol, eol) } else { (next + 1, eol) };
        self.pos = (eol + 1).min(self.input.len());
        let name = self.str_at(ns, ne)?;
        if is_help {
            let text = self.str_at(ts, te)?;
            let help = if escaped { lex::unescape_help(text) } else { Cow::Borrowed(text) };
            Ok(Some(Entry::Help { name, help }))
        } else {
            let kind = MetricType::from_text(&b[ts..te])
                .ok_or_else(|| self.fail(ErrorKind::InvalidMetricType, ts))?;
            Ok(Some(Entry::Type { name, kind }))
        }
    }

    fn next_openmetrics(&mut self) -> Result<Option<Entry<'a>>> {
        let start = self.pos;
        self.begin_record(start);
        let b = &self.input[..self.limit];
        match b.get(start) {
            None => Err(self.fail(ErrorKind::MissingEof, start)),
            Some(b'#') => self.openmetrics_hash(b, start),
            Some(&c) if lex::is_metric_start(c) || c == b'{' => {
                self.sample(b, start).map(|s| Some(Entry::Sample(s)))
            }
            Some(b'\n') => Err(self.fail(ErrorKind::BlankLine, start)),
            Some(b' ' | b'\t') => Err(self.fail(ErrorKind::UnexpectedWhitespace, start)),
            Some(_) => Err(self.fail(ErrorKind::ExpectedMetricName, start)),
        }
    }

    /// `# HELP`, `# TYPE`, `# UNIT` or `# EOF`; nothing else may start with `#`.
    fn openmetrics_hash(&mut self, b: &'a [u8], hash: usize) -> Result<Option<Entry<'a>>> {
        if b.get(hash + 1) != Some(&b' ') {
            return Err(self.fail(ErrorKind::InvalidComment, hash));
        }
        let k = hash + 2;
        let word = b.get(k..).unwrap_or_default();
        if word.starts_with(b"EOF") {
            let mut end = k + 3;
            if self.input.get(end) == Some(&b'\n') {
                end += 1;
            }
            if end != self.input.len() {
                return Err(self.fail(ErrorKind::TextAfterEof, end));
            }
            self.pos = end;
            return Ok(None);
        }
        #[derive(PartialEq)]
        enum Kw {
            Help,
            Type,
            Unit,
        }
        let kw = if word.starts_with(b"HELP ") {
            Kw::Help
        } else if word.starts_with(b"TYPE ") {
            Kw::Type
        } else if word.starts_with(b"UNIT ") {
            Kw::Unit
        } else {
            return Err(self.fail(ErrorKind::InvalidComment, k));
        };
        let m = k + 5;
        let (ns, ne, next) = match b.get(m) {
            Some(&c) if lex::is_metric_start(c) => {
                let e = lex::scan_metric_name(b, m);
                (m, e, e)
            }
            Some(b'"') if self.strict => return Err(self.fail(ErrorKind::QuotedName, m)),
            Some(b'"') => {
                let (e, _) = lex::scan_quoted(b, m, false).map_err(|q| self.quote_error(q))?;
                (m + 1, e - 1, e)
            }
            _ => return Err(self.fail(ErrorKind::ExpectedMetadataName, m)),
        };
        if b.get(next) != Some(&b' ') {
            return Err(self.fail(ErrorKind::MissingMetadataText, next));
        }
        let ts = next + 1;
        let Some(k) = memchr(b'\n', &b[ts..]) else {
            return Err(self.fail(ErrorKind::MissingEof, b.len()));
        };
        let te = ts + k;
        self.pos = te + 1;
        let name = self.str_at(ns, ne)?;
        match kw {
            Kw::Help => {
                let text = self.str_at(ts, te)?;
                Ok(Some(Entry::Help { name, help: lex::unescape_label(text) }))
            }
            Kw::Type => {
                let kind = MetricType::from_openmetrics(&b[ts..te])
                    .ok_or_else(|| self.fail(ErrorKind::InvalidMetricType, ts))?;
                Ok(Some(Entry::Type { name, kind }))
            }
            Kw::Unit => {
                let unit = self.str_at(ts, te)?;
                // Prometheus: the unit must be a `_unit` suffix of the name.
                let ok = unit.is_empty()
                    || (name.len() > unit.len()
                        && name.ends_with(unit)
                        && name.as_bytes()[name.len() - unit.len() - 1] == b'_');
                if !ok {
                    return Err(self.fail(ErrorKind::UnitNotSuffix, ts));
                }
                Ok(Some(Entry::Unit { name, unit }))
            }
        }
    }

    // === samples ===

    #[inline]
    fn sample(&mut self, b: &'a [u8], start: usize) -> Result<Sample<'a>> {
        if let Some(s) = self.fast_sample(b, start) {
            return Ok(s);
        }
        self.general_sample(b, start)
    }

    /// The common shape, as exporters write it: `name{a="b",c="d"} value[ timestamp]` with
    /// single separators, plain label names and no escapes, no exemplar. Anything else (and
    /// any error) returns `None` and goes to [`Parser::general_sample`], which accepts a
    /// superset and so must produce the same sample for every line this accepts; the
    /// property tests hold both to the naive parser. The synthetic node page went from ~690
    /// to ~780 MB/s with it (min of 30 runs on the 2-core dev VM).
    #[inline(always)]
    fn fast_sample(&mut self, b: &'a [u8], start: usize) -> Option<Sample<'a>> {
        let om = self.format == Format::OpenMetrics;
        let ne = lex::scan_metric_name(b, start);
        if ne == start {
            return None;
        }
        let mut i = ne;
        let mut labels = (ne, ne);
        let mut span_count = 0;
        if b.get(i) == Some(&b'{') {
            i += 1;
            if b.get(i) != Some(&b'}') {
                let mut keys = [0u64; FAST_PATH_MAX_LABELS];
                let mut n = 0;
                loop {
                    let ls = i;
                    let le = lex::scan_label_name(b, ls);
                    if !b.get(ls).copied().is_some_and(lex::is_label_start)
                        || b.get(le) != Some(&b'=')
                        || b.get(le + 1) != Some(&b'"')
                    {
                        return None;
                    }
                    let q = lex::find_quote_end(b, le + 2, !om)?;
                    if b[q] != b'"' {
                        return None;
                    }
                    let key = name_key(b, ls, le);
                    if n == FAST_PATH_MAX_LABELS || keys[..n].contains(&key) || &b[ls..le] == b"__name__" {
                        return None;
                    }
                    keys[n] = key;
                    // Offsets fit in u32: the caller checks the input's length.
                    self.spans[n] = [ls as u32, le as u32, (le + 2) as u32, q as u32];
                    n += 1;
                    i = q + 1;
                    match b.get(i) {
                        Some(b',') if b.get(i + 1) != Some(&b'}') => i += 1,
                        Some(b'}') => break,
                        _ => return None,
                    }
                }
                span_count = n;
            }
            labels = (ne + 1, i);
            i += 1;
        }
        let series_end = i;
        if b.get(i) != Some(&b' ') {
            return None;
        }
        let vs = i + 1;
        let (value, n) = number::parse_value_prefix(&b[vs..])?;
        let mut j = vs + n;
        let mut timestamp_ms = None;
        let mut timestamp_secs = f64::NAN;
        if b.get(j) == Some(&b' ') {
            let ts = j + 1;
            if om {
                if b[ts..].starts_with(b"# {") {
                    return None;
                }
                let (t, n) = number::parse_value_prefix(&b[ts..])?;
                timestamp_secs = t;
                timestamp_ms = Some(number::seconds_to_millis(t));
                j = ts + n;
            } else {
                // Up to 18 digits cannot overflow i64; longer ones take the general path.
                let mut e = ts;
                let mut v: i64 = 0;
                while e < b.len() && e - ts < 18 && b[e].is_ascii_digit() {
                    v = v * 10 + i64::from(b[e] - b'0');
                    e += 1;
                }
                if e == ts {
                    return None;
                }
                timestamp_ms = Some(v);
                j = e;
            }
        }
        match b.get(j) {
            Some(b'\n') => {}
            None if !om && self.limit == self.input.len() => {}
            _ => return None,
        }
        let series = self.str_at(start, series_end).ok()?;
        let name = series.get(..ne - start)?;
        let labels = series.get(labels.0 - start..labels.1 - start)?;
        self.pos = (j + 1).min(self.input.len());
        if self.input.len() <= u32::MAX as usize {
            self.spans_at = start;
            self.span_count = span_count;
        }
        Some(Sample {
            series,
            name,
            name_escaped: 0,
            labels,
            value,
            timestamp_ms,
            timestamp_secs,
            exemplar: None,
        })
    }

    fn general_sample(&mut self, b: &'a [u8], start: usize) -> Result<Sample<'a>> {
        let om = self.format == Format::OpenMetrics;
        let mut name = None;
        let mut i = start;
        let mut series_end = start;
        let mut labels = (start, start);
        let mut dunder_name = None;
        if b[start] != b'{' {
            let e = lex::scan_metric_name(b, start);
            name = Some((start, e, false));
            series_end = e;
            i = if om { e } else { lex::skip_blanks(b, e) };
            if b.get(i) != Some(&b'{') {
                i = e;
            }
        }
        if b.get(i) == Some(&b'{') {
            let set = self.label_set(b, i, name.is_some(), false)?;
            labels = (i + 1, set.end - 1);
            if set.name.is_some() {
                name = set.name;
            }
            dunder_name = set.dunder_name;
            series_end = set.end;
            i = set.end;
        }
        let Some((ns, ne, name_escaped)) = name else {
            return Err(self.fail(ErrorKind::MissingMetricName, start));
        };
        if let Some(off) = dunder_name {
            return Err(self.fail(ErrorKind::DuplicateLabelName, off));
        }
        if ns == ne {
            return Err(self.fail(ErrorKind::EmptyName, ns - 1));
        }

        let mut timestamp_ms = None;
        let mut timestamp_secs = f64::NAN;
        let mut exemplar = None;
        let value;
        if om {
            if !matches!(b.get(i), Some(b' ' | b'\t' | b'\n') | None) {
                // `a.b 1`, `a{}1`: the name or label set runs straight into other text.
                let kind = if i == ne { ErrorKind::InvalidMetricName } else { ErrorKind::ExpectedSpace };
                return Err(self.fail(kind, i));
            }
            let (v, ve) = self.om_number(b, i, ErrorKind::InvalidValue)?;
            value = v;
            let mut j = ve;
            if b.get(j) == Some(&b' ') && !b[j + 1..].starts_with(b"# {") {
                let (ts, te) = self.om_number(b, j, ErrorKind::InvalidTimestamp)?;
                if !ts.is_finite() {
                    return Err(self.fail(ErrorKind::InvalidTimestamp, j + 1));
                }
                timestamp_secs = ts;
                timestamp_ms = Some(number::seconds_to_millis(ts));
                j = te;
            }
            if b.get(j) == Some(&b' ') {
                if !b[j + 1..].starts_with(b"# {") {
                    return Err(self.fail(ErrorKind::TrailingText, j));
                }
                let (ex, end) = self.exemplar(b, j + 3)?;
                exemplar = Some(ex);
                j = end;
            }
            match b.get(j) {
                Some(b'\n') => self.pos = j + 1,
                None => return Err(self.fail(ErrorKind::MissingEof, j)),
                Some(_) => return Err(self.fail(ErrorKind::TrailingText, j)),
            }
        } else {
            let vs = lex::skip_blanks(b, i);
            let (v, ve) = match number::parse_value_prefix(&b[vs..]) {
                Some((v, n)) if matches!(b.get(vs + n), None | Some(b' ' | b'\t' | b'\n' | b'{')) => {
                    (v, vs + n)
                }
                _ => {
                    let ve = scan_text_value(b, vs);
                    if ve == vs {
                        return Err(self.fail(ErrorKind::MissingValue, vs));
                    }
                    (self.value_at(b, vs, ve, ErrorKind::InvalidValue)?, ve)
                }
            };
            value = v;
            let mut j = lex::skip_blanks(b, ve);
            if let Some(c) = b.get(j).copied().filter(|&c| c != b'\n') {
                if !c.is_ascii_digit() {
                    return Err(self.fail(ErrorKind::InvalidTimestamp, j));
                }
                let mut te = j;
                while te < b.len() && b[te].is_ascii_digit() {
                    te += 1;
                }
                timestamp_ms = Some(
                    number::parse_int_timestamp(&b[j..te])
                        .ok_or_else(|| self.fail(ErrorKind::InvalidTimestamp, j))?,
                );
                j = lex::skip_blanks(b, te);
            }
            self.end_text_record(b, j)?;
        }

        let series = self.str_at(start, series_end)?;
        let name = if ns == start { series.get(..ne - ns) } else { series.get(ns - start..ne - start) };
        let labels = series.get(labels.0 - start..labels.1 - start);
        let (Some(name), Some(labels)) = (name, labels) else {
            // Unreachable: both spans end at ASCII delimiters inside `series`.
            return Err(self.fail(ErrorKind::InvalidUtf8, start));
        };
        Ok(Sample {
            series,
            name,
            name_escaped: u32::from(name_escaped),
            labels,
            value,
            timestamp_ms,
            timestamp_secs,
            exemplar,
        })
    }

    /// After the value and optional timestamp of a text sample: a line break or the end.
    fn end_text_record(&mut self, b: &[u8], j: usize) -> Result<()> {
        match b.get(j) {
            Some(b'\n') => {
                self.pos = j + 1;
                Ok(())
            }
            None if self.limit == self.input.len() => {
                self.pos = j;
                Ok(())
            }
            _ => Err(self.fail(ErrorKind::TrailingText, j)),
        }
    }

    /// OpenMetrics `SP number`: the space at `b[sp]`, then a token up to a space or line
    /// break. Returns the value and the index after the token.
    fn om_number(&self, b: &[u8], sp: usize, kind: ErrorKind) -> Result<(f64, usize)> {
        match b.get(sp) {
            Some(b' ') => {}
            Some(b'\t') => return Err(self.fail(ErrorKind::UnexpectedWhitespace, sp)),
            Some(b'\n') | None if kind == ErrorKind::InvalidValue => {
                return Err(self.fail(ErrorKind::MissingValue, sp));
            }
            _ => return Err(self.fail(kind, sp)),
        }
        let s = sp + 1;
        if let Some((v, n)) = number::parse_value_prefix(&b[s..])
            && matches!(b.get(s + n), None | Some(b' ' | b'\n'))
        {
            return Ok((v, s + n));
        }
        let e = memchr2(b' ', b'\n', &b[s..]).map_or(b.len(), |k| s + k);
        if e == s {
            // `a  1` (two spaces), `a 1 ` (trailing space) or `a ` (no value).
            let kind = match b.get(s) {
                Some(b' ') => ErrorKind::UnexpectedWhitespace,
                _ if kind == ErrorKind::InvalidValue => ErrorKind::MissingValue,
                _ => ErrorKind::UnexpectedWhitespace,
            };
            return Err(self.fail(kind, s));
        }
        Ok((self.value_at(b, s, e, kind)?, e))
    }

    fn value_at(&self, b: &[u8], s: usize, e: usize, kind: ErrorKind) -> Result<f64> {
        if e >= self.limit && self.limit < self.input.len() {
            // The token runs into the length cap: it is cut, not bad.
            return Err(self.fail(kind, e));
        }
        number::parse_value(&b[s..e]).ok_or_else(|| {
            let off = memchr(0, &b[s..e]).map_or(s, |k| s + k);
            self.fail(kind, off)
        })
    }

    /// `{labels} value [timestamp]` after ` # `; `open` is the `{`.
    fn exemplar(&mut self, b: &'a [u8], open: usize) -> Result<(Exemplar<'a>, usize)> {
        let set = self.label_set(b, open, true, true)?;
        let (value, ve) = self.om_number(b, set.end, ErrorKind::InvalidExemplar)?;
        let mut j = ve;
        let mut timestamp_ms = None;
        if b.get(j) == Some(&b' ') {
            let (ts, te) = self.om_number(b, j, ErrorKind::InvalidExemplar)?;
            if !ts.is_finite() {
                return Err(self.fail(ErrorKind::InvalidExemplar, j + 1));
            }
            timestamp_ms = Some(number::seconds_to_millis(ts));
            j = te;
        }
        let labels = self.str_at(open + 1, set.end - 1)?;
        Ok((Exemplar { labels, value, timestamp_ms }, j))
    }

    /// Scans `{...}` starting at the `{` at `b[open]`: syntax, a quoted metric name, and
    /// duplicate label names.
    fn label_set(
        &mut self,
        b: &[u8],
        open: usize,
        mut has_name: bool,
        exemplar: bool,
    ) -> Result<LabelSetEnd> {
        let text = self.format == Format::PrometheusText;
        self.names.clear();
        let mut i = open + 1;
        let mut qname = None;
        let mut dunder_name = None;
        let mut any_escaped = false;
        let mut filter = [0u64; 4];
        loop {
            if text {
                i = lex::skip_blanks(b, i);
            }
            let (ns, ne, escaped, quoted) = match b.get(i) {
                Some(b'}') => {
                    i += 1;
                    break;
                }
                Some(&c) if lex::is_label_start(c) => {
                    let e = lex::scan_label_name(b, i);
                    let span = (i, e, false, false);
                    i = e;
                    span
                }
                Some(b'"') => {
                    let (e, esc) = lex::scan_quoted(b, i, text).map_err(|q| self.quote_error(q))?;
                    let span = (i + 1, e - 1, esc, true);
                    i = e;
                    span
                }
                _ => return Err(self.fail(ErrorKind::ExpectedLabelName, i)),
            };
            if text {
                i = lex::skip_blanks(b, i);
            }
            let next = b.get(i).copied();
            if quoted && self.strict {
                return Err(self.fail(ErrorKind::QuotedName, ns - 1));
            }
            if quoted && matches!(next, Some(b',' | b'}')) {
                // `"name"` followed by `,` or `}` is the metric name (Prometheus 3 syntax).
                if exemplar {
                    return Err(self.fail(ErrorKind::InvalidExemplar, ns - 1));
                }
                if has_name {
                    return Err(self.fail(ErrorKind::MetricNameTwice, ns - 1));
                }
                has_name = true;
                qname = Some((ns, ne, escaped));
                i += 1;
                if next == Some(b'}') {
                    break;
                }
                continue;
            }
            if next != Some(b'=') {
                return Err(self.fail(ErrorKind::ExpectedEquals, i));
            }
            i += 1;
            if text {
                i = lex::skip_blanks(b, i);
            }
            if b.get(i) != Some(&b'"') {
                return Err(self.fail(ErrorKind::ExpectedLabelValue, i));
            }
            let (e, _) = lex::scan_quoted(b, i, text).map_err(|q| self.quote_error(q))?;
            if ns == ne {
                return Err(self.fail(ErrorKind::EmptyName, ns - 1));
            }
            // No escape sequence can produce or hide the bytes of `__name__`.
            if !exemplar && &b[ns..ne] == b"__name__" && dunder_name.is_none() {
                dunder_name = Some(ns);
            }
            let name = NameSpan { start: ns, end: ne, escaped, hash: name_hash(b, ns, ne) };
            any_escaped |= escaped;
            if !any_escaped && self.names.len() < FILTERED_DUP_CHECK_MAX {
                let (word, bit) = (usize::from(name.hash >> 6), 1u64 << (name.hash & 63));
                if filter[word] & bit != 0
                    && self.names.iter().any(|x| x.hash == name.hash && names_equal(b, x, &name))
                {
                    return Err(self.fail(ErrorKind::DuplicateLabelName, ns));
                }
                filter[word] |= bit;
            }
            self.names.push(name);
            i = e;
            if text {
                i = lex::skip_blanks(b, i);
                if b.get(i) == Some(&b',') {
                    i += 1;
                }
            } else {
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        if self.strict && b.get(i) == Some(&b'}') {
                            return Err(self.fail(ErrorKind::TrailingComma, i - 1));
                        }
                    }
                    Some(b'}') => {}
                    _ => return Err(self.fail(ErrorKind::ExpectedCommaOrBrace, i)),
                }
            }
        }
        if (any_escaped || self.names.len() > FILTERED_DUP_CHECK_MAX)
            && let Some(off) = self.find_duplicate(b)
        {
            return Err(self.fail(ErrorKind::DuplicateLabelName, off));
        }
        Ok(LabelSetEnd { end: i, name: qname, dunder_name })
    }

    /// Offset of a repeated label name in `self.names` (for label sets with escaped names or
    /// too many names for the filter): sort by unescaped name, compare neighbours.
    #[cold]
    fn find_duplicate(&mut self, b: &[u8]) -> Option<usize> {
        let bytes = |n: &NameSpan| lex::unescaped_bytes(&b[n.start..n.end]);
        self.names.sort_unstable_by(|x, y| bytes(x).cmp(bytes(y)));
        self.names
            .windows(2)
            .filter(|w| names_equal(b, &w[0], &w[1]))
            .map(|w| w[0].start.max(w[1].start))
            .min()
    }

    // === helpers ===

    /// Index of the `\n` ending the line that contains `from`, or the end of the input.
    fn line_end(&self, b: &[u8], from: usize) -> Result<usize> {
        match memchr(b'\n', b.get(from..).unwrap_or_default()) {
            Some(k) => Ok(from + k),
            None if self.limit < self.input.len() => Err(self.fail(ErrorKind::LineTooLong, b.len())),
            None => Ok(b.len()),
        }
    }

    /// `input[a..e]` as `&str`, or an InvalidUtf8 error at the first bad byte.
    #[inline]
    fn str_at(&mut self, a: usize, e: usize) -> Result<&'a str> {
        let window_end = self.utf8_start + self.utf8.len();
        if a < self.utf8_start || a > window_end {
            // Only after skipping a comment that holds invalid UTF-8.
            self.revalidate(a);
        }
        let window_end = self.utf8_start + self.utf8.len();
        if e > window_end {
            return Err(self.fail(ErrorKind::InvalidUtf8, window_end));
        }
        self.utf8
            .get(a - self.utf8_start..e - self.utf8_start)
            .ok_or_else(|| self.fail(ErrorKind::InvalidUtf8, a))
    }

    /// Validates UTF-8 from `from` to the end of the input or the first invalid byte.
    #[inline(never)]
    fn revalidate(&mut self, from: usize) {
        let rest = self.input.get(from..).unwrap_or_default();
        self.utf8 = match std::str::from_utf8(rest) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
        };
        self.utf8_start = from;
    }

    fn quote_error(&self, q: QuoteError) -> ParseError {
        match q {
            QuoteError::Unterminated(off) => self.fail(ErrorKind::UnterminatedString, off),
            QuoteError::BackslashNewline(off) => self.fail(ErrorKind::InvalidEscape, off),
        }
    }

    /// Builds the error for `kind` at `offset`. Running into the record's length cap is
    /// reported as [`ErrorKind::LineTooLong`] whatever was expected there, and an
    /// unexpected NUL byte as [`ErrorKind::NulByte`].
    #[cold]
    fn fail(&self, kind: ErrorKind, offset: usize) -> ParseError {
        if offset >= self.limit && self.limit < self.input.len() {
            return error_at(self.input, ErrorKind::LineTooLong, self.rec_start + MAX_LINE_BYTES);
        }
        let kind = if self.input.get(offset) == Some(&0) { ErrorKind::NulByte } else { kind };
        error_at(self.input, kind, offset)
    }
}

/// End of a text-format value token: the lexer's `[^{ \t\n]+`.
#[inline]
fn scan_text_value(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\n' | b'{') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
