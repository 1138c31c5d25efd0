//! Scripted protocol peers for the client features of trawl, on 127.0.0.1:0: an HTTP proxy
//! (CONNECT tunnels and absolute-form forwarding, counted and recorded), an OAuth 2.0 token
//! endpoint (client credentials checked, fetches counted, tokens that expire), and an HTTPS
//! server with any certificate of `tests/data/tls`.
//!
//! Other test files include it with `#[path = "support/peers.rs"] mod peers;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP proxy: `CONNECT host:port` opens a tunnel (counted in [`ConnectProxy::tunnels`]),
/// an absolute-form request is forwarded (counted in [`ConnectProxy::forwarded`]). Host names
/// are resolved through [`ConnectProxy::alias`] first, so a test can use names that only the
/// proxy knows: a request that arrives proves it went through the proxy. With
/// [`ConnectProxy::require`], requests without that `Proxy-Authorization` get 407.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    tunnels: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    /// The request head (lines) of every CONNECT and forwarded request, in order.
    pub heads: Arc<Mutex<Vec<String>>>,
    aliases: Arc<Mutex<HashMap<String, SocketAddr>>>,
    required: Arc<Mutex<Option<String>>>,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let p = ConnectProxy {
            addr: listener.local_addr().expect("addr"),
            tunnels: Arc::default(),
            forwarded: Arc::default(),
            heads: Arc::default(),
            aliases: Arc::default(),
            required: Arc::default(),
        };
        let (tunnels, forwarded, heads, aliases, required) =
            (p.tunnels.clone(), p.forwarded.clone(), p.heads.clone(), p.aliases.clone(), p.required.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                let (tunnels, forwarded, heads, aliases, required) =
                    (tunnels.clone(), forwarded.clone(), heads.clone(), aliases.clone(), required.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let Ok(b) = client.read_u8().await else { return };
                        head.push(b);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    heads.lock().unwrap().push(text.clone());
                    let mut words = text.split_whitespace();
                    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    let want = required.lock().unwrap().clone();
                    if let Some(want) = want {
                        let ok = text.lines().any(|l| {
                            l.split_once(':').is_some_and(|(k, v)| {
                                k.eq_ignore_ascii_case("proxy-authorization") && v.trim() == want
                            })
                        });
                        if !ok {
                            let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n").await;
                            return;
                        }
                    }
                    let resolve = |hostport: &str| -> Option<SocketAddr> {
                        let (host, port) = hostport.rsplit_once(':')?;
                        let port: u16 = port.parse().ok()?;
                        match aliases.lock().unwrap().get(host) {
                            Some(a) => {
                                Some(SocketAddr::new(a.ip(), if a.port() == 0 { port } else { a.port() }))
                            }
                            None => format!("{host}:{port}").parse().ok(),
                        }
                    };
                    if method == "CONNECT" {
                        let Some(addr) = resolve(target) else { return };
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(addr).await else {
                            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                            return;
                        };
                        tunnels.fetch_add(1, Ordering::SeqCst);
                        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    } else if let Some(rest) = target.strip_prefix("http://") {
                        let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                        let Some(addr) = resolve(
                            if hostport.contains(':') {
                                hostport.to_owned()
                            } else {
                                format!("{hostport}:80")
                            }
                            .as_str(),
                        ) else {
                            return;
                        };
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(addr).await else { return };
                        forwarded.fetch_add(1, Ordering::SeqCst);
                        // Origin form for the target; the rest of the head as it came.
                        let path = if path.is_empty() { "/" } else { path };
                        let rewritten = text.replacen(target, path, 1);
                        if upstream.write_all(rewritten.as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        p
    }

    /// `host` (any port, or the given one when `addr`'s port is not 0) goes to `addr`.
    pub fn alias(&self, host: &str, addr: SocketAddr) {
        self.aliases.lock().unwrap().insert(host.to_owned(), addr);
    }

    /// Requests must carry `Proxy-Authorization: <value>`.
    pub fn require(&self, value: &str) {
        *self.required.lock().unwrap() = Some(value.to_owned());
    }

    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::SeqCst)
    }

    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A form's `key=value` pairs, decoded and sorted.
pub type Form = Vec<(String, String)>;

/// An OAuth 2.0 token endpoint (`POST /token`, client credentials grant) and the check of the
/// tokens it issued. The client may authenticate with basic auth or with form parameters
/// (unless [`TokenEndpoint::params_only`]); each good request counts one fetch and issues
/// `tok-<n>` valid for `expires_in` seconds (0: forever, and no `expires_in` is sent).
pub struct TokenEndpoint {
    pub addr: SocketAddr,
    fetches: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    /// Every good token request's form, as `key=value` pairs sorted.
    pub forms: Arc<Mutex<Vec<Form>>>,
    issued: Arc<Mutex<HashMap<String, Option<Instant>>>>,
    secret: Arc<Mutex<String>>,
}

impl TokenEndpoint {
    pub async fn start(client_id: &str, secret: &str, expires_in: u64, params_only: bool) -> TokenEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let t = TokenEndpoint {
            addr: listener.local_addr().expect("addr"),
            fetches: Arc::default(),
            refused: Arc::default(),
            forms: Arc::default(),
            issued: Arc::default(),
            secret: Arc::new(Mutex::new(secret.to_owned())),
        };
        let client_id = client_id.to_owned();
        let (fetches, refused, forms, issued, secret) =
            (t.fetches.clone(), t.refused.clone(), t.forms.clone(), t.issued.clone(), t.secret.clone());
        serve(listener, move |req: Request<Incoming>| {
            let (client_id, fetches, refused, forms, issued, secret) = (
                client_id.clone(),
                fetches.clone(),
                refused.clone(),
                forms.clone(),
                issued.clone(),
                secret.clone(),
            );
            async move {
                let basic = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .map(|b| String::from_utf8(base64_decode(b)).unwrap_or_default());
                let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                let mut form: Vec<(String, String)> = String::from_utf8_lossy(&body)
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (unescape(k), unescape(v)))
                    .collect();
                form.sort();
                let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let want_secret = secret.lock().unwrap().clone();
                let creds = match (basic, params_only) {
                    (Some(b), false) => b.split_once(':').map(|(i, s)| (unescape(i), unescape(s))),
                    (Some(_), true) => None,
                    (None, _) => get("client_id").map(|i| (i, get("client_secret").unwrap_or_default())),
                };
                if creds != Some((client_id.clone(), want_secret))
                    || get("grant_type").as_deref() != Some("client_credentials")
                {
                    refused.fetch_add(1, Ordering::SeqCst);
                    return (401, "application/json", br#"{"error":"invalid_client"}"#.to_vec());
                }
                let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
                forms.lock().unwrap().push(form);
                let token = format!("tok-{n}");
                let until = (expires_in > 0).then(|| Instant::now() + Duration::from_secs(expires_in));
                issued.lock().unwrap().insert(token.clone(), until);
                let body = if expires_in > 0 {
                    format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{expires_in}}}"#)
                } else {
                    format!(r#"{{"access_token":"{token}","token_type":"bearer"}}"#)
                };
                (200, "application/json", body.into_bytes())
            }
        });
        t
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Token requests answered with a token.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Token requests refused (bad credentials).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// The secret the endpoint accepts from now on.
    pub fn rotate_secret(&self, secret: &str) {
        *self.secret.lock().unwrap() = secret.to_owned();
    }

    /// Whether an `Authorization` header carries a token this endpoint issued and that has not
    /// expired.
    pub fn valid(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else { return false };
        matches!(self.issued.lock().unwrap().get(token), Some(until) if until.is_none_or(|u| Instant::now() < u))
    }
}

