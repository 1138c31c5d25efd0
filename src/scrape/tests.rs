//! Tests of the page processor and its parts: the behaviour the scrape loop shows (labels,
//! staleness, limits, metadata, created timestamps), and property tests of each fast path
//! against its reference model (series table vs a hash map, records vs building the label set,
//! stale markers vs set difference).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use proptest::prelude::*;

use super::page::{Counts, Page};
use super::series::SeriesTable;
use super::{JobSettings, offset};
use crate::batch::{Batch, is_stale_nan};
use crate::config::Duration;
use crate::labels::Labels;
use crate::parse;
use crate::relabel::{RelabelConfig, ScrapeTarget};

fn settings(honor_labels: bool, sample_limit: u64) -> JobSettings {
    JobSettings { honor_labels, sample_limit, ..JobSettings::default() }
}

fn target_labels() -> Labels {
    Labels::from_pairs([("job", "j"), ("instance", "h:1"), ("zone", "z")])
}

fn lp(honor_labels: bool, sample_limit: u64) -> Page {
    Page::new(Arc::new(settings(honor_labels, sample_limit)), target_labels(), Arc::default())
}

fn page(l: &mut Page, body: &str, ts: i64) -> Result<(Batch, Counts), String> {
    let mut b = Batch::new();
    l.process_page(body.as_bytes(), parse::Format::PrometheusText, ts, &mut b)
        .map(|c| (b, c))
        .map_err(|(e, _)| e.to_string())
}

/// A scrape as the loop runs it: a failed page is discarded and the last set stale-marked.
fn scrape(l: &mut Page, body: &str, format: parse::Format, ts: i64) -> (Batch, Result<Counts, String>) {
    let mut b = Batch::new();
    match l.process_page(body.as_bytes(), format, ts, &mut b) {
        Ok(c) => (b, Ok(c)),
        Err((e, _)) => {
            l.fail(ts, &mut b);
            (b, Err(e.to_string()))
        }
    }
}

fn show(b: &Batch) -> Vec<String> {
    b.iter()
        .map(|s| {
            let v = if is_stale_nan(s.value) { "stale".to_string() } else { s.value.to_string() };
            format!("{} {v} {}", s.labels(), s.timestamp_ms)
        })
        .collect()
}

