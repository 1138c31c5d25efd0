//! Byte-level helpers shared by the fast parser and the lazy label iterator: character
//! classes, quoted-string scanning and unescaping.
//!
//! Nothing here allocates except the unescape functions, and only when a backslash is present.

use std::borrow::Cow;

use memchr::{memchr2, memchr3};

const M_START: u8 = 1; // [a-zA-Z_:]  first byte of a metric name
const M_CHAR: u8 = 2; // [a-zA-Z0-9_:]
const L_START: u8 = 4; // [a-zA-Z_]  first byte of a label name
const L_CHAR: u8 = 8; // [a-zA-Z0-9_]

/// One table lookup per byte; cheaper than chained range compares in the name loops.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let mut v = 0;
        if alpha || b == b':' {
            v |= M_START | M_CHAR;
        }
        if digit {
            v |= M_CHAR | L_CHAR;
        }
        if alpha {
            v |= L_START | L_CHAR;
        }
        t[c] = v;
        c += 1;
    }
    t
};

#[inline]
pub fn is_metric_start(b: u8) -> bool {
    CLASS[b as usize] & M_START != 0
}

#[inline]
pub fn is_label_start(b: u8) -> bool {
    CLASS[b as usize] & L_START != 0
}

/// End of the run of metric-name bytes starting at `i` (`[a-zA-Z0-9_:]*`).
#[inline]
pub fn scan_metric_name(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && CLASS[b[i] as usize] & M_CHAR != 0 {
        i += 1;
    }
    i
}

/// End of the run of label-name bytes starting at `i` (`[a-zA-Z0-9_]*`).
#[inline]
pub fn scan_label_name(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && CLASS[b[i] as usize] & L_CHAR != 0 {
        i += 1;
    }
    i
}

/// First index at or after `i` that is not a space or tab (the text format's separators).
#[inline]
pub fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Why a quoted string could not be scanned, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteError {
    /// No closing quote before the end of the buffer (or, if newlines are not allowed,
    /// before the end of the line). The offset is where scanning stopped.
    Unterminated(usize),
    /// A backslash directly before a line break: neither lexer's `\\.` matches it.
    BackslashNewline(usize),
}

/// Scans the quoted string whose opening `"` is at `b[open]`. Returns the index just past
/// the closing quote and whether a backslash occurs inside.
///
/// `multiline` is the Prometheus text lexer's rule `\"(\\.|[^\\"])*\"`, whose class also
/// matches a raw line break; OpenMetrics (`[^\\"\n]`) forbids it.
#[inline]
pub fn scan_quoted(b: &[u8], open: usize, multiline: bool) -> Result<(usize, bool), QuoteError> {
    let mut j = open + 1;
    let mut escaped = false;
    loop {
        let rest = b.get(j..).unwrap_or_default();
        let found = if multiline { memchr2(b'"', b'\\', rest) } else { memchr3(b'"', b'\\', b'\n', rest) };
        let Some(k) = found else {
            return Err(QuoteError::Unterminated(b.len()));
        };
        let p = j + k;
        match b[p] {
            b'"' => return Ok((p + 1, escaped)),
            b'\\' => {
                escaped = true;
                match b.get(p + 1) {
                    None => return Err(QuoteError::Unterminated(b.len())),
                    Some(b'\n') => return Err(QuoteError::BackslashNewline(p)),
                    Some(_) => j = p + 2,
                }
            }
            _ => return Err(QuoteError::Unterminated(p)),
        }
    }
}

/// Unescapes a label value, a quoted name or OpenMetrics HELP text: `\\`, `\"` and `\n`;
/// any other backslash is kept as written (Prometheus' `lvalReplacer`).
pub fn unescape_label(s: &str) -> Cow<'_, str> {
    unescape(s, true)
}

/// Unescapes Prometheus text-format HELP: only `\\` and `\n` (Prometheus' `helpReplacer`
/// leaves `\"` as written).
pub fn unescape_help(s: &str) -> Cow<'_, str> {
    unescape(s, false)
}

