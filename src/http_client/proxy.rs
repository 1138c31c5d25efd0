//! Which proxy a request goes through, and the connector that goes through it.
//!
//! What this is: [`Proxy`], the decision Prometheus' `ProxyConfig.Proxy()` makes for one URL
//! (a fixed `proxy_url`; the same with `no_proxy` exceptions, or the environment, both with the
//! rules of Go's `golang.org/x/net/http/httpproxy`), and [`Connector`], a hyper connector that
//! dials the target directly or through the chosen proxy: plain-HTTP targets are sent to the
//! proxy in absolute form (with `Proxy-Authorization` added by [`super::Client`]), HTTPS targets
//! through a `CONNECT` tunnel carrying `proxy_connect_header` and the proxy credentials, as Go's
//! `http.Transport` does. An `https://` proxy is reached over TLS first. A `socks5://` (or
//! `socks5h://`) proxy gets a SOCKS5 CONNECT (RFC 1928; user and password from the URL with RFC
//! 1929) for every target, and requests then go in origin form, as Go's SOCKS dialer does.
//! What this is not: TLS to the target (hyper-rustls wraps this connector), or IDNA (host names
//! are compared as ASCII, lower-cased).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper::header::HeaderValue;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use crate::config::common::ProxyConfig;

/// Largest CONNECT response head read before giving up, in bytes (Go reads it with a 4 KiB
/// buffered reader; proxies answer in well under 1 KiB).
const CONNECT_RESPONSE_MAX_BYTES: usize = 16 * 1024;

/// A proxy setting that cannot be used, or a tunnel that could not be opened.
///
/// Config errors ([`ProxyError::Url`]) are not retryable. Tunnel errors are per connection and
/// retryable: the next request dials again.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `proxy_url` (or a proxy environment variable) is not a usable proxy URL.
    #[error("proxy URL {url:?}: {reason}")]
    Url {
        /// The URL with any password hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Go refuses `HTTP_PROXY` when `REQUEST_METHOD` is set (httpoxy, CVE-2016-5385).
    #[error("refusing to use HTTP_PROXY value in CGI environment; see golang.org/s/cgihttpproxy")]
    Cgi,
    /// The proxy refused the tunnel or broke the protocol.
    #[error("proxyconnect {proxy}: {reason}")]
    Connect {
        /// The proxy's `host:port`.
        proxy: String,
        /// What happened.
        reason: String,
    },
}

/// The kind of proxy, from the URL's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// `http://`: absolute-form requests, CONNECT for https targets.
    Http,
    /// `https://`: the same, over TLS to the proxy.
    Https,
    /// `socks5://` or `socks5h://`: a SOCKS5 CONNECT for every target.
    Socks5,
}

/// One proxy to send requests through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyTarget {
    /// What kind of proxy it is.
    pub kind: ProxyKind,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port (default 80, or 443 for `https://`).
    pub port: u16,
    /// `Proxy-Authorization` from the URL's user info (`Basic`), sensitive; HTTP proxies only.
    pub authorization: Option<HeaderValue>,
    /// User and password from the URL's user info, for SOCKS5.
    socks_auth: Option<(String, crate::config::common::Secret)>,
}

