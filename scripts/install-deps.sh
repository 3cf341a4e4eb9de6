#!/usr/bin/env bash
# Install what syncworker's tests and demo need, only what is missing, on Debian (as root)
# or a prepared machine: the Debian packages whose binaries the fixtures start
# (docker-registry, skopeo, umoci, htpasswd, redis-server) or the deploy checks run
# (docker-compose, kubectl, promtool), pip if the Python has none, and
# the project with its `test` extra. Sourced by scripts/test.sh and scripts/demo.sh; sets
# PYTHON to the interpreter it installed into.
# binary -> Debian package that provides it
declare -A PACKAGES=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [umoci]=umoci
  [htpasswd]=apache2-utils
  [redis-server]=redis-server
  [rabbitmq-server]=rabbitmq-server   # the RabbitMQ-as-broker test starts it if not running
  # the deploy files' own checks (tests/support/tools.py): no daemon or cluster needed
  [docker-compose]=docker-compose     # docker-compose config on docker-compose.yml
  [kubectl]=kubernetes-client         # kubectl kustomize deploy/kubernetes
  [promtool]=prometheus               # promtool check rules / config on deploy/prometheus
)

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}

missing=()
for binary in "${!PACKAGES[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${PACKAGES[$binary]}")
done
PYTHON=$(find_python)
if [[ -z $PYTHON ]]; then
  missing+=(python3 python3-pip)   # Debian 12's python3 is 3.11
elif ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)
fi

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
  PYTHON=$(find_python)
fi
if [[ -z $PYTHON ]]; then
  echo "Python >= 3.11 is required on PATH" >&2
  exit 1
fi

# A Debian system Python refuses pip installs (PEP 668) unless told otherwise; a CI
# machine is disposable, and pyenv or venv Pythons are unaffected.
export PIP_BREAK_SYSTEM_PACKAGES=1
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e '.[test]'

# s3rver: a second S3 implementation beside moto for the S3 store's tests (they start it,
# and fail without it). Installed beside the test support code, outside git, once.
S3RVER_VERSION=3.7.1
SUPPORT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/support" && pwd)"
if [[ ! -x $SUPPORT_DIR/node_modules/.bin/s3rver ]]; then
  npm install --prefix "$SUPPORT_DIR" --no-save --no-audit --no-fund "s3rver@$S3RVER_VERSION"
fi
