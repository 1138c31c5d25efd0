//! The shared HTTP client: hyper-util's pooled legacy client over rustls (ring), with the parts
//! of Prometheus' HTTP client config that act on every request.
//!
//! What this is: [`from_config`] makes a [`Client`] from an [`HttpClientConfig`]: TLS (system
//! roots with a bundled fallback, `ca_file` with Go's acceptance of a `ca_file` certificate as the
//! server's own, see `tls.rs`; client certificates, `server_name`, `insecure_skip_verify`,
//! `min_version`), proxies (`proxy_url`, `no_proxy`, `proxy_from_environment`,
//! `proxy_connect_header`, see `proxy.rs`) and `oauth2` (see `oauth2.rs`, whose token endpoint
//! gets its own TLS and proxy settings). [`auth_header`] computes the basic/bearer/authorization
//! header for one request, reading credential files each time so rotated secrets are picked up;
//! [`validate`] makes the load-time checks Prometheus makes on the same block. Scrapes, remote
//! write and HTTP service discovery share it.
//! [`Client::request`] follows redirects as Go's `http.Client` does when `follow_redirects` is
//! true (Prometheus' default); `enable_http2` (default true, as in prometheus/common) offers h2
//! through ALPN on TLS connections. Plain-http connections speak HTTP/1.1, as Go's do.
//! What this is not: timeouts or body limits; callers wrap requests in their own timeouts and
//! read bodies with their own caps.

pub mod oauth2;
pub mod proxy;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::common::{HttpClientConfig, TlsConfig};

/// The pooled hyper client under [`Client`]; request bodies are whole buffers.
type Pooled = hyper_util::client::legacy::Client<HttpsConnector<proxy::Connector>, Full<Bytes>>;

/// The client scrapes, remote write and service discovery share: cheap to clone (the pool, the
/// proxy decision and the oauth2 token cache are shared by the clones).
#[derive(Clone)]
pub struct Client {
    pooled: Pooled,
    proxy: Arc<proxy::Proxy>,
    oauth2: Option<Arc<oauth2::TokenSource>>,
    /// `follow_redirects`: up to [`MAX_REDIRECTS`] when true; when false a 3xx is the answer.
    follow_redirects: bool,
}

/// Go's `http.Client` gives up after this many redirects ("stopped after 10 redirects").
pub const MAX_REDIRECTS: usize = 10;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("oauth2", &self.oauth2.is_some()).finish_non_exhaustive()
    }
}

