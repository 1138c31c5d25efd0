//! HTTP service discovery end to end: trawl polls a scripted SD server whose target list changes
//! and which fails in between (HTTP 500, a wrong content type, broken JSON); the last good list
//! stays in place while it fails, as in Prometheus, and the new one is taken when it answers
//! again. The requests carry Prometheus' headers and the configured auth.

#[path = "support/peers.rs"]
mod peers;
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{TEXT, TestTarget, Trawl, eventually, http_get};

const WAIT: Duration = Duration::from_secs(40);

/// The `__address__` of every active target of `job` with its `__meta_url` label, as trawl's
/// targets API shows them.
async fn discovered(trawl: &Trawl, job: &str) -> Option<BTreeSet<(String, String)>> {
    let (_, body) = http_get(&format!("{}/api/v1/targets", trawl.url())).await?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let set = v["data"]["activeTargets"]
        .as_array()?
        .iter()
        .filter(|t| t["labels"]["job"] == job)
        .map(|t| {
            let d = &t["discoveredLabels"];
            (
                d["__address__"].as_str().unwrap_or("").to_owned(),
                d["__meta_url"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    Some(set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_good_list_survives_failures_and_changes_are_taken() {
    let (a, b) = (TestTarget::start().await, TestTarget::start().await);
    for t in [&a, &b] {
        t.route("/metrics", |_| (200, TEXT, b"m 1\n".to_vec()));
    }
    // The script: first a list with `a`, then failures until the test releases the second
    // list, with `a` and `b`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sd_url = format!("http://{}/targets", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let headers: Arc<Mutex<Vec<hyper::HeaderMap>>> = Arc::default();
    let (h, r, hd, ah, bh) = (hits.clone(), release.clone(), headers.clone(), a.host(), b.host());
    peers::serve(listener, move |req: hyper::Request<hyper::body::Incoming>| {
        let (h, r, hd, ah, bh) = (h.clone(), r.clone(), hd.clone(), ah.clone(), bh.clone());
        async move {
            hd.lock().unwrap().push(req.headers().clone());
            let n = h.fetch_add(1, Ordering::SeqCst);
            let one = format!(r#"[{{"targets":["{ah}"],"labels":{{"team":"x"}}}}]"#);
            let two = format!(r#"[{{"targets":["{ah}"]}},{{"targets":["{bh}"],"labels":{{"team":"y"}}}}]"#);
            match n {
                0 => (200, "application/json", one.into_bytes()),
                _ if r.load(Ordering::SeqCst) => (200, "application/json; charset=utf-8", two.into_bytes()),
                _ => match n % 3 {
                    1 => (500, "text/plain", b"down".to_vec()),
                    2 => (200, "text/html", one.into_bytes()),
                    _ => (200, "application/json", b"[{\"targets\":".to_vec()),
                },
            }
        }
    });
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sd\n    http_sd_configs:\n      \
         - url: {sd_url}\n        refresh_interval: 500ms\n        basic_auth: {{username: sd, password: pw}}\n"
    );
    let trawl = Trawl::start(&config).await;
    let want_one: BTreeSet<_> = [(a.host(), sd_url.clone())].into();
    let first = eventually(WAIT, async || discovered(&trawl, "sd").await.filter(|d| *d == want_one)).await;
    assert!(first.is_some(), "the first list:\n{}", trawl.proc.log());

    // Three failures of each kind have been answered; the list is still the first one.
    let failed = eventually(WAIT, async || (hits.load(Ordering::SeqCst) >= 7).then_some(())).await;
    assert!(failed.is_some(), "SD polled again");
    assert_eq!(discovered(&trawl, "sd").await, Some(want_one), "the last good list is kept while SD fails");
    let log = trawl.proc.log();
    for why in ["500", "unsupported content type", "EOF"] {
        assert!(log.contains(why), "the failure ({why}) is logged:\n{log}");
    }

    release.store(true, Ordering::SeqCst);
    let want_two: BTreeSet<_> = [(a.host(), sd_url.clone()), (b.host(), sd_url.clone())].into();
    let second = eventually(WAIT, async || discovered(&trawl, "sd").await.filter(|d| *d == want_two)).await;
    assert!(second.is_some(), "the new list:\n{}", trawl.proc.log());
    let up = eventually(WAIT, async || (b.hits("/metrics") > 0).then_some(())).await;
    assert!(up.is_some(), "the new target is scraped");

    let h = headers.lock().unwrap()[0].clone();
    assert_eq!(h["accept"], "application/json");
    assert_eq!(h["x-prometheus-refresh-interval-seconds"], "0.5");
    assert_eq!(h["authorization"], "Basic c2Q6cHc=", "basic_auth sd:pw");
    assert!(h["user-agent"].to_str().unwrap().starts_with("trawl/"));
}
