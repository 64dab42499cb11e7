#!/usr/bin/env python3
"""mapper: a runsd demo flow (worker protocol, SPEC section 2).

Maps source records to the target schema

    {"id": int, "name": non-empty string, "email": string with '@' (lowercased),
     "age": int 0..150 or null, "country": two upper-case letters or null}

Input (all optional):
    {"records": [{...}, ...]}             inline records, or
    {"path": "/some/file.csv|.jsonl|.json"}  a file (CSV with a header row; JSON Lines; or a
                                          JSON array); a relative path is looked up from
                                          the working directory, then from conf/
Without either, the demo data conf/demo-data/customers.csv is mapped.

Source keys are matched case-insensitively, with spaces and dashes read as '_', and common
aliases are accepted: id/identifier/customer_id, name/full_name/fullname (or first_name +
last_name), email/e_mail/mail/email_address, age/years, country/country_code/cc.

Valid records become `item`s (the mapped record); invalid ones become `item_error`s whose
error names the field(s) and whose data is {"row", "record" (the original), "errors"}.
A repeated id is an error too. Steps "validate" then "map"; progress; checkpoints
{"offset", "mapped", "invalid"} so a resumed run skips what was done; result
{"total", "mapped", "invalid"}.
"""

import csv
import io
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # runsd_worker, whatever the working directory
from runsd_worker import emit, fail, log, read_start, run_main  # noqa: E402

CONF = os.path.dirname(HERE)
DEMO = os.path.join(CONF, "demo-data", "customers.csv")
MAX_BYTES = 64 << 20
PROGRESS_EVERY = 10

ALIASES = {
    "id": ["id", "identifier", "customer_id", "cust_id", "client_id", "uid", "user_id"],
    "name": ["name", "full_name", "fullname", "customer_name", "display_name"],
    "email": ["email", "e_mail", "mail", "email_address", "e_mail_address"],
    "age": ["age", "years", "age_years"],
    "country": ["country", "country_code", "countrycode", "cc", "iso_country"],
}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


# ------------------------------------------------------------------------- reading

def resolve(path):
    if os.path.isabs(path) or os.path.exists(path):
        return path
    alt = os.path.join(CONF, path)
    return alt if os.path.exists(alt) else path


class BadLine(str):
    """A JSON Lines line that is not valid JSON."""


def read_records(path):
    """-> list of (row label, record) where a record is a dict or, for an unparsable
    JSON line, a string."""
    path = resolve(path)
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_BYTES + 1)
    except OSError as e:
        fail("cannot read %s: %s" % (path, e.strerror))
    if len(blob) > MAX_BYTES:
        fail("%s is larger than %d bytes" % (path, MAX_BYTES))
    text = blob.decode("utf-8-sig", "replace")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".csv", ".tsv"):
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel_tab if ext == ".tsv" else csv.excel
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        if not reader.fieldnames:
            fail("%s has no header row" % path)
        out = []
        for rec in reader:
            extra = rec.pop(None, None)  # cells beyond the header
            if extra:
                rec["_extra"] = extra
            # row numbers as a spreadsheet shows them (header = row 1)
            out.append((reader.line_num, rec))
        return out, path
    if ext in (".jsonl", ".ndjson"):
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((n, json.loads(line)))
            except ValueError:
                out.append((n, BadLine(line)))
        return out, path
    if ext == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            fail("%s is not valid JSON: %s" % (path, e))
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data = data["records"]
        if not isinstance(data, list):
            fail("%s must hold a JSON array of records" % path)
        return list(enumerate(data, 1)), path
    fail("unsupported file type %r (use .csv, .tsv, .jsonl, .ndjson or .json)" % ext)
    return [], path  # not reached


# ------------------------------------------------------------------------- mapping

def norm_key(k):
    return re.sub(r"[\s\-]+", "_", str(k).strip().lower())


def pick(rec, field):
    for alias in ALIASES[field]:
        if alias in rec:
            v = rec[alias]
            if v is not None and not (isinstance(v, str) and not v.strip()):
                return v
    for alias in ALIASES[field]:
        if alias in rec:
            return rec[alias]
    return None


def to_int(v):
    """int from an int, an integral float or a decimal string; else ValueError."""
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise ValueError
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+(\.0*)?\s*", v):
        return int(float(v)) if "." in v else int(v)
    raise ValueError


def blank(v):
    return v is None or (isinstance(v, str) and not v.strip())


