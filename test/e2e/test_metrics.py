"""GET /metrics end to end (docs/metrics.md): a daemon does one thing of each kind, and each
family moves as it should between two scrapes (exact deltas where the work is determined);
the scrape passes `promtool check metrics` (skipped, saying so, only when promtool is absent:
scripts/setup.sh installs Debian's prometheus package, which ships it)."""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from harness import Daemon, testworker_flow, wait_for
from helpers import SSEReader, finish
from test_webhooks import Receiver

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """{(name, ((label, value), ...)): float} and {family: (type, help)}, checking that every
    sample belongs to a family with HELP and TYPE."""
    samples, fams, helps = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, h = line[7:].partition(" ")
            helps[name] = h
        elif line.startswith("# TYPE "):
            name, _, t = line[7:].partition(" ")
            fams[name] = (t, helps.get(name))
        elif line:
            m = SAMPLE.match(line)
            assert m, "malformed sample line: %r" % line
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples, fams


def key(name, **labels):
    return (name, tuple(sorted(labels.items())))


FLOWS = (testworker_flow("a") + testworker_flow("one", concurrency=1) +
         "[flow.missing]\ncommand = /nonexistent/worker --flag\n")


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-metrics-")
        self.rx = Receiver(self.tmp, script={"/hook": [{"status": 500}, {"status": 200}]}).start()
        self.d = Daemon(flows=FLOWS, tmp=self.tmp,
                        extra="[webhooks]\nretry_schedule = 200ms\nallow_private = yes\n").start()

    def tearDown(self):
        try:
            self.d.stop()
        finally:
            self.rx.stop()

    def scrape(self):
        r = self.d.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"))
        self.text = r.body.decode()
        samples, fams = parse(self.text)
        for name, (t, h) in fams.items():
            self.assertTrue(h, "family %s has no HELP" % name)
        for (name, _labels) in samples:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            self.assertTrue(name in fams or (base in fams and fams[base][0] == "histogram"),
                            "sample %s without # TYPE" % name)
        return samples

    def delta(self, before, after, name, **labels):
        k = key(name, **labels)
        self.assertIn(k, after, "%s%r not exposed" % (name, labels))
        return after[k] - before.get(k, 0.0)

    def test_every_family_moves(self):
        d = self.d
        before = self.scrape()
        for fam in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                    "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                    "process_start_time_seconds"):
            self.assertIn(key(fam), before)
        self.assertGreater(before[key("process_open_fds")], 0)
        self.assertGreater(before[key("process_start_time_seconds")], time.time() - 600)
        build = [k for k in before if k[0] == "runsd_build_info"]
        self.assertEqual(len(build), 1)
        self.assertIn("version", dict(build[0][1]))
        self.assertEqual(before[build[0]], 1)

        # One run of each outcome.
        ok = d.create("a", {"items": 2}, webhook={"url": self.rx.url()})
        bad = d.create("a", {"error": "boom"})
        paused = d.create("a", {"approval": "ok?"})
        cancel = d.create("a", {"sleep": 30})
        spawn = d.create("missing", {})
        # Concurrency 1: the second run of "one" waits in the queue behind the first.
        first = d.create("one", {"sleep": 1})
        second = d.create("one", {})
        d.wait_status(first["id"], "running")
        self.assertEqual(d.run(second["id"])["status"], "queued")
        # An event stream that the client leaves, and one the run's end closes.
        leaver = SSEReader(d.port, "/v1/events")
        self.assertEqual(leaver.status, 200)
        ender = SSEReader(d.port, "/v1/runs/%s/events" % second["id"])
        wait_for(lambda: self.scrape()[key("runsd_sse_subscribers")] == 2, what="2 subscribers")
        d.wait_status(paused["id"], "paused")
        d.wait_status(cancel["id"], "running")
        mid = self.scrape()
        self.assertEqual(mid[key("runsd_runs", flow="one", status="queued")], 1)
        self.assertEqual(mid[key("runsd_runs", flow="one", status="running")], 1)
        self.assertEqual(mid[key("runsd_runs", flow="a", status="paused")], 1)
        self.assertEqual(mid[key("runsd_runs_waiting_for_person", flow="a", action="approval")], 1)
        self.assertEqual(mid[key("runsd_runs_waiting_for_person", flow="a",
                                 action="authorization")], 0)
        leaver.close()
        self.assertEqual(d.post("/v1/runs/%s/cancel" % cancel["id"]).status, 202)
        for run, status in ((ok, "succeeded"), (bad, "failed"), (cancel, "cancelled"),
                            (spawn, "crashed"), (first, "succeeded"), (second, "succeeded")):
            self.assertEqual(finish(d, run["id"])["status"], status)
        self.assertTrue(ender.wait_eof(), "the run's stream did not end with the run")
        ender.close()
        # Routes are patterns, never raw paths; a miss is "unmatched".
        self.assertEqual(d.get("/no/such/path").status, 404)
        self.assertEqual(d.get("/v1/runs/run_doesnotexist").status, 404)
        self.assertEqual(d.post("/v1/runs", {"flow": "nope"}).status, 422)
        # The webhook was refused once (500), then accepted.
        wait_for(lambda: len(self.rx.requests("/hook")) >= 2, what="the webhook retry")
        wait_for(lambda: self.scrape()[key("runsd_webhook_outcomes_total",
                                           outcome="delivered")] >= 1, what="delivery counted")
        wait_for(lambda: self.scrape()[key("runsd_sse_subscribers")] == 0, what="no subscriber")
        wait_for(lambda: self.scrape()[key("runsd_webhook_backlog")] == 0, what="no backlog")

        after = self.scrape()
        dl = lambda name, **lb: self.delta(before, after, name, **lb)
        # Runs
        self.assertEqual(dl("runsd_runs_created_total"), 7)
        for flow, status, reason, n in (("a", "succeeded", "completed", 1),
                                        ("a", "failed", "error_occurred", 1),
                                        ("a", "cancelled", "user_cancelled", 1),
                                        ("missing", "crashed", "spawn_failed", 1),
                                        ("one", "succeeded", "completed", 2)):
            self.assertEqual(dl("runsd_runs_finished_total", flow=flow, status=status,
                                reason=reason), n, (flow, status, reason))
        self.assertEqual(dl("runsd_spawn_failures_total", flow="missing"), 1)
        self.assertEqual(dl("runsd_run_queue_wait_seconds_count", flow="one"), 2)
        self.assertEqual(dl("runsd_run_queue_wait_seconds_count", flow="a"), 4)
        # The second run of "one" waited for the first (sleep 1): at least about a second.
        self.assertGreater(dl("runsd_run_queue_wait_seconds_sum", flow="one"), 0.5)
        self.assertEqual(dl("runsd_run_queue_wait_seconds_bucket", flow="one", le="+Inf"), 2)
        self.assertEqual(dl("runsd_run_duration_seconds_count", flow="a", status="succeeded"), 1)
        self.assertEqual(dl("runsd_run_duration_seconds_count", flow="a", status="failed"), 1)
        self.assertEqual(dl("runsd_run_duration_seconds_count", flow="a", status="cancelled"), 1)
        self.assertEqual(dl("runsd_run_duration_seconds_count", flow="one", status="succeeded"), 2)
        self.assertEqual(after[key("runsd_runs", flow="a", status="paused")], 1)
        self.assertEqual(after[key("runsd_runs", flow="one", status="queued")], 0)
        self.assertEqual(after[key("runsd_runs_waiting_for_person", flow="a",
                                   action="approval")], 1)
        self.assertGreaterEqual(dl("runsd_items_total"), 2)
        self.assertGreater(dl("runsd_events_total"), 0)
        # HTTP
        self.assertEqual(dl("runsd_http_requests_total", route="/v1/runs", method="POST",
                            code="201"), 7)
        self.assertEqual(dl("runsd_http_requests_total", route="/v1/runs", method="POST",
                            code="422"), 1)
        self.assertEqual(dl("runsd_http_requests_total", route="unmatched", method="GET",
                            code="404"), 1)
        self.assertEqual(dl("runsd_http_requests_total", route="/v1/runs/{id}", method="GET",
                            code="404"), 1)
        self.assertEqual(dl("runsd_http_requests_total", route="/v1/runs/{id}/cancel",
                            method="POST", code="202"), 1)
        self.assertEqual(dl("runsd_http_requests_total", route="/v1/events", method="GET",
                            code="200"), 1)
        self.assertEqual(dl("runsd_http_requests_total", route="/v1/runs/{id}/events",
                            method="GET", code="200"), 1)
        self.assertGreaterEqual(dl("runsd_http_request_duration_seconds_count",
                                   route="/v1/runs"), 8)
        self.assertNotIn("run_doesnotexist", self.text)
        self.assertNotIn("/no/such/path", self.text)
        # SSE
        self.assertEqual(dl("runsd_sse_disconnects_total", cause="client"), 1)
        self.assertEqual(dl("runsd_sse_disconnects_total", cause="run_end"), 1)
        self.assertEqual(after[key("runsd_sse_subscribers")], 0)
        # Webhooks
        self.assertEqual(dl("runsd_webhook_attempts_total"), 2)
        self.assertEqual(dl("runsd_webhook_outcomes_total", outcome="retry"), 1)
        self.assertEqual(dl("runsd_webhook_outcomes_total", outcome="delivered"), 1)
        self.assertEqual(dl("runsd_webhook_attempt_duration_seconds_count", outcome="retry"), 1)
        self.assertEqual(dl("runsd_webhook_attempt_duration_seconds_count",
                            outcome="delivered"), 1)
        # The backlog gauge: nothing waited before, nothing after (the wait above; it is
        # counted at most once a second). test_webhooks.py follows its rise and fall.
        self.assertEqual(before[key("runsd_webhook_backlog")], 0)
        self.assertEqual(after[key("runsd_webhook_backlog")], 0)
        # Store
        self.assertGreater(dl("runsd_store_commit_duration_seconds_count"), 0)
        self.assertGreater(dl("runsd_store_commits_total"), 0)
        # Counters never went down.
        for k, v in before.items():
            if k[0].endswith("_total") or k[0].endswith("_count") or k[0].endswith("_bucket"):
                self.assertGreaterEqual(after.get(k, 0), v, k)
        self.promtool(self.text)
        d.post("/v1/runs/%s/cancel" % paused["id"])

    def promtool(self, text):
        tool = shutil.which("promtool")
        if not tool:
            sys.stderr.write("\nSKIPPED the promtool check: promtool is not installed "
                             "(scripts/setup.sh installs Debian's prometheus package)\n")
            return
        p = subprocess.run([tool, "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual((p.returncode, p.stdout.decode()), (0, ""),
                         "promtool check metrics found problems")


if __name__ == "__main__":
    unittest.main()
