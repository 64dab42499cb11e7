#!/usr/bin/env python3
"""approve_then_fetch: a human-in-the-loop runsd demo flow (worker protocol, SPEC section 2).

1. step "plan": reads the records to copy (default: conf/demo-data/customers.csv);
2. asks for approval: approval_required {"prompt": "Copy N records?", "details": {...}} and
   waits for {"type":"approval",...} on stdin;
3. when approved, asks for authorization: auth_required with the URL
   "{public}/v1/demo/oauth/authorize?state={state}" ({public} = $RUNSD_PUBLIC_URL, else
   http://127.0.0.1:8080; the daemon replaces {state}) and waits for {"type":"auth",...};
4. step "copy": one item per record copied, then a result.

A denied approval or authorization is logged and the worker exits 0: the daemon decides the
run's status. Input (all optional): {"count": N (default: run.limit, else 5), "source":
"/path/file.csv", "destination": "name", "provider": "demo"}.
"""

import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # runsd_worker, whatever the working directory
from runsd_worker import emit, fail, log, read_start, run_main, wait_for  # noqa: E402

DEMO = os.path.join(os.path.dirname(HERE), "demo-data", "customers.csv")
DEFAULT_COUNT = 5
MAX_COUNT = 10000


def load_records(path, count):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = []
            for row in csv.DictReader(f):
                row.pop(None, None)
                rows.append(row)
                if len(rows) >= count:
                    break
            return rows
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        fail("cannot read the source %s: %s" % (path, e))
    return []


def main():
    run = read_start()
    inp = run.get("input")
    if inp is None:
        inp = {}
    if not isinstance(inp, dict):
        fail("input must be an object")

    limit = run.get("limit")
    count = inp.get("count")
    if count is None:
        count = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 \
            else DEFAULT_COUNT
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        fail("input.count must be an integer 1..%d" % MAX_COUNT)
    source = inp.get("source", DEMO)
    dest = inp.get("destination", "demo-warehouse")
    provider = inp.get("provider", "demo")
    for key, val in (("source", source), ("destination", dest), ("provider", provider)):
        if not isinstance(val, str) or not val:
            fail("input.%s must be a non-empty string" % key)

    emit({"type": "step", "name": "plan", "state": "started"})
    records = load_records(source, count)
    n = len(records)
    fields = list(records[0].keys()) if records else []
    emit({"type": "log", "level": "info",
          "message": "plan: copy %d records from %s to %s" % (n, os.path.basename(source), dest)},
         {"type": "step", "name": "plan", "state": "finished", "total": n})

    emit({"type": "approval_required", "prompt": "Copy %d records?" % n,
          "details": {"records": n, "source": os.path.basename(source),
                      "destination": dest, "fields": fields}})
    ans = wait_for("approval", "the approval")
    if ans.get("decision") != "approved":
        log("approval %s%s: nothing copied" % (
            ans.get("decision") or "refused",
            " (%s)" % ans["comment"] if isinstance(ans.get("comment"), str) and ans["comment"]
            else ""))
        return 0
    comment = ans.get("comment") if isinstance(ans.get("comment"), str) else None
    log("approved" + (": %s" % comment if comment else ""))

    public = (os.environ.get("RUNSD_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/")
    emit({"type": "step", "name": "authorize", "state": "started"},
         {"type": "auth_required", "url": public + "/v1/demo/oauth/authorize?state={state}",
          "provider": provider})
    ans = wait_for("auth", "the authorization")
    if ans.get("status") != "success":
        err = ans.get("error")
        log("authorization %s%s: nothing copied" % (
            ans.get("status") or "failed", " (%s)" % err if isinstance(err, str) and err else ""))
        return 0
    code = ans.get("code")
    emit({"type": "log", "level": "info", "message": "authorized with %s (code of %d chars)"
          % (provider, len(code) if isinstance(code, str) else 0)},
         {"type": "step", "name": "authorize", "state": "finished"})

    done = 0
    cursor = run.get("cursor")
    if isinstance(cursor, dict) and isinstance(cursor.get("copied"), int):
        done = max(0, min(cursor["copied"], n))
    emit({"type": "step", "name": "copy", "state": "started", "total": n})
    for i in range(done, n):
        emit({"type": "item", "data": {"record": records[i], "row": i + 2,
                                       "copied_to": dest}},
             {"type": "checkpoint", "cursor": {"copied": i + 1}},
             {"type": "progress", "done": i + 1, "total": n})
    emit({"type": "step", "name": "copy", "state": "finished", "total": n},
         {"type": "result", "data": {"copied": n, "destination": dest,
                                     "source": os.path.basename(source),
                                     "approval_comment": comment}},
         {"type": "done", "reason": "completed"})
    return 0


if __name__ == "__main__":
    run_main(main)
