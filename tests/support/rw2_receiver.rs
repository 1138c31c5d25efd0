//! An in-process remote-write 2.0 receiver for tests, on `127.0.0.1:0`, that checks what it gets.
//!
//! What this is: a hyper 1 server that decodes `io.prometheus.write.v2.Request` bodies with its
//! own prost structs, written here from the published proto
//! (`prompb/io/prometheus/write/v2/types.proto`), *not* with trawl's, so a wrong field number in
//! trawl cannot be mirrored by the test. Every MUST of the 2.0 spec that a single request shows
//! is checked (reserved headers, `symbols[0] == ""`, every ref in range, label refs in pairs,
//! label names sorted and unique, no empty names or values, every series with samples, exemplar
//! timestamps set); a violation is recorded and answered 400 with the reason. Accepted 2.0
//! requests are answered with the `X-Prometheus-Remote-Write-*-Written` headers. 1.0 requests
//! (`application/x-protobuf`, version 0.1.0) are decoded with `trawl::prompb` and accepted,
//! as a 2.0 receiver must also take 1.0; in [`Mode::Only1`] a 2.0 body is answered 415.
//! What this is not: storage, or a check of properties that span requests.
//!
//! Use with `#[path = "support/rw2_receiver.rs"] mod rw2_receiver;`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request as HttpRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpListener;

/// Largest request body read, compressed and decompressed alike.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// The 2.0 content type (RW 2.0 §"Content-Type").
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// The messages of `io.prometheus.write.v2`, field numbers as published.
pub mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        #[prost(int64, tag = "6")]
        pub created_timestamp: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        /// Spec 2.0-rc.4 (Prometheus 3.9+); `TimeSeries.created_timestamp` before.
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }
    /// Only the timestamp: enough to count histograms (trawl sends none).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }
}

/// What the receiver takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 2.0 and 1.0.
    Both,
    /// 1.0 only: a 2.0 body gets 415 Unsupported Media Type.
    Only1,
    /// 2.0 and 1.0, but 2.0 answers confirm no exemplars (`…-Exemplars-Written: 0`), as a
    /// receiver that stores no exemplars answers.
    NoExemplars,
}

/// An exemplar as received: labels, value, timestamp.
pub type ReceivedExemplar = (Vec<(String, String)>, f64, i64);

/// One series as received, symbols resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    /// `(type, help, unit)`; `None` when absent (always for 1.0).
    pub metadata: Option<(i32, String, String)>,
    /// `(value, timestamp)`.
    pub samples: Vec<(f64, i64)>,
    /// `(labels, value, timestamp)`.
    pub exemplars: Vec<ReceivedExemplar>,
    /// Each sample's `start_timestamp` (0: unset; always 0 for 1.0).
    pub starts: Vec<i64>,
    /// `TimeSeries.created_timestamp` (0: unset; always 0 for 1.0).
    pub created: i64,
}

impl Series {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub headers: HeaderMap,
    /// Whether it was a 2.0 request (by its content type).
    pub v2: bool,
    /// Its series (empty if it did not decode or was refused).
    pub series: Vec<Series>,
    /// MUST violations found (empty: conforming).
    pub violations: Vec<String>,
    pub status: u16,
}

impl Recorded {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// All values of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("<binary>").to_owned()).collect()
    }
}

