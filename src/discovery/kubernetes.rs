//! Kubernetes service discovery (`kubernetes_sd_configs`): the objects of one role, watched
//! through the API server with kube-rs, turned into target label sets with Prometheus'
//! `__meta_kubernetes_*` labels (`discovery/kubernetes/{pod,node,service}.go`).
//!
//! What this is: config, the pure functions that build targets from objects (one per role,
//! table-tested), and a thin watch loop: list, then watch from the resourceVersion, re-list on
//! 410 Gone, back off on errors (kube-runtime's watcher does all three), publishing the full
//! target list of this SD config on every change. With a field selector such as
//! `spec.nodeName=<node>` the API server filters, so a DaemonSet pod holds only its node's pods.
//! What this is not: relabeling ([`crate::relabel`]).
//!
//! Roles implemented: pod, node, service. `endpoints` and `endpointslice` are rejected at config
//! load with a clear error until they are implemented, as is `attach_metadata`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::common::{Authorization, BasicAuth, TlsConfig};
use crate::discovery::Discovered;
use crate::labels::{self, Labels};

const META: &str = "__meta_kubernetes_";
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Setting up a client failed. Retryable: the watch loop tries again with backoff (a kubeconfig
/// or token may appear later, e.g. a projected volume not yet mounted).
#[derive(Debug, thiserror::Error)]
pub enum KubernetesSdError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {0}: {1}")]
    Kubeconfig(String, String),
    /// In-cluster settings are missing.
    #[error("in-cluster config: {0}")]
    InCluster(String),
    /// A file named in the config could not be read.
    #[error("{0}")]
    File(String),
    /// The client could not be built.
    #[error("kubernetes client: {0}")]
    Client(String),
}

/// The object kind to discover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// One target per declared container port (or per port-less container).
    Pod,
    /// One target per node, at the kubelet port.
    Node,
    /// One target per service port.
    Service,
}

impl Role {
    fn parse(s: &str) -> Result<Role, String> {
        match s {
            "pod" => Ok(Role::Pod),
            "node" => Ok(Role::Node),
            "service" => Ok(Role::Service),
            "endpoints" | "endpointslice" | "ingress" => {
                Err(format!("role {s:?} is not supported by trawl yet (supported: pod, node, service)"))
            }
            other => Err(format!("unknown Kubernetes SD role {other:?}")),
        }
    }
}

/// A `selectors` entry: label and field selectors for one role's watch.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// The role the selector applies to.
    pub role: String,
    /// Label selector (`app=x,tier!=db`).
    #[serde(default)]
    pub label: Option<String>,
    /// Field selector (`spec.nodeName=node-a`).
    #[serde(default)]
    pub field: Option<String>,
}

/// `namespaces`: which namespaces to watch (default: all).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    /// Watch the namespace trawl runs in.
    #[serde(default)]
    pub own_namespace: bool,
    /// Namespaces to watch.
    #[serde(default)]
    pub names: Vec<String>,
}

