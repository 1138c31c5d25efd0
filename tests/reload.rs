//! Config reload, on SIGHUP and on `POST /-/reload`: what Prometheus users expect of it.
//!
//! A changed job is applied in place and an unchanged one is not touched (its loop keeps its
//! state: no new `scrape_series_added`, no stale markers); a removed job's series go stale; a new
//! job starts; a broken config is refused with the reason, the old one keeps running, and
//! `trawl_config_last_reload_successful` says so. Samples are checked at a real remote-write
//! receiver over loopback.

#[path = "support/rw_receiver.rs"]
mod rw_receiver;
mod support;

use std::time::Duration;

use rw_receiver::{Received, Receiver};
use support::{TEXT, TestTarget, Trawl, eventually, metric_sum};

const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn config(rw: &str, jobs: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {rw}\n    queue_config:\n      \
         batch_send_deadline: 100ms\nscrape_configs:\n{jobs}"
    )
}

fn job(name: &str, target: &TestTarget, extra: &str) -> String {
    format!("  - job_name: {name}\n    static_configs: [{{targets: ['{}']}}]\n{extra}", target.host())
}

async fn target(name: &'static str) -> TestTarget {
    let t = TestTarget::start().await;
    t.route("/metrics", move |n| (200, TEXT, format!("m{{t=\"{name}\"}} {n}\n").into_bytes()));
    t
}

fn of_job<'a>(samples: &'a [Received], job: &'a str) -> impl Iterator<Item = &'a Received> + 'a {
    samples.iter().filter(move |s| s.label("job") == Some(job))
}

