"""The examples of docs/workers.md run against the real daemon: every worker of
examples/workers.ini (Python, Node.js, Go, POSIX sh + jq) completes a run, stops at its limit
and resumes from its checkpoint when extended; the curl-only external worker
(examples/external/curl-worker.sh) does the same over HTTP; and the webhook receivers of
examples/webhooks/ (Python, Node.js with the npm package standardwebhooks, Go) verify real
deliveries and refuse tampered ones.

A test skips only when its toolchain is missing (scripts/setup.sh installs them all). The Go
examples are built by CMake into build/examples/ when go is installed; a stale or missing
binary is built here into a temporary directory. The Node receiver's dependency is installed
from its package-lock.json into build/examples/webhooks-node (npm ci), never globally.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from harness import BUILD, SOURCE, DaemonTest, wait_for
from helpers import all_results, status_trail

EX = os.path.join(SOURCE, "examples")
PRIMES_BELOW_30 = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def go_binary(subdir, name):
    """The built Go example examples/<subdir> (CMake's, or built now), or None without go."""
    src = os.path.join(EX, subdir)
    newest = max(os.path.getmtime(os.path.join(src, f)) for f in ("main.go", "go.mod"))
    prebuilt = os.path.join(BUILD, "examples", name)
    if os.path.exists(prebuilt) and os.path.getmtime(prebuilt) >= newest:
        return prebuilt
    go = shutil.which("go")
    if not go:
        return None
    out = os.path.join(tempfile.mkdtemp(prefix="runsd-go-"), name)
    env = dict(os.environ, GOPROXY="off", CGO_ENABLED="0")
    if "HOME" not in env:  # as CMake does: Go's cache needs a place
        env.update(GOCACHE=os.path.join(BUILD, "go-cache"), GOPATH=os.path.join(BUILD, "go-path"))
    subprocess.run([go, "build", "-o", out, "."], cwd=src, env=env, check=True, timeout=600)
    return out


GO_WORKER = go_binary("workers/go", "primes-go")


def example_flows():
    """The [flow.*] sections of examples/workers.ini, with relative commands made absolute
    (the test's config lives elsewhere) and the Go worker's command the built binary."""
    with open(os.path.join(EX, "workers.ini")) as f:
        text = f.read()
    flows = text[text.index("[flow."):]

    def absolute(m):
        cmd = m.group(1)
        if cmd == "workers/go/primes":
            cmd = GO_WORKER or "/nonexistent/go-not-installed"
        return "command = " + os.path.join(EX, cmd)

    return re.sub(r"^command = (\S+)$", absolute, flows, flags=re.M)


class WorkerChecks:
    """What every primes worker must do, process or external."""

    def finished(self, run_id):
        r = self.d.get("/v1/runs/%s?wait=30" % run_id)
        self.assertEqual(r.status, 200, r)
        run = r.json()
        self.assertFalse(run["is_active"], run)
        return run

    def numbers(self, run_id):
        return [it["data"]["n"] for it in all_results(self.d, run_id)]

    def check_limited(self, run, progress=6):
        """A run stopped at limit 4, to be extended."""
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "match_limit_met"), run)
        self.assertEqual(self.numbers(run["id"]), PRIMES_BELOW_30[:4])
        self.assertEqual(run["progress"]["done"], progress, run["progress"])

    def check_completed(self, run, attempts, resumed_from=8):
        """The same run after the extend: all ten primes once each, from the checkpoint."""
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"),
                         run)
        self.assertEqual(run["attempt"], attempts)
        self.assertEqual(self.numbers(run["id"]), PRIMES_BELOW_30)
        self.assertEqual([it["data"]["index"] for it in all_results(self.d, run["id"])],
                         list(range(1, 11)))
        self.assertEqual(run["result"], {"below": 30, "count": 10, "largest": 29})
        self.assertEqual(run["counts"]["items"], 10)
        self.assertEqual(run["counts"]["item_errors"], 0)
        self.assertEqual(run["metrics"]["protocol_errors"], 0, run["metrics"])
        self.assertEqual([(s["name"], s["state"]) for s in run["steps"]],
                         [("scan", "finished")])
        self.assertEqual(run["steps_finished"], 1)
        self.assertEqual((run["progress"]["done"], run["progress"]["total"]), (28, 28))
        logs = [e["data"]["message"] for e in self.d.events(run["id"]) if e["type"] == "run.log"]
        # the second attempt starts from the last checkpoint kept
        self.assertEqual(logs, ["attempt 1: from 2 to 29",
                                "attempt 2: from %d to 29" % resumed_from])


