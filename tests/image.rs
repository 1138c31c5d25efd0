//! The container image users deploy (`deploy/Dockerfile`), built and run with podman as
//! `deploy/daemonset.yaml` runs it. The Dockerfile's final stage is built from a static musl
//! binary that cargo builds here (a build context named `build` stands in for the builder stage,
//! whose rust base image would come from a registry), then run read-only as user 65534 with all
//! capabilities dropped, the DaemonSet's args and env, and a mounted config. Checked: the image's
//! files and user, `/-/ready`, a scrape of a service name from /etc/hosts, a TLS scrape verified
//! against the image's CA bundle, remote write to a real Prometheus at the DaemonSet's service
//! address resolved by DNS through the kubelet's search list, and a clean exit on SIGTERM
//! within the grace period.
//!
//! Not checked here: the builder stage (no registry), the release image's size (measured in
//! deploy/README.md), Kubernetes discovery (tests/kubernetes*.rs). Needs root, podman, runc and
//! the musl target (`.ci/run` installs them); what podman needs in a sandbox is in
//! [`CONTAINERS_CONF`].

mod support;
#[path = "support/tls_server.rs"]
mod tls_server;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Prometheus, TEXT, TestTarget, eventually, http_get, require_binary};

/// How long the test waits for something that should happen within a few scrapes.
const WAIT: Duration = Duration::from_secs(60);

/// Kubernetes' default `terminationGracePeriodSeconds` (the DaemonSet sets none): the kubelet
/// sends SIGTERM, then SIGKILL after this long, as `podman stop --time` does.
const GRACE_PERIOD_SECS: u64 = 30;

/// podman's settings, through `CONTAINERS_CONF` (which replaces the system's containers.conf
/// files, so nothing under /etc is read or changed). Each was needed on the machine this test was
/// written on (Debian 12, podman 4.3.1, cgroup v1, no systemd):
/// - `default_ulimits = []`: otherwise podman raises RLIMIT_NOFILE for a root container, which
///   the sandbox refuses ("error setting rlimit type 7: operation not permitted");
/// - runc: crun 1.8 refuses the cgroup layout ("cgroups in hybrid mode not supported");
/// - cgroupfs: there is no systemd to ask ("systemd not running on this host, cannot use systemd
///   cgroups manager").
const CONTAINERS_CONF: &str = "[containers]\ndefault_ulimits = []\n\n\
                               [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n";

/// The target deploy/Dockerfile's builder stage builds for (checked against the Dockerfile).
const TARGET: &str = "x86_64-unknown-linux-musl";

