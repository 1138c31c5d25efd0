//! Where the signing credentials come from: the AWS default credential chain as the Go SDK
//! (v2, what `prometheus/sigv4` uses) walks it, and `role_arn` through STS.
//!
//! What this is, in the SDK's order:
//! 1. `access_key`/`secret_key` from the config;
//! 2. with `profile` set: that profile of the shared files (below), else 5/6;
//! 3. `AWS_ACCESS_KEY_ID` (or `AWS_ACCESS_KEY`) and `AWS_SECRET_ACCESS_KEY` (or
//!    `AWS_SECRET_KEY`), with `AWS_SESSION_TOKEN`;
//! 4. `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN` (EKS IAM roles for service accounts):
//!    STS `AssumeRoleWithWebIdentity`, the token file read for every refresh;
//! 5. the profile (`AWS_PROFILE`, else `default`) of `AWS_SHARED_CREDENTIALS_FILE`
//!    (`~/.aws/credentials`) and `AWS_CONFIG_FILE` (`~/.aws/config`): static keys, or
//!    `web_identity_token_file` with `role_arn`;
//! 6. the container endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `_RELATIVE_URI`, with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`; ECS and EKS Pod Identity), else the EC2
//!    instance metadata service (IMDSv2; `AWS_EC2_METADATA_DISABLED=true` turns it off,
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it).
//!
//! With `role_arn`, the credentials found are used to call STS `AssumeRole` (with `external_id`).
//! STS is `https://sts.<region>.amazonaws.com` (`sts-fips` with `use_fips_sts_endpoint`), or
//! `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` when set, as in the SDKs. Fetched credentials are
//! cached and refreshed 30 s before they expire (the SDK cache's `ExpiryWindow` in sigv4.go).
//! These endpoints are called through the proxy of the environment (`HTTPS_PROXY`), as the
//! SDK's default HTTP client does.
//! What this is not: `credential_process`, SSO, or `source_profile` role chains in the shared
//! files (refused with a message), or the SDK's jitter of the refresh window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header;

use super::{SigV4Config, SigV4Error};
use crate::config::common::{HttpClientConfig, ProxyConfig, Secret};
use crate::http_client::Client;

/// Fetched credentials are refreshed this long before they expire.
const EXPIRY_WINDOW: Duration = Duration::from_secs(30);
/// How long assumed roles last (the SDK's `stscreds.DefaultDuration`, 15 minutes).
const ASSUME_ROLE_DURATION_SECS: u64 = 900;
/// Largest answer read from STS or a metadata endpoint, in bytes.
const RESPONSE_MAX_BYTES: usize = 256 * 1024;
/// The EC2 metadata service.
const IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// The ECS container credentials host for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_ENDPOINT: &str = "http://169.254.170.2";
/// IMDSv2 session token lifetime asked for, in seconds (the SDK's default).
const IMDS_TOKEN_TTL_SECS: &str = "21600";

/// A set of AWS credentials. Secrets print as `<secret>`.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// When they expire (`None`: static credentials).
    pub expires: Option<SystemTime>,
}

/// Where credentials come from, with a cache for the fetched kinds.
pub struct Provider {
    source: Source,
    cache: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.source {
            Source::Static(_) => "static",
            Source::WebIdentity { .. } => "web identity",
            Source::Container { .. } => "container",
            Source::Imds { .. } => "EC2 instance metadata",
            Source::AssumeRole { .. } => "assume role",
        };
        f.debug_struct("Provider").field("source", &kind).finish_non_exhaustive()
    }
}

enum Source {
    Static(Credentials),
    WebIdentity { role_arn: String, token_file: PathBuf, session_name: String, sts: Sts },
    Container { uri: String, token: Option<Secret>, token_file: Option<PathBuf>, client: Client },
    Imds { endpoint: String, client: Client },
    AssumeRole { base: Box<Provider>, role_arn: String, external_id: String, sts: Sts },
}

/// An STS endpoint and how to reach it.
struct Sts {
    endpoint: String,
    region: String,
    client: Client,
}

impl Provider {
    fn new(source: Source) -> Provider {
        Provider { source, cache: tokio::sync::Mutex::new(None) }
    }

