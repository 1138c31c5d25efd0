//! The watch loop behind [`super::spawn`]: the kube client, one reflector store per watched
//! resource and namespace, and a builder task that turns the stores into the published targets.
//!
//! What this is: plumbing. Each watch task runs kube-runtime's `watcher` (LIST, then WATCH from the
//! list's resourceVersion with bookmarks; a `410 Gone` event re-lists; errors back off) and applies
//! its events to a `reflector` store it owns. Any change wakes the builder, which rebuilds the
//! whole target list from the stores with the pure functions of `targets.rs` and publishes it if it
//! differs. What this is not: the label rules (`targets.rs`) or the config (`kubernetes.rs`).
//!
//! Rebuilding everything on a change costs O(objects) per change, the same order as publishing the
//! full list, which the `Discovered` channel needs anyway; wake-ups that arrive while a rebuild runs
//! collapse into one (a `Notify` holds at most one permit), so a burst of events costs a few
//! rebuilds, not one per event.

use std::fmt::Debug;
use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::targets::{self, Lookup};
use super::{KubernetesSdConfig, KubernetesSdError, Role, Selector};
use crate::config::common::{HttpClientConfig, ProxyConfig, ProxyUrl};
use crate::discovery::Discovered;
use crate::http_client::proxy::Proxy;
use crate::labels::Labels;

/// How long to wait before listing again after a watch could not resume (410 on the watch request
/// itself). kube-runtime's own backoff does not cover this path, see [`run_watch`].
const RELIST_DELAY: Duration = Duration::from_secs(1);

/// Builds the kube client: from `kubeconfig_file`, from `api_server` with the config's auth and
/// TLS, or in-cluster (service account token and CA under [`super::SERVICE_ACCOUNT_DIR`], API
/// server from `KUBERNETES_SERVICE_HOST`/`_PORT`), as Prometheus chooses.
///
/// kube re-reads a token file at most a minute after it changes (client-go does the same), so a
/// rotated service-account or `bearer_token_file` token is picked up; the in-cluster CA file is
/// re-read the same way.
pub(super) async fn client(cfg: &KubernetesSdConfig) -> Result<Client, KubernetesSdError> {
    // The proxy, as Prometheus chooses it: with `api_server`, the config's proxy settings (none
    // unless set); otherwise client-go's: the kubeconfig cluster's `proxy-url`, else the
    // `HTTPS_PROXY`/`NO_PROXY` environment.
    let env_proxy = || ProxyConfig { proxy_from_environment: true, ..Default::default() };
    let (mut config, proxy) = if let Some(path) = &cfg.kubeconfig_file {
        let bad = |e: &dyn std::fmt::Display| KubernetesSdError::Kubeconfig {
            path: path.clone(),
            reason: e.to_string(),
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(&e))?;
        let proxy = kubeconfig_proxy(&kc).unwrap_or_else(env_proxy);
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| bad(&e))?;
        (config, proxy)
    } else if let Some(url) = &cfg.api_server {
        (api_server_config(url, &cfg.http).await?, cfg.http.proxy.clone())
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none()
        && std::env::var_os("KUBECONFIG").is_some()
    {
        // Prometheus uses the in-cluster settings here. Outside a cluster (no
        // KUBERNETES_SERVICE_HOST) with $KUBECONFIG set, trawl uses that kubeconfig instead, so
        // the DaemonSet config runs unchanged on a workstation or in a test; in a pod nothing
        // changes.
        let kc = kube::config::Kubeconfig::read()
            .map_err(|e| KubernetesSdError::InCluster(format!("$KUBECONFIG: {e}")))?;
        let proxy = kubeconfig_proxy(&kc).unwrap_or_else(env_proxy);
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| KubernetesSdError::InCluster(format!("$KUBECONFIG: {e}")))?;
        (config, proxy)
    } else {
        (in_cluster()?, env_proxy())
    };
    // kube would take HTTPS_PROXY itself, without NO_PROXY and failing without its proxy
    // feature; the decision is ours.
    config.proxy_url = None;
    let proxy = Proxy::from_config(&proxy).map_err(|e| KubernetesSdError::Client(e.to_string()))?;
    let proxied =
        proxy.select(&config.cluster_url).map_err(|e| KubernetesSdError::Client(e.to_string()))?.is_some();
    if !proxied {
        return Client::try_from(config).map_err(|e| KubernetesSdError::Client(e.to_string()));
    }
    proxied_client(config, proxy).map_err(|e| KubernetesSdError::Client(e.to_string()))
}

