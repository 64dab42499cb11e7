#!/usr/bin/env bash
# Core throughput benchmarks, each beside its baseline in the same run (ratios, not absolutes:
# these machines are shared and noisy).
#   (a) runs/s create -> terminal with a trivial C worker at the default capacity (max_running 8)
#       vs. a plain spawn-and-wait loop of the same worker at concurrency 8
#   (b) items/s persisted from one worker emitting COUNT items vs. raw SQLite inserts of the
#       same rows into the same schema
# Usage: bench/core_bench.sh [BUILD_DIR] [RUNS] [ITEMS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# BACKEND=postgresql: the store on a throwaway PostgreSQL server (bench/pg_env.sh).
. "$here/pg_env.sh"
build=${1:-$here/../build}
runs=${2:-2000}
items=${3:-1000000}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; pg_env_stop; rm -rf "$tmp"' EXIT
pg_env_start
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/bench.ini" <<INI
[server]
listen = 127.0.0.1:$port
[store]
path = $tmp/bench.db
$STORE_KEYS
[limits]
max_running = 8
max_queued = 100000
max_items = 100000000
[flow.trivial]
command = $build/test/trivial
concurrency = 8
[flow.items]
command = $build/test/emit_items
concurrency = 1
INI
"$build/runsd" -c "$tmp/bench.ini" > "$tmp/runsd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
echo "== (a) runs per second, $runs runs, capacity 8"
a=$("$build/bench/bench_core" runs "$port" "$runs")
echo "$a"
b=$("$build/bench/bench_core" spawn "$build/test/trivial" "$runs" 8)
echo "$b"
python3 -c "import sys; a=float(sys.argv[1]); b=float(sys.argv[2]); print('ratio daemon/spawn-loop = %.2f (goal >= 0.5)' % (a/b))" "$(echo "$a" | awk '{print $2}')" "$(echo "$b" | awk '{print $2}')"
echo "== (b) items per second, $items items from one worker, backend $BACKEND"
c=$("$build/bench/bench_core" items "$port" "$items")
echo "$c"
d=$("$build/bench/bench_core" raw "$tmp/raw.db" "$items")
echo "$d"
python3 -c "import sys; a=float(sys.argv[1]); b=float(sys.argv[2]); print('ratio daemon/raw-sqlite = %.2f (goal >= 0.5)' % (a/b))" "$(echo "$c" | awk '{print $2}')" "$(echo "$d" | awk '{print $2}')"
stall=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '$1 == "runsd_loop_stall_max_seconds" {print $2}')
echo "backend $BACKEND: the loop's worst stall (runsd_loop_stall_max_seconds) = ${stall}s"
kill -TERM $pid; wait $pid || { echo "runsd did not exit cleanly"; exit 1; }
