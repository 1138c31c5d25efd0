//! A cheap remote-write receiver for the perf harness: decodes every request (snappy + protobuf,
//! so the counts are verified, not guessed) and counts samples, series and bytes. It is never the
//! bottleneck: decoding runs at hundreds of MB/s on one core.
//!
//! `cargo run --release --example rw_sink -- 127.0.0.1:19291`; `GET /count` returns
//! `{"requests":…,"samples":…,"bytes":…}` and `POST /reset` zeroes the counters.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:19291".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let counts = Arc::new(Counts::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let counts = counts.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let counts = counts.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let method = req.method().clone();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let text = match (method.as_str(), path.as_str()) {
                        ("GET", "/count") => format!(
                            "{{\"requests\":{},\"samples\":{},\"bytes\":{},\"errors\":{}}}",
                            counts.requests.load(Relaxed),
                            counts.samples.load(Relaxed),
                            counts.bytes.load(Relaxed),
                            counts.errors.load(Relaxed)
                        ),
                        ("POST", "/reset") => {
                            for c in [&counts.requests, &counts.samples, &counts.bytes, &counts.errors] {
                                c.store(0, Relaxed);
                            }
                            "ok".into()
                        }
                        _ => {
                            counts.requests.fetch_add(1, Relaxed);
                            counts.bytes.fetch_add(body.len() as u64, Relaxed);
                            match trawl::prompb::decode_snappy(&body, 256 << 20) {
                                Ok(w) => {
                                    let n: usize = w.timeseries.iter().map(|t| t.samples.len()).sum();
                                    counts.samples.fetch_add(n as u64, Relaxed);
                                }
                                Err(_) => {
                                    counts.errors.fetch_add(1, Relaxed);
                                }
                            }
                            String::new()
                        }
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                }
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