/// What to do when there is no in-cluster config.
const API_SERVER_WAYS: &str = "point trawl at an API server in one of three ways: run it in a pod (it \
    uses the pod's service account), set KUBECONFIG to a kubeconfig file, or set `kubeconfig_file` or \
    `api_server` in this kubernetes_sd_configs entry";

/// The in-cluster config (client-go's `InClusterConfig`), or what is missing, by name, and how to
/// point trawl at an API server instead.
fn in_cluster() -> Result<kube::Config, KubernetesSdError> {
    if let Some(var) = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"]
        .into_iter()
        .find(|v| std::env::var_os(v).is_none())
    {
        return Err(KubernetesSdError::InCluster(format!(
            "{var} is not set, so trawl is not running in a Kubernetes pod; {API_SERVER_WAYS}"
        )));
    }
    kube::Config::incluster().map_err(|e| {
        use kube::config::InClusterError as E;
        let dir = super::SERVICE_ACCOUNT_DIR;
        let what = match &e {
            E::ReadDefaultNamespace(io) => format!("cannot read {dir}/namespace: {io}"),
            E::ReadCertificateBundle(io) => format!("cannot read {dir}/ca.crt: {io}"),
            other => other.to_string(),
        };
        KubernetesSdError::InCluster(format!(
            "{what} (is the service account token mounted? automountServiceAccountToken must not be \
             false); or {API_SERVER_WAYS}"
        ))
    })
}

/// One line for a failed LIST or WATCH: the API server's code, reason and message and what was
/// asked for, with what to do for the usual codes (kube's own `Display` carries a debug dump of
/// the whole `Status`).
fn describe(e: &watcher::Error, what: &What) -> String {
    let (verb, err) = match e {
        watcher::Error::InitialListFailed(k) => ("list", k),
        watcher::Error::WatchStartFailed(k) | watcher::Error::WatchFailed(k) => ("watch", k),
        watcher::Error::WatchError(status) => return status_line("watch", status, what),
        watcher::Error::NoResourceVersion => return format!("cannot watch {}: {e}", what.scope()),
    };
    match err {
        kube::Error::Api(status) => status_line(verb, status, what),
        other => format!("cannot {verb} {}: {other}", what.scope()),
    }
}

fn status_line(verb: &str, s: &kube::core::Status, what: &What) -> String {
    let code = s.code;
    // kube fills this reason in when the body was not a `Status` (e.g. a proxy's 404 page).
    let reason = if s.reason.is_empty() || s.reason == "Failed to parse error data" {
        hyper::StatusCode::from_u16(code).ok().and_then(|c| c.canonical_reason()).unwrap_or("").to_owned()
    } else {
        s.reason.clone()
    };
    let mut line = format!("the API server refused to {verb} {}: {code} {reason}", what.scope());
    let message = s.message.trim();
    if !message.is_empty() {
        line.push_str(": ");
        line.push_str(message);
    }
    let group = if what.resource == "endpointslices" { "discovery.k8s.io" } else { "\"\" (core)" };
    match code {
        401 => line.push_str(" (the credentials were not accepted: check the token or kubeconfig)"),
        403 => line.push_str(&format!(
            " (grant trawl's service account list and watch on {} in API group {group}: deploy/rbac.yaml \
             and the Helm chart grant what the configured roles need)",
            what.resource
        )),
        404 => line.push_str(&format!(" (the API server does not serve {} at this address)", what.resource)),
        _ => {}
    }
    line
}

