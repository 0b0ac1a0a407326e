"""The deployment kit in deploy/: Prometheus rules and config (promtool), the Grafana dashboard,
compose and Kubernetes manifests, the Dockerfile, the systemd unit, the config examples.

Every PromQL expression shipped (alert and recording rules, dashboard panels and variables) may
use only the metric names of docs/design.md section 7 (plus Prometheus' own `up`), and each of
them must really be exposed by a running daemon's /metrics.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, all_terminal
from tests.support.receiver import Receiver
from tests.test_core_api import ORANGE, webhook_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gateway.json"
UNIT = DEPLOY / "systemd" / "gateway.service"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed: `apt-get install prometheus` (Debian) provides it; scripts/test-deps.sh does",
)

# design.md section 7 (binding): family name -> type
CONTRACT: dict[str, str] = {
    "gateway_events_total": "counter",
    "gateway_deliveries_total": "counter",
    "gateway_delivery_attempts_total": "counter",
    "gateway_delivery_failures_total": "counter",
    "gateway_delivery_latency_seconds": "histogram",
    "gateway_ack_latency_seconds": "histogram",
    "gateway_queue_depth": "gauge",
    "gateway_oldest_pending_seconds": "gauge",
    "gateway_escalations_total": "counter",
    "gateway_public_messages_total": "counter",
    "gateway_channel_up": "gauge",
}


def _sample_names(family: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return {family}


CONTRACT_SAMPLES: frozenset[str] = frozenset(n for f, k in CONTRACT.items() for n in _sample_names(f, k))
PROMETHEUS_OWN = frozenset({"up"})

# ---- PromQL: the metric names an expression selects ---------------------------------------------

_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                       "and", "or", "unless", "inf", "nan", "start", "end", "atan2"})
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (functions, labels and keywords left out)."""
    s = _STRINGS.sub('""', expr)
    s = _MATCHERS.sub(" ", s)
    s = _RANGES.sub(" ", s)
    s = _GROUPINGS.sub(" ", s)
    names: set[str] = set()
    for m in _IDENT.finditer(s):
        name = m.group(1)
        if re.match(r"\s*\(", s[m.end():]) or name.lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(name)
    return names


