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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trawl", help="a trawl binary: run `check config` on every rendered config")
    args = ap.parse_args()

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
