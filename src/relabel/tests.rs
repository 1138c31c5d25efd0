//! Table-driven cases for every action and edge case, one line of reason each. Expected values
//! come from Prometheus' `model/relabel/relabel_test.go` where a case is named after it.

use super::*;

fn rule(yaml: &str) -> RelabelConfig {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// (rules as YAML list, input, expected output or None for dropped, why)
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static [(&'static str, &'static str)]>,
    &'static str,
);

const CASES: &[Case] = &[
    (
        "- source_labels: [a]\n  regex: f(.*)\n  target_label: d\n  replacement: ch${1}-ch${1}",
        &[("a", "foo")],
        Some(&[("a", "foo"), ("d", "choo-choo")]),
        "replace with a braced group",
    ),
    (
        "- source_labels: [a, b]\n  regex: f(.*);(.*)r\n  target_label: a\n  replacement: b${1}${2}m",
        &[("a", "foo"), ("b", "bar")],
        Some(&[("a", "boobam"), ("b", "bar")]),
        "two sources joined with ;",
    ),
    (
        "- source_labels: [a]\n  regex: o.*\n  target_label: d",
        &[("a", "foo")],
        Some(&[("a", "foo")]),
        "the regex is anchored: no partial match",
    ),
    ("- source_labels: [a]\n  regex: f.*\n  action: drop", &[("a", "foo")], None, "drop on match"),
    ("- source_labels: [a]\n  regex: b.*\n  action: keep", &[("a", "foo")], None, "keep drops a non-match"),
    (
        "- source_labels: [a]\n  regex: f.*\n  action: KEEP",
        &[("a", "foo")],
        Some(&[("a", "foo")]),
        "action names are case-insensitive",
    ),
    (
        "- source_labels: [missing]\n  regex: (.*)\n  target_label: x\n  replacement: ''",
        &[("a", "foo")],
        Some(&[("a", "foo")]),
        "empty replacement deletes (absent here)",
    ),
    (
        "- source_labels: [a]\n  target_label: b\n  replacement: ''",
        &[("a", "foo"), ("b", "x")],
        Some(&[("a", "foo")]),
        "an empty result deletes the target",
    ),
    (
        "- source_labels: [missing]\n  target_label: b",
        &[("b", "x")],
        Some(&[]),
        "a missing source reads as empty; $1 of empty deletes b",
    ),
    (
        "- source_labels: [a]\n  regex: (f)(o)o\n  target_label: b\n  replacement: $1x",
        &[("a", "foo")],
        Some(&[("a", "foo")]),
        "$1x is the group named 1x: empty, so nothing is set",
    ),
    (
        "- source_labels: [a]\n  regex: (f)(o)o\n  target_label: b\n  replacement: $$1",
        &[("a", "foo")],
        Some(&[("a", "foo"), ("b", "$1")]),
        "$$ is a literal dollar",
    ),
    (
        "- source_labels: [a]\n  regex: (?P<first>f)oo\n  target_label: b\n  replacement: ${first}!",
        &[("a", "foo")],
        Some(&[("a", "foo"), ("b", "f!")]),
        "named groups",
    ),
    (
        "- source_labels: [a]\n  regex: (.*)\n  target_label: ${1}_copy",
        &[("a", "foo")],
        Some(&[("a", "foo"), ("foo_copy", "foo")]),
        "target_label is expanded too",
    ),
    (
        "- source_labels: [a]\n  regex: (.*)\n  target_label: ${1}",
        &[("a", "1bad")],
        Some(&[("a", "1bad")]),
        "an invalid expanded target name is skipped",
    ),
    (
        "- source_labels: [a]\n  regex: a.b\n  action: keep",
        &[("a", "a\nb")],
        Some(&[("a", "a\nb")]),
        "dot matches newline (Prometheus 3 (?s:))",
    ),
    (
        "- source_labels: [a]\n  regex: \\d+\n  action: keep",
        &[("a", "١٢")],
        None,
        "\\d is ASCII as in Go, not Unicode digits",
    ),
    ("- source_labels: [a]\n  regex: \\w+\n  action: keep", &[("a", "é")], None, "\\w is ASCII as in Go"),
    (
        "- source_labels: [a]\n  regex: \\Qa.b\\E\n  action: keep",
        &[("a", "axb")],
        None,
        "\\Q…\\E quotes the dot",
    ),
    (
        "- source_labels: [a]\n  regex: \\Qa.b\\E\n  action: keep",
        &[("a", "a.b")],
        Some(&[("a", "a.b")]),
        "\\Q…\\E matches the literal",
    ),
    (
        "- source_labels: [a]\n  modulus: 1000\n  target_label: h\n  action: hashmod",
        &[("a", "baz")],
        Some(&[("a", "baz"), ("h", "976")]),
        "hashmod vector from relabel_test.go",
    ),
    (
        "- source_labels: [a]\n  modulus: 1000\n  target_label: h\n  action: hashmod",
        &[("a", "foo\nbar")],
        Some(&[("a", "foo\nbar"), ("h", "734")]),
        "hashmod vector with a newline",
    ),
    (
        "- source_labels: [a]\n  modulus: 1000\n  target_label: h\n  action: hashmod",
        &[("a", "foo")],
        Some(&[("a", "foo"), ("h", "696")]),
        "hashmod of foo",
    ),
    (
        "- source_labels: [missing]\n  modulus: 1000\n  target_label: h\n  action: hashmod",
        &[("a", "x")],
        Some(&[("a", "x"), ("h", "958")]),
        "hashmod of the empty string",
    ),
    (
        "- source_labels: [a]\n  modulus: 3\n  target_label: h\n  action: hashmod",
        &[("a", "10.0.0.1:9100")],
        Some(&[("a", "10.0.0.1:9100"), ("h", "2")]),
        "hashmod of an address",
    ),
    (
        "- source_labels: [a, b]\n  modulus: 10\n  target_label: h\n  action: hashmod",
        &[("a", "a"), ("b", "b")],
        Some(&[("a", "a"), ("b", "b"), ("h", "4")]),
        "hashmod of joined values",
    ),
    (
        "- regex: __meta_(.+)\n  action: labelmap",
        &[("__meta_x", "1"), ("y", "2")],
        Some(&[("__meta_x", "1"), ("x", "1"), ("y", "2")]),
        "labelmap copies, keeping the original",
    ),
    (
        "- regex: (.+)\n  replacement: ${1}_x\n  action: labelmap",
        &[("a", "1")],
        Some(&[("a", "1"), ("a_x", "1")]),
        "labelmap works on a snapshot: a_x is not mapped again",
    ),
    (
        "- regex: b.*\n  action: labeldrop",
        &[("a", "1"), ("bb", "2")],
        Some(&[("a", "1")]),
        "labeldrop by name",
    ),
    (
        "- regex: b.*\n  action: labelkeep",
        &[("a", "1"), ("bb", "2")],
        Some(&[("bb", "2")]),
        "labelkeep by name",
    ),
    (
        "- source_labels: [a]\n  target_label: l\n  action: lowercase",
        &[("a", "FoÖ")],
        Some(&[("a", "FoÖ"), ("l", "foö")]),
        "lowercase is Unicode",
    ),
    (
        "- source_labels: [a]\n  target_label: u\n  action: uppercase",
        &[("a", "foö")],
        Some(&[("a", "foö"), ("u", "FOÖ")]),
        "uppercase is Unicode",
    ),
    (
        "- source_labels: [a]\n  target_label: b\n  action: keepequal",
        &[("a", "1"), ("b", "1")],
        Some(&[("a", "1"), ("b", "1")]),
        "keepequal keeps equal values",
    ),
    (
        "- source_labels: [a]\n  target_label: b\n  action: keepequal",
        &[("a", "1"), ("b", "2")],
        None,
        "keepequal drops different values",
    ),
    (
        "- source_labels: [a]\n  target_label: b\n  action: dropequal",
        &[("a", "1"), ("b", "1")],
        None,
        "dropequal drops equal values",
    ),
    (
        "- source_labels: [a]\n  target_label: b\n  action: dropequal",
        &[("a", "1")],
        Some(&[("a", "1")]),
        "dropequal: a missing target reads as empty",
    ),
    (
        "- source_labels: [a]\n  regex: x\n  action: drop\n- source_labels: [a]\n  target_label: never\n  replacement: set",
        &[("a", "x")],
        None,
        "the first drop ends processing",
    ),
    (
        "- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]\n  regex: true\n  action: keep",
        &[("__meta_kubernetes_pod_annotation_prometheus_io_scrape", "true")],
        Some(&[("__meta_kubernetes_pod_annotation_prometheus_io_scrape", "true")]),
        "an unquoted YAML boolean regex (the DaemonSet config)",
    ),
    (
        "- source_labels: [__address__, port]\n  regex: ([^:]+)(?::\\d+)?;(\\d+)\n  target_label: __address__\n  replacement: $1:$2",
        &[("__address__", "10.0.0.1:8080"), ("port", "9102")],
        Some(&[("__address__", "10.0.0.1:9102"), ("port", "9102")]),
        "the DaemonSet port rewrite",
    ),
];

