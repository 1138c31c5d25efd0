//! The exact `__meta_kubernetes_*` label sets of each role, as Prometheus produces them.
//!
//! Each case names the Prometheus file (v3.x, `discovery/kubernetes/`) whose rules or test
//! expectations it reproduces. Where Prometheus' tests list a label with an empty value (e.g.
//! `__meta_kubernetes_pod_phase: ""`), it is absent here: Prometheus drops empty labels when it
//! builds targets, and `Labels` never holds one. Prometheus keeps a target group's shared labels
//! apart from its targets'; each expected set here is their merge.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use trawl::discovery::kubernetes::{
    Objects, endpoints_targets, endpointslice_targets, node_targets, pod_targets, sanitize_label_name,
    service_targets,
};
use trawl::labels::Labels;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

fn set(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// `group` merged into each of `targets` (the target's labels win).
fn expand(group: &[(&str, &str)], targets: &[&[(&str, &str)]]) -> Vec<Labels> {
    targets
        .iter()
        .map(|t| {
            let mut l = set(group);
            for (k, v) in *t {
                l.set(*k, *v);
            }
            l
        })
        .collect()
}

/// Compares target lists; on a mismatch names the missing and unexpected labels per target.
fn check(case: &str, got: &[Labels], want: &[Labels]) {
    if got == want {
        return;
    }
    let mut msg = format!("{case}: {} targets, want {}\n", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let missing: Vec<_> = w.iter().filter(|l| g.get(&l.name) != Some(l.value.as_str())).collect();
        let extra: Vec<_> = g.iter().filter(|l| w.get(&l.name) != Some(l.value.as_str())).collect();
        if !missing.is_empty() || !extra.is_empty() {
            msg.push_str(&format!(
                "  target {i}: missing/different {missing:?}\n            unexpected {extra:?}\n"
            ));
        }
    }
    for (i, g) in got.iter().enumerate().skip(want.len()) {
        msg.push_str(&format!("  extra target {i}: {g}\n"));
    }
    panic!("{msg}");
}

fn status(name: &str, id: &str) -> Value {
    json!({"name": name, "containerID": id, "image": "i", "imageID": "", "ready": true, "restartCount": 0})
}

/// pod_test.go `makeMultiPortPods`.
fn multi_port_pod() -> Pod {
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "testpod", "namespace": "default", "uid": "abc123",
            "labels": {"test/label": "testvalue"},
            "annotations": {"test/annotation": "testannotationvalue"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "testcontrollerkind", "name": "testcontrollername",
                                 "uid": "c1", "controller": true}],
        },
        "spec": {"nodeName": "testnode", "containers": [
            {"name": "testcontainer0", "image": "testcontainer0:latest", "ports": [
                {"name": "testport0", "protocol": "TCP", "containerPort": 9000},
                {"name": "testport1", "protocol": "UDP", "containerPort": 9001}]},
            {"name": "testcontainer1", "image": "testcontainer1:latest"}]},
        "status": {"podIP": "1.2.3.4", "hostIP": "2.3.4.5", "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [status("testcontainer0", "docker://a1b2c3d4e5f6"),
                                         status("testcontainer1", "containerd://6f5e4d3c2b1a")]},
    }))
}

/// pod_test.go `makePods`: one container, one port.
fn simple_pod(ns: &str) -> Pod {
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "testpod", "namespace": ns, "uid": "abc123"},
        "spec": {"nodeName": "testnode", "containers": [
            {"name": "testcontainer", "image": "testcontainer:latest",
             "ports": [{"name": "testport", "protocol": "TCP", "containerPort": 9000}]}]},
        "status": {"podIP": "1.2.3.4", "hostIP": "2.3.4.5", "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [status("testcontainer", "docker://a1b2c3d4e5f6")]},
    }))
}

/// The group labels of `simple_pod` (pod_test.go `expectedPodTargetGroups`).
fn simple_pod_group(ns: &str) -> Vec<(&'static str, String)> {
    vec![
        ("__meta_kubernetes_pod_name", "testpod".into()),
        ("__meta_kubernetes_namespace", ns.into()),
        ("__meta_kubernetes_pod_node_name", "testnode".into()),
        ("__meta_kubernetes_pod_ip", "1.2.3.4".into()),
        ("__meta_kubernetes_pod_host_ip", "2.3.4.5".into()),
        ("__meta_kubernetes_pod_ready", "true".into()),
        ("__meta_kubernetes_pod_phase", "Running".into()),
        ("__meta_kubernetes_pod_uid", "abc123".into()),
    ]
}

const SIMPLE_POD_TARGET: &[(&str, &str)] = &[
    ("__address__", "1.2.3.4:9000"),
    ("__meta_kubernetes_pod_container_name", "testcontainer"),
    ("__meta_kubernetes_pod_container_image", "testcontainer:latest"),
    ("__meta_kubernetes_pod_container_port_name", "testport"),
    ("__meta_kubernetes_pod_container_port_number", "9000"),
    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
    ("__meta_kubernetes_pod_container_init", "false"),
    ("__meta_kubernetes_pod_container_id", "docker://a1b2c3d4e5f6"),
];

