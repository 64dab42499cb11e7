"""test_dashboard.py: the dashboard (web/, docs/dashboard.md) in a real browser: Debian's
Chromium, headless, driven by playwright-core (test/browser/, installed by scripts/setup.sh
with npm ci) from dashboard_driver.mjs, against a daemon with API keys configured, and
against one without.

Skipped, saying so, only where node, chromium, playwright-core or axe-core is missing.

- headers: / and /ui/* gzipped only when accepted, Vary, a strong ETag per representation
  (304 on If-None-Match), Cache-Control: no-cache, the strict Content-Security-Policy; the
  compressed twins are not addressable; files need no key.
- in the browser with keys (the driver, one step at a time): only the login form without a
  key, a wrong key refused, the key kept in sessionStorage only; a run created from the form
  (a JSON syntax error and the daemon's 422 shown next to the field) watched live to
  succeeded with its items, result, timeline, steps, progress bar and figures (duration,
  worker CPU, peak memory), and in the list; a failed run's error; approve one paused run
  and deny another from their pages (prompt and details shown as text); approve with the
  keyboard only; the auth link followed through the demo provider, the run resumes; cancel a
  running run; the list live, filtered by status and by flow, paged (page 2 in the
  address); extend a match_limit_met run; enrich a run (its items table shows the
  enrichments); a webhook delivery shown and redelivered from the page; the overview live:
  the webhook backlog rises while a receiver answers 503 and falls once it accepts, the
  finished runs per flow move; markup in an item's data, a prompt, a log line and a result
  shown as text, no element or script made from it; the daemon killed (-9) and restarted
  while a run's page is open: the banner shows, the page reconnects, and its timeline rows
  are exactly the run's event log (no duplicate, no gap); the same after a network drop
  (a TCP proxy cuts the page's connections while the daemon runs on); screenshots of the
  list (with a run's waiting-for-a-person marker), a run, a paused run and the overview at
  desktop and phone widths (and dark) into test/artifacts/; axe-core on the login form,
  list, runs, overview and new-run form in light, dark and at phone width, failing on any
  serious or critical violation (colour contrast among them); a read key sees a paused run
  but its Approve is refused (403 shown next to the button); the items table's second page
  of a run with 10,000 items; no page error or console error throughout. The figures (page
  weight of a first load, first render of a run with 10,000 items) are printed and kept in
  test/artifacts/figures.json.
- in the browser without keys: no login form and no Log out, nothing stored in the
  browser; a run created from the form and followed, a paused run approved, the list and
  the overview live.
"""
import gzip
import json
import os
import select
import shutil
import subprocess
import unittest

from harness import BUILD, SOURCE, Daemon, testworker_flow

NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_DIR = os.path.join(SOURCE, "test/browser")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard_driver.mjs")
ARTIFACTS = os.path.join(SOURCE, "test/artifacts")
KEY = "dashboard-write-key-0123456789"
READ_KEY = "dashboard-read-key-0123456789"
SCHEMA = json.dumps({"type": "object", "additionalProperties": False, "properties": {
    "items": {"type": "integer", "minimum": 0}, "item_delay": {"type": "number"},
    "steps": {"type": "array", "items": {"type": "string"}}, "progress": {"type": "boolean"},
    "result": {"type": "object"}}})


def missing():
    if not NODE:
        return "node not found (scripts/setup.sh installs nodejs)"
    if not os.access(CHROMIUM, os.X_OK):
        return "%s not found (scripts/setup.sh installs Debian's chromium)" % CHROMIUM
    for mod in ("playwright-core", "axe-core"):
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", mod)):
            return "%s not installed (scripts/setup.sh runs npm ci in test/browser)" % mod
    return None


def flows():
    return (testworker_flow(resumable="yes") + testworker_flow("typed", input_schema=SCHEMA)
            + "[flow.bulk]\ncommand = %s\n" % os.path.join(BUILD, "test/emit_items")
            + "[flow.ext]\nexecutor = external\n")


