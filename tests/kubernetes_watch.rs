//! Kubernetes discovery end to end: `spawn` against the fake API server
//! (`support/fake_apiserver.rs`) through a kubeconfig file, as a DaemonSet pod runs it
//! (`role: pod` with `spec.nodeName=node-a`), plus the other roles' watch wiring.
//!
//! What each test shows: only the node's pods are listed, watched and published; changes arrive
//! within about a second; compaction (410 Gone, as an event or as HTTP 410) and API server restarts
//! are survived; what one trawl pod costs the API server (requests at start, watches held).

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, GoneMode, Kind};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use trawl::discovery::Discovered;
use trawl::discovery::kubernetes::{KubernetesSdConfig, KubernetesSdError, spawn};
use trawl::labels::Labels;

/// The config of the issue, with the node substituted and a kubeconfig pointing at the fake.
const DAEMONSET: &str = "role: pod\nselectors:\n  - role: pod\n    field: 'spec.nodeName=node-a'\n";

/// How long a change may take to be published. The watch delivers it in milliseconds; the margin
/// is for a loaded 2-core CI machine.
const CHANGE_DEADLINE: Duration = Duration::from_secs(2);
/// How long recovery may take: kube-runtime backs off 0.8 s (±jitter) after the first error.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(8);

fn pod(ns: &str, name: &str, node: &str, ip: Option<&str>, port_annotation: &str) -> Value {
    let mut status = json!({"phase": "Running", "hostIP": "10.0.0.1",
                            "conditions": [{"type": "Ready", "status": "True"}]});
    if let Some(ip) = ip {
        status["podIP"] = ip.into();
    }
    json!({
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {"app": name},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": port_annotation},
            "managedFields": [{"manager": "kubelet", "operation": "Update"}],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "app:1",
                            "ports": [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]}],
        },
        "status": status,
    })
}

