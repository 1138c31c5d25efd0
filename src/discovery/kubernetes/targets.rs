//! The target label sets of each Kubernetes SD role, built from API objects by pure functions.
//!
//! What this is: a port of the label rules of Prometheus' `discovery/kubernetes/{pod,node,service,
//! endpoints,endpointslice}.go` (v3.x, with `attach_metadata` node and namespace), written against
//! the k8s-openapi types. Every function is pure, so the table tests in
//! `tests/kubernetes_meta_labels.rs` pin the exact label sets. What this is not: watching or
//! caching objects; see the parent module.
//!
//! Prometheus builds a target group per object (group labels shared by all its targets) and merges
//! the group into each target when it creates scrape targets, the target's own labels winning. Here
//! each returned [`Labels`] is that merge. A label Prometheus sets to `""` is absent here, because a
//! target's empty labels are dropped before relabeling anyway (`labels.Builder` deletes them), and
//! [`Labels`] never stores an empty value.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels::{ADDRESS, INSTANCE, Labels};

/// Prefix of every label this discovery sets (`metaLabelPrefix` in `kubernetes.go`).
pub const META: &str = "__meta_kubernetes_";

/// The value of the `…present_…` labels (`presentValue` in `kubernetes.go`).
const PRESENT: &str = "true";

/// The label EndpointSlices name their Service with (`discovery/v1.LabelServiceName`).
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Prometheus' `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes `_`.
///
/// One `_` per character, not per byte: Go's version walks runes, so `é` becomes one `_`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// The related objects the endpoints and endpointslice roles read while building targets, as
/// Prometheus reads its pod, service, node and namespace informer stores.
///
/// `node` answers only with `attach_metadata.node` and `namespace` only with
/// `attach_metadata.namespace`; otherwise they return `None`, which leaves those labels out.
pub trait Lookup {
    /// The pod `namespace/name`.
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>>;
    /// The service `namespace/name`.
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>>;
    /// The node `name`.
    fn node(&self, name: &str) -> Option<Arc<Node>>;
    /// The namespace `name`.
    fn namespace(&self, name: &str) -> Option<Arc<Namespace>>;
}

/// A [`Lookup`] over plain lists, for tests and one-off use: a linear search by name.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Pods that endpoint addresses may reference.
    pub pods: Vec<Arc<Pod>>,
    /// Services that endpoints and endpoint slices may belong to.
    pub services: Vec<Arc<Service>>,
    /// Nodes (only consulted as `attach_metadata.node` would).
    pub nodes: Vec<Arc<Node>>,
    /// Namespaces (only consulted as `attach_metadata.namespace` would).
    pub namespaces: Vec<Arc<Namespace>>,
}

fn is(meta: &ObjectMeta, namespace: Option<&str>, name: &str) -> bool {
    meta.name.as_deref() == Some(name) && namespace.is_none_or(|ns| meta.namespace.as_deref() == Some(ns))
}

impl Lookup for Objects {
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.iter().find(|p| is(&p.metadata, Some(namespace), name)).cloned()
    }
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.iter().find(|s| is(&s.metadata, Some(namespace), name)).cloned()
    }
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.iter().find(|n| is(&n.metadata, None, name)).cloned()
    }
    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.iter().find(|n| is(&n.metadata, None, name)).cloned()
    }
}

/// `<META><suffix>`.
fn meta(suffix: &str) -> String {
    let mut s = String::with_capacity(META.len() + suffix.len());
    s.push_str(META);
    s.push_str(suffix);
    s
}

/// `addObjectMetaLabels` (`kubernetes.go`): `<role>_name`, and for every label and annotation
/// `<role>_label_<n>`, `<role>_labelpresent_<n>`, `<role>_annotation_<n>`,
/// `<role>_annotationpresent_<n>` with `<n>` sanitized.
///
/// Two keys that sanitize to the same name (`a.b` and `a_b`) collide; Prometheus keeps whichever
/// its map iteration visits last (random), here the later key in sorted order wins.
fn object_meta_labels(l: &mut Labels, role: &str, m: &ObjectMeta) {
    l.set(meta(&format!("{role}_name")), m.name.as_deref().unwrap_or_default());
    key_value_labels(l, &format!("{role}_label"), m.labels.as_ref());
    key_value_labels(l, &format!("{role}_annotation"), m.annotations.as_ref());
}

