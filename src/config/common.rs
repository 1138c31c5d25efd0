//! Config pieces shared by scrape jobs and remote-write endpoints: durations, sizes, auth, TLS.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// A duration in Prometheus' syntax: `1y2w3d4h5m6s7ms`, units in descending order, each once.
///
/// `y` is 365 days and `w` 7 days, as in Prometheus' `model.ParseDuration` (humantime's `y` is
/// 365.25 days, which is why this is our own parser).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    /// The std duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
    /// Parses Prometheus' duration syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        // Units in the only order Prometheus accepts, with their length in milliseconds.
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 24 * 3600 * 1000),
            ("w", 7 * 24 * 3600 * 1000),
            ("d", 24 * 3600 * 1000),
            ("h", 3600 * 1000),
            ("m", 60 * 1000),
            ("s", 1000),
            ("ms", 1),
        ];
        if s == "0" {
            return Ok(Duration::default());
        }
        if s.is_empty() {
            return Err("empty duration string".into());
        }
        let bad = || format!("not a valid duration string: {s:?}");
        let mut rest = s;
        let mut total_ms: u64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let idx = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .map(|i| i + next_unit)
                .ok_or_else(bad)?;
            next_unit = idx + 1;
            total_ms = n
                .checked_mul(UNITS[idx].1)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(|| format!("duration out of range: {s:?}"))?;
        }
        Ok(Duration::from_millis(total_ms))
    }
}