fn borrowed<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn pod_role() {
    // pod_test.go TestPodDiscoveryBeforeRun: two ports of one container, plus a port-less
    // container that becomes a target at the bare pod IP; controller from the owner reference;
    // label and annotation keys sanitized ("test/label" -> "test_label").
    check(
        "multi-port pod (pod_test.go TestPodDiscoveryBeforeRun)",
        &pod_targets(&multi_port_pod(), None, None),
        &expand(
            &[
                ("__meta_kubernetes_pod_name", "testpod"),
                ("__meta_kubernetes_namespace", "default"),
                ("__meta_kubernetes_pod_label_test_label", "testvalue"),
                ("__meta_kubernetes_pod_labelpresent_test_label", "true"),
                ("__meta_kubernetes_pod_annotation_test_annotation", "testannotationvalue"),
                ("__meta_kubernetes_pod_annotationpresent_test_annotation", "true"),
                ("__meta_kubernetes_pod_node_name", "testnode"),
                ("__meta_kubernetes_pod_ip", "1.2.3.4"),
                ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
                ("__meta_kubernetes_pod_ready", "true"),
                ("__meta_kubernetes_pod_phase", "Running"),
                ("__meta_kubernetes_pod_uid", "abc123"),
                ("__meta_kubernetes_pod_controller_kind", "testcontrollerkind"),
                ("__meta_kubernetes_pod_controller_name", "testcontrollername"),
            ],
            &[
                &[
                    ("__address__", "1.2.3.4:9000"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                    ("__meta_kubernetes_pod_container_image", "testcontainer0:latest"),
                    ("__meta_kubernetes_pod_container_port_name", "testport0"),
                    ("__meta_kubernetes_pod_container_port_number", "9000"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    ("__meta_kubernetes_pod_container_id", "docker://a1b2c3d4e5f6"),
                ],
                &[
                    ("__address__", "1.2.3.4:9001"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                    ("__meta_kubernetes_pod_container_image", "testcontainer0:latest"),
                    ("__meta_kubernetes_pod_container_port_name", "testport1"),
                    ("__meta_kubernetes_pod_container_port_number", "9001"),
                    ("__meta_kubernetes_pod_container_port_protocol", "UDP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    ("__meta_kubernetes_pod_container_id", "docker://a1b2c3d4e5f6"),
                ],
                &[
                    ("__address__", "1.2.3.4"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer1"),
                    ("__meta_kubernetes_pod_container_image", "testcontainer1:latest"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    ("__meta_kubernetes_pod_container_id", "containerd://6f5e4d3c2b1a"),
                ],
            ],
        ),
    );

    // pod_test.go TestPodDiscoveryInitContainer: the init container comes after the regular ones,
    // with container_init "true" and its ID from initContainerStatuses; a pending, not-ready pod.
    let mut init_pod = simple_pod("default");
    let extra: Pod = obj(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {},
        "spec": {"containers": [], "initContainers": [{"name": "initcontainer", "image": "initcontainer:latest"}]},
        "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
                   "initContainerStatuses": [status("initcontainer", "containerd://6f5e4d3c2b1a")]}}));
    let (spec, st) = (init_pod.spec.as_mut().unwrap(), init_pod.status.as_mut().unwrap());
    spec.init_containers = extra.spec.unwrap().init_containers;
    let extra_status = extra.status.unwrap();
    st.init_container_statuses = extra_status.init_container_statuses;
    st.phase = extra_status.phase;
    st.conditions = extra_status.conditions;
    let mut group = simple_pod_group("default");
    group.retain(|(k, _)| !k.ends_with("_phase") && !k.ends_with("_ready"));
    group.push(("__meta_kubernetes_pod_phase", "Pending".into()));
    group.push(("__meta_kubernetes_pod_ready", "false".into()));
    check(
        "init container (pod_test.go TestPodDiscoveryInitContainer)",
        &pod_targets(&init_pod, None, None),
        &expand(
            &borrowed(&group),
            &[
                SIMPLE_POD_TARGET,
                &[
                    ("__address__", "1.2.3.4"),
                    ("__meta_kubernetes_pod_container_name", "initcontainer"),
                    ("__meta_kubernetes_pod_container_image", "initcontainer:latest"),
                    ("__meta_kubernetes_pod_container_init", "true"),
                    ("__meta_kubernetes_pod_container_id", "containerd://6f5e4d3c2b1a"),
                ],
            ],
        ),
    );

    // pod_test.go TestPodDiscoveryUpdateEmptyPodIP: no pod IP, no targets (pod.go buildPod).
    let mut no_ip = simple_pod("default");
    no_ip.status.as_mut().unwrap().pod_ip = None;
    check(
        "pod without IP (pod_test.go TestPodDiscoveryUpdateEmptyPodIP)",
        &pod_targets(&no_ip, None, None),
        &[],
    );

    // pod_test.go TestPodDiscoveryWithNodeMetadata: attach_metadata.node adds the node's name and
    // labels (kubernetes.go addNodeLabels -> addObjectMetaLabels with role "node").
    let node: Node = obj(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "testnode", "labels": {"l1": "v1"}, "annotations": {"a/b": "c"}}}));
    let mut group = simple_pod_group("default");
    group.extend([
        ("__meta_kubernetes_node_name", "testnode".to_owned()),
        ("__meta_kubernetes_node_label_l1", "v1".into()),
        ("__meta_kubernetes_node_labelpresent_l1", "true".into()),
        ("__meta_kubernetes_node_annotation_a_b", "c".into()),
        ("__meta_kubernetes_node_annotationpresent_a_b", "true".into()),
    ]);
    check(
        "node metadata (pod_test.go TestPodDiscoveryWithNodeMetadata)",
        &pod_targets(&simple_pod("default"), Some(&node), None),
        &expand(&borrowed(&group), &[SIMPLE_POD_TARGET]),
    );

    // pod_test.go TestPodDiscoveryWithNamespaceMetadata: attach_metadata.namespace adds the
    // namespace's labels and annotations, not its name again.
    let ns: Namespace = obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test-ns",
        "labels": {"app": "web", "tier": "frontend"}, "annotations": {"maintainer": "devops", "build": "v3.4.5"}}}));
    let mut group = simple_pod_group("test-ns");
    group.extend([
        ("__meta_kubernetes_namespace_label_app", "web".to_owned()),
        ("__meta_kubernetes_namespace_labelpresent_app", "true".into()),
        ("__meta_kubernetes_namespace_label_tier", "frontend".into()),
        ("__meta_kubernetes_namespace_labelpresent_tier", "true".into()),
        ("__meta_kubernetes_namespace_annotation_maintainer", "devops".into()),
        ("__meta_kubernetes_namespace_annotationpresent_maintainer", "true".into()),
        ("__meta_kubernetes_namespace_annotation_build", "v3.4.5".into()),
        ("__meta_kubernetes_namespace_annotationpresent_build", "true".into()),
    ]);
    check(
        "namespace metadata (pod_test.go TestPodDiscoveryWithNamespaceMetadata)",
        &pod_targets(&simple_pod("test-ns"), None, Some(&ns)),
        &expand(&borrowed(&group), &[SIMPLE_POD_TARGET]),
    );

    // pod.go rules on inputs Prometheus' tests do not cover: an IPv6 pod (net.JoinHostPort
    // brackets the host; the port-less target keeps the bare IP), no Ready condition ("unknown"
    // from podReady), an init container with a port, no container statuses (no container_id),
    // and sanitization per character (strutil.SanitizeLabelName).
    let v6: Pod = obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "v6", "namespace": "ns", "labels": {"app.kubernetes.io/name": "x", "é-ü": "y"}},
        "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}, {"name": "b"}],
                 "initContainers": [{"name": "i", "image": "busybox", "ports": [{"name": "dbg", "containerPort": 81, "protocol": "TCP"}]}]},
        "status": {"podIP": "fd00::1"},
    }));
    check(
        "IPv6, no conditions, init container with a port (pod.go buildPod/podReady)",
        &pod_targets(&v6, None, None),
        &expand(
            &[
                ("__meta_kubernetes_pod_name", "v6"),
                ("__meta_kubernetes_namespace", "ns"),
                ("__meta_kubernetes_pod_ip", "fd00::1"),
                ("__meta_kubernetes_pod_ready", "unknown"),
                ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "x"),
                ("__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name", "true"),
                ("__meta_kubernetes_pod_label____", "y"),
                ("__meta_kubernetes_pod_labelpresent____", "true"),
            ],
            &[
                &[
                    ("__address__", "[fd00::1]:80"),
                    ("__meta_kubernetes_pod_container_name", "a"),
                    ("__meta_kubernetes_pod_container_port_number", "80"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                ],
                &[
                    ("__address__", "fd00::1"),
                    ("__meta_kubernetes_pod_container_name", "b"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                ],
                &[
                    ("__address__", "[fd00::1]:81"),
                    ("__meta_kubernetes_pod_container_name", "i"),
                    ("__meta_kubernetes_pod_container_image", "busybox"),
                    ("__meta_kubernetes_pod_container_port_name", "dbg"),
                    ("__meta_kubernetes_pod_container_port_number", "81"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_init", "true"),
                ],
            ],
        ),
    );
}

#[test]
fn label_name_sanitizing() {
    // strutil.SanitizeLabelName: [^a-zA-Z0-9_] -> "_", one per character (Go walks runes).
    for (input, want) in [
        ("app.kubernetes.io/name", "app_kubernetes_io_name"),
        ("prometheus.io/scrape", "prometheus_io_scrape"),
        ("Already_OK_123", "Already_OK_123"),
        ("é", "_"),
        ("a-b c", "a_b_c"),
        ("", ""),
    ] {
        assert_eq!(sanitize_label_name(input), want, "{input:?}");
    }
}

/// node_test.go `makeNode`: one InternalIP address, kubelet port 10250.
fn make_node(name: &str, address: &str, provider_id: &str, labels: Value, annotations: Value) -> Node {
    obj(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"providerID": provider_id},
        "status": {"addresses": [{"type": "InternalIP", "address": address}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}))
}

