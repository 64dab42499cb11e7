"""pg.py: a throwaway PostgreSQL server for the tests, from Debian's postgresql package.

server() starts one per test process, lazily: initdb into a temporary directory owned by an
unprivileged user (as root: the package's `postgres` user, through runuser), pg_ctl start on a
Unix socket in that directory and on TCP 127.0.0.1 (a free port, the same across restarts; for
the tests of host names in the dsn: tcp_dsn()), trust authentication for both. It is stopped (pg_ctl stop -m fast) and its directory removed at exit, also when a
test failed. Each daemon gets a database of its own (database()).

fsync is off: these servers hold test data only, and the tests kill the daemon, not the
machine; the benchmarks (bench/) start their own server with the defaults.
"""
import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

USER = "runsd"  # the database superuser initdb creates


def _bindir():
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not dirs:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return dirs[-1]


class Server:
    """One PostgreSQL server in a temporary directory; stop() may be followed by start()."""

    def __init__(self, fsync=False):
        self.bin = _bindir()
        self.dir = tempfile.mkdtemp(prefix="runsd-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sock = self.dir
        self.fsync = fsync
        self.n_db = 0
        with socket.socket() as s:  # free now; taken by the server's first start
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.owner = None
        if os.geteuid() == 0:
            # initdb refuses to run as root: the package's system user owns the cluster.
            self.owner = pwd.getpwnam("postgres")
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        os.chmod(self.dir, 0o755)
        self._run(["initdb", "-D", self.data, "-U", USER, "-A", "trust", "-E", "UTF8",
                   "--no-sync"])

    def _run(self, argv, check=True):
        argv = [os.path.join(self.bin, argv[0])] + argv[1:]
        if self.owner:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, check=check, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, cwd=self.dir)

    def start(self):
        opts = "-k %s -p %d -c listen_addresses=127.0.0.1 -c fsync=%s -c max_connections=200" % (
            self.sock, self.port, "on" if self.fsync else "off")
        if not self.fsync:
            opts += " -c synchronous_commit=off -c full_page_writes=off"
        r = self._run(["pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"),
                       "-w", "-t", "60", "-o", opts, "start"], check=False)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed: %s\n%s" % (r.stdout.decode(), self.log()))
        return self

    def stop(self, mode="fast"):
        self._run(["pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"], check=False)

    def running(self):
        return self._run(["pg_ctl", "-D", self.data, "status"], check=False).returncode == 0

    def destroy(self):
        if os.path.isdir(self.data):
            self.stop("immediate" if not self.fsync else "fast")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def dsn(self, db="postgres"):
        return "host=%s port=%d user=%s dbname=%s" % (self.sock, self.port, USER, db)

    def tcp_dsn(self, db, host="localhost"):
        """A dsn that reaches the server over TCP through a host name (or address)."""
        return "host=%s port=%d user=%s dbname=%s" % (host, self.port, USER, db)

    def psql(self, sql, db="postgres"):
        """Runs sql, returns its output (unaligned, tuples only)."""
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-At", "-v",
                            "ON_ERROR_STOP=1", "-d", self.dsn(db), "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            # The server's own log tail too: a failure here is often the server's (a crash).
            raise RuntimeError("psql %r: %s\n--- server log (tail) ---\n%s"
                               % (sql, r.stderr.decode(), self.log()))
        return r.stdout.decode().strip()

    def database(self, name=None):
        """Creates a new empty database and returns its name."""
        if name is None:
            self.n_db += 1
            name = "t%d_%d" % (os.getpid(), self.n_db)
        self.psql('CREATE DATABASE "%s"' % name)
        return name


_server = None


def server():
    """The test process's server, started on first use."""
    global _server
    if _server is None:
        _server = Server().start()
        atexit.register(_server.destroy)
    return _server
