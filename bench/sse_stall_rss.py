#!/usr/bin/env python3
"""sse_stall_rss.py: peak memory of the daemon when many SSE subscribers stop reading.

The scenario of the outside probe: N subscribers on /v1/events that never read past the
response head (a 4 KB receive buffer), and one run emitting ITEMS small items about 1 ms
apart, so most frames are their own batch. Prints the daemon's VmHWM (peak RSS) before the
run and after it, and how many subscribers were cut. Loopback only; stops by itself; kills
only the daemon it started.

  bench/sse_stall_rss.py BIN [N] [ITEMS] [SERVER_LINES]   (with `ulimit -n` above N + 100)

SERVER_LINES are added to the [server] section, e.g. "sse_backpressure = 0". If the run does
not finish within TIMEOUT seconds (env, default 120) the figures are printed all the same,
with the run's item count and whether backpressure holds it (readers that never read but stay
under half their bound hold the producer until something cuts them).
"""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../test/e2e"))
from harness import Daemon, testworker_flow, wait_for  # noqa: E402


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^%s:\s+(\d+) kB" % key, f.read(), re.M)
    return int(m.group(1)) if m else 0


def metric(d, name):
    body = d.get("/metrics").body.decode()
    m = re.search(r"^%s (\d+)" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else 0


def main():
    os.environ["RUNSD_BIN"] = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    items = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    server = sys.argv[4].replace("\\n", "\n") if len(sys.argv) > 4 else ""
    import harness
    harness.BIN = sys.argv[1]
    d = Daemon(flows=testworker_flow("items"), limits="max_items = 1000000\n",
               server=server).start()
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", d.port))
            s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            socks.append(s)
        wait_for(lambda: metric(d, "runsd_sse_subscribers") >= n, timeout=60,
                 what="%d subscribers" % n)
        before = vm(d.proc.pid, "VmRSS")
        run = d.create("items", {"items": items, "item_delay": 0.001})
        t0 = time.monotonic()
        try:
            d.wait_status(run["id"], "succeeded", timeout=float(os.environ.get("TIMEOUT", 120)))
            state = "run succeeded in %.1f s" % (time.monotonic() - t0)
        except AssertionError:
            state = "run NOT finished after %.0f s: %d items, backpressure on %d" % (
                time.monotonic() - t0, d.run(run["id"])["counts"]["items"],
                metric(d, "runsd_sse_backpressure_on"))
        time.sleep(0.5)  # the last frames reach the hub after the commit
        peak = vm(d.proc.pid, "VmHWM")
        cut = metric(d, "runsd_sse_slow_disconnects_total")
        print("subscribers %d, items %d: RSS before %.1f MB, peak %.1f MB (+%.1f MB), "
              "subscribers cut %d; %s" % (n, items, before / 1024, peak / 1024,
                                          (peak - before) / 1024, cut, state))
    finally:
        for s in socks:
            s.close()
        d.stop()


if __name__ == "__main__":
    main()