/// The `proxy-url` of the kubeconfig's current cluster, as a fixed proxy.
fn kubeconfig_proxy(kc: &kube::config::Kubeconfig) -> Option<ProxyConfig> {
    let context = kc.current_context.as_deref()?;
    let ctx = kc.contexts.iter().find(|c| c.name == context)?.context.as_ref()?;
    let cluster = kc.clusters.iter().find(|c| c.name == ctx.cluster)?.cluster.as_ref()?;
    let url = cluster.proxy_url.as_deref().filter(|u| !u.is_empty())?;
    Some(ProxyConfig { proxy_url: Some(ProxyUrl::from(url)), ..Default::default() })
}

/// kube's client stack (base URI, auth, extra headers, kube's TLS and timeouts) over trawl's
/// proxy connector, so a proxy gets the same CONNECT (with `proxy_connect_header`) and
/// absolute-form requests as scrapes do.
fn proxied_client(
    config: kube::Config,
    proxy: Proxy,
) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
    use kube::client::ConfigExt as _;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // An https:// proxy is verified with the cluster's TLS settings, as Go's transport uses
    // its TLSClientConfig for the proxy too.
    let proxy_tls = std::sync::Arc::new(config.rustls_client_config()?);
    // A plain-http API server is reached in absolute form through the proxy: its credentials go
    // on every request, as Go's transport adds them (tunnels carry them on the CONNECT instead).
    let proxy_auth = match config.cluster_url.scheme_str() {
        Some("http") => proxy.select(&config.cluster_url)?.and_then(|p| p.authorization.clone()),
        _ => None,
    };
    let connector = crate::http_client::proxy::Connector::new(http, std::sync::Arc::new(proxy), proxy_tls);
    let https = config.rustls_https_connector_with_connector(connector)?;
    let mut timeouts = hyper_timeout::TimeoutConnector::new(https);
    timeouts.set_connect_timeout(config.connect_timeout);
    timeouts.set_read_timeout(config.read_timeout);
    timeouts.set_write_timeout(config.write_timeout);
    let pooled: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(timeouts);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_request(move |mut req: hyper::Request<kube::client::Body>| {
            if let Some(auth) = &proxy_auth {
                req.headers_mut().insert(hyper::header::PROXY_AUTHORIZATION, auth.clone());
            }
            req
        })
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .service(pooled);
    Ok(Client::new(service, config.default_namespace))
}

/// Checks that `path` can be read now, so a typo fails at start rather than on every request.
fn readable(path: &Path) -> Result<(), KubernetesSdError> {
    std::fs::metadata(path)
        .and_then(|m| if m.is_file() { Ok(()) } else { Err(std::io::Error::other("not a regular file")) })
        .and_then(|()| std::fs::File::open(path).map(drop))
        .map_err(|e| KubernetesSdError::File { path: path.to_owned(), reason: e.to_string() })
}

