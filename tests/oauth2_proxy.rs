//! `oauth2` and the proxy settings against scripted peers over loopback: a token endpoint that
//! checks client credentials, counts fetches and expires tokens; an HTTP proxy that counts
//! CONNECT tunnels and forwarded requests and wants credentials; a fake Kubernetes API server
//! reached through the proxy. The client is driven directly (exact token counts) and through the
//! trawl binary (scrapes, remote write, the token endpoint and Kubernetes discovery, all by way of
//! the proxy, with a self-signed CA certificate as the scrape target's own).

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/peers.rs"]
mod peers;
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use peers::{ConnectProxy, TokenEndpoint};
use support::{Gate, TEXT, TestTarget, Trawl, eventually, http_get};
use trawl::config::common::{HttpClientConfig, OAuth2, ProxyConfig, ProxyUrl, Secret};

const WAIT: Duration = Duration::from_secs(40);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls").join(name)
}

fn oauth2(token_url: &str, secret_file: &std::path::Path) -> OAuth2 {
    serde_saphyr::from_str(&format!(
        "client_id: trawl\nclient_secret_file: {}\ntoken_url: {token_url}\nscopes: [metrics.read, metrics.write]\n\
         endpoint_params: {{audience: 'https://metrics.example'}}\n",
        secret_file.display()
    ))
    .expect("oauth2 block")
}

/// A resource server that answers 200 only to a valid token of `tokens`; counts its requests.
async fn resource(tokens: Arc<TokenEndpoint>) -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/data", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let h = hits.clone();
    peers::serve(listener, move |req: hyper::Request<hyper::body::Incoming>| {
        let (tokens, h) = (tokens.clone(), h.clone());
        async move {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
            if tokens.valid(auth) {
                (200, "text/plain", b"ok".to_vec())
            } else {
                (401, "text/plain", b"no".to_vec())
            }
        }
    });
    (url, hits)
}

/// A client with an `oauth2` block for `tokens` whose secret file holds `secret`, and the URL
/// of a resource server that checks its tokens (with its request counter).
struct OAuth2Setup {
    client: trawl::http_client::Client,
    url: String,
    hits: Arc<std::sync::atomic::AtomicU64>,
    secret_file: PathBuf,
    _dir: tempfile::TempDir,
}

async fn oauth2_setup(tokens: &Arc<TokenEndpoint>, secret: &str) -> OAuth2Setup {
    let (url, hits) = resource(tokens.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let cfg = HttpClientConfig { oauth2: Some(oauth2(&tokens.url(), &secret_file)), ..Default::default() };
    trawl::http_client::validate(&cfg).unwrap();
    let client = trawl::http_client::from_config(&cfg).unwrap();
    OAuth2Setup { client, url, hits, secret_file, _dir: dir }
}

async fn get(client: &trawl::http_client::Client, url: &str) -> Result<u16, String> {
    let req = hyper::Request::get(url).body(Full::new(Bytes::new())).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
        Ok(Ok(r)) => Ok(r.status().as_u16()),
        Ok(Err(e)) => Err(trawl::fetch::error_chain(&e)),
        Err(_) => Err("timeout".into()),
    }
}

#[tokio::test]
async fn oauth2_token_is_cached_and_refetched_when_the_secret_rotates() {
    let tokens = Arc::new(TokenEndpoint::start("trawl", "s1", 3600, false).await);
    let o = oauth2_setup(&tokens, "s1").await;
    for i in 0..5 {
        assert_eq!(get(&o.client, &o.url).await, Ok(200), "request {i}");
    }
    assert_eq!(tokens.fetches(), 1, "one token for five requests while it is valid");
    let form = tokens.forms.lock().unwrap()[0].clone();
    let want: Vec<(String, String)> = [
        ("audience", "https://metrics.example"),
        ("grant_type", "client_credentials"),
        ("scope", "metrics.read metrics.write"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        form, want,
        "credentials in the basic auth header, scopes space-separated, endpoint_params added"
    );

    // A rotated secret is read on the next request and fetches a new token with it.
    tokens.rotate_secret("s2");
    std::fs::write(&o.secret_file, "s2").unwrap();
    assert_eq!(get(&o.client, &o.url).await, Ok(200));
    assert_eq!(tokens.fetches(), 2, "the new secret fetched a new token");
    assert_eq!(tokens.refused(), 0);
}

#[tokio::test]
async fn oauth2_expiring_tokens_are_fetched_again() {
    // expires_in equal to golang.org/x/oauth2's 10 s expiryDelta: every token is already due for
    // refresh when it arrives, so every request fetches one (and the endpoint honours each).
    let tokens = Arc::new(TokenEndpoint::start("trawl", "s", 10, false).await);
    let o = oauth2_setup(&tokens, "s").await;
    for _ in 0..3 {
        assert_eq!(get(&o.client, &o.url).await, Ok(200));
    }
    assert_eq!(tokens.fetches(), 3, "a token within 10 s of its expiry is not reused");
}

#[tokio::test]
async fn oauth2_falls_back_to_credentials_in_the_body_and_remembers() {
    let tokens = Arc::new(TokenEndpoint::start("trawl", "s", 10, true).await);
    let o = oauth2_setup(&tokens, "s").await;
    assert_eq!(get(&o.client, &o.url).await, Ok(200));
    assert_eq!((tokens.refused(), tokens.fetches()), (1, 1), "header style tried first, then params");
    assert_eq!(get(&o.client, &o.url).await, Ok(200));
    assert_eq!((tokens.refused(), tokens.fetches()), (1, 2), "the working style is kept: no second probe");
}

#[tokio::test]
async fn oauth2_bad_credentials_fail_the_request_before_it_is_sent() {
    let tokens = Arc::new(TokenEndpoint::start("trawl", "right", 3600, false).await);
    let o = oauth2_setup(&tokens, "wrong").await;
    let err = get(&o.client, &o.url).await.unwrap_err();
    assert!(err.contains("oauth2: cannot fetch token") && err.contains("401"), "{err}");
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "no request without a token");
}

