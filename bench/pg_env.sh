# Sourced by the benchmarks: with BACKEND=postgresql, starts a throwaway PostgreSQL server
# (test/e2e/pg.py, default durability settings: fsync and synchronous_commit on) and sets
# STORE_KEYS to the [store] lines of the daemon's config; pg_env_stop stops it. With the
# default BACKEND=sqlite both are no-ops.
BACKEND=${BACKEND:-sqlite}
STORE_KEYS=
PG_DIR=
pg_env_start() {
  [ "$BACKEND" = postgresql ] || return 0
  local e2e
  e2e=$(cd "$(dirname "${BASH_SOURCE[0]}")/../test/e2e" && pwd)
  read -r PG_DIR dsn < <(python3 -c "
import sys; sys.path.insert(0, '$e2e'); import pg
s = pg.Server(fsync=True).start(); db = s.database('bench'); print(s.dir, s.dsn(db))")
  STORE_KEYS="backend = postgresql
dsn = $dsn"
}
pg_env_stop() {
  [ -n "$PG_DIR" ] || return 0
  python3 -c "
import sys; sys.path.insert(0, '$(cd "$(dirname "${BASH_SOURCE[0]}")/../test/e2e" && pwd)'); import pg
s = pg.Server.__new__(pg.Server); s.bin = pg._bindir(); s.dir = '$PG_DIR'
s.data = s.dir + '/data'; s.fsync = True; s.owner = None
import os, pwd
if os.geteuid() == 0: s.owner = pwd.getpwnam('postgres')
s.destroy()"
  PG_DIR=
}
