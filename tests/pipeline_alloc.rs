//! Allocation budget and heap per series of the hot path, measured with a counting allocator:
//!
//! - once a target's series are known, scraping a page (parse → series table → records written
//!   from the page → batch) and encoding it as a remote-write request (protobuf + snappy into
//!   reused buffers) allocates a constant number of times per scrape, independent of the number
//!   of series on the page;
//! - the hop after the scrape (an endpoint's queue: admission, shard routing, batching, request
//!   assembly, the body handed to HTTP, and the HTTP request itself) allocates a constant number
//!   of times per request, not per sample;
//! - the heap a target holds per known series, which must stay at most 48 bytes, steady and after
//!   its series churn (the dense-node goal, perf/README.md).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::sync::Arc;
use trawl::batch::Batch;
use trawl::encode::Encoder;
use trawl::labels::Labels;
use trawl::parse::Format;
use trawl::relabel::RelabelConfig;
use trawl::scrape::{JobSettings, Page};

use counting_alloc::{allocations, live_bytes};

/// A node-exporter-like page with `series` series; `scrape` changes every value, as counters do.
fn page(series: usize, scrape: u64) -> Vec<u8> {
    page_of(series, scrape, "node_metric")
}

/// [`page`] with the metric names starting with `prefix` (a new prefix: all new series).
fn page_of(series: usize, scrape: u64, prefix: &str) -> Vec<u8> {
    let mut s = String::new();
    for f in 0..series.div_ceil(16) {
        s += &format!("# HELP {prefix}_{f} Help text.\n# TYPE {prefix}_{f} counter\n");
        for cpu in 0..4 {
            for mode in ["idle", "system", "user", "iowait"] {
                s += &format!(
                    "{prefix}_{f}{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}\n",
                    scrape * 7 + (f * 16 + cpu) as u64
                );
            }
        }
    }
    s.into_bytes()
}

fn target_page() -> Page {
    // A realistic metric relabel config: drop a family, copy a label (so every series is
    // rewritten by relabeling, not only kept as exposed).
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str(
        "- {source_labels: [__name__], regex: 'go_gc_.*', action: drop}\n\
         - {source_labels: [mode], target_label: cpu_mode}\n",
    )
    .expect("rules");
    let settings = JobSettings { job: "node".into(), metric_relabel: rules, ..JobSettings::default() };
    let target =
        Labels::from_pairs([("instance", "10.1.2.3:9100"), ("job", "node"), ("pod", "node-exporter-x")]);
    Page::new(Arc::new(settings), target, Arc::new(Labels::from_pairs([("cluster", "c1")])))
}

/// Allocations per scrape (parse + series table + records + encode + snappy) after warm-up.
fn allocations_per_scrape(series: usize) -> (f64, usize) {
    const WARMUP: u64 = 3;
    const MEASURED: u64 = 10;
    let pages: Vec<Vec<u8>> = (0..WARMUP + MEASURED).map(|i| page(series, i)).collect();
    let mut lp = target_page();
    let mut encoder = Encoder::new();
    let mut batch = Batch::new();
    let mut body_bytes = 0;
    let mut run = |i: u64, batch: &mut Batch| {
        batch.clear();
        lp.process_page(
            &pages[i as usize],
            Format::PrometheusText,
            1_700_000_000_000 + i as i64 * 15_000,
            batch,
        )
        .expect("page parses");
        let body = encoder.encode(batch).expect("encodes");
        body_bytes = body.len();
    };
    let cold = allocations();
    run(0, &mut batch);
    let cold = allocations() - cold;
    for i in 1..WARMUP {
        run(i, &mut batch);
    }
    // The counter works: the first scrape judges every series (labels built, rules run).
    assert!(cold >= series, "{cold} allocations on the first scrape of {series} series");
    let before = allocations();
    for i in WARMUP..WARMUP + MEASURED {
        run(i, &mut batch);
    }
    let per_scrape = (allocations() - before) as f64 / MEASURED as f64;
    assert_eq!(batch.len(), series, "every series was kept");
    (per_scrape, body_bytes)
}

#[test]
fn steady_state_allocations_do_not_grow_with_the_page() {
    let small = 1_024;
    let large = 16_384;
    let (a_small, _) = allocations_per_scrape(small);
    let (a_large, body) = allocations_per_scrape(large);
    eprintln!(
        "allocations per scrape: {a_small:.1} at {small} series ({:.5}/sample), {a_large:.1} at {large} series \
         ({:.5}/sample); request body {body} B for {large} samples",
        a_small / small as f64,
        a_large / large as f64
    );
    // O(1) per scrape: 16× the series may not cost more allocations (a few reallocations of
    // buffers that grow on the larger page's first scrapes are already behind the warm-up).
    assert!(
        a_large <= a_small + 4.0,
        "allocations grow with the page: {a_small} per scrape at {small} series, {a_large} at {large}"
    );
    assert!(a_large / (large as f64) < 0.01, "{a_large} allocations for {large} samples");
}

