"""Basic auth against an htpasswd file of bcrypt hashes (``htpasswd -B``), the only hash
distribution's htpasswd auth accepts; no file means anonymous read.

A password checked once is remembered in this process by a hash of the pair, so that
bcrypt (tens of milliseconds by design) runs once per client, not once per request. A
user the file lacks is checked against a hash of the file's cost all the same, so that
the answer takes as long as for a wrong password: the time does not tell which users
exist. The file is read again when it changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from pathlib import Path

from syncworker.errors import ConfigError
from syncworker.serve.apierrors import unauthorized

__all__ = ["REALM", "Htpasswd"]

REALM = "syncworker"
_KEY = "syncworker.serve.htpasswd"
_BCRYPT = ("$2a$", "$2b$", "$2y$")
# bcrypt's cost of the hash unknown users are checked against when the file has none
# (distribution's htpasswd writes bcrypt.DefaultCost, 10).
DEFAULT_COST = 10
# The costs Apache's `htpasswd -B -C` writes. A higher one (a garbled or hand-edited line)
# would make each check, and the hash made for unknown users at every load, run for hours.
COSTS = range(4, 18)


class Htpasswd:
    def __init__(self, path: str) -> None:
        self.path = path
        self._guard = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, bytes] = {}
        self._absent = b""
        self._good: set[bytes] = set()
        self._load()

    def check(self, header: str | None) -> str:
        """The user an ``Authorization`` header proves; UNAUTHORIZED otherwise."""
        user, password = _basic(header)
        self._load()
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._guard:
            if key in self._good:
                return user
            hashed, absent = self._users.get(user), self._absent
        matches = _bcrypt_ok(password, absent if hashed is None else hashed)
        if hashed is None or not matches:
            raise unauthorized(REALM)
        with self._guard:
            self._good.add(key)
        return user

    def _load(self) -> None:
        try:
            found = os.stat(self.path)
            stamp = (found.st_mtime_ns, found.st_ino)
            if stamp == self._stamp:
                return
            text = Path(self.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise ConfigError(_KEY, f"{self.path}: {reason or exc}") from None
        users = _parse(text, self.path)
        absent = _absent_hash(users)
        with self._guard:
            self._users, self._absent, self._good, self._stamp = users, absent, set(), stamp


def _parse(text: str, where: str) -> dict[str, bytes]:
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith(_BCRYPT):
            raise ConfigError(
                _KEY, f"{where} line {number}: not user:bcrypt-hash (make it with htpasswd -B)"
            )
        if not hashed[4:6].isdigit() or int(hashed[4:6]) not in COSTS:
            raise ConfigError(
                _KEY,
                f"{where} line {number}: bcrypt cost {hashed[4:6]!r} is not "
                f"{COSTS.start}-{COSTS.stop - 1} (htpasswd -B -C)",
            )
        users[user] = hashed.encode()
    return users


def _absent_hash(users: dict[str, bytes]) -> bytes:
    """A bcrypt hash of a random password at the highest cost of ``users``' hashes, for
    checking a user the file lacks as long as one it holds."""
    import bcrypt

    cost = max((int(hashed[4:6]) for hashed in users.values()), default=DEFAULT_COST)
    return bytes(bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(cost)))


def _basic(header: str | None) -> tuple[str, str]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        raise unauthorized(REALM)
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized(REALM) from None
    if not sep:
        raise unauthorized(REALM)
    return user, password


def _bcrypt_ok(password: str, hashed: bytes) -> bool:
    import bcrypt  # only a server with an htpasswd file needs it

    # bcrypt reads $2y$ (Apache's) as the $2b$ it is.
    normal = b"$2b$" + hashed[4:] if hashed.startswith(b"$2y$") else hashed
    try:
        return bool(bcrypt.checkpw(password.encode(), normal))
    except ValueError:
        return False
