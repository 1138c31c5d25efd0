//! The deployment files, checked as a user's cluster would: `deploy/check.py` renders the Helm
//! chart (Helm's own Go code via helm-python-sdk), validates every object of the chart and of the
//! plain manifests against the Kubernetes schemas (kubernetes-validate, strict), proves the chart
//! renders the same objects as the plain manifests, and runs `trawl check config` on every
//! rendered trawl.yml, including the OpenTelemetry Collector values given to the chart as-is.
//!
//! Least privilege: for each Kubernetes SD role and option, the RBAC the chart renders for a
//! config is exactly what trawl then asks a (fake) API server for: every request allowed, every
//! grant used.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fake_apiserver::FakeApiServer;

#[test]
fn chart_and_manifests_render_and_validate() {
    if !support::require_python_modules(&["helm_python", "kubernetes_validate", "yaml"]) {
        return;
    }
    let out = std::process::Command::new("python3")
        .arg("deploy/check.py")
        .arg("--trawl")
        .arg(env!("CARGO_BIN_EXE_trawl"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deploy/check.py found problems (see above)");
    assert!(stdout.contains("all deployment checks passed"));
    assert!(stdout.contains("dialect: OpenTelemetry Collector"), "the collector values were checked");
}

/// What the chart grants for the config in `file` (`deploy/check.py --rbac-for`): cluster-wide
/// `group/resource`s, and per namespace.
fn chart_grants(file: &std::path::Path) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let out = std::process::Command::new("python3")
        .arg("deploy/check.py")
        .arg("--rbac-for")
        .arg(file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let set = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect()
    };
    let namespaced =
        v["namespaced"].as_object().into_iter().flatten().map(|(n, r)| (n.clone(), set(r))).collect();
    (set(&v["cluster"]), namespaced)
}

/// `group/resource` and namespace of an API request path (`/api/v1/namespaces/a/pods`,
/// `/apis/discovery.k8s.io/v1/endpointslices`, `/api/v1/namespaces`).
fn resource_of(path: &str) -> (String, Option<String>) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segs.first() {
        Some(&"apis") => (segs[1], &segs[3..]),
        _ => ("", &segs[2..]),
    };
    match rest {
        ["namespaces", ns, resource] => (format!("{group}/{resource}"), Some((*ns).to_owned())),
        [resource, ..] => (format!("{group}/{resource}"), None),
        [] => (format!("{group}/"), None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_rbac_is_exactly_what_discovery_requests() {
    if !support::require_python_modules(&["helm_python", "kubernetes_validate", "yaml"]) {
        return;
    }
    // (kubernetes_sd_configs entries, how many, why)
    let cases: &[(&str, usize, &str)] = &[
        ("{role: pod, selectors: [{role: pod, field: spec.nodeName=node-a}]}", 1, "the DaemonSet's config"),
        ("{role: node}", 1, "nodes"),
        ("{role: service}", 1, "services"),
        ("{role: endpoints}", 1, "endpoints, with their services and pods"),
        ("{role: endpointslice, attach_metadata: {node: true}}", 1, "endpointslices, with node metadata"),
        ("{role: pod, attach_metadata: {namespace: true}}", 1, "namespace metadata"),
        ("{role: endpoints, namespaces: {names: [shop, web]}}", 1, "limited to two namespaces"),
        (
            "{role: service, namespaces: {names: [shop]}, attach_metadata: {namespace: true}}",
            1,
            "a namespace's services, and that namespace's metadata",
        ),
        ("{role: pod}, {role: service, namespaces: {names: [shop]}}", 2, "two entries, one cluster-wide"),
    ];
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path());
    for (entries, want_synced, why) in cases {
        let config = format!(
            "global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: k\n    kubernetes_sd_configs: [{entries}]\n"
        );
        let file = dir.path().join("trawl.yml");
        std::fs::write(&file, &config).unwrap();
        let (cluster, namespaced) = chart_grants(&file);

        server.clear_requests();
        let log = dir.path().join("trawl.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", support::free_port()))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let synced = support::eventually(Duration::from_secs(30), async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.matches("Kubernetes discovery synced.").count() == *want_synced).then_some(())
        })
        .await;
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            synced.is_some(),
            "{why}: not synced:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );

        let mut asked_cluster = BTreeSet::new();
        let mut asked_namespaced: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in server.requests() {
            match resource_of(&r.path) {
                (res, None) => asked_cluster.insert(res),
                (res, Some(ns)) => asked_namespaced.entry(ns).or_default().insert(res),
            };
        }
        assert_eq!(asked_cluster, cluster, "{why}: cluster-wide requests vs the chart's ClusterRole");
        assert_eq!(asked_namespaced, namespaced, "{why}: namespaced requests vs the chart's Roles");
    }
}
