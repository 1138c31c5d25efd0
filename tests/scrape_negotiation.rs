//! A/B tests of how a scrape is asked for and answered: `follow_redirects` and
//! `scrape_protocols`. Prometheus A (Debian's 2.42) scrapes a scripted target directly; trawl
//! scrapes the same target and remote-writes to Prometheus B; `up` and the samples must agree.
//!
//! The target records the `Accept` header of every request and answers in the format asked
//! for, as client libraries do: OpenMetrics when the header's first (most wanted) media type is
//! OpenMetrics, else the text format.
//!
//! Where 2.42 and Prometheus 3 differ, trawl follows 3.x and these tests say so: 2.42 has no
//! `scrape_protocols` (added in 2.49) and sends a fixed `Accept` header, so the header trawl
//! sends is checked against the one Prometheus 3's `acceptHeader` builds for the same config
//! (scrape/scrape.go; its own table test `TestAcceptHeader` has the default's string).

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

/// How long a test waits for something that should happen within a few scrapes.
const WAIT: Duration = Duration::from_secs(40);

/// What Prometheus 3 sends by default (scrape/scrape_test.go `TestAcceptHeader`, "default scrape
/// protocols with no escaping").
const PROMETHEUS_3_DEFAULT_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// What Prometheus 2.42 sends, whatever its config (scrape/scrape.go at v2.42.0,
/// `scrapeAcceptHeader`).
const PROMETHEUS_2_42_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One request the target saw: path, User-Agent, Accept.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// The scripted target: `/metrics` answers in the format asked for; `/redirect` 302s to it;
/// `/loop` redirects to itself forever.
async fn start_target() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &s)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr.to_string(), seen)
}

fn answer(req: &Request<Incoming>, seen: &Seen) -> Response<Full<Bytes>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let path = req.uri().path().to_owned();
    seen.lock().unwrap().push((path.clone(), header("user-agent"), header("accept")));
    let mut resp = Response::new(Full::new(Bytes::new()));
    match path.as_str() {
        "/redirect" => {
            *resp.status_mut() = hyper::StatusCode::FOUND;
            resp.headers_mut().insert("location", "/metrics".parse().unwrap());
        }
        "/loop" => {
            *resp.status_mut() = hyper::StatusCode::FOUND;
            resp.headers_mut().insert("location", "/loop".parse().unwrap());
        }
        _ => {
            let accept = header("accept");
            let (ct, body) = if accept.starts_with("application/openmetrics-text") {
                (
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    "# TYPE negotiated_requests counter\nnegotiated_requests_total 42\n\
                     # TYPE negotiated_gauge gauge\nnegotiated_gauge 7\nnegotiated_format 1\n# EOF\n",
                )
            } else {
                (
                    "text/plain; version=0.0.4; charset=utf-8",
                    "# TYPE negotiated_requests_total counter\nnegotiated_requests_total 42\n\
                     # TYPE negotiated_gauge gauge\nnegotiated_gauge 7\nnegotiated_format 0\n",
                )
            };
            resp.headers_mut().insert("content-type", ct.parse().unwrap());
            *resp.body_mut() = Full::new(Bytes::from(body));
        }
    }
    resp
}

/// A job for both configs.
fn job(name: &str, path: &str, extra: &str, host: &str) -> String {
    format!(
        "  - job_name: {name}\n    metrics_path: {path}\n{extra}    static_configs:\n      - targets: ['{host}']\n"
    )
}

/// Values of `query` by job.
async fn by_job(p: &Prometheus, query: &str) -> HashMap<String, f64> {
    p.query(query).await.into_iter().map(|(l, v)| (l.get("job").cloned().unwrap_or_default(), v)).collect()
}

