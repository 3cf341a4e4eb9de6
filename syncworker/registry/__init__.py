"""The distribution-spec HTTP client: auth, retries, failover, pagination, manifests, blobs."""

from syncworker.redact import install_log_redaction
from syncworker.registry.auth import Credentials
from syncworker.registry.client import RegistryClient
from syncworker.registry.deadline import Deadline
from syncworker.registry.options import ClientOptions
from syncworker.registry.stats import ClientStats

__all__ = ["ClientOptions", "ClientStats", "Credentials", "Deadline", "RegistryClient"]

install_log_redaction()
