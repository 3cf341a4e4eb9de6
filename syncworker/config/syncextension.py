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
from syncworker.errors import ContentError, InvalidNameError
from syncworker.filters import ContentRule, ContentRules, TagRule
from syncworker.oci import docker_hub_repository, validate_repository

if TYPE_CHECKING:
    from syncworker.registry.options import ClientOptions

__all__ = ["ContentConfig", "RegistryConfig", "SyncConfig", "TagsConfig"]

_URL_SCHEMES = ("http", "https")
# A registry name travels in task arguments and Redis keys; keep it to plain characters.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:")


class TagsConfig(ConfigModel):
    regex: GoRegex = None
    """Keep the tags this RE2 expression matches, searched anywhere in the tag (anchor it
    with ``^...$``)."""
    exclude_regex: GoRegex = None
    """Then drop the tags this RE2 expression matches."""
    semver: bool = False
    """Then keep only semantic-version tags (``v1``, ``1.2``, ``1.2.3-beta``)."""


class ContentConfig(ConfigModel):
    prefix: Glob
    """The upstream repositories the rule takes: a glob, ``*`` within a path segment,
    ``**`` across them. The first matching rule wins."""
    tags: TagsConfig | None = None
    """Which tags of those repositories to mirror; none: every tag."""
    destination: str | None = None
    """Where they go in the mirror: this path before the upstream name (``/`` is the
    root)."""
    strip_prefix: bool = False
    """With ``destination``: drop the prefix's literal directories (all of a prefix
    without wildcards) from the name."""

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
    """The upstream's URLs, tried in order (failover). Credentials go only to the URL they
    were given for."""
    poll_interval: GoDuration | None = None
    """Beat walks the registry this often (``6h``); 0 or none: never, unless
    ``schedule``."""
    content: list[ContentConfig] = []
    """Rules choosing what to mirror and where; none: every repository, every tag, under
    its own name."""
    tls_verify: bool = True
    """Verify the upstream's TLS certificate."""
    on_demand: bool = False
    """``syncworker serve`` mirrors what its pullers ask for and the store lacks, if one of
    this entry's rules maps the name."""
    cert_dir: str | None = None
    """A directory of ``ca.crt`` (trusted), ``client.cert`` and ``client.key`` (mutual
    TLS), as zot reads it."""
    max_retries: int | None = Field(None, ge=0)
    """Retries of a request that failed temporarily; none: 3."""
    retry_delay: GoDuration | None = None
    """The first retry's delay, doubled for each next one (``Retry-After`` wins); none:
    500ms."""
    only_signed: bool = False
    """Mirror only images signed by cosign or notation (a signature tag or referrer)."""
    sync_timeout: GoDuration | None = None
    """One repository's deadline: past it, every request and download of that repository
    fails; none: no deadline."""
    req_per_sec: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Requests per second to this upstream, for the whole cluster (fractions allowed); 0
    or none: no limit."""
    req_concurrent: int | None = Field(None, ge=0)
    """Requests in flight to this upstream, for the whole cluster (a blob counting until
    its last byte); 0 or none: no limit."""
    download_rate: ByteSize | None = None
    """Bytes per second read from this upstream, for the whole cluster (``1MiB``,
    ``500KiB``, or a number of bytes); none: no cap."""
    pull_budget_reserve: int = Field(0, ge=0)
    """Pulls of the budget an upstream declares (Docker Hub's ``ratelimit-remaining``)
    left unspent, for other users of the same login."""
    max_idle_conns_per_host: int | None = Field(None, ge=1)
    """Keep-alive connections kept to this upstream; none: as many as threads use it."""
    credential_helper: str | None = None
    """``ecr``: log in to Amazon ECR with the AWS SDK's credentials (zot's other helpers
    are refused)."""
    name: str = ""
    """The registry's name in commands, logs, metrics and task arguments; empty: the
    first URL's ``host:port``."""
    repos: list[RepositoryName] = []
    """The repositories to mirror, for upstreams without ``/v2/_catalog`` (Docker Hub,
    where ``alpine`` means ``library/alpine``); empty: list the catalog."""
    platforms: list[PlatformField] = []
    """Only these children of multi-arch images (``linux/amd64``, ``linux/arm64/v8``); the
    index is kept unchanged. Empty: every platform."""
    schedule: CronSchedule | None = None
    """When beat walks the registry, a five-field cron (``"0 2 * * *"``); wins over
    ``pollInterval``."""
    prune: bool = False
    """Remove from the mirror's ``index.json`` the tags this upstream no longer lists
    (after a complete tag listing; never a blob)."""
    # zot's, accepted so that a zot config loads as it is.
    preserve_digest: bool = False
    """zot's; accepted, not acted on: manifests are always stored byte for byte."""
    sync_legacy_cosign_tags: bool = True
    """zot's; accepted, not acted on: cosign's ``sha256-<hex>.sig`` tags always follow
    their images."""
    manifest_check_interval: GoDuration | None = None
    """zot's; accepted, not acted on: ``serve`` never checks a stored tag upstream on a
    pull, the scheduled syncs keep it current."""
    max_retry_delay: GoDuration | None = None
    """zot's; accepted, not acted on: retries back off on syncworker's own curve."""
    disable_http2: bool | None = Field(None, alias="disableHTTP2")
    """zot's; accepted, not acted on."""
    oauth2_credential_helper: dict[str, Any] | None = Field(None, repr=False)
    """zot's; accepted, not acted on."""

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
            if parts.path.rstrip("/").endswith("/v2"):  # the client adds it to every request
                raise ValueError(f"{url!r} ends in /v2: give the registry's base URL without it")
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
        repos = [self.upstream_repository(repo) for repo in self.repos]
        object.__setattr__(self, "repos", repos)
        self._rules = ContentRules([content.rule() for content in self.content])
        return self

    @property
    def docker_hub(self) -> bool:
        """Whether this upstream is Docker Hub, under any of its names."""
        return host_key(self.urls[0]) == DOCKER_HUB

    def upstream_repository(self, name: str) -> str:
        """The upstream's name for repository ``name`` (Docker Hub's ``alpine`` is
        ``library/alpine``, as docker spells it)."""
        return docker_hub_repository(name) if self.docker_hub else name

    def stored_name(self, name: str) -> str | None:
        """Where this entry stores what a client asks for as ``name``, when the content
        rules map ``name`` back to an upstream name that docker spells otherwise (Docker
        Hub's ``alpine``: stored where the rules put ``library/alpine``, as a scheduled
        sync does); None when they map it to no such name."""
        if not self.docker_hub:
            return None
        rules = self.content_rules()
        try:
            for repo in rules.sources(name):
                upstream = self.upstream_repository(repo)
                if upstream != repo:
                    return rules.destination(upstream)
        except ContentError:  # a rule maps it to a name the spec forbids: no other name
            return None
        return None

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
    """``false``: ``syncworker sync`` mirrors nothing."""
    credentials_file: str | None = None
    """A JSON file of logins, ``{"host:port": {"username": ..., "password": ...}}``,
    looked up before docker's ``config.json``."""
    download_dir: str | None = None
    """zot's; accepted, not acted on: zot stages downloads there for cloud storage,
    syncworker streams them."""
    registries: list[RegistryConfig] = []
    """The upstreams, each mirrored on its own."""
