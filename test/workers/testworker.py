#!/usr/bin/env python3
"""testworker.py: one flexible worker for the end-to-end tests (SPEC section 2).

Its behaviour is driven by the run's `input` object, read from the start message. The
modes are documented in README.md next to this file; they run in a fixed order:

  echo_start, echo_proc, grandchild, proc_log, echo_env, log, garbage, long_line, flood_stderr,
  fork_bomb, steps,
  approval, auth, items (checkpoint, progress, item_delay, crash_after),
  sleep_after_items, item_errors, candidates, progress (without items), stdin_items,
  sleep, crash, error, result, done, exit

Standard library only. Every stdout line is written with one write(2) call (so it is
"flushed" as soon as it is written). SIGTERM exits 143 unless input.ignore_term.
"""

import json
import os
import signal
import subprocess
import sys
import time


# ---------------------------------------------------------------------------- output

def _write_all(fd, data):
    try:
        while data:
            n = os.write(fd, data)
            data = data[n:]
    except OSError:
        if fd == 1:
            # The daemon closed our stdout (EPIPE): nobody listens any more.
            os._exit(141)


def raw(text):
    """Writes one raw line (no validation) to stdout."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    _write_all(1, text + b"\n")


def emit(obj):
    raw(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def log(message, level="info"):
    emit({"type": "log", "level": level, "message": message})


def fail(message):
    """Writes an `error` message and exits 1."""
    emit({"type": "error", "message": message})
    os._exit(1)


def sleep(seconds):
    """Sleeps in small increments so signals are handled promptly."""
    end = time.monotonic() + max(0.0, float(seconds))
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


# ---------------------------------------------------------------------------- input

STDIN = sys.stdin.buffer


def read_message():
    """Next JSON object from stdin, None at EOF. Lines that are not JSON objects are
    skipped (logged as warnings)."""
    while True:
        line = STDIN.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            log("testworker: ignored a stdin line that is not JSON", "warn")
            continue
        if not isinstance(msg, dict):
            log("testworker: ignored a stdin line that is not an object", "warn")
            continue
        return msg


def wait_for(msg_type):
    """Blocks until a stdin message of msg_type arrives; None at EOF."""
    while True:
        msg = read_message()
        if msg is None:
            return None
        if msg.get("type") == msg_type:
            return msg
        log("testworker: ignored stdin message of type %r while waiting for %r"
            % (msg.get("type"), msg_type), "debug")


def ask(request, answer_type, what):
    """Writes request (approval_required / auth_required) and blocks for the stdin answer
    of answer_type; EOF first: `error` and exit 1."""
    emit(request)
    ans = wait_for(answer_type)
    if ans is None:
        fail("stdin closed while waiting for %s" % what)
    return ans


def drain_until_eof():
    while read_message() is not None:
        pass


def as_int(value, default=0):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return default
    return default


def as_float(value, default=0.0):
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return default
    return default


# ---------------------------------------------------------------------------- modes

def open_fds():
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            os.fstat(fd)  # the fd of the listing itself is closed by now
        except (ValueError, OSError):
            continue
        fds.append(fd)
    return sorted(fds)


def proc_start(pid):
    """The start time of pid (field 22 of /proc/pid/stat) and its state, or (None, None)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, None
    return fields[19], fields[0]


def proc_alive(pid, start):
    """pid is still the process that started at start, and not a zombie."""
    now, state = proc_start(pid)
    return now == start and state != "Z"


def start_grandchild(mode):
    """`sleep 300` in our process group; with mode "stdout" it holds our stdout open."""
    out = None if mode == "stdout" else subprocess.DEVNULL
    g = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.DEVNULL)
    return {"pid": g.pid, "start": proc_start(g.pid)[0]}


def do_proc_log(path, run, grandchild):
    """Appends one JSON line for this attempt to path: our pid and start time, the
    grandchild's, and which processes recorded by earlier attempts are still alive now."""
    alive = []
    try:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                for p in [rec] + ([rec["grandchild"]] if rec.get("grandchild") else []):
                    if proc_alive(p["pid"], p["start"]):
                        alive.append(p["pid"])
    except FileNotFoundError:
        pass
    rec = {"attempt": run.get("attempt"), "pid": os.getpid(),
           "start": proc_start(os.getpid())[0], "grandchild": grandchild,
           "alive_at_start": alive}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _write_all(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)