/// A request that failed before an answer arrived. Retryable (as any network error).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// hyper could not connect or talk HTTP (the connection's own error, e.g. a proxy refusing a
    /// tunnel, is in the source chain).
    #[error(transparent)]
    Http(#[from] hyper_util::client::legacy::Error),
    /// No oauth2 token could be had.
    #[error(transparent)]
    OAuth2(#[from] oauth2::OAuth2Error),
    /// The proxy settings refuse this request (see [`proxy::ProxyError::Cgi`]).
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// A redirect that cannot be followed: more than [`MAX_REDIRECTS`], or a `Location` that is
    /// not a URL. Worded as Go's `url.Error` (`Get "http://…": stopped after 10 redirects`),
    /// which is what Prometheus shows as the scrape's error.
    #[error("{method} {url:?}: {reason}")]
    Redirect {
        /// The method of the request that would have been sent (Go capitalises only the first
        /// letter: `Get`, `Post`).
        method: String,
        /// The URL it would have gone to.
        url: String,
        /// Why it was not sent.
        reason: String,
    },
}

impl Client {
    /// Sends one request, following redirects as Go's `http.Client` does when the client was
    /// built with `follow_redirects` (see [`Client::send`] for what each hop gets).
    ///
    /// Go's rules, from `net/http/client.go` (`redirectBehavior`, `Client.do`): 301, 302 and 303
    /// turn any method but GET and HEAD into a GET without a body; 307 and 308 repeat the
    /// method and body; a 3xx without `Location` is the answer. Each hop carries the first
    /// request's headers, minus `Authorization` (and cookies) when it leaves the first host and
    /// its subdomains, plus a `Referer` (none on an https→http hop). The 11th redirect fails.
    pub async fn request(
        &self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, RequestError> {
        if !self.follow_redirects {
            return self.send(req).await;
        }
        let (first, body) = req.into_parts();
        let first_host = first.uri.host().unwrap_or("").to_ascii_lowercase();
        let mut method = first.method.clone();
        let mut uri = first.uri.clone();
        let mut body = body;
        let mut referer: Option<String> = None;
        let mut hops = 0;
        loop {
            let mut hop = hyper::Request::new(body.clone());
            *hop.method_mut() = method.clone();
            *hop.uri_mut() = uri.clone();
            *hop.version_mut() = first.version;
            *hop.headers_mut() = first.headers.clone();
            if hops > 0 {
                redirect_headers(hop.headers_mut(), &first_host, &uri, referer.as_deref(), &method);
            }
            let resp = self.send(hop).await?;
            let status = resp.status().as_u16();
            let (next_method, keep_body) = match status {
                301..=303 if method == hyper::Method::GET || method == hyper::Method::HEAD => {
                    (method.clone(), false)
                }
                301..=303 => (hyper::Method::GET, false),
                307 | 308 => (method.clone(), true),
                _ => return Ok(resp),
            };
            let Some(location) = resp.headers().get(hyper::header::LOCATION) else {
                return Ok(resp);
            };
            let go_method = go_method(&next_method);
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            let next = resolve_reference(&uri, &location).ok_or_else(|| RequestError::Redirect {
                method: go_method.clone(),
                url: uri.to_string(),
                reason: format!("failed to parse Location header {location:?}"),
            })?;
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(RequestError::Redirect {
                    method: go_method,
                    url: next.to_string(),
                    reason: format!("stopped after {MAX_REDIRECTS} redirects"),
                });
            }
            // The referer is the URL just left; Go sends none when leaving https for http.
            referer = (uri.scheme_str() != Some("https") || next.scheme_str() == Some("https"))
                .then(|| strip_userinfo(&uri));
            if !keep_body {
                body = Full::new(Bytes::new());
            }
            method = next_method;
            uri = next;
        }
    }

    /// Sends one request as it is: adds the oauth2 token when configured, and
    /// `Proxy-Authorization` when a plain-HTTP request goes to a proxy with credentials (Go's
    /// transport does both, on every hop of a redirect too).
    async fn send(
        &self,
        mut req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, RequestError> {
        if let Some(source) = &self.oauth2 {
            let token = source.header().await?;
            req.headers_mut().insert(hyper::header::AUTHORIZATION, token);
        }
        // (SOCKS proxies carry no Proxy-Authorization: `authorization` is None for them.)
        if req.uri().scheme_str() == Some("http")
            && let Some(auth) = self.proxy.select(req.uri())?.and_then(|p| p.authorization.clone())
        {
            req.headers_mut().insert(hyper::header::PROXY_AUTHORIZATION, auth);
        }
        Ok(self.pooled.request(req).await?)
    }
}

/// Go's spelling of a method in a `url.Error`: `Get`, `Post`, … (`urlErrorOp`).
fn go_method(m: &hyper::Method) -> String {
    let s = m.as_str();
    let mut out = s[..1.min(s.len())].to_owned();
    out.push_str(&s[1.min(s.len())..].to_ascii_lowercase());
    out
}

/// The headers of a redirect hop (Go's `Client.makeHeadersCopier` and `redirectBehavior`):
/// credentials only while the hop stays on the first host or its subdomains, no body headers
/// once the method lost its body, and the `Referer`.
fn redirect_headers(
    h: &mut hyper::HeaderMap,
    first_host: &str,
    to: &hyper::Uri,
    referer: Option<&str>,
    method: &hyper::Method,
) {
    let host = to.host().unwrap_or("").to_ascii_lowercase();
    let same = host == first_host || host.ends_with(&format!(".{first_host}"));
    if !same {
        for name in ["authorization", "www-authenticate", "cookie", "cookie2"] {
            h.remove(name);
        }
    }
    if *method == hyper::Method::GET || *method == hyper::Method::HEAD {
        h.remove(hyper::header::CONTENT_TYPE);
        h.remove(hyper::header::CONTENT_LENGTH);
    }
    if let Some(r) = referer.and_then(|r| HeaderValue::from_str(r).ok()) {
        h.insert(hyper::header::REFERER, r);
    }
}

/// `uri` without a `user:password@` part (Go's `refererForURL`).
fn strip_userinfo(uri: &hyper::Uri) -> String {
    let s = uri.to_string();
    match uri.authority().map(|a| a.as_str()) {
        Some(a) if a.contains('@') => {
            let host = a.rsplit_once('@').map(|(_, h)| h).unwrap_or(a);
            s.replacen(a, host, 1)
        }
        _ => s,
    }
}

/// `base.ResolveReference(location)` (RFC 3986 section 5.2), what Go does with a `Location`;
/// the fragment is dropped, as it never goes on the wire. `None` if the result is not a URI.
pub fn resolve_reference(base: &hyper::Uri, location: &str) -> Option<hyper::Uri> {
    let location = location.split('#').next().unwrap_or("");
    let scheme_end = location.find(':').filter(|&i| {
        let s = &location[..i];
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let joined = if let Some(i) = scheme_end {
        let (s, rest) = location.split_at(i);
        match rest[1..].strip_prefix("//") {
            Some(net) => {
                let (auth, path) = split_authority(net);
                format!("{}://{auth}{}", s.to_ascii_lowercase(), remove_dot_segments(&path))
            }
            None => return None, // an opaque URL (`mailto:`) is no place to scrape
        }
    } else if let Some(net) = location.strip_prefix("//") {
        let (auth, path) = split_authority(net);
        format!("{scheme}://{auth}{}", remove_dot_segments(&path))
    } else {
        let base_path = base.path();
        let (path, query) = match location.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (location, None),
        };
        let path = if path.is_empty() {
            base_path.to_owned()
        } else if path.starts_with('/') {
            remove_dot_segments(path)
        } else {
            let dir = base_path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            remove_dot_segments(&format!("{dir}/{path}"))
        };
        let query = match (query, location.is_empty()) {
            (Some(q), _) => format!("?{q}"),
            (None, _) if path == base_path && location.is_empty() => {
                base.query().map(|q| format!("?{q}")).unwrap_or_default()
            }
            (None, _) => String::new(),
        };
        format!("{scheme}://{authority}{path}{query}")
    };
    joined.parse().ok()
}

/// `host[:port]` and the rest (path and query) of a network-path reference.
fn split_authority(net: &str) -> (&str, String) {
    let end = net.find(['/', '?']).unwrap_or(net.len());
    let (auth, rest) = net.split_at(end);
    let rest = if rest.starts_with('?') { format!("/{rest}") } else { rest.to_owned() };
    (auth, rest)
}

/// RFC 3986 `remove_dot_segments` on a path (a query after `?` is left alone).
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut p = out.join("/");
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    match query {
        Some(q) => format!("{p}?{q}"),
        None => p,
    }
}

/// How long an idle pooled connection is kept (Go's `http.Transport` default is 90 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most a connection's read buffer grows to, in bytes (hyper's minimum is 8 KiB). hyper's
/// default (~400 KiB) is kept by every idle pooled connection once a large page has been read
/// through it, and a dense node holds one such connection per target: a 64 KiB cap took trawl's
/// RSS at 400 targets from 825 to 780 MiB, and 16 KiB saves another ~48 KiB per target
/// (perf/README.md). The body is copied out frame by frame, so the buffer only has to hold a
/// read: Go's HTTP client, Prometheus' scraper, reads through a 4 KiB buffer.
const READ_BUFFER_MAX_BYTES: usize = 16 * 1024;
/// Upper bound on a TCP connect; callers' own request timeouts are usually shorter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client that could not be built, or a header that could not be made.
///
/// Building errors are not retryable: the config or the files it names must be fixed. Errors
/// from [`auth_header`] (a credentials file that can't be read) may clear up when the file is
/// rotated, so a sender may retry them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file named by the config could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The proxy settings cannot be used.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// The config block is inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// Builds a client for http and https URLs with the given TLS settings (`None`: defaults), no
/// proxy and no oauth2.
pub fn build(tls: Option<&TlsConfig>) -> Result<Client, Error> {
    let cfg = HttpClientConfig { tls_config: tls.cloned(), ..Default::default() };
    from_config(&cfg)
}

/// Builds a client for everything an HTTP client config block says but the per-request
/// `Authorization` of basic/bearer/authorization auth, which [`auth_header`] makes.
pub fn from_config(cfg: &HttpClientConfig) -> Result<Client, Error> {
    let default = TlsConfig::default();
    let tls = cfg.tls_config.as_ref().unwrap_or(&default);
    let config = Arc::new(rustls_config(tls)?);
    let proxy = Arc::new(proxy::Proxy::from_config(&cfg.proxy)?);
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = proxy::Connector::new(http, proxy.clone(), config.clone());
    let builder =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((*config).clone()).https_or_http();
    let builder = match &tls.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| Error::Invalid(format!("tls_config.server_name {name:?}: {e}")))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    // `enable_http2` (prometheus/common's default is true) offers h2 next to http/1.1 through
    // ALPN; hyper then speaks whichever the server picks. Plain http stays HTTP/1.1, as in Go.
    let connector = if cfg.enable_http2.unwrap_or(true) {
        builder.enable_all_versions().wrap_connector(connector)
    } else {
        builder.enable_http1().wrap_connector(connector)
    };
    let pooled = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .http1_max_buf_size(READ_BUFFER_MAX_BYTES)
        .build(connector);
    let oauth2 = match &cfg.oauth2 {
        Some(o) => {
            let token_client = from_config(&HttpClientConfig {
                tls_config: o.tls_config.clone(),
                proxy: o.proxy(),
                ..Default::default()
            })?;
            Some(Arc::new(oauth2::TokenSource::new(o.clone(), token_client)))
        }
        None => None,
    };
    Ok(Client { pooled, proxy, oauth2, follow_redirects: cfg.follow_redirects.unwrap_or(true) })
}

/// The rustls client config for a `tls_config` block, on the ring provider.
fn rustls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version.as_deref() {
        None | Some("") | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(other) => {
            return Err(Error::Invalid(format!(
                "tls_config.min_version {other:?} is not supported (use TLS12 or TLS13)"
            )));
        }
    };
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = if tls.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else if let Some(ca_file) = &tls.ca_file {
        let ca_certs = read_certs(ca_file)?;
        let roots = roots(Some(ca_file))?;
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| Error::Invalid(format!("tls_config.ca_file: {e}")))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(tls::Verifier::new(webpki, ca_certs)))
    } else {
        builder.with_root_certificates(roots(None)?)
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
            Ok(builder.with_client_auth_cert(certs, key)?)
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(Error::Invalid("tls_config needs both cert_file and key_file, or neither".into())),
    }
}

