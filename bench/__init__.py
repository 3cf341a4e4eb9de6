"""The benchmark: syncworker against skopeo sync and the read limit, on loopback (issue #5)."""
