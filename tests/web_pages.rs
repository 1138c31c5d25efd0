//! The `/targets` and `/service-discovery` pages in a real browser: headless Chromium (Debian's
//! `chromium`) loads them from a running trawl and the DOM it built shows each pool's targets
//! with their state, labels, last scrape, duration and error, discovered versus kept labels, and
//! the relabeling debugger's steps for a kept and for a dropped target.
//!
//! `TRAWL_SCREENSHOT=docs/relabel-debugger.png cargo test --test web_pages relabeling` also writes
//! the README's screenshot of the debugger (Chromium's `--screenshot`).

mod support;

use std::time::Duration;

use support::{TEXT, TestTarget, Trawl, eventually, http_get, require_binary};

/// Runs headless Chromium on `url` with `action` (`--dump-dom`, `--screenshot=…`), with the flags
/// this machine needs (no sandbox as root, no background networking on a closed network).
fn chromium(chromium: &std::path::Path, action: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(action)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Loads `url` in headless Chromium and returns the DOM after the page's load.
fn chromium_dump_dom(chromium_bin: &std::path::Path, url: &str) -> String {
    String::from_utf8_lossy(&chromium(chromium_bin, &["--dump-dom"], url).stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_and_service_discovery_pages_render_in_chromium() {
    let Some(chromium) = require_binary("chromium") else { return };
    let good = TestTarget::start().await;
    good.route("/metrics", |_| (200, TEXT, b"m 1\n".to_vec()));
    let bad = TestTarget::start().await;
    bad.route("/metrics", |_| (500, TEXT, b"boom".to_vec()));
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: web<pool>\n    static_configs:\n      \
         - targets: ['{}', '{}', 'dropped.invalid:1']\n        labels: {{team: a&b}}\n    relabel_configs:\n      \
         - {{source_labels: [__address__], regex: 'dropped.*', action: drop}}\n",
        good.host(),
        bad.host()
    );
    let mut trawl = Trawl::start(&config).await;
    // Both targets scraped at least once (health known), so the page has something to show.
    let scraped = eventually(Duration::from_secs(20), async || {
        let (_, body) = http_get(&format!("{}/api/v1/targets", trawl.url())).await?;
        (body.matches("\"health\":\"up\"").count() == 1 && body.matches("\"health\":\"down\"").count() == 1)
            .then_some(())
    })
    .await;
    assert!(scraped.is_some(), "{}", trawl.proc.log());

    let dom = chromium_dump_dom(&chromium, &format!("{}/targets", trawl.url()));
    for want in [
        "<h1>Targets</h1>",
        "web&lt;pool&gt; (1/2 up)", // the pool, escaped, with its counts
        &format!("http://{}/metrics", good.host()), // endpoints
        &format!("http://{}/metrics", bad.host()),
        "class=\"state up\">UP<", // states
        "class=\"state down\">DOWN<",
        "team=\"a&amp;b\"",                // labels, escaped
        "server returned HTTP status 500", // the error of the failing target
        "s ago</td>",                      // last scrape
    ] {
        assert!(dom.contains(want), "{want:?} not in the page Chromium rendered:\n{dom}");
    }
    assert_eq!(dom.matches("<tr class=\"target\"").count(), 2, "two targets, the dropped one not listed");

    let dom = chromium_dump_dom(&chromium, &format!("{}/targets?state=unhealthy", trawl.url()));
    assert_eq!(dom.matches("<tr class=\"target\"").count(), 1, "only the down target:\n{dom}");

    let dom = chromium_dump_dom(&chromium, &format!("{}/service-discovery", trawl.url()));
    assert!(dom.contains("(2 / 3 active targets)"), "{dom}");
    assert!(
        dom.contains("__address__=\"dropped.invalid:1\""),
        "the dropped target's discovered labels:\n{dom}"
    );
    assert_eq!(dom.matches("<td class=\"kept\">Dropped</td>").count(), 1, "{dom}");
    assert_eq!(trawl.interrupt(), Some(0));
}

/// The DaemonSet's pod rules (deploy/daemonset.yaml) plus the phase rule of Prometheus' example
/// Kubernetes config, over pods written as static targets with the labels Kubernetes SD gives
/// them, so the test needs no API server.
const PODS_CONFIG: &str = r#"global:
  scrape_interval: 1h
scrape_configs:
  - job_name: kubernetes-pods
    static_configs:
      - targets: ['10.42.0.17:80']
        labels:
          __meta_kubernetes_namespace: shop
          __meta_kubernetes_pod_name: web-7d4b9
          __meta_kubernetes_pod_phase: Running
          __meta_kubernetes_pod_annotation_prometheus_io_scrape: "true"
          __meta_kubernetes_pod_annotation_prometheus_io_port: "8080"
      - targets: ['10.42.0.23:80']
        labels:
          __meta_kubernetes_namespace: shop
          __meta_kubernetes_pod_name: backup-28641
          __meta_kubernetes_pod_phase: Succeeded
          __meta_kubernetes_pod_annotation_prometheus_io_scrape: "true"
          __meta_kubernetes_pod_annotation_prometheus_io_port: "9102"
      - targets: ['10.42.0.31:6379']
        labels:
          __meta_kubernetes_namespace: cache
          __meta_kubernetes_pod_name: redis-0
          __meta_kubernetes_pod_phase: Running
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        regex: "true"
        action: keep
      - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
        action: replace
        target_label: __address__
        regex: ([^:]+)(?::\d+)?;(\d+)
        replacement: $1:$2
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: Pending|Succeeded|Failed|Completed
        action: drop
"#;

/// The debugger's address for the pod named `pod`, read off the `/service-discovery` page.
fn debugger_href(sd_dom: &str, pod: &str) -> String {
    let row = sd_dom
        .split("<tr ")
        .find(|r| r.contains(&format!("__meta_kubernetes_pod_name=\"{pod}\"")))
        .unwrap_or_else(|| panic!("{pod} is listed:\n{sd_dom}"));
    let href = row.split("class=\"debug\" href=\"").nth(1).and_then(|r| r.split('"').next());
    href.unwrap_or_else(|| panic!("a debugger link in {row}")).replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabeling_debugger_shows_each_step_in_chromium() {
    let Some(chromium_bin) = require_binary("chromium") else { return };
    let mut trawl = Trawl::start(PODS_CONFIG).await;
    let listed = eventually(Duration::from_secs(20), async || {
        let (_, body) = http_get(&format!("{}/api/v1/targets", trawl.url())).await?;
        (body.matches("\"discoveredLabels\"").count() == 3).then_some(())
    })
    .await;
    assert!(listed.is_some(), "{}", trawl.proc.log());
    let sd = chromium_dump_dom(&chromium_bin, &format!("{}/service-discovery", trawl.url()));
    assert!(sd.contains("(1 / 3 active targets)"), "{sd}");

    // A pod without the annotation: dropped by the first rule, the rest not reached.
    let dom = chromium_dump_dom(&chromium_bin, &format!("{}{}", trawl.url(), debugger_href(&sd, "redis-0")));
    assert_eq!(dom.matches("<tr class=\"step ").count(), 5, "one row per rule:\n{dom}");
    assert!(dom.contains("<tr class=\"step drop\"><td>1</td>"), "{dom}");
    assert!(dom.contains("<b>Dropped by this rule.</b>"), "{dom}");
    assert_eq!(dom.matches("not reached").count(), 4, "{dom}");
    assert!(dom.contains("Dropped by rule 1 (<code>keep</code>)"), "{dom}");

    // A finished Job's pod: kept and rewritten by rules 1 to 4 (changes marked), dropped by 5.
    let backup = debugger_href(&sd, "backup-28641");
    let dom = chromium_dump_dom(&chromium_bin, &format!("{}{backup}", trawl.url()));
    assert_eq!(dom.matches("<tr class=\"step kept\">").count(), 4, "{dom}");
    assert!(
        dom.contains("<span class=\"label changed\">__address__=\"10.42.0.23:9102\"</span>"),
        "rule 2: {dom}"
    );
    assert!(dom.contains("<span class=\"label added\">namespace=\"shop\"</span>"), "rule 3: {dom}");
    assert!(dom.contains("<span class=\"label added\">pod=\"backup-28641\"</span>"), "rule 4: {dom}");
    assert!(dom.contains("<tr class=\"step drop\"><td>5</td>"), "{dom}");
    assert!(dom.contains("Dropped by rule 5 (<code>drop</code>)"), "{dom}");
    assert!(dom.contains("regex: Pending|Succeeded|Failed|Completed"), "the rule as written: {dom}");

    // The annotated running pod: kept, with where it is scraped and its labels.
    let dom =
        chromium_dump_dom(&chromium_bin, &format!("{}{}", trawl.url(), debugger_href(&sd, "web-7d4b9")));
    assert_eq!(dom.matches("<tr class=\"step kept\">").count(), 5, "{dom}");
    assert!(dom.contains("Scraped at <code class=\"url\">http://10.42.0.17:8080/metrics</code>"), "{dom}");
    assert!(dom.contains("instance=\"10.42.0.17:8080\""), "{dom}");

    // A target that is not discovered (any more): 404 with the reason.
    let (status, body) =
        http_get(&format!("{}/service-discovery?pool=kubernetes-pods&target=0", trawl.url())).await.unwrap();
    assert_eq!(status, 404, "{body}");

    if let Ok(path) = std::env::var("TRAWL_SCREENSHOT") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        chromium(
            &chromium_bin,
            &["--window-size=1100,800", "--hide-scrollbars", &format!("--screenshot={}", path.display())],
            &format!("{}{backup}", trawl.url()),
        );
        assert!(std::fs::metadata(&path).is_ok_and(|m| m.len() > 10_000), "screenshot written to {path:?}");
    }
    assert_eq!(trawl.interrupt(), Some(0));
}
