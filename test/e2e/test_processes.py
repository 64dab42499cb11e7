"""Worker processes do not outlive what they belong to: a worker and what it started die with
the attempt (its process group is killed when it exits) and with the daemon (PDEATHSIG, and at
the next start the process groups recorded in the store), so a resumed attempt never overlaps
the one before it.

The test worker records its pid, its grandchild's and which processes of earlier attempts are
still alive when it starts (input.proc_log, see test/workers/README.md)."""
import json
import os
import signal
import unittest

from harness import Daemon, testworker_flow, wait_for
from helpers import all_results, finish

FLOWS = testworker_flow("res", resumable="yes") + testworker_flow("plain")
LIMITS = "kill_grace = 500ms\n"


def proc_start(pid):
    """(start time, state) of pid from /proc/pid/stat, (None, None) if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[19], fields[0]
    except (OSError, IndexError):
        return None, None


def alive(p):
    """p ({"pid","start"}) is still that process and not a zombie."""
    start, state = proc_start(p["pid"])
    return start == p["start"] and state != "Z"


class ProcessTest(unittest.TestCase):
    def setUp(self):
        self.daemons = []
        self.procs = []  # every worker and grandchild seen, killed at tearDown if alive
        self.d = self.start()
        self.log_path = os.path.join(self.d.tmp, "procs.log")

    def start(self, old=None):
        d = Daemon(flows=FLOWS, limits=LIMITS, store_path=old and old.store,
                   tmp=old and old.tmp)
        if old is not None:
            d.port = old.port
        self.daemons.append(d)
        return d.start()

    def tearDown(self):
        try:
            self.daemons[-1].stop()
        finally:
            for p in self.procs:
                if alive(p):
                    try:
                        os.kill(p["pid"], signal.SIGKILL)
                    except OSError:
                        pass

    def records(self, n=1):
        """The proc_log lines, once there are at least n."""
        def read():
            try:
                with open(self.log_path) as f:
                    recs = [json.loads(line) for line in f if line.endswith("\n")]
            except FileNotFoundError:
                return None
            return recs if len(recs) >= n else None

        recs = wait_for(read, what="%d proc_log records" % n)
        for r in recs:
            for p in (r, r["grandchild"]):
                if p and p not in self.procs:
                    self.procs.append(p)
        return recs

    def wait_gone(self, p, what, timeout=5):
        wait_for(lambda: not alive(p), timeout=timeout, what=what)


class TestKill9NoOverlap(ProcessTest):
    def test_workers_die_with_the_daemon_and_attempts_never_overlap(self):
        # Attempt 1 writes 3 items and then sleeps without writing, so it cannot notice the
        # daemon's death through a broken stdout pipe; attempt 2 resumes and finishes.
        n = 3
        run = self.d.create("res", {"items": n, "checkpoint": True, "sleep_after_items": 300,
                                    "sleep_attempt": 1, "done": True,
                                    "grandchild": "detached", "proc_log": self.log_path})
        first = self.records(1)[0]
        self.assertTrue(alive(first) and alive(first["grandchild"]), first)
        wait_for(lambda: self.d.run(run["id"])["counts"]["items"] >= n, what="%d items" % n)
        self.d.kill9()
        # The worker dies with the daemon (PR_SET_PDEATHSIG), not at the next start.
        self.wait_gone(first, "the worker to die with the daemon")
        self.d = self.start(self.d)
        second = self.records(2)[1]
        self.assertEqual(second["attempt"], 2, second)
        # Nothing of attempt 1 (the worker, nor the grandchild it left behind in its process
        # group) was alive when attempt 2 started: the restart killed the recorded group first.
        self.assertEqual(second["alive_at_start"], [], second)
        self.assertFalse(alive(first["grandchild"]))
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["attempt"]), ("succeeded", 2), done)
        self.assertEqual([it["data"]["i"] for it in all_results(self.d, run["id"])],
                         list(range(n)))
        # The second attempt's grandchild went with its worker.
        self.wait_gone(second["grandchild"], "attempt 2's grandchild to die with its worker")


class TestAttemptEnd(ProcessTest):
    def test_grandchild_holding_stdout_is_killed_when_the_worker_exits(self):
        run = self.d.create("plain", {"grandchild": "stdout", "proc_log": self.log_path,
                                      "items": 1, "done": True})
        rec = self.records(1)[0]
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]),
                         ("succeeded", "completed"), done)
        self.assertEqual(done["counts"]["items"], 1)
        self.wait_gone(rec, "the worker")
        self.wait_gone(rec["grandchild"], "the grandchild holding stdout to be killed")

    def test_worker_that_exits_normally_is_unaffected(self):
        run = self.d.create("plain", {"grandchild": "detached", "proc_log": self.log_path,
                                      "items": 3, "result": {"ok": 1}, "done": True})
        rec = self.records(1)[0]
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["counts"]["items"]), ("succeeded", 3), done)
        self.assertEqual(done["result"], {"ok": 1})
        self.wait_gone(rec["grandchild"], "the detached grandchild")


if __name__ == "__main__":
    unittest.main()
