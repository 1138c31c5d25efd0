//! The Grafana dashboard in `deploy/grafana-dashboard.json` queries what trawl really exposes: a
//! real Prometheus scrapes a running trawl (which scrapes a target and remote writes), and every
//! panel query, with Grafana's variables filled in, must parse, return series, and carry the
//! labels its legend names.

#[path = "support/rw_receiver.rs"]
mod rw_receiver;
mod support;

use std::time::Duration;

use support::{Prometheus, TEXT, TestTarget, Trawl, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_series_from_a_running_trawl() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json"))
            .unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries: Vec<(String, String, String)> = Vec::new(); // (panel, expr, legend)
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr").to_owned();
            let legend = t["legendFormat"].as_str().unwrap_or("").to_owned();
            queries.push((p["title"].as_str().unwrap_or("").to_owned(), expr, legend));
        }
    }
    assert!(queries.len() >= 20, "{} queries", queries.len());

    let rx = rw_receiver::Receiver::start().await;
    let target = TestTarget::start().await;
    target.route("/metrics", |n| (200, TEXT, format!("m {n}\n").into_bytes()));
    let mut trawl = Trawl::start(&format!(
        "global:\n  scrape_interval: 1s\nremote_write:\n  - url: {}\n    queue_config: {{batch_send_deadline: 100ms}}\n\
         scrape_configs:\n  - job_name: t\n    static_configs: [{{targets: ['{}']}}]\n",
        rx.url(),
        target.host()
    ))
    .await;
    let Some(prom) = Prometheus::start_with_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: trawl\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
        trawl.port
    ))
    .await
    else {
        return;
    };
    // rate() needs a few scrapes of trawl, and trawl must have sent something.
    let ready = eventually(Duration::from_secs(30), async || {
        let r = prom.query("rate(trawl_remote_write_samples_sent_total[10s]) > 0").await;
        (!r.is_empty()).then_some(())
    })
    .await;
    assert!(ready.is_some(), "Prometheus never saw trawl sending:\n{}", trawl.proc.log());

    for (panel, expr, legend) in &queries {
        let q = expr.replace("$__rate_interval", "10s").replace("$instance", ".+");
        let result = prom.query(&q).await;
        assert!(!result.is_empty(), "panel {panel:?}: {q} returned nothing");
        for name in legend.split("{{").skip(1).filter_map(|s| s.split_once("}}").map(|(n, _)| n.trim())) {
            assert!(
                result.iter().all(|(labels, _)| labels.contains_key(name)),
                "panel {panel:?}: legend uses {{{{{name}}}}} but {q} gives {result:?}"
            );
        }
    }
    assert_eq!(trawl.interrupt(), Some(0));
}