class Headers(unittest.TestCase):
    """The files as HTTP serves them (no browser needed)."""

    def setUp(self):
        self.d = Daemon(flows=testworker_flow(), extra="[auth]\nkey = read:%s\n" % KEY).start()

    def tearDown(self):
        self.d.stop()

    def test_gzip_etag_cache_csp(self):
        plain = self.d.get("/")
        self.assertEqual(plain.status, 200, plain)  # no key needed: the page holds no data
        self.assertTrue(plain.headers["content-type"].startswith("text/html"))
        self.assertNotIn("content-encoding", plain.headers)
        self.assertIn(b'<script type="module" src="/ui/app.mjs">', plain.body)
        self.assertNotIn(b"<script>", plain.body, "no inline script")
        zipped = self.d.get("/", headers={"Accept-Encoding": "gzip, deflate, br"})
        self.assertEqual(zipped.headers.get("content-encoding"), "gzip")
        self.assertLess(len(zipped.body), len(plain.body))
        self.assertEqual(gzip.decompress(zipped.body), plain.body)
        for r in (plain, zipped):
            self.assertEqual(r.headers["vary"], "Accept-Encoding")
            self.assertEqual(r.headers["cache-control"], "no-cache")
            csp = r.headers["content-security-policy"]
            for part in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                         "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'",
                         "require-trusted-types-for 'script'"):
                self.assertIn(part, csp)
            self.assertNotIn("unsafe", csp)
        self.assertNotEqual(plain.headers["etag"], zipped.headers["etag"])
        again = self.d.get("/", headers={"Accept-Encoding": "gzip",
                                         "If-None-Match": zipped.headers["etag"]})
        self.assertEqual(again.status, 304)
        refused = self.d.get("/", headers={"Accept-Encoding": "gzip;q=0"})
        self.assertNotIn("content-encoding", refused.headers)
        for name, ctype in (("app.mjs", "text/javascript"), ("app.css", "text/css")):
            r = self.d.get("/ui/" + name)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.headers["content-type"].startswith(ctype))
        for bad in ("/ui/app.mjs.gz", "/ui/index.html", "/ui/nothing.mjs"):
            self.assertEqual(self.d.get(bad).status, 404, bad)
        self.assertEqual(self.d.request("POST", "/", body=b"").status, 405)
        # The client the page imports comes gzipped too, with its own ETag.
        cj = self.d.get("/v1/client.js")
        cz = self.d.get("/v1/client.js", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(cz.headers.get("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(cz.body), cj.body)
        self.assertNotEqual(cj.headers["etag"], cz.headers["etag"])
        self.assertEqual(cz.headers["vary"], "Accept-Encoding")


@unittest.skipIf(missing(), "SKIPPED: %s" % missing())
class Browser(unittest.TestCase):
    def setUp(self):
        # Webhooks may reach the driver's receivers on loopback, and a refused one is tried
        # again soon (the overview's backlog must rise and fall within the test).
        self.d = Daemon(flows=flows(), extra="[auth]\nkey = write:%s\nkey = read:%s\n"
                        "[webhooks]\nallow_private = yes\nretry_schedule = %s\n"
                        % (KEY, READ_KEY, " ".join(["300ms"] * 4 + ["1s"] * 12))).start()
        os.makedirs(ARTIFACTS, exist_ok=True)
        stale = os.path.join(ARTIFACTS, "failure.png")  # the driver's picture of a failure
        if os.path.exists(stale):
            os.remove(stale)

    def tearDown(self):
        self.d.stop()

    def test_dashboard_in_chromium(self):
        last = drive(self, self.d, [KEY, ARTIFACTS, READ_KEY])
        for page in ("list", "run", "overview"):
            for width in ("desktop", "phone"):
                self.assertTrue(os.path.getsize(os.path.join(
                    ARTIFACTS, "%s-%s.png" % (page, width))) > 5000)
        with open(os.path.join(ARTIFACTS, "figures.json"), "w") as f:
            json.dump({"weight": last["weight"], "big_run": last["bigRun"],
                       "restart_rows": last["restartRows"],
                       "a11y_minor": last["a11yNotes"]}, f, indent=1)
        print("dashboard figures: %s" % json.dumps(last))


@unittest.skipIf(missing(), "SKIPPED: %s" % missing())
class BrowserNoKey(unittest.TestCase):
    """A daemon with no API key (loopback only): the page shows no login form, stores
    nothing, and creates, approves and follows runs at once."""

    def setUp(self):
        self.d = Daemon(flows=flows()).start()
        os.makedirs(ARTIFACTS, exist_ok=True)

    def tearDown(self):
        self.d.stop()

    def test_no_key_no_login(self):
        self.assertTrue(drive(self, self.d, ["-", ARTIFACTS]).get("nokey"))


def drive(test, d, args):
    """Runs the driver against daemon d with args after the base URL, killing (-9) and
    restarting d when it asks; returns its last message, which must say ok."""
    base = "http://127.0.0.1:%d" % d.port
    p = subprocess.Popen([NODE, DRIVER, base] + args, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, CHROMIUM=CHROMIUM))
    test.addCleanup(reap, p)
    seen = []
    while True:
        ready, _, _ = select.select([p.stdout], [], [], 150)
        test.assertTrue(ready, "the driver said nothing for 150 s after %r" % seen[-1:])
        line = p.stdout.readline()
        if not line:
            break
        msg = json.loads(line)
        seen.append(msg)
        if msg["kind"] == "kill":
            d.kill9()
        elif msg["kind"] == "banner":
            d.start()  # same port and store: the page must find it again
            p.stdin.write("restarted\n")
            p.stdin.flush()
        elif msg["kind"] in ("ok", "fail"):
            break
    p.wait(timeout=30)
    last = seen[-1] if seen else {}
    test.assertEqual(last.get("kind"), "ok", "driver: %s\nstderr: %s" % (
        json.dumps(last, indent=1), p.stderr.read()[-4000:]))
    test.assertEqual(p.returncode, 0)
    return last


def reap(p):
    if p.poll() is None:
        p.kill()
    p.wait(timeout=10)
    for f in (p.stdin, p.stdout, p.stderr):
        f.close()


if __name__ == "__main__":
    unittest.main()
