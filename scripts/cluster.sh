#!/usr/bin/env bash
# A local cluster in one command: install what is missing, then start a seeded upstream
# registry on loopback, Redis, two workers, beat and the HTTP API, print what to try, and
# stop every one of them on Ctrl-C. Arguments go to scripts/cluster.py (--repos N,
# --poll-interval 2m, --redis URL, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
# exec: Ctrl-C reaches cluster.py itself, whose handler stops every process it started.
exec "$PYTHON" scripts/cluster.py "$@"
