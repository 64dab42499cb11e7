"""Run lifecycle end to end (SPEC sections 1-3): success, failures, cancel, start,
idempotent create, ?wait=N, and the scheduler's limits."""
import socket
import time
import unittest

from harness import DaemonTest, testworker_flow, wait_for
from helpers import (RFC3339, TERMINAL, all_results, assert_error, events_of, finish,
                     list_runs, parse_time, status_trail)

FAST_LIMITS = "kill_grace = 500ms\n"


class TestSuccess(DaemonTest):
    limits = FAST_LIMITS

    def test_full_lifecycle_fields_results_and_events(self):
        inp = {"steps": ["fetch", "parse"], "items": 5, "progress": True,
               "item_delay": 0.05, "result": {"total": 5, "ok": True}}
        run = self.d.create("test", inp, metadata={"who": "e2e"})
        self.assertTrue(run["id"].startswith("run_"), run)
        self.assertIn(run["status"], ("queued", "running"))
        self.assertTrue(run["is_active"])
        self.assertIsNone(run["termination_reason"])
        self.assertEqual(run["flow"], "test")
        self.assertEqual(run["input"], inp)
        self.assertEqual(run["metadata"], {"who": "e2e"})
        self.assertTrue(RFC3339.match(run["created_at"]), run["created_at"])

        # it is seen running with items arriving
        running = wait_for(lambda: (lambda r: r if r["status"] == "running" and
                                    r["counts"]["items"] >= 1 else None)(self.d.run(run["id"])),
                           what="running with items")
        self.assertTrue(running["is_active"])
        self.assertEqual(running["attempt"], 1)
        self.assertTrue(RFC3339.match(running["started_at"]))
        self.assertIsNone(running["finished_at"])

        done = finish(self.d, run["id"])
        self.assertEqual(done["status"], "succeeded", done)
        self.assertEqual(done["termination_reason"], "completed")
        self.assertFalse(done["is_active"])
        self.assertEqual(done["attempt"], 1)
        self.assertEqual(done["counts"]["items"], 5)
        self.assertEqual(done["counts"]["item_errors"], 0)
        self.assertEqual([s["name"] for s in done["steps"]], ["fetch", "parse"])
        self.assertTrue(all(s["state"] == "finished" for s in done["steps"]), done["steps"])
        self.assertEqual(done["steps_finished"], 2)
        self.assertEqual(done["progress"]["done"], 5)
        self.assertEqual(done["progress"]["total"], 5)
        self.assertEqual(done["result"], {"total": 5, "ok": True})
        self.assertIsNone(done["error"])
        for k in ("created_at", "started_at", "finished_at", "updated_at"):
            self.assertTrue(RFC3339.match(done[k] or ""), (k, done[k]))
        self.assertLessEqual(parse_time(done["created_at"]), parse_time(done["started_at"]))
        self.assertLessEqual(parse_time(done["started_at"]), parse_time(done["finished_at"]))
        m = done["metrics"]
        for k in ("cpu_user_ms", "cpu_sys_ms", "peak_rss_kb", "duration_ms"):
            self.assertIsInstance(m[k], int, (k, m))
            self.assertGreaterEqual(m[k], 0, (k, m))
        self.assertGreater(m["peak_rss_kb"], 0, m)
        self.assertGreater(m["cpu_user_ms"] + m["cpu_sys_ms"], 0, m)
        self.assertGreaterEqual(m["duration_ms"], 200, m)  # 5 items x 50 ms
        self.assertEqual(m["protocol_errors"], 0)
        self.assertEqual(m["dropped_items"], 0)

        # results: seq 1..5 in order, data as the worker sent it
        r = self.d.get("/v1/runs/%s/results" % run["id"])
        self.assertEqual(r.status, 200, r)
        page = r.json()
        self.assertEqual(page["total"], 5)
        self.assertFalse(page["has_more"])
        self.assertEqual([it["seq"] for it in page["items"]], [1, 2, 3, 4, 5])
        self.assertEqual([it["data"] for it in page["items"]], [{"i": k} for k in range(5)])
        self.assertTrue(all(it["status"] == "ok" for it in page["items"]))

        # the event log
        evs = self.d.events(run["id"])
        ids = [e["id"] for e in evs]
        self.assertEqual(ids, sorted(set(ids)), "event ids not strictly increasing")
        self.assertTrue(all(e["run_id"] == run["id"] for e in evs))
        self.assertTrue(all(RFC3339.match(e["timestamp"]) for e in evs))
        types = [e["type"] for e in evs]
        self.assertEqual(types[0], "run.created")
        self.assertEqual(types[-1], "run.end")
        self.assertEqual(evs[0]["data"]["run"]["id"], run["id"])
        self.assertEqual(status_trail(self.d, run["id"]), [
            ("created", "queued", None), ("queued", "running", None),
            ("running", "succeeded", "completed")])
        items = [e for e in evs if e["type"] == "run.item"]
        self.assertEqual([e["data"]["seq"] for e in items], [1, 2, 3, 4, 5])
        self.assertEqual([e["data"]["data"] for e in items], [{"i": k} for k in range(5)])
        self.assertEqual(len([e for e in evs if e["type"] == "run.step"]), 4)
        self.assertGreaterEqual(len([e for e in evs if e["type"] == "run.progress"]), 1)
        self.assertEqual([e["data"]["data"] for e in evs if e["type"] == "run.result"],
                         [{"total": 5, "ok": True}])
        end = evs[-1]["data"]["run"]
        self.assertEqual(end["id"], run["id"])
        self.assertEqual(end["status"], "succeeded")
        self.assertEqual(end["termination_reason"], "completed")
        self.assertEqual(end["counts"]["items"], 5)
        self.assertEqual(done["last_event_id"], evs[-1]["id"])
        # the item events come between running and the end
        i_running = [i for i, e in enumerate(evs) if e["type"] == "run.status"
                     and e["data"]["status"] == "running"][0]
        i_items = [i for i, e in enumerate(evs) if e["type"] == "run.item"]
        self.assertTrue(i_running < min(i_items) and max(i_items) < len(evs) - 1)

    def test_worker_that_exits_without_output_succeeds(self):
        run = finish(self.d, self.d.create("test", {})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual(run["counts"]["items"], 0)
        self.assertEqual(run["attempt"], 1)

    def test_done_reason_candidates_exhausted(self):
        run = finish(self.d, self.d.create("test", {"items": 2,
                                                    "done": "candidates_exhausted"})["id"])
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "candidates_exhausted"))
        self.assertEqual(run["counts"]["items"], 2)

    def test_limit_reached_match_limit_met(self):
        # The worker over-emits 10 items (it ignores SIGTERM so it writes them all); the
        # daemon keeps exactly 3 and counts the rest as dropped.
        run = self.d.create("test", {"items": 10, "ignore_term": True}, limit=3)
        self.assertEqual(run["limit"], 3)
        run = finish(self.d, run["id"])
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "match_limit_met"), run)
        self.assertEqual(run["counts"]["items"], 3)
        self.assertEqual(run["metrics"]["dropped_items"], 7, run["metrics"])  # 10 - 3
        res = all_results(self.d, run["id"])
        self.assertEqual([it["seq"] for it in res], [1, 2, 3])
        self.assertEqual([it["data"]["i"] for it in res], [0, 1, 2])
        self.assertEqual(len(events_of(self.d, run["id"], "run.item")), 3)

    def test_preview_caps_limit(self):
        run = self.d.create("test", {"items": 30, "stop_at_limit": True}, preview=True)
        self.assertTrue(run["preview"])
        self.assertIsNotNone(run["limit"])
        self.assertLessEqual(run["limit"], 10)
        done = finish(self.d, run["id"])
        self.assertEqual(done["status"], "succeeded")
        self.assertEqual(done["counts"]["items"], run["limit"])

    def test_limit_with_stop_at_limit_worker(self):
        run = finish(self.d, self.d.create("test", {"items": 10, "stop_at_limit": True},
                                           limit=4)["id"])
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "match_limit_met"), run)
        self.assertEqual(run["counts"]["items"], 4)
        self.assertEqual(run["metrics"]["dropped_items"], 0)