def test_promql_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, channel) (rate(gateway_delivery_latency_seconds_bucket'
            '{channel=~"$channel", le!="+Inf"}[$__rate_interval] offset 5m)))'
            ' / on(channel) group_left max without (instance) (gateway_queue_depth) > bool 1e3'
            ' or vector(0) unless absent(up{job="gateway"}) and sum(foo_bar:rate5m)')
    assert promql_metric_names(expr) == {"gateway_delivery_latency_seconds_bucket", "gateway_queue_depth",
                                         "up", "foo_bar:rate5m"}
    assert promql_metric_names('sum(rate(gateway_deliverys_total[5m])) by (channel)') == {"gateway_deliverys_total"}


def test_contract_list_matches_design_md() -> None:
    """The binding list above is design.md section 7, where a copy of shared/ is at hand."""
    candidates = [ROOT.parent / "shared" / "docs" / "design.md", Path("/work/shared/docs/design.md")]
    design = next((p for p in candidates if p.is_file()), None)
    if design is None:
        pytest.skip("docs/design.md (shared/) is not beside this checkout")
    text = design.read_text(encoding="utf-8")
    section = text.split("## 7.", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\|\s*(gateway_\w+)\s*\|\s*(\w+)\s*\|", section, flags=re.M))
    assert rows == CONTRACT


# ---- Prometheus -------------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in data["groups"] for r in g["rules"]]


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_check_rules() -> None:
    r = _promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@needs_promtool
def test_promtool_check_config_finds_the_rules() -> None:
    r = _promtool("check", "config", str(PROM_CONFIG))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    """deploy/prometheus/rules.test.yml: the alerts fire (and stay quiet) on synthetic series."""
    r = _promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_scrapes_both_gateways_as_job_gateway() -> None:
    cfg = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    assert cfg["rule_files"] == ["rules.yml"]
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "gateway")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["gateway-1:8080", "gateway-2:8080"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_rules_use_only_contract_metric_names() -> None:
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    allowed = CONTRACT_SAMPLES | PROMETHEUS_OWN | recorded
    used: set[str] = set()
    for r in rules:
        names = promql_metric_names(r["expr"])
        assert names, r
        assert names <= allowed, (r.get("alert") or r.get("record"), names - allowed)
        used |= names
    # recording rules for the delivery latency percentiles, from the histogram
    for q in ("p50", "p99"):
        rec = next(r for r in rules if r.get("record") == f"channel:gateway_delivery_latency_seconds:{q}_5m")
        assert "histogram_quantile" in rec["expr"]
        assert promql_metric_names(rec["expr"]) == {"gateway_delivery_latency_seconds_bucket"}


_CJK = re.compile(r"[\u4e00-\u9fff]")


def test_alert_rules_have_for_severity_bilingual_summary_and_runbook() -> None:
    alerts = {r["alert"]: r for r in _rules() if "alert" in r}
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+\s+(.+)$", readme, flags=re.M)}
    for name, r in alerts.items():
        assert r.get("for"), name
        assert r["labels"]["severity"] in ("warning", "critical"), name
        summary = r["annotations"]["summary"]
        assert _CJK.search(summary) and re.search(r"[A-Za-z]{4,}", summary), (name, summary)
        assert r["annotations"].get("runbook"), name
        anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, (name, anchor)

    def selects(metric: str) -> list[str]:
        return [n for n, r in alerts.items() if metric in promql_metric_names(r["expr"])]

    ratio = alerts["GatewayDeliveryFailureRatioHigh"]["expr"]
    assert 'outcome="failed"' in ratio and "/" in ratio
    assert selects("gateway_oldest_pending_seconds")
    assert alerts["GatewayChannelDown"]["expr"].strip() == "gateway_channel_up == 0"
    assert alerts["GatewayChannelDown"]["for"] == "2m"
    assert "increase(gateway_escalations_total" in alerts["GatewayUnitsUnconfirmed"]["expr"]
    assert alerts["GatewayScrapeDown"]["expr"].strip() == 'up{job="gateway"} == 0'
    assert selects("gateway_queue_depth")


# ---- Grafana ----------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _dashboard_exprs(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable (label_values unwrapped)."""
    out = [(p["title"], t["expr"]) for p in _panels(d["panels"]) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q)
        out.append((f"${v['name']}", m.group(1) if m else q))
    return out


def test_dashboard_is_valid_grafana_json() -> None:
    d = _dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["uid"] and d["title"]
    panels = list(_panels(d["panels"]))
    assert {p["type"] for p in panels} <= {"row", "timeseries", "stat"}
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    ds_vars = {v["name"] for v in d["templating"]["list"] if v["type"] == "datasource"}
    assert ds_vars == {"DS_PROMETHEUS"}
    for p in panels:
        if p["type"] == "row":
            continue
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        assert p["targets"], p["title"]
        for t in [p, *p["targets"]]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]


def test_dashboard_queries_use_only_contract_metric_names() -> None:
    d = _dashboard()
    used: set[str] = set()
    for where, expr in _dashboard_exprs(d):
        names = promql_metric_names(expr)
        assert names, (where, expr)
        assert names <= CONTRACT_SAMPLES | PROMETHEUS_OWN, (where, names - CONTRACT_SAMPLES - PROMETHEUS_OWN)
        used |= names
    # the panels the issue asks for
    for needed in ("gateway_deliveries_total", "gateway_delivery_latency_seconds_bucket", "gateway_queue_depth",
                   "gateway_oldest_pending_seconds", "gateway_ack_latency_seconds_bucket",
                   "gateway_ack_latency_seconds_count", "gateway_escalations_total", "gateway_channel_up",
                   "gateway_events_total"):
        assert needed in used, needed
    exprs = " ".join(e for _, e in _dashboard_exprs(d))
    assert "histogram_quantile(0.5, sum by (le, channel) (rate(gateway_delivery_latency_seconds_bucket" in exprs
    assert "histogram_quantile(0.99, sum by (le, channel) (rate(gateway_delivery_latency_seconds_bucket" in exprs


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, parses as PromQL (promtool)."""
    rules = []
    for i, (_, expr) in enumerate(_dashboard_exprs(_dashboard())):
        e = re.sub(r"\$__\w+", "5m", expr)
        e = re.sub(r"\$\{?\w+\}?", ".*", e)
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = _promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_grafana_provisioning() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]
    dash = yaml.safe_load((prov / "dashboards" / "gateway.yaml").read_text(encoding="utf-8"))
    (provider,) = dash["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


# ---- metric names against a running daemon ----------------------------------------------------


def _exposed_names(text: str) -> tuple[set[str], set[str]]:
    """(names a Prometheus server would store from this exposition, names with samples now)."""
    declared: set[str] = set()
    sampled: set[str] = set()
    for fam in text_string_to_metric_families(text):
        if fam.type == "counter":
            declared.add(fam.name + "_total")
        elif fam.type == "histogram":
            declared |= _sample_names(fam.name, "histogram")
        else:
            declared.add(fam.name)
        sampled |= {s.name for s in fam.samples}
    return declared | sampled, sampled


async def test_metric_names_in_rules_and_dashboard_are_exposed_by_the_daemon(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    status, answer = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "deploy-metrics-1"})
    assert status == 202, answer
    body = await d.wait_event("deploy-metrics-1", all_terminal)
    status, _ = await d.call("POST", f"/v1/deliveries/{body['deliveries'][0]['id']}/ack", json_body={})
    assert status == 200

    exposed, sampled = _exposed_names(await d.metrics())
    assert not CONTRACT_SAMPLES - exposed, sorted(CONTRACT_SAMPLES - exposed)
    # the series the dashboard's core panels need carry samples after one event and one ack
    for name in ("gateway_events_total", "gateway_deliveries_total", "gateway_delivery_latency_seconds_bucket",
                 "gateway_ack_latency_seconds_bucket", "gateway_ack_latency_seconds_count", "gateway_queue_depth",
                 "gateway_oldest_pending_seconds", "gateway_channel_up"):
        assert name in sampled, name

    recorded = {r["record"] for r in _rules() if "record" in r}
    used = {n for r in _rules() for n in promql_metric_names(r["expr"])}
    used |= {n for _, e in _dashboard_exprs(_dashboard()) for n in promql_metric_names(e)}
    missing = used - recorded - PROMETHEUS_OWN - exposed
    assert not missing, sorted(missing)


# ---- compose and Kubernetes -------------------------------------------------------------------


def _yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


_SECRET_ENV = ("GATEWAY_STORE_URL", "GATEWAY_WEBHOOK_SECRET", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")


def test_compose_two_gateways_share_postgres() -> None:
    (c,) = _yaml_docs(DEPLOY / "compose.yaml")
    s = c["services"]
    g1, g2 = s["gateway-1"], s["gateway-2"]
    assert g1["image"] == g2["image"] and g1["build"]["dockerfile"] == "deploy/Dockerfile"
    for g in (g1, g2):
        env = g["environment"]
        assert re.fullmatch(r"postgresql://gateway:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432/gateway",
                            env["GATEWAY_STORE_URL"])
        for key in _SECRET_ENV[1:]:
            assert env[key].startswith("${" + key) and env[key].endswith("}"), key  # interpolated, never inline
        assert g["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert any(v.endswith(":/var/lib/gateway") for v in g["volumes"])
        assert all(p.startswith("127.0.0.1:") for p in g["ports"])
    assert s["postgres"]["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(s["postgres"]["healthcheck"]["test"])
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    prom_mounts = " ".join(s["prometheus"]["volumes"])
    assert "./prometheus/prometheus.yml:" in prom_mounts and "./prometheus/rules.yml:" in prom_mounts
    graf_mounts = " ".join(s["grafana"]["volumes"])
    assert "./grafana/provisioning:" in graf_mounts and "./grafana/dashboards:" in graf_mounts
    assert c["secrets"]["gateway_tokens"]["file"] == "./config/tokens.yaml"
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and "config/tokens.yaml" in ignored
    example = (DEPLOY / "env.example").read_text(encoding="utf-8")
    assert all(re.search(rf"^{k}=$", example, flags=re.M) for k in ("POSTGRES_PASSWORD", "TWILIO_AUTH_TOKEN"))


def _k8s() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in _yaml_docs(path):
            if doc.get("kind") == "Kustomization":
                continue
            assert doc["apiVersion"] and doc["metadata"]["name"], path
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_k8s_manifests() -> None:
    objs = _k8s()
    dep = objs[("Deployment", "gateway")]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    assert pod["metadata"]["labels"].items() >= dep["spec"]["selector"]["matchLabels"].items()
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["terminationGracePeriodSeconds"] > 10  # above dispatch.grace_seconds
    (c,) = spec["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e for e in c["env"]}
    for key in _SECRET_ENV:
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "gateway-secrets", "key": key}, key
    cm_volumes = [v for v in spec["volumes"] if "configMap" in v]
    assert cm_volumes and cm_volumes[0]["configMap"]["name"] == "gateway-config"
    assert ("ConfigMap", "gateway-config") in objs
    svc = objs[("Service", "gateway")]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    pdb = objs[("PodDisruptionBudget", "gateway")]
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"] == dep["spec"]["selector"]
    # the Secret is a template: placeholders only, and not applied by the kustomization
    secret = objs[("Secret", "gateway-secrets")]
    for key, value in secret["stringData"].items():
        if key == "tokens.yaml":
            assert all(e["token_sha256"].startswith("<") and "token" not in e for e in yaml.safe_load(value))
        else:
            assert "<" in value and ">" in value, key
    (kust,) = _yaml_docs(DEPLOY / "k8s" / "kustomization.yaml")
    assert "secret.template.yaml" not in kust["resources"]
    assert all((DEPLOY / "k8s" / r).is_file() for r in kust["resources"])


# ---- config examples --------------------------------------------------------------------------


def _check_config(config: Path, tokens: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_"))}
    env["GATEWAY_TOKENS_FILE"] = str(tokens)
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_production_config_examples_pass_check_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = DEPLOY / "config" / "tokens.example.yaml"
    entries = yaml.safe_load(tokens.read_text(encoding="utf-8"))
    assert entries and all("token_sha256" in e and "token" not in e for e in entries)
    assert all(not re.fullmatch(r"[0-9a-f]{64}", e["token_sha256"]) for e in entries)  # placeholders only

    (cm,) = [o for o in _k8s().values() if o["kind"] == "ConfigMap"]
    k8s_config = tmp_path / "gateway.yaml"
    k8s_config.write_text(cm["data"]["gateway.yaml"], encoding="utf-8")
    for path in (DEPLOY / "config" / "gateway.yaml", k8s_config):
        r = _check_config(path, tokens)
        assert r.returncode == 0, (path, r.stdout + r.stderr)
        for k in ("GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_DATA_DIR", "GATEWAY_STORE_URL", "GATEWAY_TOKENS_FILE"):
            monkeypatch.delenv(k, raising=False)
        cfg = load_config(path)
        assert cfg.channels.twilio.enabled and not cfg.sandbox.enabled
        assert cfg.channels.twilio.base_url is None  # the real api.twilio.com
        assert (cfg.server.public_base_url or "").startswith("https://")
        assert cfg.auth.tokens_file and cfg.store.url is None  # the store URL comes from GATEWAY_STORE_URL
        assert cfg.data_dir == "/var/lib/gateway" and cfg.log_format == "json"
        monkeypatch.setenv("GATEWAY_STORE_URL", "postgresql://gateway:x@db:5432/gateway")
        assert load_config(path).store_url.startswith("postgresql://")


# ---- Dockerfile -------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for ln in logical.splitlines():
        if ln.strip():
            word, _, rest = ln.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_multistage_non_root_with_healthcheck() -> None:
    ins = _dockerfile()
    args = dict(a.split("=", 1) for k, a in ins if k == "ARG" and "=" in a)
    froms = [a.replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", "")) for k, a in ins if k == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms)
    final = ins[max(i for i, (k, _) in enumerate(ins) if k == "FROM"):]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (health,) = [a for k, a in final if k == "HEALTHCHECK"]
    assert "/healthz" in health and "python" in health and "curl" not in health
    assert ("EXPOSE", "8080") in final
    assert any(k == "VOLUME" and "/var/lib/gateway" in a for k, a in final)
    (entry,) = [a for k, a in final if k == "ENTRYPOINT"]
    assert json.loads(entry) == ["gateway", "run", "--host", "0.0.0.0"]
    assert any(k == "RUN" and "pip wheel" in a for k, a in ins)
    # the after-action chart's Chinese labels need a CJK font in the image that renders it
    assert any(k == "RUN" and "fonts-noto-cjk" in a for k, a in final)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {"!pyproject.toml", "!gateway", "!channels", "!contacts"} <= set(ignore)


def test_wheel_carries_every_package_data_file(tmp_path: Path) -> None:
    """The image installs the wheel: every non-Python file of the packages must be in it.

    setuptools' build_py copies exactly what bdist_wheel packs (packages + package-data), offline.
    """
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for pkg in ("gateway", "channels", "contacts"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=skip)
    out = tmp_path / "lib"
    r = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                        "--build-lib", str(out)],
                       cwd=src, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    built = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    data = {p.relative_to(src).as_posix() for pkg in ("gateway", "channels", "contacts")
            for p in (src / pkg).rglob("*") if p.is_file() and p.suffix != ".py"}
    assert "gateway/defaults/config.yaml" in data and "gateway/defaults/config.yaml" in built
    assert not data - built, f"missing from the wheel (pyproject package-data): {sorted(data - built)}"


# ---- systemd ----------------------------------------------------------------------------------


class _MultiDict(dict[str, Any]):
    """configparser dict type that keeps repeated keys (systemd allows them) as extra lines."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def _unit() -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser(strict=False, dict_type=_MultiDict, interpolation=None,
                                      empty_lines_in_values=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    cp.read_string(UNIT.read_text(encoding="utf-8"))
    return cp


def test_systemd_unit_hardening() -> None:
    svc = _unit()["Service"]
    expect = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/gateway",
        "PrivateTmp": "yes", "ProtectHome": "yes", "PrivateDevices": "yes", "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
        "ExecReload": "/bin/kill -HUP $MAINPID", "KillSignal": "SIGTERM", "EnvironmentFile": "/etc/gateway/env",
        "User": "gateway",
    }
    for key, value in expect.items():
        assert svc.get(key) == value, (key, svc.get(key))
    assert "@system-service" in svc["SystemCallFilter"].splitlines()
    assert svc["ExecStart"].split()[1:] == ["run", "--config", "/etc/gateway/gateway.yaml"]
    stop = re.fullmatch(r"(\d+)s?", svc["TimeoutStopSec"])
    assert stop and int(stop.group(1)) > load_config(DEPLOY / "config" / "gateway.yaml").dispatch.grace_seconds


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    # verify checks that ExecStart exists: point it at this checkout's console script
    gateway_bin = Path(sys.executable).parent / "gateway"
    if not gateway_bin.exists():
        pytest.skip(f"no console script at {gateway_bin}")
    unit = tmp_path / "gateway.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/gateway/bin/gateway", str(gateway_bin)))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert not re.search(r"Unknown (key|section|lvalue)|Failed to parse|is not executable", out), out
