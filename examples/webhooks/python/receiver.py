#!/usr/bin/env python3
"""A runsd webhook receiver that verifies Standard Webhooks signatures, standard library only
(docs/webhooks.md, "Verifying").

    WEBHOOK_SECRET=whsec_... receiver.py PORT RECORD_FILE

Listens on 127.0.0.1:PORT (0: any free port) and prints "listening on 127.0.0.1:<port>".
Every POST is verified: its webhook-id, webhook-timestamp and webhook-signature headers against
the secret (given in the environment, not in argv, which any local user can read). A verified
delivery is answered 204 and a refused one 400; each is appended to RECORD_FILE as one JSON
line {"verified", "error", "duplicate", "webhook_id", "webhook_timestamp", "webhook_signature",
"type", "run_id", "status", "body"}. Deliveries are at-least-once: one whose webhook-id was
seen before is answered 204 again and recorded with "duplicate": true, for nothing to be done
twice.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE = 5 * 60  # seconds a timestamp may be off, as in the reference libraries


class VerifyError(Exception):
    pass


def verify(secret, headers, body, now=None):
    """The parsed body when the signature holds; else VerifyError. headers: lower-case names."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise VerifyError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(timestamp)
    except ValueError:
        raise VerifyError("webhook-timestamp is not an integer")
    now = int(time.time()) if now is None else now
    if abs(now - ts) > TOLERANCE:
        raise VerifyError("webhook-timestamp too far from now")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # Several signatures (secret rotation) are separated by spaces; one must match.
    for sig in signatures.split(" "):
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise VerifyError("no matching signature")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec = {"verified": False, "error": None, "duplicate": False,
               "webhook_id": headers.get("webhook-id"),
               "webhook_timestamp": headers.get("webhook-timestamp"),
               "webhook_signature": headers.get("webhook-signature"),
               "type": None, "run_id": None, "status": None,
               "body": body.decode("utf-8", "replace")}
        try:
            event = verify(self.server.secret, headers, body)
            rec.update(verified=True, type=event["type"], run_id=event["data"]["id"],
                       status=event["data"]["status"])
            with self.server.lock:
                rec["duplicate"] = rec["webhook_id"] in self.server.seen
                self.server.seen.add(rec["webhook_id"])
        except (VerifyError, ValueError, KeyError, TypeError) as e:
            rec["error"] = str(e)
        with self.server.lock, open(self.server.record, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(204 if rec["verified"] else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


def main():
    if len(sys.argv) != 3 or not os.environ.get("WEBHOOK_SECRET", "").startswith("whsec_"):
        sys.exit("usage: WEBHOOK_SECRET=whsec_... receiver.py PORT RECORD_FILE")
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.secret = os.environ["WEBHOOK_SECRET"]
    server.record = sys.argv[2]
    server.lock = threading.Lock()
    server.seen = set()
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