fn names(b: &Batch, stale: bool) -> Vec<String> {
    let mut out: Vec<String> = b
        .iter()
        .filter(|s| is_stale_nan(s.value) == stale)
        .map(|s| s.labels().get("__name__").unwrap_or("").to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn target_labels_win_and_exposed_ones_are_exported() {
    let mut l = lp(false, 0);
    let (b, _) = page(&mut l, "m{job=\"orig\",instance=\"foo\",exported_job=\"x\"} 1\n", 5).unwrap();
    assert_eq!(
        show(&b),
        [
            r#"{__name__="m", exported_exported_job="orig", exported_instance="foo", exported_job="x", instance="h:1", job="j", zone="z"} 1 5"#
        ]
    );
}

#[test]
fn honor_labels_keeps_exposed_ones() {
    let mut l = lp(true, 0);
    let (b, _) = page(&mut l, "m{job=\"orig\"} 1\n", 5).unwrap();
    assert_eq!(show(&b), [r#"{__name__="m", instance="h:1", job="orig", zone="z"} 1 5"#]);
}

#[test]
fn external_labels_are_merged_series_winning() {
    let external = Arc::new(Labels::from_pairs([("cluster", "c"), ("zone", "ext"), ("a", "ext")]));
    let mut l = Page::new(Arc::new(settings(false, 0)), target_labels(), external.clone());
    let (b, _) = page(&mut l, "m{a=\"page\"} 1\n", 5).unwrap();
    assert_eq!(show(&b), [r#"{__name__="m", a="page", cluster="c", instance="h:1", job="j", zone="z"} 1 5"#]);
    assert!(b.has_external(&external), "the batch says its records hold them");
    let mut report = Batch::new();
    l.push_report(&mut report, 5, [1.0; 5]);
    assert_eq!(
        show(&report)[0],
        r#"{__name__="up", a="ext", cluster="c", instance="h:1", job="j", zone="z"} 1 5"#,
        "report series carry them too"
    );
}

#[test]
fn vanished_series_get_stale_markers_at_the_next_scrape() {
    let mut l = lp(false, 0);
    let (_, c) = page(&mut l, "a 1\nb 2\n", 1000).unwrap();
    assert_eq!((c.scraped, c.post_relabel, c.added), (2, 2, 2));
    let (b, c) = page(&mut l, "a 3\n", 2000).unwrap();
    assert_eq!(c.added, 0, "a is not new");
    assert_eq!(
        show(&b),
        [
            r#"{__name__="a", instance="h:1", job="j", zone="z"} 3 2000"#,
            r#"{__name__="b", instance="h:1", job="j", zone="z"} stale 2000"#
        ]
    );
    let (b, c) = page(&mut l, "a 3\n", 3000).unwrap();
    assert_eq!(b.len(), 1, "a marker is written once");
    assert!(!c.series_changed, "the steady state");
}

#[test]
fn another_spelling_of_a_series_is_the_same_series() {
    let mut l = lp(false, 0);
    let (b, c) = page(&mut l, "a 1\na 2\na{} 3\n", 1000).unwrap();
    assert_eq!((b.len(), c.scraped, c.post_relabel), (1, 3, 1), "duplicates keep the first sample");
    assert_eq!(b.get(0).value, 1.0);
    // Steady state with the alias still on the page: still one sample, every scrape.
    for ts in [2000, 3000] {
        let (b, _) = page(&mut l, "a 1\na{} 3\n", ts).unwrap();
        assert_eq!(show(&b), [format!(r#"{{__name__="a", instance="h:1", job="j", zone="z"}} 1 {ts}"#)]);
    }
    // Labels written in another order from one scrape to the next: the same series, no marker.
    let (b, _) = page(&mut l, "m{x=\"1\",y=\"2\"} 1\n", 4000).unwrap();
    assert_eq!(names(&b, true), ["a"]);
    let (b, _) = page(&mut l, "m{y=\"2\",x=\"1\"} 1\n", 5000).unwrap();
    assert_eq!((names(&b, true), names(&b, false)), (vec![], vec!["m".to_owned()]), "m is not stale");
    // Relabeling that makes two series one: the first is kept (Prometheus rejects the second).
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str("- {regex: x, action: labeldrop}\n").unwrap();
    let mut s = settings(false, 0);
    s.metric_relabel = rules;
    let mut l = Page::new(Arc::new(s), target_labels(), Arc::default());
    for ts in [1000, 2000] {
        let (b, _) = page(&mut l, "m{x=\"1\"} 1\nm{x=\"2\"} 2\n", ts).unwrap();
        assert_eq!(show(&b), [format!(r#"{{__name__="m", instance="h:1", job="j", zone="z"}} 1 {ts}"#)]);
    }
}

#[test]
fn explicit_timestamps_are_kept_and_not_stale_tracked() {
    let mut l = lp(false, 0);
    let (b, _) = page(&mut l, "a 1 123\n", 1000).unwrap();
    assert_eq!(b.get(0).timestamp_ms, 123);
    let (b, _) = page(&mut l, "", 2000).unwrap();
    assert!(b.is_empty(), "series with explicit timestamps get no staleness markers");
}

#[test]
fn sample_limit_fails_the_scrape() {
    let mut l = lp(false, 2);
    assert!(page(&mut l, "a 1\nb 1\n", 1).is_ok());
    assert_eq!(page(&mut l, "a 1\nb 1\nc 1\n", 2).unwrap_err(), "sample limit exceeded");
}

#[test]
fn bad_pages_fail_whole() {
    // (page, why)
    let cases = [
        ("a{x=\"1\",x=\"1\"} 1\n", "a repeated label name fails the scrape (compliance: RepeatedLabels)"),
        ("{label=\"value\"} 1\n", "a series without a name fails the scrape (compliance: NameLabel)"),
        ("1234notvali}{ 444\n", "garbage fails the scrape (compliance: Invalid)"),
    ];
    for (body, why) in cases {
        let mut l = lp(false, 0);
        assert!(page(&mut l, body, 1).is_err(), "{why}");
    }
}

#[test]
fn a_failed_scrape_stale_marks_the_last_set_once() {
    let mut l = lp(false, 0);
    page(&mut l, "a 1\nb 2\n", 1000).unwrap();
    let (b, r) = scrape(&mut l, "a 1\nbroken{\n", parse::Format::PrometheusText, 2000);
    assert!(r.is_err());
    assert_eq!(names(&b, true), ["a", "b"], "every series of the last successful scrape");
    assert_eq!(names(&b, false), Vec::<String>::new(), "nothing of the failed page");
    let (b, r) = scrape(&mut l, "broken{\n", parse::Format::PrometheusText, 3000);
    assert!(r.is_err() && b.is_empty(), "no markers twice");
    let (b, _) = page(&mut l, "a 1\n", 4000).unwrap();
    assert_eq!(names(&b, true), Vec::<String>::new());
}

#[test]
fn empty_label_values_are_absent() {
    let mut l = lp(false, 0);
    let (b, _) = page(&mut l, "test{a=\"\"} 1\n", 1).unwrap();
    assert_eq!(show(&b), [r#"{__name__="test", instance="h:1", job="j", zone="z"} 1 1"#]);
}

#[test]
fn escaped_and_quoted_labels_are_written_unescaped() {
    let mut l = lp(false, 0);
    let body = "{\"my.metric\",\"a.b\"=\"x\\\"y\\\\z\\nw\",c=\"plain\"} 1\nother{z=\"1\",a=\"2\"} 2\n";
    let (b, _) = page(&mut l, body, 1).unwrap();
    let got: Vec<Labels> = b.iter().map(|s| s.labels()).collect();
    assert_eq!(got[0].get("__name__"), Some("my.metric"));
    assert_eq!(got[0].get("a.b"), Some("x\"y\\z\nw"), "unescaped");
    assert_eq!(
        got[1].iter().map(|l| l.name.to_string()).collect::<Vec<_>>(),
        ["__name__", "a", "instance", "job", "z", "zone"],
        "sorted"
    );
}

#[test]
fn wide_label_sets_are_sorted_like_narrow_ones() {
    // (labels, why): over 16 labels take the parser's general path and the heap-sorted order.
    let wide: Vec<String> =
        (0..20).rev().map(|i| format!("l{i:02}=\"{}\"", if i == 7 { "" } else { "v" })).collect();
    let cases = [(wide.join(","), "20 labels, reversed, one empty"), (wide[..10].join(","), "10 labels")];
    for (labels, why) in cases {
        let mut l = lp(false, 0);
        let (b, _) = page(&mut l, &format!("m{{{labels}}} 1\n"), 1).unwrap();
        let got = b.get(0).labels();
        let names: Vec<String> = got.iter().map(|l| l.name.to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{why}");
        assert!(!got.contains("l07"), "{why}: the empty value is absent");
        let record = b.record(0).to_vec();
        let mut want = Vec::new();
        crate::batch::write_labels(&got, &mut want);
        assert_eq!(record, want, "{why}: sorted in the record itself");
    }
}

#[test]
fn churn_forgets_series_and_their_relabeling() {
    let rules: Vec<RelabelConfig> =
        serde_saphyr::from_str("- {source_labels: [x], target_label: copy}\n").unwrap();
    let mut s = settings(false, 0);
    s.metric_relabel = rules;
    let mut l = Page::new(Arc::new(s), target_labels(), Arc::default());
    page(&mut l, "a{x=\"1\"} 1\nb{x=\"2\"} 2\n", 1).unwrap();
    assert_eq!((l.table_len(), l.diff_count()), (2, 2), "two series, two diffs (copy=1, copy=2)");
    // The page changes for good: a and b are evicted two scrapes later, and their diffs go too.
    for ts in 2..=4 {
        page(&mut l, "c{x=\"2\"} 1\n", ts).unwrap();
    }
    assert_eq!((l.table_len(), l.diff_count()), (1, 1), "only c and its diff are left");
    let (b, _) = page(&mut l, "c{x=\"2\"} 1\n", 5).unwrap();
    assert_eq!(b.get(0).labels().get("copy"), Some("2"), "the renumbered diff still applies");
}

#[test]
fn metadata_and_exemplars_travel_beside_the_samples() {
    let mut l = lp(false, 0);
    let body = "# TYPE req counter\n# HELP req Requests.\nreq_total 3 # {trace_id=\"t1\"} 1.5 1.0\n\
                req_created 1.0\n# TYPE temp_celsius gauge\n# UNIT temp_celsius celsius\ntemp_celsius 20\n\
                other 1\n# EOF\n";
    let run = |l: &mut Page, ts| {
        let mut b = Batch::new();
        l.process_page(body.as_bytes(), parse::Format::OpenMetrics, ts, &mut b).map_err(|(e, _)| e).unwrap();
        b
    };
    let b = run(&mut l, 5_000);
    type Meta = Option<(parse::MetricType, String, String)>;
    let got: Vec<(String, Meta)> = b
        .iter()
        .zip(b.metadata_iter())
        .map(|(s, m)| {
            let name = s.labels().get("__name__").unwrap_or("").to_owned();
            (name, m.map(|m| (m.kind, m.help.clone(), m.unit.clone())))
        })
        .collect();
    let counter = Some((parse::MetricType::Counter, "Requests.".to_owned(), String::new()));
    // (sample, metadata, why)
    let want = [
        ("req_total", counter.clone(), "a counter's _total sample belongs to its family"),
        ("req_created", counter, "so does _created"),
        ("temp_celsius", Some((parse::MetricType::Gauge, String::new(), "celsius".into())), "UNIT kept"),
        ("other", None, "no HELP/TYPE for it"),
    ];
    for ((name, meta), (want_name, want_meta, why)) in got.iter().zip(want) {
        assert_eq!((name.as_str(), meta), (want_name, &want_meta), "{why}");
    }
    assert_eq!(b.exemplars.len(), 1);
    let (at, e) = &b.exemplars[0];
    assert_eq!((*at, e.value, e.timestamp_ms), (0, 1.5, 1_000), "exemplar of req_total, its own timestamp");
    assert_eq!(e.labels.get("trace_id"), Some("t1"));
    let first = b.metadata[0].metadata.clone();
    let b2 = run(&mut l, 6_000);
    assert!(
        Arc::ptr_eq(first.as_ref().unwrap(), b2.metadata[0].metadata.as_ref().unwrap()),
        "unchanged metadata is shared across scrapes, not rebuilt"
    );
}

/// (series, created timestamp) of each sample of `body` scraped as OpenMetrics.
fn created_of(body: &str) -> (Vec<(String, Option<i64>)>, Counts) {
    let mut l = lp(false, 0);
    let mut b = Batch::new();
    let counts = l
        .process_page(body.as_bytes(), parse::Format::OpenMetrics, 5_000, &mut b)
        .map_err(|(e, _)| e)
        .unwrap();
    let got = b
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let created = b.created.iter().find(|(at, _)| *at as usize == i).map(|(_, c)| *c);
            (s.labels().to_string(), created)
        })
        .collect();
    (got, counts)
}

fn series(name: &str, extra: &[(&str, &str)]) -> String {
    let mut l = Labels::from_pairs(extra.iter().copied());
    for (n, v) in [("__name__", name), ("instance", "h:1"), ("job", "j"), ("zone", "z")] {
        l.set(n, v);
    }
    l.to_string()
}

#[test]
fn openmetrics_created_lines_give_their_points_a_created_timestamp() {
    let body = "# TYPE req counter\n\
                req_total{code=\"200\"} 3\nreq_created{code=\"200\"} 1700000000.5\n\
                req_total{code=\"500\"} 1\nreq_created{code=\"500\"} 1700000100\n\
                # TYPE lat histogram\n\
                lat_bucket{le=\"1.0\",path=\"/\"} 1\nlat_bucket{le=\"+Inf\",path=\"/\"} 2\n\
                lat_count{path=\"/\"} 2\nlat_sum{path=\"/\"} 1.5\nlat_created{path=\"/\"} 1600000000\n\
                # TYPE jobs counter\n\
                jobs_total{q=\"a\"} 1\njobs_total{q=\"b\"} 2\njobs_created{q=\"b\"} 1500000000.25\n\
                # TYPE temp gauge\ntemp 20\n# EOF\n";
    let (got, counts) = created_of(body);
    let ms = |secs: i64| Some(secs * 1000);
    // (series, created timestamp, why)
    let want = [
        (series("req_total", &[("code", "200")]), Some(1_700_000_000_500), "seconds to ms"),
        (
            series("req_created", &[("code", "200")]),
            None,
            "the _created series is still sent, as Prometheus does",
        ),
        (series("req_total", &[("code", "500")]), ms(1_700_000_100), "each point its own"),
        (series("req_created", &[("code", "500")]), None, ""),
        (series("lat_bucket", &[("le", "1.0"), ("path", "/")]), ms(1_600_000_000), "buckets: le ignored"),
        (series("lat_bucket", &[("le", "+Inf"), ("path", "/")]), ms(1_600_000_000), ""),
        (series("lat_count", &[("path", "/")]), ms(1_600_000_000), "_count"),
        (series("lat_sum", &[("path", "/")]), ms(1_600_000_000), "_sum"),
        (series("lat_created", &[("path", "/")]), None, ""),
        (
            series("jobs_total", &[("q", "a")]),
            None,
            "a point without _created gets none (nor the next point's)",
        ),
        (
            series("jobs_total", &[("q", "b")]),
            Some(1_500_000_000_250),
            "the _created after a later point belongs to that point, matched by labels",
        ),
        (series("jobs_created", &[("q", "b")]), None, ""),
        (series("temp", &[]), None, "gauges have none"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((g, c), (w, wc, why)) in got.iter().zip(want) {
        assert_eq!((g.as_str(), *c), (w.as_str(), wc), "{why}");
    }
    assert_eq!(counts.created_unmatched, 0);
    let mut l = lp(false, 0);
    let mut text = Batch::new();
    l.process_page(b"req_total 1\nreq_created 5\n", parse::Format::PrometheusText, 5_000, &mut text)
        .map_err(|(e, _)| e)
        .unwrap();
    assert!(text.created.is_empty(), "only OpenMetrics defines _created");
}

#[test]
fn created_lines_of_every_kind_find_their_point() {
    // (page, the series that get a created timestamp (name, extra labels, ms), unmatched, why)
    type Case<'a> = (&'a str, Vec<(&'a str, Vec<(&'a str, &'a str)>, i64)>, u64, &'a str);
    let cases: Vec<Case> = vec![
        (
            "# TYPE jobs counter\njobs_total{q=\"a\"} 1\njobs_total{q=\"b\"} 2\njobs_created{q=\"b\"} 1500000000.25\n# EOF\n",
            vec![("jobs_total", vec![("q", "b")], 1_500_000_000_250)],
            0,
            "counter: the issue's case",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"+Inf\",x=\"a\"} 1\nh_count{x=\"a\"} 1\nh_sum{x=\"a\"} 1\n\
             h_bucket{le=\"+Inf\",x=\"b\"} 2\nh_count{x=\"b\"} 2\nh_sum{x=\"b\"} 2\nh_created{x=\"b\"} 7\n# EOF\n",
            vec![
                ("h_bucket", vec![("le", "+Inf"), ("x", "b")], 7000),
                ("h_count", vec![("x", "b")], 7000),
                ("h_sum", vec![("x", "b")], 7000),
            ],
            0,
            "histogram: only the second point's samples",
        ),
        (
            "# TYPE s summary\ns{quantile=\"0.5\",x=\"a\"} 1\ns_count{x=\"a\"} 1\ns_sum{x=\"a\"} 1\n\
             s{quantile=\"0.5\",x=\"b\"} 2\ns_count{x=\"b\"} 2\ns_sum{x=\"b\"} 2\ns_created{x=\"b\"} 9\n# EOF\n",
            vec![
                ("s", vec![("quantile", "0.5"), ("x", "b")], 9000),
                ("s_count", vec![("x", "b")], 9000),
                ("s_sum", vec![("x", "b")], 9000),
            ],
            0,
            "summary: quantile ignored like le",
        ),
        (
            "# TYPE c counter\nc_total{q=\"a\"} 1\nc_created{q=\"z\"} 5\n# EOF\n",
            vec![],
            1,
            "a _created matching no point before it is ignored and counted",
        ),
    ];
    for (body, want, unmatched, why) in cases {
        let (got, counts) = created_of(body);
        let mut want_all: Vec<(String, i64)> = want.iter().map(|(n, l, ms)| (series(n, l), *ms)).collect();
        want_all.sort();
        let mut got_created: Vec<(String, i64)> =
            got.iter().filter_map(|(s, c)| c.map(|c| (s.clone(), c))).collect();
        got_created.sort();
        assert_eq!(got_created, want_all, "{why}");
        assert_eq!(counts.created_unmatched, unmatched, "{why}");
    }
}

#[test]
fn offsets_are_stable_and_within_the_interval() {
    let t = ScrapeTarget {
        labels: target_labels(),
        url: "http://h:1/metrics".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        params: Vec::new(),
    };
    let i = std::time::Duration::from_secs(15);
    assert_eq!(offset(&t, i), offset(&t, i));
    assert!(offset(&t, i) < i);
}

#[test]
fn remembered_series_go_stale_after_a_restart() {
    let mut before = lp(false, 0);
    page(&mut before, "a 1\nb 2\n", 1000).unwrap();
    let kept = before.last().clone();
    drop(before); // the "kill"

    let mut after = lp(false, 0);
    after.remember(kept);
    let (b, c) = page(&mut after, "a 3\nc 4\n", 5000).unwrap();
    assert_eq!(
        show(&b),
        [
            r#"{__name__="a", instance="h:1", job="j", zone="z"} 3 5000"#,
            r#"{__name__="c", instance="h:1", job="j", zone="z"} 4 5000"#,
            r#"{__name__="b", instance="h:1", job="j", zone="z"} stale 5000"#
        ],
        "b vanished while trawl was down: marked once, at the first scrape"
    );
    assert!(c.series_changed, "the new set is to be saved");
    let mut saved = Vec::new();
    after
        .last()
        .for_each(|r| saved.push(crate::batch::decode_labels(r).unwrap().get("__name__").unwrap().to_owned()))
        .unwrap();
    saved.sort();
    assert_eq!(saved, ["a", "c"]);
    let (b, c) = page(&mut after, "a 3\nc 4\n", 6000).unwrap();
    assert_eq!((b.len(), c.series_changed), (2, false), "no more markers after the first scrape");
}

#[test]
fn a_reload_that_changes_labels_stale_marks_the_old_ones() {
    let mut l = lp(false, 0);
    page(&mut l, "a 1\n", 1000).unwrap();
    let mut target = target_labels();
    target.set("zone", "moved");
    l.reconfigure(Arc::new(settings(false, 0)), &target, &Arc::default());
    let (b, _) = page(&mut l, "a 1\n", 2000).unwrap();
    assert_eq!(
        show(&b),
        [
            r#"{__name__="a", instance="h:1", job="j", zone="moved"} 1 2000"#,
            r#"{__name__="a", instance="h:1", job="j", zone="z"} stale 2000"#
        ]
    );
    // External labels only.
    let external = Arc::new(Labels::from_pairs([("cluster", "c")]));
    l.reconfigure(Arc::new(settings(false, 0)), &target, &external);
    let (b, _) = page(&mut l, "a 1\n", 3000).unwrap();
    assert_eq!(names(&b, true), ["a"], "the record without the cluster label is stale");
    assert_eq!(b.get(0).labels().get("cluster"), Some("c"));
}

// === property tests ===

/// What the reference model of the series table remembers per key.
#[derive(Clone, Debug, PartialEq)]
struct ModelEntry {
    info: u32,
    seen: u32,
}

proptest! {
    /// The naive model of staleness over a run of scrapes (some failing, some with a series
    /// written two ways): a series gets a marker when it was on the last successful page and is
    /// not on this one (every series on a failed scrape's predecessor). Catches the steady-state
    /// shortcut skipping a pass it needed.
    #[test]
    fn stale_markers_match_the_set_model(
        pages in prop::collection::vec(
            (prop::collection::vec((0u8..6, any::<bool>()), 0..8), prop::bool::weighted(0.15)),
            1..14,
        ),
    ) {
        let mut l = lp(false, 0);
        let mut last: BTreeSet<u8> = Default::default();
        for (i, (series, fail)) in pages.iter().enumerate() {
            let ts = 1000 * (i as i64 + 1);
            // `m3` or `m3{}`: two spellings of one series.
            let mut body: String =
                series.iter().map(|(n, braces)| format!("m{n}{} 1\n", if *braces { "{}" } else { "" })).collect();
            if *fail {
                body.push_str("broken{\n");
            }
            let now: BTreeSet<u8> = if *fail { Default::default() } else { series.iter().map(|s| s.0).collect() };
            let (b, _) = scrape(&mut l, &body, parse::Format::PrometheusText, ts);
            let want: Vec<String> = last.difference(&now).map(|n| format!("m{n}")).collect();
            prop_assert_eq!(names(&b, true), want, "stale, scrape {}", i);
            let live: Vec<String> = now.iter().map(|n| format!("m{n}")).collect();
            prop_assert_eq!(names(&b, false), live, "samples, one per series, scrape {}", i);
            last = now;
        }
    }

    /// The write order of a line's labels against the naive rules (a stable sort by name, of a
    /// repeated name the last, no empty values), over names that share their first 8 bytes,
    /// repeat, or come sorted already (the shortcuts that skip the dedup walk).
    #[test]
    fn label_order_matches_the_naive_rules(
        labels in prop::collection::vec(
            (
                prop::sample::select(vec!["a", "b", "label_app_name", "label_app_instance", "label_apple", "label_ap", "zz"]),
                prop::sample::select(vec!["", "1", "x"]),
            ),
            0..20,
        ),
        sorted in any::<bool>(),
    ) {
        let mut labels = labels;
        if sorted {
            labels.sort_by(|a, b| a.0.cmp(b.0));
        }
        let page: super::record::PageLabels<'_> =
            labels.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
        let mut order = super::record::Order::new();
        super::record::order(&page, &mut order);
        let got: Vec<(&str, &str)> = order.as_slice().iter().map(|&i| labels[i as usize]).collect();
        let mut want: Vec<(&str, &str)> = Vec::new();
        let mut stable = labels.clone();
        stable.sort_by(|a, b| a.0.cmp(b.0));
        for (i, l) in stable.iter().enumerate() {
            if stable.get(i + 1).is_some_and(|n| n.0 == l.0) || l.1.is_empty() {
                continue;
            }
            want.push(*l);
        }
        prop_assert_eq!(got, want);
    }

    /// `SeriesTable` against its reference model, a hash map evicting what two scrapes did not
    /// use: the same hits, misses and evictions over pages that repeat, reorder, drop, add and
    /// duplicate series.
    #[test]
    fn series_table_matches_the_map_model(
        pages in prop::collection::vec(prop::collection::vec(0u64..24, 0..40), 1..16),
    ) {
        let mut table = SeriesTable::default();
        let mut model: HashMap<u64, ModelEntry> = HashMap::new();
        for (i, page) in pages.iter().enumerate() {
            let generation = i as u32 + 1;
            table.begin_scrape();
            for &k in page {
                let got = table.hit(k, generation).map(|(pos, before)| (table.entry_mut(pos).info, before));
                let want = model.get_mut(&k).map(|e| {
                    let before = e.seen;
                    e.seen = generation;
                    (e.info, before)
                });
                prop_assert_eq!(got, want, "page {} key {}", i, k);
                if got.is_none() {
                    let info = (k as u32) << 4 | generation;
                    table.insert(k, info, generation);
                    model.insert(k, ModelEntry { info, seen: generation });
                }
            }
            let before = model.len();
            model.retain(|_, e| generation.wrapping_sub(e.seen) <= 1);
            prop_assert_eq!(table.end_scrape(generation), before - model.len(), "evicted, page {}", i);
            prop_assert_eq!(table.len(), model.len(), "page {}", i);
        }
    }

    /// Records written from the page (sorted merge with the target and external labels and the
    /// series' relabeling diff) against the naive way: build the final label set as the verdict
    /// does, merge the external labels, encode.
    #[test]
    fn records_match_building_the_label_set(
        lines in prop::collection::vec(
            (
                prop::sample::select(vec!["m", "node_cpu", "Up", "a_b"]),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["a", "job", "zone", "cpu", "Z", "exported_job", "_x", "le"]),
                        prop::sample::select(vec!["1", "x", "", "q\\\"t", "b\\\\s", "n\\nl", "é"]),
                    ),
                    0..5,
                ),
            ),
            1..12,
        ),
        honor in any::<bool>(),
        rules in prop::sample::select(vec![
            "",
            "- {source_labels: [cpu], target_label: cpu_copy}\n",
            "- {regex: 'a|Z', action: labeldrop}\n",
            "- {source_labels: [__name__], regex: 'Up', action: drop}\n",
            "- {source_labels: [a], target_label: zone}\n- {regex: 'job', action: labeldrop}\n",
            "- {source_labels: [__name__], target_label: __name__, replacement: renamed_$1}\n",
        ]),
        external in prop::sample::select(vec![vec![], vec![("cluster", "c")], vec![("zone", "ext"), ("a", "ext"), ("AA", "e")]]),
    ) {
        let mut s = settings(honor, 0);
        s.metric_relabel = serde_saphyr::from_str::<Option<Vec<RelabelConfig>>>(rules).unwrap().unwrap_or_default();
        let s = Arc::new(s);
        let external = Arc::new(Labels::from_pairs(external));
        let mut l = Page::new(s.clone(), target_labels(), external.clone());
        // One line per distinct label-name set, so no line repeats a series.
        let mut body = String::new();
        let mut seen = BTreeSet::new();
        for (name, labels) in &lines {
            let mut names = BTreeSet::new();
            let labels: Vec<_> = labels.iter().filter(|(n, _)| names.insert(*n)).collect();
            let line = format!(
                "{name}{{{}}} 1\n",
                labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect::<Vec<_>>().join(",")
            );
            if seen.insert(line.clone()) {
                body.push_str(&line);
            }
        }
        // The naive outcome of each line.
        let mut want = Vec::new();
        let mut parser = parse::Parser::new(body.as_bytes(), parse::Format::PrometheusText);
        while let Ok(Some(parse::Entry::Sample(sample))) = parser.next_entry() {
            let exposed = super::verdict::exposed_labels(&sample);
            if let super::verdict::Built::Keep(fin) = super::verdict::build(exposed, &s, &target_labels()) {
                let mut r = Vec::new();
                super::record::naive_record(&fin, &external, &mut r);
                want.push(r);
            }
        }
        // Twice: the first scrape judges every series, the second uses the table.
        for ts in [1, 2] {
            let mut b = Batch::new();
            let r = l.process_page(body.as_bytes(), parse::Format::PrometheusText, ts, &mut b);
            prop_assert!(r.is_ok(), "{:?}", r.err().map(|e| e.0.to_string()));
            let got: Vec<Vec<u8>> = b.iter().map(|s| s.record.to_vec()).collect();
            // The naive list may hold series the page deduplicated (relabeling made two one).
            let mut want_dedup: Vec<Vec<u8>> = Vec::new();
            for w in &want {
                if !want_dedup.contains(w) {
                    want_dedup.push(w.clone());
                }
            }
            prop_assert_eq!(
                got.iter().map(|r| crate::batch::decode_labels(r).unwrap().to_string()).collect::<Vec<_>>(),
                want_dedup.iter().map(|r| crate::batch::decode_labels(r).unwrap().to_string()).collect::<Vec<_>>(),
                "scrape {}", ts
            );
            prop_assert_eq!(got, want_dedup, "bytes, scrape {}", ts);
        }
    }
}

mod protobuf_pages {
    //! Protobuf pages through the page processor: the series Prometheus' protobuf parser gives,
    //! and native histograms as remote write sends them.
    use super::*;
    use crate::encode::Encoder;
    use crate::parse::proto::model::page as pb_page;
    use crate::parse::proto::model::*;
    use prost::Message as _;

    fn ts(ms: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 })
    }

    fn families() -> Vec<MetricFamily> {
        let native = Histogram {
            sample_count: 7,
            sample_sum: 12.5,
            schema: 3,
            zero_threshold: 1e-3,
            zero_count: 1,
            positive_span: vec![BucketSpan { offset: 0, length: 2 }, BucketSpan { offset: 2, length: 1 }],
            positive_delta: vec![2, -1, 1], // 2, 1, 2
            negative_span: vec![BucketSpan { offset: -1, length: 1 }],
            negative_delta: vec![1],
            bucket: vec![
                Bucket { cumulative_count: 3, upper_bound: 1.0, ..Default::default() },
                Bucket { cumulative_count: 7, upper_bound: 10.0, ..Default::default() },
            ],
            exemplars: vec![Exemplar {
                label: vec![label("trace_id", "t1")],
                value: 1.1,
                timestamp: ts(1_500),
            }],
            start_timestamp: ts(900),
            ..Default::default()
        };
        vec![
            MetricFamily {
                name: "req_total".into(),
                help: "Requests.".into(),
                r#type: 0,
                metric: vec![Metric {
                    label: vec![label("code", "200")],
                    counter: Some(Counter {
                        value: 5.0,
                        exemplar: Some(Exemplar {
                            label: vec![label("trace_id", "x")],
                            value: 1.0,
                            timestamp: None,
                        }),
                        start_timestamp: ts(1_000),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetricFamily {
                name: "temp".into(),
                r#type: 1,
                unit: "celsius".into(),
                metric: vec![Metric {
                    gauge: Some(Gauge { value: -3.5 }),
                    timestamp_ms: 4_000,
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetricFamily {
                name: "rpc".into(),
                r#type: 2,
                metric: vec![Metric {
                    summary: Some(Summary {
                        sample_count: 4,
                        sample_sum: 2.0,
                        quantile: vec![
                            Quantile { quantile: 0.5, value: 0.4 },
                            Quantile { quantile: 0.99, value: 0.9 },
                        ],
                        start_timestamp: None,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetricFamily {
                name: "lat".into(),
                r#type: 4,
                metric: vec![Metric {
                    label: vec![label("path", "/")],
                    histogram: Some(native),
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetricFamily { name: "empty".into(), r#type: 1, ..Default::default() },
        ]
    }

    fn settings(native: bool, classic_too: bool, limit: u64) -> JobSettings {
        JobSettings {
            scrape_native_histograms: native,
            always_scrape_classic_histograms: classic_too,
            native_histogram_bucket_limit: limit,
            ..super::settings(false, 0)
        }
    }

    fn run(s: JobSettings, body: &[u8]) -> Result<Batch, String> {
        let mut l = Page::new(Arc::new(s), target_labels(), Arc::default());
        let mut b = Batch::new();
        l.process_page(body, parse::Format::PrometheusProto, 2_000, &mut b)
            .map_err(|(e, _)| e.to_string())?;
        Ok(b)
    }

    fn names(b: &Batch) -> Vec<String> {
        b.iter()
            .map(|s| {
                let l = s.labels();
                let extra: Vec<String> = l
                    .iter()
                    .filter(|x| matches!(&*x.name, "le" | "quantile"))
                    .map(|x| format!("{}={}", x.name, x.value))
                    .collect();
                format!(
                    "{}{}",
                    l.get("__name__").unwrap_or(""),
                    if extra.is_empty() { String::new() } else { format!("{{{}}}", extra.join(",")) }
                )
            })
            .collect()
    }

    #[test]
    fn series_as_prometheus_names_them() {
        let body = pb_page(&families());
        // Native on, classic kept too: the histogram first, then its classic series.
        let b = run(settings(true, true, 0), &body).unwrap();
        assert_eq!(
            names(&b),
            [
                "req_total",
                "temp",
                "rpc_count",
                "rpc_sum",
                "rpc{quantile=0.5}",
                "rpc{quantile=0.99}",
                "lat",
                "lat_count",
                "lat_sum",
                "lat_bucket{le=1.0}",
                "lat_bucket{le=10.0}",
                "lat_bucket{le=+Inf}",
            ]
        );
        assert_eq!(b.histograms.len(), 1);
        assert_eq!(b.histograms[0].0, 6, "the native histogram is the `lat` sample");
        // Native off: classic only.
        let b = run(settings(false, false, 0), &body).unwrap();
        assert_eq!(
            names(&b)[6..],
            ["lat_count", "lat_sum", "lat_bucket{le=1.0}", "lat_bucket{le=10.0}", "lat_bucket{le=+Inf}"]
        );
        assert!(b.histograms.is_empty());
        // Native on, classic not kept.
        let b = run(settings(true, false, 0), &body).unwrap();
        assert_eq!(names(&b).len(), 7);
    }

    #[test]
    fn values_timestamps_metadata_exemplars_and_starts() {
        let b = run(settings(true, false, 0), &pb_page(&families())).unwrap();
        let v: Vec<(f64, i64)> = b.iter().map(|s| (s.value, s.timestamp_ms)).collect();
        assert_eq!(v[0], (5.0, 2_000));
        assert_eq!(v[1], (-3.5, 4_000), "the metric's own timestamp");
        assert_eq!(v[2..6].iter().map(|x| x.0).collect::<Vec<_>>(), [4.0, 2.0, 0.4, 0.9]);
        let meta: Vec<_> =
            b.metadata_iter().map(|m| m.map(|m| (m.kind, m.help.clone(), m.unit.clone()))).collect();
        assert_eq!(meta[0], Some((parse::MetricType::Counter, "Requests.".into(), String::new())));
        assert_eq!(meta[1], Some((parse::MetricType::Gauge, String::new(), "celsius".into())));
        assert_eq!(meta[6].as_ref().map(|m| m.0), Some(parse::MetricType::Histogram));
        assert_eq!(b.exemplars.len(), 2);
        assert_eq!(
            (b.exemplars[0].0, b.exemplars[0].1.timestamp_ms),
            (0, 2_000),
            "no timestamp: the scrape's"
        );
        assert_eq!((b.exemplars[1].0, b.exemplars[1].1.timestamp_ms), (6, 1_500));
        assert_eq!(b.created, vec![(0, 1_000), (6, 900)]);
    }

    #[test]
    fn native_histogram_reaches_remote_write() {
        let b = run(settings(true, false, 0), &pb_page(&families())).unwrap();
        let mut enc = Encoder::new();
        enc.encode(&b).unwrap();
        let req = crate::prompb::WriteRequest::decode(enc.proto().as_slice()).unwrap();
        let ts = req.timeseries.iter().find(|t| !t.histograms.is_empty()).unwrap();
        assert!(ts.samples.is_empty(), "sent as a histogram, not a float");
        let h = &ts.histograms[0];
        assert_eq!((h.count_int, h.sum, h.schema, h.zero_count_int), (Some(7), 12.5, 3, Some(1)));
        assert_eq!(h.timestamp, 2_000);
        let spans: Vec<_> = h.positive_spans.iter().map(|s| (s.offset, s.length)).collect();
        assert_eq!(spans, [(0, 2), (2, 1)]);
        assert_eq!(h.positive_deltas, [2, -1, 1]);
        assert_eq!(h.negative_deltas, [1]);
        let mut v2 = crate::encode::v2::Encoder::new();
        v2.encode(&b).unwrap();
        let req = crate::prompb::v2::Request::decode(v2.proto()).unwrap();
        let ts = req.timeseries.iter().find(|t| !t.histograms.is_empty()).unwrap();
        assert_eq!(ts.histograms[0].start_timestamp, 900);
        assert_eq!(ts.histograms[0].positive_deltas, [2, -1, 1]);
        assert_eq!(ts.exemplars.len(), 1);
        // An endpoint without `send_native_histograms` leaves the histogram sample out.
        let mut b = b;
        let n = b.len();
        assert_eq!(b.drop_histogram_samples(), 1);
        assert_eq!(b.len(), n - 1);
        assert!(b.histograms.is_empty() && !names(&b).contains(&"lat".to_owned()));
        assert_eq!(b.exemplars.len(), 1, "the counter's exemplar stays with its sample");
        assert_eq!(b.exemplars[0].0, 0);
    }

    #[test]
    fn limits_and_invalid_histograms_fail_the_scrape() {
        let body = pb_page(&families());
        // 4 buckets (positive 0, 1, 4; negative -1), limit 3: schema 3 → 2 (0, 1, 2 | 0) → 1
        // (0, 1 | 0). Indexes 0 and 1 never merge, so a limit of 2 cannot be met.
        let b = run(settings(true, false, 3), &body).unwrap();
        let mut enc = Encoder::new();
        enc.encode(&b).unwrap();
        let req = crate::prompb::WriteRequest::decode(enc.proto().as_slice()).unwrap();
        let h = &req.timeseries.iter().find(|t| !t.histograms.is_empty()).unwrap().histograms[0];
        assert_eq!((h.schema, h.positive_deltas.len(), h.negative_deltas.len()), (1, 2, 1), "{h:?}");
        assert_eq!(run(settings(true, false, 2), &body).unwrap_err(), "histogram bucket limit exceeded");
        // Inconsistent spans.
        let mut f = families();
        f[3].metric[0].histogram.as_mut().unwrap().positive_delta.pop();
        assert_eq!(
            run(settings(true, false, 0), &pb_page(&f)).unwrap_err(),
            "histogram \"lat\": positive side: spans require 3 buckets, have 2"
        );
        // The count does not match the buckets.
        let mut f = families();
        f[3].metric[0].histogram.as_mut().unwrap().sample_count = 99;
        assert!(run(settings(true, false, 0), &pb_page(&f)).unwrap_err().contains("Count field is 99"));
        // Dropped by relabeling: not appended, so not validated (Prometheus).
        let mut s = settings(true, false, 0);
        s.metric_relabel =
            serde_saphyr::from_str("[{source_labels: [__name__], regex: lat, action: drop}]").unwrap();
        assert!(run(s, &pb_page(&f)).is_ok());
    }

    #[test]
    fn staleness_marks_vanished_histograms_with_a_float_stale_marker() {
        let mut l = Page::new(Arc::new(settings(true, false, 0)), target_labels(), Arc::default());
        let mut b = Batch::new();
        l.process_page(&pb_page(&families()), parse::Format::PrometheusProto, 1_000, &mut b).unwrap();
        let mut f = families();
        f.remove(3);
        let mut b = Batch::new();
        l.process_page(&pb_page(&f), parse::Format::PrometheusProto, 2_000, &mut b).unwrap();
        let stale: Vec<_> = b
            .iter()
            .filter(|s| is_stale_nan(s.value))
            .map(|s| s.labels().get("__name__").unwrap_or("").to_owned())
            .collect();
        assert_eq!(stale, ["lat"]);
        assert!(b.histograms.is_empty(), "a stale marker is a float sample");
    }

    #[test]
    fn utf8_names_and_odd_values_survive_the_text_lines() {
        let f = vec![MetricFamily {
            name: "my.metric".into(),
            help: "multi\nline \\ help".into(),
            r#type: 1,
            metric: vec![Metric {
                label: vec![label("läbel", "a \"quoted\"\nvalue\\"), label("ok", "")],
                gauge: Some(Gauge { value: 1e-300 }),
                ..Default::default()
            }],
            ..Default::default()
        }];
        let b = run(settings(false, false, 0), &pb_page(&f)).unwrap();
        let l = b.get(0).labels();
        assert_eq!(l.get("__name__"), Some("my.metric"));
        assert_eq!(l.get("läbel"), Some("a \"quoted\"\nvalue\\"));
        assert_eq!(b.get(0).value, 1e-300);
        let meta = b.metadata_iter().next().flatten().unwrap();
        assert_eq!(meta.help, "multi\nline \\ help");
    }
}
