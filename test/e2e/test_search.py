"""Search-style runs end to end (SPEC sections 1-3, seeds/findall-run-lifecycle.md,
seeds/lume-runs.md): every FindAll termination reason, the "Can extend?" / "Can enrich?"
columns state by state, extend from the checkpoint, enrichments during and after a run,
paging through 10,000 results both ways, and refusals of bad input that change nothing.

Nothing sleeps for a fixed time: conditions are polled (harness.wait_for)."""
import json
import unittest

from harness import DaemonTest, testworker_flow, wait_for
from helpers import TERMINAL, all_results, assert_error, events_of, finish, list_runs, \
    status_trail

ENRICH = {"stdin_items": True}          # testworker in enrichment mode

# What must not change when a request is refused (finished runs: everything persistent).
FROZEN = ("id", "flow", "status", "termination_reason", "limit", "preview", "attempt", "counts",
          "last_event_id", "updated_at", "finished_at", "enrichments", "is_active", "input",
          "error", "result")
# A live run moves by itself; these must still not move because of a refused request.
LIVE = ("id", "flow", "status", "termination_reason", "limit", "preview", "attempt")


def compact_len(data):
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


class SearchBase(DaemonTest):
    limits = "kill_grace = 1s\n"
    flows = (testworker_flow("test")
             + testworker_flow("policy", min_match_rate="0.5", min_evaluated="10")
             + testworker_flow("capped", max_limit="1000")
             + testworker_flow("slow", timeout="300ms")
             + testworker_flow("solo", concurrency="1")
             + testworker_flow("enricher")
             + testworker_flow("enricher2"))

    # ------------------------------------------------------------------ helpers

    def snap(self, run_id, keys=FROZEN):
        run = self.d.run(run_id)
        return {k: run.get(k) for k in keys}

    def refused(self, run_id, method, path, body, status, code=None, keys=FROZEN):
        """The request is refused with a JSON 4xx error and run_id is unchanged."""
        before = self.snap(run_id, keys)
        n_events = len(self.d.events(run_id)) if keys is FROZEN else None
        if method == "POST":
            r = self.d.post(path, body)
        else:
            r = self.d.request(method, path)
        err = assert_error(self, r, status, code)
        self.assertEqual(self.snap(run_id, keys), before,
                         "%s %s %r changed the run" % (method, path, body))
        if n_events is not None:
            self.assertEqual(len(self.d.events(run_id)), n_events,
                             "%s %s %r added events" % (method, path, body))
        return err

    def extend(self, run_id, n):
        return self.d.post("/v1/runs/%s/extend" % run_id, {"additional_limit": n})

    def enrich(self, run_id, flow="enricher", input=ENRICH):
        body = {"flow": flow}
        if input is not None:
            body["input"] = input
        return self.d.post("/v1/runs/%s/enrich" % run_id, body)

    def refuse_extend(self, run_id, keys=FROZEN, n=5):
        return self.refused(run_id, "POST", "/v1/runs/%s/extend" % run_id,
                            {"additional_limit": n}, 409, "not_extendable", keys)

    def refuse_enrich(self, run_id, keys=FROZEN):
        return self.refused(run_id, "POST", "/v1/runs/%s/enrich" % run_id,
                            {"flow": "enricher", "input": ENRICH}, 409, "not_enrichable", keys)

    def accept_enrich(self, run_id, flow="enricher", input=ENRICH):
        r = self.enrich(run_id, flow, input)
        self.assertEqual(r.status, 202, r)
        run = r.json()
        self.assertEqual(run["id"], run_id)
        self.assertIn(flow, [e["flow"] for e in run["enrichments"]], run["enrichments"])
        return run

    def quiet(self, run_id, timeout=30):
        """Waits until the run is terminal and no enrichment works on it any more."""
        return wait_for(lambda: (lambda r: r if r["status"] in TERMINAL and not r["is_active"]
                                 else None)(self.d.run(run_id)),
                        timeout=timeout, what="run %s terminal and quiet" % run_id)

    def wait_running(self, run_id):
        return self.d.wait_status(run_id, "running")

    def finished_as(self, run_id, status, reason, timeout=30):
        run = finish(self.d, run_id, timeout=timeout)
        self.assertEqual((run["status"], run["termination_reason"]), (status, reason), run)
        self.assertIsNotNone(run["finished_at"], run)
        return run