/// The node name the test gives the container for `KUBE_NODE_NAME`.
const NODE: &str = "image-test-node";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_runs_as_the_daemonset_runs_it() {
    let Some(podman_bin) = require_binary("podman") else { return };
    if require_binary("runc").is_none() || !musl_toolchain() {
        return;
    }
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        // Rootful podman, and the DNS server below binds port 53.
        support::unavailable("the image test needs root", "run it as root, as .ci/run does");
        return;
    }
    let Some(prometheus) = Prometheus::start_receiver().await else { return };
    let ds = DaemonSet::read();
    let dir = tempfile::tempdir().expect("tempdir");
    let podman = Podman::new(podman_bin, dir.path());
    let run_id = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let guard = Cleanup {
        podman: podman.clone(),
        container: format!("trawl-image-test-{run_id}"),
        image: format!("localhost/trawl-image-test:{run_id}"),
    };

    // The image: the Dockerfile's final stage, from what the builder stage would leave in /out
    // and /etc/ssl/certs. The bundle is this machine's (on Debian, the builder image's, plus any
    // local CAs) and the test CA, so that the TLS scrape below succeeds only if trawl reads the
    // bundle at the path the Dockerfile puts it.
    let binary = build_static_trawl();
    let context = dir.path().join("build");
    std::fs::create_dir_all(context.join("out")).unwrap();
    std::fs::create_dir_all(context.join("etc/ssl/certs")).unwrap();
    std::fs::copy(&binary, context.join("out/trawl")).expect("copy the static trawl");
    let mut bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.extend(std::fs::read(tls_server::fixture("ca.pem")).expect("test CA"));
    std::fs::write(context.join("etc/ssl/certs/ca-certificates.crt"), bundle).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Dockerfile");
    let builder = std::fs::read_to_string(&dockerfile).expect("deploy/Dockerfile");
    assert!(builder.contains(&format!("--target {TARGET}")), "the Dockerfile builds for {TARGET}");
    podman.ok(["build", "--pull=never", "--layers=false", "--quiet"].iter().map(OsStr::new).chain([
        OsStr::new("--build-context"),
        OsStr::new(&format!("build={}", context.display())),
        OsStr::new("--file"),
        dockerfile.as_os_str(),
        OsStr::new("--tag"),
        OsStr::new(&guard.image),
        empty.as_os_str(),
    ]));
    check_image(&podman, &guard.image);

    // The peers, on the host's loopback: a plain target reached through an /etc/hosts entry, a
    // TLS target (its certificate is for receiver.test), and Prometheus at the DaemonSet's own
    // remote-write host, resolved by DNS as in a pod: a short name through the search list.
    let target = TestTarget::start().await;
    target.route("/metrics", |_| (200, TEXT, b"image_test_plain 1\n".to_vec()));
    let tls_target = tls_server::start(false, "image_test_tls 2\n");
    let remote_write_host = ds.remote_write_host();
    let namespace = ds.namespace.clone();
    let remote_write_fqdn = format!("{remote_write_host}.cluster.local");
    let dns = Dns::start(HashMap::from([(remote_write_fqdn.clone(), Ipv4Addr::LOCALHOST)]));

    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    node: ${{env:KUBE_NODE_NAME}}\n\
         scrape_configs:\n\
         \x20 - job_name: app\n    static_configs:\n      - targets: [app.default.svc.cluster.local:{}]\n\
         \x20 - job_name: tls\n    scheme: https\n    static_configs:\n      - targets: [receiver.test:{}]\n\
         remote_write:\n  - url: http://{remote_write_host}:{}/api/v1/write\n    queue_config:\n      \
         batch_send_deadline: 500ms\n",
        target.addr.port(),
        tls_target.port(),
        prometheus.port,
    );
    std::fs::write(config_dir.join(&ds.config_file_name), config).unwrap();
    let buffer_dir = dir.path().join("buffer");
    std::fs::create_dir(&buffer_dir).unwrap();
    // As the pod's fsGroup makes the emptyDir writable for the user.
    std::os::unix::fs::chown(&buffer_dir, Some(ds.uid), Some(ds.gid)).expect("chown the buffer dir");

    // The DaemonSet's args, with one change: the container shares the host's network (so it can
    // reach the peers on loopback), so it listens on a free port rather than the fixed one.
    let port = support::free_port();
    let args: Vec<String> = ds
        .args
        .iter()
        .map(|arg| match arg.strip_prefix("--web.listen-address=") {
            Some(addr) => {
                assert!(addr.starts_with("0.0.0.0:"), "the DaemonSet listens on all addresses: {arg}");
                format!("--web.listen-address=0.0.0.0:{port}")
            }
            None => arg.clone(),
        })
        .collect();
    let mut run: Vec<String> = [
        "run",
        "--detach",
        "--name",
        &guard.container,
        // readOnlyRootFilesystem: true, without the tmpfs mounts podman adds by default and the
        // kubelet does not.
        "--read-only",
        "--read-only-tmpfs=false",
        "--user",
        &format!("{}:{}", ds.uid, ds.gid),
        // capabilities: {drop: [ALL]}, allowPrivilegeEscalation: false.
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--network=host",
        // The resolv.conf the kubelet writes for a ClusterFirst pod in the DaemonSet's namespace.
        &format!("--dns={}", dns.ip),
        &format!("--dns-search={namespace}.svc.cluster.local"),
        "--dns-search=svc.cluster.local",
        "--dns-search=cluster.local",
        "--dns-option=ndots:5",
        "--add-host=app.default.svc.cluster.local:127.0.0.1",
        "--add-host=receiver.test:127.0.0.1",
        &format!("--env={}={NODE}", ds.node_name_env),
        &format!("--volume={}:{}:ro", config_dir.display(), ds.config_mount),
        &format!("--volume={}:{}", buffer_dir.display(), ds.buffer_mount),
        &format!("--memory={}", ds.memory_limit),
        &guard.image,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run.extend(args);
    podman.ok(&run);

    let ready = eventually(WAIT, async || {
        http_get(&format!("http://127.0.0.1:{port}/-/ready")).await.filter(|(s, _)| *s == 200)
    })
    .await;
    assert!(
        ready.is_some(),
        "trawl in the container did not become ready:\n{}",
        podman.logs(&guard.container)
    );

    // The process runs as the DaemonSet's user (as the host sees it: no user namespace here).
    let pid = podman.ok(["inspect", "--format", "{{.State.Pid}}", &guard.container]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the container's process");
    for (field, id) in [("Uid:", ds.uid), ("Gid:", ds.gid)] {
        let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_default();
        // Real, effective, saved and filesystem ids.
        let ids: Vec<u32> = line.split_whitespace().filter_map(|s| s.parse().ok()).collect();
        assert_eq!(ids, [id; 4], "{field}{line}");
    }
    assert!(
        buffer_dir.join("lock").exists(),
        "trawl took its lock in --storage.path, the only writable place"
    );

    let landed = eventually(WAIT, async || {
        let plain = prometheus.query(&format!("image_test_plain{{job=\"app\",node=\"{NODE}\"}}")).await;
        let tls = prometheus.query(&format!("image_test_tls{{job=\"tls\",node=\"{NODE}\"}}")).await;
        (plain.first().map(|s| s.1) == Some(1.0) && tls.first().map(|s| s.1) == Some(2.0)).then_some(())
    })
    .await;
    if landed.is_none() {
        let targets = http_get(&format!("http://127.0.0.1:{port}/api/v1/targets")).await.map(|r| r.1);
        panic!(
            "both targets' samples did not reach Prometheus through the container\ntargets: {targets:?}\n\
             DNS questions: {:?}\n{}",
            dns.questions(),
            podman.logs(&guard.container)
        );
    }
    assert!(
        dns.questions().contains(&remote_write_fqdn),
        "resolved through the search list: {:?}",
        dns.questions()
    );
    assert!(target.hits("/metrics") > 0);

    // SIGTERM, SIGKILL after the grace period: exit code 0 means trawl stopped on SIGTERM (as PID
    // 1, which ignores signals it has no handler for) and did not wait to be killed (137).
    podman.ok(["stop", "--time", &GRACE_PERIOD_SECS.to_string(), &guard.container]);
    let code = podman.ok(["inspect", "--format", "{{.State.ExitCode}}", &guard.container]);
    let logs = podman.logs(&guard.container);
    assert_eq!(code, "0", "trawl's exit code after SIGTERM:\n{logs}");
    assert!(logs.contains("signal=SIGTERM") && logs.contains("msg=Stopped."), "a clean shutdown:\n{logs}");
    drop(guard);
}

/// Checks the image's config and files: exactly the binary and the CA bundle, run as nobody.
fn check_image(podman: &Podman, image: &str) {
    let inspect: serde_json::Value =
        serde_json::from_str(&podman.ok(["image", "inspect", image])).expect("podman image inspect JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65534:65534", "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/trawl"]), "{config}");
    eprintln!("test image (debug binary, not the release size): {} bytes", inspect[0]["Size"]);
    let root = PathBuf::from(podman.ok(["image", "mount", image]));
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("read the mounted image") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    podman.ok(["image", "unmount", image]);
    files.sort();
    assert_eq!(files, ["etc/ssl/certs/ca-certificates.crt", "trawl"], "the image's files");
}