impl ProxyTarget {
    /// Parses a proxy URL as Go's `url.Parse` + transport read it; `lenient` is httpproxy's
    /// `parseProxy`, which retries a URL without scheme as `http://…`.
    fn parse(url: &str, lenient: bool) -> Result<ProxyTarget, ProxyError> {
        let shown = crate::config::common::ProxyUrl::from(url);
        let bad = |reason: &str| ProxyError::Url { url: format!("{shown:?}"), reason: reason.to_owned() };
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r))
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
            {
                (s.to_ascii_lowercase(), r)
            }
            _ if lenient => ("http".to_owned(), url),
            _ => return Err(bad("want http://, https:// or socks5://host:port")),
        };
        let kind = match scheme.as_str() {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            other => return Err(bad(&format!("scheme {other:?} is not supported (http, https, socks5)"))),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("invalid host or port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // Go's canonicalAddr port map: http 80, https 443, socks5 1080.
        let port = port.unwrap_or(match kind {
            ProxyKind::Http => 80,
            ProxyKind::Https => 443,
            ProxyKind::Socks5 => 1080,
        });
        let creds = userinfo.map(|info| {
            let (user, pass) = info.split_once(':').unwrap_or((info, ""));
            (percent_decode(user), percent_decode(pass))
        });
        let (authorization, socks_auth) = match (creds, kind) {
            (None, _) => (None, None),
            (Some((user, pass)), ProxyKind::Socks5) => {
                if user.len() > 255 || pass.len() > 255 {
                    return Err(bad("SOCKS5 user and password are limited to 255 bytes each"));
                }
                (None, Some((user, crate::config::common::Secret::from(pass.as_str()))))
            }
            (Some((user, pass)), _) => {
                let mut v = String::from("Basic ");
                super::base64_into(format!("{user}:{pass}").as_bytes(), &mut v);
                let mut h =
                    HeaderValue::try_from(v).map_err(|_| bad("credentials not allowed in a header"))?;
                h.set_sensitive(true);
                (Some(h), None)
            }
        };
        Ok(ProxyTarget { kind, host: host.to_ascii_lowercase(), port, authorization, socks_auth })
    }

    /// `host:port`, bracketed for IPv6.
    pub fn addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

/// The proxy decision for one HTTP client, made once when the client is built (Go evaluates the
/// environment once per client too).
#[derive(Clone, Debug, Default)]
pub struct Proxy {
    rule: Rule,
    /// `proxy_connect_header`, sent on every CONNECT.
    connect_headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
}

#[derive(Clone, Debug, Default)]
enum Rule {
    /// No proxy.
    #[default]
    Direct,
    /// Every request through this proxy (`proxy_url` without `no_proxy`: Go's `http.ProxyURL`).
    Always(ProxyTarget),
    /// httpproxy's rules: per-scheme proxies, exceptions, never for localhost and loopback.
    Rules(Box<Rules>),
}

impl Proxy {
    /// No proxy at all.
    pub fn direct() -> Proxy {
        Proxy::default()
    }

    /// The decision for a config block, reading `HTTP_PROXY` & co. from the process environment
    /// when `proxy_from_environment` is set.
    pub fn from_config(cfg: &ProxyConfig) -> Result<Proxy, ProxyError> {
        Self::from_config_with_env(cfg, &|k| std::env::var(k).ok())
    }

    /// As [`Proxy::from_config`], with the environment given (tests).
    pub fn from_config_with_env(
        cfg: &ProxyConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Proxy, ProxyError> {
        let mut connect_headers = Vec::new();
        for (name, values) in &cfg.proxy_connect_header {
            let n = hyper::header::HeaderName::try_from(name.as_str()).map_err(|_| ProxyError::Url {
                url: String::new(),
                reason: format!("proxy_connect_header name {name:?} is not a valid header name"),
            })?;
            for v in values {
                let mut v = HeaderValue::try_from(v.expose()).map_err(|_| ProxyError::Url {
                    url: String::new(),
                    reason: format!("proxy_connect_header {name:?} has a value not allowed in HTTP"),
                })?;
                v.set_sensitive(true);
                connect_headers.push((n.clone(), v));
            }
        }
        let url = cfg.proxy_url.as_ref().map(|u| u.expose()).filter(|u| !u.is_empty());
        let rule = if cfg.proxy_from_environment {
            Self::env_rule(env)?
        } else if let Some(url) = url {
            match cfg.no_proxy.as_deref().filter(|n| !n.is_empty()) {
                None => Rule::Always(ProxyTarget::parse(url, false)?),
                Some(no_proxy) => {
                    // httpproxy.Config{HTTPProxy: url, HTTPSProxy: url, NoProxy}: the URL goes
                    // through parseProxy, and loopback targets are never proxied.
                    let p = ProxyTarget::parse(url, true)?;
                    Rule::Rules(Box::new(Rules {
                        http: Some(p.clone()),
                        https: Some(p),
                        no_proxy: NoProxy::parse(no_proxy),
                        cgi: false,
                    }))
                }
            }
        } else {
            Rule::Direct
        };
        Ok(Proxy { rule, connect_headers })
    }

    /// httpproxy.FromEnvironment: the upper-case name wins when set and not empty. A value
    /// trawl cannot use is an error rather than a silent direct connection (Go ignores a value
    /// its URL parser rejects; trawl's accepts what Go's transport can use).
    fn env_rule(env: &dyn Fn(&str) -> Option<String>) -> Result<Rule, ProxyError> {
        let any = |names: [&str; 2]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        let parse = |v: Option<String>| v.map(|v| ProxyTarget::parse(&v, true)).transpose();
        Ok(Rule::Rules(Box::new(Rules {
            http: parse(any(["HTTP_PROXY", "http_proxy"]))?,
            https: parse(any(["HTTPS_PROXY", "https_proxy"]))?,
            no_proxy: NoProxy::parse(&any(["NO_PROXY", "no_proxy"]).unwrap_or_default()),
            cgi: env("REQUEST_METHOD").is_some_and(|v| !v.is_empty()),
        })))
    }

    /// The proxy for a request to `uri`, or `None` to connect directly.
    pub fn select(&self, uri: &Uri) -> Result<Option<&ProxyTarget>, ProxyError> {
        match &self.rule {
            Rule::Direct => Ok(None),
            Rule::Always(p) => Ok(Some(p)),
            Rule::Rules(rules) => {
                let Rules { http, https, no_proxy, cgi } = rules.as_ref();
                let proxy = match uri.scheme_str() {
                    Some("https") => https.as_ref(),
                    Some("http") => {
                        if http.is_some() && *cgi {
                            return Err(ProxyError::Cgi);
                        }
                        http.as_ref()
                    }
                    _ => None,
                };
                let Some(proxy) = proxy else { return Ok(None) };
                let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
                let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
                Ok(no_proxy.use_proxy(host, port).then_some(proxy))
            }
        }
    }

    /// Whether a proxy may be used at all (for callers that skip work without one).
    pub fn is_direct(&self) -> bool {
        matches!(self.rule, Rule::Direct)
    }
}

/// httpproxy's per-scheme proxies and exceptions.
#[derive(Clone, Debug)]
struct Rules {
    http: Option<ProxyTarget>,
    https: Option<ProxyTarget>,
    no_proxy: NoProxy,
    /// `REQUEST_METHOD` is set (see [`ProxyError::Cgi`]).
    cgi: bool,
}

/// `NO_PROXY` / `no_proxy`, parsed as httpproxy's `config.init` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NoProxy {
    /// `*`: nothing is proxied.
    all: bool,
    ips: Vec<(IpAddr, Option<u16>)>,
    cidrs: Vec<(IpAddr, u8)>,
    /// (suffix starting with '.', port, whether the bare host matches too)
    domains: Vec<(String, Option<u16>, bool)>,
}

impl NoProxy {
    fn parse(s: &str) -> NoProxy {
        let mut n = NoProxy::default();
        for entry in s.split(',') {
            let p = entry.trim().to_ascii_lowercase();
            if p.is_empty() {
                continue;
            }
            if p == "*" {
                return NoProxy { all: true, ..NoProxy::default() };
            }
            if let Some((net, bits)) = p.split_once('/')
                && let (Ok(ip), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u8>())
                && bits <= if ip.is_ipv4() { 32 } else { 128 }
            {
                n.cidrs.push((ip, bits));
                continue;
            }
            // "host:port", "[v6]:port", or a bare host.
            let (host, port) = match split_host_port(&p) {
                Some((h, Some(port))) => (h.to_owned(), Some(port)),
                _ => (p.trim_start_matches('[').trim_end_matches(']').to_owned(), None),
            };
            if host.is_empty() {
                continue; // Go: "There is no host part, likely the entry is malformed; ignore."
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                n.ips.push((ip, port));
                continue;
            }
            let host = host.strip_prefix("*.").map(|h| format!(".{h}")).unwrap_or(host);
            let (suffix, match_host) =
                if host.starts_with('.') { (host, false) } else { (format!(".{host}"), true) };
            n.domains.push((suffix, port, match_host));
        }
        n
    }

    /// httpproxy's `useProxy` for a target host (no brackets) and port.
    fn use_proxy(&self, host: &str, port: u16) -> bool {
        if host.is_empty() {
            return true;
        }
        if host == "localhost" {
            return false;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        if self.all {
            return false;
        }
        let host = host.trim().to_ascii_lowercase();
        if let Some(ip) = ip {
            if self.ips.iter().any(|(i, p)| *i == ip && p.is_none_or(|p| p == port)) {
                return false;
            }
            if self.cidrs.iter().any(|(net, bits)| cidr_contains(*net, *bits, ip)) {
                return false;
            }
        }
        let matches = |(suffix, p, match_host): &(String, Option<u16>, bool)| {
            (host.ends_with(suffix.as_str()) || (*match_host && host == suffix[1..]))
                && p.is_none_or(|p| p == port)
        };
        !self.domains.iter().any(matches)
    }
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Splits `host[:port]` / `[v6][:port]`; `None` when the port is not a number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        // More than one ':' without brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Some((s, None)),
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// `%XX` sequences decoded (invalid ones kept as written), as URL user info and query parts are.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection to a target: direct, to a proxy (plain-HTTP target, absolute-form requests), or
/// a tunnel through one.
pub struct Conn {
    io: TokioIo<Stream>,
    /// Requests on it go to a proxy in absolute form.
    proxied: bool,
}

/// The byte stream under a [`Conn`]: TCP, or TLS to an `https://` proxy.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.proxied)
    }
}

/// Dials targets directly or through the [`Proxy`] (see the module docs).
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    proxy: Arc<Proxy>,
    /// TLS settings for `https://` proxies: the client's own, as Go uses the transport's
    /// `TLSClientConfig` for the proxy too.
    proxy_tls: Arc<rustls::ClientConfig>,
}

