"""test_pg.py: what only the PostgreSQL backend has (issue 13): the schema created on a fresh
database and migrated from an older version, a newer schema and an unreachable server refused
at start with a clear message, a password never accepted in the dsn nor logged, password
authentication through password_file, the journal's bound while the server is down, kill -9 of
the daemon with nothing lost, the database server stopped and started again under load, and the
loop answering while a commit or a reconnection waits for a server that does not answer.

Every test uses the test process's throwaway server (pg.py), whatever RUNSD_TEST_BACKEND says.
"""
import os
import signal
import socket
import subprocess
import threading
import tempfile
import time
import unittest

import pg
from harness import BIN, SLOW, VALGRIND, Daemon, note_secret, testworker_flow, wait_for
from helpers import SSEReader, all_results, assert_journal_held, finish, metric

FLOWS = testworker_flow("items") + "\nresumable = yes\n"
ITEMS = 300


class PgTest(unittest.TestCase):
    def setUp(self):
        self.srv = pg.server()
        self.daemons = []

    def tearDown(self):
        if not self.srv.running():
            self.srv.start()
        for d in self.daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()

    def daemon(self, old=None, start=True):
        if old is None:
            d = Daemon(flows=FLOWS, backend="postgresql")
        else:
            d = Daemon(flows=FLOWS, backend="postgresql", store_path=old.store, tmp=old.tmp)
        self.daemons.append(d)
        return d.start() if start else d

    def db(self, d):
        return d.dsn.split("dbname=")[1]

    def run_t(self, d, extra=()):
        """runsd with d's config, in the foreground until it exits: (code, stderr)."""
        with open(os.path.join(d.tmp, "runsd.ini"), "w") as f:
            f.write(d.config_text())
        r = subprocess.run([BIN, "-c", os.path.join(d.tmp, "runsd.ini")] + list(extra),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                           cwd=d.tmp)
        return r.returncode, r.stderr.decode()

    def items_run(self, d, n):
        """A run of n items (1 ms apart) and a reader of its events on the global stream, on a
        thread, until 50 were seen: (run, the reader, the ids it has seen so far)."""
        run = d.create("items", {"items": n, "item_delay": 0.001})
        sse = SSEReader(d.port, "/v1/events?run=" + run["id"], timeout=60)
        seen = []

        def read():
            try:
                for f in iter(sse.next_event, None):
                    if "id" in f:
                        seen.append(int(f["id"]))
            except OSError:
                pass  # closed at the end of the test
        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: len(seen) >= 50, what="items published")
        return run, sse, seen

    def check_run(self, d, run_id, n):
        results = all_results(d, run_id)
        self.assertEqual([x["data"]["i"] for x in results], list(range(n)),
                         "items lost or duplicated")
        events = d.events(run_id)
        ids = [e["id"] for e in events]
        self.assertEqual(ids, sorted(set(ids)), "event ids not strictly increasing")
        self.assertEqual(sum(1 for e in events if e["type"] == "run.item"), n)
        self.assertEqual(events[-1]["type"], "run.end")


