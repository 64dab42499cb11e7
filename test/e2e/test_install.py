"""Installation (issue 11): `cmake --install` to a temporary prefix gives a daemon, a config
and the demo workers that run from any working directory; the CLI (--help, --version, the
default config path); `-t` reports worker commands that cannot be executed; a relative
command is found next to its config; config lines longer than inih's buffer work."""
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import BIN, BUILD, WORKERS, Response, free_port, wait_for

PYTHON = sys.executable


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hdrs = {}
    if body is not None:
        body = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    out = Response(r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read())
    conn.close()
    return out


class Proc:
    """A runsd started by hand (argv and cwd chosen by the test), stopped with SIGTERM."""

    def __init__(self, argv, cwd, port):
        self.port = port
        self.logpath = os.path.join(cwd, "runsd.log")
        self.log = open(self.logpath, "ab")
        self.p = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=self.log)

        def ready():
            if self.p.poll() is not None:
                raise AssertionError("runsd exited %s: %s" % (self.p.returncode, self.text()))
            try:
                return request(port, "GET", "/readyz").status == 200
            except OSError:
                return False

        wait_for(ready, what="runsd readiness")

    def text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def run_to_end(self, body, statuses):
        r = request(self.port, "POST", "/v1/runs", body)
        assert r.status == 201, r
        rid = r.json()["id"]

        def done():
            run = request(self.port, "GET", "/v1/runs/%s?wait=5" % rid).json()
            return run if not run["is_active"] else None

        run = wait_for(done, timeout=60, what="run %s to end" % rid)
        assert run["status"] in statuses, (run, self.text())
        return run

    def stop(self):
        self.p.terminate()
        rc = self.p.wait(timeout=30)
        self.log.close()
        assert rc == 0, "runsd exited %s on SIGTERM: %s" % (rc, self.text())


