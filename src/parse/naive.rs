//! A reference parser written for clarity, not speed: it walks the input one byte at a
//! time, allocates freely and returns owned entries. The property tests and the fuzz target
//! check that [`super::Parser`] agrees with it on every input (same entries, or both fail).
//!
//! It implements the same grammar as the fast parser (see its docs) but shares none of its
//! code: it has its own scanning, unescaping, UTF-8 checks and number syntax (the decimal
//! value itself comes from `str::parse::<f64>`, so the fast path's own rounding is checked
//! too). Public (but hidden) only so that the fuzz crate can reach it.

use super::{Entry, Format, MAX_LINE_BYTES, MetricType};

/// An owned entry. Values compare by bits, so NaNs compare equal to NaNs with the same bits.
#[derive(Clone, Debug)]
pub enum NaiveEntry {
    Help { name: String, help: String },
    Type { name: String, kind: MetricType },
    Unit { name: String, unit: String },
    Sample(NaiveSample),
}

#[derive(Clone, Debug)]
pub struct NaiveSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<NaiveExemplar>,
    pub raw_series: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct NaiveExemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl PartialEq for NaiveEntry {
    fn eq(&self, other: &Self) -> bool {
        use NaiveEntry::*;
        match (self, other) {
            (Help { name: a, help: b }, Help { name: c, help: d }) => a == c && b == d,
            (Type { name: a, kind: b }, Type { name: c, kind: d }) => a == c && b == d,
            (Unit { name: a, unit: b }, Unit { name: c, unit: d }) => a == c && b == d,
            (Sample(a), Sample(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for NaiveSample {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.labels == o.labels
            && self.value.to_bits() == o.value.to_bits()
            && self.timestamp_ms == o.timestamp_ms
            && self.exemplar == o.exemplar
            && self.raw_series == o.raw_series
    }
}

impl PartialEq for NaiveExemplar {
    fn eq(&self, o: &Self) -> bool {
        self.labels == o.labels
            && self.value.to_bits() == o.value.to_bits()
            && self.timestamp_ms == o.timestamp_ms
    }
}

/// Converts an entry of the fast parser into the owned form, for comparisons.
pub fn from_entry(entry: &Entry<'_>) -> NaiveEntry {
    match entry {
        Entry::Help { name, help } => NaiveEntry::Help { name: name.to_string(), help: help.to_string() },
        Entry::Type { name, kind } => NaiveEntry::Type { name: name.to_string(), kind: *kind },
        Entry::Unit { name, unit } => NaiveEntry::Unit { name: name.to_string(), unit: unit.to_string() },
        Entry::Sample(s) => NaiveEntry::Sample(NaiveSample {
            name: s.name().into_owned(),
            labels: s.labels().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
            value: s.value(),
            timestamp_ms: s.timestamp_ms(),
            exemplar: s.exemplar().map(|e| NaiveExemplar {
                labels: e.labels().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
                value: e.value(),
                timestamp_ms: e.timestamp_ms(),
            }),
            raw_series: s.raw_series().to_vec(),
        }),
    }
}

/// Runs the fast parser to the end and converts its entries.
pub fn parse_fast(input: &[u8], format: Format) -> std::result::Result<Vec<NaiveEntry>, super::ParseError> {
    let mut p = super::Parser::new(input, format);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry()? {
        out.push(from_entry(&e));
    }
    Ok(out)
}

/// Why the naive parser gave up: a byte offset and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NaiveError {
    pub offset: usize,
    pub reason: String,
}

type Result<T> = std::result::Result<T, NaiveError>;

/// Parses a whole exposition into owned entries.
pub fn parse(input: &[u8], format: Format) -> Result<Vec<NaiveEntry>> {
    let mut c = Cursor { b: input, i: 0 };
    match format {
        Format::PrometheusText => parse_text(&mut c),
        Format::OpenMetrics => parse_openmetrics(&mut c),
        Format::PrometheusProto => {
            Err(NaiveError { offset: 0, reason: "the text parser does not read protobuf".into() })
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn rest(&self) -> &[u8] {
        &self.b[self.i..]
    }
    fn fail<T>(&self, reason: &str) -> Result<T> {
        Err(NaiveError { offset: self.i, reason: reason.to_string() })
    }
    fn expect(&mut self, want: u8, reason: &str) -> Result<()> {
        if self.peek() == Some(want) {
            self.i += 1;
            Ok(())
        } else {
            self.fail(reason)
        }
    }
    fn skip_blanks(&mut self) {
        while self.peek() == Some(b' ') || self.peek() == Some(b'\t') {
            self.i += 1;
        }
    }
    /// Takes bytes while `keep` holds.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if !keep(c) {
                break;
            }
            out.push(c);
            self.i += 1;
        }
        out
    }
    /// A quoted string; returns its raw contents (escapes kept). The text format allows raw
    /// line breaks inside; OpenMetrics does not. A backslash must not precede a line break.
    fn quoted(&mut self, allow_newline: bool) -> Result<Vec<u8>> {
        self.expect(b'"', "expected a quote")?;
        let mut raw = Vec::new();
        loop {
            match self.bump() {
                None => return self.fail("unterminated string"),
                Some(b'"') => return Ok(raw),
                Some(b'\\') => match self.bump() {
                    None | Some(b'\n') => return self.fail("bad escape"),
                    Some(c) => {
                        raw.push(b'\\');
                        raw.push(c);
                    }
                },
                Some(b'\n') if !allow_newline => return self.fail("line break in string"),
                Some(c) => raw.push(c),
            }
        }
    }
    /// Ends a record: checks its length and consumes the line break.
    fn end_record(&mut self, start: usize, om: bool) -> Result<()> {
        let end = self.i;
        match self.peek() {
            Some(b'\n') => self.i += 1,
            None if !om => {}
            None => return self.fail("missing # EOF"),
            Some(_) => return self.fail("text after the record"),
        }
        if end - start > MAX_LINE_BYTES {
            return Err(NaiveError { offset: start, reason: "line too long".into() });
        }
        Ok(())
    }
}

fn is_metric_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}
fn is_metric_char(c: u8) -> bool {
    is_metric_start(c) || c.is_ascii_digit()
}
fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_label_char(c: u8) -> bool {
    is_label_start(c) || c.is_ascii_digit()
}

fn utf8(bytes: Vec<u8>, at: usize) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| NaiveError { offset: at, reason: "invalid UTF-8".into() })
}

