#!/usr/bin/env bash
# sse_fanout_ab.sh: the runsd half of sse_compare.sh for two builds side by side, so a change
# to the hub can be checked against the tree before it without nginx: fast fan-out (N
# subscribers, K events, P POSTs in flight: deliveries/s, server CPU, lost) and paced readers
# (N_PACED subscribers reading at most PACE B/s each: time to the last subscriber, lost). Each
# measurement gets a fresh server; the two builds alternate, ROUNDS times.
#
#   bench/sse_fanout_ab.sh BUILD_A BUILD_B
# Env: NS="1000 5000", K_1000=2000, K_5000=400, P=16, ROUNDS=2, N_PACED=1000, K_PACED=600,
#      PACE=20000 (the paced case of sse_compare.sh). Each BUILD needs runsd and bench/sse_load.
set -euo pipefail
a=$1 b=$2
NS=${NS:-"1000 5000"}
P=${P:-16}
ROUNDS=${ROUNDS:-2}
N_PACED=${N_PACED:-1000}
K_PACED=${K_PACED:-600}
PACE=${PACE:-20000}
. "$(dirname "$0")/sse_common.sh"

# one LABEL BUILD ARGS...: one measurement; prints the RESULT line and the lag counter.
one() {
    local label=$1 build=$2
    shift 2
    runsd_with_run "$build"
    local out
    out=$("$build/bench/sse_load" --port "$port" --sub "$path" --pub "$path" --format item \
        --pid "$server_pid" "$@" 2> "$tmp/err" | grep '^RESULT' || cat "$tmp/err" >&2)
    local lagged
    lagged=$(curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^runsd_sse_lagged_total //p')
    echo "$label $* lagged=${lagged:-n/a} $out"
    stop_server
}

for r in $(seq "$ROUNDS"); do
    for n in $NS; do
        kvar=K_$n
        k=${!kvar:-$((2000000 / n))}
        one "round=$r A" "$a" -n "$n" -k "$k" --inflight "$P"
        one "round=$r B" "$b" -n "$n" -k "$k" --inflight "$P"
    done
    one "round=$r A paced" "$a" -n "$N_PACED" -k "$K_PACED" --inflight 1 --size 256 --pace "$PACE"
    one "round=$r B paced" "$b" -n "$N_PACED" -k "$K_PACED" --inflight 1 --size 256 --pace "$PACE"
done
