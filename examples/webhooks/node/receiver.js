#!/usr/bin/env node
// A runsd webhook receiver that verifies Standard Webhooks signatures with the npm package
// standardwebhooks (docs/webhooks.md, "Verifying"). Install it here first: npm ci
//
//   WEBHOOK_SECRET=whsec_... node receiver.js PORT RECORD_FILE
//
// Listens on 127.0.0.1:PORT (0: any free port) and prints "listening on 127.0.0.1:<port>".
// Every POST is verified against the secret (given in the environment, not in argv, which any
// local user can read): a verified delivery is answered 204, a refused one 400; each is
// appended to RECORD_FILE as one JSON line {verified, error, duplicate, webhook_id,
// webhook_timestamp, webhook_signature, type, run_id, status, body}. Deliveries are
// at-least-once: a webhook-id seen before is answered 204 again, recorded as a duplicate.
"use strict";
const fs = require("fs");
const http = require("http");
const { Webhook } = require("standardwebhooks");

const [port, recordFile] = process.argv.slice(2);
const secret = process.env.WEBHOOK_SECRET || "";
if (!recordFile || !secret.startsWith("whsec_")) {
  console.error("usage: WEBHOOK_SECRET=whsec_... node receiver.js PORT RECORD_FILE");
  process.exit(2);
}
const wh = new Webhook(secret); // takes the whsec_ form as it is
const seen = new Set();

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    // Verify the exact bytes received: never a re-serialized JSON object.
    const body = Buffer.concat(chunks).toString("utf8");
    const h = req.headers; // Node lower-cases header names
    const rec = {
      verified: false, error: null, duplicate: false,
      webhook_id: h["webhook-id"] || null,
      webhook_timestamp: h["webhook-timestamp"] || null,
      webhook_signature: h["webhook-signature"] || null,
      type: null, run_id: null, status: null, body,
    };
    try {
      const event = wh.verify(body, h); // throws WebhookVerificationError
      Object.assign(rec, { verified: true, type: event.type, run_id: event.data.id,
                           status: event.data.status });
      rec.duplicate = seen.has(rec.webhook_id);
      seen.add(rec.webhook_id);
    } catch (e) {
      rec.error = e.message;
    }
    fs.appendFileSync(recordFile, JSON.stringify(rec) + "\n");
    res.writeHead(rec.verified ? 204 : 400).end();
  });
});
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
