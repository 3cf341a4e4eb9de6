"""The per-upstream limits in the configuration: zot's reqPerSec and reqConcurrent, and our
downloadRate, reach the client's options; bad values are refused, each named by its field
path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.config import load_config
from syncworker.errors import ConfigError
from syncworker.registry.options import ClientOptions

R0 = "extensions.sync.registries[0]."


def _config(tmp_path: Path, **registry: Any) -> Path:
    doc = {
        "storage": {"rootDirectory": str(tmp_path / "store")},
        "extensions": {"sync": {"registries": [{"urls": ["https://up.example"], **registry}]}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_limits_reach_the_client_options(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, reqPerSec=20, reqConcurrent=8))
    opts = config.registries[0].client_options()
    assert (opts.req_per_sec, opts.req_concurrent, opts.limited) == (20.0, 8, True)


@pytest.mark.parametrize("limits", [{}, {"reqPerSec": 0, "reqConcurrent": 0}])
def test_absent_or_zero_is_no_limit(tmp_path: Path, limits: dict[str, int]) -> None:
    """zot's default 0 means no limit: such an upstream gets no limiter at all."""
    opts = load_config(_config(tmp_path, **limits)).registries[0].client_options()
    assert opts == ClientOptions() and not opts.limited


@pytest.mark.parametrize(
    ("limits", "field", "message"),
    [
        ({"reqPerSec": -1}, "reqPerSec", "greater than or equal to 0"),
        ({"reqPerSec": "fast"}, "reqPerSec", "valid number"),
        ({"reqPerSec": float("inf")}, "reqPerSec", "finite number"),
        ({"reqConcurrent": -2}, "reqConcurrent", "greater than or equal to 0"),
        ({"reqConcurrent": 2.5}, "reqConcurrent", "valid integer"),
    ],
)
def test_bad_limits_are_named(
    tmp_path: Path, limits: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, **limits))
    assert [path for path, _ in info.value.errors] == [R0 + field]
    assert message in info.value.errors[0][1]


@pytest.mark.parametrize(
    ("given", "rate"),
    [(1000, 1000), ("500KiB", 500 * 1024), ("1MiB", 1024**2), ("2GiB", 2 * 1024**3)],
)
def test_download_rate_reaches_the_client_options(
    tmp_path: Path, given: int | str, rate: int
) -> None:
    opts = load_config(_config(tmp_path, downloadRate=given)).registries[0].client_options()
    assert opts.download_rate == rate


def test_absent_is_no_cap(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path)).registries[0].client_options() == ClientOptions()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("1MB", "is not a size"),
        ("fast", "is not a size"),
        (0, "more than 0 bytes"),
        (-5, "more than 0 bytes"),
        (1.5, "a number of bytes"),
        (True, "a number of bytes"),
    ],
)
def test_bad_download_rates_are_named(tmp_path: Path, given: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, downloadRate=given))
    assert [path for path, _ in info.value.errors] == [R0 + "downloadRate"]
    assert message in info.value.errors[0][1]