async fn post_reload(trawl: &Trawl) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::post(format!("{}/-/reload", trawl.url()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("POST /-/reload");
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn reload_gauge(trawl: &Trawl) -> f64 {
    metric_sum(&trawl.metrics().await, "trawl_config_last_reload_successful", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_changes_in_place_and_keeps_unchanged_loops() {
    let rx = Receiver::start().await;
    let (a, b, c, d) = (target("a").await, target("b").await, target("c").await, target("d").await);
    let v1 = config(&rx.url(), &[job("a", &a, ""), job("b", &b, ""), job("c", &c, "")].concat());
    let mut trawl = Trawl::start_with_args(&v1, &["--web.enable-lifecycle"]).await;
    let all_three = rx
        .wait_for(Duration::from_secs(20), |reqs| {
            let s: Vec<_> = reqs.iter().flat_map(|r| r.samples()).collect();
            ["a", "b", "c"]
                .iter()
                .all(|j| of_job(&s, j).filter(|x| x.label("__name__") == Some("m")).count() >= 2)
        })
        .await;
    assert!(all_three, "jobs a, b, c scraped:\n{}", trawl.proc.log());
    let hits_a_before = a.hits("/metrics");

    // v2: a unchanged (moved to the end of the file), b changed (a metric relabel rule), c
    // removed, d added.
    let b_changed =
        job("b", &b, "    metric_relabel_configs:\n      - {target_label: v, replacement: '2'}\n");
    let v2 = config(&rx.url(), &[b_changed, job("d", &d, ""), job("a", &a, "")].concat());
    std::fs::write(trawl.dir.path().join("trawl.yml"), v2).unwrap();
    let (status, body) = post_reload(&trawl).await;
    assert_eq!(status, 200, "reload answered {status}: {body}\n{}", trawl.proc.log());
    let reloaded_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert_eq!(reload_gauge(&trawl).await, 1.0);

    // Wait for: d scraped, b's relabeled series, c's stale markers (end-of-run: ~2 intervals).
    let settled = rx
        .wait_for(Duration::from_secs(20), |reqs| {
            let s: Vec<_> = reqs.iter().flat_map(|r| r.samples()).collect();
            let d_seen = of_job(&s, "d").any(|x| x.label("__name__") == Some("m"));
            let b_new = of_job(&s, "b").any(|x| x.label("v") == Some("2"));
            let c_stale =
                of_job(&s, "c").any(|x| x.label("__name__") == Some("up") && x.value_bits == STALE_NAN_BITS);
            let a_after = of_job(&s, "a")
                .filter(|x| x.label("__name__") == Some("m") && x.timestamp > reloaded_at + 2000)
                .count();
            d_seen && b_new && c_stale && a_after >= 1
        })
        .await;
    let samples = rx.accepted_samples();
    assert!(
        settled,
        "after the reload: {:#?}\n{}",
        samples.iter().rev().take(40).collect::<Vec<_>>(),
        trawl.proc.log()
    );

    // a: the same loop throughout: scrape_series_added is 1 once (its first scrape) and 0 after,
    // nothing of a went stale, and it was scraped about once a second all along.
    let added: Vec<f64> = of_job(&samples, "a")
        .filter(|x| x.label("__name__") == Some("scrape_series_added"))
        .map(|x| f64::from_bits(x.value_bits))
        .collect();
    assert!(added.len() >= 3, "{added:?}");
    assert!(added[0] > 0.0 && added[1..].iter().all(|v| *v == 0.0), "a's loop was restarted: {added:?}");
    assert!(of_job(&samples, "a").all(|x| x.value_bits != STALE_NAN_BITS), "a went stale");
    assert!(a.hits("/metrics") > hits_a_before, "a is still scraped");

    // b: its loop took the new rule and kept its state: the old series goes stale (it vanished),
    // the new one appears, `up` never went stale.
    assert!(
        of_job(&samples, "b").any(|x| x.label("__name__") == Some("m")
            && x.label("v").is_none()
            && x.value_bits == STALE_NAN_BITS),
        "b's old series got a stale marker"
    );
    assert!(
        of_job(&samples, "b")
            .filter(|x| x.label("__name__") == Some("up"))
            .all(|x| x.value_bits != STALE_NAN_BITS),
        "b's up went stale: the loop was stopped rather than reconfigured"
    );

    // c: removed: every series of it went stale; d: new.
    for name in ["m", "up", "scrape_duration_seconds"] {
        assert!(
            of_job(&samples, "c")
                .any(|x| x.label("__name__") == Some(name) && x.value_bits == STALE_NAN_BITS),
            "c's {name} stale"
        );
    }
    // The targets API no longer lists c and does list d.
    let targets = support::http_get(&format!("{}/api/v1/targets", trawl.url())).await.unwrap().1;
    assert!(
        targets.contains("\"scrapePool\":\"d\"") && !targets.contains("\"scrapePool\":\"c\""),
        "{targets}"
    );
    assert_eq!(trawl.interrupt(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_is_refused_and_the_old_one_keeps_running() {
    let rx = Receiver::start().await;
    let a = target("a").await;
    let good = config(&rx.url(), &job("a", &a, ""));
    let mut trawl = Trawl::start_with_args(&good, &["--web.enable-lifecycle"]).await;
    assert!(rx.wait_for_samples(1, Duration::from_secs(20)).await, "{}", trawl.proc.log());
    assert_eq!(reload_gauge(&trawl).await, 1.0);

    // SIGHUP with a config that has an unknown field on line 9.
    let broken = format!("{good}    scrape_intervall: 5s\n");
    let line = broken.lines().count();
    std::fs::write(trawl.dir.path().join("trawl.yml"), &broken).unwrap();
    let pid = trawl.proc.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let refused =
        eventually(Duration::from_secs(10), async || (reload_gauge(&trawl).await == 0.0).then_some(())).await;
    assert!(refused.is_some(), "gauge did not drop to 0:\n{}", trawl.proc.log());
    let log = trawl.proc.log();
    assert!(
        log.contains("Error reloading config")
            && log.contains(&format!("trawl.yml:{line}:"))
            && log.contains("scrape_intervall"),
        "the log says why, with file and line:\n{log}"
    );

    // The old config still runs: a keeps being scraped and delivered.
    let before = rx.accepted_samples().len();
    assert!(
        rx.wait_for_samples(before + 5, Duration::from_secs(20)).await,
        "scraping stopped after a failed reload"
    );

    // The HTTP reload says the same, with a 500.
    let (status, body) = post_reload(&trawl).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("failed to reload config") && body.contains("scrape_intervall"), "{body}");

    // Fixed: reload succeeds and the gauge goes back to 1.
    std::fs::write(trawl.dir.path().join("trawl.yml"), &good).unwrap();
    let (status, body) = post_reload(&trawl).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reload_gauge(&trawl).await, 1.0);
    assert_eq!(trawl.interrupt(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reload_needs_the_lifecycle_flag() {
    let rx = Receiver::start().await;
    let a = target("a").await;
    let mut trawl = Trawl::start(&config(&rx.url(), &job("a", &a, ""))).await;
    let (status, body) = post_reload(&trawl).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Lifecycle API is not enabled"), "{body}");
    assert_eq!(trawl.interrupt(), Some(0));
}

/// Jobs of trawl's targets API (active targets), as a set.
async fn active_jobs(trawl: &Trawl) -> std::collections::BTreeSet<String> {
    let Some((_, body)) = support::http_get(&format!("{}/api/v1/targets", trawl.url())).await else {
        return Default::default();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["labels"]["job"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `scrape_config_files` (Prometheus 2.43+): a glob relative to the config file, read again on
/// every reload, so adding or removing a file adds or removes its jobs; a duplicate job name
/// across files is refused with the file that holds it, and the running jobs stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_config_files_are_read_again_on_reload() {
    let (a, b) = (target("a").await, target("b").await);
    let main = "global:\n  scrape_interval: 1s\nscrape_config_files: ['jobs/*.yml']\n";
    let trawl = Trawl::start_with_args(main, &["--web.enable-lifecycle"]).await;
    let jobs_dir = trawl.dir.path().join("jobs");
    std::fs::create_dir(&jobs_dir).unwrap();
    let file = |job: &str, t: &TestTarget| format!("scrape_configs:\n{}", self::job(job, t, ""));
    std::fs::write(jobs_dir.join("a.yml"), file("a", &a)).unwrap();
    assert_eq!(post_reload(&trawl).await.0, 200);
    let want =
        |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<std::collections::BTreeSet<_>>();
    let got = eventually(Duration::from_secs(20), async || {
        (active_jobs(&trawl).await == want(&["a"])).then_some(())
    })
    .await;
    assert!(got.is_some(), "job a from jobs/a.yml: {:?}", active_jobs(&trawl).await);

    std::fs::write(jobs_dir.join("b.yml"), file("b", &b)).unwrap();
    std::fs::write(jobs_dir.join("notes.txt"), "not a match").unwrap();
    assert_eq!(post_reload(&trawl).await.0, 200);
    let got = eventually(Duration::from_secs(20), async || {
        (active_jobs(&trawl).await == want(&["a", "b"])).then_some(())
    })
    .await;
    assert!(got.is_some(), "a new file's job starts on reload: {:?}", active_jobs(&trawl).await);
    assert!(
        eventually(Duration::from_secs(20), async || (b.hits("/metrics") > 0).then_some(())).await.is_some()
    );

    std::fs::remove_file(jobs_dir.join("a.yml")).unwrap();
    std::fs::write(jobs_dir.join("c.yml"), file("b", &a)).unwrap();
    let (status, body) = post_reload(&trawl).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("c.yml") && body.contains("found multiple scrape configs with job name \"b\""),
        "{body}"
    );
    assert_eq!(active_jobs(&trawl).await, want(&["a", "b"]), "the running config stays");

    std::fs::remove_file(jobs_dir.join("c.yml")).unwrap();
    assert_eq!(post_reload(&trawl).await.0, 200);
    let got = eventually(Duration::from_secs(20), async || {
        (active_jobs(&trawl).await == want(&["b"])).then_some(())
    })
    .await;
    assert!(got.is_some(), "a removed file's job stops: {:?}", active_jobs(&trawl).await);
}

/// A collector config whose one job scrapes a port nothing listens on (a debug line per scrape),
/// at log level `level`.
fn collector_config(port: u16, level: &str) -> String {
    format!(
        "receivers:\n  prometheus:\n    config:\n      global: {{scrape_interval: 1s}}\n      scrape_configs:\n        \
         - job_name: down\n          static_configs: [{{targets: ['127.0.0.1:{port}']}}]\nexporters:\n  \
         debug: {{verbosity: basic}}\nservice:\n  telemetry: {{logs: {{level: {level}}}}}\n  pipelines:\n    \
         metrics: {{receivers: [prometheus], exporters: [debug]}}\n"
    )
}

/// Waits for two more scrapes than now, then returns how often a failed scrape was logged (a
/// debug line) in all.
async fn failed_scrape_lines_after_two_scrapes(trawl: &Trawl) -> usize {
    let scrapes = async || metric_sum(&trawl.metrics().await, "trawl_scrapes_total", "");
    let start = scrapes().await;
    let more =
        eventually(Duration::from_secs(20), async || (scrapes().await >= start + 2.0).then_some(())).await;
    assert!(more.is_some(), "scrapes continue:\n{}", trawl.proc.log());
    trawl.proc.log().matches("msg=\"Scrape failed.\"").count()
}

/// `service.telemetry.logs.level` is re-applied at every reload; `--log.level`, when given, wins
/// over it before and after a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_follows_the_config_at_reload_unless_the_flag_sets_it() {
    let down = support::free_port();
    let mut trawl =
        Trawl::start_with_args(&collector_config(down, "info"), &["--log.level=", "--web.enable-lifecycle"])
            .await;
    let write =
        |level: &str| std::fs::write(trawl.dir.path().join("trawl.yml"), collector_config(down, level));
    assert_eq!(failed_scrape_lines_after_two_scrapes(&trawl).await, 0, "info: no debug lines");

    write("debug").unwrap();
    assert_eq!(post_reload(&trawl).await.0, 200);
    assert!(
        trawl.proc.log().contains("msg=\"Log level changed.\" from=info to=debug"),
        "{}",
        trawl.proc.log()
    );
    assert!(failed_scrape_lines_after_two_scrapes(&trawl).await >= 1, "debug after the reload");

    write("warn").unwrap();
    assert_eq!(post_reload(&trawl).await.0, 200);
    assert!(trawl.proc.log().contains("to=warn"), "{}", trawl.proc.log());
    let at_warn = trawl.proc.log().matches("msg=\"Scrape failed.\"").count();
    assert_eq!(failed_scrape_lines_after_two_scrapes(&trawl).await, at_warn, "no debug lines at warn");
    assert_eq!(trawl.interrupt(), Some(0));

    // The flag wins: the config asks for debug, at start and again at reload.
    let mut flagged = Trawl::start_with_args(
        &collector_config(down, "debug"),
        &["--log.level=warn", "--web.enable-lifecycle"],
    )
    .await;
    assert_eq!(failed_scrape_lines_after_two_scrapes(&flagged).await, 0, "--log.level=warn at start");
    assert_eq!(post_reload(&flagged).await.0, 200);
    assert_eq!(failed_scrape_lines_after_two_scrapes(&flagged).await, 0, "and after a reload");
    assert_eq!(flagged.interrupt(), Some(0));
}
