#!/usr/bin/env python3
"""primes (Python): a complete runsd worker, standard library only (docs/workers.md).

Emits the primes below input.below (default 50) as items {"n": p, "index": k}, with a step,
progress, a checkpoint after every item, and a result. It resumes from its checkpoint, so a
run stopped at its limit and extended, or re-queued after a daemon restart, goes on where it
stopped. With input {"confirm": true} it first asks a person for an approval.
"""
import json
import os
import sys

MAX_BELOW = 1000000


def emit(*msgs):
    """Writes messages as JSON lines in one write(2): the daemon sees them at once, whole."""
    data = "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in msgs).encode()
    while data:
        data = data[os.write(1, data):]


def fail(message):
    """An `error` message and exit 1: the run ends failed/error_occurred."""
    emit({"type": "error", "message": message})
    sys.exit(1)


def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def main():
    start = json.loads(sys.stdin.readline())  # the first stdin line is always `start`
    run = start["run"]
    inp = run["input"] or {}
    if not isinstance(inp, dict):
        fail("input must be an object such as {\"below\": 100}")
    below = inp.get("below", 50)
    if type(below) is not int or not 2 <= below <= MAX_BELOW:
        fail("input.below must be an integer from 2 to %d" % MAX_BELOW)
    limit = run["limit"]  # the total over all attempts, or None
    cursor = run["cursor"] or {"next": 2, "found": 0, "largest": None}
    n, found, largest = cursor["next"], cursor["found"], cursor["largest"]

    # Ask once: a resumed attempt (it has a cursor) was approved before.
    if inp.get("confirm") and run["cursor"] is None:
        emit({"type": "approval_required", "prompt": "Look for primes below %d?" % below,
              "details": {"below": below}})
        for line in sys.stdin:  # the answer arrives as a stdin line
            msg = json.loads(line)
            if msg.get("type") == "approval":
                break
        else:
            fail("stdin closed while waiting for the approval")
        if msg["decision"] != "approved":
            emit({"type": "log", "level": "info", "message": "denied: nothing to do"})
            return 0  # the daemon has cancelled the run (approval_denied)

    emit({"type": "log", "level": "info",
          "message": "attempt %d: from %d to %d" % (run["attempt"], n, below - 1)},
         {"type": "step", "name": "scan", "state": "started", "total": below - 2})
    while n < below:
        if is_prime(n):
            found, largest = found + 1, n
            # The item, then a checkpoint past it: a resumed attempt starts after this item.
            emit({"type": "item", "data": {"n": n, "index": found}},
                 {"type": "checkpoint", "cursor": {"next": n + 1, "found": found,
                                                   "largest": largest}},
                 {"type": "progress", "done": n - 1, "total": below - 2})
            if limit is not None and found >= limit:
                return 0  # the limit ended the run (match_limit_met); an extend resumes it
        n += 1
    emit({"type": "step", "name": "scan", "state": "finished", "total": below - 2},
         {"type": "progress", "done": below - 2, "total": below - 2},
         {"type": "result", "data": {"below": below, "count": found, "largest": largest}},
         {"type": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
