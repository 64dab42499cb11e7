#!/usr/bin/env bash
# Installs the Debian packages runsd needs to build, run and test (only the missing ones).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libevent-dev libevhtp-dev libjansson-dev libsqlite3-dev
      libcurl4-openssl-dev libssl-dev libsystemd-dev libinih-dev libcmocka-dev python3 curl
      sqlite3 clang libclang-rt-14-dev valgrind util-linux mount
      dpkg-dev file systemd prometheus jq golang-go tmux python3-yaml libpq-dev postgresql
      chromium)
# dpkg-dev and file: cpack's dependency list (dpkg-shlibdeps); systemd: systemd-analyze and
# systemd-socket-activate for the package and activation tests (nothing is started).
# jq: the README quick start (scripts/quickstart.sh, test/e2e/test_quickstart.py) and the
# shell worker example. golang-go, node and npm: the examples test/e2e/test_examples.py runs
# (the Go worker and receiver, the Node worker and receiver). Node is taken from wherever it
# is installed (NodeSource's nodejs ships npm and conflicts with Debian's npm), so Debian's
# nodejs and npm are added only when the commands are missing.
# libpq-dev: the PostgreSQL store backend; postgresql: the server the tests start themselves in
# a temporary directory (test/e2e/pg.py, bench/), never the package's own cluster.
# prometheus: only for its promtool, which test/e2e/test_metrics.py runs on a scrape
# (`promtool check metrics`). Debian ships promtool in no smaller package; this one is a
# 19 MB download, 96 MB installed, about 35 s. Its own server is not wanted: see below.
# tmux: the real terminal test/e2e/test_runsctl.py drives `runsctl watch` in.
# python3-yaml: the build converts docs/openapi.yaml to the JSON the daemon serves.
# chromium: the browser test/e2e/test_dashboard.py drives (headless) with playwright-core,
# which npm installs below into test/browser/ (never globally; Playwright's own browser
# downloads are not used).
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm: the OpenAPI lint (scripts/lint-openapi.sh) and the JavaScript client's
# test. A Node.js already installed (from another source, with its own npm) is kept: Debian's
# npm package would conflict with it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# On a host run by systemd, installing prometheus starts its server on :9090; the tests need
# only promtool.
if [[ " ${missing[*]:-} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  ${sudo:-} systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
# Likewise the postgresql package creates and starts a "main" cluster (on port 5432) where
# systemd runs; the tests and benchmarks start throwaway servers of their own.
if [[ " ${missing[*]:-} " == *" postgresql "* ]]; then
  if [ -d /run/systemd/system ]; then
    ${sudo:-} systemctl disable --now postgresql.service >/dev/null 2>&1 || true
  fi
  command -v pg_ctlcluster >/dev/null 2>&1 &&
    ${sudo:-} pg_ctlcluster --skip-systemctl-redirect 15 main stop >/dev/null 2>&1 || true
fi
# playwright-core and axe-core for the dashboard's browser test, pinned by
# test/browser/package-lock.json (npm ci again when either is missing: a tree installed
# before axe-core was added lacks it).
if command -v npm >/dev/null 2>&1 && { [ ! -d "$(dirname "$0")/../test/browser/node_modules/playwright-core" ] ||
  [ ! -d "$(dirname "$0")/../test/browser/node_modules/axe-core" ]; }; then
  (cd "$(dirname "$0")/../test/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
# The pinned OpenAPI linter, into tools/openapi/node_modules (npm ci; skipped when present).
# Exit 77 is "no npm": the lint test then says it is skipped.
"$(dirname "$0")/lint-openapi.sh" --install || [ $? -eq 77 ]
