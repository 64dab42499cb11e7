#!/usr/bin/env bash
# sse_compare.sh: SSE fan-out of runsd beside nginx + nchan, on this machine, in one go, with
# the same load client (bench/sse_load.c) for both. Every measurement gets a fresh server.
#
#   throughput  N subscribers, K events published one per POST as fast as the server answers
#               with P POSTs in flight; the best P of 1, 4, 16 is reported for each server
#   latency     N subscribers, 10 events/s: per-delivery latency and the time until the last
#               subscriber had an event (p50 / p99 over events)
#   memory      server Private_Clean + Private_Dirty before/after opening N idle subscribers
#   stalled     one subscriber that never reads beside one that does, 2,000 events of 8 KiB:
#               server memory growth, and whether the stalled one was disconnected (the same
#               run without the stalled subscriber is the control)
#   paced       N_PACED subscribers that each read at most PACE bytes/s (a browser tab taking
#               events at its own pace), one POST in flight as fast as the server answers
#               (or at most PACED_RATE events/s: the same offered load for both servers):
#               the time until the last subscriber had an event (p50 / p99), deliveries/s,
#               and how many deliveries were lost (subscribers cut)
#
# Usage: bench/sse_compare.sh [BUILD_DIR]
#   Without BUILD_DIR a Release tree is configured and built in build-bench.
# Env: NS="1000 5000", K_1000=2000 and K_5000=400 (events per throughput run), K_LAT=200,
#      RATE=10, INFLIGHT="1 4 16", N_PACED=1000 K_PACED=600 PACE=20000 PACED_RATE=, PARTS="fanout stalled
#      paced" (which measurements to run), RUNSD_SERVER_LINES (added to runsd's [server]).
#      Needs nginx-light + libnginx-mod-nchan (apt-get).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-$root/build-bench}
if [ -z "${1:-}" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j2 --target runsd sse_load >/dev/null
fi
NS=${NS:-"1000 5000"}
K_LAT=${K_LAT:-200}
RATE=${RATE:-10}
INFLIGHT=${INFLIGHT:-"1 4 16"}
N_PACED=${N_PACED:-1000}
K_PACED=${K_PACED:-600}
PACE=${PACE:-20000}
PACED_RATE=${PACED_RATE:-} # events/s offered in the paced case (empty: as fast as answered)
PARTS=${PARTS:-"fanout stalled paced"}
part() { [[ " $PARTS " == *" $1 "* ]]; }
load=$build/bench/sse_load
. "$here/sse_common.sh"

# Each start_* sets port, server_pid, sub, pub and fmt.
start_runsd() {
    runsd_with_run "$build"
    sub=$path pub=$path fmt=item
}

start_nchan() {
    port=$(free_port)
    local d=$tmp/nchan.$port
    mkdir -p "$d"
    sed -e "s#__PREFIX__#$d#g" -e "s#__PORT__#$port#g" "$here/nchan.conf" > "$d/nchan.conf"
    nginx -p "$d" -c nchan.conf > "$d/log" 2>&1 &
    server_pid=$!
    wait_http "$port" /nothing-here
    sub=/sub pub=/pub fmt=raw
}

# run TARGET ARGS...: one measurement on a fresh server; prints sse_load's RESULT lines.
run() {
    local target=$1
    shift
    "start_$target"
    "$load" --port "$port" --sub "$sub" --pub "$pub" --format "$fmt" --pid "$server_pid" "$@" \
        2> "$tmp/load.err" || cat "$tmp/load.err" >&2
    stop_server
}

# field "LINES" PREFIX KEY: KEY's value on the RESULT line that starts with PREFIX.
field() {
    grep "^RESULT $2" <<< "$1" | head -1 | tr ' ' '\n' | sed -n "s/^$3=//p"
}

declare -A R
part fanout || NS=""
for n in $NS; do
    kvar=K_$n
    k=${!kvar:-$((2000000 / n))}
    for t in runsd nchan; do
        best=0
        for p in $INFLIGHT; do
            echo "== $t N=$n throughput K=$k P=$p" >&2
            out=$(run "$t" -n "$n" -k "$k" --inflight "$p")
            echo "$out" >&2
            dps=$(field "$out" subscribers deliveries_per_s)
            if [ "${dps:-0}" -gt "$best" ]; then
                best=$dps
                R[$t,$n,dps]=$dps R[$t,$n,p]=$p
                R[$t,$n,lost]=$(field "$out" subscribers lost)
                R[$t,$n,cpu]=$(field "$out" subscribers server_cpu_s)
            fi
            # memory per idle subscriber: from the first run (a fresh process each time)
            [ -n "${R[$t,$n,mem]:-}" ] || R[$t,$n,mem]=$(field "$out" subscribers idle_bytes_per_sub)
        done
        echo "== $t N=$n latency K=$K_LAT rate=$RATE/s" >&2
        out=$(run "$t" -n "$n" -k "$K_LAT" --rate "$RATE" --inflight 4)
        echo "$out" >&2
        for f in lat_p50_ms lat_p99_ms last_p50_ms last_p99_ms lost; do
            R[$t,$n,l_$f]=$(field "$out" subscribers "$f")
        done
    done
done
part stalled || STALL_TARGETS=""
for t in ${STALL_TARGETS-runsd nchan}; do
    echo "== $t stalled reader" >&2
    out=$(run "$t" -n 1 -k 2000 --size 8192 --inflight 1 --stall)
    echo "$out" >&2
    R[$t,stall_growth]=$(field "$out" stall server_growth_kb)
    R[$t,stall_cut]=$(field "$out" stall stalled_disconnected)
    R[$t,stall_bytes]=$(field "$out" stall stalled_bytes)
    out=$(run "$t" -n 1 -k 2000 --size 8192 --inflight 1)
    echo "$out" >&2
    R[$t,ctl_growth]=$(field "$out" subscribers server_growth_kb)
done

part paced || PACED_TARGETS=""
for t in ${PACED_TARGETS-runsd nchan}; do
    echo "== $t paced readers N=$N_PACED K=$K_PACED pace=$PACE B/s" >&2
    out=$(run "$t" -n "$N_PACED" -k "$K_PACED" --inflight 1 --size 256 --pace "$PACE" \
        ${PACED_RATE:+--rate "$PACED_RATE"})
    echo "$out" >&2
    for f in last_p50_ms last_p99_ms deliveries_per_s lost; do
        R[$t,p_$f]=$(field "$out" subscribers "$f")
    done
done

nchan_ver=$(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')
echo
echo "SSE fan-out, $(nproc) cores, loopback; runsd $(git -C "$root" rev-parse --short HEAD 2>/dev/null)+ vs nginx $(nginx -v 2>&1 | sed 's#.*/##') + nchan $nchan_ver"
printf '%-44s' ""
for n in $NS; do printf ' %13s %13s' "runsd N=$n" "nchan N=$n"; done
echo
row() { # label key
    printf '%-44s' "$1"
    for n in $NS; do printf ' %13s %13s' "${R[runsd,$n,$2]:-?}" "${R[nchan,$n,$2]:-?}"; done
    echo
}
row "deliveries/s (best P)" dps
row "  POSTs in flight (P) of that run" p
row "  lost deliveries" lost
row "  server CPU s (that run)" cpu
row "latency per delivery p50 ms ($RATE ev/s)" l_lat_p50_ms
row "latency per delivery p99 ms" l_lat_p99_ms
row "time to last subscriber p50 ms" l_last_p50_ms
row "time to last subscriber p99 ms" l_last_p99_ms
row "server bytes per idle subscriber" mem
echo
part stalled && echo "stalled reader (2,000 events of 8 KiB; growth = peak server memory minus before; the"
part stalled && echo "control is the same run without the stalled subscriber, so the difference is its cost):"
for t in ${STALL_TARGETS-runsd nchan}; do
    printf '  %-6s growth %6s kB, control %6s kB, due to it %6s kB; disconnected: %s; it received %s bytes\n' \
        "$t" "${R[$t,stall_growth]}" "${R[$t,ctl_growth]}" \
        "$((R[$t,stall_growth] - R[$t,ctl_growth]))" "${R[$t,stall_cut]}" "${R[$t,stall_bytes]}"
done
echo
part paced && echo "paced readers ($N_PACED subscribers reading at most $PACE B/s each, one POST in flight${PACED_RATE:+, at most $PACED_RATE events/s}):"
for t in ${PACED_TARGETS-runsd nchan}; do
    printf '  %-6s time to last subscriber p50 %s ms, p99 %s ms; %s deliveries/s; lost %s\n' \
        "$t" "${R[$t,p_last_p50_ms]:-?}" "${R[$t,p_last_p99_ms]:-?}" \
        "${R[$t,p_deliveries_per_s]:-?}" "${R[$t,p_lost]:-?}"
done