/// One `kubernetes_sd_configs` entry, validated at load.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawKubernetesSdConfig")]
pub struct KubernetesSdConfig {
    /// What to discover.
    pub role: Role,
    /// API server URL (default: in-cluster, or the kubeconfig's).
    pub api_server: Option<String>,
    /// A kubeconfig to use instead of in-cluster settings.
    pub kubeconfig_file: Option<PathBuf>,
    /// Namespaces to watch (empty: all).
    pub namespaces: Namespaces,
    /// Label and field selectors of this role.
    pub label_selector: Option<String>,
    /// The field selector of this role.
    pub field_selector: Option<String>,
    /// Auth for `api_server`.
    pub bearer_token_file: Option<PathBuf>,
    /// Auth for `api_server`.
    pub bearer_token: Option<String>,
    /// Auth for `api_server`.
    pub basic_auth: Option<BasicAuth>,
    /// Auth for `api_server`.
    pub authorization: Option<Authorization>,
    /// TLS for `api_server`.
    pub tls_config: Option<TlsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetesSdConfig {
    role: String,
    #[serde(default)]
    api_server: Option<String>,
    #[serde(default)]
    kubeconfig_file: Option<PathBuf>,
    #[serde(default)]
    namespaces: Option<Namespaces>,
    #[serde(default)]
    selectors: Vec<Selector>,
    #[serde(default)]
    attach_metadata: Option<BTreeMap<String, bool>>,
    #[serde(default)]
    bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    basic_auth: Option<BasicAuth>,
    #[serde(default)]
    authorization: Option<Authorization>,
    #[serde(default)]
    tls_config: Option<TlsConfig>,
    /// Accepted for compatibility; the kube client decides.
    #[serde(default, rename = "follow_redirects")]
    _follow_redirects: Option<bool>,
    /// Accepted for compatibility; the kube client decides.
    #[serde(default, rename = "enable_http2")]
    _enable_http2: Option<bool>,
}

impl TryFrom<RawKubernetesSdConfig> for KubernetesSdConfig {
    type Error = String;
    fn try_from(r: RawKubernetesSdConfig) -> Result<Self, String> {
        let role = Role::parse(&r.role)?;
        if r.api_server.is_some() && r.kubeconfig_file.is_some() {
            return Err("cannot use 'kubeconfig_file' and 'api_server' simultaneously".into());
        }
        let has_auth = r.bearer_token_file.is_some()
            || r.bearer_token.is_some()
            || r.basic_auth.is_some()
            || r.authorization.is_some();
        if r.kubeconfig_file.is_some() && (has_auth || r.tls_config.is_some()) {
            return Err("cannot use custom HTTP client configuration together with 'kubeconfig_file'".into());
        }
        if r.api_server.is_none() && r.kubeconfig_file.is_none() && has_auth {
            return Err(
                "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
                    .into(),
            );
        }
        if let Some(a) = &r.attach_metadata
            && a.values().any(|v| *v)
        {
            return Err("attach_metadata is not supported by trawl yet".into());
        }
        let (mut label, mut field) = (None, None);
        let mut seen = Vec::new();
        for s in &r.selectors {
            // Prometheus: each role may appear once, and only roles the SD role watches.
            if seen.contains(&s.role) {
                return Err(format!("duplicated selector role: {}", s.role));
            }
            seen.push(s.role.clone());
            if s.role != r.role {
                return Err(format!("{} role supports only {} selectors", r.role, r.role));
            }
            label = s.label.clone().filter(|x| !x.is_empty());
            field = s.field.clone().filter(|x| !x.is_empty());
        }
        if let Some(u) = &r.api_server {
            let uri: hyper::Uri = u.parse().map_err(|e| format!("invalid api_server {u:?}: {e}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                return Err(format!("api_server {u:?} must be an http(s) URL"));
            }
        }
        Ok(KubernetesSdConfig {
            role,
            api_server: r.api_server,
            kubeconfig_file: r.kubeconfig_file,
            namespaces: r.namespaces.unwrap_or_default(),
            label_selector: label,
            field_selector: field,
            bearer_token_file: r.bearer_token_file,
            bearer_token: r.bearer_token,
            basic_auth: r.basic_auth,
            authorization: r.authorization,
            tls_config: r.tls_config,
        })
    }
}

/// Prometheus' `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// `addObjectMetaLabels`: name, labels and annotations (with their `present` flags) of an object.
fn object_meta(
    l: &mut Labels,
    role: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    l.set(format!("{META}{role}_name"), meta.name.clone().unwrap_or_default());
    for (k, v) in meta.labels.iter().flatten() {
        let n = sanitize(k);
        l.set(format!("{META}{role}_label_{n}"), v.as_str());
        l.set(format!("{META}{role}_labelpresent_{n}"), "true");
    }
    for (k, v) in meta.annotations.iter().flatten() {
        let n = sanitize(k);
        l.set(format!("{META}{role}_annotation_{n}"), v.as_str());
        l.set(format!("{META}{role}_annotationpresent_{n}"), "true");
    }
}

/// Go's `net.JoinHostPort`: brackets around an IPv6 host.
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The targets of a pod (Prometheus `Pod.buildPod`): none without a pod IP; otherwise one per
/// declared container port and one port-less target per container without ports, init
/// containers included (after the regular ones).
pub fn pod_targets(pod: &Pod) -> Vec<Labels> {
    let status = pod.status.clone().unwrap_or_default();
    let Some(ip) = status.pod_ip.clone().filter(|ip| !ip.is_empty()) else { return Vec::new() };
    let spec = pod.spec.clone().unwrap_or_default();
    let mut group = Labels::new();
    group.set(format!("{META}pod_ip"), ip.as_str());
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.to_lowercase())
        .unwrap_or_else(|| "unknown".into());
    group.set(format!("{META}pod_ready"), ready);
    group.set(format!("{META}pod_phase"), status.phase.clone().unwrap_or_default());
    group.set(format!("{META}pod_node_name"), spec.node_name.clone().unwrap_or_default());
    group.set(format!("{META}pod_host_ip"), status.host_ip.clone().unwrap_or_default());
    group.set(format!("{META}pod_uid"), pod.metadata.uid.clone().unwrap_or_default());
    // The first IPv4 and the first IPv6 of status.podIPs.
    for p in status.pod_ips.iter().flatten() {
        let Ok(addr) = p.ip.parse::<std::net::IpAddr>() else { continue };
        let key = if addr.is_ipv4() { "pod_ipv4" } else { "pod_ipv6" };
        if !group.contains(&format!("{META}{key}")) {
            group.set(format!("{META}{key}"), p.ip.as_str());
        }
    }
    object_meta(&mut group, "pod", &pod.metadata);
    if let Some(owner) = pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true)) {
        group.set(format!("{META}pod_controller_kind"), owner.kind.as_str());
        group.set(format!("{META}pod_controller_name"), owner.name.as_str());
    }
    group.set(format!("{META}namespace"), pod.metadata.namespace.clone().unwrap_or_default());

    let regular = spec.containers.len();
    let mut out = Vec::new();
    for (i, c) in spec.containers.iter().chain(spec.init_containers.iter().flatten()).enumerate() {
        let init = i >= regular;
        let statuses = if init { &status.init_container_statuses } else { &status.container_statuses };
        let id = statuses.iter().flatten().find(|s| s.name == c.name).and_then(|s| s.container_id.clone());
        let mut base = group.clone();
        base.set(format!("{META}pod_container_name"), c.name.as_str());
        base.set(format!("{META}pod_container_id"), id.unwrap_or_default());
        base.set(format!("{META}pod_container_image"), c.image.clone().unwrap_or_default());
        base.set(format!("{META}pod_container_init"), if init { "true" } else { "false" });
        let ports = c.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            let mut t = base;
            // A bare IPv6 address gets brackets, without the trailing ":" JoinHostPort would add.
            let addr = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
            t.set(labels::ADDRESS, addr);
            out.push(t);
            continue;
        }
        for p in ports {
            let mut t = base.clone();
            let port = p.container_port.to_string();
            t.set(labels::ADDRESS, join_host_port(&ip, &port));
            t.set(format!("{META}pod_container_port_number"), port);
            t.set(format!("{META}pod_container_port_name"), p.name.unwrap_or_default());
            t.set(format!("{META}pod_container_port_protocol"), p.protocol.unwrap_or_default());
            out.push(t);
        }
    }
    out
}

