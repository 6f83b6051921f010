#!/usr/bin/env bash
# Real-process cluster tests (docs/cluster.md, "Cluster tests"). Each test starts its own
# nodes on its own loopback range 127.77.<test>.<node> with the node binary $ILION_BIN
# (default build/ilion) and stops them however it ends. ilion-admin is taken from
# $ILION_ADMIN or from tools/ next to the node binary.
#   tests/cluster/run.sh [TEST_NAME_SUBSTRING ...]
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export ILION_BIN=${ILION_BIN:-$ROOT/build/ilion}
if [ ! -x "$ILION_BIN" ]; then echo "node binary $ILION_BIN not found (set ILION_BIN)"; exit 1; fi
if [ -z "${ILION_ADMIN:-}" ] && [ -x "$(dirname "$ILION_BIN")/tools/ilion-admin" ]; then
    export ILION_ADMIN="$(dirname "$ILION_BIN")/tools/ilion-admin"
fi
PY=/usr/bin/python3   # Debian's python3 has the cassandra driver module
if ! $PY -c 'import cassandra' 2>/dev/null; then
    echo "python3-cassandra is missing (apt-get install -y python3-cassandra python3-lz4)"; exit 1
fi
TIMEOUT=${CLUSTER_TEST_TIMEOUT:-240}

failed=()
passed=()
for t in "$HERE"/test_*.py; do
    name=$(basename "$t" .py)
    if [ $# -gt 0 ]; then
        match=0
        for f in "$@"; do [[ $name == *"$f"* ]] && match=1; done
        [ $match = 1 ] || continue
    fi
    echo "--- $name"
    start=$(date +%s)
    # Its own process group: whatever the test leaves behind (it stops its nodes itself, also on
    # SIGTERM from the timeout) is killed with the group afterwards.
    setsid timeout --kill-after=20 "$TIMEOUT" "$PY" "$t" &
    pid=$!
    wait $pid
    rc=$?
    kill -KILL -- -$pid 2>/dev/null
    took=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        passed+=("$name")
        echo "--- $name: PASS (${took}s)"
    else
        failed+=("$name")
        echo "--- $name: FAIL (rc $rc, ${took}s)"
    fi
done
echo
echo "cluster tests: ${#passed[@]} passed, ${#failed[@]} failed ${failed[*]:-}"
[ ${#failed[@]} -eq 0 ]