    /// Credentials valid for at least [`EXPIRY_WINDOW`] more, fetched if needed.
    pub async fn get(&self) -> Result<Credentials, SigV4Error> {
        if let Source::Static(c) = &self.source {
            return Ok(c.clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.expires.is_none_or(|e| SystemTime::now() + EXPIRY_WINDOW < e)
        {
            return Ok(c.clone());
        }
        let fresh = Box::pin(self.fetch()).await.map_err(SigV4Error::Credentials)?;
        *cache = Some(fresh.clone());
        Ok(fresh)
    }

    async fn fetch(&self) -> Result<Credentials, String> {
        match &self.source {
            Source::Static(c) => Ok(c.clone()),
            Source::WebIdentity { role_arn, token_file, session_name, sts } => {
                let token = std::fs::read_to_string(token_file)
                    .map_err(|e| format!("reading web identity token {}: {e}", token_file.display()))?;
                let form = [
                    ("Action", "AssumeRoleWithWebIdentity"),
                    ("RoleArn", role_arn.as_str()),
                    ("RoleSessionName", session_name.as_str()),
                    ("Version", "2011-06-15"),
                    ("WebIdentityToken", token.trim()),
                ];
                sts.call(&form, None).await
            }
            Source::AssumeRole { base, role_arn, external_id, sts } => {
                let creds = base.get().await.map_err(|e| e.to_string())?;
                let session = session_name();
                let duration = ASSUME_ROLE_DURATION_SECS.to_string();
                let mut form = vec![
                    ("Action", "AssumeRole"),
                    ("DurationSeconds", duration.as_str()),
                    ("RoleArn", role_arn.as_str()),
                    ("RoleSessionName", session.as_str()),
                    ("Version", "2011-06-15"),
                ];
                if !external_id.is_empty() {
                    form.push(("ExternalId", external_id.as_str()));
                }
                sts.call(&form, Some(&creds)).await
            }
            Source::Container { uri, token, token_file, client } => {
                let auth = match (token_file, token) {
                    (Some(f), _) => Some(
                        std::fs::read_to_string(f)
                            .map_err(|e| format!("reading {}: {e}", f.display()))?
                            .trim()
                            .to_owned(),
                    ),
                    (None, Some(t)) => Some(t.expose().to_owned()),
                    (None, None) => None,
                };
                let mut req = hyper::Request::get(uri.as_str());
                if let Some(a) = auth {
                    req = req.header(header::AUTHORIZATION, a);
                }
                let (status, body) = send(client, req, Bytes::new()).await?;
                if !status.is_success() {
                    return Err(format!("container credentials endpoint answered {status}: {body}"));
                }
                json_credentials(&body)
            }
            Source::Imds { endpoint, client } => {
                let token_req = hyper::Request::put(format!("{endpoint}/latest/api/token"))
                    .header("X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL_SECS);
                let (status, token) = send(client, token_req, Bytes::new()).await?;
                if !status.is_success() {
                    return Err(format!("EC2 metadata token: HTTP {status}"));
                }
                let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
                let get =
                    |url: String| hyper::Request::get(url).header("X-aws-ec2-metadata-token", token.trim());
                let (status, roles) = send(client, get(base.clone()), Bytes::new()).await?;
                let role = roles.lines().next().unwrap_or("").trim().to_owned();
                if !status.is_success() || role.is_empty() {
                    return Err(format!("EC2 metadata: no instance role (HTTP {status})"));
                }
                let (status, body) = send(client, get(format!("{base}{role}")), Bytes::new()).await?;
                if !status.is_success() {
                    return Err(format!("EC2 metadata credentials: HTTP {status}"));
                }
                json_credentials(&body)
            }
        }
    }
}

impl Sts {
    /// One STS query-API call; signed when `creds` is given (AssumeRole), unsigned otherwise
    /// (AssumeRoleWithWebIdentity).
    async fn call(&self, form: &[(&str, &str)], creds: Option<&Credentials>) -> Result<Credentials, String> {
        let body: String =
            form.iter().map(|(k, v)| format!("{k}={}", form_escape(v))).collect::<Vec<_>>().join("&");
        let body = Bytes::from(body);
        let mut req = hyper::Request::post(self.endpoint.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8")
            .header(header::USER_AGENT, crate::USER_AGENT)
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        if let Some(c) = creds {
            super::sign_request(&mut req, &body, c, &self.region, "sts", SystemTime::now())
                .map_err(|e| e.to_string())?;
        }
        let resp = self.client.request(req).await.map_err(|e| crate::fetch::error_chain(&e))?;
        let status = resp.status();
        let text = read_body(resp).await?;
        if !status.is_success() {
            let msg = xml_tag(&text, "Message").unwrap_or_else(|| text.chars().take(512).collect());
            return Err(format!("STS {}: HTTP {status}: {msg}", form[0].1));
        }
        let field = |tag: &str| xml_tag(&text, tag).ok_or_else(|| format!("STS answer without <{tag}>"));
        Ok(Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: Secret::from(field("SecretAccessKey")?.as_str()),
            session_token: Some(Secret::from(field("SessionToken")?.as_str())),
            expires: Some(parse_time(&field("Expiration")?)?),
        })
    }
}

async fn send(
    client: &Client,
    req: hyper::http::request::Builder,
    body: Bytes,
) -> Result<(hyper::StatusCode, String), String> {
    let req =
        req.header(header::USER_AGENT, crate::USER_AGENT).body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| crate::fetch::error_chain(&e))?;
    let status = resp.status();
    Ok((status, read_body(resp).await?))
}

async fn read_body(resp: hyper::Response<hyper::body::Incoming>) -> Result<String, String> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(d) = frame.into_data() {
            if out.len() + d.len() > RESPONSE_MAX_BYTES {
                return Err(format!("answer larger than {RESPONSE_MAX_BYTES} bytes"));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Credentials in the JSON of the container and EC2 metadata endpoints.
fn json_credentials(body: &str) -> Result<Credentials, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("credentials answer is not JSON: {e}"))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let key = s("AccessKeyId").ok_or("credentials answer without AccessKeyId")?;
    let secret = s("SecretAccessKey").ok_or("credentials answer without SecretAccessKey")?;
    Ok(Credentials {
        access_key_id: key,
        secret_access_key: Secret::from(secret.as_str()),
        session_token: s("Token").map(|t| Secret::from(t.as_str())),
        expires: s("Expiration").map(|e| parse_time(&e)).transpose()?,
    })
}

/// An RFC 3339 time, as STS and the metadata services write it.
fn parse_time(s: &str) -> Result<SystemTime, String> {
    let ts: jiff::Timestamp = s.trim().parse().map_err(|e| format!("invalid expiration {s:?}: {e}"))?;
    Ok(SystemTime::from(ts))
}

/// The text of the first `<tag>…</tag>`, with XML's predefined entities decoded.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    let raw = xml[start..end].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Form encoding of a value (RFC 3986 unreserved kept, the rest `%XX`).
fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A role session name, unique per call as the SDK's (`aws-go-sdk-<unix nanos>`).
fn session_name() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("trawl-{nanos}")
}

/// One profile of the shared config and credentials files, keys lower-cased.
type Profile = BTreeMap<String, String>;

/// Reads profile `name` from the credentials file (section `[name]`) and the config file
/// (`[profile name]`, or `[default]`); keys of the credentials file win. Missing files are empty.
fn shared_profile(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Profile {
    let home = env("HOME").unwrap_or_default();
    let path = |var: &str, default: &str| {
        env(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&home).join(default))
    };
    let mut out = Profile::new();
    let config_section = if name == "default" { "default".to_owned() } else { format!("profile {name}") };
    for (file, section) in [
        (path("AWS_CONFIG_FILE", ".aws/config"), config_section),
        (path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"), name.to_owned()),
    ] {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let mut current = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = s.trim().to_owned();
                continue;
            }
            if current == section
                && let Some((k, v)) = line.split_once('=')
            {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
    }
    out
}

/// Resolves the credential source and the region (see the module docs).
pub(super) fn resolve(
    cfg: &SigV4Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Provider, String), SigV4Error> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let profile_name = if cfg.profile.is_empty() {
        var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned())
    } else {
        cfg.profile.clone()
    };
    let profile = shared_profile(env, &profile_name);
    let region =
        [Some(cfg.region.clone()).filter(|r| !r.is_empty()), var("AWS_REGION"), var("AWS_DEFAULT_REGION")]
            .into_iter()
            .flatten()
            .next()
            .or_else(|| profile.get("region").cloned())
            .ok_or_else(|| {
                SigV4Error::Config("region not configured in sigv4 or in default credentials chain".into())
            })?;
    let sts = || -> Result<Sts, SigV4Error> {
        let endpoint = var("AWS_ENDPOINT_URL_STS").or_else(|| var("AWS_ENDPOINT_URL")).unwrap_or_else(|| {
            let host = if cfg.use_fips_sts_endpoint { "sts-fips" } else { "sts" };
            format!("https://{host}.{region}.amazonaws.com/")
        });
        Ok(Sts { endpoint, region: region.clone(), client: env_client()? })
    };
    let static_creds = |key: String, secret: String, token: Option<String>| {
        Source::Static(Credentials {
            access_key_id: key,
            secret_access_key: Secret::from(secret.as_str()),
            session_token: token.map(|t| Secret::from(t.as_str())),
            expires: None,
        })
    };
    let web_identity =
        |role_arn: String, token_file: String, session: Option<String>| -> Result<Source, SigV4Error> {
            Ok(Source::WebIdentity {
                role_arn,
                token_file: PathBuf::from(token_file),
                session_name: session.unwrap_or_else(session_name),
                sts: sts()?,
            })
        };
    let from_profile = |p: &Profile| -> Result<Option<Source>, SigV4Error> {
        if let (Some(k), Some(s)) = (p.get("aws_access_key_id"), p.get("aws_secret_access_key")) {
            return Ok(Some(static_creds(k.clone(), s.clone(), p.get("aws_session_token").cloned())));
        }
        if let (Some(role), Some(file)) = (p.get("role_arn"), p.get("web_identity_token_file")) {
            return Ok(Some(web_identity(role.clone(), file.clone(), p.get("role_session_name").cloned())?));
        }
        for unsupported in
            ["source_profile", "credential_source", "credential_process", "sso_start_url", "sso_session"]
        {
            if p.contains_key(unsupported) {
                return Err(SigV4Error::Config(format!(
                    "profile {profile_name:?} uses {unsupported}, which trawl does not support; give static keys, \
                     web_identity_token_file, or role_arn in the sigv4 block"
                )));
            }
        }
        Ok(None)
    };
    let remote = || -> Result<Source, SigV4Error> {
        let full = var("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .or_else(|| var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|r| format!("{ECS_ENDPOINT}{r}")));
        if let Some(uri) = full {
            return Ok(Source::Container {
                uri,
                token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(|t| Secret::from(t.as_str())),
                token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
                client: env_client()?,
            });
        }
        if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(SigV4Error::Config(
                "could not get SigV4 credentials: none in the config, the environment or the shared files, and \
                 the EC2 metadata service is disabled"
                    .into(),
            ));
        }
        let endpoint = var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS_ENDPOINT.to_owned());
        Ok(Source::Imds { endpoint: endpoint.trim_end_matches('/').to_owned(), client: env_client()? })
    };
    let secret = cfg.secret_key.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default();
    let env_key = var("AWS_ACCESS_KEY_ID").or_else(|| var("AWS_ACCESS_KEY"));
    let env_secret = var("AWS_SECRET_ACCESS_KEY").or_else(|| var("AWS_SECRET_KEY"));
    let base = if !cfg.access_key.is_empty() && !secret.is_empty() {
        static_creds(cfg.access_key.clone(), secret, None)
    } else if !cfg.profile.is_empty() {
        match from_profile(&profile)? {
            Some(s) => s,
            None => remote()?,
        }
    } else if let (Some(k), Some(s)) = (env_key, env_secret) {
        static_creds(k, s, var("AWS_SESSION_TOKEN"))
    } else if let (Some(file), Some(role)) = (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN")) {
        web_identity(role, file, var("AWS_ROLE_SESSION_NAME"))?
    } else {
        match from_profile(&profile)? {
            Some(s) => s,
            None => remote()?,
        }
    };
    let provider = if cfg.role_arn.is_empty() {
        Provider::new(base)
    } else {
        Provider::new(Source::AssumeRole {
            base: Box::new(Provider::new(base)),
            role_arn: cfg.role_arn.clone(),
            external_id: cfg.external_id.clone(),
            sts: sts()?,
        })
    };
    Ok((provider, region))
}