class TestExtend(DaemonTest):
    limits = FAST_LIMITS

    def test_extend_after_match_limit_met(self):
        # A well-behaved worker: item, checkpoint, item, checkpoint... and it stops at the
        # limit. The extension resumes right after the last item.
        self.check_extend({"items": 10, "checkpoint": True, "stop_at_limit": True,
                           "echo_start": True})

    def test_extend_after_over_emitting_worker(self):
        # The worker over-emits items and checkpoints past the limit; the daemon keeps
        # neither, so the extension resumes right after the last kept item.
        self.check_extend({"items": 10, "checkpoint": True, "ignore_term": True,
                           "echo_start": True})

    def check_extend(self, inp):
        run = finish(self.d, self.d.create("test", inp, limit=3)["id"])
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "match_limit_met"), run)
        assert_error(self, self.d.post("/v1/runs/%s/extend" % run["id"],
                                       {"additional_limit": 0}), 422)
        for bad in ({"additional_limit": -2}, {"additional_limit": "4"},
                    {"additional_limit": 1.5}, {}):
            r = self.d.post("/v1/runs/%s/extend" % run["id"], bad)
            self.assertIn(r.status, (400, 422), (bad, r))
            assert_error(self, r, r.status)
        r = self.d.post("/v1/runs/%s/extend" % run["id"], {"additional_limit": 4})
        self.assertEqual(r.status, 202, r)
        self.assertIn(r.json()["status"], ("queued", "running"))
        self.assertEqual(r.json()["limit"], 7)
        self.assertTrue(r.json()["is_active"])
        self.assertIsNone(r.json()["termination_reason"])
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]),
                         ("succeeded", "match_limit_met"), done)
        self.assertEqual(done["counts"]["items"], 7)
        self.assertEqual(done["attempt"], 2)
        res = all_results(self.d, run["id"])
        self.assertEqual([it["seq"] for it in res], list(range(1, 8)))
        self.assertEqual([it["data"]["i"] for it in res], list(range(7)))
        import json
        starts = [json.loads(e["data"]["message"]) for e in events_of(self.d, run["id"], "run.log")
                  if e["data"].get("source") == "worker"]
        self.assertEqual([s["cursor"] for s in starts], [None, {"next": 3}])
        self.assertEqual([s["limit"] for s in starts], [3, 7])
        self.assertEqual([s for _, s, _ in status_trail(self.d, run["id"])],
                         ["queued", "running", "succeeded", "queued", "running", "succeeded"])

    def test_extend_refused(self):
        done = finish(self.d, self.d.create("test", {"items": 2})["id"])
        assert_error(self, self.d.post("/v1/runs/%s/extend" % done["id"],
                                       {"additional_limit": 5}), 409)
        prev = finish(self.d, self.d.create("test", {"items": 20}, preview=True)["id"])
        self.assertEqual(prev["termination_reason"], "match_limit_met")
        assert_error(self, self.d.post("/v1/runs/%s/extend" % prev["id"],
                                       {"additional_limit": 5}), 409)
        running = self.d.create("test", {"sleep": 30}, limit=2)
        self.d.wait_status(running["id"], "running")
        assert_error(self, self.d.post("/v1/runs/%s/extend" % running["id"],
                                       {"additional_limit": 5}), 409)
        assert_error(self, self.d.post("/v1/runs/run_nope/extend", {"additional_limit": 5}), 404,
                     "run_not_found")
        self.assertEqual(self.d.request("DELETE", "/v1/runs/" + running["id"]).status, 202)
        self.d.wait_status(running["id"], "cancelled")