impl fmt::Display for Duration {
    /// Formats as Prometheus does (`1m30s`, `15s`, `0s`), so the targets API shows the same text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        // Prometheus' model.Duration.String: years and weeks only when they divide the whole
        // remainder exactly ("8d", not "1w1d"; "90d", not "12w6d").
        for (unit, len, exact) in [
            ("y", 365 * 24 * 3600 * 1000u64, true),
            ("w", 7 * 24 * 3600 * 1000, true),
            ("d", 24 * 3600 * 1000, false),
            ("h", 3600 * 1000, false),
            ("m", 60 * 1000, false),
            ("s", 1000, false),
            ("ms", 1, false),
        ] {
            if exact && !ms.is_multiple_of(len) {
                continue;
            }
            if ms >= len {
                write!(f, "{}{unit}", ms / len)?;
                ms %= len;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ByteSize {
    /// Formats as Prometheus' `units.Base2Bytes` does (`10MiB`, `1KiB476B`, `0B`), so the config
    /// dump shows the same text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 == 0 {
            return f.write_str("0B");
        }
        // Each unit's remainder, smallest first; written largest first, zero parts left out.
        let mut parts = Vec::with_capacity(UNITS.len());
        let mut n = self.0;
        for unit in UNITS {
            if !n.is_multiple_of(1024) {
                parts.push(format!("{}{unit}", n % 1024));
            }
            n /= 1024;
            if n == 0 {
                break;
            }
        }
        for p in parts.iter().rev() {
            f.write_str(p)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A byte size in Prometheus' units syntax (`10MB`, `512KiB`, `1GB`; `0` means no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses a size as Prometheus' `units.ParseBase2Bytes` does: `0`, or one or more
    /// `<number><unit>` parts (`10MiB`, `1.5GB`, `1KiB476B`, as the config dump writes sizes),
    /// with the units of one family: `B KiB MiB GiB TiB PiB EiB`, or `B KB MB GB TB PB EB` (both
    /// powers of 1024). A number without a unit is an error, as in Prometheus ("units: unknown
    /// unit  in 1500").
    pub fn parse(s: &str) -> Result<Self, String> {
        const IEC: [(&str, u32); 7] =
            [("B", 0), ("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40), ("PiB", 50), ("EiB", 60)];
        const OLD: [(&str, u32); 7] =
            [("B", 0), ("KB", 10), ("MB", 20), ("GB", 30), ("TB", 40), ("PB", 50), ("EB", 60)];
        let s = s.trim();
        if s == "0" {
            return Ok(ByteSize(0));
        }
        // Prometheus tries the IEC family, then the old one, and reports the second's error.
        Self::parse_with(s, &IEC).or_else(|_| Self::parse_with(s, &OLD)).map(ByteSize)
    }

    /// `units.ParseUnit` with one unit table.
    fn parse_with(orig: &str, units: &[(&str, u32)]) -> Result<u64, String> {
        let invalid = || format!("units: invalid {orig}");
        if orig.is_empty() {
            return Err(invalid());
        }
        let mut rest = orig;
        let mut total = 0f64;
        while !rest.is_empty() {
            let num = rest.bytes().take_while(|c| c.is_ascii_digit() || *c == b'.').count();
            let (number, tail) = rest.split_at(num);
            if number.is_empty() || number == "." || number.matches('.').count() > 1 {
                return Err(invalid());
            }
            let value: f64 = number.parse().map_err(|_| invalid())?;
            let unit_len = tail.bytes().take_while(|c| !(c.is_ascii_digit() || *c == b'.')).count();
            let (unit, next) = tail.split_at(unit_len);
            let Some(&(_, shift)) = units.iter().find(|(u, _)| *u == unit) else {
                return Err(format!("units: unknown unit {unit} in {orig}"));
            };
            total += value * (1u64 << shift) as f64;
            rest = next;
        }
        if total > i64::MAX as f64 {
            return Err("units: overflow parsing unit".into());
        }
        Ok(total as u64)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        // Prometheus reads the YAML value as text, so a bare number is `1500`, which needs a
        // unit (only `0` does not).
        let text = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        ByteSize::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A map of strings where a null value reads as `""` (an env expansion to nothing leaves
/// `key:` with no value, which YAML reads as null).
pub fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    let m: std::collections::BTreeMap<String, Option<String>> = Deserialize::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

/// A credential written inline in the config (a password, a bearer token). Its `Debug` prints
/// `<secret>`, as Prometheus' `config.Secret` marshals, so a config or an error built with `{:?}`
/// never carries it into a log line; the value is read only where a request header is built.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The credential itself, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// HTTP basic auth, as Prometheus' `basic_auth` block.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password, inline.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file to read the password from (re-read on every request, so rotation works).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Prometheus' `authorization` block: a credentials string with a type (default `Bearer`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme, `Bearer` by default.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The credentials, inline.
    #[serde(default)]
    pub credentials: Option<Secret>,
    /// A file to read the credentials from.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// Prometheus' `tls_config` block.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate bundle (PEM) to verify the server with.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Server name to verify instead of the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Skip server certificate verification (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Minimum TLS version (`TLS12` or `TLS13`).
    #[serde(default)]
    pub min_version: Option<String>,
}

/// `proxy_url`: a proxy's URL as written. Its `Debug` hides a password in it (`user:<secret>@`),
/// so a config printed with `{:?}` never carries proxy credentials into a log line.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ProxyUrl(String);

impl ProxyUrl {
    /// The URL as written, credentials included (for connecting).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ProxyUrl {
    fn from(s: &str) -> Self {
        ProxyUrl(s.to_owned())
    }
}

impl ProxyUrl {
    /// The URL with its password, if any, as `<secret>`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// `url` with the password of its userinfo, if any, as `<secret>` (`http://u:<secret>@host/`).
pub fn redact_url(s: &str) -> String {
    // `scheme://user:password@host...`: the password, if any, is everything between the first
    // ':' after "//" and the last '@' of the authority.
    let auth_start = s.find("//").map_or(0, |i| i + 2);
    let auth_end = s[auth_start..].find(['/', '?', '#']).map_or(s.len(), |i| auth_start + i);
    let authority = &s[auth_start..auth_end];
    match authority.rfind('@').and_then(|at| authority[..at].find(':').map(|c| (c, at))) {
        Some((colon, at)) => format!("{}:<secret>{}", &s[..auth_start + colon], &s[auth_start + at..]),
        None => s.to_owned(),
    }
}

/// Prometheus' proxy settings (`common/config.ProxyConfig`, inline in every HTTP client block and
/// in `oauth2`): a fixed `proxy_url` with optional `no_proxy` exceptions, or the `HTTP_PROXY`,
/// `HTTPS_PROXY` and `NO_PROXY` environment, plus headers for the CONNECT request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `proxy_url`.
    pub proxy_url: Option<ProxyUrl>,
    /// `no_proxy`: comma-separated hosts, domains, IPs and CIDRs that bypass `proxy_url`.
    pub no_proxy: Option<String>,
    /// `proxy_from_environment`.
    pub proxy_from_environment: bool,
    /// `proxy_connect_header`: sent on CONNECT requests; values are secrets.
    pub proxy_connect_header: BTreeMap<String, Vec<Secret>>,
}

impl ProxyConfig {
    /// Whether any proxy setting is given.
    pub fn is_set(&self) -> bool {
        *self != ProxyConfig::default()
    }

    /// `ProxyConfig.Validate` of prometheus/common, with its messages and in its order. An empty
    /// `proxy_url` counts as unset, as there.
    pub fn validate(&self) -> Result<(), String> {
        let url_set = self.proxy_url.as_ref().is_some_and(|u| !u.0.is_empty());
        if !self.proxy_connect_header.is_empty() && !self.proxy_from_environment && !url_set {
            return Err("if proxy_connect_header is configured, proxy_url or proxy_from_environment must \
                        also be configured"
                .into());
        }
        if self.proxy_from_environment && url_set {
            return Err("if proxy_from_environment is configured, proxy_url must not be configured".into());
        }
        let no_proxy_set = self.no_proxy.as_ref().is_some_and(|n| !n.is_empty());
        if self.proxy_from_environment && no_proxy_set {
            return Err("if proxy_from_environment is configured, no_proxy must not be configured".into());
        }
        if self.proxy_url.is_none() && no_proxy_set {
            return Err("if no_proxy is configured, proxy_url must also be configured".into());
        }
        Ok(())
    }
}

/// Prometheus' `oauth2` block: the client credentials grant (RFC 6749 §4.4), with its own TLS and
/// proxy settings for the token endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The client id.
    #[serde(default)]
    pub client_id: String,
    /// The client secret, inline.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A file to read the client secret from (re-read for every request; a new secret fetches a
    /// new token).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes to ask for (sent space-separated as `scope`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The token endpoint.
    #[serde(default)]
    pub token_url: String,
    /// Extra form parameters of the token request.
    #[serde(default, deserialize_with = "string_map")]
    pub endpoint_params: BTreeMap<String, String>,
    /// TLS for the token endpoint.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// Proxy for the token endpoint.
    #[serde(default)]
    pub proxy_url: Option<ProxyUrl>,
    /// `no_proxy` for the token endpoint.
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// `proxy_from_environment` for the token endpoint.
    #[serde(default)]
    pub proxy_from_environment: bool,
    /// `proxy_connect_header` for the token endpoint.
    #[serde(default)]
    pub proxy_connect_header: BTreeMap<String, Vec<Secret>>,
}

impl OAuth2 {
    /// The proxy settings for the token endpoint.
    pub fn proxy(&self) -> ProxyConfig {
        ProxyConfig {
            proxy_url: self.proxy_url.clone(),
            no_proxy: self.no_proxy.clone(),
            proxy_from_environment: self.proxy_from_environment,
            proxy_connect_header: self.proxy_connect_header.clone(),
        }
    }
}

/// The HTTP client settings Prometheus shares between scrape configs, remote write and service
/// discovery (`common/config.HTTPClientConfig`, inline in each; see [`with_http_client_fields`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// `basic_auth` block.
    pub basic_auth: Option<BasicAuth>,
    /// `authorization` block.
    pub authorization: Option<Authorization>,
    /// `oauth2` block.
    pub oauth2: Option<OAuth2>,
    /// Legacy inline bearer token.
    pub bearer_token: Option<Secret>,
    /// Legacy bearer token file, re-read on every request.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings.
    pub tls_config: Option<TlsConfig>,
    /// Proxy settings.
    pub proxy: ProxyConfig,
    /// Whether to follow redirects (Prometheus' default is true).
    pub follow_redirects: Option<bool>,
    /// Whether to offer HTTP/2 on TLS connections (Prometheus' default is true; remote write's
    /// is false, as in Prometheus 3).
    pub enable_http2: Option<bool>,
}

impl HttpClientConfig {
    /// Makes every file it names absolute against `base` (the directory of the file the block
    /// was read from), as Prometheus' `SetDirectory` does.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut Option<PathBuf>| {
            if let Some(path) = p
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.bearer_token_file);
        if let Some(b) = &mut self.basic_auth {
            resolve(&mut b.password_file);
        }
        if let Some(a) = &mut self.authorization {
            resolve(&mut a.credentials_file);
        }
        let tls = |t: &mut Option<TlsConfig>| {
            if let Some(t) = t {
                resolve(&mut t.ca_file);
                resolve(&mut t.cert_file);
                resolve(&mut t.key_file);
            }
        };
        tls(&mut self.tls_config);
        if let Some(o) = &mut self.oauth2 {
            resolve(&mut o.client_secret_file);
            tls(&mut o.tls_config);
        }
    }
}

/// Declares a config struct that also holds the keys of Prometheus' `HTTPClientConfig`, inline
/// as Prometheus has them (`basic_auth`, `authorization`, `oauth2`, `bearer_token[_file]`,
/// `tls_config`, `proxy_url`, `no_proxy`, `proxy_from_environment`, `proxy_connect_header`,
/// `follow_redirects`, `enable_http2`), with `http_client_config()` to read them as one
/// [`HttpClientConfig`] and `set_http_client_config()` to write them back.
///
/// Why a macro: serde's `flatten` would buffer the keys, losing both `deny_unknown_fields` and
/// the YAML positions of errors, and these keys appear in four structs (scrape configs, remote
/// write, Kubernetes SD, HTTP SD).
macro_rules! with_http_client_fields {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fattr:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $( $(#[$fattr])* $fvis $field : $ty, )*
            /// `basic_auth`.
            #[serde(default)]
            pub basic_auth: Option<$crate::config::common::BasicAuth>,
            /// `authorization`.
            #[serde(default)]
            pub authorization: Option<$crate::config::common::Authorization>,
            /// `oauth2`.
            #[serde(default)]
            pub oauth2: Option<$crate::config::common::OAuth2>,
            /// Legacy inline bearer token.
            #[serde(default)]
            pub bearer_token: Option<$crate::config::common::Secret>,
            /// Legacy bearer token file.
            #[serde(default)]
            pub bearer_token_file: Option<std::path::PathBuf>,
            /// `tls_config`.
            #[serde(default)]
            pub tls_config: Option<$crate::config::common::TlsConfig>,
            /// `proxy_url`.
            #[serde(default)]
            pub proxy_url: Option<$crate::config::common::ProxyUrl>,
            /// `no_proxy`.
            #[serde(default)]
            pub no_proxy: Option<String>,
            /// `proxy_from_environment`.
            #[serde(default)]
            pub proxy_from_environment: bool,
            /// `proxy_connect_header`.
            #[serde(default)]
            pub proxy_connect_header:
                std::collections::BTreeMap<String, Vec<$crate::config::common::Secret>>,
            /// `follow_redirects`.
            #[serde(default)]
            pub follow_redirects: Option<bool>,
            /// `enable_http2`.
            #[serde(default)]
            pub enable_http2: Option<bool>,
        }

        impl $name {
            /// The HTTP client keys as one block.
            pub fn http_client_config(&self) -> $crate::config::common::HttpClientConfig {
                $crate::config::common::HttpClientConfig {
                    basic_auth: self.basic_auth.clone(),
                    authorization: self.authorization.clone(),
                    oauth2: self.oauth2.clone(),
                    bearer_token: self.bearer_token.clone(),
                    bearer_token_file: self.bearer_token_file.clone(),
                    tls_config: self.tls_config.clone(),
                    proxy: $crate::config::common::ProxyConfig {
                        proxy_url: self.proxy_url.clone(),
                        no_proxy: self.no_proxy.clone(),
                        proxy_from_environment: self.proxy_from_environment,
                        proxy_connect_header: self.proxy_connect_header.clone(),
                    },
                    follow_redirects: self.follow_redirects,
                    enable_http2: self.enable_http2,
                }
            }

            /// Writes the HTTP client keys back from one block.
            #[allow(dead_code)]
            pub fn set_http_client_config(&mut self, h: $crate::config::common::HttpClientConfig) {
                self.basic_auth = h.basic_auth;
                self.authorization = h.authorization;
                self.oauth2 = h.oauth2;
                self.bearer_token = h.bearer_token;
                self.bearer_token_file = h.bearer_token_file;
                self.tls_config = h.tls_config;
                self.proxy_url = h.proxy.proxy_url;
                self.no_proxy = h.proxy.no_proxy;
                self.proxy_from_environment = h.proxy.proxy_from_environment;
                self.proxy_connect_header = h.proxy.proxy_connect_header;
                self.follow_redirects = h.follow_redirects;
                self.enable_http2 = h.enable_http2;
            }
        }
    };
}
pub(crate) use with_http_client_fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_prometheus() {
        // (input, expected ms, why)
        let cases: &[(&str, Option<u64>, &str)] = &[
            ("15s", Some(15_000), "plain seconds"),
            ("1m30s", Some(90_000), "compound, descending units"),
            ("1y", Some(365 * 86_400_000), "a year is 365 days, not 365.25"),
            ("2w", Some(14 * 86_400_000), "weeks"),
            ("100ms", Some(100), "milliseconds"),
            ("0", Some(0), "bare zero is allowed"),
            ("0s", Some(0), "zero with a unit"),
            ("30s1m", None, "units must descend"),
            ("1s1s", None, "each unit at most once"),
            ("1.5s", None, "no fractions"),
            ("s", None, "a number is required"),
            ("10", None, "a unit is required except for 0"),
            ("", None, "empty"),
        ];
        for (input, want, why) in cases {
            let got = Duration::parse(input).ok().map(|d| d.0.as_millis() as u64);
            assert_eq!(got, *want, "{input:?}: {why}");
        }
    }

    #[test]
    fn duration_display_round_trips() {
        for s in ["15s", "1m30s", "1h", "100ms", "0s", "1d2h", "2w", "1y"] {
            assert_eq!(Duration::parse(s).unwrap().to_string(), s);
        }
        // (input, Prometheus' spelling, why)
        for (input, want, why) in [
            ("8d", "8d", "weeks only when they divide exactly"),
            ("90d", "90d", "90d, not 12w6d"),
            ("1w1d", "8d", "re-spelled as Prometheus prints it"),
            ("366d", "366d", "years only when exact"),
        ] {
            assert_eq!(Duration::parse(input).unwrap().to_string(), want, "{why}");
        }
    }

    #[test]
    fn sizes_display_as_prometheus_marshals_them() {
        // (bytes, units.Base2Bytes' text, why)
        for (n, want, why) in [
            (0, "0B", "zero"),
            (1500, "1KiB476B", "mixed units, as Prometheus 2.42 printed 1500B"),
            (10 << 20, "10MiB", "a whole unit"),
            ((1 << 30) + 1, "1GiB1B", "zero parts left out"),
        ] {
            assert_eq!(ByteSize(n).to_string(), want, "{why}");
        }
    }

    #[test]
    fn sizes_as_prometheus_reads_them() {
        // (text, bytes or the error, why); checked against `promtool check config` (2.42).
        let cases: &[(&str, Result<u64, &str>, &str)] = &[
            ("10MB", Ok(10 << 20), "MB is 1024^2"),
            ("512KiB", Ok(512 << 10), "binary unit"),
            ("0", Ok(0), "zero needs no unit"),
            ("1500B", Ok(1500), "bytes"),
            ("1KiB476B", Ok(1500), "parts, as the dump writes them"),
            ("1.5GiB", Ok(3 << 29), "a fraction"),
            ("1500", Err("units: unknown unit  in 1500"), "a number needs a unit (promtool: FAILED)"),
            ("10M", Err("units: unknown unit M in 10M"), "no short forms"),
            ("1KB1MiB", Err("units: unknown unit MiB in 1KB1MiB"), "one family of units"),
            ("ten", Err("units: invalid ten"), "not a number"),
        ];
        for (text, want, why) in cases {
            let got = ByteSize::parse(text).map(|b| b.0);
            assert_eq!(got.as_ref().map(|n| *n).map_err(String::as_str), *want, "{why}");
        }
        for n in [0u64, 1, 1500, 10 << 20, (1 << 30) + 7] {
            assert_eq!(ByteSize::parse(&ByteSize(n).to_string()).unwrap().0, n, "the dump's text reads back");
        }
        // A YAML number is read as its text: only 0 has no unit.
        assert!(serde_saphyr::from_str::<ByteSize>("1500").is_err());
        assert_eq!(serde_saphyr::from_str::<ByteSize>("0").unwrap().0, 0);
    }
}
