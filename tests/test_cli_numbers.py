"""Numbers on the command line: a bad one is a usage error naming its option (exit 2),
before anything is opened, never an internal error from deep in a thread pool or a bind."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncworker.cli import main
from syncworker.cli.units import REPOSITORIES, counted
from tests.support.mirror import write_sync_config

BAD = [
    ("sync", "--concurrency", "-2"),
    ("sync", "--metrics-port", "99999"),
    ("check", "--concurrency", "0"),
    ("serve", "--metrics-port", "http"),
    ("worker", "--metrics-port", "0"),
    ("status", "--limit", "-1"),
    ("status", "--watch", "0"),
    ("trigger", "--timeout", "nan"),
]


@pytest.mark.parametrize(("command", "option", "value"), BAD)
def test_a_bad_number_is_a_usage_error_naming_its_option(
    command: str, option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_sync_config(tmp_path, tmp_path / "store", [{"urls": ["http://127.0.0.1:9"]}])
    with pytest.raises(SystemExit) as ended:
        main([command, "-c", str(config), option, value])
    err = capsys.readouterr().err
    assert ended.value.code == 2, err
    assert "argument " in err and option in err and repr(value) in err, err


def test_a_count_reads_in_its_number() -> None:
    assert [counted(n, "entry", "entries") for n in (0, 1, 2)] == [
        "0 entries",
        "1 entry",
        "2 entries",
    ]
    assert counted(1, *REPOSITORIES) == "1 repository" and counted(3, "blob") == "3 blobs"
