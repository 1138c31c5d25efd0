//! AWS Signature Version 4 for remote write (`sigv4`), as Prometheus' `prometheus/sigv4` signs
//! requests to Amazon Managed Service for Prometheus.
//!
//! What this is: the `sigv4` config block with Prometheus' checks, the signing algorithm
//! ([`canonical_request`], [`string_to_sign`], [`signature`]; checked against AWS's published
//! test suite in `tests/sigv4_vectors.rs`), and [`Signer`], which signs one request whose body is
//! known: every header on the request except those the AWS SDK never signs (`Authorization`,
//! `User-Agent`, `X-Amzn-Trace-Id`, `Expect`, `Transfer-Encoding`) and Prometheus' deny list
//! (`uber-trace-id`), plus `host`, `content-length` and `x-amz-date` (and
//! `x-amz-security-token` with temporary credentials); the path is cleaned as Prometheus does
//! (`path.Clean`, keeping a trailing slash) and the payload hashed with SHA-256. The service is
//! `aps` unless `service_name` says otherwise. Credentials come from `credentials.rs`.
//! What this is not: presigned URLs, chunked signing or SigV4a.

mod credentials;

use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::config::common::Secret;
use crate::http_client::proxy::percent_decode;

pub use credentials::{Credentials, Provider};

/// The signing algorithm's name.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service remote write signs for unless `service_name` is set (Amazon Managed Service for
/// Prometheus).
const DEFAULT_SERVICE: &str = "aps";
/// Headers never signed: the AWS SDK's `IgnoredHeaders` plus Prometheus' `sigv4HeaderDenylist`.
const UNSIGNED_HEADERS: [&str; 6] =
    ["authorization", "user-agent", "x-amzn-trace-id", "expect", "transfer-encoding", "uber-trace-id"];

/// The `sigv4` block of a `remote_write` entry (`prometheus/sigv4.SigV4Config`). Empty values
/// come from the AWS default chain: the environment, the shared config files, web identity,
/// the container credentials endpoint or the EC2 instance metadata service.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SigV4Config {
    /// The AWS region (else `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's region).
    #[serde(default)]
    pub region: String,
    /// Access key id; set together with `secret_key`.
    #[serde(default)]
    pub access_key: String,
    /// Secret access key.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    /// Profile of the shared config files (else `AWS_PROFILE`, else `default`).
    #[serde(default)]
    pub profile: String,
    /// Role to assume through STS with the credentials found.
    #[serde(default)]
    pub role_arn: String,
    /// External id for assuming `role_arn`.
    #[serde(default)]
    pub external_id: String,
    /// Use the FIPS endpoint of STS.
    #[serde(default)]
    pub use_fips_sts_endpoint: bool,
    /// The service to sign for (default `aps`).
    #[serde(default)]
    pub service_name: String,
}

impl SigV4Config {
    /// `SigV4Config.Validate`, with its messages.
    pub fn validate(&self) -> Result<(), String> {
        let secret_set = self.secret_key.as_ref().is_some_and(|s| !s.expose().is_empty());
        if self.access_key.is_empty() == secret_set {
            return Err(
                "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in \
                        the SigV4 config"
                    .into(),
            );
        }
        if !self.external_id.is_empty() && self.role_arn.is_empty() {
            return Err("external_id can only be used with role_arn".into());
        }
        Ok(())
    }
}

/// A request that could not be signed. Retryable when credentials could not be fetched (an STS
/// or metadata endpoint may come back); not when the config can never yield credentials.
#[derive(Debug, thiserror::Error)]
pub enum SigV4Error {
    /// No credentials or no region could be found at start.
    #[error("sigv4: {0}")]
    Config(String),
    /// Credentials could not be fetched or refreshed.
    #[error("sigv4: error retrieving credentials: {0}")]
    Credentials(String),
}

/// Signs remote-write requests for one endpoint.
#[derive(Debug)]
pub struct Signer {
    region: String,
    service: String,
    credentials: Provider,
}

