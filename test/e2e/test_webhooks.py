"""Webhooks (SPEC section 5) end to end: the real daemon delivers to a real receiver process
(receiver.py) on loopback. Signatures are checked here with an independent implementation of
Standard Webhooks (hmac/hashlib/base64), never with the daemon's code.

Every test uses a fast retry schedule; allow_private = yes except in the SSRF tests."""
import base64
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

from harness import Daemon, free_port, testworker_flow, wait_for
from helpers import RFC3339, assert_error, finish

RECEIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "receiver.py")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
FLOWS = testworker_flow("t", resumable="yes")


def verify(secret, headers, body):
    """Standard Webhooks verification, written from the spec: HMAC-SHA256 with the
    base64-decoded key over id.timestamp.body, base64, any of the space-separated v1 entries."""
    key = base64.b64decode(secret[len("whsec_"):])
    signed = ("%s.%s." % (headers["webhook-id"], headers["webhook-timestamp"])).encode() + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    entries = headers.get("webhook-signature", "").split(" ")
    return any(e.startswith("v1,") and hmac.compare_digest(e[3:], want) for e in entries)


class Receiver:
    """One receiver.py process; restartable on the same port."""

    def __init__(self, tmp, script=None, port=0):
        self.tmp = tmp
        self.log = os.path.join(tmp, "rx-%d.jsonl" % id(self))
        self.script = script
        self.port = port
        self.proc = None

    def start(self, script=None, port=None):
        if script is not None:
            self.script = script
        if port is not None:
            self.port = port
        pf = os.path.join(self.tmp, "rx-%d.port" % id(self))
        if os.path.exists(pf):
            os.unlink(pf)
        args = [sys.executable, RECEIVER, "--port", str(self.port), "--log", self.log,
                "--port-file", pf]
        if self.script:
            args += ["--script", json.dumps(self.script)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(pf) or self.proc.poll() is not None, what="receiver")
        assert self.proc.poll() is None, "receiver.py did not start"
        with open(pf) as f:
            self.port = int(f.read())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def url(self, path="/hook"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def requests(self, path=None):
        try:
            with open(self.log, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        # Only complete lines: the receiver may be writing the last one right now (and a line
        # that does not parse yet is taken as one being written: the next poll reads it whole).
        for line in data.split(b"\n")[:-1]:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                break
        for r in out:
            r["raw"] = base64.b64decode(r["body_b64"])
            r["json"] = json.loads(r["raw"]) if r["raw"] else None
        return [r for r in out if path is None or r["path"] == path]

    def wait_requests(self, n, path=None, timeout=20):
        return wait_for(lambda: (lambda rs: rs if len(rs) >= n else None)(self.requests(path)),
                        timeout=timeout, what="%d webhook requests" % n)


class WebhookTest(unittest.TestCase):
    schedule = "200ms 200ms 500ms 1s"
    allow_private = "yes"
    hook_timeout = "5s"
    hook_lines = ""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-hooks-")
        self.receivers = []
        self.daemons = []
        self.before_daemon()
        self.d = self.start_daemon()

    def before_daemon(self):
        pass

    def webhooks_section(self):
        return ("[webhooks]\nretry_schedule = %s\nallow_private = %s\ntimeout = %s\n%s\n"
                % (self.schedule, self.allow_private, self.hook_timeout, self.hook_lines))

    def start_daemon(self, old=None):
        d = Daemon(flows=FLOWS, extra=self.webhooks_section(), tmp=old.tmp if old else self.tmp,
                   store_path=old.store if old else None)
        if old is not None:
            d.port = old.port
        self.daemons.append(d)
        return d.start()

    def restart_daemon(self):
        self.d = self.start_daemon(self.d)
        return self.d

    def receiver(self, script=None, port=0):
        rx = Receiver(self.tmp, script, port)
        self.receivers.append(rx)
        return rx.start()

    def tearDown(self):
        try:
            self.daemons[-1].stop()
        finally:
            for rx in self.receivers:
                rx.stop()

    def create(self, url, input=None, secret=SECRET, events=None, **fields):
        hook = {"url": url}
        if secret:
            hook["secret"] = secret
        if events is not None:
            hook["events"] = events
        return self.d.create("t", input if input is not None else {"items": 1}, webhook=hook,
                             **fields)

    def deliveries(self, run_id):
        r = self.d.get("/v1/runs/%s/deliveries?page_size=100" % run_id)
        self.assertEqual(r.status, 200, r)
        return r.json()["items"]

    def wait_committed_attempts(self, delivery_id, n):
        """Waits until n attempts of the delivery are committed to the store file. The API
        also shows writes still inside the outbox's group-commit window; a separate
        read-only connection sees only what a kill -9 cannot take back."""
        def check():
            if self.d.backend == "postgresql":  # another connection sees only what committed
                import pg
                return int(pg.server().psql(
                    "SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id = '%s'"
                    % delivery_id, self.d.dsn.split("dbname=")[1])) >= n
            db = sqlite3.connect("file:%s?mode=ro" % self.d.store, uri=True)
            try:
                return db.execute("SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id = ?",
                                  (delivery_id,)).fetchone()[0] >= n
            except sqlite3.OperationalError:
                return False
            finally:
                db.close()
        wait_for(check, what="%d committed attempts" % n)

    def wait_delivery(self, run_id, cond, what="delivery", timeout=20):
        def check():
            self.d.assert_alive()
            items = self.deliveries(run_id)
            return items if items and cond(items) else None
        return wait_for(check, timeout=timeout, what=what)


class TestDelivery(WebhookTest):
    def test_signed_delivery_and_record(self):
        rx = self.receiver({"*": [{"delay": 0.2, "status": 200}]})  # answers after 200 ms
        run = self.create(rx.url())
        self.assertNotIn("secret", self.d.run(run["id"])["webhook"])
        req = rx.wait_requests(1)[0]
        h = req["headers"]
        self.assertEqual(req["method"], "POST")
        self.assertIn("application/json", h["content-type"])
        self.assertTrue(h["webhook-id"].startswith("msg_"), h)
        self.assertLess(abs(int(h["webhook-timestamp"]) - time.time()), 60)
        self.assertTrue(verify(SECRET, h, req["raw"]), "signature does not verify")
        self.assertFalse(verify(OTHER_SECRET, h, req["raw"]))
        tampered = req["raw"].replace(b"succeeded", b"failed")
        self.assertFalse(verify(SECRET, h, tampered))
        body = req["json"]
        self.assertEqual(sorted(body), ["data", "timestamp", "type"])
        self.assertEqual(body["type"], "run.succeeded")
        self.assertRegex(body["timestamp"], RFC3339)
        self.assertEqual((body["data"]["id"], body["data"]["status"]), (run["id"], "succeeded"))
        self.assertNotIn(SECRET, req["body"])
        items = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "delivered")
        self.assertEqual(len(items), 1)
        d = items[0]
        self.assertEqual((d["id"], d["type"], d["endpoint"], d["url"], d["attempt_count"]),
                         (h["webhook-id"], "run.succeeded", "run", rx.url(), 1))
        self.assertIsNone(d["next_attempt_at"])
        self.assertEqual(d["last_status_code"], 200)
        a = d["attempts"][0]
        self.assertEqual((a["attempt"], a["status_code"], a["error"], a["trigger"]),
                         (1, 200, None, "schedule"))
        self.assertRegex(a["at"], RFC3339)
        self.assertGreaterEqual(a["duration_ms"], 200, a)  # the receiver's delay
        self.assertLess(a["duration_ms"], 5000, a)  # within hook_timeout
        self.assertNotIn("secret", json.dumps(d))
        m = self.d.get("/metrics").body.decode()
        self.assertIn('runsd_webhook_outcomes_total{outcome="delivered"} 1\n', m)
        self.assertIn("runsd_webhook_attempts_total 1\n", m)

    def test_generated_secret_is_returned_once_and_signs(self):
        rx = self.receiver()
        run = self.create(rx.url(), secret=None)
        secret = run["webhook"]["secret"]
        self.assertTrue(secret.startswith("whsec_"), run["webhook"])
        self.assertNotIn("secret", self.d.run(run["id"])["webhook"])
        req = rx.wait_requests(1)[0]
        self.assertTrue(verify(secret, req["headers"], req["raw"]))

    def test_opt_in_types_and_defaults(self):
        rx = self.receiver()
        items_run = self.create(rx.url("/items"), {"items": 3}, events=["run.item", "run.succeeded"])
        plain_run = self.create(rx.url("/plain"), {"items": 3})
        finish(self.d, items_run["id"])
        finish(self.d, plain_run["id"])
        got = rx.wait_requests(4, "/items")
        types = sorted(r["json"]["type"] for r in got)
        self.assertEqual(types, ["run.item"] * 3 + ["run.succeeded"])
        seqs = sorted(r["json"]["data"]["item"]["seq"] for r in got if r["json"]["type"] == "run.item")
        self.assertEqual(seqs, [1, 2, 3])
        self.assertEqual(len({r["headers"]["webhook-id"] for r in got}), 4)
        self.assertTrue(all(verify(SECRET, r["headers"], r["raw"]) for r in got))
        plain = rx.wait_requests(1, "/plain")
        self.wait_delivery(plain_run["id"], lambda it: it[0]["status"] == "delivered")
        self.assertEqual([r["json"]["type"] for r in rx.requests("/plain")], ["run.succeeded"])

    def test_paused_is_opt_in(self):
        rx = self.receiver()
        run = self.create(rx.url("/paused"), {"approval": "Deploy?", "items": 1},
                          events=["run.paused", "run.succeeded"])
        quiet = self.create(rx.url("/quiet"), {"approval": "Deploy?", "items": 1})
        paused = rx.wait_requests(1, "/paused")[0]["json"]
        self.assertEqual(paused["type"], "run.paused")
        self.assertEqual(paused["data"]["status"], "paused")
        self.assertEqual(paused["data"]["pending_action"]["type"], "approval")
        self.d.wait_status(quiet["id"], "paused")
        for r in (run, quiet):
            self.assertEqual(self.d.post("/v1/runs/%s/approve" % r["id"]).status, 200)
        done = rx.wait_requests(2, "/paused")[1]["json"]
        self.assertEqual((done["type"], done["data"]["status"]), ("run.succeeded", "succeeded"))
        self.assertEqual([r["json"]["type"] for r in rx.wait_requests(1, "/quiet")],
                         ["run.succeeded"])

    def test_failed_run_sends_run_failed(self):
        rx = self.receiver()
        run = self.create(rx.url(), {"error": "boom"})
        req = rx.wait_requests(1)[0]
        self.assertEqual(req["json"]["type"], "run.failed")
        self.assertEqual(req["json"]["data"]["id"], run["id"])

    def test_preview_sends_nothing(self):
        rx = self.receiver()
        run = self.create(rx.url(), {"items": 1}, preview=True)
        finish(self.d, run["id"])
        self.assertEqual(self.deliveries(run["id"]), [])
        self.assertEqual(rx.requests(), [])

    def test_redeliver_same_webhook_id(self):
        rx = self.receiver()
        run = self.create(rx.url())
        first = rx.wait_requests(1)[0]
        did = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "delivered")[0]["id"]
        r = self.d.post("/v1/runs/%s/deliveries/%s/redeliver" % (run["id"], did))
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["id"], did)
        second = rx.wait_requests(2)[1]
        self.assertEqual(second["headers"]["webhook-id"], first["headers"]["webhook-id"])
        self.assertEqual(second["raw"], first["raw"])
        self.assertTrue(verify(SECRET, second["headers"], second["raw"]))
        d = self.wait_delivery(run["id"], lambda it: it[0]["attempt_count"] == 2 and
                               it[0]["status"] == "delivered")[0]
        self.assertEqual([a["trigger"] for a in d["attempts"]], ["schedule", "redeliver"])

    def test_deliveries_api_errors(self):
        rx = self.receiver()
        run = self.create(rx.url())
        other = self.create(rx.url())
        did = self.wait_delivery(other["id"], lambda it: it[0]["status"] == "delivered")[0]["id"]
        assert_error(self, self.d.get("/v1/runs/run_nosuchrun0000000000000/deliveries"), 404,
                     "run_not_found")
        base = "/v1/runs/%s/deliveries/" % run["id"]
        assert_error(self, self.d.post(base + "msg_nope/redeliver"), 404, "delivery_not_found")
        # A delivery of another run is not reachable through this run.
        assert_error(self, self.d.post(base + did + "/redeliver"), 404, "delivery_not_found")
        assert_error(self, self.d.get(base + did + "/redeliver"), 405)
        assert_error(self, self.d.get("/v1/runs/%s/deliveries?page_size=0" % run["id"]), 400)

    def test_invalid_webhook_refused_at_create(self):
        for hook, why in (({"url": "http://x.test/", "events": ["run.bogus"]}, "events"),
                          ({"url": "http://x.test/", "secret": "whsec_c2hvcnQ="}, "secret"),
                          ({"url": "http://bad host/"}, "url")):
            r = self.d.post("/v1/runs", {"flow": "t", "webhook": hook})
            err = assert_error(self, r, 422, "invalid_webhook")
            self.assertIn(why, err["message"])

    def test_redirect_not_followed(self):
        rx = self.receiver({"/hook": [{"status": 302, "headers": {"Location": "/elsewhere"}}]})
        run = self.create(rx.url())
        d = self.wait_delivery(run["id"], lambda it: it[0]["attempt_count"] >= 1)[0]
        self.assertEqual(d["attempts"][0]["status_code"], 302)
        self.assertIn("redirect", d["attempts"][0]["error"])
        self.assertEqual(rx.requests("/elsewhere"), [])


