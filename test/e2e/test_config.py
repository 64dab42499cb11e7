"""`runsd -c FILE -t` (SPEC section 7): checks the configuration and exits 0 or 1 with the
reason, naming the file, line and key."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN, Daemon, TESTWORKER, free_port

VALID = """\
; a comment
[server]
listen = 127.0.0.1:%(port)d
public_url = http://127.0.0.1:%(port)d
max_body = 64K

[store]
path = %(tmp)s/runsd.db

[limits]
max_running = 2
kill_grace = 500ms

[auth]
key = read:abcdefghijklmnop0123
key = write:qrstuvwxyz0123456789

[flow.test]
command = %(worker)s
concurrency = 2
timeout = 10m
resumable = yes

[flow.ext]
executor = external
"""


class TestConfigCheck(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-e2e-cfg-")
        self.vars = {"port": free_port(), "tmp": self.tmp, "worker": TESTWORKER}

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, text, name="runsd.ini"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, path):
        p = subprocess.run([BIN, "-c", path, "-t"], capture_output=True, timeout=20,
                           cwd=self.tmp)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def test_valid_config(self):
        path = self.write(VALID % self.vars)
        rc, out = self.check(path)
        self.assertEqual(rc, 0, out)
        # a check neither listens nor creates the store
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "runsd.db")), out)

    def test_unknown_key_names_file_line_key(self):
        text = VALID % self.vars
        lines = text.split("\n")
        at = lines.index("max_running = 2") + 1  # insert after it
        lines.insert(at, "max_runing = 3")
        path = self.write("\n".join(lines))
        rc, out = self.check(path)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d: key 'max_runing'" % (path, at + 1), out)

    def test_unknown_key_in_flow_section(self):
        text = VALID % self.vars + "\n[flow.x]\ncommand = /bin/true\ncomand = /bin/false\n"
        path = self.write(text)
        line = text.split("\n").index("comand = /bin/false") + 1
        rc, out = self.check(path)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d: key 'comand'" % (path, line), out)

    def test_malformed_values(self):
        cases = [("[limits]\nmax_running = lots\n", 2, "max_running"),
                 ("[limits]\nkill_grace = 5 parsecs\n", 2, "kill_grace"),
                 ("[server]\nmax_body = -1\n", 2, "max_body"),
                 ("\n\n[flow.t]\ncommand = /bin/true\nresumable = maybe\n", 5, "resumable"),
                 ("[auth]\nkey = read:short\n", 2, "key"),
                 ("[auth]\nkey = root:abcdefghijklmnop0123\n", 2, "key")]
        for body, line, key in cases:
            path = self.write("[store]\npath = %s/x.db\n" % self.tmp + body, "bad.ini")
            rc, out = self.check(path)
            self.assertEqual(rc, 1, (body, out))
            self.assertIn("%s:%d:" % (path, line + 2), out, body)
            self.assertIn(key, out, body)

    def test_secret_is_not_echoed(self):
        path = self.write("[auth]\nkey = bogus:abcdefghijklmnop0123\n")
        rc, out = self.check(path)
        self.assertEqual(rc, 1, out)
        self.assertNotIn("abcdefghijklmnop0123", out)

    def test_unknown_section(self):
        path = self.write("[server]\nlisten = 127.0.0.1:1\n\n[bogus]\nx = 1\n")
        rc, out = self.check(path)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:4:" % path, out)

    def test_missing_file(self):
        path = os.path.join(self.tmp, "does-not-exist.ini")
        rc, out = self.check(path)
        self.assertEqual(rc, 1, out)
        self.assertIn(path, out)

    def test_bad_config_refuses_to_start(self):
        path = self.write("[limits]\nmax_running = 0\n")
        p = subprocess.run([BIN, "-c", path], capture_output=True, timeout=20, cwd=self.tmp)
        self.assertEqual(p.returncode, 1, p)
        self.assertTrue(re.search(r":2:.*max_running", (p.stdout + p.stderr).decode()), p)

    def test_valid_config_runs(self):
        """The config that -t accepted also starts, serves and stops with exit 0."""
        d = Daemon(tmp=self.tmp)
        d.port = self.vars["port"]
        d.config_text = lambda: VALID % self.vars
        d.start()
        try:
            r = d.get("/v1/flows", headers={"x-api-key": "abcdefghijklmnop0123"})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(sorted(f["name"] for f in r.json()["items"]), ["ext", "test"])
        finally:
            d.stop()


class TestReload(unittest.TestCase):
    """SIGHUP reloads flows; a broken file is refused and the running config kept."""

    def test_sighup(self):
        import signal
        from harness import testworker_flow, wait_for
        from helpers import finish
        d = Daemon(flows=testworker_flow("a"), limits="kill_grace = 500ms\n").start()
        try:
            flows = lambda: sorted(f["name"] for f in d.get("/v1/flows").json()["items"])
            running = d.create("a", {"sleep": 0.5, "items": 1})
            d.wait_status(running["id"], "running")
            d.flows = testworker_flow("a") + testworker_flow("b")
            with open(d.conf, "w") as f:
                f.write(d.config_text())
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: flows() == ["a", "b"], what="flow b after SIGHUP")
            self.assertEqual(finish(d, d.create("b", {"items": 1})["id"])["status"], "succeeded")
            self.assertEqual(finish(d, running["id"])["status"], "succeeded")
            # a broken file: refused, the daemon keeps serving with flows a and b
            with open(d.conf, "a") as f:
                f.write("\nbogus_key = 1\n")
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload refused" in d.read_log(), what="reload refusal in the log")
            self.assertIn("bogus_key", d.read_log())
            self.assertEqual(flows(), ["a", "b"])
            self.assertEqual(finish(d, d.create("a", {})["id"])["status"], "succeeded")
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