#[test]
fn node_role() {
    // node_test.go TestNodeDiscoveryBeforeStart: address:kubelet port, instance = node name,
    // provider ID, object meta labels, one address label per type.
    check(
        "node (node_test.go TestNodeDiscoveryBeforeStart)",
        &node_targets(&make_node(
            "test",
            "1.2.3.4",
            "aws:///nodeid",
            json!({"test-label": "testvalue"}),
            json!({"test-annotation": "testannotationvalue"}),
        )),
        &[set(&[
            ("__address__", "1.2.3.4:10250"),
            ("instance", "test"),
            ("__meta_kubernetes_node_address_InternalIP", "1.2.3.4"),
            ("__meta_kubernetes_node_name", "test"),
            ("__meta_kubernetes_node_provider_id", "aws:///nodeid"),
            ("__meta_kubernetes_node_label_test_label", "testvalue"),
            ("__meta_kubernetes_node_labelpresent_test_label", "true"),
            ("__meta_kubernetes_node_annotation_test_annotation", "testannotationvalue"),
            ("__meta_kubernetes_node_annotationpresent_test_annotation", "true"),
        ])],
    );

    // node.go nodeAddress: InternalIP is preferred whatever the order; the first address of each
    // type gets a label; IPv6 is bracketed (net.JoinHostPort).
    let multi: Node = obj(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
        "status": {"addresses": [
            {"type": "Hostname", "address": "n.example"},
            {"type": "ExternalIP", "address": "203.0.113.7"},
            {"type": "InternalIP", "address": "fd00::7"},
            {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}));
    check(
        "address priority (node.go nodeAddress)",
        &node_targets(&multi),
        &[set(&[
            ("__address__", "[fd00::7]:10250"),
            ("instance", "n"),
            ("__meta_kubernetes_node_name", "n"),
            ("__meta_kubernetes_node_address_Hostname", "n.example"),
            ("__meta_kubernetes_node_address_ExternalIP", "203.0.113.7"),
            ("__meta_kubernetes_node_address_InternalIP", "fd00::7"),
        ])],
    );
    let hostname_only: Node = obj(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h"},
        "status": {"addresses": [{"type": "Hostname", "address": "h.local"}]}}));
    check(
        "last-resort Hostname, no kubelet endpoint (node.go nodeAddress)",
        &node_targets(&hostname_only),
        &[set(&[
            ("__address__", "h.local:0"),
            ("instance", "h"),
            ("__meta_kubernetes_node_name", "h"),
            ("__meta_kubernetes_node_address_Hostname", "h.local"),
        ])],
    );
    let no_address: Node = obj(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "x"}}));
    check("no address: no target (node.go buildNode)", &node_targets(&no_address), &[]);
}