/// Builds trawl as the Dockerfile's builder stage does (static, for [`TARGET`]), but in debug and
/// without debuginfo to keep CI's added cost down; returns the binary's path.
fn build_static_trawl() -> PathBuf {
    // <target dir>/<profile>/trawl: sharing the target dir shares the host-side build scripts and
    // proc-macros; the target's crates are built once more, under <target dir>/<TARGET>/.
    let test_binary = Path::new(env!("CARGO_BIN_EXE_trawl"));
    let target_dir = test_binary.parent().and_then(Path::parent).expect("the target dir");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--locked", "--bin", "trawl", "--target", TARGET, "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // The highest-precedence form, so that RUSTFLAGS in the environment do not change what is
        // built; with --target it applies to the target's crates only.
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=0")
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the static trawl failed (see above)");
    target_dir.join(TARGET).join("debug/trawl")
}

/// Whether this machine can build for [`TARGET`]: its standard library (rustup) and musl-gcc
/// for the C parts (Debian's musl-tools), as the Dockerfile's builder installs them.
fn musl_toolchain() -> bool {
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if !libdir.is_some_and(|d| d.join("self-contained/libc.a").is_file()) {
        support::unavailable(
            &format!("the {TARGET} target is not installed"),
            &format!("rustup target add {TARGET}"),
        );
        return false;
    }
    require_binary("musl-gcc").is_some()
}