class TestFailures(DaemonTest):
    limits = FAST_LIMITS
    flows = testworker_flow("test") + testworker_flow("short", timeout="1s")

    def test_worker_error_message(self):
        run = finish(self.d, self.d.create("test", {"items": 1, "error": "boom: it broke"})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("failed", "error_occurred"))
        self.assertEqual(run["error"]["message"], "boom: it broke")
        self.assertEqual(run["counts"]["items"], 1)
        self.assertFalse(run["is_active"])
        self.assertEqual(status_trail(self.d, run["id"])[-1],
                         ("running", "failed", "error_occurred"))
        end = events_of(self.d, run["id"], "run.end")
        self.assertEqual(len(end), 1)
        self.assertEqual(end[0]["data"]["run"]["status"], "failed")

    def test_nonzero_exit(self):
        run = finish(self.d, self.d.create("test", {"exit": 3})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("failed", "error_occurred"))
        self.assertIsInstance(run["error"], dict)
        self.assertIn("3", run["error"]["message"])

    def test_nonzero_exit_after_done_fails(self):
        run = finish(self.d, self.d.create("test", {"done": True, "exit": 2})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("failed", "error_occurred"))

    def test_worker_kills_itself(self):
        run = finish(self.d, self.d.create("test", {"items": 2, "crash": True})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("crashed", "worker_crashed"))
        self.assertEqual(run["counts"]["items"], 2)
        self.assertIn("signal", run["error"]["message"])

    def test_timeout(self):
        t0 = time.monotonic()
        run = finish(self.d, self.d.create("short", {"sleep": 20})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("failed", "timeout"))
        self.assertLess(time.monotonic() - t0, 8)
        self.assertGreaterEqual(run["metrics"]["duration_ms"], 900)

    def test_timeout_ignore_term_is_killed(self):
        t0 = time.monotonic()
        run = finish(self.d, self.d.create("short", {"sleep": 30, "ignore_term": True})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("failed", "timeout"))
        # 1 s timeout + 500 ms grace, then SIGKILL: far less than the worker's 30 s
        self.assertLess(time.monotonic() - t0, 10)
        self.assertGreaterEqual(run["metrics"]["duration_ms"], 1400)

    def test_item_errors_incomplete(self):
        run = finish(self.d, self.d.create("test", {"items": 3, "item_errors": 2})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("incomplete", "items_failed"))
        self.assertEqual(run["counts"]["items"], 3)
        self.assertEqual(run["counts"]["item_errors"], 2)
        ok = all_results(self.d, run["id"], status="ok")
        err = all_results(self.d, run["id"], status="error")
        every = all_results(self.d, run["id"])
        self.assertEqual([it["seq"] for it in ok], [1, 2, 3])
        self.assertEqual([it["seq"] for it in err], [4, 5])
        self.assertTrue(all(it["status"] == "error" for it in err))
        self.assertEqual([it["error"] for it in err], ["test item error 0", "test item error 1"])
        self.assertEqual([it["data"] for it in err], [{"i": 0}, {"i": 1}])
        self.assertEqual([it["seq"] for it in every], [1, 2, 3, 4, 5])
        self.assertEqual(len(events_of(self.d, run["id"], "run.item_error")), 2)