class TestRetries(WebhookTest):
    schedule = "200ms 200ms 500ms 1s"

    def test_reset_connections_are_retried_then_delivered(self):
        rx = self.receiver({"/hook": [{"reset": True, "times": 2}, {"status": 200}]})
        run = self.create(rx.url())
        d = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "delivered")[0]
        self.assertEqual(d["attempt_count"], 3, d)
        self.assertEqual([a["status_code"] for a in d["attempts"]][:2], [None, None], d)
        self.assertTrue(all("reset" in a["error"] for a in d["attempts"][:2]), d)
        reqs = rx.requests("/hook")
        self.assertEqual(len({r["headers"]["webhook-id"] for r in reqs}), 1)

    def test_retried_while_500_then_delivered_same_id(self):
        rx = self.receiver({"/hook": [{"status": 500, "times": 3}, {"status": 200}]})
        run = self.create(rx.url())
        reqs = rx.wait_requests(4)
        ids = {r["headers"]["webhook-id"] for r in reqs}
        self.assertEqual(len(ids), 1, "webhook-id changed between retries")
        self.assertEqual(len({r["raw"] for r in reqs}), 1, "the body changed between retries")
        self.assertTrue(all(verify(SECRET, r["headers"], r["raw"]) for r in reqs))
        gaps = [b["t"] - a["t"] for a, b in zip(reqs, reqs[1:])]
        self.assertTrue(all(g >= 0.15 for g in gaps), gaps)  # 200ms - 20% jitter, minus slack
        d = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "delivered")[0]
        self.assertEqual([a["status_code"] for a in d["attempts"]], [500, 500, 500, 200])
        self.assertEqual(d["id"], ids.pop())
        for a in d["attempts"][:3]:
            self.assertEqual(a["error"], "HTTP 500")
            self.assertRegex(a["next_attempt_at"], RFC3339)

    def test_retry_after_is_honoured(self):
        rx = self.receiver({"/hook": [{"status": 503, "headers": {"Retry-After": "1"}},
                                      {"status": 200}]})
        self.create(rx.url())
        a, b = rx.wait_requests(2)[:2]
        self.assertGreaterEqual(b["t"] - a["t"], 0.95)

    def test_gives_up_after_schedule(self):
        rx = self.receiver({"/hook": [{"status": 500}]})
        run = self.create(rx.url())
        d = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "failed")[0]
        self.assertEqual(d["attempt_count"], 5)  # 1 + four retries
        self.assertIn("gave up after 5 attempts", d["last_error"])
        self.assertIsNone(d["next_attempt_at"])
        time.sleep(1.5)  # a sixth request would come within the longest delay (1s + 20%)
        self.assertEqual(len(rx.requests()), 5)

    def test_410_stops_the_endpoint_for_the_run(self):
        rx = self.receiver({"/hook": [{"status": 410}]})
        run = self.create(rx.url(), {"items": 3, "item_delay": 0.3},
                          events=["run.item", "run.succeeded"])
        finish(self.d, run["id"])
        items = self.wait_delivery(run["id"], lambda it: len(it) == 4 and
                                   all(d["status"] == "stopped" for d in it))
        self.assertEqual(len(rx.requests()), 1)
        self.assertEqual(items[0]["attempts"][0]["status_code"], 410)
        self.assertEqual([d["attempt_count"] for d in items], [1, 0, 0, 0])
        for d in items[1:]:
            self.assertIn("410", d["last_error"])
        time.sleep(0.6)
        self.assertEqual(len(rx.requests()), 1)


