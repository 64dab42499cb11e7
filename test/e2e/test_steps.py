"""Run steps after a limit stop and across attempts (issue 11), with the demo's pkgsearch flow
(conf/demo.ini: a flow with a limit) over a generated dpkg status file.

A run the limit stops succeeds: no step of it may still read `started`. A run extended after
its limit runs a second attempt that repeats the steps: `steps` keeps one entry per step
name (its latest state) and `steps_finished` counts the entries of `steps` that are
finished, so the two always agree (docs/api.md, "Steps")."""
import os
import sys
import unittest

from harness import SOURCE, DaemonTest, wait_for
from helpers import TERMINAL, finish

PKGSEARCH = "%s %s" % (sys.executable, os.path.join(os.path.abspath(SOURCE),
                                                   "conf/flows/pkgsearch.py"))


def write_status(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write("Package: pkg%03d\nStatus: install ok installed\nSection: libs\n"
                    "Installed-Size: %d\nVersion: 1.%d\n\n" % (i, 10 + i, i))


class TestSteps(DaemonTest):
    flows = "[flow.pkgsearch]\ncommand = %s\nlimit = 50\n" % PKGSEARCH

    def setUp(self):
        super().setUp()
        self.status = os.path.join(self.d.tmp, "status")
        write_status(self.status, 40)

    def assert_steps_agree(self, run):
        finished = [s["name"] for s in run["steps"] if s["state"] == "finished"]
        self.assertEqual(run["steps_finished"], len(finished), run["steps"])
        for s in run["steps"]:
            self.assertEqual(s["state"], "finished", run["steps"])
            self.assertIsNotNone(s["finished_at"], s)

    def test_limit_stop_finishes_the_open_step(self):
        run = self.d.create("pkgsearch", {"status_path": self.status}, limit=3)
        done = finish(self.d, run["id"])
        self.assertEqual((done["status"], done["termination_reason"]),
                         ("succeeded", "match_limit_met"), done)
        self.assertEqual([s["name"] for s in done["steps"]], ["load", "scan"])
        self.assert_steps_agree(done)
        self.assertEqual(done["steps_finished"], 2)
        # The event log says the same as the run object: scan's last run.step is finished.
        steps = [e["data"] for e in self.d.events(run["id"]) if e["type"] == "run.step"]
        self.assertEqual(steps[-1], {"name": "scan", "state": "finished", "total": 40})

    def test_steps_finished_counts_the_steps_listed(self):
        run = self.d.create("pkgsearch", {"status_path": self.status}, limit=3)
        finish(self.d, run["id"])
        r = self.d.post("/v1/runs/%s/extend" % run["id"], {"additional_limit": 3})
        self.assertEqual(r.status, 202, r)
        done = wait_for(lambda: (lambda x: x if x["attempt"] == 2 and x["status"] in TERMINAL
                                 else None)(self.d.run(run["id"])), what="the second attempt")
        self.assertEqual(done["attempt"], 2)
        self.assert_steps_agree(done)
        self.assertEqual(done["steps_finished"], 2)


if __name__ == "__main__":
    unittest.main()
