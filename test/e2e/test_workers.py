"""Misbehaving workers (SPEC section 2): protocol errors, over-long lines, stderr floods,
spawn failures. None of it may hurt the daemon or another run."""
import unittest

from harness import DaemonTest, testworker_flow
from helpers import all_results, events_of, finish

FLOWS = (testworker_flow("test") +
         "[flow.missing]\ncommand = /nonexistent/worker --x\n")


class TestWorkerAbuse(DaemonTest):
    flows = FLOWS
    limits = "kill_grace = 500ms\nmax_line = 4096\nmax_stderr_lines = 100\n"

    def logs(self, run_id, source=None):
        return [e["data"] for e in events_of(self.d, run_id, "run.log")
                if source is None or e["data"].get("source") == source]

    def test_garbage_lines(self):
        run = finish(self.d, self.d.create("test", {"garbage": True, "items": 2})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"),
                         run)
        self.assertEqual(run["metrics"]["protocol_errors"], 4, run["metrics"])
        self.assertEqual(run["counts"]["items"], 2)
        proto = self.logs(run["id"], "protocol")
        self.assertEqual(len(proto), 4, proto)
        self.assertTrue(all(p["level"] in ("warn", "error") for p in proto), proto)
        self.assertTrue(all(p["message"] for p in proto))
        self.assertEqual([it["data"] for it in all_results(self.d, run["id"])],
                         [{"i": 0}, {"i": 1}])

    def test_long_line_dropped(self):
        run = finish(self.d, self.d.create("test", {"long_line": 10000, "items": 2})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"),
                         run)
        self.assertEqual(run["metrics"]["protocol_errors"], 1, run["metrics"])
        # the over-long item was not kept; the lines after it were read normally
        self.assertEqual(run["counts"]["items"], 2)
        self.assertEqual([it["data"] for it in all_results(self.d, run["id"])],
                         [{"i": 0}, {"i": 1}])
        proto = self.logs(run["id"], "protocol")
        self.assertEqual(len(proto), 1, proto)
        self.assertIn("max_line", proto[0]["message"])

    def test_line_just_under_max_line_kept(self):
        run = finish(self.d, self.d.create("test", {"long_line": 4000})["id"])
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual(run["metrics"]["protocol_errors"], 0, run["metrics"])
        self.assertEqual(run["counts"]["items"], 1)
        self.assertEqual(len(all_results(self.d, run["id"])[0]["data"]["pad"]), 4000 - 33)

    def test_very_long_line_many_times_max(self):
        run = finish(self.d, self.d.create("test", {"long_line": 3 * 1024 * 1024,
                                                    "items": 1})["id"], timeout=60)
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual(run["metrics"]["protocol_errors"], 1, run["metrics"])
        self.assertEqual(run["counts"]["items"], 1)

    def test_stderr_flood_bounded(self):
        run = finish(self.d, self.d.create("test", {"flood_stderr": 5000, "items": 1})["id"],
                     timeout=60)
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"),
                         run)
        err = self.logs(run["id"], "stderr")
        self.assertGreaterEqual(len(err), 100)
        self.assertLessEqual(len(err), 101, "stderr is not bounded: %d run.log events" % len(err))
        self.assertIn("testworker stderr line 0", err[0]["message"])
        self.assertEqual(run["counts"]["items"], 1)
        self.assertLess(len(events_of(self.d, run["id"])), 200)

    def test_spawn_failure_and_parallel_run_unaffected(self):
        other = self.d.create("test", {"items": 3, "item_delay": 0.05})
        bad = finish(self.d, self.d.create("missing", {})["id"])
        self.assertEqual((bad["status"], bad["termination_reason"]), ("crashed", "spawn_failed"),
                         bad)
        self.assertIsInstance(bad["error"], dict)
        self.assertIn("/nonexistent/worker", bad["error"]["message"])
        self.assertEqual(events_of(self.d, bad["id"])[-1]["type"], "run.end")
        good = finish(self.d, other["id"])
        self.assertEqual((good["status"], good["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual(good["counts"]["items"], 3)
        # the slot of the failed spawn was not leaked
        again = finish(self.d, self.d.create("test", {"items": 1})["id"])
        self.assertEqual(again["status"], "succeeded")
        r = self.d.get("/metrics")
        self.assertIn(b"runsd_spawn_failures_total 1", r.body)

    def test_abuse_in_parallel_does_not_disturb_a_clean_run(self):
        clean = self.d.create("test", {"items": 20, "item_delay": 0.02, "checkpoint": True})
        noisy = [self.d.create("test", {"garbage": True, "flood_stderr": 2000,
                                        "long_line": 20000, "crash": True}),
                 self.d.create("test", {"items": 50, "exit": 9}),
                 self.d.create("missing", {})]
        for r in noisy:
            finish(self.d, r["id"], timeout=60)
        good = finish(self.d, clean["id"])
        self.assertEqual((good["status"], good["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual([it["data"]["i"] for it in all_results(self.d, clean["id"])],
                         list(range(20)))
        self.assertEqual(good["metrics"]["protocol_errors"], 0)
        self.assertEqual(self.d.run(noisy[0]["id"])["status"], "crashed")
        self.assertEqual(self.d.run(noisy[1]["id"])["status"], "failed")

    def test_worker_environment_and_start_message(self):
        run = finish(self.d, self.d.create("test", {"echo_start": True, "echo_proc": True},
                                           limit=7, metadata={"m": 1})["id"])
        import json
        logs = [e["message"] for e in self.logs(run["id"], "worker")]
        start = json.loads(logs[0])
        self.assertEqual(start["id"], run["id"])
        self.assertEqual(start["flow"], "test")
        self.assertEqual(start["limit"], 7)
        self.assertEqual(start["attempt"], 1)
        self.assertEqual(start["metadata"], {"m": 1})
        self.assertIsNone(start["cursor"])
        self.assertEqual(start["input"], {"echo_start": True, "echo_proc": True})
        proc = json.loads(logs[1][len("proc:"):])
        self.assertEqual(proc["pgid"], proc["pid"], "worker not in its own process group")
        self.assertEqual(proc["fds"], [0, 1, 2], "worker inherited extra fds")


if __name__ == "__main__":
    unittest.main()
