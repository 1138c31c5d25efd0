//! The `/targets` and `/service-discovery` pages in a real browser: headless Chromium (Debian's
//! `chromium`) loads them from a running trawl and the DOM it built shows each pool's targets
//! with their state, labels, last scrape, duration and error, and discovered versus kept labels.

mod support;

use std::time::Duration;

use support::{TEXT, TestTarget, Trawl, eventually, http_get, require_binary};

/// Loads `url` in headless Chromium and returns the DOM after the page's load, with the flags this
/// machine needs (no sandbox as root, no background networking on a closed network).
fn chromium_dump_dom(chromium: &std::path::Path, url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_and_service_discovery_pages_render_in_chromium() {
    let Some(chromium) = require_binary("chromium") else { return };
    let good = TestTarget::start().await;
    good.route("/metrics", |_| (200, TEXT, b"m 1\n".to_vec()));
    let bad = TestTarget::start().await;
    bad.route("/metrics", |_| (500, TEXT, b"boom".to_vec()));
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: web<pool>\n    static_configs:\n      \
         - targets: ['{}', '{}', 'dropped.invalid:1']\n        labels: {{team: a&b}}\n    relabel_configs:\n      \
         - {{source_labels: [__address__], regex: 'dropped.*', action: drop}}\n",
        good.host(),
        bad.host()
    );
    let mut trawl = Trawl::start(&config).await;
    // Both targets scraped at least once (health known), so the page has something to show.
    let scraped = eventually(Duration::from_secs(20), async || {
        let (_, body) = http_get(&format!("{}/api/v1/targets", trawl.url())).await?;
        (body.matches("\"health\":\"up\"").count() == 1 && body.matches("\"health\":\"down\"").count() == 1)
            .then_some(())
    })
    .await;
    assert!(scraped.is_some(), "{}", trawl.proc.log());

    let dom = chromium_dump_dom(&chromium, &format!("{}/targets", trawl.url()));
    for want in [
        "<h1>Targets</h1>",
        "web&lt;pool&gt; (1/2 up)", // the pool, escaped, with its counts
        &format!("http://{}/metrics", good.host()), // endpoints
        &format!("http://{}/metrics", bad.host()),
        "class=\"state up\">UP<", // states
        "class=\"state down\">DOWN<",
        "team=\"a&amp;b\"",                // labels, escaped
        "server returned HTTP status 500", // the error of the failing target
        "s ago</td>",                      // last scrape
    ] {
        assert!(dom.contains(want), "{want:?} not in the page Chromium rendered:\n{dom}");
    }
    assert_eq!(dom.matches("<tr class=\"target\"").count(), 2, "two targets, the dropped one not listed");

    let dom = chromium_dump_dom(&chromium, &format!("{}/targets?state=unhealthy", trawl.url()));
    assert_eq!(dom.matches("<tr class=\"target\"").count(), 1, "only the down target:\n{dom}");

    let dom = chromium_dump_dom(&chromium, &format!("{}/service-discovery", trawl.url()));
    assert!(dom.contains("(2 / 3 active targets)"), "{dom}");
    assert!(
        dom.contains("__address__=\"dropped.invalid:1\""),
        "the dropped target's discovered labels:\n{dom}"
    );
    assert_eq!(dom.matches("<td class=\"kept\">Dropped</td>").count(), 1, "{dom}");
    assert_eq!(trawl.interrupt(), Some(0));
}