/// The target of a node (Prometheus `Node.buildNode`): the first address by type priority, at
/// the kubelet port; `__meta_kubernetes_node_address_<type>` for the first address of each type.
pub fn node_targets(node: &Node) -> Vec<Labels> {
    let status = node.status.clone().unwrap_or_default();
    let addresses = status.addresses.clone().unwrap_or_default();
    // Prometheus' nodeAddress priority.
    let priority = ["InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname"];
    let Some(addr) =
        priority.iter().find_map(|t| addresses.iter().find(|a| a.type_ == *t)).map(|a| a.address.clone())
    else {
        return Vec::new();
    };
    let port = status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|k| k.port).unwrap_or(0);
    let mut t = Labels::new();
    t.set(labels::ADDRESS, join_host_port(&addr, &port.to_string()));
    t.set(
        format!("{META}node_provider_id"),
        node.spec.as_ref().and_then(|s| s.provider_id.clone()).unwrap_or_default(),
    );
    object_meta(&mut t, "node", &node.metadata);
    for a in &addresses {
        let name = format!("{META}node_address_{}", a.type_);
        if !t.contains(&name) {
            t.set(name, a.address.as_str());
        }
    }
    t.set("instance", node.metadata.name.clone().unwrap_or_default());
    vec![t]
}

