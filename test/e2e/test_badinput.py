"""test_badinput.py: the data-driven bad-input suite (test/badinput/*.http).

Each case file holds the exact bytes of one request, after a few header comment lines:

    # expect: <status> <error code, or - when the body is not checked>
    # config: auth          (optional: send it to the daemon that has API keys)
    # about: ...            (optional: a note)

`{{RUN}}` in the bytes is replaced by the id of a run created (not started) for the suite.
Every case is sent over its own raw socket; the answer's status and error code are checked,
error bodies must be {"error":{"code","message","request_id"}}, and after each case the
daemon must still answer GET /healthz 200. Two daemons are started once: without and with
API keys.
"""
import glob
import json
import os
import socket
import unittest

from harness import Daemon, testworker_flow

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "badinput")
READ_KEY = "readkey-0123456789abcdef"
WRITE_KEY = "writekey-0123456789abcdef"


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    meta = {}
    while data.startswith(b"# "):
        line, _, data = data.partition(b"\n")
        k, _, v = line[2:].decode().partition(":")
        meta[k.strip()] = v.strip()
    status, code = meta["expect"].split()
    return int(status), code, meta.get("config", "open"), data


def exchange(port, data, timeout=10):
    """Sends data, returns (status, headers, body) of the first answer; status None when the
    connection was closed without one."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # refused early (the daemon may close before reading it all)
        try:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            if b"\r\n\r\n" not in buf:
                return None, {}, buf
            head, body = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            while len(body) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            return int(lines[0].split()[1]), headers, body[:n]
        except ConnectionResetError:
            if b"\r\n\r\n" in buf:
                raise
            return None, {}, buf
    finally:
        s.close()


class TestBadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemons = {
            "open": Daemon(flows=testworker_flow()).start(),
            "auth": Daemon(flows=testworker_flow(),
                           extra="[auth]\nkey = read:%s\nkey = write:%s\n" % (READ_KEY, WRITE_KEY)
                           ).start(),
        }
        r = cls.daemons["open"].post("/v1/runs", {"flow": "test", "start": False})
        assert r.status == 201, r
        cls.run_id = r.json()["id"]

    @classmethod
    def tearDownClass(cls):
        for d in cls.daemons.values():
            d.stop()

    def test_cases(self):
        files = sorted(glob.glob(os.path.join(CASES, "*.http")))
        self.assertGreaterEqual(len(files), 100)
        for path in files:
            name = os.path.basename(path)
            with self.subTest(case=name):
                status, code, config, data = load(path)
                d = self.daemons[config]
                data = data.replace(b"{{RUN}}", self.run_id.encode())
                got, headers, body = exchange(d.port, data)
                self.assertEqual(got, status, "%s: %r" % (name, body[:300]))
                if status >= 400:
                    self.assertIn("application/json", headers.get("content-type", ""), name)
                    err = json.loads(body)["error"]
                    for k in ("code", "message", "request_id"):
                        self.assertTrue(isinstance(err.get(k), str) and err[k], (name, err))
                    if code != "-":
                        self.assertEqual(err["code"], code, name)
                if status in (429, 503):
                    self.assertIn("retry-after", headers, name)
                if status == 405:
                    self.assertIn("allow", headers, name)
                d.assert_alive()
                self.assertEqual(d.get("/healthz").status, 200, "%s: not serving after" % name)


if __name__ == "__main__":
    unittest.main()