fn service(name: &str, spec: Value, labels: Value, annotations: Value) -> Service {
    obj(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels, "annotations": annotations},
        "spec": spec}))
}

#[test]
fn service_role() {
    let base = |name: &str| -> Vec<(&'static str, String)> {
        vec![
            ("__meta_kubernetes_service_name", name.to_owned()),
            ("__meta_kubernetes_namespace", "default".into()),
        ]
    };
    // service_test.go TestServiceDiscoveryUpdate (makeMultiPortService): one target per port.
    let multi = service(
        "testservice",
        json!({"type": "ClusterIP", "clusterIP": "10.0.0.1", "ports": [
            {"name": "testport0", "protocol": "TCP", "port": 30900},
            {"name": "testport1", "protocol": "UDP", "port": 30901}]}),
        json!({"test-label": "testvalue"}),
        json!({"test-annotation": "testannotationvalue"}),
    );
    let mut group = base("testservice");
    group.extend([
        ("__meta_kubernetes_service_label_test_label", "testvalue".to_owned()),
        ("__meta_kubernetes_service_labelpresent_test_label", "true".into()),
        ("__meta_kubernetes_service_annotation_test_annotation", "testannotationvalue".into()),
        ("__meta_kubernetes_service_annotationpresent_test_annotation", "true".into()),
    ]);
    check(
        "multi-port ClusterIP (service_test.go TestServiceDiscoveryUpdate)",
        &service_targets(&multi, None),
        &expand(
            &borrowed(&group),
            &[
                &[
                    ("__address__", "testservice.default.svc:30900"),
                    ("__meta_kubernetes_service_type", "ClusterIP"),
                    ("__meta_kubernetes_service_cluster_ip", "10.0.0.1"),
                    ("__meta_kubernetes_service_port_name", "testport0"),
                    ("__meta_kubernetes_service_port_number", "30900"),
                    ("__meta_kubernetes_service_port_protocol", "TCP"),
                ],
                &[
                    ("__address__", "testservice.default.svc:30901"),
                    ("__meta_kubernetes_service_type", "ClusterIP"),
                    ("__meta_kubernetes_service_cluster_ip", "10.0.0.1"),
                    ("__meta_kubernetes_service_port_name", "testport1"),
                    ("__meta_kubernetes_service_port_number", "30901"),
                    ("__meta_kubernetes_service_port_protocol", "UDP"),
                ],
            ],
        ),
    );

    // service_test.go TestServiceDiscoveryAdd: ExternalName has the external name instead of the
    // cluster IP; LoadBalancer adds the load balancer IP.
    let external = service(
        "testservice-external",
        json!({"type": "ExternalName", "externalName": "FooExternalName",
               "ports": [{"name": "testport", "protocol": "TCP", "port": 31900}]}),
        Value::Null,
        Value::Null,
    );
    check(
        "ExternalName (service_test.go TestServiceDiscoveryAdd)",
        &service_targets(&external, None),
        &expand(
            &borrowed(&base("testservice-external")),
            &[&[
                ("__address__", "testservice-external.default.svc:31900"),
                ("__meta_kubernetes_service_type", "ExternalName"),
                ("__meta_kubernetes_service_port_name", "testport"),
                ("__meta_kubernetes_service_port_number", "31900"),
                ("__meta_kubernetes_service_port_protocol", "TCP"),
                ("__meta_kubernetes_service_external_name", "FooExternalName"),
            ]],
        ),
    );
    let lb = service(
        "testservice-loadbalancer",
        json!({"type": "LoadBalancer", "loadBalancerIP": "127.0.0.1", "clusterIP": "10.0.0.1",
               "ports": [{"name": "testport", "protocol": "TCP", "port": 31900}]}),
        Value::Null,
        Value::Null,
    );
    check(
        "LoadBalancer (service_test.go TestServiceDiscoveryAdd)",
        &service_targets(&lb, None),
        &expand(
            &borrowed(&base("testservice-loadbalancer")),
            &[&[
                ("__address__", "testservice-loadbalancer.default.svc:31900"),
                ("__meta_kubernetes_service_type", "LoadBalancer"),
                ("__meta_kubernetes_service_port_name", "testport"),
                ("__meta_kubernetes_service_port_number", "31900"),
                ("__meta_kubernetes_service_port_protocol", "TCP"),
                ("__meta_kubernetes_service_cluster_ip", "10.0.0.1"),
                ("__meta_kubernetes_service_loadbalancer_ip", "127.0.0.1"),
            ]],
        ),
    );

    // service_test.go TestServiceDiscoveryWithNamespaceMetadata.
    let ns: Namespace = obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default",
        "labels": {"environment": "production"}, "annotations": {"owner": "platform"}}}));
    let simple = service(
        "testservice",
        json!({"type": "ClusterIP", "clusterIP": "10.0.0.1", "ports": [{"name": "testport", "protocol": "TCP", "port": 30900}]}),
        Value::Null,
        Value::Null,
    );
    let mut group = base("testservice");
    group.extend([
        ("__meta_kubernetes_namespace_label_environment", "production".to_owned()),
        ("__meta_kubernetes_namespace_labelpresent_environment", "true".into()),
        ("__meta_kubernetes_namespace_annotation_owner", "platform".into()),
        ("__meta_kubernetes_namespace_annotationpresent_owner", "true".into()),
    ]);
    check(
        "namespace metadata (service_test.go TestServiceDiscoveryWithNamespaceMetadata)",
        &service_targets(&simple, Some(&ns)),
        &expand(
            &borrowed(&group),
            &[&[
                ("__address__", "testservice.default.svc:30900"),
                ("__meta_kubernetes_service_type", "ClusterIP"),
                ("__meta_kubernetes_service_cluster_ip", "10.0.0.1"),
                ("__meta_kubernetes_service_port_name", "testport"),
                ("__meta_kubernetes_service_port_number", "30900"),
                ("__meta_kubernetes_service_port_protocol", "TCP"),
            ]],
        ),
    );
}

