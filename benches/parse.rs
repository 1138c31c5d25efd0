//! Parser throughput on realistic pages, in bytes/s and lines/s, plus gzip decoding of the
//! node page for comparison (scrape bodies usually arrive gzipped).
//!
//! Pages: a real node_exporter 1.5 page (`perf/fixtures/node_exporter.prom`), a synthetic
//! node-exporter-like page (~1,400 series, HELP/TYPE for every family), a histogram-heavy
//! application page, a kube-state-metrics page (10-15 labels per series, long values), the
//! node page as OpenMetrics, and a ~30 MB page built by repeating the others. All but the
//! fixture are generated here, deterministically. perf/README.md describes them and has the
//! figures.
//!
//! Run: `cargo bench --bench parse -- --quick` (results in perf/README.md).

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trawl::parse::{Entry, Format, Parser};

/// What the scrape path does per sample on a series-cache hit: read the series key, the
/// value and the timestamp. Labels are decoded only on a miss (see `parse_with_labels`).
fn parse(input: &[u8], format: Format) -> usize {
    let mut p = Parser::new(input, format);
    let mut acc = 0usize;
    while let Some(e) = p.next_entry().expect("bench pages are valid") {
        if let Entry::Sample(s) = e {
            acc = acc
                .wrapping_add(s.raw_series().len())
                .wrapping_add(s.value().to_bits() as usize)
                .wrapping_add(s.timestamp_ms().unwrap_or(0) as usize);
        }
    }
    acc
}

/// The cache-miss path: also decode every label.
fn parse_with_labels(input: &[u8], format: Format) -> usize {
    let mut p = Parser::new(input, format);
    let mut acc = 0usize;
    while let Some(e) = p.next_entry().expect("bench pages are valid") {
        if let Entry::Sample(s) = e {
            acc = acc.wrapping_add(s.name().len()).wrapping_add(s.value().to_bits() as usize);
            for (k, v) in s.labels() {
                acc = acc.wrapping_add(k.len() + v.len());
            }
        }
    }
    acc
}