class TestCancelAndStart(DaemonTest):
    limits = FAST_LIMITS + "max_running = 1\n"

    def test_cancel_queued_and_running(self):
        a = self.d.create("test", {"sleep": 30})
        self.d.wait_status(a["id"], "running")
        b = self.d.create("test", {"items": 1})
        self.assertEqual(self.d.run(b["id"])["status"], "queued")

        # cancel while queued: DELETE
        r = self.d.request("DELETE", "/v1/runs/" + b["id"])
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "cancelled")
        self.assertEqual(r.json()["termination_reason"], "user_cancelled")
        self.assertFalse(r.json()["is_active"])
        self.assertEqual(status_trail(self.d, b["id"]), [
            ("created", "queued", None), ("queued", "cancelled", "user_cancelled")])
        self.assertIsNone(self.d.run(b["id"])["started_at"])
        # again: 409 run_terminal, both ways
        assert_error(self, self.d.request("DELETE", "/v1/runs/" + b["id"]), 409, "run_terminal")
        assert_error(self, self.d.post("/v1/runs/%s/cancel" % b["id"]), 409, "run_terminal")

        # cancel while running: POST .../cancel
        r = self.d.post("/v1/runs/%s/cancel" % a["id"])
        self.assertEqual(r.status, 202, r)
        self.assertIn(r.json()["status"], ("cancelling", "cancelled"))
        done = self.d.wait_status(a["id"], "cancelled")
        self.assertEqual(done["termination_reason"], "user_cancelled")
        self.assertEqual(status_trail(self.d, a["id"])[-2:], [
            ("running", "cancelling", None), ("cancelling", "cancelled", "user_cancelled")])
        assert_error(self, self.d.request("DELETE", "/v1/runs/" + a["id"]), 409, "run_terminal")
        # b never ran, and the slot is free again
        c = finish(self.d, self.d.create("test", {"items": 1})["id"])
        self.assertEqual(c["status"], "succeeded")
        self.assertEqual(self.d.run(b["id"])["counts"]["items"], 0)

    def test_cancel_running_worker_that_ignores_sigterm(self):
        a = self.d.create("test", {"sleep": 30, "ignore_term": True})
        self.d.wait_status(a["id"], "running")
        t0 = time.monotonic()
        r = self.d.request("DELETE", "/v1/runs/" + a["id"])
        self.assertEqual(r.status, 202, r)
        done = self.d.wait_status(a["id"], "cancelled", timeout=15)
        self.assertEqual(done["termination_reason"], "user_cancelled")
        self.assertLess(time.monotonic() - t0, 10)

    def test_start_false_then_start(self):
        run = self.d.create("test", {"items": 2}, start=False)
        self.assertEqual(run["status"], "created")
        self.assertFalse(run["is_active"])
        self.assertIsNone(run["started_at"])
        self.assertEqual(self.d.run(run["id"])["status"], "created")
        r = self.d.post("/v1/runs/%s/start" % run["id"])
        self.assertEqual(r.status, 202, r)
        self.assertIn(r.json()["status"], ("queued", "running"))
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual(done["counts"]["items"], 2)
        assert_error(self, self.d.post("/v1/runs/%s/start" % run["id"]), 409)
        self.assertEqual(status_trail(self.d, run["id"]), [
            ("created", "queued", None), ("queued", "running", None),
            ("running", "succeeded", "completed")])

    def test_start_twice_while_queued(self):
        a = self.d.create("test", {"sleep": 30})
        self.d.wait_status(a["id"], "running")
        run = self.d.create("test", {}, start=False)
        self.assertEqual(self.d.post("/v1/runs/%s/start" % run["id"]).status, 202)
        assert_error(self, self.d.post("/v1/runs/%s/start" % run["id"]), 409)
        self.assertEqual(self.d.run(run["id"])["status"], "queued")
        # a created run can be cancelled too
        c = self.d.create("test", {}, start=False)
        r = self.d.request("DELETE", "/v1/runs/" + c["id"])
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "cancelled")
        assert_error(self, self.d.post("/v1/runs/%s/start" % c["id"]), 409)
        for rid in (run["id"], a["id"]):
            self.assertEqual(self.d.request("DELETE", "/v1/runs/" + rid).status, 202)
            self.d.wait_status(rid, "cancelled")

    def test_cancel_and_start_unknown_run(self):
        assert_error(self, self.d.request("DELETE", "/v1/runs/run_doesnotexist"), 404,
                     "run_not_found")
        assert_error(self, self.d.post("/v1/runs/run_doesnotexist/cancel"), 404, "run_not_found")
        assert_error(self, self.d.post("/v1/runs/run_doesnotexist/start"), 404, "run_not_found")


