#!/usr/bin/env bash
# quickstart.sh: runs README.md's quick start as a script, so the block people paste is the
# block CI runs (test/e2e/test_quickstart.py). The block is the ```sh fence after the line
# starting "<!-- quickstart"; it runs under sh (POSIX) with set -eu, and set -x shows each
# command before its output.
#
#   scripts/quickstart.sh [URL]    against the daemon at URL (default: $RUNSD, else
#                                  http://localhost:8080, the demo's: scripts/demo.sh)
#   scripts/quickstart.sh --print  prints the block
#
# Exits with the block's status: 0 when every command, and every outcome it checks, passed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
block=$(awk '/^<!-- quickstart/ { armed = 1; next }
             armed && !inside && /^```sh[ \t]*$/ { inside = 1; next }
             inside && /^```[ \t]*$/ { exit }
             inside { print }' "$root/README.md")
if [ -z "$block" ]; then
  echo "quickstart.sh: no \`\`\`sh block after <!-- quickstart in $root/README.md" >&2
  exit 2
fi
case "${1:-}" in
--print) printf '%s\n' "$block"; exit 0 ;;
-*) echo "usage: $0 [URL] | --print" >&2; exit 2 ;;
esac
export RUNSD=${1:-${RUNSD:-http://localhost:8080}}
exec sh -eux -c "$block"
