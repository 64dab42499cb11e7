"""test_docs.py: the documents the daemon serves about itself (lib/api/docs.c).

GET /v1/openapi.yaml is docs/openapi.yaml byte for byte, /v1/openapi.json the same document
as JSON, /v1/client.js clients/js/runsd.mjs byte for byte: compiled in, so no file path is
read at run time (the daemon runs from a temp dir here). Each has its content type, a strong
ETag that answers If-None-Match with 304 and no body, Cache-Control: no-cache, and HEAD
without a body. They need no key even when keys are configured (a page must be able to
import the client), and the other endpoints still do.
"""
import json
import os
import unittest

import yaml

from harness import SOURCE, Daemon, testworker_flow

DOCS = (
    ("/v1/openapi.yaml", "application/yaml", os.path.join(SOURCE, "docs/openapi.yaml")),
    ("/v1/openapi.json", "application/json", None),
    ("/v1/client.js", "text/javascript", os.path.join(SOURCE, "clients/js/runsd.mjs")),
)


class ServedDocuments(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(flows=testworker_flow(), extra="[auth]\nkey = read:docs-read-key-0123456789\n").start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_bytes_match_the_sources(self):
        for path, ctype, src in DOCS:
            r = self.d.get(path)
            self.assertEqual(r.status, 200, (path, r))
            self.assertTrue(r.headers["content-type"].startswith(ctype), (path, r.headers))
            if src:
                with open(src, "rb") as f:
                    self.assertEqual(r.body, f.read(), path)
        with open(os.path.join(SOURCE, "docs/openapi.yaml"), encoding="utf-8") as f:
            want = yaml.safe_load(f)
        self.assertEqual(json.loads(self.d.get("/v1/openapi.json").body), want)

    def test_etag_cache_and_head(self):
        for path, _, _ in DOCS:
            r = self.d.get(path)
            etag = r.headers.get("etag", "")
            self.assertRegex(etag, r'^"[0-9a-f]{16}"$', path)
            self.assertEqual(r.headers.get("cache-control"), "no-cache", path)
            self.assertEqual(r.headers.get("x-content-type-options"), "nosniff", path)
            again = self.d.get(path, headers={"If-None-Match": etag})
            self.assertEqual(again.status, 304, path)
            self.assertEqual(again.body, b"", path)
            listed = self.d.get(path, headers={"If-None-Match": 'W/"0000", ' + etag})
            self.assertEqual(listed.status, 304, path)
            other = self.d.get(path, headers={"If-None-Match": '"0123456789abcdef"'})
            self.assertEqual(other.status, 200, path)
            head = self.d.request("HEAD", path)
            self.assertEqual(head.status, 200, path)
            self.assertEqual(head.body, b"", path)
            self.assertEqual(head.headers.get("etag"), etag, path)

    def test_public_while_the_api_needs_keys(self):
        self.assertEqual(self.d.get("/v1/runs").status, 401)
        for path, _, _ in DOCS:
            self.assertEqual(self.d.get(path).status, 200, path)
        r = self.d.post("/v1/client.js")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers.get("allow"), "GET")

    def test_the_document_describes_this_daemon(self):
        doc = json.loads(self.d.get("/v1/openapi.json").body)
        self.assertEqual(doc["openapi"], "3.1.0")
        for p in ("/v1/openapi.yaml", "/v1/openapi.json", "/v1/client.js", "/v1/runs/{id}/events"):
            self.assertIn(p, doc["paths"])
        sse = doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
        self.assertIn("text/event-stream", sse)
        schemes = doc["components"]["securitySchemes"]
        self.assertEqual(schemes["apiKeyHeader"]["name"], "x-api-key")
        self.assertEqual(schemes["bearerAuth"]["scheme"], "bearer")


if __name__ == "__main__":
    unittest.main()