/// endpoints_test.go `makeEndpoints`: a ready address with hostname and node name, a subset whose
/// address is both ready and not ready, and an address that references a Node.
fn make_endpoints(ns: &str) -> Endpoints {
    obj(json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "testendpoints", "namespace": ns, "annotations": {"test.annotation": "test"}},
        "subsets": [
            {"addresses": [{"ip": "1.2.3.4", "hostname": "testendpoint1", "nodeName": "foobar"}],
             "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}]},
            {"addresses": [{"ip": "2.3.4.5"}], "notReadyAddresses": [{"ip": "2.3.4.5"}],
             "ports": [{"name": "testport", "port": 9001, "protocol": "TCP"}]},
            {"addresses": [{"ip": "6.7.8.9", "targetRef": {"kind": "Node", "name": "barbaz"}}],
             "ports": [{"name": "testport", "port": 9002, "protocol": "TCP"}]}]}))
}

const ENDPOINTS_TARGETS: [&[(&str, &str)]; 4] = [
    &[
        ("__address__", "1.2.3.4:9000"),
        ("__meta_kubernetes_endpoint_hostname", "testendpoint1"),
        ("__meta_kubernetes_endpoint_node_name", "foobar"),
        ("__meta_kubernetes_endpoint_port_name", "testport"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
        ("__meta_kubernetes_endpoint_ready", "true"),
    ],
    &[
        ("__address__", "2.3.4.5:9001"),
        ("__meta_kubernetes_endpoint_port_name", "testport"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
        ("__meta_kubernetes_endpoint_ready", "true"),
    ],
    &[
        ("__address__", "2.3.4.5:9001"),
        ("__meta_kubernetes_endpoint_port_name", "testport"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
        ("__meta_kubernetes_endpoint_ready", "false"),
    ],
    &[
        ("__address__", "6.7.8.9:9002"),
        ("__meta_kubernetes_endpoint_address_target_kind", "Node"),
        ("__meta_kubernetes_endpoint_address_target_name", "barbaz"),
        ("__meta_kubernetes_endpoint_port_name", "testport"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
        ("__meta_kubernetes_endpoint_ready", "true"),
    ],
];

const ENDPOINTS_GROUP: &[(&str, &str)] = &[
    ("__meta_kubernetes_namespace", "default"),
    ("__meta_kubernetes_endpoints_name", "testendpoints"),
    ("__meta_kubernetes_endpoints_annotation_test_annotation", "test"),
    ("__meta_kubernetes_endpoints_annotationpresent_test_annotation", "true"),
];

/// endpoints_test.go TestEndpointsDiscoveryAdd's pod: two containers, two ports, no status but IPs.
fn endpoints_pod(ns: &str, ip: &str) -> Pod {
    obj(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "testpod", "namespace": ns, "uid": "deadbeef"},
        "spec": {"nodeName": "testnode", "containers": [
            {"name": "c1", "image": "c1:latest", "ports": [{"name": "mainport", "containerPort": 9000, "protocol": "TCP"}]},
            {"name": "c2", "image": "c2:latest", "ports": [{"name": "sideport", "containerPort": 9001, "protocol": "TCP"}]}]},
        "status": {"hostIP": "2.3.4.5", "podIP": ip}}))
}

/// The pod labels of `endpoints_pod` (phase absent: empty in Prometheus' expectation).
fn endpoints_pod_labels(ip: &str) -> Vec<(&'static str, String)> {
    vec![
        ("__meta_kubernetes_pod_name", "testpod".to_owned()),
        ("__meta_kubernetes_pod_ip", ip.into()),
        ("__meta_kubernetes_pod_ready", "unknown".into()),
        ("__meta_kubernetes_pod_node_name", "testnode".into()),
        ("__meta_kubernetes_pod_host_ip", "2.3.4.5".into()),
        ("__meta_kubernetes_pod_uid", "deadbeef".into()),
    ]
}

#[test]
fn endpoints_role() {
    check(
        "ready/not-ready addresses, Node target ref (endpoints_test.go TestEndpointsDiscoveryBeforeRun)",
        &endpoints_targets(&make_endpoints("default"), &Objects::default()),
        &expand(ENDPOINTS_GROUP, &ENDPOINTS_TARGETS),
    );

    // endpoints_test.go TestEndpointsDiscoveryWithService: the same-named Service's labels join
    // the group.
    let svc = service("testendpoints", json!({}), json!({"app/name": "test"}), Value::Null);
    let with_service = Objects { services: vec![Arc::new(svc)], ..Objects::default() };
    let mut group = ENDPOINTS_GROUP.to_vec();
    group.extend([
        ("__meta_kubernetes_service_label_app_name", "test"),
        ("__meta_kubernetes_service_labelpresent_app_name", "true"),
        ("__meta_kubernetes_service_name", "testendpoints"),
    ]);
    check(
        "service labels (endpoints_test.go TestEndpointsDiscoveryWithService)",
        &endpoints_targets(&make_endpoints("default"), &with_service),
        &expand(&group, &ENDPOINTS_TARGETS),
    );

    // endpoints_test.go TestEndpointsDiscoveryWithNodeMetadata: node labels per target, from
    // nodeName or a Node target reference; the address without either gets none.
    let node = |name: &str, az: &str| -> Arc<Node> {
        Arc::new(obj(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"az": az}}}),
        ))
    };
    let with_nodes =
        Objects { nodes: vec![node("foobar", "us-east1"), node("barbaz", "us-west2")], ..Objects::default() };
    let node_labels = |name: &'static str, az: &'static str| -> [(&'static str, &'static str); 3] {
        [
            ("__meta_kubernetes_node_name", name),
            ("__meta_kubernetes_node_label_az", az),
            ("__meta_kubernetes_node_labelpresent_az", "true"),
        ]
    };
    let t0: Vec<_> = ENDPOINTS_TARGETS[0].iter().copied().chain(node_labels("foobar", "us-east1")).collect();
    let t3: Vec<_> = ENDPOINTS_TARGETS[3].iter().copied().chain(node_labels("barbaz", "us-west2")).collect();
    check(
        "node metadata (endpoints_test.go TestEndpointsDiscoveryWithNodeMetadata)",
        &endpoints_targets(&make_endpoints("default"), &with_nodes),
        &expand(ENDPOINTS_GROUP, &[&t0, ENDPOINTS_TARGETS[1], ENDPOINTS_TARGETS[2], &t3]),
    );

    // endpoints_test.go TestEndpointsDiscoveryAdd: an address that references a known pod gets
    // the pod's labels and the labels of the container declaring the port; the pod's other
    // declared port becomes a target of its own at podIP:port.
    let eps: Endpoints = obj(json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "testendpoints", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "4.3.2.1", "targetRef": {"kind": "Pod", "name": "testpod", "namespace": "default"}}],
                     "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}]}]}));
    let with_pod =
        Objects { pods: vec![Arc::new(endpoints_pod("default", "1.2.3.4"))], ..Objects::default() };
    let pod_l = endpoints_pod_labels("1.2.3.4");
    let first: Vec<_> = borrowed(&pod_l)
        .into_iter()
        .chain([
            ("__address__", "4.3.2.1:9000"),
            ("__meta_kubernetes_endpoint_port_name", "testport"),
            ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
            ("__meta_kubernetes_endpoint_ready", "true"),
            ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
            ("__meta_kubernetes_endpoint_address_target_name", "testpod"),
            ("__meta_kubernetes_pod_container_name", "c1"),
            ("__meta_kubernetes_pod_container_image", "c1:latest"),
            ("__meta_kubernetes_pod_container_port_name", "mainport"),
            ("__meta_kubernetes_pod_container_port_number", "9000"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "false"),
        ])
        .collect();
    let second: Vec<_> = borrowed(&pod_l)
        .into_iter()
        .chain([
            ("__address__", "1.2.3.4:9001"),
            ("__meta_kubernetes_pod_container_name", "c2"),
            ("__meta_kubernetes_pod_container_image", "c2:latest"),
            ("__meta_kubernetes_pod_container_port_name", "sideport"),
            ("__meta_kubernetes_pod_container_port_number", "9001"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "false"),
        ])
        .collect();
    let group =
        [("__meta_kubernetes_namespace", "default"), ("__meta_kubernetes_endpoints_name", "testendpoints")];
    check(
        "pod target ref (endpoints_test.go TestEndpointsDiscoveryAdd)",
        &endpoints_targets(&eps, &with_pod),
        &expand(&group, &[&first, &second]),
    );

    // endpoints_test.go TestEndpointsDiscoverySidecarContainer: init (sidecar) containers' ports
    // match endpoint ports and produce uncovered-port targets too, with container_init "true".
    let sidecar_eps: Endpoints = obj(json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "testsidecar", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "4.3.2.1", "targetRef": {"kind": "Pod", "name": "testpod", "namespace": "default"}}],
                     "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"},
                               {"name": "initport", "port": 9111, "protocol": "TCP"}]}]}));
    let sidecar_pod: Pod = obj(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "testpod", "namespace": "default", "uid": "deadbeef"},
        "spec": {"nodeName": "testnode",
                 "initContainers": [
                     {"name": "ic1", "image": "ic1:latest", "ports": [{"name": "initport", "containerPort": 1111, "protocol": "TCP"}]},
                     {"name": "ic2", "image": "ic2:latest", "ports": [{"name": "initport", "containerPort": 9111, "protocol": "TCP"}]}],
                 "containers": [{"name": "c1", "image": "c1:latest", "ports": [{"name": "mainport", "containerPort": 9000, "protocol": "TCP"}]}]},
        "status": {"hostIP": "2.3.4.5", "podIP": "4.3.2.1"}}));
    let pod_l = endpoints_pod_labels("4.3.2.1");
    let endpoint = |port: &'static str, name: &'static str| {
        [
            ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
            ("__meta_kubernetes_endpoint_address_target_name", "testpod"),
            ("__meta_kubernetes_endpoint_port_name", name),
            ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
            ("__meta_kubernetes_endpoint_ready", "true"),
            ("__meta_kubernetes_pod_container_port_number", port),
        ]
    };
    let container = |addr: &'static str,
                     c: &'static str,
                     image: &'static str,
                     port_name: &'static str,
                     init: &'static str| {
        [
            ("__address__", addr),
            ("__meta_kubernetes_pod_container_name", c),
            ("__meta_kubernetes_pod_container_image", image),
            ("__meta_kubernetes_pod_container_port_name", port_name),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", init),
        ]
    };
    let t1: Vec<_> = borrowed(&pod_l)
        .into_iter()
        .chain(endpoint("9000", "testport"))
        .chain(container("4.3.2.1:9000", "c1", "c1:latest", "mainport", "false"))
        .collect();
    let t2: Vec<_> = borrowed(&pod_l)
        .into_iter()
        .chain(endpoint("9111", "initport"))
        .chain(container("4.3.2.1:9111", "ic2", "ic2:latest", "initport", "true"))
        .collect();
    let t3: Vec<_> = borrowed(&pod_l)
        .into_iter()
        .chain([("__meta_kubernetes_pod_container_port_number", "1111")])
        .chain(container("4.3.2.1:1111", "ic1", "ic1:latest", "initport", "true"))
        .collect();
    check(
        "sidecar init containers (endpoints_test.go TestEndpointsDiscoverySidecarContainer)",
        &endpoints_targets(
            &sidecar_eps,
            &Objects { pods: vec![Arc::new(sidecar_pod)], ..Objects::default() },
        ),
        &expand(
            &[
                ("__meta_kubernetes_namespace", "default"),
                ("__meta_kubernetes_endpoints_name", "testsidecar"),
            ],
            &[&t1, &t2, &t3],
        ),
    );

    // endpoints_test.go TestEndpointsDiscoveryWithNamespaceMetadata.
    let ns: Namespace = obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test-ns",
        "labels": {"team": "backend"}, "annotations": {"version": "v1.2.3"}}}));
    let with_ns = Objects { namespaces: vec![Arc::new(ns)], ..Objects::default() };
    let group = [
        ("__meta_kubernetes_namespace", "test-ns"),
        ("__meta_kubernetes_namespace_label_team", "backend"),
        ("__meta_kubernetes_namespace_labelpresent_team", "true"),
        ("__meta_kubernetes_namespace_annotation_version", "v1.2.3"),
        ("__meta_kubernetes_namespace_annotationpresent_version", "true"),
        ("__meta_kubernetes_endpoints_name", "testendpoints"),
        ("__meta_kubernetes_endpoints_annotation_test_annotation", "test"),
        ("__meta_kubernetes_endpoints_annotationpresent_test_annotation", "true"),
    ];
    check(
        "namespace metadata (endpoints_test.go TestEndpointsDiscoveryWithNamespaceMetadata)",
        &endpoints_targets(&make_endpoints("test-ns"), &with_ns),
        &expand(&group, &ENDPOINTS_TARGETS),
    );

    // endpoints.go reports the endpoint port's protocol as the container port's
    // (`lv(string(port.Protocol))`), unlike endpointslice.go, which takes the container's.
    let mut udp = eps.clone();
    udp.subsets.as_mut().unwrap()[0].ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
    let got = endpoints_targets(&udp, &with_pod);
    assert_eq!(got[0].get("__meta_kubernetes_pod_container_port_protocol"), Some("UDP"));
    assert_eq!(
        got[1].get("__meta_kubernetes_pod_container_port_protocol"),
        Some("TCP"),
        "uncovered port: its own"
    );

    // endpoints.go: a referenced pod without an IP adds its labels to the endpoint target but
    // produces no uncovered-port targets ("PodIP can be empty when a pod is starting").
    let no_ip = Objects { pods: vec![Arc::new(endpoints_pod("default", ""))], ..Objects::default() };
    let got = endpoints_targets(&eps, &no_ip);
    assert_eq!(got.len(), 1, "only the endpoint's own target: {got:?}");
    assert_eq!(got[0].get("__meta_kubernetes_pod_name"), Some("testpod"));
}

