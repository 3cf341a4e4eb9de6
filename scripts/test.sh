#!/usr/bin/env bash
# Run the test suite on a fresh Debian machine (as root) or a prepared one.
#
# Installs only what is missing: the Debian packages whose binaries the fixtures start
# (docker-registry, skopeo, umoci, htpasswd, redis-server) or the deploy checks run
# (docker-compose, kubectl, promtool), pip if the Python has none, and the project with its
# `test` extra. Starts no service itself: the pytest fixtures start registries and Redis on
# free loopback ports. Arguments go to pytest:
#   scripts/test.sh -k support -x
#   scripts/test.sh -m chaos        # only the chaos suite
#   scripts/test.sh -n 0            # in one process (a later -n wins)
#
# The tests run on SYNCWORKER_TEST_WORKERS pytest-xdist workers (default 4): most of a test's
# time is spent waiting on the registries, workers and timeouts it starts, so even two cores
# keep four busy. Each worker has its own session fixtures, temporary directories and Redis
# database (tests/support/redis_server.py); tests marked xdist_group("name") share one
# worker, one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install-deps.sh
# With no arguments (CI), the chaos suite too: pyproject's addopts leave it out by default.
if [ $# -eq 0 ]; then
  set -- -m "chaos or not chaos"
fi
exec "$PYTHON" -m pytest -q -n "${SYNCWORKER_TEST_WORKERS:-4}" --dist loadgroup "$@"
