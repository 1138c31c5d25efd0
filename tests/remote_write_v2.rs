//! Remote write 2.0, protocol fallback, tenants and credential rotation, over real loopback
//! sockets: trawl (the binary, or an `Endpoint`) against the checking 2.0 receiver in
//! `support/rw2_receiver.rs`, against a 1.0-only receiver that answers 415, and against the real
//! Prometheus 2.42 receiver (which only speaks 1.0).
//!
//! No timing assertions: waits poll with generous timeouts that only a broken build reaches.

#[path = "support/rw2_receiver.rs"]
mod rw2_receiver;
#[path = "support/rw_receiver.rs"]
mod rw_receiver;
mod support;

use std::sync::Arc;
use std::time::Duration;

use rw2_receiver::{Mode, Receiver};
use support::{Prometheus, TestTarget, Trawl, eventually, metric_sum};
use trawl::batch::Sample;
use trawl::config::common::Duration as PromDuration;
use trawl::labels::Labels;
use trawl::remote_write::{Endpoint, RemoteWriteConfig, TenantConfig};

const WAIT: Duration = Duration::from_secs(30);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An OpenMetrics page with HELP, TYPE, UNIT, an exemplar and a created timestamp; `n` is the
/// scrape number.
fn page(n: u64) -> Vec<u8> {
    format!(
        "# TYPE http_requests counter\n# HELP http_requests Requests served, by code.\n\
         http_requests_total{{code=\"200\"}} {n} # {{trace_id=\"abc{n}\"}} 0.25 1700000000.5\n\
         http_requests_created{{code=\"200\"}} 1700000000.25\n\
         # TYPE room_temperature_celsius gauge\n# UNIT room_temperature_celsius celsius\n\
         # HELP room_temperature_celsius Temperature \\\"inside\\\".\n\
         room_temperature_celsius 21.5\n# EOF\n"
    )
    .into_bytes()
}

