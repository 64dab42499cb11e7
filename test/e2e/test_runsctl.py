"""runsctl, the command-line client (issue 12), against the real daemon.

Every command with its exit code (the table of runsctl(1) and `runsctl --help`, which must
agree), the run outcomes each code stands for, errors (unreachable or malformed URL, unknown
run, missing/unknown/read-only key) with their message on stderr, and `watch`: piped (plain
lines that end with the final status, resuming with Last-Event-ID across a kill -9 and restart
of the daemon), and under tmux, a real terminal (the progress bar below 100 %, the final
status, the cursor shown again, the approval prompt answered with the `a` key).

The runs are driven by test/workers/testworker.py (its README lists the input keys). Nothing
sleeps for a fixed time: the tests poll the daemon, the client's output or the tmux pane.
"""
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest

from harness import BUILD, SOURCE, Daemon, DaemonTest, note_secret, testworker_flow, wait_for

RUNSCTL = os.environ.get("RUNSCTL_BIN", os.path.join(BUILD, "runsctl"))
RUN_ID = re.compile(r"^run_[A-Za-z0-9_-]{22}$")
READ_KEY = "rctl-read-0123456789abcdef"
WRITE_KEY = "rctl-write-0123456789abcdef"

# The exit codes of the table (runsctl.h), by name.
OK, USAGE, CONNECT, AUTH, NOTFOUND, CONFLICT, HTTP = 0, 2, 3, 4, 5, 6, 7
FAILED, TIMEOUT, INCOMPLETE, CANCELLED, DENIED, CRASHED, WAITING, ACTIVE = range(10, 18)

FLOWS = (testworker_flow("test") + testworker_flow("other") +
         testworker_flow("short", timeout="1s") +
         testworker_flow("resumable", resumable="yes"))


class Runsctl:
    """Runs the client against one daemon."""

    def __init__(self, daemon):
        self.d = daemon

    def env(self, key=None):
        env = dict(os.environ, RUNSD_URL="http://127.0.0.1:%d" % self.d.port)
        env.pop("RUNSD_KEY", None)
        if key:
            env["RUNSD_KEY"] = key
        return env

    def __call__(self, *args, key=None, timeout=60, stdin=None):
        p = subprocess.run([RUNSCTL] + list(args), env=self.env(key), capture_output=True,
                           text=True, timeout=timeout, input=stdin)
        return p