def map_record(rec):
    """-> (mapped dict, []) or (None, [(field, message), ...])."""
    if isinstance(rec, BadLine):
        return None, [("record", "not valid JSON")]
    if not isinstance(rec, dict):
        return None, [("record", "not a JSON object")]
    src = {norm_key(k): v for k, v in rec.items()}
    errors = []
    out = {}

    v = pick(src, "id")
    if blank(v):
        errors.append(("id", "missing"))
    else:
        try:
            out["id"] = to_int(v)
        except ValueError:
            errors.append(("id", "not an integer: %s" % json.dumps(v, ensure_ascii=False)))

    v = pick(src, "name")
    if blank(v):
        first, last = src.get("first_name"), src.get("last_name")
        parts = [str(x).strip() for x in (first, last) if not blank(x)]
        v = " ".join(parts) if parts else None
    if blank(v) or not isinstance(v, str):
        errors.append(("name", "missing or empty" if blank(v) else "not a string"))
    else:
        out["name"] = " ".join(v.split())

    v = pick(src, "email")
    if blank(v):
        errors.append(("email", "missing"))
    elif not isinstance(v, str):
        errors.append(("email", "not a string"))
    else:
        e = v.strip().lower()
        if not EMAIL_RE.match(e):
            errors.append(("email", "not an address with '@': %s" % json.dumps(v)))
        else:
            out["email"] = e

    v = pick(src, "age")
    if blank(v):
        out["age"] = None
    else:
        try:
            a = to_int(v)
            if not 0 <= a <= 150:
                errors.append(("age", "out of range 0..150: %d" % a))
            else:
                out["age"] = a
        except ValueError:
            errors.append(("age", "not an integer: %s" % json.dumps(v, ensure_ascii=False)))

    v = pick(src, "country")
    if blank(v):
        out["country"] = None
    elif not isinstance(v, str) or not re.fullmatch(r"[A-Za-z]{2}", v.strip()):
        errors.append(("country", "not a 2-letter code: %s" % json.dumps(v, ensure_ascii=False)))
    else:
        out["country"] = v.strip().upper()

    if errors:
        return None, errors
    return {k: out[k] for k in ("id", "name", "email", "age", "country")}, []


def main():
    run = read_start()
    inp = run.get("input")
    if inp is None:
        inp = {}
    if not isinstance(inp, dict):
        fail("input must be an object: {\"records\": [...]} or {\"path\": \"file\"}")

    emit({"type": "step", "name": "validate", "state": "started"})
    if inp.get("records") is not None:
        if not isinstance(inp["records"], list):
            fail("input.records must be an array of objects")
        rows, source = list(enumerate(inp["records"], 1)), "input.records"
    elif inp.get("path") is not None:
        if not isinstance(inp["path"], str) or not inp["path"]:
            fail("input.path must be a non-empty string")
        rows, source = read_records(inp["path"])
    else:
        rows, source = read_records(DEMO)
        log("no records or path in the input: mapping the demo data %s" % source)
    total = len(rows)

    results = []  # (row, original, mapped, errors)
    seen = {}
    for n, (row, rec) in enumerate(rows, 1):
        mapped, errors = map_record(rec)
        if mapped is not None:
            if mapped["id"] in seen:
                mapped, errors = None, [("id", "duplicate %d (first at row %s)"
                                         % (mapped["id"], seen[mapped["id"]]))]
            else:
                seen[mapped["id"]] = row
        results.append((row, rec, mapped, errors))
    n_invalid = sum(1 for r in results if r[2] is None)
    emit({"type": "step", "name": "validate", "state": "finished", "total": total},
         {"type": "log", "level": "info",
          "message": "%s: %d records, %d valid, %d invalid"
                     % (source, total, total - n_invalid, n_invalid)})

    offset, mapped_n, invalid_n = 0, 0, 0
    cursor = run.get("cursor")
    if isinstance(cursor, dict) and isinstance(cursor.get("offset"), int):
        offset = max(0, min(cursor["offset"], total))
        mapped_n = cursor.get("mapped", 0) if isinstance(cursor.get("mapped"), int) else 0
        invalid_n = cursor.get("invalid", 0) if isinstance(cursor.get("invalid"), int) else 0
        log("resuming at record %d of %d" % (offset, total))
    elif cursor is not None:
        log("unusable cursor %s; mapping from the start" % json.dumps(cursor), "warn")

    emit({"type": "step", "name": "map", "state": "started", "total": total},
         {"type": "progress", "done": offset, "total": total})
    for i in range(offset, total):
        row, rec, mapped, errors = results[i]
        out = []
        if mapped is not None:
            mapped_n += 1
            # the item, then the checkpoint that covers it: a limit that ends the run at this
            # item keeps that checkpoint, and a resume starts after it
            out.append({"type": "item", "data": mapped})
            out.append({"type": "checkpoint",
                        "cursor": {"offset": i + 1, "mapped": mapped_n, "invalid": invalid_n}})
        else:
            invalid_n += 1
            out.append({"type": "item_error",
                        "error": "; ".join("%s: %s" % e for e in errors),
                        "data": {"row": row, "record": rec,
                                 "errors": [{"field": f, "message": m} for f, m in errors]}})
            out.append({"type": "checkpoint",
                        "cursor": {"offset": i + 1, "mapped": mapped_n, "invalid": invalid_n}})
        if (i + 1) % PROGRESS_EVERY == 0 or i + 1 == total:
            out.append({"type": "progress", "done": i + 1, "total": total})
        emit(*out)

    emit({"type": "step", "name": "map", "state": "finished", "total": total},
         {"type": "result", "data": {"total": total, "mapped": mapped_n, "invalid": invalid_n,
                                     "source": source}},
         {"type": "done"})
    return 0


if __name__ == "__main__":
    run_main(main)
