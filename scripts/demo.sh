#!/usr/bin/env bash
# The main job on one machine: install what is missing, start a local upstream registry,
# fill it with generated images, mirror it with `syncworker sync` (cold, then no-op) and
# check every mirrored tag with skopeo. Arguments go to scripts/demo.py (--repos N, --keep DIR,
# --serve: serve the mirror and pull through `syncworker serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
exec "$PYTHON" scripts/demo.py "$@"
