//! The send side of the hot path, per stage, on a real node-exporter page
//! (`perf/fixtures/node_exporter.prom`): protobuf encoding + snappy of a scrape's batch (1.0 and
//! 2.0), snappy alone, and the whole in-process pipeline (parse → series table → records written
//! from the page → batch → protobuf → snappy) in steady state. Throughput in samples/s; bytes/s
//! for snappy.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trawl::batch::Batch;
use trawl::encode::Encoder;
use trawl::labels::Labels;
use trawl::parse::Format;
use trawl::scrape::{JobSettings, Page};

fn target_page() -> Page {
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
        metric_relabel: Vec::new(),
        http: Default::default(),
    };
    let target = Labels::from_pairs([("instance", "10.1.2.3:9100"), ("job", "node")]);
    Page::new(Arc::new(settings), target, Arc::new(Labels::from_pairs([("cluster", "c1")])))
}

fn bench(c: &mut Criterion) {
    let page = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/perf/fixtures/node_exporter.prom"))
        .expect("fixture page");
    let mut lp = target_page();
    let mut batch = Batch::new();
    lp.process_page(&page, Format::PrometheusText, 1, &mut batch).expect("fixture parses");
    let samples = batch.len() as u64;
    let mut encoder = Encoder::new();
    encoder.encode(&batch).expect("encodes");
    let mut v2 = trawl::encode::v2::Encoder::new();

    let mut g = c.benchmark_group("encode_node_exporter_page");
    g.throughput(Throughput::Elements(samples));
    g.bench_function("protobuf_and_snappy_v1", |b| {
        b.iter(|| black_box(encoder.encode(&batch).expect("encodes").len()))
    });
    g.bench_function("protobuf_and_snappy_v2", |b| {
        b.iter(|| black_box(v2.encode(&batch).expect("encodes").len()))
    });
    g.finish();

    let proto = encoder.proto().to_vec();
    let mut snappy = snap::raw::Encoder::new();
    let mut out = vec![0; snap::raw::max_compress_len(proto.len())];
    let mut g = c.benchmark_group("snappy_write_request");
    g.throughput(Throughput::Bytes(proto.len() as u64));
    g.bench_function("compress", |b| {
        b.iter(|| black_box(snappy.compress(&proto, &mut out).expect("compresses")))
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline_in_process_node_exporter_page");
    g.throughput(Throughput::Elements(samples));
    let mut ts = 1;
    g.bench_function("steady_state_scrape_to_request_body", |b| {
        b.iter(|| {
            ts += 1;
            batch.clear();
            lp.process_page(&page, Format::PrometheusText, ts, &mut batch).expect("parses");
            black_box(encoder.encode(&batch).expect("encodes").len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
