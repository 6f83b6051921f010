#!/usr/bin/env bash
# Stock drivers against a fresh Ilion node: starts a node (own temp data directory,
# ${HOST:-127.0.0.1}:${PORT:-9042}), runs the Python, Node.js and Go driver tests, restarts the node and
# checks data and schema are found again, then stops the node. Bounded in time; the node is
# killed on any exit. ILION_BIN overrides the node binary (default build/ilion).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/drivers"
BIN=${ILION_BIN:-$ROOT/build/ilion}
PORT=${PORT:-9042}
HOST=${HOST:-127.0.0.1}
WORK=$(mktemp -d /tmp/ilion-drivers.XXXXXX)
NODE_PID=
failed=()

cleanup() {
    if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill -TERM "$NODE_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$NODE_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "node binary $BIN not found (build first)"; exit 1; }

cat > "$WORK/cassandra.yaml" <<YAML
cluster_name: 'Driver Test'
num_tokens: 16
listen_address: $HOST
rpc_address: $HOST
native_transport_port: $PORT
storage_port: 0
data_file_directories:
  - $WORK/data
commitlog_directory: $WORK/commitlog
hints_directory: $WORK/hints
saved_caches_directory: $WORK/saved_caches
commitlog_sync: periodic
commitlog_sync_period_in_ms: 1000
YAML

start_node() {
    if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
        echo "$HOST:$PORT is already in use by another process (set HOST or PORT)"; return 1
    fi
    "$BIN" --config "$WORK/cassandra.yaml" >>"$WORK/node.log" 2>&1 &
    NODE_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then return 0; fi
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "node did not start; log:"; tail -30 "$WORK/node.log"
    return 1
}

stop_node() {
    kill -TERM "$NODE_PID"
    for _ in $(seq 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$NODE_PID" 2>/dev/null; then
        echo "node did not stop within 20 s of SIGTERM"; failed+=("shutdown")
        kill -KILL "$NODE_PID"; wait "$NODE_PID" 2>/dev/null
    else
        wait "$NODE_PID"; rc=$?
        [ $rc -eq 0 ] || { echo "node exited with $rc after SIGTERM"; failed+=("shutdown"); }
    fi
    NODE_PID=
}

run() { # name command...
    local name=$1; shift
    echo "--- $name"
    if ! timeout 300 "$@"; then failed+=("$name"); fi
}

start_node || exit 1
run python /usr/bin/python3 "$HERE/test_python.py" "$HOST" "$PORT" main

if command -v node >/dev/null && command -v npm >/dev/null; then
    if [ ! -d "$HERE/node/node_modules/cassandra-driver" ]; then
        (cd "$HERE/node" && timeout 300 npm install --no-audit --no-fund --silent cassandra-driver@4 >/dev/null 2>&1) \
            || echo "npm install cassandra-driver@4 failed"
    fi
    run nodejs node "$HERE/node/test.js" "$HOST" "$PORT"
else
    echo "--- nodejs: node/npm not installed, skipped"; failed+=("nodejs-missing")
fi

if command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/gocql/gocql ]; then
    mkdir -p "$WORK/gobuild"
    if (cd "$HERE/go" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$WORK/gocache" \
            timeout 300 go build -o "$WORK/gobuild/gotest" main.go); then
        run go "$WORK/gobuild/gotest" "$HOST" "$PORT"
    else
        echo "go build failed"; failed+=("go-build")
    fi
else
    echo "--- go: golang-go / gocql not installed, skipped"; failed+=("go-missing")
fi

echo "--- restart"
stop_node
start_node || { echo "node did not restart"; exit 1; }
run python-after-restart /usr/bin/python3 "$HERE/test_python.py" "$HOST" "$PORT" after_restart
stop_node

if [ ${#failed[@]} -gt 0 ]; then
    echo "DRIVER TESTS FAILED: ${failed[*]}"
    echo "node log tail:"; tail -20 "$WORK/node.log"
    exit 1
fi
echo "DRIVER TESTS PASSED"
