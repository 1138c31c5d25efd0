//! Kubernetes service discovery (`kubernetes_sd_configs`): the objects of one role, watched through
//! the API server with kube-rs, turned into target label sets with exactly the
//! `__meta_kubernetes_*` labels Prometheus produces.
//!
//! What this is:
//! - [`KubernetesSdConfig`], validated while the YAML is read, with Prometheus' rules and messages
//!   (`discovery/kubernetes/kubernetes.go`, `SDConfig.UnmarshalYAML`).
//! - One pure function per role ([`pod_targets`], [`node_targets`], [`service_targets`],
//!   [`endpoints_targets`], [`endpointslice_targets`]) in `kubernetes/targets.rs`.
//! - [`spawn`]: the watch loop in `kubernetes/watch.rs`. Each watched resource is listed, then
//!   watched from the list's resourceVersion; a `410 Gone` re-lists; errors back off (0.8 s
//!   doubling to 30 s, client-go's parameters). Every change publishes the full target list of the
//!   config on a `watch` channel.
//!
//! What this is not: relabeling ([`crate::discovery`] consumers do that), the `ingress` role, or
//! the `attach_metadata` pod-controller options of Prometheus 3.11 (deployment, job, cronjob
//! names); those are rejected at load.
//!
//! # Cost on the API server
//!
//! One LIST and one long-lived WATCH per watched resource and namespace; a watch is renewed every
//! 290 s (kube-runtime's `timeoutSeconds`) from the last resourceVersion, so without errors there
//! is no further LIST. The role decides the resources, as in Prometheus: `pod` watches pods,
//! `node` nodes, `service` services, `endpoints` endpoints + services + pods, `endpointslice`
//! endpointslices + services + pods; `attach_metadata.node` adds nodes (except for `node` and
//! `service`), `attach_metadata.namespace` adds namespaces (except for `node`). Selectors go to
//! the API server, so a `spec.nodeName=<node>` field selector means only that node's pods are
//! sent and held: memory follows the node, not the cluster.

pub(crate) mod targets;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::common::HttpClientConfig;
use crate::discovery::Discovered;

pub use targets::{
    Lookup, META, Objects, endpoints_targets, endpointslice_targets, node_targets, pod_targets,
    sanitize_label_name, service_targets,
};