/// The kube config for an explicit `api_server`: written as an in-memory kubeconfig so kube's own
/// loader reads the CA and client certificate files and checks them.
async fn api_server_config(url: &str, http: &HttpClientConfig) -> Result<kube::Config, KubernetesSdError> {
    let mut cluster = serde_json::json!({ "server": url });
    let mut user = serde_json::Map::new();
    let tls = http.tls_config.clone().unwrap_or_default();
    if let Some(ca) = &tls.ca_file {
        readable(ca)?;
        cluster["certificate-authority"] = ca.display().to_string().into();
    }
    if tls.insecure_skip_verify {
        cluster["insecure-skip-tls-verify"] = true.into();
    }
    if let Some(name) = &tls.server_name {
        cluster["tls-server-name"] = name.as_str().into();
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        readable(cert)?;
        readable(key)?;
        user.insert("client-certificate".into(), cert.display().to_string().into());
        user.insert("client-key".into(), key.display().to_string().into());
    }
    let auth = http.authorization.as_ref();
    let token_file = http.bearer_token_file.as_ref().or(auth.and_then(|a| a.credentials_file.as_ref()));
    let token = http.bearer_token.as_ref().or(auth.and_then(|a| a.credentials.as_ref()));
    if let Some(f) = token_file {
        let content = std::fs::read_to_string(f)
            .map_err(|e| KubernetesSdError::File { path: f.clone(), reason: e.to_string() })?;
        let trimmed = content.trim();
        if trimmed.is_empty() {
            return Err(KubernetesSdError::File {
                path: f.clone(),
                reason: "the token file is empty".into(),
            });
        }
        if trimmed.len() == content.len() {
            // kube re-reads it at most a minute after it changes, so rotation is followed.
            user.insert("tokenFile".into(), f.display().to_string().into());
        } else {
            // Prometheus trims secret files (strings.TrimSpace); kube sends a token file as is, and
            // a trailing newline (`kubectl create token … > file`) makes an invalid header. So the
            // trimmed token is used as read now; projected service account tokens, which rotate,
            // have no surrounding whitespace and take the branch above.
            tracing::warn!(
                path = %f.display(),
                "Token file has surrounding whitespace; using its trimmed content, and a rotated token needs a restart."
            );
            user.insert("token".into(), trimmed.into());
        }
    } else if let Some(t) = token {
        user.insert("token".into(), t.expose().into());
    }
    if let Some(b) = &http.basic_auth {
        // Read once here: kube keeps basic-auth credentials for the client's lifetime, unlike
        // Prometheus, which re-reads password_file on every request.
        let password = match (&b.password, &b.password_file) {
            (_, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| KubernetesSdError::File { path: f.clone(), reason: e.to_string() })?
                .trim()
                .to_owned(),
            (Some(p), None) => p.expose().to_owned(),
            (None, None) => String::new(),
        };
        user.insert("username".into(), b.username.as_str().into());
        user.insert("password".into(), password.into());
    }
    let kubeconfig = serde_json::json!({
        "clusters": [{ "name": "sd", "cluster": cluster }],
        "users": [{ "name": "sd", "user": user }],
        "contexts": [{ "name": "sd", "context": { "cluster": "sd", "user": "sd" } }],
        "current-context": "sd",
    });
    let client_error = |e: &dyn std::fmt::Display| KubernetesSdError::Client(e.to_string());
    let kc: kube::config::Kubeconfig = serde_json::from_value(kubeconfig).map_err(|e| client_error(&e))?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| client_error(&e))?;
    // Let kube re-read the CA bundle periodically, as it does in-cluster, so CA rotation works.
    config.root_cert_file = tls.ca_file.clone();
    Ok(config)
}

/// The namespaces to watch; empty means all (Prometheus' `getNamespaces`). `own_namespace` reads
/// `<sa_dir>/namespace`, which must exist and not be empty.
pub(super) fn namespaces(cfg: &KubernetesSdConfig, sa_dir: &Path) -> Result<Vec<String>, KubernetesSdError> {
    let mut out = cfg.namespaces.names.clone();
    if cfg.namespaces.own_namespace {
        let path = sa_dir.join("namespace");
        let own = std::fs::read_to_string(&path).map_err(|e| KubernetesSdError::File {
            path: path.clone(),
            reason: format!("could not determine the pod's namespace: {e}"),
        })?;
        let own = own.trim();
        if own.is_empty() {
            return Err(KubernetesSdError::File {
                path,
                reason: "could not read own namespace name (empty file)".into(),
            });
        }
        out.push(own.to_owned());
    }
    // A namespace named twice would be watched twice; once is enough.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|n| seen.insert(n.clone()));
    Ok(out)
}

