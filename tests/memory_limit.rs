//! `--memory.limit`: over the budget, trawl skips scrapes (counted, logged) and keeps running
//! rather than growing until the kernel kills it; under it, nothing changes.

mod support;

use std::time::Duration;

use support::{TEXT, TestTarget, Trawl, eventually, metric_sum};

fn config(target: &TestTarget) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: t\n    static_configs: [{{targets: ['{}']}}]\n",
        target.host()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_budget_scrapes_are_skipped_and_counted() {
    let target = TestTarget::start().await;
    target.route("/metrics", |_| (200, TEXT, b"m 1\n".to_vec()));
    // 1 MiB: far below what any process has resident, so the budget is exceeded from the start.
    let mut trawl = Trawl::start_with_args(&config(&target), &["--memory.limit=1MiB"]).await;
    let skipped = eventually(Duration::from_secs(15), async || {
        let m = trawl.metrics().await;
        (metric_sum(&m, "trawl_scrapes_skipped_total", "reason=\"memory\"") >= 3.0).then_some(m)
    })
    .await;
    let m = skipped.unwrap_or_else(|| panic!("no skipped scrapes:\n{}", trawl.proc.log()));
    assert_eq!(metric_sum(&m, "trawl_memory_limit_bytes", ""), 1048576.0);
    assert_eq!(metric_sum(&m, "trawl_scrapes_total", ""), 0.0, "a scrape ran over the budget");
    assert_eq!(target.hits("/metrics"), 0, "the target was scraped over the budget");
    assert!(trawl.proc.log().contains("Memory above the budget"), "{}", trawl.proc.log());
    assert!(trawl.proc.running(), "trawl keeps running");
    assert_eq!(trawl.interrupt(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_budget_nothing_is_skipped() {
    let target = TestTarget::start().await;
    target.route("/metrics", |_| (200, TEXT, b"m 1\n".to_vec()));
    let mut trawl = Trawl::start_with_args(&config(&target), &["--memory.limit=64GiB"]).await;
    let scraped =
        eventually(Duration::from_secs(15), async || (target.hits("/metrics") >= 3).then_some(())).await;
    assert!(scraped.is_some(), "{}", trawl.proc.log());
    let m = trawl.metrics().await;
    assert_eq!(metric_sum(&m, "trawl_scrapes_skipped_total", ""), 0.0);
    assert_eq!(trawl.interrupt(), Some(0));
}