/// Where a pod's service account token, CA bundle and namespace are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Kubernetes discovery could not start.
///
/// Not retryable as such: every variant is a configuration or environment problem found by
/// [`spawn`] (an unreadable kubeconfig, no in-cluster environment, a missing CA file), and the same
/// call fails again until that is fixed. Errors from the API server after the start are retried
/// with backoff inside the watch loop and only logged; they never surface here.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesSdError {
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Neither `api_server` nor `kubeconfig_file` is set, and the in-cluster settings (the
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` environment and the service account files) are missing.
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    /// A file named in the config (CA, client certificate, password, own namespace) is unusable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The HTTP client for the API server could not be built.
    #[error("Kubernetes client: {0}")]
    Client(String),
}

/// The kind of object to discover targets from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// One target per declared container port, or per container without ports.
    Pod,
    /// One target per node, at the kubelet port.
    Node,
    /// One target per service port, at the service's DNS name.
    Service,
    /// One target per Endpoints address and port.
    Endpoints,
    /// One target per EndpointSlice address and port.
    EndpointSlice,
}

impl Role {
    /// The role's name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pod => "pod",
            Role::Node => "node",
            Role::Service => "service",
            Role::Endpoints => "endpoints",
            Role::EndpointSlice => "endpointslice",
        }
    }

    fn parse(s: &str) -> Result<Role, String> {
        Ok(match s {
            "pod" => Role::Pod,
            "node" => Role::Node,
            "service" => Role::Service,
            "endpoints" => Role::Endpoints,
            "endpointslice" => Role::EndpointSlice,
            "ingress" => return Err("Kubernetes SD role \"ingress\" is not supported by trawl".into()),
            other => return Err(format!("unknown Kubernetes SD role {other:?}")),
        })
    }

    /// The roles whose selectors this role accepts (`allowedSelectors` in `kubernetes.go`). Pod
    /// accepts node selectors since Prometheus 3.11 ("Select pod nodes by role"); they filter the
    /// node watch of `attach_metadata.node`.
    fn allowed_selectors(self) -> &'static [Role] {
        match self {
            Role::Pod => &[Role::Pod, Role::Node],
            Role::Node => &[Role::Node],
            Role::Service => &[Role::Service],
            Role::Endpoints => &[Role::Pod, Role::Service, Role::Endpoints],
            Role::EndpointSlice => &[Role::Pod, Role::Service, Role::EndpointSlice],
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The label and field selector sent with the LIST and WATCH of one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Label selector, e.g. `app=x,tier!=db` (`None` when empty).
    pub label: Option<String>,
    /// Field selector, e.g. `spec.nodeName=node-a` (`None` when empty).
    pub field: Option<String>,
}

/// `namespaces`: which namespaces to watch; none named and not `own_namespace` means all.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    /// Also watch the namespace trawl runs in (read from the service account mount).
    #[serde(default)]
    pub own_namespace: bool,
    /// Namespaces to watch.
    #[serde(default)]
    pub names: Vec<String>,
}

/// `attach_metadata`: labels of related objects to add to each target.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttachMetadata {
    /// Add the `__meta_kubernetes_node_*` labels of the target's node (roles pod, endpoints,
    /// endpointslice). Watches nodes.
    #[serde(default)]
    pub node: bool,
    /// Add the `__meta_kubernetes_namespace_{label,annotation}*` labels of the target's namespace
    /// (all roles but node). Watches namespaces.
    #[serde(default)]
    pub namespace: bool,
}

/// One `kubernetes_sd_configs` entry, validated while it is read: the role is required and known,
/// each selector's role is one the role accepts and appears once, selectors parse, `api_server`
/// and `kubeconfig_file` exclude each other, HTTP client settings need `api_server`, and
/// `own_namespace` needs the in-cluster config, all as Prometheus checks them. Unknown keys are
/// rejected (with their line, by serde-saphyr).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawKubernetesSdConfig")]
pub struct KubernetesSdConfig {
    /// What to discover.
    pub role: Role,
    /// API server URL; without it and without `kubeconfig_file`, the in-cluster config is used.
    pub api_server: Option<String>,
    /// A kubeconfig file to take the API server and credentials from.
    pub kubeconfig_file: Option<PathBuf>,
    /// Namespaces to watch.
    pub namespaces: Namespaces,
    /// Selectors by the role of the resource they filter.
    pub selectors: BTreeMap<Role, Selector>,
    /// Related-object metadata to attach.
    pub attach_metadata: AttachMetadata,
    /// Auth and TLS for `api_server` (`basic_auth`, `authorization`, `bearer_token[_file]`,
    /// `tls_config`).
    pub http: HttpClientConfig,
}

impl KubernetesSdConfig {
    /// The selector of `role`'s resource, if configured.
    pub fn selector(&self, role: Role) -> Option<&Selector> {
        self.selectors.get(&role)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    field: Option<String>,
}

crate::config::common::with_http_client_fields! {
/// The YAML shape, checked by `TryFrom` into [`KubernetesSdConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetesSdConfig {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    api_server: Option<String>,
    #[serde(default)]
    kubeconfig_file: Option<PathBuf>,
    #[serde(default)]
    namespaces: Option<Namespaces>,
    #[serde(default)]
    selectors: Option<Vec<RawSelector>>,
    #[serde(default)]
    attach_metadata: Option<AttachMetadata>
}
}

impl TryFrom<RawKubernetesSdConfig> for KubernetesSdConfig {
    type Error = String;

