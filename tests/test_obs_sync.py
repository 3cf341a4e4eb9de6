"""What `syncworker sync` shows while and after it runs: the live display in a real
pseudo-terminal, plain lines when stderr is a file, the JSON summary, and the metrics file
for node_exporter, each checked against the real registry's counters."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from syncworker.engine import RepoResult
from syncworker.observe.progress import ETA_MIN_DONE, Progress
from tests.support.corpus import seed_many
from tests.support.mirror import write_sync_config
from tests.support.registry_server import RegistryServer

SYNCWORKER = [sys.executable, "-c", "import sys; from syncworker.cli import main; sys.exit(main())"]
ROOT = Path(__file__).resolve().parent.parent
REPOS, TAGS = 4, 2
TIMEOUT = 120


def _config(registry: RegistryServer, tmp_path: Path, prefix: str, **options: object) -> Path:
    registries = [{"urls": [registry.url], "content": [{"prefix": f"{prefix}/**"}], **options}]
    return write_sync_config(tmp_path, tmp_path / "store", registries)


def _read_all(fd: int) -> bytes:
    """Everything the terminal showed until the command closed it."""
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            return out
        if not chunk:
            return out
        out += chunk


def test_json_summary_and_metrics_file_match_the_registry(
    registry: RegistryServer, tmp_path: Path
) -> None:
    corpus = seed_many(registry, repos=REPOS, tags=TAGS, layers=2, shared_layers=2, prefix="js")
    config = _config(registry, tmp_path, "js")
    metrics = tmp_path / "syncworker.prom"
    blob_gets, requests = registry.blob_gets(), registry.request_count(code="200")
    done = subprocess.run(
        [*SYNCWORKER, "sync", "-c", str(config), "--json", "--metrics-file", str(metrics)],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # --json: nothing but the summary
    summary = json.loads(done.stdout)
    assert summary["repositories"] == REPOS and summary["failures"] == []
    assert summary["images_copied"] == REPOS * TAGS
    fetched = registry.blob_gets() - blob_gets
    assert summary["blobs_fetched"] == fetched == len(set().union(*corpus.blobs.values()))

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }

    def total(name: str, **labels: str) -> float:
        return sum(
            v for (n, key), v in samples.items() if n == name and set(labels.items()) <= set(key)
        )

    assert total("syncworker_blobs_total", outcome="fetched") == fetched
    assert total("syncworker_blob_bytes_total") == summary["bytes_fetched"]
    assert total("syncworker_upstream_requests_total", code="200") == (
        registry.request_count(code="200") - requests
    )
    assert total("syncworker_images_total", outcome="copied") == REPOS * TAGS
    assert total("syncworker_runs_finished_total", outcome="ok") == 1
    assert total("syncworker_runs_in_progress") == 0
    assert total("syncworker_last_successful_run_timestamp_seconds") > 0


def test_plain_lines_when_stderr_is_not_a_terminal(
    registry: RegistryServer, tmp_path: Path
) -> None:
    seed_many(registry, repos=REPOS, tags=1, layers=1, shared_layers=1, prefix="plain")
    done = subprocess.run(
        [*SYNCWORKER, "sync", "-c", str(_config(registry, tmp_path, "plain"))],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == REPOS and all("/plain/repo-" in line and ": ok," in line for line in lines)
    assert "\x1b[" not in done.stderr  # no terminal control in a log
    assert done.stdout.startswith(f"mirrored {REPOS} repositories")


def _in_terminal(config: Path) -> str:
    """What `sync -c config` shows in a real pseudo-terminal, to its end."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"}
    proc = subprocess.Popen(
        [*SYNCWORKER, "sync", "-c", str(config)], cwd=ROOT, env=env,
        stdin=terminal, stdout=terminal, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    shown = _read_all(controller).decode(errors="replace")
    os.close(controller)
    assert proc.wait(timeout=TIMEOUT) == 0, shown
    return shown


def test_live_display_in_a_pseudo_terminal(registry: RegistryServer, tmp_path: Path) -> None:
    seed_many(registry, repos=REPOS, tags=TAGS, layers=1, shared_layers=1, prefix="tty")
    shown = _in_terminal(_config(registry, tmp_path, "tty"))
    assert "\x1b[" in shown  # drawn and redrawn in place
    for column in ("registry", "repos", "copied", "unchanged", "in flight"):
        assert column in shown
    assert f"{REPOS}/{REPOS} (0 failed)" in shown  # the final table: every repository done
    assert "/tty/repo-" not in shown.split("syncworker sync:")[0]  # no per-line log before it
    assert f"mirrored {REPOS} repositories" in shown and f"{REPOS * TAGS} images copied" in shown


def test_live_display_shows_an_eta_once_the_catalog_is_listed(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """A rate limit on the upstream stretches the run over several redraws; each frame that
    shows an ETA is one where every repository is listed and enough are done."""
    repos = 12
    seed_many(registry, repos=repos, tags=1, layers=1, shared_layers=1, prefix="eta")
    shown = _in_terminal(_config(registry, tmp_path, "eta", reqPerSec=5))
    titles = re.findall(r"syncworker sync: [^\n\x1b│┃]*", shown)
    frames = re.findall(r"(\d+)/(\d+)(\+?) \(0 failed\)", shown)
    assert len(titles) == len(frames) > 2, shown[-2000:]  # one title and one row a frame
    with_eta = [(title, frame) for title, frame in zip(titles, frames, strict=True)
                if "ETA" in title]  # fmt: skip
    assert with_eta, titles
    for title, (done, listed, more) in with_eta:
        assert listed == str(repos) and not more, title
        assert int(done) >= ETA_MIN_DONE, title
    assert re.fullmatch(r"syncworker sync: \d+s, ETA (\d+m)?\d+s\s*", with_eta[0][0])


def test_eta_waits_for_every_catalog_then_follows_the_rate() -> None:
    progress = Progress(registries=["a", "b"])
    progress.repos_listed("a", 10, complete=True)
    for number in range(ETA_MIN_DONE + 1):
        progress.repo_done(RepoResult("a", f"r{number}", f"r{number}"), 0.1)
    start = progress.started
    assert progress.eta_seconds(start + 8) is None  # b's catalog is not listed yet
    progress.repos_listed("b", 6, complete=False)
    assert progress.eta_seconds(start + 8) is None  # nor all of it
    progress.repos_listed("b", 2, complete=True)
    done = ETA_MIN_DONE + 1
    assert progress.eta_seconds(start + 8) == (18 - done) * 8 / done
