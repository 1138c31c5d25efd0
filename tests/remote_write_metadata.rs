//! Remote write 1.0 metadata (`metadata_config`) against Prometheus as the oracle: both scrape
//! the same page and send to their own recording receiver; the metadata entries (family, type,
//! help, unit) that arrive are the same set, in requests that carry nothing else. With
//! `send: false` none arrives.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{Gate, Prometheus, TEXT, TestTarget, Trawl, eventually};

const WAIT: Duration = Duration::from_secs(40);

/// Families with every kind of metadata line, a family only HELP names, an untyped series
/// without metadata, and escapes in HELP.
const PAGE: &str = "\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 7
# TYPE temperature_celsius gauge
temperature_celsius 21.5
# HELP latency_seconds Request latency, with a \\\\ backslash.
# TYPE latency_seconds histogram
latency_seconds_bucket{le=\"0.1\"} 1
latency_seconds_bucket{le=\"+Inf\"} 2
latency_seconds_sum 0.3
latency_seconds_count 2
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile=\"0.5\"} 0.01
rpc_duration_seconds_sum 1
rpc_duration_seconds_count 10
# HELP help_only_thing Only HELP, no TYPE.
help_only_thing 3
no_metadata_at_all 1
";

fn config(target: &TestTarget, url: &str, metadata: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {url}\n    queue_config: {{batch_send_deadline: 200ms}}\n    \
         metadata_config: {{{metadata}}}\nscrape_configs:\n  - job_name: test\n    metrics_path: /m\n    \
         static_configs:\n      - targets: ['{}']\n",
        target.host()
    )
}

/// (family, type, help, unit) of every metadata entry the gate received, and whether any
/// request mixed metadata with series.
fn metadata(g: &Gate) -> (BTreeSet<(String, i32, String, String)>, bool) {
    let mut set = BTreeSet::new();
    let mut mixed = false;
    for req in g.decoded() {
        mixed |= !req.metadata.is_empty() && !req.timeseries.is_empty();
        for m in req.metadata {
            set.insert((m.metric_family_name, m.r#type, m.help, m.unit));
        }
    }
    (set, mixed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_matches_prometheus() {
    let target = TestTarget::start().await;
    target.route("/m", |_| (200, TEXT, PAGE.as_bytes().to_vec()));
    let (ours, theirs) = (Gate::start(None, |_| 200).await, Gate::start(None, |_| 200).await);
    let Some(prom) =
        Prometheus::start_with_config(&config(&target, &theirs.url(), "send_interval: 1s")).await
    else {
        return;
    };
    let mut trawl = Trawl::start(&config(&target, &ours.url(), "send_interval: 1s")).await;
    // Both have sent metadata after a few intervals (the first goes out one interval in).
    let done = eventually(WAIT, async || {
        let (a, b) = (metadata(&ours).0, metadata(&theirs).0);
        (a.len() >= 4 && b.len() >= 4 && a.len() == b.len()).then_some(())
    })
    .await;
    let ((a, a_mixed), (b, b_mixed)) = (metadata(&ours), metadata(&theirs));
    assert!(done.is_some(), "trawl sent {a:#?}\nPrometheus sent {b:#?}\n{}", trawl.proc.log());
    assert_eq!(a, b, "the same entries as Prometheus");
    assert!(a.iter().any(|m| m.0 == "latency_seconds" && m.1 == 3), "a histogram family, type 3: {a:?}");
    assert!(!a_mixed && !b_mixed, "metadata travels in requests of its own");
    let page = trawl.metrics().await;
    assert!(
        support::metric_sum(&page, "trawl_remote_write_metadata_sent_total", "") >= a.len() as f64,
        "{page}"
    );
    assert_eq!(trawl.interrupt(), Some(0));
    drop(prom);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_false_sends_none() {
    let target = TestTarget::start().await;
    target.route("/m", |_| (200, TEXT, PAGE.as_bytes().to_vec()));
    let gate = Gate::start(None, |_| 200).await;
    let mut trawl = Trawl::start(&config(&target, &gate.url(), "send: false, send_interval: 1s")).await;
    // Samples arrive, and several metadata intervals pass.
    let samples =
        eventually(WAIT, async || gate.decoded().iter().any(|r| !r.timeseries.is_empty()).then_some(()))
            .await;
    assert!(samples.is_some(), "{}", trawl.proc.log());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(metadata(&gate).0.is_empty(), "no metadata with send: false");
    assert_eq!(trawl.interrupt(), Some(0));
}