struct Sd {
    rx: watch::Receiver<Discovered>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Sd {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn config(server: &FakeApiServer, dir: &tempfile::TempDir, yaml: &str) -> KubernetesSdConfig {
    let kubeconfig = server.write_kubeconfig(dir.path());
    let yaml = format!("{yaml}kubeconfig_file: {}\n", kubeconfig.display());
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

async fn start(server: &FakeApiServer, yaml: &str) -> Sd {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(server, &dir, yaml);
    let cancel = CancellationToken::new();
    let rx = spawn(&cfg, cancel.clone()).await.expect("spawn");
    Sd { rx, cancel, _dir: dir }
}

/// Waits until the published targets satisfy `pred`; returns them and how long it took.
async fn wait_for(
    sd: &mut Sd,
    deadline: Duration,
    what: &str,
    pred: impl Fn(&[Labels]) -> bool,
) -> (Discovered, Duration) {
    let t0 = Instant::now();
    loop {
        {
            let current = sd.rx.borrow_and_update().clone();
            if pred(&current) {
                return (current, t0.elapsed());
            }
        }
        let left = deadline.saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, sd.rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{what}: discovery stopped"),
            Err(_) => panic!("{what}: not within {deadline:?}; last published: {:?}", sd.rx.borrow()),
        }
    }
}

/// Waits for the first publication (the initial list of every watched resource).
async fn synced(sd: &mut Sd) -> Discovered {
    tokio::time::timeout(RECOVERY_DEADLINE, sd.rx.changed()).await.expect("initial sync").expect("running");
    sd.rx.borrow_and_update().clone()
}

/// `(pod name, __address__)` of every target, sorted.
fn pods_and_addresses(targets: &[Labels]) -> Vec<(String, String)> {
    let mut v: Vec<_> = targets
        .iter()
        .map(|l| {
            let name = l.get("__meta_kubernetes_pod_name").unwrap_or_default().to_owned();
            (name, l.get("__address__").unwrap_or_default().to_owned())
        })
        .collect();
    v.sort();
    v
}

fn pa(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn wait_open_watches(server: &FakeApiServer, n: usize) {
    let t0 = Instant::now();
    while server.open_watches() < n {
        assert!(
            t0.elapsed() < RECOVERY_DEADLINE,
            "{n} watches never opened ({} open)",
            server.open_watches()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lists(server: &FakeApiServer) -> usize {
    server.requests().iter().filter(|r| !r.is_watch()).count()
}

#[tokio::test]
async fn daemonset_watches_only_its_nodes_pods() {
    let server = FakeApiServer::start().await;
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9100"));
    server.apply(pod("kube-system", "a2", "node-a", Some("10.1.0.2"), "9100"));
    server.apply(pod("default", "b1", "node-b", Some("10.2.0.1"), "9100"));
    // Scheduled on node-a but not started: no IP, so no target (pod.go: "PodIP can be empty").
    server.apply(pod("default", "a-pending", "node-a", None, "9100"));

    let mut sd = start(&server, DAEMONSET).await;
    let first = synced(&mut sd).await;
    assert_eq!(pods_and_addresses(&first), pa(&[("a1", "10.1.0.1:9100"), ("a2", "10.1.0.2:9100")]));
    let a1 = first.iter().find(|l| l.get("__meta_kubernetes_pod_name") == Some("a1")).unwrap();
    assert_eq!(a1.get("__meta_kubernetes_pod_node_name"), Some("node-a"));
    assert_eq!(a1.get("__meta_kubernetes_namespace"), Some("default"));
    assert_eq!(a1.get("__meta_kubernetes_pod_annotation_prometheus_io_scrape"), Some("true"));
    assert_eq!(a1.get("__meta_kubernetes_pod_annotationpresent_prometheus_io_port"), Some("true"));

    wait_open_watches(&server, 1).await;
    let requests = server.requests();
    for r in &requests {
        assert_eq!(r.path, "/api/v1/pods", "cluster-wide pod list/watch only: {r:?}");
        assert!(
            r.query.contains("fieldSelector=spec.nodeName%3Dnode-a"),
            "field selector on every call: {}",
            r.query
        );
        assert_eq!(r.param("fieldSelector"), Some("spec.nodeName=node-a"));
    }
    let (list, watches): (Vec<_>, Vec<_>) = requests.iter().partition(|r| !r.is_watch());
    assert_eq!((list.len(), watches.len()), (1, 1), "one LIST and one WATCH at start: {requests:#?}");
    let w = watches[0];
    assert_eq!(w.param("allowWatchBookmarks"), Some("true"));
    assert_eq!(w.param("timeoutSeconds"), Some("290"));
    assert_eq!(
        w.param("resourceVersion"),
        Some(server.resource_version().to_string().as_str()),
        "watch from the list's version"
    );
    assert_eq!(server.open_watches(), 1, "one watch held");
}

#[tokio::test]
async fn changes_are_published_within_a_second_or_two() {
    let server = FakeApiServer::start().await;
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9100"));
    server.apply(pod("default", "a2", "node-a", Some("10.1.0.2"), "9100"));
    let mut sd = start(&server, DAEMONSET).await;
    synced(&mut sd).await;
    let mut latencies = Vec::new();

    server.apply(pod("default", "a3", "node-a", Some("10.1.0.3"), "9100"));
    let (_, t) = wait_for(&mut sd, CHANGE_DEADLINE, "added pod", |d| {
        pods_and_addresses(d).iter().any(|(p, _)| p == "a3")
    })
    .await;
    latencies.push(("add", t));

    // The port annotation changes; relabeling would move the scrape to the new port.
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9200"));
    let (_, t) = wait_for(&mut sd, CHANGE_DEADLINE, "annotation change", |d| {
        d.iter().any(|l| {
            l.get("__meta_kubernetes_pod_name") == Some("a1")
                && l.get("__meta_kubernetes_pod_annotation_prometheus_io_port") == Some("9200")
        })
    })
    .await;
    latencies.push(("modify", t));

    assert!(server.delete(Kind::Pod, "default", "a2"));
    let (_, t) = wait_for(&mut sd, CHANGE_DEADLINE, "deleted pod", |d| {
        !pods_and_addresses(d).iter().any(|(p, _)| p == "a2")
    })
    .await;
    latencies.push(("delete", t));

    // A pod of another node never shows up; one rescheduled onto node-a does (the server turns the
    // update into ADDED for a field-selector watch).
    server.apply(pod("default", "b1", "node-b", Some("10.2.0.1"), "9100"));
    server.apply(pod("default", "moved", "node-b", Some("10.2.0.2"), "9100"));
    server.apply(pod("default", "moved", "node-a", Some("10.1.0.9"), "9100"));
    let (d, t) = wait_for(&mut sd, CHANGE_DEADLINE, "pod moved to node-a", |d| {
        pods_and_addresses(d).iter().any(|(p, _)| p == "moved")
    })
    .await;
    latencies.push(("moved in", t));
    assert_eq!(
        pods_and_addresses(&d),
        pa(&[("a1", "10.1.0.1:9100"), ("a3", "10.1.0.3:9100"), ("moved", "10.1.0.9:9100")]),
        "node-b's pod is not there"
    );
    server.apply(pod("default", "moved", "node-b", Some("10.2.0.2"), "9100"));
    let (_, t) = wait_for(&mut sd, CHANGE_DEADLINE, "pod moved away", |d| {
        !pods_and_addresses(d).iter().any(|(p, _)| p == "moved")
    })
    .await;
    latencies.push(("moved out", t));
    eprintln!("change latencies: {latencies:?}");
    assert_eq!(lists(&server), 1, "no re-list for ordinary changes");
}

/// History is compacted while the API server is down and objects change; on reconnect the watch
/// from the old resourceVersion is refused with 410 and the client must list again, which also
/// drops the pod deleted meanwhile.
async fn relist_after_compaction(mode: GoneMode) {
    let server = FakeApiServer::start().await;
    server.set_gone_mode(mode);
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9100"));
    server.apply(pod("default", "a2", "node-a", Some("10.1.0.2"), "9100"));
    let mut sd = start(&server, DAEMONSET).await;
    synced(&mut sd).await;
    wait_open_watches(&server, 1).await;
    let lists_before = lists(&server);

    server.stop().await;
    server.delete(Kind::Pod, "default", "a2");
    server.apply(pod("default", "a3", "node-a", Some("10.1.0.3"), "9100"));
    server.compact();
    server.start_again().await;
    let (d, t) = wait_for(&mut sd, RECOVERY_DEADLINE, "re-list after 410", |d| {
        pods_and_addresses(d) == pa(&[("a1", "10.1.0.1:9100"), ("a3", "10.1.0.3:9100")])
    })
    .await;
    eprintln!("{mode:?}: recovered in {t:?} with {} targets", d.len());
    assert!(lists(&server) > lists_before, "a new LIST was made");
    let gone_watch = server.requests().into_iter().filter(|r| r.is_watch()).any(|r| {
        r.param("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v < server.resource_version())
    });
    assert!(gone_watch, "the client first tried to resume from its old version");

    // The watch is healthy again: a change after recovery still arrives.
    server.apply(pod("default", "a4", "node-a", Some("10.1.0.4"), "9100"));
    wait_for(&mut sd, CHANGE_DEADLINE, "change after recovery", |d| {
        pods_and_addresses(d).iter().any(|(p, _)| p == "a4")
    })
    .await;
    for r in server.requests() {
        assert_eq!(
            r.param("fieldSelector"),
            Some("spec.nodeName=node-a"),
            "every call keeps the selector: {r:?}"
        );
    }
}

#[tokio::test]
async fn compaction_410_event_forces_relist() {
    relist_after_compaction(GoneMode::ErrorEvent).await;
}

#[tokio::test]
async fn compaction_http_410_forces_relist() {
    relist_after_compaction(GoneMode::Http410).await;
}

#[tokio::test]
async fn expired_open_watch_relists() {
    let server = FakeApiServer::start().await;
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9100"));
    let mut sd = start(&server, DAEMONSET).await;
    synced(&mut sd).await;
    wait_open_watches(&server, 1).await;
    server.compact();
    server.expire_watches();
    server.apply(pod("default", "a2", "node-a", Some("10.1.0.2"), "9100"));
    wait_for(&mut sd, RECOVERY_DEADLINE, "pod after expiry", |d| pods_and_addresses(d).len() == 2).await;
    assert_eq!(lists(&server), 2, "the 410 ERROR event led to exactly one re-list");
}

#[tokio::test]
async fn api_server_restart_resumes_the_watch() {
    let server = FakeApiServer::start().await;
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9100"));
    let mut sd = start(&server, DAEMONSET).await;
    synced(&mut sd).await;
    wait_open_watches(&server, 1).await;

    server.stop().await;
    assert_eq!(server.open_watches(), 0, "restart dropped the watch");
    server.apply(pod("default", "a2", "node-a", Some("10.1.0.2"), "9100"));
    server.start_again().await;
    let (_, t) =
        wait_for(&mut sd, RECOVERY_DEADLINE, "pod added while down", |d| pods_and_addresses(d).len() == 2)
            .await;
    eprintln!("restart: recovered in {t:?}");
    // History was kept, so the client resumed from its resourceVersion without listing again.
    assert_eq!(lists(&server), 1, "resumed, not re-listed");

    // A second restart while a change is in flight.
    server.restart(Duration::from_millis(300)).await;
    server.delete(Kind::Pod, "default", "a1");
    wait_for(&mut sd, RECOVERY_DEADLINE, "pod deleted after second restart", |d| {
        pods_and_addresses(d).len() == 1
    })
    .await;
}

#[tokio::test]
async fn bookmarks_keep_the_resume_point_fresh() {
    let server = FakeApiServer::start().await;
    server.set_bookmark_interval(Duration::from_millis(100));
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9100"));
    let mut sd = start(&server, DAEMONSET).await;
    synced(&mut sd).await;
    wait_open_watches(&server, 1).await;
    // Changes on other nodes advance the version without events for this watch.
    for i in 0..3 {
        server.apply(pod("default", &format!("b{i}"), "node-b", Some("10.2.0.9"), "9100"));
    }
    let latest = server.resource_version();
    tokio::time::sleep(Duration::from_millis(500)).await; // a few bookmark intervals
    server.compact(); // history up to `latest` is gone
    server.restart(Duration::from_millis(100)).await;
    server.apply(pod("default", "a2", "node-a", Some("10.1.0.2"), "9100"));
    wait_for(&mut sd, RECOVERY_DEADLINE, "change after restart", |d| pods_and_addresses(d).len() == 2).await;
    let resumed: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .filter_map(|r| r.param("resourceVersion").map(str::to_owned))
        .collect();
    assert_eq!(
        resumed.last().map(String::as_str),
        Some(latest.to_string().as_str()),
        "resumed from the bookmark: {resumed:?}"
    );
    assert_eq!(lists(&server), 1, "thanks to the bookmark, compaction did not force a re-list");
}

#[tokio::test]
async fn attach_metadata_watches_only_the_pinned_node() {
    let server = FakeApiServer::start().await;
    for (n, zone) in [("node-a", "z1"), ("node-b", "z2")] {
        server.apply(
            json!({"kind": "Node", "metadata": {"name": n, "labels": {"topology.kubernetes.io/zone": zone}}}),
        );
    }
    server.apply(json!({"kind": "Namespace", "metadata": {"name": "default", "labels": {"team": "obs"}}}));
    server.apply(pod("default", "a1", "node-a", Some("10.1.0.1"), "9100"));
    let mut sd =
        start(&server, &format!("{DAEMONSET}attach_metadata: {{node: true, namespace: true}}\n")).await;
    let first = synced(&mut sd).await;
    let t = &first[0];
    assert_eq!(t.get("__meta_kubernetes_node_name"), Some("node-a"));
    assert_eq!(t.get("__meta_kubernetes_node_label_topology_kubernetes_io_zone"), Some("z1"));
    assert_eq!(t.get("__meta_kubernetes_namespace_label_team"), Some("obs"));

    wait_open_watches(&server, 3).await;
    let node_calls: Vec<_> = server.requests().into_iter().filter(|r| r.resource() == "nodes").collect();
    assert_eq!(node_calls.len(), 2, "one LIST and one WATCH of nodes");
    for r in &node_calls {
        assert_eq!(r.param("fieldSelector"), Some("metadata.name=node-a"), "only this node is watched");
    }
    // Node and namespace updates reach the targets.
    server.apply(json!({"kind": "Node", "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z9"}}}));
    wait_for(&mut sd, CHANGE_DEADLINE, "node label change", |d| {
        d.first().and_then(|l| l.get("__meta_kubernetes_node_label_topology_kubernetes_io_zone"))
            == Some("z9")
    })
    .await;
    server.apply(json!({"kind": "Namespace", "metadata": {"name": "default", "labels": {"team": "infra"}}}));
    wait_for(&mut sd, CHANGE_DEADLINE, "namespace label change", |d| {
        d.first().and_then(|l| l.get("__meta_kubernetes_namespace_label_team")) == Some("infra")
    })
    .await;
}

fn endpoints_fixture(server: &FakeApiServer) {
    server.apply(json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
                        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}));
    let mut p = pod("shop", "web-1", "node-a", Some("10.1.0.7"), "8080");
    p["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]);
    server.apply(p);
    server.apply(json!({"kind": "Endpoints", "metadata": {"name": "web", "namespace": "shop"},
        "subsets": [{"addresses": [{"ip": "10.1.0.7", "nodeName": "node-a",
                                     "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}}],
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}));
    server.apply(json!({"kind": "EndpointSlice", "metadata": {"name": "web-abc", "namespace": "shop",
                                                               "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.1.0.7"], "conditions": {"ready": true}, "nodeName": "node-a",
                       "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}}]}));
}

#[tokio::test]
async fn endpoints_and_endpointslice_join_services_and_pods() {
    for (role, own) in [
        ("endpoints", "__meta_kubernetes_endpoints_name"),
        ("endpointslice", "__meta_kubernetes_endpointslice_name"),
    ] {
        let server = FakeApiServer::start().await;
        endpoints_fixture(&server);
        let mut sd = start(&server, &format!("role: {role}\nnamespaces: {{names: [shop]}}\n")).await;
        let first = synced(&mut sd).await;
        assert_eq!(first.len(), 1, "{role}: {first:?}");
        let t = &first[0];
        assert_eq!(t.get("__address__"), Some("10.1.0.7:8080"), "{role}");
        assert!(t.get(own).is_some(), "{role}: own name label");
        assert_eq!(
            t.get("__meta_kubernetes_service_label_app"),
            Some("web"),
            "{role}: service labels joined"
        );
        assert_eq!(t.get("__meta_kubernetes_pod_name"), Some("web-1"), "{role}: pod labels joined");
        assert_eq!(
            t.get("__meta_kubernetes_pod_container_port_name"),
            Some("http"),
            "{role}: container port joined"
        );

        wait_open_watches(&server, 3).await;
        let mut resources: Vec<_> =
            server.requests().iter().map(|r| (r.path.clone(), r.is_watch())).collect();
        resources.sort();
        let want_main = if role == "endpoints" { "endpoints" } else { "endpointslices" };
        let prefix = |res: &str| {
            if res == "endpointslices" {
                "/apis/discovery.k8s.io/v1/namespaces/shop/"
            } else {
                "/api/v1/namespaces/shop/"
            }
        };
        let mut want: Vec<_> = [want_main, "pods", "services"]
            .iter()
            .flat_map(|r| [(format!("{}{r}", prefix(r)), false), (format!("{}{r}", prefix(r)), true)])
            .collect();
        want.sort();
        assert_eq!(
            resources, want,
            "{role}: a LIST and a WATCH of each resource, in the named namespace only"
        );

        // A change of the pod alone updates the target.
        let mut p = pod("shop", "web-1", "node-a", Some("10.1.0.7"), "8080");
        p["spec"]["containers"][0]["ports"] =
            json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]);
        p["metadata"]["labels"]["version"] = "v2".into();
        server.apply(p);
        wait_for(&mut sd, CHANGE_DEADLINE, "pod label change", |d| {
            d.first().and_then(|l| l.get("__meta_kubernetes_pod_label_version")) == Some("v2")
        })
        .await;
    }
}

#[tokio::test]
async fn namespaced_watches_stay_in_their_namespaces() {
    let server = FakeApiServer::start().await;
    for ns in ["a", "b", "c"] {
        server.apply(json!({"kind": "Service", "metadata": {"name": "s", "namespace": ns, "labels": {"tier": "web"}},
                            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}}));
    }
    server.apply(
        json!({"kind": "Service", "metadata": {"name": "db", "namespace": "a", "labels": {"tier": "db"}},
                        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.2", "ports": [{"port": 5432}]}}),
    );
    let mut sd = start(
        &server,
        "role: service\nnamespaces: {names: [a, b]}\nselectors: [{role: service, label: 'tier in (web)'}]\n",
    )
    .await;
    let first = synced(&mut sd).await;
    let addrs: Vec<_> = first.iter().filter_map(|l| l.get("__address__")).collect();
    assert_eq!(addrs, ["s.a.svc:80", "s.b.svc:80"], "only namespaces a and b, only tier=web");
    for r in server.requests() {
        assert!(
            r.path == "/api/v1/namespaces/a/services" || r.path == "/api/v1/namespaces/b/services",
            "{r:?}"
        );
        assert_eq!(r.param("labelSelector"), Some("tier in (web)"));
    }
}

#[tokio::test]
async fn cost_at_start_per_role() {
    // (config, expected LISTs at start = WATCHes held)
    let cases: &[(&str, usize)] = &[
        (DAEMONSET, 1),
        (
            "role: pod\nselectors: [{role: pod, field: 'spec.nodeName=node-a'}]\nattach_metadata: {node: true}\n",
            2,
        ),
        (
            "role: pod\nselectors: [{role: pod, field: 'spec.nodeName=node-a'}]\nattach_metadata: {node: true, namespace: true}\n",
            3,
        ),
        ("role: node\n", 1),
        ("role: service\n", 1),
        ("role: endpoints\n", 3),
        ("role: endpointslice\n", 3),
        ("role: endpointslice\nattach_metadata: {node: true, namespace: true}\n", 5),
        ("role: pod\nnamespaces: {names: [a, b]}\n", 2),
    ];
    let mut report = Vec::new();
    for (yaml, want) in cases {
        let server = FakeApiServer::start().await;
        let mut sd = start(&server, yaml).await;
        synced(&mut sd).await;
        wait_open_watches(&server, *want).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let requests = server.requests();
        let lists = requests.iter().filter(|r| !r.is_watch()).count();
        let watches = requests.iter().filter(|r| r.is_watch()).count();
        assert_eq!((lists, watches, server.open_watches()), (*want, *want, *want), "{yaml}");
        let mut paths: Vec<_> = requests.iter().filter(|r| !r.is_watch()).map(|r| r.path.clone()).collect();
        paths.sort();
        report
            .push(format!("{:<100} LIST {lists}, WATCH {watches} held: {paths:?}", yaml.replace('\n', " ")));
    }
    eprintln!("API cost at start:\n{}", report.join("\n"));
}

#[tokio::test]
async fn unreadable_kubeconfig_fails_at_start() {
    let cfg: KubernetesSdConfig =
        serde_saphyr::from_str("role: pod\nkubeconfig_file: /nonexistent/kubeconfig\n").unwrap();
    let err = spawn(&cfg, CancellationToken::new()).await.expect_err("no kubeconfig");
    assert!(matches!(err, KubernetesSdError::Kubeconfig { .. }), "{err}");
}

#[tokio::test]
async fn cancel_stops_every_watch() {
    let server = FakeApiServer::start().await;
    let sd = start(&server, "role: endpointslice\n").await;
    wait_open_watches(&server, 3).await;
    sd.cancel.cancel();
    let t0 = Instant::now();
    while server.open_watches() > 0 {
        assert!(t0.elapsed() < CHANGE_DEADLINE, "watches still open after cancel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === the fake server itself ===

/// Raw HTTP/1.1 GET; returns (status line, body) once the server ends the response.
async fn raw_get(server: &FakeApiServer, path_and_query: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let req = format!("GET {path_and_query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("response ended")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[tokio::test]
async fn fake_server_honours_selectors_timeout_and_gone() {
    let server = FakeApiServer::start().await;
    for (name, env, node) in [("p1", "prod", "n1"), ("p2", "dev", "n1"), ("p3", "prod", "n2")] {
        let mut p = pod("default", name, node, Some("10.0.0.1"), "1");
        p["metadata"]["labels"]["env"] = env.into();
        server.apply(p);
    }
    server.apply(pod("other", "p4", "n1", Some("10.0.0.2"), "1"));
    let names = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body.lines().find(|l| l.starts_with('{')).unwrap_or("{}"))
            .unwrap_or_default();
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let cases: &[(&str, &[&str])] = &[
        ("/api/v1/pods?labelSelector=env%3Dprod", &["p1", "p3"]),
        ("/api/v1/pods?labelSelector=env%21%3Dprod", &["p2", "p4"]),
        ("/api/v1/pods?labelSelector=env+in+%28dev%2Cqa%29", &["p2"]),
        ("/api/v1/pods?labelSelector=env+notin+%28dev%29", &["p1", "p3", "p4"]),
        ("/api/v1/pods?labelSelector=%21env", &["p4"]),
        ("/api/v1/pods?labelSelector=env", &["p1", "p2", "p3"]),
        ("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1%2Cmetadata.namespace%3Ddefault", &["p1", "p2"]),
        ("/api/v1/pods?fieldSelector=metadata.name%3Dp3", &["p3"]),
        ("/api/v1/namespaces/other/pods", &["p4"]),
    ];
    for (q, want) in cases {
        let (status, body) = raw_get(&server, q).await;
        assert!(status.contains("200"), "{q}: {status}");
        let mut got = names(&body);
        got.sort();
        assert_eq!(got, *want, "{q}");
    }
    // A list carries its kind and version; items carry neither.
    let (_, body) = raw_get(&server, "/api/v1/pods").await;
    let list: Value = serde_json::from_str(body.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["metadata"]["resourceVersion"], server.resource_version().to_string());
    assert!(list["items"][0].get("kind").is_none());

    // timeoutSeconds ends a watch; bookmarks are sent when asked for.
    server.set_bookmark_interval(Duration::from_millis(200));
    let rv = server.resource_version();
    let t0 = Instant::now();
    let (status, body) = raw_get(
        &server,
        &format!("/api/v1/pods?watch=1&resourceVersion={rv}&timeoutSeconds=1&allowWatchBookmarks=true"),
    )
    .await;
    assert!(status.contains("200"));
    assert!(
        // Ended by the timeout, not at once and not never (a loose upper bound: CI is noisy).
        t0.elapsed() >= Duration::from_millis(900) && t0.elapsed() < Duration::from_secs(30),
        "{:?}",
        t0.elapsed()
    );
    assert!(body.contains("\"type\":\"BOOKMARK\""), "{body}");

    // From a compacted version: an ERROR 410 event, or HTTP 410.
    server.compact();
    let (status, body) = raw_get(&server, &format!("/api/v1/pods?watch=1&resourceVersion={}", rv - 1)).await;
    assert!(
        status.contains("200") && body.contains("\"type\":\"ERROR\"") && body.contains("\"code\":410"),
        "{status} {body}"
    );
    server.set_gone_mode(GoneMode::Http410);
    let (status, _) = raw_get(&server, &format!("/api/v1/pods?watch=1&resourceVersion={}", rv - 1)).await;
    assert!(status.contains("410"), "{status}");

    // Unknown paths are 404.
    let (status, _) = raw_get(&server, "/api/v1/secrets").await;
    assert!(status.contains("404"), "{status}");
}

#[tokio::test]
async fn api_server_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-1\n").unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    // A clean token file is handed to kube, which re-reads it (rotation); one with a trailing
    // newline is trimmed as Prometheus does.
    let clean = dir.path().join("clean-token");
    std::fs::write(&clean, "tok-2").unwrap();
    let cases = [
        (format!("bearer_token_file: {}\n", clean.display()), "Bearer tok-2"),
        (format!("bearer_token_file: {}\n", token.display()), "Bearer tok-1"),
        (format!("authorization: {{credentials_file: {}}}\n", token.display()), "Bearer tok-1"),
        // base64("trawl:s3cret"); the file's trailing newline is not part of the password.
        (
            format!("basic_auth: {{username: trawl, password_file: {}}}\n", password.display()),
            "Basic dHJhd2w6czNjcmV0",
        ),
    ];
    for (auth, want) in cases {
        let server = FakeApiServer::start().await;
        let yaml = format!("role: node\napi_server: {}\n{auth}", server.url());
        let cfg: KubernetesSdConfig = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        let cancel = CancellationToken::new();
        let mut rx = spawn(&cfg, cancel.clone()).await.expect("spawn");
        let synced = tokio::time::timeout(RECOVERY_DEADLINE, rx.changed()).await;
        assert!(synced.is_ok(), "{auth}: not synced; requests {:?}", server.requests());
        let requests = server.requests();
        assert!(!requests.is_empty());
        for r in requests {
            assert_eq!(r.authorization.as_deref(), Some(want), "{auth}");
        }
        cancel.cancel();
    }
}

#[tokio::test]
async fn missing_files_fail_at_start() {
    let server = FakeApiServer::start().await;
    for extra in ["tls_config: {ca_file: /nonexistent/ca.crt}\n", "bearer_token_file: /nonexistent/token\n"] {
        let yaml = format!("role: pod\napi_server: {}\n{extra}", server.url());
        let cfg: KubernetesSdConfig = serde_saphyr::from_str(&yaml).unwrap();
        let err = spawn(&cfg, CancellationToken::new()).await.expect_err(extra);
        assert!(matches!(err, KubernetesSdError::File { .. }), "{extra}: {err}");
    }
    assert!(server.requests().is_empty(), "nothing was sent");
}