class TestSchema(PgTest):
    def test_fresh_database_gets_the_schema(self):
        d = self.daemon()
        self.assertEqual(self.srv.psql("SELECT version FROM runsd_schema", self.db(d)), "3")
        tables = self.srv.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM"
                               " pg_tables WHERE schemaname = 'public'", self.db(d)).split(",")
        for t in ("runs", "events", "idempotency", "kv", "pgroups", "enrichments",
                  "deliveries", "delivery_attempts", "runsd_event_seq", "runsd_schema",
                  "runsd_writers"):
            self.assertIn(t, tables)
        self.assertIn("schema version 0 -> 3", d.read_log())

    def test_version_1_is_migrated(self):
        d = self.daemon()
        run = d.create("items", {"items": 3})
        finish(d, run["id"])
        d.stop()
        # Back to version 1: the outbox tables (version 2) did not exist then.
        self.srv.psql("DROP TABLE deliveries, delivery_attempts, runsd_writers;"
                      " UPDATE runsd_schema SET version = 1", self.db(d))
        d2 = self.daemon(old=d)
        self.assertIn("schema version 1 -> 3", d2.read_log())
        self.assertEqual(self.srv.psql("SELECT version FROM runsd_schema", self.db(d)), "3")
        self.assertEqual(d2.run(run["id"])["status"], "succeeded")
        self.check_run(d2, run["id"], 3)
        self.assertEqual(d2.get("/v1/runs/%s/deliveries" % run["id"]).status, 200)

    def test_newer_schema_is_refused(self):
        d = self.daemon()
        d.stop()
        self.srv.psql("UPDATE runsd_schema SET version = 99", self.db(d))
        code, err = self.run_t(d)
        self.assertNotEqual(code, 0)
        self.assertIn("schema is version 99, newer than this runsd's", err)

    def test_unreachable_server_is_refused(self):
        d = self.daemon(start=False)
        d.dsn = "host=%s user=runsd dbname=x" % tempfile.mkdtemp(prefix="runsd-nopg-")
        code, err = self.run_t(d)
        self.assertNotEqual(code, 0)
        self.assertIn("cannot connect to postgresql", err)

    def test_password_in_dsn_refused_and_never_echoed(self):
        d = self.daemon(start=False)
        secret = "s3cr3t-pg-password"
        note_secret(secret)
        d.dsn = "host=/tmp user=runsd password=%s dbname=x" % secret
        code, err = self.run_t(d, ["-t"])
        self.assertNotEqual(code, 0)
        self.assertIn("password_file", err)
        self.assertNotIn(secret, err)

    def test_password_file_is_checked(self):
        d = self.daemon(start=False)
        d.dsn = self.srv.dsn("x") + " passfile=/nonexistent"  # libpq's keyword works too
        d.extra = ""
        d.store_keys = lambda: ("backend = postgresql\ndsn = %s\npassword_file = /nonexistent\n"
                                % self.srv.dsn("x"))
        code, err = self.run_t(d, ["-t"])
        self.assertNotEqual(code, 0)
        self.assertIn("password_file", err)