/// The targets of a service (Prometheus `Service.buildService`): one per port, addressed by the
/// service's DNS name.
pub fn service_targets(svc: &Service) -> Vec<Labels> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let spec = svc.spec.clone().unwrap_or_default();
    let mut group = Labels::new();
    object_meta(&mut group, "service", &svc.metadata);
    group.set(format!("{META}namespace"), ns.as_str());
    let kind = spec.type_.clone().unwrap_or_default();
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let mut t = group.clone();
        t.set(labels::ADDRESS, join_host_port(&format!("{name}.{ns}.svc"), &p.port.to_string()));
        t.set(format!("{META}service_port_name"), p.name.clone().unwrap_or_default());
        t.set(format!("{META}service_port_number"), p.port.to_string());
        t.set(format!("{META}service_port_protocol"), p.protocol.clone().unwrap_or_default());
        t.set(format!("{META}service_type"), kind.as_str());
        if kind == "ExternalName" {
            t.set(format!("{META}service_external_name"), spec.external_name.clone().unwrap_or_default());
        } else {
            t.set(format!("{META}service_cluster_ip"), spec.cluster_ip.clone().unwrap_or_default());
        }
        if kind == "LoadBalancer"
            && let Some(ip) = spec.load_balancer_ip.clone()
        {
            t.set(format!("{META}service_loadbalancer_ip"), ip);
        }
        out.push(t);
    }
    out
}

/// Builds the kube client for `cfg`: kubeconfig, explicit API server, or in-cluster.
async fn client(cfg: &KubernetesSdConfig) -> Result<Client, KubernetesSdError> {
    let config = if let Some(path) = &cfg.kubeconfig_file {
        let shown = path.display().to_string();
        let kc = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| KubernetesSdError::Kubeconfig(shown.clone(), e.to_string()))?;
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| KubernetesSdError::Kubeconfig(shown, e.to_string()))?
    } else if let Some(url) = &cfg.api_server {
        let uri: hyper::Uri = url.parse().map_err(|e| KubernetesSdError::Client(format!("{e}")))?;
        let mut c = kube::Config::new(uri);
        if let Some(f) = &cfg.bearer_token_file {
            // kube re-reads a token file when it changes, so rotation works.
            c.auth_info.token_file = Some(f.display().to_string());
        } else if let Some(t) = &cfg.bearer_token {
            c.auth_info.token = Some(t.clone().into());
        } else if let Some(a) = &cfg.authorization {
            if let Some(f) = &a.credentials_file {
                c.auth_info.token_file = Some(f.display().to_string());
            } else if let Some(t) = &a.credentials {
                c.auth_info.token = Some(t.clone().into());
            }
        } else if let Some(b) = &cfg.basic_auth {
            c.auth_info.username = Some(b.username.clone());
            let pw = match (&b.password, &b.password_file) {
                (_, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| KubernetesSdError::File(format!("{}: {e}", f.display())))?,
                (Some(p), None) => p.clone(),
                (None, None) => String::new(),
            };
            c.auth_info.password = Some(pw.trim().to_owned().into());
        }
        if let Some(tls) = &cfg.tls_config {
            c.accept_invalid_certs = tls.insecure_skip_verify;
            c.tls_server_name = tls.server_name.clone();
            if let Some(ca) = &tls.ca_file {
                c.root_cert_file = Some(ca.clone());
            }
            if tls.cert_file.is_some() || tls.key_file.is_some() {
                return Err(KubernetesSdError::Client(
                    "client certificates for api_server are not supported yet".into(),
                ));
            }
        }
        c
    } else {
        // Prometheus uses the in-cluster settings here. kube's `infer` tries `$KUBECONFIG` (or
        // ~/.kube/config) first and then the in-cluster settings, so a pod behaves exactly as
        // Prometheus does while the same config also runs on a workstation or in a test.
        kube::Config::infer().await.map_err(|e| KubernetesSdError::InCluster(e.to_string()))?
    };
    Client::try_from(config).map_err(|e| KubernetesSdError::Client(e.to_string()))
}

