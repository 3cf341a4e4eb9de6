"""syncworker: a distributed mirror for OCI container registries."""

__all__ = ["__version__"]

__version__ = "0.1.0"
