"""A fork bomb in a worker is bounded by its flow's max_processes (a cgroup pids.max), and
nothing of it is left once the run has ended: no process, no cgroup.

Processes of a run are found by the RUNSD_RUN_ID=<id> the daemon puts in the worker's
environment, which every descendant inherits (so a child that left the process group still
counts). Skipped where the daemon reports at start that it cannot enforce the limit."""
import os
import re
import time
import unittest

from harness import Daemon, testworker_flow, wait_for
from helpers import events_of, finish

LIMIT = 20
BOMB = 200


def run_processes(run_id):
    """Pids of the live (not zombie) processes whose environment names run_id."""
    marker = b"RUNSD_RUN_ID=" + run_id.encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            with open("/proc/%s/stat" % name) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(int(name))
    return out


class TestForkBomb(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(flows=testworker_flow("bomb", max_processes=LIMIT),
                        limits="kill_grace = 500ms\n").start()
        log = self.d.read_log()
        m = re.search(r"max_processes enforced through cgroup v[12](?: pids)? at ([^\s\"]+)", log)
        if not m:
            why = re.search(r"max_processes is not enforced: ([^\n]*)", log)
            self.d.stop()
            self.skipTest("cgroups are not writable here: %s" % (why.group(1) if why else log))
        self.cg_dir = m.group(1)
        self.prefix = "runsd-%d." % self.d.proc.pid

    def tearDown(self):
        self.d.stop()

    def worker_cgroups(self):
        return [n for n in os.listdir(self.cg_dir) if n.startswith(self.prefix)]

    def test_fork_bomb_is_bounded_and_cleaned_up(self):
        run_id = self.d.create("bomb", {"fork_bomb": BOMB, "sleep": 1.5,
                                        "error": "fork bomb over"})["id"]
        peak, limits = 0, set()
        deadline = time.monotonic() + 60
        while self.d.run(run_id)["status"] in ("queued", "running"):
            self.assertLess(time.monotonic(), deadline, "the run did not end")
            peak = max(peak, len(run_processes(run_id)))
            for name in self.worker_cgroups():
                try:
                    with open(os.path.join(self.cg_dir, name, "pids.max")) as f:
                        limits.add(f.read().strip())
                except OSError:
                    pass  # removed meanwhile
            time.sleep(0.02)
        done = finish(self.d, run_id)
        self.assertIn(done["status"], ("failed", "crashed"), done)
        self.assertGreater(peak, 0, "no process of the run was ever seen")
        self.assertLessEqual(peak, LIMIT, "processes of the run alive at once")
        msgs = [e["data"].get("message", "") for e in events_of(self.d, run_id, "run.log")]
        forked = [m for m in msgs if m.startswith("fork_bomb:forked=")]
        self.assertEqual(len(forked), 1, msgs)
        k = int(forked[0].split("=")[1].split("/")[0])
        self.assertLessEqual(k, LIMIT, forked[0])
        self.assertGreater(k, 0, forked[0])
        self.assertEqual(limits, {str(LIMIT)}, "the worker's cgroup and its pids.max")
        # Nothing is left: not one of the sleeping children, not the cgroup.
        wait_for(lambda: not run_processes(run_id), timeout=10, what="the run's processes to go")
        wait_for(lambda: not self.worker_cgroups(), timeout=10,
                 what="the worker cgroup to be removed")


if __name__ == "__main__":
    unittest.main()
