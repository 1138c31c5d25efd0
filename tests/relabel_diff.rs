//! Differential test: the same file_sd targets and relabel configs given to the real Prometheus
//! and to trawl must produce the same `/api/v1/targets` (active: discovered labels, labels, scrape
//! pool, scrape URL; dropped: discovered labels), target by target.
//!
//! Debian's Prometheus 2.42 mutates `discoveredLabels` in place while relabeling (the API docs
//! say they are "the unmodified labels retrieved during service discovery before relabelling",
//! and Prometheus 3 shows them so), so discovered labels are not compared with 2.42's; instead
//! trawl's are checked against the pre-relabel sets built here from the same file_sd files.
//! Everything else is compared with Prometheus exactly: each active target's labels and scrape
//! URL per pool, and the number of dropped targets per pool.
//!
//! Combinations are random but seeded (`RELABEL_DIFF_SEED` overrides), several hundred of them,
//! covering every action, spread over a few config files with many jobs each so Prometheus starts
//! only a few times.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use support::{Prometheus, Trawl, eventually, http_get};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ADDRESSES: &[&str] = &[
    "127.0.0.1:9100",
    "127.0.0.2:8080",
    "localhost:1",
    "svc-a",
    "10.0.0.7:9102",
    "127.0.0.3",
    "[::1]:9100",
    "h.example:443",
];
const SOURCES: &[&str] =
    &["__address__", "env", "team", "region", "missing", "__meta_filepath", "job", "__scheme__"];
const VALUES: &[&str] = &["prod", "dev", "Prod-EU", "ünïcode", "a b", "x;y", "$1", "42", "", "team-a"];
const REGEXES: &[&str] = &[
    "(.*)",
    "(.+):(\\d+)",
    "([^:]+)(?::\\d+)?",
    "prod|dev",
    ".*a.*",
    "(P|p)rod-(.*)",
    "\\d+",
    "",
    "127\\.0\\.0\\.(\\d)(:.*)?",
    "(?i)PROD",
    "[a-z]+",
];
const TARGETS: &[&str] = &[
    "env",
    "new_label",
    "instance",
    "__param_module",
    "__metrics_path__",
    "${1}_t",
    "team",
    "__scheme__",
    "__address__",
];
const REPLACEMENTS: &[&str] =
    &["$1", "x-$1", "${1}:9999", "", "$2", "$$1", "lit", "/probe", "/a b", "https", "${2}${1}"];

fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One random relabel rule as YAML list item lines (indented for `relabel_configs`).
fn random_rule(r: &mut Rng, action_hint: usize) -> String {
    let actions = [
        "replace",
        "keep",
        "drop",
        "keepequal",
        "dropequal",
        "hashmod",
        "labelmap",
        "labeldrop",
        "labelkeep",
        "lowercase",
        "uppercase",
    ];
    let action = actions[action_hint % actions.len()];
    let mut s = String::new();
    let sources = |r: &mut Rng| {
        let n = 1 + r.below(2);
        let v: Vec<String> = (0..n).map(|_| r.pick(SOURCES).to_string()).collect();
        format!("[{}]", v.join(", "))
    };
    let _ = writeln!(s, "      - action: {action}");
    match action {
        "replace" => {
            let _ = writeln!(s, "        source_labels: {}", sources(r));
            let _ = writeln!(s, "        regex: {}", yaml_str(r.pick(REGEXES)));
            let _ = writeln!(s, "        target_label: {}", yaml_str(r.pick(TARGETS)));
            let _ = writeln!(s, "        replacement: {}", yaml_str(r.pick(REPLACEMENTS)));
            if r.below(3) == 0 {
                let _ = writeln!(s, "        separator: '-'");
            }
        }
        "keep" | "drop" => {
            let _ = writeln!(s, "        source_labels: {}", sources(r));
            let _ = writeln!(s, "        regex: {}", yaml_str(r.pick(REGEXES)));
        }
        "keepequal" | "dropequal" => {
            let _ = writeln!(s, "        source_labels: {}", sources(r));
            let _ = writeln!(s, "        target_label: {}", r.pick(&["env", "team", "region"]));
        }
        "hashmod" => {
            let _ = writeln!(s, "        source_labels: {}", sources(r));
            let _ = writeln!(s, "        modulus: {}", 1 + r.below(7));
            let _ = writeln!(s, "        target_label: {}", r.pick(&["shard", "__tmp_hash", "env"]));
        }
        "labelmap" => {
            let (re, rep) = r.pick(&[
                ("(e.*)", "m_$1"),
                ("__meta_(.*)", "$1"),
                ("(.*)n(.*)", "${1}_${2}"),
                ("team", "owner"),
            ]);
            let _ = writeln!(s, "        regex: {}", yaml_str(re));
            let _ = writeln!(s, "        replacement: {}", yaml_str(rep));
        }
        "labeldrop" => {
            let _ = writeln!(
                s,
                "        regex: {}",
                yaml_str(r.pick(&["env", "t.*", "__meta_.*", "region|team"]))
            );
        }
        "labelkeep" => {
            let _ = writeln!(
                s,
                "        regex: {}",
                yaml_str(r.pick(&[
                    "__.*|job|env",
                    "__.*",
                    "__address__|team|__scheme__|__metrics_path__|__scrape_.*"
                ]))
            );
        }
        _ => {
            let _ = writeln!(s, "        source_labels: {}", sources(r));
            let _ = writeln!(s, "        target_label: {}", r.pick(&["env", "lc", "team"]));
        }
    }
    s
}

