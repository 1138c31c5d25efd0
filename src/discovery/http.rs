//! HTTP service discovery (`http_sd_configs`): target groups fetched from a URL as JSON.
//!
//! What this is: Prometheus' `discovery/http` with its refresh loop (`discovery/refresh`): one
//! GET at start and then every `refresh_interval`, with `Accept: application/json` and
//! `X-Prometheus-Refresh-Interval-Seconds`, the job's HTTP client settings (auth, `oauth2`, TLS,
//! proxy) and the interval as the request timeout. Only a `200` with a JSON content type
//! (`application/json`, optionally `; charset=utf-8`) and a list of target groups counts; each
//! target gets its group's labels and `__meta_url`. A failed refresh (network error, other
//! status, bad content type, bad JSON, a `null` group) is logged with the job and URL, and the
//! last good list stays, as Prometheus keeps the last groups it sent.
//! What this is not: relabeling (the scrape manager's job).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Discovered, TargetGroup, group_targets};
use crate::config::common::{self, HttpClientConfig};
use crate::labels::Labels;

/// Largest answer read, in bytes: far above any real target list, small enough that a broken
/// endpoint cannot take the agent's memory.
const RESPONSE_MAX_BYTES: usize = 64 << 20;

/// Prometheus' default `refresh_interval` for HTTP SD.
fn default_refresh_interval() -> common::Duration {
    common::Duration::from_secs(60)
}

/// One `http_sd_configs` entry, checked while it is read (Prometheus' `SDConfig.UnmarshalYAML`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawHttpSdConfig")]
pub struct HttpSdConfig {
    /// Where the target groups are fetched from.
    pub url: String,
    /// How often they are fetched (also the request timeout).
    pub refresh_interval: common::Duration,
    /// Auth, TLS and proxy for the request.
    pub http: HttpClientConfig,
}

common::with_http_client_fields! {
/// The YAML shape of [`HttpSdConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpSdConfig {
    #[serde(default)]
    url: String,
    #[serde(default = "default_refresh_interval")]
    refresh_interval: common::Duration,
}
}

impl TryFrom<RawHttpSdConfig> for HttpSdConfig {
    type Error = String;

    fn try_from(r: RawHttpSdConfig) -> Result<Self, String> {
        if r.url.is_empty() {
            return Err("URL is missing".into());
        }
        let uri: hyper::Uri = r.url.parse().map_err(|e| format!("invalid http_sd url {:?}: {e}", r.url))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err("URL scheme must be 'http' or 'https'".into());
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err("host is missing in URL".into());
        }
        let http = r.http_client_config();
        crate::http_client::validate(&http).map_err(|e| e.to_string())?;
        Ok(HttpSdConfig { url: r.url, refresh_interval: r.refresh_interval, http })
    }
}

/// One refresh that did not produce a target list. Retryable: the next refresh tries again.
#[derive(Debug, thiserror::Error)]
pub enum HttpSdError {
    /// The HTTP client could not be built (an unreadable `ca_file`, ...).
    #[error("{0}")]
    Client(String),
    /// No answer within the refresh interval, or a network error.
    #[error("{0}")]
    Request(String),
    /// An answer other than 200.
    #[error("server returned HTTP status {0}")]
    Status(String),
    /// A content type other than JSON.
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    /// A body that is not a list of target groups.
    #[error("{0}")]
    Body(String),
}

