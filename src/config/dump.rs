//! The loaded config as YAML, as Prometheus' `/api/v1/status/config` prints its own: every key
//! trawl runs with, defaults filled in, in Prometheus' key order and with its `omitempty` rules
//! (prometheus/prometheus `config/config.go`, prometheus/common `config/http_config.go`;
//! `tests/status_api.rs` compares with Prometheus 2.42's output for the same file), and
//! every credential written inline (passwords, tokens, `client_secret`, `secret_key`, proxy
//! CONNECT headers, the password of a URL) shown as `<secret>`.
//!
//! What this is: a mapping from [`Config`] to an ordered YAML tree, written by serde-saphyr.
//! What this is not: a config file trawl reads back byte for byte (comments and `${env:…}`
//! references are gone: values are shown as loaded). A collector-dialect file is shown as the
//! Prometheus config trawl made of it.
//!
//! Where Prometheus normalises at load, the dump shows its normal form: a `bearer_token[_file]`
//! is an `authorization` block of type `Bearer`, as Prometheus' `HTTPClientConfig.Validate`
//! turns it into one. A URL's password is `<secret>` where Prometheus writes `xxxxx`, so every
//! hidden value reads the same.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::common::{self, HttpClientConfig, TlsConfig};
use super::{Config, ScrapeConfig};
use crate::relabel::RelabelConfig;
use crate::remote_write::RemoteWriteConfig;

/// What an inline credential shows as (Prometheus' `config.Secret`).
pub const SECRET: &str = "<secret>";

/// A YAML value with map keys in insertion order.
enum Node {
    Str(String),
    Bool(bool),
    Int(u64),
    /// A list of strings written inline (`[a, b]`), as Prometheus writes `source_labels`.
    Flow(Vec<String>),
    Seq(Vec<Node>),
    Map(Map),
}

#[derive(Default)]
struct Map(Vec<(String, Node)>);