/// The trust roots: only `ca_file` when given (as Go's `RootCAs`), else the system's, else the
/// bundled Mozilla set (distroless images often have no CA bundle).
///
/// The system set is read once per process and shared by every client, as Go's
/// `x509.SystemCertPool` is: a parsed set is ~100–200 KB, and a config with one job per target
/// (`perf/compare.py`'s 400 jobs) held one copy per job, most of trawl's base RSS.
fn roots(ca_file: Option<&Path>) -> Result<Arc<rustls::RootCertStore>, Error> {
    if let Some(path) = ca_file {
        let mut store = rustls::RootCertStore::empty();
        let certs = read_certs(path)?;
        let (added, _ignored) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Error::Pem { path: path.to_owned(), reason: "no usable CA certificate".into() });
        }
        return Ok(Arc::new(store));
    }
    static SYSTEM: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    Ok(SYSTEM.get_or_init(|| Arc::new(system_roots())).clone())
}

/// The system's trust roots, or the bundled Mozilla set when there are none.
fn system_roots() -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = store.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::debug!(
            errors = native.errors.len(),
            "No system CA certificates found; using the bundled Mozilla roots."
        );
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    store
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(Error::Pem { path: path.to_owned(), reason: "no certificate found".into() });
    }
    Ok(certs)
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> Error {
    match e {
        rustls::pki_types::pem::Error::Io(source) => Error::Read { path: path.to_owned(), source },
        other => Error::Pem { path: path.to_owned(), reason: other.to_string() },
    }
}