/// endpointslice_test.go `makeEndpointSliceV1`, plus topology-aware routing hints (which
/// Prometheus does not expose).
fn make_slice(ns: &str) -> EndpointSlice {
    obj(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "testendpoints", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": "testendpoints"},
                     "annotations": {"test.annotation": "test"}},
        "addressType": "IPv4",
        "ports": [{"name": "testport", "port": 9000, "protocol": "TCP", "appProtocol": "http"}],
        "endpoints": [
            {"addresses": ["1.2.3.4"], "conditions": {"ready": true, "serving": true, "terminating": false},
             "hostname": "testendpoint1", "targetRef": {}, "nodeName": "foobar",
             "deprecatedTopology": {"topology": "value"}, "zone": "us-east-1a",
             "hints": {"forZones": [{"name": "us-east-1a"}]}},
            {"addresses": ["2.3.4.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
             "zone": "us-east-1b"},
            {"addresses": ["3.4.5.6"], "conditions": {"ready": false, "serving": true, "terminating": true},
             "zone": "us-east-1c"},
            {"addresses": ["4.5.6.7"], "conditions": {"ready": true, "serving": true, "terminating": false},
             "targetRef": {"kind": "Node", "name": "barbaz"}, "zone": "us-east-1a"}]}))
}

fn slice_endpoint(
    addr: &'static str,
    ready: &'static str,
    terminating: &'static str,
    zone: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("__address__", addr),
        ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", ready),
        ("__meta_kubernetes_endpointslice_endpoint_conditions_serving", "true"),
        ("__meta_kubernetes_endpointslice_endpoint_conditions_terminating", terminating),
        ("__meta_kubernetes_endpointslice_endpoint_zone", zone),
        ("__meta_kubernetes_endpointslice_port", "9000"),
        ("__meta_kubernetes_endpointslice_port_app_protocol", "http"),
        ("__meta_kubernetes_endpointslice_port_name", "testport"),
        ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
    ]
}

