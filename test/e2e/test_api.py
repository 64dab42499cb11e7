"""HTTP API end to end (SPEC section 3): validation and hostile input, pagination of runs and
results, and access control by API key."""
import json
import socket
import unittest

from harness import DaemonTest, testworker_flow
from helpers import all_results, assert_error, finish, list_runs, raw_http

READ_KEY = "readkey-0123456789abcdef"
WRITE_KEY = "writekey-0123456789abcdef"


class TestBadInput(DaemonTest):
    server = "max_body = 64K\nmax_uri = 2K\n"

    def tearDown(self):
        # whatever was thrown at it, the daemon still answers
        r = self.d.get("/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "ok")
        super().tearDown()

    def post_raw(self, body, ctype="application/json", path="/v1/runs"):
        return self.d.request("POST", path, body=body, headers={"Content-Type": ctype})

    def test_malformed_json(self):
        for body in (b'{"flow": "test"', b"{flow: test}", b'{"flow":"test",}', b"nul",
                     b'{"flow":"test"} trailing', b'{"a":1,"a":2}'):
            assert_error(self, self.post_raw(body), 400, "invalid_json")

    def test_body_not_an_object(self):
        for body in (b"[]", b'"flow"', b"42", b"null", b'[{"flow":"test"}]'):
            r = self.post_raw(body)
            self.assertIn(r.status, (400, 422), r)
            assert_error(self, r, r.status)

    def test_unknown_field(self):
        r = self.d.post("/v1/runs", {"flow": "test", "bogus": 1})
        err = assert_error(self, r, 422)
        self.assertIn("bogus", err["message"])
        self.assertEqual(list_runs(self.d)["total"], 0)

    def test_unknown_flow(self):
        assert_error(self, self.d.post("/v1/runs", {"flow": "nope"}), 422, "unknown_flow")
        assert_error(self, self.d.post("/v1/runs", {"flow": "../etc/passwd"}), 422)
        assert_error(self, self.d.post("/v1/runs", {"flow": ""}), 422)
        assert_error(self, self.d.post("/v1/runs", {"flow": "x" * 5000}), 422)
        assert_error(self, self.d.post("/v1/runs", {}), 422)
        assert_error(self, self.d.post("/v1/runs", {"flow": 5}), 422)
        assert_error(self, self.d.post("/v1/runs", {"flow": None}), 422)
        self.assertEqual(list_runs(self.d)["total"], 0)

    def test_wrong_types(self):
        bad = [{"limit": "5"}, {"limit": 0}, {"limit": -1}, {"limit": 1.5}, {"limit": True},
               {"limit": [1]}, {"preview": "yes"}, {"preview": 1}, {"start": "false"},
               {"start": 0}, {"metadata": "x"}, {"metadata": [1]},
               {"webhook": "http://x"}, {"webhook": {"url": "ftp://x"}},
               {"webhook": {"url": "http://example.com/h", "secret": "nope"}}]
        for extra in bad:
            body = dict({"flow": "test"}, **extra)
            r = self.d.post("/v1/runs", body)
            assert_error(self, r, 422)
        self.assertEqual(list_runs(self.d)["total"], 0)

    def test_valid_optional_fields(self):
        r = self.d.post("/v1/runs", {"flow": "test", "input": None, "metadata": None,
                                     "limit": None, "preview": False, "start": False})
        self.assertEqual(r.status, 201, r)
        run = r.json()
        self.assertEqual(run["status"], "created")
        self.assertIsNone(run["limit"])
        self.assertEqual(r.headers.get("location"), "/v1/runs/" + run["id"])
        # secrets are never echoed
        r = self.d.post("/v1/runs", {"flow": "test", "start": False, "webhook": {
            "url": "http://127.0.0.1:9/h", "secret": "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}})
        self.assertEqual(r.status, 201, r)
        self.assertNotIn("whsec_", r.body.decode())
        self.assertNotIn("whsec_", self.d.get("/v1/runs/" + r.json()["id"]).body.decode())

    def test_unknown_run(self):
        for path in ("/v1/runs/run_doesnotexist", "/v1/runs/run_doesnotexist/results",
                     "/v1/runs/run_doesnotexist/events", "/v1/runs/nope"):
            assert_error(self, self.d.get(path), 404, "run_not_found")

    def test_bad_ids(self):
        for path in ("/v1/runs/../x", "/v1/runs/run_%00", "/v1/runs/run_%00/results",
                     "/v1/runs/run_%zz", "/v1/runs/run_%2", "/v1/runs/%2e%2e",
                     "/v1/runs/run_" + "a" * 300, "/v1/runs/run_%C3%A9",
                     "/v1/runs/run_x%2Fy", "/v1/runs/run_'%20OR%201=1"):
            r = self.d.get(path)
            self.assertTrue(400 <= r.status < 500, (path, r))
            assert_error(self, r, r.status)
        for path in ("/v1/runs/../x", "/v1/runs/run_%00"):
            r = self.d.request("DELETE", path)
            self.assertTrue(400 <= r.status < 500, (path, r))
            assert_error(self, r, r.status)

    def test_huge_body_413_and_still_serving(self):
        body = json.dumps({"flow": "test", "input": {"pad": "x" * (100 * 1024)}})
        r = self.d.request("POST", "/v1/runs", body=body,
                           headers={"Content-Type": "application/json"})
        assert_error(self, r, 413, "payload_too_large")
        self.assertEqual(list_runs(self.d)["total"], 0)
        # just under the limit is fine
        body = json.dumps({"flow": "test", "start": False, "input": {"pad": "x" * (60 * 1024)}})
        r = self.d.request("POST", "/v1/runs", body=body,
                           headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r)
        # a much bigger one (several MB) does not take it down either
        body = b'{"flow":"test","input":"' + b"y" * (4 * 1024 * 1024) + b'"}'
        try:
            r = self.d.request("POST", "/v1/runs", body=body,
                               headers={"Content-Type": "application/json"})
            assert_error(self, r, 413, "payload_too_large")
        except (ConnectionError, BrokenPipeError):
            pass  # closing on an over-long upload is acceptable; serving on is not optional
        self.assertEqual(self.d.get("/healthz").status, 200)
        self.assertEqual(list_runs(self.d)["total"], 1)

    def test_keep_alive_across_errors(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        try:
            for body, want in ((b"{bad", 400), (b'{"flow":"nope"}', 422),
                               (b'{"flow":"test","start":false}', 201), (b"[]", 400)):
                conn.request("POST", "/v1/runs", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, want)
            conn.request("GET", "/v1/runs")
            r = conn.getresponse()
            self.assertEqual(json.loads(r.read())["total"], 1)
        finally:
            conn.close()

    def test_chunked_body(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        try:
            parts = [b'{"flow":', b'"test", "start": false, ', b'"input": {"a": 1}}']
            conn.request("POST", "/v1/runs", body=iter(parts), encode_chunked=True,
                         headers={"Content-Type": "application/json",
                                  "Transfer-Encoding": "chunked"})
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 201, body)
            self.assertEqual(json.loads(body)["input"], {"a": 1})
        finally:
            conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        try:
            big = [b'{"flow":"test","input":"'] + [b"z" * 8192] * 16 + [b'"}']
            conn.request("POST", "/v1/runs", body=iter(big), encode_chunked=True,
                         headers={"Content-Type": "application/json",
                                  "Transfer-Encoding": "chunked"})
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 413, body)
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            conn.close()
        self.assertEqual(list_runs(self.d)["total"], 1)

    def test_multipart_refused(self):
        r = self.d.request("POST", "/v1/runs", body=b"--x\r\n\r\n--x--",
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert_error(self, r, 415)

    def test_long_uri_414(self):
        r = self.d.get("/v1/runs?flow=" + "a" * 4000)
        assert_error(self, r, 414, "uri_too_long")
        r = self.d.get("/v1/runs/run_" + "a" * 4000)
        assert_error(self, r, 414)
        self.assertEqual(self.d.get("/healthz").status, 200)

    def test_deep_nesting(self):
        assert_error(self, self.post_raw(b"[" * 10000), 400)
        assert_error(self, self.post_raw(b'{"flow":"test","input":' + b"[" * 10000 +
                                         b"]" * 10000 + b"}"), 400)
        assert_error(self, self.post_raw(b'{"flow":"test","input":' + b'{"a":' * 5000 + b"1" +
                                         b"}" * 5000 + b"}"), 400)
        self.assertEqual(list_runs(self.d)["total"], 0)

    def test_invalid_utf8(self):
        for body in (b'{"flow":"test","input":"\xff\xfe"}', b'{"flow":"te\xc3st"}',
                     b'{"flow":"test","input":"\xed\xa0\x80"}', b'{"fl\x80ow":"test"}'):
            assert_error(self, self.post_raw(body), 400)
        self.assertEqual(list_runs(self.d)["total"], 0)

    def test_nul_escape_in_json(self):
        r = self.post_raw(b'{"flow":"test\\u0000x"}')
        self.assertTrue(400 <= r.status < 500, r)
        assert_error(self, r, r.status)

    def test_unknown_path_404(self):
        for path in ("/v2/runs", "/v1", "/v1/nope", "/v1/runs/run_x/nope",
                     "/v1/runs/run_x/results/extra/deep", "/healthz/x"):
            r = self.d.get(path)
            self.assertTrue(r.status in (404,), (path, r))
            assert_error(self, r, 404)

    def test_root_path_is_the_dashboard(self):
        # "/" serves the dashboard (issue 14, docs/dashboard.md); paths beside it still 404
        r = self.d.get("/")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("text/html"), r.headers)
        for path in ("/index.html", "/ui", "/ui/a/b", "/dashboard"):
            assert_error(self, self.d.get(path), 404, "not_found")

    def test_wrong_method_405(self):
        cases = [("PUT", "/v1/runs"), ("DELETE", "/v1/runs"), ("PATCH", "/v1/runs/run_abc"),
                 ("POST", "/v1/runs/run_abc"), ("GET", "/v1/runs/run_abc/cancel"),
                 ("DELETE", "/v1/runs/run_abc/results"), ("POST", "/healthz"),
                 ("PUT", "/v1/flows"), ("GET", "/v1/runs/run_abc/start")]
        for method, path in cases:
            r = self.d.request(method, path, body=b"{}" if method in ("PUT", "PATCH", "POST")
                               else None)
            assert_error(self, r, 405, "method_not_allowed")
            self.assertIn("allow", r.headers, (method, path, r.headers))
            self.assertNotIn(method, [m.strip() for m in r.headers["allow"].split(",")])
        r = self.d.request("PUT", "/v1/runs", body=b"{}")
        self.assertEqual(sorted(m.strip() for m in r.headers["allow"].split(",")),
                         ["GET", "POST"])

    def test_garbage_requests_on_raw_socket(self):
        # A head evhtp's parser would refuse is answered by the head guard (400 with the JSON
        # error body, then the connection is closed), never closed without a word.
        status, _, body = raw_http(self.d.port, b"GARBAGE\r\n\r\n")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"]["code"], "bad_request")
        status, _, body = raw_http(self.d.port, b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: -5\r\n\r\n")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"]["code"], "invalid_content_length")
        # a half-sent request, then the peer goes away
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"fl")
        s.close()
        self.assertEqual(self.d.get("/healthz").status, 200)

    def test_error_bodies_have_request_ids(self):
        ids = set()
        for _ in range(5):
            err = assert_error(self, self.d.get("/v1/runs/run_nope"), 404)
            ids.add(err["request_id"])
        self.assertEqual(len(ids), 5, "request ids are not unique")

    def test_head_requests(self):
        run = self.d.create("test", {}, start=False)
        for path in ("/v1/runs/" + run["id"], "/v1/runs", "/healthz"):
            r = self.d.request("HEAD", path)
            self.assertEqual(r.status, 200, (path, r))
            self.assertEqual(r.body, b"")
        r = self.d.request("HEAD", "/v1/runs/run_nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b"")

    def test_flows_and_health(self):
        r = self.d.get("/v1/flows")
        self.assertEqual(r.status, 200)
        self.assertEqual([f["name"] for f in r.json()["items"]], ["test"])
        self.assertEqual(self.d.get("/readyz").status, 200)
        r = self.d.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn(b"runsd_runs_created_total", r.body)


class TestPagination(DaemonTest):
    flows = testworker_flow("test") + testworker_flow("other")

    def test_list_pages_and_filters(self):
        ids = [self.d.create("test", {}, start=False)["id"] for _ in range(17)]
        others = [self.d.create("other", {}, start=False)["id"] for _ in range(6)]
        cancelled = ids[:4]
        for rid in cancelled:
            self.assertEqual(self.d.request("DELETE", "/v1/runs/" + rid).status, 202)

        lst = list_runs(self.d)
        self.assertEqual((lst["page"], lst["page_size"], lst["total"], lst["has_more"]),
                         (1, 10, 23, True))
        self.assertEqual(len(lst["items"]), 10)

        seen = []
        for page in range(1, 5):
            lst = list_runs(self.d, "?page=%d&page_size=7" % page)
            self.assertEqual(lst["total"], 23)
            self.assertEqual(lst["page"], page)
            self.assertEqual(lst["page_size"], 7)
            self.assertEqual(len(lst["items"]), [7, 7, 7, 2][page - 1])
            self.assertEqual(lst["has_more"], page < 4)
            seen.extend(r["id"] for r in lst["items"])
        self.assertEqual(sorted(seen), sorted(ids + others), "gap or duplicate across pages")
        lst = list_runs(self.d, "?page=5&page_size=7")
        self.assertEqual((lst["items"], lst["has_more"], lst["total"]), ([], False, 23))
        lst = list_runs(self.d, "?page_size=100")
        self.assertEqual((len(lst["items"]), lst["has_more"]), (23, False))
        lst = list_runs(self.d, "?page_size=23")
        self.assertEqual((len(lst["items"]), lst["has_more"]), (23, False))
        lst = list_runs(self.d, "?page_size=22")
        self.assertEqual((len(lst["items"]), lst["has_more"]), (22, True))

        # flow filter
        lst = list_runs(self.d, "?flow=other&page_size=100")
        self.assertEqual(lst["total"], 6)
        self.assertEqual(sorted(r["id"] for r in lst["items"]), sorted(others))
        self.assertTrue(all(r["flow"] == "other" for r in lst["items"]))
        self.assertEqual(list_runs(self.d, "?flow=nosuch")["total"], 0)

        # status filter, single and comma list, combined with flow and paging
        lst = list_runs(self.d, "?status=cancelled")
        self.assertEqual(sorted(r["id"] for r in lst["items"]), sorted(cancelled))
        self.assertEqual(lst["total"], 4)
        lst = list_runs(self.d, "?status=created&flow=test&page_size=5&page=3")
        self.assertEqual((lst["total"], len(lst["items"]), lst["has_more"]), (13, 3, False))
        lst = list_runs(self.d, "?status=created,cancelled&page_size=100")
        self.assertEqual(lst["total"], 23)
        lst = list_runs(self.d, "?status=cancelled,created&flow=test&page_size=100")
        self.assertEqual(lst["total"], 17)
        lst = list_runs(self.d, "?status=running,succeeded")
        self.assertEqual((lst["total"], lst["items"], lst["has_more"]), (0, [], False))
        assert_error(self, self.d.get("/v1/runs?status=bogus"), 400, "invalid_parameter")
        assert_error(self, self.d.get("/v1/runs?status=created,bogus"), 400)

    def test_list_parameter_validation(self):
        for q in ("page=0", "page=-1", "page_size=0", "page_size=101", "page=abc",
                  "page_size=1.5", "page=1e3", "page_size=", "page=", "page_size=10abc",
                  "page=99999999999999999999999"):
            assert_error(self, self.d.get("/v1/runs?" + q), 400, "invalid_parameter")
        self.assertEqual(self.d.get("/v1/runs?page_size=1").status, 200)
        self.assertEqual(self.d.get("/v1/runs?page_size=100").status, 200)

    def test_results_paging_1000_items(self):
        run = finish(self.d, self.d.create("test", {"items": 1000, "item_errors": 10})["id"],
                     timeout=60)
        self.assertEqual(run["status"], "incomplete", run)
        self.assertEqual(run["counts"]["items"], 1000)
        n = 1010

        # default page size 50
        r = self.d.get("/v1/runs/%s/results" % run["id"]).json()
        self.assertEqual((len(r["items"]), r["page"], r["page_size"], r["total"], r["has_more"]),
                         (50, 1, 50, n, True))

        # page/page_size
        seqs = []
        page = 1
        while True:
            r = self.d.get("/v1/runs/%s/results?page=%d&page_size=100" % (run["id"], page))
            self.assertEqual(r.status, 200, r)
            body = r.json()
            self.assertEqual(body["total"], n)
            seqs.extend(it["seq"] for it in body["items"])
            if not body["has_more"]:
                break
            self.assertEqual(len(body["items"]), 100)
            page += 1
        self.assertEqual(page, 11)
        self.assertEqual(seqs, list(range(1, n + 1)))

        # after= cursor, odd page size
        seqs = []
        after = 0
        rounds = 0
        while True:
            body = self.d.get("/v1/runs/%s/results?after=%d&page_size=37" %
                              (run["id"], after)).json()
            rounds += 1
            seqs.extend(it["seq"] for it in body["items"])
            if not body["has_more"]:
                break
            self.assertEqual(body["next_after"], body["items"][-1]["seq"])
            after = body["next_after"]
        self.assertEqual(seqs, list(range(1, n + 1)))
        self.assertEqual(rounds, (n + 36) // 37)
        body = self.d.get("/v1/runs/%s/results?after=%d" % (run["id"], n)).json()
        self.assertEqual((body["items"], body["has_more"]), ([], False))

        # data in order
        items = all_results(self.d, run["id"], status="ok")
        self.assertEqual([it["data"]["i"] for it in items], list(range(1000)))
        self.assertEqual([it["seq"] for it in items], list(range(1, 1001)))
        errs = all_results(self.d, run["id"], status="error", page_size=3)
        self.assertEqual([it["seq"] for it in errs], list(range(1001, 1011)))
        self.assertTrue(all(it["status"] == "error" for it in errs))
        body = self.d.get("/v1/runs/%s/results?status=error&page=2&page_size=4" %
                          run["id"]).json()
        self.assertEqual([it["seq"] for it in body["items"]], [1005, 1006, 1007, 1008])
        self.assertEqual((body["total"], body["has_more"]), (10, True))
        body = self.d.get("/v1/runs/%s/results?status=ok&after=990" % run["id"]).json()
        self.assertEqual([it["seq"] for it in body["items"]], list(range(991, 1001)))
        self.assertFalse(body["has_more"])

        for q in ("page=0", "page_size=0", "page_size=101", "page=x", "after=-1", "after=x",
                  "status=bogus", "page=2&after=5"):
            assert_error(self, self.d.get("/v1/runs/%s/results?%s" % (run["id"], q)), 400,
                         "invalid_parameter")

    def test_event_log_paging(self):
        run = finish(self.d, self.d.create("test", {"items": 250})["id"])
        evs = self.d.events(run["id"], limit=7)
        ids = [e["id"] for e in evs]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(len([e for e in evs if e["type"] == "run.item"]), 250)
        self.assertEqual(evs[-1]["type"], "run.end")
        self.assertEqual(self.d.events(run["id"], limit=1000), evs)
        tail = self.d.events(run["id"], after=ids[-3])
        self.assertEqual([e["id"] for e in tail], ids[-2:])
        for q in ("limit=0", "limit=1001", "after=-1", "limit=x"):
            assert_error(self, self.d.get("/v1/runs/%s/events?%s" % (run["id"], q)), 400,
                         "invalid_parameter")


class TestAuth(DaemonTest):
    extra = "[auth]\nkey = read:%s\nkey = write:%s\n" % (READ_KEY, WRITE_KEY)

    def test_keys_and_scopes(self):
        # no key
        r = self.d.get("/v1/runs")
        assert_error(self, r, 401, "unauthorized")
        assert_error(self, self.d.post("/v1/runs", {"flow": "test"}), 401, "unauthorized")
        assert_error(self, self.d.get("/v1/runs", headers={"x-api-key": "wrong-key-0123456789"}),
                     401)
        assert_error(self, self.d.get("/v1/runs", headers={
            "Authorization": "Bearer " + READ_KEY[:-1]}), 401)
        assert_error(self, self.d.get("/v1/runs", headers={
            "Authorization": "Basic " + READ_KEY}), 401)
        self.assertEqual(self.d.get("/healthz").status, 200)

        rk_bearer = {"Authorization": "Bearer " + READ_KEY}
        rk_header = {"x-api-key": READ_KEY}
        wk_bearer = {"Authorization": "Bearer " + WRITE_KEY}
        wk_header = {"x-api-key": WRITE_KEY}

        # read key: GET ok, POST forbidden
        for h in (rk_bearer, rk_header):
            r = self.d.get("/v1/runs", headers=h)
            self.assertEqual(r.status, 200, r)
            assert_error(self, self.d.post("/v1/runs", {"flow": "test"}, headers=h), 403,
                         "forbidden")
        self.assertEqual(self.d.get("/v1/runs", headers=rk_header).json()["total"], 0)

        # write key creates, both header forms
        ids = []
        for h in (wk_bearer, wk_header):
            r = self.d.post("/v1/runs", {"flow": "test", "input": {"items": 1}}, headers=h)
            self.assertEqual(r.status, 201, r)
            ids.append(r.json()["id"])
        self.assertEqual(self.d.get("/v1/runs", headers=wk_bearer).json()["total"], 2)
        for rid in ids:
            r = self.d.get("/v1/runs/%s?wait=10" % rid, headers=rk_bearer)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "succeeded")
            self.assertEqual(self.d.get("/v1/runs/%s/results" % rid, headers=rk_header).status,
                             200)
            assert_error(self, self.d.get("/v1/runs/" + rid), 401)
            assert_error(self, self.d.get("/v1/runs/%s/results" % rid), 401)
            assert_error(self, self.d.get("/v1/runs/%s/events" % rid), 401)
            assert_error(self, self.d.request("DELETE", "/v1/runs/" + rid, headers=rk_header),
                         403, "forbidden")
            assert_error(self, self.d.post("/v1/runs/%s/cancel" % rid, headers=rk_bearer), 403)
        # Idempotency-Key is scoped per API key: another caller gets its own run
        body = {"flow": "test", "start": False}
        r1 = self.d.post("/v1/runs", body, headers=dict(wk_bearer, **{"Idempotency-Key": "k"}))
        r2 = self.d.post("/v1/runs", body, headers=dict(wk_bearer, **{"Idempotency-Key": "k"}))
        self.assertEqual(r1.json()["id"], r2.json()["id"])
        self.assertEqual(r2.headers.get("idempotent-replayed"), "true")
        # a secret is never echoed in an error
        r = self.d.post("/v1/runs", {"flow": "test"}, headers=rk_header)
        self.assertNotIn(READ_KEY.encode(), r.body)
        r = self.d.get("/v1/runs", headers={"x-api-key": "x" * 100})
        self.assertEqual(r.status, 401)
        self.assertIn("bearer", r.headers.get("www-authenticate", "").lower())


if __name__ == "__main__":
    unittest.main()
