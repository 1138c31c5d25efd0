//! Fuzz target for the scrape parser. Asserts properties, not just "no panic":
//! - the fast parser and the naive reference parser agree (same entries, or both fail), in
//!   both formats;
//! - every slice the fast parser borrows lies inside the input;
//! - after an error the parser stays done;
//! - `validate_openmetrics` never accepts what the scrape parser rejects.
//!
//! The first input byte picks the format; the rest is the body.

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use trawl::parse::naive;
use trawl::parse::{Entry, Format, Parser, validate_openmetrics};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = if selector & 1 == 0 { Format::PrometheusText } else { Format::OpenMetrics };

    let slow = naive::parse(body, format);
    let fast = naive::parse_fast(body, format);
    match (&slow, &fast) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "naive and fast parsers disagree"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "one parser failed: naive {:?}, fast {:?}",
            slow.as_ref().map(Vec::len),
            fast.as_ref().map(Vec::len)
        ),
    }

    let range = body.as_ptr_range();
    let inside = |s: &[u8]| {
        let r = s.as_ptr_range();
        s.is_empty() || (range.start <= r.start && r.end <= range.end)
    };
    let borrowed = |c: &Cow<'_, str>| match c {
        Cow::Borrowed(s) => inside(s.as_bytes()),
        Cow::Owned(_) => true,
    };
    let mut p = Parser::new(body, format);
    loop {
        match p.next_entry() {
            Ok(Some(Entry::Help { name, help })) => assert!(inside(name.as_bytes()) && borrowed(&help)),
            Ok(Some(Entry::Type { name, .. })) => assert!(inside(name.as_bytes())),
            Ok(Some(Entry::Unit { name, unit })) => {
                assert!(inside(name.as_bytes()) && inside(unit.as_bytes()))
            }
            Ok(Some(Entry::Sample(s))) => {
                assert!(inside(s.raw_series()) && borrowed(&s.name()));
                for (k, v) in s.labels().chain(s.exemplar().into_iter().flat_map(|e| e.labels())) {
                    assert!(borrowed(&k) && borrowed(&v));
                }
            }
            Ok(None) => break,
            Err(e) => {
                assert!(e.offset <= body.len() && e.line >= 1);
                assert_eq!(p.next_entry(), Ok(None), "parser continued after an error");
                break;
            }
        }
    }

    if format == Format::OpenMetrics && validate_openmetrics(body).is_ok() {
        assert!(fast.is_ok(), "validator accepted what the scrape parser rejects");
    }
});