/// The namespaces to watch; empty means all.
fn namespaces(cfg: &KubernetesSdConfig) -> Vec<String> {
    let mut out = cfg.namespaces.names.clone();
    if cfg.namespaces.own_namespace {
        match std::fs::read_to_string(format!("{SERVICE_ACCOUNT_DIR}/namespace")) {
            Ok(ns) => out.push(ns.trim().to_owned()),
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the pod's own namespace; own_namespace ignored.")
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// How long to wait before retrying client setup after a failure.
const CLIENT_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts discovery for `cfg` until `cancel`; every change publishes the full target list.
pub fn spawn(cfg: KubernetesSdConfig, job: String, cancel: CancellationToken) -> watch::Receiver<Discovered> {
    let (tx, rx) = watch::channel(Discovered::default());
    tokio::spawn(async move {
        let client = loop {
            match client(&cfg).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(job, error = %e, "Kubernetes discovery cannot start; retrying.");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(CLIENT_RETRY) => {}
                    }
                }
            }
        };
        let mut wc = watcher::Config::default();
        if let Some(f) = &cfg.field_selector {
            wc = wc.fields(f);
        }
        if let Some(l) = &cfg.label_selector {
            wc = wc.labels(l);
        }
        let nss = namespaces(&cfg);
        let store = Arc::new(std::sync::Mutex::new(Store::default()));
        let mut tasks = Vec::new();
        let scopes: Vec<Option<String>> = if nss.is_empty() || cfg.role == Role::Node {
            vec![None]
        } else {
            nss.into_iter().map(Some).collect()
        };
        for ns in scopes {
            let (store, tx, wc, job, cancel) =
                (store.clone(), tx.clone(), wc.clone(), job.clone(), cancel.clone());
            let client = client.clone();
            tasks.push(match cfg.role {
                Role::Pod => {
                    tokio::spawn(run_watch(api::<Pod>(client, ns), wc, pod_targets, store, tx, job, cancel))
                }
                Role::Service => tokio::spawn(run_watch(
                    api::<Service>(client, ns),
                    wc,
                    service_targets,
                    store,
                    tx,
                    job,
                    cancel,
                )),
                Role::Node => tokio::spawn(run_watch(
                    Api::<Node>::all(client),
                    wc,
                    node_targets,
                    store,
                    tx,
                    job,
                    cancel,
                )),
            });
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    rx
}

fn api<K>(client: Client, ns: Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client, &ns),
        None => Api::all(client),
    }
}

/// Targets per object (`namespace/name` of the object's kind), as Prometheus keeps one target
/// group per object.
#[derive(Default)]
struct Store {
    by_object: BTreeMap<String, Vec<Labels>>,
}

impl Store {
    fn publish(&self, tx: &watch::Sender<Discovered>) {
        let all: Vec<Labels> = self.by_object.values().flatten().cloned().collect();
        tx.send_replace(Arc::new(all));
    }
}

fn key<K: ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

async fn run_watch<K>(
    api: Api<K>,
    wc: watcher::Config,
    targets: fn(&K) -> Vec<Labels>,
    store: Arc<std::sync::Mutex<Store>>,
    tx: watch::Sender<Discovered>,
    job: String,
    cancel: CancellationToken,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    use kube::runtime::WatchStreamExt;
    let mut stream = watcher(api, wc).default_backoff().boxed();
    // Objects listed since the last `Init`, swapped in at `InitDone` (a re-list after 410 Gone
    // replaces the whole set, so objects deleted while disconnected disappear).
    let mut fresh: BTreeMap<String, Vec<Labels>> = BTreeMap::new();
    let mut own: std::collections::BTreeSet<String> = Default::default();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                // The backoff wrapper retries; log and go on.
                tracing::warn!(job, error = %e, "Kubernetes watch failed; retrying with backoff.");
                continue;
            }
        };
        let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
        match ev {
            watcher::Event::Init => fresh.clear(),
            watcher::Event::InitApply(o) => {
                fresh.insert(key(&o), targets(&o));
            }
            watcher::Event::InitDone => {
                for k in std::mem::take(&mut own) {
                    s.by_object.remove(&k);
                }
                own = fresh.keys().cloned().collect();
                s.by_object.extend(std::mem::take(&mut fresh));
                s.publish(&tx);
            }
            watcher::Event::Apply(o) => {
                let k = key(&o);
                own.insert(k.clone());
                s.by_object.insert(k, targets(&o));
                s.publish(&tx);
            }
            watcher::Event::Delete(o) => {
                let k = key(&o);
                own.remove(&k);
                s.by_object.remove(&k);
                s.publish(&tx);
            }
        }
    }
}

#[cfg(test)]
mod tests;
