"""Where upstream credentials come from: zot's credentialsFile, then docker's config.json.

zot's file maps ``host[:port]`` (the URL's host, as written) to a username and password::

    {"registry.example.com:5000": {"username": "u", "password": "p"}}

docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``)
keeps ``auths`` keyed by host or URL, each with a base64 ``auth`` of ``user:password`` or
with ``username`` and ``password``. Credential stores and helpers (``credsStore``,
``credHelpers``) run external programs and are not consulted.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syncworker.registry.auth import Credentials

__all__ = [
    "docker_config_credentials",
    "docker_config_path",
    "host_key",
    "parse_credentials_file",
]

# Docker Hub answers under several names; docker keeps its login under the first.
_DOCKER_HUB_HOSTS = ("index.docker.io", "registry-1.docker.io", "docker.io")


def host_key(text: str) -> str:
    """``host[:port]`` of a URL or of a bare host, lower-cased, Docker Hub's names folded."""
    netloc = urlsplit(text if "://" in text else f"//{text}").netloc.lower()
    return _DOCKER_HUB_HOSTS[0] if netloc in _DOCKER_HUB_HOSTS else netloc


def parse_credentials_file(data: Any) -> dict[str, Credentials]:
    """zot's credentials file, already decoded from JSON; ``ValueError`` naming the entry."""
    if not isinstance(data, Mapping):
        raise ValueError("a credentials file is a JSON object keyed by host:port")
    found: dict[str, Credentials] = {}
    for host, entry in data.items():
        # zot decodes with Go's encoding/json, which matches field names case-insensitively.
        fields = {str(k).lower(): v for k, v in entry.items()} if isinstance(entry, Mapping) else {}
        username, password = fields.get("username"), fields.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ValueError(f"entry {host!r} needs string 'username' and 'password'")
        found[host_key(str(host))] = Credentials(username, password)
    return found


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def docker_config_credentials(hosts: list[str]) -> Credentials | None:
    """The first of ``hosts`` (``host[:port]``) that docker's config.json has a login for.

    A missing or unreadable file means no credentials: it belongs to the user's
    environment, not to our configuration.
    """
    try:
        auths = json.loads(docker_config_path().read_text("utf-8")).get("auths")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(auths, Mapping):
        return None
    logins = {host_key(str(key)): entry for key, entry in auths.items()}
    for host in hosts:
        entry = logins.get(host_key(host))
        creds = _docker_entry(entry) if isinstance(entry, Mapping) else None
        if creds is not None:
            return creds
    return None


def _docker_entry(entry: Mapping[str, Any]) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, sep, password = base64.b64decode(auth).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Credentials(username, password) if sep else None
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str):
        return Credentials(user, secret)
    return None