class TestInstall(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="runsd-e2e-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix with space")
        p = subprocess.run(["cmake", "--install", BUILD, "--prefix", cls.prefix],
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        cls.bin = os.path.join(cls.prefix, "sbin", "runsd")
        cls.conf = os.path.join(cls.prefix, "etc", "runsd", "runsd.ini")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="elsewhere-", dir=self.tmp)

    def test_layout(self):
        for rel in ["sbin/runsd", "etc/runsd/runsd.ini", "share/runsd/flows/pkgsearch.py",
                    "share/runsd/flows/runsd_worker.py", "share/runsd/demo-data/customers.csv",
                    "share/doc/runsd/README.md", "share/doc/runsd/runsd.example.ini",
                    "share/doc/runsd/docs/workers.md", "share/doc/runsd/examples/workers.ini",
                    "share/man/man8/runsd.8", "share/man/man5/runsd.conf.5",
                    "bin/runsctl", "share/man/man1/runsctl.1",
                    "lib/systemd/system/runsd.service", "lib/systemd/system/runsd.socket",
                    "lib/sysusers.d/runsd.conf", "lib/tmpfiles.d/runsd.conf"]:
            self.assertTrue(os.path.exists(os.path.join(self.prefix, rel)), rel)
        self.assertTrue(os.access(os.path.join(self.prefix, "share/runsd/flows/mapper.py"),
                                  os.X_OK))
        unit = open(os.path.join(self.prefix, "lib/systemd/system/runsd.service")).read()
        # (quoted: the prefix has a blank)
        self.assertIn('ExecStart="%s" -c "%s"\n' % (self.bin, self.conf), unit)
        # Every worker command of the installed config is an absolute path into the prefix.
        # (The prefix has a blank in it: the paths are quoted as runsd splits commands.)
        cmds = re.findall(r"^command = (.*)$", open(self.conf).read(), re.M)
        self.assertGreaterEqual(len(cmds), 4)
        for c in cmds:
            prog = shlex.split(c)[0]
            self.assertTrue(prog.startswith(os.path.join(self.prefix, "share/runsd/flows/")), c)
            self.assertTrue(os.access(prog, os.X_OK), prog)

    def test_installed_flows_run_from_another_directory(self):
        # The installed config as installed, but for a free port.
        port = free_port()
        text = open(self.conf).read()
        with open(self.conf, "w") as f:
            f.write(re.sub(r"^listen = .*$", "listen = 127.0.0.1:%d" % port, text, flags=re.M))
        p = subprocess.run([self.bin, "-t", "-c", self.conf], cwd=self.cwd, capture_output=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        d = Proc([self.bin, "-c", self.conf], self.cwd, port)
        try:
            run = d.run_to_end({"flow": "pkgsearch", "input": {"name_contains": "lib"},
                                "limit": 3}, ("succeeded",))
            self.assertEqual(run["counts"]["items"], 3, run)
            run = d.run_to_end({"flow": "mapper"}, ("incomplete",))
            self.assertGreater(run["counts"]["items"], 0, run)
            # The installed client against the installed daemon: the outcome is its exit code.
            p = subprocess.run([os.path.join(self.prefix, "bin", "runsctl"), "-u",
                                "http://127.0.0.1:%d" % port, "create", "pkgsearch", "--input",
                                '{"name_contains":"lib"}', "--limit", "2", "--wait"],
                               cwd=self.cwd, capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("succeeded (match_limit_met)", p.stderr)
        finally:
            d.stop()
        # The store is the installed state directory's, not the working directory's.
        self.assertTrue(os.path.exists(os.path.join(self.prefix, "var/lib/runsd/runsd.db")))
        self.assertEqual(sorted(os.listdir(self.cwd)), ["runsd.log"])

    def test_help_and_version(self):
        for arg in ("--help", "-h"):
            p = subprocess.run([BIN, arg], capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 0)
            out = p.stdout.decode()
            for word in ("--config", "--test", "--version", "/etc/runsd/runsd.ini"):
                self.assertIn(word, out)
        for arg in ("--version", "-V"):
            p = subprocess.run([BIN, arg], capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 0)
            self.assertRegex(p.stdout.decode(), r"^runsd \d+\.\d+\.\d+\n$")
        p = subprocess.run([BIN, "--bogus"], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage:", p.stderr.decode())
        p = subprocess.run([BIN, "--config", "/nonexistent/r.ini", "--test"],
                           capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent/r.ini: cannot open", p.stderr.decode())

    def write(self, name, text, mode=0o644):
        path = os.path.join(self.cwd, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_check_reports_commands_that_cannot_run(self):
        self.write("bin/not-exec.sh", "#!/bin/sh\n", 0o644)
        conf = self.write("r.ini", "[flow.ok]\ncommand = /bin/true\n"
                          "[flow.gone]\ncommand = /nonexistent/worker --x\n"
                          "[flow.noexec]\ncommand = bin/not-exec.sh\n"
                          "[flow.nopath]\ncommand = no-such-runsd-worker\n"
                          "[flow.ext]\nexecutor = external\n")
        p = subprocess.run([BIN, "-c", conf, "-t"], capture_output=True, timeout=10, cwd="/")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("3 worker command(s) cannot be started", err)
        self.assertIn("%s:4: key 'command': /nonexistent/worker does not exist" % conf, err)
        self.assertIn("%s:6: key 'command': %s/bin/not-exec.sh is not executable"
                      % (conf, os.path.realpath(self.cwd)), err)
        self.assertIn("%s:8: key 'command': no-such-runsd-worker not found in PATH" % conf, err)
        self.assertNotIn("valid", p.stdout.decode())

    def test_relative_command_and_long_line(self):
        # The worker is named relative to the config's directory (not runsd's cwd, not the
        # flow's cwd), on a line longer than inih's 198-character buffer.
        confdir = os.path.join(self.cwd, "conf")
        self.write("conf/workers/w.sh", "#!/bin/sh\nexec %s %s/testworker.py\n"
                   % (PYTHON, os.path.abspath(WORKERS)), 0o755)
        port = free_port()
        pad = "x" * 300
        conf = self.write("conf/r.ini",
                          "[server]\nlisten = 127.0.0.1:%d\n[store]\npath = %s/r.db\n"
                          "[flow.rel]\ncommand = workers/w.sh --pad %s   ; a comment\ncwd = /\n"
                          % (port, self.cwd, pad))
        self.assertGreater(max(len(line) for line in open(conf)), 300)
        other = tempfile.mkdtemp(prefix="other-", dir=self.tmp)
        p = subprocess.run([BIN, "-c", conf, "-t"], capture_output=True, timeout=10, cwd=other)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        d = Proc([BIN, "-c", conf], other, port)
        try:
            run = d.run_to_end({"flow": "rel", "input": {"items": 2}}, ("succeeded",))
            self.assertEqual(run["counts"]["items"], 2, run)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
