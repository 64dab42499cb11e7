"""The daemon's log (issue 11): a scripted session, its stderr parsed line by line as logfmt
and then, with [log] format = json, as JSON. Every line must parse; the lines the issue asks
for must be there with their fields: one per finished HTTP request (method, route pattern,
status, bytes, duration, request id), one per run transition, one per approval and auth
answer, one per webhook attempt, a worker crash with its signal, a config reload. An incoming
X-Request-Id is echoed and logged; one too long or not printable is replaced.

The session uses every kind of secret (an API key, a webhook secret from the config and one
given with a run, approval link tokens, an auth state and an OAuth code, a stream token):
none may appear in the log. harness.py notes them all and checks every daemon's log when it
stops; the self-check here plants one to show that the check can fail."""
import base64
import json
import os
import re
import signal
import socket
import sys
import tempfile
import unittest
import urllib.parse

import harness
from harness import Daemon, testworker_flow, wait_for
from helpers import TERMINAL
from test_webhooks import Receiver

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEY = re.compile(r"[a-z_][a-z0-9_]*")
BARE = re.compile(r"[^\s\"=\\]+")
AUTH_URL = "https://provider.example/authorize?client_id=runsd&state={state}"


def parse_logfmt(line):
    """One logfmt line into a dict; raises ValueError unless it is exactly key=value pairs
    separated by single spaces, values bare or JSON-quoted."""
    out, i, n = {}, 0, len(line)
    while i < n:
        m = KEY.match(line, i)
        if not m or m.end() >= n or line[m.end()] != "=":
            raise ValueError("no key=value at %d: %r" % (i, line))
        key, i = m.group(0), m.end() + 1
        if i < n and line[i] == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if j >= n:
                raise ValueError("unterminated quote: %r" % line)
            value, i = json.loads(line[i:j + 1]), j + 1
        else:
            m = BARE.match(line, i)
            if not m:
                raise ValueError("empty bare value at %d: %r" % (i, line))
            value, i = m.group(0), m.end()
        if key in out:
            raise ValueError("key %s twice: %r" % (key, line))
        out[key] = value
        if i < n:
            if line[i] != " " or i + 1 >= n:
                raise ValueError("bad separator at %d: %r" % (i, line))
            i += 1
    return out


def num(v):
    """A logfmt value is text; JSON's numbers are numbers."""
    return v if isinstance(v, int) else int(v)


