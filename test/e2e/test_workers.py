"""Misbehaving workers (SPEC section 2): protocol errors, over-long lines, stderr floods,
spawn failures. None of it may hurt the daemon or another run."""
import json
import os
import time
import unittest

import harness
from harness import DaemonTest, testworker_flow
from helpers import all_results, events_of, finish

FLOWS = (testworker_flow("test") +
         "[flow.missing]\ncommand = /nonexistent/worker --x\n")


def _not_executable():
    """A plain file without the x bit (removed at exit)."""
    import atexit
    import os
    import tempfile
    fd, path = tempfile.mkstemp(prefix="runsd-e2e-noexec-")
    os.write(fd, b"#!/bin/sh\nexit 0\n")
    os.close(fd)
    os.chmod(path, 0o644)
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return path


NOT_EXECUTABLE = _not_executable()


def sh_flow(name, script, **keys):
    """A flow whose worker is `/bin/sh -c SCRIPT` (the config splits like a shell)."""
    quoted = script.replace("\\", "\\\\").replace('"', '\\"')
    lines = ["[flow.%s]" % name, 'command = /bin/sh -c "%s"' % quoted]
    lines += ["%s = %s" % kv for kv in keys.items()]
    return "\n".join(lines) + "\n"


class TestRawWorkers(DaemonTest):
    """Workers written in sh, for bytes testworker.py cannot produce."""
    limits = "kill_grace = 500ms\n"
    flows = (sh_flow("utf8", r"""printf '{"type":"item","data":{"s":"\377"}}\n"""
                             r"""{"type":"item","data":{"a":1}}\n'""") +
             sh_flow("nul", r"""printf '{"type":"item","data":{"a":1}}\000xx\n"""
                            r"""{"type":"log","level":"info","message":"a\\u0000b"}\n"""
                            r"""{"type":"item","data":{"a":2}}\n'""") +
             sh_flow("nonl", r"""printf '{"type":"item","data":{"a":1}}'""") +
             sh_flow("crlf", r"""printf '{"type":"item","data":{"a":1}}\r\n\r\n\n"""
                             r"""{"type":"done"}\r\n'""") +
             sh_flow("grandchild", r"""sleep 3 & echo '{"type":"item","data":{"g":1}}'""") +
             sh_flow("closeout", "exec >&-; sleep 5", timeout="1s"))

    def run_flow(self, flow):
        run = finish(self.d, self.d.create(flow, {})["id"])
        return run, all_results(self.d, run["id"])

    def test_invalid_utf8_line_is_a_protocol_error(self):
        run, res = self.run_flow("utf8")
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual(run["metrics"]["protocol_errors"], 1)
        self.assertEqual([it["data"] for it in res], [{"a": 1}])

    def test_nul_bytes(self):
        run, res = self.run_flow("nul")
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual(run["metrics"]["protocol_errors"], 2, run["metrics"])
        self.assertEqual([it["data"] for it in res], [{"a": 2}])
        # every stored event is valid JSON text for clients
        for e in self.d.events(run["id"]):
            self.assertNotIn("\x00", json.dumps(e))

    def test_last_line_without_newline(self):
        run, res = self.run_flow("nonl")
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual([it["data"] for it in res], [{"a": 1}])

    def test_crlf_and_blank_lines(self):
        run, res = self.run_flow("crlf")
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual(run["metrics"]["protocol_errors"], 0, run["metrics"])
        self.assertEqual([it["data"] for it in res], [{"a": 1}])

    def test_grandchild_holding_stdout(self):
        t0 = time.monotonic()
        run, res = self.run_flow("grandchild")
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual([it["data"] for it in res], [{"g": 1}])
        self.assertLess(time.monotonic() - t0, 10)

    def test_worker_closing_stdout_still_times_out(self):
        run, _ = self.run_flow("closeout")
        self.assertEqual((run["status"], run["termination_reason"]), ("failed", "timeout"), run)