class TestTerminationReasons(SearchBase):
    """Every termination reason of the FindAll table, and what each allows afterwards."""

    def test_every_reason_and_what_it_allows(self):
        d = self.d
        pattern = [True, False, False] * 84 + [False] * 8           # 260 candidates, 84 matched
        runs = {
            "limit": d.create("test", {"items": 100, "checkpoint": True}, limit=5),
            # ignores SIGTERM: all 100 lines reach the daemon, which must drop 95
            "overflow": d.create("test", {"items": 100, "ignore_term": True}, limit=5),
            "policy_ok": d.create("policy", {"candidates": [True, False] * 10,
                                             "done": "candidates_exhausted"}),
            "low_done": d.create("test", {"candidates": [True, False, False, False],
                                          "done": "low_match_rate"}),
            "exhausted": d.create("test", {"candidates": pattern,
                                           "done": "candidates_exhausted"}),
            "completed": d.create("test", {"items": 3}),
            "error": d.create("test", {"items": 2, "error": "boom"}),
            "timeout": d.create("slow", {"items": 1, "sleep": 30}),
            "cancel": d.create("test", {"items": 1, "sleep": 30}),
            "incomplete": d.create("test", {"items": 2, "item_errors": 1}),
            "preview": d.create("test", {"items": 100, "checkpoint": True}, preview=True,
                                limit=50),
        }
        ids = {k: v["id"] for k, v in runs.items()}

        # user_cancelled: a running run, cancelled by the user
        self.wait_running(ids["cancel"])
        r = d.post("/v1/runs/%s/cancel" % ids["cancel"])
        self.assertEqual(r.status, 202, r)
        cancelled = self.finished_as(ids["cancel"], "cancelled", "user_cancelled")
        self.assertFalse(cancelled["is_active"])

        # match_limit_met: exactly `limit` items kept, the excess dropped and counted
        run = self.finished_as(ids["limit"], "succeeded", "match_limit_met")
        self.assertEqual(run["limit"], 5)
        self.assertEqual(run["counts"]["items"], 5, run)
        # Of the 100 items only those written before the worker's SIGTERM reach the daemon
        # (how many varies); 5 are kept, so at most 95 are dropped. "overflow" pins the count.
        self.assertLessEqual(run["metrics"]["dropped_items"], 95, run["metrics"])
        self.assertEqual([it["seq"] for it in all_results(d, ids["limit"])], [1, 2, 3, 4, 5])
        run = self.finished_as(ids["overflow"], "succeeded", "match_limit_met")
        self.assertEqual((run["counts"]["items"], run["metrics"]["dropped_items"]), (5, 95), run)
        self.assertEqual([it["data"]["i"] for it in all_results(d, ids["overflow"])],
                         [0, 1, 2, 3, 4])
        self.assertEqual(len(events_of(d, ids["overflow"], "run.item")), 5)

        # the same policy does not stop a run whose match rate is high enough
        run = self.finished_as(ids["policy_ok"], "succeeded", "candidates_exhausted")
        self.assertEqual((run["counts"]["evaluated"], run["counts"]["matched"]), (20, 10))

        # low_match_rate reported by the worker (done reason)
        run = self.finished_as(ids["low_done"], "succeeded", "low_match_rate")
        self.assertEqual((run["counts"]["evaluated"], run["counts"]["matched"]), (4, 1), run)

        # candidates_exhausted, with counts and run.progress every 100 candidates
        run = self.finished_as(ids["exhausted"], "succeeded", "candidates_exhausted")
        self.assertEqual((run["counts"]["evaluated"], run["counts"]["matched"]), (260, 84), run)
        prog = [(e["data"]["evaluated"], e["data"]["matched"])
                for e in events_of(d, ids["exhausted"], "run.progress")]
        self.assertIn((100, 34), prog)
        self.assertIn((200, 67), prog)

        run = self.finished_as(ids["completed"], "succeeded", "completed")
        self.assertEqual(run["counts"]["items"], 3)

        # error_occurred: the worker's error message is kept
        run = self.finished_as(ids["error"], "failed", "error_occurred")
        self.assertEqual(run["error"]["message"], "boom", run)
        self.assertEqual(run["counts"]["items"], 2)

        # timeout: the flow's 300 ms timeout ends the run
        run = self.finished_as(ids["timeout"], "failed", "timeout", timeout=15)
        self.assertLess(run["metrics"]["duration_ms"], 10000, run)

        run = self.finished_as(ids["incomplete"], "incomplete", "items_failed")
        self.assertEqual((run["counts"]["items"], run["counts"]["item_errors"]), (2, 1))

        # preview: the limit is capped at 10 and the run ends match_limit_met
        run = self.finished_as(ids["preview"], "succeeded", "match_limit_met")
        self.assertTrue(run["preview"])
        self.assertEqual(run["limit"], 10)
        self.assertEqual(run["counts"]["items"], 10)

        for k, rid in ids.items():
            self.assertFalse(d.run(rid)["is_active"], k)

        # --- Can extend? Only succeeded/match_limit_met, and not a preview.
        for k in ("policy_ok", "low_done", "exhausted", "completed", "error",
                  "timeout", "cancel", "incomplete", "preview"):
            with self.subTest(extend=k):
                err = self.refuse_extend(ids[k])
                self.assertIn(d.run(ids[k])["status"], err["message"])

        # --- Can enrich? Not after failed or cancelled (timeout is failed too) ...
        for k in ("error", "timeout", "cancel"):
            with self.subTest(enrich_refused=k):
                self.refuse_enrich(ids[k])
        # ... but after every kind of succeeded and after incomplete; the status stays.
        for k in ("policy_ok", "low_done", "exhausted", "completed", "incomplete", "preview"):
            with self.subTest(enrich=k):
                before = d.run(ids[k])
                self.accept_enrich(ids[k])
                after = self.quiet(ids[k])
                self.assertEqual((after["status"], after["termination_reason"]),
                                 (before["status"], before["termination_reason"]))
                self.assertEqual(after["enrichments"][0]["status"], "completed",
                                 after["enrichments"])
                self.assertEqual(after["enrichments"][0]["enriched"],
                                 before["counts"]["items"], after["enrichments"])

        # match_limit_met can be extended: same run, queued again, limit raised
        r = self.extend(ids["limit"], 3)
        self.assertEqual(r.status, 202, r)
        ext = r.json()
        self.assertEqual((ext["id"], ext["limit"]), (ids["limit"], 8))
        self.assertIn(ext["status"], ("queued", "running"))
        self.assertIsNone(ext["termination_reason"], ext)
        self.assertTrue(ext["is_active"])
        run = wait_for(lambda: (lambda r: r if r["status"] in TERMINAL and r["attempt"] == 2
                                else None)(d.run(ids["limit"])), what="extended run finished")
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "match_limit_met"), run)
        self.assertEqual(run["counts"]["items"], 8)

    # low_match_rate by policy: min_match_rate 0.5 after min_evaluated 10; the worker sends
    # 1 match in its first 10 candidates, then 5 more matches, then would sleep 30 s.
    POLICY_INPUT = {"candidates": [True] + [False] * 9 + [True] * 5, "sleep": 30}

    def test_low_match_rate_by_policy(self):
        d = self.d
        rid = d.create("policy", self.POLICY_INPUT)["id"]
        run = self.finished_as(rid, "succeeded", "low_match_rate", timeout=15)
        self.assertIsNone(run["error"], run)
        self.assertLess(run["metrics"]["duration_ms"], 15000, run)
        self.assertFalse(run["is_active"])
        self.refuse_extend(rid)
        self.accept_enrich(rid)
        run = self.quiet(rid)
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "low_match_rate"))

    def test_policy_counts_end_at_the_stop(self):
        """What the daemon decided on (10 evaluated, 1 matched) is what the run reports:
        candidates the worker sends after the stop are not counted, as items past the limit
        are not kept."""
        d = self.d
        rid = d.create("policy", self.POLICY_INPUT)["id"]
        run = finish(d, rid, timeout=15)
        prog = [e["data"] for e in events_of(d, rid, "run.progress")]
        self.assertTrue(prog, "no run.progress event when the policy stopped the run")
        self.assertEqual((prog[-1]["evaluated"], prog[-1]["matched"]), (10, 1), prog)
        self.assertEqual((run["counts"]["evaluated"], run["counts"]["matched"]), (10, 1),
                         run["counts"])


