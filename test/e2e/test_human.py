"""Humans in the loop (SPEC sections 1-3 and 6, the ToolRegistry lifecycle seed): approvals
(`paused`) and authorizations (`auth_required`), every way out of each wait, the one-time
links and states, what browsers see, and waiting runs across daemon restarts.

Each test starts its own daemon (they start in a few ms). Nothing sleeps for a fixed time:
tests poll the run, its event log, or the worker's log lines (run.log events).

Two workers drive the runs:
  - test/workers/testworker.py (input keys "approval", "auth", "items", "checkpoint", ...);
  - SEQ_WORKER below, written to a temp file: it runs a list of steps (items, checkpoint,
    approval, auth, done) so one run can ask several times, and it logs the comment of an
    approval, so the tests can check what reached the worker.
"""
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
import urllib.parse

from harness import Daemon, testworker_flow, wait_for
from helpers import SSEReader, all_results, assert_error, parse_time, status_trail

# ---------------------------------------------------------------------------- the step worker

SEQ_WORKER = r'''
import json, os, sys

def emit(obj):
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    while data:
        n = os.write(1, data)
        data = data[n:]

def log(msg):
    emit({"type": "log", "level": "info", "message": msg})

def wait(kind):
    while True:
        line = sys.stdin.readline()
        if not line:
            emit({"type": "error", "message": "stdin closed while waiting for " + kind})
            os._exit(1)
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("type") == kind:
            return msg

def drain():
    while sys.stdin.readline():
        pass
    os._exit(0)

run = json.loads(sys.stdin.readline())["run"]
steps = run["input"]["steps"]
cur = run.get("cursor") if isinstance(run.get("cursor"), dict) else {}
step, nxt = cur.get("step", 0), cur.get("next", 0)
log("start:attempt=%d:step=%d:pid=%d" % (run["attempt"], step, os.getpid()))
for idx in range(step, len(steps)):
    s = steps[idx]
    if "items" in s:
        for _ in range(s["items"]):
            emit({"type": "item", "data": {"i": nxt}})
            nxt += 1
    elif "checkpoint" in s:
        emit({"type": "checkpoint", "cursor": {"step": idx + 1, "next": nxt}})
    elif "approval" in s:
        req = {"type": "approval_required", "prompt": s["approval"]}
        if "details" in s:
            req["details"] = s["details"]
        emit(req)
        ans = wait("approval")
        log("approval:%s:comment=%s" % (ans.get("decision"), json.dumps(ans.get("comment"))))
        if ans.get("decision") != "approved":
            drain()
    elif "auth" in s:
        req = {"type": "auth_required", "url": s["auth"]}
        if "provider" in s:
            req["provider"] = s["provider"]
        emit(req)
        ans = wait("auth")
        if ans.get("status") == "success":
            code = ans.get("code") or ""
            log("auth:success:codelen=%d" % len(code))
        else:
            log("auth:%s" % ans.get("status"))
            drain()
    elif "done" in s:
        emit({"type": "done"})
os._exit(0)
'''

_TMP = tempfile.mkdtemp(prefix="runsd-human-")
SEQ_PATH = os.path.join(_TMP, "seqworker.py")
with open(SEQ_PATH, "w") as _f:
    _f.write(SEQ_WORKER)


def tearDownModule():
    shutil.rmtree(_TMP, ignore_errors=True)


def seq_flow(name, **keys):
    lines = ["[flow.%s]" % name, "command = %s %s" % (sys.executable, SEQ_PATH)]
    lines += ["%s = %s" % kv for kv in keys.items()]
    return "\n".join(lines) + "\n"


FLOWS = (testworker_flow("h", concurrency=50) +
         testworker_flow("quick", concurrency=50, approval_timeout="1s", auth_timeout="1s") +
         testworker_flow("ftimeout", timeout="1s", approval_timeout="2s") +
         testworker_flow("nores", resumable="no") +
         seq_flow("seq", concurrency=50) +
         seq_flow("one", concurrency=1) +
         seq_flow("seqnores", resumable="no"))
LIMITS = "max_running = 100\nkill_grace = 1s\n"

AUTH_URL = "https://provider.example/authorize?client_id=runsd&state={state}&scope=read"


# ---------------------------------------------------------------------------- helpers

def token_of(url):
    q = urllib.parse.urlparse(url).query
    return urllib.parse.parse_qs(q)["token"][0]


def state_of(auth_url):
    q = urllib.parse.urlparse(auth_url).query
    return urllib.parse.parse_qs(q)["state"][0]


def flip_mac(token):
    """The token with one character of its MAC changed."""
    head, _, mac = token.rpartition(".")
    c = mac[5]
    return "%s.%s%s%s" % (head, mac[:5], "A" if c != "A" else "B", mac[6:])


def q(value):
    return urllib.parse.quote(value, safe="")


