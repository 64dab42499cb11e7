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
ulimit -n 20000
tmp=$(mktemp -d)
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start BUILD: a fresh runsd with one external run; sets port, server_pid, path.
start() {
    port=$(free_port)
    local d=$tmp/runsd.$port
    mkdir -p "$d"
    printf '[server]\nlisten = 127.0.0.1:%s\nmax_sse_clients = 20000\n[store]\npath = %s\n[limits]\n[flow.bench]\nexecutor = external\ntimeout = 1h\n' \
        "$port" "$d/runsd.db" > "$d/runsd.ini"
    "$1/runsd" -c "$d/runsd.ini" > "$d/log" 2>&1 &
    server_pid=$!
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/readyz" && break
        sleep 0.05
    done
    local id
    id=$(curl -sf -X POST "http://127.0.0.1:$port/v1/runs" -d '{"flow":"bench"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    path=/v1/runs/$id/events
}

# one LABEL BUILD ARGS...: one measurement; prints the RESULT line and the lag counter.
one() {
    local label=$1 build=$2
    shift 2
    start "$build"
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
