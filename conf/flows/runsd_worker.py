"""runsd_worker: the worker-protocol plumbing the demo flows share (SPEC section 2).

Standard library only. A flow script in this directory imports it with

    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from runsd_worker import emit, log, fail, read_start, run_main

so it works whatever the daemon's working directory is.

Output: every call to emit() is one write(2) of complete lines, so the daemon sees the
messages at once (no stdio buffering) and never half a message. If stdout is closed
(EPIPE: the daemon is gone or no longer listening) the worker exits 141 at once.

Input: read_start() reads the start message (the first stdin line); wait_for() and
messages() read the later lines (approval and auth answers, enrichment items).

Lifecycle: run_main(main) makes SIGTERM (cancel) exit 143 and exits with main()'s return
value.
"""

import json
import os
import signal
import sys

__all__ = ["STDIN", "emit", "log", "fail", "read_start", "messages", "wait_for", "run_main"]

STDIN = sys.stdin.buffer


def _write(data):
    try:
        while data:
            n = os.write(1, data)
            data = data[n:]
    except OSError:
        os._exit(141)  # stdout closed: the daemon is gone or no longer listening


def _line(obj):
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def emit(*objs):
    """Writes one or more messages in a single write (each line complete)."""
    _write(b"".join(_line(o) for o in objs))


def log(message, level="info"):
    """A `log` message (level debug, info, warn or error)."""
    emit({"type": "log", "level": level, "message": message})


def fail(message):
    """Writes an `error` message and exits 1: the run fails with error_occurred."""
    emit({"type": "error", "message": message})
    os._exit(1)


def read_start():
    """The `run` object of the start message on the first stdin line; fails the run when
    that line is not a start message."""
    try:
        start = json.loads(STDIN.readline())
        run = start["run"]
        if start.get("type") != "start" or not isinstance(run, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        fail("the first stdin line is not a start message")
    return run


def messages(skip_blank=True):
    """Yields the JSON value of each further stdin line until EOF (any JSON value: the
    caller checks its shape). A line that is not JSON is skipped with a warning `log`;
    an empty (whitespace-only) line is skipped silently when skip_blank, else it gets the
    warning too."""
    for line in STDIN:
        if skip_blank and not line.strip():
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            log("ignored a stdin line that is not JSON", "warn")
            continue
        yield msg


def wait_for(msg_type, what):
    """The next stdin message (an object) of msg_type, e.g. the answer to an
    approval_required or auth_required; other lines are skipped. EOF fails the run
    ("stdin closed while waiting for <what>")."""
    for msg in messages(skip_blank=False):
        if isinstance(msg, dict) and msg.get("type") == msg_type:
            return msg
    fail("stdin closed while waiting for %s" % what)


def _on_term(signum, frame):
    os._exit(143)


def run_main(main):
    """Runs a worker: SIGTERM (the daemon's cancel) exits 143 at once; otherwise the exit
    status is main()'s return value."""
    signal.signal(signal.SIGTERM, _on_term)
    os._exit(main())