/// A trawl config scraping `target` every second into one endpoint that sends exemplars
/// (`send_exemplars`, off by default as in Prometheus).
fn config(target: &TestTarget, url: &str, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {url}\n    protobuf_message: \
         io.prometheus.write.v2.Request\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 200ms\n      \
         min_backoff: 50ms\n      max_backoff: 200ms\n{extra}\
         scrape_configs:\n  - job_name: test\n    metrics_path: /m\n    static_configs:\n      - targets: ['{}']\n",
        target.host()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_carries_samples_metadata_and_exemplars() {
    let target = TestTarget::start().await;
    target.route("/m", |n| (200, OPENMETRICS, page(n)));
    let rx = Receiver::start(Mode::Both).await;
    let mut trawl = Trawl::start(&config(&target, &rx.url(), "")).await;
    let got = rx
        .wait_for(WAIT, |rs| {
            rs.iter().flat_map(|r| &r.series).any(|s| s.label("__name__") == Some("room_temperature_celsius"))
                && rs.iter().flat_map(|r| &r.series).any(|s| !s.exemplars.is_empty())
        })
        .await;
    assert!(got, "v2 data arrives:\n{}", trawl.proc.log());
    let metrics = trawl.metrics().await;
    assert_eq!(trawl.interrupt(), Some(0));

    assert_eq!(rx.violations(), Vec::<String>::new(), "every request follows the 2.0 MUSTs");
    let reqs = rx.requests();
    assert!(reqs.iter().all(|r| r.v2), "no fallback against a 2.0 receiver");
    for r in &reqs {
        assert_eq!(r.header_all("content-type"), [rw2_receiver::CONTENT_TYPE_V2]);
        assert_eq!(r.header_all("x-prometheus-remote-write-version"), ["2.0.0"]);
        assert_eq!(r.header_all("content-encoding"), ["snappy"]);
    }
    let series = rx.accepted_series();
    let find = |name: &str| series.iter().find(|s| s.label("__name__") == Some(name)).cloned();
    let temp = find("room_temperature_celsius").expect("gauge sent");
    assert_eq!(
        temp.metadata,
        Some((2, "Temperature \"inside\".".into(), "celsius".into())),
        "gauge, HELP, UNIT"
    );
    assert_eq!(temp.samples[0].0, 21.5);
    assert_eq!(temp.label("job"), Some("test"));
    let req = find("http_requests_total").expect("counter sent");
    assert_eq!(req.metadata, Some((1, "Requests served, by code.".into(), String::new())), "counter, HELP");
    assert_eq!(req.label("code"), Some("200"));
    assert_eq!(req.created, 1_700_000_000_250, "created timestamp from http_requests_created (3.0 to 3.8)");
    assert!(req.starts.iter().all(|&st| st == 1_700_000_000_250), "and as each sample's start (3.9+)");
    let created = find("http_requests_created").expect("the _created series is sent too");
    assert_eq!((created.samples[0].0, created.created), (1_700_000_000.25, 0));
    assert_eq!(temp.created, 0, "a gauge has no start");
    let with_ex = series.iter().find(|s| !s.exemplars.is_empty()).expect("an exemplar");
    let (labels, value, ts) = &with_ex.exemplars[0];
    assert_eq!(with_ex.label("__name__"), Some("http_requests_total"));
    assert!(labels[0].0 == "trace_id" && labels[0].1.starts_with("abc"), "{labels:?}");
    assert_eq!((*value, *ts), (0.25, 1_700_000_000_500), "exemplar value and its own timestamp");
    let up = find("up").expect("up sent");
    assert_eq!(up.metadata, None, "synthetic series carry no metadata");
    assert_eq!(metric_sum(&metrics, "trawl_remote_write_protocol", "version=\"2.0\""), 1.0);
    assert!(metric_sum(&metrics, "trawl_remote_write_written_total", "kind=\"samples\"") > 0.0);
    assert!(metric_sum(&metrics, "trawl_remote_write_written_total", "kind=\"exemplars\"") > 0.0);
    assert_eq!(metric_sum(&metrics, "trawl_remote_write_unwritten_total", ""), 0.0);
}

/// A `_created` line belongs to the point it follows, matched by labels (OpenMetrics keeps a
/// point's lines together): the later point of a counter, histogram or summary gets it, not the
/// family's first point; one that matches no point is ignored and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_lines_reach_the_receiver_with_their_own_points() {
    let target = TestTarget::start().await;
    target.route("/m", |_| {
        let page = "# TYPE jobs counter\njobs_total{q=\"a\"} 1\njobs_total{q=\"b\"} 2\n\
                    jobs_created{q=\"b\"} 1500000000.25\n\
                    # TYPE lat histogram\nlat_bucket{le=\"+Inf\",path=\"/a\"} 1\nlat_count{path=\"/a\"} 1\n\
                    lat_sum{path=\"/a\"} 1\nlat_bucket{le=\"+Inf\",path=\"/b\"} 2\nlat_count{path=\"/b\"} 2\n\
                    lat_sum{path=\"/b\"} 2\nlat_created{path=\"/b\"} 1600000000\n\
                    # TYPE rpc summary\nrpc{quantile=\"0.5\",m=\"x\"} 1\nrpc_count{m=\"x\"} 1\nrpc_sum{m=\"x\"} 1\n\
                    rpc{quantile=\"0.5\",m=\"y\"} 2\nrpc_count{m=\"y\"} 2\nrpc_sum{m=\"y\"} 2\n\
                    rpc_created{m=\"y\"} 1700000000\n\
                    # TYPE orphan counter\norphan_total{k=\"1\"} 1\norphan_created{k=\"2\"} 5\n# EOF\n";
        (200, OPENMETRICS, page.as_bytes().to_vec())
    });
    let rx = Receiver::start(Mode::Both).await;
    let mut trawl = Trawl::start(&config(&target, &rx.url(), "")).await;
    let got = rx
        .wait_for(WAIT, |rs| {
            rs.iter().flat_map(|r| &r.series).any(|s| s.label("__name__") == Some("rpc_sum"))
        })
        .await;
    assert!(got, "the page arrives:\n{}", trawl.proc.log());
    let metrics = trawl.metrics().await;
    assert_eq!(trawl.interrupt(), Some(0));
    assert_eq!(rx.violations(), Vec::<String>::new(), "every request follows the 2.0 MUSTs");
    let series = rx.accepted_series();
    let start = |name: &str, label: (&str, &str)| {
        let s = series
            .iter()
            .find(|s| s.label("__name__") == Some(name) && s.label(label.0) == Some(label.1))
            .unwrap_or_else(|| panic!("{name}{{{}={}}} sent", label.0, label.1));
        assert!(
            s.starts.iter().all(|&st| st == s.created),
            "{name}: Sample.start_timestamp = created_timestamp"
        );
        s.created
    };
    // (series, label, start timestamp, why)
    let cases = [
        ("jobs_total", ("q", "a"), 0, "a point without _created gets none"),
        ("jobs_total", ("q", "b"), 1_500_000_000_250, "the issue's case: the later point's own _created"),
        ("lat_count", ("path", "/a"), 0, "histogram: the first point has none"),
        ("lat_count", ("path", "/b"), 1_600_000_000_000, "histogram: the second point's"),
        ("lat_bucket", ("path", "/b"), 1_600_000_000_000, "its buckets too"),
        ("rpc_sum", ("m", "x"), 0, "summary: the first point has none"),
        ("rpc_sum", ("m", "y"), 1_700_000_000_000, "summary: the second point's"),
        ("rpc", ("m", "y"), 1_700_000_000_000, "its quantiles too"),
        ("orphan_total", ("k", "1"), 0, "a _created with other labels is no one's"),
    ];
    for (name, label, want, why) in cases {
        assert_eq!(start(name, label), want, "{why}");
    }
    assert!(
        metric_sum(&metrics, "trawl_created_lines_unmatched_total", "scrape_job=\"test\"") >= 1.0,
        "the orphan _created line is counted"
    );
}

