"""``extensions.sync``: zot's sync extension, key for key, plus our per-registry additions.

zot's keys and meanings (``pkg/extensions/config/sync/config.go``) are accepted unchanged.
Keys zot has that syncworker does not act on are accepted and ignored, each noted below,
so a zot config loads as it is. Ours, under the same registry entry: ``name``, ``repos``,
``platforms``, ``schedule``, ``prune``, ``downloadRate``, ``pullBudgetReserve``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator

from syncworker.config.credentials import DOCKER_HUB, ECR_HELPER, host_key
from syncworker.config.modelbase import (
    ConfigModel,
    CronSchedule,
    Glob,
    GoDuration,
    GoRegex,
    PlatformField,
    RepositoryName,
)
from syncworker.config.sizes import ByteSize
from syncworker.errors import InvalidNameError
from syncworker.filters import ContentRule, ContentRules, TagRule
from syncworker.oci import validate_repository

if TYPE_CHECKING:
    from syncworker.registry.options import ClientOptions

__all__ = ["ContentConfig", "RegistryConfig", "SyncConfig", "TagsConfig"]

_URL_SCHEMES = ("http", "https")
# A registry name travels in task arguments and Redis keys; keep it to plain characters.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:")


class TagsConfig(ConfigModel):
    regex: GoRegex = None
    exclude_regex: GoRegex = None
    semver: bool = False


class ContentConfig(ConfigModel):
    prefix: Glob
    tags: TagsConfig | None = None
    destination: str | None = None
    strip_prefix: bool = False

    @field_validator("destination")
    @classmethod
    def _destination_is_a_name(cls, value: str | None) -> str | None:
        # "/" (the root) is allowed; anything else must be a repository name once the
        # slashes zot tolerates around it are dropped.
        if value is not None and value.strip("/"):
            try:
                validate_repository(value.strip("/"))
            except InvalidNameError as exc:
                raise ValueError(str(exc)) from None
        return value

    def rule(self) -> ContentRule:
        tags = None
        if self.tags is not None:
            tags = TagRule(self.tags.regex, self.tags.exclude_regex, self.tags.semver)
        return ContentRule(self.prefix, tags, self.destination, self.strip_prefix)


class RegistryConfig(ConfigModel):
    """One upstream: zot's ``registries[]`` entry."""

    urls: list[str] = Field(min_length=1)
    poll_interval: GoDuration | None = None
    content: list[ContentConfig] = []
    tls_verify: bool = True
    # `syncworker serve` mirrors what this entry's rules map and the store lacks, on a pull.
    on_demand: bool = False
    cert_dir: str | None = None
    max_retries: int | None = Field(None, ge=0)
    retry_delay: GoDuration | None = None
    only_signed: bool = False
    preserve_digest: bool = False  # we always store manifests byte for byte
    sync_legacy_cosign_tags: bool = True
    # zot's syncTimeout: the deadline of one repository's sync (everything past it fails).
    sync_timeout: GoDuration | None = None
    # zot's (regclient's) per-upstream limits, held for the whole cluster: requests per
    # second and requests in flight. 0 (zot's default) or absent: no limit.
    req_per_sec: float | None = Field(None, ge=0, allow_inf_nan=False)
    req_concurrent: int | None = Field(None, ge=0)
    # ours: bytes per second read from this upstream, for the whole cluster; absent: no cap.
    download_rate: ByteSize | None = None
    # ours: pulls of the budget an upstream declares (Docker Hub's ratelimit-remaining)
    # left unspent, for other users of the same login.
    pull_budget_reserve: int = Field(0, ge=0)
    # Accepted for zot compatibility, not acted on: `syncworker serve` pulls through only
    # what the store lacks and never checks a stored tag upstream on a pull, the scheduled
    # syncs keep it current (manifestCheckInterval); syncworker sizes its own pools and
    # timeouts (disableHTTP2) and backs off on its own curve (maxRetryDelay).
    manifest_check_interval: GoDuration | None = None
    max_retry_delay: GoDuration | None = None
    disable_http2: bool | None = Field(None, alias="disableHTTP2")
    max_idle_conns_per_host: int | None = Field(None, ge=1)
    credential_helper: str | None = None
    oauth2_credential_helper: dict[str, Any] | None = Field(None, repr=False)
    # ours
    name: str = ""
    repos: list[RepositoryName] = []
    platforms: list[PlatformField] = []
    schedule: CronSchedule | None = None
    # Remove from the mirror the tags this upstream no longer lists (engine/prune.py).
    prune: bool = False

    _rules: ContentRules = PrivateAttr()

    @field_validator("urls")
    @classmethod
    def _urls_are_registries(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.username is not None or parts.password is not None:
                # Not echoed: the URL holds a secret. Names and logs carry URLs.
                raise ValueError("a URL must not hold credentials; use credentialsFile")
            if parts.scheme not in _URL_SCHEMES or not parts.hostname:
                raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
        return [url.rstrip("/") for url in urls]

    @field_validator("poll_interval")
    @classmethod
    def _zero_is_never(cls, value: timedelta | None) -> timedelta | None:
        # zot polls only when pollInterval is set and non-zero; 0 must not mean "always".
        return value or None

    @field_validator("credential_helper")
    @classmethod
    def _known_helper(cls, value: str | None) -> str | None:
        # zot's other helpers (gcp, oauth2) fetch cloud tokens we cannot; without them the
        # upstream would answer 401 to every request, so say so now rather than mid-run.
        if value and value != ECR_HELPER:
            raise ValueError(
                f"credential helper {value!r} is not supported by syncworker (only "
                f"{ECR_HELPER!r}); use credentialsFile or a docker config.json"
            )
        return value or None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if value and not set(value) <= _NAME_CHARS:
            raise ValueError("a registry name may hold only letters, digits and . - _ :")
        return value

    @model_validator(mode="after")
    def _derive(self) -> RegistryConfig:
        if not self.name:
            # Default name: the first URL's host[:port], which is how zot keys credentials.
            object.__setattr__(self, "name", urlsplit(self.urls[0]).netloc)
        if host_key(self.urls[0]) == DOCKER_HUB:
            # Docker Hub's official images live under library/, as docker spells "alpine".
            repos = [repo if "/" in repo else f"library/{repo}" for repo in self.repos]
            object.__setattr__(self, "repos", repos)
        self._rules = ContentRules([content.rule() for content in self.content])
        return self

    @property
    def hosts(self) -> list[str]:
        """``host[:port]`` of each URL, in failover order."""
        return [urlsplit(url).netloc for url in self.urls]

    def content_rules(self) -> ContentRules:
        return self._rules

    def client_options(
        self, max_blob_size: int | None = None, threads: int | None = None
    ) -> ClientOptions:
        """Options for the registry client; unset keys keep the client's defaults.
        ``threads``: how many threads share the client, the keep-alive pool's size unless
        zot's ``maxIdleConnsPerHost`` sets it (a smaller pool discards connections)."""
        from syncworker.registry.options import ClientOptions  # the client's package

        given: dict[str, Any] = {"tls_verify": self.tls_verify, "cert_dir": self.cert_dir}
        if max_blob_size is not None:
            given["max_blob_size"] = max_blob_size
        if self.max_retries is not None:
            given["max_retries"] = self.max_retries
        if self.retry_delay is not None:
            given["retry_delay"] = self.retry_delay / timedelta(seconds=1)
        if self.max_idle_conns_per_host is not None:
            given["pool_size"] = self.max_idle_conns_per_host
        elif threads is not None:
            given["pool_size"] = threads
        if self.req_per_sec:
            given["req_per_sec"] = self.req_per_sec
        if self.req_concurrent:
            given["req_concurrent"] = self.req_concurrent
        if self.download_rate is not None:
            given["download_rate"] = self.download_rate
        if self.pull_budget_reserve:
            given["pull_budget_reserve"] = self.pull_budget_reserve
        return ClientOptions(**given)


class SyncConfig(ConfigModel):
    """zot's ``extensions.sync``."""

    enable: bool = True
    credentials_file: str | None = None
    download_dir: str | None = None  # zot stages through it for cloud storage; we stream
    registries: list[RegistryConfig] = []
