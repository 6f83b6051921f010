#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time (seconds, arg 1),
# first replaying its kept regression inputs (tests/fuzz/corpus/<target>/). Any crash fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECS=${1:-30}
shopt -s nullglob
targets=("$ROOT"/tests/fuzz/fuzz_*.c)
if [ ${#targets[@]} -eq 0 ]; then echo "no fuzz targets"; exit 0; fi
cmake -S "$ROOT" -B "$ROOT/build-fuzz" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=Debug -DILION_FUZZ=ON -DILION_SANITIZE=ON >/dev/null
rc=0
for src in "${targets[@]}"; do
    name=$(basename "$src" .c)
    short=${name#fuzz_}
    cmake --build "$ROOT/build-fuzz" -j"$(nproc)" --target "$name" >/dev/null
    corpus="$ROOT/tests/fuzz/corpus/$short"
    work=$(mktemp -d)
    mkdir -p "$corpus"
    echo "--- $name: ${SECS}s"
    if ! (cd "$work" && "$ROOT/build-fuzz/tests/$name" -max_total_time="$SECS" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 "$work" "$corpus" 2>&1 | tail -5); then
        echo "FUZZ FAILURE in $name (crash input left in $work)"; rc=1
    fi
    [ $rc -eq 0 ] && rm -rf "$work"
done
exit $rc