class TestIdempotency(DaemonTest):
    def test_same_key_same_body_replays(self):
        body = {"flow": "test", "input": {"items": 1}, "start": False}
        h = {"Idempotency-Key": "create-abc-1"}
        r1 = self.d.post("/v1/runs", body, headers=h)
        self.assertEqual(r1.status, 201, r1)
        self.assertNotEqual(r1.headers.get("idempotent-replayed"), "true")
        r2 = self.d.post("/v1/runs", body, headers=h)
        self.assertIn(r2.status, (200, 201), r2)
        self.assertEqual(r2.headers.get("idempotent-replayed"), "true")
        self.assertEqual(r1.json()["id"], r2.json()["id"])
        lst = list_runs(self.d)
        self.assertEqual(lst["total"], 1, lst)
        # same key, different body: 422
        body2 = dict(body, input={"items": 2})
        assert_error(self, self.d.post("/v1/runs", body2, headers=h), 422,
                     "idempotency_key_reused")
        self.assertEqual(list_runs(self.d)["total"], 1)
        # another key creates another run
        r3 = self.d.post("/v1/runs", body, headers={"Idempotency-Key": "create-abc-2"})
        self.assertEqual(r3.status, 201)
        self.assertNotEqual(r3.json()["id"], r1.json()["id"])
        self.assertEqual(list_runs(self.d)["total"], 2)

    def test_replay_of_started_run(self):
        body = {"flow": "test", "input": {"items": 2}}
        h = {"Idempotency-Key": "k-started"}
        r1 = self.d.post("/v1/runs", body, headers=h)
        self.assertEqual(r1.status, 201, r1)
        finish(self.d, r1.json()["id"])
        r2 = self.d.post("/v1/runs", body, headers=h)
        self.assertEqual(r2.headers.get("idempotent-replayed"), "true")
        self.assertEqual(r2.json()["id"], r1.json()["id"])
        self.assertEqual(r2.json()["status"], "succeeded")
        self.assertEqual(list_runs(self.d)["total"], 1)


