"""Who sees capability links (SPEC section 3): approve/deny URLs and the auth URL let whoever
holds them act on a run, so they are shown only to those who may act.

  - write/admin keys, and everyone when no key is configured: every link, everywhere;
  - read keys: pending_action without links (null) in the run, the list, the JSON event log,
    the run's SSE stream and GET /v1/events;
  - the run's stream_url token: the auth URL, approve/deny only with approval_links = stream;
  - webhook receivers: every link.

The attack this closes: a read key lists runs, takes a deny_url and fetches it with no key,
which cancelled the run.
"""
import json
import os
import re
import shutil
import tempfile
import unittest
import urllib.parse

from harness import Daemon, testworker_flow, wait_for
from helpers import SSEReader
from test_webhooks import Receiver

READ_KEY = "read-key-caplinks-0123456789"
WRITE_KEY = "write-key-caplinks-0123456789"
R = {"Authorization": "Bearer " + READ_KEY}
W = {"Authorization": "Bearer " + WRITE_KEY}
AUTH_URL = "https://provider.example/authorize?client_id=runsd&state={state}&scope=read"
LINKS = ("approve_url", "deny_url", "auth_url")
# Anything that looks like a usable link or state token.
TOKEN_RE = re.compile(r"(/v1/runs/approval\?token=|state=[A-Za-z0-9_.-]{20,})")

FLOWS = testworker_flow("h", concurrency=20)
# approval_links = stream: its stream token sees approve/deny links too.
FLOWS_HS = FLOWS + testworker_flow("hs", concurrency=20, approval_links="stream")
KEYS = "[auth]\nkey = read:%s\nkey = write:%s\n" % (READ_KEY, WRITE_KEY)


def path_of(url):
    u = urllib.parse.urlparse(url)
    return u.path + ("?" + u.query if u.query else "")


class CapCase(unittest.TestCase):
    extra = KEYS
    flows = FLOWS

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-caplinks-")
        self.receivers = []
        self.before_daemon()
        self.d = Daemon(flows=self.flows, extra=self.extra, limits="max_running = 50\n",
                        tmp=self.tmp).start()

    def before_daemon(self):
        pass

    def tearDown(self):
        try:
            self.d.stop()
        finally:
            for rx in self.receivers:
                rx.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- requests with a given key (None: no key)

    def get(self, path, key=W, **kw):
        return self.d.get(path, headers=dict(key or {}, **kw.pop("headers", {})), **kw)

    def get_json(self, path, key=W):
        r = self.get(path, key)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def run_as(self, run_id, key):
        return self.get_json("/v1/runs/" + run_id, key)

    def create_waiting(self, flow, input, status, **fields):
        body = dict({"flow": flow, "input": input}, **fields)
        r = self.d.post("/v1/runs", body, headers=W)
        self.assertEqual(r.status, 201, r)
        rid = r.json()["id"]
        return wait_for(lambda: (lambda run: run if run["status"] == status else None)(
            self.run_as(rid, W)), timeout=15, what="run %s %s" % (rid, status))

    def events_as(self, run_id, key):
        return self.get_json("/v1/runs/%s/events?limit=1000" % run_id, key)["items"]

    def sse_events(self, path, key, until, headers=None):
        """The data of every SSE event on path up to and including the first of type until."""
        h = dict(key or {}, **(headers or {}))
        s = SSEReader(self.d.port, path, headers=h)
        try:
            if s.status != 200:
                self.fail("%s: %d %r" % (path, s.status, s.body_rest()))
            out = []
            while True:
                f = s.next_event()
                self.assertIsNotNone(f, "stream ended before %s: %r" % (until, out))
                out.append(json.loads(f["data"]))
                if f.get("event") == until:
                    return out
        finally:
            s.close()

    # --- what a pending action looks like

    def assert_hidden(self, pa, what, keep=()):
        self.assertIsInstance(pa, dict, what)
        for k in LINKS:
            if k in pa and k not in keep:
                self.assertIsNone(pa[k], "%s shows %s" % (what, k))
        self.assertIn("type", pa, what)
        self.assertIn("expires_at", pa, what)

    def assert_shown(self, pa, what, keys):
        for k in keys:
            self.assertIsInstance(pa.get(k), str, "%s hides %s: %r" % (what, k, pa))

    def link_pending(self, events):
        """The pending actions carried by events (run.status and the *_required events)."""
        out = []
        for e in events:
            if e["type"] == "run.status" and e["data"].get("pending_action"):
                out.append(("run.status", e["data"]["pending_action"]))
            elif e["type"] in ("run.approval_required", "run.auth_required"):
                out.append((e["type"], e["data"]))
        return out

    def assert_no_token_text(self, text, what):
        self.assertIsNone(TOKEN_RE.search(text), "%s carries a link: %s" % (what, text[:400]))


