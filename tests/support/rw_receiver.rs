//! An in-process remote-write 1.0 receiver for tests, on `127.0.0.1:0`.
//!
//! What this is: a small hyper 1 server that records every request (arrival time, headers, raw
//! body, the decoded `WriteRequest` and the status it answered) and answers from a script:
//! a queue of [`Reply`]s (status, `Retry-After`, body, delay), then a default reply. It can be
//! paused to hold every answer, which is how tests fill a sender's queue. Bodies are decoded
//! with a snappy length cap before protobuf decoding with `trawl::prompb`.
//! What this is not: a conforming receiver (it stores nothing and checks nothing); tests assert
//! on what it recorded.
//!
//! Use from a test file with `#[path = "support/rw_receiver.rs"] mod rw_receiver;`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request as HttpRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use trawl::prompb::{self, WriteRequest};

/// Largest request body read, compressed and decompressed alike.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// The path the receiver's URL uses (any path is accepted).
pub const WRITE_PATH: &str = "/api/v1/write";

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` header value, if any.
    pub retry_after: Option<String>,
    /// Response body.
    pub body: String,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// An answer with this status, no delay and an empty body.
    pub fn status(status: u16) -> Reply {
        Reply { status, retry_after: None, body: String::new(), delay: Duration::ZERO }
    }
    /// 200 OK.
    pub fn ok() -> Reply {
        Reply::status(200)
    }
    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, v: &str) -> Reply {
        self.retry_after = Some(v.to_owned());
        self
    }
    /// Sets the body.
    pub fn body(mut self, b: &str) -> Reply {
        self.body = b.to_owned();
        self
    }
    /// Waits this long before answering.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// When it arrived (after its body was read).
    pub at: Instant,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The raw (compressed) body.
    pub body: Bytes,
    /// The decoded body, or why it did not decode.
    pub decoded: Result<WriteRequest, String>,
    /// The status answered.
    pub status: u16,
}

impl Recorded {
    /// Whether the receiver accepted it (2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// Its samples, flattened in body order (empty if it did not decode).
    pub fn samples(&self) -> Vec<Received> {
        let Ok(req) = &self.decoded else { return Vec::new() };
        let mut out = Vec::new();
        for ts in &req.timeseries {
            let labels: Vec<(String, String)> =
                ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            for s in &ts.samples {
                out.push(Received {
                    labels: labels.clone(),
                    timestamp: s.timestamp,
                    value_bits: s.value.to_bits(),
                });
            }
        }
        out
    }
}

/// One received sample.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Received {
    /// Labels as sent (name, value), in wire order.
    pub labels: Vec<(String, String)>,
    /// Milliseconds.
    pub timestamp: i64,
    /// The value's bits (so StaleNaN and -0.0 compare exactly).
    pub value_bits: u64,
}

impl Received {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
    paused: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receiver; stops serving when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts on a fresh loopback port; answers 200 unless scripted otherwise.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        Receiver::start_on(listener)
    }

    /// Starts on an already bound listener.
    pub fn start_on(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::ok()),
            requests: Mutex::new(Vec::new()),
            paused: watch::channel(false).0,
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Receiver { addr, state, task }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The write URL.
    pub fn url(&self) -> String {
        format!("http://{}{WRITE_PATH}", self.addr)
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state.script).extend(replies);
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        *lock(&self.state.default) = reply;
    }

    /// Holds every answer (requests are still recorded on arrival) until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.state.paused.send_replace(true);
    }

    /// Releases held answers.
    pub fn resume(&self) {
        self.state.paused.send_replace(false);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// Samples of accepted requests, in arrival order.
    pub fn accepted_samples(&self) -> Vec<Received> {
        lock(&self.state.requests).iter().filter(|r| r.accepted()).flat_map(Recorded::samples).collect()
    }

    /// Waits until `pred` holds for the recorded requests, polling; false after `timeout`.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Recorded]) -> bool) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if pred(&lock(&self.state.requests)) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` samples were accepted; false after `timeout`.
    pub async fn wait_for_samples(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |rs| {
            rs.iter().filter(|r| r.accepted()).map(|r| r.samples().len()).sum::<usize>() >= n
        })
        .await
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: HttpRequest<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let decoded = prompb::decode_snappy(&body, MAX_BODY_BYTES).map_err(|e| e.to_string());
    let reply = lock(&state.script).pop_front().unwrap_or_else(|| lock(&state.default).clone());
    lock(&state.requests).push(Recorded {
        at: Instant::now(),
        method,
        path,
        headers,
        body,
        decoded,
        status: reply.status,
    });
    let mut paused = state.paused.subscribe();
    let _ = paused.wait_for(|p| !*p).await;
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from(reply.body.clone())));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(v) = &reply.retry_after
        && let Ok(v) = hyper::header::HeaderValue::from_str(v)
    {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    Ok(resp)
}