class TestPasswordAuth(PgTest):
    """Password authentication as a deployment has it: the role needs a password (scram), the
    password comes from password_file (libpq's passfile format), the daemon connects and works,
    and the password is in no log (the harness checks every daemon's log for noted secrets). A
    wrong password is refused at start with libpq's reason, which does not echo it."""
    USER = "runsd_pw"

    def setUp(self):
        super().setUp()
        hba = os.path.join(self.srv.data, "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        line = "local all %s scram-sha-256\n" % self.USER
        if line not in text:
            with open(hba, "w") as f:
                f.write(line + text)  # first match wins: before the trust lines
            self.srv._run(["pg_ctl", "-D", self.srv.data, "reload"])
        self.password = "pw-%d-%s" % (os.getpid(), os.urandom(6).hex())
        note_secret(self.password)
        if self.srv.psql("SELECT count(*) FROM pg_roles WHERE rolname = '%s'" % self.USER) == "0":
            self.srv.psql("CREATE ROLE %s LOGIN" % self.USER)
        self.srv.psql("SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD '%s'"
                      % (self.USER, self.password))
        self.dbname = self.srv.database()
        self.srv.psql('ALTER DATABASE "%s" OWNER TO %s' % (self.dbname, self.USER))

    def pw_daemon(self, password):
        d = self.daemon(start=False)
        pwfile = os.path.join(d.tmp, "pgpass")
        with open(pwfile, "w") as f:
            f.write("*:*:*:%s:%s\n" % (self.USER, password))
        os.chmod(pwfile, 0o600)
        dsn = "host=%s port=%d user=%s dbname=%s" % (self.srv.sock, self.srv.port, self.USER,
                                                     self.dbname)
        d.dsn = dsn
        d.store_keys = lambda: ("backend = postgresql\ndsn = %s\npassword_file = %s\n"
                                % (dsn, pwfile))
        return d

    def test_password_file_connects_and_is_never_logged(self):
        d = self.pw_daemon(self.password)
        d.start()
        run = d.create("items", {"items": 5})
        self.assertEqual(finish(d, run["id"])["status"], "succeeded")
        self.check_run(d, run["id"], 5)
        self.assertEqual(self.srv.psql("SELECT count(*) FROM runs", self.dbname), "1")
        self.assertNotIn(self.password, d.read_log())

    def test_wrong_password_is_refused_at_start(self):
        wrong = "wrong-" + self.password
        note_secret(wrong)
        d = self.pw_daemon(wrong)
        code, err = self.run_t(d)
        self.assertNotEqual(code, 0)
        self.assertIn("cannot connect to postgresql", err)
        self.assertIn("password authentication failed", err)
        self.assertNotIn(wrong, err)
        self.assertNotIn(self.password, err)


class TestJournalBound(PgTest):
    """[store] max_journal on PostgreSQL: while the server is down a worker that keeps writing
    is paused once the journal holds the bound; nothing is dropped, and everything is stored
    once the server is back."""
    BOUND = 256 * 1024
    N = 20000

    def test_bound_pauses_the_worker_while_the_server_is_down(self):
        d = self.daemon(start=False)
        d.store_keys = lambda: ("backend = postgresql\ndsn = %s\nmax_journal = %d\n"
                                % (d.dsn, self.BOUND))
        d.start()
        self.assertEqual(metric(d, "runsd_store_journal_max_bytes"), self.BOUND)
        run = d.create("items", {"items": self.N, "item_delay": 0.0002})
        wait_for(lambda: d.run(run["id"])["counts"]["items"] >= 50, what="items before")
        self.srv.stop()
        assert_journal_held(self, d, self.BOUND)
        self.assertEqual(d.get("/readyz").status, 503)
        self.srv.start()
        # Reads answer 503 until the daemon is connected again (it reconnects with back-off).
        wait_for(lambda: d.get("/readyz").status == 200, timeout=60, what="readyz 200")
        end = d.wait_status(run["id"], "succeeded", timeout=120)
        self.assertEqual(end["counts"]["items"], self.N)
        self.assertEqual(metric(d, "runsd_store_journal_over"), 0)
        self.check_run(d, run["id"], self.N)


class TestFailures(PgTest):
    def test_event_text_round_trips_through_the_batch(self):
        # Events reach the server as array literals (store_pg_batch.c): quotes, backslashes,
        # braces, commas, the word NULL, control characters and non-ASCII text must come back
        # exactly, read from the database by a second daemon.
        odd = ['say "hi"', "back\\slash\\", "{a,b}", "NULL", "null", "", " pad ", "tab\tnl\n",
               "\u00e9\u2603\U0001F600", ",", '\\"', "}{"]
        d = self.daemon()
        run = d.create("items", {"items": 3, "result": {"odd": odd}})
        self.assertEqual(finish(d, run["id"])["status"], "succeeded")
        d.stop()
        d2 = self.daemon(old=d)
        results = [e for e in d2.events(run["id"]) if e["type"] == "run.result"]
        self.assertEqual(len(results), 1, d2.events(run["id"]))
        self.assertEqual(results[0]["data"]["data"]["odd"], odd)
        self.check_run(d2, run["id"], 3)

    def test_kill9_loses_nothing(self):
        d = self.daemon()
        run = d.create("items", {"items": ITEMS, "checkpoint": True, "item_delay": 0.002})
        wait_for(lambda: d.run(run["id"])["counts"]["items"] >= 50, what="items")
        done_before = [d.create("items", {"items": 5})["id"] for _ in range(3)]
        d.kill9()
        d2 = self.daemon(old=d)
        done = finish(d2, run["id"], timeout=60)
        self.assertEqual(done["status"], "succeeded", done)
        self.assertEqual(done["counts"]["items"], ITEMS)
        self.check_run(d2, run["id"], ITEMS)
        for rid in done_before:
            self.assertEqual(finish(d2, rid)["status"], "succeeded")

    def test_idle_daemon_notices_the_server_gone(self):
        # No run is active, so no commit fails: only the health probe (runs_probe.c) can see it.
        d = self.daemon()
        self.assertEqual(d.get("/readyz").status, 200)
        self.srv.stop()
        t0 = time.monotonic()
        wait_for(lambda: d.get("/readyz").status == 503, timeout=15, what="readyz 503")
        # A probe a second, answered at once by a closed socket (slack for a loaded machine).
        self.assertLess(time.monotonic() - t0, 6 * SLOW, "503 too late")
        self.assertIn("does not answer", d.read_log(whole=True))
        self.srv.start()
        t0 = time.monotonic()
        wait_for(lambda: d.get("/readyz").status == 200, timeout=20, what="readyz 200")
        # Probes back off to every 4 s while the server is away.
        self.assertLess(time.monotonic() - t0, 10 * SLOW, "200 too late")
        self.assertIn("answers again", d.read_log(whole=True))
        run = d.create("items", {"items": 2})
        self.assertEqual(finish(d, run["id"])["status"], "succeeded")

    def test_server_stopped_and_started_under_load(self):
        d = self.daemon()
        run = d.create("items", {"items": ITEMS, "checkpoint": True, "item_delay": 0.002})
        wait_for(lambda: d.run(run["id"])["counts"]["items"] >= 30, what="items")
        self.srv.stop()
        wait_for(lambda: d.get("/readyz").status == 503, timeout=30, what="readyz 503")
        r = d.post("/v1/runs", {"flow": "items", "input": {"items": 1}})
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["error"]["code"], "store_unavailable")
        self.assertIn("retry-after", r.headers)
        self.srv.start()
        wait_for(lambda: d.get("/readyz").status == 200, timeout=30, what="readyz 200")
        self.assertIn("connected again", d.read_log(whole=True))
        done = d.wait_status(run["id"], "succeeded", timeout=60)
        self.assertEqual(done["counts"]["items"], ITEMS)
        self.check_run(d, run["id"], ITEMS)
        # A new run is taken again, and ids keep growing past the held ones.
        later = d.create("items", {"items": 2})
        finish(d, later["id"])
        last = max(e["id"] for e in d.events(run["id"]))
        self.assertGreater(min(e["id"] for e in d.events(later["id"])), last)


