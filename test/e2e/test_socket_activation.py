"""runsd under systemd's protocols, without systemd as PID 1 (issue 11):

- socket activation with systemd-socket-activate: the daemon serves the passed socket (the
  listen key is ignored) and links (stream_url, approve/deny) use that socket's address;
  a socket beyond loopback without [auth] keys is refused with a clear message, and with
  keys it is served (a wildcard address becomes loopback in links);
- sd_notify: READY=1, then STATUS= lines (runs running, queued, waiting for people,
  subscribers) that follow what happens, at most about one a second.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Daemon, free_port, testworker_flow, wait_for
from helpers import SSEReader

ACTIVATE = shutil.which("systemd-socket-activate")
KEY = "write:abcdefghijklmnop0123"
AUTH = {"x-api-key": KEY.split(":", 1)[1]}


@unittest.skipUnless(ACTIVATE, "systemd-socket-activate is not installed (package systemd)")
class TestSocketActivation(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-e2e-sa-")
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, address, auth=""):
        """systemd-socket-activate binds address and execs runsd on the first connection; the
        config's listen names another (unused) port, which must stay unbound."""
        self.unused = free_port()
        conf = os.path.join(self.tmp, "runsd.ini")
        with open(conf, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1:%d\n[store]\npath = %s/r.db\n%s\n%s"
                    % (self.unused, self.tmp, auth, testworker_flow()))
        self.logpath = os.path.join(self.tmp, "runsd.log")
        for _ in range(5):
            self.port = free_port()
            log = open(self.logpath, "wb")
            self.proc = subprocess.Popen([ACTIVATE, "-l", "%s:%d" % (address, self.port), BIN,
                                          "-c", conf], stdout=log, stderr=log, cwd=self.tmp)
            log.close()
            if wait_for(lambda: self.proc.poll() is not None or
                        "Listening on" in self.log(), what="systemd-socket-activate") is True:
                return
            # Another process took the port between free_port() and the bind: try again.
        raise AssertionError("could not start systemd-socket-activate: %s" % self.log())

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def daemon(self):
        """A harness Daemon talking to the activated port (only its HTTP helpers are used)."""
        d = Daemon()
        d.port = self.port
        d.proc = self.proc
        return d

    def ready(self, d, headers=None):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("runsd exited %s: %s" % (self.proc.returncode, self.log()))
            try:
                return d.get("/readyz", headers=headers).status == 200
            except OSError:
                return False
        wait_for(up, what="activated runsd")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.log())

    def test_loopback_socket_serves_and_links_use_it(self):
        self.start("127.0.0.1")
        d = self.daemon()
        self.ready(d)
        self.assertIn("Execing", self.log())
        base = "http://127.0.0.1:%d/" % self.port
        run = d.create("test", {"items": 1})
        run = d.wait_status(run["id"], "succeeded")
        self.assertTrue(run["stream_url"].startswith(base + "v1/runs/"), run["stream_url"])
        # The approval links use the same address.
        run = d.create("test", {"approval": "Go?"})
        run = d.wait_status(run["id"], "paused")
        self.assertTrue(run["pending_action"]["approve_url"].startswith(base),
                        run["pending_action"])
        # The listen key was not bound.
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.unused), timeout=2).close()
        self.stop()

    def test_non_loopback_socket_without_keys_is_refused(self):
        self.start("0.0.0.0")
        try:  # the first connection makes systemd-socket-activate exec runsd
            socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        except OSError:
            pass
        self.assertEqual(self.proc.wait(timeout=20), 1, self.log())
        self.assertIn("systemd socket 0.0.0.0:%d: no API key is configured, so only loopback "
                      "addresses are allowed" % self.port, self.log())

    def test_non_loopback_socket_with_keys_is_served(self):
        self.start("0.0.0.0", auth="[auth]\nkey = %s\n" % KEY)
        d = self.daemon()
        self.ready(d)
        r = d.post("/v1/runs", {"flow": "test", "input": {"items": 1}}, headers=AUTH)
        self.assertEqual(r.status, 201, r)
        r = d.get("/v1/runs/%s?wait=10" % r.json()["id"], headers=AUTH)
        # A wildcard address is not one a client can dial: links name loopback.
        self.assertTrue(r.json()["stream_url"].startswith("http://127.0.0.1:%d/" % self.port),
                        r.json())
        self.stop()


class TestNotify(unittest.TestCase):
    """NOTIFY_SOCKET set to a datagram socket of ours, as systemd would."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="runsd-e2e-notify-")
        self.path = os.path.join(self.tmp, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.msgs = []
        old = os.environ.get("NOTIFY_SOCKET")
        os.environ["NOTIFY_SOCKET"] = self.path
        try:
            self.d = Daemon(flows=testworker_flow(), tmp=self.tmp).start()
        finally:
            if old is None:
                del os.environ["NOTIFY_SOCKET"]
            else:
                os.environ["NOTIFY_SOCKET"] = old

    def tearDown(self):
        self.d.stop()
        self.sock.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def drain(self):
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                return
            self.msgs.append((time.monotonic(), data))

    def status_with(self, text):
        def seen():
            self.drain()
            return [m for _, m in self.msgs if m.startswith("STATUS=") and text in m]
        return wait_for(seen, timeout=10, what="STATUS= with %r (got %r)" % (text, self.msgs))

    def test_ready_and_status_lines(self):
        self.status_with("STATUS=0 running, 0 queued, 0 waiting for people, 0 subscribers")
        self.assertTrue(any(m.startswith("READY=1") for _, m in self.msgs), self.msgs)
        run = self.d.create("test", {"approval": "Go?"})
        self.d.wait_status(run["id"], "paused")
        self.status_with("1 waiting for people")
        sse = SSEReader(self.d.port, "/v1/events")
        try:
            self.status_with(", 1 subscribers")
        finally:
            sse.close()
        # At most one status line a second (plus the first one at READY).
        stamps = [t for t, m in self.msgs if m.startswith("STATUS=")]
        span = stamps[-1] - stamps[0]
        self.assertLessEqual(len(stamps), span + 2, self.msgs)


if __name__ == "__main__":
    unittest.main()
