"""Parts of ``syncworker serve`` driven in-process over a real filesystem store and a real
htpasswd file: what a request costs, counted where the store is read or a password hashed."""

from __future__ import annotations

import base64
import json
import socket
import threading
from pathlib import Path

import bcrypt
import pytest

from syncworker.config import Config
from syncworker.errors import ConfigError
from syncworker.serve import htpasswd
from syncworker.serve.apierrors import ApiError
from syncworker.serve.catalogroute import list_repositories
from syncworker.serve.context import CATALOG_SECONDS, Served
from syncworker.serve.messages import Request
from syncworker.serve.wiring import build_server
from syncworker.store.fs import FsStore


class CountingStore(FsStore):
    """A filesystem store that counts its listings, the first one held until ``go``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listings = 0
        self.go = threading.Event()

    def repositories(self) -> list[str]:
        self.listings += 1
        self.go.wait(60)
        return super().repositories()


def add_repository(root: Path, name: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))


def catalog(served: Served, query: dict[str, list[str]] | None = None) -> list[str]:
    request = Request("GET", "/v2/_catalog", query or {}, {})
    shown: list[str] = json.loads(list_repositories(served, request).body)["repositories"]
    return shown


def test_concurrent_catalogs_share_one_listing_kept_a_few_seconds(tmp_path: Path) -> None:
    """Every anonymous ``/v2/_catalog`` listing the store (on S3 the whole bucket) would
    let any client make it work without end: requests at once share one listing, and
    those within CATALOG_SECONDS reuse it."""
    for name in ("a", "b", "c"):
        add_repository(tmp_path, name)
    store, now = CountingStore(tmp_path), [1000.0]
    served = Served(store, clock=lambda: now[0])
    answers: list[list[str]] = []
    threads = [threading.Thread(target=lambda: answers.append(catalog(served))) for _ in range(8)]
    for thread in threads:
        thread.start()
    store.go.set()
    for thread in threads:
        thread.join(60)
    assert answers == [["a", "b", "c"]] * 8 and store.listings == 1
    add_repository(tmp_path, "d")
    assert catalog(served, {"n": ["2"], "last": ["a"]}) == ["b", "c"]
    now[0] += CATALOG_SECONDS
    assert catalog(served, {"n": ["2"], "last": ["b"]}) == ["c", "d"]
    assert store.listings == 2


def test_an_unknown_user_costs_one_bcrypt_as_a_wrong_password_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a hash to check, an unknown user was refused at once and a known one with a
    wrong password after bcrypt: the time told which users exist."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(5)).replace(b"$2b$", b"$2y$", 1)
    path = tmp_path / "htpasswd"
    path.write_bytes(b"reader:" + hashed + b"\n")
    checked: list[bytes] = []
    verify = htpasswd._bcrypt_ok

    def counting(password: str, against: bytes) -> bool:
        checked.append(against)
        return verify(password, against)

    monkeypatch.setattr(htpasswd, "_bcrypt_ok", counting)
    auth = htpasswd.Htpasswd(str(path))
    for user in ("reader", "nobody"):
        with pytest.raises(ApiError) as refused:
            auth.check(basic(user, "wrong"))
        assert refused.value.status == 401
    assert len(checked) == 2 and checked[0] == hashed
    assert checked[1][4:7] == b"05$" and checked[1] != hashed  # the file's cost
    assert auth.check(basic("reader", "right")) == "reader"


def test_a_bcrypt_cost_htpasswd_never_writes_is_refused_naming_the_line(tmp_path: Path) -> None:
    """A cost of 31 (a garbled or hand-edited line) would make each check, and the hash
    made for unknown users as the file loads, run for days: the file is refused instead."""
    path = tmp_path / "htpasswd"
    good = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    path.write_text(f"reader:{good}\nwriter:$2y$31$" + "a" * 53 + "\n")
    with pytest.raises(ConfigError) as refused:
        htpasswd.Htpasswd(str(path))
    assert f"{path} line 2: bcrypt cost '31'" in str(refused.value)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_an_address_in_use_is_named_by_where_it_came_from(tmp_path: Path) -> None:
    """A port already taken is named as the option when given, else as the config key (the
    default 0.0.0.0:5000 is the quick start's upstream port, so it is often taken)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = Config.model_validate({
            "storage": {"rootDirectory": str(tmp_path)},
            "syncworker": {"serve": {"listen": address}},
        })  # fmt: skip
        served = Served(FsStore(tmp_path))
        for given, key in ((None, "syncworker.serve.listen"), (address, "--listen")):
            with pytest.raises(ConfigError) as refused:
                build_server(config, served, given)
            assert refused.value.path == key
            assert refused.value.message.startswith(f"cannot listen on {address}: ")