class HumanCase(unittest.TestCase):
    flows = FLOWS
    limits = LIMITS
    extra = ""
    server = ""

    def setUp(self):
        self.daemons = []
        self.d = self.start()

    def start(self, old=None):
        kw = dict(flows=self.flows, limits=self.limits, extra=self.extra, server=self.server)
        if old is None:
            d = Daemon(**kw)
        else:
            d = Daemon(store_path=old.store, tmp=old.tmp, **kw)
            d.port = old.port
        self.daemons.append(d)
        return d.start()

    def restart_kill9(self):
        self.d.kill9()
        self.d = self.start(self.d)
        return self.d

    def restart_sigterm(self):
        self.d.stop()
        self.d = self.start(self.d)
        return self.d

    def tearDown(self):
        self.daemons[-1].stop()

    # --- runs

    def create_waiting(self, flow, input, status="paused"):
        run = self.d.create(flow, input)
        return self.d.wait_status(run["id"], status, timeout=15)

    def finish(self, run_id, timeout=20):
        return self.d.wait_status(run_id, ("succeeded", "incomplete", "failed", "crashed",
                                           "cancelled"), timeout=timeout)

    def assert_end(self, run, status, reason):
        self.assertEqual((run["status"], run["termination_reason"]), (status, reason), run)
        self.assertFalse(run["is_active"], run)
        self.assertIsNone(run["pending_action"], run)

    def worker_logs(self, run_id):
        return [e["data"]["message"] for e in self.d.events(run_id)
                if e["type"] == "run.log" and e["data"].get("source") == "worker"]

    def wait_log(self, run_id, prefix):
        return wait_for(lambda: [m for m in self.worker_logs(run_id) if m.startswith(prefix)],
                        timeout=15, what="worker log %r" % prefix)

    def events_of(self, run_id, type_):
        return [e for e in self.d.events(run_id) if e["type"] == type_]

    def trail(self, run_id):
        return [s for _, s, _ in status_trail(self.d, run_id)]

    def snapshot(self, run_id):
        r = self.d.run(run_id)
        return (r["status"], r["attempt"], json.dumps(r["pending_action"], sort_keys=True),
                r["termination_reason"])

    def assert_unchanged(self, run_id, before, what):
        self.d.assert_alive()
        self.assertEqual(self.snapshot(run_id), before, "%s changed the run" % what)

    # --- answers

    def link_get(self, url, html=False):
        u = urllib.parse.urlparse(url)
        hdrs = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"} if html else {}
        return self.d.get(u.path + "?" + u.query, headers=hdrs)

    def callback(self, state, code=None, error=None, html=False):
        path = "/v1/auth/callback?state=" + q(state)
        if code is not None:
            path += "&code=" + q(code)
        if error is not None:
            path += "&error=" + q(error)
        hdrs = {"Accept": "text/html"} if html else {}
        return self.d.get(path, headers=hdrs)

    def approval_post(self, token, comment=None, form=False):
        if form:
            fields = {"token": token}
            if comment is not None:
                fields["comment"] = comment
            return self.d.post("/v1/runs/approval", urllib.parse.urlencode(fields),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = {"token": token}
        if comment is not None:
            body["comment"] = comment
        return self.d.post("/v1/runs/approval", body)

    def assert_html(self, resp, status=200):
        self.assertEqual(resp.status, status, resp)
        self.assertTrue(resp.headers.get("content-type", "").startswith("text/html"), resp.headers)
        return resp.body.decode("utf-8")


# ---------------------------------------------------------------------------- approvals

class TestApproval(HumanCase):
    def test_pending_action_links_and_events(self):
        details = {"amount": 120, "to": "ACME <ops@acme.example>"}
        run = self.create_waiting("h", {"approval": "Send the invoice?",
                                        "approval_details": details})
        self.assertTrue(run["is_active"])
        self.assertEqual(run["attempt"], 1)
        pa = run["pending_action"]
        self.assertEqual(pa["type"], "approval")
        self.assertEqual(pa["prompt"], "Send the invoice?")
        self.assertEqual(pa["details"], details)
        base = "http://127.0.0.1:%d/v1/runs/approval?token=" % self.d.port
        for k in ("approve_url", "deny_url"):
            self.assertTrue(pa[k].startswith(base), pa[k])
        a, dn = token_of(pa["approve_url"]), token_of(pa["deny_url"])
        self.assertNotEqual(a, dn)
        self.assertTrue(a.startswith(run["id"] + ".a"), a)
        self.assertTrue(dn.startswith(run["id"] + ".d"), dn)
        # no private members on the wire
        self.assertEqual(sorted(pa), ["approve_url", "deny_url", "details", "expires_at",
                                      "prompt", "type"])
        self.assertAlmostEqual(parse_time(pa["expires_at"]), time.time() + 86400, delta=120)
        # the same links in run.approval_required and in the paused run.status
        req = self.events_of(run["id"], "run.approval_required")
        self.assertEqual(len(req), 1)
        self.assertEqual(req[0]["data"], pa)
        paused = [e for e in self.events_of(run["id"], "run.status")
                  if e["data"]["status"] == "paused"]
        self.assertEqual(len(paused), 1)
        self.assertEqual(paused[0]["data"]["pending_action"], pa)
        self.assertEqual(paused[0]["data"]["previous"], "running")
        # listed as paused
        r = self.d.get("/v1/runs?status=paused")
        self.assertEqual([it["id"] for it in r.json()["items"]], [run["id"]])
        self.assertEqual(r.json()["items"][0]["pending_action"], pa)

    def test_approve_via_link_get(self):
        run = self.create_waiting("h", {"approval": "Go?", "items": 2})
        pa = run["pending_action"]
        r = self.link_get(pa["approve_url"])
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), r.headers)
        body = r.json()
        self.assertEqual(body["decision"], "approved")
        self.assertEqual(body["run"]["id"], run["id"])
        self.assertIn(body["run"]["status"], ("running", "succeeded"))
        self.assertIsNone(body["run"]["pending_action"])
        done = self.finish(run["id"])
        self.assert_end(done, "succeeded", "completed")
        self.assertEqual(done["counts"]["items"], 2)
        self.assertEqual(done["attempt"], 1)
        self.assertIn("approval:approved", self.worker_logs(run["id"]))
        self.assertEqual(self.trail(run["id"]),
                         ["queued", "running", "paused", "running", "succeeded"])
        # one-time: the same link, the deny link, and HEAD all say 410 now
        assert_error(self, self.link_get(pa["approve_url"]), 410, "token_spent")
        assert_error(self, self.link_get(pa["deny_url"]), 410, "token_spent")
        self.assertEqual(self.d.request("HEAD", "/v1/runs/approval?token=" +
                                        token_of(pa["approve_url"])).status, 410)
        self.assert_end(self.d.run(run["id"]), "succeeded", "completed")

    def test_approve_via_post_json_with_comment(self):
        run = self.create_waiting("seq", {"steps": [{"approval": "Deploy?"}, {"items": 1}]})
        tok = token_of(run["pending_action"]["approve_url"])
        r = self.approval_post(tok, comment="ship it")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["decision"], "approved")
        done = self.finish(run["id"])
        self.assert_end(done, "succeeded", "completed")
        self.assertIn('approval:approved:comment="ship it"', self.worker_logs(run["id"]))
        # reuse of the token: 410, nothing changes
        assert_error(self, self.approval_post(tok), 410, "token_spent")
        assert_error(self, self.approval_post(token_of(run["pending_action"]["deny_url"])),
                     410, "token_spent")
        self.assert_end(self.d.run(run["id"]), "succeeded", "completed")

    def test_approve_via_form_post(self):
        run = self.create_waiting("seq", {"steps": [{"approval": "Deploy?"}, {"items": 1}]})
        tok = token_of(run["pending_action"]["approve_url"])
        r = self.approval_post(tok, comment="from the form & <page>", form=True)
        page = self.assert_html(r)
        self.assertIn("Done", page)
        self.assertIn("approved", page)
        self.assertIn("close this window", page)
        done = self.finish(run["id"])
        self.assert_end(done, "succeeded", "completed")
        self.assertIn('approval:approved:comment="from the form & <page>"',
                      self.worker_logs(run["id"]))
        # the form again (a double click): a 410 page, nothing changes
        page = self.assert_html(self.approval_post(tok, form=True), 410)
        self.assertIn("token_spent", page)
        self.assert_end(self.d.run(run["id"]), "succeeded", "completed")

    def test_approve_by_id(self):
        run = self.create_waiting("seq", {"steps": [{"approval": "Deploy?"}, {"items": 1}]})
        r = self.d.post("/v1/runs/%s/approve" % run["id"], {"comment": "LGTM"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["decision"], "approved")
        done = self.finish(run["id"])
        self.assert_end(done, "succeeded", "completed")
        self.assertIn('approval:approved:comment="LGTM"', self.worker_logs(run["id"]))
        assert_error(self, self.d.post("/v1/runs/%s/approve" % run["id"], {}), 409,
                     "run_not_paused")
        assert_error(self, self.link_get(run["pending_action"]["approve_url"]), 410,
                     "token_spent")

    def test_approve_without_comment_sends_null(self):
        run = self.create_waiting("seq", {"steps": [{"approval": "Deploy?"}]})
        self.assertEqual(self.d.post("/v1/runs/%s/approve" % run["id"]).status, 200)
        self.assert_end(self.finish(run["id"]), "succeeded", "completed")
        self.assertIn("approval:approved:comment=null", self.worker_logs(run["id"]))

    def test_deny_via_link(self):
        run = self.create_waiting("h", {"approval": "Delete everything?", "items": 3})
        pa = run["pending_action"]
        r = self.link_get(pa["deny_url"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["decision"], "denied")
        self.assertIn(r.json()["run"]["status"], ("cancelling", "cancelled"))
        done = self.finish(run["id"])
        self.assert_end(done, "cancelled", "approval_denied")
        self.assertEqual(done["counts"]["items"], 0)
        self.assertEqual(self.trail(run["id"]),
                         ["queued", "running", "paused", "cancelling", "cancelled"])
        assert_error(self, self.link_get(pa["approve_url"]), 410, "token_spent")
        assert_error(self, self.link_get(pa["deny_url"]), 410, "token_spent")
        self.assert_end(self.d.run(run["id"]), "cancelled", "approval_denied")

    def test_deny_by_id(self):
        run = self.create_waiting("seq", {"steps": [{"approval": "Delete?"}, {"items": 3}]})
        r = self.d.post("/v1/runs/%s/deny" % run["id"], {"comment": "no way"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["decision"], "denied")
        done = self.finish(run["id"])
        self.assert_end(done, "cancelled", "approval_denied")
        self.assertEqual(done["counts"]["items"], 0)
        assert_error(self, self.approval_post(token_of(run["pending_action"]["approve_url"])),
                     410, "token_spent")
        assert_error(self, self.d.post("/v1/runs/%s/deny" % run["id"], {}), 409,
                     "run_not_paused")

    def test_deny_via_form_post(self):
        run = self.create_waiting("h", {"approval": "Delete?"})
        page = self.assert_html(self.approval_post(
            token_of(run["pending_action"]["deny_url"]), form=True))
        self.assertIn("denied", page)
        self.assert_end(self.finish(run["id"]), "cancelled", "approval_denied")

    def test_approval_timeout(self):
        run = self.create_waiting("quick", {"approval": "Anyone?", "items": 1})
        pa = run["pending_action"]
        done = self.finish(run["id"], timeout=10)
        self.assert_end(done, "failed", "approval_timeout")
        self.assertEqual(done["counts"]["items"], 0)
        self.assertEqual(self.trail(run["id"]), ["queued", "running", "paused", "failed"])
        end = self.events_of(run["id"], "run.end")
        self.assertEqual(len(end), 1)
        self.assertEqual(end[0]["data"]["run"]["termination_reason"], "approval_timeout")

    def test_expired_link_is_410_token_expired(self):
        run = self.create_waiting("quick", {"approval": "Anyone?"})
        pa = run["pending_action"]
        self.assert_end(self.finish(run["id"], timeout=10), "failed", "approval_timeout")
        for resp in (self.link_get(pa["approve_url"]),
                     self.approval_post(token_of(pa["deny_url"]))):
            assert_error(self, resp, 410, "token_expired")
        self.assert_end(self.d.run(run["id"]), "failed", "approval_timeout")
        run = self.create_waiting("quick", {"auth": AUTH_URL}, "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        self.assert_end(self.finish(run["id"], timeout=10), "failed", "auth_timeout")
        assert_error(self, self.callback(state, code="late"), 410, "token_expired")
        self.assert_end(self.d.run(run["id"]), "failed", "auth_timeout")

    def test_cancel_while_paused(self):
        run = self.create_waiting("h", {"approval": "Go?", "items": 2})
        pa = run["pending_action"]
        r = self.d.post("/v1/runs/%s/cancel" % run["id"])
        self.assertEqual(r.status, 202, r)
        done = self.finish(run["id"])
        self.assert_end(done, "cancelled", "user_cancelled")
        self.assertEqual(done["counts"]["items"], 0)
        self.assertEqual(self.trail(run["id"]),
                         ["queued", "running", "paused", "cancelling", "cancelled"])
        assert_error(self, self.link_get(pa["approve_url"]), 410, "token_spent")
        assert_error(self, self.d.post("/v1/runs/%s/approve" % run["id"]), 409,
                     "run_not_paused")
        self.assert_end(self.d.run(run["id"]), "cancelled", "user_cancelled")

    def test_delete_while_paused(self):
        run = self.create_waiting("h", {"approval": "Go?"})
        self.assertEqual(self.d.request("DELETE", "/v1/runs/" + run["id"]).status, 202)
        self.assert_end(self.finish(run["id"]), "cancelled", "user_cancelled")

    def test_flow_timeout_stops_while_paused(self):
        # timeout = 1s, approval_timeout = 2s: the wait outlives the flow timeout, so the run
        # must end by the approval timeout, not by the flow timeout
        run = self.create_waiting("ftimeout", {"approval": "Go?"})
        done = self.finish(run["id"], timeout=10)
        self.assert_end(done, "failed", "approval_timeout")

    def test_flow_timeout_resumes_after_approval(self):
        run = self.create_waiting("ftimeout", {"approval": "Go?", "sleep": 5})
        self.assertEqual(self.d.post("/v1/runs/%s/approve" % run["id"]).status, 200)
        done = self.finish(run["id"], timeout=10)
        self.assert_end(done, "failed", "timeout")


# ---------------------------------------------------------------------------- authorizations

class TestAuth(HumanCase):
    def test_pending_action_and_events(self):
        run = self.create_waiting("h", {"auth": AUTH_URL, "provider": "github"}, "auth_required")
        pa = run["pending_action"]
        self.assertEqual(sorted(pa), ["auth_url", "expires_at", "provider", "type"])
        self.assertEqual(pa["type"], "auth")
        self.assertEqual(pa["provider"], "github")
        state = state_of(pa["auth_url"])
        self.assertTrue(state.startswith(run["id"] + ".s"), state)
        self.assertEqual(pa["auth_url"], AUTH_URL.replace("{state}", state))
        self.assertAlmostEqual(parse_time(pa["expires_at"]), time.time() + 3600, delta=120)
        req = self.events_of(run["id"], "run.auth_required")
        self.assertEqual(len(req), 1)
        self.assertEqual(req[0]["data"], pa)
        st = [e for e in self.events_of(run["id"], "run.status")
              if e["data"]["status"] == "auth_required"]
        self.assertEqual(len(st), 1)
        self.assertEqual(st[0]["data"]["pending_action"], pa)

    def test_provider_absent_is_null(self):
        run = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        self.assertIsNone(run["pending_action"]["provider"])

    def test_callback_success(self):
        run = self.create_waiting("h", {"auth": AUTH_URL, "provider": "github", "items": 1},
                                  "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        secret = "SeCrEt%x" % int(time.time() * 1e6)
        code = secret + "/+=?&x"  # must survive percent-decoding
        r = self.callback(state, code=code)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), r.headers)
        self.assertIn(r.json()["run"]["status"], ("running", "succeeded"))
        done = self.finish(run["id"])
        self.assert_end(done, "succeeded", "completed")
        self.assertEqual(done["counts"]["items"], 1)
        self.assertIn("auth:success:codelen=%d" % len(code), self.worker_logs(run["id"]))
        self.assertEqual(self.trail(run["id"]),
                         ["queued", "running", "auth_required", "running", "succeeded"])
        # the code reaches no event, no run object, no log line of the daemon
        self.assertNotIn(secret, json.dumps(self.d.events(run["id"])))
        self.assertNotIn(secret, json.dumps(done))
        self.assertNotIn(secret, self.d.get("/v1/runs/%s/results" % run["id"]).body.decode())
        with open(os.path.join(self.d.tmp, "runsd.log"), "rb") as f:
            self.assertNotIn(secret.encode(), f.read())
        # the state works once
        assert_error(self, self.callback(state, code="again"), 410, "token_spent")
        self.assert_end(self.d.run(run["id"]), "succeeded", "completed")

    def test_callback_browser_page(self):
        run = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        page = self.assert_html(self.callback(state, code="abc123", html=True))
        self.assertIn("close this window", page)
        self.assert_end(self.finish(run["id"]), "succeeded", "completed")
        self.assertIn("auth:success:codelen=6", self.worker_logs(run["id"]))
        # a second visit of the redirect: an error page, nothing changes
        page = self.assert_html(self.callback(state, code="abc123", html=True), 410)
        self.assertNotIn("abc123", page)

    def test_callback_denied(self):
        run = self.create_waiting("h", {"auth": AUTH_URL, "items": 1}, "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        r = self.callback(state, error="access_denied")
        self.assertEqual(r.status, 200, r)
        done = self.finish(run["id"])
        self.assert_end(done, "failed", "auth_denied")
        self.assertEqual(done["counts"]["items"], 0)
        self.assertEqual(self.trail(run["id"]), ["queued", "running", "auth_required", "failed"])
        assert_error(self, self.callback(state, code="late"), 410, "token_spent")
        self.assert_end(self.d.run(run["id"]), "failed", "auth_denied")

    def test_callback_denied_browser_page(self):
        run = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        page = self.assert_html(self.callback(state, error="access_denied", html=True))
        self.assertIn("close this window", page)
        self.assert_end(self.finish(run["id"]), "failed", "auth_denied")

    def test_state_reused_while_denied_worker_stops(self):
        # the worker ignores SIGTERM, so after the denial it lingers for kill_grace (1s) in
        # auth_required: the state must already be spent
        run = self.create_waiting("h", {"auth": AUTH_URL, "ignore_term": True},
                                  "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        self.assertEqual(self.callback(state, error="access_denied").status, 200)
        second = self.callback(state, code="sneaky")
        done = self.finish(run["id"])
        self.assert_end(done, "failed", "auth_denied")
        assert_error(self, second, 410, "token_spent")
        self.assertNotIn("auth:success:codelen=6", self.worker_logs(run["id"]))

    def test_auth_timeout(self):
        run = self.create_waiting("quick", {"auth": AUTH_URL, "items": 1}, "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        done = self.finish(run["id"], timeout=10)
        self.assert_end(done, "failed", "auth_timeout")
        self.assertEqual(done["counts"]["items"], 0)
        r = self.callback(state, code="too-late")
        self.assertEqual(r.status, 410, r)
        self.assertIn(r.json()["error"]["code"], ("token_expired", "token_spent"))
        self.assert_end(self.d.run(run["id"]), "failed", "auth_timeout")

    def test_cancel_while_auth_required(self):
        run = self.create_waiting("h", {"auth": AUTH_URL, "items": 1}, "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        self.assertEqual(self.d.post("/v1/runs/%s/cancel" % run["id"]).status, 202)
        done = self.finish(run["id"])
        self.assert_end(done, "cancelled", "user_cancelled")
        self.assertEqual(self.trail(run["id"]),
                         ["queued", "running", "auth_required", "cancelling", "cancelled"])
        assert_error(self, self.callback(state, code="x"), 410, "token_spent")
        assert_error(self, self.d.post("/v1/runs/%s/auth" % run["id"], {"code": "x"}), 409,
                     "run_not_waiting_auth")

    def test_auth_by_id(self):
        run = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        assert_error(self, self.d.post("/v1/runs/%s/auth" % run["id"], {}), 422)
        assert_error(self, self.d.post("/v1/runs/%s/auth" % run["id"],
                                       {"code": "a", "error": "b"}), 422)
        self.assertEqual(self.snapshot(run["id"])[0], "auth_required")
        r = self.d.post("/v1/runs/%s/auth" % run["id"], {"code": "0123456789"})
        self.assertEqual(r.status, 200, r)
        self.assert_end(self.finish(run["id"]), "succeeded", "completed")
        self.assertIn("auth:success:codelen=10", self.worker_logs(run["id"]))
        self.assertNotIn("0123456789", json.dumps(self.d.events(run["id"])))

    def test_auth_by_id_error(self):
        run = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        r = self.d.post("/v1/runs/%s/auth" % run["id"], {"error": "access_denied"})
        self.assertEqual(r.status, 200, r)
        self.assert_end(self.finish(run["id"]), "failed", "auth_denied")

    def test_demo_provider_round_trip(self):
        run = self.create_waiting("h", {"auth": "http://127.0.0.1:%d/v1/demo/oauth/authorize"
                                                "?state={state}" % self.d.port},
                                  "auth_required")
        u = urllib.parse.urlparse(run["pending_action"]["auth_url"])
        page = self.assert_html(self.d.get(u.path + "?" + u.query, headers={"Accept": "text/html"}))
        self.assertIn("DEMO", page)
        links = [l.replace("&amp;", "&") for l in re.findall(r'href="([^"]+)"', page)]
        allow = [l for l in links if "code=" in l]
        self.assertEqual(len(allow), 1, links)
        self.assertEqual(self.snapshot(run["id"])[0], "auth_required")
        page = self.assert_html(self.d.get(allow[0], headers={"Accept": "text/html"}))
        self.assertIn("close this window", page)
        self.assert_end(self.finish(run["id"]), "succeeded", "completed")
        self.assertTrue(self.wait_log(run["id"], "auth:success:codelen="))


# ---------------------------------------------------------------------------- both, in one run

class TestSeveralWaits(HumanCase):
    def test_approval_then_auth_then_approval(self):
        steps = [{"items": 1}, {"approval": "first?"}, {"items": 1}, {"auth": AUTH_URL},
                 {"items": 1}, {"approval": "second?", "details": {"n": 2}}, {"items": 1},
                 {"done": True}]
        run = self.create_waiting("seq", {"steps": steps})
        rid = run["id"]
        first = run["pending_action"]
        self.assertEqual(first["prompt"], "first?")
        self.assertEqual(self.link_get(first["approve_url"]).status, 200)
        run = self.d.wait_status(rid, "auth_required")
        auth = run["pending_action"]
        state = state_of(auth["auth_url"])
        # the first approval's links are spent while the run waits for something else
        assert_error(self, self.link_get(first["approve_url"]), 410, "token_spent")
        assert_error(self, self.link_get(first["deny_url"]), 410, "token_spent")
        assert_error(self, self.d.post("/v1/runs/%s/approve" % rid), 409, "run_not_paused")
        self.assertEqual(self.callback(state, code="code-1234").status, 200)
        run = self.d.wait_status(rid, "paused")
        second = run["pending_action"]
        self.assertEqual(second["prompt"], "second?")
        self.assertEqual(second["details"], {"n": 2})
        self.assertNotEqual(token_of(second["approve_url"]), token_of(first["approve_url"]))
        # old links do not answer the new question; nor does the spent state
        assert_error(self, self.link_get(first["approve_url"]), 410, "token_spent")
        assert_error(self, self.callback(state, code="code-1234"), 410, "token_spent")
        assert_error(self, self.d.post("/v1/runs/%s/auth" % rid, {"code": "x"}), 409,
                     "run_not_waiting_auth")
        self.assertEqual(self.snapshot(rid)[0], "paused")
        r = self.approval_post(token_of(second["approve_url"]), comment="again")
        self.assertEqual(r.status, 200, r)
        done = self.finish(rid)
        self.assert_end(done, "succeeded", "completed")
        self.assertEqual(done["attempt"], 1)
        self.assertEqual([it["data"]["i"] for it in all_results(self.d, rid)], [0, 1, 2, 3])
        self.assertEqual(self.trail(rid),
                         ["queued", "running", "paused", "running", "auth_required", "running",
                          "paused", "running", "succeeded"])
        logs = [m for m in self.worker_logs(rid) if not m.startswith("start:")]
        self.assertEqual(logs, ["approval:approved:comment=null", "auth:success:codelen=9",
                                'approval:approved:comment="again"'])
        self.assertEqual(len(self.events_of(rid, "run.approval_required")), 2)
        self.assertEqual(len(self.events_of(rid, "run.auth_required")), 1)
        self.assertNotIn("code-1234", json.dumps(self.d.events(rid)))


# ---------------------------------------------------------------------------- bad input

class TestBadInput(HumanCase):
    def test_forged_truncated_cross_run_tokens(self):
        a = self.create_waiting("h", {"approval": "A?"})
        b = self.create_waiting("h", {"approval": "B?"})
        ta = token_of(a["pending_action"]["approve_url"])
        tb = token_of(b["pending_action"]["approve_url"])
        before_a, before_b = self.snapshot(a["id"]), self.snapshot(b["id"])
        rid_a, _, rest_a = ta.partition(".")
        bad = {
            "forged mac": flip_mac(ta),
            "truncated": ta[:-1],
            "truncated to the run id": rid_a,
            "cross-run (a's nonce and mac on b's id)": "%s.%s" % (b["id"], rest_a),
            "kind changed a->d": "%s.d%s" % (rid_a, rest_a[1:]),
            "kind changed to state": "%s.s%s" % (rid_a, rest_a[1:]),
            "extra dot": ta + ".x",
            "garbage": "not-a-token",
            "unknown run": "run_doesnotexist." + rest_a,
        }
        for what, tok in bad.items():
            with self.subTest(what):
                assert_error(self, self.d.get("/v1/runs/approval?token=" + q(tok)), 404,
                             "token_invalid")
                assert_error(self, self.approval_post(tok), 404, "token_invalid")
                self.assertEqual(self.d.request("HEAD", "/v1/runs/approval?token=" + q(tok))
                                 .status, 404)
                page = self.assert_html(self.d.get("/v1/runs/approval?token=" + q(tok),
                                                   headers={"Accept": "text/html"}), 404)
                self.assertNotIn("<form", page)
                page = self.assert_html(self.approval_post(tok, form=True), 404)
                self.assert_unchanged(a["id"], before_a, what)
                self.assert_unchanged(b["id"], before_b, what)
        # the genuine links still work afterwards
        self.assertEqual(self.link_get(a["pending_action"]["approve_url"]).status, 200)
        self.assertEqual(self.approval_post(tb).status, 200)
        self.assert_end(self.finish(a["id"]), "succeeded", "completed")
        self.assert_end(self.finish(b["id"]), "succeeded", "completed")

    def test_forged_and_cross_kind_states(self):
        a = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        p = self.create_waiting("h", {"approval": "P?"})
        sa = state_of(a["pending_action"]["auth_url"])
        before_a, before_p = self.snapshot(a["id"]), self.snapshot(p["id"])
        rid, _, rest = sa.partition(".")
        bad = {
            "forged mac": flip_mac(sa),
            "truncated": sa[:-3],
            "cross-run": "%s.%s" % (p["id"], rest),
            "approval token as state": token_of(p["pending_action"]["approve_url"]),
            "garbage": "xyz",
        }
        for what, st in bad.items():
            with self.subTest(what):
                assert_error(self, self.callback(st, code="c"), 404, "state_invalid")
                assert_error(self, self.callback(st, error="access_denied"), 404,
                             "state_invalid")
                self.assert_html(self.callback(st, code="c", html=True), 404)
                self.assert_unchanged(a["id"], before_a, what)
                self.assert_unchanged(p["id"], before_p, what)
        # a state is not an approval token either
        assert_error(self, self.d.get("/v1/runs/approval?token=" + q(sa)), 404, "token_invalid")
        assert_error(self, self.approval_post(sa), 404, "token_invalid")
        self.assert_unchanged(a["id"], before_a, "a state used as an approval token")
        self.assertEqual(self.callback(sa, code="ok").status, 200)
        self.assert_end(self.finish(a["id"]), "succeeded", "completed")

    def test_missing_parameters(self):
        run = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        p = self.create_waiting("h", {"approval": "P?"})
        state = state_of(run["pending_action"]["auth_url"])
        before, before_p = self.snapshot(run["id"]), self.snapshot(p["id"])
        assert_error(self, self.callback(state), 400, "missing_code")
        assert_error(self, self.callback(state, code="", error=""), 400, "missing_code")
        assert_error(self, self.d.get("/v1/auth/callback?code=abc"), 400, "missing_state")
        assert_error(self, self.d.get("/v1/auth/callback"), 400, "missing_state")
        self.assert_html(self.callback(state, html=True), 400)
        assert_error(self, self.d.get("/v1/runs/approval"), 400, "missing_token")
        assert_error(self, self.d.get("/v1/runs/approval?token="), 400, "missing_token")
        assert_error(self, self.d.post("/v1/runs/approval", {}), 400, "missing_token")
        assert_error(self, self.d.post("/v1/runs/approval", {"token": ""}), 400, "missing_token")
        r = self.d.post("/v1/runs/approval", "comment=x",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 400, r)
        self.assert_unchanged(run["id"], before, "missing parameters")
        self.assert_unchanged(p["id"], before_p, "missing parameters")

    def test_wrong_methods(self):
        p = self.create_waiting("h", {"approval": "P?"})
        before = self.snapshot(p["id"])
        self.assertEqual(self.d.request("PUT", "/v1/runs/approval?token=x", body="").status, 405)
        self.assertEqual(self.d.request("DELETE", "/v1/runs/approval").status, 405)
        self.assertEqual(self.d.post("/v1/auth/callback?state=x&code=y").status, 405)
        self.assertEqual(self.d.get("/v1/runs/%s/approve" % p["id"]).status, 405)
        self.assert_unchanged(p["id"], before, "wrong methods")

    def test_not_waiting_409(self):
        running = self.d.create("h", {"sleep": 30})
        self.d.wait_status(running["id"], "running")
        for sub, code in (("approve", "run_not_paused"), ("deny", "run_not_paused"),
                          ("auth", "run_not_waiting_auth")):
            body = {"code": "x"} if sub == "auth" else {}
            assert_error(self, self.d.post("/v1/runs/%s/%s" % (running["id"], sub), body), 409,
                         code)
        self.assertEqual(self.d.run(running["id"])["status"], "running")
        # approval answers on an auth wait and the other way round
        a = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        p = self.create_waiting("h", {"approval": "P?"})
        before_a, before_p = self.snapshot(a["id"]), self.snapshot(p["id"])
        assert_error(self, self.d.post("/v1/runs/%s/approve" % a["id"]), 409, "run_not_paused")
        assert_error(self, self.d.post("/v1/runs/%s/deny" % a["id"]), 409, "run_not_paused")
        assert_error(self, self.d.post("/v1/runs/%s/auth" % p["id"], {"code": "x"}), 409,
                     "run_not_waiting_auth")
        self.assert_unchanged(a["id"], before_a, "approve on an auth wait")
        self.assert_unchanged(p["id"], before_p, "auth on an approval wait")
        # terminal run
        done = self.d.create("h", {})
        self.finish(done["id"])
        assert_error(self, self.d.post("/v1/runs/%s/approve" % done["id"]), 409,
                     "run_not_paused")
        # unknown run
        assert_error(self, self.d.post("/v1/runs/run_nope/approve"), 404)
        self.d.post("/v1/runs/%s/cancel" % running["id"])

    def test_long_comment_refused(self):
        p = self.create_waiting("h", {"approval": "P?"})
        tok = token_of(p["pending_action"]["approve_url"])
        before = self.snapshot(p["id"])
        assert_error(self, self.approval_post(tok, comment="c" * 2001), 422, "invalid_comment")
        assert_error(self, self.d.post("/v1/runs/%s/approve" % p["id"], {"comment": "c" * 2001}),
                     422, "invalid_comment")
        assert_error(self, self.d.post("/v1/runs/%s/approve" % p["id"], {"comment": 5}), 422,
                     "invalid_comment")
        self.assert_unchanged(p["id"], before, "a long comment")
        self.assertEqual(self.approval_post(tok, comment="c" * 2000).status, 200)
        self.assert_end(self.finish(p["id"]), "succeeded", "completed")


class TestUriLimit(HumanCase):
    server = "max_uri = 2K\n"

    def test_long_query_414_changes_nothing(self):
        p = self.create_waiting("h", {"approval": "P?"})
        a = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
        tok = token_of(p["pending_action"]["approve_url"])
        state = state_of(a["pending_action"]["auth_url"])
        before_p, before_a = self.snapshot(p["id"]), self.snapshot(a["id"])
        pad = "x" * 3000
        for path in ("/v1/runs/approval?token=%s&pad=%s" % (tok, pad),
                     "/v1/runs/approval?pad=%s&token=%s" % (pad, tok),
                     "/v1/auth/callback?state=%s&code=%s" % (state, pad),
                     "/v1/auth/callback?state=%s&code=c&pad=%s" % (state, pad)):
            with self.subTest(path[:40]):
                assert_error(self, self.d.get(path), 414, "uri_too_long")
                self.assertEqual(self.d.request("HEAD", path).status, 414)
                self.assert_unchanged(p["id"], before_p, "a long query")
                self.assert_unchanged(a["id"], before_a, "a long query")
        # just under the limit: the code reaches the worker intact
        code = "k" * 1900
        self.assertEqual(self.callback(state, code=code).status, 200)
        self.assert_end(self.finish(a["id"]), "succeeded", "completed")
        self.assertIn("auth:success:codelen=1900", self.worker_logs(a["id"]))
        self.assertEqual(self.link_get(p["pending_action"]["approve_url"]).status, 200)


class TestDefaultUriLimit(HumanCase):
    """The default max_uri (8K): what a provider's long redirect does."""

    def test_uri_over_8k_gets_414(self):
        p = self.create_waiting("h", {"approval": "P?"})
        tok = token_of(p["pending_action"]["approve_url"])
        before = self.snapshot(p["id"])
        r = None
        try:
            r = self.d.get("/v1/runs/approval?token=%s&pad=%s" % (tok, "x" * 9000))
        except (ConnectionError, OSError) as e:
            self.fail("no reply to a 9 KB URI (expected 414 uri_too_long): %r" % e)
        finally:
            self.assert_unchanged(p["id"], before, "a 9 KB URI")
        assert_error(self, r, 414, "uri_too_long")

    def test_long_codes_reach_the_worker_intact_or_are_refused(self):
        # a request line longer than one socket read (about 4 KB) must not alter the code
        for n in (3000, 4000, 4096, 4097, 5000):
            with self.subTest(codelen=n):
                run = self.create_waiting("h", {"auth": AUTH_URL}, "auth_required")
                state = state_of(run["pending_action"]["auth_url"])
                r = self.callback(state, code="k" * n)
                if n > 4096:
                    assert_error(self, r, 400, "invalid_code")
                    self.assertEqual(self.snapshot(run["id"])[0], "auth_required")
                    self.d.post("/v1/runs/%s/cancel" % run["id"])
                    continue
                self.assertEqual(r.status, 200, r)
                self.assert_end(self.finish(run["id"]), "succeeded", "completed")
                self.assertEqual([m for m in self.worker_logs(run["id"])
                                  if m.startswith("auth:")], ["auth:success:codelen=%d" % n])


# ---------------------------------------------------------------------------- browsers

class TestBrowser(HumanCase):
    def test_get_with_accept_html_shows_a_form_and_changes_nothing(self):
        run = self.create_waiting("h", {"approval": "Pay <b>ACME</b> & co?",
                                        "approval_details": {"x": "<script>alert(1)</script>"}})
        pa = run["pending_action"]
        before = self.snapshot(run["id"])
        for _ in range(2):  # a scanner and then the person: both only see the page
            page = self.assert_html(self.link_get(pa["approve_url"], html=True))
            self.assertRegex(page, r'<form[^>]*method="post"')
            self.assertIn('action="/v1/runs/approval"', page)
            self.assertIn('name="token" value="%s"' % token_of(pa["approve_url"]), page)
            self.assertIn("Approve", page)
            self.assertIn("Pay &lt;b&gt;ACME&lt;/b&gt; &amp; co?", page)
            self.assertNotIn("<script>alert", page)
            self.assertNotIn("<b>ACME", page)
            self.assert_unchanged(run["id"], before, "a browser GET of the approve link")
        page = self.assert_html(self.link_get(pa["deny_url"], html=True))
        self.assertIn('name="token" value="%s"' % token_of(pa["deny_url"]), page)
        self.assertIn("Deny", page)
        self.assert_unchanged(run["id"], before, "a browser GET of the deny link")
        # the form's POST is what acts
        m = re.search(r'name="token" value="([^"]+)"', page)
        self.assert_html(self.approval_post(m.group(1), form=True))
        self.assert_end(self.finish(run["id"]), "cancelled", "approval_denied")
        # a spent link in a browser: an explanation, no form
        page = self.assert_html(self.link_get(pa["approve_url"], html=True), 410)
        self.assertNotIn("<form", page)

    def test_head_never_acts(self):
        run = self.create_waiting("h", {"approval": "Go?"})
        pa = run["pending_action"]
        before = self.snapshot(run["id"])
        for url in (pa["approve_url"], pa["deny_url"]):
            u = urllib.parse.urlparse(url)
            for hdrs in ({}, {"Accept": "text/html"}):
                r = self.d.request("HEAD", u.path + "?" + u.query, headers=hdrs)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, b"")
                self.assert_unchanged(run["id"], before, "HEAD")
        self.assertEqual(self.link_get(pa["approve_url"]).status, 200)
        self.assert_end(self.finish(run["id"]), "succeeded", "completed")

    def test_pages_are_hardened(self):
        run = self.create_waiting("h", {"approval": "Go?"})
        r = self.link_get(run["pending_action"]["approve_url"], html=True)
        self.assertEqual(r.headers.get("x-frame-options"), "DENY")
        self.assertIn("form-action 'self'", r.headers.get("content-security-policy", ""))
        self.assertIn("noindex", r.body.decode())


class TestObservers(HumanCase):
    def sse_until(self, run_id, type_):
        sse = SSEReader(self.d.port, "/v1/runs/%s/events" % run_id)
        try:
            self.assertEqual(sse.status, 200)
            while True:
                f = sse.next_event()
                self.assertIsNotNone(f, "SSE ended before %s" % type_)
                if f.get("event") == type_:
                    return json.loads(f["data"])
        finally:
            sse.close()

    def test_links_in_sse(self):
        run = self.create_waiting("h", {"approval": "Go?"})
        ev = self.sse_until(run["id"], "run.approval_required")
        self.assertEqual(ev["data"], run["pending_action"])
        self.assertEqual(self.link_get(ev["data"]["approve_url"]).status, 200)
        run = self.create_waiting("h", {"auth": AUTH_URL, "provider": "p"}, "auth_required")
        ev = self.sse_until(run["id"], "run.auth_required")
        self.assertEqual(ev["data"], run["pending_action"])
        self.assertEqual(self.callback(state_of(ev["data"]["auth_url"]), code="c").status, 200)

    def test_wait_returns_when_a_human_is_needed(self):
        for status, inp in (("paused", {"approval": "Go?"}),
                            ("auth_required", {"auth": AUTH_URL})):
            run = self.d.create("h", inp)
            t0 = time.monotonic()
            r = self.d.get("/v1/runs/%s?wait=30" % run["id"])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], status)
            self.assertIsNotNone(r.json()["pending_action"])
            self.assertLess(time.monotonic() - t0, 15)


PUBLIC = "https://runs.example.com/base"


class TestPublicUrl(HumanCase):
    def start(self, old=None):
        d = Daemon(flows=self.flows, limits=self.limits)
        text = d.config_text

        def config_text():
            return text().replace("public_url = http://127.0.0.1:%d" % d.port,
                                  "public_url = %s/" % PUBLIC)
        d.config_text = config_text
        self.daemons.append(d)
        return d.start()

    def test_links_use_public_url(self):
        run = self.create_waiting("h", {"approval": "Go?"})
        pa = run["pending_action"]
        for k in ("approve_url", "deny_url"):
            self.assertTrue(pa[k].startswith(PUBLIC + "/v1/runs/approval?token=" + run["id"]),
                            pa[k])
        self.assertTrue(run["stream_url"].startswith(PUBLIC + "/v1/runs/"), run["stream_url"])
        ev = self.events_of(run["id"], "run.approval_required")[0]
        self.assertEqual(ev["data"]["approve_url"], pa["approve_url"])
        r = self.d.get("/v1/runs/approval?token=" + token_of(pa["approve_url"]))
        self.assertEqual(r.status, 200, r)
        self.assert_end(self.finish(run["id"]), "succeeded", "completed")


# ---------------------------------------------------------------------------- API keys

READ_KEY = "read-key-0123456789abcdef"
WRITE_KEY = "write-key-0123456789abcdef"


class TestWithApiKeys(HumanCase):
    extra = "[auth]\nkey = read:%s\nkey = write:%s\n" % (READ_KEY, WRITE_KEY)
    W = {"Authorization": "Bearer " + WRITE_KEY}

    def setUp(self):
        super().setUp()
        d = self.d
        orig = d.request

        def request(method, path, body=None, headers=None, timeout=30, _orig=orig):
            h = dict(headers or {})
            if h.pop("X-No-Key", None) is None:
                h.setdefault("Authorization", "Bearer " + WRITE_KEY)
            return _orig(method, path, body=body, headers=h, timeout=timeout)

        d.request = request

    def test_approve_needs_write_scope_links_need_no_key(self):
        run = self.create_waiting("seq", {"steps": [{"approval": "Go?"}, {"auth": AUTH_URL},
                                                    {"approval": "Again?"}]})
        rid = run["id"]
        before = self.snapshot(rid)
        nokey = {"X-No-Key": "1"}
        assert_error(self, self.d.post("/v1/runs/%s/approve" % rid, {}, headers=nokey), 401,
                     "unauthorized")
        assert_error(self, self.d.post("/v1/runs/%s/approve" % rid, {},
                                       headers={"x-api-key": READ_KEY}), 403, "forbidden")
        assert_error(self, self.d.post("/v1/runs/%s/deny" % rid, {},
                                       headers={"Authorization": "Bearer " + READ_KEY}), 403)
        self.assert_unchanged(rid, before, "approve without the write scope")
        r = self.d.post("/v1/runs/%s/approve" % rid, {"comment": "by key"},
                        headers={"x-api-key": WRITE_KEY})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(self.wait_log(rid, 'approval:approved:comment="by key"'))
        run = self.d.wait_status(rid, "auth_required")
        state = state_of(run["pending_action"]["auth_url"])
        assert_error(self, self.d.post("/v1/runs/%s/auth" % rid, {"code": "x"},
                                       headers={"x-api-key": READ_KEY}), 403)
        # the OAuth redirect carries no key
        r = self.d.get("/v1/auth/callback?state=%s&code=keyless" % q(state), headers=nokey)
        self.assertEqual(r.status, 200, r)
        run = self.d.wait_status(rid, "paused")
        # nor do the approval link and its form
        u = urllib.parse.urlparse(run["pending_action"]["approve_url"])
        page = self.assert_html(self.d.get(u.path + "?" + u.query,
                                           headers={"Accept": "text/html", "X-No-Key": "1"}))
        self.assertIn("<form", page)
        r = self.d.post("/v1/runs/approval",
                        urllib.parse.urlencode({"token": token_of(u.geturl()), "comment": "link"}),
                        headers={"Content-Type": "application/x-www-form-urlencoded",
                                 "X-No-Key": "1"})
        self.assert_html(r)
        done = self.finish(rid)
        self.assert_end(done, "succeeded", "completed")
        self.assertIn('approval:approved:comment="link"', self.worker_logs(rid))
        self.assertIn("auth:success:codelen=7", self.worker_logs(rid))


# ---------------------------------------------------------------------------- restarts

class TestRestart(HumanCase):
    def worker_pid(self, run_id, attempt=1):
        line = self.wait_log(run_id, "start:attempt=%d:" % attempt)[0]
        return int(line.rsplit("=", 1)[1])

    def wait_gone(self, pid):
        def gone():
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().split(")")[-1].split()[0] in ("Z", "X")
            except OSError:
                return True
        wait_for(gone, timeout=10, what="worker %d gone" % pid)

    def check_waiting_after_restart(self, rid, status, pa_before, pid):
        run = self.d.run(rid)
        self.assertEqual(run["status"], status, run)
        self.assertEqual(run["attempt"], 1)
        self.assertTrue(run["is_active"])
        self.assertEqual(run["pending_action"], pa_before)
        self.wait_gone(pid)
        # no worker was started for it, and nothing changes by itself
        self.assertEqual([m for m in self.worker_logs(rid) if m.startswith("start:")],
                         ["start:attempt=1:step=0:pid=%d" % pid])

    def test_kill9_while_paused_resumes_from_checkpoint_with_stored_answer(self):
        steps = [{"items": 3}, {"checkpoint": True}, {"approval": "Continue?"}, {"items": 2}]
        run = self.create_waiting("seq", {"steps": steps})
        rid, pa = run["id"], run["pending_action"]
        self.assertEqual(run["counts"]["items"], 3)
        pid = self.worker_pid(rid)
        self.restart_kill9()
        self.check_waiting_after_restart(rid, "paused", pa, pid)
        self.restart_sigterm()  # a second restart, with no worker this time
        self.check_waiting_after_restart(rid, "paused", pa, pid)
        # the links from before the restarts still work; HEAD and the page do not act
        u = urllib.parse.urlparse(pa["approve_url"])
        self.assertEqual(self.d.request("HEAD", u.path + "?" + u.query).status, 200)
        self.assertIn("<form", self.assert_html(self.link_get(pa["approve_url"], html=True)))
        self.assertEqual(self.d.run(rid)["status"], "paused")
        r = self.link_get(pa["approve_url"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["decision"], "approved")
        done = self.finish(rid)
        self.assert_end(done, "succeeded", "completed")
        self.assertEqual(done["attempt"], 2)
        self.assertEqual([it["data"]["i"] for it in all_results(self.d, rid)], [0, 1, 2, 3, 4])
        self.assertEqual(done["counts"]["items"], 5)
        # the restarted worker repeated the prompt and got the stored answer at once
        logs = self.worker_logs(rid)
        self.assertIn("start:attempt=2:step=2", "\n".join(logs))
        self.assertEqual([m for m in logs if m.startswith("approval:")],
                         ["approval:approved:comment=null"])
        self.assertEqual(len(self.events_of(rid, "run.approval_required")), 1)
        self.assertEqual(self.trail(rid), ["queued", "running", "paused", "queued", "running",
                                           "succeeded"])
        assert_error(self, self.link_get(pa["approve_url"]), 410, "token_spent")
        assert_error(self, self.link_get(pa["deny_url"]), 410, "token_spent")

    def test_sigterm_while_auth_required(self):
        steps = [{"items": 2}, {"checkpoint": True}, {"auth": AUTH_URL, "provider": "gh"},
                 {"items": 2}]
        run = self.create_waiting("seq", {"steps": steps}, "auth_required")
        rid, pa = run["id"], run["pending_action"]
        pid = self.worker_pid(rid)
        self.restart_sigterm()
        self.check_waiting_after_restart(rid, "auth_required", pa, pid)
        secret = "AfterRestart%x" % int(time.time() * 1e6)
        r = self.callback(state_of(pa["auth_url"]), code=secret)
        self.assertEqual(r.status, 200, r)
        done = self.finish(rid)
        self.assert_end(done, "succeeded", "completed")
        self.assertEqual(done["attempt"], 2)
        self.assertEqual([it["data"]["i"] for it in all_results(self.d, rid)], [0, 1, 2, 3])
        logs = self.worker_logs(rid)
        self.assertEqual([m for m in logs if m.startswith("auth:")],
                         ["auth:success:codelen=%d" % len(secret)])
        self.assertEqual(len(self.events_of(rid, "run.auth_required")), 1)
        self.assertNotIn(secret, json.dumps(self.d.events(rid)))
        self.assertNotIn(secret, json.dumps(self.d.run(rid)))
        assert_error(self, self.callback(state_of(pa["auth_url"]), code="x"), 410, "token_spent")

    def test_sigterm_while_paused_testworker_checkpoint(self):
        run = self.create_waiting("h", {"approval": "Go?", "items": 4, "checkpoint": True,
                                        "echo_start": True})
        rid, pa = run["id"], run["pending_action"]
        self.restart_sigterm()
        run = self.d.run(rid)
        self.assertEqual((run["status"], run["attempt"]), ("paused", 1))
        self.assertEqual(run["pending_action"], pa)
        r = self.d.post("/v1/runs/%s/approve" % rid, {"comment": "after restart"})
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.json()["run"]["status"], ("queued", "running", "succeeded"))
        done = self.finish(rid)
        self.assert_end(done, "succeeded", "completed")
        self.assertEqual(done["attempt"], 2)
        self.assertEqual([it["data"]["i"] for it in all_results(self.d, rid)], [0, 1, 2, 3])
        self.assertEqual([m for m in self.worker_logs(rid) if m.startswith("approval:")],
                         ["approval:approved"])
        self.assertEqual(len(self.events_of(rid, "run.approval_required")), 1)

    def test_kill9_then_deny_after_restart(self):
        run = self.create_waiting("seq", {"steps": [{"approval": "Go?"}, {"items": 1}]})
        rid, pa = run["id"], run["pending_action"]
        pid = self.worker_pid(rid)
        self.restart_kill9()
        self.check_waiting_after_restart(rid, "paused", pa, pid)
        r = self.approval_post(token_of(pa["deny_url"]))
        self.assertEqual(r.status, 200, r)
        done = self.finish(rid)
        self.assert_end(done, "cancelled", "approval_denied")
        self.assertEqual(done["attempt"], 1)
        self.assertEqual(done["counts"]["items"], 0)
        assert_error(self, self.link_get(pa["approve_url"]), 410, "token_spent")

    def test_kill9_then_cancel_after_restart(self):
        run = self.create_waiting("seq", {"steps": [{"auth": AUTH_URL}]}, "auth_required")
        rid, pa = run["id"], run["pending_action"]
        self.restart_kill9()
        self.assertEqual(self.d.run(rid)["status"], "auth_required")
        self.assertEqual(self.d.post("/v1/runs/%s/cancel" % rid).status, 202)
        done = self.finish(rid)
        self.assert_end(done, "cancelled", "user_cancelled")
        assert_error(self, self.callback(state_of(pa["auth_url"]), code="x"), 410, "token_spent")

    def test_kill9_then_auth_denied_after_restart(self):
        run = self.create_waiting("seq", {"steps": [{"auth": AUTH_URL}]}, "auth_required")
        rid, pa = run["id"], run["pending_action"]
        self.restart_kill9()
        self.assertEqual(self.callback(state_of(pa["auth_url"]), error="access_denied").status,
                         200)
        done = self.finish(rid)
        self.assert_end(done, "failed", "auth_denied")
        self.assertEqual(done["attempt"], 1)

    def test_wait_expires_after_restart(self):
        run = self.create_waiting("quick", {"approval": "Go?"})
        rid = run["id"]
        self.restart_kill9()
        done = self.finish(rid, timeout=10)
        self.assert_end(done, "failed", "approval_timeout")

    def test_stored_answer_survives_another_restart(self):
        # flow "one" has one slot: B's live worker holds it, so A, answered while it had no
        # worker, stays queued with its stored answer across a second kill -9
        a = self.create_waiting("one", {"steps": [{"approval": "A?"}, {"items": 1}]})
        self.restart_kill9()
        b = self.create_waiting("one", {"steps": [{"approval": "B?"}]})
        r = self.d.post("/v1/runs/%s/approve" % a["id"], {"comment": "kept"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.d.run(a["id"])["status"], "queued")
        self.restart_kill9()
        done = self.finish(a["id"])
        self.assert_end(done, "succeeded", "completed")
        self.assertEqual(done["attempt"], 2)
        self.assertEqual(done["counts"]["items"], 1)
        self.assertEqual([m for m in self.worker_logs(a["id"]) if m.startswith("approval:")],
                         ['approval:approved:comment="kept"'])
        self.assertEqual(len(self.events_of(a["id"], "run.approval_required")), 1)
        self.assertEqual(self.d.run(b["id"])["status"], "paused")
        self.assertEqual(self.d.post("/v1/runs/%s/cancel" % b["id"]).status, 202)
        self.assert_end(self.finish(b["id"]), "cancelled", "user_cancelled")

    def test_non_resumable_kill9(self):
        for status, inp in (("paused", {"approval": "Go?"}),
                            ("auth_required", {"auth": AUTH_URL})):
            with self.subTest(status):
                run = self.create_waiting("nores", inp, status)
                pa = run["pending_action"]
                self.restart_kill9()
                done = self.finish(run["id"])
                self.assert_end(done, "crashed", "interrupted")
                if status == "paused":
                    assert_error(self, self.link_get(pa["approve_url"]), 410, "token_spent")
                else:
                    assert_error(self, self.callback(state_of(pa["auth_url"]), code="x"), 410,
                                 "token_spent")
                self.assertEqual(self.d.run(run["id"])["status"], "crashed")

    def test_non_resumable_sigterm(self):
        run = self.create_waiting("seqnores", {"steps": [{"approval": "Go?"}]})
        pa = run["pending_action"]
        self.restart_sigterm()
        done = self.finish(run["id"])
        self.assert_end(done, "crashed", "interrupted")
        self.assertEqual(done["attempt"], 1)
        assert_error(self, self.approval_post(token_of(pa["approve_url"])), 410, "token_spent")


# ---------------------------------------------------------------------------- edge cases

class TestEdges(HumanCase):
    def test_many_state_placeholders(self):
        # each {state} grows by the placeholder's length: the daemon must size for all of them
        url = "https://p.example/a?" + "&".join("s%d={state}" % i for i in range(40))
        run = self.create_waiting("h", {"auth": url}, "auth_required")
        au = run["pending_action"]["auth_url"]
        states = set(v[0] for v in urllib.parse.parse_qs(urllib.parse.urlparse(au).query)
                     .values())
        self.assertEqual(len(states), 1, au)
        self.assertEqual(self.callback(states.pop(), code="ok").status, 200)
        self.assert_end(self.finish(run["id"]), "succeeded", "completed")

    def test_worker_text_that_looks_like_a_link_placeholder_is_not_rewritten(self):
        text = "literal rdlink:a:abcdefgh and rdlink:s:zzz"
        run = self.d.create("h", {"log": text, "result": {"note": text}})
        done = self.finish(run["id"])
        self.assertEqual(done["status"], "succeeded", done)
        self.assertIn(text, self.worker_logs(run["id"]))
        created = self.events_of(run["id"], "run.created")[0]
        self.assertEqual(created["data"]["run"]["input"]["log"], text)
        res = self.events_of(run["id"], "run.result")[0]
        self.assertEqual(res["data"]["data"]["note"], text)

    def test_store_copy_holds_no_live_link(self):
        # run/runs_links.c keeps the link key beside the store "so a copy of the database cannot mint
        # or recover a link": no table may hold a live token's MAC
        run = self.create_waiting("h", {"approval": "Go?"})
        macs = [token_of(run["pending_action"][k]).rsplit(".", 1)[1]
                for k in ("approve_url", "deny_url")]
        self.d.stop()
        if self.d.backend == "postgresql":
            columns = self.d.store_sql("SELECT table_name, column_name FROM"
                                       " information_schema.columns WHERE table_schema = 'public'")
        else:
            columns = [(t, c[1]) for (t,) in self.d.store_sql(
                "SELECT name FROM sqlite_master WHERE type='table'")
                for c in self.d.store_sql("PRAGMA table_info(%s)" % t)]
        found = []
        for table, col in columns:
            for mac in macs:
                (n,), = self.d.store_sql("SELECT count(*) FROM %s WHERE CAST(%s AS TEXT) LIKE '%%%s%%'"
                                         % (table, col, mac))
                if int(n):
                    found.append("%s.%s (%s rows)" % (table, col, n))
        self.d = self.start(self.d)
        self.assertEqual(found, [], "live approval links stored in the database")

    def test_answers_from_two_clients_only_one_wins(self):
        import threading
        run = self.create_waiting("h", {"approval": "Go?"})
        pa = run["pending_action"]
        results = []

        def hit(url):
            results.append(self.link_get(url).status)

        ts = [threading.Thread(target=hit, args=(pa["approve_url"] if i % 2 else pa["deny_url"],))
              for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(sorted(results).count(200), 1, results)
        self.assertEqual(sorted(results).count(410), 7, results)
        done = self.finish(run["id"])
        self.assertIn(done["status"], ("succeeded", "cancelled"))


if __name__ == "__main__":
    unittest.main()