class TestLiveStates(SearchBase):
    """queued and running: neither can be extended; a running run can be enriched."""

    def test_queued_and_running(self):
        d = self.d
        a = d.create("solo", {"items": 3, "item_delay": 0.05, "sleep": 30}, limit=100)
        self.wait_running(a["id"])
        b = d.create("solo", {"items": 2, "checkpoint": True}, limit=2)
        self.assertEqual(d.run(b["id"])["status"], "queued")

        # queued: extend refused, nothing changed (still queued, limit 2, attempt 0)
        self.refuse_extend(b["id"])
        self.assertEqual(d.run(b["id"])["status"], "queued")

        # running: extend refused; enrich accepted
        self.refuse_extend(a["id"], keys=LIVE)
        run = self.accept_enrich(a["id"])
        self.assertEqual(run["status"], "running")
        self.assertTrue(run["is_active"])
        self.assertEqual(run["enrichments"][0]["status"], "running", run["enrichments"])
        wait_for(lambda: d.run(a["id"])["enrichments"][0]["enriched"] == 3,
                 what="the running run's 3 items enriched")
        self.refuse_extend(a["id"], keys=LIVE)

        # cancel while enriched: the run ends cancelled and its enrichment stops with it
        r = d.post("/v1/runs/%s/cancel" % a["id"])
        self.assertEqual(r.status, 202, r)
        run = self.quiet(a["id"])
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("cancelled", "user_cancelled"), run)
        self.assertNotEqual(run["enrichments"][0]["status"], "running", run["enrichments"])
        self.refuse_enrich(a["id"])
        self.refuse_extend(a["id"])

        # the queued run gets its turn and can be extended once it met its limit
        run = self.finished_as(b["id"], "succeeded", "match_limit_met")
        self.assertEqual(self.extend(b["id"], 1).status, 202)
        run = wait_for(lambda: (lambda r: r if r["status"] in TERMINAL and r["attempt"] == 2
                                else None)(d.run(b["id"])), what="extended run finished")
        # the worker has no third item: it resumes after item 2 and finishes
        self.assertEqual((run["status"], run["termination_reason"], run["counts"]["items"]),
                         ("succeeded", "completed", 2), run)


