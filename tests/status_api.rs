//! The debug endpoints in Prometheus' JSON shapes, over real HTTP, against the real Prometheus
//! (2.42) as oracle where it has the endpoint: `/api/v1/status/config` (the same YAML data but
//! for the listed differences, secrets hidden), `/api/v1/status/flags`, `/api/v1/status/buildinfo`
//! (the same keys), `/api/v1/targets/metadata` (the same entries for the same target), and
//! `/api/v1/targets/relabel_steps` (Prometheus 3's; 2.42 lacks it, so it is checked against the
//! outcome `/api/v1/targets` shows).
//!
//! No timing assertions: waits poll with generous timeouts.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Prometheus, TEXT, TestTarget, Trawl, eventually, http_get, urlencode};

const WAIT: Duration = Duration::from_secs(30);

/// Every inline credential of the config below, each distinct, none of which may show.
const SECRETS: [&str; 8] = [
    "oauth-secret",
    "basic-secret",
    "bearer-secret",
    "proxy-secret",
    "header-secret",
    "sigv4-secret",
    "auth-secret",
    "url-secret",
];

/// A config with every kind of block and secret Prometheus 2.42 also reads (no Kubernetes SD:
/// Debian's build lacks it), with `queue_config` written out where trawl's defaults differ.
const CONFIG: &str = r#"global:
  scrape_interval: 7s
  scrape_timeout: 5s
  external_labels: {node: a, region: eu}
