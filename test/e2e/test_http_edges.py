"""test_http_edges.py: the HTTP edge cases an outside probe found, one test per defect: head
sizes between the guard's and evhtp's limits, pipelining, encoded separators and dot segments,
form bodies taken for query strings, malformed framing and request lines, Retry-After and
Allow on every 503/429/405, slow heads and bodies, and the connection bound.

Each test talks to the daemon over raw sockets, so what is checked is the bytes a client sees.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BACKEND, Daemon, DaemonTest, testworker_flow, wait_for
from helpers import assert_error, raw_http


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%s %r>" % (self.status, self.body[:200])


def read_responses(sock, n, timeout=5.0):
    """Reads up to n Content-Length framed responses from sock; fewer if it closes or stalls."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return out
            if not chunk:
                return out
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        size = int(headers.get("content-length", "0"))
        while len(buf) < size:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return out
            if not chunk:
                break
            buf += chunk
        out.append(Resp(int(lines[0].split()[1]), headers, buf[:size]))
        out[-1].version = lines[0].split()[0]
        buf = buf[size:]
    return out


def raw(port, data, timeout=10):
    status, headers, body = raw_http(port, data, timeout=timeout)
    return Resp(status, headers, body)


class TestEdges(DaemonTest):
    def tearDown(self):
        self.assertEqual(self.d.get("/healthz").status, 200)
        super().tearDown()

    def err(self, data, status, code):
        r = raw(self.d.port, data)
        self.assertIsNotNone(r.status, "no answer (silent close) to %r" % data[:80])
        assert_error(self, r, status, code)
        return r

    # 1. headers between max_headers (16 KiB) and the guard's old bound (24.6 KiB)
    def test_headers_between_16_and_24k_get_431(self):
        for total in (17 * 1024, 20 * 1024, 24 * 1024):
            hdrs = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(total // 1012))
            self.err(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n", 431,
                     "headers_too_large")

    # 2. pipelining: both answers come at once
    def test_pipelined_requests_answered_at_once(self):
        s = socket.create_connection(("127.0.0.1", self.d.port))
        body = b'{"flow":"nope"}'
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s"
                  b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body))
        rs = read_responses(s, 3, timeout=3)
        s.close()
        self.assertEqual([r.status for r in rs], [200, 422, 200], rs)

    def test_pipelined_then_half_close_all_answered(self):
        # As `nc -N` does: requests, then shutdown(SHUT_WR). Every request is answered
        # (the raw-HTTP fuzz target found the later ones dropped).
        run = self.d.create("test", start=False)
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", self.d.port))
            s.sendall(b"POST /v1/runs/%s/extend HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n" % run["id"].encode())
            s.shutdown(socket.SHUT_WR)
            rs = read_responses(s, 3, timeout=5)
            s.close()
            self.assertEqual([r.status for r in rs], [422, 200, 200], rs)

    # 3. %2F is no separator; dot segments anywhere are 400
    def test_encoded_slash_does_not_route(self):
        run = self.d.create("test", start=False)
        for path in ("/v1/runs/%s%%2Fcancel" % run["id"], "/v1/runs/%s%%2fcancel" % run["id"]):
            r = self.d.post(path)
            self.assertIn(r.status, (400, 404), r)
            assert_error(self, r, r.status)
        self.assertEqual(self.d.run(run["id"])["status"], "created")

    def test_dot_segments_anywhere_400(self):
        for path in ("/v1/./runs", "/v1/../v1/runs", "/./healthz", "/v1/runs/./x/results",
                     "/v1/runs/%2e%2e/x", "/v1/%2E/runs", "/v1/runs/.."):
            assert_error(self, self.d.get(path), 400, "invalid_path")

    # 4. the query comes from the request target only
    def test_form_body_is_not_the_query(self):
        form = "token=x&comment=" + "c" * 9000
        r = self.d.request("POST", "/v1/runs/approval", body=form,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertNotEqual(r.status, 414, r)
        self.assertIn(r.status, (404, 422), r)
        r = self.d.request("GET", "/v1/runs", body="page_size=1000",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["page_size"], 10)

    # 5. framing and request-line errors are answered, never a silent close
    def test_invalid_content_length_400(self):
        for v in (b"-1", b"99999999999999999999999", b"0x10", b"+5", b"5,5", b"abc", b"", b"1 2"):
            self.err(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: " + v +
                     b"\r\n\r\n{}", 400, "invalid_content_length")

    def test_conflicting_content_length_400(self):
        self.err(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                 b"Content-Length: 3\r\n\r\n{}", 400, "invalid_content_length")

    def test_http11_without_host_400(self):
        self.err(b"GET /healthz HTTP/1.1\r\n\r\n", 400, "missing_host")
        r = raw(self.d.port, b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(r.status, 200, r)

    def test_http2_version_505(self):
        for v in (b"HTTP/2.0", b"HTTP/3.0", b"HTTP/1.2", b"HTTP/0.9"):
            self.err(b"GET /healthz " + v + b"\r\nHost: x\r\n\r\n", 505,
                     "http_version_not_supported")

    def test_chunk_extension_accepted(self):
        body = b'{"flow":"nope"}'
        r = raw(self.d.port, b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nTransfer-Encoding: chunked\r\n\r\n%x;name=val\r\n%s\r\n0;last\r\n\r\n"
                % (len(body), body))
        assert_error(self, r, 422, "unknown_flow")

    def test_unserved_method_501(self):
        for m in (b"M-SEARCH", b"get", b"PROPFIND", b"BREW"):
            self.err(m + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented")
        r = self.d.request("PUT", "/healthz", body=b"")
        assert_error(self, r, 405, "method_not_allowed")

    # 6. Retry-After on every 503/429; Allow on every 405
    def test_405_has_allow_everywhere(self):
        for method, path, allow in (("PUT", "/v1/runs/approval", {"GET", "POST"}),
                                    ("DELETE", "/v1/runs/approval", {"GET", "POST"}),
                                    ("POST", "/v1/auth/callback", {"GET"}),
                                    ("POST", "/v1/demo/oauth/authorize", {"GET"}),
                                    ("GET", "/v1/runs/run_x/approve", {"POST"}),
                                    ("GET", "/v1/runs/run_x/auth", {"POST"})):
            r = self.d.request(method, path, body=b"" if method != "GET" else None)
            assert_error(self, r, 405, "method_not_allowed")
            self.assertIn("allow", r.headers, (method, path))
            self.assertEqual({m.strip() for m in r.headers["allow"].split(",")}, allow)

    # 7. a head that trickles in is cut at head_timeout (default 10 s)
    def test_slowloris_head_cut(self):
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.settimeout(1.5)
        start = time.monotonic()
        closed, data = False, b""
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        for b in head:
            try:
                s.sendall(bytes([b]))
                chunk = s.recv(4096)
                if not chunk:
                    closed = True
                    break
                data += chunk
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
            if time.monotonic() - start > 16:
                break
        s.close()
        self.assertTrue(closed or data, "the slow head was never cut")
        self.assertLess(time.monotonic() - start, 15)
        if data:
            self.assertIn(b" 408 ", data.split(b"\r\n")[0])


class TestSlowBody(DaemonTest):
    server = "head_timeout = 1s\nbody_timeout = 2s\n"

    def test_slow_body_cut(self):
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        s.settimeout(0.5)
        start, data = time.monotonic(), b""
        while time.monotonic() - start < 8:
            try:
                s.sendall(b" ")
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            except socket.timeout:
                continue
            except OSError:
                break
        s.close()
        self.assertLess(time.monotonic() - start, 6, "the slow body was never cut")
        if data:
            self.assertIn(b" 408 ", data.split(b"\r\n")[0])

    def test_idle_head_cut_at_head_timeout(self):
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        s.settimeout(5)
        r = read_responses(s, 1, timeout=5)
        s.close()
        self.assertEqual([x.status for x in r], [408])


class TestMaxConnections(DaemonTest):
    server = "max_connections = 8\n"

    def test_bound_enforced_and_released(self):
        idle = [socket.create_connection(("127.0.0.1", self.d.port)) for _ in range(8)]
        # the daemon has accepted all eight before the extra ones come
        time.sleep(0.3)
        extra = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", self.d.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            extra.append(s)
        for s in extra:
            self.assertEqual(read_responses(s, 1, timeout=0.5), [], "served over the bound")
        for s in idle:
            s.close()
        for s in extra:
            r = read_responses(s, 1, timeout=5)
            self.assertEqual([x.status for x in r], [200])
            s.close()


class TestStoreDown(unittest.TestCase):
    """503 store_unavailable replies carry Retry-After. SQLite: the store's tmpfs fills up
    (needs root); PostgreSQL: the test server is stopped."""

    def setUp(self):
        if BACKEND == "postgresql":
            import pg
            self.srv = pg.server()
            self.addCleanup(lambda: self.srv.running() or self.srv.start())
            self.d = Daemon(flows=testworker_flow()).start()
            return
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs for the store")
        self.tmp = tempfile.mkdtemp(prefix="runsd-edges-")
        self.mnt = os.path.join(self.tmp, "store")
        os.makedirs(self.mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", self.mnt],
                          capture_output=True).returncode != 0:
            shutil.rmtree(self.tmp)
            self.skipTest("cannot mount a tmpfs here")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(subprocess.run, ["umount", self.mnt])
        self.d = Daemon(flows=testworker_flow(), tmp=self.tmp,
                        store_path=os.path.join(self.mnt, "runsd.db")).start()

    def tearDown(self):
        self.d.stop()

    def fail_store(self):
        """Makes the store fail: the database server stops, or the store's disk fills."""
        if BACKEND == "postgresql":
            self.srv.stop()
            return
        name = os.path.join(self.mnt, "filler")
        self.addCleanup(os.unlink, name)
        with open(name, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def test_every_503_has_retry_after(self):
        run = self.d.create("test", start=False)
        self.fail_store()
        # a write fails, and the store is refused from then on
        self.d.post("/v1/runs", {"flow": "test", "start": False, "input": {"pad": "x" * 200000}})
        wait_for(lambda: self.d.get("/readyz").status == 503, timeout=30, what="readyz 503")
        seen = 0
        for method, path, hdrs in (
                ("GET", "/readyz", {}),
                ("POST", "/v1/runs", {}),
                ("GET", "/v1/runs/" + run["id"], {}),
                ("GET", "/v1/runs/%s/deliveries" % run["id"], {}),
                ("GET", "/v1/runs/%s/events" % run["id"], {"Accept": "text/event-stream"})):
            r = self.d.request(method, path, body={} if method == "POST" else None,
                               headers=hdrs, timeout=5)
            if r.status in (429, 503):
                seen += 1
                self.assertIn("retry-after", r.headers, (path, r))
        self.assertGreater(seen, 1)


if __name__ == "__main__":
    unittest.main()
