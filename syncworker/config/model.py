"""The whole configuration: a zot config file, plus our own ``syncworker`` section."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator

from syncworker.config.credentials import (
    ECR_HELPER,
    EcrLogin,
    FileLogins,
    host_key,
    login,
)
from syncworker.config.destination import DestinationConfig
from syncworker.config.docker import HELPER_TIMEOUT, docker_login
from syncworker.config.modelbase import ConfigModel, PositiveDuration
from syncworker.config.serving import ServeSettings
from syncworker.config.storage import StorageConfig
from syncworker.config.syncextension import RegistryConfig, SyncConfig
from syncworker.errors import ConfigError
from syncworker.waits import LOCK_TTL, RUNS_KEPT

if TYPE_CHECKING:
    from syncworker.registry.auth import Credentials, Login

__all__ = ["REDIS_URL_ENV", "ApiSettings", "Config", "ExtensionsConfig", "SyncworkerSettings"]

#: Environment variable that replaces ``syncworker.redis`` (containers set it at deploy).
REDIS_URL_ENV = "SYNCWORKER_REDIS_URL"

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# A token is the only thing between the network and the broker: one short enough to guess
# is refused, from the config as from the environment (`openssl rand -hex 32` makes a good one).
MIN_TOKEN_CHARS = 16
MIN_LOCK_TTL = timedelta(seconds=1)
# Our Celery time limits (``syncworker.celery`` overrides them). A repository with hundreds
# of multi-GiB tags can take hours: the soft limit raises in the task (it is counted failed
# and retried by the next run), the hard limit kills a stuck one.
SOFT_TIME_LIMIT = 3 * 3600
HARD_TIME_LIMIT = SOFT_TIME_LIMIT + 600
# Opaque zot sections may hold secrets (LDAP bind passwords, API keys): never in a repr.
_Opaque = dict[str, Any] | None


class ApiSettings(ConfigModel):
    """``syncworker api``: the bearer token its callers present (``SYNCWORKER_API_TOKEN``
    in the environment wins over it)."""

    token: SecretStr | None = None
    """The bearer token callers of ``syncworker api`` present (at least 16 characters);
    ``SYNCWORKER_API_TOKEN`` in the environment wins over it."""

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters")
        return value


class SyncworkerSettings(ConfigModel):
    """Our own top-level section."""

    concurrency: int = Field(8, ge=1)
    """Repositories mirrored in parallel (threads of ``syncworker sync``)."""
    blob_concurrency: int = Field(4, ge=1)
    """Blobs copied in parallel within one repository."""
    tag_concurrency: int = Field(4, ge=1, le=64)
    """Tags of one repository mirrored in parallel (their blobs share the blob pool)."""
    repos_per_task: int = Field(16, ge=1, le=1000)
    """Celery: repositories a walk sends in one message; a worker syncs them one after the
    other and sends those still left after 5 s on as two messages, so slow repositories
    spread over the workers while a no-op run pays the per-message cost once per batch."""
    walk_ahead: int = Field(10_000, ge=1)
    """Celery: a walk lists its next catalog page only while fewer than this many
    repositories wait in the broker (counted as ``reposPerTask`` per waiting message), and
    looks again 2 s later, so a catalog of millions never sits in the broker. At least
    ``reposPerTask``."""
    redis: SecretStr | None = None
    """Redis URL (``redis://``, ``rediss://``, ``unix://``) for coordination, and Celery's
    broker unless ``celery`` names another; ``SYNCWORKER_REDIS_URL`` wins over it. None:
    ``syncworker sync`` coordinates its threads in-process, loading nothing of Redis."""
    celery: dict[str, Any] = Field(default_factory=dict, repr=False)
    """Merged over our Celery settings, mappings one level deep (``broker_url``,
    ``task_time_limit``, ``broker_transport_options``...)."""
    runs_kept: int = Field(RUNS_KEPT, ge=1)
    """Runs per registry that Redis keeps for ``syncworker status`` and the REST API: the
    one going on and the most recent finished ones; an older finished run is forgotten
    when a new one starts. A finished run is also forgotten 7 days after it ended."""
    layout_media_types: Literal["preserve", "oci"] = "preserve"
    """Media types that ``index.json`` names for Docker schema-2 manifests and lists (the
    bytes, and so digests, are the upstream's either way). ``preserve``: the type of the
    bytes, as zot's storage does, so a registry serving the layout sends the right
    ``Content-Type``. ``oci``: their OCI twin types, for layout readers that skip Docker
    types (skopeo 1.9, umoci)."""
    max_blob_size: int | None = Field(None, ge=1)
    """Bytes: a larger blob, declared or streamed, fails its tag. None: the client's limit,
    64 GiB."""
    credential_helper_timeout: PositiveDuration = timedelta(seconds=HELPER_TIMEOUT)
    """How long a docker credential helper (``docker-credential-<name>``) may take to
    answer."""
    lock_ttl: PositiveDuration = timedelta(seconds=LOCK_TTL)
    """How long a Redis lock outlives its holder's last renewal: a worker killed with
    SIGKILL frees the repositories and blobs it held this long after. A holder renews its
    locks every third of it; one that finds its lock lost anyway (Redis restarted, the
    holder cut off or paused longer) stops removing (gc, prune) and writing index.json
    (a sync fails the repository), naming the lock. At least 1s: a shorter lock is lost
    to a scheduling delay."""
    api: ApiSettings = Field(default_factory=lambda: ApiSettings.model_validate({}))
    """The HTTP API, ``syncworker api``."""
    destination: DestinationConfig | None = None
    """A registry to push into instead of writing OCI layouts."""
    serve: ServeSettings = Field(default_factory=lambda: ServeSettings.model_validate({}))
    """The read-only registry over the store, ``syncworker serve``."""

    @field_validator("walk_ahead")
    @classmethod
    def _at_least_one_batch(cls, value: int, info: ValidationInfo) -> int:
        per_task = info.data.get("repos_per_task")
        if per_task is not None and value < per_task:
            raise ValueError(
                f"must be at least reposPerTask ({per_task}): a walk counts each waiting"
                " message as that many repositories, so one message would hold it back"
            )
        return value

    @field_validator("celery")
    @classmethod
    def _soft_limit_first(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Celery's prefork pool arms a task's hard time limit when its soft one fires: a
        soft limit at or above the hard one (ours, 3 h, under a hard one set alone) would
        apply the hard one at the soft one's time, not its own."""
        soft = value.get("task_soft_time_limit", SOFT_TIME_LIMIT)
        hard = value.get("task_time_limit", HARD_TIME_LIMIT)
        for key, limit in (("task_soft_time_limit", soft), ("task_time_limit", hard)):
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int | float)
            ):
                raise ValueError(f"{key} must be a number of seconds or null, got {limit!r}")
        if soft is not None and hard is not None and soft >= hard:
            raise ValueError(
                f"task_soft_time_limit ({soft:g} s) must be below task_time_limit ({hard:g} s):"
                " Celery arms the hard limit only when the soft one fires; set both, or"
                " task_soft_time_limit: null for the hard limit alone"
            )
        return value

    @field_validator("lock_ttl")
    @classmethod
    def _lock_outlives_jitter(cls, value: timedelta) -> timedelta:
        if value < MIN_LOCK_TTL:
            raise ValueError("must be at least 1s: a shorter lock is lost to a scheduling delay")
        return value

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def blob_threads(self) -> int:
        """The blob pool: ``concurrency`` repositories of ``blob_concurrency`` blobs each."""
        return self.blob_concurrency * self.concurrency

    @property
    def client_threads(self) -> int:
        """Threads that may use one registry client at once (an upstream's, or the
        destination's): the blob pool, and the tags of every repository in progress (each
        HEADs, GETs or PUTs its manifests). A keep-alive pool smaller than this discards
        connections."""
        return self.blob_threads + self.concurrency * self.tag_concurrency

    @property
    def tag_threads(self) -> int:
        """The tag pool: ``concurrency`` repositories of ``tag_concurrency`` tags each, but
        the one each repository's own thread runs."""
        return max(1, self.concurrency * (self.tag_concurrency - 1))

    @property
    def redis_url(self) -> str | None:
        return self.redis.get_secret_value() if self.redis is not None else None

    def require_redis_url(self, purpose: str) -> str:
        """The Redis URL; :class:`ConfigError` saying that ``purpose`` needs one if unset."""
        url = self.redis_url
        if not url:
            raise ConfigError(
                "syncworker.redis",
                f"{purpose} needs a Redis URL: set syncworker.redis or {REDIS_URL_ENV}",
            )
        return url


