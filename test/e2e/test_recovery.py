"""Persistence and recovery (SPEC section 6): kill -9 and SIGTERM, then a restart on the same
store and port. Nothing acknowledged is lost; resumable runs resume from their checkpoint."""
import json
import os
import signal
import unittest

from harness import Daemon, testworker_flow, wait_for
from helpers import SSEReader, all_results, events_of, finish, list_runs, status_trail


def without_stream_url(run):
    return {k: v for k, v in run.items() if k != "stream_url"}

FLOWS = (testworker_flow("res", resumable="yes") +
         testworker_flow("nores", resumable="no") +
         "[flow.ext]\nexecutor = external\nresumable = yes\n")
LIMITS = "kill_grace = 500ms\n"


def proc_start(pid):
    """The start time of pid (field 22 of /proc/pid/stat), None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def children_of(ppid):
    """[(pid, start time)] of the direct children of ppid that lead their process group."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid and int(fields[2]) == int(name):
            out.append((int(name), fields[19]))
    return out


class RecoveryTest(unittest.TestCase):
    limits = LIMITS
    flows = FLOWS

    def setUp(self):
        self.orphans = []
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

    def kill9(self):
        """kill -9 the daemon. Its workers live on (own process groups); they are remembered
        and SIGKILLed at tearDown so no test leaves processes behind."""
        self.orphans.extend(children_of(self.d.proc.pid))
        self.d.kill9()

    def restart(self):
        self.d = self.start(self.d)
        return self.d

    def tearDown(self):
        try:
            self.daemons[-1].stop()
        finally:
            for pid, start in self.orphans:
                if proc_start(pid) == start:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass

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
        self.kill9()
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
        self.kill9()
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
        self.kill9()
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
        self.kill9()
        self.restart()
        # The same run, but for stream_url: its token is minted afresh at each read.
        self.assertEqual(without_stream_url(self.d.run(run["id"])), without_stream_url(run))
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
        idem = self.d.post("/v1/runs", {"flow": "res", "start": False},
                           headers={"Idempotency-Key": "survivor"})
        self.assertEqual(idem.status, 201)
        self.kill9()
        self.restart()
        self.assertEqual(self.d.run(a["id"])["status"], "created")
        self.assertEqual(self.d.run(b["id"])["status"], "cancelled")
        self.assertEqual(self.d.run(b["id"])["termination_reason"], "user_cancelled")
        # the idempotency key outlives the process
        again = self.d.post("/v1/runs", {"flow": "res", "start": False},
                            headers={"Idempotency-Key": "survivor"})
        self.assertEqual(again.json()["id"], idem.json()["id"])
        self.assertEqual(again.headers.get("idempotent-replayed"), "true")
        # a created run loaded from the store can be started
        self.assertEqual(self.d.post("/v1/runs/%s/start" % a["id"]).status, 202)
        done = finish(self.d, a["id"])
        self.assertEqual((done["status"], done["counts"]["items"]), ("succeeded", 1))

    def test_cancelling_run_ends_cancelled_after_kill9(self):
        run = self.d.create("res", {"sleep": 30, "ignore_term": True})
        self.d.wait_status(run["id"], "running")
        r = self.d.request("DELETE", "/v1/runs/" + run["id"])
        self.assertEqual(r.status, 202)
        self.assertEqual(r.json()["status"], "cancelling")
        self.kill9()  # inside the 500 ms grace: the store says cancelling
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]),
                         ("cancelled", "user_cancelled"), done)


