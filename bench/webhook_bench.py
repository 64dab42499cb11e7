#!/usr/bin/env python3
"""webhook_bench.py: webhook delivery benchmarks (results in bench/README.md, "Webhooks").

  python3 bench/webhook_bench.py [--build DIR] [--items N] [--hang N] [--conns LIST]

1. Throughput: one run of the emit_items worker emits N items; its webhook subscribes to
   run.item, so N deliveries go to a fast local receiver (webhook_bench_receiver fast, C/evhttp).
   Reported: deliveries/s at the receiver (first to last request) and the time from the
   run's creation to the last delivery, for each [webhooks] max_connections in --conns.
2. Latency while deliveries hang: --hang deliveries are held open, unanswered, by
   webhook_bench_receiver hang; then GET /v1/runs/{id} latency over a kept-alive connection
   and, when the daemon serves SSE, the time to the first event of a new SSE stream, against
   the same measurements with nothing hanging.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(cond, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit("timed out waiting for " + what)


class Proc:
    def __init__(self, args, log):
        self.log = open(log, "wb")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)

    def port(self):
        line = self.p.stdout.readline().decode()
        assert line.startswith("PORT "), line
        return int(line.split()[1])

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def get_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return json.loads(body)


def start_daemon(args, tmp, webhooks):
    port = free_port()
    conf = os.path.join(tmp, "runsd.ini")
    with open(conf, "w") as f:
        f.write("[server]\nlisten = 127.0.0.1:%d\n[store]\npath = %s/runsd.db\n"
                "[limits]\nmax_items = 100000000\n[webhooks]\nallow_private = yes\n%s\n"
                "[flow.emit]\ncommand = %s\n" % (port, tmp, webhooks,
                                                 os.path.join(args.build, "test", "emit_items")))
    log = open(os.path.join(tmp, "runsd.log"), "wb")
    p = subprocess.Popen([os.path.join(args.build, "runsd"), "-c", conf], stdout=log, stderr=log)

    def ready():
        try:
            return get_json(port, "/readyz").get("status") == "ready"
        except OSError:
            return False
    wait_for(ready, what="runsd")
    return p, log, port


def stop_daemon(p, log):
    p.terminate()
    p.wait(timeout=60)
    log.close()


def create(port, count, url, events=("run.item",)):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"flow": "emit", "input": {"count": count},
            "webhook": {"url": url, "events": list(events)}}
    c.request("POST", "/v1/runs", body=json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    assert r.status == 201, out
    return out


def throughput(args, conns):
    tmp = tempfile.mkdtemp(prefix="webhook-bench-")
    rx = Proc([os.path.join(args.build, "bench", "webhook_bench_receiver"), "fast"],
              os.path.join(tmp, "rx.log"))
    rport = rx.port()
    d, log, port = start_daemon(args, tmp, "max_connections = %d\ntimeout = 30s" % conns)
    try:
        t0 = time.monotonic()
        run = create(port, args.items, "http://127.0.0.1:%d/hook" % rport)
        st = wait_for(lambda: (lambda s: s if s["n"] >= args.items else None)(
            get_json(rport, "/stats")), timeout=600, what="%d deliveries" % args.items)
        e2e = time.monotonic() - t0
        span = st["last"] - st["first"]
        done = get_json(port, "/v1/runs/%s/deliveries?page_size=1" % run["id"])
        assert done["total"] == args.items, done["total"]
        return {"conns": conns, "n": args.items, "rate": args.items / span if span else 0,
                "e2e_s": e2e, "rate_e2e": args.items / e2e}
    finally:
        stop_daemon(d, log)
        rx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def api_latency(port, run_id, n=2000):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("GET", "/v1/runs/" + run_id)
        r = c.getresponse()
        r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
    c.close()
    return lat


def sse_first_event(port, run_id):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        t0 = time.perf_counter()
        s.sendall(("GET /v1/runs/%s/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream"
                   "\r\n\r\n" % run_id).encode())
        buf = b""
        while b"\nevent:" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
            if b"\r\n" in buf and b" 200 " not in buf.split(b"\r\n", 1)[0]:
                return None
        return (time.perf_counter() - t0) * 1000
    finally:
        s.close()


def measure(port, run_id, label, out):
    lat = api_latency(port, run_id)
    sse = [sse_first_event(port, run_id) for _ in range(200)]
    row = {"label": label, "api_p50": statistics.median(lat), "api_p99": pct(lat, 0.99),
           "api_max": max(lat)}
    if all(x is not None for x in sse):
        row.update(sse_p50=statistics.median(sse), sse_p99=pct(sse, 0.99), sse_max=max(sse))
    out.append(row)


def hang_latency(args):
    tmp = tempfile.mkdtemp(prefix="webhook-bench-")
    rx = Proc([os.path.join(args.build, "bench", "webhook_bench_receiver"), "hang"],
              os.path.join(tmp, "rx.log"))
    rport = rx.port()
    d, log, port = start_daemon(args, tmp, "max_connections = %d\ntimeout = 10m"
                                % (args.hang + 64))
    rows = []
    try:
        probe = create(port, 1, "http://127.0.0.1:%d/probe" % rport, events=())
        wait_for(lambda: get_json(port, "/v1/runs/" + probe["id"])["status"] == "succeeded")
        measure(port, probe["id"], "nothing hanging", rows)
        run = create(port, args.hang, "http://127.0.0.1:%d/hook" % rport)
        wait_for(lambda: get_json(rport, "/stats")["n"] >= args.hang, timeout=120,
                 what="%d hanging deliveries" % args.hang)
        measure(port, probe["id"], "%d deliveries hanging" % args.hang, rows)
        page = get_json(port, "/v1/runs/%s/deliveries?page_size=100" % run["id"])
        assert all(x["status"] == "sending" for x in page["items"]), "not all in flight"
        t0 = time.monotonic()
        stop_daemon(d, log)
        rows.append({"label": "SIGTERM to exit with %d in flight" % args.hang,
                     "stop_s": time.monotonic() - t0})
        d = None
    finally:
        if d is not None:
            stop_daemon(d, log)
        rx.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build-rel"))
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--hang", type=int, default=1000)
    ap.add_argument("--conns", default="8,64,256")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    print("## throughput: %d run.item deliveries to a fast receiver" % args.items)
    print("| max_connections | deliveries/s at receiver | create -> last delivery |")
    print("|---|---|---|")
    for conns in [int(x) for x in args.conns.split(",")]:
        r = throughput(args, conns)
        print("| %d | %.0f | %.2f s (%.0f/s) |" % (r["conns"], r["rate"], r["e2e_s"],
                                                  r["rate_e2e"]), flush=True)
    print("\n## latency while deliveries hang (ms)")
    print("| situation | API p50 | API p99 | API max | SSE p50 | SSE p99 | SSE max |")
    print("|---|---|---|---|---|---|---|")
    for r in hang_latency(args):
        if "stop_s" in r:
            print("\n%s: %.2f s" % (r["label"], r["stop_s"]))
            continue
        sse = ("| %.2f | %.2f | %.2f |" % (r["sse_p50"], r["sse_p99"], r["sse_max"])
               if "sse_p50" in r else "| n/a | n/a | n/a |")
        print("| %s | %.2f | %.2f | %.2f %s" % (r["label"], r["api_p50"], r["api_p99"],
                                                r["api_max"], sse), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
