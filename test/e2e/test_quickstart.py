"""The README's quick start, run as a script (issue 12): scripts/quickstart.sh extracts the
```sh block after `<!-- quickstart` in README.md and runs it under `sh -eu` against a daemon
started with conf/demo.ini (its flows, workers and input schemas as they are, on a free port
with a temporary store). The block captures every id itself and checks each outcome it names
(`ends RUN status/reason` fails the script otherwise); this test also checks that between
them those outcomes cover every termination reason of docs/contract.md except the two the
README says the demo cannot produce by command, that the misspelt key was refused with the
message naming the accepted keys, and that the global stream command showed events and
ended by itself.

Needs curl, jq (scripts/setup.sh installs both) and a dpkg database of at least 200
installed packages (pkgsearch's low_match_rate policy applies after 200), as on any machine
that can build runsd."""
import os
import re
import shutil
import subprocess
import unittest

from harness import SOURCE, Daemon

CONF = os.path.join(os.path.abspath(SOURCE), "conf")
SCRIPT = os.path.join(os.path.abspath(SOURCE), "scripts", "quickstart.sh")
# The contract's reasons (docs/contract.md section 1) with the status each comes with.
REASONS = {
    "completed": "succeeded", "match_limit_met": "succeeded",
    "candidates_exhausted": "succeeded", "low_match_rate": "succeeded",
    "items_failed": "incomplete", "error_occurred": "failed", "timeout": "failed",
    "approval_timeout": "failed", "auth_timeout": "failed", "auth_denied": "failed",
    "worker_crashed": "crashed", "interrupted": "crashed", "spawn_failed": "crashed",
    "user_cancelled": "cancelled", "approval_denied": "cancelled",
}
# What the README explains in words instead (a restart; a worker missing after start).
NOT_BY_COMMAND = {"interrupted", "spawn_failed"}


class DemoDaemon(Daemon):
    """conf/demo.ini as shipped, but on this daemon's port and store, with its relative
    paths (flows/...) made absolute since the config is written to a temporary directory."""

    def config_text(self):
        with open(os.path.join(CONF, "demo.ini")) as f:
            text = f.read()
        subs = [
            (r"(?m)^listen = 127\.0\.0\.1:8080$", "listen = 127.0.0.1:%d" % self.port),
            (r"(?m)^public_url = http://127\.0\.0\.1:8080$",
             "public_url = http://127.0.0.1:%d" % self.port),
            (r"(?m)^path = \./runsd-demo\.db$", "path = %s" % self.store),
            (r"(?m)^command = flows/", "command = %s/flows/" % CONF),
            (r"(?m)^input_schema = @flows/", "input_schema = @%s/flows/" % CONF),
        ]
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl.replace("\\", "\\\\"), text)
            # A demo.ini that changed shape must fail here, not run something else.
            assert n > 0, "conf/demo.ini has no line matching %s" % pattern
        return text


class TestQuickstart(unittest.TestCase):
    def setUp(self):
        for tool in ("curl", "jq"):
            self.assertIsNotNone(shutil.which(tool), "%s is needed (scripts/setup.sh)" % tool)
        self.d = DemoDaemon().start()

    def tearDown(self):
        self.d.stop()

    def test_readme_block_runs(self):
        url = "http://127.0.0.1:%d" % self.d.port
        p = subprocess.run([SCRIPT, url], capture_output=True, text=True, timeout=240,
                           env=dict(os.environ, RUNSD="http://127.0.0.1:1"))  # the arg wins
        out = p.stdout
        self.assertEqual(p.returncode, 0, "the quick start failed:\n%s\n--- trace ---\n%s\n"
                         "--- daemon ---\n%s" % (out[-6000:], p.stderr[-6000:],
                                                 self.d.read_log()))

        # Every outcome the block checked, as `ends` printed it: "run_... status/reason".
        seen = set(re.findall(r"^run_[A-Za-z0-9_-]{22} ([a-z_]+/[a-z_]+)$", out, re.M))
        for reason, status in REASONS.items():
            if reason not in NOT_BY_COMMAND:
                self.assertIn("%s/%s" % (status, reason), seen, out)
        self.assertTrue({"paused/null", "auth_required/null"} <= seen, out)
        # The README says why the other two have no command.
        with open(os.path.join(SOURCE, "README.md")) as f:
            readme = f.read()
        for reason in NOT_BY_COMMAND:
            self.assertIn("crashed/%s" % reason, readme)

        # The misspelt key: refused, named, with the keys pkgsearch accepts.
        self.assertIn('unknown input key "nme_contains"; accepted: name_contains, section, '
                      'priority, depends_on, min_installed_size_kb, status_path', out)
        # The global stream, replayed from event 0, showed every run's final status and
        # ended by itself (--max-time): one line per run.status of the runs above.
        finals = re.findall(r'^\["(run_[A-Za-z0-9_-]{22})","(succeeded|incomplete|failed|'
                            r'crashed|cancelled)","([a-z_]+)"\]$', out, re.M)
        self.assertEqual({r for _, _, r in finals} & set(REASONS),
                         set(REASONS) - NOT_BY_COMMAND, out)
        # The run stream of a finished run ended after run.end.
        self.assertIn("event: run.end", out)
        # Nothing was left running or waiting for a person.
        r = self.d.get("/v1/runs?status=queued,running,paused,auth_required,cancelling")
        self.assertEqual(r.json()["total"], 0, r)


if __name__ == "__main__":
    unittest.main()