/// The watcher settings of one resource: its selector, sent on both LIST and WATCH.
fn watcher_config(sel: Option<&Selector>) -> watcher::Config {
    let mut wc = watcher::Config::default();
    if let Some(f) = sel.and_then(|s| s.field.as_deref()) {
        wc = wc.fields(f);
    }
    if let Some(l) = sel.and_then(|s| s.label.as_deref()) {
        wc = wc.labels(l);
    }
    wc
}

/// The single node a pod field selector pins the pods to, if it is exactly `spec.nodeName=<n>`.
fn pinned_node(cfg: &KubernetesSdConfig) -> Option<String> {
    let sel = cfg.selector(Role::Pod)?;
    if sel.label.is_some() {
        return None;
    }
    let f = sel.field.as_deref()?.trim();
    let name = f.strip_prefix("spec.nodeName==").or_else(|| f.strip_prefix("spec.nodeName="))?;
    (!name.is_empty() && !name.contains([',', '=', '!'])).then(|| name.to_owned())
}

/// What a watch task watches, for logs.
#[derive(Clone, Debug)]
struct What {
    resource: &'static str,
    namespace: Option<String>,
}

impl What {
    /// `pods in namespace a`, `pods in all namespaces`, `nodes`.
    fn scope(&self) -> String {
        match (&self.namespace, self.resource) {
            (Some(ns), r) => format!("{r} in namespace {ns}"),
            (None, r @ ("nodes" | "namespaces")) => r.to_owned(),
            (None, r) => format!("{r} in all namespaces"),
        }
    }
}

/// One reflector store per watched scope (a namespace, or the whole cluster).
struct Watched<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash,
{
    scopes: Vec<(Option<String>, Store<K>)>,
}

impl<K> Watched<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    /// The object `namespace/name` (`namespace` `None` for cluster-scoped objects).
    fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let key = match namespace {
            Some(ns) => ObjectRef::new(name).within(ns),
            None => ObjectRef::new(name),
        };
        self.scopes
            .iter()
            .filter(|(scope, _)| scope.is_none() || namespace.is_none() || scope.as_deref() == namespace)
            .find_map(|(_, store)| store.get(&key))
    }

    /// Every object, ordered by namespace and name so the published list is stable.
    fn sorted(&self) -> Vec<Arc<K>> {
        let mut all: Vec<Arc<K>> = self.scopes.iter().flat_map(|(_, s)| s.state()).collect();
        all.sort_by(|a, b| {
            let key = |o: &K| (o.meta().namespace.clone(), o.meta().name.clone());
            key(a).cmp(&key(b))
        });
        all
    }

    async fn ready(&self) {
        for (_, store) in &self.scopes {
            // An error means the writer is gone, i.e. the task was cancelled; nothing to wait for.
            let _ = store.wait_until_ready().await;
        }
    }
}

/// Starts a watch of `api` feeding a new store; returns the store.
fn watch_into<K>(
    api: Api<K>,
    wc: watcher::Config,
    what: What,
    changed: Arc<Notify>,
    cancel: CancellationToken,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    let writer = Writer::default();
    let store = writer.as_reader();
    tokio::spawn(run_watch(api, wc, writer, what, changed, cancel));
    store
}

/// Whether the watch could not even start because its resourceVersion is gone.
///
/// kube-runtime 5.0 handles a `410` that arrives as an ERROR event in the watch stream (it goes
/// back to listing), but when the watch request itself is answered with HTTP 410 it keeps retrying
/// the watch from the same expired resourceVersion forever (`State::InitListed` keeps the version
/// on `WatchStartFailed`). That answer is legal (API servers give it for a version older than
/// their watch cache), so [`run_watch`] restarts the watcher, which lists again.
fn is_gone_on_watch_start(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 410)
}