class TestFlowPolicy(DaemonTest):
    limits = "kill_grace = 500ms\n"
    flows = (testworker_flow("rate", min_match_rate="0.5", min_evaluated="4") +
             testworker_flow("lim", limit="2", max_limit="5") +
             testworker_flow("envf", env="RUNSD_E2E_A=hello world", cwd="/tmp") +
             "[flow.notexec]\ncommand = %s\n" % NOT_EXECUTABLE +
             "[flow.isdir]\ncommand = /tmp\n")

    def test_low_match_rate_policy(self):
        # 1 match in the first 4 evaluated: under 0.5 once min_evaluated is reached. The
        # worker ignores SIGTERM, so it writes every line; what follows the decision must
        # not change the counts the decision was made on.
        cands = [False, False, True, False, False] + [True] * 50
        run = finish(self.d, self.d.create("rate", {"candidates": cands, "items": 1,
                                                    "ignore_term": True})["id"])
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "low_match_rate"), run)
        self.assertEqual(run["counts"]["items"], 1)
        self.assertGreaterEqual(run["counts"]["evaluated"], 4)
        self.assertLess(run["counts"]["matched"] / run["counts"]["evaluated"], 0.5,
                        "a low_match_rate run whose counts show %d/%d matched"
                        % (run["counts"]["matched"], run["counts"]["evaluated"]))

    def test_match_rate_above_threshold_completes(self):
        run = finish(self.d, self.d.create("rate", {"candidates": [True, False] * 10})["id"])
        self.assertEqual((run["status"], run["termination_reason"]), ("succeeded", "completed"))
        self.assertEqual((run["counts"]["evaluated"], run["counts"]["matched"]), (20, 10))

    def test_done_low_match_rate_from_worker(self):
        run = finish(self.d, self.d.create("lim", {"done": "low_match_rate"})["id"])
        self.assertEqual((run["status"], run["termination_reason"]),
                         ("succeeded", "low_match_rate"))

    def test_flow_default_and_max_limit(self):
        run = self.d.create("lim", {"items": 10, "stop_at_limit": True})
        self.assertEqual(run["limit"], 2)
        run = finish(self.d, run["id"])
        self.assertEqual((run["termination_reason"], run["counts"]["items"]),
                         ("match_limit_met", 2))
        self.assertEqual(self.d.create("lim", {}, limit=5)["limit"], 5)
        r = self.d.post("/v1/runs", {"flow": "lim", "limit": 6})
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json()["error"]["code"], "limit_too_large")

    def test_env_and_cwd(self):
        run = finish(self.d, self.d.create("envf", {"echo_env": ["RUNSD_E2E_A", "RUNSD_RUN_ID",
                                                                 "RUNSD_FLOW"],
                                                    "echo_proc": True})["id"])
        self.assertEqual(run["status"], "succeeded")
        logs = [e["data"]["message"] for e in events_of(self.d, run["id"], "run.log")]
        self.assertIn("env:RUNSD_E2E_A=hello world", logs)
        self.assertIn("env:RUNSD_RUN_ID=" + run["id"], logs)
        self.assertIn("env:RUNSD_FLOW=envf", logs)
        proc = json.loads([m for m in logs if m.startswith("proc:")][0][5:])
        self.assertEqual(proc["cwd"], "/tmp")

    def test_not_executable_spawn_failed(self):
        for flow in ("notexec", "isdir"):
            run = finish(self.d, self.d.create(flow, {})["id"])
            self.assertEqual((run["status"], run["termination_reason"]),
                             ("crashed", "spawn_failed"), run)
            self.assertEqual(run["attempt"], 0)


class TestMaxItems(DaemonTest):
    limits = "kill_grace = 500ms\nmax_items = 5\n"

    def test_items_over_max_items_dropped(self):
        run = finish(self.d, self.d.create("test", {"items": 12})["id"])
        self.assertEqual(run["counts"]["items"], 5, run)
        self.assertEqual(run["metrics"]["dropped_items"], 7, run["metrics"])
        self.assertGreaterEqual(run["metrics"]["protocol_errors"], 1)
        self.assertEqual([it["seq"] for it in all_results(self.d, run["id"])], [1, 2, 3, 4, 5])


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

    def test_100_mb_without_a_newline(self):
        # The daemon keeps at most its line bound of it, whatever the worker writes.
        run = finish(self.d, self.d.create("test", {"long_line": 100 * 1024 * 1024,
                                                    "no_newline": True})["id"], timeout=120)
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual(run["metrics"]["protocol_errors"], 1, run["metrics"])
        # Not under ASan (its quarantine keeps freed buffers) nor valgrind (its own memory).
        if os.environ.get("ASAN_OPTIONS") is None and not harness.VALGRIND:
            with open("/proc/%d/status" % self.d.proc.pid) as f:
                hwm_kb = int(next(l for l in f if l.startswith("VmHWM:")).split()[1])
            self.assertLess(hwm_kb, 100 * 1024, "the daemon held the unterminated line")

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
        self.assertIn(b'runsd_spawn_failures_total{flow="missing"} 1\n', r.body)

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
