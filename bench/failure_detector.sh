#!/usr/bin/env bash
# Failure detection on real node processes (issue #4): time to convict a SIGKILLed node with
# the default settings, and false convictions under full CPU load.
#
#   bench/failure_detector.sh [--load-minutes 10] [--kills 3] [--settle 20] [--pauses 10,20]
#
# Builds build-fdbench/ilion if needed (or uses $ILION_BIN), starts 3 nodes on 127.0.5.1-3
# (native 19342, storage 17300, admin 17399; --net/--native-port/--storage-port/--admin-port
# to change), then
#   1. SIGKILLs node 3 --kills times; each time nodes 1 and 2 are polled every 100 ms
#      (admin /status) until they mark it DOWN; node 3 is restarted and the time until every
#      node shows every node UP is recorded; min/median/max are printed;
#   2. runs nproc+1 `sha256sum /dev/zero` (normal priority) for --load-minutes while every
#      node's /status is polled once per second; every DOWN seen for a node (none is killed
#      then) is a false conviction; the nodes' "is now DOWN/UP" log lines are counted too;
#   3. (only with --pauses) SIGSTOPs node 3 for each given number of seconds: is it convicted
#      during the stall, and does it, resumed, wrongly convict the others?
# Everything started is stopped on exit. Node files and logs stay in $OUT (default a new
# /tmp/ilion-fdbench.XXXXXX). Exit status 0, 3 if a false conviction was seen, 1 on error.
# The logic is in bench/failure_detector.py (Python 3 standard library). docs/failure-detection.md
# has the theory and the measured numbers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${B:-$ROOT/build-fdbench}
OUT=${OUT:-$(mktemp -d /tmp/ilion-fdbench.XXXXXX)}
mkdir -p "$OUT"

for a in "$@"; do
    case "$a" in -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
done

if [ -z "${ILION_BIN:-}" ]; then
    echo "== building $B/ilion"
    if [ ! -f "$B/CMakeCache.txt" ]; then
        cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$OUT/cmake.log"
    fi
    if ! cmake --build "$B" -j2 --target ilion > "$OUT/build.log" 2>&1; then
        tail -15 "$OUT/build.log"
        # The tree is shared with people editing it; a binary from an earlier build is
        # still a fair subject for this measurement.
        [ -x "$B/ilion" ] || { echo "build failed, see $OUT/build.log" >&2; exit 1; }
        echo "== build failed (see $OUT/build.log); using the existing $B/ilion from $(date -u -r "$B/ilion" +%FT%TZ)"
    fi
    ILION_BIN=$B/ilion
    echo "== source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src include 2>/dev/null || echo ' + uncommitted changes in src/include')"
fi
# A copy, so that a rebuild during the run does not change the binary under test.
cp "$ILION_BIN" "$OUT/ilion"
ILION_BIN=$OUT/ilion

# If the Python side dies without cleaning up (SIGKILL), stop what it recorded as started:
# only those pids, and only if they still run the programs we started.
cleanup() {
    local rc=$?
    if [ -n "${PY_PID:-}" ] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null || true
        wait "$PY_PID" 2>/dev/null || true
    fi
    if [ -f "$OUT/pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] || continue
            if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" |
                    grep -qE "^$OUT/ilion --config |^sha256sum /dev/zero"; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done < "$OUT/pids"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== node binary $ILION_BIN, output in $OUT"
/usr/bin/python3 "$ROOT/bench/failure_detector.py" --bin "$ILION_BIN" --out "$OUT" "$@" &
PY_PID=$!
set +e
wait "$PY_PID"
rc=$?
set -e
PY_PID=
exit $rc
