"""``syncworker serve``: the pull side of the distribution spec over the mirror's own store
(a filesystem or S3), read-only, with pull-through on demand for ``onDemand`` registries."""
