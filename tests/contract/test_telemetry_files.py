"""The Grafana dashboard and the Prometheus alert rules under deploy/: well-formed, firing when
they should (promtool, from Debian), and naming only metrics the bank exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import mesh.embedded  # noqa: F401 - imports every context, so that every metric is registered

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "ogpgy-alerts.yml"
RULE_TESTS = Path(__file__).parent / "prometheus" / "ogpgy-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ogpgy-dashboard.json"
PROMTOOL = ROOT / ".venv" / "bin" / "promtool"  # scripts/bootstrap unpacks it from Debian's prometheus
METRIC = re.compile(r"\b(?:grpc|ogpgy)_[a-z_]+\b")
LABELS = {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}  # go-grpc-prometheus's label names
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "summary": ("_count", "_sum")}


def _expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    dashboard = json.loads(DASHBOARD.read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    found += [variable["query"] for variable in dashboard["templating"]["list"] if variable["type"] == "query"]
    return found


def _exported() -> set[str]:
    """The sample names the bank's registry can expose (a labelled metric shows them once used)."""
    return {family.name + suffix for family in REGISTRY.collect() for suffix in SUFFIXES.get(family.type, ("",))}


def test_every_metric_named_is_one_the_bank_exports() -> None:
    named = {name for expression in _expressions() for name in METRIC.findall(expression)} - LABELS
    assert named, "no metric found in the rules and the dashboard"
    assert named <= _exported(), f"not exported: {sorted(named - _exported())}"


def test_the_alert_rules_are_valid_and_fire_when_they_should() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"OgpgyHighErrorRate", "OgpgyOutboxLag", "OgpgyConsumerLag", "OgpgyDeadLetters", "OgpgyCircuitBreakerOpen"} <= {
        rule["alert"] for rule in alerts
    }
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"], rule["alert"]
    if not PROMTOOL.exists():
        assert shutil.which("apt-get") is None, "scripts/bootstrap unpacks promtool wherever Debian's packages are reachable"
        return
    for args in (["check", "rules", str(RULES)], ["test", "rules", RULE_TESTS.name]):
        result = subprocess.run([str(PROMTOOL), *args], cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    for panel in panels:
        assert panel["type"] in ("timeseries", "stat", "gauge") and panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["type"] == "prometheus" and all(t["expr"] and t["refId"] for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("error", "latency", "outbox", "consumer", "dead", "breaker"):
        assert topic in titles, f"no panel on {topic}"