class TestExtend(SearchBase):

    def test_extend_twice_continues_from_checkpoint(self):
        d = self.d
        inp = {"items": 1000, "checkpoint": True, "echo_start": True}
        rid = d.create("test", inp, limit=5)["id"]
        run = self.finished_as(rid, "succeeded", "match_limit_met")
        self.assertEqual((run["attempt"], run["counts"]["items"]), (1, 5), run)
        history = d.events(rid)

        expected_limit = 5
        cursors = []
        for attempt, extra in ((2, 7), (3, 8)):
            expected_limit += extra
            r = self.extend(rid, extra)
            self.assertEqual(r.status, 202, r)
            self.assertEqual((r.json()["id"], r.json()["limit"]), (rid, expected_limit))
            run = wait_for(lambda: (lambda r: r if r["status"] in TERMINAL and
                                    r["attempt"] == attempt else None)(d.run(rid)),
                           what="attempt %d finished" % attempt)
            self.assertEqual((run["status"], run["termination_reason"]),
                             ("succeeded", "match_limit_met"), run)
            self.assertEqual(run["counts"]["items"], expected_limit, run)
            self.assertFalse(run["is_active"])

            # the event history is kept and grows
            evs = d.events(rid)
            self.assertEqual(evs[:len(history)], history)
            self.assertGreater(len(evs), len(history))
            history = evs

            # the worker was started with attempt N, the raised limit and the last checkpoint
            starts = [json.loads(e["data"]["message"]) for e in evs
                      if e["type"] == "run.log" and e["data"].get("source") == "worker"
                      and e["data"]["message"].startswith("{")]
            self.assertEqual(len(starts), attempt)
            self.assertEqual(starts[-1]["id"], rid)
            self.assertEqual(starts[-1]["attempt"], attempt)
            self.assertEqual(starts[-1]["limit"], expected_limit)
            cursors.append(starts[-1]["cursor"])

        # items continue: seq 1..20 and data i 0..19, no gap, no duplicate
        items = all_results(d, rid)
        self.assertEqual([it["seq"] for it in items], list(range(1, 21)))
        self.assertEqual([it["data"]["i"] for it in items], list(range(20)),
                         "items after extend are not contiguous from the checkpoint")
        self.assertEqual(cursors, [{"next": 5}, {"next": 12}],
                         "the extended attempts did not resume from the checkpoint after the "
                         "last kept item")
        self.assertEqual(run["id"], rid)
        self.assertEqual(run["attempt"], 3)
        trail = status_trail(d, rid)
        self.assertEqual([t for t in trail if t[0] == "succeeded"],
                         [("succeeded", "queued", None)] * 2, trail)
        self.assertEqual(len(events_of(d, rid, "run.created")), 1)
        # not extendable beyond the flow's max_limit (default 1,000,000)
        self.refused(rid, "POST", "/v1/runs/%s/extend" % rid, {"additional_limit": 1000000},
                     422, "invalid_additional_limit")

    def test_extend_when_the_worker_stops_at_the_limit(self):
        d = self.d
        rid = d.create("test", {"items": 50, "checkpoint": True, "stop_at_limit": True},
                       limit=4)["id"]
        self.finished_as(rid, "succeeded", "match_limit_met")
        self.assertEqual(self.extend(rid, 4).status, 202)
        run = wait_for(lambda: (lambda r: r if r["status"] in TERMINAL and r["attempt"] == 2
                                else None)(d.run(rid)), what="attempt 2 finished")
        self.assertEqual((run["status"], run["termination_reason"], run["counts"]["items"]),
                         ("succeeded", "match_limit_met", 8), run)
        items = all_results(d, rid)
        self.assertEqual([it["seq"] for it in items], list(range(1, 9)))
        self.assertEqual([it["data"]["i"] for it in items], list(range(8)))


