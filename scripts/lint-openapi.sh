#!/usr/bin/env bash
# lint-openapi.sh: lints docs/openapi.yaml with Redocly's CLI and its recommended rules
# (tools/openapi/redocly.yaml says which rules are changed, and why: none so far).
#
#   scripts/lint-openapi.sh            lint (installs the pinned linter first if needed)
#   scripts/lint-openapi.sh --install  only install it (scripts/setup.sh runs this)
#
# The linter is installed with npm from tools/openapi/package-lock.json into
# tools/openapi/node_modules, never globally, and reinstalled when its version is not the
# pinned one. Without npm the lint is skipped: exit 77 (ctest's SKIP_RETURN_CODE) with the
# reason; any lint error exits 1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/tools/openapi"
redocly="$tools/node_modules/.bin/redocly"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "lint-openapi: SKIPPED: npm/node not found; install Debian's nodejs and npm" \
       "(scripts/setup.sh does) to lint docs/openapi.yaml" >&2
  exit 77
fi

want="$(node -e 'process.stdout.write(require(process.argv[1]).devDependencies["@redocly/cli"])' \
        "$tools/package.json")"
have="$("$redocly" --version 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  echo "lint-openapi: installing @redocly/cli $want into tools/openapi (npm ci)" >&2
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
[ "${1:-}" = "--install" ] && exit 0

cd "$root"
exec "$redocly" lint --config tools/openapi/redocly.yaml --format=stylish docs/openapi.yaml
