"""Shared test infrastructure: real registries, Redis, token server, TLS, generated images."""
