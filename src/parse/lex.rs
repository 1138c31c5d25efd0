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

// SWAR ("SIMD within a register") scanning: names and short quoted strings are examined 8
// bytes per step in a u64, without `unsafe` or target features. On the node page this took
// metric-name scanning from ~25% of parse time (one table lookup per byte) to a few percent;
// memchr's vector loops are faster only once a string is longer than a few words.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The 8 bytes at `i` as a little-endian word, if there are 8.
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(i..i.wrapping_add(8))?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// High bit set in each byte of `x` within `lo..=hi`. All bytes of `x` must be < 0x80, so
/// neither addition carries into the next byte.
#[inline(always)]
fn in_range(x: u64, lo: u8, hi: u8) -> u64 {
    let ge_lo = x + LO * u64::from(0x80 - lo);
    let gt_hi = x + LO * u64::from(0x7f - hi);
    ge_lo & !gt_hi & HI
}

/// High bit set in each byte of `x` that is a name byte: letters, `_`, and digits (plus
/// `:` when `colon`). `x` must be ASCII.
#[inline(always)]
fn name_bytes(x: u64, colon: bool) -> u64 {
    let letters = in_range(x | (LO * 0x20), b'a', b'z');
    let digits = in_range(x, b'0', if colon { b':' } else { b'9' });
    letters | digits | in_range(x, b'_', b'_')
}

