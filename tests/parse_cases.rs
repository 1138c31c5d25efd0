//! Table-driven cases for the Prometheus text format (and a few OpenMetrics syntax cases),
//! each with the reason it exists. Expected entries are rendered as short strings:
//! `H name "help"`, `T name Kind`, `S name {label="value",...} value [@ts]`; labels and
//! texts are shown unescaped with Rust's `{:?}` quoting.

use trawl::parse::{Entry, ErrorKind, Format, MAX_LINE_BYTES, Parser};

enum Want {
    Ok(&'static [&'static str]),
    /// Error kind, byte offset, line.
    Err(ErrorKind, usize, usize),
}

use ErrorKind::*;
use Want::{Err as E, Ok as O};

fn render(e: &Entry<'_>) -> String {
    match e {
        Entry::Help { name, help } => format!("H {name} {help:?}"),
        Entry::Type { name, kind } => format!("T {name} {kind:?}"),
        Entry::Unit { name, unit } => format!("U {name} {unit:?}"),
        Entry::Sample(s) => {
            let labels: Vec<String> = s.labels().map(|(k, v)| format!("{k}={v:?}")).collect();
            let mut out = format!("S {} {{{}}} {:?}", s.name(), labels.join(","), s.value());
            if let Some(ts) = s.timestamp_ms() {
                out += &format!(" @{ts}");
            }
            if let Some(ex) = s.exemplar() {
                let labels: Vec<String> = ex.labels().map(|(k, v)| format!("{k}={v:?}")).collect();
                out += &format!(" # {{{}}} {:?}", labels.join(","), ex.value());
                if let Some(ts) = ex.timestamp_ms() {
                    out += &format!(" @{ts}");
                }
            }
            out
        }
    }
}

fn run(input: &[u8], format: Format) -> Result<Vec<String>, trawl::parse::ParseError> {
    let mut p = Parser::new(input, format);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry()? {
        out.push(render(&e));
    }
    Ok(out)
}

