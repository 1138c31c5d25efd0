//! Property tests: the fast parser agrees with the naive reference parser
//! (`trawl::parse::naive`) on generated pages (escapes, odd floats, timestamps, UTF-8 names,
//! comments, blank lines, exemplars) and on arbitrary or mutated bytes: both fail, or both
//! produce the same entries (values compared by bits). Every borrowed slice the fast parser
//! hands out must lie inside the input.

use proptest::prelude::*;
use trawl::parse::naive::{self, NaiveEntry};
use trawl::parse::{Entry, Format, Parser};

/// Checks agreement and returns whether the page parsed.
fn agree(input: &[u8], format: Format) -> Result<bool, TestCaseError> {
    let slow = naive::parse(input, format);
    let fast = naive::parse_fast(input, format);
    match (&slow, &fast) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "entries differ for {:?}", lossy(input)),
        (Err(_), Err(_)) => {}
        _ => prop_assert!(
            false,
            "naive {:?} vs fast {:?} for {:?}",
            slow.as_ref().map(Vec::len),
            fast.as_ref().map(Vec::len),
            lossy(input)
        ),
    }
    check_borrows(input, format)?;
    Ok(fast.is_ok())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every `&str`/`&[u8]` the parser returns points into `input`.
fn check_borrows(input: &[u8], format: Format) -> Result<(), TestCaseError> {
    let range = input.as_ptr_range();
    let inside = |s: &[u8]| {
        let r = s.as_ptr_range();
        s.is_empty() || (range.start <= r.start && r.end <= range.end)
    };
    let mut p = Parser::new(input, format);
    while let Ok(Some(e)) = p.next_entry() {
        match &e {
            Entry::Help { name, help } => {
                prop_assert!(inside(name.as_bytes()));
                if let std::borrow::Cow::Borrowed(h) = help {
                    prop_assert!(inside(h.as_bytes()));
                }
            }
            Entry::Type { name, .. } => prop_assert!(inside(name.as_bytes())),
            Entry::Unit { name, unit } => {
                prop_assert!(inside(name.as_bytes()) && inside(unit.as_bytes()))
            }
            Entry::Sample(s) => {
                prop_assert!(inside(s.raw_series()));
                let labels = s.labels().chain(s.exemplar().into_iter().flat_map(|e| e.labels()));
                for (k, v) in labels.chain(std::iter::once((s.name(), s.name()))) {
                    for part in [k, v] {
                        if let std::borrow::Cow::Borrowed(x) = part {
                            prop_assert!(inside(x.as_bytes()));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

// === generators ===

fn blanks() -> impl Strategy<Value = String> {
    prop_oneof![Just(""), Just(" "), Just("\t"), Just("  \t ")].prop_map(str::to_string)
}

fn metric_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        Just("go_gc_duration_seconds".to_string()),
        Just("a".to_string()),
        Just("a_total".to_string()),
        Just("a_bucket".to_string()),
    ]
}

/// Characters that stress quoting: escapes, quotes, braces, `#`, non-ASCII, NUL.
fn quoted_content() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => "[a-z0-9 ._-]",
            1 => Just("\\\\".to_string()),
            1 => Just("\\\"".to_string()),
            1 => Just("\\n".to_string()),
            1 => Just("\\t".to_string()),
            1 => Just("é".to_string()),
            1 => Just("€".to_string()),
            1 => Just("😀".to_string()),
            1 => Just("{".to_string()),
            1 => Just("}".to_string()),
            1 => Just(" # ".to_string()),
            1 => Just("=".to_string()),
            1 => Just(",".to_string()),
            1 => Just("\0".to_string()),
        ],
        0..8,
    )
    .prop_map(|v| v.concat())
}

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
        1 => quoted_content().prop_map(|s| format!("\"{s}\"")),
        1 => Just("le".to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<f64>().prop_map(|f| format!("{f}")),
        2 => any::<f64>().prop_map(|f| format!("{f:e}")),
        1 => any::<f64>().prop_map(|f| format!("{f:.3}")),
        2 => any::<i64>().prop_map(|i| i.to_string()),
        1 => any::<u32>().prop_map(|i| format!("{i}.{}", i % 1000)),
        1 => any::<u64>().prop_map(|i| format!("000{i}e-{}", i % 30)),
        2 => prop_oneof![
            Just("NaN"), Just("nan"), Just("+Inf"), Just("-Inf"), Just("inf"), Just("Infinity"),
            Just("-infinity"), Just("1."), Just(".5"), Just("-0"), Just("1e-400"),
            Just("9007199254740993"), Just("123456789012345678901234567890"), Just("4.9351e-05"),
            Just("+.5e+3"),
        ]
        .prop_map(str::to_string),
        // Invalid in Go/Prometheus syntax.
        1 => prop_oneof![
            Just("+nan"), Just("1_0"), Just("0x1p-3"), Just("0x10"), Just("1e"), Just("."),
            Just("1e309"), Just("1.1.1"), Just("z"),
        ]
        .prop_map(str::to_string),
    ]
}

fn text_timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        2 => any::<u32>().prop_map(|t| format!(" {t}")),
        1 => any::<u64>().prop_map(|t| format!(" {t}")),
        1 => Just(" 9223372036854775807".to_string()),
        1 => Just(" 9223372036854775808".to_string()),
        1 => Just(" 000123".to_string()),
        1 => Just(" 1.5".to_string()),
    ]
}