    fn try_from(mut r: RawKubernetesSdConfig) -> Result<Self, String> {
        // Prometheus tests these for "" (`c.KubeConfig != ""`, an empty URL), so an empty value
        // is unset, as its own config dump writes them.
        r.kubeconfig_file = r.kubeconfig_file.filter(|p| !p.as_os_str().is_empty());
        r.api_server = r.api_server.filter(|u| !u.is_empty());
        let Some(role) = r.role.as_deref() else {
            return Err("role missing (one of: pod, service, endpoints, endpointslice, node, ingress)".into());
        };
        let role = Role::parse(role)?;
        let http = r.http_client_config();
        validate_http(&http)?;
        let custom_http = http.basic_auth.is_some()
            || http.authorization.is_some()
            || http.oauth2.is_some()
            || http.bearer_token.is_some()
            || http.bearer_token_file.is_some()
            || http.tls_config.is_some()
            || http.proxy.is_set()
            || http.follow_redirects == Some(false)
            || http.enable_http2 == Some(false);
        let namespaces = r.namespaces.unwrap_or_default();
        // The checks and messages of SDConfig.UnmarshalYAML, in its order.
        if r.api_server.is_some() && r.kubeconfig_file.is_some() {
            return Err("cannot use 'kubeconfig_file' and 'api_server' simultaneously".into());
        }
        if r.kubeconfig_file.is_some() && custom_http {
            return Err(
                "cannot use a custom HTTP client configuration together with 'kubeconfig_file'".into()
            );
        }
        if r.api_server.is_none() && custom_http {
            return Err(
                "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
                    .into(),
            );
        }
        if r.api_server.is_some() && namespaces.own_namespace {
            return Err("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously".into());
        }
        if r.kubeconfig_file.is_some() && namespaces.own_namespace {
            return Err("cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously".into());
        }
        if let Some(u) = &r.api_server {
            let uri: hyper::Uri = u.parse().map_err(|e| format!("invalid api_server URL {u:?}: {e}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(format!("invalid api_server URL {u:?}: want http(s)://host[:port]"));
            }
        }
        if let Some(v) = http.tls_config.as_ref().and_then(|t| t.min_version.as_deref()) {
            // rustls never negotiates below TLS 1.2, so those minimums already hold; TLS 1.3 only
            // cannot be asked of the kube client.
            if !matches!(v, "TLS10" | "TLS11" | "TLS12") {
                return Err(format!(
                    "tls_config.min_version {v:?} is not supported by trawl's kubernetes_sd_configs"
                ));
            }
        }

        let mut selectors = BTreeMap::new();
        for s in r.selectors.unwrap_or_default() {
            let allowed = role.allowed_selectors();
            let allowed_text = allowed.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
            let sel_role = match s.role.as_deref() {
                Some(x) => Role::parse(x)?,
                None => return Err(format!("{role} role supports only {allowed_text} selectors")),
            };
            if selectors.contains_key(&sel_role) {
                return Err(format!("duplicated selector role: {sel_role}"));
            }
            if !allowed.contains(&sel_role) {
                return Err(format!("{role} role supports only {allowed_text} selectors"));
            }
            let field = s.field.filter(|f| !f.is_empty());
            let label = s.label.filter(|l| !l.is_empty());
            if let Some(f) = &field {
                validate_field_selector(f)?;
            }
            if let Some(l) = &label {
                validate_label_selector(l)?;
            }
            selectors.insert(sel_role, Selector { label, field });
        }

        Ok(KubernetesSdConfig {
            role,
            api_server: r.api_server,
            kubeconfig_file: r.kubeconfig_file,
            namespaces,
            selectors,
            attach_metadata: r.attach_metadata.unwrap_or_default(),
            http,
        })
    }
}

/// The checks of Prometheus' `HTTPClientConfig.Validate` that apply to the settings trawl
/// supports, plus the auth types the kube client cannot do.
fn validate_http(h: &HttpClientConfig) -> Result<(), String> {
    if h.bearer_token.is_some() && h.bearer_token_file.is_some() {
        return Err("at most one of bearer_token & bearer_token_file must be configured".into());
    }
    let bearer = h.bearer_token.is_some() || h.bearer_token_file.is_some();
    if h.basic_auth.is_some() && bearer {
        return Err(
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured".into()
        );
    }
    if let Some(b) = &h.basic_auth
        && b.password.is_some()
        && b.password_file.is_some()
    {
        return Err("at most one of basic_auth password & password_file must be configured".into());
    }
    if let Some(a) = &h.authorization {
        if bearer {
            return Err("authorization is not compatible with bearer_token & bearer_token_file".into());
        }
        if h.basic_auth.is_some() {
            return Err("at most one of basic_auth, oauth2 & authorization must be configured".into());
        }
        if a.credentials.is_some() && a.credentials_file.is_some() {
            return Err(
                "at most one of authorization credentials & credentials_file must be configured".into()
            );
        }
        match a.kind.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("bearer") => {}
            Some(t) if t.eq_ignore_ascii_case("basic") => {
                return Err(
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead".into()
                );
            }
            Some(t) => {
                return Err(format!(
                    "authorization type {t:?} is not supported by trawl's kubernetes_sd_configs (only Bearer)"
                ));
            }
        }
    }
    if let Some(t) = &h.tls_config
        && t.cert_file.is_some() != t.key_file.is_some()
    {
        return Err("tls_config needs both cert_file and key_file for a client certificate".into());
    }
    if h.oauth2.is_some() {
        return Err("oauth2 is not supported by trawl's kubernetes_sd_configs".into());
    }
    h.proxy.validate()?;
    crate::http_client::proxy::Proxy::from_config(&h.proxy).map(drop).map_err(|e| e.to_string())
}

