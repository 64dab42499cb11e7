#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz) in build-fuzz with clang and runs each for
# SECONDS_PER_TARGET seconds (default 30) on a copy of its seed corpus, so the corpus in git
# never changes behind anyone's back. Prints the executions of each target; exits non-zero
# when a target crashes, leaks, times out or breaks a checked contract (the reproducer and the
# log are kept under the temp dir it prints). FUZZ_JOBS targets run at once (default 1).
#
#   scripts/fuzz.sh            30 s per target
#   scripts/fuzz.sh 300        5 min per target
#   FUZZ_JOBS=2 scripts/fuzz.sh 300
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
jobs=${FUZZ_JOBS:-1}
src=$PWD

command -v clang >/dev/null || { echo "fuzz.sh: clang is missing (scripts/setup.sh)" >&2; exit 1; }
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRUNSD_FUZZ=ON >/dev/null
cmake --build build-fuzz --target fuzz -j"$(nproc)" >/dev/null

work=$(mktemp -d /tmp/runsd-fuzz.XXXXXX)
targets=()
for f in test/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done

# One target: a fresh corpus copy, its dictionary when there is one, the log in $work.
run_one() {
    local t=$1 dir=$work/$1 dict=()
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp test/fuzz/corpus/"$t"/* "$dir/corpus/"
    [ -f test/fuzz/"$t".dict ] && dict=(-dict="$src/test/fuzz/$t.dict")
    (cd "$dir" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$src/build-fuzz/test/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${dict[@]}" corpus \
        >"$dir/log" 2>&1) && echo 0 >"$dir/rc" || echo $? >"$dir/rc"
}

for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_one "$t" &
done
wait

failed=0
printf '%-16s %12s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
    rc=$(cat "$work/$t/rc" 2>/dev/null || echo 99)
    log=$work/$t/log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    ncorp=$(find "$work/$t/corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAILED (rc $rc): $log, $(ls "$work/$t/artifacts" | head -1)"
        failed=1
    fi
    printf '%-16s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "$ncorp" "$result"
done
if [ "$failed" -ne 0 ]; then
    for t in "${targets[@]}"; do
        grep -q "^==[0-9]*==ERROR\|contract broken\|runtime error\|deadly signal" "$work/$t/log" &&
            { echo "--- $t"; grep -m1 -A30 "==ERROR\|contract broken\|runtime error\|deadly signal" \
                "$work/$t/log"; }
    done
    echo "fuzz.sh: a target failed; logs and reproducers in $work" >&2
    exit 1
fi
rm -rf "$work"
