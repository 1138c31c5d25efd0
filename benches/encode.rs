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

fn settings() -> JobSettings {
    JobSettings { job: "node".into(), ..JobSettings::default() }
}

fn target_page() -> Page {
    let target = Labels::from_pairs([("instance", "10.1.2.3:9100"), ("job", "node")]);
    Page::new(Arc::new(settings()), target, Arc::new(Labels::from_pairs([("cluster", "c1")])))
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

/// The three page shapes of `perf/compare.py`'s dense node, `n` series each (the same
/// generators, ported): node-exporter-like, histogram-heavy application, kube-state-metrics.
fn dense_node_pages(n: usize) -> Vec<(&'static str, Vec<u8>)> {
    let modes = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"];
    let mut node = String::new();
    let fams: [(&str, &str); 5] = [
        ("node_cpu_seconds_total", "counter"),
        ("node_network_receive_bytes_total", "counter"),
        ("node_filesystem_avail_bytes", "gauge"),
        ("node_disk_io_time_seconds_total", "counter"),
        ("node_memory_numa_Active_bytes", "gauge"),
    ];
    let per = (n / fams.len()).max(1);
    let mut i = 0;
    for (f, (name, kind)) in fams.iter().enumerate() {
        node += &format!("# HELP {name} Synthetic.\n# TYPE {name} {kind}\n");
        let count = if f < fams.len() - 1 { per } else { n - per * (fams.len() - 1) };
        for _ in 0..count {
            let labels = match f {
                0 => format!("cpu=\"{}\",mode=\"{}\"", i / 8, modes[i % 8]),
                1 => format!("device=\"eth{i}\""),
                2 => format!("device=\"/dev/sd{i}\",fstype=\"ext4\",mountpoint=\"/mnt/{i}\""),
                3 => format!("device=\"nvme{i}n1\""),
                _ => format!("node=\"{i}\""),
            };
            node += &format!("{name}{{{labels}}} {}.{}\n", (i * 7919) % 1000003, i % 10);
            i += 1;
        }
    }
    let les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    let mut hist = String::from(
        "# HELP http_request_duration_seconds Synthetic.\n# TYPE http_request_duration_seconds histogram\n",
    );
    let (mut i, mut h) = (0, 0);
    while i + les.len() + 2 <= n {
        let lbl = format!(
            "handler=\"/api/v1/items/{h}\",method=\"{}\",code=\"{}\"",
            ["GET", "POST", "PUT"][h % 3],
            [200, 404, 500][h % 3]
        );
        for (j, le) in les.iter().enumerate() {
            hist += &format!("http_request_duration_seconds_bucket{{{lbl},le=\"{le}\"}} {}\n", h * 10 + j);
        }
        hist += &format!("http_request_duration_seconds_sum{{{lbl}}} {}\n", h as f64 * 1.5);
        hist += &format!("http_request_duration_seconds_count{{{lbl}}} {}\n", h * 10 + 11);
        i += les.len() + 2;
        h += 1;
    }
    hist += "# TYPE app_info gauge\n";
    for k in 0..n - i {
        hist += &format!("app_info{{version=\"1.{k}\"}} 1\n");
    }
    let mut ksm = String::from("# HELP kube_pod_labels Synthetic.\n# TYPE kube_pod_labels gauge\n");
    for i in 0..n {
        ksm += &format!(
            "kube_pod_labels{{namespace=\"team-{}\",pod=\"service-{i}-7f9c8d6b5-x{i:05}\",uid=\"{i:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b\",\
             label_app_kubernetes_io_name=\"service-{}\",label_app_kubernetes_io_instance=\"release-{}\",\
             label_pod_template_hash=\"7f9c8d6b5\",label_team=\"team-{}\"}} 1\n",
            i % 17,
            i % 50,
            i % 9,
            i % 17
        );
    }
    vec![
        ("node", node.into_bytes()),
        ("histogram", hist.into_bytes()),
        ("kube_state_metrics", ksm.into_bytes()),
    ]
}

/// The whole in-process pipeline on `perf/compare.py`'s page shapes, as trawl runs it there
/// (target labels `job`/`instance`, no external labels): what the side-by-side's CPU per sample
/// is made of, without the HTTP and scheduling around it.
fn bench_dense_node(c: &mut Criterion) {
    const SERIES: usize = 2_500;
    let mut g = c.benchmark_group("pipeline_dense_node_page");
    g.throughput(Throughput::Elements(SERIES as u64));
    for (kind, page) in dense_node_pages(SERIES) {
        let target = Labels::from_pairs([("instance", "127.0.0.1:40123"), ("job", "t17")]);
        let mut lp = Page::new(Arc::new(settings()), target, Arc::default());
        let mut encoder = Encoder::new();
        let mut batch = Batch::new();
        let mut ts = 1;
        g.bench_function(kind, |b| {
            b.iter(|| {
                ts += 1;
                batch.clear();
                lp.process_page(&page, Format::PrometheusText, ts, &mut batch).expect("parses");
                black_box(encoder.encode(&batch).expect("encodes").len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_dense_node);
criterion_main!(benches);