/// Heap held by a target's processor after each step of [`heap_per_series_is_bounded_under_churn`]:
/// after three scrapes of the first page, then after each of `churns` generations of all-new
/// series. The batch of each scrape is dropped before measuring: it is in flight, not kept.
fn heap_after_churns(series: usize, churns: usize) -> Vec<isize> {
    let before = live_bytes();
    let mut lp = target_page();
    let mut out = Vec::new();
    let mut i = 0;
    for generation in 0..=churns {
        // Three scrapes: the previous generation's series go stale and, unused for two
        // scrapes, leave the table.
        for _ in 0..3 {
            let mut batch = Batch::new();
            let p = page_of(series, i, &format!("gen{generation}_metric"));
            lp.process_page(&p, Format::PrometheusText, 1_700_000_000_000 + i as i64 * 15_000, &mut batch)
                .expect("page parses");
            i += 1;
        }
        out.push(live_bytes() - before);
    }
    drop(lp);
    out
}

/// Heap held per known series by a target's page processor (series table, relabeling diffs,
/// the compressed last series set, metadata): at most 48 bytes, steady and after churn. Then
/// the page's series are all replaced, again and again: the heap stays flat instead of growing
/// with each generation.
#[test]
fn heap_per_series_is_bounded_under_churn() {
    const SERIES: usize = 16_384;
    const CHURNS: usize = 4;
    const MAX_BYTES_PER_SERIES: isize = 48;
    let heap = heap_after_churns(SERIES, CHURNS);
    let per_series: Vec<isize> = heap.iter().map(|&b| b / SERIES as isize).collect();
    eprintln!(
        "heap per series ({SERIES} series, 6 labels each), steady then after each full churn: {per_series:?} B"
    );
    assert!(heap[0] > (SERIES * 16) as isize, "the counter counts: {} B for {SERIES} series", heap[0]);
    for (n, &b) in per_series.iter().enumerate() {
        assert!(
            b <= MAX_BYTES_PER_SERIES,
            "{b} B per series after churn {n}, more than {MAX_BYTES_PER_SERIES}"
        );
    }
    // The first churn may raise capacities (old and new series overlap for two scrapes); later
    // churns must reuse them.
    let high_water = heap[1];
    for (n, &b) in heap.iter().enumerate().skip(2) {
        assert!(
            b <= high_water + high_water / 20,
            "memory grows with churn: {high_water} B after the first churn, {b} B after churn {n}"
        );
    }
}

/// Allocations per request through an endpoint (admission, shard routing, batching, request
/// assembly, the body copy handed to HTTP, and the HTTP exchange with an in-process receiver
/// that reads and drops the body), with `per_request` samples per request. One thread runs it
/// all, so the counter sees all of it.
fn allocations_per_request(per_request: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let service =
                    hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt as _;
                        let mut body = req.into_body();
                        while let Some(Ok(_)) = body.frame().await {}
                        Ok::<_, hyper::Error>(hyper::Response::new(
                            http_body_util::Empty::<bytes::Bytes>::new(),
                        ))
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        let mut cfg = trawl::remote_write::RemoteWriteConfig::new(format!("http://{addr}/api/v1/write"));
        cfg.queue_config.max_samples_per_send = per_request;
        cfg.queue_config.capacity = per_request * 4;
        cfg.queue_config.batch_send_deadline = trawl::config::Duration::from_millis(5);
        let external = Arc::new(Labels::from_pairs([("cluster", "c1")]));
        let client = trawl::http_client::build(None).expect("client");
        let ep = trawl::remote_write::Endpoint::start(cfg, external.clone(), client).expect("endpoint");
        let mut lp = target_page();
        let scrape = |lp: &mut Page, i: u64| {
            let mut batch = Batch::new();
            lp.process_page(
                &page(per_request, i),
                Format::PrometheusText,
                1_700_000_000_000 + i as i64,
                &mut batch,
            )
            .expect("parses");
            batch
        };
        // Warm-up: the connection, the shard's buffers.
        for i in 0..5 {
            ep.send(scrape(&mut lp, i)).await.expect("sent");
        }
        let sent = |ep: &trawl::remote_write::Endpoint| {
            ep.metrics().samples_sent_total.load(std::sync::atomic::Ordering::Relaxed)
        };
        while sent(&ep) < 5 * per_request as u64 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        const REQUESTS: u64 = 20;
        let batches: Vec<Batch> = (5..5 + REQUESTS).map(|i| scrape(&mut lp, i)).collect();
        let before = allocations();
        for b in batches {
            ep.send(b).await.expect("sent");
        }
        while sent(&ep) < (5 + REQUESTS) * per_request as u64 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let per = (allocations() - before) as f64 / REQUESTS as f64;
        ep.shutdown(std::time::Duration::from_secs(5)).await;
        per
    })
}

#[test]
fn the_hop_to_the_receiver_allocates_per_request_not_per_sample() {
    let small = allocations_per_request(512);
    let large = allocations_per_request(4_096);
    eprintln!(
        "allocations per request through an endpoint: {small:.1} at 512 samples ({:.4}/sample), \
         {large:.1} at 4096 samples ({:.4}/sample)",
        small / 512.0,
        large / 4096.0
    );
    // Polling for the count runs timers between requests; allow a few for that, not 8× more.
    assert!(large <= small * 1.5 + 10.0, "allocations grow with the request: {small} vs {large}");
    assert!(large / 4096.0 < 0.05, "{large} allocations per request of 4096 samples");
}