class LogSession:
    """The session, run by TestLogfmt and TestJson."""

    fmt = "logfmt"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-logs-")
        self.key = "k" + base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        self.hook_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.rx = Receiver(self.tmp, {"/hook": [{"status": 500}, {"status": 200}]}).start()
        extra = ("[auth]\nkey = admin:%s\n[webhooks]\nsecret = %s\nretry_schedule = 200ms\n"
                 "allow_private = yes\n[log]\nformat = %s\nlevel = debug\n"
                 % (self.key, self.hook_secret, self.fmt))
        self.d = Daemon(flows=testworker_flow("t"), extra=extra, tmp=self.tmp).start()

    def tearDown(self):
        try:
            self.d.stop()
        finally:
            self.rx.stop()

    # ------------------------------------------------------------------ helpers

    def call(self, method, path, body=None, headers=None):
        h = {"Authorization": "Bearer " + self.key}
        h.update(headers or {})
        return self.d.request(method, path, body=body, headers=h)

    def create(self, input, **fields):
        r = self.call("POST", "/v1/runs", dict({"flow": "t", "input": input}, **fields))
        self.assertEqual(r.status, 201, r)
        return r.json()

    def wait(self, run_id, statuses):
        def check():
            self.d.assert_alive()
            run = self.call("GET", "/v1/runs/" + run_id).json()
            return run if run["status"] in statuses else None
        return wait_for(check, what="run %s in %s" % (run_id, statuses))

    def link(self, url):
        u = urllib.parse.urlparse(url)
        return self.d.get(u.path + "?" + u.query)

    def open_stream(self, url):
        """Opens an event stream, reads its head and first bytes, and closes it."""
        u = urllib.parse.urlparse(url)
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as c:
            c.sendall(("GET %s?%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                       % (u.path, u.query)).encode())
            return c.recv(4096)

    def lines(self):
        text = self.d.read_log(whole=True)
        self.assertTrue(text.endswith("\n"), text[-200:])
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line) if self.fmt == "json" else parse_logfmt(line)
            except ValueError as e:
                self.fail("a log line does not parse as %s: %s" % (self.fmt, e))
            self.assertIsInstance(rec, dict, line)
            self.assertRegex(rec.get("ts", ""), TS, line)
            self.assertIn(rec.get("level"), ("error", "warn", "notice", "info", "debug"), line)
            self.assertIsInstance(rec.get("msg"), str, line)
            out.append(rec)
        return out

    def find(self, recs, msg, **fields):
        """The records with this msg whose fields equal the given ones (as text)."""
        return [r for r in recs if r["msg"] == msg
                and all(str(r.get(k)) == str(v) for k, v in fields.items())]

    def one(self, recs, msg, **fields):
        got = self.find(recs, msg, **fields)
        self.assertTrue(got, "no %r line with %r in:\n%s" % (msg, fields, "\n".join(
            json.dumps(r) for r in recs if r["msg"] == msg)))
        return got[0]

    # ------------------------------------------------------------------ the session

    def session(self):
        s = {}
        # request ids: honoured, replaced when too long or not printable ASCII
        r = self.call("GET", "/v1/flows", headers={"X-Request-Id": "sess-abc.123"})
        self.assertEqual((r.status, r.headers["x-request-id"]), (200, "sess-abc.123"))
        for bad in ("x" * 129, "bad id", "bad\xe9id"):
            r = self.call("GET", "/v1/flows", headers={"X-Request-Id": bad})
            self.assertEqual(r.status, 200, r)
            self.assertRegex(r.headers["x-request-id"], r"^req_[0-9a-f]+$", bad)
            s.setdefault("replaced", []).append(r.headers["x-request-id"])
        r = self.call("GET", "/v1/runs/run_nosuchrun0000000000000", headers={"X-Request-Id": "e-1"})
        self.assertEqual((r.status, r.json()["error"]["request_id"]), (404, "e-1"))
        # a run that succeeds, with a webhook refused once then accepted
        hook = {"url": self.rx.url(), "secret": "whsec_" + base64.b64encode(os.urandom(24)).decode(),
                "events": ["run.succeeded"]}
        s["ok"] = self.create({"items": 1, "steps": ["a"]}, webhook=hook)["id"]
        self.wait(s["ok"], ("succeeded",))
        self.rx.wait_requests(2, "/hook")
        # the stream token opens the run's event stream
        run = self.call("GET", "/v1/runs/" + s["ok"]).json()
        self.assertTrue(self.open_stream(run["stream_url"]).startswith(b"HTTP/1.1 200"))
        # paused, then approved and denied through the links
        s["approved"] = self.create({"approval": "Go?", "items": 1})["id"]
        pa = self.wait(s["approved"], ("paused",))["pending_action"]
        self.assertEqual(self.link(pa["approve_url"]).status, 200)
        self.wait(s["approved"], ("succeeded",))
        s["denied"] = self.create({"approval": "Go?", "on_deny": "exit"})["id"]
        pa = self.wait(s["denied"], ("paused",))["pending_action"]
        self.assertEqual(self.link(pa["deny_url"]).status, 200)
        self.wait(s["denied"], TERMINAL)
        # an authorization: the state from the auth URL, an OAuth code
        s["auth"] = self.create({"auth": AUTH_URL, "items": 1})["id"]
        au = self.wait(s["auth"], ("auth_required",))["pending_action"]["auth_url"]
        state = urllib.parse.parse_qs(urllib.parse.urlparse(au).query)["state"][0]
        s["code"] = "oauth-" + base64.urlsafe_b64encode(os.urandom(18)).decode()
        r = self.d.get("/v1/auth/callback?state=%s&code=%s" % (urllib.parse.quote(state),
                                                              s["code"]))
        self.assertEqual(r.status, 200, r)
        self.wait(s["auth"], ("succeeded",))
        # a worker killed by SIGSEGV
        s["segv"] = self.create({"echo_proc": True, "sleep": 60})["id"]

        def worker_pid():
            evs = self.call("GET", "/v1/runs/%s/events" % s["segv"]).json()["items"]
            for e in evs:
                msg = e["data"].get("message", "") if e["type"] == "run.log" else ""
                if msg.startswith("proc:"):
                    return json.loads(msg[5:])["pid"]
            return None
        s["pid"] = wait_for(worker_pid, what="the worker's pid")
        os.kill(s["pid"], signal.SIGSEGV)
        self.wait(s["segv"], TERMINAL)
        # a config reload
        self.d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in self.d.read_log(), what="the reload line")
        self.d.stop()  # checks every noted secret against the log too
        return s

    def test_session_lines(self):
        s = self.session()
        recs = self.lines()
        # one line per finished request, with the route pattern and the request id
        req = self.one(recs, "http request", request_id="sess-abc.123")
        self.assertEqual((req["method"], req["route"], num(req["status"])),
                         ("GET", "/v1/flows", 200))
        self.assertGreater(num(req["bytes"]), 0)
        self.assertGreaterEqual(num(req["duration_ms"]), 0)
        for rid in s["replaced"]:
            self.one(recs, "http request", request_id=rid, route="/v1/flows")
        self.one(recs, "http request", request_id="e-1", route="/v1/runs/{id}", status=404)
        self.one(recs, "http request", route="/v1/runs", method="POST", status=201)
        self.one(recs, "http request", route="/v1/runs/approval", method="GET", status=200)
        self.one(recs, "http request", route="/v1/auth/callback", method="GET", status=200)
        self.one(recs, "http request", route="/v1/runs/{id}/events", method="GET", status=200,
                 bytes=0)
        for r in self.find(recs, "http request"):
            self.assertNotIn("run_", r["route"], r)  # the pattern, never the path
        # one line per transition; at a terminal one, the reason and the duration
        self.one(recs, "run transition", run=s["ok"], flow="t", **{"from": "queued"}, to="running")
        end = self.one(recs, "run transition", run=s["ok"], to="succeeded", reason="completed")
        self.assertGreaterEqual(num(end["duration_ms"]), 0)
        self.one(recs, "run transition", run=s["approved"], to="paused")
        self.one(recs, "run transition", run=s["approved"], **{"from": "paused"})
        self.one(recs, "run transition", run=s["auth"], to="auth_required")
        self.one(recs, "run transition", run=s["segv"], to="crashed")
        # answers from people: the decision, never the token or code
        self.one(recs, "approval answered", run=s["approved"], decision="approved")
        self.one(recs, "approval answered", run=s["denied"], decision="denied")
        self.one(recs, "run transition", run=s["denied"], to="cancelled", reason="approval_denied")
        self.one(recs, "auth answered", run=s["auth"], status="authorized")
        # each webhook attempt's outcome
        retry = self.one(recs, "webhook attempt", run=s["ok"], attempt=1, outcome="retry",
                         http_status=500)
        self.assertIn("next_in_ms", retry)
        self.one(recs, "webhook attempt", run=s["ok"], attempt=2, outcome="delivered",
                 http_status=200, delivery=retry["delivery"])
        # the crash, with its signal
        crash = self.one(recs, "worker crashed", run=s["segv"], pid=s["pid"])
        self.assertEqual((num(crash["signal"]), crash["signal_name"]), (signal.SIGSEGV, "SEGV"))
        self.assertEqual(crash["level"], "warn")
        # the reload, and the daemon's own lines (signals, stop) parse like the others
        self.one(recs, "config reloaded", log_format=self.fmt, log_level="debug", flows=1)
        self.one(recs, "signal: draining", reason="Terminated")
        self.one(recs, "runsd stopped")
        # no secret: what the harness noted, and this session's own, checked here again
        text = self.d.read_log(whole=True)
        for secret in (self.key, self.hook_secret, s["code"]):
            self.assertNotIn(secret, text)
        self.assertEqual(harness.secrets_in_log(text), [])


