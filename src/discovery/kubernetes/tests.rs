//! Table tests: objects in their API JSON shape → the exact label sets Prometheus builds
//! (discovery/kubernetes/pod.go `buildPod`/`podLabels`, node.go `buildNode`, service.go
//! `buildService`, kubernetes.go `addObjectMetaLabels`).

use super::*;

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(
        pairs.iter().map(|(k, v)| (format!("{}{}", if k.starts_with("__") { "" } else { META }, k), *v)),
    )
}

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "web-0", "namespace": "shop", "uid": "u-1",
            "labels": {"app.kubernetes.io/name": "web"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "o0"},
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "o1", "controller": true}
            ]
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [
                {"name": "app", "image": "shop:1", "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"containerPort": 9102, "protocol": "TCP"}
                ]},
                {"name": "sidecar", "image": "envoy:2"}
            ],
            "initContainers": [{"name": "init", "image": "busybox", "ports": [{"containerPort": 7000, "protocol": "UDP"}]}]
        },
        "status": {
            "phase": "Running", "podIP": "10.1.0.5", "hostIP": "192.168.0.10",
            "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "containerID": "containerd://abc", "image": "shop:1", "imageID": "", "ready": true, "restartCount": 0}]
        }
    }))
    .unwrap()
}

#[test]
fn pod_one_target_per_port_plus_portless_and_init_containers() {
    let group: &[(&str, &str)] = &[
        ("pod_name", "web-0"),
        ("namespace", "shop"),
        ("pod_uid", "u-1"),
        ("pod_ip", "10.1.0.5"),
        ("pod_ipv4", "10.1.0.5"),
        ("pod_ipv6", "fd00::5"),
        ("pod_ready", "true"),
        ("pod_phase", "Running"),
        ("pod_node_name", "node-a"),
        ("pod_host_ip", "192.168.0.10"),
        ("pod_label_app_kubernetes_io_name", "web"),
        ("pod_labelpresent_app_kubernetes_io_name", "true"),
        ("pod_annotation_prometheus_io_scrape", "true"),
        ("pod_annotationpresent_prometheus_io_scrape", "true"),
        ("pod_annotation_prometheus_io_port", "9102"),
        ("pod_annotationpresent_prometheus_io_port", "true"),
        ("pod_controller_kind", "StatefulSet"),
        ("pod_controller_name", "web"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut v = group.to_vec();
        v.extend_from_slice(extra);
        ls(&v)
    };
    let want = vec![
        // (Prometheus pod.go: one target per container port)
        with(&[
            ("__address__", "10.1.0.5:8080"),
            ("pod_container_name", "app"),
            ("pod_container_id", "containerd://abc"),
            ("pod_container_image", "shop:1"),
            ("pod_container_init", "false"),
            ("pod_container_port_number", "8080"),
            ("pod_container_port_name", "http"),
            ("pod_container_port_protocol", "TCP"),
        ]),
        // (an unnamed port: the empty port name is absent, as an empty label is)
        with(&[
            ("__address__", "10.1.0.5:9102"),
            ("pod_container_name", "app"),
            ("pod_container_id", "containerd://abc"),
            ("pod_container_image", "shop:1"),
            ("pod_container_init", "false"),
            ("pod_container_port_number", "9102"),
            ("pod_container_port_protocol", "TCP"),
        ]),
        // (a container without ports: one target at the bare pod IP; no status → no id)
        with(&[
            ("__address__", "10.1.0.5"),
            ("pod_container_name", "sidecar"),
            ("pod_container_image", "envoy:2"),
            ("pod_container_init", "false"),
        ]),
        // (init containers come after the regular ones, marked init=true)
        with(&[
            ("__address__", "10.1.0.5:7000"),
            ("pod_container_name", "init"),
            ("pod_container_image", "busybox"),
            ("pod_container_init", "true"),
            ("pod_container_port_number", "7000"),
            ("pod_container_port_protocol", "UDP"),
        ]),
    ];
    assert_eq!(pod_targets(&pod()), want);
}

#[test]
fn pod_without_ip_has_no_targets_and_ready_defaults_to_unknown() {
    let mut p = pod();
    p.status.as_mut().unwrap().pod_ip = None;
    assert!(pod_targets(&p).is_empty(), "pods without an IP are skipped (starting or evicted)");
    let mut p = pod();
    p.status.as_mut().unwrap().conditions = None;
    assert_eq!(pod_targets(&p)[0].get("__meta_kubernetes_pod_ready"), Some("unknown"));
}

#[test]
fn pod_ipv6_addresses_are_bracketed() {
    let mut p = pod();
    p.status.as_mut().unwrap().pod_ip = Some("fd00::5".into());
    let t = pod_targets(&p);
    assert_eq!(t[0].get("__address__"), Some("[fd00::5]:8080"));
    assert_eq!(t[2].get("__address__"), Some("[fd00::5]"), "no trailing colon without a port");
}

#[test]
fn node_targets_pick_the_address_by_priority() {
    let n: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node-a", "labels": {"kubernetes.io/os": "linux"}},
        "spec": {"providerID": "aws:///i-1"},
        "status": {
            "addresses": [
                {"type": "Hostname", "address": "node-a"},
                {"type": "ExternalIP", "address": "1.2.3.4"},
                {"type": "InternalIP", "address": "10.0.0.1"}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
        }
    }))
    .unwrap();
    let mut want = ls(&[
        ("__address__", "10.0.0.1:10250"),
        ("node_name", "node-a"),
        ("node_provider_id", "aws:///i-1"),
        ("node_label_kubernetes_io_os", "linux"),
        ("node_labelpresent_kubernetes_io_os", "true"),
        ("node_address_Hostname", "node-a"),
        ("node_address_ExternalIP", "1.2.3.4"),
        ("node_address_InternalIP", "10.0.0.1"),
    ]);
    // Prometheus node.go sets `instance` to the node name.
    want.set("instance", "node-a");
    assert_eq!(node_targets(&n), vec![want]);
}