/// What the test takes from deploy/daemonset.yaml, so that it runs the image as the manifest does.
struct DaemonSet {
    namespace: String,
    args: Vec<String>,
    uid: u32,
    gid: u32,
    config_mount: String,
    config_file_name: String,
    buffer_mount: String,
    node_name_env: String,
    /// `resources.limits.memory` in podman's units.
    memory_limit: String,
    remote_write_url: String,
}

impl DaemonSet {
    fn read() -> DaemonSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/daemonset.yaml");
        let text = std::fs::read_to_string(&path).expect("deploy/daemonset.yaml");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("the manifests parse");
        let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet");
        let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").expect("a ConfigMap");
        let pod = &ds["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let str_of = |v: &serde_json::Value| v.as_str().unwrap_or_else(|| panic!("a string: {v}")).to_owned();
        let mount = |name: &str| {
            let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
            str_of(&mounts.iter().find(|m| m["name"] == name).expect("the volume mount")["mountPath"])
        };
        let args: Vec<String> = container["args"].as_array().expect("args").iter().map(str_of).collect();
        let config_file = args.iter().find_map(|a| a.strip_prefix("--config.file=")).expect("--config.file");
        let (config_dir, config_file_name) = config_file.rsplit_once('/').expect("an absolute config path");
        assert_eq!(config_dir, mount("config"), "the config file is in the config volume");
        assert!(
            args.contains(&format!("--storage.path={}", mount("buffer"))),
            "the buffer volume is the storage path"
        );
        let memory = str_of(&container["resources"]["limits"]["memory"]);
        let memory_limit = match memory.strip_suffix("Mi") {
            Some(mib) => format!("{mib}m"),
            None => panic!("a memory limit in Mi: {memory}"),
        };
        let config: serde_json::Value =
            serde_saphyr::from_str(cm["data"]["trawl.yml"].as_str().expect("trawl.yml"))
                .expect("trawl.yml parses");
        let node_name_env = container["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"))
            .map(|e| str_of(&e["name"]))
            .expect("the node name from the downward API");
        DaemonSet {
            namespace: str_of(&ds["metadata"]["namespace"]),
            uid: pod["securityContext"]["runAsUser"].as_u64().expect("runAsUser") as u32,
            gid: pod["securityContext"]["runAsGroup"].as_u64().expect("runAsGroup") as u32,
            config_mount: mount("config"),
            config_file_name: config_file_name.to_owned(),
            buffer_mount: mount("buffer"),
            node_name_env,
            memory_limit,
            remote_write_url: str_of(&config["remote_write"][0]["url"]),
            args,
        }
    }

    /// The host of the ConfigMap's remote-write URL (a service's short name, e.g.
    /// `prometheus.monitoring.svc`).
    fn remote_write_host(&self) -> String {
        let uri: hyper::Uri = self.remote_write_url.parse().expect("the remote-write URL");
        uri.host().expect("a host").to_owned()
    }
}

/// podman with [`CONTAINERS_CONF`].
#[derive(Clone)]
struct Podman {
    bin: PathBuf,
    conf: PathBuf,
}

