#!/usr/bin/env python3
"""Checks the deployment files: renders the Helm chart, validates every object against the
Kubernetes OpenAPI schemas, and proves the chart and the plain manifests are the same objects.

    python3 deploy/check.py [--trawl target/debug/trawl]

What it does, and why each step:
  1. `helm lint --strict` of deploy/helm/trawl (Helm's own Go code, through helm-python-sdk's
     bundled libhelm; no helm binary or cluster needed).
  2. Renders the chart with its defaults (release `trawl`, namespace `monitoring`) and with other
     values a user would set (hostPath storage, extra env and args, the OpenTelemetry Collector
     values of examples/otel-collector-values.yaml as `config`).
  3. Validates every rendered object and every object in deploy/*.yaml with kubernetes-validate
     (strict: unknown fields are errors) for each Kubernetes version in KUBE_VERSIONS.
  4. The plain manifests equal the default render, apart from the labels only Helm adds and the
     config checksum annotation; trawl.yml is compared as YAML, not text.
  5. With --trawl, every rendered trawl.yml passes `trawl check config`.
  6. Least privilege: for a table of configs (each Kubernetes SD role, attach_metadata,
     namespaces, api_server, the collector dialect, extraRules), the chart grants list and watch on
     exactly the resources that config's discovery reads, in a ClusterRole or per-namespace Roles,
     and nothing else. (`--rbac-for FILE` prints what the chart grants for the config in FILE, as
     JSON; tests/deploy.rs compares it with the requests trawl makes to a fake API server.)

Needs: pip install helm-python-sdk kubernetes-validate pyyaml (.ci/run installs them).
Exit 0 when everything holds, 1 with one line per problem otherwise.
"""

import argparse
import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml
from helm_python import chart as helm

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "trawl"
PLAIN = [ROOT / "deploy" / "rbac.yaml", ROOT / "deploy" / "daemonset.yaml"]
# The oldest Kubernetes the chart declares (kubeVersion >=1.23 in Chart.yaml is the floor for
# the APIs used; these are the versions kubernetes-validate ships schemas for that we check).
KUBE_VERSIONS = ["1.30.0", "1.37.0"]
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
HELM_ONLY_ANNOTATIONS = {"checksum/config"}

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)
    print(f"FAIL {msg}")


def docs(text: str, origin: str) -> list[dict]:
    out = [d for d in yaml.safe_load_all(text) if d]
    for d in out:
        d.setdefault("__origin", origin)
    return out


def render(values: dict | None) -> list[dict]:
    c = helm.Chart.load(str(CHART))
    rendered = c.render(values, name="trawl", namespace="monitoring")
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            out += docs(text, path)
    return out


