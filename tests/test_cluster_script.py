"""``scripts/cluster.py`` (what ``scripts/cluster.sh`` runs once the packages are there): it
comes up, a command it prints works against it, and Ctrl-C leaves no process and no file;
its ``-h``, and ``scripts/demo.py``'s, say what the script does in whole sentences.

``cluster.sh`` itself only installs what is missing (pip included) and execs this script,
so the test starts the script: a test must not reinstall the project.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.cluster import ROOT

pytestmark = pytest.mark.slow

START_TIMEOUT = 240.0  # seeding, then two Celery workers on a loaded 2-core machine
STOP_TIMEOUT = 120.0


def descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid`` (children, their children...), with its command line."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found[child] = _cmdline(child)
        todo += parents.get(child, [])
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_cluster_comes_up_answers_and_stops_everything_on_ctrl_c() -> None:
    script = subprocess.Popen(
        [sys.executable, "scripts/cluster.py", "--repos", "2"], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(script.stdout, lines), daemon=True)
    reader.start()
    printed: list[str] = []
    try:
        while not any(line.startswith("Beat starts") for line in printed):
            printed.append(lines.get(timeout=START_TIMEOUT))
        text = "".join(printed)
        assert "cluster ready" in text, text
        work = Path(re.search(r"the files in (\S+) are then removed", text)[1])  # type: ignore[index]
        [trigger] = [line for line in printed if re.search(r" trigger -c \S+ --wait ", line)]
        command = trigger.split("#")[0]  # as a user pastes it into a shell
        done = subprocess.run(command, shell=True, capture_output=True, text=True,
                              timeout=STOP_TIMEOUT)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "finished" in done.stderr and (work / "mirror" / "library/alpine").is_dir()
        started = descendants(script.pid)
        names = " ".join(started.values())
        assert names.count(" worker ") >= 2 and " beat " in names and " api " in names, names
    finally:
        os.kill(script.pid, signal.SIGINT)
        code = script.wait(timeout=STOP_TIMEOUT)
        reader.join(timeout=STOP_TIMEOUT)
        assert script.stdout is not None
        script.stdout.close()
    left = {pid: cmd for pid, cmd in started.items() if cmd and _cmdline(pid) == cmd}
    assert left == {}
    assert code == 0 and not work.exists()
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert f"removed {work}" in "".join(rest)


@pytest.mark.parametrize("script", ["cluster.py", "demo.py"])
def test_help_describes_the_script_in_whole_sentences(script: str) -> None:
    """``-h`` gives the docstring's first paragraph, never its first line cut mid-sentence."""
    done = subprocess.run(
        [sys.executable, f"scripts/{script}", "-h"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "1000"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    description = done.stdout.split("\n\n")[1]
    assert description.endswith("."), done.stdout
