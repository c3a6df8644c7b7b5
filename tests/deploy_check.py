#!/usr/bin/env python3
"""Static checks of herald's deployment files (deploy/, grafana/).

Run by .ci/validate-deploy.sh, which calls one subcommand per check from the repository
root with the interpreter of its venv. The schema validators (kubernetes-validate,
check-jsonschema, promtool, hadolint, systemd-analyze) run in that script; this file
holds the checks no off-the-shelf tool makes: that the files agree with each other and
with herald (ports, paths, shutdown timing, metric names).

    python3 tests/deploy_check.py metrics            # metric names the dashboard uses
    python3 tests/deploy_check.py --help             # every subcommand

`metrics` needs only the standard library, so a Rust test can run it with any python3
and compare its output (one name per line) with a live /metrics scrape. Every other
subcommand needs PyYAML; `dockerfile` needs dockerfile-parse and `servicemonitor`
needs cloudcoil.models.prometheus_operator and jsonschema (the script's venv has all).
Each prints what it checked and exits 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import sys
from pathlib import Path

# DEPLOY_CHECK_ROOT: check a copy of the tree instead (the validation script's negative
# controls mutate a copy and expect each check to fail).
ROOT = Path(os.environ.get("DEPLOY_CHECK_ROOT") or Path(__file__).resolve().parent.parent).resolve()
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
GRAFANA = ROOT / "grafana"
DASHBOARD = GRAFANA / "herald-dashboard.json"

# The metrics herald exports (the contract with the code). The dashboard may use these
# and nothing else; histograms are used through their _bucket/_sum/_count series.
COUNTERS = {
    "herald_connections_accepted_total": set(),
    "herald_connections_rejected_total": {"reason"},
    "herald_notify_requests_total": {"status"},
    "herald_notifications_accepted_total": {"route"},
    "herald_messages_delivered_total": set(),
    "herald_messages_dropped_total": {"reason"},
    "herald_disconnects_total": {"code"},
    "herald_client_frames_total": {"type"},
    "herald_http_requests_total": {"route", "status"},
    "herald_broker_publish_errors_total": set(),
    "herald_broker_reconnects_total": set(),
    "herald_http_connections_closed_total": {"reason"},
    "herald_history_recoveries_total": {"outcome"},
    "process_cpu_seconds_total": set(),
}
GAUGES = {
    "herald_connections": set(),
    "herald_subscriptions": set(),
    "herald_groups": set(),
    "herald_http_connections": set(),
    "herald_history_entries": set(),
    "herald_history_bytes": set(),
    "herald_build_info": {"version"},
    "process_resident_memory_bytes": set(),
    "process_open_fds": set(),
    "process_max_fds": set(),
}
HISTOGRAMS = {
    "herald_notify_duration_seconds": set(),
    "herald_fanout_size": set(),
    "herald_delivery_lag_seconds": set(),
}
ALLOWED_METRICS: dict[str, set[str]] = {**COUNTERS, **GAUGES}
for _name, _labels in HISTOGRAMS.items():
    ALLOWED_METRICS[f"{_name}_bucket"] = _labels | {"le"}
    ALLOWED_METRICS[f"{_name}_sum"] = set(_labels)
    ALLOWED_METRICS[f"{_name}_count"] = set(_labels)
# Labels Prometheus (static config or the Prometheus Operator) attaches to every series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "cluster"}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "atan2", "inf", "nan", "Inf", "NaN",
}

# Grafana variables in dashboard expressions and what promtool sees instead.
GRAFANA_VARS = {
    "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
    "${__rate_interval}": "1m", "${__interval}": "1m", "${__range}": "1h",
    "$job": ".+", "$instance": ".+", "${job}": ".+", "${instance}": ".+",
}


class Problems:
    def __init__(self, what: str):
        self.what = what
        self.items: list[str] = []

    def __call__(self, ok: bool, message: str) -> bool:
        if not ok:
            self.items.append(message)
        return ok

    def finish(self, summary: str) -> int:
        if self.items:
            for item in self.items:
                print(f"FAIL {self.what}: {item}")
            return 1
        print(f"ok   {self.what}: {summary}")
        return 0


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def load_yaml_docs(path: Path) -> list:
    import yaml

    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_yaml(path: Path):
    docs = load_yaml_docs(path)
    if len(docs) != 1:
        raise ValueError(f"{rel(path)}: expected one YAML document, found {len(docs)}")
    return docs[0]


def parse_duration(text) -> float:
    """Seconds in a Go/humantime-style duration ("15s", "1m30s", "500ms") or a number."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", s)
    if not parts or "".join(n + u for n, u in parts) != s.replace(" ", ""):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