class TestReadKey(CapCase):
    def test_read_key_sees_no_links_anywhere(self):
        run = self.create_waiting("h", {"approval": "Deploy?"}, "paused")
        rid = run["id"]
        self.assert_shown(run["pending_action"], "write key", ("approve_url", "deny_url"))
        # the run and the list
        r = self.get("/v1/runs/" + rid, R)
        self.assert_no_token_text(r.body.decode(), "GET run (read)")
        pa = r.json()["pending_action"]
        self.assert_hidden(pa, "GET run (read)")
        self.assertEqual((pa["type"], pa["prompt"]), ("approval", "Deploy?"))
        self.assertEqual(pa["expires_at"], run["pending_action"]["expires_at"])
        r = self.get("/v1/runs?status=paused", R)
        self.assert_no_token_text(r.body.decode(), "list (read)")
        item = [i for i in r.json()["items"] if i["id"] == rid][0]
        self.assert_hidden(item["pending_action"], "list (read)")
        # ?wait= answers with the same view
        self.assert_hidden(self.run_as(rid + "?wait=1", R)["pending_action"], "?wait (read)")
        # the JSON event log
        r = self.get("/v1/runs/%s/events?limit=1000" % rid, R)
        self.assert_no_token_text(r.body.decode(), "event log (read)")
        seen = self.link_pending(r.json()["items"])
        self.assertEqual([t for t, _ in seen], ["run.status", "run.approval_required"])
        for t, p in seen:
            self.assert_hidden(p, "event log %s (read)" % t)
        # the run's SSE stream and the global stream (replayed from the start)
        for path in ("/v1/runs/%s/events" % rid, "/v1/events?last_event_id=0&run=" + rid):
            evs = self.sse_events(path, R, "run.approval_required")
            self.assert_no_token_text(json.dumps(evs), "SSE %s (read)" % path)
            seen = self.link_pending(evs)
            self.assertEqual(len(seen), 2, evs)
            for t, p in seen:
                self.assert_hidden(p, "SSE %s %s (read)" % (path, t))

    def test_live_sse_frames_per_audience(self):
        # Subscribers of every kind are connected before the run asks: the live frame of each
        # event with links is formatted per audience and each gets its own.
        r = self.d.post("/v1/runs", {"flow": "h", "input": {"approval": "Live?"},
                                     "start": False}, headers=W)
        self.assertEqual(r.status, 201, r)
        run = r.json()
        rid = run["id"]
        path = "/v1/runs/%s/events" % rid
        readers = {"read": SSEReader(self.d.port, path, headers=R),
                   "write": SSEReader(self.d.port, path, headers=W),
                   "token": SSEReader(self.d.port, path_of(run["stream_url"])),
                   "global-read": SSEReader(self.d.port, "/v1/events?run=" + rid, headers=R),
                   "global-write": SSEReader(self.d.port, "/v1/events?run=" + rid, headers=W)}
        try:
            for s in readers.values():
                self.assertEqual(s.status, 200)
            self.assertEqual(self.d.post("/v1/runs/%s/start" % rid, {}, headers=W).status, 202)
            got = {}
            for name, s in readers.items():
                evs = []
                while not evs or evs[-1]["type"] != "run.approval_required":
                    f = s.next_event()
                    self.assertIsNotNone(f, name)
                    evs.append(json.loads(f["data"]))
                got[name] = self.link_pending(evs)
                self.assertEqual(len(got[name]), 2, (name, evs))
        finally:
            for s in readers.values():
                s.close()
        for name in ("read", "global-read", "token"):
            for t, p in got[name]:
                self.assert_hidden(p, "live %s %s" % (name, t))
        for name in ("write", "global-write"):
            for t, p in got[name]:
                self.assert_shown(p, "live %s %s" % (name, t), ("approve_url", "deny_url"))
        self.assertEqual(self.run_as(rid, W)["status"], "paused")

    def test_read_key_cannot_decide_the_run(self):
        """The old attack: list with a read key, take deny_url, fetch it with no key."""
        run = self.create_waiting("h", {"approval": "Ship it?"}, "paused")
        rid = run["id"]
        listed = self.get_json("/v1/runs", R)
        item = [i for i in listed["items"] if i["id"] == rid][0]
        deny = item["pending_action"].get("deny_url")
        if deny:
            self.get(path_of(deny), None)  # what an attacker would do
        self.assertEqual(self.run_as(rid, W)["status"], "paused",
                         "a read key's deny_url decided the run")
        self.assertIsNone(deny)
        # nor does anything else a read key can read carry a working link
        bodies = [self.get(p, R).body.decode() for p in
                  ("/v1/runs", "/v1/runs/" + rid, "/v1/runs/%s/events" % rid)]
        bodies.append(json.dumps(self.sse_events("/v1/runs/%s/events" % rid, R,
                                                 "run.approval_required")))
        for text in bodies:
            for m in re.finditer(r"/v1/runs/approval\?token=[^\"\\]+", text):
                self.get(m.group(0), None)
        self.assertEqual(self.run_as(rid, W)["status"], "paused")

    def test_write_key_sees_links_and_they_work(self):
        run = self.create_waiting("h", {"approval": "Go?"}, "paused")
        rid, pa = run["id"], run["pending_action"]
        self.assert_shown(pa, "GET run (write)", ("approve_url", "deny_url"))
        item = [i for i in self.get_json("/v1/runs", W)["items"] if i["id"] == rid][0]
        self.assertEqual(item["pending_action"], pa)
        for t, p in self.link_pending(self.events_as(rid, W)):
            self.assertEqual((p["approve_url"], p["deny_url"]),
                             (pa["approve_url"], pa["deny_url"]), t)
        for t, p in self.link_pending(self.sse_events("/v1/runs/%s/events" % rid, W,
                                                      "run.approval_required")):
            self.assertEqual(p["deny_url"], pa["deny_url"], t)
        r = self.get(path_of(pa["approve_url"]), None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["decision"], "approved")

    def test_auth_url_hidden_from_read_key(self):
        run = self.create_waiting("h", {"auth": AUTH_URL, "provider": "demo"}, "auth_required")
        rid = run["id"]
        self.assert_shown(run["pending_action"], "write key", ("auth_url",))
        pa = self.run_as(rid, R)["pending_action"]
        self.assert_hidden(pa, "GET run (read)")
        self.assertEqual((pa["type"], pa["provider"]), ("auth", "demo"))
        for t, p in self.link_pending(self.events_as(rid, R)):
            self.assert_hidden(p, "event log %s (read)" % t)
        for t, p in self.link_pending(self.sse_events("/v1/runs/%s/events" % rid, R,
                                                      "run.auth_required")):
            self.assert_hidden(p, "SSE %s (read)" % t)


