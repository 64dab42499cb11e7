#!/usr/bin/env bash
# Results paging latency on a large run (bench/README.md, "Paging"):
#   one run of COUNT items (the emit_items C worker), then GET /v1/runs/{id}/results with
#   page_size 100 at page 1, at the middle page, at the last page (deep OFFSET), and with the
#   after= cursor at the first and at the last page; REPS timed requests each (median, p95),
#   over one keep-alive connection from a C client. Then the same reads as raw SQLite
#   statements on the stopped daemon's store, to attribute the time.
# Usage: bench/paging_bench.sh [BUILD_DIR] [COUNT] [REPS]     (a Release build, e.g. build-rel)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# BACKEND=postgresql: the store on a throwaway PostgreSQL server (bench/pg_env.sh).
. "$here/pg_env.sh"
build=${1:-$here/../build-rel}
count=${2:-1000000}
reps=${3:-50}
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null || true; pg_env_stop; rm -rf "$tmp"' EXIT
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
max_items = 100000000
[flow.items]
command = $build/test/emit_items
concurrency = 1
INI
"$build/runsd" -c "$tmp/bench.ini" > "$tmp/runsd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
echo "== backend $BACKEND: results paging, $count items, page_size 100, $reps requests per case ($(nproc) CPUs)"
run=$("$build/bench/paging_bench" fill "$port" "$count")
"$build/bench/paging_bench" measure "$port" "$run" "$reps"
kill -TERM $pid; wait $pid || { echo "runsd did not exit cleanly"; cat "$tmp/runsd.log"; exit 1; }
pid=
[ "$BACKEND" = sqlite ] || exit 0
echo "== the same reads as raw SQLite statements (the store's SQL, read-only, daemon stopped)"
"$build/bench/paging_bench" sql "$tmp/bench.db" "$run" "$reps"
