//! Native histograms, differentially: a scripted target serves one protobuf page (delimited
//! `io.prometheus.client.MetricFamily`, as client_golang does) holding a native histogram
//! (schema 3, positive and negative spans, a zero bucket) that also carries classic buckets, a
//! float histogram, a counter and a summary. It serves the text format when the `Accept`
//! header does not ask for protobuf, as real client libraries do.
//!
//! Prometheus A (Debian's 2.42 with `--enable-feature=native-histograms`, which asks for
//! protobuf first) scrapes it directly; trawl (`scrape_native_histograms: true`, which puts
//! protobuf first as Prometheus 3.9 does) scrapes it and remote-writes to Prometheus B (the
//! receiver, same flag). `histogram_count`, `histogram_sum`, `histogram_quantile` and the
//! counter and summary values must agree between A and B.
//!
//! Prometheus A's answers are checked against the page first, so a broken harness fails on its
//! own line, not as a difference between A and B.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::{Prometheus, Trawl, eventually};
use trawl::parse::proto::model::{page as encode_delimited, *};

/// `io.prometheus.client.MetricType`.
#[derive(Clone, Copy)]
enum MetricType {
    Counter = 0,
    Summary = 2,
    Histogram = 4,
}

/// How long a test waits for something that should happen within a few scrapes.
const WAIT: Duration = Duration::from_secs(40);

/// The media type of the delimited protobuf exposition.
const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// The native histogram with classic buckets too: schema 3, zero bucket 2 (threshold 0.001),
/// positive buckets 0, 1 and 3 holding 3, 2 and 4 (deltas 3, -1, 2), negative bucket 0 holding
/// 1: count 12, sum 10.5.
fn dual_histogram() -> Histogram {
    Histogram {
        sample_count: 12,
        sample_sum: 10.5,
        bucket: vec![
            Bucket { cumulative_count: 5, upper_bound: 0.5, ..Default::default() },
            Bucket { cumulative_count: 9, upper_bound: 1.0, ..Default::default() },
            Bucket { cumulative_count: 12, upper_bound: 2.0, ..Default::default() },
        ],
        schema: 3,
        zero_threshold: 0.001,
        zero_count: 2,
        negative_span: vec![BucketSpan { offset: 0, length: 1 }],
        negative_delta: vec![1],
        positive_span: vec![BucketSpan { offset: 0, length: 2 }, BucketSpan { offset: 1, length: 1 }],
        positive_delta: vec![3, -1, 2],
        ..Default::default()
    }
}

/// A float histogram (absolute float counts): schema 0, zero bucket 0.5, positive buckets 0 and
/// 1 holding 2.5 and 3.5: count 6.5, sum 3.25.
fn float_histogram() -> Histogram {
    Histogram {
        sample_count_float: 6.5,
        sample_sum: 3.25,
        schema: 0,
        zero_threshold: 0.001,
        zero_count_float: 0.5,
        positive_span: vec![BucketSpan { offset: 0, length: 2 }],
        positive_count: vec![2.5, 3.5],
        ..Default::default()
    }
}

fn family(name: &str, kind: MetricType, metric: Metric) -> MetricFamily {
    MetricFamily {
        name: name.into(),
        help: format!("{name} help"),
        r#type: kind as i32,
        metric: vec![metric],
        ..Default::default()
    }
}