/// `<prefix>_<n>` = value and `<prefix>present_<n>` = "true" for each entry.
fn key_value_labels(l: &mut Labels, prefix: &str, kv: Option<&BTreeMap<String, String>>) {
    for (k, v) in kv.into_iter().flatten() {
        let n = sanitize_label_name(k);
        l.set(meta(&format!("{prefix}_{n}")), v.as_str());
        l.set(meta(&format!("{prefix}present_{n}")), PRESENT);
    }
}

/// `addNodeLabels`: the node's object meta labels (`node_name`, `node_label_*`, …), if the node
/// is known.
fn node_labels(l: &mut Labels, node: Option<&Node>) {
    if let Some(n) = node {
        object_meta_labels(l, "node", &n.metadata);
    }
}

/// `addNamespaceLabels` (v3.6+): the namespace's labels and annotations as
/// `namespace_label_*`, `namespace_labelpresent_*`, `namespace_annotation_*`,
/// `namespace_annotationpresent_*`. The name is not repeated: `__meta_kubernetes_namespace` already
/// carries it.
fn namespace_labels(l: &mut Labels, namespace: Option<&Namespace>) {
    if let Some(ns) = namespace {
        key_value_labels(l, "namespace_label", ns.metadata.labels.as_ref());
        key_value_labels(l, "namespace_annotation", ns.metadata.annotations.as_ref());
    }
}

/// Go's `net.JoinHostPort`: brackets around a host that contains a colon (IPv6).
fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Merges `target` over `group` (the target's labels win, as in Prometheus' target creation).
fn merged(group: &Labels, target: Labels) -> Labels {
    let mut out = group.clone();
    for l in target.iter() {
        out.set(l.name.as_str(), l.value.as_str());
    }
    out
}

// === pod ===

/// `podLabels` (`pod.go`): the labels every target of a pod carries, also attached to endpoints
/// and endpoint slice targets that reference the pod.
fn pod_labels(pod: &Pod) -> Labels {
    let mut l = Labels::new();
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    l.set(meta("pod_ip"), status.and_then(|s| s.pod_ip.as_deref()).unwrap_or_default());
    l.set(meta("pod_ready"), pod_ready(pod));
    l.set(meta("pod_phase"), status.and_then(|s| s.phase.as_deref()).unwrap_or_default());
    l.set(meta("pod_node_name"), spec.and_then(|s| s.node_name.as_deref()).unwrap_or_default());
    l.set(meta("pod_host_ip"), status.and_then(|s| s.host_ip.as_deref()).unwrap_or_default());
    l.set(meta("pod_uid"), pod.metadata.uid.as_deref().unwrap_or_default());
    object_meta_labels(&mut l, "pod", &pod.metadata);
    // `GetControllerOf`: the first owner reference with `controller: true`.
    let owners = pod.metadata.owner_references.iter().flatten();
    if let Some(c) = owners.into_iter().find(|o| o.controller == Some(true)) {
        l.set(meta("pod_controller_kind"), c.kind.as_str());
        l.set(meta("pod_controller_name"), c.name.as_str());
    }
    l
}

/// `podReady`: the lower-cased status of the `Ready` condition, `unknown` without one.
fn pod_ready(pod: &Pod) -> String {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map_or_else(|| "unknown".to_owned(), |c| c.status.to_lowercase())
}

/// The containers of a pod as Prometheus walks them: regular ones, then init containers, each
/// with whether it is an init container.
fn containers(pod: &Pod) -> impl Iterator<Item = (&k8s_openapi::api::core::v1::Container, bool)> {
    let spec = pod.spec.as_ref();
    let regular = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
    regular.iter().map(|c| (c, false)).chain(init.iter().map(|c| (c, true)))
}

