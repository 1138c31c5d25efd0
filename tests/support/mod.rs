//! Shared parts of the end-to-end tests: real binaries started on loopback ports, a scripted
//! scrape target, and Prometheus' HTTP API.
//!
//! Binaries a test needs (`prometheus`, `prometheus-node-exporter`, `podman`) are looked up on
//! PATH. When one is missing the test prints SKIPPED and returns, except with `CI=true`, where a
//! missing binary fails the test: CI installs them (`.ci/run`), so missing means broken.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Finds `name` on PATH, or decides what a missing binary means (see the module docs).
pub fn require_binary(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        unavailable(&format!("{name} is not installed"), &format!("apt-get install -y {name}"));
    }
    found
}

/// What a missing prerequisite means (see the module docs): with `CI=true` a panic naming it,
/// else a SKIPPED line with `fix`, the command that provides it (`.ci/run` runs it in CI).
pub fn unavailable(what: &str, fix: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}, and CI=true: .ci/run must provide it ({fix})");
    }
    eprintln!("SKIPPED: {what} ({fix}); set CI=true to make this fatal");
}

/// Whether `python3` can import `modules`; a missing one is handled as a missing binary is
/// (`.ci/run` installs them with pip).
pub fn require_python_modules(modules: &[&str]) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {}", modules.join(", "))])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        unavailable(&format!("python3 cannot import {modules:?}"), "pip install, see .ci/run");
    }
    ok
}