/// Checks a field selector as `fields.ParseSelector` would: comma-separated `key=value`,
/// `key==value` or `key!=value` terms with a non-empty key (`\,` escapes a comma).
fn validate_field_selector(s: &str) -> Result<(), String> {
    for term in split_unescaped_commas(s) {
        let (key, _) = term
            .split_once("!=")
            .or_else(|| term.split_once("=="))
            .or_else(|| term.split_once('='))
            .ok_or_else(|| {
                format!("invalid field selector {s:?}: {term:?} is not key=value, key==value or key!=value")
            })?;
        if key.trim().is_empty() {
            return Err(format!("invalid field selector {s:?}: empty key in {term:?}"));
        }
    }
    Ok(())
}

fn split_unescaped_commas(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    out.push(&s[start..]);
    out
}

/// Checks a label selector as `labels.Parse` would: comma-separated requirements `k`, `!k`,
/// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)` (commas inside parentheses belong to the
/// set), with keys of at most 63 name characters behind an optional DNS-subdomain prefix.
fn validate_label_selector(s: &str) -> Result<(), String> {
    let bad = |why: &str| format!("invalid label selector {s:?}: {why}");
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(bad("unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(bad("unbalanced parentheses"));
    }
    terms.push(&s[start..]);
    let key_ok = |k: &str| {
        let name = k.rsplit_once('/').map_or(k, |(_, n)| n);
        !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    for term in terms {
        let t = term.trim();
        if t.is_empty() {
            return Err(bad("empty requirement"));
        }
        let key = if let Some(k) = t.strip_prefix('!') {
            k.trim()
        } else if let Some((k, _)) =
            t.split_once("!=").or_else(|| t.split_once("==")).or_else(|| t.split_once('='))
        {
            k.trim()
        } else if let Some((k, rest)) = t.split_once(char::is_whitespace) {
            let rest = rest.trim_start();
            let set = rest.strip_prefix("notin").or_else(|| rest.strip_prefix("in")).map(str::trim);
            match set {
                Some(set) if set.starts_with('(') && set.ends_with(')') => k,
                _ => return Err(bad(&format!("cannot parse {t:?}"))),
            }
        } else {
            t
        };
        if !key_ok(key) {
            return Err(bad(&format!("invalid key {key:?}")));
        }
    }
    Ok(())
}

/// Starts discovery for `cfg` and returns the channel its targets are published on.
///
/// The first value is published once every watched resource has been listed (as Prometheus waits
/// for its informers' caches to sync), even when it is empty; after that a new value is published
/// whenever a change alters the target list, typically within milliseconds of the watch event.
/// Each value is the full list of label sets (each with `__address__` and the meta labels) for
/// this config, ordered by object namespace and name.
///
/// Errors only for configuration problems found at start (see [`KubernetesSdError`]). API errors
/// later (refused connections, 410 Gone, 5xx, 403) are logged and retried with backoff; the last
/// published targets stay in place meanwhile. Everything stops when `cancel` fires.
pub async fn spawn(
    cfg: &KubernetesSdConfig,
    cancel: CancellationToken,
) -> Result<tokio::sync::watch::Receiver<Discovered>, KubernetesSdError> {
    let client = watch::client(cfg).await?;
    let namespaces = watch::namespaces(cfg, std::path::Path::new(SERVICE_ACCOUNT_DIR))?;
    Ok(watch::start(client, cfg.clone(), namespaces, cancel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<KubernetesSdConfig, String> {
        serde_saphyr::from_str::<KubernetesSdConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn daemonset_config_from_the_issue() {
        let c = parse("role: pod\nselectors:\n  - role: pod\n    field: 'spec.nodeName=node-a'\n").unwrap();
        assert_eq!(c.role, Role::Pod);
        assert_eq!(c.selector(Role::Pod).and_then(|s| s.field.as_deref()), Some("spec.nodeName=node-a"));
        assert_eq!(c.selector(Role::Pod).and_then(|s| s.label.as_deref()), None);
    }

    #[test]
    fn empty_kubeconfig_file_and_api_server_are_unset() {
        // Prometheus' own config dump writes them as "" (found by the config fuzz target: a
        // dumped config with `api_server` did not load again).
        let c = parse("role: pod\napi_server: http://a\nkubeconfig_file: ''\n").unwrap();
        assert_eq!(c.kubeconfig_file, None);
        let c = parse("role: pod\napi_server: ''\nkubeconfig_file: /k\n").unwrap();
        assert_eq!(c.api_server, None);
    }

    #[test]
    fn rejections_match_prometheus() {
        // (yaml, expected message fragment, why)
        let cases: &[(&str, &str, &str)] = &[
            ("namespaces: {names: [a]}\n", "role missing", "role is required"),
            ("role: pods\n", "unknown Kubernetes SD role \"pods\"", "unknown role"),
            ("role: ingress\n", "not supported", "ingress is not implemented"),
            ("role: pod\nfoo: 1\n", "foo", "unknown keys are rejected"),
            (
                "role: pod\napi_server: http://a\nkubeconfig_file: /k\n",
                "cannot use 'kubeconfig_file' and 'api_server' simultaneously",
                "api_server xor kubeconfig_file",
            ),
            (
                "role: pod\nkubeconfig_file: /k\nbearer_token_file: /t\n",
                "custom HTTP client configuration together with 'kubeconfig_file'",
                "auth comes from the kubeconfig",
            ),
            (
                "role: pod\nbearer_token_file: /t\n",
                "please provide the 'api_server' URL explicitly",
                "auth without api_server",
            ),
            (
                "role: pod\napi_server: http://a\nnamespaces: {own_namespace: true}\n",
                "'api_server' and 'namespaces.own_namespace'",
                "own namespace is in-cluster only",
            ),
            (
                "role: service\nselectors: [{role: pod, label: a=b}]\n",
                "service role supports only service selectors",
                "selector role not watched by the role",
            ),
            (
                "role: endpoints\nselectors: [{role: node, label: a=b}]\n",
                "endpoints role supports only pod, service, endpoints selectors",
                "listed in Prometheus' order",
            ),
            (
                "role: pod\nselectors: [{role: pod, label: a=b}, {role: pod, field: x=y}]\n",
                "duplicated selector role: pod",
                "one selector per role",
            ),
            (
                "role: pod\nselectors: [{role: pod, field: 'spec.nodeName'}]\n",
                "invalid field selector",
                "no op",
            ),
            ("role: pod\nselectors: [{role: pod, label: 'a in (b'}]\n", "invalid label selector", "open set"),
            (
                "role: pod\nattach_metadata: {deployment: true}\n",
                "deployment",
                "3.11 options not implemented",
            ),
            (
                "role: pod\napi_server: http://a\nbearer_token: x\nbearer_token_file: /t\n",
                "at most one of bearer_token & bearer_token_file",
                "HTTPClientConfig.Validate",
            ),
            ("role: pod\napi_server: 'ftp://a'\n", "invalid api_server URL", "scheme must be http(s)"),
        ];
        for (yaml, want, why) in cases {
            match parse(yaml) {
                Ok(c) => panic!("{why}: {yaml:?} was accepted as {c:?}"),
                Err(e) => assert!(e.contains(want), "{why}: {yaml:?} gave {e:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn accepted_variants() {
        let ok = [
            "role: endpointslice\nselectors: [{role: pod, field: spec.nodeName=n}, {role: service, label: 'app in (a,b),!x'}]\n",
            "role: pod\nselectors: [{role: node, label: 'kubernetes.io/os=linux'}]\nattach_metadata: {node: true}\n",
            "role: node\napi_server: https://k:6443\ntls_config: {ca_file: /ca, insecure_skip_verify: false}\nbearer_token_file: /t\n",
            "role: service\nnamespaces: {names: [a, b]}\nattach_metadata: {namespace: true}\n",
            "role: pod\nselectors: [{role: pod, label: 'env!=prod,tier notin (db), team'}]\n",
        ];
        for y in ok {
            parse(y).unwrap_or_else(|e| panic!("{y:?}: {e}"));
        }
    }

    #[test]
    fn unknown_key_error_has_a_line_number() {
        let e = parse("role: pod\nnamespaces:\n  names: [a]\n  nmes: [b]\n").unwrap_err();
        assert!(e.contains("line 4") || e.contains("4:"), "{e}");
    }
}
