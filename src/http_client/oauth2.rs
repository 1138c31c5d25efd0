//! OAuth 2.0 client credentials (`oauth2`): the token each request carries, fetched from the
//! token endpoint and cached until shortly before it expires.
//!
//! What this is: the behaviour of Prometheus' `oauth2RoundTripper` with `golang.org/x/oauth2`'s
//! `clientcredentials` and `ReuseTokenSource` underneath: `client_secret_file` is read for every
//! request and a changed secret discards the cached token; a token is reused until 10 s before its
//! `expires_in` (`expiryDelta`), and one without `expires_in` forever; concurrent requests wait for
//! one fetch. The token request is a form POST with `grant_type=client_credentials`, `scope`
//! (space-separated) and `endpoint_params` (which may replace `grant_type` but no other
//! parameter). The client authenticates with HTTP basic auth first (id and secret
//! form-encoded, RFC 6749 §2.3.1) and, if that attempt fails, with `client_id`/`client_secret`
//! in the body, remembering what worked (`AuthStyleAutoDetect`). The answer is JSON, or a form
//! when the content type says `application/x-www-form-urlencoded` or `text/plain`.
//! What this is not: refresh tokens (the client credentials grant has none), or the
//! `jwt-bearer` grant of newer Prometheus versions (its keys are refused at load).

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderValue};

use crate::config::common::OAuth2;

/// A token is refreshed this long before it expires (`golang.org/x/oauth2`'s `expiryDelta`).
const EXPIRY_DELTA: Duration = Duration::from_secs(10);
/// Largest token response read, in bytes (`golang.org/x/oauth2` reads at most 1 MiB).
const TOKEN_RESPONSE_MAX_BYTES: usize = 1 << 20;

/// Why no token could be had. Retryable: the next request tries again (a rotated secret file or
/// a token endpoint back up fixes it).
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    /// `client_secret_file` could not be read.
    #[error("unable to read oauth2 client secret: {0}")]
    Secret(#[source] super::Error),
    /// The token request could not be made or answered.
    #[error("oauth2: cannot fetch token: {0}")]
    Fetch(String),
    /// The answer was not a usable token.
    #[error("oauth2: {0}")]
    Response(String),
}

/// How the client credentials are sent, as `golang.org/x/oauth2`'s `AuthStyle`.
const STYLE_UNKNOWN: u8 = 0;
const STYLE_HEADER: u8 = 1;
const STYLE_PARAMS: u8 = 2;

/// Fetches and caches the token of one `oauth2` block.
pub(super) struct TokenSource {
    cfg: OAuth2,
    /// The client for the token endpoint (its own TLS and proxy settings).
    client: super::Client,
    /// The auth style that worked (`STYLE_*`).
    style: AtomicU8,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The secret the cached token was fetched with.
    secret: Option<String>,
    token: Option<Token>,
}

struct Token {
    header: HeaderValue,
    /// When it stops being used (already less [`EXPIRY_DELTA`]); `None`: never.
    refresh_at: Option<Instant>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("token_url", &self.cfg.token_url).finish_non_exhaustive()
    }
}

impl TokenSource {
    pub(super) fn new(cfg: OAuth2, client: super::Client) -> TokenSource {
        TokenSource { cfg, client, style: AtomicU8::new(STYLE_UNKNOWN), state: Default::default() }
    }

