//! Allocation budget of the scrape parser: parsing a page without escapes allocates a small
//! constant number of times (the reusable label-name scratch growing to the widest label
//! set), independent of the number of lines, even when every sample's name, labels, value
//! and series key are read.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use trawl::parse::{Entry, Format, Parser};

use counting_alloc::allocations;

fn page(families: usize, format: Format) -> Vec<u8> {
    let mut s = String::new();
    for f in 0..families {
        s += &format!("# HELP node_metric_{f} Help text for family {f}.\n");
        s += &format!("# TYPE node_metric_{f} counter\n");
        for cpu in 0..4 {
            for mode in ["idle", "system", "user", "iowait"] {
                let (total, ts) = match format {
                    Format::PrometheusText => ("", " 1712345678901"),
                    Format::OpenMetrics => ("_total", " 1712345678.901"),
                    Format::PrometheusProto => unreachable!("this test writes text pages"),
                };
                s += &format!(
                    "node_metric_{f}{total}{{cpu=\"{cpu}\",mode=\"{mode}\",instance=\"host-{f}:9100\"}} {}.{}{ts}\n",
                    f * 1000 + cpu,
                    cpu * 7
                );
            }
        }
        if format == Format::PrometheusText {
            s += "# a plain comment\n\n";
        }
    }
    if format == Format::OpenMetrics {
        s += "# EOF\n";
    }
    s.into_bytes()
}

/// Parses `input`, touching everything a consumer would, and returns
/// (allocations, lines, checksum).
fn parse_counting(input: &[u8], format: Format) -> (usize, usize, f64) {
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    let before = allocations();
    let mut p = Parser::new(input, format);
    let mut sum = 0.0;
    let mut bytes = 0;
    while let Some(e) = p.next_entry().expect("valid page") {
        match e {
            Entry::Sample(s) => {
                sum += s.value() + s.timestamp_ms().unwrap_or(0) as f64;
                bytes += s.name().len() + s.raw_series().len();
                for (k, v) in s.labels() {
                    bytes += k.len() + v.len();
                }
            }
            Entry::Help { name, help } => bytes += name.len() + help.len(),
            Entry::Type { name, .. } | Entry::Unit { name, .. } => bytes += name.len(),
        }
    }
    let allocs = allocations() - before;
    (allocs, lines, sum + bytes as f64)
}

#[test]
fn no_allocation_per_line() {
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let small = page(50, format);
        let large = page(1000, format);
        let (a_small, l_small, _) = parse_counting(&small, format);
        let (a_large, l_large, _) = parse_counting(&large, format);
        println!(
            "{format:?}: {a_small} allocations for {l_small} lines, {a_large} for {l_large} lines \
             ({:.6} per line)",
            a_large as f64 / l_large as f64
        );
        assert!(l_large > 15_000);
        assert_eq!(a_small, a_large, "allocations grow with the line count");
        assert!(a_large <= 4, "{a_large} allocations: more than the scratch growth");
    }
}

#[test]
fn escapes_allocate_only_when_read() {
    let input = b"a{b=\"x\\\"y\"} 1\n";
    let before = allocations();
    let mut p = Parser::new(input, Format::PrometheusText);
    let Some(Entry::Sample(s)) = p.next_entry().unwrap() else { panic!() };
    let parsed = allocations() - before;
    let v: Vec<_> = s.labels().collect();
    assert_eq!(v[0].1, "x\"y");
    println!("escaped value: {parsed} allocations to parse, one more to read the label");
    assert!(parsed <= 1);
}
