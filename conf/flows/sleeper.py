#!/usr/bin/env python3
"""sleeper: a runsd demo flow that only waits (worker protocol, SPEC section 2), so the quick
start can produce the termination reasons that need time or a dying worker:

    {"seconds": 1}                 succeeded/completed after a second
    {"seconds": 60}                failed/timeout: the flow's timeout (conf/demo.ini) stops it
    {"seconds": 60} + cancel       cancelled/user_cancelled
    {"seconds": 0, "crash": true}  crashed/worker_crashed: it kills itself with SIGKILL, a
                                   signal the daemon did not send
    a restart of the daemon        crashed/interrupted: the flow is not resumable

Input (all optional): {"seconds": N (0..3600, default 1), "crash": false}.
Output: step "sleep" with a progress message each second, result {"slept": N}, done.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # runsd_worker, whatever the working directory
from runsd_worker import emit, fail, log, read_start, run_main  # noqa: E402

MAX_SECONDS = 3600


def main():
    run = read_start()
    inp = run.get("input")
    if inp is None:
        inp = {}
    if not isinstance(inp, dict):
        fail("input must be an object")
    seconds = inp.get("seconds")
    if seconds is None:
        seconds = 1
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_SECONDS:
        fail("input.seconds must be an integer 0..%d" % MAX_SECONDS)

    emit({"type": "step", "name": "sleep", "state": "started", "total": seconds})
    for i in range(seconds):
        time.sleep(1)
        emit({"type": "progress", "done": i + 1, "total": seconds})
    if inp.get("crash") is True:
        log("crashing on purpose (input.crash): SIGKILL to myself", "warn")
        os.kill(os.getpid(), signal.SIGKILL)
    emit({"type": "step", "name": "sleep", "state": "finished", "total": seconds},
         {"type": "result", "data": {"slept": seconds}},
         {"type": "done", "reason": "completed"})
    return 0


if __name__ == "__main__":
    run_main(main)
