"""helpers.py: assertions and small clients shared by the end-to-end tests (stdlib only).

Nothing here sleeps for a fixed time: waiting is done by harness.wait_for or by the
daemon's own ?wait=N.
"""
import json
import re
import socket
import time

from harness import wait_for

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
TERMINAL = ("succeeded", "incomplete", "failed", "crashed", "cancelled")


def parse_time(s):
    """RFC 3339 (as the daemon writes it: UTC, 'Z', milliseconds) -> epoch seconds."""
    import calendar
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z$", s)
    assert m, "not an RFC 3339 UTC time: %r" % (s,)
    base = calendar.timegm(tuple(int(m.group(i)) for i in range(1, 7)))
    return base + (float(m.group(7)) if m.group(7) else 0.0)


def assert_error(tc, resp, status, code=None):
    """resp is an error reply: the status, a JSON body {"error":{code,message,request_id}}."""
    tc.assertEqual(resp.status, status, resp)
    ctype = resp.headers.get("content-type", "")
    tc.assertIn("application/json", ctype, resp)
    body = resp.json()
    tc.assertIsInstance(body, dict, resp)
    err = body.get("error")
    tc.assertIsInstance(err, dict, resp)
    for k in ("code", "message", "request_id"):
        tc.assertIsInstance(err.get(k), str, "error.%s missing in %r" % (k, resp))
        tc.assertTrue(err[k], "error.%s empty in %r" % (k, resp))
    if "x-request-id" in resp.headers:
        tc.assertEqual(resp.headers["x-request-id"], err["request_id"], resp)
    if code is not None:
        tc.assertEqual(err["code"], code, resp)
    return err


def finish(d, run_id, timeout=30):
    """Waits for the run to be terminal and returns it."""
    return d.wait_status(run_id, TERMINAL, timeout=timeout)


def all_results(d, run_id, page_size=100, status=None):
    """Every result item via after= paging."""
    out = []
    after = 0
    while True:
        q = "/v1/runs/%s/results?after=%d&page_size=%d" % (run_id, after, page_size)
        if status:
            q += "&status=" + status
        r = d.get(q)
        assert r.status == 200, r
        page = r.json()
        out.extend(page["items"])
        if not page["has_more"]:
            return out
        after = page["next_after"]


def events_of(d, run_id, type_=None):
    evs = d.events(run_id)
    if type_ is None:
        return evs
    return [e for e in evs if e["type"] == type_]


def status_trail(d, run_id):
    """[(previous, status, termination_reason)] from the run.status events."""
    return [(e["data"].get("previous"), e["data"]["status"], e["data"].get("termination_reason"))
            for e in events_of(d, run_id, "run.status")]


def list_runs(d, query=""):
    r = d.get("/v1/runs" + query)
    assert r.status == 200, r
    return r.json()


class SSEReader:
    """A minimal Server-Sent Events client over a raw socket (HTTP/1.1, close-delimited or
    chunked body are both tolerated for the first frames)."""

    def __init__(self, port, path, headers=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        hdrs = {"Host": "127.0.0.1:%d" % port, "Accept": "text/event-stream"}
        hdrs.update(headers or {})
        req = "GET %s HTTP/1.1\r\n%s\r\n" % (
            path, "".join("%s: %s\r\n" % kv for kv in hdrs.items()))
        self.sock.sendall(req.encode())
        self.buf = b""
        self.status = None
        self.headers = {}
        self.eof = False
        self._read_head()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError("connection closed before the response head: %r" % self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()

    def body_rest(self):
        """Reads until EOF (for non-SSE error replies)."""
        try:
            while self._fill():
                pass
        except socket.timeout:
            pass
        return self.buf

    def next_frame(self):
        """Next SSE frame as a dict {field: value} (comments skipped); None at EOF."""
        while True:
            text = self.buf.replace(b"\r\n", b"\n")
            if self.chunked:
                raise AssertionError("chunked SSE bodies are not expected from runsd")
            if b"\n\n" in text:
                frame, rest = text.split(b"\n\n", 1)
                self.buf = rest
                fields = {}
                for line in frame.decode("utf-8").split("\n"):
                    if not line or line.startswith(":"):
                        continue
                    k, _, v = line.partition(":")
                    if v.startswith(" "):
                        v = v[1:]
                    fields[k] = fields[k] + "\n" + v if k in fields else v
                if not fields:
                    continue
                return fields
            self.buf = text
            if not self._fill():
                return None

    def next_event(self):
        """Next frame that carries data (skips a bare retry: frame)."""
        while True:
            f = self.next_frame()
            if f is None or "data" in f:
                return f

    def wait_eof(self, timeout=10):
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._fill():
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_http(port, data, timeout=10):
    """Sends raw bytes, returns (status, headers, body) of the first reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        if b"\r\n\r\n" not in buf:
            return None, {}, buf
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
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
        return status, headers, body[:n]
    finally:
        s.close()


def metric(d, name):
    """The value of an unlabelled family in d's /metrics, as an int, or None."""
    body = d.get("/metrics").body.decode()
    m = re.search(r"^%s (\d+)" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


def assert_journal_held(tc, d, bound, seconds=1.5):
    """The store journal past its bound holds a worker: for a while it stays near the bound
    (past it by at most the records of the one line that crossed it) and takes no write,
    while the worker, left alone, would write thousands of items a second."""
    wait_for(lambda: metric(d, "runsd_store_journal_over") == 1, timeout=60,
             what="the journal past its bound")
    writes = metric(d, "runsd_store_journal_writes")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tc.assertLessEqual(metric(d, "runsd_store_journal_bytes"), bound + 4096)
        time.sleep(0.05)
    tc.assertEqual(metric(d, "runsd_store_journal_writes"), writes)