fn slice_targets() -> Vec<Vec<(&'static str, &'static str)>> {
    let mut t0 = slice_endpoint("1.2.3.4:9000", "true", "false", "us-east-1a");
    // The empty target reference's kind and name are "" (absent); hints are not exposed.
    t0.extend([
        ("__meta_kubernetes_endpointslice_endpoint_hostname", "testendpoint1"),
        ("__meta_kubernetes_endpointslice_endpoint_node_name", "foobar"),
        ("__meta_kubernetes_endpointslice_endpoint_topology_present_topology", "true"),
        ("__meta_kubernetes_endpointslice_endpoint_topology_topology", "value"),
    ]);
    let mut t3 = slice_endpoint("4.5.6.7:9000", "true", "false", "us-east-1a");
    t3.extend([
        ("__meta_kubernetes_endpointslice_address_target_kind", "Node"),
        ("__meta_kubernetes_endpointslice_address_target_name", "barbaz"),
    ]);
    vec![
        t0,
        slice_endpoint("2.3.4.5:9000", "true", "false", "us-east-1b"),
        slice_endpoint("3.4.5.6:9000", "false", "true", "us-east-1c"),
        t3,
    ]
}

const SLICE_GROUP: &[(&str, &str)] = &[
    ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
    ("__meta_kubernetes_namespace", "default"),
    ("__meta_kubernetes_endpointslice_name", "testendpoints"),
    ("__meta_kubernetes_endpointslice_label_kubernetes_io_service_name", "testendpoints"),
    ("__meta_kubernetes_endpointslice_labelpresent_kubernetes_io_service_name", "true"),
    ("__meta_kubernetes_endpointslice_annotation_test_annotation", "test"),
    ("__meta_kubernetes_endpointslice_annotationpresent_test_annotation", "true"),
];

