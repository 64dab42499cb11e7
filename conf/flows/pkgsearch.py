#!/usr/bin/env python3
"""pkgsearch: a runsd demo flow (worker protocol, SPEC section 2).

Searches this machine's Debian package database (/var/lib/dpkg/status, or `dpkg-query`
when that file cannot be read) for installed packages matching the run's input:

    {"name_contains": "lib",          case-insensitive substring of the package name
     "section": "libs",               section, case-insensitive ("libs" also matches
                                      "contrib/libs")
     "min_installed_size_kb": 100,    Installed-Size >= this (KiB)
     "priority": "optional",          case-insensitive
     "depends_on": "libc6"}           named in Depends or Pre-Depends (any alternative)

All keys are optional (no condition = every package matches). A missing or null input
means {}; an input that is not an object, or a key of the wrong type, fails the run.
Optional extra key "status_path" reads another dpkg status file (tests).

Output: steps "load" and "scan"; a `candidate` per package evaluated; an `item` per match;
`progress` every 100 packages; a `checkpoint` {"offset": i, "matched": m} every 50 packages
and just after each item (in the same write, so a limit that cuts the run after that item
resumes right after it); `result` {"scanned", "matched", ...}; and, when the whole
database was scanned, `done` with reason "candidates_exhausted". A resumed run (run.cursor
= {"offset": i}) skips the first i packages of the name-sorted list. run.limit (total items
over all attempts, counted from the cursor's "matched") stops the scan; in a preview
without a limit, 10 items are the cap.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # runsd_worker, whatever the working directory
from runsd_worker import emit, fail, log, read_start, run_main  # noqa: E402

DPKG_STATUS = "/var/lib/dpkg/status"
CHECKPOINT_EVERY = 50
PROGRESS_EVERY = 100
PREVIEW_LIMIT = 10


# ------------------------------------------------------------------------- the database

def parse_status(text):
    """RFC 822-style stanzas -> list of dicts (first line of each field only)."""
    pkgs = []
    cur = {}
    for raw in text.splitlines():
        if not raw.strip():
            if cur:
                pkgs.append(cur)
                cur = {}
            continue
        if raw[0] in " \t":
            continue  # continuation line (long Description, Conffiles...)
        key, sep, value = raw.partition(":")
        if sep:
            cur[key.strip().lower()] = value.strip()
    if cur:
        pkgs.append(cur)
    return pkgs


QUERY_FIELDS = ["Package", "Architecture", "Version", "Section", "Installed-Size",
                "Maintainer", "Priority", "Depends", "Pre-Depends", "db:Status-Abbrev",
                "binary:Summary"]


def query_dpkg():
    fmt = "\x1f".join("${%s}" % f for f in QUERY_FIELDS) + "\\n"
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fmt], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
                         timeout=60).stdout.decode("utf-8", "replace")
    pkgs = []
    for rec in out.splitlines():
        parts = rec.split("\x1f")
        if len(parts) != len(QUERY_FIELDS):
            continue
        p = dict(zip([f.lower() for f in QUERY_FIELDS], parts))
        abbrev = p.pop("db:status-abbrev", "")
        # "ii " = installed; keep the status-file shape the rest of the code expects
        p["status"] = "install ok installed" if abbrev[1:2] == "i" else "unknown"
        p["description"] = p.pop("binary:summary", "").strip()
        pkgs.append(p)
    return pkgs


def load_packages(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return parse_status(text), path
    except OSError as e:
        if path != DPKG_STATUS:
            fail("cannot read %s: %s" % (path, e.strerror))
        log("cannot read %s (%s); falling back to dpkg-query" % (path, e.strerror), "warn")
    try:
        return query_dpkg(), "dpkg-query"
    except (OSError, subprocess.SubprocessError) as e:
        fail("no package database: %s unreadable and dpkg-query failed (%s)" % (path, e))
    return [], ""  # not reached


def installed(p):
    return p.get("status", "").split()[-1:] == ["installed"]


def dep_names(p):
    names = set()
    for field in ("depends", "pre-depends"):
        for clause in p.get(field, "").split(","):
            for alt in clause.split("|"):
                tok = alt.strip().split(" ", 1)[0].split("(", 1)[0]
                tok = tok.split(":", 1)[0].strip().lower()
                if tok:
                    names.add(tok)
    return names


def size_kb(p):
    try:
        return int(p.get("installed-size", "0") or 0)
    except ValueError:
        return 0


# ------------------------------------------------------------------------- the search

def criteria_from(inp):
    if inp is None:
        inp = {}
    if not isinstance(inp, dict):
        fail("input must be an object of search conditions")
    crit = {}
    for key in ("name_contains", "section", "priority", "depends_on", "status_path"):
        v = inp.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            fail("input.%s must be a string" % key)
        crit[key] = v if key == "status_path" else v.strip().lower()
    v = inp.get("min_installed_size_kb")
    if v is not None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            fail("input.min_installed_size_kb must be a number >= 0")
        crit["min_installed_size_kb"] = v
    known = {"name_contains", "section", "priority", "depends_on", "status_path",
             "min_installed_size_kb"}
    for key in sorted(set(inp) - known):
        log("unknown input key %r ignored" % key, "warn")
    return crit


def matches(p, crit):
    name = p.get("package", "").lower()
    if "name_contains" in crit and crit["name_contains"] not in name:
        return False
    if "section" in crit:
        sec = p.get("section", "").lower()
        if crit["section"] not in (sec, sec.rsplit("/", 1)[-1]):
            return False
    if "priority" in crit and p.get("priority", "").lower() != crit["priority"]:
        return False
    if "min_installed_size_kb" in crit and size_kb(p) < crit["min_installed_size_kb"]:
        return False
    if "depends_on" in crit and crit["depends_on"] not in dep_names(p):
        return False
    return True


def to_item(p):
    return {
        "name": p.get("package", ""),
        "version": p.get("version", ""),
        "architecture": p.get("architecture", ""),
        "section": p.get("section", ""),
        "priority": p.get("priority", ""),
        "installed_size_kb": size_kb(p),
        "maintainer": p.get("maintainer", ""),
        "description": p.get("description", "").split("\n", 1)[0],
    }


def main():
    run = read_start()
    crit = criteria_from(run.get("input"))
    public = {k: v for k, v in crit.items() if k != "status_path"}

    limit = run.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        limit = 0
    if run.get("preview") is True and limit == 0:
        limit = PREVIEW_LIMIT

    offset, matched = 0, 0
    cursor = run.get("cursor")
    if cursor is not None:
        if isinstance(cursor, dict) and isinstance(cursor.get("offset"), int) \
                and cursor["offset"] >= 0:
            offset = cursor["offset"]
            m = cursor.get("matched")
            matched = m if isinstance(m, int) and m >= 0 else 0
        else:
            log("unusable cursor %s; scanning from the start" % json.dumps(cursor), "warn")

    if limit and matched >= limit:
        # run.limit counts items over all attempts; a limit the cursor already meets can
        # only mean "this many more" (a daemon that hands over the remaining limit).
        limit += matched

    emit({"type": "step", "name": "load", "state": "started"})
    pkgs, source = load_packages(crit.get("status_path", DPKG_STATUS))
    pkgs = [p for p in pkgs if p.get("package") and installed(p)]
    pkgs.sort(key=lambda p: (p["package"], p.get("architecture", "")))
    total = len(pkgs)
    emit({"type": "step", "name": "load", "state": "finished", "total": total},
         {"type": "log", "level": "info",
          "message": "loaded %d installed packages from %s" % (total, source)})
    offset = min(offset, total)
    if offset:
        log("resuming at package %d of %d (%d matched before)" % (offset, total, matched))

    emit({"type": "step", "name": "scan", "state": "started", "total": total},
         {"type": "progress", "done": offset, "total": total,
          "message": "scanning %s" % (json.dumps(public, sort_keys=True) if public
                                      else "all packages")})
    i = offset
    limit_hit = limit and matched >= limit
    while i < total and not limit_hit:
        p = pkgs[i]
        ok = matches(p, crit)
        i += 1
        out = [{"type": "candidate", "matched": ok}]
        if ok:
            matched += 1
            # The item, then the checkpoint that covers it, in one write: the daemon keeps the
            # checkpoint that follows the item its limit stops at, and a resumed or extended
            # run starts after it (items after the last checkpoint count as to be sent again).
            out.append({"type": "item", "data": to_item(p)})
            out.append({"type": "checkpoint", "cursor": {"offset": i, "matched": matched}})
            limit_hit = limit and matched >= limit
        elif i % CHECKPOINT_EVERY == 0:
            out.append({"type": "checkpoint", "cursor": {"offset": i, "matched": matched}})
        if i % PROGRESS_EVERY == 0:
            out.append({"type": "progress", "done": i, "total": total})
        emit(*out)

    result = {"scanned": i, "matched": matched, "total_packages": total,
              "criteria": public, "source": source}
    if limit_hit and i < total:
        # The limit ended the run (match_limit_met): no "done", the daemon decides.
        emit({"type": "progress", "done": i, "total": total,
              "message": "limit of %d reached" % limit},
             {"type": "result", "data": result})
        return 0
    emit({"type": "checkpoint", "cursor": {"offset": i, "matched": matched}},
         {"type": "progress", "done": i, "total": total},
         {"type": "step", "name": "scan", "state": "finished", "total": total},
         {"type": "result", "data": result},
         {"type": "done", "reason": "candidates_exhausted"})
    return 0


if __name__ == "__main__":
    run_main(main)
