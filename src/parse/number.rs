//! Number tokens of the exposition formats: sample values with the syntax of Go's
//! `strconv.ParseFloat` as Prometheus accepts it, and timestamps.
//!
//! This is not a general float parser: it only decides *which strings Prometheus accepts*
//! and hands the hard part (correct rounding of long decimals) to `str::parse::<f64>`,
//! which, like Go, rounds correctly.

/// The NaN Prometheus stores for a written `NaN` (`value.NormalNaN` in prometheus/model/value).
/// Distinct from the staleness marker `0x7ff0_0000_0000_0002`, so a target can never fake one.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Powers of ten that are exact in an f64 (10^22 is the largest; 5^22 < 2^53).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// Largest integer below which every integer is exact in an f64 (2^53).
const MAX_EXACT_INT: u64 = 1 << 53;

/// Parses a value token exactly as Prometheus' `parseFloat` does: Go `ParseFloat(s, 64)`
/// after rejecting any `p`, `P` or `_`.
///
/// Accepted: `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`, and, in any case,
/// `[+-]?inf`, `[+-]?infinity`, `nan` (Go does not accept a signed NaN). Hex floats, digit
/// separators, empty mantissas and trailing junk are rejected. A decimal that overflows
/// f64 is rejected, as Go returns `ErrRange` for it (underflow quietly gives 0, as in Go).
/// NaN comes back as [`NORMAL_NAN_BITS`].
#[inline]
pub fn parse_value(s: &[u8]) -> Option<f64> {
    let digits = match s.first()? {
        b'+' | b'-' => &s[1..],
        _ => s,
    };
    match digits.first() {
        Some(c) if c.is_ascii_digit() || *c == b'.' => parse_decimal(s),
        _ => parse_special(s),
    }
}

/// `inf`, `infinity` (optionally signed) and unsigned `nan`, ASCII case-insensitive.
fn parse_special(s: &[u8]) -> Option<f64> {
    if s.eq_ignore_ascii_case(b"nan") {
        return Some(f64::from_bits(NORMAL_NAN_BITS));
    }
    let (neg, rest) = match s.first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        Some(if neg { f64::NEG_INFINITY } else { f64::INFINITY })
    } else {
        None
    }
}

/// A decimal split into an integer mantissa and a power of ten.
struct Decimal {
    neg: bool,
    /// The first (up to) 19 significant digits.
    mant: u64,
    exp: i64,
    /// More than 19 significant digits: `mant` is not exact.
    truncated: bool,
    /// Bytes consumed, including the sign.
    len: usize,
}

/// Scans the longest decimal at the start of `s`: `[+-]? digits [. digits] [e [+-] digits]`
/// (either digit run may be empty, not both). A dangling exponent (`1e`, `1e+`) is left
/// unconsumed.
///
/// The common case, at most 19 digits in all (so any mantissa fits a u64), runs one
/// multiply-add per digit with no other bookkeeping; `None` for longer ones (leading zeros
/// included), which [`scan_decimal_long`] handles. Keeping the long path out of this
/// function keeps the result in registers: merging the two paths' results made rustc
/// spill the struct with byte stores and reload it with a word load, a store-forwarding
/// stall that cost ~17% of a plain sample line.
#[inline(always)]
fn scan_decimal_short(s: &[u8]) -> Option<Decimal> {
    let n = s.len();
    let neg = s.first() == Some(&b'-');
    let mut i = usize::from(matches!(s.first(), Some(b'-' | b'+')));
    let int_start = i;
    let mut mant: u64 = 0;
    while i < n && s[i].is_ascii_digit() {
        mant = mant.wrapping_mul(10).wrapping_add(u64::from(s[i] - b'0'));
        i += 1;
    }
    let mut digits = i - int_start;
    let mut exp: i64 = 0;
    if i < n && s[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < n && s[i].is_ascii_digit() {
            mant = mant.wrapping_mul(10).wrapping_add(u64::from(s[i] - b'0'));
            i += 1;
        }
        digits += i - frac_start;
        exp = -((i - frac_start) as i64);
    }
    if digits == 0 || digits > 19 {
        return None;
    }
    if i < n && (s[i] == b'e' || s[i] == b'E') {
        let (e, j) = scan_exponent(s, i + 1);
        if j > 0 {
            exp += e;
            i = j;
        }
    }
    Some(Decimal { neg, mant, exp, truncated: false, len: i })
}