#[test]
fn endpointslice_role() {
    let targets = slice_targets();
    let refs: Vec<&[(&str, &str)]> = targets.iter().map(Vec::as_slice).collect();
    check(
        "conditions, zones, topology, hints (endpointslice_test.go TestEndpointSliceDiscoveryBeforeRun)",
        &endpointslice_targets(&make_slice("default"), &Objects::default()),
        &expand(SLICE_GROUP, &refs),
    );

    // endpointslice_test.go TestEndpointSliceDiscoveryWithService: the Service named by the
    // kubernetes.io/service-name label joins the group.
    let svc = service("testendpoints", json!({}), json!({"app/name": "test"}), Value::Null);
    let mut group = SLICE_GROUP.to_vec();
    group.extend([
        ("__meta_kubernetes_service_label_app_name", "test"),
        ("__meta_kubernetes_service_labelpresent_app_name", "true"),
        ("__meta_kubernetes_service_name", "testendpoints"),
    ]);
    check(
        "service labels (endpointslice_test.go TestEndpointSliceDiscoveryWithService)",
        &endpointslice_targets(
            &make_slice("default"),
            &Objects { services: vec![Arc::new(svc)], ..Objects::default() },
        ),
        &expand(&group, &refs),
    );

    // endpointslice_test.go TestEndpointSliceDiscoveryWithNodeMetadata: node labels from a Node
    // target reference, else from nodeName.
    let node = |name: &str, az: &str| -> Arc<Node> {
        Arc::new(obj(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"az": az}}}),
        ))
    };
    let mut with_nodes = targets.clone();
    with_nodes[0].extend([
        ("__meta_kubernetes_node_name", "foobar"),
        ("__meta_kubernetes_node_label_az", "us-east1"),
        ("__meta_kubernetes_node_labelpresent_az", "true"),
    ]);
    with_nodes[3].extend([
        ("__meta_kubernetes_node_name", "barbaz"),
        ("__meta_kubernetes_node_label_az", "us-west2"),
        ("__meta_kubernetes_node_labelpresent_az", "true"),
    ]);
    let refs_nodes: Vec<&[(&str, &str)]> = with_nodes.iter().map(Vec::as_slice).collect();
    check(
        "node metadata (endpointslice_test.go TestEndpointSliceDiscoveryWithNodeMetadata)",
        &endpointslice_targets(
            &make_slice("default"),
            &Objects {
                nodes: vec![node("foobar", "us-east1"), node("barbaz", "us-west2")],
                ..Objects::default()
            },
        ),
        &expand(SLICE_GROUP, &refs_nodes),
    );

    // endpointslice_test.go TestEndpointSliceDiscoveryAdd: a pod target reference adds the pod
    // and container labels (the container port's protocol here), and the pod's other port becomes
    // its own target.
    let slice: EndpointSlice = obj(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "testendpoints", "namespace": "default"},
        "addressType": "IPv4",
        "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["4.3.2.1"], "targetRef": {"kind": "Pod", "name": "testpod", "namespace": "default"},
                       "conditions": {"ready": false}}]}));
    let pod_l = endpoints_pod_labels("1.2.3.4");
    let first: Vec<_> = borrowed(&pod_l)
        .into_iter()
        .chain([
            ("__address__", "4.3.2.1:9000"),
            ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
            ("__meta_kubernetes_endpointslice_address_target_name", "testpod"),
            ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", "false"),
            ("__meta_kubernetes_endpointslice_port", "9000"),
            ("__meta_kubernetes_endpointslice_port_name", "testport"),
            ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_name", "c1"),
            ("__meta_kubernetes_pod_container_image", "c1:latest"),
            ("__meta_kubernetes_pod_container_port_name", "mainport"),
            ("__meta_kubernetes_pod_container_port_number", "9000"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "false"),
        ])
        .collect();
    let second: Vec<_> = borrowed(&pod_l)
        .into_iter()
        .chain([
            ("__address__", "1.2.3.4:9001"),
            ("__meta_kubernetes_pod_container_name", "c2"),
            ("__meta_kubernetes_pod_container_image", "c2:latest"),
            ("__meta_kubernetes_pod_container_port_name", "sideport"),
            ("__meta_kubernetes_pod_container_port_number", "9001"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "false"),
        ])
        .collect();
    check(
        "pod target ref (endpointslice_test.go TestEndpointSliceDiscoveryAdd)",
        &endpointslice_targets(
            &slice,
            &Objects { pods: vec![Arc::new(endpoints_pod("default", "1.2.3.4"))], ..Objects::default() },
        ),
        &expand(
            &[
                ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
                ("__meta_kubernetes_endpointslice_name", "testendpoints"),
                ("__meta_kubernetes_namespace", "default"),
            ],
            &[&first, &second],
        ),
    );

    // endpointslice.go takes the container port's protocol (`lv(string(cport.Protocol))`).
    let mut udp = slice.clone();
    udp.ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
    let pods = Objects { pods: vec![Arc::new(endpoints_pod("default", "1.2.3.4"))], ..Objects::default() };
    let got = endpointslice_targets(&udp, &pods);
    assert_eq!(got[0].get("__meta_kubernetes_endpointslice_port_protocol"), Some("UDP"));
    assert_eq!(got[0].get("__meta_kubernetes_pod_container_port_protocol"), Some("TCP"));

    // endpointslice.go: a port without a number gives the bare address and no port label; a slice
    // without ports gives no targets (the loop runs over ports).
    let portless: EndpointSlice = obj(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv6",
        "ports": [{"name": "any"}], "endpoints": [{"addresses": ["fd00::5"]}]}));
    check(
        "port without number (endpointslice.go buildEndpointSlice)",
        &endpointslice_targets(&portless, &Objects::default()),
        &[set(&[
            ("__address__", "fd00::5"),
            ("__meta_kubernetes_endpointslice_port_name", "any"),
            ("__meta_kubernetes_endpointslice_address_type", "IPv6"),
            ("__meta_kubernetes_endpointslice_name", "s"),
            ("__meta_kubernetes_namespace", "default"),
        ])],
    );
    let mut no_ports = make_slice("default");
    no_ports.ports = None;
    check(
        "no ports (endpointslice.go buildEndpointSlice)",
        &endpointslice_targets(&no_ports, &Objects::default()),
        &[],
    );
}
