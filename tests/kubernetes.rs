//! Kubernetes discovery end to end: trawl runs the seed's DaemonSet config verbatim (with
//! `KUBE_NODE_NAME=node-a` and a kubeconfig pointing at a fake API server that speaks real
//! list/watch JSON over HTTP), scrapes exactly the annotated pods of its own node, and the samples
//! land in a real Prometheus. Pods are then added, changed (port annotation) and deleted; the API
//! server restarts mid-watch and compacts its history (410 Gone → re-list).

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Kind};
use serde_json::json;
use support::{Prometheus, TEXT, TestTarget, eventually, free_port};

const WAIT: Duration = Duration::from_secs(40);

/// The seed's config, verbatim, under a global block that scrapes every second.
const SEED: &str = r#"
scrape_configs:
  - job_name: otel-daemon-scraping
    scheme: http
    kubernetes_sd_configs:
      - role: pod
        selectors:
          - role: pod
            field: 'spec.nodeName=${env:KUBE_NODE_NAME}'
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        regex: true
        action: keep
      - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
        action: replace
        target_label: __address__
        regex: ([^:]+)(?::\d+)?;(\d+)
        replacement: $1:$2
"#;

fn pod(name: &str, node: &str, scrape: Option<&str>, port: u16) -> serde_json::Value {
    let mut annotations = serde_json::Map::new();
    if let Some(s) = scrape {
        annotations.insert("prometheus.io/scrape".into(), json!(s));
        annotations.insert("prometheus.io/port".into(), json!(port.to_string()));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// Instances with `up == 1` for the job right now.
async fn up_instances(prom: &Prometheus) -> BTreeSet<String> {
    prom.query("up{job=\"otel-daemon-scraping\"} == 1")
        .await
        .into_iter()
        .filter_map(|(l, _)| l.get("instance").cloned())
        .collect()
}

async fn wait_for(prom: &Prometheus, want: &BTreeSet<String>) -> Result<(), BTreeSet<String>> {
    let got = eventually(WAIT, async || {
        let now = up_instances(prom).await;
        (now == *want).then_some(())
    })
    .await;
    match got {
        Some(()) => Ok(()),
        None => Err(up_instances(prom).await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_config_scrapes_only_annotated_pods_of_its_node() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let api = FakeApiServer::start().await;
    // One scrape target per pod, each on its own port.
    let mut targets = Vec::new();
    for i in 0..6 {
        let t = TestTarget::start().await;
        t.route("/metrics", move |_| (200, TEXT, format!("pod_metric{{i=\"{i}\"}} 1\n").into_bytes()));
        targets.push(t);
    }
    let port = |i: usize| targets[i].addr.port();
    api.apply(pod("a1", "node-a", Some("true"), port(0)));
    api.apply(pod("a2", "node-a", None, port(1)));
    api.apply(pod("a3", "node-a", Some("true"), port(2)));
    api.apply(pod("b1", "node-b", Some("true"), port(3)));
    api.apply(pod("a-off", "node-a", Some("false"), port(4)));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    std::fs::write(dir.path().join("trawl.yml"), format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 200ms\n{SEED}",
        prom.write_url()
    ))
    .unwrap();
    let web = free_port();
    let mut trawl = support::Proc {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .arg("--config.file=trawl.yml")
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .arg("--log.level=debug")
            .env("KUBE_NODE_NAME", "node-a")
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(dir.path())
            .stdout(std::fs::File::create(dir.path().join("trawl.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("trawl.err")).unwrap())
            .spawn()
            .unwrap(),
        name: "trawl".into(),
        log: dir.path().join("trawl.err"),
    };
    let inst = |i: usize| format!("127.0.0.1:{}", port(i));
    let mut want: BTreeSet<String> = [inst(0), inst(2)].into();
    if let Err(got) = wait_for(&prom, &want).await {
        panic!("want {want:?}, got {got:?}\n{}", trawl.log());
    }
    let startup_requests = api.requests();

    // The scraped series carry the target labels and nothing of the pod's meta labels.
    let series = prom.series("pod_metric").await;
    assert!(series.iter().all(|s| s.get("job").map(String::as_str) == Some("otel-daemon-scraping")));
    assert!(series.iter().all(|s| s.keys().all(|k| !k.starts_with("__meta"))));

    // A changed port annotation moves the target; the old instance goes stale.
    api.apply(pod("a3", "node-a", Some("true"), port(5)));
    want = [inst(0), inst(5)].into();
    if let Err(got) = wait_for(&prom, &want).await {
        panic!("after the port change want {want:?}, got {got:?}\n{}", trawl.log());
    }
    // A deleted pod stops being scraped and its series go stale.
    api.delete(Kind::Pod, "default", "a1");
    want = [inst(5)].into();
    if let Err(got) = wait_for(&prom, &want).await {
        panic!("after the delete want {want:?}, got {got:?}\n{}", trawl.log());
    }
    // A new annotated pod on this node appears; one on another node does not.
    api.apply(pod("a4", "node-a", Some("true"), port(1)));
    api.apply(pod("b2", "node-b", Some("true"), port(4)));
    want = [inst(1), inst(5)].into();
    if let Err(got) = wait_for(&prom, &want).await {
        panic!("after the add want {want:?}, got {got:?}\n{}", trawl.log());
    }

    // The API server restarts mid-watch; while it is down the pods change and it compacts its
    // history, so the watch resumes from an expired resourceVersion, gets 410 Gone, and trawl
    // re-lists. (Changing the pods before compacting makes the expiry certain: compacting alone
    // leaves trawl's resourceVersion current whenever a bookmark had already carried it there.)
    api.stop().await;
    api.delete(Kind::Pod, "default", "a4");
    api.apply(pod("a1", "node-a", Some("true"), port(0)));
    api.compact();
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.start_again().await;
    want = [inst(0), inst(5)].into();
    if let Err(got) = wait_for(&prom, &want).await {
        panic!("after the restart want {want:?}, got {got:?}\n{}", trawl.log());
    }

    // Every pod request carried the node's field selector.
    let reqs = api.requests();
    let pod_reqs: Vec<_> = reqs.iter().filter(|r| r.resource() == "pods").collect();
    assert!(!pod_reqs.is_empty());
    for r in &pod_reqs {
        assert_eq!(r.param("fieldSelector"), Some("spec.nodeName=node-a"), "unfiltered request {r:?}");
    }
    let lists_total = pod_reqs.iter().filter(|r| !r.is_watch()).count();
    assert!(lists_total >= 2, "the expired resourceVersion made trawl re-list: {pod_reqs:#?}");
    let lists = startup_requests.iter().filter(|r| !r.is_watch()).count();
    let watches = startup_requests.iter().filter(|r| r.is_watch()).count();
    eprintln!(
        "API cost at start: {} requests ({lists} list, {watches} watch); after restart and 410: {} requests in all",
        startup_requests.len(),
        reqs.len()
    );
    assert_eq!(trawl.signal_and_wait("INT", Duration::from_secs(30)), Some(0));
}

/// The OpenTelemetry Collector Helm values the seed ran, `examples/otel-collector-values.yaml`,
/// read as they are (collector dialect: `$$1:$$2`, `${env:…}` in the selector, the endpoint and
/// the external labels): trawl scrapes the annotated pods of its node and the samples land in a
/// real Prometheus with the exporter's external labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_collector_helm_values_run_unchanged() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let api = FakeApiServer::start().await;
    let mut targets = Vec::new();
    for i in 0..3 {
        let t = TestTarget::start().await;
        t.route("/metrics", move |_| (200, TEXT, format!("pod_metric{{i=\"{i}\"}} 1\n").into_bytes()));
        targets.push(t);
    }
    let port = |i: usize| targets[i].addr.port();
    api.apply(pod("a1", "node-a", Some("true"), port(0)));
    api.apply(pod("a2", "node-a", None, port(1)));
    api.apply(pod("b1", "node-b", Some("true"), port(2)));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let values = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/otel-collector-values.yaml");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["check", "config"])
        .arg(&values)
        .env("KUBE_NODE_NAME", "node-a")
        .env("REMOTE_WRITE_ENDPOINT", prom.write_url())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && said.contains("dialect: OpenTelemetry Collector, Helm chart values"),
        "{said}"
    );

    let web = free_port();
    let mut trawl = support::Proc {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .arg(format!("--config.file={}", values.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .env("KUBE_NODE_NAME", "node-a")
            .env("REMOTE_WRITE_ENDPOINT", prom.write_url())
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::fs::File::create(dir.path().join("trawl.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("trawl.err")).unwrap())
            .spawn()
            .unwrap(),
        name: "trawl".into(),
        log: dir.path().join("trawl.err"),
    };
    // 15 s scrape interval in the values: the first scrape comes within one interval.
    let want: BTreeSet<String> = [format!("127.0.0.1:{}", port(0))].into();
    if let Err(got) = wait_for(&prom, &want).await {
        panic!("want {want:?}, got {got:?}\n{}", trawl.log());
    }
    let series = prom.series("pod_metric").await;
    assert_eq!(series.len(), 1, "only the annotated pod of node-a: {series:?}");
    let s = &series[0];
    assert_eq!(s.get("job").map(String::as_str), Some("otel-daemon-scraping"));
    assert_eq!(s.get("node").map(String::as_str), Some("node-a"), "the exporter's external label");
    // The collector's log level came from service.telemetry.logs.level (info): no debug lines.
    assert!(!trawl.log().contains("level=debug"), "{}", trawl.log());
    assert_eq!(trawl.signal_and_wait("TERM", Duration::from_secs(30)), Some(0));
}
