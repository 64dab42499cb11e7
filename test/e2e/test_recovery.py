"""Persistence and recovery (SPEC section 6): kill -9 and SIGTERM, then a restart on the same
store and port. Nothing acknowledged is lost; resumable runs resume from their checkpoint."""
import unittest

from harness import Daemon, testworker_flow, wait_for
from helpers import all_results, events_of, finish, list_runs, status_trail

FLOWS = (testworker_flow("res", resumable="yes") +
         testworker_flow("nores", resumable="no"))
LIMITS = "kill_grace = 500ms\n"


class RecoveryTest(__import__("unittest").TestCase):
    limits = LIMITS
    flows = FLOWS

    def setUp(self):
        self.daemons = []
        self.d = self.start()

    def start(self, old=None):
        if old is None:
            d = Daemon(flows=self.flows, limits=self.limits)
        else:
            d = Daemon(flows=self.flows, limits=self.limits, store_path=old.store, tmp=old.tmp)
            d.port = old.port
        self.daemons.append(d)
        return d.start()

    def restart(self):
        self.d = self.start(self.d)
        return self.d

    def tearDown(self):
        self.daemons[-1].stop()

    def wait_items(self, run_id, n):
        return wait_for(lambda: (lambda r: r if r["counts"]["items"] >= n else None)(
            self.d.run(run_id)), what="%d items" % n)

    def check_exactly_once(self, run_id, n):
        res = all_results(self.d, run_id)
        self.assertEqual([it["seq"] for it in res], list(range(1, n + 1)))
        self.assertEqual([it["data"]["i"] for it in res], list(range(n)),
                         "items lost or duplicated across the restart")
        items = events_of(self.d, run_id, "run.item")
        self.assertEqual([e["data"]["seq"] for e in items], list(range(1, n + 1)))


class TestKill9(RecoveryTest):
    def test_resumable_run_resumes_from_checkpoint(self):
        n = 30
        run = self.d.create("res", {"items": n, "checkpoint": True, "item_delay": 0.05})
        mid = self.wait_items(run["id"], 8)
        self.assertLess(mid["counts"]["items"], n)
        self.assertEqual(mid["attempt"], 1)
        self.d.kill9()
        self.restart()
        after = self.d.run(run["id"])
        self.assertIn(after["status"], ("queued", "running", "succeeded"), after)
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]), ("succeeded", "completed"),
                         done)
        self.assertEqual(done["attempt"], 2)
        self.assertEqual(done["counts"]["items"], n)
        self.check_exactly_once(run["id"], n)
        trail = [s for _, s, _ in status_trail(self.d, run["id"])]
        self.assertEqual(trail, ["queued", "running", "queued", "running", "succeeded"])
        ids = [e["id"] for e in self.d.events(run["id"])]
        self.assertEqual(ids, sorted(set(ids)))

    def test_resumed_worker_gets_cursor(self):
        run = self.d.create("res", {"items": 40, "checkpoint": True, "item_delay": 0.05,
                                    "echo_start": True})
        self.wait_items(run["id"], 5)
        self.d.kill9()
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual(done["status"], "succeeded", done)
        import json
        starts = [json.loads(e["data"]["message"]) for e in events_of(self.d, run["id"], "run.log")
                  if e["data"].get("source") == "worker" and e["data"]["message"].startswith("{")]
        self.assertEqual([s["attempt"] for s in starts], [1, 2])
        self.assertIsNone(starts[0]["cursor"])
        self.assertIsInstance(starts[1]["cursor"], dict)
        self.assertGreaterEqual(starts[1]["cursor"]["next"], 5)
        self.check_exactly_once(run["id"], 40)

    def test_non_resumable_run_is_interrupted(self):
        run = self.d.create("nores", {"items": 100, "item_delay": 0.05})
        self.wait_items(run["id"], 2)
        self.d.kill9()
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]), ("crashed", "interrupted"),
                         done)
        self.assertIsInstance(done["error"], dict)
        self.assertEqual(done["attempt"], 1)
        self.assertGreaterEqual(done["counts"]["items"], 2)
        self.assertEqual(events_of(self.d, run["id"])[-1]["type"], "run.end")
        self.assertEqual(len(all_results(self.d, run["id"])), done["counts"]["items"])

    def test_completed_run_survives_kill9(self):
        run = finish(self.d, self.d.create("nores", {"items": 120, "steps": ["s"],
                                                     "result": {"r": 1}})["id"])
        self.assertEqual(run["status"], "succeeded")
        created = self.d.create("res", {}, start=False)
        events = self.d.events(run["id"])
        results = all_results(self.d, run["id"])
        listing = list_runs(self.d, "?page_size=100")
        self.d.kill9()
        self.restart()
        self.assertEqual(self.d.run(run["id"]), run)
        self.assertEqual(self.d.events(run["id"]), events)
        self.assertEqual(all_results(self.d, run["id"]), results)
        self.assertEqual(len(results), 120)
        self.assertEqual(self.d.run(created["id"])["status"], "created")
        self.assertEqual(list_runs(self.d, "?page_size=100")["total"], listing["total"])
        # event ids keep increasing after the restart
        nxt = finish(self.d, self.d.create("res", {"items": 1})["id"])
        new_ids = [e["id"] for e in self.d.events(nxt["id"])]
        self.assertGreater(min(new_ids), events[-1]["id"])

    def test_acknowledged_create_and_cancel_survive(self):
        # every reply that said 201/202 is durable at once, even with no wait in between
        a = self.d.create("res", {"items": 1}, start=False)
        b = self.d.create("res", {"items": 1}, start=False)
        self.assertEqual(self.d.request("DELETE", "/v1/runs/" + b["id"]).status, 202)
        self.d.kill9()
        self.restart()
        self.assertEqual(self.d.run(a["id"])["status"], "created")
        self.assertEqual(self.d.run(b["id"])["status"], "cancelled")
        self.assertEqual(self.d.run(b["id"])["termination_reason"], "user_cancelled")