scrape_configs:
  - job_name: oauth
    honor_labels: true
    params: {module: [http_2xx]}
    metrics_path: /probe
    scheme: https
    sample_limit: 100
    oauth2: {client_id: c, client_secret: oauth-secret, token_url: 'http://127.0.0.1:1/token', scopes: [a, b], endpoint_params: {aud: x}}
    tls_config: {server_name: example.com, insecure_skip_verify: true}
    relabel_configs:
      - {source_labels: [__address__], regex: '(.*):80', target_label: host, replacement: '$1'}
      - {action: labeldrop, regex: tmp_.*}
      - {source_labels: [a, b], separator: '-', target_label: c}
      - {action: hashmod, source_labels: [x], modulus: 4, target_label: shard}
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'go_.*', action: drop}
    static_configs: [{targets: ['127.0.0.1:1'], labels: {team: a}}]
    file_sd_configs: [{files: [/nonexistent/targets/*.json], refresh_interval: 30s}]
  - job_name: basic
    basic_auth: {username: u, password: basic-secret}
    http_sd_configs: [{url: 'http://127.0.0.1:1/sd', refresh_interval: 20s}]
  - job_name: bearer
    bearer_token: bearer-secret
    proxy_url: 'http://proxyuser:proxy-secret@127.0.0.1:3128'
    proxy_connect_header: {X-Auth: [header-secret]}
remote_write:
  - url: http://writer:url-secret@127.0.0.1:1/api/v1/write
    name: rw
    remote_timeout: 10s
    headers: {X-Tenant: a}
    sigv4: {region: eu-west-1, access_key: AKID, secret_key: sigv4-secret}
    queue_config: {capacity: 2500, max_shards: 200, max_samples_per_send: 500, retry_on_http_429: true}
    # 500: 2.42's default for both (trawl's are 2.44+'s 2000), set so the dumps compare.
    metadata_config: {max_samples_per_send: 500}
    write_relabel_configs: [{action: labelkeep, regex: '__name__|job|instance'}]
  - url: http://127.0.0.1:1/write2
    authorization: {credentials: auth-secret}
    queue_config: {capacity: 2500, max_shards: 200, max_samples_per_send: 500, retry_on_http_429: true}
    metadata_config: {send: false, max_samples_per_send: 500}
"#;

async fn get_json(url: &str) -> (u16, Value) {
    let (status, body) = http_get(url).await.unwrap_or_else(|| panic!("GET {url}"));
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}")))
}

/// The YAML of `/api/v1/status/config`.
async fn config_yaml(base: &str) -> String {
    let (status, v) = get_json(&format!("{base}/api/v1/status/config")).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("success")), "{v}");
    v["data"]["yaml"].as_str().expect("data.yaml").to_owned()
}

/// Keys trawl prints that Prometheus 2.42 does not, and why.
const TRAWL_ONLY: &[(&str, &str)] = &[
    ("track_timestamps_staleness", "Prometheus 2.48+ prints it"),
    ("enable_compression", "Prometheus 2.49+ prints it"),
    ("protobuf_message", "Prometheus 3 prints it"),
    ("disk_buffer", "trawl's own outage buffer"),
];

/// Removes what the two legitimately differ in (see [`TRAWL_ONLY`]; Prometheus fills
/// `evaluation_interval`, which an agent does not use), keys with empty values (2.42 prints some
/// `omitempty`-less empty strings newer versions leave out), and reads 2.42's `xxxxx` (a URL's
/// password) as `<secret>`.
fn normalize(v: &mut Value, prometheus: bool) {
    match v {
        Value::Object(m) => {
            m.retain(|k, v| {
                !(v.as_str() == Some("") || (!prometheus && TRAWL_ONLY.iter().any(|(t, _)| t == k)))
            });
            if prometheus {
                m.remove("evaluation_interval");
            }
            for v in m.values_mut() {
                normalize(v, prometheus);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| normalize(v, prometheus)),
        Value::String(s) if prometheus => *s = s.replace("xxxxx", "<secret>"),
        _ => {}
    }
}

/// The keys of each scrape config and remote_write entry, in the order written.
fn entry_keys(yaml: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for line in yaml.lines() {
        if let Some(rest) = line.strip_prefix("- ") {
            out.push(vec![rest.split(':').next().unwrap_or("").to_owned()]);
        } else if let (Some(rest), Some(last)) = (line.strip_prefix("  "), out.last_mut())
            && !rest.starts_with([' ', '-'])
        {
            let key = rest.split(':').next().unwrap_or("").to_owned();
            if !TRAWL_ONLY.iter().any(|(t, _)| *t == key) && key != "evaluation_interval" {
                last.push(key);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_config_is_prometheus_yaml_with_secrets_hidden() {
    let Some(prom) = Prometheus::start_with_config(CONFIG).await else { return };
    let mut trawl = Trawl::start(CONFIG).await;
    let ours = config_yaml(&trawl.url()).await;
    let theirs = config_yaml(&prom.url()).await;
    for secret in SECRETS {
        assert!(!ours.contains(secret), "{secret} shows in\n{ours}");
    }
    assert!(ours.contains("client_secret: <secret>") && ours.contains("secret_key: <secret>"), "{ours}");
    assert!(ours.contains("proxy_url: http://proxyuser:<secret>@127.0.0.1:3128"), "{ours}");

    let mut a: Value = serde_saphyr::from_str(&ours).expect("trawl's YAML parses");
    let mut b: Value = serde_saphyr::from_str(&theirs).expect("Prometheus' YAML parses");
    normalize(&mut a, false);
    normalize(&mut b, true);
    assert_eq!(a, b, "trawl:\n{ours}\nPrometheus 2.42:\n{theirs}");
    assert_eq!(entry_keys(&ours), entry_keys(&theirs), "key order\ntrawl:\n{ours}\nPrometheus:\n{theirs}");
    assert_eq!(trawl.interrupt(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_and_buildinfo_have_prometheus_shapes() {
    let Some(prom) = Prometheus::start_receiver().await else { return };
    let mut trawl = Trawl::start_with_args("scrape_configs: []\n", &["--memory.limit=none"]).await;
    let (status, flags) = get_json(&format!("{}/api/v1/status/flags", trawl.url())).await;
    assert_eq!((status, flags["status"].as_str()), (200, Some("success")));
    let data = flags["data"].as_object().expect("an object of flag → value");
    assert_eq!(data["config.file"], "trawl.yml");
    assert_eq!(data["web.listen-address"], format!("127.0.0.1:{}", trawl.port));
    assert_eq!(data["memory.limit"], "none", "as given");
    assert_eq!(data["log.level"], "debug");
    assert_eq!(data["web.enable-lifecycle"], "false", "a boolean flag not given");
    assert_eq!(data["storage.path"], "", "a flag without a value");
    assert!(data.values().all(Value::is_string), "values are strings, as Prometheus': {data:?}");

    let (_, ours) = get_json(&format!("{}/api/v1/status/buildinfo", trawl.url())).await;
    let (_, theirs) = get_json(&format!("{}/api/v1/status/buildinfo", prom.url())).await;
    let keys = |v: &Value| v["data"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&ours), keys(&theirs), "the same keys as Prometheus: {ours} vs {theirs}");
    assert_eq!(ours["data"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(trawl.interrupt(), Some(0));
}

/// A page with a counter, a gauge, a HELP-only family and an untyped series (no metadata).
const PAGE: &str = "# HELP http_requests_total Requests served, by code.\n# TYPE http_requests_total counter\n\
                    http_requests_total{code=\"200\"} 7\n# HELP room_celsius Temperature \"inside\".\n\
                    # TYPE room_celsius gauge\nroom_celsius 21.5\n# HELP only_help Help without a type.\n\
                    only_help 1\nbare 3\n";

fn sorted(mut v: Value) -> Value {
    if let Some(a) = v.as_array_mut() {
        a.sort_by_key(|e| e["metric"].as_str().unwrap_or("").to_owned());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_metadata_matches_prometheus() {
    let target = TestTarget::start().await;
    target.route("/metrics", |_| (200, TEXT, PAGE.as_bytes().to_vec()));
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: m\n    static_configs: [{{targets: ['{}']}}]\n",
        target.host()
    );
    let Some(prom) = Prometheus::start_with_config(&config).await else { return };
    let mut trawl = Trawl::start(&config).await;
    let queries = [
        "",
        "?metric=room_celsius",
        &format!("?match_target={}", urlencode("{job=\"m\"}")),
        &format!("?match_target={}", urlencode("{job=\"other\"}")),
        &format!("?match_target={}&metric=only_help", urlencode("{instance=~\"127.0.0.1:.*\"}")),
        "?limit=0",
    ];
    for q in queries {
        // Both have scraped the page at least once when both list the counter.
        let got = eventually(WAIT, async || {
            let (_, ours) = get_json(&format!("{}/api/v1/targets/metadata{q}", trawl.url())).await;
            let (_, theirs) = get_json(&format!("{}/api/v1/targets/metadata{q}", prom.url())).await;
            let (ours, theirs) = (sorted(ours["data"].clone()), sorted(theirs["data"].clone()));
            (ours == theirs && (q.contains("other") || q.contains("limit") || ours != json!([])))
                .then_some(())
        })
        .await;
        if got.is_none() {
            let (_, ours) = get_json(&format!("{}/api/v1/targets/metadata{q}", trawl.url())).await;
            let (_, theirs) = get_json(&format!("{}/api/v1/targets/metadata{q}", prom.url())).await;
            panic!("{q:?}: trawl {ours}\nPrometheus {theirs}");
        }
    }
    let (status, bad) = get_json(&format!("{}/api/v1/targets/metadata?limit=x", trawl.url())).await;
    assert_eq!(status, 400);
    assert_eq!(bad, json!({"status": "error", "errorType": "bad_data", "error": "limit must be a number"}));
    assert_eq!(trawl.interrupt(), Some(0));
}

/// The relabel steps of every discovered target end where `/api/v1/targets` says the target
/// went: kept targets have the target's labels once `__` labels are removed and `instance`
/// defaulted, dropped ones end with `keep: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabel_steps_end_where_the_targets_api_says() {
    let config = "global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: r\n    static_configs:\n      \
                  - targets: ['a.example:9100', 'b.example:9100', 'skip.example:1']\n        labels: {env: prod}\n    \
                  relabel_configs:\n      - {source_labels: [__address__], regex: 'skip.*', action: drop}\n      \
                  - {source_labels: [__address__], regex: '([^.]+)\\..*', target_label: host}\n      \
                  - {source_labels: [env, host], separator: '/', target_label: path}\n      \
                  - {action: labeldrop, regex: env}\n";
    let mut trawl = Trawl::start(config).await;
    let targets = eventually(WAIT, async || {
        let (_, v) = get_json(&format!("{}/api/v1/targets", trawl.url())).await;
        (v["data"]["activeTargets"].as_array()?.len() == 2).then_some(v)
    })
    .await
    .expect("two active targets");
    let mut seen = 0;
    for (kind, list) in [("active", "activeTargets"), ("dropped", "droppedTargets")] {
        for t in targets["data"][list].as_array().unwrap() {
            let labels = serde_json::to_string(&t["discoveredLabels"]).unwrap();
            let url = format!(
                "{}/api/v1/targets/relabel_steps?scrapePool=r&labels={}",
                trawl.url(),
                urlencode(&labels)
            );
            let (status, v) = get_json(&url).await;
            assert_eq!(status, 200, "{v}");
            let steps = v["data"]["steps"].as_array().expect("steps");
            assert_eq!(steps.len(), 4, "one per rule: {v}");
            assert_eq!(steps[0]["rule"]["action"], "drop");
            assert_eq!(steps[0]["rule"]["source_labels"], json!(["__address__"]));
            let last = &steps[3];
            if kind == "dropped" {
                assert_eq!((&last["keep"], &last["output"]), (&json!(false), &json!({})), "{v}");
                assert_eq!(steps[0]["keep"], false, "dropped by the first rule: {v}");
            } else {
                assert_eq!(last["keep"], true, "{v}");
                let mut out: serde_json::Map<String, Value> = last["output"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| !k.starts_with("__"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                out.entry("instance").or_insert(t["discoveredLabels"]["__address__"].clone());
                assert_eq!(Value::Object(out), t["labels"], "{v}");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
    for (q, err) in [
        ("labels=%7B%7D", "no scrapePool parameter provided"),
        ("scrapePool=r", "no labels parameter provided"),
        ("scrapePool=nope&labels=%7B%7D", "error retrieving scrape config: scrape pool \"nope\" not found"),
        ("scrapePool=r&labels=x", "error parsing labels"),
    ] {
        let (status, v) = get_json(&format!("{}/api/v1/targets/relabel_steps?{q}", trawl.url())).await;
        assert_eq!(
            (status, v["status"].as_str(), v["errorType"].as_str()),
            (400, Some("error"), Some("bad_data"))
        );
        assert!(v["error"].as_str().unwrap_or("").starts_with(err), "{q}: {v}");
    }
    assert_eq!(trawl.interrupt(), Some(0));
}
