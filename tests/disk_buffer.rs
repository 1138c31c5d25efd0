//! The `--storage.path` disk buffer and staleness state, end to end: trawl as a subprocess
//! (killed with SIGKILL and restarted on the same storage), a scripted 503 gate in front of a
//! real Prometheus, and a target whose values are the scrape numbers, so every assertion is an
//! exact set of numbers: nothing lost, nothing doubled.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Gate, Proc, Prometheus, TEXT, TestTarget, eventually, free_port, http_get, metric_sum};

/// How long a test waits for something that should happen within a few scrapes.
const WAIT: Duration = Duration::from_secs(60);

/// A running trawl on a storage directory that outlives it.
struct Run {
    proc: Proc,
    port: u16,
}

impl Run {
    async fn start(dir: &Path, config: &str) -> Run {
        std::fs::write(dir.join("trawl.yml"), config).expect("config");
        let port = free_port();
        let args = vec![
            "--config.file=trawl.yml".to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.path=storage".to_string(),
            "--log.level=debug".to_string(),
        ];
        let run_no = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let proc =
            Proc::start(&format!("trawl-{run_no}"), Path::new(env!("CARGO_BIN_EXE_trawl")), &args, dir);
        let r = Run { proc, port };
        let ready = eventually(WAIT, async || {
            http_get(&format!("http://127.0.0.1:{port}/-/ready")).await.filter(|(s, _)| *s == 200)
        })
        .await;
        assert!(ready.is_some(), "trawl did not become ready:\n{}", r.proc.log());
        r
    }

    async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.port)).await.map(|r| r.1).unwrap_or_default()
    }

    async fn metric(&self, name: &str, matching: &str) -> f64 {
        metric_sum(&self.metrics().await, name, matching)
    }

    /// Waits until nothing is held in memory (everything sent or on disk).
    async fn settle(&self) {
        let idle = eventually(WAIT, async || {
            let m = self.metrics().await;
            (m.contains("trawl_remote_write_queue_length")
                && metric_sum(&m, "trawl_remote_write_queue_length", "") == 0.0)
                .then_some(())
        })
        .await;
        assert!(idle.is_some(), "the memory queue never emptied:\n{}", self.proc.log());
    }

    fn kill9(&mut self) {
        assert!(
            self.proc.signal_and_wait("KILL", Duration::from_secs(10)).is_none(),
            "SIGKILL: no exit code"
        );
    }
}

/// A target serving `e2e_scrape_number <n>` (plus `padding` constant series) while not paused,
/// recording each number it served; paused, it answers 503 (the scrape fails, no number).
struct Numbers {
    target: TestTarget,
    served: Arc<Mutex<Vec<u64>>>,
    paused: Arc<AtomicBool>,
}

impl Numbers {
    async fn start(padding: usize) -> Numbers {
        let target = TestTarget::start().await;
        let served: Arc<Mutex<Vec<u64>>> = Arc::default();
        let paused = Arc::new(AtomicBool::new(false));
        let (s, p) = (served.clone(), paused.clone());
        target.route("/n", move |n| {
            if p.load(Ordering::SeqCst) {
                return (503, TEXT, b"paused".to_vec());
            }
            s.lock().unwrap().push(n);
            let mut body = format!("# TYPE e2e_scrape_number gauge\ne2e_scrape_number {n}\n");
            for i in 0..padding {
                body.push_str(&format!("e2e_padding{{i=\"{i}\",filler=\"some label value to fill\"}} {i}\n"));
            }
            (200, TEXT, body.into_bytes())
        });
        Numbers { target, served, paused }
    }

    fn served(&self) -> Vec<u64> {
        self.served.lock().unwrap().clone()
    }

    fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
    }

    /// Waits for a few more served scrapes.
    async fn serve(&self, more: usize) {
        let want = self.served().len() + more;
        assert!(eventually(WAIT, async || (self.served().len() >= want).then_some(())).await.is_some());
    }
}

fn config(target: &TestTarget, url: &str, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {url}\n    queue_config:\n      capacity: 10\n      \
         batch_send_deadline: 500ms\n      min_backoff: 100ms\n      max_backoff: 1s\n{extra}\
         scrape_configs:\n  - job_name: disk\n    metrics_path: /n\n    static_configs:\n      - targets: ['{}']\n",
        target.host()
    )
}

