#!/usr/bin/env bash
# Installs the Debian packages runsd needs to build, run and test (only the missing ones).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libevent-dev libevhtp-dev libjansson-dev libsqlite3-dev
      libcurl4-openssl-dev libssl-dev libsystemd-dev libinih-dev libcmocka-dev python3 curl
      sqlite3 clang libclang-rt-14-dev valgrind util-linux mount
      dpkg-dev file systemd tmux)
# dpkg-dev and file: cpack's dependency list (dpkg-shlibdeps); systemd: systemd-analyze and
# systemd-socket-activate for the package and activation tests (nothing is started); tmux: the
# real terminal test/e2e/test_runsctl.py drives `runsctl watch` in.
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