/// The targets of a pod (`Pod.buildPod`, `pod.go`).
///
/// None when the pod has no IP yet ("PodIP can be empty when a pod is starting or has been
/// evicted"). Otherwise one target per declared port of every container, init containers
/// included (after the regular ones, `__meta_kubernetes_pod_container_init="true"`), at
/// `podIP:port`; and one target at the bare pod IP for each container that declares no port, so
/// that relabeling can add one. Pods are not filtered by phase.
///
/// `node` is the pod's node when `attach_metadata.node` is set (its `__meta_kubernetes_node_*`
/// labels are added); `namespace` the pod's namespace when `attach_metadata.namespace` is set.
pub fn pod_targets(pod: &Pod, node: Option<&Node>, namespace: Option<&Namespace>) -> Vec<Labels> {
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).filter(|ip| !ip.is_empty()) else {
        return Vec::new();
    };
    let mut group = pod_labels(pod);
    group.set(meta("namespace"), pod.metadata.namespace.as_deref().unwrap_or_default());
    node_labels(&mut group, node);
    namespace_labels(&mut group, namespace);

    let status = pod.status.as_ref();
    let mut out = Vec::new();
    for (c, init) in containers(pod) {
        let statuses = if init {
            status.and_then(|s| s.init_container_statuses.as_deref())
        } else {
            status.and_then(|s| s.container_statuses.as_deref())
        };
        let id = statuses
            .unwrap_or_default()
            .iter()
            .find(|s| s.name == c.name)
            .and_then(|s| s.container_id.as_deref());
        let mut base = Labels::new();
        base.set(meta("pod_container_name"), c.name.as_str());
        base.set(meta("pod_container_id"), id.unwrap_or_default());
        base.set(meta("pod_container_image"), c.image.as_deref().unwrap_or_default());
        base.set(meta("pod_container_init"), if init { "true" } else { "false" });
        let ports = c.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            // "We don't have a port so we just set the address label to the pod IP. The user has
            // to add a port manually." (pod.go) — the bare IP, without brackets even for IPv6.
            base.set(ADDRESS, ip);
            out.push(merged(&group, base));
            continue;
        }
        for p in ports {
            let mut t = base.clone();
            t.set(ADDRESS, join_host_port(ip, p.container_port));
            t.set(meta("pod_container_port_name"), p.name.as_deref().unwrap_or_default());
            t.set(meta("pod_container_port_number"), p.container_port.to_string());
            t.set(meta("pod_container_port_protocol"), p.protocol.as_deref().unwrap_or_default());
            out.push(merged(&group, t));
        }
    }
    out
}

// === node ===

/// The address types in the order `nodeAddress` (`node.go`) prefers them.
const NODE_ADDRESS_PRIORITY: [&str; 6] =
    ["InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname"];

/// The target of a node (`Node.buildNode`, `node.go`): the first address of the most preferred
/// type (InternalIP, InternalDNS, ExternalIP, ExternalDNS, LegacyHostIP, Hostname) at the kubelet
/// port, `instance` set to the node name, the provider ID, the object meta labels and
/// `__meta_kubernetes_node_address_<type>` with the first address of each type. A node without a
/// usable address yields nothing (Prometheus logs "No node address found").
pub fn node_targets(node: &Node) -> Vec<Labels> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
    let Some(addr) = NODE_ADDRESS_PRIORITY
        .iter()
        .find_map(|ty| addresses.iter().find(|a| a.type_ == *ty))
        .map(|a| a.address.as_str())
    else {
        return Vec::new();
    };
    let port = node
        .status
        .as_ref()
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map_or(0, |k| k.port);
    let mut t = Labels::new();
    t.set(ADDRESS, join_host_port(addr, port));
    t.set(INSTANCE, node.metadata.name.as_deref().unwrap_or_default());
    t.set(
        meta("node_provider_id"),
        node.spec.as_ref().and_then(|s| s.provider_id.as_deref()).unwrap_or_default(),
    );
    object_meta_labels(&mut t, "node", &node.metadata);
    let mut seen: Vec<&str> = Vec::new();
    for a in addresses {
        if !seen.contains(&a.type_.as_str()) {
            seen.push(a.type_.as_str());
            t.set(sanitize_label_name(&meta(&format!("node_address_{}", a.type_))), a.address.as_str());
        }
    }
    vec![t]
}

// === service ===

/// `serviceLabels` (`service.go`): namespace plus the service's object meta labels; also the group
/// labels endpoints and endpoint slices add for their service.
fn service_labels(l: &mut Labels, svc: &Service) {
    l.set(meta("namespace"), svc.metadata.namespace.as_deref().unwrap_or_default());
    object_meta_labels(l, "service", &svc.metadata);
}