class CommandsTest(DaemonTest):
    flows = FLOWS

    def setUp(self):
        super().setUp()
        self.rc = Runsctl(self.d)

    def create(self, inp, *extra, flow="test"):
        p = self.rc("create", flow, "--input", json.dumps(inp), *extra)
        self.assertEqual(p.returncode, OK, p.stderr)
        run_id = p.stdout.strip()
        self.assertRegex(run_id, RUN_ID, "create prints the id alone: %r" % p.stdout)
        self.assertEqual(p.stdout, run_id + "\n")
        return run_id

    def test_create_get_wait(self):
        run_id = self.create({"steps": ["a"], "items": 2, "result": {"x": 1}})
        p = self.rc("wait", run_id)
        self.assertEqual((p.returncode, p.stdout), (OK, "%s succeeded (completed)\n" % run_id))
        p = self.rc("get", run_id)
        self.assertEqual(p.returncode, OK, p.stderr)
        self.assertIn("succeeded (completed)", p.stdout)
        self.assertIn("2 ok, 0 errors", p.stdout)
        self.assertIn('{"x":1}', p.stdout)
        p = self.rc("get", run_id, "--json")
        self.assertEqual(json.loads(p.stdout), self.d.run(run_id))
        # create --wait: the id alone on stdout, the outcome on stderr and in the exit code
        p = self.rc("create", "test", "--input", '{"items":1}', "--wait")
        self.assertEqual(p.returncode, OK, p.stderr)
        self.assertRegex(p.stdout.strip(), RUN_ID)
        self.assertIn("succeeded (completed)", p.stderr)
        # --json and @file input, metadata and limit go through
        path = os.path.join(self.d.tmp, "input.json")
        with open(path, "w") as f:
            json.dump({"items": 5}, f)
        p = self.rc("create", "test", "--input", "@" + path, "--limit", "2", "--metadata",
                    '{"who":"me"}', "--json", "--wait")
        run = json.loads(p.stdout)
        self.assertEqual((p.returncode, run["status"], run["termination_reason"]),
                         (OK, "succeeded", "match_limit_met"))
        self.assertEqual((run["limit"], run["metadata"], run["input"]), (2, {"who": "me"},
                                                                        {"items": 5}))
        # stdin input, a created run that is not started
        p = self.rc("create", "test", "--input", "-", "--no-start", stdin='{"items":1}')
        self.assertEqual(self.d.run(p.stdout.strip())["status"], "created")

    def test_outcome_exit_codes(self):
        cases = [
            ({}, "test", OK, "succeeded (completed)"),
            ({"error": "boom"}, "test", FAILED, "failed (error_occurred)"),
            ({"items": 2, "item_errors": 1}, "test", INCOMPLETE, "incomplete (items_failed)"),
            ({"crash": True}, "test", CRASHED, "crashed (worker_crashed)"),
            ({"sleep": 20}, "short", TIMEOUT, "failed (timeout)"),
            ({"candidates": [False], "done": "low_match_rate"}, "test", OK,
             "succeeded (low_match_rate)"),
        ]
        for inp, flow, code, text in cases:
            with self.subTest(input=inp):
                run_id = self.create(inp, flow=flow)
                p = self.rc("wait", run_id)
                self.assertEqual((p.returncode, p.stdout.strip()), (code, run_id + " " + text),
                                 p.stderr)

    def test_cancel_approve_deny(self):
        run_id = self.create({"sleep": 30})
        self.d.wait_status(run_id, "running")
        p = self.rc("wait", run_id, "--timeout", "0.3")
        self.assertEqual((p.returncode, p.stdout.strip()), (ACTIVE, run_id + " running"))
        p = self.rc("cancel", run_id)
        self.assertEqual(p.returncode, OK, p.stderr)
        self.assertIn(run_id, p.stdout)
        self.assertEqual(self.rc("wait", run_id).returncode, CANCELLED)
        p = self.rc("cancel", run_id)
        self.assertEqual(p.returncode, CONFLICT)
        self.assertIn("409 run_terminal", p.stderr)

        # approve by run id: waits for a person (16), then goes on and succeeds
        run_id = self.create({"approval": "Go?", "items": 1})
        p = self.rc("wait", run_id)
        self.assertEqual(p.returncode, WAITING, p.stderr)
        self.assertIn("waiting for approval: Go?", p.stdout)
        p = self.rc("approve", run_id, "--comment", "fine")
        self.assertEqual((p.returncode, p.stdout.split()[:2]), (OK, [run_id, "approved"]))
        self.assertEqual(self.rc("wait", run_id).returncode, OK)
        self.assertEqual(self.rc("approve", run_id).returncode, CONFLICT)

        run_id = self.create({"approval": "Go?", "on_deny": "exit"})
        self.d.wait_status(run_id, "paused")
        p = self.rc("deny", run_id, "--json")
        self.assertEqual((p.returncode, json.loads(p.stdout)["decision"]), (OK, "denied"))
        p = self.rc("wait", run_id)
        self.assertEqual((p.returncode, p.stdout.strip()),
                         (DENIED, run_id + " cancelled (approval_denied)"))
        p = self.rc("deny", run_id)
        self.assertEqual(p.returncode, CONFLICT)
        self.assertIn("run_not_paused", p.stderr)

    def test_list_filters(self):
        a = [self.create({}, flow="test") for _ in range(3)]
        b = [self.create({"error": "x"}, flow="other") for _ in range(2)]
        for r in a + b:
            self.rc("wait", r)
        p = self.rc("list", "--flow", "other", "--json")
        self.assertEqual(p.returncode, OK, p.stderr)
        self.assertEqual(sorted(r["id"] for r in json.loads(p.stdout)), sorted(b))
        p = self.rc("list", "--status", "failed,cancelled")
        lines = p.stdout.splitlines()
        self.assertEqual((p.returncode, lines[0].split()[:3]), (OK, ["ID", "FLOW", "STATUS"]))
        self.assertEqual(sorted(l.split()[0] for l in lines[1:]), sorted(b))
        self.assertTrue(all(l.split()[2:4] == ["failed", "error_occurred"] for l in lines[1:]))
        # one page of 2, then every page of 2 (3 pages)
        p = self.rc("list", "--page-size", "2", "--ndjson")
        self.assertEqual(len(p.stdout.splitlines()), 2)
        p = self.rc("list", "--page-size", "2", "--all", "--ndjson")
        ids = [json.loads(l)["id"] for l in p.stdout.splitlines()]
        self.assertEqual((p.returncode, sorted(ids)), (OK, sorted(a + b)))
        p = self.rc("list", "--page", "3", "--page-size", "2", "--json")
        self.assertEqual(len(json.loads(p.stdout)), 1)
        p = self.rc("list", "--status", "running", "--json")
        self.assertEqual((p.returncode, p.stdout), (OK, "[]\n"))

    def test_results_all_pages_three_formats(self):
        run_id = self.create({"items": 7, "item_errors": 2})
        self.assertEqual(self.rc("wait", run_id).returncode, INCOMPLETE)
        api = self.d.get("/v1/runs/%s/results?page_size=100" % run_id).json()["items"]
        self.assertEqual(len(api), 9)
        p = self.rc("results", run_id, "--page-size", "2", "--json")
        self.assertEqual((p.returncode, json.loads(p.stdout)), (OK, api))
        p = self.rc("results", run_id, "--page-size", "4", "--ndjson")
        self.assertEqual([json.loads(l) for l in p.stdout.splitlines()], api)
        p = self.rc("results", run_id, "--page-size", "3")
        rows = p.stdout.splitlines()
        self.assertEqual(rows[0].split(), ["SEQ", "STATUS", "DATA"])
        self.assertEqual([r.split()[0] for r in rows[1:]], [str(i["seq"]) for i in api])
        self.assertEqual(rows[1].split(), ["1", "ok", '{"i":0}'])
        self.assertIn("test item error 0", rows[8])
        p = self.rc("results", run_id, "--status", "error", "--ndjson", "--page-size", "1")
        self.assertEqual([json.loads(l)["status"] for l in p.stdout.splitlines()],
                         ["error", "error"])

    def test_events(self):
        run_id = self.create({"steps": ["s"], "items": 3, "progress": True})
        self.rc("wait", run_id)
        api = self.d.events(run_id)
        p = self.rc("events", run_id)
        self.assertEqual(p.returncode, OK, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual([int(l.split()[0]) for l in lines], [e["id"] for e in api])
        self.assertEqual([l.split()[3] for l in lines], [e["type"] for e in api])
        self.assertRegex(lines[-1], r"run\.end succeeded \(completed\)")
        self.assertTrue(any(re.search(r"run\.progress 2/3 \(66%\)", l) for l in lines))
        p = self.rc("events", run_id, "--json")
        self.assertEqual(json.loads(p.stdout), api)
        p = self.rc("events", run_id, "--after", str(api[-3]["id"]), "--ndjson")
        self.assertEqual([json.loads(l) for l in p.stdout.splitlines()], api[-2:])

    def test_errors(self):
        port = self.d.port
        cases = [
            (["get", "run_xxxxxxxxxxxxxxxxxxxxxx"], {}, NOTFOUND, "404 run_not_found"),
            (["watch", "run_xxxxxxxxxxxxxxxxxxxxxx"], {}, NOTFOUND, "404 run_not_found"),
            (["-u", "http://127.0.0.1:1", "list"], {}, CONNECT, "cannot reach http://127.0.0.1:1"),
            (["-u", "http://127.0.0.1:1", "watch", "--all"], {}, CONNECT, "cannot reach"),
            (["-u", "127.0.0.1:%d" % port, "list"], {}, USAGE, "bad server URL"),
            (["create", "nosuchflow"], {}, HTTP, "422 unknown_flow"),
            (["create", "test", "--input", "{nope"], {}, USAGE, "--input is not JSON"),
            (["create", "test", "--limit", "0"], {}, USAGE, "bad value '0'"),
            (["get", "x", "--limit", "3"], {}, USAGE, "get does not take --limit"),
            (["frobnicate"], {}, USAGE, "unknown command 'frobnicate'"),
            (["list", "--bogus"], {}, USAGE, "unknown option '--bogus'"),
            (["get"], {}, USAGE, "get takes one run id"),
            (["results", "r", "--json", "--ndjson"], {}, USAGE, "exclude each other"),
        ]
        for args, kw, code, msg in cases:
            with self.subTest(args=args):
                p = self.rc(*args, **kw)
                self.assertEqual(p.returncode, code, p.stderr)
                self.assertIn(msg, p.stderr)
                self.assertEqual(p.stdout, "")

    def test_help_and_man_page_agree(self):
        p = self.rc("--help")
        self.assertEqual(p.returncode, OK)
        helped = dict(re.findall(r"^\s+(\d+)\s+(\S.*)$", p.stdout.split("Exit codes:")[1], re.M))
        with open(os.path.join(SOURCE, "man", "runsctl.1")) as f:
            man = f.read()
        section = man.split(".SH EXIT STATUS")[1].split(".SH ")[0]
        manned = re.findall(r"^\.IP (\d+)", section, re.M)
        self.assertEqual(sorted(map(int, helped)), sorted(map(int, manned)))
        for code in (0, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 130):
            self.assertIn(str(code), helped)


class KeysTest(DaemonTest):
    flows = testworker_flow("test")
    extra = "[auth]\nkey = read:%s\nkey = write:%s\n" % (READ_KEY, WRITE_KEY)

    def test_keys(self):
        rc = Runsctl(self.d)
        p = rc("list")
        self.assertEqual(p.returncode, AUTH)
        self.assertIn("401 unauthorized", p.stderr)
        self.assertIn("RUNSD_KEY", p.stderr)
        p = rc("list", key="not-a-key-at-all-123")
        self.assertEqual(p.returncode, AUTH)
        self.assertIn("401 unauthorized", p.stderr)
        p = rc("create", "test", key=READ_KEY)
        self.assertEqual(p.returncode, AUTH)
        self.assertIn("403 forbidden", p.stderr)
        p = rc("create", "test", "--input", '{"approval":"Go?"}', key=WRITE_KEY)
        run_id = p.stdout.strip()
        self.assertRegex(run_id, RUN_ID)
        p = rc("wait", run_id, key=READ_KEY)
        self.assertEqual(p.returncode, WAITING, p.stderr)
        p = rc("approve", run_id, key=READ_KEY)
        self.assertEqual(p.returncode, AUTH)
        self.assertIn("403 forbidden", p.stderr)
        # the key as a flag instead of RUNSD_KEY
        p = rc("-k", WRITE_KEY, "approve", run_id)
        self.assertEqual(p.returncode, OK, p.stderr)
        p = rc("wait", run_id, key=READ_KEY)
        self.assertEqual(p.returncode, OK, p.stderr)
        note_secret(READ_KEY)
        note_secret(WRITE_KEY)


class Lines:
    """A process's stdout read line by line on a thread, so waits can time out."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def until(self, pred, timeout=30):
        """Waits for a line for which pred holds; returns it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if pred(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise AssertionError("no such line (eof %s) in %r" % (self.eof, self.lines))
                self.cond.wait(left)

    def finish(self, timeout=60):
        """Waits for the process to exit; returns (exit code, lines, stderr)."""
        rc = self.proc.wait(timeout=timeout)
        with self.cond:
            while not self.eof:
                self.cond.wait(5)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, list(self.lines), err


class WatchPipedTest(DaemonTest):
    flows = FLOWS

    def watch(self, *args):
        return subprocess.Popen([RUNSCTL, "watch"] + list(args), env=Runsctl(self.d).env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_plain_lines_and_approval(self):
        rc = Runsctl(self.d)
        run_id = rc("create", "test", "--input", json.dumps(
            {"steps": ["fetch"], "approval": "Ship it?", "items": 3, "progress": True})).stdout.strip()
        w = Lines(self.watch(run_id))
        line = w.until(lambda l: "approval needed: Ship it?" in l)
        self.assertIn("runsctl approve %s" % run_id, line)
        self.assertEqual(rc("approve", run_id).returncode, OK)
        code, lines, err = w.finish()
        self.assertEqual(code, OK, err)
        self.assertNotIn("\x1b", "".join(lines))
        self.assertRegex(lines[-1], r"^\d+ \S+ %s run\.end succeeded \(completed\)" % run_id)
        ids = [int(l.split()[0]) for l in lines]
        self.assertEqual(ids, [e["id"] for e in self.d.events(run_id)])
        # a finished run: the whole story again, same exit code
        p = rc("watch", run_id)
        self.assertEqual((p.returncode, p.stdout.splitlines()[-1]), (OK, lines[-1].rstrip("\n")))
        # a failed one exits with its code
        run_id = rc("create", "test", "--input", '{"error":"no"}').stdout.strip()
        p = rc("watch", run_id)
        self.assertEqual(p.returncode, FAILED, p.stderr)
        self.assertIn("run.end failed (error_occurred)", p.stdout.splitlines()[-1])

    def test_resumes_across_a_daemon_restart(self):
        rc = Runsctl(self.d)
        run_id = rc("create", "resumable", "--input", json.dumps(
            {"items": 30, "checkpoint": True, "progress": True, "item_delay": 0.1})).stdout.strip()
        w = Lines(self.watch(run_id))
        w.until(lambda l: "run.item #3 " in l)
        self.d.kill9()
        self.d.start()  # same port, same store: the run resumes from its checkpoint
        code, lines, err = w.finish()
        self.assertEqual(code, OK, err)
        self.assertIn("stream lost", err)
        self.assertIn("reconnected; resuming after event", err)
        self.assertRegex(lines[-1], r"run\.end succeeded \(completed\)")
        ids = [int(l.split()[0]) for l in lines]
        self.assertEqual(ids, sorted(set(ids)), "no duplicate, in order")
        self.assertEqual(ids, [e["id"] for e in self.d.events(run_id)], "no gap")
        self.assertEqual(self.d.run(run_id)["attempt"], 2)
        items = [l for l in lines if " run.item " in l]
        self.assertEqual(len(items), 30)

    def test_all_until_sigint(self):
        w = Lines(self.watch("--all", "--flow", "test,other"))
        rc = Runsctl(self.d)
        run_id = None
        # The global stream starts live: create runs until one shows (the first ones may
        # come before the stream is open).
        for _ in range(20):
            r = rc("create", "other", "--input", "{}").stdout.strip()
            try:
                w.until(lambda l: r in l and "run.end succeeded" in l, timeout=3)
                run_id = r
                break
            except AssertionError:
                pass
        self.assertIsNotNone(run_id)
        other = rc("create", "resumable", "--input", "{}").stdout.strip()  # filtered out
        rc("wait", other)
        run_id = rc("create", "test", "--input", "{}").stdout.strip()
        w.until(lambda l: run_id in l and "run.end" in l)
        w.proc.send_signal(signal.SIGINT)
        code, lines, err = w.finish(timeout=10)
        self.assertEqual(code, 130, err)
        self.assertNotIn(other, "".join(lines))


class FakeSSE(http.server.BaseHTTPRequestHandler):
    """A stream that uses every line ending, a comment, a multi-line data field and retry:,
    and drops the connection in the middle of an event (a forced disconnect)."""

    seen = []  # the Last-Event-ID of each request

    def log_message(self, *a):
        pass

    def do_GET(self):
        FakeSSE.seen.append(self.headers.get("Last-Event-ID"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        run = "run_" + "f" * 22

        def ev(i, t, data):
            return json.dumps({"id": i, "type": t, "run_id": run, "timestamp": "T",
                               "data": data})
        if len(FakeSSE.seen) == 1:
            body = ("\ufeffretry: 100\r\n: a comment\r\n\r\nid: 1\revent: run.status\rdata: "
                    + ev(1, "run.status", {"status": "running"}) + "\r\r"
                    + "id: 2\nevent: run.step\ndata: " + ev(2, "run.step",
                                                             {"name": "a", "state": "started"})
                    + "\n\nid: 3\nevent: run.status\ndata: {\"cut")
        else:
            data = ev(3, "run.end", {"run": {"status": "failed", "flow": "f",
                                             "termination_reason": "timeout"}})
            half = len(data) // 2
            body = ("id: 3\r\nevent: run.end\r\ndata: " + data[:half] + "\r\ndata:"
                    + data[half:] + "\r\n\r\n")
        self.wfile.write(body.encode())
        self.wfile.flush()
        self.close_connection = True


class SSEParserTest(unittest.TestCase):
    def test_line_endings_and_forced_disconnect(self):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeSSE)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            env = dict(os.environ, RUNSD_URL="http://127.0.0.1:%d" % srv.server_address[1])
            p = subprocess.run([RUNSCTL, "watch", "run_" + "f" * 22], env=env,
                               capture_output=True, text=True, timeout=30)
        finally:
            srv.shutdown()
        # data: lines join with a newline, which JSON takes as blank space
        self.assertEqual(p.returncode, TIMEOUT, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual([l.split()[0] for l in lines], ["1", "2", "3"], p.stdout)
        self.assertIn("run.step a started", lines[1])
        self.assertIn("run.end failed (timeout)", lines[2])
        self.assertEqual(FakeSSE.seen, [None, "2"])  # resumed after the last whole event
        self.assertIn("reconnecting in 0.1s", p.stderr)  # the server's retry:


def tmux_available():
    return shutil.which("tmux") is not None


@unittest.skipUnless(tmux_available(), "tmux is not installed (scripts/setup.sh installs it)")
class WatchTmuxTest(DaemonTest):
    """runsctl watch in a real terminal: a tmux pane of 100x30, read with capture-pane."""

    flows = FLOWS

    def setUp(self):
        super().setUp()
        self.sock = "runsctl-test-%d-%d" % (os.getpid(), self.d.port)
        self.rc = Runsctl(self.d)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null"] + list(args),
                              capture_output=True, text=True, timeout=10)

    def tearDown(self):
        self.tmux("kill-server")
        super().tearDown()

    def start(self, run_id):
        cmd = "env RUNSD_URL=http://127.0.0.1:%d %s watch %s; echo EXIT=$?; sleep 300" % (
            self.d.port, RUNSCTL, run_id)
        p = self.tmux("new-session", "-d", "-x", "100", "-y", "30", cmd)
        self.assertEqual(p.returncode, 0, p.stderr)

    def pane(self):
        return self.tmux("capture-pane", "-p").stdout

    def cursor_visible(self):
        return self.tmux("display-message", "-p", "#{cursor_flag}").stdout.strip() == "1"

    def test_bar_moves_and_final_status(self):
        run_id = self.rc("create", "test", "--input", json.dumps(
            {"steps": ["fetch", "parse"], "items": 40, "progress": True,
             "item_delay": 0.15})).stdout.strip()
        self.start(run_id)
        bar = re.compile(r"progress\s+\[[^\]]+\]\s+(\d+)%\s+(\d+)/40")
        seen = set()

        def partial():
            m = bar.search(self.pane())
            if m and 0 < int(m.group(1)) < 100:
                seen.add(int(m.group(2)))
            return len(seen) >= 2  # two different values below 100 %: the bar moves

        wait_for(partial, timeout=30, interval=0.1, what="the bar below 100%")
        screen = self.pane()
        self.assertIn(run_id, screen)
        self.assertRegex(screen, r"status\s+running")
        self.assertIn("steps     2/2 finished", screen)
        self.assertFalse(self.cursor_visible(), "the cursor is hidden while the view is live")
        wait_for(lambda: "EXIT=" in self.pane(), timeout=30, what="watch to end")
        screen = self.pane()
        self.assertIn("EXIT=0", screen)
        self.assertRegex(screen, r"status\s+succeeded \(completed\)")
        self.assertRegex(screen, r"progress\s+\[[^\]]+\]\s+100%\s+40/40")
        self.assertIn("items     40 ok, 0 errors", screen)
        self.assertEqual(screen.count("status  "), 1, "redrawn in place:\n" + screen)
        self.assertTrue(self.cursor_visible(), "the cursor is shown again")

    def test_approval_prompt_keys(self):
        run_id = self.rc("create", "test", "--input", json.dumps(
            {"approval": "Ship it?", "items": 3, "progress": True})).stdout.strip()
        self.start(run_id)
        wait_for(lambda: "press a to approve, d to deny" in self.pane(), timeout=30,
                 interval=0.1, what="the approval prompt")
        self.assertIn("approval needed: Ship it?", self.pane())
        self.tmux("send-keys", "-t", "0", "a")
        wait_for(lambda: "EXIT=" in self.pane(), timeout=30, what="watch to end")
        screen = self.pane()
        self.assertIn("EXIT=0", screen)
        self.assertRegex(screen, r"status\s+succeeded \(completed\)")
        run = self.d.run(run_id)
        self.assertEqual(run["status"], "succeeded")
        logs = [e["data"]["message"] for e in self.d.events(run_id) if e["type"] == "run.log"]
        self.assertIn("approval:approved", logs)

        # d denies: the run ends cancelled/approval_denied and watch exits 14
        self.tmux("kill-server")
        run_id = self.rc("create", "test", "--input", json.dumps(
            {"approval": "Really?", "on_deny": "exit"})).stdout.strip()
        self.start(run_id)
        wait_for(lambda: "press a to approve" in self.pane(), timeout=30, interval=0.1,
                 what="the approval prompt")
        self.tmux("send-keys", "-t", "0", "d")
        wait_for(lambda: "EXIT=" in self.pane(), timeout=30, what="watch to end")
        self.assertIn("EXIT=%d" % DENIED, self.pane())
        self.assertRegex(self.pane(), r"status\s+cancelled \(approval_denied\)")

    def test_sigint_restores_the_terminal(self):
        run_id = self.rc("create", "test", "--input", '{"sleep": 30}').stdout.strip()
        self.start(run_id)
        wait_for(lambda: re.search(r"status\s+running", self.pane()), timeout=30,
                 interval=0.1, what="the live view")
        self.tmux("send-keys", "-t", "0", "C-c")
        wait_for(lambda: "EXIT=" in self.pane(), timeout=10, what="watch to end")
        self.assertIn("EXIT=130", self.pane())
        self.assertTrue(self.cursor_visible())
        self.rc("cancel", run_id)


if __name__ == "__main__":
    unittest.main()