/// Starts discovery for one config; the channel holds the last good target list.
pub fn spawn(cfg: HttpSdConfig, job: String, cancel: CancellationToken) -> watch::Receiver<Discovered> {
    let (tx, rx) = watch::channel(Discovered::default());
    tokio::spawn(async move {
        let mut client = None;
        loop {
            if client.is_none() {
                client = crate::http_client::from_config(&cfg.http)
                    .map_err(|e| tracing::error!(job, url = %cfg.url, error = %e, "HTTP SD client cannot be built; retrying."))
                    .ok();
            }
            if let Some(c) = &client {
                match refresh(c, &cfg).await {
                    Ok(targets) => {
                        tx.send_if_modified(|cur| {
                            let changed = **cur != targets;
                            if changed {
                                *cur = Arc::new(targets);
                            }
                            changed
                        });
                    }
                    Err(e) => tracing::error!(
                        job,
                        url = %cfg.url,
                        error = %e,
                        "Unable to refresh target groups; keeping the last good list."
                    ),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(cfg.refresh_interval.get().max(Duration::from_millis(1))) => {}
            }
        }
    });
    rx
}

/// One fetch of the target list.
pub async fn refresh(
    client: &crate::http_client::Client,
    cfg: &HttpSdConfig,
) -> Result<Vec<Labels>, HttpSdError> {
    let timeout = cfg.refresh_interval.get();
    match tokio::time::timeout(timeout, fetch(client, cfg)).await {
        Ok(r) => r,
        Err(_) => Err(HttpSdError::Request(format!(
            "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            cfg.url
        ))),
    }
}

async fn fetch(client: &crate::http_client::Client, cfg: &HttpSdConfig) -> Result<Vec<Labels>, HttpSdError> {
    // strconv.FormatFloat(seconds, 'f', -1, 64): "60", "0.5".
    let interval = cfg.refresh_interval.get().as_secs_f64().to_string();
    let mut req = hyper::Request::get(cfg.url.as_str())
        .header(header::USER_AGENT, crate::USER_AGENT)
        .header(header::ACCEPT, "application/json")
        .header("X-Prometheus-Refresh-Interval-Seconds", interval);
    if let Some(auth) =
        crate::http_client::auth_header(&cfg.http).map_err(|e| HttpSdError::Client(e.to_string()))?
    {
        req = req.header(header::AUTHORIZATION, auth);
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| HttpSdError::Request(e.to_string()))?;
    let resp = client.request(req).await.map_err(|e| HttpSdError::Request(crate::fetch::error_chain(&e)))?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(HttpSdError::Status(resp.status().to_string()));
    }
    let content_type =
        resp.headers().get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let content_type = content_type.unwrap_or_default();
    if !is_json_content_type(content_type.trim()) {
        return Err(HttpSdError::ContentType(content_type));
    }
    let mut body = Vec::new();
    let mut incoming = resp.into_body();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| HttpSdError::Request(e.to_string()))?;
        if let Ok(d) = frame.into_data() {
            if body.len() + d.len() > RESPONSE_MAX_BYTES {
                return Err(HttpSdError::Body(format!("answer larger than {RESPONSE_MAX_BYTES} bytes")));
            }
            body.extend_from_slice(&d);
        }
    }
    parse(&body, &cfg.url)
}

/// The target list in an answer body.
pub fn parse(body: &[u8], url: &str) -> Result<Vec<Labels>, HttpSdError> {
    let groups: Vec<Option<TargetGroup>> =
        serde_json::from_slice(body).map_err(|e| HttpSdError::Body(e.to_string()))?;
    let groups: Vec<TargetGroup> = groups
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| HttpSdError::Body("nil target group item found".into()))?;
    group_targets(groups, ("__meta_url", url)).map_err(HttpSdError::Body)
}

/// Prometheus' `^(?i:application\/json(;\s*charset=("utf-8"|utf-8))?)$`.
fn is_json_content_type(ct: &str) -> bool {
    let lower = ct.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("application/json") else { return false };
    if rest.is_empty() {
        return true;
    }
    let Some(param) = rest.strip_prefix(';') else { return false };
    matches!(param.trim_start(), "charset=utf-8" | "charset=\"utf-8\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_like_prometheus() {
        // (content type, accepted, why)
        for (ct, ok, why) in [
            ("application/json", true, "plain"),
            ("Application/JSON", true, "case-insensitive"),
            ("application/json; charset=utf-8", true, "utf-8 charset"),
            ("application/json;charset=\"utf-8\"", true, "quoted charset"),
            ("application/json; charset=latin1", false, "other charsets"),
            ("text/plain", false, "not JSON"),
            ("application/jsonx", false, "prefix only"),
            ("", false, "missing"),
        ] {
            assert_eq!(is_json_content_type(ct), ok, "{ct:?}: {why}");
        }
    }

    #[test]
    fn bodies() {
        let url = "http://sd.example/targets";
        let t = parse(br#"[{"targets":["a:1","b:2"],"labels":{"env":"prod"}},{"targets":["c:3"]}]"#, url)
            .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].get("__meta_url"), Some(url));
        assert_eq!(t[1].get("env"), Some("prod"));
        assert_eq!(t[2].get("__address__"), Some("c:3"));
        assert!(parse(b"[null]", url).unwrap_err().to_string().contains("nil target group"));
        assert!(parse(br#"[{"targets":["a:1"],"extra":1}]"#, url).is_err(), "unknown keys, as Go's decoder");
        assert!(parse(br#"[{"targets":["a:1"],"labels":{"1x":"v"}}]"#, url).is_err(), "label names checked");
        assert_eq!(parse(b"[]", url).unwrap().len(), 0, "an empty list is a good list");
    }

    #[test]
    fn config_checks() {
        let p = |y: &str| serde_saphyr::from_str::<HttpSdConfig>(y).map_err(|e| e.to_string());
        let c = p("url: http://sd:8080/targets\n").unwrap();
        assert_eq!(c.refresh_interval, common::Duration::from_secs(60), "Prometheus' default");
        for (y, want) in [
            ("refresh_interval: 5s\n", "URL is missing"),
            ("url: ftp://sd/x\n", "URL scheme must be 'http' or 'https'"),
            ("url: http://sd/\nbasic_auth: {username: u}\nbearer_token: t\n", "at most one of"),
            ("url: http://sd/\nbogus: 1\n", "bogus"),
        ] {
            let e = p(y).unwrap_err();
            assert!(e.contains(want), "{y:?}: {e}");
        }
    }
}
