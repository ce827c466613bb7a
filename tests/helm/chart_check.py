"""Render, lint and validate the Helm chart in helm/ with a real helm binary, offline.

Used two ways, with the same cases:
  - by .ci/helm-check.sh (`chart_check.py --helm H --chart helm all`), which installs helm and
    kubernetes-validate first;
  - by tests/helm/test_chart.py, one subprocess per case (`... render production`, `... bad NAME`).

What is checked:
  - `helm lint --strict` and `helm template` for values.yaml and values-production.yaml;
  - every rendered manifest against the Kubernetes JSON schemas of kubernetes-validate, in strict
    mode (unknown fields rejected), for the oldest Kubernetes the chart supports and the newest the
    package knows. ServiceMonitor is a CRD that kubernetes-validate has no schema for: it is
    validated against the minimal schema in tests/helm/schemas/ instead. Any other kind without a
    schema is an error, never skipped;
  - properties of the rendered objects that a schema cannot see (non-root, read-only root
    filesystem, probes, checksum annotation, the proxy config, the env names the plugin accepts);
  - bad values fail at render time with a message that names the problem.

The module imports only the standard library at the top, so test_chart.py can read the case lists
from the project's own interpreter; PyYAML, jsonschema and kubernetes_validate are imported by the
commands that need them (they come from the tools venv).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCHEMAS = HERE / "schemas"
RELEASE = "adaptive"
NAMESPACE = "llm-gateway"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json"}

VALUE_FILES = {
    "default": [],
    "production": ["values-production.yaml"],
    # Variants kept with the tests: the other branches of the templates.
    "inline-postgres": [str(HERE / "values-inline-postgres.yaml")],
    "sqlite-pvc": [str(HERE / "values-sqlite-pvc.yaml")],
}

_KEY = "dGhpcyBpcyBub3QgYSByZWFsIGtleSwganVzdCB0ZXM="  # 44 chars, decodes to 32 bytes

# name -> (values to write to a file, regex the error must match). Each must make `helm template` fail.
BAD_VALUES: dict[str, tuple[dict, str]] = {
    "replicas-without-postgres": (
        {"replicaCount": 3},
        r"replicaCount is 3, but postgresql\.enabled is false\. Without PostgreSQL every pod keeps its own SQLite file",
    ),
    "autoscaling-without-postgres": (
        {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}},
        r"autoscaling may run up to 5 replicas .*postgresql\.enabled is false",
    ),
    "replicas-wrong-type": (
        {"replicaCount": "three"},
        r"replicaCount.*(want integer|Expected: integer)",
    ),
    "unknown-top-level-key": (
        {"replicas": 3},
        r"(additional propert(y|ies) '?replicas'? (is )?not allowed|Additional property replicas is not allowed)",
    ),
    "workers-below-minimum": (
        {"proxy": {"numWorkers": 0}},
        r"numWorkers.*(minimum|must be >= 1|should be >= 1)",
    ),
    "bad-pull-policy": (
        {"image": {"pullPolicy": "Sometimes"}},
        r"pullPolicy.*(Always|IfNotPresent|enum)",
    ),
    "postgres-without-url": (
        {"postgresql": {"enabled": True}},
        r"postgresql\.enabled is true but neither postgresql\.url nor postgresql\.existingSecret is set",
    ),
    "postgres-wrong-scheme": (
        {"postgresql": {"enabled": True, "url": "mysql://u:p@db:3306/x"}},
        r"postgresql\.url must start with postgresql://",
    ),
    "redis-without-host": (
        {"redis": {"enabled": True}},
        r"redis\.enabled is true but redis\.host is empty",
    ),
    "short-litellm-master-key": (
        {"secrets": {"litellmMasterKey": "sk-too-short"}},
        r"secrets\.litellmMasterKey has 12 characters; LiteLLM refuses to start with a master key shorter than 32",
    ),
    "bad-adaptive-master-key": (
        {"secrets": {"adaptiveMasterKeys": _KEY + ",not-base64"}},
        r"secrets\.adaptiveMasterKeys key #2 is not a base64-encoded 32-byte AES-256 key",
    ),
    "existing-secret-and-inline-keys": (
        {"secrets": {"existingSecret": "mine", "providerKeys": {"OPENAI_API_KEY": "sk-x"}}},
        r"secrets\.existingSecret is set, so .* would be ignored",
    ),
    "reserved-plugin-setting": (
        {"adaptive": {"settings": {"database_url": "sqlite:///x.db"}}},
        r"adaptive\.settings\.database_url is set by the chart",
    ),
    "persistence-with-replicas": (
        {"replicaCount": 2, "persistence": {"enabled": True},
         "postgresql": {"enabled": True, "url": "postgresql://u:p@db:5432/adaptive"}},
        r"persistence\.enabled keeps the state dir on one ReadWriteOnce claim, which 2 replicas cannot share",
    ),
    "metrics-auth-in-proxy-config": (
        {"metrics": {"serviceMonitor": {"enabled": True}},
         "proxyConfig": {"litellm_settings": {"require_auth_for_metrics_endpoint": False}}},
        r"require_auth_for_metrics_endpoint is set by the chart from metrics\.auth\.enabled",
    ),
    "metrics-token-with-existing-secret": (
        {"secrets": {"existingSecret": "mine"}, "metrics": {"auth": {"token": "t" * 40}}},
        r"secrets\.existingSecret is set, so metrics\.auth\.token would be ignored",
    ),
    "project-labels-on-open-metrics": (
        {"metrics": {"auth": {"enabled": False}}, "adaptive": {"settings": {"metrics_project_labels": True}}},
        r"metrics_project_labels puts every project's id on /metrics, but metrics\.auth\.enabled is false",
    ),
    "metrics-token-as-plugin-setting": (
        {"adaptive": {"settings": {"metrics_token": "t" * 40}}},
        r"adaptive\.settings\.metrics_token is set by the chart",
    ),
    "literal-master-key-in-config": (
        {"proxyConfig": {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini"}}],
                         "general_settings": {"master_key": "sk-1234567890123456789012345678901234"}}},
        r"general_settings\.master_key must be os\.environ/LITELLM_MASTER_KEY",
    ),
}


class CheckError(AssertionError):
    pass


# -- helm ---------------------------------------------------------------------------------


class Helm:
    def __init__(self, helm: str, chart: Path) -> None:
        self.helm = helm
        self.chart = chart

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.helm, *args], capture_output=True, text=True, timeout=120, check=False)

    def _values_args(self, files: Iterable[str | Path], sets: Iterable[str] = ()) -> list[str]:
        out: list[str] = []
        for f in files:
            p = Path(f)
            out += ["-f", str(p if p.is_absolute() else self.chart / p)]
        for s in sets:
            out += ["--set", s]
        return out

    def template(self, files: Iterable[str | Path] = (), sets: Iterable[str] = (),
                 kube_version: str = KUBE_VERSIONS[-1]) -> subprocess.CompletedProcess[str]:
        return self.run("template", RELEASE, str(self.chart), "--namespace", NAMESPACE,
                        "--kube-version", kube_version, *self._values_args(files, sets))

    def lint(self, files: Iterable[str | Path] = ()) -> subprocess.CompletedProcess[str]:
        return self.run("lint", str(self.chart), "--strict", "--namespace", NAMESPACE,
                        *self._values_args(files))


def _docs(text: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d]


def render(h: Helm, name: str, kube_version: str = KUBE_VERSIONS[-1], sets: Iterable[str] = ()) -> list[dict]:
    proc = h.template(VALUE_FILES[name], sets, kube_version)
    if proc.returncode != 0:
        raise CheckError(f"helm template ({name} values) failed:\n{proc.stderr}")
    docs = _docs(proc.stdout)
    if not docs:
        raise CheckError(f"helm template ({name} values) rendered nothing")
    return docs


# -- schema validation --------------------------------------------------------------------


def _kn(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_docs(docs: list[dict], kube_version: str) -> list[str]:
    """Validate every manifest; return one line per manifest checked. Raise on the first error."""
    import jsonschema
    import kubernetes_validate

    lines = []
    for doc in docs:
        crd = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
        if crd is not None:
            schema = json.loads((SCHEMAS / crd).read_text())
            try:
                jsonschema.Draft7Validator(schema).validate(doc)
            except jsonschema.ValidationError as exc:
                where = ".".join(str(p) for p in exc.absolute_path)
                raise CheckError(f"{_kn(doc)} does not match {crd}: {where}: {exc.message}") from None
            lines.append(f"{_kn(doc)}: valid against the bundled minimal CRD schema {crd}")
            continue
        try:
            got = kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            raise CheckError(f"{_kn(doc)} is invalid for Kubernetes {kube_version}: {where}: {exc.message}") from None
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise CheckError(f"{_kn(doc)}: no schema to validate it against ({exc.message})") from None
        lines.append(f"{_kn(doc)}: valid (Kubernetes {got}, strict)")
    return lines


# -- properties a schema cannot see -------------------------------------------------------


def _plugin_settings() -> set[str] | None:
    """Field names of adaptive_plugin.config.Settings, read from the source (None if unavailable)."""
    src = ROOT / "adaptive_plugin" / "config.py"
    try:
        tree = ast.parse(src.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    return None


def _tenant_labels() -> set[str] | None:
    """adaptive_plugin.adapters.metrics_guard.TENANT_LABELS, read from the source (None if unavailable)."""
    src = ROOT / "adaptive_plugin" / "adapters" / "metrics_guard.py"
    try:
        tree = ast.parse(src.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "TENANT_LABELS":
            call = node.value
            if isinstance(call, ast.Call) and call.args:
                return set(ast.literal_eval(call.args[0]))
    return None


def _one(docs: list[dict], kind: str, *, hook: bool | None = None) -> list[dict]:
    found = [d for d in docs if d.get("kind") == kind]
    if hook is not None:
        found = [d for d in found if ("helm.sh/hook" in (d["metadata"].get("annotations") or {})) == hook]
    return found


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckError(msg)


def check_common(docs: list[dict]) -> None:
    import yaml

    deps = _one(docs, "Deployment")
    _require(len(deps) == 1, f"expected one Deployment, got {len(deps)}")
    dep = deps[0]
    pod = dep["spec"]["template"]["spec"]
    ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
    _require(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/config", "")) is not None,
             "the pod template has no checksum/config annotation")
    _require(pod.get("enableServiceLinks") is False, "enableServiceLinks must be false (ADAPTIVE_* service env vars)")
    _require(pod["securityContext"].get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
    _require(pod["securityContext"].get("runAsUser", 0) != 0, "pod securityContext.runAsUser must not be root")
    containers = pod["containers"] + pod.get("initContainers", [])
    allowed = _plugin_settings()
    for c in containers:
        sc = c.get("securityContext") or {}
        _require(sc.get("readOnlyRootFilesystem") is True, f"container {c['name']}: readOnlyRootFilesystem must be true")
        _require(sc.get("allowPrivilegeEscalation") is False, f"container {c['name']}: allowPrivilegeEscalation must be false")
        _require("ALL" in (sc.get("capabilities") or {}).get("drop", []), f"container {c['name']}: must drop ALL capabilities")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        _require("/tmp" in mounts, f"container {c['name']}: /tmp must be a writable mount")
        home = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        # onnxruntime keeps a device id under $HOME/.cache: on a read-only root it must be /tmp
        for name in ("HOME", "XDG_CACHE_HOME"):
            _require(home.get(name, "").startswith("/tmp"), f"container {c['name']}: {name} must be under /tmp")
        if allowed is not None:
            for env in c.get("env", []):
                name = env["name"]
                if name.startswith("ADAPTIVE_"):
                    _require(name[len("ADAPTIVE_"):].lower() in allowed,
                             f"container {c['name']}: {name} is not a setting of adaptive_plugin.config.Settings")
    proxy = next(c for c in pod["containers"] if c["name"] == "proxy")
    _require(proxy["command"] == ["litellm"], "the proxy container must run litellm")
    args = proxy["args"]
    _require(args[:2] == ["--config", "/etc/adaptive/proxy.yaml"] and "--port" in args and "--num_workers" in args,
             f"unexpected proxy args {args}")
    # uvicorn's 5 s default kills workers that are still starting on a busy CPU
    _require("--timeout_worker_healthcheck" in args and int(args[args.index("--timeout_worker_healthcheck") + 1]) >= 30,
             f"the proxy must give its workers at least 30 s to answer uvicorn's health check: {args}")
    _require(proxy["livenessProbe"]["httpGet"]["path"] == "/health/liveliness", "liveness probe path")
    _require(proxy["readinessProbe"]["httpGet"]["path"] == "/health/readiness", "readiness probe path")
    env = {e["name"]: e for e in proxy["env"]}
    for name in ("LITELLM_MASTER_KEY", "ADAPTIVE_MASTER_KEYS", "ADAPTIVE_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR",
                 "LITELLM_LOCAL_MODEL_COST_MAP"):
        _require(name in env, f"the proxy container has no {name}")
    for name in ("LITELLM_MASTER_KEY", "ADAPTIVE_MASTER_KEYS"):
        _require("secretKeyRef" in env[name].get("valueFrom", {}), f"{name} must come from a Secret")
    mounts = {m["mountPath"] for m in proxy["volumeMounts"]}
    for path in (env["ADAPTIVE_STATE_DIR"]["value"], env["PROMETHEUS_MULTIPROC_DIR"]["value"], "/etc/adaptive"):
        _require(path in mounts, f"the proxy container does not mount {path}")

    cms = [d for d in _one(docs, "ConfigMap") if "proxy.yaml" in (d.get("data") or {})]
    _require(len(cms) == 1, "expected one ConfigMap with proxy.yaml")
    cfg = yaml.safe_load(cms[0]["data"]["proxy.yaml"])
    _require(bool(cfg.get("model_list")), "proxy.yaml has no model_list")
    _require("adaptive_plugin.adapters.hooks.hooks" in cfg["litellm_settings"]["callbacks"], "plugin callback missing")
    gs = cfg["general_settings"]
    _require(gs.get("custom_auth") == "adaptive_plugin.adapters.auth.user_api_key_auth", "custom_auth missing")
    _require(gs.get("master_key") == "os.environ/LITELLM_MASTER_KEY", "master_key must be os.environ/LITELLM_MASTER_KEY")
    tenant = _tenant_labels()
    _require(tenant is not None and tenant <= set(cfg["litellm_settings"].get("prometheus_exclude_labels") or []),
             f"proxy.yaml must exclude every tenant label from LiteLLM's metrics: {sorted(tenant or [])}")
    metrics_auth = cfg["litellm_settings"].get("require_auth_for_metrics_endpoint")
    _require(isinstance(metrics_auth, bool), "the chart must set require_auth_for_metrics_endpoint (metrics.auth.enabled)")
    if metrics_auth:
        ref = (env.get("ADAPTIVE_METRICS_TOKEN") or {}).get("valueFrom", {}).get("secretKeyRef")
        _require(ref is not None and ref["key"] == "ADAPTIVE_METRICS_TOKEN",
                 "/metrics requires authentication: the proxy needs ADAPTIVE_METRICS_TOKEN from a Secret")
        for sm in _one(docs, "ServiceMonitor"):
            creds = (sm["spec"]["endpoints"][0].get("authorization") or {}).get("credentials") or {}
            _require(creds == {"name": ref["name"], "key": "ADAPTIVE_METRICS_TOKEN"},
                     f"the ServiceMonitor must send the scrape token from {ref['name']}: {creds}")
    else:
        _require("ADAPTIVE_METRICS_TOKEN" not in env, "open /metrics: no scrape token")
    _require(bool(_one(docs, "Service")), "no Service")
    _require(bool(_one(docs, "PodDisruptionBudget")), "no PodDisruptionBudget")


def check_default(docs: list[dict]) -> None:
    check_common(docs)
    dep = _one(docs, "Deployment")[0]
    _require(dep["spec"].get("replicas") == 1, "default values must run one replica")
    pod = dep["spec"]["template"]["spec"]
    _require([c["name"] for c in pod.get("initContainers", [])] == ["migrate"],
             "SQLite (no PostgreSQL): the schema must be migrated by an init container in the pod")
    _require(not _one(docs, "Job"), "no migration Job without PostgreSQL")
    for kind in ("HorizontalPodAutoscaler", "ServiceMonitor"):
        _require(not _one(docs, kind), f"{kind} must be off by default")
    secrets = _one(docs, "Secret")
    _require(len(secrets) == 1 and {"LITELLM_MASTER_KEY", "ADAPTIVE_MASTER_KEYS", "ADAPTIVE_METRICS_TOKEN"}
             <= set(secrets[0]["data"]),
             "the chart's Secret must hold LITELLM_MASTER_KEY, ADAPTIVE_MASTER_KEYS and ADAPTIVE_METRICS_TOKEN")
    import yaml

    cfg = yaml.safe_load(next(d for d in _one(docs, "ConfigMap") if "proxy.yaml" in d["data"])["data"]["proxy.yaml"])
    _require(cfg["litellm_settings"]["require_auth_for_metrics_endpoint"] is True, "/metrics requires a token by default")


def check_production(docs: list[dict]) -> None:
    check_common(docs)
    dep = _one(docs, "Deployment")[0]
    _require("replicas" not in dep["spec"], "with the HPA on, the Deployment must leave replicas to it")
    hpa = _one(docs, "HorizontalPodAutoscaler")
    _require(len(hpa) == 1 and hpa[0]["spec"]["minReplicas"] >= 3, "production: HPA with minReplicas >= 3")
    _require(len(_one(docs, "ServiceMonitor")) == 1, "production: ServiceMonitor")
    sm = _one(docs, "ServiceMonitor")[0]
    _require(sm["spec"]["endpoints"][0]["path"] == "/metrics" and sm["spec"]["endpoints"][0]["port"] == "http",
             "ServiceMonitor must scrape /metrics on the http port")
    jobs = _one(docs, "Job", hook=True)
    _require(len(jobs) == 1, "production (PostgreSQL): one migration Job hook")
    hooks = jobs[0]["metadata"]["annotations"]["helm.sh/hook"].split(",")
    _require("pre-upgrade" in hooks, "the migration Job must run before upgrade")
    _require(jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"] == ["adaptive-plugin", "migrate"],
             "the migration Job must run `adaptive-plugin migrate`")
    pod = dep["spec"]["template"]["spec"]
    _require(not pod.get("initContainers"), "with PostgreSQL the Job migrates, not an init container")
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    for name in ("ADAPTIVE_DATABASE_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"):
        _require(name in env, f"production: the proxy has no {name}")
    _require(not _one(docs, "Secret"), "production uses existing Secrets only")
    dash = [d for d in _one(docs, "ConfigMap") if "adaptive.json" in (d.get("data") or {})]
    _require(len(dash) == 1, "production: the Grafana dashboard ConfigMap")
    _require(dash[0]["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard ConfigMap needs the sidecar label")
    board = json.loads(dash[0]["data"]["adaptive.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for metric in ("adaptive_requests_total", "adaptive_tokens_total", "adaptive_billing_overhead_fee_usd_total",
                   "adaptive_billing_model_cost_usd_total", "adaptive_cache_lookups_total",
                   "adaptive_cache_lookup_seconds_bucket", "adaptive_cache_entries", "adaptive_cache_evictions_total",
                   "adaptive_routing_decisions_total", "adaptive_key_fallbacks_total",
                   "adaptive_plugin_latency_seconds_bucket"):
        _require(metric in exprs, f"the dashboard has no panel on {metric}")


def check_inline_postgres(docs: list[dict]) -> None:
    import base64

    check_common(docs)
    dep = _one(docs, "Deployment")[0]
    _require(dep["spec"]["replicas"] == 2, "inline-postgres: 2 replicas")
    secret = [d for d in _one(docs, "Secret", hook=False)]
    _require(len(secret) == 1, "inline-postgres: the chart's Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret[0]["data"].items()}
    for key in ("LITELLM_MASTER_KEY", "ADAPTIVE_MASTER_KEYS", "ADAPTIVE_DATABASE_URL", "REDIS_PASSWORD",
                "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        _require(key in data, f"inline-postgres: the Secret has no {key}")
    hook_secret = _one(docs, "Secret", hook=True)
    _require(len(hook_secret) == 1 and set(hook_secret[0]["data"]) == {"ADAPTIVE_DATABASE_URL"},
             "inline-postgres: the migration Job needs its hook Secret with the database URL only")
    job = _one(docs, "Job", hook=True)[0]
    ref = job["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]
    _require(ref["name"] == hook_secret[0]["metadata"]["name"], "the Job must read the hook Secret")
    _require(int(hook_secret[0]["metadata"]["annotations"]["helm.sh/hook-weight"])
             < int(job["metadata"]["annotations"]["helm.sh/hook-weight"]), "hook Secret must come before the Job")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    _require(env.get("ADAPTIVE_CACHE_MAX_ENTRIES") == "1000000", "whole numbers must render as integers, not 1e+06")
    _require(env.get("ADAPTIVE_DEFAULT_COST_BIAS") == "0.3" and env.get("ADAPTIVE_CACHE_ENABLED") == "false",
             f"plugin settings rendered wrong: {env}")
    import yaml

    cfg = yaml.safe_load(next(d for d in _one(docs, "ConfigMap") if "proxy.yaml" in d["data"])["data"]["proxy.yaml"])
    _require(cfg["litellm_settings"]["require_auth_for_metrics_endpoint"] is False and "ADAPTIVE_METRICS_TOKEN" not in data,
             "metrics.auth.enabled=false: an open /metrics and no scrape token")
    rs = cfg["router_settings"]
    _require(rs.get("redis_host") == "os.environ/REDIS_HOST" and rs.get("redis_password") == "os.environ/REDIS_PASSWORD"
             and rs.get("num_retries") == 3 and "retry_policy" in rs, f"router_settings: {rs}")
    plugin_redis = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    _require(str(plugin_redis.get("ADAPTIVE_REDIS_URL", {}).get("value", "")).startswith("redis://")
             and "@" not in plugin_redis["ADAPTIVE_REDIS_URL"]["value"]
             and "secretKeyRef" in plugin_redis.get("ADAPTIVE_REDIS_PASSWORD", {}).get("valueFrom", {}),
             "redis.enabled: the plugin gets ADAPTIVE_REDIS_URL (no password in it) and ADAPTIVE_REDIS_PASSWORD from the Secret")


def check_sqlite_pvc(docs: list[dict]) -> None:
    check_common(docs)
    dep = _one(docs, "Deployment")[0]
    _require(dep["spec"]["strategy"]["type"] == "Recreate", "a ReadWriteOnce claim needs the Recreate strategy")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    _require("persistentVolumeClaim" in vols["state"], "the state dir must be on the claim")
    pvc = _one(docs, "PersistentVolumeClaim")
    _require(len(pvc) == 1 and pvc[0]["spec"].get("storageClassName") == "", "storageClass '-' must render as \"\"")
    env = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    _require("REDIS_HOST" in env and "REDIS_PASSWORD" not in env, "Redis without a password: no REDIS_PASSWORD")
    _require("ADAPTIVE_REDIS_URL" in env and "ADAPTIVE_REDIS_PASSWORD" not in env,
             "Redis without a password: ADAPTIVE_REDIS_URL and no ADAPTIVE_REDIS_PASSWORD")
    pdb = _one(docs, "PodDisruptionBudget")[0]
    _require(pdb["spec"].get("minAvailable") == "50%" and "maxUnavailable" not in pdb["spec"], f"pdb: {pdb['spec']}")
    dash = [d for d in _one(docs, "ConfigMap") if "adaptive.json" in (d.get("data") or {})][0]
    _require("annotations" not in dash["metadata"], "an empty folder must not render an annotation")


CHECKS: dict[str, Callable[[list[dict]], None]] = {
    "default": check_default,
    "production": check_production,
    "inline-postgres": check_inline_postgres,
    "sqlite-pvc": check_sqlite_pvc,
}


# -- commands -----------------------------------------------------------------------------


def cmd_lint(h: Helm, name: str) -> str:
    proc = h.lint(VALUE_FILES[name])
    if proc.returncode != 0:
        raise CheckError(f"helm lint --strict ({name} values) failed:\n{proc.stdout}\n{proc.stderr}")
    return f"helm lint --strict ({name} values): ok"


def cmd_render(h: Helm, name: str) -> str:
    kinds: list[str] = []
    for version in KUBE_VERSIONS:
        docs = render(h, name, version)
        validate_docs(docs, version)
        CHECKS[name](docs)
        kinds = sorted(_kn(d) for d in docs)
    return f"render+validate ({name} values, Kubernetes {' and '.join(KUBE_VERSIONS)}): {len(kinds)} manifests ok: {', '.join(kinds)}"


def cmd_bad(h: Helm, case: str) -> str:
    import yaml

    values, pattern = BAD_VALUES[case]
    with tempfile.TemporaryDirectory(prefix="helm-bad-") as tmp:
        path = Path(tmp) / f"{case}.yaml"
        path.write_text(yaml.safe_dump(values))
        proc = h.template([path])
    if proc.returncode == 0:
        raise CheckError(f"bad values {case} ({values}) rendered without an error")
    if not re.search(pattern, proc.stderr):
        raise CheckError(f"bad values {case}: the error does not match {pattern!r}:\n{proc.stderr}")
    lines = [ln.strip() for ln in proc.stderr.splitlines()]
    msg = next((ln for ln in lines if ln.startswith("- at ") or "adaptive-plugin values:" in ln), lines[0] if lines else "")
    msg = re.sub(r"^Error: execution error at \([^)]*\): ", "", msg)
    return f"bad values {case}: refused: {msg[:200]}"


def cmd_checksum(h: Helm) -> str:
    def config_sum(sets: list[str]) -> str:
        dep = _one(render(h, "default", sets=sets), "Deployment")[0]
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    a, b = config_sum([]), config_sum([])
    _require(a == b, "checksum/config differs between two renders of the same values")
    c = config_sum(["proxyConfig.router_settings.num_retries=5"])
    _require(a != c, "checksum/config did not change when the proxy config changed (pods would not roll)")
    return "checksum/config: stable for the same config, changes with the config"


def cmd_validator_sanity(h: Helm) -> str:
    """The validators must reject broken manifests, or a green run would mean nothing."""
    import copy

    docs = render(h, "production")
    dep = _one(docs, "Deployment")[0]
    sm = _one(docs, "ServiceMonitor")[0]
    broken: list[tuple[str, dict]] = []
    d = copy.deepcopy(dep)
    d["spec"]["replicas"] = "three"
    broken.append(("Deployment with replicas: \"three\"", d))
    d = copy.deepcopy(dep)
    d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    broken.append(("Deployment with a misspelt container field", d))
    d = copy.deepcopy(sm)
    d["spec"]["endpoints"][0]["pathh"] = "/metrics"
    broken.append(("ServiceMonitor with a misspelt endpoint field", d))
    d = {"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}}
    broken.append(("a kind without a schema", d))
    for label, doc in broken:
        try:
            validate_docs([doc], KUBE_VERSIONS[-1])
        except CheckError:
            continue
        raise CheckError(f"the validator accepted {label}")
    return f"validator sanity: {len(broken)} broken manifests rejected"


def run_all(h: Helm) -> int:
    steps: list[tuple[str, Callable[[], str]]] = []
    for name in VALUE_FILES:
        steps.append((f"lint {name}", lambda n=name: cmd_lint(h, n)))
        steps.append((f"render {name}", lambda n=name: cmd_render(h, n)))
    steps.append(("checksum", lambda: cmd_checksum(h)))
    steps.append(("validator sanity", lambda: cmd_validator_sanity(h)))
    for case in BAD_VALUES:
        steps.append((f"bad {case}", lambda c=case: cmd_bad(h, c)))
    passed = failed = 0
    for label, fn in steps:
        try:
            print(f"ok   {fn()}")
            passed += 1
        except CheckError as exc:
            print(f"FAIL {label}: {exc}")
            failed += 1
    print(f"helm-check: {passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--helm", default=os.environ.get("HELM", "helm"))
    ap.add_argument("--chart", type=Path, default=ROOT / "helm")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("all")
    sub.add_parser("lint").add_argument("values", choices=sorted(VALUE_FILES))
    sub.add_parser("render").add_argument("values", choices=sorted(VALUE_FILES))
    sub.add_parser("bad").add_argument("case", choices=sorted(BAD_VALUES))
    sub.add_parser("checksum")
    sub.add_parser("validator-sanity")
    args = ap.parse_args(argv)
    h = Helm(args.helm, args.chart.resolve())
    if args.cmd == "all":
        return run_all(h)
    try:
        if args.cmd == "lint":
            print(cmd_lint(h, args.values))
        elif args.cmd == "render":
            print(cmd_render(h, args.values))
        elif args.cmd == "bad":
            print(cmd_bad(h, args.case))
        elif args.cmd == "checksum":
            print(cmd_checksum(h))
        else:
            print(cmd_validator_sanity(h))
    except CheckError as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