/// Runs one watch until `cancel`: applies its events to `writer`'s store and wakes the builder on
/// every change. Errors are logged and retried: kube-runtime's `default_backoff` waits 0.8 s,
/// doubling up to 30 s, reset by the next success (client-go's parameters).
async fn run_watch<K>(
    api: Api<K>,
    wc: watcher::Config,
    mut writer: Writer<K>,
    what: What,
    changed: Arc<Notify>,
    cancel: CancellationToken,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    loop {
        // managedFields are the biggest part of most objects and no label comes from them.
        let mut events = watcher(api.clone(), wc.clone())
            .modify(|o: &mut K| o.managed_fields_mut().clear())
            .default_backoff()
            .boxed();
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(ev)) => {
                    writer.apply_watcher_event(&ev);
                    if !matches!(ev, watcher::Event::Init | watcher::Event::InitApply(_)) {
                        changed.notify_one();
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        error = describe(&e, &what),
                        "Kubernetes watch failed; retrying with backoff."
                    );
                    if is_gone_on_watch_start(&e) {
                        break;
                    }
                }
                // The watcher stream does not end; if it did, start over.
                None => break,
            }
        }
        tracing::info!(
            resource = what.resource,
            namespace = what.namespace.as_deref().unwrap_or("(all)"),
            "Kubernetes watch cannot resume; listing again."
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RELIST_DELAY) => {}
        }
    }
}

/// The stores one SD config reads. `nodes`/`services`/… are the role's own objects or the related
/// ones Prometheus watches for that role; `node_meta` and `namespaces` exist with `attach_metadata`.
#[derive(Default)]
struct Sources {
    pods: Option<Watched<Pod>>,
    nodes: Option<Watched<Node>>,
    services: Option<Watched<Service>>,
    endpoints: Option<Watched<Endpoints>>,
    slices: Option<Watched<EndpointSlice>>,
    node_meta: Option<Watched<Node>>,
    namespaces: Option<Watched<Namespace>>,
}

impl Lookup for Sources {
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.as_ref()?.get(Some(namespace), name)
    }
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.as_ref()?.get(Some(namespace), name)
    }
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.node_meta.as_ref()?.get(None, name)
    }
    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.as_ref()?.get(None, name)
    }
}

impl Sources {
    async fn ready(&self) {
        if let Some(w) = &self.pods {
            w.ready().await;
        }
        if let Some(w) = &self.nodes {
            w.ready().await;
        }
        if let Some(w) = &self.services {
            w.ready().await;
        }
        if let Some(w) = &self.endpoints {
            w.ready().await;
        }
        if let Some(w) = &self.slices {
            w.ready().await;
        }
        if let Some(w) = &self.node_meta {
            w.ready().await;
        }
        if let Some(w) = &self.namespaces {
            w.ready().await;
        }
    }

    /// The full target list of the role, from the stores as they are now.
    fn build(&self, role: Role) -> Vec<Labels> {
        let mut out = Vec::new();
        match role {
            Role::Pod => {
                for pod in self.pods.iter().flat_map(Watched::sorted) {
                    let node =
                        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).and_then(|n| self.node(n));
                    let ns = pod.metadata.namespace.as_deref().and_then(|n| self.namespace(n));
                    out.extend(targets::pod_targets(&pod, node.as_deref(), ns.as_deref()));
                }
            }
            Role::Node => {
                for node in self.nodes.iter().flat_map(Watched::sorted) {
                    out.extend(targets::node_targets(&node));
                }
            }
            Role::Service => {
                for svc in self.services.iter().flat_map(Watched::sorted) {
                    let ns = svc.metadata.namespace.as_deref().and_then(|n| self.namespace(n));
                    out.extend(targets::service_targets(&svc, ns.as_deref()));
                }
            }
            Role::Endpoints => {
                for eps in self.endpoints.iter().flat_map(Watched::sorted) {
                    out.extend(targets::endpoints_targets(&eps, self));
                }
            }
            Role::EndpointSlice => {
                for slice in self.slices.iter().flat_map(Watched::sorted) {
                    out.extend(targets::endpointslice_targets(&slice, self));
                }
            }
        }
        out
    }
}

