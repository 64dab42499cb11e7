"""External workers (SPEC sections 2-3): a run of an `executor = external` flow waits in
`queued` until a remote worker opens GET /v1/runs/{id}/control (SSE of daemon -> worker
messages) or posts its first NDJSON batch to POST /v1/runs/{id}/events."""
import json
import unittest

from harness import DaemonTest, testworker_flow
from helpers import SSEReader, all_results, assert_error, events_of, finish, status_trail

FLOWS = ("[flow.ext]\nexecutor = external\ntimeout = 30s\n\n"
         "[flow.ext_short]\nexecutor = external\ntimeout = 1s\n\n" + testworker_flow("local"))


def ndjson(*msgs):
    return ("\n".join(m if isinstance(m, str) else json.dumps(m) for m in msgs) + "\n").encode()


class TestExternal(DaemonTest):
    flows = FLOWS
    limits = "kill_grace = 500ms\n"

    def post_events(self, run_id, body):
        return self.d.request("POST", "/v1/runs/%s/events" % run_id, body=body,
                              headers={"Content-Type": "application/x-ndjson"})

    def test_stays_queued_until_a_worker_attaches(self):
        run = self.d.create("ext", {"q": "x"})
        self.assertEqual(run["status"], "queued")
        # a held GET gives the scheduler a full second to (wrongly) start it
        r = self.d.get("/v1/runs/%s?wait=1" % run["id"])
        self.assertEqual(r.json()["status"], "queued", r)
        self.assertIsNone(r.json()["started_at"])
        self.assertEqual(r.json()["attempt"], 0)
        self.assertEqual(self.d.request("DELETE", "/v1/runs/" + run["id"]).status, 202)

    def test_control_stream_then_post_events(self):
        run = self.d.create("ext", {"q": "x"}, limit=50, metadata={"m": 2})
        self.assertEqual(run["status"], "queued")
        sse = SSEReader(self.d.port, "/v1/runs/%s/control" % run["id"])
        try:
            self.assertEqual(sse.status, 200)
            self.assertIn("text/event-stream", sse.headers.get("content-type", ""))
            frame = sse.next_event()
            self.assertIsNotNone(frame, "control stream closed before the start frame")
            self.assertEqual(frame.get("event"), "start", frame)
            start = json.loads(frame["data"])
            self.assertEqual(start["type"], "start")
            self.assertEqual(start["run"]["id"], run["id"])
            self.assertEqual(start["run"]["input"], {"q": "x"})
            self.assertEqual(start["run"]["limit"], 50)
            self.assertEqual(start["run"]["attempt"], 1)
            self.assertEqual(start["run"]["metadata"], {"m": 2})
            self.assertEqual(start["run"]["flow"], "ext")

            running = self.d.run(run["id"])
            self.assertEqual(running["status"], "running")
            self.assertEqual(running["attempt"], 1)

            body = ndjson({"type": "step", "name": "s1", "state": "started"},
                          {"type": "item", "data": {"k": 1}},
                          {"type": "item", "data": {"k": 2}},
                          {"type": "progress", "done": 2, "total": 3})
            r = self.post_events(run["id"], body)
            self.assertEqual(r.status, 200, r)
            out = r.json()
            self.assertEqual((out["accepted"], out["protocol_errors"]), (4, 0), out)
            self.assertEqual(out["run"]["status"], "running")
            self.assertEqual(out["run"]["counts"]["items"], 2)

            body = ndjson({"type": "item", "data": {"k": 3}},
                          {"type": "step", "name": "s1", "state": "finished"},
                          {"type": "result", "data": {"n": 3}},
                          {"type": "done"})
            r = self.post_events(run["id"], body)
            self.assertEqual(r.status, 200, r)
            out = r.json()
            self.assertEqual((out["accepted"], out["protocol_errors"]), (4, 0), out)
            self.assertEqual(out["run"]["status"], "succeeded", out)
            self.assertEqual(out["run"]["termination_reason"], "completed")
            # the control stream ends with the run
            self.assertTrue(sse.wait_eof(10), "control stream still open after the run ended")
        finally:
            sse.close()
        done = self.d.run(run["id"])
        self.assertEqual((done["status"], done["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual(done["counts"]["items"], 3)
        self.assertEqual(done["result"], {"n": 3})
        self.assertEqual(done["steps_finished"], 1)
        res = all_results(self.d, run["id"])
        self.assertEqual([it["seq"] for it in res], [1, 2, 3])
        self.assertEqual([it["data"] for it in res], [{"k": 1}, {"k": 2}, {"k": 3}])
        self.assertEqual(status_trail(self.d, run["id"]), [
            ("created", "queued", None), ("queued", "running", None),
            ("running", "succeeded", "completed")])
        self.assertEqual(events_of(self.d, run["id"])[-1]["type"], "run.end")

        # the run is finished: more posts are refused, and so is a control stream
        assert_error(self, self.post_events(run["id"], ndjson({"type": "item",
                                                               "data": {"k": 4}})), 409)
        assert_error(self, self.d.get("/v1/runs/%s/control" % run["id"],
                                      headers={"Accept": "text/event-stream"}), 409)
        self.assertEqual(self.d.run(run["id"])["counts"]["items"], 3)

    def test_post_without_control_stream_starts_the_run(self):
        run = self.d.create("ext", {})
        body = ndjson({"type": "item", "data": {"a": 1}}, "", "this is not json",
                      '{"type":"no_such_type"}', {"type": "item_error", "error": "bad one"},
                      {"type": "done", "reason": "candidates_exhausted"})
        r = self.post_events(run["id"], body)
        self.assertEqual(r.status, 200, r)
        out = r.json()
        self.assertEqual(out["protocol_errors"], 2, out)
        self.assertEqual(out["accepted"], 3, out)
        self.assertEqual(out["run"]["status"], "incomplete", out)
        self.assertEqual(out["run"]["termination_reason"], "items_failed")
        done = self.d.run(run["id"])
        self.assertEqual(done["metrics"]["protocol_errors"], 2)
        self.assertEqual(done["attempt"], 1)
        self.assertEqual(done["counts"]["item_errors"], 1)

    def test_external_error_and_cancel(self):
        run = self.d.create("ext", {})
        r = self.post_events(run["id"], ndjson({"type": "error", "message": "remote failed"}))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["run"]["status"], "failed")
        done = self.d.run(run["id"])
        self.assertEqual((done["termination_reason"], done["error"]["message"]),
                         ("error_occurred", "remote failed"))

        run = self.d.create("ext", {})
        sse = SSEReader(self.d.port, "/v1/runs/%s/control" % run["id"])
        try:
            self.assertEqual(sse.next_event().get("event"), "start")
            self.assertEqual(self.d.run(run["id"])["status"], "running")
            r = self.d.request("DELETE", "/v1/runs/" + run["id"])
            self.assertEqual(r.status, 202, r)
            done = self.d.wait_status(run["id"], "cancelled")
            self.assertEqual(done["termination_reason"], "user_cancelled")
            self.assertTrue(sse.wait_eof(10))
        finally:
            sse.close()

    def test_external_run_times_out(self):
        run = self.d.create("ext_short", {})
        sse = SSEReader(self.d.port, "/v1/runs/%s/control" % run["id"])
        try:
            self.assertEqual(sse.next_event().get("event"), "start")
            r = self.d.get("/v1/runs/%s?wait=10" % run["id"])
            self.assertEqual((r.json()["status"], r.json()["termination_reason"]),
                             ("failed", "timeout"), r)
            self.assertTrue(sse.wait_eof(10))
        finally:
            sse.close()

    def test_limit_on_external_run(self):
        run = self.d.create("ext", {}, limit=2)
        r = self.post_events(run["id"], ndjson(*[{"type": "item", "data": {"k": k}}
                                                 for k in range(5)]))
        self.assertEqual(r.status, 200, r)
        done = self.d.run(run["id"])
        self.assertEqual((done["status"], done["termination_reason"]),
                         ("succeeded", "match_limit_met"), done)
        self.assertEqual(done["counts"]["items"], 2)
        self.assertEqual(len(all_results(self.d, run["id"])), 2)

    def test_refusals(self):
        # not external: a running run of a process flow
        local = self.d.create("local", {"sleep": 30})
        self.d.wait_status(local["id"], "running")
        assert_error(self, self.post_events(local["id"], ndjson({"type": "done"})), 409,
                     "not_external")
        assert_error(self, self.d.get("/v1/runs/%s/control" % local["id"],
                                      headers={"Accept": "text/event-stream"}), 409,
                     "not_external")
        self.assertEqual(self.d.run(local["id"])["status"], "running")
        self.assertEqual(self.d.request("DELETE", "/v1/runs/" + local["id"]).status, 202)
        # a finished process run
        fin = finish(self.d, self.d.create("local", {})["id"])
        assert_error(self, self.post_events(fin["id"], ndjson({"type": "done"})), 409)
        # unknown run
        assert_error(self, self.post_events("run_nope", ndjson({"type": "done"})), 404,
                     "run_not_found")
        # a created (not started) external run is not active yet
        created = self.d.create("ext", {}, start=False)
        assert_error(self, self.post_events(created["id"], ndjson({"type": "done"})), 409)
        self.assertEqual(self.d.run(created["id"])["status"], "created")
        self.d.wait_status(local["id"], "cancelled")


if __name__ == "__main__":
    unittest.main()
