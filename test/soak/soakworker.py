#!/usr/bin/env python3
"""soakworker.py TRACKDIR: test/workers/testworker.py with an execution record.

Before the run starts it appends {"ev":"start","pid","t","attempt"} to TRACKDIR/<run id>.jsonl;
at every exit it controls (normal exit, error, SIGTERM, EPIPE, its own crash) it appends
{"ev":"end","pid","t","code"}. t is CLOCK_MONOTONIC (shared by every process on the host),
so the soak can compare intervals of different processes. A worker killed from outside
(SIGKILL) writes no end: the soak's process monitor notes when its pid disappears.
"""
import json
import os
import signal
import sys
import time

TRACK = sys.argv[1] if len(sys.argv) > 1 else "."
WORKERS = os.environ.get("RUNSD_TEST_WORKERS",
                         os.path.join(os.path.dirname(os.path.abspath(__file__)), "../workers"))
sys.path.insert(0, WORKERS)
import testworker as tw  # noqa: E402

RUN_ID = "unknown"


def record(ev, **fields):
    fields.update({"ev": ev, "pid": os.getpid(), "t": time.monotonic(), "wall": time.time()})
    line = (json.dumps(fields) + "\n").encode()
    try:
        fd = os.open(os.path.join(TRACK, RUN_ID + ".jsonl"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, line)
        os.close(fd)
    except OSError:
        pass


class FirstLine:
    """stdin whose first line was already read by us; testworker reads it again."""

    def __init__(self, first, rest):
        self.first = first
        self.rest = rest

    def readline(self):
        if self.first is not None:
            line, self.first = self.first, None
            return line
        return self.rest.readline()


_real_exit = os._exit


def _exit(code):
    record("end", code=code)
    _real_exit(code)


def _crash():
    record("end", code="crash")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def main():
    global RUN_ID
    stdin = sys.stdin.buffer
    first = stdin.readline()
    attempt = None
    try:
        run = json.loads(first)["run"]
        RUN_ID = "".join(c for c in str(run.get("id")) if c.isalnum() or c in "_-") or "unknown"
        attempt = run.get("attempt")
    except (ValueError, KeyError, TypeError):
        pass
    record("start", attempt=attempt)
    tw.STDIN = FirstLine(first, stdin)
    os._exit = _exit
    tw.crash = _crash
    signal.signal(signal.SIGTERM, tw._on_term)
    try:
        code = tw.main()
    except KeyboardInterrupt:
        code = 130
    os._exit(code & 0xFF if isinstance(code, int) else 1)


if __name__ == "__main__":
    main()