class ExtensionsConfig(ConfigModel):
    """zot's ``extensions``: ``sync`` is ours to read; the others are kept as they are."""

    sync: SyncConfig | None = None
    """zot's sync extension: the upstreams to mirror."""
    search: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    metrics: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on (syncworker's metrics: ``--metrics-port``)."""
    scrub: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on (``syncworker check`` verifies the store)."""
    lint: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    ui: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    mgmt: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    api_key: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    trust: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    events: Any = Field(None, repr=False)
    """zot's; accepted, not acted on."""


class Config(ConfigModel):
    """A zot configuration file, read by syncworker. Load it with ``load_config``."""

    storage: StorageConfig
    """Where the mirror is written: a directory, or S3."""
    extensions: ExtensionsConfig | None = None
    """zot's extensions; only ``sync`` is read."""
    syncworker: SyncworkerSettings = Field(
        default_factory=lambda: SyncworkerSettings.model_validate({})
    )
    """syncworker's own settings; everything in it is optional."""
    # zot's own, accepted so that a zot config loads as it is.
    dist_spec_version: str | None = None
    """zot's; accepted, not acted on."""
    http: _Opaque = Field(None, repr=False)
    """zot's server section; accepted, not acted on (``syncworker.serve`` configures
    ``syncworker serve``)."""
    log: _Opaque = None
    """zot's; accepted, not acted on (``--log-format``, ``-v``)."""
    scheduler: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    cluster: _Opaque = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    # zot fills these from its build; they may appear in a config it wrote back out.
    go_version: str | None = None
    """zot's build information; accepted, not acted on."""
    commit: str | None = None
    """zot's build information; accepted, not acted on."""
    release_tag: str | None = None
    """zot's build information; accepted, not acted on."""
    binary_type: str | None = None
    """zot's build information; accepted, not acted on."""

    _file_credentials: FileLogins = PrivateAttr(default_factory=dict)

    @property
    def sync(self) -> SyncConfig:
        """``extensions.sync``, or an empty one (no registries) when absent."""
        ext = self.extensions
        return ext.sync if ext is not None and ext.sync is not None else SyncConfig()

    @property
    def registries(self) -> list[RegistryConfig]:
        return self.sync.registries

    def registry(self, name: str) -> RegistryConfig:
        for reg in self.registries:
            if reg.name == name:
                return reg
        known = ", ".join(reg.name for reg in self.registries) or "none"
        message = f"no registry named {name!r} (configured: {known})"
        raise ConfigError("extensions.sync.registries", message)

    def credentials_for(self, registry: RegistryConfig) -> dict[str, Login]:
        """The login of each of ``registry``'s URLs that has one: its credential helper's
        (zot's ``credentialHelper: ecr``), else zot's credentialsFile entry for its host,
        else the user's docker config.json (its credential helpers, then ``auths``). A
        failover URL gets only its own login."""
        if registry.credential_helper == ECR_HELPER:
            return {url: EcrLogin(url) for url in registry.urls}
        found: dict[str, Login] = {}
        for url, host in zip(registry.urls, registry.hosts, strict=True):
            creds = self.file_login(host) or self.docker_login(host)
            if creds is not None:
                found[url] = creds
        return found

    def destination_credentials(self) -> Credentials | None:
        """The destination's login: the credentials file's entry for its host, else
        docker's (as an upstream's; a credential helper asked now: the push client
        holds one login for the run)."""
        from syncworker.registry.auth import resolve

        dest = self.syncworker.destination
        if dest is None:
            return None
        return self.file_login(dest.host) or resolve(self.docker_login(dest.host))

    def docker_login(self, host: str) -> Login | None:
        """docker's login for ``host``, its helper given our timeout."""
        timeout = self.syncworker.credential_helper_timeout / timedelta(seconds=1)
        return docker_login(host, timeout)

    def file_login(self, host: str) -> Credentials | None:
        """The credentials file's login for ``host`` (``host[:port]``), if it has one."""
        pair = self._file_credentials.get(host_key(host))
        return login(*pair) if pair is not None else None