fn check(format: Format, cases: &[(&str, &[u8], Want)]) {
    let mut failures = Vec::new();
    for (reason, input, want) in cases {
        let got = run(input, format);
        let ok = match (&got, want) {
            (Ok(got), O(want)) => got == want,
            (Err(e), E(kind, offset, line)) => (e.kind, e.offset, e.line) == (*kind, *offset, *line),
            _ => false,
        };
        if !ok {
            let want = match want {
                O(w) => format!("Ok({w:?})"),
                E(k, o, l) => format!("Err({k:?} at {o}, line {l})"),
            };
            let got = match got {
                Ok(g) => format!("Ok({g:?})"),
                Err(e) => format!("Err({:?} at {}, line {})", e.kind, e.offset, e.line),
            };
            failures.push(format!(
                "{reason}\n  input: {:?}\n  want:  {want}\n  got:   {got}",
                String::from_utf8_lossy(input)
            ));
        }
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn prometheus_text() {
    check(
        Format::PrometheusText,
        &[
            // --- structure ---
            ("empty body is an empty page", b"", O(&[])),
            ("no trailing newline", b"a 1", O(&["S a {} 1.0"])),
            ("blank and blank-only lines are skipped", b"\n \t\n\na 1\n\n", O(&["S a {} 1.0"])),
            ("leading blanks before a sample", b"  \ta 1\n", O(&["S a {} 1.0"])),
            (
                "plain comments are skipped, whatever they hold",
                b"# hi \\ \"\n#\n# HELPx y\na 1\n",
                O(&["S a {} 1.0"]),
            ),
            ("#HELP without a blank is a comment", b"#HELP a x\n#TYPE a counter\n", O(&[])),
            ("# HELP alone is a comment (HELP needs a trailing blank)", b"# HELP\n", O(&[])),
            // --- HELP / TYPE ---
            (
                "HELP unescapes only \\\\ and \\n",
                b"# HELP a x\\\\y\\nz\\\"q\\t\n",
                O(&["H a \"x\\\\y\\nz\\\\\\\"q\\\\t\""]),
            ),
            (
                "blanks between #, HELP, name and text",
                b"#  \tHELP \t a  two  spaces\n",
                O(&["H a \" two  spaces\""]),
            ),
            ("HELP without text", b"# HELP a\n# HELP b   \n", O(&["H a \"\"", "H b \"\""])),
            (
                "TYPE words, untyped is Unknown",
                b"# TYPE a counter\n# TYPE b untyped\n",
                O(&["T a Counter", "T b Unknown"]),
            ),
            (
                "TYPE with trailing blank is invalid (text is \"gauge \")",
                b"# TYPE a gauge \n",
                E(InvalidMetricType, 9, 1),
            ),
            (
                "OpenMetrics-only TYPE words are invalid in text",
                b"# TYPE a info\n",
                E(InvalidMetricType, 9, 1),
            ),
            ("HELP for a quoted name", b"# HELP \"a.b\" dotted\n", O(&["H a.b \"dotted\""])),
            ("HELP name missing", b"# HELP \n", E(ExpectedMetadataName, 7, 1)),
            ("HELP must be valid UTF-8", b"# HELP a \xff\n", E(InvalidUtf8, 9, 1)),
            // --- labels ---
            (
                "label value escapes \\\\ \\\" \\n; others kept",
                br#"a{b="1\\2\"3\n4\t5"} 1"#,
                O(&["S a {b=\"1\\\\2\\\"3\\n4\\\\t5\"} 1.0"]),
            ),
            ("trailing comma is allowed", b"a{b=\"1\",} 1", O(&["S a {b=\"1\"} 1.0"])),
            (
                "blanks around every label token",
                b"a { b = \"1\" , c=\"2\" } 1",
                O(&["S a {b=\"1\",c=\"2\"} 1.0"]),
            ),
            (
                "commas between labels are optional (promparse quirk)",
                b"a{b=\"1\" c=\"2\"} 1",
                O(&["S a {b=\"1\",c=\"2\"} 1.0"]),
            ),
            ("empty braces", b"a{} 1", O(&["S a {} 1.0"])),
            ("empty label value is kept", b"a{b=\"\"} 1", O(&["S a {b=\"\"} 1.0"])),
            ("braces inside values", b"a{b=\"}{\"} 1", O(&["S a {b=\"}{\"} 1.0"])),
            ("NUL inside a label value is allowed", b"a{b=\"\0\"} 1", O(&["S a {b=\"\\0\"} 1.0"])),
            (
                "a raw newline inside a value is accepted, as promlex does",
                b"a{b=\"x\ny\"} 1\n",
                O(&["S a {b=\"x\\ny\"} 1.0"]),
            ),
            ("duplicate label name fails the scrape", b"a{b=\"1\",b=\"2\"} 1\n", E(DuplicateLabelName, 8, 1)),
            ("duplicate via quoted spelling", b"a{b=\"1\",\"b\"=\"2\"} 1\n", E(DuplicateLabelName, 9, 1)),
            (
                "__name__ next to a metric name duplicates it",
                b"a{__name__=\"b\"} 1\n",
                E(DuplicateLabelName, 2, 1),
            ),
            ("no metric name at all", b"{b=\"1\"} 1\n", E(MissingMetricName, 0, 1)),
            ("only __name__ is not a metric name", b"{__name__=\"a\"} 1\n", E(MissingMetricName, 0, 1)),
            ("single-quoted value", b"a{b='1'} 1\n", E(ExpectedLabelValue, 4, 1)),
            ("unterminated value runs to the end", b"a{b=\"1} 1\n", E(UnterminatedString, 10, 2)),
            ("double comma", b"a{b=\"1\",,c=\"2\"} 1", E(ExpectedLabelName, 8, 1)),
            ("label names cannot contain ':'", b"a{b:c=\"1\"} 1", E(ExpectedEquals, 3, 1)),
            ("label value with invalid UTF-8", b"a{b=\"\xc3\"} 1", E(InvalidUtf8, 5, 1)),
            ("backslash before a raw newline", b"a{b=\"x\\\ny\"} 1", E(InvalidEscape, 6, 1)),
            // --- UTF-8 names ---
            ("quoted metric name", b"{\"my.metric\"} 1", O(&["S my.metric {} 1.0"])),
            (
                "quoted metric and label names",
                b"{\"my.metric\", \"label.x\"=\"v\"} 1",
                O(&["S my.metric {label.x=\"v\"} 1.0"]),
            ),
            ("quoted name may come after labels", b"{a=\"1\", \"m\"} 1", O(&["S m {a=\"1\"} 1.0"])),
            ("escapes in a quoted name are unescaped", b"{\"a\\\"b\\n\"} 1", O(&["S a\"b\n {} 1.0"])),
            ("non-ASCII quoted name", "{\"température\"} 1".as_bytes(), O(&["S température {} 1.0"])),
            ("two metric names", b"{\"a\",\"b\"} 1", E(MetricNameTwice, 5, 1)),
            ("quoted name after a plain one", b"a{\"b\"} 1", E(MetricNameTwice, 2, 1)),
            ("empty quoted name", b"{\"\"} 1", E(EmptyName, 1, 1)),
            // --- values ---
            (
                "integer and float values",
                b"a 1\na -2.5\na 1e3\na .5\na 5.\n",
                O(&["S a {} 1.0", "S a {} -2.5", "S a {} 1000.0", "S a {} 0.5", "S a {} 5.0"]),
            ),
            (
                "NaN and Inf in any case, infinity too",
                b"a NaN\na nan\na +Inf\na -inf\na Infinity\na -INFINITY\n",
                O(&["S a {} NaN", "S a {} NaN", "S a {} inf", "S a {} -inf", "S a {} inf", "S a {} -inf"]),
            ),
            ("value right after the name (lexer quirk)", b"a+1\na-2\n", O(&["S a {} 1.0", "S a {} -2.0"])),
            ("value right after the braces", b"a{}1", O(&["S a {} 1.0"])),
            ("tab separators", b"a\t1\t2\n", O(&["S a {} 1.0 @2"])),
            ("underscore in value (Go digit separator)", b"a 1_000", E(InvalidValue, 2, 1)),
            ("hex float", b"a 0x1p-3", E(InvalidValue, 2, 1)),
            ("hex integer", b"a 0x10", E(InvalidValue, 2, 1)),
            ("signed NaN is not Go syntax", b"a -NaN", E(InvalidValue, 2, 1)),
            ("overflowing decimal (Go returns ErrRange)", b"a 1e309", E(InvalidValue, 2, 1)),
            ("missing value", b"a\n", E(MissingValue, 1, 1)),
            ("missing value after braces", b"a{b=\"1\"} \n", E(MissingValue, 9, 1)),
            ("carriage return is part of the value token", b"a 1\r\n", E(InvalidValue, 2, 1)),
            // --- timestamps ---
            ("millisecond timestamp", b"a 1 1712345678901\n", O(&["S a {} 1.0 @1712345678901"])),
            ("leading zeros and trailing blanks", b"a 1 000 \t\n", O(&["S a {} 1.0 @0"])),
            ("i64::MAX", b"a 1 9223372036854775807", O(&["S a {} 1.0 @9223372036854775807"])),
            ("overflowing timestamp", b"a 1 9223372036854775808", E(InvalidTimestamp, 4, 1)),
            ("negative timestamps are rejected by the lexer", b"a 1 -1", E(InvalidTimestamp, 4, 1)),
            ("float timestamps are rejected", b"a 1 1.5", E(TrailingText, 5, 1)),
            ("junk after the timestamp", b"a 1 2 3", E(TrailingText, 6, 1)),
            ("comment after a sample is not allowed", b"a 1 # x", E(InvalidTimestamp, 4, 1)),
            // --- bytes ---
            ("NUL at a line start (Prometheus silently stops; we fail)", b"a 1\n\0b 2\n", E(NulByte, 4, 2)),
            ("NUL in a metric name", b"a\0 1", E(NulByte, 1, 1)),
            ("NUL in a value", b"a 1\0", E(NulByte, 3, 1)),
            ("NUL in HELP is allowed", b"# HELP a x\0y\n", O(&["H a \"x\\0y\""])),
            ("invalid UTF-8 in a comment is ignored", b"# \xff\na 1\n", O(&["S a {} 1.0"])),
            ("invalid UTF-8 in a quoted name", b"{\"\xff\"} 1", E(InvalidUtf8, 2, 1)),
            (
                "error line numbers count earlier lines",
                b"a 1\n\n# x\nb{c=\"1\",c=\"2\"} 1\n",
                E(DuplicateLabelName, 17, 4),
            ),
        ],
    );
}

#[test]
fn openmetrics_syntax() {
    check(
        Format::OpenMetrics,
        &[
            ("a minimal exposition", b"a 1\n# EOF\n", O(&["S a {} 1.0"])),
            ("# EOF without a newline", b"a 1\n# EOF", O(&["S a {} 1.0"])),
            ("UNIT", b"# UNIT a_seconds seconds\n# EOF\n", O(&["U a_seconds \"seconds\""])),
            (
                "seconds timestamps become truncated ms",
                b"a 1 1.5\na 1 -0.0019\na 1 1e3\n# EOF\n",
                O(&["S a {} 1.0 @1500", "S a {} 1.0 @-1", "S a {} 1.0 @1000000"]),
            ),
            (
                "exemplar with timestamp",
                b"a_total 1 # {t=\"x\"} 2 3.5\n# EOF\n",
                O(&["S a_total {} 1.0 # {t=\"x\"} 2.0 @3500"]),
            ),
            (
                "timestamp then exemplar",
                b"a_total 1 2 # {} 3\n# EOF\n",
                O(&["S a_total {} 1.0 @2000 # {} 3.0"]),
            ),
            ("HELP unescapes \\\" too", b"# HELP a \\\"x\\\"\n# EOF\n", O(&["H a \"\\\"x\\\"\""])),
            (
                "trailing comma accepted on the scrape path, like Prometheus",
                b"a{b=\"1\",} 1\n# EOF\n",
                O(&["S a {b=\"1\"} 1.0"]),
            ),
            ("missing # EOF", b"a 1\n", E(MissingEof, 4, 2)),
            ("empty body", b"", E(MissingEof, 0, 1)),
            ("text after # EOF", b"# EOF\na 1\n", E(TextAfterEof, 6, 2)),
            ("blank line", b"a 1\n\n# EOF\n", E(BlankLine, 4, 2)),
            ("two spaces", b"a  1\n# EOF\n", E(UnexpectedWhitespace, 2, 1)),
            ("trailing space", b"a 1 \n# EOF\n", E(UnexpectedWhitespace, 4, 1)),
            ("tab separator", b"a\t1\n# EOF\n", E(UnexpectedWhitespace, 1, 1)),
            ("space inside braces", b"a{b=\"1\", c=\"2\"} 1\n# EOF\n", E(ExpectedLabelName, 8, 1)),
            ("missing comma", b"a{b=\"1\"c=\"2\"} 1\n# EOF\n", E(ExpectedCommaOrBrace, 7, 1)),
            ("plain comment", b"# hello\n# EOF\n", E(InvalidComment, 2, 1)),
            ("NaN timestamp", b"a 1 NaN\n# EOF\n", E(InvalidTimestamp, 4, 1)),
            ("untyped is not an OpenMetrics type", b"# TYPE a untyped\n# EOF\n", E(InvalidMetricType, 9, 1)),
            ("unit must be a suffix", b"# UNIT a seconds\n# EOF\n", E(UnitNotSuffix, 9, 1)),
            ("raw newline in a label value", b"a{b=\"x\ny\"} 1\n# EOF\n", E(UnterminatedString, 6, 1)),
            (
                "duplicate exemplar label",
                b"a_total 1 # {x=\"1\",x=\"2\"} 1\n# EOF\n",
                E(DuplicateLabelName, 19, 1),
            ),
        ],
    );
}

#[test]
fn line_too_long() {
    // A line one byte over the cap, after a good first line: the error points at the first
    // byte past the cap, on line 2.
    let mut page = b"ok 1\n".to_vec();
    page.extend(b"a{b=\"");
    page.resize(5 + MAX_LINE_BYTES + 1, b'x');
    page.extend(b"\"} 1\n");
    let e = run(&page, Format::PrometheusText).unwrap_err();
    assert_eq!((e.kind, e.offset, e.line), (LineTooLong, 5 + MAX_LINE_BYTES, 2));

    // The same for a comment, a value and a run of blanks.
    for body in [&b"# "[..], b"a ", b" "] {
        let mut page = body.to_vec();
        page.resize(MAX_LINE_BYTES + 1, if body[0] == b'a' { b'1' } else { b' ' });
        page.push(b'\n');
        let e = run(&page, Format::PrometheusText).unwrap_err();
        assert_eq!((e.kind, e.offset, e.line), (LineTooLong, MAX_LINE_BYTES, 1), "{body:?}");
    }

    // Exactly MAX_LINE_BYTES is accepted.
    let mut page = b"a{b=\"".to_vec();
    page.resize(MAX_LINE_BYTES - 4, b'x');
    page.extend(b"\"} 1\n");
    assert_eq!(page.len(), MAX_LINE_BYTES + 1);
    assert_eq!(run(&page, Format::PrometheusText).unwrap().len(), 1);

    // In OpenMetrics too.
    let mut page = b"a 1\nb{c=\"".to_vec();
    page.resize(4 + MAX_LINE_BYTES + 5, b'x');
    page.extend(b"\"} 1\n# EOF\n");
    let e = run(&page, Format::OpenMetrics).unwrap_err();
    assert_eq!((e.kind, e.offset, e.line), (LineTooLong, 4 + MAX_LINE_BYTES, 2));
}
