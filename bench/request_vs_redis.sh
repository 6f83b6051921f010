#!/usr/bin/env bash
# Request path: an ilion node driven by ilion-stress against redis-server driven by
# redis-benchmark, in the same invocation, at equal requests in flight, 100-byte values.
#
#   bench/request_vs_redis.sh            build into build-bench/, run every case, print ratios
#
# Cases (ilion figure / redis figure = ratio; > 1 means ilion is faster). Both sides use the
# same number of sockets and the same number of requests in flight:
#   write      50 connections x 1 in flight (threads=50 connectionsPerHost=50) vs -t set -c 50
#   read       50 connections x 1 in flight                                  vs -t get -c 50
#   write1conn 50 in flight multiplexed on ONE connection (CQL streams)       vs -t set -c 50
#              (not socket-matched: shows what stream multiplexing buys)
#   write256   16 connections x 16 in flight (threads=16 inflight=16)        vs -t set -c 16 -P 16
#   read256    16 connections x 16 in flight                                 vs -t get -c 16 -P 16
#   durable    as write, commitlog_sync batch                                vs appendfsync always
# In the 256 case redis keeps 16 clients x 16 pipelined commands in flight; ilion-stress keeps
# 16 logical clients x 16 requests, each client on its own connection. (Pipelining lets redis
# read a client's 16 commands at once; CQL streams give the node the same opportunity.)
#
# Environment: N (ops per 50-client case, default 200000), NP (ops per 256 case, 1000000),
# REPEAT (run each pair this many times, alternating, and keep each side's best; default 1),
# ND (ops per durable case, 50000), IP (node address, default 127.0.0.77 so it does not collide
# with a developer's node on 127.0.0.1), REDIS_PORT (default 16379), PROFILE=1 to sample the
# node with `perf record -g` during each ilion run (reports in $OUT/perf-<case>.txt),
# OUT (directory for logs and HTML reports, default a temp dir that is kept), ILION_BIN (use
# this node binary instead of building build-bench/ilion).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=$ROOT/build-bench
N=${N:-200000}
NP=${NP:-1000000}
ND=${ND:-50000}
IP=${IP:-127.0.0.77}
REDIS_PORT=${REDIS_PORT:-16379}
JOBS=${JOBS:-2}
REPEAT=${REPEAT:-1}
OUT=${OUT:-$(mktemp -d /tmp/ilion-bench.XXXXXX)}
mkdir -p "$OUT"

echo "== building into $B"
# -O2 -g: optimized, and with symbols for PROFILE=1.
cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if [ -n "${ILION_BIN:-}" ]; then
    # A node binary built elsewhere (e.g. with a local patch under evaluation).
    cmake --build "$B" -j"$JOBS" --target ilion-stress >/dev/null
    NODE=$ILION_BIN
else
    if ! cmake --build "$B" -j"$JOBS" --target ilion ilion-stress >"$OUT/build.log" 2>&1; then
        grep -E "error|Error" "$OUT/build.log" | head -5
        echo "build failed (log: $OUT/build.log); ILION_BIN=path/to/ilion runs another node binary"
        exit 1
    fi
    NODE=$B/ilion
fi
STRESS=$B/tools/ilion-stress
command -v redis-server >/dev/null || { echo "redis-server missing (tools/setup-deps.sh)"; exit 1; }

NODE_PID=""
REDIS_PID=""
cleanup() {
    [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
    NODE_PID=""
    REDIS_PID=""
}
trap cleanup EXIT INT TERM

wait_port() { # host port seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start_node() { # sync-mode name
    local dir=$OUT/node-$2
    rm -rf "$dir"
    mkdir -p "$dir"
    # The sample config with this run's address, a private data directory and the sync mode.
    sed -e "s#\./\.data/node1#$dir#g" \
        -e "s#^listen_address:.*#listen_address: $IP#" \
        -e "s#^rpc_address:.*#rpc_address: $IP#" \
        -e "s#- seeds:.*#- seeds: \"$IP\"#" \
        -e "s#^cluster_name:.*#cluster_name: 'ilion-bench'#" \
        -e "s#^commitlog_sync:.*#commitlog_sync: $1#" \
        "$ROOT/cassandra.yaml.sample" >"$dir/cassandra.yaml"
    "$NODE" --config "$dir/cassandra.yaml" >"$dir/node.log" 2>&1 &
    NODE_PID=$!
    if ! wait_port "$IP" 9042 30; then
        echo "node did not open $IP:9042; log:"
        tail -20 "$dir/node.log"
        exit 1
    fi
}

stop_node() {
    if [ -n "$NODE_PID" ]; then
        kill -INT "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
        NODE_PID=""
    fi
}

start_redis() { # appendfsync
    local dir=$OUT/redis-$1
    rm -rf "$dir"
    mkdir -p "$dir"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
        --appendfsync "$1" --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_port 127.0.0.1 "$REDIS_PORT" 10 || { echo "redis did not start"; exit 1; }
}

stop_redis() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    fi
}