struct State {
    mode: Mode,
    requests: Mutex<Vec<Recorded>>,
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
    pub async fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State { mode, requests: Mutex::new(Vec::new()) });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Receiver { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// Series of accepted requests, in arrival order.
    pub fn accepted_series(&self) -> Vec<Series> {
        lock(&self.state.requests).iter().filter(|r| r.accepted()).flat_map(|r| r.series.clone()).collect()
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state.requests).iter().flat_map(|r| r.violations.clone()).collect()
    }

    /// Polls until `pred` holds for the requests; false after `timeout`.
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

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn handle(
    req: HttpRequest<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let headers = req.headers().clone();
    let method = req.method().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let v2 = header(&headers, "content-type") == CONTENT_TYPE_V2;
    let mut violations = Vec::new();
    let mut must = |ok: bool, what: String| {
        if !ok {
            violations.push(what);
        }
    };
    must(method == hyper::Method::POST, format!("method {method}, not POST"));
    must(header(&headers, "content-encoding") == "snappy", "Content-Encoding is not snappy".into());
    must(!header(&headers, "user-agent").is_empty(), "no User-Agent".into());
    let (status, series, written) = if v2 && state.mode == Mode::Only1 {
        (415, Vec::new(), None)
    } else if v2 {
        must(
            header(&headers, "x-prometheus-remote-write-version") == "2.0.0",
            "version header is not 2.0.0".into(),
        );
        match decode_v2(&body) {
            Ok(r) => {
                let series = check_v2(&r, &mut must);
                let samples = series.iter().map(|s| s.samples.len()).sum::<usize>();
                let exemplars = if state.mode == Mode::NoExemplars {
                    0
                } else {
                    series.iter().map(|s| s.exemplars.len()).sum::<usize>()
                };
                (200, series, Some((samples, exemplars)))
            }
            Err(e) => {
                must(false, format!("not a snappy v2 Request: {e}"));
                (400, Vec::new(), None)
            }
        }
    } else {
        must(header(&headers, "content-type") == "application/x-protobuf", "1.0 content type".into());
        must(header(&headers, "x-prometheus-remote-write-version") == "0.1.0", "1.0 version header".into());
        match trawl::prompb::decode_snappy(&body, MAX_BODY_BYTES) {
            Ok(wr) => {
                let series = wr
                    .timeseries
                    .into_iter()
                    .map(|ts| Series {
                        labels: ts.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                        metadata: None,
                        samples: ts.samples.into_iter().map(|s| (s.value, s.timestamp)).collect(),
                        exemplars: Vec::new(),
                        starts: Vec::new(),
                        created: 0,
                    })
                    .collect();
                (204, series, None)
            }
            Err(e) => {
                must(false, format!("not a snappy 1.0 WriteRequest: {e}"));
                (400, Vec::new(), None)
            }
        }
    };
    let status = if violations.is_empty() { status } else { 400 };
    let text = violations.join("; ");
    lock(&state.requests).push(Recorded {
        at: Instant::now(),
        headers,
        v2,
        series: if status < 300 { series } else { Vec::new() },
        violations,
        status,
    });
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let (Some((samples, exemplars)), true) = (written, status < 300) {
        let h = resp.headers_mut();
        h.insert("x-prometheus-remote-write-samples-written", samples.into());
        h.insert("x-prometheus-remote-write-histograms-written", 0.into());
        h.insert("x-prometheus-remote-write-exemplars-written", exemplars.into());
    }
    Ok(resp)
}

fn decode_v2(body: &[u8]) -> Result<pb::Request, String> {
    let len = snap::raw::decompress_len(body).map_err(|e| e.to_string())?;
    if len > MAX_BODY_BYTES {
        return Err(format!("{len} bytes decompressed"));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| e.to_string())?;
    pb::Request::decode(raw.as_slice()).map_err(|e| e.to_string())
}

/// Checks the MUSTs of one request and resolves its series.
fn check_v2(r: &pb::Request, must: &mut impl FnMut(bool, String)) -> Vec<Series> {
    must(r.symbols.first().map(String::as_str) == Some(""), "symbols[0] is not \"\"".into());
    let sym = |i: u32, must: &mut dyn FnMut(bool, String)| match r.symbols.get(i as usize) {
        Some(s) => s.clone(),
        None => {
            must(false, format!("ref {i} out of range ({} symbols)", r.symbols.len()));
            String::new()
        }
    };
    let pairs = |refs: &[u32], what: &str, must: &mut dyn FnMut(bool, String)| {
        must(refs.len().is_multiple_of(2), format!("{what}: odd number of label refs"));
        let labels: Vec<(String, String)> =
            refs.chunks_exact(2).map(|p| (sym(p[0], must), sym(p[1], must))).collect();
        for w in labels.windows(2) {
            must(
                w[0].0 < w[1].0,
                format!("{what}: labels not sorted or duplicated: {} then {}", w[0].0, w[1].0),
            );
        }
        for (n, v) in &labels {
            must(!n.is_empty(), format!("{what}: empty label name"));
            must(!v.is_empty(), format!("{what}: empty value for {n}"));
        }
        labels
    };
    let mut out = Vec::new();
    for ts in &r.timeseries {
        let labels = pairs(&ts.labels_refs, "series", must);
        must(!labels.is_empty(), "series without labels".into());
        must(
            ts.samples.is_empty() != ts.histograms.is_empty(),
            "a series needs samples or histograms, not both or neither".into(),
        );
        let metadata = ts.metadata.as_ref().map(|m| (m.r#type, sym(m.help_ref, must), sym(m.unit_ref, must)));
        let exemplars = ts
            .exemplars
            .iter()
            .map(|e| {
                must(e.timestamp != 0, "exemplar without a timestamp".into());
                (pairs(&e.labels_refs, "exemplar", must), e.value, e.timestamp)
            })
            .collect();
        for s in &ts.samples {
            must(
                s.start_timestamp <= s.timestamp,
                format!("start timestamp {} after the sample's {}", s.start_timestamp, s.timestamp),
            );
        }
        let samples = ts.samples.iter().map(|s| (s.value, s.timestamp)).collect();
        let starts = ts.samples.iter().map(|s| s.start_timestamp).collect();
        out.push(Series { labels, metadata, samples, exemplars, starts, created: ts.created_timestamp });
    }
    out
}