impl Connector {
    /// A connector dialing with `http` (TCP settings) through `proxy`.
    pub fn new(http: HttpConnector, proxy: Arc<Proxy>, proxy_tls: Arc<rustls::ClientConfig>) -> Connector {
        Connector { http, proxy, proxy_tls }
    }

    async fn connect(mut self, uri: Uri) -> Result<Conn, BoxError> {
        let Some(proxy) = self.proxy.select(&uri)?.cloned() else {
            let tcp = tower_service::Service::call(&mut self.http, uri).await?.into_inner();
            return Ok(Conn { io: TokioIo::new(Stream::Tcp(tcp)), proxied: false });
        };
        let proxy_uri: Uri = format!("http://{}/", proxy.addr()).parse()?;
        let mut tcp = tower_service::Service::call(&mut self.http, proxy_uri).await?.into_inner();
        let target_host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_owned();
        let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
        let target_port = uri.port_u16().unwrap_or(default_port);
        if proxy.kind == ProxyKind::Socks5 {
            socks5_connect(&mut tcp, &proxy, &target_host, target_port).await?;
            return Ok(Conn { io: TokioIo::new(Stream::Tcp(tcp)), proxied: false });
        }
        let mut stream = if proxy.kind == ProxyKind::Https {
            let name = rustls::pki_types::ServerName::try_from(proxy.host.clone())?;
            let tls = tokio_rustls::TlsConnector::from(self.proxy_tls.clone()).connect(name, tcp).await?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Tcp(tcp)
        };
        if uri.scheme_str() != Some("https") {
            return Ok(Conn { io: TokioIo::new(stream), proxied: true });
        }
        let target = join_host_port(&target_host, target_port);
        tunnel(&mut stream, &target, &proxy, &self.proxy.connect_headers).await?;
        Ok(Conn { io: TokioIo::new(stream), proxied: false })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// Opens a CONNECT tunnel to `target` over `stream`, as Go's transport does: `Host` is the
/// target, `Proxy-Authorization` comes from the proxy URL's credentials, then the configured
/// headers; any status but 200 fails the connection.
async fn tunnel(
    stream: &mut Stream,
    target: &str,
    proxy: &ProxyTarget,
    headers: &[(hyper::header::HeaderName, HeaderValue)],
) -> Result<(), ProxyError> {
    let err = |reason: String| ProxyError::Connect { proxy: proxy.addr(), reason };
    let mut req =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {}\r\n", crate::USER_AGENT)
            .into_bytes();
    let auth = proxy.authorization.iter().map(|v| (&hyper::header::PROXY_AUTHORIZATION, v));
    let configured = headers
        .iter()
        .filter(|(n, _)| proxy.authorization.is_none() || n != hyper::header::PROXY_AUTHORIZATION);
    for (name, value) in auth.chain(configured.map(|(n, v)| (n, v))) {
        req.extend_from_slice(name.as_str().as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    stream.write_all(&req).await.map_err(|e| err(e.to_string()))?;
    stream.flush().await.map_err(|e| err(e.to_string()))?;
    // Read the response head a byte at a time: nothing after it may be consumed, since the
    // tunnel's first bytes belong to the TLS handshake. It is read once per connection.
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= CONNECT_RESPONSE_MAX_BYTES {
            return Err(err("response head too large".into()));
        }
        let b = stream.read_u8().await.map_err(|e| err(format!("reading the CONNECT response: {e}")))?;
        head.push(b);
    }
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let status_line = String::from_utf8_lossy(status_line).trim().to_owned();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(err(format!("malformed CONNECT response {status_line:?}")));
    }
    if code != "200" {
        return Err(err(format!("CONNECT refused: {}", status_line.get(version.len() + 1..).unwrap_or(""))));
    }
    Ok(())
}

/// A SOCKS5 CONNECT to `host:port` over `tcp` (RFC 1928), authenticating with user and
/// password (RFC 1929) when the proxy URL has them, as Go's SOCKS dialer does: an IP literal is
/// sent as an address, a name as a domain for the proxy to resolve.
async fn socks5_connect(
    tcp: &mut TcpStream,
    proxy: &ProxyTarget,
    host: &str,
    port: u16,
) -> Result<(), ProxyError> {
    let err = |reason: String| ProxyError::Connect { proxy: proxy.addr(), reason };
    let io = |e: std::io::Error| err(format!("SOCKS5: {e}"));
    let methods: &[u8] = if proxy.socks_auth.is_some() { &[0x00, 0x02] } else { &[0x00] };
    let mut hello = vec![0x05, methods.len() as u8];
    hello.extend_from_slice(methods);
    tcp.write_all(&hello).await.map_err(io)?;
    let mut choice = [0u8; 2];
    tcp.read_exact(&mut choice).await.map_err(io)?;
    match (choice, &proxy.socks_auth) {
        ([0x05, 0x00], _) => {}
        ([0x05, 0x02], Some((user, pass))) => {
            let mut auth = vec![0x01, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(pass.expose().len() as u8);
            auth.extend_from_slice(pass.expose().as_bytes());
            tcp.write_all(&auth).await.map_err(io)?;
            let mut status = [0u8; 2];
            tcp.read_exact(&mut status).await.map_err(io)?;
            if status[1] != 0x00 {
                return Err(err("SOCKS5: username/password authentication failed".into()));
            }
        }
        ([0x05, 0xff], _) => return Err(err("SOCKS5: no acceptable authentication methods".into())),
        (other, _) => return Err(err(format!("SOCKS5: unexpected method reply {other:?}"))),
    }
    let mut req = vec![0x05, 0x01, 0x00];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            req.push(0x01);
            req.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            req.push(0x04);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            if name.len() > 255 {
                return Err(err(format!("SOCKS5: host name too long ({} bytes)", name.len())));
            }
            req.push(0x03);
            req.push(name.len() as u8);
            req.extend_from_slice(name);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    tcp.write_all(&req).await.map_err(io)?;
    let mut head = [0u8; 4];
    tcp.read_exact(&mut head).await.map_err(io)?;
    if head[0] != 0x05 {
        return Err(err(format!("SOCKS5: malformed reply version {}", head[0])));
    }
    if head[1] != 0x00 {
        // RFC 1928 §6 reply codes, as Go's socks package names them.
        let reason = match head[1] {
            0x01 => "general SOCKS server failure",
            0x02 => "connection not allowed by ruleset",
            0x03 => "network unreachable",
            0x04 => "host unreachable",
            0x05 => "connection refused",
            0x06 => "TTL expired",
            0x07 => "command not supported",
            0x08 => "address type not supported",
            _ => "unknown code",
        };
        return Err(err(format!("SOCKS5: {reason} ({})", head[1])));
    }
    // The bound address, which is not used, then the port.
    let skip = match head[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => usize::from(tcp.read_u8().await.map_err(io)?),
        t => return Err(err(format!("SOCKS5: unknown address type {t}"))),
    };
    let mut rest = vec![0u8; skip + 2];
    tcp.read_exact(&mut rest).await.map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::{ProxyUrl, Secret};

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn cfg(url: Option<&str>, no_proxy: Option<&str>, from_env: bool) -> ProxyConfig {
        ProxyConfig {
            proxy_url: url.map(ProxyUrl::from),
            no_proxy: no_proxy.map(str::to_owned),
            proxy_from_environment: from_env,
            proxy_connect_header: Default::default(),
        }
    }

    fn chosen(p: &Proxy, target: &str) -> Option<String> {
        p.select(&uri(target)).unwrap().map(|t| t.addr())
    }

    #[test]
    fn fixed_proxy_url_is_used_for_everything_even_loopback() {
        // Go's http.ProxyURL, which Prometheus uses when no_proxy is empty.
        let p = Proxy::from_config(&cfg(Some("http://proxy:3128"), None, false)).unwrap();
        for t in ["http://127.0.0.1:9100/metrics", "https://localhost/", "http://node-a:9100/"] {
            assert_eq!(chosen(&p, t).as_deref(), Some("proxy:3128"), "{t}");
        }
    }

    #[test]
    fn no_proxy_follows_go_httpproxy() {
        let p = Proxy::from_config(&cfg(
            Some("http://proxy:3128"),
            Some("internal.example, .corp, *.svc, 10.0.0.0/8, 192.168.1.1, api.example:8443, [::2]:9"),
            false,
        ))
        .unwrap();
        // (target, proxied, why)
        let cases: &[(&str, bool, &str)] = &[
            ("http://internal.example/", false, "exact host"),
            ("http://a.internal.example/", false, "a bare name matches its subdomains too"),
            ("http://corp/", true, "a leading dot matches subdomains only"),
            ("http://x.corp/", false, "subdomain of .corp"),
            ("http://a.b.svc/", false, "*.svc is .svc"),
            ("http://10.1.2.3:9100/", false, "CIDR"),
            ("http://11.1.2.3:9100/", true, "outside the CIDR"),
            ("http://192.168.1.1/", false, "IP"),
            ("https://api.example:8443/", false, "host with port"),
            ("https://api.example/", true, "same host, other port (443)"),
            ("http://[::2]:9/", false, "IPv6 with port"),
            ("http://127.0.0.1:9100/", false, "loopback is never proxied under httpproxy rules"),
            ("http://localhost:9100/", false, "localhost neither"),
            ("http://example.org/", true, "no match"),
            ("http://INTERNAL.EXAMPLE/", false, "case-insensitive"),
        ];
        for (t, proxied, why) in cases {
            assert_eq!(chosen(&p, t).is_some(), *proxied, "{t}: {why}");
        }
        let all = Proxy::from_config(&cfg(Some("http://proxy:3128"), Some("*"), false)).unwrap();
        assert_eq!(chosen(&all, "http://example.org/"), None, "* disables the proxy");
    }

    #[test]
    fn environment_like_go() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let c = cfg(None, None, true);
        let p = Proxy::from_config_with_env(
            &c,
            &env(&[
                ("HTTP_PROXY", "plain:8080"),
                ("https_proxy", "https://secure:8443"),
                ("no_proxy", "skip.example"),
            ]),
        )
        .unwrap();
        assert_eq!(chosen(&p, "http://a.example/").as_deref(), Some("plain:8080"), "scheme-less is http://");
        assert_eq!(chosen(&p, "https://a.example/").as_deref(), Some("secure:8443"));
        assert_eq!(chosen(&p, "https://skip.example/"), None);
        let upper_wins =
            Proxy::from_config_with_env(&c, &env(&[("HTTP_PROXY", "up:1"), ("http_proxy", "low:2")]))
                .unwrap();
        assert_eq!(chosen(&upper_wins, "http://a.example/").as_deref(), Some("up:1"));
        let cgi = Proxy::from_config_with_env(&c, &env(&[("HTTP_PROXY", "up:1"), ("REQUEST_METHOD", "GET")]))
            .unwrap();
        assert!(matches!(cgi.select(&uri("http://a.example/")), Err(ProxyError::Cgi)), "httpoxy");
        let none = Proxy::from_config_with_env(&c, &env(&[])).unwrap();
        assert_eq!(chosen(&none, "http://a.example/"), None);
    }

    #[test]
    fn proxy_urls() {
        let p = ProxyTarget::parse("http://us%40r:p%3Ass@proxy.example:3128", false).unwrap();
        assert_eq!(p.addr(), "proxy.example:3128");
        // base64("us@r:p:ss")
        assert_eq!(p.authorization.unwrap(), "Basic dXNAcjpwOnNz");
        assert_eq!(ProxyTarget::parse("https://proxy", false).unwrap().port, 443);
        assert_eq!(ProxyTarget::parse("http://[::1]:8", false).unwrap().addr(), "[::1]:8");
        let socks = ProxyTarget::parse("socks5h://u:p@s", false).unwrap();
        assert_eq!((socks.kind, socks.port, socks.authorization.is_none()), (ProxyKind::Socks5, 1080, true));
        for bad in ["ftp://p", "http://p:notaport", "proxy:3128", "http://"] {
            assert!(ProxyTarget::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_headers_are_secrets_and_checked() {
        let mut c = cfg(Some("http://proxy:3128"), None, false);
        c.proxy_connect_header.insert("X-Token".into(), vec![Secret::from("t1"), Secret::from("t2")]);
        let p = Proxy::from_config(&c).unwrap();
        assert_eq!(p.connect_headers.len(), 2);
        assert!(p.connect_headers.iter().all(|(_, v)| v.is_sensitive()));
        c.proxy_connect_header.insert("bad name".into(), vec![Secret::from("x")]);
        assert!(Proxy::from_config(&c).is_err());
    }
}
