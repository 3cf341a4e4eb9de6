"""JSON logs an aggregator can read: `sync` and a real Celery worker (harness of
test_celery_e2e) write one JSON object per line, naming registry, repository, run and task;
secrets are redacted on every handler."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import test_celery_e2e as e2e
from tests.support.cluster import (
    REGISTRY,
    REPOS,
    SYNCWORKER,
    Cluster,
    trigger,
    wait_finished,
    wait_for,
)
from tests.support.corpus import Corpus, seed_many
from tests.support.mirror import write_sync_config
from tests.support.registry_server import RegistryServer

upstream = e2e.upstream
persistent_redis = e2e.persistent_redis
cluster = e2e.cluster

ROOT = Path(__file__).resolve().parent.parent
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtaXJyb3IifQ.c2lnbmF0dXJlLW9mLWEtdG9rZW4"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as JSON (a line that is not fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_sync_json_lines_name_registry_and_repository(
    registry: RegistryServer, tmp_path: Path
) -> None:
    seed_many(registry, repos=3, tags=1, layers=1, shared_layers=1, prefix="jsonlog")
    registries = [{"urls": [registry.url], "content": [{"prefix": "jsonlog/**"}]}]
    config = write_sync_config(tmp_path, tmp_path / "store", registries)
    done = subprocess.run(
        [*SYNCWORKER, "sync", "--log-format", "json", "-c", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    assert sorted(line["repository"] for line in lines) == [f"jsonlog/repo-00{i}" for i in range(3)]
    for line in lines:
        assert {"time", "level", "logger", "message", "registry"} <= set(line)
        assert line["time"].endswith("Z") and line["level"] == "INFO"


def test_every_handler_redacts_secrets(tmp_path: Path) -> None:
    """The logging `syncworker` sets up, in both formats: a token in a message is gone."""
    config = write_sync_config(tmp_path, tmp_path / "store", [{"urls": ["http://127.0.0.1:9"]}])
    probe = (
        "import logging, sys; from syncworker.cli import main; "
        "main(sys.argv[1:]); "
        f"logging.getLogger('syncworker.probe').warning('GET /token answered %s', 'Bearer {JWT}')"
    )
    for log_format in ("text", "json"):
        done = subprocess.run(
            [sys.executable, "-c", probe, "--log-format", log_format, "validate", "-c",
             str(config)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "GET /token answered" in done.stderr
        assert JWT not in done.stderr and "***" in done.stderr
        if log_format == "json":
            assert json_lines(done.stderr)[-1]["level"] == "WARNING"


def logged(cluster: Cluster) -> set[str]:
    """The repositories named so far by the complete JSON lines of worker w1's log."""
    text = cluster.log("w1")
    lines = json_lines(text[: text.rfind("\n") + 1])
    return {line["repository"] for line in lines if "repository" in line}


@pytest.mark.slow
def test_worker_json_lines_name_task_run_registry_and_repository(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    cluster.worker("w1", "--log-format", "json")
    run_id, _ = trigger(cluster)
    assert wait_finished(cluster.coord(), run_id).state == "finished"
    # A task logs its end after it has counted its repository into the run.
    wait_for("every task's log lines", lambda: logged(cluster) >= set(upstream[1].repositories))
    cluster.stop_all()
    lines = json_lines(cluster.log("w1"))  # every line JSON: no banner, no plain text
    assert any(line["message"].endswith(" ready.") for line in lines)
    in_repo_tasks = [line for line in lines if "repository" in line]
    assert {line["repository"] for line in in_repo_tasks} == set(upstream[1].repositories)
    assert len(in_repo_tasks) >= REPOS
    for line in in_repo_tasks:
        assert line["registry"] == REGISTRY and line["run_id"] == run_id and line["task_id"]


def _repo_lines(text: str) -> list[str]:
    """Our line of each sync_repo that ended."""
    return [
        line
        for line in text.splitlines()
        if "syncworker.sync_repo(" in line and " done in " in line
    ]


@pytest.mark.slow
def test_a_worker_logs_one_line_per_task_and_celerys_own_lines_with_v(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    repos = set(upstream[1].repositories)
    for name, options in (("quiet", ()), ("verbose", ("-v",))):
        cluster.worker(name, *options)
        run_id, _ = trigger(cluster)
        assert wait_finished(cluster.coord(), run_id).state == "finished"
        # A task logs its end after it has counted its repository into the run.
        wait_for(f"{name}'s lines", lambda name=name: len(_repo_lines(cluster.log(name))) >= REPOS)
        cluster.stop_all()
    quiet = cluster.log("quiet")
    lines = _repo_lines(quiet)
    assert len(lines) == REPOS, lines
    assert " received" not in quiet and " succeeded in " not in quiet
    verbose = cluster.log("verbose")
    # Celery's received and succeeded lines, one each per message; ours, one per repository,
    # each naming one of those messages.
    received = set(re.findall(r"Task syncworker\.sync_repos\[([0-9a-f-]+)\] received", verbose))
    succeeded = re.findall(
        r"Task syncworker\.sync_repos\[([0-9a-f-]+)\] succeeded in [0-9.]+s: (.*)", verbose
    )
    assert received and {task for task, _ in succeeded} == received, verbose
    assert all(result == "None" for _, result in succeeded)  # nothing stored
    named = {line.rsplit("(task ", 1)[1].rstrip(")") for line in _repo_lines(verbose)}
    assert named == received and len(_repo_lines(verbose)) == len(repos)


@pytest.mark.parametrize(
    ("options", "level"),
    [
        (["-v", "validate", "-v"], "DEBUG"),
        (["validate", "-vv"], "DEBUG"),
        (["-vv", "validate"], "DEBUG"),
        (["validate", "-v"], "INFO"),
        (["validate"], "WARNING"),
    ],
)
def test_verbose_before_and_after_the_command_add_up(
    tmp_path: Path, options: list[str], level: str
) -> None:
    config = write_sync_config(tmp_path, tmp_path / "store", [{"urls": ["https://up.example"]}])
    show_level = (
        "import logging, sys; from syncworker.cli import main; code = main(sys.argv[1:]); "
        "print(logging.getLevelName(logging.getLogger().level)); sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", show_level, *options, "-c", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == level