class TestWait(DaemonTest):
    limits = FAST_LIMITS

    def test_wait_returns_when_terminal(self):
        run = self.d.create("test", {"sleep": 0.5, "items": 1})
        t0 = time.monotonic()
        r = self.d.get("/v1/runs/%s?wait=10" % run["id"], timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "succeeded", r)
        self.assertEqual(r.json()["counts"]["items"], 1)
        self.assertLess(elapsed, 5, "wait=10 held the reply %.2fs for a 0.5s run" % elapsed)
        self.assertGreater(elapsed, 0.3, "the reply was not held until the run ended")

    def test_wait_on_terminal_run_is_immediate(self):
        run = finish(self.d, self.d.create("test", {})["id"])
        t0 = time.monotonic()
        r = self.d.get("/v1/runs/%s?wait=30" % run["id"])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "succeeded")
        self.assertLess(time.monotonic() - t0, 2)

    def test_wait_times_out_while_running(self):
        run = self.d.create("test", {"sleep": 30})
        self.d.wait_status(run["id"], "running")
        t0 = time.monotonic()
        r = self.d.get("/v1/runs/%s?wait=1" % run["id"])
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "running")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 5)
        # a cancel wakes a waiter at once
        self.assertEqual(self.d.request("DELETE", "/v1/runs/" + run["id"]).status, 202)
        r = self.d.get("/v1/runs/%s?wait=20" % run["id"])
        self.assertEqual(r.json()["status"], "cancelled")

    def test_waiter_that_disconnects(self):
        import socket
        run = self.d.create("test", {"sleep": 0.5})
        socks = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", self.d.port))
            s.sendall(("GET /v1/runs/%s?wait=20 HTTP/1.1\r\nHost: x\r\n\r\n"
                       % run["id"]).encode())
            socks.append(s)
        # several waiters on one run; they all go away before it ends
        r = self.d.get("/v1/runs/%s?wait=1" % run["id"])
        self.assertEqual(r.status, 200)
        for s in socks:
            s.close()
        done = finish(self.d, run["id"])
        self.assertEqual(done["status"], "succeeded")
        # and one that stays gets its answer
        r = self.d.get("/v1/runs/%s?wait=5" % run["id"])
        self.assertEqual(r.json()["status"], "succeeded")

    def test_many_waiters_all_answered(self):
        import threading
        run = self.d.create("test", {"sleep": 0.5, "items": 1})
        results = []

        def waiter():
            r = self.d.get("/v1/runs/%s?wait=20" % run["id"])
            results.append((r.status, r.json()["status"]))

        threads = [threading.Thread(target=waiter) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(results, [(200, "succeeded")] * 10)

    def test_shutdown_with_pending_waiter(self):
        run = self.d.create("test", {"sleep": 30})
        self.d.wait_status(run["id"], "running")
        # The waiter on a raw socket, so the test knows its request reached the daemon and is
        # held (no reply yet) before the stop, rather than racing the stop in a thread.
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=0.5)
        try:
            s.sendall(b"GET /v1/runs/%s?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n"
                      % run["id"].encode())
            with self.assertRaises(socket.timeout, msg="?wait=30 answered a running run"):
                s.recv(1)
            t0 = time.monotonic()
            self.d.stop(timeout=15)  # exit 0, with a held request and a running worker
            self.assertLess(time.monotonic() - t0, 10)
            # The stop drops the held request: the connection is closed without a reply (not
            # reset, not left open, not half answered).
            s.settimeout(5)
            self.assertEqual(s.recv(65536), b"", "held request at stop")
        finally:
            s.close()

    def test_wait_parameter_validation(self):
        run = self.d.create("test", {})
        for bad in ("-1", "abc", "1.5", "61", "99999999999999999999"):
            assert_error(self, self.d.get("/v1/runs/%s?wait=%s" % (run["id"], bad)), 400,
                         "invalid_parameter")
        assert_error(self, self.d.get("/v1/runs/run_nope?wait=1"), 404, "run_not_found")
        finish(self.d, run["id"])