/// `[+-]? digits` after an `e` at `s[i-1]`: the exponent (saturated) and the index after
/// it, or index 0 if there are no digits.
#[inline(always)]
fn scan_exponent(s: &[u8], mut i: usize) -> (i64, usize) {
    let neg = match s.get(i) {
        Some(b'+') => {
            i += 1;
            false
        }
        Some(b'-') => {
            i += 1;
            true
        }
        _ => false,
    };
    let start = i;
    let mut e: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        // Saturate: anything past 10^6 is already far outside f64's range.
        if e < 1_000_000 {
            e = e * 10 + i64::from(s[i] - b'0');
        }
        i += 1;
    }
    if i == start { (0, 0) } else { (if neg { -e } else { e }, i) }
}

/// [`scan_decimal_short`] for more than 19 digits: keeps the first 19 significant ones.
fn scan_decimal_long(s: &[u8]) -> Option<Decimal> {
    let n = s.len();
    let mut i = 0;
    let neg = match s.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let mut mant: u64 = 0;
    let mut sig = 0u32; // significant digits kept in `mant`
    let mut truncated = false;
    let mut exp: i64 = 0;
    let mut saw_digit = false;
    while i < n && s[i].is_ascii_digit() {
        let v = u64::from(s[i] - b'0');
        saw_digit = true;
        if mant == 0 && v == 0 {
            // Leading zero: no effect.
        } else if sig < 19 {
            mant = mant * 10 + v;
            sig += 1;
        } else {
            truncated = true;
            exp += 1;
        }
        i += 1;
    }
    if i < n && s[i] == b'.' {
        i += 1;
        while i < n && s[i].is_ascii_digit() {
            let v = u64::from(s[i] - b'0');
            saw_digit = true;
            if mant == 0 && v == 0 {
                exp -= 1;
            } else if sig < 19 {
                mant = mant * 10 + v;
                sig += 1;
                exp -= 1;
            } else {
                truncated = true;
            }
            i += 1;
        }
    }
    if !saw_digit {
        return None;
    }
    if i < n && (s[i] == b'e' || s[i] == b'E') {
        let (e, j) = scan_exponent(s, i + 1);
        if j > 0 {
            exp += e;
            i = j;
        }
    }
    Some(Decimal { neg, mant, exp, truncated, len: i })
}

/// Clinger's fast path: a mantissa up to 2^53 times an exact power of ten (|exp| <= 22) is
/// one correctly rounded IEEE operation. That covers nearly every value real exporters write
/// (`0`, `1234`, `0.25`, `1.5e-05`).
#[inline(always)]
fn fast_value(d: &Decimal) -> Option<f64> {
    if d.mant == 0 {
        return Some(if d.neg { -0.0 } else { 0.0 });
    }
    if d.truncated || d.mant > MAX_EXACT_INT || !(-22..=22).contains(&d.exp) {
        return None;
    }
    let m = d.mant as f64;
    let f = if d.exp >= 0 { m * POW10[d.exp as usize] } else { m / POW10[(-d.exp) as usize] };
    Some(if d.neg { -f } else { f })
}

/// Decimal syntax check plus conversion; the standard library handles what the fast path
/// cannot.
fn parse_decimal(s: &[u8]) -> Option<f64> {
    let d = scan_decimal_short(s).or_else(|| scan_decimal_long(s))?;
    if d.len != s.len() {
        return None;
    }
    if let Some(f) = fast_value(&d) {
        return Some(f);
    }
    // The syntax was checked above, so this is ASCII and the standard parser accepts it.
    let f: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    if f.is_infinite() {
        // Go's ParseFloat returns ErrRange for overflow, and Prometheus fails on any error.
        return None;
    }
    Some(f)
}

/// The scrape loop's shortcut: a simple decimal at the start of `s` and its length, or
/// `None` to take the general path ([`parse_value`] on the whole token). The caller checks
/// that the token really ends after `len` bytes; if it does, the result equals
/// `parse_value` on the token.
#[inline(always)]
pub fn parse_value_prefix(s: &[u8]) -> Option<(f64, usize)> {
    let d = scan_decimal_short(s)?;
    Some((fast_value(&d)?, d.len))
}