/// Starts the watches `cfg`'s role needs and the builder; returns the targets channel.
pub(super) fn start(
    client: Client,
    cfg: KubernetesSdConfig,
    namespaces: Vec<String>,
    cancel: CancellationToken,
) -> watch::Receiver<Discovered> {
    // Internal token: cancelled with the caller's, or when nobody listens any more.
    let cancel = cancel.child_token();
    let changed = Arc::new(Notify::new());
    let role = cfg.role;
    let mut watches = Vec::new();
    let ctx = Ctx { client: &client, namespaces: &namespaces, changed: &changed, cancel: &cancel };

    let mut sources = Sources::default();
    let needs_pods = matches!(role, Role::Pod | Role::Endpoints | Role::EndpointSlice);
    let needs_services = matches!(role, Role::Service | Role::Endpoints | Role::EndpointSlice);
    if needs_pods {
        sources.pods = Some(ctx.namespaced("pods", cfg.selector(Role::Pod), &mut watches));
    }
    if needs_services {
        sources.services = Some(ctx.namespaced("services", cfg.selector(Role::Service), &mut watches));
    }
    match role {
        Role::Endpoints => {
            sources.endpoints =
                Some(ctx.namespaced("endpoints", cfg.selector(Role::Endpoints), &mut watches));
        }
        Role::EndpointSlice => {
            let sel = cfg.selector(Role::EndpointSlice);
            sources.slices = Some(ctx.namespaced("endpointslices", sel, &mut watches));
        }
        Role::Node => {
            sources.nodes = Some(ctx.cluster(
                "nodes",
                vec![(None, watcher_config(cfg.selector(Role::Node)))],
                &mut watches,
            ));
        }
        Role::Pod | Role::Service => {}
    }
    if cfg.attach_metadata.node && needs_pods {
        // Prometheus watches every node matching the node selector. When the pods are pinned to
        // one node by `spec.nodeName=<n>` and no node selector is set, only that node can ever be
        // looked up, so watching just it (`metadata.name=<n>`) gives the same labels and keeps a
        // DaemonSet pod's memory and API load independent of the cluster size.
        let wc = match (cfg.selector(Role::Node), pinned_node(&cfg)) {
            (None, Some(n)) if role == Role::Pod => {
                watcher::Config::default().fields(&format!("metadata.name={n}"))
            }
            (sel, _) => watcher_config(sel),
        };
        sources.node_meta = Some(ctx.cluster("nodes", vec![(None, wc)], &mut watches));
    }
    if cfg.attach_metadata.namespace && role != Role::Node {
        // Only the watched namespaces can be looked up, so with `names` watch just those.
        let scopes = if namespaces.is_empty() {
            vec![(None, watcher::Config::default())]
        } else {
            namespaces
                .iter()
                .map(|n| (Some(n.clone()), watcher::Config::default().fields(&format!("metadata.name={n}"))))
                .collect()
        };
        sources.namespaces = Some(ctx.cluster("namespaces", scopes, &mut watches));
    }

    tracing::info!(
        role = role.as_str(),
        watches = watches.len(),
        resources = ?watches,
        "Kubernetes discovery started."
    );
    let (tx, rx) = watch::channel(Discovered::default());
    tokio::spawn(run_builder(sources, role, tx, changed, cancel));
    rx
}

/// What [`start`] needs to start watches.
struct Ctx<'a> {
    client: &'a Client,
    namespaces: &'a [String],
    changed: &'a Arc<Notify>,
    cancel: &'a CancellationToken,
}

