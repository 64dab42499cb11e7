"""The status line of every status the daemon sends carries its RFC 9110 reason phrase
(libevhtp wrote "HTTP/1.1 422 UNKNOWN", "405 Not Allowed", "413 Entity Too Large").

The codes the daemon can send are read from its source (every rd_fail / rd_reply_* /
refuse call with a literal status), so a new status without a phrase fails here; each one
reachable from outside is then provoked and its status line read off the socket."""
import glob
import os
import re
import socket
import time
import unittest

from harness import SOURCE, Daemon, testworker_flow, wait_for

# RFC 9110 section 15.
REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 410: "Gone", 413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
# Only out of memory answers 500: test_http_head.c checks its phrase.
NOT_PROVOKED = {500}

CALL = re.compile(r"\b(?:rd_fail|rd_reply_error|rd_reply_json|rd_reply_raw|refuse|guard_refuse|"
                  r"page|reply_engine|rd_api_reply_durable|send_reply)\(([^\";{]*)")


def codes_in_source():
    """The literal statuses in the arguments (before any string) of the reply functions."""
    codes = set()
    for path in glob.glob(os.path.join(SOURCE, "lib", "**", "*.c"), recursive=True):
        with open(path) as f:
            for m in CALL.finditer(f.read()):
                codes.update(int(c) for c in re.findall(r"\b[1-5]\d\d\b", m.group(1)))
    return codes


def status_line(port, data, wait_close=False, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\r\n", 1)[0].decode("latin-1")
    finally:
        s.close()


def get(path, extra=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def post(path, body, ctype=b"application/json", extra=b""):
    if isinstance(body, str):
        body = body.encode()
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


class StatusLineTest(unittest.TestCase):
    def setUp(self):
        self.seen = {}
        self.d = Daemon(
            flows=testworker_flow("a"),
            limits="max_running = 1\nmax_queued = 1\n",
            server="max_body = 1K\nmax_uri = 256\nmax_headers = 1K\nhead_timeout = 300ms\n"
                   "max_sse_clients = 1\n").start()
        self.k = None

    def tearDown(self):
        self.d.stop()
        if self.k:
            self.k.stop()

    def check(self, code, data, port=None):
        line = status_line(port or self.d.port, data)
        self.assertEqual(line, "HTTP/1.1 %d %s" % (code, REASONS[code]), data[:80])
        self.seen[code] = line

    def test_every_status_line(self):
        sent = codes_in_source()
        self.assertTrue({200, 201, 404, 422, 429}.issubset(sent), sent)
        self.assertEqual(sent - set(REASONS), set(), "a status without a phrase in this test")
        d = self.d
        self.check(200, get("/healthz"))
        self.check(201, post("/v1/runs", '{"flow":"a","input":{"sleep":30}}'))
        self.check(204, b"OPTIONS /v1/runs HTTP/1.1\r\nHost: x\r\n\r\n")
        etag = d.get("/v1/openapi.yaml").headers["etag"]
        self.check(304, get("/v1/openapi.yaml", b"If-None-Match: " + etag.encode() + b"\r\n"))
        self.check(400, post("/v1/runs", "{not json"))
        self.check(404, get("/nope"))
        self.check(405, b"PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        self.check(413, post("/v1/runs", '{"flow":"a","input":"%s"}' % ("x" * 2000)))
        self.check(414, get("/healthz?" + "q" * 400))
        self.check(415, post("/v1/runs", "--x\r\n", ctype=b"multipart/form-data; boundary=x"))
        self.check(422, post("/v1/runs", '{"flow":"nope"}'))
        self.check(431, get("/healthz", b"X-Pad: " + b"p" * 2000 + b"\r\n"))
        self.check(501, b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.check(505, b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
        self.check(408, b"GET /healthz HTTP/1.1\r\n")  # the rest of the head never comes
        # 202 and 409: cancel a queued run, then cancel it again once it is cancelled.
        queued = d.create("a", {"sleep": 30})  # behind the running one (max_running = 1)
        self.check(429, post("/v1/runs", '{"flow":"a"}'))  # max_queued = 1
        self.check(202, post("/v1/runs/%s/cancel" % queued["id"], ""))
        d.wait_status(queued["id"], "cancelled")
        self.check(409, post("/v1/runs/%s/cancel" % queued["id"], ""))
        # 410: an approval link works once.
        self.check(410, self.spent_approval())
        # 503: one event stream is the bound; the second is refused.
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(get("/v1/events", b"Accept: text/event-stream\r\n"))
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n"))
        self.check(503, get("/v1/events", b"Accept: text/event-stream\r\n"))
        s.close()
        # 401 and 403 need API keys.
        self.k = Daemon(flows=testworker_flow("a"), extra="[auth]\nkey = read:r3ad-r3ad-r3ad-r3ad\n").start()
        self.check(401, get("/v1/runs"), port=self.k.port)
        self.check(403, post("/v1/runs", '{"flow":"a"}', extra=b"x-api-key: r3ad-r3ad-r3ad-r3ad\r\n"),
                   port=self.k.port)
        self.assertEqual(set(self.seen), set(REASONS) - NOT_PROVOKED)

    def spent_approval(self):
        d = self.d
        # The running run (sleep 30) holds the only slot: free it first.
        for run in d.get("/v1/runs?status=running,queued").json()["items"]:
            d.post("/v1/runs/%s/cancel" % run["id"])
            d.wait_status(run["id"], "cancelled")
        run = d.create("a", {"approval": "ok?"})
        run = d.wait_status(run["id"], "paused")
        token = run["pending_action"]["approve_url"].split("token=", 1)[1]
        body = '{"token":"%s"}' % token
        self.assertEqual(d.post("/v1/runs/approval", {"token": token}).status, 200)
        return post("/v1/runs/approval", body)


if __name__ == "__main__":
    unittest.main()