class TestScheduler(DaemonTest):
    limits = FAST_LIMITS + "max_running = 2\n"
    flows = (testworker_flow("a", concurrency="1") + testworker_flow("b", concurrency="1") +
             testworker_flow("c", concurrency="1"))

    def test_limits_and_fifo(self):
        created = []
        for i in range(4):
            for flow in ("a", "b", "c"):
                created.append(self.d.create(flow, {"sleep": 0.15, "items": 1},
                                             metadata={"n": i}))
        ids = [r["id"] for r in created]
        max_seen = 0

        def observe():
            nonlocal max_seen
            lst = list_runs(self.d, "?status=running&page_size=100")
            running = lst["items"]
            self.assertEqual(lst["total"], len(running))
            self.assertLessEqual(len(running), 2, [(r["id"], r["flow"]) for r in running])
            flows = [r["flow"] for r in running]
            self.assertEqual(len(flows), len(set(flows)), "two runs of one flow ran: %s" % flows)
            max_seen = max(max_seen, len(running))
            active = list_runs(self.d, "?status=queued,running&page_size=100")["total"]
            return active == 0

        wait_for(observe, timeout=60, interval=0.01, what="all runs finished")
        self.assertEqual(max_seen, 2, "the scheduler never used both slots")
        runs = [self.d.run(i) for i in ids]
        self.assertTrue(all(r["status"] == "succeeded" for r in runs),
                        [(r["id"], r["status"]) for r in runs])

        # intervals: per flow never overlapping, globally at most 2 at once
        spans = [(parse_time(r["started_at"]), parse_time(r["finished_at"]), r["flow"])
                 for r in runs]
        for flow in ("a", "b", "c"):
            fs = sorted((s, e) for s, e, f in spans if f == flow)
            for (s1, e1), (s2, e2) in zip(fs, fs[1:]):
                self.assertLessEqual(e1, s2, "flow %s runs overlapped" % flow)
        points = sorted([(s, 1) for s, e, f in spans] + [(e, -1) for s, e, f in spans],
                        key=lambda p: (p[0], p[1]))
        cur = peak = 0
        for _, delta in points:
            cur += delta
            peak = max(peak, cur)
        self.assertLessEqual(peak, 2)

        # FIFO within one flow: start order = creation order
        for flow in ("a", "b", "c"):
            mine = [r for r in runs if r["flow"] == flow]
            by_start = sorted(mine, key=lambda r: parse_time(r["started_at"]))
            self.assertEqual([r["metadata"]["n"] for r in by_start], [0, 1, 2, 3])


class TestQueueFull(DaemonTest):
    limits = FAST_LIMITS + "max_running = 1\nmax_queued = 2\n"

    def test_queue_full_429(self):
        a = self.d.create("test", {"sleep": 30})
        self.d.wait_status(a["id"], "running")
        q1 = self.d.create("test", {})
        q2 = self.d.create("test", {})
        r = self.d.post("/v1/runs", {"flow": "test"})
        err = assert_error(self, r, 429, "queue_full")
        self.assertIn("retry-after", r.headers, r.headers)
        self.assertGreater(int(r.headers["retry-after"]), 0)
        self.assertTrue(err["message"])
        # created runs do not take queue space; starting one does
        c = self.d.create("test", {}, start=False)
        assert_error(self, self.d.post("/v1/runs/%s/start" % c["id"]), 429, "queue_full")
        self.assertEqual(list_runs(self.d, "?status=queued")["total"], 2)
        # free a place: the next create is accepted
        self.assertEqual(self.d.request("DELETE", "/v1/runs/" + q1["id"]).status, 202)
        q3 = self.d.create("test", {})
        self.assertEqual(q3["status"], "queued")
        for rid in (a["id"], q2["id"], q3["id"], c["id"]):
            self.d.request("DELETE", "/v1/runs/" + rid)
        for rid in (a["id"], q2["id"], q3["id"], c["id"]):
            self.d.wait_status(rid, "cancelled")


if __name__ == "__main__":
    unittest.main()
