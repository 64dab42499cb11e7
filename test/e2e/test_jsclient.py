"""test_jsclient.py: the JavaScript client (clients/js/runsd.mjs) against the real daemon,
driven by Node.js (jsclient_driver.mjs); skipped, saying so, where node is absent or older
than 18.

- scenario, on the copy the daemon serves at /v1/client.js (fetched and imported by Node):
  a run watched to its end with typed handlers, '*' and an async iterator, in id order, the
  same ids as the JSON event log, run.end carrying the final run; a finished run watched from
  its last event ends at once (204); a keyless watch of the run's stream_url replays the same
  events; waitForRun settles and times out; a paused run approved and another denied
  through their pending_action links (a spent link answers 410 token_spent); errors carry
  their codes; the global stream with a types filter, closed by close().
- resume: a run watched while the daemon is stopped (SIGTERM) and started again on the same
  port and store: the client reconnects with Last-Event-ID and delivers every event of the
  run exactly once, in order (the ids are the run's event log), with no duplicate sent.
"""
import json
import os
import select
import shutil
import subprocess
import time
import unittest

from harness import SOURCE, Daemon, testworker_flow, wait_for

NODE = shutil.which("node")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jsclient_driver.mjs")
MODULE = os.path.join(SOURCE, "clients/js/runsd.mjs")
KEY = "jsclient-write-key-0123456789"


def node_major():
    if not NODE:
        return 0
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    return int(out.strip().lstrip("v").split(".")[0] or 0)


@unittest.skipIf(node_major() < 18, "SKIPPED: Node.js 18 or later not found (scripts/setup.sh installs nodejs)")
class JsClient(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(flows=testworker_flow(resumable="yes"),
                        extra="[auth]\nkey = write:%s\n" % KEY).start()
        self.base = "http://127.0.0.1:%d" % self.d.port
        self.auth = {"Authorization": "Bearer " + KEY}

    def tearDown(self):
        self.d.stop()

    def node(self, *args):
        p = subprocess.Popen([NODE, DRIVER, args[0], self.base, KEY] + list(args[1:]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.reap, p)
        return p

    @staticmethod
    def reap(p):
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        p.stdout.close()
        p.stderr.close()

    def test_scenario_on_the_served_copy(self):
        p = self.node("scenario", "test", "served")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, "node failed:\n%s\n%s" % (out, err))
        last = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(last["kind"], "ok")
        # What the client saw is what the daemon says.
        self.assertEqual(self.run_of(last["approved"])["status"], "succeeded")
        denied = self.run_of(last["denied"])
        self.assertEqual((denied["status"], denied["termination_reason"]),
                         ("cancelled", "approval_denied"))

    def run_of(self, run_id):
        r = self.d.get("/v1/runs/" + run_id, headers=self.auth)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_resume_across_a_daemon_restart(self):
        r = self.d.post("/v1/runs", {"flow": "test", "input": {
            "items": 40, "item_delay": 0.05, "checkpoint": True, "steps": ["a"]}},
            headers=self.auth)
        self.assertEqual(r.status, 201, r)
        run_id = r.json()["id"]
        p = self.node("watch", run_id, MODULE)
        lines = []

        def read_until(cond, timeout=60):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([p.stdout], [], [], 0.2)
                if ready:
                    line = p.stdout.readline()
                    if not line:
                        break
                    lines.append(json.loads(line))
                    if cond(lines[-1]):
                        return lines[-1]
            self.fail("node: no such line in %r\nstderr: %s" % (lines[-5:], p.stderr.read()
                                                               if p.poll() is not None else ""))

        seen = [0]

        def tenth_event(o):
            seen[0] += o["kind"] == "event"
            return seen[0] >= 10

        read_until(tenth_event)
        self.d.stop()  # the stream is closed under the client; the run's worker stopped
        self.d.start()  # same port, same store: the run resumes from its checkpoint
        end = read_until(lambda o: o["kind"] == "end", timeout=90)
        p.wait(timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr.read())
        self.assertEqual(end["run"]["status"], "succeeded")
        self.assertEqual(end["run"]["counts"]["items"], 40)
        self.assertGreaterEqual(end["stats"]["connects"], 2, "it reconnected")
        self.assertEqual(end["stats"]["duplicates"], 0, "the daemon resent nothing")
        self.assertTrue(any(o["kind"] == "retry" for o in lines))
        log = self.event_ids(run_id)
        self.assertEqual(end["ids"], log, "every event once, in order: no gap, no duplicate")
        self.assertEqual(end["lastEventId"], log[-1])

    def event_ids(self, run_id):
        ids, after = [], 0
        while True:
            r = self.d.get("/v1/runs/%s/events?after=%d&limit=1000" % (run_id, after),
                           headers=self.auth)
            self.assertEqual(r.status, 200, r)
            page = r.json()
            ids += [e["id"] for e in page["items"]]
            if not page["has_more"]:
                return ids
            after = page["next_after"]


if __name__ == "__main__":
    unittest.main()