/// `insecure_skip_verify`: accepts any certificate and name, but still checks that the server
/// holds the key of the certificate it sent (the handshake signatures).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The load-time checks of Prometheus' `HTTPClientConfig.Validate` (its messages, its order),
/// plus what trawl cannot do: proxy URLs it cannot use are refused here, not at the first request.
pub fn validate(cfg: &HttpClientConfig) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::Invalid(m.to_owned()));
    let bearer = cfg.bearer_token.is_some() || cfg.bearer_token_file.is_some();
    if cfg.bearer_token.is_some() && cfg.bearer_token_file.is_some() {
        return bad("at most one of bearer_token & bearer_token_file must be configured");
    }
    if (cfg.basic_auth.is_some() || cfg.oauth2.is_some()) && bearer {
        return bad("at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured");
    }
    if let Some(b) = &cfg.basic_auth
        && b.password.is_some()
        && b.password_file.is_some()
    {
        return bad("at most one of basic_auth password, password_file & password_ref must be configured");
    }
    if let Some(a) = &cfg.authorization {
        if bearer {
            return bad("authorization is not compatible with bearer_token & bearer_token_file");
        }
        if a.credentials.is_some() && a.credentials_file.is_some() {
            return bad("at most one of authorization credentials & credentials_file must be configured");
        }
        if a.kind.as_deref().is_some_and(|k| k.trim().eq_ignore_ascii_case("basic")) {
            return bad("authorization type cannot be set to \"basic\", use \"basic_auth\" instead");
        }
        if cfg.basic_auth.is_some() || cfg.oauth2.is_some() {
            return bad("at most one of basic_auth, oauth2 & authorization must be configured");
        }
    }
    if let Some(o) = &cfg.oauth2 {
        if cfg.basic_auth.is_some() {
            return bad("at most one of basic_auth, oauth2 & authorization must be configured");
        }
        if o.client_id.is_empty() {
            return bad("oauth2 client_id must be configured");
        }
        if o.token_url.is_empty() {
            return bad("oauth2 token_url must be configured");
        }
        if o.client_secret.is_some() && o.client_secret_file.is_some() {
            return bad(
                "at most one of oauth2 client_secret, client_secret_file & client_secret_ref must be configured \
                 using grant-type=client_credentials",
            );
        }
        match o.token_url.parse::<hyper::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "oauth2 token_url {:?} must be an http(s) URL",
                    o.token_url
                )));
            }
        }
    }
    cfg.proxy.validate().map_err(Error::Invalid)?;
    proxy::Proxy::from_config(&cfg.proxy)?;
    if let Some(o) = &cfg.oauth2 {
        let p = o.proxy();
        p.validate().map_err(Error::Invalid)?;
        proxy::Proxy::from_config(&p)?;
    }
    for tls in [cfg.tls_config.as_ref(), cfg.oauth2.as_ref().and_then(|o| o.tls_config.as_ref())]
        .into_iter()
        .flatten()
    {
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return bad("tls_config needs both cert_file and key_file, or neither");
        }
    }
    Ok(())
}