#[tokio::test]
async fn proxy_tunnels_carry_connect_headers_and_credentials() {
    let proxy = ConnectProxy::start().await;
    proxy.require("Basic dXNlcjpwQHNz"); // user:p@ss
    let target = peers::tls_server("selfca", |_| (200, "text/plain", b"ok".to_vec())).await;
    proxy.alias("selfca.test", target);
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("X-Proxy-Tenant".to_owned(), vec![Secret::from("team-a")]);
    let cfg = HttpClientConfig {
        tls_config: Some(trawl::config::TlsConfig {
            ca_file: Some(fixture("selfca.pem")),
            ..Default::default()
        }),
        proxy: ProxyConfig {
            proxy_url: Some(ProxyUrl::from(format!("http://user:p%40ss@{}", proxy.addr).as_str())),
            proxy_connect_header: headers,
            ..Default::default()
        },
        ..Default::default()
    };
    let client = trawl::http_client::from_config(&cfg).unwrap();
    let url = format!("https://selfca.test:{}/", target.port());
    assert_eq!(get(&client, &url).await, Ok(200), "only the proxy knows selfca.test");
    assert_eq!(get(&client, &url).await, Ok(200));
    assert_eq!(proxy.tunnels(), 1, "the tunnel is pooled like any connection");
    let head = proxy.heads.lock().unwrap()[0].clone();
    assert!(head.starts_with(&format!("CONNECT selfca.test:{} HTTP/1.1\r\n", target.port())), "{head}");
    assert!(head.contains("x-proxy-tenant: team-a\r\n"), "{head}");

    // Wrong credentials: the proxy answers 407 and the request fails with that.
    let mut wrong = cfg.clone();
    wrong.proxy.proxy_url = Some(ProxyUrl::from(format!("http://user:nope@{}", proxy.addr).as_str()));
    let err = get(&trawl::http_client::from_config(&wrong).unwrap(), &url).await.unwrap_err();
    assert!(err.contains("407"), "{err}");
}

/// The trawl binary with every proxy path at once: an https scrape through a CONNECT tunnel to
/// a target whose certificate is its own `ca_file` (with an oauth2 token fetched through the
/// proxy too), a plain-http scrape of a loopback target that `no_proxy` rules keep direct,
/// remote write forwarded by the proxy in absolute form with an oauth2 token, and Kubernetes
/// discovery whose API server only the proxy can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trawl_reaches_everything_through_the_proxy() {
    let proxy = ConnectProxy::start().await;
    proxy.require("Basic dXNlcjpwQHNz");
    let tokens = Arc::new(TokenEndpoint::start("trawl", "s3cret", 3600, false).await);
    proxy.alias("token.example", tokens.addr);
    let t = tokens.clone();
    let target = peers::tls_server("selfca", move |parts| {
        let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
        if t.valid(auth) {
            (200, TEXT, b"tunneled_metric 1\n".to_vec())
        } else {
            (401, "text/plain", Vec::new())
        }
    })
    .await;
    proxy.alias("selfca.test", target);
    let direct = TestTarget::start().await;
    direct.route("/metrics", |_| (200, TEXT, b"direct_metric 1\n".to_vec()));
    let gate = Gate::start(None, |_| 200).await;
    proxy.alias("receiver.example", gate.addr);
    let kube = fake_apiserver::FakeApiServer::start().await;
    proxy.alias("kube.example", kube.addr());
    kube.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p1", "namespace": "default", "uid": "uid-p1"},
        "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": direct.addr.port(), "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1"}
    }));

    let proxy_url = format!("http://user:p%40ss@{}", proxy.addr);
    let oauth2 = format!(
        "client_id: trawl\n      client_secret: s3cret\n      token_url: http://token.example:{}/token\n      \
         proxy_url: {proxy_url}",
        tokens.addr.port()
    );
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tunneled
    scheme: https
    tls_config:
      ca_file: {ca}
    proxy_url: {proxy_url}
    proxy_connect_header:
      X-Proxy-Tenant: [team-a]
    oauth2:
      {oauth2}
    static_configs:
      - targets: ['selfca.test:{tls_port}']
  - job_name: direct
    proxy_url: {proxy_url}
    no_proxy: nothing.example
    static_configs:
      - targets: ['{direct}']
  - job_name: kube
    kubernetes_sd_configs:
      - role: pod
        api_server: http://kube.example:{kube_port}
        proxy_url: {proxy_url}