/// The targets of a service (`Service.buildService`, `service.go`): one per service port at
/// `<name>.<namespace>.svc:<port>`, with the port's name, number and protocol, the service type,
/// and the cluster IP (or, for `ExternalName` services, the external name instead); `LoadBalancer`
/// services add `__meta_kubernetes_service_loadbalancer_ip`.
pub fn service_targets(svc: &Service, namespace: Option<&Namespace>) -> Vec<Labels> {
    let mut group = Labels::new();
    service_labels(&mut group, svc);
    namespace_labels(&mut group, namespace);
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let Some(spec) = svc.spec.as_ref() else { return Vec::new() };
    let kind = spec.type_.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for p in spec.ports.as_deref().unwrap_or_default() {
        let mut t = Labels::new();
        t.set(ADDRESS, join_host_port(&format!("{name}.{ns}.svc"), p.port));
        t.set(meta("service_port_name"), p.name.as_deref().unwrap_or_default());
        t.set(meta("service_port_number"), p.port.to_string());
        t.set(meta("service_port_protocol"), p.protocol.as_deref().unwrap_or_default());
        t.set(meta("service_type"), kind);
        if kind == "ExternalName" {
            t.set(meta("service_external_name"), spec.external_name.as_deref().unwrap_or_default());
        } else {
            t.set(meta("service_cluster_ip"), spec.cluster_ip.as_deref().unwrap_or_default());
        }
        if kind == "LoadBalancer" {
            t.set(meta("service_loadbalancer_ip"), spec.load_balancer_ip.as_deref().unwrap_or_default());
        }
        out.push(merged(&group, t));
    }
    out
}

// === endpoints and endpointslice: shared pod logic ===

/// `resolvePodRef`: the referenced pod, for references of kind `Pod` only.
fn resolve_pod(lookup: &dyn Lookup, r: Option<&ObjectReference>) -> Option<Arc<Pod>> {
    let r = r?;
    if r.kind.as_deref() != Some("Pod") {
        return None;
    }
    lookup.pod(r.namespace.as_deref().unwrap_or_default(), r.name.as_deref().unwrap_or_default())
}

/// The pods seen behind endpoint addresses, in first-seen order, with the ports the endpoints
/// already produced targets for (Prometheus' `seenPods`, a map; insertion order here so the output
/// is deterministic).
#[derive(Default)]
struct SeenPods {
    pods: Vec<(Arc<Pod>, Vec<i32>)>,
}

impl SeenPods {
    fn add(&mut self, pod: &Arc<Pod>, port: Option<i32>) {
        let i = match self.pods.iter().position(|(p, _)| Arc::ptr_eq(p, pod) || same_object(p, pod)) {
            Some(i) => i,
            None => {
                self.pods.push((pod.clone(), Vec::new()));
                self.pods.len() - 1
            }
        };
        if let Some(port) = port {
            self.pods[i].1.push(port);
        }
    }

    /// The extra targets: "For all seen pods, check all container ports. If they were not covered
    /// by one of the service endpoints, generate targets for them." Pods without an IP are
    /// skipped. The container port's own protocol is used here.
    fn uncovered_targets(&self, group: &Labels, out: &mut Vec<Labels>) {
        for (pod, covered) in &self.pods {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).filter(|ip| !ip.is_empty())
            else {
                continue;
            };
            let labels = pod_labels(pod);
            for (c, init) in containers(pod) {
                for p in c.ports.as_deref().unwrap_or_default() {
                    if covered.contains(&p.container_port) {
                        continue;
                    }
                    let mut t = labels.clone();
                    t.set(ADDRESS, join_host_port(ip, p.container_port));
                    t.set(meta("pod_container_name"), c.name.as_str());
                    t.set(meta("pod_container_image"), c.image.as_deref().unwrap_or_default());
                    t.set(meta("pod_container_port_name"), p.name.as_deref().unwrap_or_default());
                    t.set(meta("pod_container_port_number"), p.container_port.to_string());
                    t.set(meta("pod_container_port_protocol"), p.protocol.as_deref().unwrap_or_default());
                    t.set(meta("pod_container_init"), if init { "true" } else { "false" });
                    out.push(merged(group, t));
                }
            }
        }
    }
}

fn same_object(a: &Pod, b: &Pod) -> bool {
    a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name
}

/// Adds the pod labels and, when a container declares the endpoint's port, that container's
/// labels. Every container is checked (the last match wins, as Prometheus' loop `break`s only out
/// of the inner port loop). `protocol` is the protocol Prometheus reports for the container port:
/// the endpoint port's for `endpoints`, the container port's for `endpointslice`.
fn add_pod_container_labels(t: &mut Labels, pod: &Pod, port: i32, endpoint_protocol: Option<&str>) {
    for (name, value) in pod_labels(pod).iter().map(|l| (l.name.clone(), l.value.clone())) {
        t.set(name, value);
    }
    for (c, init) in containers(pod) {
        if let Some(cp) = c.ports.as_deref().unwrap_or_default().iter().find(|cp| cp.container_port == port) {
            t.set(meta("pod_container_name"), c.name.as_str());
            t.set(meta("pod_container_image"), c.image.as_deref().unwrap_or_default());
            t.set(meta("pod_container_port_name"), cp.name.as_deref().unwrap_or_default());
            t.set(meta("pod_container_port_number"), port.to_string());
            let protocol = endpoint_protocol.or(cp.protocol.as_deref());
            t.set(meta("pod_container_port_protocol"), protocol.unwrap_or_default());
            t.set(meta("pod_container_init"), if init { "true" } else { "false" });
        }
    }
}

