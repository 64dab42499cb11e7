#!/usr/bin/env bash
# Installs the Debian packages runsd needs to build, run and test (only the missing ones).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libevent-dev libevhtp-dev libjansson-dev libsqlite3-dev
      libcurl4-openssl-dev libssl-dev libsystemd-dev libinih-dev libcmocka-dev python3 curl
      sqlite3 clang libclang-rt-14-dev valgrind util-linux mount
      dpkg-dev file systemd python3-yaml)
# dpkg-dev and file: cpack's dependency list (dpkg-shlibdeps); systemd: systemd-analyze and
# systemd-socket-activate for the package and activation tests (nothing is started).
# python3-yaml: the build converts docs/openapi.yaml to the JSON the daemon serves.
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
# The pinned OpenAPI linter, into tools/openapi/node_modules (npm ci; skipped when present).
# Exit 77 is "no npm": the lint test then says it is skipped.
"$(dirname "$0")/lint-openapi.sh" --install || [ $? -eq 77 ]