/// The `Authorization` header for one request, or `None` when no auth is configured.
///
/// Credential files (`password_file`, `credentials_file`, `bearer_token_file`) are read on every
/// call, so a rotated secret is used from the next request on; surrounding whitespace is
/// trimmed, as Prometheus does. The value is marked sensitive so it is never logged by hyper.
pub fn auth_header(cfg: &HttpClientConfig) -> Result<Option<HeaderValue>, Error> {
    let value = if let Some(b) = &cfg.basic_auth {
        let password = match (&b.password, &b.password_file) {
            (_, Some(path)) => read_secret(path)?,
            (Some(p), None) => p.expose().to_owned(),
            (None, None) => String::new(),
        };
        let mut v = String::from("Basic ");
        base64_into(format!("{}:{password}", b.username).as_bytes(), &mut v);
        v
    } else if let Some(a) = &cfg.authorization {
        let credentials = match (&a.credentials, &a.credentials_file) {
            (_, Some(path)) => read_secret(path)?,
            (Some(c), None) => c.expose().to_owned(),
            (None, None) => String::new(),
        };
        format!("{} {credentials}", a.kind.as_deref().unwrap_or("Bearer"))
    } else if let Some(path) = &cfg.bearer_token_file {
        format!("Bearer {}", read_secret(path)?)
    } else if let Some(token) = &cfg.bearer_token {
        format!("Bearer {}", token.expose())
    } else {
        return Ok(None);
    };
    let mut header = HeaderValue::try_from(value)
        .map_err(|_| Error::Invalid("credentials contain characters not allowed in a header".into()))?;
    header.set_sensitive(true);
    Ok(Some(header))
}

fn read_secret(path: &Path) -> Result<String, Error> {
    let s = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    Ok(s.trim().to_owned())
}