#[test]
fn service_targets_per_port() {
    let s: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .unwrap();
    assert_eq!(
        service_targets(&s),
        vec![ls(&[
            ("__address__", "api.shop.svc:80"),
            ("namespace", "shop"),
            ("service_name", "api"),
            ("service_port_name", "http"),
            ("service_port_number", "80"),
            ("service_port_protocol", "TCP"),
            ("service_type", "ClusterIP"),
            ("service_cluster_ip", "10.96.0.10"),
        ])]
    );
    let e: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ext", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com", "ports": [{"port": 5432}]}
    }))
    .unwrap();
    assert_eq!(service_targets(&e)[0].get("__meta_kubernetes_service_external_name"), Some("db.example.com"));
    assert_eq!(service_targets(&e)[0].get("__meta_kubernetes_service_cluster_ip"), None);
}

#[test]
fn sanitizing_label_names() {
    assert_eq!(sanitize("prometheus.io/scrape"), "prometheus_io_scrape");
    assert_eq!(sanitize("app-name"), "app_name");
}

#[test]
fn config_validation() {
    let ok: KubernetesSdConfig =
        serde_saphyr::from_str("role: pod\nselectors:\n  - role: pod\n    field: spec.nodeName=node-a\n")
            .unwrap();
    assert_eq!(ok.field_selector.as_deref(), Some("spec.nodeName=node-a"));
    // (yaml, fragment, why)
    let bad: &[(&str, &str, &str)] = &[
        ("role: pods\n", "unknown Kubernetes SD role", "a typo in the role"),
        ("role: pod\napi_server: http://a\nkubeconfig_file: /k\n", "simultaneously", "two client sources"),
        (
            "role: pod\nselectors:\n  - role: node\n    field: x=y\n",
            "supports only pod",
            "selector role mismatch",
        ),
        ("role: pod\nbearer_token: t\n", "api_server", "auth without api_server"),
        ("role: endpoints\n", "not supported by trawl yet", "roles not implemented yet say so"),
        ("role: pod\nbogus: 1\n", "unknown field", "unknown field"),
    ];
    for (y, frag, why) in bad {
        let e = serde_saphyr::from_str::<KubernetesSdConfig>(y).unwrap_err().to_string();
        assert!(e.contains(frag), "{why}: {e}");
    }
}