/// `\\` → `\`, `\n` → line break, and (if `quote`) `\"` → `"`; other backslashes stay.
fn unescape(raw: &str, quote: bool) -> String {
    let mut out = String::new();
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.peek() {
                Some('\\') => {
                    out.push('\\');
                    it.next();
                }
                Some('n') => {
                    out.push('\n');
                    it.next();
                }
                Some('"') if quote => {
                    out.push('"');
                    it.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Go `ParseFloat` syntax minus `p`, `P`, `_` (Prometheus' `parseFloat`). NaN is
/// Prometheus' normal NaN.
fn float(tok: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(tok).ok()?;
    if s.contains(['p', 'P', '_']) {
        return None;
    }
    match s.to_ascii_lowercase().as_str() {
        "nan" => return Some(f64::from_bits(super::number::NORMAL_NAN_BITS)),
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // sign? digits* (. digits*)? with at least one digit, then (e sign? digits+)?
    let chars: Vec<char> = s.chars().collect();
    let mut k = 0;
    if k < chars.len() && (chars[k] == '+' || chars[k] == '-') {
        k += 1;
    }
    let mut digits = 0;
    while k < chars.len() && chars[k].is_ascii_digit() {
        k += 1;
        digits += 1;
    }
    if k < chars.len() && chars[k] == '.' {
        k += 1;
        while k < chars.len() && chars[k].is_ascii_digit() {
            k += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if k < chars.len() && (chars[k] == 'e' || chars[k] == 'E') {
        k += 1;
        if k < chars.len() && (chars[k] == '+' || chars[k] == '-') {
            k += 1;
        }
        let start = k;
        while k < chars.len() && chars[k].is_ascii_digit() {
            k += 1;
        }
        if k == start {
            return None;
        }
    }
    if k != chars.len() {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() { None } else { Some(v) }
}

// === Prometheus text ===

fn parse_text(c: &mut Cursor<'_>) -> Result<Vec<NaiveEntry>> {
    let mut out = Vec::new();
    loop {
        let start = c.i;
        c.skip_blanks();
        match c.peek() {
            None => {
                if c.i - start > MAX_LINE_BYTES {
                    return c.fail("line too long");
                }
                return Ok(out);
            }
            Some(b'\n') => {}
            Some(b'#') => {
                c.bump();
                let blanks = c.i;
                c.skip_blanks();
                let rest = c.rest();
                let keyword = if c.i > blanks && rest.len() > 4 && matches!(rest[4], b' ' | b'\t') {
                    match &rest[..4] {
                        b"HELP" => Some(true),
                        b"TYPE" => Some(false),
                        _ => None,
                    }
                } else {
                    None
                };
                match keyword {
                    Some(is_help) => {
                        c.i += 4;
                        out.push(text_metadata(c, is_help)?);
                    }
                    None => {
                        // A comment: anything up to the line break.
                        while c.peek().is_some_and(|b| b != b'\n') {
                            c.i += 1;
                        }
                    }
                }
            }
            Some(b) if is_metric_start(b) || b == b'{' => {
                out.push(NaiveEntry::Sample(text_sample(c)?));
            }
            Some(_) => return c.fail("expected a metric name"),
        }
        c.end_record(start, false)?;
    }
}

fn text_metadata(c: &mut Cursor<'_>, is_help: bool) -> Result<NaiveEntry> {
    c.skip_blanks();
    let at = c.i;
    let name = match c.peek() {
        Some(b'"') => c.quoted(true)?,
        Some(b) if is_metric_start(b) => c.take_while(is_metric_char),
        _ => return c.fail("expected a metric name"),
    };
    let name = utf8(name, at)?;
    let text_at = c.i;
    let rest = c.take_while(|b| b != b'\n');
    let text = if rest.iter().all(|&b| b == b' ' || b == b'\t') { Vec::new() } else { rest[1..].to_vec() };
    if is_help {
        let help = utf8(text, text_at)?;
        Ok(NaiveEntry::Help { name, help: unescape(&help, false) })
    } else {
        let kind = match text.as_slice() {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"summary" => MetricType::Summary,
            b"untyped" => MetricType::Unknown,
            _ => {
                return Err(NaiveError { offset: text_at, reason: "bad type".into() });
            }
        };
        Ok(NaiveEntry::Type { name, kind })
    }
}

fn text_sample(c: &mut Cursor<'_>) -> Result<NaiveSample> {
    let series_start = c.i;
    let mut name = None;
    let mut labels = Vec::new();
    if c.peek() != Some(b'{') {
        name = Some(utf8(c.take_while(is_metric_char), series_start)?);
    }
    let series_end_without_labels = c.i;
    c.skip_blanks();
    if c.peek() == Some(b'{') {
        label_set(c, &mut name, &mut labels, false, false)?;
    } else {
        c.i = series_end_without_labels;
    }
    let raw_series = c.b[series_start..c.i].to_vec();
    let name = check_series(name, &labels, series_start)?;
    c.skip_blanks();
    let tok = c.take_while(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'{'));
    if tok.is_empty() {
        return c.fail("missing value");
    }
    let Some(value) = float(&tok) else {
        return c.fail("bad value");
    };
    c.skip_blanks();
    let mut timestamp_ms = None;
    if c.peek().is_some_and(|b| b != b'\n') {
        let digits = c.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return c.fail("bad timestamp");
        }
        let s = String::from_utf8(digits).unwrap_or_default();
        let Ok(ts) = s.parse::<i64>() else {
            return c.fail("bad timestamp");
        };
        timestamp_ms = Some(ts);
        c.skip_blanks();
    }
    Ok(NaiveSample { name, labels, value, timestamp_ms, exemplar: None, raw_series })
}

/// The metric name must be set, non-empty, and no label name may repeat (`__name__`
/// counts as a repeat of the metric name).
fn check_series(name: Option<String>, labels: &[(String, String)], at: usize) -> Result<String> {
    let fail = |r: &str| Err(NaiveError { offset: at, reason: r.to_string() });
    let Some(name) = name else {
        return fail("no metric name");
    };
    if name.is_empty() {
        return fail("empty metric name");
    }
    for (i, (a, _)) in labels.iter().enumerate() {
        if a == "__name__" || labels[..i].iter().any(|(b, _)| a == b) {
            return fail("duplicate label");
        }
    }
    Ok(name)
}

/// `{...}`: label pairs and (except in exemplars) a quoted metric name.
fn label_set(
    c: &mut Cursor<'_>,
    name: &mut Option<String>,
    labels: &mut Vec<(String, String)>,
    om: bool,
    exemplar: bool,
) -> Result<()> {
    c.expect(b'{', "expected {")?;
    loop {
        if !om {
            c.skip_blanks();
        }
        let at = c.i;
        let (raw, quoted) = match c.peek() {
            Some(b'}') => {
                c.bump();
                return Ok(());
            }
            Some(b'"') => (c.quoted(!om)?, true),
            Some(b) if is_label_start(b) => (c.take_while(is_label_char), false),
            _ => return c.fail("expected a label name"),
        };
        let key = utf8(raw, at)?;
        let key = if quoted { unescape(&key, true) } else { key };
        if !om {
            c.skip_blanks();
        }
        if quoted && matches!(c.peek(), Some(b',' | b'}')) {
            if exemplar || name.is_some() {
                return c.fail("unexpected metric name");
            }
            *name = Some(key);
            if c.bump() == Some(b'}') {
                return Ok(());
            }
            continue;
        }
        c.expect(b'=', "expected =")?;
        if !om {
            c.skip_blanks();
        }
        let vat = c.i;
        let value = utf8(c.quoted(!om)?, vat)?;
        if key.is_empty() {
            return c.fail("empty label name");
        }
        labels.push((key, unescape(&value, true)));
        if om {
            match c.peek() {
                Some(b',') => {
                    c.bump();
                }
                Some(b'}') => {}
                _ => return c.fail("expected , or }"),
            }
        } else {
            c.skip_blanks();
            if c.peek() == Some(b',') {
                c.bump();
            }
        }
    }
}

// === OpenMetrics ===

fn parse_openmetrics(c: &mut Cursor<'_>) -> Result<Vec<NaiveEntry>> {
    let mut out = Vec::new();
    loop {
        let start = c.i;
        match c.peek() {
            None => return c.fail("missing # EOF"),
            Some(b'#') => {
                if !c.rest().starts_with(b"# ") {
                    return c.fail("bad comment");
                }
                c.i += 2;
                if c.rest().starts_with(b"EOF") {
                    c.i += 3;
                    if c.peek() == Some(b'\n') {
                        c.i += 1;
                    }
                    if c.i != c.b.len() {
                        return c.fail("text after # EOF");
                    }
                    return Ok(out);
                }
                out.push(om_metadata(c)?);
            }
            Some(b) if is_metric_start(b) || b == b'{' => {
                out.push(NaiveEntry::Sample(om_sample(c)?));
            }
            Some(_) => return c.fail("expected a metric name"),
        }
        c.end_record(start, true)?;
    }
}

fn om_metadata(c: &mut Cursor<'_>) -> Result<NaiveEntry> {
    let word: Vec<u8> = c.rest().iter().take(5).copied().collect();
    let kind = match word.as_slice() {
        b"HELP " => 0,
        b"TYPE " => 1,
        b"UNIT " => 2,
        _ => return c.fail("bad comment"),
    };
    c.i += 5;
    let at = c.i;
    let name = match c.peek() {
        Some(b'"') => c.quoted(false)?,
        Some(b) if is_metric_start(b) => c.take_while(is_metric_char),
        _ => return c.fail("expected a metric name"),
    };
    let name = utf8(name, at)?;
    c.expect(b' ', "expected a space")?;
    let text_at = c.i;
    let text = c.take_while(|b| b != b'\n');
    if c.peek().is_none() {
        return c.fail("missing # EOF");
    }
    match kind {
        0 => Ok(NaiveEntry::Help { name, help: unescape(&utf8(text, text_at)?, true) }),
        1 => {
            let kind = match text.as_slice() {
                b"counter" => MetricType::Counter,
                b"gauge" => MetricType::Gauge,
                b"histogram" => MetricType::Histogram,
                b"gaugehistogram" => MetricType::GaugeHistogram,
                b"summary" => MetricType::Summary,
                b"info" => MetricType::Info,
                b"stateset" => MetricType::StateSet,
                b"unknown" => MetricType::Unknown,
                _ => {
                    return Err(NaiveError { offset: text_at, reason: "bad type".into() });
                }
            };
            Ok(NaiveEntry::Type { name, kind })
        }
        _ => {
            let unit = utf8(text, text_at)?;
            if !unit.is_empty() && !name.ends_with(&format!("_{unit}")) {
                return Err(NaiveError { offset: text_at, reason: "unit not a suffix".into() });
            }
            Ok(NaiveEntry::Unit { name, unit })
        }
    }
}

/// A space, then a token up to the next space or line break.
fn om_token(c: &mut Cursor<'_>) -> Result<Vec<u8>> {
    c.expect(b' ', "expected a space")?;
    let tok = c.take_while(|b| b != b' ' && b != b'\n');
    if tok.is_empty() {
        return c.fail("empty token");
    }
    Ok(tok)
}

fn om_timestamp(c: &mut Cursor<'_>) -> Result<i64> {
    let tok = om_token(c)?;
    match float(&tok) {
        Some(ts) if ts.is_finite() => Ok((ts * 1000.0) as i64),
        _ => c.fail("bad timestamp"),
    }
}

fn om_sample(c: &mut Cursor<'_>) -> Result<NaiveSample> {
    let series_start = c.i;
    let mut name = None;
    let mut labels = Vec::new();
    if c.peek() != Some(b'{') {
        name = Some(utf8(c.take_while(is_metric_char), series_start)?);
    }
    if c.peek() == Some(b'{') {
        label_set(c, &mut name, &mut labels, true, false)?;
    }
    let raw_series = c.b[series_start..c.i].to_vec();
    let name = check_series(name, &labels, series_start)?;
    let tok = om_token(c)?;
    let Some(value) = float(&tok) else {
        return c.fail("bad value");
    };
    let mut timestamp_ms = None;
    if c.peek() == Some(b' ') && !c.rest().starts_with(b" # {") {
        timestamp_ms = Some(om_timestamp(c)?);
    }
    let mut exemplar = None;
    if c.peek() == Some(b' ') {
        if !c.rest().starts_with(b" # {") {
            return c.fail("text after the sample");
        }
        c.i += 3;
        let mut no_name = None;
        let mut ex_labels = Vec::new();
        label_set(c, &mut no_name, &mut ex_labels, true, true)?;
        for (i, (a, _)) in ex_labels.iter().enumerate() {
            if ex_labels[..i].iter().any(|(b, _)| a == b) {
                return c.fail("duplicate exemplar label");
            }
        }
        let Some(value) = float(&om_token(c)?) else {
            return c.fail("bad exemplar value");
        };
        let mut ts = None;
        if c.peek() == Some(b' ') {
            ts = Some(om_timestamp(c)?);
        }
        exemplar = Some(NaiveExemplar { labels: ex_labels, value, timestamp_ms: ts });
    }
    Ok(NaiveSample { name, labels, value, timestamp_ms, exemplar, raw_series })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_on_basics() {
        let page = b"# HELP a x\\ny\n# TYPE a counter\na{b=\"c\\\"\"} 1 2\n{\"x.y\", \"q r\"=\"v\",} NaN\n";
        let naive = parse(page, Format::PrometheusText).unwrap();
        assert_eq!(naive.len(), 4);
        assert_eq!(Ok(naive), parse_fast(page, Format::PrometheusText));
        let om = b"# TYPE a counter\na_total{x=\"1\"} 1 2.5 # {t=\"u\"} 3 4\n# EOF\n";
        let naive = parse(om, Format::OpenMetrics).unwrap();
        assert_eq!(Ok(naive), parse_fast(om, Format::OpenMetrics));
    }
}
