#!/usr/bin/env bash
# Installs every Debian package the build, tests and benchmarks need. Idempotent.
# Usage: tools/setup-deps.sh            (build + tests)
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang
  liblz4-dev zlib1g-dev libuv1-dev libyaml-dev libcriterion-dev
  python3 python3-cassandra python3-lz4
  golang-go golang-github-gocql-gocql-dev
  rocksdb-tools redis-server redis-tools
)
# Node.js: the machine image may ship its own; take Debian's only when none is there.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