def on_deny(inp, what):
    """What to do after a denied approval/auth: input.on_deny = wait|exit|error."""
    mode = inp.get("on_deny", "wait")
    if mode == "exit":
        os._exit(0)
    if mode == "error":
        fail("%s denied" % what)
    # wait: the daemon decides; keep waiting for stdin EOF or termination.
    drain_until_eof()
    os._exit(0)


def crash():
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # not reached


def crash_this_attempt(inp, run):
    """input.crash_attempt = N limits crash/crash_after to attempt N (so a resumed run
    completes); without it they apply to every attempt."""
    want = inp.get("crash_attempt")
    if want is None:
        return True
    return as_int(run.get("attempt"), 1) == as_int(want, -1)


def do_items(inp, run):
    n = as_int(inp.get("items"), 0)
    cursor = run.get("cursor")
    start = 0
    if isinstance(cursor, dict) and isinstance(cursor.get("next"), int) \
            and not isinstance(cursor.get("next"), bool):
        start = max(0, cursor["next"])
    checkpoint = bool(inp.get("checkpoint"))
    progress = bool(inp.get("progress"))
    delay = as_float(inp.get("item_delay"), 0.0)
    crash_after = inp.get("crash_after")
    crash_after = as_int(crash_after, -1) if crash_after is not None else -1
    if not crash_this_attempt(inp, run):
        crash_after = -1
    if inp.get("stop_at_limit"):
        limit = run.get("limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            n = min(n, limit)  # item k is the (k+1)-th over all attempts
    emitted = 0
    for k in range(start, n):
        if crash_after >= 0 and emitted >= crash_after:
            crash()
        emit({"type": "item", "data": {"i": k}})
        if checkpoint:
            emit({"type": "checkpoint", "cursor": {"next": k + 1}})
        if progress:
            emit({"type": "progress", "done": k + 1, "total": n})
        emitted += 1
        if delay > 0:
            sleep(delay)
    if crash_after >= 0 and emitted >= crash_after:
        crash()


def fork_bomb(n):
    """Forks up to n children that each sleep 300 s, stopping at the first fork that fails
    (a process limit); logs how many forks succeeded. The children stay: the daemon must
    clean them up."""
    forked = 0
    err = None
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as e:
            err = e.strerror
            break
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(300)
            os._exit(0)
        forked += 1
    log("fork_bomb:forked=%d/%d%s" % (forked, n, "" if err is None else " (%s)" % err))


def do_stdin_items():
    while True:
        msg = read_message()
        if msg is None:
            return
        if msg.get("type") != "item":
            continue
        data = msg.get("data")
        length = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
        emit({"type": "enrichment", "seq": msg.get("seq"),
              "data": {"enriched": True, "len": length}})


def main():
    line = STDIN.readline()
    if not line:
        sys.stderr.write("testworker: no start message on stdin\n")
        return 1
    try:
        start = json.loads(line)
    except ValueError:
        fail("testworker: start line is not JSON")
    if not isinstance(start, dict) or start.get("type") != "start" \
            or not isinstance(start.get("run"), dict):
        fail("testworker: first line is not a start message")
    run = start["run"]
    inp = run.get("input")
    if not isinstance(inp, dict):
        inp = {}

    if inp.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    # --- introspection
    if inp.get("echo_start"):
        log(json.dumps(run, separators=(",", ":"), ensure_ascii=False))
    if inp.get("echo_proc"):
        log("proc:" + json.dumps({
            "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0),
            "sid": os.getsid(0), "fds": open_fds(), "cwd": os.getcwd(),
            "argv": sys.argv[1:],
        }, separators=(",", ":")))
    grandchild = start_grandchild(inp["grandchild"]) if inp.get("grandchild") else None
    if isinstance(inp.get("proc_log"), str):
        do_proc_log(inp["proc_log"], run, grandchild)
    env_names = inp.get("echo_env")
    if isinstance(env_names, str):
        env_names = [env_names]
    if isinstance(env_names, list):
        for name in env_names:
            if isinstance(name, str):
                value = os.environ.get(name)
                log("env:%s=%s" % (name, "<unset>" if value is None else value))
    logs = inp.get("log")
    if isinstance(logs, str):
        logs = [logs]
    if isinstance(logs, list):
        for entry in logs:
            if isinstance(entry, dict):
                log(str(entry.get("message", "")), entry.get("level", "info"))
            else:
                log(str(entry))

    # --- protocol abuse
    if inp.get("garbage"):
        raw("this is not json")
        raw("[1,2,3]")
        raw('{"type":"no_such_type","x":1}')
        raw('{"type":"item"}')
    if inp.get("long_line") is not None:
        size = max(0, as_int(inp.get("long_line"), 0))
        # A well-formed item padded to exactly `size` bytes (plus the newline): it is
        # invalid only because it is longer than the daemon's line bound.
        head = b'{"type":"item","data":{"pad":"'
        tail = b'"}}'
        pad = max(0, size - len(head) - len(tail))
        if inp.get("no_newline"):
            # The line never ends: written in 1 MiB pieces, then the worker exits.
            _write_all(1, head)
            for _ in range(pad // (1 << 20)):
                _write_all(1, b"x" * (1 << 20))
            os._exit(0)
        _write_all(1, head + b"x" * pad + tail + b"\n")
    if inp.get("flood_stderr"):
        n = as_int(inp.get("flood_stderr"), 0)
        chunk = []
        for k in range(n):
            chunk.append("testworker stderr line %d\n" % k)
            if len(chunk) >= 256:
                _write_all(2, "".join(chunk).encode())
                chunk = []
        if chunk:
            _write_all(2, "".join(chunk).encode())

    # --- hostile
    if inp.get("fork_bomb"):
        fork_bomb(as_int(inp.get("fork_bomb"), 0))

    # --- steps
    steps = inp.get("steps")
    if isinstance(steps, list):
        for name in steps:
            emit({"type": "step", "name": str(name), "state": "started"})
            emit({"type": "step", "name": str(name), "state": "finished"})

    # --- humans in the loop
    if inp.get("approval") is not None:
        req = {"type": "approval_required", "prompt": str(inp.get("approval"))}
        if isinstance(inp.get("approval_details"), dict):
            req["details"] = inp["approval_details"]
        ans = ask(req, "approval", "approval")
        decision = ans.get("decision")
        log("approval:%s" % decision)
        if decision != "approved":
            on_deny(inp, "approval")
    if inp.get("auth") is not None:
        req = {"type": "auth_required", "url": str(inp.get("auth"))}
        if isinstance(inp.get("provider"), str):
            req["provider"] = inp["provider"]
        ans = ask(req, "auth", "authorization")
        status = ans.get("status")
        if status == "success":
            code = ans.get("code")
            log("auth:success:codelen=%d" % (len(code) if isinstance(code, str) else 0))
        else:
            log("auth:%s" % status)
            on_deny(inp, "authorization")

    # --- results
    if inp.get("items") is not None:
        do_items(inp, run)
    elif inp.get("crash_after") is not None and crash_this_attempt(inp, run):
        crash()
    sleeps = inp.get("sleep_attempt") is None or \
        as_int(run.get("attempt"), 1) == as_int(inp.get("sleep_attempt"), -1)
    if inp.get("sleep_after_items") is not None and sleeps:
        sleep(as_float(inp.get("sleep_after_items")))
    n_err = as_int(inp.get("item_errors"), 0)
    for k in range(n_err):
        emit({"type": "item_error", "error": "test item error %d" % k, "data": {"i": k}})
    cands = inp.get("candidates")
    if isinstance(cands, list):
        for matched in cands:
            emit({"type": "candidate", "matched": bool(matched)})
    if inp.get("progress") and inp.get("items") is None:
        for k in range(1, 4):
            emit({"type": "progress", "done": k, "total": 3, "message": "step %d of 3" % k})
    if inp.get("stdin_items"):
        do_stdin_items()

    # --- the end
    if inp.get("sleep") is not None and sleeps:
        sleep(as_float(inp.get("sleep")))
    if inp.get("crash") and crash_this_attempt(inp, run):
        crash()
    if inp.get("error") is not None:
        fail(str(inp.get("error")))
    if "result" in inp:
        emit({"type": "result", "data": inp["result"]})
    if inp.get("done") is not None:
        done = {"type": "done"}
        if inp.get("done") is not True:
            done["reason"] = inp["done"]
        emit(done)
    if inp.get("exit") is not None:
        return as_int(inp.get("exit"), 0)
    return 0


def _on_term(signum, frame):
    os._exit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    os._exit(code & 0xFF if isinstance(code, int) else 1)
