"""test_faults.py: the store fails under the daemon and comes back (issue: a failed commit left
runs `running` forever with no worker, and counts that disagreed with the stored results).

Two ways to break the store: a small tmpfs of its own, filled up (disk full; needs root to
mount, skipped otherwise), and a read-only store, injected by the LD_PRELOAD shim
test/faults/rofault.c (a filesystem cannot be remounted read-only while SQLite holds it
open): while a flag file exists, every write-type call under the store's directory fails
with EROFS. While the store fails the daemon answers writes 503 with Retry-After, /readyz is
503, and reads are served from what is stored (every bit of it published; memory that is
ahead of the store is not shown); when it comes back the daemon catches up without a
restart: every run ends where its worker put it, its counts equal its stored results, every
event is stored once, and SQLite's integrity check passes.

JournalBound: while the store fails, the journal that holds the writes is bounded by
[store] max_journal: past it the worker is paused (its pipe fills and it blocks), nothing is
dropped, and after recovery every item is stored.
"""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import BACKEND, VALGRIND, Daemon, testworker_flow, wait_for
from helpers import all_results, assert_journal_held, metric

# These faults are of the SQLite file (its disk fills, its directory turns read-only); the
# PostgreSQL equivalent, the database server stopped under load and while idle, is test_pg's.
SQLITE_ONLY = "faults of the SQLite store file; PostgreSQL's are in test_pg"

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


def check_stored_view(tc, d, run_id):
    """While the store fails: the run, its results and its events are served from the store,
    and agree with each other (counts = results; ids ascending). Returns the run."""
    r = d.get("/v1/runs/" + run_id)
    tc.assertEqual(r.status, 200, r)
    run = r.json()
    results = all_results(d, run_id)
    tc.assertEqual(len(results), run["counts"]["items"])
    tc.assertEqual([x["seq"] for x in results], list(range(1, len(results) + 1)))
    events = d.events(run_id)
    ids = [e["id"] for e in events]
    tc.assertEqual(ids, sorted(set(ids)))
    tc.assertEqual(sum(1 for e in events if e["type"] == "run.item"), len(results))
    return run


def shim_env(tc, tmp, store_dir):
    """The daemon's environment with the read-only shim, and the flag that switches it on."""
    shim = os.environ.get("RUNSD_FAULT_SHIM")
    if not shim or not os.path.exists(shim):
        tc.skipTest("the read-only shim is not built (RUNSD_FAULT_SHIM; ctest sets it)")
    if VALGRIND:
        # valgrind runs the daemon on its own core, whose preloads come before ours.
        tc.skipTest("the LD_PRELOAD shim is not used under valgrind")
    flag = os.path.join(tmp, "store-read-only")
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"LD_PRELOAD": shim, "RUNSD_FAULT_RO": flag, "RUNSD_FAULT_DIR": store_dir,
           "RUNSD_FAULT_LOG": os.path.join(tmp, "faults.log"),
           # ASan wants its runtime first in the library list; the shim calls on to it.
           "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
    return env, flag


@unittest.skipIf(BACKEND == "postgresql", SQLITE_ONLY)
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
        # Reads show what is stored, not what memory holds beyond it.
        stored = check_stored_view(self, d, run["id"])
        self.assertEqual(stored["status"], "running")
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


