#!/usr/bin/env bash
# Storage engine vs RocksDB db_bench, same machine, same invocation, same shape
# (16-byte keys, 100-byte values; see /work/shared/notes/baselines.md):
#   1. random inserts, one thread:   ours with commit log periodic  vs  db_bench --sync=0 (WAL on)
#   2. random point reads of the data written in 1 (use_existing_db)
#   3. durable writes, 8 threads:    ours in batch mode (group commit)  vs  db_bench --sync=1 --threads=8
# Prints both figures and ours/RocksDB for each line. Targets: >= 1.25x, >= 1.0x, >= 1.0x.
#
#   bench/storage_vs_rocksdb.sh [NUM_FILL=2000000] [NUM_READS=1000000] [SYNC_OPS_PER_THREAD=20000]
# Env: BUILD_DIR (default build-bench), WORK (scratch directory, default a new temp dir on /tmp),
#      REPEAT (default 1; >1 alternates which side runs first and keeps each side's best),
#      ILION_BENCH_MEMTABLE_MB (default 128: two 64 MiB memtables, like RocksDB's defaults).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NUM=${1:-2000000}
READS=${2:-1000000}
SYNC_OPS=${3:-20000}
THREADS=8
BUILD=${BUILD_DIR:-$ROOT/build-bench}

command -v db_bench >/dev/null || { echo "db_bench not found (Debian package rocksdb-tools)"; exit 1; }
if [ ! -x "$BUILD/bench/bench_storage" ] || [ -n "$(find "$ROOT/src" "$ROOT/bench" "$ROOT/include" -newer "$BUILD/bench/bench_storage" -name '*.[ch]' 2>/dev/null | head -1)" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j2 --target bench_storage >/dev/null
fi
OURS="$BUILD/bench/bench_storage"
WORK=${WORK:-$(mktemp -d /tmp/ilion-bench-storage-XXXXXX)}
mkdir -p "$WORK"
[ -n "${KEEP_WORK:-}" ] || trap 'rm -rf "$WORK"' EXIT

# db_bench prints e.g. "fillrandom   :   4.123 micros/op 242534 ops/sec 8.246 seconds ..."
rocks_ops() { awk -v b="$1" '$1 == b && $2 == ":" { for (i = 1; i <= NF; i++) if ($i == "ops/sec") print $(i-1) }' | tail -1; }
ours_ops() { sed -n 's/.*: \([0-9]*\) ops\/s.*/\1/p' | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }

COMMON="--key_size=16 --value_size=100 --compression_type=snappy"
REPEAT=${REPEAT:-1}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
r1=0 o1=0 r2=0 o2=0 r3=0 o3=0

fill_read_rocks() {
    rm -rf "$WORK/rocks"
    local out
    out=$(db_bench --db="$WORK/rocks" $COMMON --num="$NUM" --benchmarks=fillrandom --sync=0 2>&1)
    echo "$out" | grep -E '^fillrandom' >&2 || true
    r1=$(best "$r1" "$(echo "$out" | rocks_ops fillrandom)")
    out=$(db_bench --db="$WORK/rocks" $COMMON --num="$NUM" --benchmarks=readrandom --use_existing_db=1 --reads="$READS" 2>&1)
    echo "$out" | grep -E '^readrandom' >&2 || true
    r2=$(best "$r2" "$(echo "$out" | rocks_ops readrandom)")
    rm -rf "$WORK/rocks"
}
fill_read_ours() {
    rm -rf "$WORK/ilion"
    local out
    out=$("$OURS" fillrandom "$WORK/ilion" "$NUM"); echo "$out" >&2
    o1=$(best "$o1" "$(echo "$out" | ours_ops)")
    out=$("$OURS" readrandom "$WORK/ilion" "$NUM" "$READS"); echo "$out" >&2
    o2=$(best "$o2" "$(echo "$out" | ours_ops)")
    rm -rf "$WORK/ilion"
}
sync_rocks() {
    rm -rf "$WORK/rocks-sync"
    local out
    out=$(db_bench --db="$WORK/rocks-sync" $COMMON --num="$SYNC_OPS" --threads="$THREADS" --benchmarks=fillrandom --sync=1 2>&1)
    echo "$out" | grep -E '^fillrandom' >&2 || true
    r3=$(best "$r3" "$(echo "$out" | rocks_ops fillrandom)")
    rm -rf "$WORK/rocks-sync"
}
sync_ours() {
    rm -rf "$WORK/ilion-sync"
    local out
    out=$("$OURS" fillsync "$WORK/ilion-sync" "$SYNC_OPS" "$THREADS"); echo "$out" >&2
    o3=$(best "$o3" "$(echo "$out" | ours_ops)")
    rm -rf "$WORK/ilion-sync"
}

# The machine is shared and noisy: with REPEAT > 1 the pairs alternate which side runs first
# and the best run of each side counts.
for ((rep = 1; rep <= REPEAT; rep++)); do
    echo "== run $rep/$REPEAT: 1. random inserts ($NUM, one thread; ilion commit log periodic, rocksdb WAL sync=0)" >&2
    echo "==            2. random point reads ($READS of the data from 1, use_existing_db)" >&2
    if ((rep % 2)); then fill_read_rocks; fill_read_ours; else fill_read_ours; fill_read_rocks; fi
    echo "== run $rep/$REPEAT: 3. durable writes ($THREADS threads x $SYNC_OPS; ilion batch mode, rocksdb sync=1)" >&2
    if ((rep % 2)); then sync_rocks; sync_ours; else sync_ours; sync_rocks; fi
done
results=("fillrandom (WAL, no fsync)|$o1|$r1|1.25"
         "readrandom|$o2|$r2|1.0"
         "fillsync x$THREADS (fsync, group commit)|$o3|$r3|1.0")

echo
printf '%-40s %12s %12s %8s %8s\n' "benchmark" "ilion ops/s" "rocksdb" "ratio" "target"
for line in "${results[@]}"; do
    IFS='|' read -r name o r t <<<"$line"
    rt=$(ratio "$o" "$r")
    ok=$(awk -v a="$o" -v b="$r" -v t="$t" 'BEGIN { print (b > 0 && a / b >= t) ? "ok" : "MISSED" }')
    printf '%-40s %12s %12s %8s %8s %s\n' "$name" "$o" "$r" "$rt" ">=${t}x" "$ok"
done