#[test]
fn actions_table() {
    for (yaml, input, want, why) in CASES {
        let rules: Vec<RelabelConfig> = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{why}: {e}"));
        let mut l = ls(input);
        let kept = process(&rules, &mut l);
        match want {
            None => assert!(!kept, "{why}: expected drop, got {l}"),
            Some(w) => {
                assert!(kept, "{why}: dropped");
                assert_eq!(l, ls(w), "{why}");
            }
        }
    }
}

/// The debugger's step-by-step replay agrees with [`process`] after every rule of every case:
/// the labels after rule `i` are what `process` makes of the first `i + 1` rules.
#[test]
fn steps_agree_with_process() {
    for (yaml, input, _, why) in CASES {
        let rules: Vec<RelabelConfig> = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{why}: {e}"));
        let input = ls(input);
        let got = steps(&rules, &input);
        assert_eq!(got.len(), rules.len(), "{why}: one step per rule");
        for (i, step) in got.iter().enumerate() {
            let mut l = input.clone();
            let kept = process(&rules[..=i], &mut l);
            assert_eq!(step, &kept.then_some(l), "{why}: after rule {i}");
        }
    }
    assert!(steps(&[], &ls(&[("a", "1")])).is_empty(), "no rules, no steps");
}

#[test]
fn validation_errors_have_lines() {
    // (yaml, fragment, why)
    let cases: &[(&str, &str, &str)] = &[
        ("- regex: '('\n", "invalid regex", "a bad regex"),
        ("- action: explode\n", "unknown relabel action", "unknown action"),
        ("- action: hashmod\n  target_label: x\n", "non-zero modulus", "hashmod without modulus"),
        ("- action: replace\n  source_labels: [a]\n", "requires 'target_label'", "replace without target"),
        (
            "- action: lowercase\n  target_label: x\n  replacement: y\n",
            "can not be set",
            "lowercase with replacement",
        ),
        (
            "- action: labeldrop\n  regex: x\n  source_labels: [a]\n",
            "requires only 'regex'",
            "labeldrop with sources",
        ),
        (
            "- action: keepequal\n  source_labels: [a]\n  target_label: b\n  regex: x\n",
            "requires only 'source_labels'",
            "keepequal with regex",
        ),
        ("- action: replace\n  target_label: 'a-b'\n", "invalid 'target_label'", "bad target"),
        ("- source_labels: ['a-b']\n  action: keep\n", "not a valid label name", "bad source label"),
        ("- bogus: 1\n", "unknown field", "unknown field"),
    ];
    for (yaml, frag, why) in cases {
        let text = format!("x: 1\nrules:\n{}", yaml.lines().map(|l| format!("  {l}\n")).collect::<String>());
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Doc {
            x: u32,
            rules: Vec<RelabelConfig>,
        }
        let e = serde_saphyr::from_str::<Doc>(&text).expect_err(why);
        let loc = e.location().map(|l| l.line()).unwrap_or(0);
        assert!(e.to_string().contains(frag), "{why}: {e}");
        assert!(loc >= 3, "{why}: the error points into the rule (line {loc})");
    }
}