impl Signer {
    /// Resolves the region and the credential source from the config and the process
    /// environment. Fails, as Prometheus does at load, when there is no region or no credential
    /// source at all; credentials that must be fetched are fetched on first use.
    pub fn new(cfg: &SigV4Config) -> Result<Signer, SigV4Error> {
        Self::with_env(cfg, &|k| std::env::var(k).ok())
    }

    /// As [`Signer::new`], with the environment given.
    pub fn with_env(cfg: &SigV4Config, env: &dyn Fn(&str) -> Option<String>) -> Result<Signer, SigV4Error> {
        let (credentials, region) = credentials::resolve(cfg, env)?;
        let service = if cfg.service_name.is_empty() { DEFAULT_SERVICE } else { &cfg.service_name };
        Ok(Signer { region, service: service.to_owned(), credentials })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Adds `Host`, `Content-Length`, `X-Amz-Date`, `X-Amz-Security-Token` (temporary
    /// credentials) and `Authorization` to `req`, whose body is `body`, signed at `now`.
    pub async fn sign(
        &self,
        req: &mut hyper::Request<Full<Bytes>>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), SigV4Error> {
        let creds = self.credentials.get().await?;
        sign_request(req, body, &creds, &self.region, &self.service, now)
    }
}

/// Signs `req` with known credentials (the synchronous core of [`Signer::sign`]; also used for
/// STS requests).
pub fn sign_request(
    req: &mut hyper::Request<Full<Bytes>>,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), SigV4Error> {
    let bad = |e: &dyn std::fmt::Display| SigV4Error::Config(format!("cannot sign the request: {e}"));
    let (amz_date, date) = amz_dates(now);
    // The host as hyper sends it: default ports left out (Go's SanitizeHostForHeader does the
    // same before signing).
    let uri = req.uri().clone();
    let host = uri.host().ok_or_else(|| bad(&"no host"))?;
    let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
    let host = match uri.port_u16() {
        Some(p) if p != default_port => format!("{host}:{p}"),
        _ => host.to_owned(),
    };
    let path = clean_path(uri.path());
    if path != uri.path() {
        let pq = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let mut parts = uri.into_parts();
        parts.path_and_query = Some(pq.parse().map_err(|e| bad(&e))?);
        *req.uri_mut() = hyper::Uri::from_parts(parts).map_err(|e| bad(&e))?;
    }
    let h = req.headers_mut();
    h.insert(hyper::header::HOST, HeaderValue::try_from(host).map_err(|e| bad(&e))?);
    if !body.is_empty() {
        h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    h.insert(
        HeaderName::from_static("x-amz-date"),
        HeaderValue::try_from(amz_date.as_str()).map_err(|e| bad(&e))?,
    );
    if let Some(token) = &creds.session_token {
        let mut v = HeaderValue::try_from(token.expose()).map_err(|e| bad(&e))?;
        v.set_sensitive(true);
        h.insert(HeaderName::from_static("x-amz-security-token"), v);
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in req.headers() {
        if UNSIGNED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.push((name.as_str().to_owned(), value));
    }
    let payload_hash = hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    let canonical = canonical_request(
        req.method().as_str(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        &headers,
        &payload_hash,
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = string_to_sign(&amz_date, &scope, &canonical.text);
    let sig = signature(creds.secret_access_key.expose(), &date, region, service, &to_sign);
    let auth = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
        creds.access_key_id, canonical.signed_headers
    );
    let mut auth = HeaderValue::try_from(auth).map_err(|e| bad(&e))?;
    auth.set_sensitive(true);
    req.headers_mut().insert(hyper::header::AUTHORIZATION, auth);
    Ok(())
}

/// A canonical request and the list of headers it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// The canonical request text.
    pub text: String,
    /// `SignedHeaders`: the signed header names, lower case, sorted, `;`-separated.
    pub signed_headers: String,
}

/// The canonical request (SigV4 task 1): `path` as sent (percent-encoded once more, as the AWS
/// SDK does for every service but S3), `query` as sent, every header in `headers` (any case,
/// repeated names allowed: their values are joined with `,` in order).
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
) -> CanonicalRequest {
    let mut names: Vec<String> = Vec::new();
    let mut values: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if !values.contains_key(&name) {
            names.push(name.clone());
        }
        // Trimmed, and runs of spaces collapsed to one (the SDK's stripExcessSpaces).
        let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
        values.entry(name).or_default().push(collapsed);
    }
    names.sort();
    let mut text = String::new();
    text.push_str(method);
    text.push('\n');
    text.push_str(&uri_encode(if path.is_empty() { "/" } else { path }, false));
    text.push('\n');
    text.push_str(&canonical_query(query));
    text.push('\n');
    for name in &names {
        let _ = writeln!(text, "{name}:{}", values[name].join(","));
    }
    text.push('\n');
    let signed_headers = names.join(";");
    text.push_str(&signed_headers);
    text.push('\n');
    text.push_str(payload_hash);
    CanonicalRequest { text, signed_headers }
}

/// The string to sign (task 2).
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex(ring::digest::digest(&ring::digest::SHA256, canonical_request.as_bytes()).as_ref());
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// The signature (tasks 3 and 4): HMAC-SHA256 chain from the secret key over date, region,
/// service and `aws4_request`, then over the string to sign; lower-case hex.
pub fn signature(secret: &str, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let mac = |key: &[u8], data: &[u8]| {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::sign(&k, data).as_ref().to_vec()
    };
    let k_date = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = mac(&k_date, region.as_bytes());
    let k_service = mac(&k_region, service.as_bytes());
    let k_signing = mac(&k_service, b"aws4_request");
    hex(&mac(&k_signing, string_to_sign.as_bytes()))
}

/// `X-Amz-Date` (`20150830T123600Z`) and the scope date (`20150830`) of `t`, in UTC.
pub fn amz_dates(t: SystemTime) -> (String, String) {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let full = ts.strftime("%Y%m%dT%H%M%SZ").to_string();
    let date = full[..8].to_owned();
    (full, date)
}

/// The canonical query string: pairs decoded, re-encoded with RFC 3986's unreserved set, sorted
/// by name and then value.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k), true), uri_encode(&percent_decode(v), true))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Percent-encodes every byte but RFC 3986's unreserved ones (and `/` unless `slash`).
fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            b'/' if !slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `path.Clean` with a trailing slash kept, as `prometheus/sigv4` normalises the path it
/// signs and sends; an empty path stays `/`.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut cleaned = format!("/{}", out.join("/"));
    if cleaned != "/" && path.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_like_prometheus() {
        // (path, signed and sent, why)
        for (p, want, why) in [
            ("/workspaces/ws-1/api/v1/remote_write", "/workspaces/ws-1/api/v1/remote_write", "already clean"),
            ("//a//b/", "/a/b/", "duplicate slashes collapse, trailing slash kept"),
            ("/a/./b/../c", "/a/c", "dot segments resolved"),
            ("/", "/", "root"),
            ("", "/", "empty"),
            ("/../..", "/", "cannot climb above the root"),
        ] {
            assert_eq!(clean_path(p), want, "{why}");
        }
    }

    #[test]
    fn config_checks() {
        let parse = |y: &str| serde_saphyr::from_str::<SigV4Config>(y).map_err(|e| e.to_string());
        assert!(parse("region: us-east-1\n").unwrap().validate().is_ok());
        let half = parse("access_key: AKID\n").unwrap().validate().unwrap_err();
        assert!(half.contains("Access key and Secret Key"), "{half}");
        assert!(parse("secret_key: s\n").unwrap().validate().is_err());
        let ext = parse("external_id: x\n").unwrap().validate().unwrap_err();
        assert!(ext.contains("external_id can only be used with role_arn"));
        let shown = format!("{:?}", parse("access_key: AKID\nsecret_key: hunter2\n").unwrap());
        assert!(!shown.contains("hunter2") && shown.contains("<secret>"), "{shown}");
    }

    #[test]
    fn dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_dates(t), ("20150830T123600Z".to_owned(), "20150830".to_owned()));
    }
}