fn remote_write(url: &str) -> String {
    format!(
        "remote_write:\n  - url: {url}\n    queue_config:\n      batch_send_deadline: 500ms\n      \
         min_backoff: 100ms\n      max_backoff: 1s\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_redirects_agrees_with_prometheus() {
    let (host, _seen) = start_target().await;
    let jobs = [
        job("follow", "/redirect", "", &host),
        job("follow_explicit", "/redirect", "    follow_redirects: true\n", &host),
        job("no_follow", "/redirect", "    follow_redirects: false\n", &host),
        job("too_many", "/loop", "", &host),
    ]
    .concat();
    let config = format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}");
    let Some(a) = Prometheus::start_with_config(&config).await else { return };
    let Some(b) = Prometheus::start_receiver().await else { return };
    let mut trawl = Trawl::start(&format!("{config}{}", remote_write(&b.write_url()))).await;
    let want: HashMap<String, f64> =
        [("follow", 1.0), ("follow_explicit", 1.0), ("no_follow", 0.0), ("too_many", 0.0)]
            .into_iter()
            .map(|(j, v)| (j.to_owned(), v))
            .collect();
    for (name, p) in [("Prometheus A", &a), ("Prometheus B (from trawl)", &b)] {
        let up = eventually(WAIT, async || Some(by_job(p, "up").await).filter(|u| u.len() == 4)).await;
        assert_eq!(up.as_ref(), Some(&want), "{name}: up by job");
    }
    let samples_a = by_job(&a, "negotiated_requests_total").await;
    let samples_b = by_job(&b, "negotiated_requests_total").await;
    assert_eq!(samples_a, samples_b, "the page behind the redirect, as each stored it");
    assert_eq!(samples_a.len(), 2, "only the jobs that follow redirects have samples: {samples_a:?}");
    // Prometheus' reasons, as its targets API and trawl's show them.
    let targets = support::http_get(&format!("{}/api/v1/targets", trawl.url())).await.expect("targets API");
    let v: serde_json::Value = serde_json::from_str(&targets.1).expect("JSON");
    let errors: HashMap<String, String> = v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["scrapePool"].as_str().unwrap_or("").to_owned(),
                t["lastError"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(errors["no_follow"], "server returned HTTP status 302 Found", "{errors:?}");
    assert!(errors["too_many"].ends_with("stopped after 10 redirects"), "{errors:?}");
    assert_eq!(trawl.interrupt(), Some(0), "{}", trawl.proc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_protocols_agree_with_prometheus() {
    let (host, seen) = start_target().await;
    // Prometheus A (2.42) asks for OpenMetrics first on every job: it cannot be configured.
    let a_jobs = [job("default", "/metrics", "", &host), job("text_only", "/text", "", &host)].concat();
    let Some(a) =
        Prometheus::start_with_config(&format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{a_jobs}"))
            .await
    else {
        return;
    };
    let Some(b) = Prometheus::start_receiver().await else { return };
    let trawl_jobs = [
        job("default", "/metrics", "", &host),
        job("text_only", "/text", "    scrape_protocols: [PrometheusText0.0.4]\n", &host),
    ]
    .concat();
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{trawl_jobs}{}",
        remote_write(&b.write_url())
    ))
    .await;
    let accepts = |ua: &str, path: &str| -> Vec<String> {
        let seen = seen.lock().unwrap();
        seen.iter().filter(|(p, u, _)| p == path && u.starts_with(ua)).map(|(_, _, a)| a.clone()).collect()
    };
    let both = eventually(WAIT, async || {
        let all = [
            ("trawl/", "/text"),
            ("trawl/", "/metrics"),
            ("Prometheus/", "/text"),
            ("Prometheus/", "/metrics"),
        ];
        all.iter().all(|(ua, path)| !accepts(ua, path).is_empty()).then_some(())
    })
    .await;
    assert!(both.is_some(), "both scraped the target");
    assert_eq!(
        accepts("trawl/", "/metrics")[0],
        PROMETHEUS_3_DEFAULT_ACCEPT,
        "trawl's default equals Prometheus 3's"
    );
    assert_eq!(
        accepts("trawl/", "/text")[0],
        "text/plain;version=0.0.4;q=0.6,*/*;q=0.5",
        "what Prometheus 3's acceptHeader makes of [PrometheusText0.0.4]"
    );
    assert_eq!(accepts("Prometheus/", "/metrics")[0], PROMETHEUS_2_42_ACCEPT, "2.42's fixed header");

    // The samples agree between A and B, whichever format each asked for: the counter and gauge
    // are the same in both formats; `negotiated_format` says which one was served.
    for query in ["negotiated_requests_total", "negotiated_gauge", "up"] {
        let a_values =
            eventually(WAIT, async || Some(by_job(&a, query).await).filter(|v| v.len() == 2)).await;
        let b_values =
            eventually(WAIT, async || Some(by_job(&b, query).await).filter(|v| v.len() == 2)).await;
        assert!(a_values.is_some(), "{query}: Prometheus A has both jobs");
        assert_eq!(a_values, b_values, "{query}");
    }
    let formats_b = by_job(&b, "negotiated_format").await;
    assert_eq!(formats_b.get("default"), Some(&1.0), "trawl asked for OpenMetrics by default");
    assert_eq!(formats_b.get("text_only"), Some(&0.0), "and for text where scrape_protocols says so");
    assert_eq!(
        by_job(&a, "negotiated_format").await.get("text_only"),
        Some(&1.0),
        "2.42 always asks for OpenMetrics"
    );
    assert_eq!(trawl.interrupt(), Some(0), "{}", trawl.proc.log());
}
