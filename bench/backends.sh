#!/usr/bin/env bash
# The core and paging benchmarks on both store backends, side by side (issue 13): items/s of
# PostgreSQL against SQLite (goal >= 0.5x), the loop's worst stall on each, and the cost of
# results page 1 against a deep page.
# Usage: bench/backends.sh [BUILD_DIR] [RUNS] [ITEMS] [PAGING_COUNT] [REPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
runs=${2:-1000}
items=${3:-200000}
count=${4:-1000000}
reps=${5:-30}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for b in sqlite postgresql; do
  BACKEND=$b "$here/core_bench.sh" "$build" "$runs" "$items" | tee "$out/core.$b"
  BACKEND=$b "$here/paging_bench.sh" "$build" "$count" "$reps" | tee "$out/paging.$b"
done
rate() { awk '/^daemon_items_per_s /{print $2; exit}' "$1"; }
python3 -c "import sys; s, p = float(sys.argv[1]), float(sys.argv[2]); \
print('== items/s: sqlite %.0f, postgresql %.0f, ratio pg/sqlite = %.2f (goal >= 0.5)' % (s, p, p / s))" \
  "$(rate "$out/core.sqlite")" "$(rate "$out/core.postgresql")"