class TestKill9External(RecoveryTest):
    def test_external_run_resumes_with_cursor(self):
        run = self.d.create("ext", {})
        body = "\n".join(json.dumps(m) for m in (
            {"type": "item", "data": {"i": 0}}, {"type": "checkpoint", "cursor": {"next": 1}},
            {"type": "item", "data": {"i": 1}}, {"type": "checkpoint", "cursor": {"next": 2}}))
        r = self.d.request("POST", "/v1/runs/%s/events" % run["id"], body=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["run"]["status"], "running")
        self.kill9()
        self.restart()
        # back in the queue, waiting for a remote worker
        self.assertEqual(self.d.run(run["id"])["status"], "queued")
        sse = SSEReader(self.d.port, "/v1/runs/%s/control" % run["id"])
        try:
            start = json.loads(sse.next_event()["data"])
            self.assertEqual(start["run"]["attempt"], 2)
            self.assertEqual(start["run"]["cursor"], {"next": 2})
            r = self.d.request("POST", "/v1/runs/%s/events" % run["id"], body="\n".join(
                json.dumps(m) for m in ({"type": "item", "data": {"i": 2}}, {"type": "done"})))
            self.assertEqual(r.json()["run"]["status"], "succeeded", r)
        finally:
            sse.close()
        self.check_exactly_once(run["id"], 3)


class TestKill9Queued(RecoveryTest):
    limits = LIMITS + "max_running = 1\n"

    def test_queued_run_survives_and_runs(self):
        blocker = self.d.create("nores", {"sleep": 30})
        self.d.wait_status(blocker["id"], "running")
        queued = [self.d.create("nores", {"items": 3}), self.d.create("res", {"items": 2})]
        for q in queued:
            self.assertEqual(self.d.run(q["id"])["status"], "queued")
        self.kill9()
        self.restart()
        b = finish(self.d, blocker["id"])
        self.assertEqual((b["status"], b["termination_reason"]), ("crashed", "interrupted"))
        for q, n in zip(queued, (3, 2)):
            done = finish(self.d, q["id"])
            self.assertEqual((done["status"], done["termination_reason"]),
                             ("succeeded", "completed"), done)
            self.assertEqual(done["attempt"], 1)
            self.check_exactly_once(q["id"], n)

    def test_queue_order_kept_across_restart(self):
        blocker = self.d.create("nores", {"sleep": 30})
        self.d.wait_status(blocker["id"], "running")
        # created back to back: several share a created_at millisecond
        queued = [self.d.create(("res", "nores")[k % 2], {}, metadata={"n": k})
                  for k in range(16)]
        self.kill9()
        self.restart()
        runs = [finish(self.d, q["id"]) for q in queued]
        self.assertTrue(all(r["status"] == "succeeded" for r in runs))
        by_start = sorted(runs, key=lambda r: r["started_at"])
        self.assertEqual([r["metadata"]["n"] for r in by_start], list(range(16)),
                         "queued runs did not start in creation (FIFO) order after a restart")


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


class TestKill9Answers(RecoveryTest):
    """Defects the crash soak found (test/soak): each of these failed before its fix."""

    def test_answer_to_a_live_worker_survives_kill9(self):
        # The approval reaches the live worker and the reply says so; a kill right after must
        # not make the restarted worker ask again (its repeated question gets the stored answer).
        run = self.d.create("res", {"approval": "Go?", "items": 3, "sleep_after_items": 30,
                                    "sleep_attempt": 1})
        self.d.wait_status(run["id"], "paused")
        r = self.d.post("/v1/runs/%s/approve" % run["id"])
        self.assertEqual(r.status, 200, r)
        self.kill9()
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]), ("succeeded", "completed"),
                         done)
        self.assertEqual(len(events_of(self.d, run["id"], "run.approval_required")), 1)

    def test_denied_while_cancelling_stays_denied(self):
        # The worker ignores SIGTERM, so the run stays cancelling until the kill.
        run = self.d.create("res", {"approval": "Go?", "ignore_term": True})
        self.d.wait_status(run["id"], "paused")
        r = self.d.post("/v1/runs/%s/deny" % run["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.d.run(run["id"])["status"], "cancelling")
        self.kill9()
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]),
                         ("cancelled", "approval_denied"), done)

    def test_items_after_the_last_checkpoint_are_not_stored_twice(self):
        # No checkpoint at all: the resumed worker starts over and sends the same items again.
        run = self.d.create("res", {"items": 5, "sleep_after_items": 30, "sleep_attempt": 1})
        self.wait_items(run["id"], 5)
        self.kill9()
        self.restart()
        done = finish(self.d, run["id"])
        self.assertEqual(done["status"], "succeeded", done)
        self.assertEqual(done["counts"]["items"], 5)
        self.check_exactly_once(run["id"], 5)
