#!/usr/bin/env bash
# Run the test suite on a fresh Debian machine (as root) or a prepared one.
#
# Installs only what is missing: the Debian packages whose binaries the fixtures start
# (docker-registry, skopeo, umoci, htpasswd, redis-server), pip if the Python has none, and
# the project with its `test` extra. Starts no service itself: the pytest fixtures start
# registries and Redis on free loopback ports. Arguments go to pytest:
#   scripts/test.sh -k support -x
#   scripts/test.sh -m chaos        # only the chaos suite
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install-deps.sh
# With no arguments (CI), the chaos suite too: pyproject's addopts leave it out by default.
if [ $# -eq 0 ]; then
  set -- -m "chaos or not chaos"
fi
exec "$PYTHON" -m pytest -q "$@"