/// The sum over the series of metric `name` whose line contains `matching` (e.g. a label pair;
/// "" for all) in an exposition page such as trawl's /metrics.
pub fn metric_sum(page: &str, name: &str, matching: &str) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])) && l.contains(matching)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A free loopback port (bound then released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `args`, stdout and stderr into `<dir>/<name>.log`.
    pub fn start(name: &str, bin: &Path, args: &[String], dir: &Path) -> Proc {
        Proc::start_without_env(name, bin, args, dir, &[])
    }

    /// As [`Proc::start`], with the environment variables `unset` removed.
    pub fn start_without_env(name: &str, bin: &Path, args: &[String], dir: &Path, unset: &[&str]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(bin);
        for v in unset {
            cmd.env_remove(v);
        }
        let child = cmd
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Proc { child, name: name.to_owned(), log }
    }

    /// The process' log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. "INT", "TERM", "KILL") and waits up to `within` for the exit code.
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> Option<i32> {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 200 ms until it returns Some or `within` passes.
pub async fn eventually<T>(within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET a URL over loopback; (status, body).
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let uri: hyper::Uri = url.parse().ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri)).await.ok()?.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A real Prometheus used as remote-write receiver and as oracle.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with the remote-write receiver enabled and nothing to scrape, or
    /// returns None (skip) when it is not installed.
    pub async fn start_receiver() -> Option<Prometheus> {
        Self::start_with_config("global:\n  scrape_interval: 1h\n").await
    }

    /// Starts Prometheus with `config` (plus the remote-write receiver).
    pub async fn start_with_config(config: &str) -> Option<Prometheus> {
        Self::start_with_config_and_flags(config, &[]).await
    }

    /// As [`Prometheus::start_with_config`], with more flags (e.g.
    /// `--enable-feature=native-histograms`).
    pub async fn start_with_config_and_flags(config: &str, flags: &[&str]) -> Option<Prometheus> {
        let bin = require_binary("prometheus")?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        let port = free_port();
        let args = vec![
            "--config.file=prometheus.yml".to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.path=data".to_string(),
            "--web.enable-remote-write-receiver".to_string(),
            "--log.level=warn".to_string(),
        ];
        let args: Vec<String> = args.into_iter().chain(flags.iter().map(|f| f.to_string())).collect();
        let proc = Proc::start("prometheus", &bin, &args, dir.path());
        let p = Prometheus { proc, port, _dir: dir };
        let ready = eventually(Duration::from_secs(30), async || {
            http_get(&format!("{}/-/ready", p.url())).await.filter(|(s, _)| *s == 200)
        })
        .await;
        assert!(ready.is_some(), "prometheus did not become ready:\n{}", p.proc.log());
        Some(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// Runs an API GET (path with query string) and returns `data`.
    pub async fn api(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) =
            http_get(&format!("{}{}", self.url(), path_and_query)).await.expect("prometheus API reachable");
        let v: serde_json::Value = serde_json::from_str(&body).expect("prometheus API JSON");
        assert_eq!(status, 200, "{path_and_query}: {body}");
        v["data"].clone()
    }

    /// An instant query; returns the result vector as (labels, value) pairs.
    pub async fn query(&self, promql: &str) -> Vec<(HashMap<String, String>, f64)> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(promql))).await;
        data["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let labels = r["metric"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let value = r["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The values of a range selector such as `metric[10m]`, per series, in time order.
    pub async fn range_values(&self, selector: &str) -> Vec<(HashMap<String, String>, Vec<(f64, f64)>)> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(selector))).await;
        let mut out = Vec::new();
        for r in data["result"].as_array().cloned().unwrap_or_default() {
            let labels = r["metric"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())).collect())
                .unwrap_or_default();
            let values = r["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .map(|p| {
                            (
                                p[0].as_f64().unwrap_or(0.0),
                                p[1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((labels, values));
        }
        out
    }

    /// All series matching `matcher` (any time in the last hour), as label maps.
    pub async fn series(&self, matcher: &str) -> Vec<HashMap<String, String>> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let data = self
            .api(&format!(
                "/api/v1/series?match[]={}&start={}&end={}",
                urlencode(matcher),
                now - 3600,
                now + 60
            ))
            .await;
        data.as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        m.as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// trawl itself, started from the test binary's sibling `trawl`.
pub struct Trawl {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Trawl {
    /// Writes `config` and starts trawl on a free port; waits for `/-/ready`.
    pub async fn start(config: &str) -> Trawl {
        Trawl::start_with_args(config, &[]).await
    }

    /// As [`Trawl::start`], with more command-line flags (`--log.level=debug` unless they set
    /// `--log.level`, or `--log.level=` to leave the flag out).
    pub async fn start_with_args(config: &str, extra: &[&str]) -> Trawl {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("trawl.yml"), config).expect("config");
        let port = free_port();
        let mut args =
            vec!["--config.file=trawl.yml".to_string(), format!("--web.listen-address=127.0.0.1:{port}")];
        if !extra.iter().any(|a| a.starts_with("--log.level")) {
            args.push("--log.level=debug".to_string());
        }
        args.extend(extra.iter().filter(|a| **a != "--log.level=").map(|a| a.to_string()));
        let proc = Proc::start("trawl", Path::new(env!("CARGO_BIN_EXE_trawl")), &args, dir.path());
        let t = Trawl { proc, port, dir };
        let ready = eventually(Duration::from_secs(20), async || {
            http_get(&format!("{}/-/ready", t.url())).await.filter(|(s, _)| *s == 200)
        })
        .await;
        assert!(ready.is_some(), "trawl did not become ready:\n{}", t.proc.log());
        t
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// trawl's own /metrics text.
    pub async fn metrics(&self) -> String {
        http_get(&format!("{}/metrics", self.url())).await.map(|r| r.1).unwrap_or_default()
    }

    /// SIGINT, and the exit code (None if it did not exit within 30 s).
    pub fn interrupt(&mut self) -> Option<i32> {
        self.proc.signal_and_wait("INT", Duration::from_secs(30))
    }
}

/// What a scripted target answers: status, content type, body.
pub type Page = (u16, &'static str, Vec<u8>);

/// A handler: given the number of requests this path has seen so far (0-based), the page.
pub type Handler = Arc<dyn Fn(u64) -> Page + Send + Sync>;

/// Handlers by path, each with its request counter.
type Routes = Arc<Mutex<HashMap<String, (Handler, Arc<AtomicU64>)>>>;

/// A scripted scrape target on 127.0.0.1: one handler per path, each with its request counter.
pub struct TestTarget {
    pub addr: SocketAddr,
    routes: Routes,
}

pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl TestTarget {
    /// Starts the server on the current Tokio runtime.
    pub async fn start() -> TestTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes: Routes = Arc::default();
        let r = routes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let r = r.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let r = r.clone();
                        async move {
                            let route = r.lock().unwrap().get(req.uri().path()).cloned();
                            let (status, ct, body) = match route {
                                Some((h, n)) => h(n.fetch_add(1, Ordering::SeqCst)),
                                None => (404, "text/plain", b"not found".to_vec()),
                            };
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            resp.headers_mut().insert("content-type", ct.parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestTarget { addr, routes }
    }

    /// Serves `path` with `handler`.
    pub fn route(&self, path: &str, handler: impl Fn(u64) -> Page + Send + Sync + 'static) {
        self.routes.lock().unwrap().insert(path.to_owned(), (Arc::new(handler), Arc::default()));
    }

    /// How many requests `path` has had.
    pub fn hits(&self, path: &str) -> u64 {
        self.routes.lock().unwrap().get(path).map(|r| r.1.load(Ordering::SeqCst)).unwrap_or(0)
    }

    /// `host:port` for static_configs.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// One request a [`Gate`] received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
}

/// The answer to one request: a status and extra response headers.
pub type Answer = (u16, Vec<(&'static str, String)>);

/// A remote-write front door on 127.0.0.1: answers each request as the script says, forwarding
/// it to `upstream` (a real Prometheus) when the scripted status is 2xx. Records every request,
/// so tests can check headers and count retries.
pub struct Gate {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Gate {
    /// A gate whose script decides only the status.
    pub async fn start(
        upstream: Option<String>,
        script: impl Fn(u64) -> u16 + Send + Sync + 'static,
    ) -> Gate {
        Self::start_with(upstream, move |n| (script(n), Vec::new())).await
    }

    /// A gate whose script decides the status and response headers (e.g. Retry-After).
    pub async fn start_with(
        upstream: Option<String>,
        script: impl Fn(u64) -> Answer + Send + Sync + 'static,
    ) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let script: Arc<dyn Fn(u64) -> Answer + Send + Sync> = Arc::new(script);
        let count = Arc::new(AtomicU64::new(0));
        let (b, r) = (bodies.clone(), requests.clone());
        tokio::spawn(async move {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (b, r, script, count, client, upstream) =
                    (b.clone(), r.clone(), script.clone(), count.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (b, r, script, count, client, upstream) = (
                            b.clone(),
                            r.clone(),
                            script.clone(),
                            count.clone(),
                            client.clone(),
                            upstream.clone(),
                        );
                        async move {
                            let headers = req.headers().clone();
                            let body =
                                req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            b.lock().unwrap().push(body.to_vec());
                            r.lock().unwrap().push(Recorded {
                                headers: headers.clone(),
                                body: body.to_vec(),
                                at: std::time::Instant::now(),
                            });
                            let (mut status, extra) = script(count.fetch_add(1, Ordering::SeqCst));
                            if (200..300).contains(&status)
                                && let Some(up) = upstream
                            {
                                let mut fwd = Request::post(up.as_str());
                                for (k, v) in headers.iter() {
                                    if k != "host" {
                                        fwd = fwd.header(k, v);
                                    }
                                }
                                status = match client.request(fwd.body(Full::new(body)).unwrap()).await {
                                    Ok(r) => r.status().as_u16(),
                                    Err(_) => 502,
                                };
                            }
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"scripted")));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            for (k, v) in extra {
                                resp.headers_mut().insert(k, v.parse().unwrap());
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Gate { addr, bodies, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// Every request decoded as a remote-write 1.0 body.
    pub fn decoded(&self) -> Vec<trawl::prompb::WriteRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| trawl::prompb::decode_snappy(&r.body, 64 << 20).expect("a valid snappy WriteRequest"))
            .collect()
    }
}