/// Parses a Prometheus text timestamp: the lexer only takes `[0-9]+`, then Go's
/// `ParseInt(s, 10, 64)` rejects overflow. Milliseconds since the epoch.
#[inline]
pub fn parse_int_timestamp(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(v)
}

/// Converts OpenMetrics timestamp seconds to milliseconds as Prometheus does:
/// `int64(ts * 1000)`, truncating toward zero. Go leaves out-of-range conversions
/// implementation-defined; Rust's `as` saturates, which is at least deterministic.
#[inline]
pub fn seconds_to_millis(secs: f64) -> i64 {
    (secs * 1000.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> Option<u64> {
        parse_value(s.as_bytes()).map(f64::to_bits)
    }

    #[test]
    fn accepts_go_syntax() {
        for (s, v) in [
            ("0", 0.0),
            ("1", 1.0),
            ("-1", -1.0),
            ("+1", 1.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("+.5", 0.5),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("1.5e-3", 0.0015),
            ("0000000000000000000000000000000000000000001.2e-1", 0.12),
            ("4.9351e-05", 4.9351e-05),
            ("7.424100000000001e-05", 7.424100000000001e-05),
            ("9223372036854775808", 9223372036854775808.0),
            ("12345678901234567890123", 12345678901234567890123.0),
            ("1e-400", 0.0),
            ("0e999999999999", 0.0),
        ] {
            assert_eq!(parse_value(s.as_bytes()), Some(v), "{s}");
        }
        assert_eq!(bits("-0"), Some((-0.0f64).to_bits()));
        for s in ["Inf", "+Inf", "inf", "INFINITY", "+infinity", "iNf"] {
            assert_eq!(parse_value(s.as_bytes()), Some(f64::INFINITY), "{s}");
        }
        for s in ["-Inf", "-inf", "-Infinity"] {
            assert_eq!(parse_value(s.as_bytes()), Some(f64::NEG_INFINITY), "{s}");
        }
        for s in ["NaN", "nan", "NAN", "nAn"] {
            assert_eq!(bits(s), Some(NORMAL_NAN_BITS), "{s}");
        }
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for s in [
            "",
            "+",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "1_2",
            "0x1p-3",
            "0x1",
            "0X1",
            "0b1",
            "0o1",
            "1.1.1",
            "+nan",
            "-NaN",
            "infin",
            "in",
            "Infinityy",
            " 1",
            "1 ",
            "1\t",
            "true",
            "1e400",
            "-1e400",
            "1,5",
            "١",
        ] {
            assert_eq!(parse_value(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn fast_path_matches_std() {
        for s in ["0.1", "0.3", "123456.789", "9007199254740993", "1e22", "1e23", "3.14159e-7"] {
            assert_eq!(parse_value(s.as_bytes()), s.parse::<f64>().ok(), "{s}");
        }
    }

    #[test]
    fn prefix_matches_whole_token() {
        for s in ["1", "-2.5", "1e3", "1e", "1e+", "0.25x", ".5 ", "1.5e-05}", "9007199254740993"] {
            if let Some((v, n)) = parse_value_prefix(s.as_bytes()) {
                assert_eq!(parse_value(&s.as_bytes()[..n]), Some(v), "{s}");
            }
        }
        assert_eq!(parse_value_prefix(b"1e"), Some((1.0, 1)));
        assert_eq!(parse_value_prefix(b"12 34"), Some((12.0, 2)));
        assert_eq!(parse_value_prefix(b"NaN"), None);
    }

    #[test]
    fn int_timestamps() {
        assert_eq!(parse_int_timestamp(b"000"), Some(0));
        assert_eq!(parse_int_timestamp(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int_timestamp(b"9223372036854775808"), None);
        assert_eq!(parse_int_timestamp(b""), None);
        assert_eq!(parse_int_timestamp(b"-1"), None);
    }

    #[test]
    fn om_seconds() {
        assert_eq!(seconds_to_millis(1.5), 1500);
        assert_eq!(seconds_to_millis(-1.0019), -1001);
        assert_eq!(seconds_to_millis(1e30), i64::MAX);
    }
}