impl Podman {
    fn new(bin: PathBuf, dir: &Path) -> Podman {
        let conf = dir.join("containers.conf");
        std::fs::write(&conf, CONTAINERS_CONF).expect("containers.conf");
        Podman { bin, conf }
    }

    fn output<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.env("CONTAINERS_CONF", &self.conf).args(args).stdin(Stdio::null());
        // podman blocks (up to the grace period for `stop`); the peers keep serving meanwhile.
        tokio::task::block_in_place(|| cmd.output()).expect("podman runs")
    }

    /// Runs podman; its trimmed stdout, or a panic with its stderr.
    fn ok<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> String {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.output(&args);
        assert!(out.status.success(), "podman {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A container's output so far (trawl logs to stderr).
    fn logs(&self, container: &str) -> String {
        let out = self.output(["logs", container]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

/// Removes the test's container and image, also when the test fails.
struct Cleanup {
    podman: Podman,
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.podman.output(["rm", "--force", "--time", "0", &self.container]);
        let _ = self.podman.output(["rmi", "--force", &self.image]);
    }
}

/// A scripted DNS server (UDP, port 53, on a random 127/8 address so that runs do not collide):
/// A records for the names it is given, NODATA (no error, no answer) for their other types, as
/// CoreDNS answers the AAAA question for an IPv4 service (musl rightly takes an NXDOMAIN there to
/// mean the name does not exist at all), NXDOMAIN for any other name, and the set of names asked
/// for. Enough for a stub resolver, nothing more.
struct Dns {
    ip: Ipv4Addr,
    questions: Arc<Mutex<BTreeSet<String>>>,
}

impl Dns {
    fn start(records: HashMap<String, Ipv4Addr>) -> Dns {
        let socket = (0..20)
            .find_map(|_| {
                let [a, b, c] = rand::random::<[u8; 3]>();
                // 127.0.0.0/16 is left alone: resolvers such as systemd-resolved live there.
                let ip = Ipv4Addr::new(127, a.max(1), b, c.clamp(1, 254));
                UdpSocket::bind((ip, 53)).ok()
            })
            .expect("bind a DNS server on 127/8 port 53");
        let Ok(std::net::SocketAddr::V4(addr)) = socket.local_addr() else { panic!("an IPv4 address") };
        let questions: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let seen = questions.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if let Some((name, reply)) = dns_reply(&buf[..n], &records) {
                    seen.lock().unwrap().insert(name);
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Dns { ip: *addr.ip(), questions }
    }

    /// The names asked for so far.
    fn questions(&self) -> BTreeSet<String> {
        self.questions.lock().unwrap().clone()
    }
}

/// The reply to one DNS query (RFC 1035 4.1): the queried name and the reply bytes, or None for
/// a packet that is not a one-question query.
fn dns_reply(query: &[u8], records: &HashMap<String, Ipv4Addr>) -> Option<(String, Vec<u8>)> {
    const TYPE_A: u16 = 1;
    const CLASS_IN: u16 = 1;
    const TTL_SECS: u32 = 5;
    const NXDOMAIN: u8 = 3;
    let header = query.get(..12)?;
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes(query.get(at..at + 2)?.try_into().ok()?);
    let question = query.get(12..at + 4)?;
    let name = labels.join(".");
    let known = records.get(&name);
    let answer = known.filter(|_| qtype == TYPE_A);
    let mut reply = Vec::with_capacity(question.len() + 28);
    reply.extend_from_slice(&header[..2]); // the query's id
    // QR, AA and the query's RD; RA and the response code.
    reply.push(0x84 | (header[2] & 0x01));
    reply.push(0x80 | if known.is_some() { 0 } else { NXDOMAIN });
    reply.extend_from_slice(&1u16.to_be_bytes()); // one question
    reply.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority or additional records
    reply.extend_from_slice(question);
    if let Some(ip) = answer {
        reply.extend_from_slice(&[0xc0, 0x0c]); // the name: a pointer to the question's
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&TTL_SECS.to_be_bytes());
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&ip.octets());
    }
    Some((name, reply))
}
