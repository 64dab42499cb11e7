"""test_stream_page.py: a stream address opened in a browser tab without access gets a page.

With keys configured, a tab (Accept: text/html, no text/event-stream) that opens a run's
stream_url, a run's events without a key, or GET /v1/events is refused as before (401, with
WWW-Authenticate: Bearer) but with a short HTML page that says what the address is and how
to open it: no script (and a CSP forbidding any), the text escaped, the token never echoed.
A client that does not ask for HTML still gets the JSON 401; an EventSource (Accept:
text/event-stream) with the token still gets the stream; a key still reads the JSON log.
"""
import http.client
import re
import unittest

from harness import DaemonTest, testworker_flow
from helpers import assert_error

WRITE = "page-write-key-0123456789"
READ = "page-read-key-0123456789"
TAB = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


class StreamPage(DaemonTest):
    flows = testworker_flow()
    extra = "[auth]\nkey = write:%s\nkey = read:%s\n" % (WRITE, READ)

    def setUp(self):
        super().setUp()
        r = self.d.post("/v1/runs", {"flow": "test", "input": {"items": 2}},
                        headers={"x-api-key": WRITE})
        self.assertEqual(r.status, 201, r)
        self.run = r.json()
        self.path = self.run["stream_url"].split("127.0.0.1:%d" % self.d.port, 1)[1]
        self.token = self.path.split("token=", 1)[1]

    def assert_page(self, r, *phrases):
        self.assertEqual(r.status, 401, r)
        self.assertTrue(r.headers["content-type"].startswith("text/html"), r.headers)
        self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
        self.assertIn("default-src 'none'", r.headers.get("content-security-policy", ""))
        body = r.body.decode()
        self.assertNotIn("<script", body.lower())
        self.assertNotIn(self.token, body)
        for p in phrases:
            self.assertIn(p, body)
        return body

    def test_stream_url_in_a_tab(self):
        body = self.assert_page(self.d.get(self.path, headers=TAB),
                                "live event stream of run <code>%s</code>" % self.run["id"],
                                "EventSource")
        self.assertIn("text/event-stream", body)

    def test_expired_or_forged_token_in_a_tab(self):
        forged = self.path[:-4] + ("AAAA" if not self.path.endswith("AAAA") else "BBBB")
        self.assert_page(self.d.get(forged, headers=TAB), "not valid", "stream_url")

    def test_no_key_in_a_tab(self):
        self.assert_page(self.d.get("/v1/runs/%s/events" % self.run["id"], headers=TAB),
                         "needs an API key")
        self.assert_page(self.d.get("/v1/events", headers=TAB), "every run", "API key")

    def test_text_is_escaped(self):
        r = self.d.get("/v1/runs/run_%3Cb%3E%22x%27/events?token=zz", headers=TAB)
        body = self.assert_page(r)
        self.assertIn("run_&lt;b&gt;&quot;x&#39;", body)
        self.assertNotIn("<b>", body)
        long_id = "run_" + "x" * 300
        body = self.assert_page(self.d.get("/v1/runs/%s/events" % long_id, headers=TAB))
        self.assertIn("(not a run id)", body)
        self.assertTrue(body.rstrip().endswith("</html>"), body[-80:])

    def test_other_clients_unchanged(self):
        for hdrs in ({}, {"Accept": "application/json"}):
            assert_error(self, self.d.get(self.path, headers=hdrs), 401, "unauthorized")
            assert_error(self, self.d.get("/v1/events", headers=hdrs), 401, "unauthorized")
        # A key reads the JSON log even from a tab.
        r = self.d.get("/v1/runs/%s/events" % self.run["id"], headers=dict(TAB, **{"x-api-key": READ}))
        self.assertEqual(r.status, 200, r)
        self.assertIn("items", r.json())

    def test_event_source_still_gets_the_stream(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        conn.request("GET", self.path, headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/event-stream"))
        first = resp.fp.readline() + resp.fp.readline()
        self.assertTrue(re.search(rb"retry: \d+", first), first)
        conn.close()


if __name__ == "__main__":
    unittest.main()