/// A tiny deterministic generator (xorshift) so pages are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Values as exporters print them (Go's shortest `%g`), in proportions taken from the
    /// real node_exporter fixture: 45% zero, 30% short integers, the rest decimals and
    /// exponents; about 1% need 17 significant digits.
    fn value(&mut self) -> String {
        match self.below(100) {
            0..=44 => "0".into(),
            45..=74 => self.below(100_000).to_string(),
            75..=86 => format!("{}.{}", self.below(100_000), self.below(100)),
            87..=93 => format!("{:.4e}", self.below(1 << 40) as f64 * 1.37).replace('e', "e+"),
            94..=98 => format!("{}e-0{}", self.below(1000), 1 + self.below(9)),
            _ => format!("{}", self.below(1 << 30) as f64 / 1024.0 + 0.1),
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// ~1,400 series shaped like node_exporter: many small families, few labels, HELP/TYPE.
fn node_page(om: bool) -> String {
    let mut r = Rng(0x9e3779b97f4a7c15);
    let mut s = String::new();
    family(
        &mut s,
        "go_gc_duration_seconds",
        "summary",
        "A summary of the pause duration of garbage collection cycles.",
    );
    for q in ["0", "0.25", "0.5", "0.75", "1"] {
        s += &format!("go_gc_duration_seconds{{quantile=\"{q}\"}} {}\n", r.value());
    }
    s += &format!(
        "go_gc_duration_seconds_sum {}\ngo_gc_duration_seconds_count {}\n",
        r.value(),
        r.below(9999)
    );
    for g in [
        "go_goroutines",
        "go_threads",
        "go_memstats_alloc_bytes",
        "go_memstats_heap_inuse_bytes",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        family(&mut s, g, "gauge", "Runtime and process statistic reported by the exporter.");
        s += &format!("{g} {}\n", r.value());
    }
    let modes = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];
    family(&mut s, "node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.");
    for cpu in 0..32 {
        for m in modes {
            s += &format!("node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{m}\"}} {}\n", r.value());
        }
    }
    family(
        &mut s,
        "node_cpu_guest_seconds_total",
        "counter",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    for cpu in 0..32 {
        for m in ["nice", "user"] {
            s += &format!("node_cpu_guest_seconds_total{{cpu=\"{cpu}\",mode=\"{m}\"}} {}\n", r.value());
        }
    }
    let disk_metrics = [
        "node_disk_io_now",
        "node_disk_io_time_seconds_total",
        "node_disk_read_bytes_total",
        "node_disk_reads_completed_total",
        "node_disk_reads_merged_total",
        "node_disk_write_time_seconds_total",
        "node_disk_writes_completed_total",
        "node_disk_writes_merged_total",
        "node_disk_written_bytes_total",
        "node_disk_discards_completed_total",
        "node_disk_discarded_sectors_total",
        "node_disk_flush_requests_total",
        "node_disk_read_time_seconds_total",
        "node_disk_io_time_weighted_seconds_total",
        "node_disk_discard_time_seconds_total",
    ];
    for m in disk_metrics {
        family(
            &mut s,
            m,
            if m.ends_with("_total") { "counter" } else { "gauge" },
            "Disk statistic from /proc/diskstats.",
        );
        for d in ["nvme0n1", "nvme1n1", "sda", "sdb", "dm-0", "dm-1", "dm-2", "loop0", "loop1", "md0"] {
            s += &format!("{m}{{device=\"{d}\"}} {}\n", r.value());
        }
    }
    let mounts = [
        "/",
        "/boot",
        "/boot/efi",
        "/home",
        "/var",
        "/var/lib/docker",
        "/var/lib/kubelet",
        "/run",
        "/run/lock",
        "/tmp",
        "/srv",
        "/opt",
        "/data",
        "/data/1",
        "/data/2",
        "/mnt/backup",
        "/var/log",
        "/var/lib/containerd",
        "/snap/core/1",
        "/snap/lxd/2",
    ];
    for m in [
        "node_filesystem_avail_bytes",
        "node_filesystem_device_error",
        "node_filesystem_files",
        "node_filesystem_files_free",
        "node_filesystem_free_bytes",
        "node_filesystem_readonly",
        "node_filesystem_size_bytes",
    ] {
        family(&mut s, m, "gauge", "Filesystem statistic from statfs.");
        for (i, mp) in mounts.iter().enumerate() {
            s += &format!(
                "{m}{{device=\"/dev/mapper/vg0-lv{i}\",fstype=\"ext4\",mountpoint=\"{mp}\"}} {}\n",
                r.value()
            );
        }
    }
    let netdevs = [
        "eth0",
        "eth1",
        "lo",
        "docker0",
        "cni0",
        "flannel.1",
        "veth1a2b3c4d",
        "veth5e6f7a8b",
        "bond0",
        "wlan0",
        "ens3",
        "ens4",
    ];
    for i in 0..25 {
        let m = format!("node_network_stat_{i}_total");
        family(&mut s, &m, "counter", "Network device statistic from /proc/net/dev.");
        for d in netdevs {
            s += &format!("{m}{{device=\"{d}\"}} {}\n", r.value());
        }
    }
    for m in
        ["node_softnet_dropped_total", "node_softnet_processed_total", "node_softnet_times_squeezed_total"]
    {
        family(&mut s, m, "counter", "Softnet statistic from /proc/net/softnet_stat.");
        for cpu in 0..32 {
            s += &format!("{m}{{cpu=\"{cpu}\"}} {}\n", r.value());
        }
    }
    for m in [
        "node_schedstat_running_seconds_total",
        "node_schedstat_timeslices_total",
        "node_schedstat_waiting_seconds_total",
    ] {
        family(&mut s, m, "counter", "Scheduler statistic from /proc/schedstat.");
        for cpu in 0..32 {
            s += &format!("{m}{{cpu=\"{cpu}\"}} {}\n", r.value());
        }
    }
    family(&mut s, "node_hwmon_temp_celsius", "gauge", "Hardware monitor for temperature (input)");
    for chip in 0..6 {
        for sensor in 0..5 {
            s += &format!(
                "node_hwmon_temp_celsius{{chip=\"platform_coretemp_{chip}\",sensor=\"temp{sensor}\"}} {}\n",
                r.value()
            );
        }
    }
    for i in 0..50 {
        let m = format!("node_memory_Stat{i}_bytes");
        family(&mut s, &m, "gauge", "Memory information field from /proc/meminfo.");
        s += &format!("{m} {}\n", r.value());
    }
    for i in 0..80 {
        let m = format!("node_netstat_Tcp_Field{i}");
        family(&mut s, &m, "untyped", "Statistic from /proc/net/netstat.");
        s += &format!("{m} {}\n", r.value());
    }
    for i in 0..40 {
        let m = format!("node_vmstat_field{i}");
        family(&mut s, &m, "untyped", "/proc/vmstat information field.");
        s += &format!("{m} {}\n", r.value());
    }
    for m in ["node_scrape_collector_duration_seconds", "node_scrape_collector_success"] {
        family(&mut s, m, "gauge", "node_exporter: collector statistic.");
        for i in 0..40 {
            s += &format!("{m}{{collector=\"collector{i}\"}} {}\n", r.value());
        }
    }
    if om {
        s += "# EOF\n";
        // OpenMetrics has no `untyped`; the scrape parser does not check family names.
        s = s.replace(" untyped\n", " unknown\n");
    }
    s
}

/// Histogram-heavy application page: three histograms with 12 buckets over many label
/// combinations.
fn histogram_page() -> String {
    let mut r = Rng(0x2545f4914f6cdd1d);
    let mut s = String::new();
    let buckets = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    let mut hist = |s: &mut String, name: &str, combos: &[String]| {
        family(s, name, "histogram", "Latency distribution of handled requests.");
        for labels in combos {
            let mut acc = 0;
            for le in buckets {
                acc += r.below(500);
                s.push_str(&format!("{name}_bucket{{{labels},le=\"{le}\"}} {acc}\n"));
            }
            s.push_str(&format!("{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {acc}\n", r.value()));
        }
    };
    let mut http = Vec::new();
    for route in 0..20 {
        for method in ["GET", "POST"] {
            for code in ["200", "404", "500"] {
                http.push(format!(
                    "handler=\"/api/v1/resource{route}/{{id}}\",method=\"{method}\",status_code=\"{code}\""
                ));
            }
        }
    }
    hist(&mut s, "http_request_duration_seconds", &http);
    let grpc: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "grpc_method=\"Method{i}\",grpc_service=\"trawl.v1.Service{}\",grpc_type=\"unary\"",
                i % 4
            )
        })
        .collect();
    hist(&mut s, "grpc_server_handling_seconds", &grpc);
    let db: Vec<String> = (0..40)
        .map(|i| {
            format!("operation=\"{}\",table=\"table_{i}\"", ["select", "insert", "update", "delete"][i % 4])
        })
        .collect();
    hist(&mut s, "db_query_duration_seconds", &db);
    s
}