fn defaults<'a>(params: &'a [(String, Vec<String>)]) -> TargetDefaults<'a> {
    TargetDefaults {
        job: "job1",
        scheme: "http",
        metrics_path: "/metrics",
        params,
        scrape_interval: Duration::from_secs(15),
        scrape_timeout: Duration::from_secs(10),
    }
}

#[test]
fn target_lifecycle() {
    let params = vec![("module".to_string(), vec!["if mib".to_string()])];
    let d = defaults(&params);
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str(
        "- source_labels: [__meta_x]\n  target_label: x\n- target_label: __param_target\n  replacement: t1\n",
    )
    .unwrap();
    let disc = ls(&[("__address__", "h"), ("__meta_x", "v")]);
    let TargetOutcome::Keep { target, discovered } = populate_target(&disc, &d, &rules).unwrap() else {
        panic!("kept")
    };
    assert_eq!(discovered.get("job"), Some("job1"), "discovered labels carry the job defaults");
    assert_eq!(discovered.get("__scrape_interval__"), Some("15s"));
    assert_eq!(discovered.get("__param_module"), Some("if mib"));
    assert_eq!(
        target.labels,
        ls(&[("instance", "h:80"), ("job", "job1"), ("x", "v")]),
        "__ labels removed, port defaulted"
    );
    assert_eq!(target.url, "http://h:80/metrics?module=if+mib&target=t1");
    assert_eq!(target.interval, Duration::from_secs(15));
}

