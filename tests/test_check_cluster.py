"""``syncworker check`` with Redis configured: a ``check_repo`` task per repository on the
workers (real ``syncworker worker`` processes; a line on stderr while none answers),
counted into a run that ``status --json`` shows while it goes on; ``--repair`` through the
workers too, read back by skopeo."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import (
    DEADLINE,
    REPOS,
    ROOT,
    SYNCWORKER,
    Cluster,
    cluster,
    persistent_redis,
    upstream,
    wait_for,
)
from tests.support.corpus import Corpus
from tests.support.ports import free_port
from tests.support.registry_server import RegistryServer
from tests.test_check import blob_path, corrupt, skopeo_copy
from tests.test_obs_metrics import scrape, total

__all__ = ["cluster", "persistent_redis", "upstream"]  # fixtures, imported for pytest
pytestmark = pytest.mark.slow

LABEL = "(check --deep)"
NO_WORKER = "no syncworker worker answers on "


def _skopeo_readable(cluster: Cluster) -> None:
    doc = yaml.safe_load(cluster.config_path.read_text())
    doc["syncworker"]["layoutMediaTypes"] = "oci"
    cluster.config_path.write_text(yaml.safe_dump(doc))


def _last_layer(root: Path, repo: str, digest: str) -> str:
    """A layer of the image ``digest`` names (its first child's, for an index)."""
    doc: dict[str, Any] = json.loads(blob_path(root, repo, digest).read_bytes())
    if "manifests" in doc:
        return _last_layer(root, repo, doc["manifests"][0]["digest"])
    return str(doc["layers"][-1]["digest"])


def _runs(cluster: Cluster) -> list[dict[str, Any]]:
    shown = cluster.cli("status", "--json")
    assert shown.returncode == 0, shown.stderr
    return [run for run in json.loads(shown.stdout) if run["registry"] == LABEL]


def test_check_fans_out_to_the_workers_with_its_progress_in_status(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = upstream
    _skopeo_readable(cluster)
    synced = cluster.cli("sync")
    assert synced.returncode == 0, synced.stderr
    damaged = {}
    for repo, damage in zip(corpus.repositories[3:5], ("corrupt", "absent"), strict=True):
        tag = sorted(corpus.tags[repo])[0]
        layer = _last_layer(cluster.store, repo, corpus.digest(repo, tag))
        path = blob_path(cluster.store, repo, layer)
        corrupt(path) if damage == "corrupt" else path.unlink()
        damaged[repo] = (tag, layer, damage)

    # No worker yet: the check fans out and waits, and its run shows what it has to do.
    err = cluster.workdir / "check.err"
    with err.open("w") as err_file:
        check = subprocess.Popen(
            [*SYNCWORKER, "check", "--deep", "-c", str(cluster.config_path)], cwd=ROOT,
            env=cluster.env, stdout=subprocess.PIPE, stderr=err_file, text=True,
        )  # fmt: skip
    wait_for("the check's run", lambda: bool(_runs(cluster)))
    waiting = _runs(cluster)[0]
    assert (waiting["state"], waiting["total"], waiting["done"]) == ("running", REPOS, 0)
    wait_for("the no-worker line", lambda: NO_WORKER in err.read_text())
    assert "or `check --local` to check in this process" in err.read_text()
    port = free_port()
    cluster.worker("w1", "--metrics-port", str(port))
    cluster.worker("w2")
    out, _ = check.communicate(timeout=DEADLINE)
    assert check.returncode == 1, out + err.read_text()

    for repo, (tag, layer, damage) in damaged.items():
        assert re.search(rf"^BROKEN {re.escape(repo)}:{tag} .*blob {layer} {damage}$", out, re.M)
    assert out.count("BROKEN ") == 2, out
    run_id = re.search(r"check run (\S+):", err.read_text())
    assert run_id is not None, err.read_text()
    done = json.loads(cluster.cli("status", run_id[1], "--json").stdout)
    assert (done["state"], done["total"], done["done"]) == ("finished", REPOS, REPOS)
    assert done["counters"]["repos_failed"] == 2 and done["counters"]["images_failed"] == 2
    assert done["counters"]["bytes"] > 0  # every blob hashed again
    assert "check_repo" in cluster.log("w1") + cluster.log("w2")
    # The runs metrics, from Redis, under the check's label: started, and ended failed.
    samples = scrape(port)
    assert total(samples, "syncworker_runs_started_total", registry=LABEL) == 1
    assert total(samples, "syncworker_runs_finished_total", registry=LABEL, outcome="failed") == 1
    assert total(samples, "syncworker_runs_in_progress", registry=LABEL) == 0

    repaired = cluster.cli("check", "--deep", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "2 repaired" in repaired.stdout, repaired.stdout
    assert NO_WORKER not in repaired.stderr  # two workers answer
    for repo, (tag, _, _) in damaged.items():
        skopeo_copy(cluster.store, repo, tag, cluster.workdir / f"copy-{repo.replace('/', '-')}")
    assert cluster.cli("check", "--local").returncode == 0
    repairs = "(check --deep --repair)"
    samples = scrape(port)
    assert total(samples, "syncworker_runs_finished_total", registry=repairs, outcome="ok") == 1
    assert total(samples, "syncworker_last_successful_run_timestamp_seconds", registry=repairs) > 0
