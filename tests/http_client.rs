//! The shared HTTP client over TLS, against a loopback rustls server using the fixtures in
//! `tests/data/tls/`: `ca_file`, unknown CAs, `server_name`, `insecure_skip_verify` and mutual
//! TLS. The server (`support/tls_server.rs`) is a blocking rustls stream on a thread, so it
//! needs no extra crates.

#[path = "support/tls_server.rs"]
mod tls_server;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use trawl::config::common::TlsConfig;

mod support;

async fn get(tls: Option<&TlsConfig>, url: &str) -> Result<u16, String> {
    let client = trawl::http_client::build(tls).map_err(|e| e.to_string())?;
    let req = hyper::Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    Ok(resp.status().as_u16())
}

fn with_ca() -> TlsConfig {
    TlsConfig { ca_file: Some(tls_server::fixture("ca.pem")), ..Default::default() }
}

#[tokio::test]
async fn https_verified_with_ca_file() {
    let addr = tls_server::start(false, "ok");
    assert_eq!(get(Some(&with_ca()), &format!("https://{addr}/")).await, Ok(200));
}

#[tokio::test]
async fn unknown_ca_is_refused() {
    let addr = tls_server::start(false, "ok");
    assert!(get(None, &format!("https://{addr}/")).await.is_err(), "system roots don't know the test CA");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let addr = tls_server::start(false, "ok");
    let tls = TlsConfig { insecure_skip_verify: true, ..Default::default() };
    assert_eq!(get(Some(&tls), &format!("https://{addr}/")).await, Ok(200));
}

#[tokio::test]
async fn server_name_overrides_the_url_host() {
    let addr = tls_server::start(false, "ok");
    let url = format!("https://{addr}/");
    let right = TlsConfig { server_name: Some("receiver.test".into()), ..with_ca() };
    assert_eq!(get(Some(&right), &url).await, Ok(200));
    let wrong = TlsConfig { server_name: Some("other.test".into()), ..with_ca() };
    assert!(get(Some(&wrong), &url).await.is_err(), "the certificate is checked against server_name");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let addr = tls_server::start(true, "ok");
    let url = format!("https://{addr}/");
    assert!(get(Some(&with_ca()), &url).await.is_err(), "no client certificate");
    let mtls = TlsConfig {
        cert_file: Some(tls_server::fixture("client.pem")),
        key_file: Some(tls_server::fixture("client.key")),
        ..with_ca()
    };
    assert_eq!(get(Some(&mtls), &url).await, Ok(200));
}

#[tokio::test]
async fn plain_http_works_with_the_same_client() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
        let _ = tokio::io::AsyncWriteExt::write_all(&mut s, b"HTTP/1.1 204 No Content\r\n\r\n").await;
    });
    assert_eq!(get(Some(&with_ca()), &format!("http://{addr}/")).await, Ok(204));
}

#[test]
fn mismatched_key_is_a_build_error() {
    let tls = TlsConfig {
        cert_file: Some(tls_server::fixture("client.pem")),
        key_file: Some(tls_server::fixture("server.key")),
        ..with_ca()
    };
    assert!(trawl::http_client::build(Some(&tls)).is_err());
}

/// A page many times larger than the client's capped read buffer arrives whole over plain
/// HTTP, twice over one kept-alive connection: the cap bounds memory, not what can be read.
#[tokio::test]
async fn a_page_larger_than_the_read_buffer_arrives_whole() {
    let page: Vec<u8> =
        (0..60_000).flat_map(|i| format!("big_page_series{{n=\"{i}\"}} {i}\n").into_bytes()).collect();
    assert!(page.len() > 1 << 20, "the page is over 1 MiB: {}", page.len());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = page.clone();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let page = served.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    match tcp.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    // One response per request head read (the client sends no request body).
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        request.drain(..end + 4);
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\r\n",
                            page.len()
                        );
                        if tcp.write_all(head.as_bytes()).and_then(|_| tcp.write_all(&page)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let client = trawl::http_client::build(None).expect("client");
    let req = trawl::fetch::Request {
        uri: format!("http://{addr}/metrics").parse().unwrap(),
        accept: hyper::header::HeaderValue::from_static("text/plain"),
        gzip: false,
        timeout: Duration::from_secs(10),
        body_limit: trawl::fetch::DEFAULT_BODY_LIMIT_BYTES,
        auth: None,
    };
    for scrape in 0..2 {
        let mut bufs = trawl::fetch::Buffers::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let resp = trawl::fetch::fetch(&client, &req, &mut bufs, deadline, None).await.expect("fetch");
        assert_eq!(resp.wire_bytes, page.len() as u64, "scrape {scrape}: every byte counted");
        assert!(bufs.body() == page, "scrape {scrape}: the body arrived whole and in order");
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1, "the connection was reused");
}