    /// The `Authorization` header for the next request.
    pub(super) async fn header(&self) -> Result<HeaderValue, OAuth2Error> {
        let secret = match (&self.cfg.client_secret, &self.cfg.client_secret_file) {
            (_, Some(path)) => read_trimmed(path).map_err(OAuth2Error::Secret)?,
            (Some(s), None) => s.expose().to_owned(),
            (None, None) => String::new(),
        };
        let mut state = self.state.lock().await;
        if state.secret.as_deref() != Some(secret.as_str()) {
            state.token = None;
            state.secret = Some(secret.clone());
        }
        if let Some(t) = &state.token
            && t.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.header.clone());
        }
        let token = self.fetch(&secret).await?;
        let header = token.header.clone();
        state.token = Some(token);
        Ok(header)
    }

    /// One token from the endpoint, probing the auth style the first time.
    async fn fetch(&self, secret: &str) -> Result<Token, OAuth2Error> {
        match self.style.load(Ordering::Relaxed) {
            STYLE_UNKNOWN => match self.fetch_with(secret, STYLE_HEADER).await {
                Ok(t) => {
                    self.style.store(STYLE_HEADER, Ordering::Relaxed);
                    Ok(t)
                }
                Err(_) => {
                    let t = self.fetch_with(secret, STYLE_PARAMS).await?;
                    self.style.store(STYLE_PARAMS, Ordering::Relaxed);
                    Ok(t)
                }
            },
            style => self.fetch_with(secret, style).await,
        }
    }

    async fn fetch_with(&self, secret: &str, style: u8) -> Result<Token, OAuth2Error> {
        let body = form_body(&self.cfg, secret, style)?;
        let mut req = hyper::Request::post(self.cfg.token_url.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::USER_AGENT, crate::USER_AGENT);
        if style == STYLE_HEADER {
            let mut v = String::from("Basic ");
            let creds = format!("{}:{}", query_escape(&self.cfg.client_id), query_escape(secret));
            super::base64_into(creds.as_bytes(), &mut v);
            let mut h = HeaderValue::try_from(v).map_err(|e| OAuth2Error::Fetch(e.to_string()))?;
            h.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, h);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| OAuth2Error::Fetch(e.to_string()))?;
        // Boxed: the token client's request is a `Client::request` inside `Client::request`.
        let resp = Box::pin(self.client.request(req))
            .await
            .map_err(|e| OAuth2Error::Fetch(crate::fetch::error_chain(&e)))?;
        let status = resp.status();
        let content_type =
            resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let mut body = Vec::new();
        let mut incoming = resp.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| OAuth2Error::Fetch(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                let room = TOKEN_RESPONSE_MAX_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        if !status.is_success() {
            return Err(OAuth2Error::Fetch(format!(
                "{status}\nResponse: {}",
                String::from_utf8_lossy(&body[..body.len().min(1024)])
            )));
        }
        parse_token(&content_type, &body, Instant::now())
    }
}

fn read_trimmed(path: &Path) -> Result<String, super::Error> {
    let s = std::fs::read_to_string(path)
        .map_err(|source| super::Error::Read { path: path.to_owned(), source })?;
    Ok(s.trim().to_owned())
}

/// The token request body, `url.Values.Encode` style: keys sorted, each value form-encoded.
fn form_body(cfg: &OAuth2, secret: &str, style: u8) -> Result<String, OAuth2Error> {
    let mut v: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    v.insert("grant_type".into(), "client_credentials".into());
    if !cfg.scopes.is_empty() {
        v.insert("scope".into(), cfg.scopes.join(" "));
    }
    for (k, p) in &cfg.endpoint_params {
        // "Allow grant_type to be overridden to allow interoperability with non-compliant
        // implementations" (clientcredentials.go); anything else already set is an error.
        if v.contains_key(k) && k != "grant_type" {
            return Err(OAuth2Error::Fetch(format!("oauth2: cannot overwrite parameter {k:?}")));
        }
        v.insert(k.clone(), p.clone());
    }
    if style == STYLE_PARAMS {
        v.insert("client_id".into(), cfg.client_id.clone());
        if !secret.is_empty() {
            v.insert("client_secret".into(), secret.to_owned());
        }
    }
    Ok(v.iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Go's `url.QueryEscape`: unreserved characters kept, space as `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Reads a token answer (`internal/token.go`'s `doTokenRoundTrip`).
fn parse_token(content_type: &str, body: &[u8], now: Instant) -> Result<Token, OAuth2Error> {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (access_token, token_type, expires_in) =
        if media == "application/x-www-form-urlencoded" || media == "text/plain" {
            let text = String::from_utf8_lossy(body);
            let get = |key: &str| {
                text.split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .find(|(k, _)| form_unescape(k) == key)
                    .map(|(_, v)| form_unescape(v))
                    .unwrap_or_default()
            };
            (get("access_token"), get("token_type"), get("expires_in").parse::<i64>().unwrap_or(0))
        } else {
            let v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| OAuth2Error::Response(format!("cannot parse token response: {e}")))?;
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
            // expires_in may be a number or a numeric string (Go's json.Number accepts both);
            // anything else is an error there too.
            let expires_in = match v.get("expires_in") {
                None | Some(serde_json::Value::Null) => 0,
                Some(serde_json::Value::Number(n)) => {
                    n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0)
                }
                Some(serde_json::Value::String(t)) => t
                    .parse::<f64>()
                    .map(|f| f as i64)
                    .map_err(|_| OAuth2Error::Response(format!("invalid expires_in {t:?}")))?,
                Some(other) => return Err(OAuth2Error::Response(format!("invalid expires_in {other}"))),
            };
            (s("access_token"), s("token_type"), expires_in)
        };
    if access_token.is_empty() {
        return Err(OAuth2Error::Response("server response missing access_token".into()));
    }
    // Token.Type(): the common spellings normalised, empty means Bearer.
    let kind = match token_type.to_ascii_lowercase().as_str() {
        "" | "bearer" => "Bearer".to_owned(),
        "mac" => "MAC".to_owned(),
        "basic" => "Basic".to_owned(),
        _ => token_type,
    };
    let mut header = HeaderValue::try_from(format!("{kind} {access_token}"))
        .map_err(|_| OAuth2Error::Response("access_token is not a valid header value".into()))?;
    header.set_sensitive(true);
    // expires_in is capped at i32::MAX seconds in Go; 0 means the token does not expire.
    let expires_in = expires_in.min(i64::from(i32::MAX));
    let refresh_at = match expires_in {
        0 => None,
        s if s < 0 => Some(now),
        s => Some((now + Duration::from_secs(s as u64)).checked_sub(EXPIRY_DELTA).unwrap_or(now)),
    };
    Ok(Token { header, refresh_at })
}