class TestReceiverDown(WebhookTest):
    schedule = "200ms 300ms 500ms 1s 1s 1s 1s 1s"

    def test_delivered_once_the_receiver_is_up(self):
        port = free_port()  # nothing listens there yet: connection refused
        url = "http://127.0.0.1:%d/hook" % port
        run = self.create(url)
        d = self.wait_delivery(run["id"], lambda it: it[0]["attempt_count"] >= 2)[0]
        self.assertEqual(d["status"], "pending")
        self.assertTrue(all(a["status_code"] is None and a["error"] for a in d["attempts"]), d)
        rx = self.receiver(port=port)
        req = rx.wait_requests(1)[0]
        self.assertEqual(req["headers"]["webhook-id"], d["id"])
        self.assertTrue(verify(SECRET, req["headers"], req["raw"]))
        d = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "delivered")[0]
        self.assertEqual(d["attempts"][-1]["status_code"], 200)
        self.assertGreaterEqual(d["attempt_count"], 3)

    def backlog(self):
        r = self.d.get("/metrics")
        self.assertEqual(r.status, 200)
        for line in r.body.decode().splitlines():
            if line.startswith("runsd_webhook_backlog "):
                return float(line.split()[1])
        self.fail("runsd_webhook_backlog not exposed")

    def test_backlog_rises_while_refused_and_falls_when_accepted(self):
        # The gauge of /metrics (docs/metrics.md), which the dashboard's overview shows.
        self.assertEqual(self.backlog(), 0)
        port = free_port()  # nothing listens there yet: connection refused
        runs = [self.create("http://127.0.0.1:%d/hook" % port) for _ in range(3)]
        wait_for(lambda: self.backlog() == 3, what="a backlog of 3 while the receiver is down")
        for run in runs:  # still pending, retried: counted although not due right now
            self.wait_delivery(run["id"], lambda it: it[0]["attempt_count"] >= 1)
        self.assertEqual(self.backlog(), 3)
        rx = self.receiver(port=port)
        rx.wait_requests(3)
        wait_for(lambda: self.backlog() == 0, what="the backlog drained")
        for run in runs:
            self.assertEqual(self.deliveries(run["id"])[0]["status"], "delivered")


