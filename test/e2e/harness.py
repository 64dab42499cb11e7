"""harness.py: start the real runsd binary on a free loopback port with a generated config,
talk to it over HTTP, and fail the test if it died of anything but the signal we sent.

Tests poll for readiness and for conditions; they never sleep for fixed times.

No secret in any log: every secret a test hands a daemon or gets from one (API keys and
webhook secrets of the configs written here, credentials sent, approval/stream tokens, auth
states and OAuth codes in the links and bodies exchanged) is noted in SECRETS, and each
daemon's stderr (runsd.log; its stdout is runsd.out) is searched for all of them when it is
stopped or killed: a hit fails the test that ran it.
"""
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

BIN = os.environ.get("RUNSD_BIN", os.path.join(os.path.dirname(__file__), "../../build/runsd"))
WORKERS = os.environ.get("RUNSD_TEST_WORKERS", os.path.join(os.path.dirname(__file__), "../workers"))
BUILD = os.environ.get("RUNSD_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("RUNSD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
TESTWORKER = "%s %s" % (sys.executable, os.path.join(WORKERS, "testworker.py"))
# RUNSD_VALGRIND=1 runs every daemon under valgrind memcheck: any error or definite leak makes
# it exit 99, which stop() reports with valgrind's log. Timeouts are stretched by SLOW.
VALGRIND = os.environ.get("RUNSD_VALGRIND") == "1"
SLOW = 10.0 if VALGRIND else 1.0
# The store backend every Daemon uses unless told otherwise (test/e2e/pg.py starts the server).
BACKEND = os.environ.get("RUNSD_TEST_BACKEND", "sqlite")
_PG_DBS = {}


def pg_dsn_for(store_path):
    """The dsn of the PostgreSQL database that stands for store_path: a daemon restarted on
    the same store path (as the recovery tests do) finds the same database."""
    import pg
    srv = pg.server()
    if store_path not in _PG_DBS:
        _PG_DBS[store_path] = srv.database()
    return srv.dsn(_PG_DBS[store_path])


SECRETS = set()
SECRET_MIN = 8  # shorter values (test codes such as "x") would match ordinary log text
_CONF_SECRET = re.compile(r"^[ \t]*(?:key[ \t]*[=:][ \t]*\w+:|secret[ \t]*[=:][ \t]*)(\S+)", re.M)
_LINK_SECRET = re.compile(r"(?:[?&]|&amp;)(?:token|state|code)=([^&\"'\s<>\\]+)")


_RUN_ID = re.compile(r"run_[A-Za-z0-9_-]{22}")


def note_secret(value):
    """Remembers value as a secret no daemon log may contain. A bare run id (a forged token
    cut to its first part) is no secret: the log names runs."""
    if isinstance(value, str) and len(value) >= SECRET_MIN and not _RUN_ID.fullmatch(value):
        SECRETS.add(value)
        SECRETS.add(urllib.parse.unquote(value))


def note_secrets_in(text):
    """Notes the token, state and code values of the links in text (a path, a body)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for m in _LINK_SECRET.finditer(text):
        note_secret(m.group(1))


def note_body_secrets(body):
    """Notes the secrets a request body carries: tokens, codes, webhook secrets."""
    if isinstance(body, (bytes, str)):
        note_secrets_in("?" + (body.decode("utf-8", "replace") if isinstance(body, bytes)
                               else body))
        return
    if isinstance(body, dict):
        for k, v in body.items():
            if k in ("token", "code", "secret", "state"):
                note_secret(v)
            elif isinstance(v, dict):
                note_body_secrets(v)


def secrets_in_log(text):
    """The noted secrets that occur in text."""
    return sorted(s for s in SECRETS if s in text)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, timeout=20.0, interval=0.02, what="condition"):
    """Polls cond() until it returns a truthy value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


class Daemon:
    """One runsd process with its own temp dir, store and config."""

    def __init__(self, flows="", extra="", limits="", server="", store_path=None, tmp=None,
                 env=None, backend=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="runsd-e2e-")
        self.port = free_port()
        self.store = store_path or os.path.join(self.tmp, "runsd.db")
        # sqlite (the default) or postgresql: RUNSD_TEST_BACKEND switches every suite.
        self.backend = backend or BACKEND
        self.dsn = pg_dsn_for(self.store) if self.backend == "postgresql" else None
        self.flows = flows
        self.extra = extra
        self.limits = limits
        self.server = server
        self.env = env  # added to the daemon's environment (e.g. LD_PRELOAD of a fault shim)
        self.proc = None
        self.expected_exit = False

    def config_text(self):
        return (
            "[server]\nlisten = 127.0.0.1:%d\npublic_url = http://127.0.0.1:%d\n%s\n"
            "[store]\npath = %s\n%s\n[limits]\n%s\n%s\n%s\n"
            % (self.port, self.port, self.server, self.store, self.store_keys(), self.limits,
               self.extra, self.flows)
        )

    def store_keys(self):
        if self.backend != "postgresql":
            return ""
        return "backend = postgresql\ndsn = %s\n" % self.dsn

    def start(self):
        # The port was free when chosen, but another process may take it before runsd binds
        # it (and then answer our readiness probe): retry with a new port when runsd could
        # not bind, and accept only runsd's own answer (its request id) as ready.
        for attempt in range(5):
            if self._start_once():
                return self
            self.port = free_port()
        raise AssertionError("runsd could not bind a free port: %s" % self.read_log())

    def _start_once(self):
        self.conf = os.path.join(self.tmp, "runsd.ini")
        with open(self.conf, "w") as f:
            f.write(self.config_text())
        for m in _CONF_SECRET.finditer(self.config_text()):
            note_secret(m.group(1))
        self.log = open(os.path.join(self.tmp, "runsd.log"), "ab")
        self.out = open(os.path.join(self.tmp, "runsd.out"), "ab")
        log_at = self.log.tell()  # this start's lines come after it (the file is appended to)
        argv = [BIN, "-c", self.conf]
        if VALGRIND:
            argv = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                    "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                    "--track-fds=no", "--log-file=%s" % os.path.join(self.tmp, "valgrind.%p.log"),
                    ] + argv
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.log, cwd=self.tmp, env=env)
        self.expected_exit = False

        def ready():
            if self.proc.poll() is not None:
                return "exited"
            # Our own daemon has bound the port (another process could answer on it too). The
            # whole of this start's log is read: clients that come back at once after a restart
            # (the soak's) can push the line out of any tail before the first look.
            if "listening on port %d" % self.port not in self.read_log(since=log_at):
                return False
            try:
                r = self.request("GET", "/readyz")
                return r.status == 200 and r.headers.get("x-request-id", "").startswith("req_")
            except OSError:
                return False

        if wait_for(ready, what="runsd readiness") is True:
            return True
        self.close_log()
        if "cannot bind" in self.read_log() or "Address already in use" in self.read_log():
            return False
        raise AssertionError("runsd exited during start: %s" % self.read_log())

    def store_sql(self, sql):
        """Runs one SQL statement on the daemon's store with its backend's own client (Python's
        sqlite3, or psql on the test server) and returns the rows as tuples of text (NULL as
        ""). For a stopped daemon, or to read what is committed: tests that edit or inspect the
        store this way run on both backends."""
        if self.backend == "postgresql":
            import pg
            out = pg.server().psql(sql, self.dsn.split("dbname=")[1])
            return [tuple(line.split("|")) for line in out.splitlines()] if out else []
        db = sqlite3.connect(self.store)
        try:
            rows = [tuple("" if v is None else str(v) for v in r) for r in db.execute(sql)]
            db.commit()
            return rows
        finally:
            db.close()

    def read_log(self, whole=False, since=None):
        """The daemon's stderr (its last 4000 characters unless whole; from byte `since` on
        when given)."""
        try:
            with open(os.path.join(self.tmp, "runsd.log"), "rb") as f:
                if since is not None:
                    f.seek(since)
                text = f.read().decode("utf-8", "replace")
                return text if whole or since is not None else text[-4000:]
        except OSError:
            return ""

    def check_secrets(self):
        """Fails when the daemon's log holds a secret some test used."""
        found = secrets_in_log(self.read_log(whole=True))
        if found:
            raise AssertionError("secret(s) in the daemon log %s: %s"
                                 % (os.path.join(self.tmp, "runsd.log"), found))

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = dict(headers or {})
        note_secrets_in(path)
        note_body_secrets(body)
        for k, v in hdrs.items():
            if k.lower() in ("authorization", "x-api-key"):
                note_secret(v.split(" ", 1)[-1] if k.lower() == "authorization" else v)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        resp = Response(r.status, dict((k.lower(), v) for k, v in r.getheaders()), data)
        conn.close()
        if b"token=" in data or b"state=" in data or b"code=" in data or b"whsec_" in data:
            note_secrets_in(data)
            if b"whsec_" in data:
                for m in re.finditer(rb"whsec_[A-Za-z0-9+/=]+", data):
                    note_secret(m.group(0).decode())
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body if body is not None else {}, **kw)

    def create(self, flow, input=None, **fields):
        body = {"flow": flow}
        if input is not None:
            body["input"] = input
        body.update(fields)
        r = self.post("/v1/runs", body)
        assert r.status == 201, r
        return r.json()

    def run(self, run_id):
        r = self.get("/v1/runs/" + run_id)
        assert r.status == 200, r
        return r.json()

    def wait_status(self, run_id, statuses, timeout=30):
        if isinstance(statuses, str):
            statuses = (statuses,)

        def check():
            self.assert_alive()
            run = self.run(run_id)
            return run if run["status"] in statuses else None

        return wait_for(check, timeout=timeout, what="run %s in %s" % (run_id, statuses))

    def events(self, run_id, after=0, limit=1000):
        out = []
        while True:
            r = self.get("/v1/runs/%s/events?after=%d&limit=%d" % (run_id, after, limit))
            assert r.status == 200, r
            page = r.json()
            out.extend(page["items"])
            if not page["has_more"]:
                return out
            after = page["next_after"]

    def assert_alive(self):
        if self.proc is not None and self.proc.poll() is not None and not self.expected_exit:
            raise AssertionError("runsd died (exit %s): %s" % (self.proc.returncode, self.read_log()))

    def kill9(self):
        self.expected_exit = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.close_log()
        self.check_secrets()

    def close_log(self):
        for name in ("log", "out"):
            f = getattr(self, name, None)
            if f is not None and not f.closed:
                f.close()

    def stop(self, timeout=30):
        """SIGTERM; asserts a clean exit 0."""
        if self.proc is None or self.proc.poll() is not None:
            self.close_log()
            self.assert_alive()
            return
        self.assert_alive()
        self.expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("runsd did not stop on SIGTERM: %s" % self.read_log())
        finally:
            self.close_log()
        if rc != 0:
            raise AssertionError("runsd exited %s on SIGTERM: %s%s" % (rc, self.read_log(),
                                                                     self.valgrind_log()))
        self.check_secrets()

    def valgrind_log(self):
        out = ""
        for name in sorted(os.listdir(self.tmp)):
            if name.startswith("valgrind."):
                with open(os.path.join(self.tmp, name), errors="replace") as f:
                    out += "\n--- %s ---\n%s" % (name, f.read()[-6000:])
        return out


def testworker_flow(name="test", **keys):
    lines = ["[flow.%s]" % name, "command = %s" % TESTWORKER]
    for k, v in keys.items():
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


class DaemonTest(unittest.TestCase):
    """Base class: self.d is a started daemon; tearDown checks it did not die."""

    flows = testworker_flow()
    limits = ""
    extra = ""
    server = ""

    def setUp(self):
        self.d = Daemon(flows=self.flows, limits=self.limits, extra=self.extra,
                        server=self.server).start()

    def tearDown(self):
        self.d.stop()