/// The scrape numbers stored in Prometheus, sorted (duplicates kept, so doubles show).
async fn stored_numbers(prom: &Prometheus) -> Vec<u64> {
    let mut v: Vec<u64> = prom
        .range_values("e2e_scrape_number[30m]")
        .await
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|p| p.1 as u64)
        .collect();
    v.sort_unstable();
    v
}

/// Waits until Prometheus holds at least every number in `want`, then returns what it holds.
async fn wait_for_numbers(prom: &Prometheus, want: &[u64]) -> Vec<u64> {
    let got = eventually(WAIT, async || {
        let got = stored_numbers(prom).await;
        want.iter().all(|n| got.binary_search(n).is_ok()).then_some(got)
    })
    .await;
    got.unwrap_or_else(|| panic!("Prometheus never held every served number {want:?}"))
}

/// A gate in front of `prom` that answers 503 (the outage) until the flag is set, then forwards.
async fn outage_gate(prom: &Prometheus) -> (Gate, Arc<AtomicBool>) {
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let gate =
        Gate::start(Some(prom.write_url()), move |_| if o.load(Ordering::SeqCst) { 200 } else { 503 }).await;
    (gate, open)
}

fn segments(storage: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ep in std::fs::read_dir(storage.join("remote_write")).expect("buffer dir").flatten() {
        for f in std::fs::read_dir(ep.path()).expect("endpoint dir").flatten() {
            if f.path().extension().is_some_and(|e| e == "seg") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_the_memory_queue_loses_nothing() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let numbers = Numbers::start(0).await;
    let (gate, open) = outage_gate(&prom).await;
    let dir = tempfile::tempdir().unwrap();
    let run = Run::start(dir.path(), &config(&numbers.target, &gate.url(), "")).await;
    // 8 scrapes × 6 samples: several times the capacity of 10 samples.
    numbers.serve(8).await;
    let written = run.metric("trawl_remote_write_disk_written_samples_total", "").await;
    assert!(written > 10.0, "the outage spilled more than the memory queue holds to disk: {written}");
    open.store(true, Ordering::SeqCst);
    numbers.serve(3).await;
    numbers.pause(true);
    let served = numbers.served();
    let got = wait_for_numbers(&prom, &served).await;
    assert_eq!(got, served, "every scrape number exactly once:\n{}", run.proc.log());
    assert!(run.metric("trawl_remote_write_disk_replayed_samples_total", "").await > 0.0);
    let pending = eventually(WAIT, async || {
        (run.metric("trawl_remote_write_disk_records_pending", "").await == 0.0).then_some(())
    })
    .await;
    assert!(pending.is_some(), "the disk buffer drains");
}

/// Remote write 2.0 configured against the Debian Prometheus (2.42, 1.0 only) behind an outage:
/// the requests spilled to disk are 2.0 bodies; when the receiver is back it turns 2.0 down, and
/// both the live path and the replay of the disk buffer fall back to 1.0 (converting what was
/// stored). Every number still lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_with_remote_write_2_against_an_old_receiver_loses_nothing() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let numbers = Numbers::start(0).await;
    let (gate, open) = outage_gate(&prom).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&numbers.target, &gate.url(), "    protobuf_message: io.prometheus.write.v2.Request\n");
    let run = Run::start(dir.path(), &cfg).await;
    numbers.serve(6).await;
    assert!(run.metric("trawl_remote_write_disk_written_samples_total", "").await > 10.0);
    open.store(true, Ordering::SeqCst);
    numbers.serve(3).await;
    numbers.pause(true);
    let served = numbers.served();
    let got = wait_for_numbers(&prom, &served).await;
    assert_eq!(got, served, "every scrape number exactly once:\n{}", run.proc.log());
    assert!(run.proc.log().contains("falling back to 1.0"), "{}", run.proc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_outage_then_restart_loses_nothing() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let numbers = Numbers::start(0).await;
    let (gate, open) = outage_gate(&prom).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&numbers.target, &gate.url(), "");
    let mut first = Run::start(dir.path(), &cfg).await;
    numbers.serve(5).await;
    // Stop serving numbers, wait until every numbered scrape left memory (for disk: the gate is
    // closed), then kill without a chance to flush.
    numbers.pause(true);
    first.settle().await;
    assert!(first.metric("trawl_remote_write_disk_records_pending", "").await > 0.0);
    first.kill9();
    let before_kill = numbers.served();

    numbers.pause(false);
    let second = Run::start(dir.path(), &cfg).await;
    assert!(
        second.proc.log().contains("Replaying the disk buffer left by the previous run."),
        "{}",
        second.proc.log()
    );
    numbers.serve(2).await;
    open.store(true, Ordering::SeqCst);
    numbers.serve(2).await;
    numbers.pause(true);
    let served = numbers.served();
    let got = wait_for_numbers(&prom, &served).await;
    assert_eq!(
        got,
        served,
        "scrapes before the kill ({before_kill:?}) and after it, each once:\n{}",
        second.proc.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_drops_the_oldest_and_counts_them() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    // 200 padding series: a request of several KiB per scrape, so 16 KiB holds only a few.
    const PADDING: usize = 200;
    let numbers = Numbers::start(PADDING).await;
    let (gate, open) = outage_gate(&prom).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&numbers.target, &gate.url(), "    disk_buffer:\n      max_bytes: 16KiB\n")
        .replace("capacity: 10", "capacity: 1000");
    let run = Run::start(dir.path(), &cfg).await;
    let dropped = eventually(WAIT, async || {
        let d = run.metric("trawl_remote_write_disk_dropped_samples_total", "reason=\"max_bytes\"").await;
        (d > 0.0).then_some(())
    })
    .await;
    assert!(dropped.is_some(), "a 16 KiB cap is reached:\n{}", run.proc.log());
    numbers.serve(2).await;
    numbers.pause(true);
    run.settle().await;
    let served = numbers.served();
    open.store(true, Ordering::SeqCst);
    let newest = &served[served.len() - 2..];
    wait_for_numbers(&prom, newest).await;
    let drained = eventually(WAIT, async || {
        (run.metric("trawl_remote_write_disk_records_pending", "").await == 0.0).then_some(())
    })
    .await;
    assert!(drained.is_some());
    let got = stored_numbers(&prom).await;
    let missing: Vec<u64> = served.iter().copied().filter(|n| got.binary_search(n).is_err()).collect();
    let dropped = run.metric("trawl_remote_write_disk_dropped_samples_total", "reason=\"max_bytes\"").await;
    // Each scrape is the number, the padding and 5 report series, always in one request.
    let per_scrape = (1 + PADDING + 5) as f64;
    assert!(!missing.is_empty(), "the oldest data was dropped");
    assert_eq!(missing.len() as f64 * per_scrape, dropped, "the counter counts exactly what is missing");
    assert!(missing.iter().all(|m| newest.iter().all(|n| m < n)), "only old data is dropped: {missing:?}");
    let mut dedup = got.clone();
    dedup.dedup();
    assert_eq!(dedup, got, "nothing doubled");
    assert!(run.proc.log().contains("Dropped the oldest disk buffer segment"), "a WARN line says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_are_skipped_and_the_rest_delivered() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let numbers = Numbers::start(0).await;
    let (gate, open) = outage_gate(&prom).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&numbers.target, &gate.url(), "");
    let mut first = Run::start(dir.path(), &cfg).await;
    numbers.serve(8).await;
    numbers.pause(true);
    first.settle().await;
    first.kill9();
    let before = numbers.served();

    // Flip bytes in the middle of the first segment and cut its last 5 bytes.
    let segs = segments(&dir.path().join("storage"));
    let seg =
        segs.iter().find(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > 0).expect("a segment");
    let mut bytes = std::fs::read(seg).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 3] {
        *b ^= 0xa5;
    }
    bytes.truncate(bytes.len() - 5);
    std::fs::write(seg, &bytes).unwrap();

    open.store(true, Ordering::SeqCst);
    numbers.pause(false);
    let mut second = Run::start(dir.path(), &cfg).await;
    numbers.serve(2).await;
    numbers.pause(true);
    let served = numbers.served();
    let after: Vec<u64> = served[before.len()..].to_vec();
    wait_for_numbers(&prom, &after).await;
    let drained = eventually(WAIT, async || {
        (second.metric("trawl_remote_write_disk_records_pending", "").await == 0.0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "{}", second.proc.log());
    let got = stored_numbers(&prom).await;
    let missing: Vec<u64> = before.iter().copied().filter(|n| got.binary_search(n).is_err()).collect();
    assert!(
        (2..=4).contains(&missing.len()),
        "two damaged records (one or two scrapes each) lost, the rest delivered: missing {missing:?} of {before:?}"
    );
    assert!(second.metric("trawl_remote_write_disk_corrupt_records_total", "").await >= 2.0);
    assert!(second.proc.log().contains("Skipping damaged data in the disk buffer"), "{}", second.proc.log());
    assert!(second.proc.running(), "no crash");
    assert_eq!(second.proc.signal_and_wait("INT", Duration::from_secs(30)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_that_vanish_while_trawl_is_down_are_stale_marked_after_restart() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let target = TestTarget::start().await;
    let gone = Arc::new(AtomicBool::new(false));
    let g = gone.clone();
    target.route("/n", move |_| {
        let body = if g.load(Ordering::SeqCst) { "stays 1\n" } else { "stays 1\ngoing_away 1\n" };
        (200, TEXT, body.as_bytes().to_vec())
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&target, &prom.write_url(), "");
    let mut first = Run::start(dir.path(), &cfg).await;
    let present = eventually(WAIT, async || (!prom.query("going_away").await.is_empty()).then_some(())).await;
    assert!(present.is_some(), "{}", first.proc.log());
    first.kill9();
    gone.store(true, Ordering::SeqCst);

    let second = Run::start(dir.path(), &cfg).await;
    // Without a marker Prometheus would keep returning the last value for 5 minutes.
    let stale = eventually(WAIT, async || prom.query("going_away").await.is_empty().then_some(())).await;
    assert!(
        stale.is_some(),
        "the vanished series got a stale marker after the restart:\n{}",
        second.proc.log()
    );
    assert_eq!(prom.query("stays").await.len(), 1, "the other series is untouched");
}

/// Not a check: measures the buffer's bytes per sample on a real node-exporter page and the
/// replay rate into a real Prometheus. Run with
/// `cargo test --release --test disk_buffer measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run by hand for the figures in perf/README.md"]
async fn measure_bytes_per_sample_and_replay_rate() {
    const TARGETS: usize = 10;
    // 30 s by default; a longer outage (`MEASURE_OUTAGE_SECS=180`) makes the replay long enough
    // to time well (a 30 s backlog replays in about a second, close to the polling step).
    let outage = Duration::from_secs(
        std::env::var("MEASURE_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30),
    );
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let page =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/perf/fixtures/node_exporter.prom")).unwrap();
    let mut targets = Vec::new();
    for _ in 0..TARGETS {
        let t = TestTarget::start().await;
        let p = page.clone();
        t.route("/n", move |_| (200, TEXT, p.clone()));
        targets.push(t);
    }
    let hosts: Vec<String> = targets.iter().map(|t| format!("'{}'", t.host())).collect();
    let (gate, open) = outage_gate(&prom).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {}\n    queue_config:\n      \
         batch_send_deadline: 500ms\n      min_backoff: 100ms\n      max_backoff: 1s\n\
         scrape_configs:\n  - job_name: node\n    metrics_path: /n\n    static_configs:\n      - targets: [{}]\n",
        gate.url(),
        hosts.join(",")
    );
    let run = Run::start(dir.path(), &cfg).await;
    tokio::time::sleep(outage).await;
    run.settle().await;
    let bytes = run.metric("trawl_remote_write_disk_bytes", "").await;
    let samples = run.metric("trawl_remote_write_disk_samples_pending", "").await;
    let replayed_before = run.metric("trawl_remote_write_disk_replayed_samples_total", "").await;
    let started = std::time::Instant::now();
    open.store(true, Ordering::SeqCst);
    let drained = eventually(Duration::from_secs(600), async || {
        (run.metric("trawl_remote_write_disk_records_pending", "").await == 0.0).then_some(())
    })
    .await;
    assert!(drained.is_some());
    let secs = started.elapsed().as_secs_f64();
    let replayed = run.metric("trawl_remote_write_disk_replayed_samples_total", "").await - replayed_before;
    println!(
        "MEASURE disk: {bytes} B for {samples} samples = {:.2} B/sample; replayed {replayed} samples in {secs:.1} s \
         (while scraping {} samples/s) = {:.0} samples/s",
        bytes / samples,
        TARGETS * 507,
        replayed / secs
    );
}
