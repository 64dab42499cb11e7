"""test_faults.py: the store fails under the daemon and comes back (issue: a failed commit left
runs `running` forever with no worker, and counts that disagreed with the stored results).

The store lives on a small tmpfs of its own, filled up (disk full). While
it fails the daemon answers 503 with Retry-After, /readyz is 503, reads that need no store are
served; when it comes back the daemon catches up without a restart: every run ends where its
worker put it, its counts equal its stored results, and SQLite's integrity check passes.
Needs root (mount); skipped with a reason otherwise.
"""
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

from harness import Daemon, testworker_flow, wait_for
from helpers import all_results

ITEMS = 3000


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                       capture_output=True)
    return r.returncode == 0


def fill(path):
    """Writes a file until the filesystem is full; returns its path."""
    name = os.path.join(path, "filler")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o600)
    for size in (1 << 20, 65536, 4096, 512, 1):
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
    os.close(fd)
    return name


def metric(d, name):
    body = d.get("/metrics").body.decode()
    m = re.search(r"^%s (\d+)" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


class StoreFaults(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs for the store")
        self.tmp = tempfile.mkdtemp(prefix="runsd-faults-")
        self.mnt = os.path.join(self.tmp, "store")
        if not mount_tmpfs(self.mnt, "24m"):
            shutil.rmtree(self.tmp)
            self.skipTest("cannot mount a tmpfs here")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(subprocess.run, ["umount", self.mnt])
        self.d = Daemon(flows=testworker_flow("items"), tmp=self.tmp,
                        store_path=os.path.join(self.mnt, "runsd.db")).start()

    def tearDown(self):
        if getattr(self, "d", None):
            self.d.stop()

    def failing_window(self, break_store, heal_store):
        d = self.d
        run = d.create("items", {"items": ITEMS, "checkpoint": True, "item_delay": 0.0005})
        break_store()
        wait_for(lambda: d.get("/readyz").status == 503, timeout=30, what="readyz 503")
        # Writes are refused with Retry-After; reads that need no store are served.
        r = d.post("/v1/runs", {"flow": "items", "input": {"items": 1}})
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["error"]["code"], "store_unavailable")
        self.assertIn("retry-after", r.headers)
        self.assertEqual(d.get("/v1/flows").status, 200)
        # The worker ends while the store fails: its end is held, not lost.
        wait_for(lambda: metric(d, "runsd_runs_running") == 0, timeout=60,
                 what="the worker to exit")
        self.assertEqual(d.get("/v1/runs/" + run["id"]).status, 503)
        heal_store()
        wait_for(lambda: d.get("/readyz").status == 200, timeout=30, what="readyz 200")
        done = d.wait_status(run["id"], "succeeded", timeout=30)
        results = all_results(d, run["id"])
        self.assertEqual(done["counts"]["items"], ITEMS)
        self.assertEqual(len(results), ITEMS)
        self.assertEqual([x["data"]["i"] for x in results], list(range(ITEMS)))
        events = d.events(run["id"])
        ids = [e["id"] for e in events]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(events[-1]["type"], "run.end")
        self.assertEqual(sum(1 for e in events if e["type"] == "run.item"), ITEMS)
        d.stop()
        db = sqlite3.connect(os.path.join(self.mnt, "runsd.db"))
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        db.close()

    def test_disk_full_then_space_returns(self):
        filler = []
        self.failing_window(lambda: filler.append(fill(self.mnt)),
                            lambda: os.unlink(filler[0]))


if __name__ == "__main__":
    unittest.main()