/// An HTTPS server with the certificate and key `<name>.pem`/`<name>.key` of
/// `tests/data/tls`, answering every request with `handler`.
pub async fn tls_server(
    name: &str,
    handler: impl Fn(&hyper::http::request::Parts) -> (u16, &'static str, Vec<u8>) + Send + Sync + 'static,
) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (parts, _) = req.into_parts();
                    let (status, ct, body) = handler(&parts);
                    async move { Ok::<_, Infallible>(response(status, ct, body)) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    addr
}

/// Serves HTTP/1.1 on `listener`, answering each request with `(status, content type, body)`.
pub fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (u16, &'static str, Vec<u8>)> + Send,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move {
                        let (status, ct, body) = handler(req).await;
                        Ok::<_, Infallible>(response(status, ct, body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

fn response(status: u16, ct: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp.headers_mut().insert("content-type", ct.parse().unwrap());
    resp
}

/// Form decoding of one key or value (`+` is a space).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 decoding (padding optional; other characters end the input).
pub fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> = s.bytes().map_while(|c| A.iter().position(|&a| a == c).map(|p| p as u32)).collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, v)| acc | (v << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A SOCKS5 proxy (RFC 1928, with RFC 1929 user/password when [`SocksProxy::start`] is given
/// credentials): records each CONNECT's target as `host:port` as the client sent it (a name
/// stays a name) and relays to it, through the same kind of alias table as [`ConnectProxy`].
pub struct SocksProxy {
    pub addr: SocketAddr,
    /// Every CONNECT target, in order.
    pub targets: Arc<Mutex<Vec<String>>>,
    aliases: Arc<Mutex<HashMap<String, SocketAddr>>>,
}

impl SocksProxy {
    pub async fn start(credentials: Option<(&str, &str)>) -> SocksProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let p = SocksProxy {
            addr: listener.local_addr().expect("addr"),
            targets: Arc::default(),
            aliases: Arc::default(),
        };
        let creds = credentials.map(|(u, pw)| (u.to_owned(), pw.to_owned()));
        let (targets, aliases) = (p.targets.clone(), p.aliases.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = listener.accept().await else { continue };
                let (targets, aliases, creds) = (targets.clone(), aliases.clone(), creds.clone());
                tokio::spawn(async move {
                    let mut head = [0u8; 2];
                    if c.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let mut methods = vec![0u8; usize::from(head[1])];
                    let _ = c.read_exact(&mut methods).await;
                    let want = if creds.is_some() { 0x02 } else { 0x00 };
                    if !methods.contains(&want) {
                        let _ = c.write_all(&[0x05, 0xff]).await;
                        return;
                    }
                    let _ = c.write_all(&[0x05, want]).await;
                    if let Some((user, pass)) = &creds {
                        let mut v = [0u8; 2];
                        let _ = c.read_exact(&mut v).await;
                        let mut u = vec![0u8; usize::from(v[1])];
                        let _ = c.read_exact(&mut u).await;
                        let plen = c.read_u8().await.unwrap_or(0);
                        let mut pw = vec![0u8; usize::from(plen)];
                        let _ = c.read_exact(&mut pw).await;
                        let ok = u == user.as_bytes() && pw == pass.as_bytes();
                        let _ = c.write_all(&[0x01, if ok { 0 } else { 1 }]).await;
                        if !ok {
                            return;
                        }
                    }
                    let mut req = [0u8; 4];
                    if c.read_exact(&mut req).await.is_err() {
                        return;
                    }
                    let host = match req[3] {
                        0x01 => {
                            let mut a = [0u8; 4];
                            let _ = c.read_exact(&mut a).await;
                            std::net::Ipv4Addr::from(a).to_string()
                        }
                        0x03 => {
                            let n = c.read_u8().await.unwrap_or(0);
                            let mut name = vec![0u8; usize::from(n)];
                            let _ = c.read_exact(&mut name).await;
                            String::from_utf8_lossy(&name).into_owned()
                        }
                        _ => return,
                    };
                    let port = c.read_u16().await.unwrap_or(0);
                    targets.lock().unwrap().push(format!("{host}:{port}"));
                    let addr = match aliases.lock().unwrap().get(&host) {
                        Some(a) => *a,
                        None => match format!("{host}:{port}").parse() {
                            Ok(a) => a,
                            Err(_) => return,
                        },
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(addr).await else {
                        let _ = c.write_all(&[0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0]).await;
                        return;
                    };
                    let _ = c.write_all(&[0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]).await;
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
                });
            }
        });
        p
    }

    /// `host` goes to `addr`.
    pub fn alias(&self, host: &str, addr: SocketAddr) {
        self.aliases.lock().unwrap().insert(host.to_owned(), addr);
    }
}