/// The client for STS and the metadata endpoints: default TLS, the environment's proxy.
fn env_client() -> Result<Client, SigV4Error> {
    let cfg = HttpClientConfig {
        proxy: ProxyConfig { proxy_from_environment: true, ..Default::default() },
        ..Default::default()
    };
    crate::http_client::from_config(&cfg).map_err(|e| SigV4Error::Config(format!("HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    fn kind(p: &Provider) -> String {
        format!("{p:?}")
    }

    #[tokio::test]
    async fn chain_order() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(&creds, "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n\n[other]\naws_access_key_id = OTHER\naws_secret_access_key = o\n").unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, "[profile other]\nregion = eu-central-1\n").unwrap();
        let files = || {
            vec![
                ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
                ("AWS_CONFIG_FILE", config.display().to_string()),
                ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ]
        };
        let cfg = |y: &str| serde_saphyr::from_str::<SigV4Config>(y).unwrap();

        // (config, extra env, expected key id, expected region, why)
        type Case = (&'static str, Vec<(&'static str, String)>, &'static str, &'static str, &'static str);
        let cases: Vec<Case> = vec![
            (
                "region: r1\naccess_key: CFG\nsecret_key: s\n",
                vec![("AWS_ACCESS_KEY_ID", "ENV".into()), ("AWS_SECRET_ACCESS_KEY", "e".into())],
                "CFG",
                "r1",
                "config keys first",
            ),
            (
                "region: r1\n",
                vec![("AWS_ACCESS_KEY_ID", "ENV".into()), ("AWS_SECRET_ACCESS_KEY", "e".into())],
                "ENV",
                "r1",
                "then the environment",
            ),
            (
                "region: r1\n",
                vec![("AWS_ACCESS_KEY", "OLDENV".into()), ("AWS_SECRET_KEY", "e".into())],
                "OLDENV",
                "r1",
                "the old variable names too",
            ),
            ("region: r1\n", vec![], "FILEKEY", "r1", "then the default profile"),
            (
                "profile: other\n",
                vec![("AWS_ACCESS_KEY_ID", "ENV".into()), ("AWS_SECRET_ACCESS_KEY", "e".into())],
                "OTHER",
                "eu-central-1",
                "an explicit profile beats the environment; its region from the config file",
            ),
            ("{}\n", vec![("AWS_PROFILE", "other".into())], "OTHER", "eu-central-1", "AWS_PROFILE"),
            (
                "{}\n",
                vec![("AWS_REGION", "r2".into()), ("AWS_DEFAULT_REGION", "r3".into())],
                "FILEKEY",
                "r2",
                "AWS_REGION before AWS_DEFAULT_REGION",
            ),
        ];
        for (y, extra, key, region, why) in cases {
            let mut vars = files();
            vars.extend(extra);
            let (p, r) = resolve(&cfg(y), &env_of(vars)).unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(p.get().await.unwrap().access_key_id, key, "{why}");
            assert_eq!(r, region, "{why}");
        }
        let none = resolve(
            &cfg("{}\n"),
            &env_of(vec![("AWS_ACCESS_KEY_ID", "K".into()), ("AWS_SECRET_ACCESS_KEY", "s".into())]),
        );
        assert!(none.unwrap_err().to_string().contains("region not configured"));
        let disabled = resolve(
            &cfg("region: r\n"),
            &env_of(vec![("AWS_EC2_METADATA_DISABLED", "true".into()), ("HOME", "/nonexistent".into())]),
        );
        assert!(disabled.is_err(), "no source at all fails at start");
        // (config, environment, kind of source, why)
        type KindCase = (&'static str, Vec<(&'static str, String)>, &'static str, &'static str);
        let kinds: Vec<KindCase> = vec![
            (
                "region: r\n",
                vec![("HOME", "/nonexistent".into())],
                "EC2",
                "the last resort is instance metadata",
            ),
            (
                "region: r\n",
                vec![
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t".into()),
                    ("AWS_ROLE_ARN", "arn:aws:iam::1:role/x".into()),
                ],
                "web identity",
                "IRSA",
            ),
            (
                "region: r\n",
                vec![
                    ("HOME", "/nonexistent".into()),
                    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds".into()),
                ],
                "container",
                "ECS / EKS Pod Identity",
            ),
            (
                "region: r\naccess_key: A\nsecret_key: s\nrole_arn: arn:aws:iam::1:role/x\n",
                vec![],
                "assume role",
                "role_arn wraps the credentials found",
            ),
        ];
        for (y, vars, want, why) in kinds {
            let p = resolve(&cfg(y), &env_of(vars)).unwrap_or_else(|e| panic!("{why}: {e}")).0;
            assert!(kind(&p).contains(want), "{why}: {p:?}");
        }
    }

    #[test]
    fn sts_answers() {
        let xml = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIA1</AccessKeyId>\
                   <SecretAccessKey>s/k+e=y</SecretAccessKey><SessionToken>t&amp;k</SessionToken>\
                   <Expiration>2030-01-02T03:04:05Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>";
        assert_eq!(xml_tag(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_tag(xml, "SessionToken").as_deref(), Some("t&k"));
        assert!(parse_time(&xml_tag(xml, "Expiration").unwrap()).is_ok());
        let j = json_credentials(
            r#"{"AccessKeyId":"A","SecretAccessKey":"S","Token":"T","Expiration":"2030-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(j.access_key_id, "A");
        assert!(format!("{j:?}").contains("<secret>") && !format!("{j:?}").contains("\"S\""));
    }
}