/// The rule by which a certificate from `ca_file` is accepted as the server's own certificate
/// (`src/http_client/tls.rs`), case by case: (server certificate, `ca_file`, trawl accepts,
/// Prometheus 2.42 accepts, why). Go's `crypto/x509` takes a leaf that is itself in the trust
/// pool without building a chain and never checks a leaf's basic constraints; webpki refuses any
/// CA certificate as the leaf (`CaUsedAsEndEntity`). trawl accepts exactly the first kind.
const CA_FILE_LEAF_CASES: &[(&str, &str, bool, bool, &str)] = &[
    (
        "selfca",
        "selfca.pem",
        true,
        true,
        "a self-signed CA certificate that is the ca_file is the server's own",
    ),
    (
        "selfca-serverauth-eku",
        "selfca-serverauth-eku.pem",
        true,
        true,
        "its extended key usage allows serverAuth",
    ),
    ("selfca-clientauth", "selfca-clientauth.pem", false, false, "extended key usage without serverAuth"),
    ("selfca-othername", "selfca-othername.pem", false, false, "the host name is still checked"),
    ("selfca-expired", "selfca-expired.pem", false, false, "the validity period is still checked"),
    ("selfca", "ca.pem", false, false, "a certificate not in ca_file gets no exception"),
    (
        "ca-leaf",
        "ca2.pem",
        false,
        true,
        "a CA certificate chained to ca_file, not in it: Go accepts, trawl does not",
    ),
    ("server", "ca.pem", true, true, "an ordinary leaf under a ca_file CA: unchanged"),
];

#[tokio::test]
async fn ca_file_certificate_as_server_certificate() {
    for (cert, ca, accepted, _, why) in CA_FILE_LEAF_CASES {
        let addr = tls_server::start_with(cert, false, "probe 1\n");
        let tls = TlsConfig { ca_file: Some(tls_server::fixture(ca)), ..Default::default() };
        let got = get(Some(&tls), &format!("https://{addr}/")).await;
        assert_eq!(got.is_ok(), *accepted, "{cert} with ca_file {ca}: {why}: {got:?}");
        let by_name = get(Some(&tls), &format!("https://localhost:{}/", addr.port())).await;
        assert_eq!(by_name.is_ok(), *accepted, "{cert} with ca_file {ca} by name: {why}: {by_name:?}");
    }
}

/// The Prometheus column of [`CA_FILE_LEAF_CASES`], checked against the real Prometheus: one job
/// per case scraping its TLS server with its `ca_file`; `up` says whether Go accepted it.
#[tokio::test]
async fn prometheus_agrees_on_ca_file_certificates() {
    let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (i, (cert, ca, ..)) in CA_FILE_LEAF_CASES.iter().enumerate() {
        let addr = tls_server::start_with(cert, false, "probe 1\n");
        config.push_str(&format!(
            "  - job_name: case{i}\n    scheme: https\n    tls_config:\n      ca_file: {}\n    \
             static_configs:\n      - targets: ['{addr}']\n",
            tls_server::fixture(ca).display()
        ));
    }
    let Some(prom) = support::Prometheus::start_with_config(&config).await else { return };
    let ups = support::eventually(Duration::from_secs(60), async || {
        let r = prom.query("up").await;
        (r.len() == CA_FILE_LEAF_CASES.len()).then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("not every job scraped:\n{}", prom.proc.log()));
    for (i, (cert, ca, _, prometheus, why)) in CA_FILE_LEAF_CASES.iter().enumerate() {
        let job = format!("case{i}");
        let up = ups.iter().find(|(l, _)| l.get("job") == Some(&job)).map(|(_, v)| *v);
        assert_eq!(up, Some(if *prometheus { 1.0 } else { 0.0 }), "{cert} with ca_file {ca}: {why}");
    }
}
