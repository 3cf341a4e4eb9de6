"""The configuration: a zot config file, its ``extensions.sync`` read as zot does, plus ours."""

from syncworker.config.durations import parse_duration
from syncworker.config.loader import REDIS_URL_ENV, format_path, load_config, validate
from syncworker.config.model import Config, ExtensionsConfig, SyncworkerSettings
from syncworker.config.storage import S3DriverConfig, StorageConfig
from syncworker.config.syncextension import ContentConfig, RegistryConfig, SyncConfig, TagsConfig

__all__ = [
    "REDIS_URL_ENV",
    "Config",
    "ContentConfig",
    "ExtensionsConfig",
    "RegistryConfig",
    "S3DriverConfig",
    "StorageConfig",
    "SyncConfig",
    "SyncworkerSettings",
    "TagsConfig",
    "format_path",
    "load_config",
    "parse_duration",
    "validate",
]