/// kube-state-metrics page: per pod, series with 10-15 labels and long values (UIDs, image
/// digests, generated pod names).
fn ksm_page() -> String {
    let mut r = Rng(0x5deece66d);
    let mut s = String::new();
    let uid = |r: &mut Rng| {
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            r.next() as u32,
            r.below(1 << 16),
            r.below(1 << 16),
            r.below(1 << 16),
            r.next() & 0xffff_ffff_ffff
        )
    };
    let pods: Vec<(String, String, String, String)> = (0..300)
        .map(|i| {
            let ns = format!(
                "team-{}-production",
                ["payments", "search", "checkout", "identity", "platform"][i % 5]
            );
            let app = format!("service-{}-worker", i / 6);
            let pod = format!("{app}-{:010x}-{:05x}", r.next() & 0xff_ffff_ffff, r.below(1 << 20));
            (ns, app, pod, uid(&mut r))
        })
        .collect();
    family(&mut s, "kube_pod_info", "gauge", "Information about pod.");
    for (i, (ns, app, pod, uid)) in pods.iter().enumerate() {
        s += &format!(
            "kube_pod_info{{namespace=\"{ns}\",pod=\"{pod}\",uid=\"{uid}\",host_ip=\"10.20.{}.{}\",pod_ip=\"10.244.{}.{}\",node=\"ip-10-20-{}-{}.eu-west-1.compute.internal\",created_by_kind=\"ReplicaSet\",created_by_name=\"{app}-{:010x}\",priority_class=\"production-high\",host_network=\"false\"}} 1\n",
            i % 8,
            i % 250,
            i % 16,
            i % 250,
            i % 8,
            i % 250,
            r.next() & 0xff_ffff_ffff
        );
    }
    family(&mut s, "kube_pod_labels", "gauge", "Kubernetes labels converted to Prometheus labels.");
    for (ns, app, pod, uid) in &pods {
        s += &format!(
            "kube_pod_labels{{namespace=\"{ns}\",pod=\"{pod}\",uid=\"{uid}\",label_app=\"{app}\",label_app_kubernetes_io_name=\"{app}\",label_app_kubernetes_io_instance=\"{app}-prod\",label_app_kubernetes_io_version=\"v1.{}.{}\",label_app_kubernetes_io_managed_by=\"Helm\",label_helm_sh_chart=\"{app}-chart-0.{}.0\",label_pod_template_hash=\"{:010x}\",label_team=\"{}\",label_tier=\"backend\",label_component=\"worker\",label_environment=\"production\"}} 1\n",
            r.below(40),
            r.below(10),
            r.below(30),
            r.next() & 0xff_ffff_ffff,
            &ns[5..12]
        );
    }
    family(&mut s, "kube_pod_container_info", "gauge", "Information about a container in a pod.");
    for (ns, app, pod, uid) in &pods {
        for c in ["app", "istio-proxy"] {
            s += &format!(
                "kube_pod_container_info{{namespace=\"{ns}\",pod=\"{pod}\",uid=\"{uid}\",container=\"{c}\",image_spec=\"registry.example.com/{app}:v1.2.3\",image=\"registry.example.com/{app}:v1.2.3\",image_id=\"registry.example.com/{app}@sha256:{:016x}{:016x}{:016x}{:016x}\",container_id=\"containerd://{:016x}{:016x}{:016x}{:016x}\"}} 1\n",
                r.next(),
                r.next(),
                r.next(),
                r.next(),
                r.next(),
                r.next(),
                r.next(),
                r.next()
            );
        }
    }
    family(&mut s, "kube_pod_status_phase", "gauge", "The pods current phase.");
    for (ns, _, pod, uid) in &pods {
        for phase in ["Pending", "Succeeded", "Failed", "Unknown", "Running"] {
            s += &format!(
                "kube_pod_status_phase{{namespace=\"{ns}\",pod=\"{pod}\",uid=\"{uid}\",phase=\"{phase}\"}} {}\n",
                u8::from(phase == "Running")
            );
        }
    }
    family(
        &mut s,
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
    );
    for (i, (ns, _, pod, uid)) in pods.iter().enumerate() {
        for (res, unit, v) in [("cpu", "core", "0.25"), ("memory", "byte", "268435456")] {
            s += &format!(
                "kube_pod_container_resource_requests{{namespace=\"{ns}\",pod=\"{pod}\",uid=\"{uid}\",container=\"app\",node=\"ip-10-20-{}-{}.eu-west-1.compute.internal\",resource=\"{res}\",unit=\"{unit}\"}} {v}\n",
                i % 8,
                i % 250
            );
        }
    }
    s
}

