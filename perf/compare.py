#!/usr/bin/env python3
"""Side-by-side: trawl, vmagent and Prometheus (agent mode) scrape the same synthetic dense node.

One command:

    python3 perf/compare.py --targets 200 --series 2500 --interval 10 --seconds 60

It generates the node (a mix of node-exporter, histogram-heavy application and
kube-state-metrics pages), serves it with nginx on loopback, runs each agent in turn against the
same targets with the same Prometheus-format scrape config, and sends everything to a counting
remote-write receiver (examples/rw_sink.rs, which decodes every request, so delivered counts are
verified). Per agent it prints: samples delivered per second vs expected, CPU seconds per million
samples (utime+stime from /proc over the measurement window), peak RSS and RSS per active series,
and bytes sent per sample. Ratios are against trawl; the machines are shared and noisy, so read
ratios, not absolute times.

Needs: nginx, vmagent (Debian victoria-metrics), prometheus, and release builds of trawl and
rw_sink (`cargo build --release --bin trawl --example rw_sink`).

`--flamegraph trawl.svg` also profiles trawl (after its measured window) with `perf record` and
writes a flame graph with inferno, plus the folded stacks next to it.

`--churn-minutes 30` is the churn mode: the targets come from a file_sd file (one job), and every
minute `--churn-fraction` (10 %) of them are replaced by new ones (new paths and new `pod`
labels, so all their series are new), as pods come and go on a real node. Each agent runs for the
whole time; its RSS is sampled every 30 s, and the table shows the curve and the RSS at the end
against the RSS after the first 5 minutes.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_page(n):
    """A node-exporter-shaped page of n distinct series (a real page never repeats a series;
    Prometheus and trawl drop repeats within a scrape, so the generator must not make any)."""
    modes = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"]
    fams = [
        ("node_cpu_seconds_total", "counter", lambda i: f'cpu="{i // 8}",mode="{modes[i % 8]}"'),
        ("node_network_receive_bytes_total", "counter", lambda i: f'device="eth{i}"'),
        ("node_filesystem_avail_bytes", "gauge", lambda i: f'device="/dev/sd{i}",fstype="ext4",mountpoint="/mnt/{i}"'),
        ("node_disk_io_time_seconds_total", "counter", lambda i: f'device="nvme{i}n1"'),
        ("node_memory_numa_Active_bytes", "gauge", lambda i: f'node="{i}"'),
    ]
    out, i = [], 0
    per = max(1, n // len(fams))
    for f, (name, kind, lab) in enumerate(fams):
        out.append(f"# HELP {name} Synthetic.\n# TYPE {name} {kind}")
        count = per if f < len(fams) - 1 else n - per * (len(fams) - 1)
        for _ in range(count):
            out.append(f"{name}{{{lab(i)}}} {(i * 7919) % 1000003}.{i % 10}")
            i += 1
    return "\n".join(out) + "\n"


def histogram_page(n):
    """Histograms with distinct label sets: 14 series per (handler, method, code)."""
    out, i, h = [], 0, 0
    les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    out.append("# HELP http_request_duration_seconds Synthetic.\n# TYPE http_request_duration_seconds histogram")
    while i + len(les) + 2 <= n:
        lbl = f'handler="/api/v1/items/{h}",method="{["GET","POST","PUT"][h % 3]}",code="{[200,404,500][h % 3]}"'
        for j, le in enumerate(les):
            out.append(f'http_request_duration_seconds_bucket{{{lbl},le="{le}"}} {h * 10 + j}')
        out.append(f"http_request_duration_seconds_sum{{{lbl}}} {h * 1.5}")
        out.append(f"http_request_duration_seconds_count{{{lbl}}} {h * 10 + 11}")
        i += len(les) + 2
        h += 1
    out.append("# TYPE app_info gauge")
    for k in range(n - i):
        out.append(f'app_info{{version="1.{k}"}} 1')
    return "\n".join(out) + "\n"


def ksm_page(n):
    out = ["# HELP kube_pod_labels Synthetic.\n# TYPE kube_pod_labels gauge"]
    for i in range(n):
        out.append(
            f'kube_pod_labels{{namespace="team-{i % 17}",pod="service-{i}-7f9c8d6b5-x{i:05d}",uid="{i:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b",'
            f'label_app_kubernetes_io_name="service-{i % 50}",label_app_kubernetes_io_instance="release-{i % 9}",'
            f'label_pod_template_hash="7f9c8d6b5",label_team="team-{i % 17}"}} 1'
        )
    return "\n".join(out) + "\n"


def write_sd(path, live, port):
    """The file_sd file of the churn mode: one target group per live target."""
    groups = [{"targets": [f"127.0.0.1:{port}"], "labels": {"__metrics_path__": f"/t{t}/metrics", "pod": f"pod-{t}"}}
              for t in live]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(groups, f)
    os.replace(tmp, path)


def churn(args, p, agent, live, sd_file, www, variants, port):
    """Runs the churn mode for one agent: every minute a tenth of the targets are replaced."""
    sink_count = None
    next_id = max(live) + 1
    curve = []
    start = time.time()
    c0 = proc_cpu(p.pid)
    rss5 = 0
    minute = 0
    while minute < args.churn_minutes:
        # Sample RSS twice a minute.
        for half in (0, 1):
            time.sleep(30)
            curve.append((minute + 0.5 * (half + 1), proc_status(p.pid, "VmRSS")))
        minute += 1
        if minute == 5:
            rss5 = proc_status(p.pid, "VmRSS")
        # Replace a tenth of the targets: new paths (a new page file) and new pod labels.
        n = max(1, int(len(live) * args.churn_fraction))
        for _ in range(n):
            live.pop(0)
            d = os.path.join(www, f"t{next_id}")
            os.makedirs(d, exist_ok=True)
            src = os.path.join(www, f"t{next_id % 3}", "metrics")
            os.symlink(src, os.path.join(d, "metrics"))
            live.append(next_id)
            next_id += 1
        write_sd(sd_file, live, port)
    secs = time.time() - start
    c1 = proc_cpu(p.pid)
    samples = args.targets * args.series / args.interval * secs
    return {"agent": agent, "curve": curve, "rss5": rss5 or curve[0][1], "rss_end": proc_status(p.pid, "VmRSS"),
            "cpu_s_per_M": (c1 - c0) / samples * 1e6, "sps": samples / secs}


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def post(url):
    urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=5).read()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--series", type=int, default=2500, help="series per target")
    ap.add_argument("--interval", type=int, default=10, help="scrape interval, seconds")
    ap.add_argument("--seconds", type=int, default=60, help="measurement window per agent")
    ap.add_argument("--warmup", type=int, default=25, help="seconds before measuring")
    ap.add_argument("--agents", default="trawl,vmagent,prometheus")
    ap.add_argument("--flamegraph", metavar="SVG",
                    help="after trawl's window, profile it for --profile-seconds with `perf record` and write "
                         "a flame graph (needs linux-perf and `cargo install inferno`)")
    ap.add_argument("--profile-seconds", type=int, default=20)
    ap.add_argument("--churn-minutes", type=int, default=0,
                    help="churn mode: replace --churn-fraction of the targets every minute for this long")
    ap.add_argument("--churn-fraction", type=float, default=0.1)
    args = ap.parse_args()
    if args.flamegraph:
        for b in ["perf", "inferno-collapse-perf", "inferno-flamegraph"]:
            if shutil.which(b) is None:
                sys.exit(f"missing {b}: apt-get install -y linux-perf; cargo install inferno")

    trawl = os.path.join(ROOT, "target/release/trawl")
    sink = os.path.join(ROOT, "target/release/examples/rw_sink")
    for need in [trawl, sink]:
        if not os.path.exists(need):
            sys.exit(f"missing {need}: cargo build --release --bin trawl --example rw_sink")
    for b in ["nginx", "vmagent", "prometheus"]:
        if shutil.which(b) is None:
            sys.exit(f"missing {b}: apt-get install -y nginx victoria-metrics prometheus")

    work = tempfile.mkdtemp(prefix="trawl-perf-")
    # nginx workers run as an unprivileged user when started as root: let them read the pages.
    os.chmod(work, 0o755)
    procs = []
    try:
        # The dense node: pages of three kinds, a few variants each, one file per target.
        www = os.path.join(work, "www")
        os.makedirs(www)
        makers = [node_page, histogram_page, ksm_page]
        variants = {}
        for t in range(args.targets):
            kind = t % 3
            if kind not in variants:
                variants[kind] = makers[kind](args.series)
                keys = [l.rsplit(" ", 1)[0] for l in variants[kind].splitlines() if l and not l.startswith("#")]
                assert len(keys) == len(set(keys)) == args.series, f"{makers[kind].__name__}: series repeat"
            d = os.path.join(www, f"t{t}")
            os.makedirs(d)
            with open(os.path.join(d, "metrics"), "w") as f:
                f.write(variants[kind])
        nginx_port = free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;\n"
                f"events {{ worker_connections 4096; }}\n"
                f"http {{ access_log off; gzip on; gzip_types text/plain; gzip_min_length 1000;\n"
                f"  default_type 'text/plain; version=0.0.4'; types {{ }}\n"
                f"  server {{ listen 127.0.0.1:{nginx_port}; root {www}; location / {{ }} }} }}\n"
            )
        procs.append(subprocess.Popen(["nginx", "-c", conf, "-p", work], stderr=subprocess.DEVNULL))
        sink_port = free_port()
        procs.append(subprocess.Popen([sink, f"127.0.0.1:{sink_port}"]))
        time.sleep(1)
        # Fail early, not with a table of zeros, if the pages are not served.
        with urllib.request.urlopen(f"http://127.0.0.1:{nginx_port}/t0/metrics", timeout=5) as r:
            if r.status != 200:
                sys.exit(f"nginx answered {r.status}")

        targets = ", ".join(f"'127.0.0.1:{nginx_port}'" for _ in range(1))
        jobs = []
        for t in range(args.targets):
            jobs.append(
                f"  - job_name: t{t}\n    metrics_path: /t{t}/metrics\n"
                f"    static_configs:\n      - targets: [{targets}]\n"
            )
        sd_file = os.path.join(work, "targets.json")
        if args.churn_minutes:
            # One job whose targets come from a file: target N is /tN/metrics with pod="pod-N".
            live = list(range(args.targets))
            write_sd(sd_file, live, nginx_port)
            jobs = [f"  - job_name: churn\n    file_sd_configs:\n      - files: ['{sd_file}']\n        refresh_interval: 30s\n"]
        scrape = f"global:\n  scrape_interval: {args.interval}s\n  scrape_timeout: {max(1, args.interval - 1)}s\nscrape_configs:\n" + "".join(jobs)
        rw = f"remote_write:\n  - url: http://127.0.0.1:{sink_port}/api/v1/write\n"

        active_series = args.targets * args.series
        expected_sps = active_series / args.interval
        rows = []
        for agent in args.agents.split(","):
            d = os.path.join(work, agent)
            os.makedirs(d)
            port = free_port()
            if agent == "trawl":
                cfg = os.path.join(d, "trawl.yml")
                open(cfg, "w").write(scrape + rw)
                cmd = [trawl, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
            elif agent == "vmagent":
                cfg = os.path.join(d, "scrape.yml")
                open(cfg, "w").write(scrape)
                cmd = ["vmagent", f"-promscrape.config={cfg}", f"-remoteWrite.url=http://127.0.0.1:{sink_port}/api/v1/write",
                       f"-remoteWrite.tmpDataPath={d}/buf", f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR"]
            elif agent == "prometheus":
                cfg = os.path.join(d, "prometheus.yml")
                open(cfg, "w").write(scrape + rw)
                cmd = ["prometheus", "--enable-feature=agent", f"--config.file={cfg}", f"--storage.agent.path={d}/wal",
                       f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"]
            else:
                sys.exit(f"unknown agent {agent}")
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w"))
            if args.churn_minutes:
                live = list(range(args.targets))
                write_sd(sd_file, live, nginx_port)
                rows.append(churn(args, p, agent, live, sd_file, www, variants, nginx_port))
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                continue
            time.sleep(args.warmup)
            post(f"http://127.0.0.1:{sink_port}/reset")
            c0, t0 = proc_cpu(p.pid), time.time()
            time.sleep(args.seconds)
            c1, t1 = proc_cpu(p.pid), time.time()
            got = get_json(f"http://127.0.0.1:{sink_port}/count")
            rss_peak = proc_status(p.pid, "VmHWM")
            rss_now = proc_status(p.pid, "VmRSS")
            if agent == "trawl" and args.flamegraph:
                # After the measured window, so the profiler's own cost is not in the figures.
                # DWARF unwinding: release builds have no frame pointers.
                data = os.path.join(d, "perf.data")
                subprocess.run(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(p.pid),
                                "-o", data, "--", "sleep", str(args.profile_seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                script = subprocess.run(["perf", "script", "-i", data], capture_output=True, check=True).stdout
                folded = subprocess.run(["inferno-collapse-perf"], input=script, capture_output=True, check=True).stdout
                svg = subprocess.run(["inferno-flamegraph", "--title", "trawl, dense node"], input=folded,
                                     capture_output=True, check=True).stdout
                open(args.flamegraph, "wb").write(svg)
                open(args.flamegraph + ".folded", "wb").write(folded)
                print(f"flame graph: {args.flamegraph} (folded stacks: {args.flamegraph}.folded)")
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            secs = t1 - t0
            samples = max(got["samples"], 1)
            rows.append({
                "agent": agent,
                "sps": got["samples"] / secs,
                "cpu_s_per_M": (c1 - c0) / samples * 1e6,
                "cpu_cores": (c1 - c0) / secs,
                "rss_peak": rss_peak,
                "rss_per_series": rss_now / active_series,
                "bytes_per_sample": got["bytes"] / samples,
                "errors": got["errors"],
            })

        if args.churn_minutes:
            print(f"\nchurn: {args.targets} targets x {args.series} series, {args.churn_fraction:.0%} of the targets "
                  f"replaced every minute for {args.churn_minutes} minutes, interval {args.interval}s\n")
            for r in rows:
                curve = " ".join(f"{m}:{rss / 2**20:.0f}" for m, rss in r["curve"])
                print(f"{r['agent']:<11} RSS after 5 min {r['rss5'] / 2**20:.0f}Mi, at the end {r['rss_end'] / 2**20:.0f}Mi "
                      f"({(r['rss_end'] / max(r['rss5'], 1) - 1) * 100:+.1f} %), CPU s/M {r['cpu_s_per_M']:.2f}, "
                      f"samples/s {r['sps']:,.0f}\n  curve (minute:MiB): {curve}")
            return
        base = next((r for r in rows if r["agent"] == "trawl"), rows[0])
        print(f"\n{args.targets} targets x {args.series} series = {active_series} active series, "
              f"interval {args.interval}s, expected {expected_sps:,.0f} samples/s (+ up/scrape_* series), "
              f"window {args.seconds}s after {args.warmup}s warm-up\n")
        hdr = f"{'agent':<11}{'samples/s':>12}{'vs exp':>8}{'CPU s/M':>9}{'cores':>7}{'peak RSS':>11}{'RSS/series':>11}{'B/sample':>9}  ratios vs trawl (CPU/sample, RSS)"
        print(hdr)
        for r in rows:
            print(f"{r['agent']:<11}{r['sps']:>12,.0f}{r['sps'] / expected_sps:>8.2f}{r['cpu_s_per_M']:>9.2f}"
                  f"{r['cpu_cores']:>7.2f}{r['rss_peak'] / 2**20:>9.0f}Mi{r['rss_per_series']:>10.0f}B"
                  f"{r['bytes_per_sample']:>9.2f}  {r['cpu_s_per_M'] / max(base['cpu_s_per_M'], 1e-9):.2f}x, "
                  f"{r['rss_peak'] / max(base['rss_peak'], 1):.2f}x" + (f"  ({r['errors']} undecodable requests)" if r["errors"] else ""))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