remote_write:
  - url: http://receiver.example:{gate_port}/api/v1/write
    proxy_url: {proxy_url}
    oauth2:
      {oauth2}
    queue_config:
      batch_send_deadline: 100ms
"#,
        ca = fixture("selfca.pem").display(),
        tls_port = target.port(),
        direct = direct.host(),
        kube_port = kube.addr().port(),
        gate_port = gate.addr.port(),
    );
    let trawl = Trawl::start(&config).await;
    let health = |job: &'static str| {
        let url = format!("{}/api/v1/targets", trawl.url());
        async move {
            let (_, body) = http_get(&url).await?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let t =
                v["data"]["activeTargets"].as_array()?.iter().find(|t| t["labels"]["job"] == job)?.clone();
            (t["health"] == "up").then_some(())
        }
    };
    for job in ["tunneled", "direct", "kube"] {
        let up = eventually(WAIT, async || health(job).await).await;
        assert!(up.is_some(), "job {job} is not up:\n{}", trawl.proc.log());
    }
    let written = eventually(WAIT, async || {
        let reqs = gate.requests.lock().unwrap().clone();
        let ok =
            reqs.iter().any(|r| tokens.valid(r.headers.get("authorization").and_then(|v| v.to_str().ok())));
        ok.then_some(())
    })
    .await;
    assert!(written.is_some(), "no remote write with a valid token arrived:\n{}", trawl.proc.log());

    assert!(proxy.tunnels() >= 1, "the https scrape went through a CONNECT tunnel");
    assert!(proxy.forwarded() >= 3, "token endpoint, remote write and the API server were forwarded");
    let heads = proxy.heads.lock().unwrap().clone();
    let connect = heads.iter().find(|h| h.starts_with("CONNECT selfca.test:")).expect("a CONNECT");
    assert!(connect.to_ascii_lowercase().contains("x-proxy-tenant: team-a"), "{connect}");
    for host in ["token.example", "receiver.example", "kube.example"] {
        assert!(
            heads.iter().any(|h| h.contains(&format!("http://{host}:"))),
            "{host} in absolute form: {heads:?}"
        );
    }
    assert!(
        !heads.iter().any(|h| h.contains(&direct.host())),
        "a loopback target is never proxied once no_proxy is set (Go's httpproxy)"
    );
    assert!(direct.hits("/metrics") > 0);
    assert!(
        tokens.fetches() >= 1 && tokens.fetches() <= 2,
        "one token per oauth2 block: {}",
        tokens.fetches()
    );
}

#[tokio::test]
async fn socks5_proxy_for_http_and_https_targets() {
    let socks = peers::SocksProxy::start(Some(("user", "p@ss"))).await;
    let tls = peers::tls_server("selfca", |_| (200, "text/plain", b"ok".to_vec())).await;
    socks.alias("selfca.test", tls);
    let plain = TestTarget::start().await;
    plain.route("/metrics", |_| (200, TEXT, b"m 1\n".to_vec()));
    let cfg = |url: String| HttpClientConfig {
        tls_config: Some(trawl::config::TlsConfig {
            ca_file: Some(fixture("selfca.pem")),
            ..Default::default()
        }),
        proxy: ProxyConfig { proxy_url: Some(ProxyUrl::from(url.as_str())), ..Default::default() },
        ..Default::default()
    };
    let client =
        trawl::http_client::from_config(&cfg(format!("socks5h://user:p%40ss@{}", socks.addr))).unwrap();
    assert_eq!(
        get(&client, &format!("https://selfca.test:{}/", tls.port())).await,
        Ok(200),
        "a name the proxy resolves"
    );
    assert_eq!(
        get(&client, &format!("http://{}/metrics", plain.host())).await,
        Ok(200),
        "plain http, origin form"
    );
    assert_eq!(plain.hits("/metrics"), 1);
    let targets = socks.targets.lock().unwrap().clone();
    assert_eq!(targets, [format!("selfca.test:{}", tls.port()), plain.host()], "names as names, IPs as IPs");
    let wrong = trawl::http_client::from_config(&cfg(format!("socks5://user:nope@{}", socks.addr))).unwrap();
    let err = get(&wrong, &format!("http://{}/metrics", plain.host())).await.unwrap_err();
    assert!(err.contains("SOCKS5: username/password authentication failed"), "{err}");
}