fn unescape(s: &str, quote: bool) -> Cow<'_, str> {
    if !s.as_bytes().contains(&b'\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let rest = chars.as_str();
        match rest.as_bytes().first() {
            Some(b'\\') => {
                out.push('\\');
                chars.next();
            }
            Some(b'n') => {
                out.push('\n');
                chars.next();
            }
            Some(b'"') if quote => {
                out.push('"');
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// The bytes of an escaped label-style string after unescaping, without allocating; used
/// to compare names that may be written differently (`"a"` vs `a`, `"\\x"`).
pub fn unescaped_bytes(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *s.get(i)?;
        if c == b'\\' {
            match s.get(i + 1) {
                Some(b'\\') => {
                    i += 2;
                    return Some(b'\\');
                }
                Some(b'"') => {
                    i += 2;
                    return Some(b'"');
                }
                Some(b'n') => {
                    i += 2;
                    return Some(b'\n');
                }
                _ => {}
            }
        }
        i += 1;
        Some(c)
    })
}

/// Iterator over the labels of a sample or exemplar, decoded lazily from the text between
/// the braces (already validated by the parser). Label values are unescaped only if they
/// contain a backslash; the quoted metric name of the UTF-8 syntax (`{"my.metric", a="b"}`)
/// is skipped, so `__name__` is never produced.
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    rest: &'a str,
}

impl<'a> Labels<'a> {
    pub(crate) fn new(inner: &'a str) -> Self {
        Labels { rest: inner }
    }

    /// An iterator with no labels.
    pub fn empty() -> Self {
        Labels { rest: "" }
    }
}

impl<'a> Iterator for Labels<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.rest;
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
                i += 1;
            }
            if i >= b.len() {
                self.rest = "";
                return None;
            }
            let (name, quoted_name) = if b[i] == b'"' {
                let (end, _) = scan_quoted(b, i, true).ok()?;
                let name = s.get(i + 1..end - 1)?;
                i = end;
                (name, true)
            } else {
                let end = scan_label_name(b, i);
                let name = s.get(i..end)?;
                i = end;
                (name, false)
            };
            i = skip_blanks(b, i);
            if quoted_name && (i >= b.len() || b[i] == b',') {
                // The quoted metric name: not a label.
                self.rest = s.get(i..)?;
                continue;
            }
            if b.get(i) != Some(&b'=') {
                self.rest = "";
                return None;
            }
            i = skip_blanks(b, i + 1);
            if b.get(i) != Some(&b'"') {
                self.rest = "";
                return None;
            }
            let (end, escaped) = scan_quoted(b, i, true).ok()?;
            let value = s.get(i + 1..end - 1)?;
            self.rest = s.get(end..)?;
            let name = if quoted_name { unescape_label(name) } else { Cow::Borrowed(name) };
            let value = if escaped { unescape_label(value) } else { Cow::Borrowed(value) };
            return Some((name, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes() {
        assert_eq!(unescape_label(r#"a\\b\"c\nd\te\"#), "a\\b\"c\nd\\te\\");
        assert_eq!(unescape_help(r#"a\\b\"c\nd"#), "a\\b\\\"c\nd");
        assert!(matches!(unescape_label("plain"), Cow::Borrowed(_)));
        let v: Vec<u8> = unescaped_bytes(br#"x\\\"\n\z"#).collect();
        assert_eq!(v, b"x\\\"\n\\z");
    }

    #[test]
    fn quoted() {
        assert_eq!(scan_quoted(br#""ab\"c" x"#, 0, false), Ok((7, true)));
        assert_eq!(scan_quoted(b"\"a\nb\"", 0, true), Ok((5, false)));
        assert_eq!(scan_quoted(b"\"a\nb\"", 0, false), Err(QuoteError::Unterminated(2)));
        assert_eq!(scan_quoted(b"\"a\\\nb\"", 0, true), Err(QuoteError::BackslashNewline(2)));
        assert_eq!(scan_quoted(b"\"ab", 0, true), Err(QuoteError::Unterminated(3)));
        assert_eq!(scan_quoted(b"\"ab\\", 0, true), Err(QuoteError::Unterminated(4)));
    }

    #[test]
    fn label_iter() {
        let got: Vec<(String, String)> = Labels::new(r#" "my.metric", a = "1" ,"b.c"="x\"y" d="2","#)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            got,
            vec![("a".into(), "1".into()), ("b.c".into(), "x\"y".into()), ("d".into(), "2".into())]
        );
        assert_eq!(Labels::new(r#""name""#).count(), 0);
    }
}