#[inline(always)]
fn scan_name(b: &[u8], mut i: usize, colon: bool, class: u8) -> usize {
    while let Some(x) = word(b, i) {
        if x & HI != 0 {
            break; // non-ASCII: let the byte loop find the end
        }
        let m = name_bytes(x, colon);
        if m != HI {
            return i + ((!m & HI).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && CLASS[b[i] as usize] & class != 0 {
        i += 1;
    }
    i
}

/// End of the run of metric-name bytes starting at `i` (`[a-zA-Z0-9_:]*`).
#[inline]
pub fn scan_metric_name(b: &[u8], i: usize) -> usize {
    scan_name(b, i, true, M_CHAR)
}

/// End of the run of label-name bytes starting at `i` (`[a-zA-Z0-9_]*`).
#[inline]
pub fn scan_label_name(b: &[u8], i: usize) -> usize {
    scan_name(b, i, false, L_CHAR)
}

/// High bit set in the lowest byte of `x` equal to `c` (higher flags may be spurious).
#[inline(always)]
fn first_eq(x: u64, c: u8) -> u64 {
    let t = x ^ (LO * u64::from(c));
    t.wrapping_sub(LO) & !t & HI
}

/// Index of the first `a` or `b` at or after `i`: word by word for the first
/// `SWAR_QUOTE_SCAN` bytes, then memchr2 (whose call and setup cost ~6 ns, a fifth of a
/// short HELP/TYPE line, when the match is near).
#[inline(always)]
pub fn find2(hay: &[u8], i: usize, a: u8, b: u8) -> Option<usize> {
    let mut j = i;
    while j < i + SWAR_QUOTE_SCAN {
        let Some(x) = word(hay, j) else { break };
        let m = first_eq(x, a) | first_eq(x, b);
        if m != 0 {
            return Some(j + (m.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    let rest = hay.get(j..)?;
    if rest.len() < 8 {
        return rest.iter().position(|&c| c == a || c == b).map(|k| j + k);
    }
    memchr2(a, b, rest).map(|k| j + k)
}

/// Short strings searched word by word before handing over to memchr, in bytes.
const SWAR_QUOTE_SCAN: usize = 32;

/// Index of the first `"`, `\` (or, if `!multiline`, line break) at or after `i`.
#[inline(always)]
pub fn find_quote_end(b: &[u8], i: usize, multiline: bool) -> Option<usize> {
    let mut j = i;
    while j < i + SWAR_QUOTE_SCAN {
        let Some(x) = word(b, j) else { break };
        let mut m = first_eq(x, b'"') | first_eq(x, b'\\');
        if !multiline {
            m |= first_eq(x, b'\n');
        }
        if m != 0 {
            return Some(j + (m.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    let rest = b.get(j..)?;
    if rest.len() < 8 {
        // The last few bytes of the buffer: a loop beats a memchr call.
        let hit = |c: &u8| *c == b'"' || *c == b'\\' || (!multiline && *c == b'\n');
        return rest.iter().position(hit).map(|k| j + k);
    }
    let k = if multiline { memchr2(b'"', b'\\', rest) } else { memchr3(b'"', b'\\', b'\n', rest) };
    k.map(|k| j + k)
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
        let Some(p) = find_quote_end(b, j, multiline) else {
            return Err(QuoteError::Unterminated(b.len()));
        };
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

/// One label as written between the braces: the name (inside the quotes for a quoted name) and
/// the value (inside its quotes), each with whether it needs unescaping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLabel<'a> {
    /// The name as written.
    pub name: &'a str,
    /// The name is quoted and contains a backslash.
    pub name_escaped: bool,
    /// The value as written, without its quotes.
    pub value: &'a str,
    /// The value contains a backslash.
    pub value_escaped: bool,
}

impl<'a> Labels<'a> {
    /// The next label as written, without unescaping anything (so without allocating).
    #[inline]
    pub fn next_raw(&mut self) -> Option<RawLabel<'a>> {
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
            let (name, quoted_name, name_escaped) = if b[i] == b'"' {
                let (end, escaped) = scan_quoted(b, i, true).ok()?;
                let name = s.get(i + 1..end - 1)?;
                i = end;
                (name, true, escaped)
            } else {
                let end = scan_label_name(b, i);
                let name = s.get(i..end)?;
                i = end;
                (name, false, false)
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
            let (end, value_escaped) = scan_quoted(b, i, true).ok()?;
            let value = s.get(i + 1..end - 1)?;
            self.rest = s.get(end..)?;
            return Some(RawLabel { name, name_escaped, value, value_escaped });
        }
    }
}

impl<'a> Iterator for Labels<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let l = self.next_raw()?;
        let name = if l.name_escaped { unescape_label(l.name) } else { Cow::Borrowed(l.name) };
        let value = if l.value_escaped { unescape_label(l.value) } else { Cow::Borrowed(l.value) };
        Some((name, value))
    }
}

/// Appends `s` unescaped as a label value or quoted name (see [`unescape_label`]) to `out`.
pub fn unescape_label_into(s: &str, out: &mut Vec<u8>) {
    out.extend(unescaped_bytes(s.as_bytes()));
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
    fn swar_scans_match_byte_loops() {
        let all: Vec<u8> = (0..=255u8).collect();
        for start in 0..all.len() {
            let want =
                (start..all.len()).find(|&k| CLASS[all[k] as usize] & M_CHAR == 0).unwrap_or(all.len());
            assert_eq!(scan_metric_name(&all, start), want.max(start));
        }
        for c in 0..=255u8 {
            let mut s = b"abcdefghijklmnop".to_vec();
            s[5] = c;
            let m = if CLASS[c as usize] & M_CHAR != 0 { 16 } else { 5 };
            let l = if CLASS[c as usize] & L_CHAR != 0 { 16 } else { 5 };
            assert_eq!(scan_metric_name(&s, 0), m, "{c:#x}");
            assert_eq!(scan_label_name(&s, 0), l, "{c:#x}");
            let mut q = b"\"0123456789abcdefghijklmnopqrstuvwxyz0123456789\"".to_vec();
            for pos in [1, 7, 8, 9, 30, 40] {
                q[pos] = c;
                let want = q[1..].iter().position(|&x| x == b'"' || x == b'\\').map(|k| k + 1);
                assert_eq!(find_quote_end(&q, 1, true), want, "{c:#x} at {pos}");
                q[pos] = b'x';
            }
        }
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