fn text_labels() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec((label_name(), quoted_content(), blanks(), any::<bool>()), 0..5),
        prop::option::weighted(0.15, quoted_content()),
        any::<bool>(),
        blanks(),
    )
        .prop_map(|(pairs, qname, trailing_comma, b)| {
            let mut parts: Vec<String> = pairs
                .into_iter()
                .map(|(k, v, bl, comma)| format!("{bl}{k}{bl}={bl}\"{v}\"{}", if comma { "," } else { "" }))
                .collect();
            if let Some(q) = qname {
                parts.insert(0, format!("\"{q}\","));
            }
            let mut s = format!("{{{b}{}", parts.join(b.as_str()));
            if trailing_comma {
                s.push(',');
            }
            s.push('}');
            s
        })
}

fn text_line() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => blanks(),
        1 => (blanks(), quoted_content()).prop_map(|(b, t)| format!("#{b}{t}")),
        1 => (blanks(), blanks(), metric_name(), blanks(), quoted_content())
            .prop_map(|(b1, b2, n, b3, t)| format!("#{b1} HELP{b2} {n}{b3}{t}")),
        1 => (quoted_content(), quoted_content())
            .prop_map(|(n, t)| format!("# HELP \"{n}\" {t}")),
        1 => (metric_name(), prop_oneof![
                Just("counter"), Just("gauge"), Just("histogram"), Just("summary"),
                Just("untyped"), Just("info"), Just("gauge "), Just(""),
            ])
            .prop_map(|(n, t)| format!("# TYPE {n} {t}")),
        6 => (blanks(), prop::option::weighted(0.95, metric_name()), prop::option::of(text_labels()),
              blanks(), value(), text_timestamp(), blanks())
            .prop_map(|(b1, n, l, b2, v, ts, b3)| {
                format!("{b1}{}{}{b2} {v}{ts}{b3}", n.unwrap_or_default(), l.unwrap_or_default())
            }),
    ]
}

fn text_page() -> impl Strategy<Value = String> {
    (proptest::collection::vec(text_line(), 0..12), any::<bool>()).prop_map(|(lines, nl)| {
        let mut s = lines.join("\n");
        if nl {
            s.push('\n');
        }
        s
    })
}

fn om_labels() -> impl Strategy<Value = String> {
    (proptest::collection::vec(("[a-z_][a-z0-9_]{0,4}", quoted_content()), 0..4), any::<bool>()).prop_map(
        |(pairs, trailing)| {
            let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{{{}{}}}", parts.join(","), if trailing && !pairs.is_empty() { "," } else { "" })
        },
    )
}

fn om_timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        2 => any::<i32>().prop_map(|t| format!(" {t}")),
        2 => any::<f64>().prop_map(|t| format!(" {t}")),
        1 => Just(" 1.5e3".to_string()),
        1 => Just(" NaN".to_string()),
        1 => Just(" 12345678901234567890.1234567890".to_string()),
    ]
}

