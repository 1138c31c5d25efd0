//! Remote-write sender against an in-process receiver over real loopback sockets: the RW 1.0
//! headers and labels, retries (5xx, 429 with Retry-After, network errors), no retry on other
//! 4xx, per-series order across shards, flushing at shutdown, and back-pressure.
//!
//! Timing assertions are coarse lower bounds only; waits poll with generous timeouts.

#[path = "support/rw_receiver.rs"]
mod rw_receiver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rw_receiver::{Received, Receiver, Reply};
use trawl::batch::{Batch, STALE_NAN_BITS, Sample};
use trawl::config::common::Duration as PromDuration;
use trawl::labels::Labels;
use trawl::remote_write::{Endpoint, RemoteWriteConfig};

/// Longest any wait in these tests polls for; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(20);

/// A config for `url` with short deadlines and backoffs so tests run fast.
fn config(url: &str) -> RemoteWriteConfig {
    let mut c = RemoteWriteConfig::new(url);
    c.queue_config.batch_send_deadline = PromDuration::from_millis(20);
    c.queue_config.min_backoff = PromDuration::from_millis(10);
    c.queue_config.max_backoff = PromDuration::from_millis(100);
    c.remote_timeout = PromDuration::from_secs(5);
    c
}

fn start(cfg: RemoteWriteConfig, external: Labels) -> Endpoint {
    let client = trawl::http_client::build(None).expect("client");
    Endpoint::start(cfg, Arc::new(external), client).expect("endpoint starts")
}

fn series(name: &str, pairs: &[(&str, &str)]) -> Arc<Labels> {
    let mut l = Labels::from_pairs(pairs.iter().copied());
    l.set("__name__", name);
    Arc::new(l)
}

fn sample(s: &Arc<Labels>, t: i64, v: f64) -> Sample {
    Sample { series: s.clone(), timestamp_ms: t, value: v }
}

/// Timestamps per series (keyed by the `i` label), in arrival order.
fn by_series(samples: &[Received]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in samples {
        out.entry(s.label("i").unwrap_or("").to_owned()).or_default().push(s.timestamp);
    }
    out
}

fn metric(ep: &Endpoint, f: impl Fn(&trawl::remote_write::RemoteWriteMetrics) -> u64) -> u64 {
    f(ep.metrics())
}

