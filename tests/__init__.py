"""syncworker test suite."""