class TestStreamToken(CapCase):
    flows = FLOWS_HS
    def test_stream_token_sees_auth_url_not_approval_links(self):
        run = self.create_waiting("h", {"approval": "Go?", "auth": AUTH_URL}, "paused")
        rid = run["id"]
        evs = self.sse_events(path_of(run["stream_url"]), None, "run.approval_required")
        self.assert_no_token_text(json.dumps(evs), "stream token, approval")
        seen = self.link_pending(evs)
        self.assertEqual(len(seen), 2, evs)
        for t, p in seen:
            self.assert_hidden(p, "stream token %s" % t)
        # approve with the write key; the worker then asks for an authorization
        self.assertEqual(self.get(path_of(run["pending_action"]["approve_url"]), None).status,
                         200)
        run = wait_for(lambda: (lambda r: r if r["status"] == "auth_required" else None)(
            self.run_as(rid, W)), timeout=15, what="auth_required")
        evs = self.sse_events(path_of(run["stream_url"]), None, "run.auth_required")
        auth = [p for t, p in self.link_pending(evs) if p["type"] == "auth"]
        self.assertEqual(len(auth), 2, evs)
        for p in auth:
            self.assertEqual(p["auth_url"], run["pending_action"]["auth_url"])
        # the person watching the stream can authorize with it
        state = urllib.parse.parse_qs(urllib.parse.urlparse(auth[-1]["auth_url"]).query)["state"][0]
        r = self.get("/v1/auth/callback?state=%s&code=abc" % urllib.parse.quote(state), None)
        self.assertEqual(r.status, 200, r)

    def test_stream_token_with_read_key_still_no_approval_links(self):
        run = self.create_waiting("h", {"approval": "Go?"}, "paused")
        for t, p in self.link_pending(self.sse_events(path_of(run["stream_url"]), R,
                                                      "run.approval_required")):
            self.assert_hidden(p, "stream token + read key %s" % t)

    def test_token_does_not_open_the_json_log(self):
        run = self.create_waiting("h", {"approval": "Go?"}, "paused")
        self.assertEqual(self.get(path_of(run["stream_url"]), None).status, 401)

    def test_approval_links_stream_shows_them_on_the_stream(self):
        run = self.create_waiting("hs", {"approval": "Watch and decide?"}, "paused")
        rid, pa = run["id"], run["pending_action"]
        seen = self.link_pending(self.sse_events(path_of(run["stream_url"]), None,
                                                 "run.approval_required"))
        self.assertEqual(len(seen), 2)
        for t, p in seen:
            self.assertEqual((p["approve_url"], p["deny_url"]),
                             (pa["approve_url"], pa["deny_url"]), t)
        # read keys still see none
        self.assert_hidden(self.run_as(rid, R)["pending_action"], "GET run (read), hs")
        for t, p in self.link_pending(self.sse_events("/v1/runs/%s/events" % rid, R,
                                                      "run.approval_required")):
            self.assert_hidden(p, "SSE (read), hs %s" % t)
        r = self.get(path_of(seen[-1][1]["deny_url"]), None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["decision"], "denied")