#[test]
fn target_errors_and_drops() {
    let d = defaults(&[]);
    assert!(populate_target(&ls(&[("a", "1")]), &d, &[]).is_err(), "no address");
    assert!(populate_target(&ls(&[("__address__", "h:1/x")]), &d, &[]).is_err(), "a path in the address");
    let drop = vec![rule("source_labels: [__address__]\nregex: h.*\naction: drop\n")];
    assert!(matches!(
        populate_target(&ls(&[("__address__", "h:1")]), &d, &drop).unwrap(),
        TargetOutcome::Drop { .. }
    ));
    let bad = ls(&[("__address__", "h:1"), ("__scrape_timeout__", "20s")]);
    assert!(populate_target(&bad, &d, &[]).is_err(), "timeout over interval");
    let inst = ls(&[("__address__", "h:1"), ("instance", "mine")]);
    let TargetOutcome::Keep { target, .. } = populate_target(&inst, &d, &[]).unwrap() else { panic!() };
    assert_eq!(target.labels.get("instance"), Some("mine"), "an explicit instance is kept");
    let rel = ls(&[("__address__", "h:1"), ("__metrics_path__", "probe")]);
    let TargetOutcome::Keep { target, .. } = populate_target(&rel, &d, &[]).unwrap() else { panic!() };
    assert_eq!(target.url, "http://h:1/probe", "a path without a leading slash gets one, as Go's URL.String");
}

#[test]
fn go_regex_translation() {
    // (go, rust, why)
    let cases: &[(&str, &str, &str)] = &[
        (r"\d+", r"[0-9]+", "ASCII digits"),
        (r"[\d.]", r"[0-9.]", "inside a class"),
        (r"\bx", r"(?-u:\b)x", "ASCII word boundary"),
        (r"\Q.*\E+", r"\.\*+", "quoted literal"),
        (r"[]a]", r"[\]a]", "a leading ] in a class is literal"),
        (r"[[:alpha:]]", r"[[:alpha:]]", "POSIX classes pass through"),
        (r"\.", r"\.", "other escapes pass through"),
    ];
    for (go, rust, why) in cases {
        assert_eq!(go_regex(go), *rust, "{why}");
    }
}
