//! Targets that try to take trawl over its memory or time, each next to a healthy target on the
//! same trawl: a gzip bomb (10 MB that inflates to 10 GB) with and without `body_size_limit`,
//! stored-block gzip of 1 GB under a 10 MB limit, a 300 MB plain page, a slow-loris target, a
//! target that closes mid-body, and a 50 MB single line. For each: trawl's peak RSS stays under a
//! stated bound, the hostile target gets `up` 0 with the reason within `scrape_timeout` + 1 s,
//! and the healthy target keeps being scraped with no gap over two intervals. Then
//! `--memory.limit=64MiB` with a 300k-series target and three small ones: the big one is refused
//! with the reason on `/api/v1/targets`, the small ones never are, and peak RSS stays within the
//! limit and a stated margin.
//!
//! The hostile server writes raw HTTP/1.1 on a socket, so it can stream gigabytes it never
//! holds, dribble bytes, or hang up half way.

mod support;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Trawl, eventually, http_get, metric_sum};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What a path of the hostile server answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// A small page, recording when each request came.
    Healthy,
    /// 10 MB of gzip members that inflate to 10 GB, without a length.
    GzipBomb,
    /// A 1 GB stream of stored (uncompressed) deflate blocks in gzip.
    StoredGzip,
    /// `Content-Length: 300000000` and the bytes to match.
    HugePlain,
    /// The headers, then a byte every 200 ms, forever.
    SlowLoris,
    /// `Content-Length: 1000000`, then 100 KB and a hang-up.
    ClosesMidBody,
    /// One 50 MB line.
    LongLine,
    /// A page of `n` series.
    Series(usize),
}

/// The scrape interval and timeout of every job here, in seconds.
const INTERVAL_SECS: u64 = 2;
const TIMEOUT_SECS: u64 = 1;

/// Starts the hostile server; returns its address and the instants of `Healthy` requests.
async fn serve(routes: Vec<(&'static str, Behaviour)>) -> (std::net::SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(Mutex::new(Vec::new()));
    let (routes, seen) = (Arc::new(routes), hits.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { continue };
            let (routes, seen) = (routes.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let Some(&(_, b)) = routes.iter().find(|(p, _)| *p == path) else { return };
                let _ = answer(&mut sock, b, &seen).await;
            });
        }
    });
    (addr, hits)
}

const TEXT: &str = "text/plain; version=0.0.4";

