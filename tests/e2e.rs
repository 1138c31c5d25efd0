//! End to end against real parts: a real Prometheus (Debian `prometheus`) as remote-write
//! receiver and oracle, a real `prometheus-node-exporter` as target, trawl as a subprocess, and
//! scripted targets and receivers over loopback HTTP for the failure cases.
//!
//! Each test scrapes every second so it runs in seconds; none asserts on timing beyond generous
//! "eventually" deadlines.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use support::{Gate, Prometheus, TEXT, TestTarget, Trawl, eventually, free_port, http_get, require_binary};

/// How long a test waits for something that should happen within a few scrapes.
const WAIT: Duration = Duration::from_secs(40);

fn remote_write_block(url: &str) -> String {
    format!(
        "remote_write:\n  - url: {url}\n    queue_config:\n      batch_send_deadline: 500ms\n      \
         min_backoff: 100ms\n      max_backoff: 1s\n"
    )
}

/// The series of an exposition page as label maps (`__name__` included, empty values dropped).
fn page_series(page: &[u8]) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut p = trawl::parse::Parser::new(page, trawl::parse::Format::PrometheusText);
    let mut out = Vec::new();
    while let Ok(Some(e)) = p.next_entry() {
        if let trawl::parse::Entry::Sample(s) = e {
            let mut m = BTreeMap::new();
            m.insert("__name__".to_string(), s.name().into_owned());
            for (k, v) in s.labels() {
                if !v.is_empty() {
                    m.insert(k.into_owned(), v.into_owned());
                }
            }
            out.push((m, s.value()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_page_lands_in_prometheus() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let Some(ne_bin) = require_binary("prometheus-node-exporter") else { return };
    let ne_dir = tempfile::tempdir().unwrap();
    let textfiles = ne_dir.path().join("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    std::fs::write(textfiles.join("e2e.prom"), "# TYPE e2e_gauge gauge\ne2e_gauge 42.5\n").unwrap();
    let ne_port = free_port();
    let _ne = support::Proc::start(
        "node-exporter",
        &ne_bin,
        &[
            format!("--web.listen-address=127.0.0.1:{ne_port}"),
            format!("--collector.textfile.directory={}", textfiles.display()),
        ],
        ne_dir.path(),
    );
    let ne_url = format!("http://127.0.0.1:{ne_port}/metrics");
    assert!(eventually(WAIT, async || http_get(&ne_url).await.filter(|r| r.0 == 200)).await.is_some());

    let instance = format!("127.0.0.1:{ne_port}");
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    cluster: e2e\n{}scrape_configs:\n  - job_name: node\n    \
         static_configs:\n      - targets: ['{instance}']\n",
        remote_write_block(&prom.write_url())
    ))
    .await;

    let up =
        eventually(WAIT, async || prom.query("up{job=\"node\"}").await.into_iter().find(|(_, v)| *v == 1.0))
            .await;
    let (up_labels, _) =
        up.unwrap_or_else(|| panic!("up{{job=\"node\"}} never reached 1:\n{}", trawl.proc.log()));
    assert_eq!(up_labels.get("instance"), Some(&instance));
    assert_eq!(up_labels.get("cluster").map(String::as_str), Some("e2e"), "external labels attached");

    // Every series of a page the exporter served is in Prometheus with job, instance and the
    // external label, once trawl has scraped a few more times.
    let (_, page) = http_get(&ne_url).await.expect("node exporter page");
    let expected = page_series(page.as_bytes());
    assert!(expected.len() > 100, "a real node exporter page has hundreds of series");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored: Vec<BTreeMap<String, String>> =
        prom.series("{job=\"node\"}").await.into_iter().map(|m| m.into_iter().collect()).collect();
    let mut missing = Vec::new();
    for (mut want, _) in expected.clone() {
        want.insert("job".into(), "node".into());
        want.insert("instance".into(), instance.clone());
        want.insert("cluster".into(), "e2e".into());
        if !stored.contains(&want) {
            missing.push(want);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} series missing in Prometheus, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(3)]
    );

    // A gauge's value equals what the exporter served: a constant one from the real page…
    let (mem_labels, mem) = expected
        .iter()
        .find(|(l, _)| l["__name__"] == "node_memory_MemTotal_bytes")
        .expect("node_memory_MemTotal_bytes on the page");
    assert_eq!(mem_labels.len(), 1);
    let got = prom.query("node_memory_MemTotal_bytes{job=\"node\"}").await;
    assert_eq!(got.first().map(|r| r.1), Some(*mem));
    // …and one we change between scrapes.
    let got = prom.query("e2e_gauge").await;
    assert_eq!(got.first().map(|r| r.1), Some(42.5));
    std::fs::write(textfiles.join("e2e.prom"), "# TYPE e2e_gauge gauge\ne2e_gauge -7.25\n").unwrap();
    let changed =
        eventually(WAIT, async || prom.query("e2e_gauge").await.into_iter().find(|(_, v)| *v == -7.25)).await;
    assert!(changed.is_some(), "the new gauge value arrives");

    for name in [
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        assert!(!prom.query(&format!("{name}{{job=\"node\"}}")).await.is_empty(), "{name} is reported");
    }
    assert_eq!(trawl.interrupt(), Some(0), "SIGINT exits 0:\n{}", trawl.proc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_targets_report_up_0_and_others_are_unaffected() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let target = TestTarget::start().await;
    target.route("/ok", |_| (200, TEXT, b"# TYPE fine gauge\nfine 1\n".to_vec()));
    target.route("/500", |_| (500, TEXT, b"internal error".to_vec()));
    target.route("/malformed", |_| {
        (200, TEXT, b"# this is not valid prometheus\n1234notvali}{ 444\n".to_vec())
    });
    target.route("/repeated", |_| (200, TEXT, b"test{a=\"1\",a=\"1\"} 1\n".to_vec()));
    target.route("/big", |_| (200, TEXT, format!("big{{x=\"{}\"}} 1\n", "y".repeat(4096)).into_bytes()));
    let host = target.host();
    let job = |name: &str, path: &str, extra: &str| {
        format!(
            "  - job_name: {name}\n    metrics_path: {path}\n{extra}    static_configs:\n      - targets: ['{host}']\n"
        )
    };
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\n{}scrape_configs:\n{}{}{}{}{}",
        remote_write_block(&prom.write_url()),
        job("ok", "/ok", ""),
        job("err500", "/500", ""),
        job("malformed", "/malformed", ""),
        job("repeated", "/repeated", ""),
        job("big", "/big", "    body_size_limit: 1KB\n"),
    ))
    .await;

    for (job, want) in [("ok", 1.0), ("err500", 0.0), ("malformed", 0.0), ("repeated", 0.0), ("big", 0.0)] {
        let got =
            eventually(WAIT, async || prom.query(&format!("up{{job=\"{job}\"}}")).await.first().map(|r| r.1))
                .await;
        assert_eq!(got, Some(want), "up for job {job}:\n{}", trawl.proc.log());
    }
    assert_eq!(prom.query("fine").await.len(), 1, "the healthy target's samples arrive");
    assert!(prom.query("test").await.is_empty(), "a page with a repeated label is discarded whole");
    assert!(prom.query("big").await.is_empty(), "an oversized page is discarded");
    assert!(trawl.proc.running(), "trawl keeps running");

    let (_, targets) = http_get(&format!("{}/api/v1/targets", trawl.url())).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let by_pool: HashMap<String, serde_json::Value> = v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["scrapePool"].as_str().unwrap().to_owned(), t.clone()))
        .collect();
    assert_eq!(by_pool["ok"]["health"], "up");
    assert_eq!(by_pool["err500"]["health"], "down");
    assert!(by_pool["err500"]["lastError"].as_str().unwrap().contains("500"), "{}", by_pool["err500"]);
    assert!(by_pool["big"]["lastError"].as_str().unwrap().contains("body size limit"), "{}", by_pool["big"]);
    assert_eq!(trawl.interrupt(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_outage_loses_nothing() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let target = TestTarget::start().await;
    // Each scrape sees the next number, so the numbers in Prometheus prove that every scrape
    // arrived exactly once.
    target.route("/counter", |n| {
        (200, TEXT, format!("# TYPE e2e_scrape_number gauge\ne2e_scrape_number {n}\n").into_bytes())
    });
    let started = std::time::Instant::now();
    let gate = Gate::start(Some(prom.write_url()), move |_| {
        if started.elapsed() < Duration::from_secs(6) { 503 } else { 200 }
    })
    .await;
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\n{}scrape_configs:\n  - job_name: outage\n    metrics_path: /counter\n    \
         static_configs:\n      - targets: ['{}']\n",
        remote_write_block(&gate.url()),
        target.host()
    ))
    .await;
    // Scrape through the outage and a while after it.
    let enough = eventually(WAIT, async || (target.hits("/counter") >= 10).then_some(())).await;
    assert!(enough.is_some());
    let metrics = trawl.metrics().await;
    let retried = support::metric_sum(&metrics, "trawl_remote_write_requests_total", "outcome=\"retried\"");
    assert!(retried >= 2.0, "the outage made trawl retry:\n{metrics}");
    assert_eq!(trawl.interrupt(), Some(0), "{}", trawl.proc.log());
    let scrapes = target.hits("/counter");
    let mut values: Vec<f64> = prom
        .range_values("e2e_scrape_number[10m]")
        .await
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|p| p.1)
        .collect();
    values.sort_by(f64::total_cmp);
    let want: Vec<f64> = (0..scrapes).map(|n| n as f64).collect();
    assert_eq!(values, want, "every scrape's sample arrives exactly once after the outage");
    assert!(gate.requests() > 1, "the outage was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_answering_400_causes_no_retry_storm() {
    let target = TestTarget::start().await;
    target.route("/m", |n| (200, TEXT, format!("now {n}\n").into_bytes()));
    let gate = Gate::start(None, |_| 400).await;
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\n{}scrape_configs:\n  - job_name: j\n    metrics_path: /m\n    \
         static_configs:\n      - targets: ['{}']\n",
        remote_write_block(&gate.url()),
        target.host()
    ))
    .await;
    let seen = eventually(WAIT, async || (target.hits("/m") >= 5).then_some(())).await;
    assert!(seen.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bodies = gate.bodies.lock().unwrap().clone();
    let distinct: std::collections::HashSet<&Vec<u8>> = bodies.iter().collect();
    assert!(!bodies.is_empty());
    assert_eq!(distinct.len(), bodies.len(), "a batch answered 400 is never sent again");
    assert!(
        bodies.len() as u64 <= target.hits("/m") + 2,
        "at most about one request per scrape: {} requests for {} scrapes",
        bodies.len(),
        target.hits("/m")
    );
    let metrics = trawl.metrics().await;
    let failed = support::metric_sum(&metrics, "trawl_remote_write_samples_failed_total", "");
    assert!(failed > 0.0, "dropped samples are counted:\n{metrics}");
    assert_eq!(trawl.interrupt(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_and_removed_targets_get_stale_markers() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let target = TestTarget::start().await;
    // `going_away` is on the first five pages only.
    target.route("/s", |n| {
        let body = if n < 5 { "stays 1\ngoing_away 1\n" } else { "stays 1\n" };
        (200, TEXT, body.as_bytes().to_vec())
    });
    target.route("/other", |_| (200, TEXT, b"other_target_metric 1\n".to_vec()));
    let sd_dir = tempfile::tempdir().unwrap();
    let sd_file = sd_dir.path().join("targets.json");
    std::fs::write(&sd_file, format!(r#"[{{"targets":["{}"]}}]"#, target.host())).unwrap();
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\n{}scrape_configs:\n  - job_name: s\n    metrics_path: /s\n    \
         static_configs:\n      - targets: ['{}']\n  - job_name: fsd\n    metrics_path: /other\n    \
         file_sd_configs:\n      - files: ['{}']\n",
        remote_write_block(&prom.write_url()),
        target.host(),
        sd_file.display()
    ))
    .await;
    let present = eventually(WAIT, async || (!prom.query("going_away").await.is_empty()).then_some(())).await;
    assert!(present.is_some(), "{}", trawl.proc.log());
    assert!(
        eventually(WAIT, async || (!prom.query("other_target_metric").await.is_empty()).then_some(()))
            .await
            .is_some()
    );

    // Without a stale marker Prometheus would return the last value for five minutes; with
    // one, the series is gone from an instant query right after it vanished.
    let gone = eventually(WAIT, async || prom.query("going_away").await.is_empty().then_some(())).await;
    assert!(gone.is_some(), "a series missing from the page is stale-marked");
    assert_eq!(prom.query("stays").await.len(), 1, "the other series is untouched");

    // A target that disappears from discovery: all its series, up included, go stale.
    std::fs::write(&sd_file, "[]").unwrap();
    let gone = eventually(WAIT, async || {
        (prom.query("other_target_metric").await.is_empty() && prom.query("up{job=\"fsd\"}").await.is_empty())
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "a removed target's series are stale-marked:\n{}", trawl.proc.log());
    assert_eq!(trawl.interrupt(), Some(0));
}
