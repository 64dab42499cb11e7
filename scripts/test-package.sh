#!/usr/bin/env bash
# The Debian package end to end (CI runs this from scripts/test.sh, as root, on a fresh
# Debian 12 machine where systemd is installed but may not be PID 1): build it with cpack,
# install it with apt, check the installed units with systemd-analyze (verify, and security
# with a score of at most 2.0), start the installed binary as the runsd user with the
# installed config on a free loopback port, run a demo flow to its end, stop it (exit 0),
# and purge the package. Usage: scripts/test-package.sh [BUILD_DIR] (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
unitdir=/usr/lib/systemd/system
log=$(mktemp /tmp/runsd-package.XXXXXX)
pid=""

if [ "$(id -u)" -ne 0 ]; then
  echo "test-package: needs root (apt-get install, the runsd user)" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' runsd 2>/dev/null | grep -q "ok installed"; then
  echo "test-package: a runsd package is already installed here; not touching it" >&2
  exit 1
fi

cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq runsd >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT

echo "== cpack -G DEB"
(cd "$build" && rm -f runsd_*.deb && cpack -G DEB >/dev/null)
deb=$(ls "$build"/runsd_*.deb)
dpkg-deb --field "$deb" Package Version Depends

echo "== apt-get install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
getent passwd runsd >/dev/null || { echo "FAIL: no runsd user after install" >&2; exit 1; }
[ "$(stat -c %U /var/lib/runsd)" = runsd ] || { echo "FAIL: /var/lib/runsd not runsd's" >&2; exit 1; }

echo "== systemd-analyze verify"
# --man=no: Documentation=man: pages are not looked up (man-db may be absent in CI).
systemd-analyze verify --man=no "$unitdir/runsd.service" "$unitdir/runsd.socket"

echo "== systemd-analyze security --offline=yes"
systemd-analyze security --offline=yes --no-pager "$unitdir/runsd.service" | tee "$log"
score=$(sed -n 's/.*Overall exposure level for runsd.service: \([0-9.]*\).*/\1/p' "$log")
echo "exposure score: ${score:-none}"
awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }' ||
  { echo "FAIL: exposure score ${score:-none} is above 2.0" >&2; exit 1; }

echo "== the installed runsd, as runsd, with the installed config, on loopback"
conf=/etc/runsd/runsd.ini
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/^listen = .*/listen = 127.0.0.1:$port/" "$conf"
runuser -u runsd -- /usr/sbin/runsd -c "$conf" -t
(cd /var/lib/runsd && exec setpriv --reuid runsd --regid runsd --init-groups \
   /usr/sbin/runsd -c "$conf") >"$log" 2>&1 &
pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -fs "$url/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "FAIL: runsd exited" >&2; exit 1; }
  sleep 0.1
done
id=$(curl -fsS "$url/v1/runs" -d '{"flow":"pkgsearch","input":{"name_contains":"lib"},"limit":3}' |
     python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
status=""
for _ in $(seq 30); do
  run=$(curl -fsS "$url/v1/runs/$id?wait=5")
  status=$(printf '%s' "$run" | python3 -c \
    'import json, sys; r = json.load(sys.stdin); print("" if r["is_active"] else r["status"])')
  [ -n "$status" ] && break
done
echo "run $id: ${status:-still active}"
[ "$status" = succeeded ] || { echo "$run"; cat "$log"; echo "FAIL: run did not succeed" >&2; exit 1; }
[ -s /var/lib/runsd/runsd.db ] || { echo "FAIL: no store in /var/lib/runsd" >&2; exit 1; }
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { cat "$log"; echo "FAIL: runsd exited $rc on SIGTERM" >&2; exit 1; }

echo "== apt-get purge runsd"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq runsd >/dev/null
[ ! -e /usr/sbin/runsd ] && [ ! -e /etc/runsd ] && [ ! -e /var/lib/runsd ] ||
  { echo "FAIL: purge left files behind" >&2; exit 1; }
echo "test-package: ok"