def validate(objs: list[dict], what: str) -> None:
    for o in objs:
        body = {k: v for k, v in o.items() if k != "__origin"}
        name = f"{what}: {o['__origin']} {body.get('kind')}/{body.get('metadata', {}).get('name')}"
        for v in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(body, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                problem(f"{name}: invalid for Kubernetes {v}: {e.message} at {list(e.path)}")
            except Exception as e:  # schema missing, malformed object
                problem(f"{name}: cannot validate for Kubernetes {v}: {e}")


def normalized(o: dict) -> dict:
    o = copy.deepcopy({k: v for k, v in o.items() if k != "__origin"})

    def strip(meta: dict) -> None:
        for key, drop in (("labels", HELM_ONLY_LABELS), ("annotations", HELM_ONLY_ANNOTATIONS)):
            m = {k: v for k, v in (meta.get(key) or {}).items() if k not in drop}
            if m:
                meta[key] = m
            else:
                meta.pop(key, None)

    strip(o.setdefault("metadata", {}))
    tmpl = o.get("spec", {}).get("template", {})
    if tmpl:
        strip(tmpl.setdefault("metadata", {}))
    if o.get("kind") == "ConfigMap":
        o["data"] = {k: yaml.safe_load(v) for k, v in (o.get("data") or {}).items()}
    return o


def compare(plain: list[dict], chart: list[dict]) -> None:
    key = lambda o: (o.get("kind"), o.get("metadata", {}).get("name"))
    p = {key(o): normalized(o) for o in plain}
    c = {key(o): normalized(o) for o in chart}
    if set(p) != set(c):
        problem(f"plain manifests have {sorted(p)}, the chart renders {sorted(c)}")
    for k in sorted(set(p) & set(c)):
        if p[k] != c[k]:
            problem(
                f"{k[0]}/{k[1]}: plain manifest and chart differ:\n  plain: {p[k]}\n  chart: {c[k]}"
            )


def trawl_check(objs: list[dict], trawl: str, what: str, env: dict) -> None:
    for o in objs:
        if o.get("kind") != "ConfigMap":
            continue
        text = o["data"]["trawl.yml"]
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "trawl.yml"
            f.write_text(text)
            r = subprocess.run(
                [trawl, "check", "config", str(f)],
                capture_output=True,
                text=True,
                env={**os.environ, **env},
            )
            if r.returncode != 0:
                problem(f"{what}: trawl check config failed:\n{r.stdout}{r.stderr}")
            else:
                print(f"ok   {what}: {r.stdout.strip().splitlines()[-1].strip()}")


def access(objs: list[dict]) -> dict:
    """What the rendered RBAC grants: {"cluster": ["group/resource", …], "namespaced": {ns: […]}},
    each sorted; rules whose verbs are not exactly list and watch are problems."""
    cluster: set[str] = set()
    namespaced: dict[str, set[str]] = {}
    for o in objs:
        kind = o.get("kind")
        if kind not in ("ClusterRole", "Role"):
            continue
        for rule in o.get("rules") or []:
            if sorted(rule.get("verbs", [])) != ["list", "watch"]:
                problem(f"{kind}/{o['metadata']['name']}: verbs {rule.get('verbs')}, want list and watch")
            for group in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    key = f"{group}/{res}"
                    if kind == "ClusterRole":
                        cluster.add(key)
                    else:
                        namespaced.setdefault(o["metadata"]["namespace"], set()).add(key)
    return {"cluster": sorted(cluster), "namespaced": {n: sorted(r) for n, r in sorted(namespaced.items())}}


def sd_job(*entries: dict) -> dict:
    return {"scrape_configs": [{"job_name": "k", "kubernetes_sd_configs": list(entries)}]}


CORE = lambda *rs: [f"/{r}" for r in rs]  # noqa: E731 (core API group)
SLICES = "discovery.k8s.io/endpointslices"

# (why, chart values, what the chart must grant). The default config is the DaemonSet's (role pod).
RBAC_CASES = [
    ("chart defaults: the pod role needs pods only", None, {"cluster": CORE("pods"), "namespaced": {}}),
    ("role node", {"config": sd_job({"role": "node"})}, {"cluster": CORE("nodes"), "namespaced": {}}),
    ("role service", {"config": sd_job({"role": "service"})}, {"cluster": CORE("services"), "namespaced": {}}),
    (
        "role endpoints reads endpoints, and the services and pods they belong to",
        {"config": sd_job({"role": "endpoints"})},
        {"cluster": sorted(CORE("endpoints", "pods", "services")), "namespaced": {}},
    ),
    (
        "role endpointslice with attach_metadata.node",
        {"config": sd_job({"role": "endpointslice", "attach_metadata": {"node": True}})},
        {"cluster": sorted(CORE("nodes", "pods", "services") + [SLICES]), "namespaced": {}},
    ),
    (
        "attach_metadata.node means nothing to role service; namespace adds namespaces",
        {"config": sd_job({"role": "service", "attach_metadata": {"node": True, "namespace": True}})},
        {"cluster": CORE("namespaces", "services"), "namespaced": {}},
    ),
    (
        "namespaces.names: a Role per namespace; own_namespace is the release's",
        {"config": sd_job({"role": "endpoints", "namespaces": {"names": ["shop"], "own_namespace": True}})},
        {
            "cluster": [],
            "namespaced": {
                "monitoring": CORE("endpoints", "pods", "services"),
                "shop": CORE("endpoints", "pods", "services"),
            },
        },
    ),
    (
        "a namespace-limited entry adds nothing a cluster-wide one already grants",
        {"config": sd_job({"role": "pod"}, {"role": "service", "namespaces": {"names": ["shop"]}},
                          {"role": "endpoints", "namespaces": {"names": ["shop"]}})},
        {"cluster": CORE("pods"), "namespaced": {"shop": CORE("endpoints", "services")}},
    ),
    (
        "api_server and kubeconfig_file use other credentials",
        {"config": sd_job({"role": "pod", "api_server": "https://k.example"},
                          {"role": "node", "kubeconfig_file": "/etc/kube/config"})},
        {"cluster": [], "namespaced": {}},
    ),
    ("no Kubernetes discovery, no RBAC", {"config": {"scrape_configs": [{"job_name": "s"}]}},
     {"cluster": [], "namespaced": {}}),
    (
        "rbac.extraRules are added to the ClusterRole",
        {"config": sd_job({"role": "node"}),
         "rbac": {"create": True, "extraRules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]}},
        {"cluster": CORE("nodes", "pods"), "namespaced": {}},
    ),
]


def check_rbac(otel_values: dict) -> None:
    cases = RBAC_CASES + [
        (
            "the collector dialect: the prometheus receiver's pod role",
            {"config": otel_values["config"]},
            {"cluster": CORE("pods"), "namespaced": {}},
        ),
        (
            "more prometheus receivers (prometheus/<name>) in the collector dialect",
            {"config": {"receivers": {"prometheus/a": {"config": sd_job({"role": "node"})},
                                      "prometheus/b": {"config": sd_job({"role": "service"})}}}},
            {"cluster": CORE("nodes", "services"), "namespaced": {}},
        ),
    ]
    for why, values, want in cases:
        objs = render(values)
        validate(objs, f"RBAC: {why}")
        got = access(objs)
        if got != want:
            problem(f"RBAC: {why}: the chart grants {got}, want {want}")
        kinds = sorted(o["kind"] for o in objs if "Role" in o["kind"])
        if (got["cluster"] != []) != ("ClusterRoleBinding" in kinds):
            problem(f"RBAC: {why}: a ClusterRole needs its binding and only then: {kinds}")
        if len(got["namespaced"]) != kinds.count("RoleBinding"):
            problem(f"RBAC: {why}: one RoleBinding per Role: {kinds}")
    print(f"ok   RBAC: {len(cases)} configs, each granted exactly what its discovery reads")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trawl", help="a trawl binary: run `check config` on every rendered config")
    ap.add_argument("--rbac-for", help="a config file: print what the chart grants for it (JSON)")
    args = ap.parse_args()

    if args.rbac_for:
        import json

        print(json.dumps(access(render({"config": yaml.safe_load(Path(args.rbac_for).read_text())}))))
        return 1 if problems else 0

    report = helm.lint(str(CHART), strict=True)
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 2:
            problem(f"helm lint: {m.get('path')}: {m.get('error')}")
    for e in report.get("errors", []):
        problem(f"helm lint: {e}")
    print(f"ok   helm lint --strict ({len(report.get('messages', []))} info messages)")

    plain = []
    for f in PLAIN:
        plain += docs(f.read_text(), str(f.relative_to(ROOT)))
    default = render(None)
    otel_values = yaml.safe_load((ROOT / "examples" / "otel-collector-values.yaml").read_text())
    variants = {
        "chart defaults": default,
        "hostPath storage, extra env and args": render(
            {
                "storage": {"type": "hostPath"},
                "extraEnvs": [{"name": "CLUSTER", "value": "c1"}],
                "extraArgs": ["--log.level=debug"],
                "serviceAccount": {"name": "scraper"},
            }
        ),
        "collector values as config": render(
            {
                "config": otel_values["config"],
                "extraEnvs": [e for e in otel_values["extraEnvs"] if e["name"] != "KUBE_NODE_NAME"],
            }
        ),
    }
    check_rbac(otel_values)
    validate(plain, "plain manifests")
    for what, objs in variants.items():
        validate(objs, what)
        kinds = sorted(o["kind"] for o in objs)
        print(f"ok   {what}: rendered {', '.join(kinds)}")
    compare(plain, default)

    if args.trawl:
        env = {"KUBE_NODE_NAME": "node-a", "REMOTE_WRITE_ENDPOINT": "http://prometheus:9090/api/v1/write"}
        trawl_check(plain, args.trawl, "plain manifests", env)
        for what, objs in variants.items():
            trawl_check(objs, args.trawl, what, env)

    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print("all deployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