fn lines(page: &[u8]) -> u64 {
    page.iter().filter(|&&b| b == b'\n').count() as u64
}

fn pages() -> Vec<(&'static str, Vec<u8>, Format)> {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/perf/fixtures/node_exporter.prom");
    let real = std::fs::read(fixture).expect("perf/fixtures/node_exporter.prom");
    let node = node_page(false).into_bytes();
    let hist = histogram_page().into_bytes();
    let ksm = ksm_page().into_bytes();
    let mut mixed = Vec::new();
    for p in [&node, &hist, &ksm] {
        mixed.extend_from_slice(p);
    }
    let mut big = Vec::with_capacity(31 << 20);
    while big.len() < 30 << 20 {
        big.extend_from_slice(&mixed);
    }
    vec![
        ("node_exporter_real", real, Format::PrometheusText),
        ("node_synthetic", node, Format::PrometheusText),
        ("histograms", hist, Format::PrometheusText),
        ("kube_state_metrics", ksm, Format::PrometheusText),
        ("node_openmetrics", node_page(true).into_bytes(), Format::OpenMetrics),
        ("mixed_30MB", big, Format::PrometheusText),
    ]
}

fn bench_parse(c: &mut Criterion) {
    let pages = pages();
    for (name, page, format) in &pages {
        let n = parse(page, *format);
        eprintln!("{name}: {} bytes, {} lines (checksum {n})", page.len(), lines(page));
    }
    let mut g = c.benchmark_group("parse_bytes");
    for (name, page, format) in &pages {
        g.throughput(Throughput::Bytes(page.len() as u64));
        g.bench_function(*name, |b| b.iter(|| parse(black_box(page), *format)));
    }
    g.finish();

    let mut g = c.benchmark_group("parse_lines");
    for (name, page, format) in &pages {
        g.throughput(Throughput::Elements(lines(page)));
        g.bench_function(*name, |b| b.iter(|| parse(black_box(page), *format)));
    }
    g.finish();

    let mut g = c.benchmark_group("parse_with_labels_bytes");
    for (name, page, format) in pages.iter().filter(|p| p.0 != "mixed_30MB") {
        g.throughput(Throughput::Bytes(page.len() as u64));
        g.bench_function(*name, |b| b.iter(|| parse_with_labels(black_box(page), *format)));
    }
    g.finish();
}

