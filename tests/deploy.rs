//! The deployment files, checked as a user's cluster would: `deploy/check.py` renders the Helm
//! chart (Helm's own Go code via helm-python-sdk), validates every object of the chart and of the
//! plain manifests against the Kubernetes schemas (kubernetes-validate, strict), proves the chart
//! renders the same objects as the plain manifests, and runs `trawl check config` on every
//! rendered trawl.yml, including the OpenTelemetry Collector values given to the chart as-is.

mod support;

#[test]
fn chart_and_manifests_render_and_validate() {
    if !support::require_python_modules(&["helm_python", "kubernetes_validate", "yaml"]) {
        return;
    }
    let out = std::process::Command::new("python3")
        .arg("deploy/check.py")
        .arg("--trawl")
        .arg(env!("CARGO_BIN_EXE_trawl"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deploy/check.py found problems (see above)");
    assert!(stdout.contains("all deployment checks passed"));
    assert!(stdout.contains("dialect: OpenTelemetry Collector"), "the collector values were checked");
}