class TestKill9Queued(RecoveryTest):
    limits = LIMITS + "max_running = 1\n"

    def test_queued_run_survives_and_runs(self):
        blocker = self.d.create("nores", {"sleep": 30})
        self.d.wait_status(blocker["id"], "running")
        queued = [self.d.create("nores", {"items": 3}), self.d.create("res", {"items": 2})]
        for q in queued:
            self.assertEqual(self.d.run(q["id"])["status"], "queued")
        self.d.kill9()
        self.restart()
        b = finish(self.d, blocker["id"])
        self.assertEqual((b["status"], b["termination_reason"]), ("crashed", "interrupted"))
        for q, n in zip(queued, (3, 2)):
            done = finish(self.d, q["id"])
            self.assertEqual((done["status"], done["termination_reason"]),
                             ("succeeded", "completed"), done)
            self.assertEqual(done["attempt"], 1)
            self.check_exactly_once(q["id"], n)
        # FIFO kept across the restart
        self.assertLessEqual(self.d.run(queued[0]["id"])["started_at"],
                             self.d.run(queued[1]["id"])["started_at"])


class TestGracefulStop(RecoveryTest):
    def test_sigterm_then_resume(self):
        n = 30
        run = self.d.create("res", {"items": n, "checkpoint": True, "item_delay": 0.05})
        other = self.d.create("nores", {"sleep": 30})
        self.wait_items(run["id"], 5)
        self.d.wait_status(other["id"], "running")
        self.d.stop()  # asserts exit 0
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]), ("succeeded", "completed"),
                         done)
        self.assertEqual(done["attempt"], 2)
        self.check_exactly_once(run["id"], n)
        o = self.d.run(other["id"])
        self.assertEqual((o["status"], o["termination_reason"]), ("crashed", "interrupted"), o)

    def test_sigterm_with_worker_ignoring_term(self):
        run = self.d.create("res", {"items": 20, "checkpoint": True, "item_delay": 0.05,
                                    "ignore_term": True})
        self.wait_items(run["id"], 3)
        self.d.stop()  # the worker is SIGKILLed after kill_grace; still exit 0
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual(done["status"], "succeeded", done)
        self.check_exactly_once(run["id"], 20)


if __name__ == "__main__":
    unittest.main()