// === endpoints ===

/// The targets of an Endpoints object (`Endpoints.buildEndpoints`, `endpoints.go`).
///
/// Group labels: namespace, the Endpoints' object meta labels (`__meta_kubernetes_endpoints_*`),
/// the labels of the Service with the same name if known, and namespace metadata. For every subset,
/// every port and every address, one target at `ip:port` with the port's name and protocol and
/// `__meta_kubernetes_endpoint_ready` (`true` for `addresses`, `false` for `notReadyAddresses`),
/// plus hostname, node name and target reference kind/name when set, and the node's labels with
/// `attach_metadata.node` (from `nodeName`, else a `Node` target reference). An address whose
/// target reference is a known pod also gets the pod's labels and, if a container declares that
/// port, the container's. Finally every declared container port of those pods that no endpoint
/// port covered becomes its own target at `podIP:port`.
pub fn endpoints_targets(eps: &Endpoints, lookup: &dyn Lookup) -> Vec<Labels> {
    let ns = eps.metadata.namespace.as_deref().unwrap_or_default();
    let mut group = Labels::new();
    group.set(meta("namespace"), ns);
    if let Some(svc) = eps.metadata.name.as_deref().and_then(|n| lookup.service(ns, n)) {
        service_labels(&mut group, &svc);
    }
    object_meta_labels(&mut group, "endpoints", &eps.metadata);
    namespace_labels(&mut group, lookup.namespace(ns).as_deref());

    let mut seen = SeenPods::default();
    let mut out = Vec::new();
    for subset in eps.subsets.as_deref().unwrap_or_default() {
        for port in subset.ports.as_deref().unwrap_or_default() {
            let ready = subset.addresses.as_deref().unwrap_or_default().iter().map(|a| (a, "true"));
            // "Although this generates the same target again, as it was generated in the loop
            // above, it causes the ready meta label to be overridden." (endpoints.go)
            let not_ready =
                subset.not_ready_addresses.as_deref().unwrap_or_default().iter().map(|a| (a, "false"));
            for (addr, ready) in ready.chain(not_ready) {
                let mut t = Labels::new();
                t.set(ADDRESS, join_host_port(&addr.ip, port.port));
                t.set(meta("endpoint_port_name"), port.name.as_deref().unwrap_or_default());
                t.set(meta("endpoint_port_protocol"), port.protocol.as_deref().unwrap_or_default());
                t.set(meta("endpoint_ready"), ready);
                if let Some(r) = &addr.target_ref {
                    t.set(meta("endpoint_address_target_kind"), r.kind.as_deref().unwrap_or_default());
                    t.set(meta("endpoint_address_target_name"), r.name.as_deref().unwrap_or_default());
                }
                if let Some(n) = &addr.node_name {
                    t.set(meta("endpoint_node_name"), n.as_str());
                }
                if let Some(h) = &addr.hostname {
                    t.set(meta("endpoint_hostname"), h.as_str());
                }
                let node_name = addr.node_name.as_deref().or_else(|| node_ref_name(addr.target_ref.as_ref()));
                node_labels(&mut t, node_name.and_then(|n| lookup.node(n)).as_deref());
                if let Some(pod) = resolve_pod(lookup, addr.target_ref.as_ref()) {
                    seen.add(&pod, Some(port.port));
                    add_pod_container_labels(
                        &mut t,
                        &pod,
                        port.port,
                        Some(port.protocol.as_deref().unwrap_or_default()),
                    );
                }
                out.push(merged(&group, t));
            }
        }
    }
    seen.uncovered_targets(&group, &mut out);
    out
}

/// The name of a `Node` target reference.
fn node_ref_name(r: Option<&ObjectReference>) -> Option<&str> {
    r.filter(|r| r.kind.as_deref() == Some("Node")).and_then(|r| r.name.as_deref())
}

// === endpointslice ===

