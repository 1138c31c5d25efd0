//! Per-sample cost of metric relabeling with a realistic 5-rule `metric_relabel_configs`:
//! the rules alone on a label set (what an uncached series costs), and a whole page through the
//! scrape path cold (every series new: labels built, rules run) and warm (steady state: one
//! compare per line in the series table, the record written from the page, no regex).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trawl::batch::Batch;
use trawl::labels::Labels;
use trawl::relabel::{self, RelabelConfig};
use trawl::scrape::{JobSettings, Page};

const RULES: &str = r#"
- source_labels: [__name__]
  regex: go_gc_.*|process_.*_limit
  action: drop
- regex: pod_template_hash|controller_revision_hash
  action: labeldrop
- source_labels: [__name__, code]
  regex: (http_requests)_total;(\d)\d\d
  target_label: status_class
  replacement: ${2}xx
- regex: label_app_kubernetes_io_(.+)
  replacement: app_$1
  action: labelmap
- source_labels: [instance]
  modulus: 8
  target_label: shard
  action: hashmod
"#;

/// A page of `n` series shaped like an application's: a few metric names, 4–6 labels each.
fn page(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let name = [
            "http_requests_total",
            "http_request_duration_seconds_bucket",
            "rpc_calls_total",
            "go_gc_duration_seconds",
        ][i % 4];
        s.push_str(&format!(
            "{name}{{method=\"GET\",code=\"{}\",handler=\"/api/v1/items/{}\",pod_template_hash=\"7f9c\",label_app_kubernetes_io_name=\"shop\",le=\"{}\"}} {}\n",
            [200, 404, 500][i % 3],
            i / 4,
            i % 10,
            i
        ));
    }
    s
}

fn settings(rules: Vec<RelabelConfig>) -> JobSettings {
    JobSettings { job: "app".into(), metric_relabel: rules, ..JobSettings::default() }
}

fn target_page(rules: Vec<RelabelConfig>) -> Page {
    let target = Labels::from_pairs([
        ("job", "app"),
        ("instance", "10.1.2.3:8080"),
        ("namespace", "shop"),
        ("pod", "shop-7f9c-abcde"),
    ]);
    Page::new(Arc::new(settings(rules)), target, Arc::new(Labels::from_pairs([("cluster", "c1")])))
}

fn bench(c: &mut Criterion) {
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str(RULES).expect("rules");
    let series = Labels::from_pairs([
        ("__name__", "http_requests_total"),
        ("code", "404"),
        ("handler", "/api/v1/items/7"),
        ("instance", "10.1.2.3:8080"),
        ("job", "app"),
        ("label_app_kubernetes_io_name", "shop"),
        ("method", "GET"),
        ("pod_template_hash", "7f9c"),
    ]);
    let mut g = c.benchmark_group("metric_relabel");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rules_only_per_series", |b| {
        b.iter(|| {
            let mut l = series.clone();
            black_box(relabel::process(&rules, &mut l));
            l
        })
    });
    g.finish();

    const N: usize = 2_000;
    let body = page(N);
    let mut g = c.benchmark_group("scrape_page_5_rules");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("cold_every_series_new", |b| {
        b.iter_batched(
            || target_page(rules.clone()),
            |mut lp| {
                let mut batch = Batch::new();
                let _ = lp.process_page(body.as_bytes(), trawl::parse::Format::PrometheusText, 1, &mut batch);
                batch.len()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let mut lp = target_page(rules.clone());
    let mut batch = Batch::new();
    let mut ts = 0;
    g.bench_function("warm_steady_state", |b| {
        b.iter(|| {
            ts += 1;
            batch.clear();
            let _ = lp.process_page(body.as_bytes(), trawl::parse::Format::PrometheusText, ts, &mut batch);
            batch.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