class TestLoop(PgTest):
    """The loop never waits for the server (issue 13): a commit in flight and a reconnection are
    driven by socket events, so /healthz answers at once while the server does not."""

    # Much less than the 3 s the server is frozen for: a loop that waits fails this.
    BOUND = 0.5 * SLOW

    def backend_pid(self, d):
        return int(self.srv.psql("SELECT pid FROM pg_stat_activity WHERE application_name ="
                                 " 'runsd' AND datname = '%s'" % self.db(d)))

    def postmaster_pid(self):
        with open(os.path.join(self.srv.data, "postmaster.pid")) as f:
            return int(f.readline())

    def status(self, d, path):
        """The status of GET path, or None when no answer came within 3 s."""
        try:
            return d.get(path, timeout=3).status
        except (socket.timeout, OSError):
            return None

    def healthz_worst(self, d, seconds):
        """Asks /healthz for `seconds`; the slowest answer (none within 3 s counts as 3 s)."""
        worst, end = 0.0, time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            ok = self.status(d, "/healthz") == 200
            worst = max(worst, time.monotonic() - t0 if ok else 3.0)
        return worst

    def test_commit_in_flight_does_not_hold_the_loop(self):
        # The held batch (up to 512 KiB) is published at once when the commit completes; a
        # reader that cannot take it at once lags, and one behind by more than sse_max_buffer
        # is cut (it would resume with Last-Event-ID). This reader does not resume: give it
        # room, since what is checked here is what is published when, not the bound.
        d = Daemon(flows=FLOWS, backend="postgresql", server="sse_max_buffer = 4M\n")
        self.daemons.append(d)
        d.start()
        n = 3000
        run, sse, seen = self.items_run(d, n)
        pid = self.backend_pid(d)
        os.kill(pid, signal.SIGSTOP)  # the daemon's backend: the commit in flight waits
        try:
            worst = self.healthz_worst(d, 3)
            # A commit unanswered for 2 s makes the daemon not ready (the probe waits).
            self.assertEqual(self.status(d, "/readyz"), 503)
            # Another backend answers: what is committed while the daemon's is frozen.
            committed = int(self.srv.psql("SELECT coalesce(max(id), 0) FROM events",
                                          self.db(d)))
            self.assertLessEqual(max(seen), committed, "an event was published uncommitted")
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertLess(worst, self.BOUND, "the loop waited %.2f s for a commit" % worst)
        wait_for(lambda: d.get("/readyz").status == 200, timeout=30, what="readyz 200")
        done = d.wait_status(run["id"], "succeeded", timeout=60)
        self.assertEqual(done["counts"]["items"], n)
        self.check_run(d, run["id"], n)
        ids = [e["id"] for e in d.events(run["id"])]
        wait_for(lambda: seen[-1] >= ids[-1], what="every event published")
        sse.close()
        # Live since it subscribed: every event after the first it saw, once, in id order.
        self.assertEqual(seen, [i for i in ids if i >= seen[0]])

    def test_requests_wait_for_a_commit_without_holding_the_loop(self):
        # Requests that change runs answer only once their change is committed, and requests
        # that read the store run only once no commit is in flight. Neither may wait on the
        # loop: with the daemon's backend frozen under load, /healthz answers at once, no
        # change is acknowledged, and every request is answered once the server is back.
        d = Daemon(flows=FLOWS, backend="postgresql", server="sse_max_buffer = 4M\n")
        self.daemons.append(d)
        d.start()
        busy = d.create("items", {"items": 3000, "item_delay": 0.001})
        done = d.create("items", {"items": 5})
        finish(d, done["id"])
        wait_for(lambda: d.get("/v1/runs/%s" % busy["id"]).json()["counts"]["items"] >= 50,
                 what="items flowing")
        asks = {
            "create": ("POST", "/v1/runs", {"flow": "items", "input": {"items": 3}}, 201),
            "cancel": ("POST", "/v1/runs/%s/cancel" % busy["id"], None, 202),
            "list": ("GET", "/v1/runs?page_size=5", None, 200),
            "results": ("GET", "/v1/runs/%s/results" % done["id"], None, 200),
            "log": ("GET", "/v1/runs/%s/events" % done["id"], None, 200),
            "get": ("GET", "/v1/runs/%s" % done["id"], None, 200),
        }
        got = {}

        def ask(name, method, path, body):
            try:
                r = d.request(method, path, body, timeout=60)
                got[name] = (r.status, time.monotonic(), r.json())
            except OSError as e:
                got[name] = (None, time.monotonic(), str(e))
        pid = self.backend_pid(d)
        os.kill(pid, signal.SIGSTOP)
        try:
            threads = [threading.Thread(target=ask, args=(k, m, p, b), daemon=True)
                       for k, (m, p, b, _) in asks.items()]
            for t in threads:
                t.start()
            # Clients that leave while their request is parked are forgotten, not answered.
            for path, body in (("/v1/runs", b'{"flow":"items","input":{"items":2}}'),
                               ("/v1/runs?page_size=3", None)):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
                s.sendall((b"POST " if body else b"GET ") + path.encode() +
                          b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                          (b"Content-Length: %d\r\n\r\n" % len(body) + body if body
                           else b"\r\n"))
                s.close()
            worst = self.healthz_worst(d, 3)
            answered_frozen = dict(got)
            parked = metric(d, "runsd_http_requests_waiting")
            thawed = time.monotonic()
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertLess(worst, self.BOUND, "the loop waited %.2f s for the store" % worst)
        # Nothing that needs the store was answered while it could not answer.
        self.assertEqual(answered_frozen, {})
        self.assertGreaterEqual(parked, len(asks))  # and /metrics says they wait
        for t in threads:
            t.join(60)
        for name, (_, _, _, want) in asks.items():
            status, at, body = got[name]
            self.assertEqual(status, want, "%s: %s" % (name, body))
            self.assertGreaterEqual(at, thawed)
        wait_for(lambda: metric(d, "runsd_http_requests_waiting") == 0,
                 what="no request parked")
        created = got["create"][2]["id"]
        # Acknowledged means committed: the server has the run and its cancel.
        self.assertEqual(self.srv.psql("SELECT count(*) FROM runs WHERE id = '%s'" % created,
                                       self.db(d)), "1")
        self.assertEqual(finish(d, created)["status"], "succeeded")
        self.assertEqual(d.wait_status(busy["id"], "cancelled", timeout=60)["status"],
                         "cancelled")
        self.assertEqual(len(got["results"][2]["items"]), 5)

    def test_reconnection_does_not_hold_the_loop(self):
        d = self.daemon()
        pm, backend = self.postmaster_pid(), self.backend_pid(d)
        # A frozen postmaster: the kernel still accepts connections on its socket, and no
        # answer ever comes (what a blocking connect waits connect_timeout, 5 s, for).
        os.kill(pm, signal.SIGSTOP)
        try:
            os.kill(backend, signal.SIGTERM)  # the daemon's connection goes
            wait_for(lambda: self.status(d, "/readyz") == 503, timeout=15, what="readyz 503")
            worst = self.healthz_worst(d, 7)  # the probe tries to reconnect meanwhile
        finally:
            os.kill(pm, signal.SIGCONT)
        self.assertLess(worst, self.BOUND, "the loop waited %.2f s for a connection" % worst)
        wait_for(lambda: d.get("/readyz").status == 200, timeout=30, what="readyz 200")
        self.assertIn("connected again", d.read_log(whole=True))
        run = d.create("items", {"items": 5})
        self.assertEqual(finish(d, run["id"])["status"], "succeeded")


