"""Logins from docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``), looked up as docker looks them up: the registry host's
``credHelpers`` entry, else ``credsStore``, else ``auths``.

``auths`` is keyed by host or URL, each entry a base64 ``auth`` of ``user:password`` or a
``username`` and ``password``. A helper is the program ``docker-credential-<name>`` (docker's
credential-helper protocol, github.com/docker/docker-credential-helpers): ``get`` with the
server address on stdin answers ``{"ServerURL", "Username", "Secret"}``. It runs without a
shell, under a timeout, when a registry first asks for a login; its answer is kept for the
process and asked again after the registry refuses it (a 401), its failure for
:data:`FAILURE_KEPT`. A ``<token>`` username makes
the secret an identity token, which the token layer spends as an OAuth2 refresh token at the
registry's realm, as docker does. The helper's output is never logged: it is the secret.

Docker Hub answers as ``docker.io``, ``index.docker.io`` and ``registry-1.docker.io``; docker
keeps its login under ``https://index.docker.io/v1/``, and asks helpers for that address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncworker.config.credentials import host_key, login, parse_auth_entry
from syncworker.errors import ConfigError

if TYPE_CHECKING:
    from syncworker.registry.auth import Credentials, Login

__all__ = [
    "DOCKER_HUB_SERVER",
    "FAILURE_KEPT",
    "HELPER_PREFIX",
    "HELPER_TIMEOUT",
    "HelperLogin",
    "docker_config_path",
    "docker_login",
]

#: The address docker keeps Docker Hub's login under, and hands to helpers for it.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
HELPER_PREFIX = "docker-credential-"
#: A helper that asks a desktop keyring may wait on an unlock prompt; docker waits without
#: limit, a mirror must not: past this, the registry's login fails.
HELPER_TIMEOUT = 30.0
#: A helper's failure is kept this long, so a registry's repositories do not each wait on
#: a broken helper; then it is asked again, so one that failed for a moment (its network
#: call, a keyring still locked) does not fail a worker's registry for the worker's life.
FAILURE_KEPT = 60.0
# What every helper of docker-credential-helpers prints when it has no login for the address.
_NOT_FOUND = "credentials not found"
# A helper's answer is a small JSON object; more is not a helper.
_MAX_ANSWER = 1024 * 1024


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def docker_login(host: str, timeout: float = HELPER_TIMEOUT) -> Login | None:
    """docker's login for ``host`` (``host[:port]``): its credential helper (asked when a
    login is first needed), else the credential store, else ``auths``; None if none.

    A missing or unreadable config.json means no login: it belongs to the user's
    environment, not to our configuration.
    """
    config = _read_config()
    key = host_key(host)
    helpers = config.get("credHelpers")
    named = _by_host(helpers).get(key) if isinstance(helpers, Mapping) else None
    helper = named or config.get("credsStore")
    if isinstance(helper, str) and helper:
        return HelperLogin(helper, key, timeout)
    auths = config.get("auths")
    if not isinstance(auths, Mapping):
        return None
    entry = _by_host(auths).get(key)
    return parse_auth_entry(entry) if isinstance(entry, Mapping) else None


def _by_host(entries: Mapping[Any, Any]) -> dict[str, Any]:
    """``entries`` keyed by :func:`host_key` (docker writes hosts, URLs, Hub's aliases)."""
    return {host_key(str(key)): value for key, value in entries.items()}


def _read_config() -> Mapping[str, Any]:
    try:
        data = json.loads(docker_config_path().read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, Mapping) else {}


class HelperLogin:
    """The login a credential helper gives for one registry (a ``CredentialSource``):
    asked once, kept until :meth:`refused`; a failure is kept for :data:`FAILURE_KEPT`.
    Thread-safe."""

    def __init__(
        self,
        helper: str,
        host: str,
        timeout: float = HELPER_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.program = HELPER_PREFIX + helper
        self._host = host
        self._server = DOCKER_HUB_SERVER if host == host_key(DOCKER_HUB_SERVER) else host
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._asked = False
        self._failed_at = 0.0
        self._login: Credentials | None = None
        self._error: ConfigError | None = None

    def __repr__(self) -> str:
        return f"HelperLogin({self.program!r}, {self._host!r})"

    def current(self) -> Credentials | None:
        with self._lock:
            stale = self._error is not None and self._clock() >= self._failed_at + FAILURE_KEPT
            if not self._asked or stale:
                self._login, self._error = None, None
                try:
                    self._login = self._ask()
                except ConfigError as exc:
                    self._error, self._failed_at = exc, self._clock()
                self._asked = True
            if self._error is not None:
                raise self._error
            return self._login

    def refused(self) -> None:
        """The registry refused the login: ask the helper again next time."""
        with self._lock:
            self._asked = False

    def _ask(self) -> Credentials | None:
        path = shutil.which(self.program)
        if path is None:
            raise self._failed("not found on PATH")
        try:
            done = subprocess.run(
                [path, "get"],
                input=self._server.encode(),
                capture_output=True,
                timeout=self._timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise self._failed(f"no answer within {self._timeout:g} s") from None
        except OSError as exc:
            raise self._failed(f"could not run ({exc.strerror or type(exc).__name__})") from None
        if done.returncode != 0:
            if _NOT_FOUND in done.stdout.decode("utf-8", "replace").lower():
                return None
            raise self._failed(f"exited with status {done.returncode}")
        return self._parse(done.stdout)

    def _parse(self, out: bytes) -> Credentials:
        try:
            answer = json.loads(out[:_MAX_ANSWER]) if len(out) <= _MAX_ANSWER else None
        except ValueError:
            answer = None
        user = answer.get("Username") if isinstance(answer, dict) else None
        secret = answer.get("Secret") if isinstance(answer, dict) else None
        if not isinstance(user, str) or not isinstance(secret, str) or not secret:
            # The answer is not echoed: it may hold the secret.
            raise self._failed('answered without a "Username" and "Secret"')
        return login(user, secret)

    def _failed(self, why: str) -> ConfigError:
        return ConfigError("", f"docker credential helper {self.program} for {self._host}: {why}")
