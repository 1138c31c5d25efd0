//! The command line: `trawl check config`, `trawl check metrics`, and the quickstart printing
//! what it scrapes when no remote_write is configured.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

fn trawl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trawl"))
}

#[test]
fn check_config_accepts_the_examples() {
    for f in ["examples/quickstart.yml", "examples/remote-write.yml", "examples/managed-backends.yml"] {
        let out =
            trawl().args(["check", "config", f]).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
        assert!(
            out.status.success(),
            "{f}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_config_names_file_line_and_reason() {
    // (config, line, reason fragment, why)
    let cases: &[(&str, u32, &str, &str)] = &[
        (
            "global:\n  scrape_interval: 15s\n  scrape_intervall: 30s\n",
            3,
            "unknown field",
            "a typo in a field name",
        ),
        (
            "scrape_configs:\n  - job_name: a\n  - job_name: b\n  - job_name: a\n",
            4,
            "multiple scrape configs",
            "duplicate job",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targetz: [x]\n",
            4,
            "unknown field",
            "nested unknown field",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, line, frag, why) in cases {
        let path = dir.path().join("bad.yml");
        std::fs::write(&path, text).unwrap();
        let out = trawl().args(["check", "config"]).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{why}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("{}:{line}:", path.display());
        assert!(stderr.contains(&want) && stderr.contains(frag), "{why}: want {want} … {frag} in {stderr}");
    }
}

#[test]
fn check_metrics_reports_the_offending_line() {
    let run = |input: &str, format: &str| {
        let mut child = trawl()
            .args(["check", "metrics", &format!("--format={format}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = run("# TYPE a counter\na_total 1\n", "text");
    assert!(ok.status.success());
    let bad = run("a 1\nb{x=\"1\",x=\"2\"} 2\n", "text");
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("line 2") && err.contains("b{x="), "{err}");
    let no_eof = run("# TYPE a counter\na_total 1\n", "openmetrics");
    assert_eq!(no_eof.status.code(), Some(1), "OpenMetrics requires # EOF");
}

/// The README's first command: with no remote_write, trawl prints the samples it scraped.
#[test]
fn quickstart_prints_scraped_samples() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    std::fs::write(
        dir.path().join("q.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let out_path = dir.path().join("out.txt");
    let mut child = trawl()
        .arg("--config.file=q.yml")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(dir.path())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.contains("trawl_scrapes_total{") && text.contains("up{") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(text.contains("up{instance=\"127.0.0.1:"), "printed: {text}");
    assert!(text.contains("trawl_scrapes_total{"), "printed: {text}");
    assert_eq!(status.code(), Some(0));
}

/// The config shipped in the DaemonSet manifest loads (with the node name the downward API sets).
#[test]
fn daemonset_manifest_config_is_valid() {
    #[derive(serde::Deserialize)]
    struct ConfigMap {
        data: std::collections::BTreeMap<String, String>,
    }
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/daemonset.yaml")).unwrap();
    let first = text.split("\n---\n").next().unwrap();
    // Fields other than `data` (apiVersion, kind, metadata) are ignored.
    let cm: ConfigMap = serde_saphyr::from_str(first).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trawl.yml");
    std::fs::write(&path, &cm.data["trawl.yml"]).unwrap();
    let out = trawl().args(["check", "config"]).arg(&path).env("KUBE_NODE_NAME", "node-a").output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two trawl processes on one `--storage.path` would write the same disk buffer: the second
/// refuses to start, naming the lock; once the first has exited, the path is free again.
#[tokio::test]
async fn a_second_process_on_the_same_storage_path_refuses_to_start() {
    let storage = tempfile::tempdir().unwrap();
    let flag = format!("--storage.path={}", storage.path().display());
    let config = "global:\n  scrape_interval: 1s\nscrape_configs: []\n";
    let mut first = support::Trawl::start_with_args(config, &[&flag]).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yml"), config).unwrap();
    let second = tokio::task::spawn_blocking({
        let (flag, dir) = (flag.clone(), dir.path().to_owned());
        move || {
            trawl()
                .args([
                    "--config.file=t.yml",
                    &format!("--web.listen-address=127.0.0.1:{}", support::free_port()),
                ])
                .arg(&flag)
                .current_dir(dir)
                .output()
                .unwrap()
        }
    });
    let second = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second process exits instead of running")
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("is in use by another trawl process"), "stderr: {stderr}");

    assert_eq!(first.interrupt(), Some(0), "the first exits cleanly:\n{}", first.proc.log());
    let mut third = support::Trawl::start_with_args(config, &[&flag]).await;
    assert_eq!(third.interrupt(), Some(0), "the path is free once the first is gone:\n{}", third.proc.log());
}

/// `trawl check config` and Prometheus 2.42's `promtool check config` agree on configs using
/// `oauth2`, `proxy_url`/`proxy_connect_header`, `sigv4` and `http_sd_configs` (the keys 2.42
/// knows; `no_proxy`, `proxy_from_environment` and `scrape_config_files` came later and are
/// covered by their own tests): what one accepts the other accepts, what one refuses the other
/// refuses.
#[test]
fn promtool_agrees_on_oauth2_proxy_sigv4_and_http_sd() {
    let Some(promtool) = support::require_binary("promtool") else { return };
    let job = |body: &str| format!("scrape_configs:\n  - job_name: j\n{body}");
    let rw = |body: &str| format!("remote_write:\n  - url: https://aps.example/api/v1/remote_write\n{body}");
    let oauth2 = "    oauth2:\n      client_id: c\n      client_secret: s\n      token_url: https://sso.example/token\n";
    // (config, accepted, why)
    let cases: Vec<(String, bool, &str)> = vec![
        (
            job(
                "    oauth2:\n      client_id: c\n      client_secret_file: /run/secret\n      token_url: https://sso.example/token\n      \
                 scopes: [a, b]\n      endpoint_params: {audience: x}\n      tls_config: {insecure_skip_verify: true}\n      \
                 proxy_url: http://proxy:3128\n    proxy_url: http://user:pw@proxy:3128\n    proxy_connect_header:\n      \
                 X-Tenant: [a, b]\n    http_sd_configs:\n      - url: http://sd.example/targets\n        refresh_interval: 30s\n        \
                 basic_auth: {username: u, password: p}\n",
            ),
            true,
            "every key together",
        ),
        (
            rw(
                "    sigv4:\n      region: eu-west-1\n      access_key: AKID\n      secret_key: s\n      profile: p\n      role_arn: arn:aws:iam::1:role/r\n",
            ),
            true,
            "sigv4 keys",
        ),
        (rw("    sigv4: {}\n"), true, "sigv4 from the default chain"),
        (rw(oauth2), true, "oauth2 on remote write"),
        (
            job("    oauth2:\n      client_secret: s\n      token_url: https://sso.example/token\n"),
            false,
            "oauth2 without client_id",
        ),
        (job("    oauth2:\n      client_id: c\n      client_secret: s\n"), false, "oauth2 without token_url"),
        (
            job(&format!("{oauth2}      client_secret_file: /f\n")),
            false,
            "client_secret and client_secret_file",
        ),
        (job(&format!("{oauth2}    basic_auth: {{username: u}}\n")), false, "oauth2 and basic_auth"),
        (job(&format!("{oauth2}    bearer_token: t\n")), false, "oauth2 and bearer_token"),
        (job(&format!("{oauth2}    authorization: {{credentials: t}}\n")), false, "oauth2 and authorization"),
        (
            job("    oauth2:\n      client_id: c\n      token_url: https://t/\n      bogus: 1\n"),
            false,
            "unknown oauth2 key",
        ),
        (job("    proxy_connect_header:\n      X-A: [b]\n"), false, "proxy_connect_header without proxy_url"),
        (rw("    sigv4:\n      access_key: AKID\n"), false, "sigv4 access_key without secret_key"),
        (rw("    sigv4: {region: r}\n    basic_auth: {username: u}\n"), false, "sigv4 and basic_auth"),
        (rw("    sigv4: {region: r}\n    bearer_token: t\n"), false, "sigv4 and a legacy bearer token"),
        (rw(&format!("    sigv4: {{region: r}}\n{oauth2}")), false, "sigv4 and oauth2"),
        (rw("    sigv4: {region: r, bogus: 1}\n"), false, "unknown sigv4 key"),
        (job("    http_sd_configs:\n      - refresh_interval: 1m\n"), false, "http_sd without url"),
        (job("    http_sd_configs:\n      - url: ftp://sd/x\n"), false, "http_sd with another scheme"),
        (
            job("    http_sd_configs:\n      - url: http://sd/x\n        bogus: 1\n"),
            false,
            "unknown http_sd key",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, accepted, why)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.yml"));
        std::fs::write(&path, text).unwrap();
        let ours = trawl().args(["check", "config"]).arg(&path).output().unwrap();
        let theirs = Command::new(&promtool).args(["check", "config"]).arg(&path).output().unwrap();
        let show = |o: &std::process::Output| {
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
        };
        assert_eq!(theirs.status.success(), *accepted, "promtool, {why}:\n{text}\n{}", show(&theirs));
        assert_eq!(ours.status.success(), *accepted, "trawl, {why}:\n{text}\n{}", show(&ours));
    }
}