class TestDeadline(PgTest):
    """[store] timeout (issue 13): a commit or a wait that the server leaves unanswered past it
    drops the connection and makes a new one, and a commit whose answer was lost with it is
    looked up before anything is written again: committed, it is not written twice; not
    committed, it is written again with the same ids. The daemon's backend is frozen with
    SIGSTOP (what a server or a network that stops answering without an RST looks like)."""
    TIMEOUT = "1s"
    N = 3000
    BOUND = TestLoop.BOUND
    backend_pid = TestLoop.backend_pid
    status = TestLoop.status

    def timed_daemon(self, **kw):
        d = Daemon(flows=FLOWS, backend="postgresql", **kw)
        d.store_keys = lambda: ("backend = postgresql\ndsn = %s\ntimeout = %s\n"
                                % (d.dsn, self.TIMEOUT))
        self.daemons.append(d)
        return d.start()

    def runsd_backends(self, d):
        out = self.srv.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'runsd'"
                            " AND datname = '%s'" % self.db(d))
        return {int(p) for p in out.split()}

    def watch_healthz(self, d):
        """Asks /healthz in a thread until the returned stop() is called; stop() gives the
        slowest answer (none within 3 s counts as 3 s)."""
        worst, done = [0.0], threading.Event()

        def loop():
            while not done.is_set():
                t0 = time.monotonic()
                ok = self.status(d, "/healthz") == 200
                worst[0] = max(worst[0], time.monotonic() - t0 if ok else 3.0)
        t = threading.Thread(target=loop, daemon=True)
        t.start()

        def stop():
            done.set()
            t.join(10)
            return worst[0]
        return stop

    def past_timeout(self, d, pid):
        """Waits until the daemon has given up the backend pid and connected again."""
        wait_for(lambda: "dropping the connection" in d.read_log(whole=True), timeout=20,
                 what="the deadline")
        wait_for(lambda: self.runsd_backends(d) - {pid}, timeout=20,
                 what="a new connection while the old backend holds its transaction")

    def frozen_past_timeout(self, d):
        """Freezes the daemon's backend until the daemon has dropped it and connected again."""
        pid = self.backend_pid(d)
        os.kill(pid, signal.SIGSTOP)
        try:
            self.past_timeout(d, pid)
        finally:
            os.kill(pid, signal.SIGCONT)

    def events_locked(self, d):
        """A psql session holding a lock that the daemon's next insert of events waits for
        (its transaction then waits in the server, holding the daemon's commit marker row,
        with what follows, COMMIT included, in its socket). Returns release()."""
        p = subprocess.Popen([os.path.join(self.srv.bin, "psql"), "-X", "-q", "-At", "-d",
                              self.srv.dsn(self.db(d))], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        p.stdin.write("BEGIN; LOCK TABLE events IN SHARE MODE; SELECT 'locked';\n")
        p.stdin.flush()
        self.assertEqual(p.stdout.readline().strip(), "locked")

        def release():
            p.communicate("ROLLBACK;\n", timeout=30)
        return release

    def locked_past_timeout(self, d, before=None):
        """Holds the daemon's commit in the server (events_locked) until the daemon has dropped
        the connection and connected again; before(pid) runs just before the lock goes."""
        pid = self.backend_pid(d)
        release = self.events_locked(d)
        try:
            self.past_timeout(d, pid)
            # The new connection waits for the old transaction to end: not ready meanwhile.
            self.assertEqual(self.status(d, "/readyz"), 503)
            if before:
                before(pid)
        finally:
            release()

    def outcome(self, d):
        log = d.read_log(whole=True)
        self.assertFalse("was taken by another writer" in log, "the held batch was refused")
        return ("committed" if "was committed: it is not written again" in log else
                "not committed" if "was not committed: it is written again" in log else None)

    def check_stored_once(self, d, run, sse, seen, stop):
        wait_for(lambda: d.get("/readyz").status == 200, timeout=30, what="readyz 200")
        done = d.wait_status(run["id"], "succeeded", timeout=60)
        worst = stop()
        self.assertLess(worst, self.BOUND, "the loop waited %.2f s" % worst)
        self.assertEqual(done["counts"]["items"], self.N)
        n, distinct = self.srv.psql(
            "SELECT count(*) || ' ' || count(DISTINCT item_seq) FROM events WHERE run_id = '%s'"
            " AND type = 'run.item'" % run["id"], self.db(d)).split()
        self.assertEqual((int(n), int(distinct)), (self.N, self.N), "items stored twice or lost")
        self.check_run(d, run["id"], self.N)
        ids = [e["id"] for e in d.events(run["id"])]
        wait_for(lambda: seen and seen[-1] >= ids[-1], what="every event published")
        sse.close()
        self.assertEqual(seen, [i for i in ids if i >= seen[0]])
        later = d.create("items", {"items": 2})
        self.assertEqual(finish(d, later["id"])["status"], "succeeded")
        self.assertGreater(min(e["id"] for e in d.events(later["id"])), ids[-1])

    def test_commit_in_doubt_that_was_committed(self):
        # Released, the old backend carries on with what is in its socket: the rest of the
        # transaction the daemon gave up on, and its COMMIT. The new connection's lookup waits
        # for it, finds it committed, and the daemon does not write it again (before: it wrote
        # it again and "event id N was taken by another writer", for ever).
        d = self.timed_daemon(server="sse_max_buffer = 4M\n")
        run, sse, seen = self.items_run(d, self.N)
        stop = self.watch_healthz(d)
        self.locked_past_timeout(d)
        self.check_stored_once(d, run, sse, seen, stop)
        self.assertEqual(self.outcome(d), "committed")

    def test_commit_in_doubt_that_was_not_committed(self):
        # The old backend is terminated while it waits: its transaction never commits. The
        # lookup finds the marker not set, fences it off, and the journal writes the
        # transaction again with the same ids.
        d = self.timed_daemon(server="sse_max_buffer = 4M\n")
        run, sse, seen = self.items_run(d, self.N)
        stop = self.watch_healthz(d)
        self.locked_past_timeout(
            d, lambda pid: self.srv.psql("SELECT pg_terminate_backend(%d)" % pid))
        self.check_stored_once(d, run, sse, seen, stop)
        self.assertEqual(self.outcome(d), "not committed")

    def test_backend_frozen_past_timeout(self):
        # A server that stops answering (SIGSTOP: no RST, nothing): the daemon gives the
        # connection up and connects again; the new connection's first transaction waits for
        # the frozen one to end (it holds the commit marker's row). Thawed, the old backend
        # runs what is in its socket: whether that commit landed depends on where it froze, and
        # either way every item is stored and published once.
        d = self.timed_daemon(server="sse_max_buffer = 4M\n")
        run, sse, seen = self.items_run(d, self.N)
        stop = self.watch_healthz(d)
        self.frozen_past_timeout(d)
        self.check_stored_once(d, run, sse, seen, stop)
        self.assertIn(self.outcome(d), ("committed", "not committed"))

    def test_timeout_is_checked(self):
        d = self.daemon(start=False)
        d.store_keys = lambda: "backend = postgresql\ndsn = %s\ntimeout = 50ms\n" % d.dsn
        code, err = self.run_t(d, ["-t"])
        self.assertNotEqual(code, 0)
        self.assertIn("key 'timeout': must be between 100ms and 1h", err)

    def test_read_unanswered_past_timeout_fails_instead_of_waiting(self):
        # A read waits for the server on the loop, but no longer than the timeout (before: as
        # long as the server was frozen).
        d = self.timed_daemon()
        pid = self.backend_pid(d)
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            code = self.status(d, "/v1/runs")
            took = time.monotonic() - t0
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertEqual(code, 503)
        self.assertLess(took, 2.5 * SLOW)
        self.assertIn("dropping the connection", d.read_log(whole=True))
        wait_for(lambda: d.get("/v1/runs").status == 200, timeout=30, what="reads again")
        self.assertEqual(d.get("/readyz").status, 200)


class TestHostName(PgTest):
    """A dsn that names its host (issue 13): libpq would resolve it with getaddrinfo() inside
    every reconnection attempt, on the loop. The daemon resolves it on the loop without waiting
    (evdns, store_pg_dns.c) and hands libpq the address. A shim (test/faults/slowdns.c) makes
    the C library's getaddrinfo() of "localhost" take 5 s; /etc/hosts has the name, and the
    test server listens on 127.0.0.1 too (pg.py)."""
    BOUND = TestLoop.BOUND
    backend_pid = TestLoop.backend_pid
    status = TestLoop.status
    healthz_worst = TestLoop.healthz_worst

    def test_reconnection_does_not_wait_for_the_resolver(self):
        shim = os.environ.get("RUNSD_SLOWDNS_SHIM")
        if not shim or not os.path.exists(shim):
            self.skipTest("the slow resolver shim is not built (RUNSD_SLOWDNS_SHIM; ctest sets it)")
        d = self.daemon(start=False)
        calls = os.path.join(d.tmp, "getaddrinfo.log")
        if VALGRIND:
            # valgrind runs the daemon on its own core, whose preloads come before ours.
            self.skipTest("the LD_PRELOAD shim is not used under valgrind")
        asan = os.environ.get("ASAN_OPTIONS", "")
        d.env = {"LD_PRELOAD": shim, "RUNSD_SLOWDNS_NAME": "localhost",
                 "RUNSD_SLOWDNS_LOG": calls,
                 # ASan wants its runtime first in the library list; the shim calls on to it.
                 "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        d.dsn = self.srv.tcp_dsn(self.db(d), "localhost")
        d.start()  # libpq resolves at start, through the shim: 5 s (the daemon is not serving)

        def n_calls():
            with open(calls) as f:
                return f.read().count("getaddrinfo localhost")
        self.assertEqual(n_calls(), 1, "the shim did not see libpq's getaddrinfo at start")
        self.srv.psql("SELECT pg_terminate_backend(%d)" % self.backend_pid(d))
        wait_for(lambda: self.status(d, "/readyz") == 503, timeout=15, what="readyz 503")
        worst = self.healthz_worst(d, 6)  # reconnection attempts meanwhile
        self.assertLess(worst, self.BOUND, "the loop waited %.2f s for the resolver" % worst)
        wait_for(lambda: d.get("/readyz").status == 200, timeout=30, what="readyz 200")
        self.assertIn("connected again", d.read_log(whole=True))
        self.assertEqual(n_calls(), 1, "a reconnection called getaddrinfo")
        run = d.create("items", {"items": 5})
        self.assertEqual(finish(d, run["id"])["status"], "succeeded")


if __name__ == "__main__":
    unittest.main()