/// The targets of a `discovery.k8s.io/v1` EndpointSlice (`EndpointSlice.buildEndpointSlice`,
/// `endpointslice.go`).
///
/// Group labels: namespace, `__meta_kubernetes_endpointslice_address_type`, the slice's object
/// meta labels, the labels of the Service named by its `kubernetes.io/service-name` label if
/// known, and namespace metadata. For every endpoint, every port and every address, one target at
/// `address:port` (the bare address when the port has no number) with the port's name, protocol,
/// number and app protocol, the endpoint's `ready`/`serving`/`terminating` conditions when set
/// (`"true"`/`"false"`), hostname, node name, zone, target reference kind/name, and
/// `endpoint_topology_<k>` plus `endpoint_topology_present_<k>` from `deprecatedTopology`. Hints
/// are not exposed. Node labels with `attach_metadata.node` come from a `Node` target reference,
/// else from `nodeName`. Pods are handled as for `endpoints`. A slice without ports yields no
/// targets, as in Prometheus (its loop runs over ports).
pub fn endpointslice_targets(slice: &EndpointSlice, lookup: &dyn Lookup) -> Vec<Labels> {
    let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
    let mut group = Labels::new();
    group.set(meta("namespace"), ns);
    group.set(meta("endpointslice_address_type"), slice.address_type.as_str());
    object_meta_labels(&mut group, "endpointslice", &slice.metadata);
    let svc_name = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
    if let Some(svc) = svc_name.and_then(|n| lookup.service(ns, n)) {
        service_labels(&mut group, &svc);
    }
    namespace_labels(&mut group, lookup.namespace(ns).as_deref());

    let mut seen = SeenPods::default();
    let mut out = Vec::new();
    let ports = slice.ports.as_deref().unwrap_or_default();
    for ep in &slice.endpoints {
        for port in ports {
            for addr in &ep.addresses {
                let mut t = Labels::new();
                match port.port {
                    Some(p) => t.set(ADDRESS, join_host_port(addr, p)),
                    None => t.set(ADDRESS, addr.as_str()),
                }
                if let Some(n) = &port.name {
                    t.set(meta("endpointslice_port_name"), n.as_str());
                }
                if let Some(p) = &port.protocol {
                    t.set(meta("endpointslice_port_protocol"), p.as_str());
                }
                if let Some(p) = port.port {
                    t.set(meta("endpointslice_port"), p.to_string());
                }
                if let Some(p) = &port.app_protocol {
                    t.set(meta("endpointslice_port_app_protocol"), p.as_str());
                }
                let conditions = ep.conditions.as_ref();
                for (name, value) in [
                    ("ready", conditions.and_then(|c| c.ready)),
                    ("serving", conditions.and_then(|c| c.serving)),
                    ("terminating", conditions.and_then(|c| c.terminating)),
                ] {
                    if let Some(v) = value {
                        t.set(meta(&format!("endpointslice_endpoint_conditions_{name}")), v.to_string());
                    }
                }
                if let Some(h) = &ep.hostname {
                    t.set(meta("endpointslice_endpoint_hostname"), h.as_str());
                }
                if let Some(r) = &ep.target_ref {
                    t.set(meta("endpointslice_address_target_kind"), r.kind.as_deref().unwrap_or_default());
                    t.set(meta("endpointslice_address_target_name"), r.name.as_deref().unwrap_or_default());
                }
                if let Some(n) = &ep.node_name {
                    t.set(meta("endpointslice_endpoint_node_name"), n.as_str());
                }
                if let Some(z) = &ep.zone {
                    t.set(meta("endpointslice_endpoint_zone"), z.as_str());
                }
                for (k, v) in ep.deprecated_topology.iter().flatten() {
                    let n = sanitize_label_name(k);
                    t.set(meta(&format!("endpointslice_endpoint_topology_{n}")), v.as_str());
                    t.set(meta(&format!("endpointslice_endpoint_topology_present_{n}")), PRESENT);
                }
                let node_name = node_ref_name(ep.target_ref.as_ref()).or(ep.node_name.as_deref());
                node_labels(&mut t, node_name.and_then(|n| lookup.node(n)).as_deref());
                if let Some(pod) = resolve_pod(lookup, ep.target_ref.as_ref()) {
                    seen.add(&pod, port.port);
                    if let Some(p) = port.port {
                        add_pod_container_labels(&mut t, &pod, p, None);
                    } else {
                        for (name, value) in
                            pod_labels(&pod).iter().map(|l| (l.name.clone(), l.value.clone()))
                        {
                            t.set(name, value);
                        }
                    }
                }
                out.push(merged(&group, t));
            }
        }
    }
    seen.uncovered_targets(&group, &mut out);
    out
}