async fn answer(
    sock: &mut tokio::net::TcpStream,
    b: Behaviour,
    seen: &Mutex<Vec<Instant>>,
) -> std::io::Result<()> {
    let head =
        |extra: &str| format!("HTTP/1.1 200 OK\r\ncontent-type: {TEXT}\r\nconnection: close\r\n{extra}\r\n");
    match b {
        Behaviour::Healthy => {
            seen.lock().unwrap().push(Instant::now());
            let body = "healthy 1\n";
            sock.write_all(head(&format!("content-length: {}\r\n", body.len())).as_bytes()).await?;
            sock.write_all(body.as_bytes()).await
        }
        Behaviour::GzipBomb => {
            // Gzip members of 1 MiB of blank lines each (~1 KB on the wire); Go's reader (and
            // trawl) read concatenated members as one stream. 10,240 of them: 10 GB.
            static MEMBER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            let member = MEMBER.get_or_init(|| gzip(&vec![b'\n'; 1 << 20]));
            sock.write_all(head("content-encoding: gzip\r\n").as_bytes()).await?;
            for _ in 0..10 * 1024 {
                sock.write_all(member).await?;
            }
            Ok(())
        }
        Behaviour::StoredGzip => {
            sock.write_all(head("content-encoding: gzip\r\n").as_bytes()).await?;
            // Gzip header, then stored deflate blocks of 65,535 bytes: 1 GB that compresses to
            // itself, so it arrives at network speed.
            sock.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]).await?;
            let data = b"stored_block_line 1\n".repeat(65535 / 20 + 1);
            let mut block = vec![0u8, 0xff, 0xff, 0, 0];
            block.extend_from_slice(&data[..65535]);
            for _ in 0..(1 << 30) / 65535 {
                sock.write_all(&block).await?;
            }
            Ok(())
        }
        Behaviour::HugePlain => {
            let line = b"huge_page_line{a=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"} 1\n";
            let total = 300_000_000;
            sock.write_all(head(&format!("content-length: {total}\r\n")).as_bytes()).await?;
            let chunk = line.repeat(1 << 14);
            let mut sent = 0;
            while sent < total {
                let n = chunk.len().min(total - sent);
                sock.write_all(&chunk[..n]).await?;
                sent += n;
            }
            Ok(())
        }
        Behaviour::SlowLoris => {
            sock.write_all(head("content-length: 1000000\r\n").as_bytes()).await?;
            loop {
                sock.write_all(b"s").await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Behaviour::ClosesMidBody => {
            sock.write_all(head("content-length: 1000000\r\n").as_bytes()).await?;
            sock.write_all(&b"cut 1\n".repeat(100_000 / 6)).await?;
            sock.shutdown().await
        }
        Behaviour::LongLine => {
            let total = 50_000_000;
            sock.write_all(head(&format!("content-length: {total}\r\n")).as_bytes()).await?;
            sock.write_all(b"long_line{a=\"").await?;
            let chunk = vec![b'x'; 1 << 20];
            let mut sent = 13;
            while sent < total {
                let n = chunk.len().min(total - sent);
                sock.write_all(&chunk[..n]).await?;
                sent += n;
            }
            Ok(())
        }
        Behaviour::Series(n) => {
            let mut page = Vec::with_capacity(n * 100);
            for i in 0..n {
                let _ = writeln!(
                    page,
                    "big_series_total{{pod=\"pod-{i}-with-a-long-name-7f9c8d6b5\",uid=\"{i:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}} {i}"
                );
            }
            sock.write_all(head(&format!("content-length: {}\r\n", page.len())).as_bytes()).await?;
            sock.write_all(&page).await
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// trawl's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(trawl: &Trawl) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", trawl.proc.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The active targets of `/api/v1/targets` as (job, health, lastError, lastScrapeDuration).
async fn targets(trawl: &Trawl) -> Vec<(String, String, String, f64)> {
    let Some((_, body)) = http_get(&format!("{}/api/v1/targets", trawl.url())).await else { return vec![] };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["labels"]["job"].as_str().unwrap_or("").to_owned(),
                        t["health"].as_str().unwrap_or("").to_owned(),
                        t["lastError"].as_str().unwrap_or("").to_owned(),
                        t["lastScrapeDuration"].as_f64().unwrap_or(-1.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn job(name: &str, addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "  - job_name: {name}\n    metrics_path: {path}\n{extra}    static_configs:\n      - targets: ['{addr}']\n"
    )
}

fn config(jobs: &str) -> String {
    format!(
        "global:\n  scrape_interval: {INTERVAL_SECS}s\n  scrape_timeout: {TIMEOUT_SECS}s\nscrape_configs:\n{jobs}"
    )
}

/// The longest gap between the healthy target's scrapes after the first one.
fn longest_gap(hits: &Mutex<Vec<Instant>>) -> Duration {
    let hits = hits.lock().unwrap();
    hits.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_targets_stay_within_bounds_and_do_not_starve_healthy_ones() {
    const MIB: u64 = 1 << 20;
    // (behaviour, body_size_limit, the reason lastError starts with, peak RSS bound, why).
    // The bounds: a debug trawl idles at ~15-25 MiB; then the body buffer up to the limit.
    let cases: [(Behaviour, &str, &str, u64, &str); 7] = [
        (Behaviour::GzipBomb, "10MB", "body size limit exceeded", 64 * MIB, "bomb, 10 MB limit"),
        (Behaviour::GzipBomb, "", "body size limit exceeded", 128 * MIB, "bomb, trawl's 64 MiB default cap"),
        (
            Behaviour::StoredGzip,
            "10MB",
            "body size limit exceeded",
            64 * MIB,
            "stored-block gzip, 10 MB limit",
        ),
        (Behaviour::HugePlain, "", "body size limit exceeded", 64 * MIB, "refused on its Content-Length"),
        (
            Behaviour::SlowLoris,
            "",
            "context deadline exceeded",
            64 * MIB,
            "slow loris: the timeout covers the body",
        ),
        (Behaviour::ClosesMidBody, "", "", 64 * MIB, "hangs up half way"),
        (Behaviour::LongLine, "", "line 1", 128 * MIB, "50 MB on one line: a parse error"),
    ];
    for (behaviour, limit, reason, bound, why) in cases {
        let (addr, hits) = serve(vec![("/hostile", behaviour), ("/healthy", Behaviour::Healthy)]).await;
        let extra = if limit.is_empty() { String::new() } else { format!("    body_size_limit: {limit}\n") };
        let jobs = job("hostile", addr, "/hostile", &extra) + &job("healthy", addr, "/healthy", "");
        let mut trawl = Trawl::start(&config(&jobs)).await;
        let started = Instant::now();
        // Three scrapes of the hostile target.
        let seen = eventually(Duration::from_secs(30), async || {
            let m = trawl.metrics().await;
            let failures = metric_sum(&m, "trawl_scrape_failures_total", "scrape_job=\"hostile\"");
            (failures >= 3.0).then_some(())
        })
        .await;
        assert!(
            seen.is_some(),
            "{why}: the hostile target was not scraped and failed 3 times:\n{}",
            trawl.proc.log()
        );
        let t = targets(&trawl).await;
        let hostile = t.iter().find(|t| t.0 == "hostile").cloned().unwrap_or_default();
        assert_eq!(hostile.1, "down", "{why}: {hostile:?}");
        assert!(
            hostile.2.starts_with(reason),
            "{why}: lastError {:?} does not start with {reason:?}",
            hostile.2
        );
        assert!(
            hostile.3 <= (TIMEOUT_SECS + 1) as f64,
            "{why}: the scrape took {} s, over scrape_timeout + 1 s",
            hostile.3
        );
        let healthy = t.iter().find(|t| t.0 == "healthy").cloned().unwrap_or_default();
        assert_eq!(healthy.1, "up", "{why}: the healthy target: {healthy:?}");
        let gap = longest_gap(&hits);
        assert!(
            gap <= Duration::from_secs(2 * INTERVAL_SECS),
            "{why}: the healthy target went {gap:?} without a scrape"
        );
        assert!(
            hits.lock().unwrap().len() as u64 >= started.elapsed().as_secs() / INTERVAL_SECS - 1,
            "{why}: the healthy target missed scrapes"
        );
        let peak = peak_rss(&trawl);
        eprintln!(
            "{why}: peak RSS {} MiB (bound {} MiB), lastError {:?}",
            peak / MIB,
            bound / MIB,
            hostile.2
        );
        assert!(
            peak > 0 && peak <= bound,
            "{why}: peak RSS {} MiB over the {} MiB bound",
            peak / MIB,
            bound / MIB
        );
        assert!(trawl.proc.running(), "{why}: trawl keeps running");
        assert_eq!(trawl.interrupt(), Some(0), "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_refuses_the_big_target_not_the_small_ones() {
    const MIB: u64 = 1 << 20;
    const LIMIT_MIB: u64 = 64;
    let (addr, hits) = serve(vec![
        ("/big", Behaviour::Series(300_000)),
        ("/small1", Behaviour::Healthy),
        ("/small2", Behaviour::Series(200)),
        ("/small3", Behaviour::Series(1_000)),
    ])
    .await;
    let jobs = job("big", addr, "/big", "")
        + &job("small1", addr, "/small1", "")
        + &job("small2", addr, "/small2", "")
        + &job("small3", addr, "/small3", "");
    // A longer timeout: the big page takes a moment to arrive in a debug build.
    let cfg = format!(
        "global:\n  scrape_interval: {INTERVAL_SECS}s\n  scrape_timeout: {INTERVAL_SECS}s\nscrape_configs:\n{jobs}"
    );
    let mut trawl = Trawl::start_with_args(&cfg, &[&format!("--memory.limit={LIMIT_MIB}MiB")]).await;
    let refused = eventually(Duration::from_secs(40), async || {
        let m = trawl.metrics().await;
        let small_scrapes = ["small1", "small2", "small3"]
            .iter()
            .map(|j| metric_sum(&m, "trawl_scrapes_total", &format!("scrape_job=\"{j}\"")))
            .fold(f64::MAX, f64::min);
        (metric_sum(&m, "trawl_scrapes_skipped_total", "scrape_job=\"big\"") >= 3.0 && small_scrapes >= 3.0)
            .then_some(m)
    })
    .await;
    let m =
        refused.unwrap_or_else(|| panic!("the big target was not refused 3 times:\n{}", trawl.proc.log()));
    for small in ["small1", "small2", "small3"] {
        let skipped = metric_sum(&m, "trawl_scrapes_skipped_total", &format!("scrape_job=\"{small}\""));
        assert_eq!(skipped, 0.0, "{small} was skipped");
        let scrapes = metric_sum(&m, "trawl_scrapes_total", &format!("scrape_job=\"{small}\""));
        let failures = metric_sum(&m, "trawl_scrape_failures_total", &format!("scrape_job=\"{small}\""));
        assert!(scrapes >= 3.0 && failures == 0.0, "{small}: {scrapes} scrapes, {failures} failed");
    }
    assert!(longest_gap(&hits) <= Duration::from_secs(2 * INTERVAL_SECS), "small1 went unscraped");
    let t = targets(&trawl).await;
    let big = t.iter().find(|t| t.0 == "big").cloned().unwrap_or_default();
    assert_eq!(big.1, "down", "{big:?}");
    assert!(big.2.starts_with("memory budget"), "the reason on /api/v1/targets: {:?}", big.2);
    let (_, page) = http_get(&format!("{}/targets", trawl.url())).await.unwrap_or_default();
    assert!(page.contains("memory budget"), "the reason on /targets");
    let peak = peak_rss(&trawl);
    // The margin: what the budget cannot refuse (the runtime's and allocator's own memory
    // beyond what was sampled, a sample's 250 ms lag).
    let bound = (LIMIT_MIB + 16) * MIB;
    eprintln!("--memory.limit={LIMIT_MIB}MiB: peak RSS {} MiB, big target: {:?}", peak / MIB, big.2);
    assert!(peak <= bound, "peak RSS {} MiB over {} MiB", peak / MIB, bound / MIB);
    assert_eq!(trawl.interrupt(), Some(0));
}
