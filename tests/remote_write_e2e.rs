//! The remote-write sender against scripted receivers: the exact headers, sorted labels with
//! `__name__` and external labels, `Retry-After` on 429, and several endpoints each getting every
//! sample.

mod support;

use std::time::Duration;

use support::{Gate, TEXT, TestTarget, Trawl, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn config(target: &TestTarget, urls: &[String]) -> String {
    let mut rw = String::from("remote_write:\n");
    for u in urls {
        rw.push_str(&format!(
            "  - url: {u}\n    headers:\n      X-Scope-OrgID: tenant-1\n    queue_config:\n      \
             batch_send_deadline: 200ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n"
        ));
    }
    format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    cluster: c1\n    zone: external\n{rw}\
         scrape_configs:\n  - job_name: test\n    metrics_path: /m\n    static_configs:\n      - targets: ['{}']\n",
        target.host()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_labels_and_fan_out() {
    let target = TestTarget::start().await;
    target.route("/m", |_| (200, TEXT, b"test{b=\"2\",a=\"1\",zone=\"series\"} 1.0\n".to_vec()));
    let (g1, g2) = (Gate::start(None, |_| 200).await, Gate::start(None, |_| 204).await);
    let mut trawl = Trawl::start(&config(&target, &[g1.url(), g2.url()])).await;
    let got = eventually(WAIT, async || (g1.requests() >= 2 && g2.requests() >= 2).then_some(())).await;
    assert!(got.is_some(), "both endpoints receive data:\n{}", trawl.proc.log());
    assert_eq!(trawl.interrupt(), Some(0));

    for g in [&g1, &g2] {
        let reqs = g.requests.lock().unwrap().clone();
        for r in &reqs {
            let h = |k: &str| r.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            assert_eq!(h("content-encoding"), "snappy");
            assert_eq!(h("content-type"), "application/x-protobuf");
            assert_eq!(h("x-prometheus-remote-write-version"), "0.1.0");
            assert!(h("user-agent").starts_with("trawl/"), "{}", h("user-agent"));
            assert_eq!(h("x-scope-orgid"), "tenant-1", "custom headers are sent");
        }
        let mut found = false;
        for req in g.decoded() {
            for ts in &req.timeseries {
                let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
                let mut sorted = names.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(names, sorted, "labels sorted and unique");
                assert!(names.contains(&"__name__"));
                assert!(ts.labels.iter().all(|l| !l.value.is_empty()), "no empty values");
                let get = |n: &str| ts.labels.iter().find(|l| l.name == n).map(|l| l.value.as_str());
                assert_eq!(get("cluster"), Some("c1"), "external labels attached");
                if get("__name__") == Some("test") {
                    found = true;
                    assert_eq!(get("zone"), Some("series"), "series labels win over external labels");
                    assert_eq!((get("a"), get("b"), get("job")), (Some("1"), Some("2"), Some("test")));
                }
            }
        }
        assert!(found, "the scraped series arrives at every endpoint");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_is_honoured() {
    let target = TestTarget::start().await;
    target.route("/m", |n| (200, TEXT, format!("n {n}\n").into_bytes()));
    // The first request is told to come back in 2 s.
    let gate = Gate::start_with(None, |n| {
        if n == 0 { (429, vec![("retry-after", "2".to_string())]) } else { (200, vec![]) }
    })
    .await;
    let mut trawl = Trawl::start(&config(&target, &[gate.url()])).await;
    let got = eventually(WAIT, async || (gate.requests() >= 2).then_some(())).await;
    assert!(got.is_some(), "{}", trawl.proc.log());
    assert_eq!(trawl.interrupt(), Some(0));
    let reqs = gate.requests.lock().unwrap().clone();
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(waited >= Duration::from_millis(1900), "the retry waited as told, not {waited:?}");
    assert_eq!(reqs[1].body, reqs[0].body, "the same batch is retried");
}