@unittest.skipIf(BACKEND == "postgresql", SQLITE_ONLY)
class ReadOnlyStore(unittest.TestCase):
    """The store's directory turns read-only under the running daemon, then writable again."""

    ITEMS = 400

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-rofault-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store_dir = os.path.join(self.tmp, "store")
        os.mkdir(self.store_dir)
        env, self.flag = shim_env(self, self.tmp, self.store_dir)
        self.d = Daemon(flows=testworker_flow("items"), tmp=self.tmp, env=env,
                        store_path=os.path.join(self.store_dir, "runsd.db")).start()

    def tearDown(self):
        if getattr(self, "d", None):
            self.d.stop()

    def test_read_only_then_writable(self):
        d = self.d
        done = d.create("items", {"items": 5, "result": {"n": 5}})
        d.wait_status(done["id"], "succeeded")
        slow = [d.create("items", {"items": self.ITEMS, "checkpoint": True, "item_delay": 0.01})
                for _ in range(2)]
        for run in slow:
            wait_for(lambda: d.run(run["id"])["counts"]["items"] >= 5, what="items before")
        seen = {run["id"]: {e["id"] for e in d.events(run["id"])} for run in slow + [done]}
        done_events = d.events(done["id"])

        open(self.flag, "w").close()
        # The flag alone, through the shim, makes the next commit fail: this fails when the
        # shim is not loaded.
        wait_for(lambda: d.get("/readyz").status == 503, timeout=30, what="readyz 503")
        with open(os.path.join(self.tmp, "faults.log")) as f:
            refused = f.read()
        self.assertIn(self.store_dir, refused)
        r = d.post("/v1/runs", {"flow": "items", "input": {"items": 1}})
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["error"]["code"], "store_unavailable")
        self.assertEqual(r.headers.get("retry-after"), "1")
        # Reads are served from the store: the finished run as it was, the running ones as
        # last stored (their counts agree with their stored results).
        r = d.get("/v1/runs/" + done["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "succeeded")
        self.assertEqual(r.json()["result"], {"n": 5})
        self.assertEqual(d.events(done["id"]), done_events)
        self.assertEqual([x["data"]["i"] for x in all_results(d, done["id"])], list(range(5)))
        self.assertEqual(d.get("/v1/runs?flow=items").status, 200)
        for run in slow:
            stored = check_stored_view(self, d, run["id"])
            self.assertEqual(stored["status"], "running")
            seen[run["id"]] |= {e["id"] for e in d.events(run["id"])}
        # The workers go on while the store fails: what they send is held, not stored.
        wait_for(lambda: metric(d, "runsd_store_journal_bytes") > 0, what="a held write")
        # The run the refused POST would have made does not appear later.
        total_before = d.get("/v1/runs?flow=items").json()["total"]

        os.unlink(self.flag)
        wait_for(lambda: d.get("/readyz").status == 200, timeout=30, what="readyz 200")
        self.assertEqual(d.post("/v1/runs", {"flow": "items", "input": {"items": 1},
                                             "start": False}).status, 201)
        self.assertEqual(d.get("/v1/runs?flow=items").json()["total"], total_before + 1)
        for run in slow:
            end = d.wait_status(run["id"], "succeeded", timeout=60)
            results = all_results(d, run["id"])
            self.assertEqual(end["counts"]["items"], self.ITEMS)
            self.assertEqual([x["data"]["i"] for x in results], list(range(self.ITEMS)))
            events = d.events(run["id"])
            ids = [e["id"] for e in events]
            self.assertEqual(ids, sorted(set(ids)))  # each stored once, in order
            self.assertLessEqual(seen[run["id"]], set(ids))
            self.assertEqual(sum(1 for e in events if e["type"] == "run.item"), self.ITEMS)
            self.assertEqual(events[-1]["type"], "run.end")
        self.assertEqual({e["id"] for e in d.events(done["id"])}, seen[done["id"]])
        self.assertEqual(metric(d, "runsd_store_journal_bytes"), 0)
        d.stop()
        db = sqlite3.connect(os.path.join(self.store_dir, "runsd.db"))
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        db.close()


@unittest.skipIf(BACKEND == "postgresql", SQLITE_ONLY)
class JournalBound(unittest.TestCase):
    """[store] max_journal: a worker that keeps writing while the store fails is paused."""

    BOUND = 256 * 1024
    ITEMS = 20000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-journal-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store_dir = os.path.join(self.tmp, "store")
        os.mkdir(self.store_dir)
        env, self.flag = shim_env(self, self.tmp, self.store_dir)
        self.d = Daemon(flows=testworker_flow("items"), tmp=self.tmp, env=env,
                        store_path=os.path.join(self.store_dir, "runsd.db"),
                        extra="[store]\nmax_journal = %d\n" % self.BOUND)
        # extra lands in [limits]; the key belongs to [store], which the harness writes first.
        self.d.config_text = self.config_text
        self.d.start()

    def config_text(self):
        d = self.d
        return ("[server]\nlisten = 127.0.0.1:%d\npublic_url = http://127.0.0.1:%d\n\n"
                "[store]\npath = %s\nmax_journal = %d\n\n%s\n"
                % (d.port, d.port, d.store, self.BOUND, d.flows))

    def tearDown(self):
        if getattr(self, "d", None):
            self.d.stop()

    def test_bound_pauses_the_worker(self):
        d = self.d
        self.assertEqual(metric(d, "runsd_store_journal_max_bytes"), self.BOUND)
        run = d.create("items", {"items": self.ITEMS, "item_delay": 0.0002})
        wait_for(lambda: d.run(run["id"])["counts"]["items"] >= 50, what="items before")
        open(self.flag, "w").close()
        assert_journal_held(self, d, self.BOUND)  # paused: each item would be a held write
        self.assertEqual(metric(d, "runsd_runs_running"), 1)
        self.assertEqual(d.get("/readyz").status, 503)
        os.unlink(self.flag)
        end = d.wait_status(run["id"], "succeeded", timeout=120)
        self.assertEqual(metric(d, "runsd_store_journal_over"), 0)
        self.assertGreaterEqual(metric(d, "runsd_store_journal_over_total"), 1)
        results = all_results(d, run["id"])
        self.assertEqual(end["counts"]["items"], self.ITEMS)
        self.assertEqual([x["data"]["i"] for x in results], list(range(self.ITEMS)))
        d.stop()
        db = sqlite3.connect(os.path.join(self.store_dir, "runsd.db"))
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        db.close()


if __name__ == "__main__":
    unittest.main()
