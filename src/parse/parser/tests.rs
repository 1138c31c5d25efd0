//! Unit tests of the scrape parser (more table cases in tests/parse_cases.rs).

use super::super::{Entry, ErrorKind, Format, MetricType, Parser};
use std::borrow::Cow;

fn text(input: &str) -> Vec<Entry<'_>> {
    let mut p = Parser::new(input.as_bytes(), Format::PrometheusText);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry().unwrap() {
        out.push(e);
    }
    out
}

fn text_err(input: &[u8]) -> (ErrorKind, usize) {
    let mut p = Parser::new(input, Format::PrometheusText);
    loop {
        match p.next_entry() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(input)),
            Err(e) => return (e.kind, e.offset),
        }
    }
}

fn sample<'a>(e: &Entry<'a>) -> super::super::Sample<'a> {
    match e {
        Entry::Sample(s) => *s,
        other => panic!("not a sample: {other:?}"),
    }
}

#[test]
fn prometheus_text_page() {
    let page = "# HELP go_gc A summary\\nof GC \\\\ \\\"x\\\".\n# \tTYPE go_gc summary\n\
                go_gc{quantile=\"0\"} 4.9351e-05\n\
                go_gc{ quantile = \"0.5\" , a=\"b\", } 8.3e-05 123\n\
                # a comment\n#HELP not metadata\n\n  \t\n\
                go_gc_count 99\n";
    let e = text(page);
    assert_eq!(e.len(), 5);
    assert_eq!(e[0], Entry::Help { name: "go_gc", help: Cow::Borrowed("A summary\nof GC \\ \\\"x\\\".") });
    assert_eq!(e[1], Entry::Type { name: "go_gc", kind: MetricType::Summary });
    let s = sample(&e[3]);
    assert_eq!(s.name(), "go_gc");
    assert_eq!(
        s.labels().collect::<Vec<_>>(),
        [(Cow::Borrowed("quantile"), Cow::Borrowed("0.5")), ("a".into(), "b".into())]
    );
    assert_eq!(s.value(), 8.3e-05);
    assert_eq!(s.timestamp_ms(), Some(123));
    assert_eq!(s.raw_series(), b"go_gc{ quantile = \"0.5\" , a=\"b\", }");
    assert_eq!(sample(&e[4]).labels().count(), 0);
}

#[test]
fn utf8_names_and_escapes() {
    let e = text("{\"my.metric\", \"label.x\"=\"v\\\\\\\"\\n\\t\"} 1\n{\"a\\\"b\"} 2");
    let s = sample(&e[0]);
    assert_eq!(s.name(), "my.metric");
    let labels: Vec<_> = s.labels().collect();
    assert_eq!(labels, [(Cow::Borrowed("label.x"), Cow::Owned("v\\\"\n\\t".to_string()))]);
    assert_eq!(sample(&e[1]).name(), "a\"b");
}

#[test]
fn prometheus_quirks() {
    // No comma between labels, a value right after the braces or the name, a label
    // value spanning lines, blank-only HELP text, first text byte dropped.
    let e = text("a{b=\"1\"c=\"2\"}3\nx+1\ny{z=\"p\nq\"} 4\n# HELP h   \n# HELP g-x\n");
    assert_eq!(sample(&e[0]).labels().count(), 2);
    assert_eq!(sample(&e[0]).value(), 3.0);
    assert_eq!((sample(&e[1]).name(), sample(&e[1]).value()), ("x".into(), 1.0));
    assert_eq!(sample(&e[2]).labels().next().unwrap().1, "p\nq");
    assert_eq!(e[3], Entry::Help { name: "h", help: "".into() });
    assert_eq!(e[4], Entry::Help { name: "g", help: "x".into() });
}

#[test]
fn values_and_timestamps() {
    let e = text("a NaN\na +Inf\na -inf\na Infinity 0\na 1e3 9223372036854775807\n");
    assert_eq!(sample(&e[0]).value().to_bits(), super::number::NORMAL_NAN_BITS);
    assert_eq!(sample(&e[1]).value(), f64::INFINITY);
    assert_eq!(sample(&e[2]).value(), f64::NEG_INFINITY);
    assert_eq!(sample(&e[3]).timestamp_ms(), Some(0));
    assert_eq!(sample(&e[4]).timestamp_ms(), Some(i64::MAX));
}

#[test]
fn text_errors() {
    use ErrorKind::*;
    for (input, kind, offset) in [
        (&b"a{b=\"1\",b=\"2\"} 1\n"[..], DuplicateLabelName, 8),
        (b"a{__name__=\"x\"} 1", DuplicateLabelName, 2),
        (b"{a=\"b\"} 1", MissingMetricName, 0),
        (b"a{\"b\"} 1", MetricNameTwice, 2),
        (b"a 1_2", InvalidValue, 2),
        (b"a 0x1p3", InvalidValue, 2),
        (b"a 1 -1", InvalidTimestamp, 4),
        (b"a 1 1.5", TrailingText, 5),
        (b"a 1 99999999999999999999", InvalidTimestamp, 4),
        (b"a 1\n\0b 1", NulByte, 4),
        (b"a{b=\"\xff\"} 1", InvalidUtf8, 5),
        (b"a", MissingValue, 1),
        (b"a{b='c'} 1", ExpectedLabelValue, 4),
        (b"a{b=\"c} 1", UnterminatedString, 9),
        (b"a{,} 1", ExpectedLabelName, 2),
        (b"# TYPE a gauge x\n", InvalidMetricType, 9),
        (b"# TYPE a\n", InvalidMetricType, 8),
        (b"# HELP \n", ExpectedMetadataName, 7),
        (b"1a 1", ExpectedMetricName, 0),
        (b"a{b\0=\"c\"} 1", NulByte, 3),
    ] {
        assert_eq!(text_err(input), (kind, offset), "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn nul_allowed_in_values_help_comments() {
    let e = text("# HELP a x\0y\n# c\0mment\na{b=\"\0\"} 1\n");
    assert_eq!(e[0], Entry::Help { name: "a", help: "x\0y".into() });
    assert_eq!(sample(&e[1]).labels().next().unwrap().1, "\0");
}

#[test]
fn invalid_utf8_in_comment_is_skipped() {
    let page = b"# \xff\xfe comment\na{b=\"\xc3\xa9\"} 1\n";
    let mut p = Parser::new(page, Format::PrometheusText);
    let s = match p.next_entry().unwrap() {
        Some(Entry::Sample(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(s.labels().next().unwrap().1, "é");
}

#[test]
fn error_ends_parse() {
    let mut p = Parser::new(b"a 1\nb x\nc 2\n", Format::PrometheusText);
    assert!(p.next_entry().unwrap().is_some());
    let err = p.next_entry().unwrap_err();
    assert_eq!((err.kind, err.line, err.offset), (ErrorKind::InvalidValue, 2, 6));
    assert_eq!(p.next_entry(), Ok(None));
}

#[test]
fn long_line() {
    let mut page = b"ok 1\n".to_vec();
    page.extend(std::iter::repeat_n(b'a', super::MAX_LINE_BYTES + 10));
    page.extend(b" 1\n");
    assert_eq!(text_err(&page), (ErrorKind::LineTooLong, 5 + super::MAX_LINE_BYTES));
    // Exactly at the cap is fine.
    let mut page = vec![b'a'; super::MAX_LINE_BYTES - 2];
    page.extend(b" 1\n");
    assert_eq!(text(std::str::from_utf8(&page).unwrap()).len(), 1);
}