impl Ctx<'_> {
    /// Watches of a namespaced resource: one per configured namespace, or one cluster-wide.
    fn namespaced<K>(
        &self,
        resource: &'static str,
        sel: Option<&Selector>,
        watches: &mut Vec<String>,
    ) -> Watched<K>
    where
        K: Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Eq + Hash + Clone + Default,
    {
        let wc = watcher_config(sel);
        let scopes: Vec<Option<String>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        };
        let scopes = scopes
            .into_iter()
            .map(|ns| {
                let api = match &ns {
                    Some(ns) => Api::namespaced(self.client.clone(), ns),
                    None => Api::all(self.client.clone()),
                };
                watches.push(format!("{resource}/{}", ns.as_deref().unwrap_or("*")));
                let what = What { resource, namespace: ns.clone() };
                let store = watch_into(api, wc.clone(), what, self.changed.clone(), self.cancel.clone());
                (ns, store)
            })
            .collect();
        Watched { scopes }
    }

    /// Watches of a cluster-scoped resource, one per (scope label, watcher config).
    fn cluster<K>(
        &self,
        resource: &'static str,
        scopes: Vec<(Option<String>, watcher::Config)>,
        watches: &mut Vec<String>,
    ) -> Watched<K>
    where
        K: Resource<Scope = ClusterResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default,
    {
        let scopes = scopes
            .into_iter()
            .map(|(label, wc)| {
                watches.push(format!("{resource}/{}", label.as_deref().unwrap_or("*")));
                let what = What { resource, namespace: None };
                let store = watch_into(
                    Api::all(self.client.clone()),
                    wc,
                    what,
                    self.changed.clone(),
                    self.cancel.clone(),
                );
                // Cluster-scoped: every store answers for any name.
                (None, store)
            })
            .collect();
        Watched { scopes }
    }
}

/// Publishes the role's targets: first once every store has listed, then after each change that
/// alters them. Stops everything when `cancel` fires or the last receiver is dropped.
async fn run_builder(
    sources: Sources,
    role: Role,
    tx: watch::Sender<Discovered>,
    changed: Arc<Notify>,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tx.closed() => {
            cancel.cancel();
            return;
        }
        _ = sources.ready() => {}
    }
    let first = sources.build(role);
    tracing::info!(role = role.as_str(), targets = first.len(), "Kubernetes discovery synced.");
    // Always announced, even when empty: receivers learn that the initial list is complete.
    tx.send_replace(Arc::new(first));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tx.closed() => {
                cancel.cancel();
                return;
            }
            _ = changed.notified() => {}
        }
        let targets = sources.build(role);
        tx.send_if_modified(|current| {
            if current.as_slice() == targets.as_slice() {
                return false;
            }
            tracing::debug!(role = role.as_str(), targets = targets.len(), "Kubernetes targets changed.");
            *current = Arc::new(targets);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> KubernetesSdConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn pinned_node_only_for_an_exact_node_name_selector() {
        let cases: &[(&str, Option<&str>)] = &[
            ("role: pod\nselectors: [{role: pod, field: spec.nodeName=node-a}]\n", Some("node-a")),
            ("role: pod\nselectors: [{role: pod, field: spec.nodeName==node-a}]\n", Some("node-a")),
            ("role: pod\nselectors: [{role: pod, field: 'spec.nodeName=a,status.phase=Running'}]\n", None),
            ("role: pod\nselectors: [{role: pod, field: spec.nodeName!=node-a}]\n", None),
            ("role: pod\nselectors: [{role: pod, field: spec.nodeName=a, label: x=y}]\n", None),
            ("role: pod\n", None),
        ];
        for (yaml, want) in cases {
            assert_eq!(pinned_node(&cfg(yaml)).as_deref(), *want, "{yaml}");
        }
    }

    #[test]
    fn own_namespace_is_read_from_the_service_account_mount() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg("role: pod\nnamespaces: {names: [a, b], own_namespace: true}\n");
        assert!(matches!(namespaces(&c, dir.path()), Err(KubernetesSdError::File { .. })), "missing file");
        std::fs::write(dir.path().join("namespace"), "").unwrap();
        assert!(namespaces(&c, dir.path()).is_err(), "empty file");
        std::fs::write(dir.path().join("namespace"), "b\n").unwrap();
        assert_eq!(namespaces(&c, dir.path()).unwrap(), ["a", "b"], "own namespace appended once");
        assert!(namespaces(&cfg("role: pod\n"), dir.path()).unwrap().is_empty(), "all namespaces");
    }
}
