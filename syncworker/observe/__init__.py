"""Watching the mirror work: Prometheus metrics, the live display of ``sync``, JSON logs.

Implementations of the engine's :class:`~syncworker.engine.Events`, imported only by the
commands that ask for them (prometheus-client and rich are not loaded otherwise).
"""