# --------------------------------------------------------------------------- yaml
def cmd_yaml(_args) -> int:
    p = Problems("yaml")
    files = sorted(
        f for base in (DEPLOY, GRAFANA) for f in base.rglob("*")
        if f.suffix in (".yaml", ".yml") and f.is_file()
    )
    for f in files:
        try:
            docs = load_yaml_docs(f)
            p(len(docs) > 0, f"{rel(f)}: no YAML document")
        except Exception as e:  # noqa: BLE001 - report every parse error the same way
            p(False, f"{rel(f)}: {e}")
    p(len(files) >= 10, f"expected at least 10 YAML files, found {len(files)}")
    return p.finish(f"{len(files)} files parse: " + ", ".join(rel(f) for f in files))


# --------------------------------------------------------------------------- dashboard
def strip_promql(expr: str) -> str:
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"`[^`]*`", "``", s)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)
    return s


def promql_metric_names(expr: str) -> list[str]:
    """Metric names an expression selects (functions, keywords and labels removed)."""
    s = strip_promql(expr)
    s = re.sub(r"\{[^}]*\}", " ", s)                     # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                    # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    s = re.sub(r"(?<![A-Za-z0-9_:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", s)  # numbers
    names = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        token = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue                                      # function or aggregation
        if token in PROMQL_KEYWORDS:
            continue
        names.append(token)
    return names


def promql_label_names(expr: str) -> set[str]:
    s = strip_promql(expr)
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    for matchers in re.findall(r"\{([^}]*)\}", s):
        labels.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def dashboard_targets(dash: dict):
    """(panel title, target) for every query target, rows' nested panels included."""
    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels") or [])

    for panel in walk(dash.get("panels", [])):
        for target in panel.get("targets") or []:
            yield panel, target


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    return [(panel.get("title", "?"), t["expr"]) for panel, t in dashboard_targets(dash) if t.get("expr")]


def dashboard_metric_names(dash: dict) -> list[str]:
    names = set()
    for _title, expr in dashboard_exprs(dash):
        names.update(promql_metric_names(expr))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            m = re.match(r"\s*label_values\((.*),\s*\w+\)\s*$", q)
            if m:
                names.update(promql_metric_names(m.group(1)))
    return sorted(names)


def cmd_metrics(args) -> int:
    dash = json.loads(Path(args.dashboard).read_text(encoding="utf-8"))
    for name in dashboard_metric_names(dash):
        print(name)
    return 0