struct Generated {
    config: String,
    combinations: usize,
    /// Per pool, the pre-relabel label set of every target (JSON), as the API should show it.
    discovered: BTreeMap<String, Vec<String>>,
}

/// Writes one config with `jobs` jobs (each a file_sd file of 1–3 groups and 1–3 rules) into `dir`.
fn generate(r: &mut Rng, dir: &std::path::Path, jobs: usize, action_offset: usize) -> Generated {
    let mut cfg = String::from("global:\n  scrape_interval: 1h\nscrape_configs:\n");
    let mut combinations = 0;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for j in 0..jobs {
        let params = r.below(4) == 0;
        let custom_path = r.below(5) == 0;
        let file = dir.join(format!("sd_{j}.json"));
        let mut groups = Vec::new();
        let mut used = Vec::new();
        for _ in 0..1 + r.below(3) {
            let mut targets = Vec::new();
            for _ in 0..1 + r.below(3) {
                let a = r.pick(ADDRESSES).to_string();
                if !used.contains(&a) {
                    used.push(a.clone());
                    targets.push(a);
                }
            }
            let mut labels = serde_json::Map::new();
            for name in ["env", "team", "region"] {
                if r.below(2) == 0 {
                    labels.insert(name.into(), Value::String(r.pick(VALUES).to_string()));
                }
            }
            labels.retain(|_, v| v.as_str() != Some(""));
            combinations += targets.len();
            for t in &targets {
                let mut d = labels.clone();
                d.insert("__address__".into(), Value::String(t.clone()));
                d.insert("__meta_filepath".into(), Value::String(file.display().to_string()));
                d.insert("job".into(), Value::String(format!("job{j}")));
                d.insert("__scheme__".into(), Value::String("http".into()));
                let path = if custom_path { "/custom/path" } else { "/metrics" };
                d.insert("__metrics_path__".into(), Value::String(path.into()));
                d.insert("__scrape_interval__".into(), Value::String("1h".into()));
                d.insert("__scrape_timeout__".into(), Value::String("10s".into()));
                if params {
                    d.insert("__param_module".into(), Value::String("if_mib".into()));
                }
                expected.entry(format!("job{j}")).or_default().push(Value::Object(d).to_string());
            }
            groups.push(serde_json::json!({"targets": targets, "labels": labels}));
        }
        std::fs::write(&file, serde_json::to_string(&groups).unwrap()).unwrap();
        let _ = writeln!(cfg, "  - job_name: job{j}");
        if params {
            let _ = writeln!(cfg, "    params:\n      module: [if_mib, other]");
        }
        if custom_path {
            let _ = writeln!(cfg, "    metrics_path: /custom/path");
        }
        let _ = writeln!(cfg, "    file_sd_configs:\n      - files: ['{}']", file.display());
        let _ = writeln!(cfg, "    relabel_configs:");
        for k in 0..1 + r.below(3) as usize {
            cfg.push_str(&random_rule(r, action_offset + j + k * 5));
        }
    }
    Generated { config: cfg, combinations, discovered: expected }
}

/// Per pool: sorted active (labels, url) rows and the number of dropped targets.
type Normalized = BTreeMap<String, (Vec<String>, usize)>;