class TestRestart(WebhookTest):
    # The first retry 2 s away too: with 200 ms a slow machine (ASan on PostgreSQL) let the
    # second attempt in before the kill -9, and the attempts read [500, 500, 200].
    schedule = "2s 2s 2s 2s 2s"

    def test_pending_delivery_survives_kill9(self):
        rx = self.receiver({"/hook": [{"status": 500}]})
        run = self.create(rx.url())
        first = rx.wait_requests(1)[0]
        self.wait_committed_attempts(first["headers"]["webhook-id"], 1)
        self.d.kill9()  # the next attempt is ~2 s away
        rx.stop()
        rx.start(script={"/hook": [{"status": 200}]})
        self.restart_daemon()
        d = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "delivered")[0]
        self.assertEqual([a["status_code"] for a in d["attempts"]], [500, 200])
        again = rx.requests()[-1]
        self.assertEqual(again["headers"]["webhook-id"], first["headers"]["webhook-id"])
        self.assertTrue(verify(SECRET, again["headers"], again["raw"]))

    def test_in_flight_delivery_survives_kill9(self):
        rx = self.receiver({"/hook": [{"hang": True}]})
        run = self.create(rx.url())
        first = rx.wait_requests(1)[0]
        self.assertEqual(self.deliveries(run["id"])[0]["status"], "sending")
        self.d.kill9()
        rx.stop()
        rx.start(script={"/hook": [{"status": 200}]})
        self.restart_daemon()
        d = self.wait_delivery(run["id"], lambda it: it[0]["status"] == "delivered")[0]
        self.assertEqual(d["id"], first["headers"]["webhook-id"])
        self.assertEqual(rx.requests()[-1]["headers"]["webhook-id"], d["id"])