def cmd_dashboard(args) -> int:
    p = Problems("dashboard")
    path = Path(args.dashboard)
    try:
        dash = json.loads(path.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001
        p(False, f"{rel(path)} does not parse as JSON: {e}")
        return p.finish("")

    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        p(key in dash, f"missing top-level {key!r}")
    p(dash.get("id") in (None,), "a dashboard to import or provision has no numeric id (set \"id\": null or drop it)")

    # The data source is a variable, so the file works both provisioned and imported.
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("datasource")
    p(ds_var is not None and ds_var.get("type") == "datasource" and ds_var.get("query") == "prometheus",
      "needs a `datasource` variable of type datasource with query prometheus")
    inputs = {i.get("name") for i in dash.get("__inputs", [])}

    def ds_ok(ds) -> bool:
        if isinstance(ds, dict):
            uid = ds.get("uid", "")
            return ds.get("type") in ("prometheus", "grafana") and (
                uid in ("${datasource}", "$datasource", "-- Grafana --")
                or uid.strip("${}") in inputs)
        return ds in ("${datasource}", "$datasource")

    ids = []
    panel_count = 0
    for panel in dash.get("panels", []):
        ids.append(panel.get("id"))
        if panel.get("type") == "row":
            continue
        panel_count += 1
        title = panel.get("title", "?")
        p(ds_ok(panel.get("datasource")), f"panel {title!r}: datasource must be the ${{datasource}} variable, not {panel.get('datasource')!r}")
        p(bool(panel.get("targets")), f"panel {title!r} has no query")
        gp = panel.get("gridPos", {})
        p(0 <= gp.get("x", -1) and gp.get("x", 0) + gp.get("w", 0) <= 24, f"panel {title!r}: gridPos outside the 24-column grid")
    p(len(ids) == len(set(ids)), "panel ids are not unique")
    for name in ("job", "instance"):
        var = variables.get(name)
        if var is not None:
            p(ds_ok(var.get("datasource")), f"variable {name}: datasource must be the ${{datasource}} variable")

    used = dashboard_metric_names(dash)
    unknown = [n for n in used if n not in ALLOWED_METRICS]
    p(not unknown, f"metric names herald does not export: {', '.join(unknown)}")
    allowed_labels = TARGET_LABELS | {label for labels in ALLOWED_METRICS.values() for label in labels}
    for title, expr in dashboard_exprs(dash):
        p("__name__" not in expr, f"panel {title!r}: __name__ matchers hide metric names from this check")
        bad = promql_label_names(expr) - allowed_labels
        p(not bad, f"panel {title!r}: unknown label(s) {sorted(bad)} in {expr}")
        for name in promql_metric_names(expr):
            for label in re.findall(rf"{re.escape(name)}\{{([^}}]*)\}}", expr):
                for lbl in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", label):
                    p(lbl in ALLOWED_METRICS.get(name, set()) | TARGET_LABELS,
                      f"panel {title!r}: {name} has no label {lbl!r}")
    for panel, target in dashboard_targets(dash):
        for lbl in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            p(lbl in allowed_labels, f"panel {panel.get('title')!r}: legend uses unknown label {lbl!r}")

    # Every panel family the operators asked for is there.
    exprs = " ".join(e for _t, e in dashboard_exprs(dash))
    for need in ("herald_connections", "herald_connections_accepted_total", "herald_connections_rejected_total",
                 "herald_notify_requests_total", "histogram_quantile", "herald_notify_duration_seconds_bucket",
                 "herald_messages_delivered_total", "herald_delivery_lag_seconds_bucket",
                 "herald_messages_dropped_total", "herald_disconnects_total",
                 "herald_broker_publish_errors_total", "herald_broker_reconnects_total",
                 "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "herald_subscriptions", "herald_groups"):
        p(need in exprs, f"no panel uses {need}")

    # promtool parses every expression: write them as recording rules.
    if args.rules_out:
        rules = []
        for i, (title, expr) in enumerate(dashboard_exprs(dash), 1):
            concrete = expr
            for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
                concrete = concrete.replace(var, value)
            p("$" not in concrete, f"panel {title!r}: Grafana variable promtool cannot stand in for: {expr}")
            rules.append({"record": f"herald_dashboard:expr_{i}", "expr": concrete})
        Path(args.rules_out).write_text(json.dumps({"groups": [{"name": "herald-dashboard", "rules": rules}]}, indent=2))

    return p.finish(f"{rel(path)}: {panel_count} panels, {len(dashboard_exprs(dash))} queries, "
                    f"{len(used)} metric names, all exported by herald")


# --------------------------------------------------------------------------- kubernetes
def k8s_objects() -> dict[str, dict]:
    objs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_docs(f):
            objs[f"{doc.get('kind')}/{doc.get('metadata', {}).get('name', '')}"] = doc | {"__file__": f.name}
    return objs


def cmd_k8s(_args) -> int:
    p = Problems("k8s")
    objs = k8s_objects()
    by_kind = {}
    for obj in objs.values():
        by_kind.setdefault(obj["kind"], []).append(obj)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                 "ServiceMonitor", "ConfigMap", "Secret", "Kustomization"):
        p(len(by_kind.get(kind, [])) == 1, f"expected exactly one {kind}, found {len(by_kind.get(kind, []))}")
    if p.items:
        return p.finish("")
    dep = by_kind["Deployment"][0]
    svc = by_kind["Service"][0]
    pdb = by_kind["PodDisruptionBudget"][0]
    hpa = by_kind["HorizontalPodAutoscaler"][0]
    smon = by_kind["ServiceMonitor"][0]
    cm = by_kind["ConfigMap"][0]
    secret = by_kind["Secret"][0]
    kust = by_kind["Kustomization"][0]

    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    containers = spec["containers"]
    p(len(containers) == 1, "the pod should have one container")
    c = containers[0]
    env = {e["name"]: e for e in c.get("env", [])}
    ports = {pt["name"]: pt["containerPort"] for pt in c.get("ports", [])}

    def subset(sel: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in sel.items())

    # Selectors all find the pods.
    p(subset(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector does not match its pod labels")
    p(subset(svc["spec"]["selector"], pod_labels), "Service selector does not match the pod labels")
    p(subset(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PDB selector does not match the pod labels")
    p(subset(smon["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})),
      "ServiceMonitor selector does not match the Service's labels")
    ref = hpa["spec"]["scaleTargetRef"]
    p(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"], "HPA does not target the Deployment")
    p(hpa["apiVersion"] == "autoscaling/v2", "HPA must be autoscaling/v2")
    p(smon["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor must be monitoring.coreos.com/v1")
    p("replicas" not in dep["spec"], "Deployment sets replicas although the HPA owns the count")
    p(spec.get("enableServiceLinks") is False,
      "enableServiceLinks must be false: the Service named herald would inject HERALD_SERVICE_HOST, HERALD_PORT, ...")

    # Ports line up: Service -> container ports, ServiceMonitor -> Service port.
    svc_ports = {pt["name"]: pt for pt in svc["spec"]["ports"]}
    for name, pt in svc_ports.items():
        p(pt["targetPort"] in ports or pt["targetPort"] in ports.values(),
          f"Service port {name} targets {pt['targetPort']}, not a container port")
    for ep in smon["spec"]["endpoints"]:
        p(ep.get("port") in svc_ports, f"ServiceMonitor endpoint port {ep.get('port')} is not a Service port")
        p(ep.get("path", "/metrics") == "/metrics", "ServiceMonitor should scrape /metrics")
    listen = env.get("HERALD_LISTEN", {}).get("value", "")
    p(listen.endswith(f":{ports.get('http')}") and not listen.startswith("127."),
      f"HERALD_LISTEN {listen!r} must listen on all interfaces on the http containerPort {ports.get('http')}")
    mlisten = env.get("HERALD_METRICS_LISTEN", {}).get("value", "")
    p(mlisten.endswith(f":{ports.get('metrics')}"), f"HERALD_METRICS_LISTEN {mlisten!r} must be on the metrics containerPort")

    # Probes.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = c.get(probe, {}).get("httpGet", {})
        p(got.get("path") == path, f"{probe} must GET {path}, not {got.get('path')}")
        p(got.get("port") in ports or got.get("port") in ports.values(), f"{probe} port {got.get('port')} is not a container port")

    # Shutdown arithmetic: grace >= preStop sleep + drain + 5s margin, drain set explicitly.
    p("HERALD_DRAIN_TIMEOUT" in env and "value" in env["HERALD_DRAIN_TIMEOUT"],
      "HERALD_DRAIN_TIMEOUT must be set explicitly in the Deployment")
    drain = parse_duration(env.get("HERALD_DRAIN_TIMEOUT", {}).get("value", "10s"))
    pre = c.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        pre_s = float(pre["sleep"]["seconds"])
    else:
        cmd = pre.get("exec", {}).get("command", [])
        pre_s = 0.0
        if p(len(cmd) == 2 and cmd[0].endswith("sleep"), f"preStop should be a sleep, not {cmd}"):
            pre_s = parse_duration(cmd[1] if cmd[1][-1].isalpha() else cmd[1] + "s")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    p(pre_s >= 5, f"preStop sleep {pre_s}s is too short for endpoint removal to propagate")
    p(grace > drain, f"terminationGracePeriodSeconds {grace} must exceed HERALD_DRAIN_TIMEOUT {drain}s")
    p(grace >= pre_s + drain + 5,
      f"terminationGracePeriodSeconds {grace} < preStop {pre_s}s + drain {drain}s + 5s margin")
    for needle in (f"HERALD_DRAIN_TIMEOUT ({drain:g}s)", f"t={pre_s:g}s", f"t={grace:g}s"):
        p(needle in (K8S / dep["__file__"]).read_text(), f"the arithmetic comment in {dep['__file__']} does not mention {needle!r}: update it")

    # Security.
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    p(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "pod must run as a non-root uid")
    p(csc.get("readOnlyRootFilesystem") is True, "root filesystem must be read-only")
    p(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    p("ALL" in csc.get("capabilities", {}).get("drop", []), "capabilities must drop ALL")
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        p({"cpu", "memory"} <= set(res.get(kind, {})), f"resources.{kind} needs cpu and memory")

    # Configuration wiring: every variable the operators asked for is wired.
    cm_data = cm.get("data", {})
    env_from = c.get("envFrom", [])
    p(any(e.get("configMapRef", {}).get("name") == cm["metadata"]["name"] for e in env_from),
      "the container does not read the ConfigMap (envFrom)")
    p(any(e.get("secretRef", {}).get("name") == secret["metadata"]["name"] for e in env_from),
      "the container does not read the Secret (envFrom)")
    for var in ("HERALD_REDIS_URL", "HERALD_ALLOWED_ORIGINS", "HERALD_MAX_CONNECTIONS"):
        p(var in cm_data, f"ConfigMap lacks {var}")
    p(all(v is None or isinstance(v, str) for v in cm_data.values()), "ConfigMap values must be strings")
    p("HERALD_DRAIN_TIMEOUT" not in cm_data, "HERALD_DRAIN_TIMEOUT belongs in the Deployment, next to the grace period")
    p("HERALD_JWT_SECRET" in (secret.get("stringData") or {}), "the example Secret should show HERALD_JWT_SECRET")
    p("EXAMPLE" in json.dumps(secret.get("stringData")).upper(), "the example Secret's value must say it is an example")
    text = (K8S / "secret.example.yaml").read_text()
    for var in ("HERALD_JWT_SECRET_FILE", "HERALD_JWT_PUBLIC_KEY_FILE"):
        p(var in text, f"secret.example.yaml should explain {var}")

    # Kustomization lists real files and never the example Secret.
    resources = kust.get("resources", [])
    for r in resources:
        p((K8S / r).is_file(), f"kustomization.yaml lists missing {r}")
    p("secret.example.yaml" not in resources, "kustomization.yaml must not apply the example Secret")
    listed = set(resources) | {"kustomization.yaml", "secret.example.yaml"}
    for f in K8S.glob("*.yaml"):
        p(f.name in listed, f"kustomization.yaml does not list {f.name}")

    return p.finish(f"{len(objs)} objects agree (selectors, ports, probes, grace {grace}s >= preStop "
                    f"{pre_s:g}s + drain {drain:g}s + 5s, non-root read-only, config wiring)")


def cmd_servicemonitor(_args) -> int:
    """The ServiceMonitor against the prometheus-operator CRD schema, without a cluster.

    The schema comes from PyPI cloudcoil.models.prometheus_operator (pydantic models
    generated from the prometheus-operator CRDs), exported as JSON Schema and made
    strict: an unknown field is an error, as `kubectl apply --validate=strict` would
    make it.
    """
    import jsonschema
    from cloudcoil.models.prometheus_operator import v1
    from importlib.metadata import version

    p = Problems("servicemonitor")
    schema = v1.ServiceMonitor.model_json_schema(by_alias=True, mode="validation")

    def strict(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    # metadata is plain ObjectMeta; the API server, not the CRD, checks it.
    schema["properties"]["metadata"] = {"type": "object"}
    validator = jsonschema.Draft202012Validator(schema)
    f = K8S / "servicemonitor.yaml"
    doc = load_yaml(f)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        p(False, f"{rel(f)}: {'.'.join(map(str, err.path)) or '<root>'}: {err.message}")
    p(doc.get("kind") == "ServiceMonitor" and doc.get("apiVersion") == "monitoring.coreos.com/v1",
      "not a monitoring.coreos.com/v1 ServiceMonitor")
    return p.finish(f"{rel(f)} valid against the prometheus-operator "
                    f"{version('cloudcoil.models.prometheus_operator')} ServiceMonitor schema (strict)")


# --------------------------------------------------------------------------- compose
def cmd_compose(_args) -> int:
    p = Problems("compose")
    f = DEPLOY / "docker-compose.yml"
    compose = load_yaml(f)
    services = compose.get("services", {})
    heralds = {n: s for n, s in services.items() if n.startswith("herald")}
    p(len(heralds) == 2, f"expected two herald nodes, found {sorted(heralds)}")
    for name in ("redis", "prometheus", "grafana"):
        p(name in services, f"no {name} service")

    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = (f.parent / build.get("context", ".")).resolve()
            p(ctx == ROOT, f"{name}: build context should be the repository root, is {ctx}")
            p((ctx / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile {build.get('dockerfile')} missing")
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith((".", "/")):
                p((f.parent / src).exists(), f"{name}: bind-mount source {src} does not exist")
        for dep in svc.get("depends_on", []):
            p(dep in services, f"{name} depends on unknown service {dep}")

    for name, svc in heralds.items():
        env = svc.get("environment", {})
        p(env.get("HERALD_REDIS_URL") == "redis://redis:6379", f"{name}: HERALD_REDIS_URL must be redis://redis:6379")
        listen = env.get("HERALD_LISTEN", "")
        p(listen.startswith("0.0.0.0:"), f"{name}: HERALD_LISTEN must be 0.0.0.0:<port>")
        drain = parse_duration(env.get("HERALD_DRAIN_TIMEOUT", "10s"))
        grace = parse_duration(svc.get("stop_grace_period", "10s"))
        p(grace > drain, f"{name}: stop_grace_period {grace}s must exceed HERALD_DRAIN_TIMEOUT {drain}s")
        p(svc.get("stop_signal", "SIGTERM") == "SIGTERM", f"{name}: stop_signal must be SIGTERM")
        nofile = svc.get("ulimits", {}).get("nofile", {})
        limit = nofile.get("hard", nofile) if isinstance(nofile, dict) else nofile
        p(isinstance(limit, int) and limit >= int(env.get("HERALD_MAX_CONNECTIONS", 15000)) + 256,
          f"{name}: ulimits.nofile must be at least HERALD_MAX_CONNECTIONS + 256")

    # Prometheus scrapes exactly the herald nodes, on the port they listen on.
    prom = load_yaml(DEPLOY / "prometheus.yml")
    job = next((j for j in prom.get("scrape_configs", []) if j.get("job_name") == "herald"), None)
    p(job is not None, "prometheus.yml has no herald job")
    if job:
        targets = {t for sc in job.get("static_configs", []) for t in sc.get("targets", [])}
        want = {f"{n}:{s['environment']['HERALD_LISTEN'].rsplit(':', 1)[1]}" for n, s in heralds.items()}
        p(targets == want, f"herald scrape targets {sorted(targets)} != compose nodes {sorted(want)}")
        p(job.get("metrics_path", "/metrics") == "/metrics", "herald job must scrape /metrics")

    # Grafana: the provisioning files are mounted where Grafana reads them, the dashboard
    # where the provider looks, and the data source points at the prometheus service.
    graf = services.get("grafana", {})
    mounts = {}
    for vol in graf.get("volumes", []):
        src, dst = vol.split(":")[:2]
        mounts[dst] = (f.parent / src).resolve()
    p(mounts.get("/etc/grafana/provisioning") == (GRAFANA / "provisioning").resolve(),
      "grafana/provisioning must be mounted at /etc/grafana/provisioning")
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "herald.yaml")["providers"][0]
    path = provider["options"]["path"].rstrip("/")
    dash_mounts = [dst for dst, src in mounts.items() if src == DASHBOARD.resolve()]
    p(any(dst.rsplit("/", 1)[0] == path for dst in dash_mounts),
      f"the dashboard is not mounted into the provider's folder {path} (mounted at {dash_mounts})")
    home = graf.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    p(home is None or home in dash_mounts, f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is not the mounted dashboard")
    ds = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    prom_ds = [d for d in ds if d.get("type") == "prometheus"]
    p(len(prom_ds) == 1 and prom_ds[0].get("isDefault") is True,
      "exactly one Prometheus data source, the default (the dashboard's datasource variable picks it)")
    if prom_ds:
        m = re.match(r"https?://([^:/]+):(\d+)", prom_ds[0].get("url", ""))
        p(bool(m) and m.group(1) in services, f"data source url {prom_ds[0].get('url')} is not a compose service")

    return p.finish(f"{len(services)} services: two herald nodes with HERALD_REDIS_URL, grace > drain, "
                    "nofile limit; mounts exist; Prometheus targets = nodes; Grafana provisioning paths line up")


# --------------------------------------------------------------------------- dockerfile
def _ignore_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex (Go filepath.Match per segment, plus `**`)."""
    out = []
    for seg in pattern.strip("/").split("/"):
        if seg == "**":
            out.append(".*")
            continue
        rx, i = "", 0
        while i < len(seg):
            ch = seg[i]
            if ch == "*":
                rx += "[^/]*"
            elif ch == "?":
                rx += "[^/]"
            elif ch == "[":
                j = seg.find("]", i)
                rx += seg[i:j + 1].replace("[^", "[!").replace("[!", "[^") if j > i else re.escape(ch)
                i = j if j > i else i
            else:
                rx += re.escape(ch)
            i += 1
        out.append(rx)
    return "/".join(out).replace(".*/", "(?:.*/)?")


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether a context path is excluded (Docker's rules: last match wins, ! re-includes,
    a pattern matching a parent directory excludes everything under it)."""
    excluded = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        neg = raw.startswith("!")
        regex = _ignore_regex(raw[1:] if neg else raw)
        if any(re.fullmatch(regex, pre) for pre in prefixes):
            excluded = not neg
    return excluded


def cmd_dockerfile(_args) -> int:
    from dockerfile_parse import DockerfileParser

    p = Problems("dockerfile")
    f = DEPLOY / "Dockerfile"
    dfp = DockerfileParser(path=str(f))
    instrs = dfp.structure
    ignore_file = DEPLOY / "Dockerfile.dockerignore"
    patterns = [ln.strip() for ln in ignore_file.read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]

    stages: list[dict] = []
    for ins in instrs:
        if ins["instruction"] == "FROM":
            words = ins["value"].split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"name": name, "base": words[0], "ins": []})
        elif stages:
            stages[-1]["ins"].append(ins)
    p(len(stages) >= 2, "must be multi-stage")
    names = {s["name"] for s in stages if s["name"]}
    final = stages[-1] if stages else {"ins": [], "base": ""}
    global_args = {}
    for ins in instrs:
        if ins["instruction"] == "FROM":
            break
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            k, v = ins["value"].split("=", 1)
            global_args[k.strip()] = v.strip()

    def resolve(base: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), base)

    p(resolve(stages[0]["base"]).startswith("rust:"), f"the first stage should build on a rust image, not {resolve(stages[0]['base'])}")
    p(resolve(final["base"]) in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12", "gcr.io/distroless/cc-debian12:nonroot"),
      f"the runtime stage should be debian:bookworm-slim or distroless cc, not {resolve(final['base'])}")
    for s in stages:
        base = resolve(s["base"])
        p(base in names or ":" in base, f"base image {base} has no tag")

    copies_into_final = {}
    for s in stages:
        for ins in s["ins"]:
            if ins["instruction"] not in ("COPY", "ADD"):
                continue
            words = ins["value"].split()
            flags = [w for w in words if w.startswith("--")]
            args = [w for w in words if not w.startswith("--")]
            src_from = next((w.split("=", 1)[1] for w in flags if w.startswith("--from=")), None)
            srcs, dst = args[:-1], args[-1]
            if src_from:
                p(src_from in names or ":" in src_from, f"line {ins['startline'] + 1}: COPY --from={src_from} names no stage")
            else:
                for src in srcs:
                    p((ROOT / src).exists(), f"line {ins['startline'] + 1}: COPY source {src} does not exist in the build context")
                    if src not in (".", "./"):
                        p(not dockerignore_excludes(patterns, src.strip("/")),
                          f"line {ins['startline'] + 1}: COPY source {src} is excluded by {ignore_file.name}")
            if s is final:
                for src in srcs:
                    copies_into_final[dst if not dst.endswith("/") else dst + Path(src).name] = (src_from, src)

    # What `COPY . .` must carry for cargo: the manifest, the lock file and every target.
    needed = ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs"]
    cargo = (ROOT / "Cargo.toml").read_text()
    needed += re.findall(r'^\s*path\s*=\s*"([^"]+)"', cargo, flags=re.M)
    needed += [f"benches/{n}.rs" for n in re.findall(r'\[\[bench\]\]\s*\n\s*name\s*=\s*"([^"]+)"', cargo)]
    for path in sorted(set(needed)):
        p((ROOT / path).exists(), f"cargo needs {path}, which does not exist")
        p(not dockerignore_excludes(patterns, path), f"cargo needs {path}, but {ignore_file.name} excludes it")
    for path in ("target", ".git", "target/release/herald"):
        p(dockerignore_excludes(patterns, path), f"{path} should be kept out of the build context")

    def final_values(kind):
        return [ins["value"] for ins in final["ins"] if ins["instruction"] == kind]

    users = final_values("USER")
    p(bool(users) and users[-1].split(":")[0] not in ("root", "0"), f"the runtime stage must end with a non-root USER, has {users}")
    p(bool(users) and users[-1].split(":")[0].isdigit(), "USER should be numeric so Kubernetes runAsNonRoot can verify it")
    p(any("8080" in v.split() for v in final_values("EXPOSE")), "EXPOSE 8080 missing")
    p(final_values("STOPSIGNAL") == ["SIGTERM"], f"STOPSIGNAL must be SIGTERM, is {final_values('STOPSIGNAL')}")
    envs = dfp.envs  # the final stage's environment
    p(envs.get("HERALD_LISTEN") == "0.0.0.0:8080", f"ENV HERALD_LISTEN must be 0.0.0.0:8080, is {envs.get('HERALD_LISTEN')}")
    entry = " ".join(final_values("ENTRYPOINT") + final_values("CMD"))
    p("/usr/local/bin/herald" in entry and "/usr/local/bin/herald" in copies_into_final,
      "ENTRYPOINT must run /usr/local/bin/herald, copied into the runtime stage")
    hc = final_values("HEALTHCHECK")
    p(len(hc) == 1, "exactly one HEALTHCHECK")
    if hc:
        m = re.search(r'CMD\s+\[\s*"([^"]+)"', hc[0])
        p(bool(m), f"HEALTHCHECK should be exec form: {hc[0]}")
        if m:
            exe = m.group(1)
            src = copies_into_final.get(exe)
            p(src is not None and src[0] is None, f"the healthcheck {exe} is not copied from the build context into the runtime image")
            if src and src[0] is None:
                script = (ROOT / src[1]).read_text()
                p("/healthz" in script, f"{src[1]} does not request /healthz")
                shebang = script.splitlines()[0]
                p(shebang in ("#!/bin/bash", "#!/usr/bin/env bash"), f"{src[1]}: needs bash (/dev/tcp), shebang is {shebang}")
                p(resolve(final["base"]).startswith("debian:"), "the bash healthcheck needs a runtime image with bash")
        for opt in ("--interval", "--timeout"):
            p(opt in hc[0], f"HEALTHCHECK should set {opt}")
    return p.finish(f"{rel(f)}: {len(stages)} stages ({', '.join(n or '?' for n in [s['name'] for s in stages])}); "
                    "COPY sources exist and survive the dockerignore; non-root numeric USER; EXPOSE 8080; "
                    "HERALD_LISTEN; HEALTHCHECK /healthz; STOPSIGNAL SIGTERM")


# --------------------------------------------------------------------------- systemd
SYSTEMD_REQUIRED = {
    "Service": {
        "ExecStart": None, "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "CapabilityBoundingSet": "", "KillSignal": "SIGTERM",
        "Restart": "on-failure", "EnvironmentFile": "-/etc/herald/herald.env",
        "RestrictAddressFamilies": None, "SystemCallFilter": None, "LimitNOFILE": None, "TimeoutStopSec": None,
    },
    "Install": {"WantedBy": None},
    "Unit": {"Description": None},
}


def cmd_systemd(args) -> int:
    """Keys and values of the unit; with --syntax also the plain-syntax fallback for a
    machine without systemd-analyze (sections and key=value lines only)."""
    p = Problems("systemd")
    f = DEPLOY / "systemd" / "herald.service"
    text = f.read_text()
    values: dict[tuple[str, str], list[str]] = {}
    section = None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[(\w+)\]", s)
        if m:
            section = m.group(1)
            p(section in ("Unit", "Service", "Install"), f"line {n}: unexpected section [{section}]")
            continue
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.*)", s)
        if not p(bool(m) and section is not None, f"line {n}: not Key=value inside a section: {line}"):
            continue
        values.setdefault((section, m.group(1)), []).append(m.group(2))
    for sec, keys in SYSTEMD_REQUIRED.items():
        for key, want in keys.items():
            got = values.get((sec, key))
            p(got is not None, f"[{sec}] {key}= missing")
            if got is not None and want is not None:
                p(got[-1] == want, f"[{sec}] {key}={got[-1]}, want {key}={want}")
    p(("Service", "DynamicUser") in values or ("Service", "User") in values, "needs DynamicUser= or User=")
    filters = values.get(("Service", "SystemCallFilter"), [])
    p("@system-service" in filters, "SystemCallFilter=@system-service missing")
    p(not any("@resources" in x and x.startswith("~") for x in filters),
      "~@resources would block setrlimit, which herald uses to raise its fd limit")
    env = dict(v.split("=", 1) for v in values.get(("Service", "Environment"), []) if "=" in v)
    drain = parse_duration(env.get("HERALD_DRAIN_TIMEOUT", "10s"))
    stop = parse_duration(values.get(("Service", "TimeoutStopSec"), ["90s"])[-1])
    p(stop > drain, f"TimeoutStopSec {stop}s must exceed HERALD_DRAIN_TIMEOUT {drain}s")
    nofile = int(values.get(("Service", "LimitNOFILE"), ["0"])[-1].split(":")[-1])
    maxconn = int(env.get("HERALD_MAX_CONNECTIONS", "15000"))
    p(nofile >= maxconn + 256, f"LimitNOFILE {nofile} < HERALD_MAX_CONNECTIONS {maxconn} + 256")
    if args.syntax:
        # configparser as a second parser: duplicate keys are legal in systemd units.
        cp = configparser.RawConfigParser(strict=False, comment_prefixes=("#", ";"), empty_lines_in_values=False)
        cp.optionxform = str
        try:
            cp.read_string(text)
        except configparser.Error as e:
            p(False, f"does not parse as an INI file: {e}")
    return p.finish(f"{rel(f)}: hardening keys present, TimeoutStopSec {stop:g}s > drain {drain:g}s, "
                    f"LimitNOFILE {nofile} >= {maxconn} + 256")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("yaml", help="every YAML file under deploy/ and grafana/ parses")
    m = sub.add_parser("metrics", help="print the metric names the dashboard uses, one per line")
    m.add_argument("--dashboard", default=str(DASHBOARD))
    d = sub.add_parser("dashboard", help="dashboard structure, data source variable, metric and label names")
    d.add_argument("--dashboard", default=str(DASHBOARD))
    d.add_argument("--rules-out", help="write every expression as a recording rule here, for promtool")
    sub.add_parser("k8s", help="the manifests agree with each other and with herald")
    sub.add_parser("servicemonitor", help="the ServiceMonitor against the prometheus-operator CRD schema")
    sub.add_parser("compose", help="compose, prometheus.yml and Grafana provisioning line up")
    sub.add_parser("dockerfile", help="Dockerfile structure and build-context paths")
    s = sub.add_parser("systemd", help="the unit's hardening and timing keys")
    s.add_argument("--syntax", action="store_true", help="also the plain syntax check (no systemd-analyze here)")
    args = parser.parse_args(argv)
    return {
        "yaml": cmd_yaml, "metrics": cmd_metrics, "dashboard": cmd_dashboard, "k8s": cmd_k8s,
        "servicemonitor": cmd_servicemonitor, "compose": cmd_compose, "dockerfile": cmd_dockerfile,
        "systemd": cmd_systemd,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