/// Without `send_exemplars`, no exemplar is sent, in 2.0 as in 1.0 (Prometheus' queue manager
/// drops them in `AppendExemplars` whatever the protocol).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_only_with_send_exemplars() {
    let target = TestTarget::start().await;
    target.route("/m", |n| (200, OPENMETRICS, page(n)));
    let rx = Receiver::start(Mode::Both).await;
    let cfg = config(&target, &rx.url(), "").replace("    send_exemplars: true\n", "");
    assert!(!cfg.contains("send_exemplars"));
    let mut trawl = Trawl::start(&cfg).await;
    let got = rx
        .wait_for(WAIT, |rs| {
            rs.iter()
                .flat_map(|r| &r.series)
                .filter(|s| s.label("__name__") == Some("http_requests_total"))
                .count()
                >= 3
        })
        .await;
    assert!(got, "samples arrive:\n{}", trawl.proc.log());
    assert_eq!(trawl.interrupt(), Some(0));
    assert!(rx.requests().iter().flat_map(|r| &r.series).all(|s| s.exemplars.is_empty()), "no exemplar sent");
}

/// A receiver that takes 2.0 but confirms no exemplars: every request is "fewer items than
/// sent". That is logged once for the endpoint, and counted per request and per item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_exemplars_are_logged_once_and_counted() {
    let target = TestTarget::start().await;
    target.route("/m", |n| (200, OPENMETRICS, page(n)));
    let rx = Receiver::start(Mode::NoExemplars).await;
    let mut trawl = Trawl::start(&config(&target, &rx.url(), "")).await;
    let with_exemplars = |rs: &[rw2_receiver::Recorded]| {
        rs.iter().filter(|r| r.accepted() && r.series.iter().any(|s| !s.exemplars.is_empty())).count()
    };
    assert!(rx.wait_for(WAIT, |rs| with_exemplars(rs) >= 3).await, "{}", trawl.proc.log());
    // The counter follows the requests (it is updated after the answer is read).
    let counted = eventually(WAIT, async || {
        let m = trawl.metrics().await;
        let n = metric_sum(&m, "trawl_remote_write_requests_partially_written_total", "");
        (n >= 3.0).then_some(m)
    })
    .await;
    assert_eq!(trawl.interrupt(), Some(0));
    let metrics = counted.expect("trawl_remote_write_requests_partially_written_total counts each request");
    assert!(metric_sum(&metrics, "trawl_remote_write_unwritten_total", "kind=\"exemplars\"") >= 3.0);
    assert_eq!(metric_sum(&metrics, "trawl_remote_write_unwritten_total", "kind=\"samples\""), 0.0);
    let log = trawl.proc.log();
    assert_eq!(
        log.matches("confirmed fewer items than sent").count(),
        1,
        "one warning for the endpoint, not one per request:\n{log}"
    );
    assert!(log.contains("trawl_remote_write_requests_partially_written_total"), "it says where to look");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_1_0_on_415_and_keeps_the_data() {
    let target = TestTarget::start().await;
    target.route("/m", |n| (200, OPENMETRICS, page(n)));
    let rx = Receiver::start(Mode::Only1).await;
    let mut trawl = Trawl::start(&config(&target, &rx.url(), "")).await;
    // Three accepted 1.0 requests: the first carries the re-encoded refused batch.
    let got = rx.wait_for(WAIT, |rs| rs.iter().filter(|r| !r.v2 && r.accepted()).count() >= 3).await;
    assert!(got, "1.0 requests follow the 415:\n{}", trawl.proc.log());
    let metrics = trawl.metrics().await;
    assert_eq!(trawl.interrupt(), Some(0));
    let log = trawl.proc.log();

    let reqs = rx.requests();
    assert!(reqs[0].v2 && reqs[0].status == 415, "the first request is 2.0 and refused");
    assert!(
        reqs[1..].iter().all(|r| !r.v2),
        "1.0 from then on: {:?}",
        reqs.iter().map(|r| r.v2).collect::<Vec<_>>()
    );
    assert_eq!(rx.violations(), Vec::<String>::new());
    // The refused batch is the first scrape (http_requests_total 0): it must land as 1.0.
    let first = rx
        .accepted_series()
        .into_iter()
        .find(|s| s.label("__name__") == Some("http_requests_total"))
        .expect("counter delivered");
    assert_eq!(first.samples[0].0, 0.0, "the refused first scrape was re-sent, not dropped");
    assert_eq!(log.matches("falling back to 1.0").count(), 1, "one WARN line:\n{log}");
    assert_eq!(metric_sum(&metrics, "trawl_remote_write_protocol", "version=\"1.0\""), 1.0);
    assert_eq!(metric_sum(&metrics, "trawl_remote_write_samples_failed_total", ""), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_against_prometheus_2_42_and_the_data_lands() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let target = TestTarget::start().await;
    target.route("/m", |n| (200, OPENMETRICS, page(n)));
    let mut trawl = Trawl::start(&config(&target, &prom.write_url(), "")).await;
    let got = eventually(WAIT, async || {
        let r = prom.query("room_temperature_celsius{job=\"test\"}").await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(got.is_some(), "data lands in Prometheus 2.42:\n{}\n{}", trawl.proc.log(), prom.proc.log());
    assert_eq!(got.unwrap()[0].1, 21.5);
    // The first scrape went out as 2.0, was answered without *-Written headers, and was re-sent
    // as 1.0: its counter value 0 is in Prometheus.
    let zero = eventually(WAIT, async || {
        let r = prom.query("min_over_time(http_requests_total{job=\"test\"}[10m])").await;
        r.first().map(|x| x.1)
    })
    .await;
    assert_eq!(zero, Some(0.0), "the batch sent while probing 2.0 landed too");
    let metrics = trawl.metrics().await;
    assert_eq!(trawl.interrupt(), Some(0));
    assert_eq!(trawl.proc.log().matches("falling back to 1.0").count(), 1);
    assert_eq!(metric_sum(&metrics, "trawl_remote_write_protocol", "version=\"1.0\""), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_from_a_label_never_mix() {
    let target = TestTarget::start().await;
    target.route("/a", |n| (200, support::TEXT, format!("work_done {n}\n").into_bytes()));
    target.route("/b", |n| (200, support::TEXT, format!("work_done {}\n", n + 100).into_bytes()));
    let rx = Receiver::start(Mode::Both).await;
    // Two "pods" in two namespaces, as Kubernetes discovery would label them.
    let cfg = format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {}\n    protobuf_message: \
         io.prometheus.write.v2.Request\n    tenant:\n      label: namespace\n    queue_config:\n      \
         batch_send_deadline: 1s\n      max_samples_per_send: 10000\n\
         scrape_configs:\n  - job_name: pods\n    relabel_configs:\n      - source_labels: [path]\n        \
         target_label: __metrics_path__\n    static_configs:\n      - targets: ['{host}']\n        labels:\n          \
         namespace: team-a\n          path: /a\n      - targets: ['{host}']\n        labels:\n          \
         namespace: team-b\n          path: /b\n",
        rx.url(),
        host = target.host()
    );
    let mut trawl = Trawl::start(&cfg).await;
    let seen = |rs: &[rw2_receiver::Recorded], t: &str| {
        rs.iter().filter(|r| r.accepted() && r.header_all("x-scope-orgid") == [t]).count()
    };
    let got = rx.wait_for(WAIT, |rs| seen(rs, "team-a") >= 2 && seen(rs, "team-b") >= 2).await;
    assert!(got, "both tenants get requests:\n{}", trawl.proc.log());
    assert_eq!(trawl.interrupt(), Some(0));
    assert_eq!(rx.violations(), Vec::<String>::new());
    for r in rx.requests() {
        let tenant = r.header_all("x-scope-orgid");
        assert_eq!(tenant.len(), 1, "exactly one X-Scope-OrgID per request");
        for s in &r.series {
            assert_eq!(s.label("namespace"), Some(tenant[0].as_str()), "only that tenant's series");
        }
    }
}

fn fast(url: &str) -> RemoteWriteConfig {
    let mut c = RemoteWriteConfig::new(url);
    c.queue_config.batch_send_deadline = PromDuration::from_millis(20);
    c.queue_config.min_backoff = PromDuration::from_millis(10);
    c.queue_config.max_backoff = PromDuration::from_millis(100);
    c
}

fn sample(pairs: &[(&str, &str)], t: i64) -> Sample {
    Sample { series: Arc::new(Labels::from_pairs(pairs.iter().copied())), timestamp_ms: t, value: 1.0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_without_a_tenant_go_to_the_default() {
    let rx = Receiver::start(Mode::Both).await;
    let mut cfg = fast(&rx.url());
    cfg.protobuf_message = Some(trawl::remote_write::PROTOBUF_MESSAGE_V2.into());
    cfg.tenant = Some(TenantConfig { label: "namespace".into(), default: Some("shared".into()) });
    let ep = Endpoint::start(cfg, Arc::default(), trawl::http_client::build(None).expect("client"))
        .expect("starts");
    ep.send(vec![sample(&[("__name__", "a"), ("namespace", "x")], 1), sample(&[("__name__", "b")], 1)])
        .await
        .unwrap();
    assert!(rx.wait_for(WAIT, |rs| rs.iter().filter(|r| r.accepted()).count() >= 2).await);
    ep.shutdown(Duration::from_secs(5)).await;
    let mut got: Vec<(String, String)> = rx
        .requests()
        .iter()
        .flat_map(|r| {
            let t = r.header_all("x-scope-orgid").join(",");
            r.series.iter().map(move |s| (t.clone(), s.label("__name__").unwrap_or("").to_owned()))
        })
        .collect();
    got.sort();
    assert_eq!(got, [("shared".to_owned(), "b".to_owned()), ("x".to_owned(), "a".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_file_is_reread_when_rotated() {
    let rx = rw_receiver::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").expect("write token");
    let mut cfg = fast(&rx.url());
    cfg.http.bearer_token_file = Some(token.clone());
    let ep = Endpoint::start(cfg, Arc::default(), trawl::http_client::build(None).expect("client"))
        .expect("starts");
    ep.send(vec![sample(&[("__name__", "a")], 1)]).await.unwrap();
    assert!(rx.wait_for_samples(1, WAIT).await);
    // Rotated as Kubernetes does for projected tokens: a new file renamed over the old one.
    let next = dir.path().join("token.new");
    std::fs::write(&next, "second\n").expect("write token");
    std::fs::rename(&next, &token).expect("rename");
    ep.send(vec![sample(&[("__name__", "a")], 2)]).await.unwrap();
    assert!(rx.wait_for_samples(2, WAIT).await);
    ep.shutdown(Duration::from_secs(5)).await;
    let auth: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned())
        .collect();
    assert_eq!(auth, ["Bearer first", "Bearer second"], "the rotated token is used for the next request");
}
