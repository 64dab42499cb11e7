"""Flow input schemas end to end (issue 12; docs/config.md "Input schemas", docs/api.md):
a create or an enrich whose input misses its flow's input_schema is refused with 422
invalid_input whose message names the unknown key and the accepted ones, the wrong type or the
missing key, before anything is stored (no run, no event, no idempotency key kept); a flow
without a schema takes any input; GET /v1/flows shows each flow's schema (null without one);
a schema file is read again on SIGHUP, and a broken one makes the reload fail and keeps the
running config. `runsd -t` reports a broken schema with the config's file and line."""
import json
import os
import signal
import subprocess
import tempfile
import unittest

from harness import BIN, Daemon, DaemonTest, testworker_flow, wait_for
from helpers import assert_error, finish, list_runs

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["items"],
    "properties": {
        "items": {"type": "integer", "minimum": 0, "maximum": 50},
        "label": {"type": ["string", "null"], "maxLength": 8},
        "mode": {"enum": ["fast", "slow"]},
    },
}
ENRICH_SCHEMA = {"type": "object", "additionalProperties": False,
                 "properties": {"stdin_items": {"type": "boolean"}}}


class TestInputSchema(DaemonTest):
    flows = (testworker_flow("strict", input_schema="@strict.schema.json")
             + testworker_flow("inline", input_schema=json.dumps(ENRICH_SCHEMA))
             + testworker_flow("open"))

    def setUp(self):
        # The schema file sits next to the config the harness writes (its temp directory).
        tmp = tempfile.mkdtemp(prefix="runsd-e2e-schema-")
        self.schema_path = os.path.join(tmp, "strict.schema.json")
        self.write_schema(SCHEMA)
        self.d = Daemon(flows=self.flows, tmp=tmp).start()

    def write_schema(self, schema):
        with open(self.schema_path, "w") as f:
            f.write(schema if isinstance(schema, str) else json.dumps(schema, indent=2))

    def refused(self, body, message, path="/v1/runs", headers=None):
        before = list_runs(self.d)["total"]
        r = self.d.request("POST", path, body=body, headers=headers)
        err = assert_error(self, r, 422, "invalid_input")
        self.assertEqual(err["message"], message)
        self.assertEqual(list_runs(self.d)["total"], before, "a refused create stored a run")
        return err

    def test_create_refusals_name_the_key(self):
        self.refused({"flow": "strict", "input": {"itmes": 3}},
                     'unknown input key "itmes"; accepted: items, label, mode')
        self.refused({"flow": "strict", "input": {"items": "3"}},
                     'input key "items" must be an integer (got a string)')
        self.refused({"flow": "strict"}, 'missing required input key "items"')
        self.refused({"flow": "strict", "input": None}, 'missing required input key "items"')
        self.refused({"flow": "strict", "input": [1]}, "input must be an object (got an array)")
        self.refused({"flow": "strict", "input": {"items": 51}},
                     'input key "items" must be at most 50 (got 51)')
        self.refused({"flow": "strict", "input": {"items": 1, "label": "123456789"}},
                     'input key "label" must be at most 8 characters long (got 9)')
        self.refused({"flow": "strict", "input": {"items": 1, "mode": "quick"}},
                     'input key "mode" must be one of: "fast", "slow"')
        # Refused before the Idempotency-Key is kept: the same key works once the input does.
        hdr = {"Idempotency-Key": "schema-1"}
        self.refused({"flow": "strict", "input": {"itmes": 2}},
                     'unknown input key "itmes"; accepted: items, label, mode', headers=hdr)
        r = self.d.request("POST", "/v1/runs", body={"flow": "strict", "input": {"items": 2}},
                           headers=hdr)
        self.assertEqual(r.status, 201, r)
        run = finish(self.d, r.json()["id"])
        self.assertEqual((run["status"], run["counts"]["items"]), ("succeeded", 2), run)
        self.assertEqual(run["input"], {"items": 2})

    def test_open_flow_and_valid_inputs(self):
        for flow, inp in (("open", {"anything": [1, {"x": None}], "items": 1}),
                          ("strict", {"items": 0, "label": None, "mode": "slow"}),
                          ("inline", None), ("inline", {})):
            run = finish(self.d, self.d.create(flow, inp)["id"])
            self.assertEqual(run["status"], "succeeded", (flow, inp, run))

    def test_enrich_input_checked(self):
        run = finish(self.d, self.d.create("strict", {"items": 2})["id"])
        path = "/v1/runs/%s/enrich" % run["id"]
        r = self.d.post(path, {"flow": "inline", "input": {"stdin_item": True}})
        err = assert_error(self, r, 422, "invalid_input")
        self.assertEqual(err["message"], 'unknown input key "stdin_item"; accepted: stdin_items')
        self.assertEqual(self.d.run(run["id"])["enrichments"], [])
        r = self.d.post(path, {"flow": "inline", "input": {"stdin_items": True}})
        self.assertEqual(r.status, 202, r)

    def test_flows_show_schema(self):
        r = self.d.get("/v1/flows")
        self.assertEqual(r.status, 200, r)
        flows = {f["name"]: f for f in r.json()["items"]}
        self.assertEqual(flows["strict"]["input_schema"], SCHEMA)
        self.assertEqual(flows["inline"]["input_schema"], ENRICH_SCHEMA)
        self.assertIn("input_schema", flows["open"])
        self.assertIsNone(flows["open"]["input_schema"])

    def test_reload_reads_the_file_again(self):
        version = {f["name"]: f["version"] for f in self.d.get("/v1/flows").json()["items"]}
        wider = dict(SCHEMA, properties=dict(SCHEMA["properties"], extra={"type": "boolean"}))
        self.write_schema(wider)
        self.d.proc.send_signal(signal.SIGHUP)

        def reloaded():
            items = self.d.get("/v1/flows").json()["items"]
            return [f for f in items if f["name"] == "strict" and f["input_schema"] == wider]

        flow = wait_for(reloaded, what="the new schema")[0]
        self.assertNotEqual(flow["version"], version["strict"])
        run = finish(self.d, self.d.create("strict", {"items": 1, "extra": True})["id"])
        self.assertEqual(run["status"], "succeeded", run)
        # A broken file: the reload is refused and the running config stays.
        self.write_schema('{"type": "object", "properties": {"a": {"type": "strin"}}}')
        self.d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload refused" in self.d.read_log(), what="the refusal")
        self.assertIn('unknown type \\"strin\\"', self.d.read_log())
        flows = {f["name"]: f for f in self.d.get("/v1/flows").json()["items"]}
        self.assertEqual(flows["strict"]["input_schema"], wider)
        # runsd -t says where.
        p = subprocess.run([BIN, "-c", self.d.conf, "-t"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1, p)
        line = [n for n, text in enumerate(open(self.d.conf), 1)
                if text.startswith("input_schema = @strict")][0]
        self.assertIn("%s:%d: key 'input_schema': strict.schema.json: properties.a.type: "
                      'unknown type "strin"' % (self.d.conf, line), p.stderr + p.stdout)


if __name__ == "__main__":
    unittest.main()