fn bench_gzip(c: &mut Criterion) {
    let page = node_page(false).into_bytes();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&page).expect("in-memory gzip");
    let gz = enc.finish().expect("in-memory gzip");
    eprintln!("node_synthetic gzip: {} -> {} bytes", page.len(), gz.len());
    let mut g = c.benchmark_group("gzip_decode");
    // Decompressed bytes per second, comparable with the parse figures.
    g.throughput(Throughput::Bytes(page.len() as u64));
    let mut out = Vec::with_capacity(page.len());
    g.bench_function("node_synthetic", |b| {
        b.iter(|| {
            out.clear();
            flate2::read::GzDecoder::new(black_box(&gz[..])).read_to_end(&mut out).expect("gzip");
            out.len()
        })
    });
    g.bench_function("node_synthetic+parse", |b| {
        b.iter(|| {
            out.clear();
            flate2::read::GzDecoder::new(black_box(&gz[..])).read_to_end(&mut out).expect("gzip");
            parse(&out, Format::PrometheusText)
        })
    });
    g.finish();
}

/// The same series as a protobuf page and as a text page: node-like counters and gauges (2
/// labels), classic histograms (3 labels, 12 buckets), and, in the protobuf page only, native
/// histograms (schema 3, ~24 buckets) with classic buckets too, as client_golang exposes them.
fn protobuf_pages(natives: usize) -> (Vec<u8>, Vec<u8>, u64) {
    use trawl::parse::proto::model::*;
    let mut r = Rng(0x1234_5678_9abc_def1);
    let mut fams = Vec::new();
    let mut text = String::new();
    let mut samples = 0u64;
    for f in 0..40 {
        let name = format!("node_metric_{f}_total");
        family(&mut text, &name, "counter", "A node statistic.");
        let mut metric = Vec::new();
        for cpu in 0..8 {
            for mode in ["idle", "user", "system", "iowait"] {
                let v = r.below(1 << 30) as f64 / 16.0;
                text += &format!("{name}{{cpu=\"{cpu}\",mode=\"{mode}\"}} {v}\n");
                metric.push(Metric {
                    label: vec![label("cpu", &cpu.to_string()), label("mode", mode)],
                    counter: Some(Counter { value: v, ..Default::default() }),
                    ..Default::default()
                });
                samples += 1;
            }
        }
        fams.push(MetricFamily {
            name,
            help: "A node statistic.".into(),
            r#type: 0,
            metric,
            ..Default::default()
        });
    }
    let les = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let les_text = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0"];
    family(&mut text, "http_request_duration_seconds", "histogram", "Latency.");
    let mut metric = Vec::new();
    for route in 0..40 {
        for code in ["200", "404", "500"] {
            let labels = format!("handler=\"/r{route}\",method=\"GET\",status_code=\"{code}\"");
            let mut acc = 0u64;
            let mut bucket = Vec::new();
            for (le, le_text) in les.iter().zip(les_text) {
                acc += r.below(500);
                text += &format!("http_request_duration_seconds_bucket{{{labels},le=\"{le_text}\"}} {acc}\n");
                bucket.push(Bucket { cumulative_count: acc, upper_bound: *le, ..Default::default() });
            }
            let sum = r.below(100_000) as f64 / 8.0;
            text += &format!("http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {acc}\n");
            text += &format!("http_request_duration_seconds_sum{{{labels}}} {sum}\n");
            text += &format!("http_request_duration_seconds_count{{{labels}}} {acc}\n");
            samples += les.len() as u64 + 3;
            metric.push(Metric {
                label: vec![
                    label("handler", &format!("/r{route}")),
                    label("method", "GET"),
                    label("status_code", code),
                ],
                histogram: Some(Histogram {
                    sample_count: acc,
                    sample_sum: sum,
                    bucket,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    fams.push(MetricFamily {
        name: "http_request_duration_seconds".into(),
        help: "Latency.".into(),
        r#type: 4,
        metric,
        ..Default::default()
    });
    if natives > 0 {
        let mut metric = Vec::new();
        for i in 0..natives {
            let deltas: Vec<i64> = (0..24).map(|k| if k == 0 { 5 } else { (k % 3) as i64 - 1 }).collect();
            let mut abs = 0i64;
            let total: i64 = deltas
                .iter()
                .map(|d| {
                    abs += d;
                    abs
                })
                .sum();
            metric.push(Metric {
                label: vec![label("handler", &format!("/n{i}"))],
                histogram: Some(Histogram {
                    sample_count: total as u64,
                    sample_sum: 42.0,
                    schema: 3,
                    zero_threshold: 1e-128,
                    positive_span: vec![BucketSpan { offset: -10, length: 24 }],
                    positive_delta: deltas,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        fams.push(MetricFamily {
            name: "rpc_duration_seconds".into(),
            r#type: 4,
            metric,
            ..Default::default()
        });
    }
    (page(&fams), text.into_bytes(), samples)
}

/// A page through the page processor (translation, parsing, relabeling verdicts, records):
/// what a scrape costs per sample in each format.
fn bench_protobuf(c: &mut Criterion) {
    use std::sync::Arc;
    use trawl::batch::Batch;
    use trawl::labels::Labels;
    use trawl::scrape::JobSettings;
    use trawl::scrape::page::Page;
    let settings = |native| JobSettings { scrape_native_histograms: native, ..JobSettings::default() };
    let target = Labels::from_pairs([("instance", "10.1.2.3:8080"), ("job", "app")]);
    let (proto, text, samples) = protobuf_pages(0);
    eprintln!("protobuf page: {} bytes; text page: {} bytes; {samples} samples", proto.len(), text.len());
    let mut g = c.benchmark_group("page_processor_same_series");
    g.throughput(Throughput::Elements(samples));
    for (name, body, format) in
        [("text", &text, Format::PrometheusText), ("protobuf", &proto, Format::PrometheusProto)]
    {
        let mut page = Page::new(Arc::new(settings(false)), target.clone(), Arc::default());
        let mut batch = Batch::new();
        let mut ts = 1;
        g.bench_function(name, |b| {
            b.iter(|| {
                ts += 1;
                batch.clear();
                page.process_page(black_box(body), format, ts, &mut batch).expect("bench pages are valid");
                batch.len()
            })
        });
    }
    g.finish();

    // The reader alone: every family, metric and histogram field walked.
    let mut g = c.benchmark_group("protobuf_reader");
    g.throughput(Throughput::Bytes(proto.len() as u64));
    g.bench_function("read_all_fields", |b| {
        b.iter(|| {
            let mut r = trawl::parse::proto::Reader::new(black_box(&proto));
            let mut m = trawl::parse::proto::Metric::default();
            let mut h = trawl::parse::proto::Histogram::default();
            let mut acc = 0usize;
            while let Some(f) = r.next_family().expect("valid") {
                for (msg, off) in f.metrics() {
                    m.read(msg, off).expect("valid");
                    acc += m.labels.len();
                    if let Some((hm, ho)) = m.histogram {
                        h.read(hm, ho).expect("valid");
                        acc += h.buckets.len();
                    }
                }
                r.recycle(f);
            }
            acc
        })
    });
    g.finish();

    // Native histograms: per histogram (decode, compact, validate, encode into the batch).
    let natives = 500;
    let (with, without) = (protobuf_pages(natives).0, proto);
    let mut g = c.benchmark_group("native_histograms");
    g.throughput(Throughput::Elements(natives as u64));
    // One target per page, so neither sees series come and go between runs.
    let mut pages = [&with, &without].map(|body| {
        (body, Page::new(Arc::new(settings(true)), target.clone(), Arc::default()), Batch::new(), 1i64)
    });
    g.bench_function("page_with_500_natives_minus_page_without", |b| {
        b.iter_custom(|iters| {
            let mut took = [std::time::Duration::ZERO; 2];
            for (k, (body, page, batch, ts)) in pages.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    *ts += 1;
                    batch.clear();
                    page.process_page(black_box(body), Format::PrometheusProto, *ts, batch).expect("valid");
                }
                took[k] = start.elapsed();
            }
            took[0].saturating_sub(took[1])
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse, bench_gzip, bench_protobuf);
criterion_main!(benches);
