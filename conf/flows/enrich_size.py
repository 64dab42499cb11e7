#!/usr/bin/env python3
"""enrich_size: a runsd enrichment worker (worker protocol, SPEC section 2).

After the start line, reads {"type":"item","seq":N,"data":{...}} lines until stdin EOF and
answers each with {"type":"enrichment","seq":N,"data":{...}}: the number of paths the
package installed, from dpkg's /var/lib/dpkg/info/<name>.list (or <name>:<arch>.list).

    {"files": F, "paths": P}   F = listed paths that are not directories, P = all paths
    {"files": null, "error": "..."}   when the item names no installed package

The package name is item.data.name (or .package); item.data.architecture picks the
multi-arch list when there is one. Every item gets an answer.
Optional input: {"info_dir": "/var/lib/dpkg/info"}.
"""

import json
import os
import re
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # runsd_worker, whatever the working directory
from runsd_worker import emit, fail, log, messages, read_start, run_main  # noqa: E402

INFO_DIR = "/var/lib/dpkg/info"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*$")
ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9\-]*$")


def count_files(info_dir, name, arch, cache):
    key = (name, arch)
    if key in cache:
        return cache[key]
    candidates = []
    if arch and arch != "all" and ARCH_RE.match(arch):
        candidates.append("%s:%s.list" % (name, arch))
    candidates.append("%s.list" % name)
    if not arch:
        try:
            candidates += sorted(f for f in os.listdir(info_dir)
                                 if f.startswith(name + ":") and f.endswith(".list"))
        except OSError:
            pass
    result = {"files": None, "error": "package %s is not installed" % name}
    for fname in candidates:
        try:
            with open(os.path.join(info_dir, fname), "rb") as f:
                paths = [ln.rstrip(b"\n") for ln in f if ln.strip()]
        except OSError:
            continue
        files = 0
        for p in paths:
            if p in (b"/.", b"/"):
                continue
            try:
                if stat.S_ISDIR(os.lstat(p).st_mode):
                    continue
            except OSError:
                pass  # listed but gone (or unreadable): still one of the package's files
            files += 1
        result = {"files": files, "paths": len(paths)}
        break
    if len(cache) < 4096:
        cache[key] = result
    return result


def enrich(data, info_dir, cache):
    if not isinstance(data, dict):
        return {"files": None, "error": "item data is not an object"}
    name = data.get("name", data.get("package"))
    if not isinstance(name, str) or not name:
        return {"files": None, "error": "item has no package name"}
    arch = data.get("architecture", data.get("arch"))
    if ":" in name:
        name, _, arch = name.partition(":")
    name = name.strip().lower()
    if not NAME_RE.match(name):
        return {"files": None, "error": "not a Debian package name: %s" % json.dumps(name)}
    return count_files(info_dir, name, arch if isinstance(arch, str) else None, cache)


def main():
    run = read_start()
    inp = run.get("input") if isinstance(run.get("input"), dict) else {}
    info_dir = inp.get("info_dir", INFO_DIR)
    if not isinstance(info_dir, str) or not os.path.isdir(info_dir):
        fail("no dpkg info directory at %s" % json.dumps(info_dir))

    cache = {}
    n = 0
    for msg in messages():
        if not isinstance(msg, dict) or msg.get("type") != "item":
            continue
        seq = msg.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            log("ignored an item without an integer seq", "warn")
            continue
        emit({"type": "enrichment", "seq": seq, "data": enrich(msg.get("data"), info_dir, cache)})
        n += 1
    # No `result` here: that is the enriched run's own; a log line is enough.
    log("enriched %d items" % n)
    return 0


if __name__ == "__main__":
    run_main(main)