fn protobuf_page() -> Vec<u8> {
    let histogram = |h| Metric { histogram: Some(h), ..Default::default() };
    encode_delimited(&[
        family("rpc_latency_seconds", MetricType::Histogram, histogram(dual_histogram())),
        family("float_latency_seconds", MetricType::Histogram, histogram(float_histogram())),
        family(
            "requests_total",
            MetricType::Counter,
            Metric { counter: Some(Counter { value: 17.0, ..Default::default() }), ..Default::default() },
        ),
        family(
            "rpc_duration_seconds",
            MetricType::Summary,
            Metric {
                summary: Some(Summary {
                    sample_count: 5,
                    sample_sum: 2.5,
                    quantile: vec![
                        Quantile { quantile: 0.5, value: 0.4 },
                        Quantile { quantile: 0.9, value: 0.8 },
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ])
}

/// The same page as client_golang writes it in the text format: classic buckets only; a
/// histogram without classic buckets has just `+Inf`, `_sum` and `_count`.
const TEXT_PAGE: &str = "# HELP rpc_latency_seconds rpc_latency_seconds help
# TYPE rpc_latency_seconds histogram
rpc_latency_seconds_bucket{le=\"0.5\"} 5
rpc_latency_seconds_bucket{le=\"1\"} 9
rpc_latency_seconds_bucket{le=\"2\"} 12
rpc_latency_seconds_bucket{le=\"+Inf\"} 12
rpc_latency_seconds_sum 10.5
rpc_latency_seconds_count 12
# HELP float_latency_seconds float_latency_seconds help
# TYPE float_latency_seconds histogram
float_latency_seconds_bucket{le=\"+Inf\"} 6.5
float_latency_seconds_sum 3.25
float_latency_seconds_count 6.5
# HELP requests_total requests_total help
# TYPE requests_total counter
requests_total 17
# HELP rpc_duration_seconds rpc_duration_seconds help
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile=\"0.5\"} 0.4
rpc_duration_seconds{quantile=\"0.9\"} 0.8
rpc_duration_seconds_sum 2.5
rpc_duration_seconds_count 5
";

/// Requests seen: User-Agent and Accept.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves the page on `/metrics`: protobuf when the Accept header asks for it, else text.
async fn start_target() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let page = Bytes::from(protobuf_page());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (s, page) = (s.clone(), page.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let header =
                        |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let accept = header("accept");
                    s.lock().unwrap().push((header("user-agent"), accept.clone()));
                    // client_golang's negotiation: protobuf if it is acceptable at all.
                    let (ct, body) = if accept.contains("application/vnd.google.protobuf") {
                        (PROTOBUF, page.clone())
                    } else {
                        ("text/plain; version=0.0.4; charset=utf-8", Bytes::from_static(TEXT_PAGE.as_bytes()))
                    };
                    let mut resp = Response::new(Full::new(body));
                    resp.headers_mut().insert("content-type", ct.parse().unwrap());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr.to_string(), seen)
}

/// The queries compared, each with the value Prometheus A must answer (from the page).
fn queries() -> Vec<(&'static str, Option<f64>)> {
    vec![
        ("histogram_count(rpc_latency_seconds)", Some(12.0)),
        ("histogram_sum(rpc_latency_seconds)", Some(10.5)),
        ("histogram_quantile(0.9, rpc_latency_seconds)", None),
        ("histogram_count(float_latency_seconds)", Some(6.5)),
        ("histogram_sum(float_latency_seconds)", Some(3.25)),
        ("histogram_quantile(0.9, float_latency_seconds)", None),
        ("requests_total", Some(17.0)),
        ("rpc_duration_seconds{quantile=\"0.9\"}", Some(0.8)),
        ("rpc_duration_seconds_count", Some(5.0)),
        ("rpc_duration_seconds_sum", Some(2.5)),
    ]
}

/// The answers of `p` to every query (None where it has no result yet).
async fn answers(p: &Prometheus) -> HashMap<&'static str, Option<f64>> {
    let mut out = HashMap::new();
    for (q, _) in queries() {
        let r = p.query(q).await;
        out.insert(q, r.first().map(|(_, v)| *v));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_agree_with_prometheus() {
    let (host, seen) = start_target().await;
    let job =
        format!("scrape_configs:\n  - job_name: nh\n    static_configs:\n      - targets: ['{host}']\n");
    let flags = ["--enable-feature=native-histograms"];
    let Some(a) =
        Prometheus::start_with_config_and_flags(&format!("global:\n  scrape_interval: 1s\n{job}"), &flags)
            .await
    else {
        return;
    };
    let Some(b) = Prometheus::start_with_config_and_flags("global:\n  scrape_interval: 1h\n", &flags).await
    else {
        return;
    };
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_native_histograms: true\n{job}remote_write:\n  - url: {}\n    send_native_histograms: true\n    \
         queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 100ms\n      max_backoff: 1s\n",
        b.write_url()
    ))
    .await;

    // The harness: Prometheus A got protobuf and reads the page as written.
    let a_answers = eventually(WAIT, async || {
        let got = answers(&a).await;
        got.values().all(Option::is_some).then_some(got)
    })
    .await;
    let a_answers =
        a_answers.unwrap_or_else(|| panic!("Prometheus A answers every query:\n{}", a.proc.log()));
    for (q, want) in queries() {
        let got = a_answers[q].unwrap_or(f64::NAN);
        match want {
            Some(w) => assert_eq!(got, w, "Prometheus A: {q}"),
            None => assert!(got.is_finite() && got > 0.0, "Prometheus A: {q} = {got}"),
        }
    }
    let asked: Vec<String> = seen.lock().unwrap().iter().map(|(ua, a)| format!("{ua}: {a}")).collect();
    assert!(
        asked.iter().any(|a| a.starts_with("trawl/") && a.contains(": application/vnd.google.protobuf;")),
        "trawl asked for protobuf first: {asked:?}"
    );

    // trawl through Prometheus B agrees with A.
    let b_answers = eventually(WAIT, async || {
        let got = answers(&b).await;
        got.values().all(Option::is_some).then_some(got)
    })
    .await;
    let up = b.query("up").await;
    assert_eq!(
        b_answers.as_ref(),
        Some(&a_answers),
        "Prometheus B (from trawl) and A; trawl's up in B: {up:?}; trawl's log:\n{}",
        trawl.proc.log()
    );
    assert_eq!(trawl.interrupt(), Some(0), "{}", trawl.proc.log());
}