impl Map {
    fn put(&mut self, k: &str, v: Node) -> &mut Self {
        self.0.push((k.to_owned(), v));
        self
    }
    fn str(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Self {
        self.put(k, Node::Str(v.to_string()))
    }
    /// `k: v` unless `v` is empty (Go's `omitempty` on a string).
    fn str_nonempty(&mut self, k: &str, v: &str) -> &mut Self {
        if !v.is_empty() {
            self.str(k, v);
        }
        self
    }
    fn opt_str(&mut self, k: &str, v: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(v) = v {
            self.str(k, v);
        }
        self
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.put(k, Node::Bool(v))
    }
    /// `k: true` only (Go's `omitempty` on a bool).
    fn bool_true(&mut self, k: &str, v: bool) -> &mut Self {
        if v {
            self.bool(k, v);
        }
        self
    }
    fn int(&mut self, k: &str, v: u64) -> &mut Self {
        self.put(k, Node::Int(v))
    }
    /// `k: v` unless zero (Go's `omitempty` on a number).
    fn int_nonzero(&mut self, k: &str, v: u64) -> &mut Self {
        if v != 0 {
            self.int(k, v);
        }
        self
    }
    /// A map of strings, unless empty.
    fn string_map<'a>(
        &mut self,
        k: &str,
        m: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> &mut Self {
        let mut out = Map::default();
        for (name, value) in m {
            out.str(name, value);
        }
        self.map_nonempty(k, out)
    }
    fn map_nonempty(&mut self, k: &str, m: Map) -> &mut Self {
        if !m.0.is_empty() {
            self.put(k, Node::Map(m));
        }
        self
    }
    fn seq_nonempty(&mut self, k: &str, items: Vec<Node>) -> &mut Self {
        if !items.is_empty() {
            self.put(k, Node::Seq(items));
        }
        self
    }
    /// A list of strings written one per line, unless empty.
    fn strings(&mut self, k: &str, items: &[String]) -> &mut Self {
        self.seq_nonempty(k, items.iter().map(|s| Node::Str(s.clone())).collect())
    }
    /// An inline credential: `<secret>` when set and not empty, else nothing.
    fn secret(&mut self, k: &str, v: Option<&common::Secret>) -> &mut Self {
        if v.is_some_and(|s| !s.expose().is_empty()) {
            self.str(k, SECRET);
        }
        self
    }
    fn path(&mut self, k: &str, v: Option<&std::path::PathBuf>) -> &mut Self {
        self.opt_str(k, v.map(|p| p.display()))
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Str(v) => s.serialize_str(v),
            Node::Bool(v) => s.serialize_bool(*v),
            Node::Int(v) => s.serialize_u64(*v),
            Node::Flow(v) => serde_saphyr::FlowSeq(v).serialize(s),
            Node::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Node::Map(m) => m.serialize(s),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `cfg` as YAML (see the module docs).
pub fn to_yaml(cfg: &Config) -> String {
    let mut root = Map::default();
    root.put("global", Node::Map(global(cfg)));
    root.strings("scrape_config_files", &cfg.scrape_config_files);
    root.seq_nonempty("scrape_configs", cfg.scrape_configs.iter().map(|sc| Node::Map(scrape(sc))).collect());
    root.seq_nonempty(
        "remote_write",
        cfg.remote_write.iter().map(|rw| Node::Map(remote_write(rw))).collect(),
    );
    serde_saphyr::to_string(&root).unwrap_or_else(|e| format!("# cannot write the config as YAML: {e}\n"))
}

fn global(cfg: &Config) -> Map {
    let g = &cfg.global;
    let mut m = Map::default();
    m.str("scrape_interval", g.scrape_interval)
        .opt_str("scrape_timeout", g.scrape_timeout)
        .opt_str("evaluation_interval", g.evaluation_interval)
        .string_map("external_labels", &g.external_labels);
    if g.body_size_limit.0 > 0 {
        m.str("body_size_limit", g.body_size_limit);
    }
    m.int_nonzero("sample_limit", g.sample_limit)
        .int_nonzero("label_limit", g.label_limit)
        .int_nonzero("label_name_length_limit", g.label_name_length_limit)
        .int_nonzero("label_value_length_limit", g.label_value_length_limit);
    m
}

fn scrape(sc: &ScrapeConfig) -> Map {
    let mut m = Map::default();
    m.str("job_name", sc.job())
        .bool_true("honor_labels", sc.honor_labels)
        .bool("honor_timestamps", sc.honor_timestamps)
        .bool("track_timestamps_staleness", sc.track_timestamps_staleness);
    let mut params = Map::default();
    for (k, vs) in &sc.params {
        params.put(k, Node::Seq(vs.iter().map(|v| Node::Str(v.clone())).collect()));
    }
    m.map_nonempty("params", params)
        .str("scrape_interval", sc.interval())
        .str("scrape_timeout", sc.timeout())
        .str("metrics_path", sc.metrics_path())
        .str("scheme", sc.scheme())
        .bool("enable_compression", sc.enable_compression);
    if let Some(b) = sc.body_size_limit.filter(|b| b.0 > 0) {
        m.str("body_size_limit", b);
    }
    m.int_nonzero("sample_limit", sc.sample_limit.unwrap_or(0))
        .int_nonzero("target_limit", sc.target_limit)
        .int_nonzero("label_limit", sc.label_limit.unwrap_or(0))
        .int_nonzero("label_name_length_limit", sc.label_name_length_limit.unwrap_or(0))
        .int_nonzero("label_value_length_limit", sc.label_value_length_limit.unwrap_or(0));
    http_client(&sc.http_client_config(), &mut m);
    m.seq_nonempty("relabel_configs", sc.relabel_configs.iter().map(relabel).collect())
        .seq_nonempty("metric_relabel_configs", sc.metric_relabel_configs.iter().map(relabel).collect());
    // Prometheus writes the discovery configs after everything else, by name.
    let file = sc.file_sd_configs.iter().map(|f| {
        let mut m = Map::default();
        m.strings("files", &f.files).str("refresh_interval", f.refresh_interval);
        Node::Map(m)
    });
    m.seq_nonempty("file_sd_configs", file.collect());
    let http = sc.http_sd_configs.iter().map(|h| {
        let mut m = Map::default();
        http_client(&h.http, &mut m);
        m.str("refresh_interval", h.refresh_interval).str("url", common::redact_url(&h.url));
        Node::Map(m)
    });
    m.seq_nonempty("http_sd_configs", http.collect());
    m.seq_nonempty("kubernetes_sd_configs", sc.kubernetes_sd_configs.iter().map(kubernetes).collect());
    let statics = sc.static_configs.iter().map(|st| {
        let mut m = Map::default();
        m.strings("targets", &st.targets).string_map("labels", &st.labels);
        Node::Map(m)
    });
    m.seq_nonempty("static_configs", statics.collect());
    m
}

fn kubernetes(k: &crate::discovery::kubernetes::KubernetesSdConfig) -> Node {
    let mut m = Map::default();
    m.opt_str("api_server", k.api_server.as_deref()).str("role", k.role).str(
        "kubeconfig_file",
        k.kubeconfig_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
    );
    http_client(&k.http, &mut m);
    let mut ns = Map::default();
    ns.bool_true("own_namespace", k.namespaces.own_namespace).strings("names", &k.namespaces.names);
    m.map_nonempty("namespaces", ns);
    let selectors = k.selectors.iter().map(|(role, sel)| {
        let mut m = Map::default();
        m.str("role", role).opt_str("label", sel.label.as_deref()).opt_str("field", sel.field.as_deref());
        Node::Map(m)
    });
    m.seq_nonempty("selectors", selectors.collect());
    let a = k.attach_metadata;
    if a.node || a.namespace {
        let mut am = Map::default();
        am.bool("node", a.node).bool("namespace", a.namespace);
        m.put("attach_metadata", Node::Map(am));
    }
    Node::Map(m)
}

fn relabel(r: &RelabelConfig) -> Node {
    let mut m = Map::default();
    if !r.source_labels.is_empty() {
        m.put("source_labels", Node::Flow(r.source_labels.clone()));
    }
    m.str("separator", &r.separator).str("regex", &r.regex_source).int_nonzero("modulus", r.modulus);
    m.str_nonempty("target_label", &r.target_label)
        .str("replacement", &r.replacement)
        .str("action", r.action);
    Node::Map(m)
}

fn remote_write(rw: &RemoteWriteConfig) -> Map {
    let mut m = Map::default();
    m.str("url", common::redact_url(&rw.url))
        .str("remote_timeout", rw.remote_timeout)
        .string_map("headers", &rw.headers)
        .seq_nonempty("write_relabel_configs", rw.write_relabel_configs.iter().map(relabel).collect())
        .opt_str("name", rw.name.as_deref())
        .bool_true("send_exemplars", rw.send_exemplars)
        .bool_true("send_native_histograms", rw.send_native_histograms)
        .str(
            "protobuf_message",
            rw.protobuf_message.as_deref().unwrap_or(crate::remote_write::PROTOBUF_MESSAGE_V1),
        );
    http_client(&rw.http, &mut m);
    let q = &rw.queue_config;
    let mut qm = Map::default();
    qm.int("capacity", q.capacity as u64)
        .int("max_shards", q.max_shards as u64)
        .int("min_shards", q.min_shards as u64)
        .int("max_samples_per_send", q.max_samples_per_send as u64)
        .str("batch_send_deadline", q.batch_send_deadline)
        .str("min_backoff", q.min_backoff)
        .str("max_backoff", q.max_backoff)
        .bool_true("retry_on_http_429", q.retry_on_http_429);
    if !q.sample_age_limit.get().is_zero() {
        qm.str("sample_age_limit", q.sample_age_limit);
    }
    m.put("queue_config", Node::Map(qm));
    let md = &rw.metadata_config;
    let mut mm = Map::default();
    mm.bool("send", md.send)
        .str("send_interval", md.send_interval)
        .int_nonzero("max_samples_per_send", md.max_samples_per_send as u64);
    m.put("metadata_config", Node::Map(mm));
    if let Some(s) = &rw.sigv4 {
        let mut sm = Map::default();
        sm.str_nonempty("region", &s.region)
            .str_nonempty("access_key", &s.access_key)
            .secret("secret_key", s.secret_key.as_ref())
            .str_nonempty("profile", &s.profile)
            .str_nonempty("role_arn", &s.role_arn)
            .str_nonempty("external_id", &s.external_id)
            .bool_true("use_fips_sts_endpoint", s.use_fips_sts_endpoint)
            .str_nonempty("service_name", &s.service_name);
        m.put("sigv4", Node::Map(sm));
    }
    // trawl's own keys.
    if let Some(t) = &rw.tenant {
        let mut tm = Map::default();
        tm.str("label", &t.label).opt_str("default", t.default.as_deref());
        m.put("tenant", Node::Map(tm));
    }
    let mut dm = Map::default();
    dm.str("max_bytes", rw.disk_buffer.max_bytes).str("max_age", rw.disk_buffer.max_age);
    m.put("disk_buffer", Node::Map(dm));
    m
}

/// The keys of Prometheus' inline `HTTPClientConfig`, in its order, after its normalisation.
fn http_client(h: &HttpClientConfig, m: &mut Map) {
    if let Some(b) = &h.basic_auth {
        let mut bm = Map::default();
        bm.str_nonempty("username", &b.username)
            .secret("password", b.password.as_ref())
            .path("password_file", b.password_file.as_ref());
        m.put("basic_auth", Node::Map(bm));
    }
    // Prometheus turns a legacy bearer token into `authorization` at load, and defaults the type.
    let authorization = match (&h.authorization, &h.bearer_token, &h.bearer_token_file) {
        (Some(a), _, _) => Some((a.kind.clone(), a.credentials.clone(), a.credentials_file.clone())),
        (None, Some(t), _) => Some((None, Some(t.clone()), None)),
        (None, None, Some(f)) => Some((None, None, Some(f.clone()))),
        (None, None, None) => None,
    };
    if let Some((kind, credentials, file)) = authorization {
        let mut am = Map::default();
        am.str("type", kind.as_deref().unwrap_or("Bearer"))
            .secret("credentials", credentials.as_ref())
            .path("credentials_file", file.as_ref());
        m.put("authorization", Node::Map(am));
    }
    if let Some(o) = &h.oauth2 {
        let mut om = Map::default();
        om.str_nonempty("client_id", &o.client_id)
            .secret("client_secret", o.client_secret.as_ref())
            .path("client_secret_file", o.client_secret_file.as_ref())
            .strings("scopes", &o.scopes)
            .str_nonempty("token_url", &o.token_url)
            .string_map("endpoint_params", &o.endpoint_params);
        if let Some(t) = &o.tls_config {
            tls(t, &mut om);
        }
        proxy(&o.proxy(), &mut om);
        m.put("oauth2", Node::Map(om));
    }
    if let Some(t) = &h.tls_config {
        tls(t, m);
    }
    // The proxy keys before `follow_redirects`, as 2.42 (our differential tests' Prometheus)
    // writes them; prometheus/common moved them after `enable_http2` later.
    proxy(&h.proxy, m);
    m.bool("follow_redirects", h.follow_redirects.unwrap_or(true))
        .bool("enable_http2", h.enable_http2.unwrap_or(true));
}

/// `tls_config`, left out when nothing in it is set (Go's `omitempty` on a struct).
fn tls(t: &TlsConfig, m: &mut Map) {
    if *t == TlsConfig::default() {
        return;
    }
    let mut tm = Map::default();
    tm.path("ca_file", t.ca_file.as_ref())
        .path("cert_file", t.cert_file.as_ref())
        .path("key_file", t.key_file.as_ref())
        .opt_str("server_name", t.server_name.as_deref())
        .bool("insecure_skip_verify", t.insecure_skip_verify)
        .opt_str("min_version", t.min_version.as_deref());
    m.put("tls_config", Node::Map(tm));
}

fn proxy(p: &common::ProxyConfig, m: &mut Map) {
    if let Some(u) = p.proxy_url.as_ref().filter(|u| !u.expose().is_empty()) {
        m.str("proxy_url", u.redacted());
    }
    m.opt_str("no_proxy", p.no_proxy.as_deref().filter(|n| !n.is_empty()))
        .bool_true("proxy_from_environment", p.proxy_from_environment);
    let mut headers = Map::default();
    for (name, values) in &p.proxy_connect_header {
        headers.put(name, Node::Seq(values.iter().map(|_| Node::Str(SECRET.into())).collect()));
    }
    m.map_nonempty("proxy_connect_header", headers);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn defaults_are_filled_and_secrets_hidden() {
        let cfg = super::super::load_str(
            "scrape_configs:\n  - job_name: a\n    bearer_token: tok-a\n    relabel_configs:\n      \
             - {source_labels: [x, y], target_label: z}\nremote_write:\n  - url: http://u:pw-url@r/w\n    \
             sigv4: {region: r, access_key: AKID, secret_key: sk-1}\n",
            Path::new("/etc/trawl/trawl.yml"),
        )
        .unwrap();
        let yaml = to_yaml(&cfg);
        for secret in ["tok-a", "pw-url", "sk-1"] {
            assert!(!yaml.contains(secret), "{secret} shows in\n{yaml}");
        }
        let v: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        let job = &v["scrape_configs"][0];
        assert_eq!(job["scrape_interval"], "1m", "the global default, filled in");
        assert_eq!(job["scrape_timeout"], "10s");
        assert_eq!(
            job["authorization"]["type"], "Bearer",
            "a bearer token is authorization, as in Prometheus"
        );
        assert_eq!(job["authorization"]["credentials"], SECRET);
        assert_eq!(job["relabel_configs"][0]["source_labels"], serde_json::json!(["x", "y"]));
        assert_eq!(job["relabel_configs"][0]["regex"], "(.*)");
        assert_eq!(job["relabel_configs"][0]["action"], "replace");
        let rw = &v["remote_write"][0];
        assert_eq!(rw["url"], "http://u:<secret>@r/w");
        assert_eq!(rw["sigv4"]["secret_key"], SECRET);
        assert_eq!(rw["sigv4"]["access_key"], "AKID", "an access key id is not a secret");
        assert_eq!(rw["queue_config"]["capacity"], 10_000);
    }
}
