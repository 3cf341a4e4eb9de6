"""The benchmark: syncworker against skopeo sync and the read limit, on loopback, measured
against the speed and memory targets."""