def sse_first_event_ms(port, run_id, timeout=10):
    """Time from sending an SSE request to the first `event:` line, or None without SSE."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        t0 = time.monotonic()
        s.sendall(("GET /v1/runs/%s/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                   "\r\n" % run_id).encode())
        buf = b""
        while b"\nevent:" not in buf and b"\r\nevent:" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
            if b" 200 " not in buf.split(b"\r\n", 1)[0] and b"\r\n" in buf:
                return None
        return (time.monotonic() - t0) * 1000
    finally:
        s.close()


class TestHangingReceiver(WebhookTest):
    hook_timeout = "60s"
    n_hanging = 40

    def test_hanging_receiver_never_delays_the_api(self):
        rx = self.receiver({"*": [{"hang": True}]})
        runs = [self.create(rx.url("/h%d" % i)) for i in range(self.n_hanging)]
        rx.wait_requests(self.n_hanging)  # every delivery is in flight, none answered
        rid = runs[0]["id"]
        self.assertEqual(self.deliveries(rid)[0]["status"], "sending")
        lat = []
        for _ in range(200):
            t0 = time.monotonic()
            r = self.d.get("/v1/runs/" + rid)
            lat.append((time.monotonic() - t0) * 1000)
            self.assertEqual(r.status, 200)
        lat.sort()
        p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
        sys.stderr.write("\n  API GET latency with %d hanging deliveries: p50 %.2f ms, "
                         "p99 %.2f ms, max %.2f ms\n" % (self.n_hanging, p50, p99, lat[-1]))
        self.assertLess(p50, 50)
        self.assertLess(lat[-1], 500)
        # A new run is created, runs and is reported while the others still hang.
        t0 = time.monotonic()
        fresh = self.create(rx.url("/fresh"))
        finish(self.d, fresh["id"])
        self.assertLess(time.monotonic() - t0, 10)
        sse = sse_first_event_ms(self.d.port, fresh["id"])
        if sse is not None:
            sys.stderr.write("  SSE first event with hanging deliveries: %.2f ms\n" % sse)
            self.assertLess(sse, 500)
        self.assertTrue(all(d["status"] == "sending" for d in self.deliveries(rid)))


class TestSSRF(WebhookTest):
    allow_private = "no"

    def before_daemon(self):
        # An operator's endpoint on loopback is trusted: only client URLs are guarded.
        self.rx = self.receiver()
        self.hook_lines = "url = %s\nsecret = %s\n" % (self.rx.url("/global"), SECRET)

    def assert_refused(self, url, fragment):
        run = self.create(url)
        d = self.wait_delivery(run["id"], lambda it: any(x["endpoint"] == "run" and
                                                         x["status"] == "failed" for x in it))
        d = [x for x in d if x["endpoint"] == "run"][0]
        self.assertEqual(d["attempt_count"], 1)
        err = d["attempts"][0]["error"]
        self.assertTrue(err.startswith("ssrf:"), err)
        self.assertIn(fragment, err)
        self.assertIsNone(d["attempts"][0]["status_code"])
        return run

    def test_loopback_refused_config_endpoint_allowed(self):
        run = self.assert_refused(self.rx.url(), "127.0.0.1 is a loopback address")
        self.assertEqual(self.rx.requests("/hook"), [])
        glob = self.rx.wait_requests(1, "/global")[0]
        self.assertEqual(glob["json"]["data"]["id"], run["id"])
        self.assertTrue(verify(SECRET, glob["headers"], glob["raw"]))

    def test_names_and_mapped_forms_refused_after_resolution(self):
        self.assert_refused("http://localhost:%d/hook" % self.rx.port, "loopback")
        self.assert_refused("http://[::ffff:127.0.0.1]:%d/hook" % self.rx.port, "loopback")
        self.assert_refused("http://169.254.169.254/latest/meta-data/", "link-local")
        self.assertEqual(self.rx.requests("/hook"), [])


class TestGlobalEndpoints(WebhookTest):
    def before_daemon(self):
        self.rx = self.receiver()
        self.hook_lines = "url = %s\nsecret = %s\nsecret = %s\n" % (self.rx.url("/global"),
                                                                     SECRET, OTHER_SECRET)

    def test_rotation_signs_with_every_secret_terminal_types_only(self):
        run = self.d.create("t", {"items": 2}, webhook={"url": self.rx.url("/own"),
                                                        "events": ["run.item"]})
        finish(self.d, run["id"])
        glob = self.rx.wait_requests(1, "/global")[0]
        self.assertEqual(glob["json"]["type"], "run.succeeded")
        self.assertEqual(len(glob["headers"]["webhook-signature"].split(" ")), 2)
        self.assertTrue(verify(SECRET, glob["headers"], glob["raw"]))
        self.assertTrue(verify(OTHER_SECRET, glob["headers"], glob["raw"]))
        own = self.rx.wait_requests(2, "/own")
        self.assertEqual([r["json"]["type"] for r in own], ["run.item", "run.item"])
        items = self.wait_delivery(run["id"], lambda it: len(it) == 3 and
                                   all(d["status"] == "delivered" for d in it))
        self.assertEqual(sorted(d["endpoint"] for d in items), ["config", "run", "run"])
        time.sleep(0.3)
        self.assertEqual(len(self.rx.requests("/global")), 1)


if __name__ == "__main__":
    unittest.main()
