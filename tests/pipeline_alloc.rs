//! Allocation budget of the steady-state hot path, measured with a counting allocator: once a
//! target's series are known, scraping a page (parse → metric relabeling cache → interned label
//! sets → batch) and encoding it as a remote-write request (protobuf + snappy into reused
//! buffers) allocates a constant number of times per scrape, independent of the number of
//! series on the page. Prints allocations per sample, and the heap a series holds once known
//! (which must not grow when series churn).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::sync::Arc;
use trawl::config::Duration;
use trawl::encode::Encoder;
use trawl::labels::Labels;
use trawl::parse::Format;
use trawl::relabel::{RelabelConfig, ScrapeTarget};
use trawl::ring::Batch;
use trawl::scrape::{JobSettings, TargetLoop};

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

fn target_loop() -> TargetLoop {
    // A realistic metric relabel config: drop a family, rename a label.
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str(
        "- {source_labels: [__name__], regex: 'go_gc_.*', action: drop}\n\
         - {source_labels: [mode], target_label: cpu_mode}\n",
    )
    .expect("rules");
    let settings = JobSettings {
        job: "node".into(),
        honor_labels: false,
        honor_timestamps: true,
        track_timestamps_staleness: false,
        sample_limit: 0,
        label_limit: 0,
        label_name_length_limit: 0,
        label_value_length_limit: 0,
        body_size_limit: 0,
        gzip: true,
        metric_relabel: rules,
        http: Default::default(),
    };
    let target = ScrapeTarget {
        labels: Labels::from_pairs([
            ("instance", "10.1.2.3:9100"),
            ("job", "node"),
            ("pod", "node-exporter-x"),
        ]),
        url: "http://10.1.2.3:9100/metrics".into(),
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(10),
        params: Vec::new(),
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let client = trawl::http_client::build(None).expect("client");
    TargetLoop::new(Arc::new(settings), target, client, tx, Arc::default(), Arc::default())
}

/// Allocations per scrape (parse + relabel + intern + encode + snappy) after warm-up.
fn allocations_per_scrape(series: usize) -> (f64, usize) {
    const WARMUP: u64 = 3;
    const MEASURED: u64 = 10;
    let pages: Vec<Vec<u8>> = (0..WARMUP + MEASURED).map(|i| page(series, i)).collect();
    let mut lp = target_loop();
    let mut encoder = Encoder::new(Arc::new(Labels::from_pairs([("cluster", "c1")])));
    let mut batch = Batch::with_capacity(series + 8);
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
        let body = encoder.encode(&batch.samples).expect("encodes");
        body_bytes = body.len();
    };
    let cold = allocations();
    run(0, &mut batch);
    let cold = allocations() - cold;
    for i in 1..WARMUP {
        run(i, &mut batch);
    }
    // The counter works: the first scrape learns every series (labels, cache entries).
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

/// Live heap after each step of [`heap_per_series_is_bounded_under_churn`]: after three
/// scrapes of the first page, then after each of `churns` generations of all-new series.
fn heap_after_churns(series: usize, churns: usize, encode: bool) -> Vec<isize> {
    let before = live_bytes();
    let mut lp = target_loop();
    let mut encoder = Encoder::new(Arc::new(Labels::from_pairs([("cluster", "c1")])));
    let mut batch = Batch::with_capacity(series + 8);
    let mut out = Vec::new();
    let mut i = 0;
    for generation in 0..=churns {
        // Three scrapes: the previous generation's series go stale and, unused for two
        // scrapes, leave the cache.
        for _ in 0..3 {
            batch.clear();
            let p = page_of(series, i, &format!("gen{generation}_metric"));
            lp.process_page(&p, Format::PrometheusText, 1_700_000_000_000 + i as i64 * 15_000, &mut batch)
                .expect("page parses");
            if encode {
                encoder.encode(&batch.samples).expect("encodes");
            }
            i += 1;
        }
        out.push(live_bytes() - before);
    }
    drop((lp, encoder, batch));
    out
}

/// Heap held per known series by a target loop (series cache, interned label sets and
/// strings, staleness maps) and by an encoder (cached encoded label fields, request buffers).
/// Then the page's series are all replaced, again and again: the old ones' memory is reused,
/// so the heap stays at the high-water mark of one churn instead of growing with each.
#[test]
fn heap_per_series_is_bounded_under_churn() {
    const SERIES: usize = 16_384;
    const CHURNS: usize = 4;
    let per_series = |b: isize| b / SERIES as isize;
    let scrape_only = heap_after_churns(SERIES, CHURNS, false);
    let with_encoder = heap_after_churns(SERIES, CHURNS, true);
    eprintln!(
        "heap per series ({SERIES} series, 6 labels each), after each full churn: target loop {:?} B; \
         target loop + encoder + batch {:?} B",
        scrape_only.iter().map(|&b| per_series(b)).collect::<Vec<_>>(),
        with_encoder.iter().map(|&b| per_series(b)).collect::<Vec<_>>(),
    );
    for heap in [&scrape_only, &with_encoder] {
        assert!(heap[0] > (SERIES * 64) as isize, "the counter counts: {} B for {SERIES} series", heap[0]);
        // The first churn may raise the tables' capacity (old and new series overlap for two
        // scrapes); later churns must reuse it.
        let high_water = heap[1];
        for (n, &b) in heap.iter().enumerate().skip(2) {
            assert!(
                b <= high_water + high_water / 20,
                "memory grows with churn: {high_water} B after the first churn, {b} B after churn {n}"
            );
        }
    }
}