class TestNoKeys(CapCase):
    extra = ""

    def test_everyone_sees_links_without_keys(self):
        run = self.create_waiting("h", {"approval": "Go?"}, "paused")
        rid, pa = run["id"], run["pending_action"]
        self.assert_shown(pa, "GET run (no keys)", ("approve_url", "deny_url"))
        for t, p in self.link_pending(self.sse_events(path_of(run["stream_url"]), None,
                                                      "run.approval_required")):
            self.assertEqual(p["approve_url"], pa["approve_url"], t)


class TestWebhooksKeepLinks(CapCase):
    extra = KEYS + "[webhooks]\nallow_private = yes\nretry_schedule = 200ms 200ms\n"

    def before_daemon(self):
        self.rx = Receiver(self.tmp)
        self.receivers.append(self.rx)
        self.rx.start()

    def test_webhook_receiver_gets_full_pending_action(self):
        run = self.create_waiting("h", {"approval": "Deploy?"}, "paused",
                                  webhook={"url": self.rx.url("/paused"), "events": ["run.paused"]})
        body = self.rx.wait_requests(1, "/paused")[0]["json"]
        self.assertEqual(body["type"], "run.paused")
        self.assertEqual(body["data"]["pending_action"]["approve_url"],
                         run["pending_action"]["approve_url"])
        self.assertEqual(body["data"]["pending_action"]["deny_url"],
                         run["pending_action"]["deny_url"])


if __name__ == "__main__":
    unittest.main()