class TestEnrich(SearchBase):

    def test_enrich_during_a_run(self):
        d = self.d
        n = 60
        rid = d.create("test", {"items": n, "item_delay": 0.02})["id"]
        self.wait_running(rid)
        # the enrichment lingers 1 s after its stdin closes, so the window where the main
        # worker is gone but the run must stay running is observable
        run = self.accept_enrich(rid, input={"stdin_items": True, "sleep": 1.0})
        self.assertEqual(run["status"], "running")

        def main_worker_gone():
            r = d.run(rid)
            return r if r["metrics"]["worker_ms"] > 0 or r["status"] in TERMINAL else None

        mid = wait_for(main_worker_gone, what="the main worker's exit")
        self.assertEqual(mid["status"], "running",
                         "the run finished while its enrichment still worked: %r" % mid)
        self.assertTrue(mid["is_active"])
        self.assertEqual(mid["enrichments"][0]["status"], "running", mid["enrichments"])
        self.assertEqual(mid["counts"]["items"], n)

        run = self.quiet(rid)
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual(run["enrichments"][0]["flow"], "enricher")
        self.assertEqual(run["enrichments"][0]["status"], "completed", run["enrichments"])
        self.assertEqual(run["enrichments"][0]["enriched"], n)

        items = all_results(d, rid)
        self.assertEqual(len(items), n)
        for it in items:
            self.assertEqual(it["enrichments"], {"enricher": {"enriched": True,
                                                              "len": compact_len(it["data"])}},
                             it)
        evs = d.events(rid)
        enriched = [e for e in evs if e["type"] == "run.item_enriched"]
        self.assertEqual(sorted(e["data"]["seq"] for e in enriched), list(range(1, n + 1)))
        self.assertTrue(all(e["data"]["flow"] == "enricher" for e in enriched))
        item_ids = [e["id"] for e in evs if e["type"] == "run.item"]
        # items kept arriving while the enrichment worked on the earlier ones
        self.assertLess(enriched[0]["id"], item_ids[-1])
        # the run finished only after the last enrichment
        fin = [e for e in evs if e["type"] == "run.status" and e["data"]["status"] == "succeeded"]
        self.assertEqual(len(fin), 1)
        self.assertGreater(fin[0]["id"], enriched[-1]["id"])

    def test_enrich_after_a_run_twice(self):
        d = self.d
        n = 30
        rid = d.create("test", {"items": n, "item_errors": 2})["id"]
        done = self.finished_as(rid, "incomplete", "items_failed")
        trail = status_trail(d, rid)

        run = self.accept_enrich(rid, "enricher", {"stdin_items": True, "sleep": 0.5})
        self.assertEqual(run["status"], "incomplete")
        self.assertTrue(run["is_active"], "is_active must be true while an enrichment runs")
        self.assertEqual(run["enrichments"][0]["status"], "running")
        run = self.accept_enrich(rid, "enricher2")
        self.assertEqual([e["flow"] for e in run["enrichments"]], ["enricher", "enricher2"])
        mid = d.run(rid)
        self.assertEqual((mid["status"], mid["termination_reason"]), ("incomplete", "items_failed"))

        run = self.quiet(rid)
        self.assertEqual((run["status"], run["termination_reason"], run["finished_at"]),
                         ("incomplete", "items_failed", done["finished_at"]))
        self.assertEqual([(e["flow"], e["status"], e["enriched"]) for e in run["enrichments"]],
                         [("enricher", "completed", n), ("enricher2", "completed", n)])
        self.assertEqual(status_trail(d, rid), trail, "an enrichment changed the run's status")

        ok = all_results(d, rid, status="ok")
        self.assertEqual(len(ok), n)
        for it in ok:
            want = {"enriched": True, "len": compact_len(it["data"])}
            self.assertEqual(it["enrichments"], {"enricher": want, "enricher2": want}, it)
        errs = all_results(d, rid, status="error")
        self.assertEqual([(it["seq"], it["enrichments"]) for it in errs],
                         [(n + 1, {}), (n + 2, {})])
        self.assertEqual(len(events_of(d, rid, "run.item_enriched")), 2 * n)