class TestWorkers(WorkerChecks, DaemonTest):
    flows = example_flows()
    limits = "kill_grace = 2s\n"

    def run_worker(self, flow):
        # limit 4: the worker stops itself after the fourth prime, checkpointed past it
        run = self.d.create(flow, {"below": 30}, limit=4)
        self.check_limited(self.finished(run["id"]))
        r = self.d.post("/v1/runs/%s/extend" % run["id"], {"additional_limit": 100})
        self.assertEqual(r.status, 202, r)
        self.check_completed(self.finished(run["id"]), attempts=2)

        # bad input: the worker's error message fails the run
        bad = self.finished(self.d.create(flow, {"below": "many"})["id"])
        self.assertEqual((bad["status"], bad["termination_reason"]),
                         ("failed", "error_occurred"), bad)
        self.assertEqual(bad["error"]["message"],
                         "input.below must be an integer from 2 to 1000000")

        # no input: the default, primes below 50, without a limit
        full = self.finished(self.d.create(flow)["id"])
        self.assertEqual((full["status"], full["termination_reason"]),
                         ("succeeded", "completed"), full)
        self.assertEqual(full["result"], {"below": 50, "count": 15, "largest": 47})
        self.assertEqual(full["metrics"]["protocol_errors"], 0)

    def test_python_worker(self):
        self.run_worker("primes_python")

    def test_python_worker_asks_for_approval(self):
        run = self.d.create("primes_python", {"below": 10, "confirm": True})
        paused = self.d.wait_status(run["id"], "paused")
        self.assertEqual(paused["pending_action"]["prompt"], "Look for primes below 10?")
        self.assertEqual(paused["pending_action"]["details"], {"below": 10})
        r = self.d.post("/v1/runs/%s/approve" % run["id"], {"comment": "go"})
        self.assertEqual(r.status, 200, r)
        done = self.finished(run["id"])
        self.assertEqual((done["status"], done["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual(self.numbers(run["id"]), [2, 3, 5, 7])

        run = self.d.create("primes_python", {"below": 10, "confirm": True})
        self.d.wait_status(run["id"], "paused")
        self.assertEqual(self.d.post("/v1/runs/%s/deny" % run["id"], {}).status, 200)
        done = self.finished(run["id"])
        self.assertEqual((done["status"], done["termination_reason"]),
                         ("cancelled", "approval_denied"), done)
        self.assertEqual(self.numbers(run["id"]), [])

    @unittest.skipUnless(shutil.which("node"), "node is not installed (scripts/setup.sh installs "
                         "nodejs)")
    def test_node_worker(self):
        self.run_worker("primes_node")

    @unittest.skipUnless(GO_WORKER, "go is not installed (scripts/setup.sh installs golang-go)")
    def test_go_worker(self):
        self.run_worker("primes_go")

    @unittest.skipUnless(shutil.which("jq"), "jq is not installed (scripts/setup.sh installs it)")
    def test_shell_worker(self):
        self.run_worker("primes_shell")


WRITE_KEY = "write-" + secrets.token_hex(12)


class TestCurlExternalWorker(WorkerChecks, DaemonTest):
    """examples/external/curl-worker.sh, with a write key as a deployment would use."""

    flows = example_flows()
    extra = "[auth]\nkey = admin:%s\n" % WRITE_KEY
    H = {"Authorization": "Bearer " + WRITE_KEY}

    def setUp(self):
        super().setUp()
        self.d.get = lambda path, **kw: self.d.request("GET", path, headers=self.H, **kw)
        self.d.post = lambda path, body=None, **kw: self.d.request(
            "POST", path, body=body if body is not None else {}, headers=self.H, **kw)

    def curl_worker(self, run_id):
        env = dict(os.environ, RUNSD_API_KEY=WRITE_KEY)
        p = subprocess.run([os.path.join(EX, "external", "curl-worker.sh"),
                            "http://127.0.0.1:%d" % self.d.port, run_id],
                           env=env, capture_output=True, text=True, timeout=120)
        return p

    def test_curl_worker_completes_a_run(self):
        r = self.d.post("/v1/runs", {"flow": "primes_external", "input": {"below": 30},
                                     "limit": 4})
        self.assertEqual(r.status, 201, r)
        run = r.json()
        self.assertEqual(run["status"], "queued")  # waits for a worker to attach
        p = self.curl_worker(run["id"])
        self.assertEqual(p.returncode, 0, p.stderr)
        # the run ends as the daemon applies the fourth item, so the progress posted after it
        # in the same batch is not kept (a process worker's is: it gets a grace to finish)
        self.check_limited(self.finished(run["id"]), progress=4)

        r = self.d.post("/v1/runs/%s/extend" % run["id"], {"additional_limit": 100})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "queued")
        p = self.curl_worker(run["id"])
        self.assertEqual(p.returncode, 0, p.stderr)
        done = self.finished(run["id"])
        # The checkpoint after the fourth item came after the end too: the second attempt
        # resumes from the one before (next 6) and sends 7 again, which the daemon drops as
        # already stored; every prime is there once.
        self.check_completed(done, attempts=2, resumed_from=6)
        self.assertEqual(done["metrics"].get("dropped_items", 0), 0, done["metrics"])
        self.assertEqual(status_trail(self.d, run["id"])[-3:], [
            ("succeeded", "queued", None), ("queued", "running", None),
            ("running", "succeeded", "completed")])

        # a finished run cannot be attached to: the worker says so and fails
        p = self.curl_worker(run["id"])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no start message", p.stderr)
        # and without the key the daemon refuses it
        env = dict(os.environ)
        env.pop("RUNSD_API_KEY", None)
        r = self.d.post("/v1/runs", {"flow": "primes_external"})
        q = subprocess.run([os.path.join(EX, "external", "curl-worker.sh"),
                            "http://127.0.0.1:%d" % self.d.port, r.json()["id"]],
                           env=env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(q.returncode, 0)
        self.assertIn("401", q.stderr)
        self.assertEqual(self.d.get("/v1/runs/" + r.json()["id"]).json()["status"], "queued")


# ---- webhook receivers ---------------------------------------------------------------------

NODE_DIR = os.path.join(BUILD, "examples", "webhooks-node")


def node_modules():
    """Installs the Node receiver's locked dependencies into build/ once; its node_modules."""
    src = os.path.join(EX, "webhooks", "node")
    with open(os.path.join(src, "package-lock.json"), "rb") as f:
        lock = f.read()
    done = os.path.join(NODE_DIR, "package-lock.json")
    if os.path.exists(done) and open(done, "rb").read() == lock and \
            os.path.isdir(os.path.join(NODE_DIR, "node_modules", "standardwebhooks")):
        return os.path.join(NODE_DIR, "node_modules")
    os.makedirs(NODE_DIR, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(src, name), NODE_DIR)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=NODE_DIR,
                   check=True, capture_output=True, timeout=300)
    return os.path.join(NODE_DIR, "node_modules")


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), ts, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class Receiver:
    """One example receiver process on a free loopback port, recording to a file."""

    def __init__(self, argv, secret, tmp, env=None):
        self.record = os.path.join(tmp, "record.jsonl")
        self.errlog = open(os.path.join(tmp, "receiver.err"), "w+")
        self.proc = subprocess.Popen(
            argv + ["0", self.record], stdout=subprocess.PIPE, stderr=self.errlog, text=True,
            env=dict(os.environ, WEBHOOK_SECRET=secret, **(env or {})))
        line = [None]
        reader = threading.Thread(target=lambda: line.__setitem__(0, self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(60)
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line[0] or "")
        if not m:
            self.close()
            raise AssertionError("receiver did not start: %r %s" % (line[0], self.stderr()))
        self.url = "http://127.0.0.1:%s/hook" % m.group(1)

    def stderr(self):
        self.errlog.seek(0)
        return self.errlog.read()

    def records(self):
        try:
            with open(self.record) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def post(self, headers, body):
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers=dict(headers, **{"Content-Type": "application/json"}))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc.stdout.close()
        self.errlog.close()


class TestWebhookReceivers(DaemonTest):
    flows = example_flows()
    extra = "[webhooks]\nallow_private = yes\nretry_schedule = 1s 1s 1s\n"

    def check_receiver(self, argv, env=None):
        secret = new_secret()
        tmp = tempfile.mkdtemp(prefix="runsd-receiver-", dir=self.d.tmp)
        rcv = Receiver(argv, secret, tmp, env)
        try:
            self.deliver_and_tamper(rcv, secret)
        finally:
            rcv.close()

    def deliver_and_tamper(self, rcv, secret):
        # a real delivery: a run with its own webhook to the receiver, run to its end
        run = self.d.create("primes_python", {"below": 12},
                            webhook={"url": rcv.url, "secret": secret})
        self.assertEqual(self.d.wait_status(run["id"], "succeeded")["result"]["count"], 5)
        got = wait_for(lambda: [x for x in rcv.records() if x["verified"]], timeout=30,
                       what="a verified delivery (receiver: %s)" % rcv.stderr())
        self.assertEqual(len(got), 1, rcv.records())
        real = got[0]
        self.assertEqual((real["type"], real["run_id"], real["status"], real["duplicate"]),
                         ("run.succeeded", run["id"], "succeeded", False), real)
        self.assertEqual(rcv.records(), [real], "a refusal before the verified delivery")
        # the daemon saw the receiver's 204
        dl = wait_for(lambda: [x for x in self.d.get("/v1/runs/%s/deliveries" % run["id"])
                               .json()["items"] if x["status"] == "delivered"],
                      what="the delivery marked delivered")
        self.assertEqual(dl[0]["id"], real["webhook_id"])
        self.assertEqual(dl[0]["last_status_code"], 204)

        # a redelivery (same webhook-id) is verified and recognised as a duplicate
        r = self.d.post("/v1/runs/%s/deliveries/%s/redeliver" % (run["id"], dl[0]["id"]), {})
        self.assertEqual(r.status, 202, r)
        wait_for(lambda: len(rcv.records()) == 2, what="the redelivery")
        again = rcv.records()[1]
        self.assertEqual((again["verified"], again["duplicate"], again["webhook_id"]),
                         (True, True, real["webhook_id"]), again)

        # tampered copies of the real delivery are refused (400) and recorded as refused
        body = real["body"].encode()
        hdrs = {"webhook-id": real["webhook_id"], "webhook-timestamp": real["webhook_timestamp"],
                "webhook-signature": real["webhook_signature"]}
        now = int(time.time())
        tampered = body.replace(b'"status":"succeeded"', b'"status":"failed"', 1)
        self.assertNotEqual(tampered, body)
        other = new_secret()
        cases = [
            ("body changed", hdrs, tampered),
            ("another webhook-id", dict(hdrs, **{"webhook-id": "msg_forged"}), body),
            ("signed with another secret",
             dict(hdrs, **{"webhook-signature": sign(other, real["webhook_id"],
                                                     int(real["webhook_timestamp"]), body)}),
             body),
            ("no signature", {k: v for k, v in hdrs.items() if k != "webhook-signature"}, body),
            ("an old timestamp, correctly signed",
             dict(hdrs, **{"webhook-timestamp": str(now - 600),
                           "webhook-signature": sign(secret, real["webhook_id"], now - 600,
                                                     body)}), body),
        ]
        for what, h, b in cases:
            with self.subTest(what):
                before = len(rcv.records())
                self.assertEqual(rcv.post(h, b), 400, what)
                rec = rcv.records()[before]
                self.assertFalse(rec["verified"], rec)
                self.assertTrue(rec["error"], rec)
        # a fresh, correctly signed message of the test's own is accepted: the refusals above
        # were for what was changed, not for being replayed by the test
        ts = now
        msg = b'{"type":"run.succeeded","timestamp":"x","data":{"id":"run_test","status":"succeeded"}}'
        h = {"webhook-id": "msg_test", "webhook-timestamp": str(ts),
             "webhook-signature": "v1,bm90IGl0 " + sign(secret, "msg_test", ts, msg)}
        self.assertEqual(rcv.post(h, msg), 204)
        self.assertTrue(rcv.records()[-1]["verified"], rcv.records()[-1])
        self.assertIn(rcv.proc.poll(), (None,), rcv.stderr())

    def test_python_receiver(self):
        self.check_receiver(["python3", os.path.join(EX, "webhooks", "python", "receiver.py")])

    @unittest.skipUnless(shutil.which("node") and shutil.which("npm"),
                         "node or npm is not installed (scripts/setup.sh installs nodejs, npm)")
    def test_node_receiver(self):
        self.check_receiver(["node", os.path.join(EX, "webhooks", "node", "receiver.js")],
                            env={"NODE_PATH": node_modules()})

    def test_go_receiver(self):
        binary = go_binary("webhooks/go", "receiver-go")
        if not binary:
            self.skipTest("go is not installed (scripts/setup.sh installs golang-go)")
        self.check_receiver([binary])


if __name__ == "__main__":
    unittest.main()