fn om_line() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => (metric_name(), quoted_content()).prop_map(|(n, t)| format!("# HELP {n} {t}")),
        1 => (metric_name(), prop_oneof![
                Just("counter"), Just("gauge"), Just("histogram"), Just("gaugehistogram"),
                Just("summary"), Just("info"), Just("stateset"), Just("unknown"), Just("untyped"),
            ])
            .prop_map(|(n, t)| format!("# TYPE {n} {t}")),
        1 => prop_oneof![Just("# UNIT a_seconds seconds"), Just("# UNIT a_s x"), Just("# UNIT a ")]
            .prop_map(str::to_string),
        6 => (metric_name(), prop::option::of(om_labels()), value(), om_timestamp(),
              prop::option::of((om_labels(), value(), om_timestamp())))
            .prop_map(|(n, l, v, ts, ex)| {
                let mut s = format!("{n}{} {v}{ts}", l.unwrap_or_default());
                if let Some((el, ev, ets)) = ex {
                    s += &format!(" # {el} {ev}{ets}");
                }
                s
            }),
        1 => (quoted_content(), om_labels(), value())
            .prop_map(|(n, l, v)| format!("{{\"{n}\",{} {v}", &l[1..])),
    ]
}

fn om_page() -> impl Strategy<Value = String> {
    (proptest::collection::vec(om_line(), 0..10), any::<bool>()).prop_map(|(lines, nl)| {
        let mut s = String::new();
        for l in lines {
            s += &l;
            s.push('\n');
        }
        s += "# EOF";
        if nl {
            s.push('\n');
        }
        s
    })
}

/// Applies a few byte edits (replace, insert, delete) at chosen positions.
fn mutate(page: String, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    let mut b = page.into_bytes();
    for (pos, op, byte) in edits {
        let byte = match byte % 8 {
            0 => b' ',
            1 => b'\n',
            2 => b'"',
            3 => b'\\',
            4 => b'{',
            5 => b',',
            6 => 0xff,
            _ => byte,
        };
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let pos = pos % b.len();
        match op % 3 {
            0 => b[pos] = byte,
            1 => b.insert(pos, byte),
            _ => {
                b.remove(pos);
            }
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)
}

proptest! {
    // 1,000 cases by default (about 30 s in a debug build); CI or a soak run can raise it
    // with PROPTEST_CASES.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000),
        // Tests live in tests/, where proptest cannot find a source root to persist to.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn text_pages_agree(page in text_page()) {
        agree(page.as_bytes(), Format::PrometheusText)?;
    }

    #[test]
    fn openmetrics_pages_agree(page in om_page()) {
        agree(page.as_bytes(), Format::OpenMetrics)?;
    }

    #[test]
    fn mutated_pages_agree(page in text_page(), om in om_page(), e in edits()) {
        agree(&mutate(page, e.clone()), Format::PrometheusText)?;
        agree(&mutate(om, e), Format::OpenMetrics)?;
    }

    #[test]
    fn arbitrary_bytes_agree(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        agree(&bytes, Format::PrometheusText)?;
        agree(&bytes, Format::OpenMetrics)?;
    }

    #[test]
    fn printable_noise_agrees(s in "[ -~\t\n]{0,120}") {
        agree(s.as_bytes(), Format::PrometheusText)?;
        agree(s.as_bytes(), Format::OpenMetrics)?;
    }

    /// Any f64 printed by Rust (shortest round-trip, `{:e}`, fixed) parses back exactly.
    #[test]
    fn values_round_trip(f in any::<f64>()) {
        for text in [format!("{f}"), format!("{f:e}"), format!("{f:.20}")] {
            let page = format!("a {text}\n");
            let entries = naive::parse_fast(page.as_bytes(), Format::PrometheusText);
            let entries = entries.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            let NaiveEntry::Sample(s) = &entries[0] else { unreachable!() };
            let want: f64 = text.parse().unwrap();
            if want.is_nan() {
                prop_assert!(s.value.is_nan());
            } else {
                prop_assert_eq!(s.value.to_bits(), want.to_bits(), "{}", text);
            }
        }
    }
}

/// Sanity check that the generators produce mostly valid pages (otherwise agreement on
/// errors would be a weak property).
#[test]
fn generators_produce_valid_pages() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut ok_text, mut ok_om) = (0, 0);
    for _ in 0..500 {
        let t = text_page().new_tree(&mut runner).unwrap().current();
        ok_text += usize::from(naive::parse(t.as_bytes(), Format::PrometheusText).is_ok());
        let o = om_page().new_tree(&mut runner).unwrap().current();
        ok_om += usize::from(naive::parse(o.as_bytes(), Format::OpenMetrics).is_ok());
    }
    println!("valid pages: text {ok_text}/500, OpenMetrics {ok_om}/500");
    assert!(ok_text > 50 && ok_om > 50, "text {ok_text}, om {ok_om}");
}