/// Standard base64 with padding (RFC 4648 §4), appended to `out`; only basic auth needs it.
fn base64_into(input: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::{Authorization, BasicAuth};

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            base64_into(input.as_bytes(), &mut out);
            assert_eq!(out, want, "{input:?}");
        }
    }

    #[test]
    fn no_auth_is_no_header() {
        assert!(auth_header(&HttpClientConfig::default()).unwrap().is_none());
    }

    #[test]
    fn basic_auth_reads_the_password_file_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "secret\n").unwrap();
        let cfg = HttpClientConfig {
            basic_auth: Some(BasicAuth {
                username: "user".into(),
                password: None,
                password_file: Some(path.clone()),
            }),
            ..Default::default()
        };
        // base64("user:secret")
        assert_eq!(auth_header(&cfg).unwrap().unwrap(), "Basic dXNlcjpzZWNyZXQ=");
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(auth_header(&cfg).unwrap().unwrap(), "Basic dXNlcjpyb3RhdGVk");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(auth_header(&cfg), Err(Error::Read { .. })));
    }

    #[test]
    fn bearer_and_authorization() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " tok1 \n").unwrap();
        let file = HttpClientConfig { bearer_token_file: Some(path.clone()), ..Default::default() };
        assert_eq!(auth_header(&file).unwrap().unwrap(), "Bearer tok1");
        std::fs::write(&path, "tok2").unwrap();
        assert_eq!(auth_header(&file).unwrap().unwrap(), "Bearer tok2", "re-read on every call");

        let inline = HttpClientConfig { bearer_token: Some("abc".into()), ..Default::default() };
        assert_eq!(auth_header(&inline).unwrap().unwrap(), "Bearer abc");

        let custom = HttpClientConfig {
            authorization: Some(Authorization {
                kind: Some("Token".into()),
                credentials: Some("xyz".into()),
                credentials_file: None,
            }),
            ..Default::default()
        };
        let h = auth_header(&custom).unwrap().unwrap();
        assert_eq!(h, "Token xyz");
        assert!(h.is_sensitive());
    }

    #[test]
    fn validation_rejects_conflicts() {
        let both = HttpClientConfig {
            bearer_token: Some("a".into()),
            basic_auth: Some(BasicAuth { username: "u".into(), password: None, password_file: None }),
            ..Default::default()
        };
        assert!(validate(&both).is_err());
        let basic_type = HttpClientConfig {
            authorization: Some(Authorization {
                kind: Some("Basic".into()),
                credentials: None,
                credentials_file: None,
            }),
            ..Default::default()
        };
        assert!(validate(&basic_type).is_err());
        assert!(validate(&HttpClientConfig::default()).is_ok());
    }

    #[test]
    fn locations_resolve_as_go_resolves_them() {
        let base: hyper::Uri = "http://h:1/a/b/metrics?x=1".parse().unwrap();
        // (Location, expected, why): Go's `URL.ResolveReference` (RFC 3986 5.2)
        let cases: &[(&str, &str, &str)] = &[
            ("http://o:2/m", "http://o:2/m", "absolute"),
            ("HTTPS://o/m", "https://o/m", "the scheme is case-insensitive"),
            ("//o:3/m?y", "http://o:3/m?y", "network-path keeps the scheme"),
            ("/real", "http://h:1/real", "absolute path"),
            ("real", "http://h:1/a/b/real", "relative path replaces the last segment"),
            ("../real", "http://h:1/a/real", "dot segments"),
            ("?y=2", "http://h:1/a/b/metrics?y=2", "query only"),
            ("", "http://h:1/a/b/metrics?x=1", "empty: the same URL"),
            ("/m#frag", "http://h:1/m", "no fragment on the wire"),
        ];
        for (loc, want, why) in cases {
            let got = resolve_reference(&base, loc).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(*want), "{loc:?}: {why}");
        }
        assert_eq!(resolve_reference(&base, "mailto:x@y"), None, "an opaque URL is not followed");
        let m = hyper::Method::POST;
        assert_eq!(go_method(&m), "Post");
    }

    #[test]
    fn builds_with_defaults_and_rejects_bad_files() {
        assert!(build(None).is_ok());
        let insecure = TlsConfig { insecure_skip_verify: true, ..Default::default() };
        assert!(build(Some(&insecure)).is_ok());
        let missing = TlsConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(matches!(build(Some(&missing)), Err(Error::Read { .. })));
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let junk_ca = TlsConfig { ca_file: Some(junk), ..Default::default() };
        assert!(matches!(build(Some(&junk_ca)), Err(Error::Pem { .. })));
        let old = TlsConfig { min_version: Some("TLS10".into()), ..Default::default() };
        assert!(matches!(build(Some(&old)), Err(Error::Invalid(_))));
    }
}