/// `url.ParseQuery`'s unescaping of one key or value: `+` is a space, `%XX` a byte.
fn form_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OAuth2 {
        serde_saphyr::from_str(
            "client_id: 'my id'\nclient_secret: s\ntoken_url: http://t/token\nscopes: [a, b]\n\
             endpoint_params: {audience: 'https://x'}\n",
        )
        .unwrap()
    }

    #[test]
    fn token_request_bodies() {
        let c = cfg();
        assert_eq!(
            form_body(&c, "s", STYLE_HEADER).unwrap(),
            "audience=https%3A%2F%2Fx&grant_type=client_credentials&scope=a+b",
            "sorted keys, space as +"
        );
        assert_eq!(
            form_body(&c, "s&t", STYLE_PARAMS).unwrap(),
            "audience=https%3A%2F%2Fx&client_id=my+id&client_secret=s%26t&grant_type=client_credentials&scope=a+b"
        );
        let mut over = c.clone();
        over.endpoint_params.insert("grant_type".into(), "custom".into());
        assert!(
            form_body(&over, "s", STYLE_HEADER).unwrap().contains("grant_type=custom"),
            "grant_type may be replaced"
        );
        over.endpoint_params.insert("scope".into(), "x".into());
        assert!(form_body(&over, "s", STYLE_HEADER).is_err(), "scope may not");
    }

    #[test]
    fn token_responses() {
        let now = Instant::now();
        let json = |b: &str| parse_token("application/json", b.as_bytes(), now);
        let t = json(r#"{"access_token":"abc","token_type":"bearer","expires_in":3600}"#).unwrap();
        assert_eq!(t.header, "Bearer abc");
        assert!(t.header.is_sensitive());
        assert_eq!(t.refresh_at, Some(now + Duration::from_secs(3590)), "10 s early");
        assert_eq!(json(r#"{"access_token":"abc"}"#).unwrap().refresh_at, None, "no expiry: kept");
        assert_eq!(
            json(r#"{"access_token":"abc","expires_in":"60"}"#).unwrap().refresh_at,
            Some(now + Duration::from_secs(50)),
            "numeric string"
        );
        assert_eq!(json(r#"{"access_token":"x","token_type":"MAC"}"#).unwrap().header, "MAC x");
        assert_eq!(json(r#"{"access_token":"x","token_type":"DPoP"}"#).unwrap().header, "DPoP x");
        assert!(json(r#"{"token_type":"bearer"}"#).is_err(), "missing access_token");
        assert!(json("not json").is_err());
        let form = parse_token("text/plain; charset=utf-8", b"access_token=a%2Bb&expires_in=5", now).unwrap();
        assert_eq!(form.header, "Bearer a+b");
        assert!(form.refresh_at.is_some_and(|at| at <= now), "expires within the delta: refresh at once");
    }
}
