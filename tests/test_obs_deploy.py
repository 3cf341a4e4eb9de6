"""The observability files under deploy/, docker-compose's prometheus, and the metric list of
docs/OBSERVABILITY.md: the rules, the Prometheus config and every dashboard query checked by
promtool, and every metric they name checked against the code's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from syncworker.observe.metrics import METRICS, markdown_table
from tests.support.tools import run_tool

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# The samples each type of metric exposes, after its name.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Series Prometheus adds itself.
BUILTIN = {"up"}
DASHBOARD = DEPLOY / "grafana" / "syncworker-dashboard.json"
# PromQL words that are not metric names (functions are told apart by their "(").
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                "bool", "and", "or", "unless", "inf", "nan"}  # fmt: skip
# What PromQL's grammar leaves to be a metric name, once strings, label matchers, ranges and
# grouping lists are cut out: an identifier not followed by "(".
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_CUT = re.compile(
    r"\{[^}]*\}|\[[^]]*\]|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()")
# Grafana's template variables, given values promtool can parse.
GRAFANA_VARIABLES = {"$registry": ".*", "$__rate_interval": "5m", "$__interval": "1m"}


def exposed() -> set[str]:
    return {m._name + suffix for m in METRICS for suffix in SUFFIXES[m._type]}


def named_in(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects."""
    bare = _CUT.sub(" ", _STRINGS.sub('""', expr))
    return {name for name in _IDENTIFIER.findall(bare) if name.lower() not in PROMQL_WORDS}


def dashboard_queries() -> list[str]:
    """Every query of the dashboard: each panel's targets (rows included) and the template
    variables' ``label_values(metric, label)``."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    panels: list[dict[str, Any]] = list(dashboard["panels"])
    queries = []
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        queries.extend(target["expr"] for target in panel.get("targets", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["query"])
            assert found, variable["query"]
            queries.append(found.group(1))
    return queries


def test_the_metric_name_scan_sees_every_selector() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{x=~"by(y)"}[5m])))'
        " / on (registry) group_left b_total offset 1h + time() - up"
    )
    assert named_in(expr) == {"a_seconds_bucket", "b_total", "up"}


def test_alert_rules_use_real_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"SyncworkerNoSuccessfulRun", "SyncworkerWorkerDown"} <= {a["alert"] for a in alerts}
    for alert in alerts:
        names = named_in(alert["expr"])
        assert names and names <= exposed() | BUILTIN, (alert["alert"], names - exposed())
        assert alert["annotations"]["summary"]


def test_promtool_accepts_the_alert_rules() -> None:
    run_tool("promtool", "check", "rules", "deploy/prometheus/alerts.yml", cwd=ROOT)


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query as a recording rule: promtool parses it with Prometheus's own parser."""
    rules = []
    for number, query in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"a Grafana variable promtool cannot parse: {query}"
        rules.append({"record": f"dashboard:query:{number}", "expr": query})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_tool("promtool", "check", "rules", str(path), cwd=ROOT)


def test_dashboard_uses_real_metrics() -> None:
    used = set().union(*(named_in(query) for query in dashboard_queries()))
    assert used <= exposed(), f"not exported by syncworker/observe/metrics.py: {used - exposed()}"
    # Every metric of the code has a panel.
    counted = {name.removesuffix("_bucket") for name in used}
    left = {m._name for m in METRICS} - {n.removesuffix("_total") for n in counted}
    assert not left, left


def test_compose_prometheus_scrapes_the_workers_metrics_port(tmp_path: Path) -> None:
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
    # promtool checks the config and the rules it loads, at the files mounted there.
    config["rule_files"] = [str(mounted[path]) for path in config["rule_files"]]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    run_tool("promtool", "check", "config", str(checked), cwd=ROOT)
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


def test_documented_metric_list_is_the_codes() -> None:
    readme = (ROOT / "docs" / "OBSERVABILITY.md").read_text()
    listed = readme.split("<!-- metrics:begin -->\n", 1)[1].split("\n<!-- metrics:end -->", 1)[0]
    assert listed == markdown_table(), (
        "docs/OBSERVABILITY.md's metric list differs from the code's: put the output of "
        "`python -m syncworker.observe.metrics` between its markers"
    )