class TestPaging(SearchBase):

    def test_10000_items_both_ways_and_status_filter(self):
        d = self.d
        n_ok, n_err = 10000, 50
        total = n_ok + n_err
        rid = d.create("test", {"items": n_ok, "item_errors": n_err})["id"]
        run = self.finished_as(rid, "incomplete", "items_failed", timeout=60)
        self.assertEqual((run["counts"]["items"], run["counts"]["item_errors"]), (n_ok, n_err))
        base = "/v1/runs/%s/results" % rid

        def get(q):
            r = d.get(base + q)
            self.assertEqual(r.status, 200, r)
            return r.json()

        # default page: 50
        body = get("")
        self.assertEqual((len(body["items"]), body["page"], body["page_size"], body["total"],
                          body["has_more"]), (50, 1, 50, total, True))

        # page/page_size=100
        seen, page = [], 1
        while True:
            body = get("?page=%d&page_size=100" % page)
            self.assertEqual((body["page"], body["total"]), (page, total))
            seen.extend(body["items"])
            if not body["has_more"]:
                break
            self.assertEqual(len(body["items"]), 100)
            page += 1
        self.assertEqual(page, (total + 99) // 100)
        self.assertEqual([it["seq"] for it in seen], list(range(1, total + 1)))
        self.assertEqual([it["data"]["i"] for it in seen[:n_ok]], list(range(n_ok)))
        self.assertTrue(all(it["status"] == "ok" and it["enrichments"] == {} and
                            "created_at" in it for it in seen[:n_ok]))
        self.assertTrue(all(it["status"] == "error" and it["error"] for it in seen[n_ok:]))
        self.assertEqual(get("?page=%d&page_size=100" % (page + 1))["items"], [])

        # after= cursor
        by_cursor, after, rounds = [], 0, 0
        while True:
            body = get("?after=%d&page_size=100" % after)
            rounds += 1
            self.assertEqual((body["after"], body["total"]), (after, total))
            by_cursor.extend(body["items"])
            if not body["has_more"]:
                break
            self.assertEqual(body["next_after"], body["items"][-1]["seq"])
            after = body["next_after"]
        self.assertEqual(rounds, (total + 99) // 100)
        self.assertEqual(by_cursor, seen)
        body = get("?after=%d" % total)
        self.assertEqual((body["items"], body["has_more"]), ([], False))

        # status filters with their own totals
        ok = all_results(d, rid, status="ok")
        self.assertEqual([it["seq"] for it in ok], list(range(1, n_ok + 1)))
        body = get("?status=ok&page=100&page_size=100")
        self.assertEqual((body["total"], body["has_more"], body["items"][-1]["seq"]),
                         (n_ok, False, n_ok))
        body = get("?status=error&page_size=100")
        self.assertEqual((body["total"], body["has_more"]), (n_err, False))
        self.assertEqual([it["seq"] for it in body["items"]], list(range(n_ok + 1, total + 1)))
        body = get("?status=error&after=%d&page_size=20" % (n_ok + 20))
        self.assertEqual([it["seq"] for it in body["items"]],
                         list(range(n_ok + 21, n_ok + 41)))
        self.assertEqual((body["total"], body["has_more"]), (n_err, True))
        body = get("?status=ok&after=%d" % (n_ok - 10))
        self.assertEqual([it["seq"] for it in body["items"]], list(range(n_ok - 9, n_ok + 1)))
        self.assertFalse(body["has_more"])


class TestBadInput(SearchBase):

    def test_bad_limits_at_create(self):
        d = self.d
        before = list_runs(d)["total"]
        for flow, limit, code in (("test", 0, "invalid_limit"), ("test", -1, "invalid_limit"),
                                  ("test", 1.5, "invalid_limit"), ("test", "5", "invalid_limit"),
                                  ("test", True, "invalid_limit"), ("test", [5], "invalid_limit"),
                                  ("capped", 1001, "limit_too_large"),
                                  ("capped", 10 ** 9, "limit_too_large"),
                                  ("test", 1000001, "limit_too_large")):
            with self.subTest(flow=flow, limit=limit):
                r = d.post("/v1/runs", {"flow": flow, "input": {}, "limit": limit})
                assert_error(self, r, 422, code)
        # beyond int64: a clear 4xx, whatever the parser's code
        r = d.post("/v1/runs", '{"flow":"test","limit":99999999999999999999999}',
                   headers={"Content-Type": "application/json"})
        self.assertTrue(400 <= r.status < 500, r)
        assert_error(self, r, r.status)
        self.assertEqual(list_runs(d)["total"], before, "a refused create made a run")
        # the bound itself is accepted
        self.assertEqual(d.create("capped", {}, limit=1000)["limit"], 1000)

    def test_bad_extend_and_enrich(self):
        d = self.d
        rid = d.create("capped", {"items": 100, "checkpoint": True}, limit=5)["id"]
        self.finished_as(rid, "succeeded", "match_limit_met")
        path = "/v1/runs/%s/extend" % rid
        for body in ({"additional_limit": 0}, {"additional_limit": -3},
                     {"additional_limit": 1.5}, {"additional_limit": "5"},
                     {"additional_limit": None}, {"additional_limit": True},
                     {"additional_limit": [1]}, {},
                     {"additional_limit": 996}):          # 5 + 996 > max_limit 1000
            with self.subTest(body=body):
                self.refused(rid, "POST", path, body, 422, "invalid_additional_limit")
        for raw in ("not json", "[1]", ""):
            with self.subTest(raw=raw):
                before = self.snap(rid)
                r = d.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
                self.assertTrue(400 <= r.status < 500, r)
                assert_error(self, r, r.status)
                self.assertEqual(self.snap(rid), before)
        # enrich: unknown or malformed flow names
        epath = "/v1/runs/%s/enrich" % rid
        for body in ({"flow": "nope"}, {"flow": "nope", "input": ENRICH}, {"flow": 5}, {},
                     {"flow": "../x"}):
            with self.subTest(body=body):
                self.refused(rid, "POST", epath, body, 422, "unknown_flow")
        # unknown runs
        assert_error(self, d.post("/v1/runs/run_nosuchrun/extend", {"additional_limit": 1}),
                     404, "run_not_found")
        assert_error(self, d.post("/v1/runs/run_nosuchrun/enrich", {"flow": "enricher"}),
                     404, "run_not_found")
        # the largest valid extension still works afterwards
        r = self.extend(rid, 995)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["limit"], 1000)
        run = wait_for(lambda: (lambda r: r if r["status"] in TERMINAL and r["attempt"] == 2
                                else None)(d.run(rid)), what="extended run finished")
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"))

    def test_extend_refused_on_each_kind_of_run(self):
        d = self.d
        running = d.create("test", {"items": 1, "sleep": 30}, limit=10)["id"]
        failed = d.create("test", {"items": 3, "error": "nope"}, limit=10)["id"]
        cancelled = d.create("test", {"sleep": 30}, limit=10)["id"]
        preview = d.create("test", {"items": 20}, preview=True)["id"]
        completed = d.create("test", {"items": 3}, limit=10)["id"]
        self.wait_running(cancelled)
        self.assertEqual(d.post("/v1/runs/%s/cancel" % cancelled).status, 202)
        self.finished_as(failed, "failed", "error_occurred")
        self.finished_as(cancelled, "cancelled", "user_cancelled")
        self.finished_as(preview, "succeeded", "match_limit_met")
        self.finished_as(completed, "succeeded", "completed")
        wait_for(lambda: d.run(running)["counts"]["items"] == 1, what="running run's item")
        self.refuse_extend(running, keys=LIVE)
        for rid in (failed, cancelled, preview, completed):
            with self.subTest(run=d.run(rid)["termination_reason"]):
                self.refuse_extend(rid)
                self.refused(rid, "POST", "/v1/runs/%s/extend" % rid,
                             {"additional_limit": 1000}, 409, "not_extendable")
        for rid in (failed, cancelled):
            self.refuse_enrich(rid)
        r = d.post("/v1/runs/%s/cancel" % running)
        self.assertEqual(r.status, 202, r)
        self.finished_as(running, "cancelled", "user_cancelled")
        self.refuse_enrich(running)

    def test_bad_paging_parameters(self):
        d = self.d
        rid = d.create("test", {"items": 120})["id"]
        self.finished_as(rid, "succeeded", "completed")
        for q in ("page=0", "page=-1", "page_size=1000", "page_size=101", "page_size=0",
                  "page_size=-5", "after=-1", "after=abc", "after=1.5", "after=", "page=abc",
                  "page=1&after=5", "status=bogus", "after=99999999999999999999999"):
            with self.subTest(q=q):
                self.refused(rid, "GET", "/v1/runs/%s/results?%s" % (rid, q), None, 400,
                             "invalid_parameter")
        assert_error(self, d.get("/v1/runs/run_nosuchrun/results"), 404, "run_not_found")
        # the limits themselves are fine
        self.assertEqual(len(d.get("/v1/runs/%s/results?page_size=100" % rid)
                             .json()["items"]), 100)
        self.assertEqual(len(d.get("/v1/runs/%s/results?page_size=1&after=119" % rid)
                             .json()["items"]), 1)


if __name__ == "__main__":
    unittest.main()
