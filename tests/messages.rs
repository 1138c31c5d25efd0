//! What trawl says when something is wrong, from the real binary: each message says what is wrong
//! and what to do, and is said once (issue 15, "today → goal"). Peers are real where a user meets
//! them (`promtool` decides what is a Prometheus setting); the Kubernetes API server is a scripted
//! one on loopback answering the errors a real one sends.
//!
//! No timing assertions: waits poll with generous timeouts.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{Proc, TestTarget, eventually, free_port};

fn trawl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trawl"));
    for var in CLUSTER_ENV {
        c.env_remove(var);
    }
    c
}

fn both(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Writes `text` as `<dir>/trawl.yml` and returns its path.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("trawl.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `trawl --config.file=<path>` to its exit (a config that does not load exits at once).
fn run_config(path: &Path, env_remove: &[&str]) -> Output {
    let mut c = trawl();
    for v in env_remove {
        c.env_remove(v);
    }
    c.arg(format!("--config.file={}", path.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .output()
        .unwrap()
}

/// Variables that make trawl find a cluster; removed so messages do not depend on the machine.
const CLUSTER_ENV: [&str; 3] = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"];

/// A running trawl whose log (stdout and stderr) goes to a file.
struct Running {
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(config: &str, args: &[&str]) -> Running {
        Running::start_on(free_port(), config, args)
    }

    fn start_on(port: u16, config: &str, args: &[&str]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), config);
        let mut all = vec![
            format!("--config.file={}", path.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let bin = Path::new(env!("CARGO_BIN_EXE_trawl"));
        Running { proc: Proc::start_without_env("trawl", bin, &all, dir.path(), &CLUSTER_ENV), _dir: dir }
    }

    fn log(&self) -> String {
        self.proc.log()
    }

    async fn wait_for_log(&self, want: &str) -> bool {
        eventually(Duration::from_secs(60), async || self.log().contains(want).then_some(())).await.is_some()
    }

    /// Sends `signal` and waits (up to 90 s: a flush may take the 20 s deadline) for the exit code.
    fn stop(&mut self, signal: &str) -> Option<i32> {
        self.proc.signal_and_wait(signal, Duration::from_secs(90))
    }
}

/// Today: `cannot deserialize null into string; use Option<String>`. Goal: the file, line and
/// variable, and what to set; in both dialects, for running and for `check config`.
#[test]
fn an_unset_env_variable_is_named_with_file_line_and_what_to_set() {
    const VAR: &str = "TRAWL_TEST_UNSET_ENDPOINT";
    let dir = tempfile::tempdir().unwrap();
    // (config, line of the reference, why)
    let cases = [
        (
            format!("global:\n  scrape_interval: 15s\nremote_write:\n  - url: ${{env:{VAR}}}\n"),
            4,
            "Prometheus dialect",
        ),
        (
            format!(
                "receivers:\n  prometheus:\n    config:\n      scrape_configs: []\nexporters:\n  prometheusremotewrite:\n    \
                 endpoint: ${{env:{VAR}}}\nservice:\n  pipelines:\n    metrics:\n      receivers: [prometheus]\n      \
                 exporters: [prometheusremotewrite]\n"
            ),
            7,
            "collector dialect",
        ),
    ];
    for (text, line, why) in &cases {
        let path = write_config(dir.path(), text);
        for (what, out) in [
            ("run", run_config(&path, &[VAR])),
            ("check config", trawl().env_remove(VAR).args(["check", "config"]).arg(&path).output().unwrap()),
        ] {
            let all = both(&out);
            assert_eq!(out.status.code(), Some(1), "{why}, {what}: {all}");
            let want = format!("{}:{line}:", path.display());
            assert!(all.contains(&want), "{why}, {what}: file and line {want} in {all}");
            assert!(all.contains(&format!("environment variable {VAR} is not set")), "{why}, {what}: {all}");
            assert!(
                all.contains(&format!("set {VAR} in trawl's environment")),
                "{why}, {what}: what to set: {all}"
            );
            assert!(!all.contains("Option<String>"), "{why}, {what}: no Rust types: {all}");
            assert_eq!(all.matches("is not set").count(), 1, "{why}, {what}: said once: {all}");
        }
    }
}

/// Today: `No such file or directory (os error 2): No such file or directory (os error 2)`.
/// Goal: the path, said once.
#[test]
fn a_missing_config_file_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere").join("trawl.yml");
    let out = run_config(&path, &[]);
    let all = both(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert_eq!(all.matches(&path.display().to_string()).count(), 1, "the path, once: {all}");
    assert_eq!(all.matches("No such file or directory").count(), 1, "the reason, once: {all}");
    assert!(all.contains("cannot read the config file"), "{all}");
}

/// Today: every error at start printed twice (the log line and an `eprintln!`), and `check
/// config` printed it on stdout and stderr. Goal: once, on stderr.
#[test]
fn errors_are_printed_once_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "global:\n  scrape_interval: 15x\n");
    let run = run_config(&path, &[]);
    let check = trawl().args(["check", "config"]).arg(&path).output().unwrap();
    for (what, out) in [("run", run), ("check config", check)] {
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert_eq!(stderr.matches("not a valid duration").count(), 1, "{what}: once on stderr: {stderr}");
        assert!(!stdout.contains("not a valid duration"), "{what}: not on stdout: {stdout}");
    }
}

/// Today: "unknown field `proxy_url`, expected one of …", which reads like a typo. Goal: a
/// Prometheus setting trawl does not support says so; a typo gets "did you mean". Which keys are
/// Prometheus settings is decided by the real `promtool check config` (2.42), which accepts them.
#[test]
fn prometheus_settings_trawl_lacks_are_not_called_typos() {
    let dir = tempfile::tempdir().unwrap();
    let job = |body: &str| format!("scrape_configs:\n  - job_name: j\n{body}");
    // (config, promtool accepts it, fragment of trawl's message, why)
    let cases: Vec<(String, bool, &str, &str)> = vec![
        (
            job("    dns_sd_configs: [{names: [a.example]}]\n"),
            true,
            "`dns_sd_configs` is a Prometheus setting (in scrape_configs) that trawl does not support yet",
            "a discovery mechanism",
        ),
        (
            job("    ec2_sd_configs: [{region: eu-west-1}]\n"),
            true,
            "`ec2_sd_configs` is a Prometheus setting",
            "another discovery mechanism",
        ),
        (
            "remote_read: [{url: 'http://x/'}]\n".into(),
            true,
            "`remote_read` is a Prometheus setting (in the top level) that trawl does not support yet",
            "a server feature",
        ),
        (
            "global:\n  query_log_file: /tmp/q.log\n".into(),
            true,
            "`query_log_file` is a Prometheus setting (in global)",
            "a global setting",
        ),
        (
            job("    scrape_intervall: 5s\n"),
            false,
            "unknown field `scrape_intervall`; did you mean `scrape_interval`?",
            "a typo",
        ),
        (
            "remote_write:\n  - url: http://x/\n    remote_timout: 5s\n".into(),
            false,
            "did you mean `remote_timeout`?",
            "a typo in remote_write",
        ),
    ];
    let promtool = support::require_binary("promtool");
    for (i, (text, prometheus_accepts, want, why)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.yml"));
        std::fs::write(&path, text).unwrap();
        if let Some(promtool) = &promtool {
            let theirs = Command::new(promtool).args(["check", "config"]).arg(&path).output().unwrap();
            assert_eq!(theirs.status.success(), *prometheus_accepts, "promtool, {why}:\n{}", both(&theirs));
        }
        let ours = trawl().args(["check", "config"]).arg(&path).output().unwrap();
        let all = both(&ours);
        assert_eq!(ours.status.code(), Some(1), "{why}: {all}");
        assert!(all.contains(want), "{why}: want {want:?} in {all}");
        assert!(all.contains(&format!("{}:", path.display())), "{why}: the file and line: {all}");
    }
}

/// Today: `failed to read an incluster environment variable`. Goal: which variable, and the
/// three ways to point trawl at an API server; said once, not at every retry.
#[tokio::test]
async fn outside_a_cluster_the_message_names_the_variable_and_the_ways_out() {
    let config = "scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs: [{role: pod}]\n";
    let mut t = Running::start(config, &["--log.level=debug"]);
    // The second attempt (5 s later) is logged at debug only.
    assert!(t.wait_for_log("still cannot start").await, "{}", t.log());
    assert_eq!(t.stop("TERM"), Some(0), "{}", t.log());
    let log = t.log();
    assert!(log.contains("KUBERNETES_SERVICE_HOST is not set"), "{log}");
    for way in ["run it in a pod", "set KUBECONFIG", "`kubeconfig_file` or `api_server`"] {
        assert!(log.contains(way), "{way:?} in {log}");
    }
    assert_eq!(log.matches("level=error").count(), 1, "one error line, not one per retry:\n{log}");
}

/// Today: `ApiError: : (Status { … code: 404 … })`. Goal: code, reason and the resource asked
/// for, in one line, with what to do about a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_api_errors_say_code_reason_and_resource() {
    let api = TestTarget::start().await;
    let forbidden = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:monitoring:trawl\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#;
    api.route("/api/v1/pods", move |_| (403, "application/json", forbidden.as_bytes().to_vec()));
    // /api/v1/nodes is not routed: a plain-text 404, as a proxy in front of an API server sends.
    let config = format!(
        "scrape_configs:\n  - job_name: p\n    kubernetes_sd_configs: [{{role: pod, api_server: 'http://{0}'}}]\n  \
         - job_name: n\n    kubernetes_sd_configs: [{{role: node, api_server: 'http://{0}'}}]\n",
        api.host()
    );
    let mut t = Running::start(&config, &[]);
    let want_403 = "the API server refused to list pods in all namespaces: 403 Forbidden: pods is forbidden: \
                    User \\\"system:serviceaccount:monitoring:trawl\\\" cannot list resource";
    let want_404 = "the API server refused to list nodes: 404 Not Found: not found";
    assert!(t.wait_for_log(want_403).await, "{}", t.log());
    assert!(t.wait_for_log(want_404).await, "{}", t.log());
    assert_eq!(t.stop("TERM"), Some(0));
    let log = t.log();
    assert!(log.contains("grant trawl's service account list and watch on pods"), "what to do: {log}");
    for raw in ["Status {", "ErrorResponse", "ApiError"] {
        assert!(!log.contains(raw), "no Rust structs ({raw}) in the log:\n{log}");
    }
}

/// Today: at SIGTERM without `--storage.path` while the receiver is down, trawl waits 20 s and
/// drops what it holds, saying little. Goal: one line with how many samples were dropped and that
/// `--storage.path` would have kept them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_are_counted_with_the_storage_path_hint() {
    let port = free_port();
    let receiver_down = free_port(); // nothing listens there
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: \
         ['127.0.0.1:{port}']}}]\nremote_write:\n  - url: http://127.0.0.1:{receiver_down}/api/v1/write\n"
    );
    let mut t = Running::start_on(port, &config, &[]);
    // Samples are queued once a send has failed at least once.
    assert!(t.wait_for_log("Remote write failed; retrying").await, "{}", t.log());
    assert_eq!(t.stop("TERM"), Some(0), "{}", t.log());
    let log = t.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("Dropped ")).collect();
    assert_eq!(lines.len(), 1, "one line:\n{log}");
    let line = lines[0];
    let n: u64 = line
        .split("Dropped ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {line}"));
    assert!(n > 0, "{line}");
    assert!(line.contains(&format!("samples={n}")), "the count as a field too: {line}");
    assert!(line.contains("with --storage.path they would have been kept on disk"), "{line}");
}