fn normalize(data: &Value, pools: usize) -> Normalized {
    let mut out: Normalized = (0..pools).map(|j| (format!("job{j}"), Default::default())).collect();
    for t in data["activeTargets"].as_array().cloned().unwrap_or_default() {
        let pool = t["scrapePool"].as_str().unwrap_or("").to_owned();
        let row = format!("labels={} url={}", t["labels"], t["scrapeUrl"]);
        out.entry(pool).or_default().0.push(row);
    }
    for t in data["droppedTargets"].as_array().cloned().unwrap_or_default() {
        // 2.42's copy may have lost `__meta_filepath` to a rule; then `job` (no rule rewrites it)
        // names the pool.
        let d = &t["discoveredLabels"];
        let path = d["__meta_filepath"].as_str().unwrap_or("");
        let pool = path
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_prefix("sd_"))
            .and_then(|f| f.strip_suffix(".json"))
            .map(|n| format!("job{n}"))
            .or_else(|| d["job"].as_str().map(str::to_owned))
            .unwrap_or_default();
        out.entry(pool).or_default().1 += 1;
    }
    for v in out.values_mut() {
        v.0.sort();
    }
    out
}

/// trawl's discovered labels of every target (active and dropped), per pool, sorted.
fn discovered(data: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let all = data["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(data["droppedTargets"].as_array().cloned().unwrap_or_default());
    for t in all {
        let d = &t["discoveredLabels"];
        out.entry(d["job"].as_str().unwrap_or("").to_owned()).or_default().push(d.to_string());
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

async fn targets(url: &str) -> Option<Value> {
    let (status, body) = http_get(&format!("{url}/api/v1/targets?state=any")).await?;
    if status != 200 {
        return None;
    }
    serde_json::from_str::<Value>(&body).ok().map(|v| v["data"].clone())
}

fn count(v: &Value) -> usize {
    v["activeTargets"].as_array().map_or(0, Vec::len) + v["droppedTargets"].as_array().map_or(0, Vec::len)
}

/// Waits until the target count has been the same for two polls a second apart.
async fn settled(url: &str) -> Option<Value> {
    let mut last = None::<usize>;
    let mut stable = 0;
    eventually(Duration::from_secs(40), async || {
        let v = targets(url).await?;
        let n = count(&v);
        if n > 0 && last == Some(n) {
            stable += 1;
        } else {
            stable = 0;
        }
        last = Some(n);
        tokio::time::sleep(Duration::from_millis(800)).await;
        (stable >= 2).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabeling_matches_prometheus() {
    if support::require_binary("prometheus").is_none() {
        return;
    }
    let seed: u64 =
        std::env::var("RELABEL_DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x7472_6177_6c21);
    let mut rng = Rng(seed);
    const RUNS: usize = 4;
    const JOBS: usize = 60;
    let mut total = 0;
    let mut compared_targets = 0;
    for run in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&mut rng, dir.path(), JOBS, run * 3);
        total += g.combinations;
        let prom = Prometheus::start_with_config(&g.config).await.expect("prometheus starts");
        let mut trawl = Trawl::start(&g.config).await;
        let want = settled(&prom.url()).await.expect("prometheus lists its targets");
        let got = settled(&trawl.url()).await.expect("trawl lists its targets");
        let (want_n, got_n) = (normalize(&want, JOBS), normalize(&got, JOBS));
        let mut diffs = String::new();
        for (pool, w) in &want_n {
            let t = got_n.get(pool).cloned().unwrap_or_default();
            if *w != t {
                let _ = writeln!(
                    diffs,
                    "pool {pool}:\n  prometheus active {:#?}\n  trawl active {:#?}\n  prometheus dropped {}, trawl dropped {}",
                    w.0, t.0, w.1, t.1
                );
            }
        }
        for (pool, sets) in discovered(&got) {
            let want = g.discovered.get(&pool).cloned().unwrap_or_default();
            for d in sets {
                if !want.contains(&d) {
                    let _ = writeln!(
                        diffs,
                        "pool {pool}: trawl shows discovered labels {d}, not a pre-relabel set of this pool"
                    );
                }
            }
        }
        assert!(
            diffs.is_empty(),
            "seed {seed} run {run}: trawl differs from Prometheus\n{diffs}\nconfig:\n{}",
            g.config
        );
        compared_targets += count(&want);
        assert_eq!(trawl.interrupt(), Some(0));
    }
    eprintln!(
        "relabel differential: {total} target/config combinations, {compared_targets} targets listed by both, all equal"
    );
    assert!(total >= 200, "at least 200 combinations");
}