# ilion-stress CMD N name [extra args...] -> prints op/s. With PROFILE=1 the node is sampled
# (perf record -g) during the run; the report goes to $OUT/perf-NAME.txt.
ilion_run() {
    local cmd=$1 n=$2 name=$3 perf_pid=""
    shift 3
    if [ "${PROFILE:-0}" = 1 ]; then
        perf record -g -p "$NODE_PID" -o "$OUT/perf-$name.data" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.3
    fi
    "$STRESS" "$cmd" n="$n" cl=ONE -node "$IP" -col n=1 "size=FIXED(100)" \
        -log file="$OUT/$name.log" -graph file="$OUT/ilion.html" title="ilion request path" \
        revision="$name#$RUN_IDX" "$@" \
        >"$OUT/$name.out" 2>&1 || { echo "ilion-stress $name failed:" >&2; tail -5 "$OUT/$name.out" >&2; }
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        perf report -i "$OUT/perf-$name.data" --no-children --percent-limit 1 --stdio -g none \
            >"$OUT/perf-$name.txt" 2>/dev/null || true
    fi
    # "op/s p50_ms"
    awk '/^Op rate/ {r = $4} /^Latency median/ {m = $4} END {print r, m}' "$OUT/$name.out"
}

# redis-benchmark TEST N name [extra...] -> prints "req/s p50_ms"
redis_run() {
    local t=$1 n=$2 name=$3
    shift 3
    redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n "$n" -t "$t" -d 100 -r 1000000 -q "$@" \
        >"$OUT/$name.out" 2>&1
    # "SET: 104712.05 requests per second, p50=0.263 msec"
    tr '\r' '\n' <"$OUT/$name.out" | awk -v T="$(echo "$t" | tr a-z A-Z)" \
        '$1 == T":" { p = "-"; for (i = 1; i <= NF; i++) if ($i ~ /^p50=/) { p = substr($i, 5) }
                      print $2, p }' | tail -1
}

RESULTS=()
RUN_IDX=1
FMT='%-44s %10s %10s %6s %9s %9s'
record() { # label ilion-ops redis-ops ilion-p50 redis-p50
    local r
    r=$(awk -v a="${2:-0}" -v b="${3:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    RESULTS+=("$(printf "$FMT" "$1" "${2:-fail}" "${3:-fail}" "$r" "${4:--}" "${5:--}")")
    printf "$FMT\n" "$1" "${2:-fail}" "${3:-fail}" "$r" "${4:--}" "${5:--}"
}

echo "== results in $OUT (op/s; ratio = ilion / redis; median latency in ms)"
printf "$FMT\n" case ilion redis ratio ilion_p50 redis_p50

# measure LABEL ILION-ARGS REDIS-ARGS: runs the pair REPEAT times, alternating, and records the
# best figure of each side (other tenants of a shared machine only ever slow a run down).
measure() {
    local label=$1 i a b best_a=0 best_b=0 p50_a=- p50_b=-
    for ((i = 0; i < REPEAT; i++)); do
        RUN_IDX=$((i + 1))
        a=$(eval "ilion_run $2")
        b=$(eval "redis_run $3")
        if awk -v x="${a%% *}" -v y="$best_a" 'BEGIN { exit !(x + 0 > y + 0) }'; then
            best_a=${a%% *}
            p50_a=${a##* }
        fi
        if awk -v x="${b%% *}" -v y="$best_b" 'BEGIN { exit !(x + 0 > y + 0) }'; then
            best_b=${b%% *}
            p50_b=${b##* }
        fi
    done
    record "$label" "$best_a" "$best_b" "$p50_a" "$p50_b"
}

start_node periodic periodic
start_redis everysec
measure "write, 50 in flight (periodic / everysec)" \
    'write "$N" write -pop "seq=1..$N" -rate threads=50 -mode native cql3 prepared connectionsPerHost=50' \
    'set "$N" redis-set -c 50'
measure "read, 50 in flight" \
    'read "$N" read -pop "dist=uniform(1..$N)" -rate threads=50 -mode native cql3 prepared connectionsPerHost=50' \
    'get "$N" redis-get -c 50'
measure "write, 50 in flight on ONE connection" \
    'write "$N" write1conn -pop "seq=1..$N" -rate threads=50' 'set "$N" redis-set-again -c 50'
measure "write, 256 in flight (16 conns x 16)" \
    'write "$NP" write256 -pop "seq=1..$NP" -rate threads=16 inflight=16 -mode native cql3 prepared connectionsPerHost=16' \
    'set "$NP" redis-set-p16 -c 16 -P 16'
measure "read, 256 in flight (16 conns x 16)" \
    'read "$NP" read256 -pop "dist=uniform(1..$NP)" -rate threads=16 inflight=16 -mode native cql3 prepared connectionsPerHost=16' \
    'get "$NP" redis-get-p16 -c 16 -P 16'
stop_node
stop_redis

start_node batch batch
start_redis always
measure "durable write, 50 in flight (batch / always)" \
    'write "$ND" durable -pop "seq=1..$ND" -rate threads=50 -mode native cql3 prepared connectionsPerHost=50' \
    'set "$ND" redis-set-always -c 50'
stop_node
stop_redis

echo
echo "== summary (op/s; ratio = ilion / redis; median latency in ms); logs in $OUT,"
echo "   every ilion run charted in $OUT/ilion.html"
printf "$FMT\n" case ilion redis ratio ilion_p50 redis_p50
printf '%s\n' "${RESULTS[@]}"
