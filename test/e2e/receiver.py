#!/usr/bin/env python3
"""receiver.py: a scripted webhook receiver for the end-to-end tests (stdlib only).

    receiver.py --port N --log FILE [--script JSON] [--port-file FILE]

Listens on 127.0.0.1:N (0 = any free port; the port is written to --port-file and printed as
"PORT n" on stdout). Every request is appended to the JSON-lines log at arrival, before it is
answered: {"t": epoch seconds, "method", "path", "headers": {lowercase name: value},
"body": text, "body_b64": exact bytes, "action": what it will do}.

The script maps a path (or "*" for any other path) to a list of steps, used in order, one per
request to that path; the last step repeats forever:

    {"/hook": [{"status": 500, "times": 3}, {"status": 200}], "*": [{"status": 204}]}

A step is {"status": code, "headers": {...}?, "body": text?, "times": n?} or
{"hang": true} (never answers; the connection stays open until the client gives up) or
{"reset": true} (aborts the connection with a TCP reset, no answer) or
{"delay": seconds, "status": code} (answers late). Without a script every request gets 200.
"""
import argparse
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Script:
    def __init__(self, spec):
        self.lock = threading.Lock()
        self.steps = {}
        for path, steps in (spec or {}).items():
            flat = []
            for st in steps:
                flat.extend([st] * int(st.get("times", 1)))
            self.steps[path] = [flat, 0]

    def next(self, path):
        with self.lock:
            entry = self.steps.get(path) or self.steps.get("*")
            if not entry or not entry[0]:
                return {"status": 200}
            steps, i = entry
            entry[1] = i + 1
            return steps[min(i, len(steps) - 1)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self, body, step):
        path = self.path.split("?", 1)[0]
        entry = {
            "t": time.time(),
            "method": self.command,
            "path": path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "body_b64": base64.b64encode(body).decode(),
            "action": "hang" if step.get("hang") else "reset" if step.get("reset")
            else step.get("status", 200),
        }
        line = json.dumps(entry) + "\n"
        with self.server.log_lock:
            with open(self.server.log_path, "a") as f:
                f.write(line)

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        step = self.server.script.next(self.path.split("?", 1)[0])
        self.record(body, step)
        if step.get("reset"):
            # Abort the connection (RST) without an answer.
            import socket
            import struct
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if step.get("hang"):
            # Hold the connection open without answering until the client closes it.
            self.close_connection = True
            while self.rfile.read(1):
                pass
            return
        if step.get("delay"):
            time.sleep(float(step["delay"]))
        out = step.get("body", "").encode()
        self.send_response(int(step.get("status", 200)))
        for k, v in (step.get("headers") or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_POST = answer
    do_GET = answer
    do_PUT = answer


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--script", default="")
    ap.add_argument("--port-file", default="")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.script = Script(json.loads(a.script) if a.script else None)
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, a.port_file)
    print("PORT %d" % port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