/// Waits until `cond` holds (the receiver records a request before the sender has read the
/// answer and counted it); false after [`WAIT`].
async fn eventually(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > WAIT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_exact() {
    let rx = Receiver::start().await;
    let mut cfg = config(&rx.url());
    cfg.headers.insert("X-Scope-OrgID".into(), "tenant-1".into());
    cfg.http.bearer_token = Some("s3cret".into());
    let ep = start(cfg, Labels::new());
    ep.send(vec![sample(&series("up", &[]), 1_000, 1.0)]).await.unwrap();
    assert!(rx.wait_for(WAIT, |r| !r.is_empty()).await, "one request arrives");

    let req = &rx.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, rw_receiver::WRITE_PATH);
    let one = |name: &str| {
        let all: Vec<_> = req.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(all.len(), 1, "exactly one {name} header: {all:?}");
        all[0].clone()
    };
    assert_eq!(one("content-encoding"), "snappy");
    assert_eq!(one("content-type"), "application/x-protobuf");
    assert_eq!(one("x-prometheus-remote-write-version"), "0.1.0");
    assert_eq!(one("user-agent"), format!("trawl/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(one("x-scope-orgid"), "tenant-1");
    assert_eq!(one("authorization"), "Bearer s3cret");
    assert_eq!(one("content-length"), req.body.len().to_string());
    assert!(req.decoded.is_ok(), "a snappy raw block holding a WriteRequest: {:?}", req.decoded);
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_sorted_with_external_labels_merged() {
    let rx = Receiver::start().await;
    let external = Labels::from_pairs([("cluster", "c1"), ("job", "from-external"), ("zone", "z")]);
    let ep = start(config(&rx.url()), external);
    let s = series("node_load1", &[("job", "node"), ("instance", "a:9100")]);
    let stale = series("gone", &[("instance", "b")]);
    ep.send(vec![sample(&s, 1_000, 0.5), sample(&stale, 1_000, f64::from_bits(STALE_NAN_BITS))])
        .await
        .unwrap();
    assert!(rx.wait_for_samples(2, WAIT).await);

    let got = rx.accepted_samples();
    let labels: Vec<String> = got[0].labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
    assert_eq!(
        labels,
        ["__name__=node_load1", "cluster=c1", "instance=a:9100", "job=node", "zone=z"],
        "sorted, __name__ kept, external labels added, the series' job wins"
    );
    let labels: Vec<String> = got[1].labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
    assert_eq!(labels, ["__name__=gone", "cluster=c1", "instance=b", "job=from-external", "zone=z"]);
    assert_eq!(got[1].value_bits, STALE_NAN_BITS, "StaleNaN sent bit for bit");
    for s in &got {
        assert!(s.labels.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique names: {:?}", s.labels);
    }
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_relabel_path_merges_external_labels_first() {
    let rx = Receiver::start().await;
    // A rule that changes nothing, so this holds for any relabel engine; it still routes every
    // series through relabeling, where external labels are merged before the rules run.
    let yaml = format!(
        "url: {}\nwrite_relabel_configs:\n  - action: labeldrop\n    regex: no_such_label\n",
        rx.url()
    );
    let mut cfg: RemoteWriteConfig = serde_saphyr::from_str(&yaml).expect("valid config");
    cfg.queue_config = config(&rx.url()).queue_config;
    let ep = start(cfg, Labels::from_pairs([("cluster", "c1"), ("job", "from-external")]));
    let s = series("up", &[("job", "node"), ("i", "0")]);
    for t in 1..=3 {
        ep.send(vec![sample(&s, t * 1_000, 1.0)]).await.unwrap();
    }
    assert!(rx.wait_for_samples(3, WAIT).await);
    let got = rx.accepted_samples();
    let labels: Vec<String> = got[0].labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
    assert_eq!(labels, ["__name__=up", "cluster=c1", "i=0", "job=node"]);
    assert_eq!(by_series(&got)["0"], [1_000, 2_000, 3_000]);
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_the_same_body_and_delivered_once_in_order() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(503), Reply::status(500), Reply::status(503).body("overloaded")]);
    let ep = start(config(&rx.url()), Labels::new());
    let all: Vec<_> = (0..3).map(|i| series("m", &[("i", &i.to_string())])).collect();
    for t in 1..=5 {
        let batch: Batch = all.iter().map(|s| sample(s, t * 1_000, t as f64)).collect();
        ep.send(batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(rx.wait_for_samples(15, WAIT).await, "everything is delivered after the errors");

    let reqs = rx.requests();
    assert!(reqs.len() >= 4);
    for r in &reqs[1..4] {
        assert_eq!(r.body, reqs[0].body, "a retry resends the same bytes (same samples and timestamps)");
    }
    for (series, ts) in by_series(&rx.accepted_samples()) {
        assert_eq!(ts, [1_000, 2_000, 3_000, 4_000, 5_000], "series {series}: each timestamp once, in order");
    }
    assert!(eventually(|| metric(&ep, |m| m.samples_sent_total.load(Relaxed)) == 15).await);
    assert_eq!(metric(&ep, |m| m.requests_retried_total.load(Relaxed)), 3);
    assert_eq!(metric(&ep, |m| m.samples_failed_total.load(Relaxed)), 0);
    let first = reqs[0].samples().len() as u64;
    assert_eq!(metric(&ep, |m| m.samples_retried_total.load(Relaxed)), 3 * first);
    assert!(ep.metrics().last_send_error().is_some_and(|e| e.contains("overloaded")));
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_drop_the_batch_without_retrying() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(400).body("out of order sample")]);
    let ep = start(config(&rx.url()), Labels::new());
    let s = series("m", &[("i", "0")]);
    ep.send(vec![sample(&s, 1_000, 1.0), sample(&s, 2_000, 2.0)]).await.unwrap();
    assert!(rx.wait_for(WAIT, |r| r.len() == 1).await);
    // Well past min_backoff: a retry would have arrived by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ep.send(vec![sample(&s, 3_000, 3.0)]).await.unwrap();
    assert!(rx.wait_for_samples(1, WAIT).await);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "one request for the refused batch, one for the next");
    assert_eq!(reqs[0].status, 400);
    let ts: Vec<i64> = rx.accepted_samples().iter().map(|s| s.timestamp).collect();
    assert_eq!(ts, [3_000], "the refused samples are never resent");
    let m = ep.metrics();
    assert_eq!(m.samples_failed_total.load(Relaxed), 2);
    assert_eq!(m.requests_failed_total.load(Relaxed), 1);
    assert_eq!(m.requests_retried_total.load(Relaxed), 0);
    assert!(eventually(|| m.samples_sent_total.load(Relaxed) == 1).await);
    assert!(
        m.last_send_error().is_some_and(|e| e.contains("out of order sample")),
        "the body is kept verbatim"
    );
    let mut text = String::new();
    m.render(ep.name(), &mut text);
    assert!(
        text.contains(&format!("trawl_remote_write_samples_failed_total{{endpoint=\"{}\"}} 2\n", rx.url()))
    );
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_for_retry_after() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(429).retry_after("1")]);
    let ep = start(config(&rx.url()), Labels::new());
    ep.send(vec![sample(&series("m", &[]), 1_000, 1.0)]).await.unwrap();
    assert!(rx.wait_for_samples(1, WAIT).await, "retried after the 429");

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(900), "Retry-After: 1 honoured, not the 10 ms backoff: {gap:?}");
    assert_eq!(reqs[1].body, reqs[0].body);
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_is_dropped_when_429_retries_are_off() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(429).retry_after("1")]);
    let mut cfg = config(&rx.url());
    cfg.queue_config.retry_on_http_429 = false;
    let ep = start(cfg, Labels::new());
    ep.send(vec![sample(&series("m", &[]), 1_000, 1.0)]).await.unwrap();
    assert!(rx.wait_for(WAIT, |r| r.len() == 1).await);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(rx.requests().len(), 1, "no retry");
    assert_eq!(ep.metrics().samples_failed_total.load(Relaxed), 1);
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_errors_are_retried() {
    // Reserve a port, free it, and only listen there after the sender has failed a few times.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let ep = start(config(&format!("http://{addr}{}", rw_receiver::WRITE_PATH)), Labels::new());
    ep.send(vec![sample(&series("m", &[]), 1_000, 1.0)]).await.unwrap();
    let failing = Instant::now();
    while ep.metrics().requests_retried_total.load(Relaxed) < 2 && failing.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ep.metrics().requests_retried_total.load(Relaxed) >= 2, "connection refused is retried");
    let rx = Receiver::start_on(tokio::net::TcpListener::bind(addr).await.expect("rebind the reserved port"));
    assert!(rx.wait_for_samples(1, WAIT).await);
    assert_eq!(rx.accepted_samples().len(), 1);
    assert!(eventually(|| ep.metrics().samples_sent_total.load(Relaxed) == 1).await);
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_shards_keep_each_series_in_order() {
    let rx = Receiver::start().await;
    // Uneven answer times and a few errors reorder requests across shards, never within one.
    rx.script((0..60).map(|i| match i % 7 {
        3 => Reply::status(503),
        _ => Reply::ok().delay(Duration::from_millis((i * 37 % 25) as u64)),
    }));
    let mut cfg = config(&rx.url());
    cfg.queue_config.min_shards = 4;
    cfg.queue_config.max_shards = 4;
    cfg.queue_config.max_samples_per_send = 7;
    cfg.queue_config.capacity = 100;
    let ep = start(cfg, Labels::new());
    assert_eq!(ep.metrics().shards.load(Relaxed), 4);
    let all: Vec<_> = (0..40).map(|i| series("m", &[("i", &i.to_string())])).collect();
    for t in 1..=25 {
        ep.send(all.iter().map(|s| sample(s, t * 1_000, 0.0)).collect::<Batch>()).await.unwrap();
    }
    assert!(rx.wait_for_samples(40 * 25, WAIT).await);

    let want: Vec<i64> = (1..=25).map(|t| t * 1_000).collect();
    let got = by_series(&rx.accepted_samples());
    assert_eq!(got.len(), 40);
    for (series, ts) in got {
        assert_eq!(ts, want, "series {series}");
    }
    let max = rx.requests().iter().map(|r| r.samples().len()).max().unwrap_or(0);
    assert!(max <= 7, "max_samples_per_send respected: {max}");
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_queued_samples() {
    let rx = Receiver::start().await;
    let mut cfg = config(&rx.url());
    // Nothing would be sent for an hour but for the shutdown.
    cfg.queue_config.batch_send_deadline = PromDuration::from_secs(3_600);
    cfg.queue_config.max_samples_per_send = 1_000;
    let ep = start(cfg, Labels::new());
    let all: Vec<_> = (0..10).map(|i| series("m", &[("i", &i.to_string())])).collect();
    for t in 1..=3 {
        ep.send(all.iter().map(|s| sample(s, t * 1_000, 1.0)).collect::<Batch>()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.requests().is_empty(), "still batching");
    let metrics = ep.metrics().clone();
    ep.shutdown(Duration::from_secs(10)).await;

    assert_eq!(rx.accepted_samples().len(), 30, "everything queued was sent before shutdown returned");
    assert_eq!(metrics.samples_sent_total.load(Relaxed), 30);
    assert_eq!(metrics.queue_length.load(Relaxed), 0);
    assert_eq!(metrics.samples_dropped_shutdown_total.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_counts_what_could_not_be_sent() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let ep = start(config(&rx.url()), Labels::new());
    let s = series("m", &[]);
    ep.send((1..=5).map(|t| sample(&s, t, 1.0)).collect::<Batch>()).await.unwrap();
    assert!(rx.wait_for(WAIT, |r| !r.is_empty()).await);
    let metrics = ep.metrics().clone();
    let stopped = tokio::time::timeout(WAIT, ep.shutdown(Duration::from_millis(300))).await;
    assert!(stopped.is_ok(), "shutdown returns at its deadline even while the receiver fails");
    assert_eq!(metrics.samples_dropped_shutdown_total.load(Relaxed), 5);
    assert_eq!(metrics.samples_sent_total.load(Relaxed), 0);
    assert_eq!(metrics.queue_length.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_send_wait_and_loses_nothing() {
    let rx = Receiver::start().await;
    rx.pause();
    let mut cfg = config(&rx.url());
    cfg.queue_config.capacity = 10;
    cfg.queue_config.max_samples_per_send = 5;
    let ep = Arc::new(start(cfg, Labels::new()));
    let all: Vec<_> = (0..5).map(|i| series("m", &[("i", &i.to_string())])).collect();
    let done = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (ep, all, done) = (ep.clone(), all.clone(), done.clone());
        tokio::spawn(async move {
            for t in 1..=20 {
                ep.send(all.iter().map(|s| sample(s, t * 1_000, 1.0)).collect::<Batch>()).await.unwrap();
                done.fetch_add(1, Relaxed);
            }
        })
    };
    assert!(rx.wait_for(WAIT, |r| !r.is_empty()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(done.load(Relaxed), 2, "two batches fill the 10-sample queue; the third send waits");
    assert!(ep.metrics().queue_length.load(Relaxed) <= 10);
    assert!(!producer.is_finished());

    rx.resume();
    tokio::time::timeout(WAIT, producer).await.expect("the producer finishes once answers flow").unwrap();
    assert!(rx.wait_for_samples(100, WAIT).await);
    for (series, ts) in by_series(&rx.accepted_samples()) {
        assert_eq!(ts, (1..=20).map(|t| t * 1_000).collect::<Vec<_>>(), "series {series}: nothing lost");
    }
    let ep = Arc::try_unwrap(ep).expect("the producer is done");
    assert_eq!(ep.metrics().samples_dropped_shutdown_total.load(Relaxed), 0);
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_queue_goes_in_pieces() {
    let rx = Receiver::start().await;
    let mut cfg = config(&rx.url());
    cfg.queue_config.capacity = 8;
    cfg.queue_config.max_samples_per_send = 3;
    let ep = start(cfg, Labels::new());
    let s = series("m", &[("i", "0")]);
    ep.send((1..=50).map(|t| sample(&s, t, 1.0)).collect::<Batch>()).await.unwrap();
    assert!(rx.wait_for_samples(50, WAIT).await);
    let ts: Vec<i64> = rx.accepted_samples().iter().map(|s| s.timestamp).collect();
    assert_eq!(ts, (1..=50).collect::<Vec<_>>());
    ep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_do_not_start() {
    let client = trawl::http_client::build(None).unwrap();
    let mut cfg = RemoteWriteConfig::new("http://127.0.0.1:9/");
    cfg.headers.insert("content-encoding".into(), "gzip".into());
    assert!(Endpoint::start(cfg, Arc::new(Labels::new()), client.clone()).is_err());
    let cfg = RemoteWriteConfig::new("unix:///tmp/sock");
    assert!(Endpoint::start(cfg, Arc::new(Labels::new()), client).is_err());
}
