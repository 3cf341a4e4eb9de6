"""The observability files under deploy/, docker-compose's prometheus, and the README's
metric list: parsed, and every metric they name checked against the code's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from syncworker.observe.metrics import METRICS, markdown_table

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# The samples each type of metric exposes, after its name.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Series Prometheus adds itself.
BUILTIN = {"up"}


def exposed() -> set[str]:
    return {m._name + suffix for m in METRICS for suffix in SUFFIXES[m._type]}


def named_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(syncworker_[a-z_]+|up)\b", expr))


def test_alert_rules_use_real_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"SyncworkerNoSuccessfulRun", "SyncworkerWorkerDown"} <= {a["alert"] for a in alerts}
    for alert in alerts:
        names = named_in(alert["expr"])
        assert names and names <= exposed() | BUILTIN, (alert["alert"], names - exposed())
        assert alert["annotations"]["summary"]


def test_dashboard_uses_real_metrics() -> None:
    dashboard: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "syncworker-dashboard.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(named_in(e) for e in exprs))
    assert used <= exposed(), used - exposed()
    # Every metric of the code has a panel.
    counted = {name.removesuffix("_bucket") for name in used}
    left = {m._name for m in METRICS} - {n.removesuffix("_total") for n in counted}
    assert not left, left


def test_compose_prometheus_scrapes_the_workers_metrics_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]["command"]
    port = int(worker[worker.index("--metrics-port") + 1])
    prometheus = compose["services"]["prometheus"]
    mounted = {}
    for volume in prometheus["volumes"]:
        host, container, _ = volume.split(":")
        assert (ROOT / host).is_file(), host
        mounted[container] = ROOT / host
    config = yaml.safe_load(mounted["/etc/prometheus/prometheus.yml"].read_text())
    assert set(config["rule_files"]) <= set(mounted)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "syncworker")
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    assert job["dns_sd_configs"][0]["port"] == port


def test_kube_worker_serves_where_it_is_scraped() -> None:
    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "worker.yaml").read_text())
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    port = int(container["args"][container["args"].index("--metrics-port") + 1])
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == port
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    monitor = yaml.safe_load((DEPLOY / "kubernetes" / "podmonitor.yaml").read_text())
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]


def test_readme_metric_list_is_the_codes() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = readme.split("<!-- metrics:begin -->\n", 1)[1].split("\n<!-- metrics:end -->", 1)[0]
    assert listed == markdown_table()