class TestLogfmt(LogSession, unittest.TestCase):
    fmt = "logfmt"


class TestJson(LogSession, unittest.TestCase):
    fmt = "json"


class TestLogfmtParser(unittest.TestCase):
    """The parser the session relies on refuses what is not logfmt."""

    def test_parser(self):
        self.assertEqual(parse_logfmt('a=1 b="x \\"y\\"=z" c=/v1/{id} d=""'),
                         {"a": "1", "b": 'x "y"=z', "c": "/v1/{id}", "d": ""})
        for bad in ("a=1  b=2", "a=", 'a="x', "a=1 ", "<6>a=1", "a=1 a=2", "free text", 'a=x"y'):
            with self.assertRaises(ValueError, msg=bad):
                parse_logfmt(bad)


class TestSecretCheck(unittest.TestCase):
    """The no-secret check can fail: a planted secret that the daemon does log (as a request
    id) is found."""

    def test_planted_secret_is_found(self):
        d = Daemon(flows=testworker_flow("t")).start()
        planted = "planted-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
        try:
            harness.note_secret(planted)
            r = d.get("/v1/flows", headers={"X-Request-Id": planted})
            self.assertEqual(r.headers["x-request-id"], planted)
            wait_for(lambda: planted in d.read_log(), what="the planted id in the log")
            with self.assertRaises(AssertionError) as cm:
                d.check_secrets()
            self.assertIn(planted, str(cm.exception))
        finally:
            harness.SECRETS.discard(planted)
            d.stop()


if __name__ == "__main__":
    unittest.main()
