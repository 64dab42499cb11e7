#!/usr/bin/env python3
"""soak.py: a crash soak of the real runsd binary (Python 3 standard library only).

    soak.py [--runs N] [--kills K] [--subscribers S] [--seed X] [--minutes M] [--self-test]

Starts runsd (RUNSD_BIN, else build/runsd) on a free 127.0.0.1 port with several flows of
test/soak/soakworker.py (test/workers/testworker.py plus an execution record per run), a
webhook receiver in this process that answers 500/503 now and then and checks Standard Webhooks
signatures, S SSE subscribers (global and per-run) that resume with Last-Event-ID after every
disconnect, and creates N runs over the time budget while kill -9'ing and restarting the daemon
K times at seeded random moments. It then checks what every client observed against what the
daemon stored (see README.md) and prints a summary; exit 1 when anything is wrong.

--self-test runs a small soak without kills, then injects into the collected observations
(never into the daemon) a dropped event, a duplicated event, a lost webhook and an overlapping
execution, and asserts the checker reports each one.

It stops by itself (a hard time bound), talks to 127.0.0.1 only, and kills only processes it
started, by pid (the daemon, and at the end any of its own soakworker.py processes left over).
"""
import argparse
import base64
import copy
import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from harness import Daemon  # noqa: E402

SOAKWORKER = os.path.join(HERE, "soakworker.py")
GLOBAL_SECRET = "whsec_" + base64.b64encode(b"runsd soak: the global secret...").decode()
RUN_SECRET = "whsec_" + base64.b64encode(b"runsd soak: a per-run secret....").decode()
TERMINAL = ("succeeded", "incomplete", "failed", "crashed", "cancelled")
ACTIVE = "created,queued,running,auth_required,paused,cancelling"

FLOWS = {  # name: (resumable, concurrency)
    "items": ("yes", 6),
    "steps": ("no", 4),
    "fail": ("no", 3),
    "gate": ("yes", 5),
    "gate_nr": ("no", 3),
    "slow": ("no", 4),
    "slowitems": ("yes", 4),
}
# kind: (flow, weight)
KINDS = {
    "items": ("items", 30), "steps": ("steps", 14), "fail": ("fail", 10),
    "approve": ("gate", 12), "deny": ("gate", 6), "approve_nr": ("gate_nr", 5),
    "cancel": ("slow", 8), "cancel_res": ("slowitems", 8),
}
CRASHED = ("crashed", "interrupted")


def log(msg):
    sys.stdout.write("[soak %7.2f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


T0 = time.monotonic()


# ------------------------------------------------------------------------------ plan

def plan_run(rng, i, seed):
    kind = rng.choices(list(KINDS), weights=[w for _, w in KINDS.values()])[0]
    flow = KINDS[kind][0]
    inp, spec = {}, {"kind": kind, "flow": flow, "index": i}
    if kind == "items":
        n = rng.randint(5, 25)
        inp = {"items": n, "checkpoint": True, "progress": True,
               "item_delay": round(rng.uniform(0.02, 0.3), 3), "done": "completed"}
        if rng.random() < 0.3:  # a silent phase: a worker orphaned by a kill lives on
            inp["sleep_after_items"] = round(rng.uniform(1.0, 6.0), 3)
        spec["items"] = n
    elif kind == "steps":
        inp = {"steps": ["s%d" % k for k in range(rng.randint(2, 5))], "progress": True,
               "log": "soak steps run", "sleep": round(rng.uniform(0, 1.0), 3),
               "result": {"ok": True, "i": i}}
    elif kind == "fail":
        inp = {"steps": ["before"], "sleep": round(rng.uniform(0, 0.5), 3)}
        if rng.random() < 0.5:
            inp["error"] = "scripted failure %d" % i
        else:
            inp["exit"] = 3
    elif kind in ("approve", "deny", "approve_nr"):
        inp = {"approval": "soak run %d: proceed?" % i, "approval_details": {"i": i},
               "items": 3, "checkpoint": True}
        spec["items"] = 3
        spec["answer_via"] = rng.choice(["link", "post"])
    elif kind == "cancel":
        inp = {"steps": ["wait"], "sleep": 600}
        spec["cancel_after"] = round(rng.uniform(0.5, 4.0), 3)
        spec["cancel_via"] = rng.choice(["post", "delete"])
    elif kind == "cancel_res":
        inp = {"items": 1000, "checkpoint": True, "item_delay": round(rng.uniform(1.0, 5.0), 3)}
        spec["cancel_after"] = round(rng.uniform(1.0, 8.0), 3)
        spec["cancel_via"] = rng.choice(["post", "delete"])
    inp["soak"] = i
    spec["input"] = inp
    spec["run_hook"] = rng.random() < 0.25
    spec["key"] = "soak-%d-%d" % (seed, i)
    return spec


def expected_outcomes(spec, killed):
    """The legal (status, termination_reason) of a run given its script; killed = a kill -9
    happened while it may have been active."""
    kind = spec["kind"]
    ok = [("succeeded", "completed")]
    if kind == "fail":
        ok = [("failed", "error_occurred")]
    elif kind == "deny":
        ok = [("cancelled", "approval_denied")]
    elif kind in ("cancel", "cancel_res"):
        ok = [("cancelled", "user_cancelled")]
    resumable = FLOWS[spec["flow"]][0] == "yes"
    if killed and not resumable:
        ok.append(CRASHED)
    return ok


# ------------------------------------------------------------------------------ HTTP

class Down(Exception):
    pass


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None, timeout=15):
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return r.status, data
        except (OSError, http.client.HTTPException) as e:
            raise Down(str(e))
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, retry_for=60.0):
        """Retries while the daemon is down (between a kill and its restart)."""
        deadline = time.monotonic() + retry_for
        while True:
            try:
                st, data = self.request(method, path, body, headers)
                try:
                    return st, json.loads(data) if data else None
                except ValueError:
                    return st, data
            except Down:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pages(self, path, key="items"):
        """Every element of an after=/next_after paged JSON list."""
        out, after = [], 0
        sep = "&" if "?" in path else "?"
        while True:
            st, page = self.json("GET", "%s%safter=%d" % (path, sep, after))
            if st != 200:
                raise AssertionError("GET %s: %s %r" % (path, st, page))
            out.extend(page[key])
            if not page.get("has_more"):
                return out
            after = page["next_after"]


# ------------------------------------------------------------------------------ webhooks

def verify(secret, headers, body):
    try:
        key = base64.b64decode(secret[len("whsec_"):])
        signed = ("%s.%s." % (headers["webhook-id"], headers["webhook-timestamp"])).encode() + body
    except (KeyError, ValueError):
        return False
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(e.startswith("v1,") and hmac.compare_digest(e[3:], want)
               for e in headers.get("webhook-signature", "").split(" "))


class Receiver:
    """In-process webhook receiver: /hook (global secret) and /run-hook (per-run secret).
    The first 0, 1 or 2 deliveries of a webhook-id get 500/503 (seeded), then 200."""

    def __init__(self, seed):
        self.rng = random.Random(seed ^ 0x5eed)
        self.lock = threading.Lock()
        self.fails = {}
        self.attempts = {}
        self.log = []
        rx = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                st = rx.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(st)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class S(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 1024

            def handle_error(self, request, client_address):
                pass  # a daemon killed mid-delivery resets its connection: expected

        self.srv = S(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def handle(self, path, headers, body):
        secret = RUN_SECRET if path == "/run-hook" else GLOBAL_SECRET
        valid = verify(secret, headers, body)
        wid = headers.get("webhook-id", "")
        try:
            doc = json.loads(body)
            typ, run_id = doc.get("type"), (doc.get("data") or {}).get("id")
        except (ValueError, AttributeError):
            typ, run_id = None, None
        with self.lock:
            k = (path, wid)
            if k not in self.fails:
                r = self.rng.random()
                self.fails[k] = 0 if r < 0.6 else (1 if r < 0.85 else 2)
            self.attempts[k] = self.attempts.get(k, 0) + 1
            if not valid:
                st = 401
            elif self.attempts[k] <= self.fails[k]:
                st = self.rng.choice((500, 503))
            else:
                st = 200
            self.log.append({"path": path, "webhook_id": wid, "type": typ, "run_id": run_id,
                             "valid": valid, "answer": st, "t": time.monotonic()})
        return st

    def accepted(self):
        with self.lock:
            return {(e["path"], e["run_id"], e["type"]) for e in self.log
                    if e["valid"] and e["answer"] == 200}

    def stop(self):
        self.srv.shutdown()


# ------------------------------------------------------------------------------ SSE

class Subscriber(threading.Thread):
    """One SSE client. mode: 'live' (GET /v1/events from now), 'zero' (GET /v1/events from
    last_event_id=0) or 'run' (one run's stream from its start, then the next run). Every
    disconnect is followed by a reconnect with Last-Event-ID = the last id it saw."""

    def __init__(self, soak, name, mode, seed):
        super().__init__(daemon=True, name=name)
        self.soak = soak
        self.mode = mode
        self.rng = random.Random(seed)
        self.obs = {"name": name, "mode": mode, "seen": [], "sessions": [], "reconnects": 0,
                    "resets": 0, "errors": [], "end_id": None}
        self.stopping = False
        self.sock = None
        self.followed = set()

    def run(self):
        try:
            if self.mode == "run":
                while not self.stopping:
                    rid = self.soak.pick_run(self.rng, self.followed)
                    if rid is None:
                        time.sleep(0.1)
                        continue
                    self.followed.add(rid)
                    sess = {"run": rid, "seen": [], "ended": False}
                    self.obs["sessions"].append(sess)
                    self.follow("/v1/runs/%s/events" % rid, sess)
            else:
                path = "/v1/events" + ("?last_event_id=0" if self.mode == "zero" else "")
                self.follow(path, None)
        except Exception as e:  # a bug in the soak itself: report, do not hide
            self.obs["errors"].append("subscriber crashed: %r" % (e,))

    def follow(self, path, sess):
        last = None
        first = True
        while not self.stopping:
            if not first:
                self.obs["reconnects"] += 1
                time.sleep(0.05)
            first = False
            try:
                st = self.connect(path, last)
            except OSError:
                continue
            if st == 204 and sess is not None:
                sess["ended"] = True
                sess["status204"] = True
                return
            if st != 200:
                self.close()
                time.sleep(0.2)
                continue
            last, done = self.read(last, sess)
            self.close()
            if done:
                return

    def connect(self, path, last):
        s = socket.create_connection(("127.0.0.1", self.soak.port), timeout=2)
        self.sock = s
        h = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" % path
        if last is not None:
            h += "Last-Event-ID: %d\r\n" % last
        s.sendall((h + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = s.recv(65536)
            if not d:
                raise OSError("closed before the head")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return int(head.split(b"\r\n", 1)[0].split()[1])

    def read(self, last, sess):
        """Reads frames until EOF; returns (last id, run stream finished)."""
        idle = 0.0
        while not self.stopping:
            text = self.buf.replace(b"\r\n", b"\n")
            while b"\n\n" in text:
                frame, text = text.split(b"\n\n", 1)
                f = {}
                for line in frame.decode("utf-8", "replace").split("\n"):
                    if not line or line.startswith(":"):
                        continue
                    k, _, v = line.partition(":")
                    f[k] = f.get(k, "") + (v[1:] if v.startswith(" ") else v)
                if f.get("event") == "stream.reset":
                    self.obs["resets"] += 1
                    self.obs["errors"].append("stream.reset after %r" % (last,))
                if "id" in f and "data" in f:
                    eid = int(f["id"])
                    try:
                        doc = json.loads(f["data"])
                        rid, typ = doc.get("run_id"), doc.get("type")
                    except ValueError:
                        rid, typ = None, f.get("event")
                    last = eid
                    if sess is None:
                        self.obs["seen"].append((eid, rid, typ))
                    else:
                        sess["seen"].append((eid, rid, typ))
                        if typ == "run.end":
                            sess["ended"] = True
                            self.buf = text
                            return last, True
            self.buf = text
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                idle += 2
                if idle >= 30:  # heartbeats are 1 s: a stalled stream, reconnect
                    self.obs["errors"].append("no bytes for 30 s, reconnecting")
                    return last, False
                continue
            except OSError:
                return last, False
            if not d:
                return last, False
            idle = 0.0
            self.buf += d
        return last, False

    def close(self):
        s, self.sock = self.sock, None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True


# ------------------------------------------------------------------------------ workers

def pid_alive(pid):
    """True if pid is a live (not zombie) soakworker.py process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read()
    except (OSError, IndexError):
        return False
    return state != "Z" and b"soakworker.py" in cmd


class Monitor(threading.Thread):
    """Reads the workers' execution records and notes when a started pid disappears (a
    worker SIGKILLed from outside writes no end record)."""

    def __init__(self, track):
        super().__init__(daemon=True)
        self.track = track
        self.offsets = {}
        self.execs = {}      # run id -> {pid: {"start","end","gone","attempt"}}
        self.stopping = False
        self.lock = threading.Lock()

    def scan(self):
        for name in os.listdir(self.track):
            if not name.endswith(".jsonl"):
                continue
            rid = name[:-6]
            path = os.path.join(self.track, name)
            off = self.offsets.get(name, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1
            self.offsets[name] = off + cut
            for line in data[:cut].splitlines():
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                with self.lock:
                    e = self.execs.setdefault(rid, {}).setdefault(r["pid"], {})
                    if r["ev"] == "start":
                        e["start"] = r["t"]
                        e["attempt"] = r.get("attempt")
                    else:
                        e["end"] = r["t"]
                        e["code"] = r.get("code")
        now = time.monotonic()
        with self.lock:
            for rid, procs in self.execs.items():
                for pid, e in procs.items():
                    if "end" not in e and "gone" not in e and not pid_alive(pid):
                        e["gone"] = now

    def alive(self):
        with self.lock:
            return [(rid, pid) for rid, procs in self.execs.items() for pid, e in procs.items()
                    if "end" not in e and "gone" not in e and pid_alive(pid)]

    def run(self):
        while not self.stopping:
            self.scan()
            time.sleep(0.05)

    def snapshot(self):
        self.scan()
        with self.lock:
            return {rid: [dict(e, pid=pid) for pid, e in procs.items()]
                    for rid, procs in self.execs.items()}


# ------------------------------------------------------------------------------ the soak

class Soak:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.runs = {}            # run id -> spec (+ created_t, cancel, answered)
        self.order = []
        self.lock = threading.Lock()
        self.kills = []
        self.kills_wall = []
        self.orphans_at_kill = []
        self.notes = []

    # -- daemon
    def config(self):
        flows = ""
        for name, (res, conc) in FLOWS.items():
            flows += ("[flow.%s]\ncommand = %s %s %s\nresumable = %s\nconcurrency = %d\n"
                      "timeout = 15m\n\n" % (name, sys.executable, SOAKWORKER, self.track,
                                             res, conc))
        limits = "max_running = 16\nkill_grace = 500ms\n"
        server = "sse_heartbeat = 1s\n"
        extra = ("[webhooks]\nurl = http://127.0.0.1:%d/hook\nsecret = %s\n"
                 "retry_schedule = 200ms 500ms 1s 2s 3s 5s 5s 5s\nallow_private = yes\n"
                 "timeout = 5s\n" % (self.rx.port, GLOBAL_SECRET))
        return dict(flows=flows, limits=limits, server=server, extra=extra)

    def start_daemon(self, old=None):
        d = Daemon(tmp=self.tmp if old is None else old.tmp,
                   store_path=None if old is None else old.store, **self.config())
        if old is not None:
            d.port = old.port
        d.start()
        self.d = d
        self.port = d.port
        self.client = Client(d.port)
        return d

    def kill_and_restart(self):
        orphans = self.monitor.alive()
        self.kills.append(time.monotonic())
        self.kills_wall.append(time.time())
        self.orphans_at_kill.append(len(orphans))
        self.d.kill9()
        log("kill -9 #%d (pid %d), %d workers alive at the kill" %
            (len(self.kills), self.d.proc.pid, len(orphans)))
        time.sleep(self.rng.uniform(0, 0.5))
        self.start_daemon(self.d)
        log("restarted (pid %d)" % self.d.proc.pid)

    # -- runs
    def pick_run(self, rng, followed):
        """A recent run this subscriber has not followed yet (None if there is none)."""
        with self.lock:
            fresh = [r for r in self.order[-20:] if r not in followed]
        return rng.choice(fresh) if fresh else None

    def create(self, spec):
        body = {"flow": spec["flow"], "input": spec["input"],
                "metadata": {"soak_kind": spec["kind"], "soak_index": spec["index"]}}
        if spec["run_hook"]:
            body["webhook"] = {"url": "http://127.0.0.1:%d/run-hook" % self.rx.port,
                               "secret": RUN_SECRET}
        st, run = self.client.json("POST", "/v1/runs", body, {"Idempotency-Key": spec["key"]})
        spec["create_status"] = st
        if st not in (200, 201):
            self.notes.append("create %d refused: %s %r" % (spec["index"], st, run))
            return
        spec["id"] = run["id"]
        spec["created_t"] = time.monotonic()
        with self.lock:
            if run["id"] in self.runs:
                self.notes.append("idempotent create %d returned run %s twice"
                                  % (spec["index"], run["id"]))
            self.runs[run["id"]] = spec
            self.order.append(run["id"])

    def actor(self):
        """Cancels the cancel kinds on time, answers the approval kinds once paused."""
        while not self.stopping:
            try:
                self.act()
            except Down:
                pass
            except Exception as e:
                self.notes.append("actor error: %r" % (e,))
            time.sleep(0.15)

    def act(self):
        now = time.monotonic()
        with self.lock:
            specs = [self.runs[r] for r in self.order]
        for s in specs:
            if "cancel_after" in s and "cancel" not in s and now >= s["created_t"] + s["cancel_after"]:
                if s["cancel_via"] == "delete":
                    st, body = self.client.request("DELETE", "/v1/runs/" + s["id"])
                else:
                    st, body = self.client.request("POST", "/v1/runs/%s/cancel" % s["id"], "{}",
                                                   {"Content-Type": "application/json"})
                s["cancel"] = st
                if st not in (202, 409):
                    self.notes.append("cancel %s: %s %s" % (s["id"], st, body[:200]))
        waiting = [s for s in specs if "answer_via" in s and "answered" not in s]
        if not waiting:
            return
        st, page = self.client.json("GET", "/v1/runs?status=paused&page_size=100", retry_for=0)
        paused = {r["id"] for r in page["items"]} if st == 200 else set()
        for s in waiting:
            if s["id"] not in paused:
                continue
            st, run = self.client.json("GET", "/v1/runs/" + s["id"], retry_for=0)
            pa = run.get("pending_action") if st == 200 else None
            if not pa:
                continue
            approve = s["kind"] != "deny"
            if s["answer_via"] == "link":
                u = urllib.parse.urlsplit(pa["approve_url" if approve else "deny_url"])
                st, body = self.client.request("GET", u.path + "?" + u.query)
            else:
                st, body = self.client.request(
                    "POST", "/v1/runs/%s/%s" % (s["id"], "approve" if approve else "deny"),
                    "{}", {"Content-Type": "application/json"})
            if st < 300 or st in (409, 410):
                s["answered"] = st
            else:
                self.notes.append("answer %s: %s %s" % (s["id"], st, body[:200]))

    def all_terminal(self):
        st, page = self.client.json("GET", "/v1/runs?status=%s&page_size=100" % ACTIVE)
        if st != 200:
            return False
        return page["total"] == 0

    # -- main
    def run(self):
        a = self.args
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="runsd-soak-")
        self.track = os.path.join(self.tmp, "track")
        os.mkdir(self.track)
        log("seed %d, runs %d, kills %d, subscribers %d, minutes %.2f, dir %s"
            % (self.seed, a.runs, a.kills, a.subscribers, a.minutes, self.tmp))
        self.stopping = False
        self.rx = Receiver(self.seed)
        self.monitor = Monitor(self.track)
        self.monitor.start()
        self.start_daemon()
        budget = a.minutes * 60.0
        window = 0.6 * budget
        hard_deadline = time.monotonic() + budget * 1.5 + 120
        specs = [plan_run(self.rng, i, self.seed) for i in range(a.runs)]
        kill_at = self.plan_kills(window, a.kills)
        log("kills planned at %s s" % ", ".join("%.1f" % k for k in kill_at))

        subs = []
        n_run = a.subscribers // 2
        for k in range(a.subscribers):
            mode = "run" if k < n_run else ("live" if k % 2 else "zero")
            subs.append(Subscriber(self, "sub%02d-%s" % (k, mode), mode, self.seed * 1000 + k))
        for s in subs:
            s.start()
        actor = threading.Thread(target=self.actor, daemon=True)
        actor.start()

        start = time.monotonic()
        kills = list(kill_at)
        for i, spec in enumerate(specs):
            due = start + i * window / max(1, a.runs)
            while True:
                now = time.monotonic()
                if kills and now - start >= kills[0]:
                    kills.pop(0)
                    self.kill_and_restart()
                    continue
                if now >= due:
                    break
                time.sleep(min(0.05, due - now))
            self.create(spec)
        while kills:
            if time.monotonic() - start >= kills[0]:
                kills.pop(0)
                self.kill_and_restart()
            time.sleep(0.05)
        log("created %d runs; draining" % len(self.runs))

        failures = []
        drain_until = min(hard_deadline, time.monotonic() + max(90.0, 0.4 * budget))
        while not self.all_terminal():
            if time.monotonic() > drain_until:
                failures.append(("stuck", "runs still active after the drain time: %s" %
                                 self.client.json("GET", "/v1/runs?status=%s&page_size=20"
                                                  % ACTIVE)[1]))
                break
            time.sleep(0.25)
        self.stopping = True
        actor.join(5)

        # every run's last event id; the global subscribers must reach the maximum.
        stored = self.collect()
        max_id = max([e[0] for st in stored.values() for e in st["events"]] or [0])
        wait_for_subs = time.monotonic() + 15
        while time.monotonic() < wait_for_subs:
            if all(not s.obs["seen"] or s.obs["seen"][-1][0] >= max_id
                   for s in subs if s.mode != "run"):
                break
            time.sleep(0.1)
        log("all runs terminal (last event id %d); waiting for terminal webhooks" % max_id)
        want = self.wanted_hooks(stored)
        hooks_until = time.monotonic() + 60
        while time.monotonic() < hooks_until and not want <= self.rx.accepted():
            time.sleep(0.2)
        for s in subs:
            s.stop()
        for s in subs:
            s.join(5)
            s.close()
            s.obs["end_id"] = max_id

        n_store = self.client.json("GET", "/v1/runs?page_size=1")[1]["total"]
        try:
            self.d.stop()
        except AssertionError as e:
            failures.append(("daemon", "runsd did not stop cleanly on SIGTERM: %s" % e))
        # workers still alive after the final shutdown (wait a little for the pipes to close)
        t = time.monotonic() + 3
        while self.monitor.alive() and time.monotonic() < t:
            time.sleep(0.1)
        leftover = self.monitor.alive()
        self.monitor.stopping = True
        self.monitor.join(2)
        execs = self.monitor.snapshot()
        for rid, pid in leftover:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.rx.stop()

        obs = {
            "seed": self.seed, "kills": self.kills, "orphans_at_kill": self.orphans_at_kill,
            "runs": self.runs, "stored": stored, "n_store": n_store,
            "subs": [s.obs for s in subs], "hooks": list(self.rx.log),
            "execs": execs, "leftover": leftover, "failures": failures, "notes": self.notes,
            "elapsed": time.monotonic() - start, "dir": self.tmp,
            "kills_wall": self.kills_wall,
        }
        try:
            with open(os.path.join(self.tmp, "observations.json"), "w") as f:
                json.dump(obs, f, default=str)
        except (OSError, TypeError, ValueError) as e:
            log("could not write observations.json: %r" % (e,))
        return obs

    def plan_kills(self, window, k):
        for _ in range(1000):
            ts = sorted(self.rng.uniform(0.08 * window, 0.95 * window) for _ in range(k))
            if all(b - a >= 2.5 for a, b in zip(ts, ts[1:])):
                return ts
        return [window * (j + 1) / (k + 1) for j in range(k)]

    def collect(self):
        out = {}
        for rid, spec in self.runs.items():
            st, run = self.client.json("GET", "/v1/runs/" + rid)
            if st != 200:
                out[rid] = {"run": None, "http": st, "events": [], "results": []}
                continue
            evs = self.client.pages("/v1/runs/%s/events?limit=1000" % rid)
            res = []
            if "items" in spec:
                res = [r.get("data") for r in self.client.pages(
                    "/v1/runs/%s/results?page_size=100" % rid)]
            out[rid] = {"run": run, "events": [(e["id"], e["run_id"], e["type"]) for e in evs],
                        "results": res}
        return out

    def wanted_hooks(self, stored):
        want = set()
        for rid, st in stored.items():
            run = st["run"]
            if run and run["status"] in TERMINAL:
                want.add(("/hook", rid, "run." + run["status"]))
                if self.runs[rid]["run_hook"]:
                    want.add(("/run-hook", rid, "run." + run["status"]))
        return want


# ------------------------------------------------------------------------------ checker

def check(obs):
    """Returns (failures [(category, message)], figures)."""
    fails = list(obs["failures"])
    runs, stored = obs["runs"], obs["stored"]
    kills = obs["kills"]
    fig = {"runs": len(runs), "kills": len(kills), "events_seen": 0, "events_lost": 0,
           "events_dup": 0, "webhooks_lost": 0, "overlaps": 0, "leftover": len(obs["leftover"])}

    # 1. every run created with a 201 exists and ends as its script implies
    statuses = {}
    for rid, spec in runs.items():
        st = stored.get(rid)
        run = st and st["run"]
        if not run:
            fails.append(("run", "run %s (%s, created %s) is missing: %s"
                          % (rid, spec["kind"], spec["create_status"], st and st.get("http"))))
            continue
        pair = (run["status"], run.get("termination_reason"))
        statuses[pair] = statuses.get(pair, 0) + 1
        killed = any(k > spec["created_t"] for k in kills)
        ok = expected_outcomes(spec, killed)
        if pair not in ok:
            fails.append(("run", "run %s (%s, input %s, cancel %s, answer %s) ended %s/%s, "
                          "expected one of %s" % (rid, spec["kind"], json.dumps(spec["input"]),
                                                   spec.get("cancel"), spec.get("answered"),
                                                   pair[0], pair[1], ok)))
            continue
        if "items" in spec and pair[0] == "succeeded":
            got = sorted(d.get("i") for d in st["results"])
            if got != list(range(spec["items"])):
                dup = sorted({i for i in got if got.count(i) > 1})
                miss = sorted(set(range(spec["items"])) - set(got))
                fails.append(("items", "run %s (%s): %d items, expected %d; duplicates %s, "
                              "missing %s" % (rid, spec["kind"], len(got), spec["items"],
                                              dup[:10], miss[:10])))
            if run.get("counts", {}).get("items") != spec["items"]:
                fails.append(("items", "run %s: counts.items = %r, expected %d"
                              % (rid, run.get("counts", {}).get("items"), spec["items"])))
    if obs["n_store"] != len(runs):
        fails.append(("run", "the store holds %d runs, the soak created %d"
                      % (obs["n_store"], len(runs))))
    fig["statuses"] = statuses

    # 2. what the SSE clients saw against the stored event logs
    log_of = {rid: st["events"] for rid, st in stored.items()}
    known = {}
    for evs in log_of.values():
        for e in evs:
            known[e[0]] = e
    for sub in obs["subs"]:
        name = sub["name"]
        for err in sub["errors"]:
            fails.append(("sse", "%s: %s" % (name, err)))
        seqs = []
        if sub["mode"] == "run":
            for sess in sub["sessions"]:
                seqs.append((sess["run"], sess["seen"], sess))
        else:
            seqs.append((None, sub["seen"], None))
        for rid, seen, sess in seqs:
            fig["events_seen"] += len(seen)
            ids = [e[0] for e in seen]
            for e in seen:
                if e[0] not in known:
                    fails.append(("event_unknown", "%s saw event %d (%s, %s) that is not stored"
                                  % (name, e[0], e[1], e[2])))
                elif tuple(known[e[0]]) != tuple(e):
                    fails.append(("event_unknown", "%s saw event %r, stored as %r"
                                  % (name, tuple(e), tuple(known[e[0]]))))
            dups = len(ids) - len(set(ids))
            if dups:
                fig["events_dup"] += dups
                once, twice = set(), set()
                for i in ids:
                    (twice if i in once else once).add(i)
                fails.append(("event_dup", "%s%s: %d duplicate event ids, e.g. %s" % (
                    name, " run " + rid if rid else "", dups, sorted(twice)[:5])))
            if any(b <= a for a, b in zip(ids, ids[1:])) and not dups:
                fails.append(("event_order", "%s%s: event ids not increasing" %
                              (name, " run " + rid if rid else "")))
            if rid is not None:
                want = [e[0] for e in log_of.get(rid, [])]
                if not sess["ended"]:
                    want = [i for i in want if ids and i <= ids[-1]] if ids else []
                missing = sorted(set(want) - set(ids))
            else:
                if not ids:
                    continue
                lo = 0 if sub["mode"] == "zero" else ids[0]
                hi = sub["end_id"] if sub["end_id"] is not None else ids[-1]
                idset = set(ids)
                missing = sorted(i for i in known if lo <= i <= hi and i not in idset)
            if missing:
                fig["events_lost"] += len(missing)
                fails.append(("event_lost", "%s%s: %d stored events never received, e.g. %s" % (
                    name, " run " + rid if rid else "", len(missing),
                    [tuple(known[i]) for i in missing[:5]])))

    # 3. every terminal webhook arrived, validly signed
    valid = {(h["path"], h["run_id"], h["type"]) for h in obs["hooks"]
             if h["valid"] and h["answer"] == 200}
    bad = [h for h in obs["hooks"] if not h["valid"]]
    for h in bad[:20]:
        fails.append(("webhook_bad_sig", "webhook %s (%s %s to %s) has an invalid signature"
                      % (h["webhook_id"], h["type"], h["run_id"], h["path"])))
    for rid, st in stored.items():
        run = st["run"]
        if not run or run["status"] not in TERMINAL:
            continue
        paths = ["/hook"] + (["/run-hook"] if runs[rid]["run_hook"] else [])
        for p in paths:
            if (p, rid, "run." + run["status"]) not in valid:
                fig["webhooks_lost"] += 1
                fails.append(("webhook_lost", "run %s ended %s but no valid run.%s webhook "
                              "reached %s" % (rid, run["status"], run["status"], p)))
    fig["webhooks_received"] = len(obs["hooks"])
    fig["webhook_ids"] = len({h["webhook_id"] for h in obs["hooks"]})

    # 4. no run executed twice at once; no worker left after the final shutdown
    for rid, procs in obs["execs"].items():
        iv = []
        for e in procs:
            if "start" not in e:
                continue
            end = e.get("end", e.get("gone", float("inf")))
            iv.append((e["start"], end, e["pid"], e.get("attempt")))
        iv.sort()
        for (s1, e1, p1, a1), (s2, e2, p2, a2) in zip(iv, iv[1:]):
            if s2 < e1:
                fig["overlaps"] += 1
                fails.append(("overlap", "run %s executed twice at once: pid %d (attempt %s) "
                              "%.3f..%.3f and pid %d (attempt %s) from %.3f (overlap %.3f s)"
                              % (rid, p1, a1, s1, e1, p2, a2, s2, min(e1, e2) - s2)))
    for rid, pid in obs["leftover"]:
        fails.append(("leftover_worker", "worker pid %d of run %s still running after the "
                      "final shutdown" % (pid, rid)))
    return fails, fig


def summary(obs, fails, fig):
    print("=" * 72)
    print("soak seed %d: runs %d, events seen %d, kills survived %d, events lost %d, "
          "duplicate events %d, webhooks lost %d, overlaps %d, leftover workers %d"
          % (obs["seed"], fig["runs"], fig["events_seen"], fig["kills"], fig["events_lost"],
             fig["events_dup"], fig["webhooks_lost"], fig["overlaps"], fig["leftover"]))
    print("  final states: %s" % ", ".join("%s/%s %d" % (k[0], k[1], v)
                                           for k, v in sorted(fig.get("statuses", {}).items())))
    print("  observations and the daemon's store and log: %s" % obs.get("dir"))
    print("  webhook requests %d (%d webhook ids); workers alive at each kill: %s; %.1f s"
          % (fig.get("webhooks_received", 0), fig.get("webhook_ids", 0),
             obs["orphans_at_kill"], obs["elapsed"]))
    for n in obs["notes"][:20]:
        print("  note: %s" % n)
    if fails:
        cats = {}
        for c, _ in fails:
            cats[c] = cats.get(c, 0) + 1
        print("FAILED: %d problems (%s)" % (len(fails), ", ".join(
            "%s %d" % kv for kv in sorted(cats.items()))))
        shown = {}
        for c, m in fails:
            shown[c] = shown.get(c, 0) + 1
            if shown[c] <= 8:
                print("  [%s] %s" % (c, m))
            elif shown[c] == 9:
                print("  [%s] ... (%d more)" % (c, cats[c] - 8))
    else:
        print("OK")


# ------------------------------------------------------------------------------ self-test

def inject(obs, what):
    """A copy of obs with one fault injected into the observations (not the daemon)."""
    o = copy.deepcopy(obs)
    if what == "dropped event":
        sub = max((s for s in o["subs"] if s["mode"] != "run"), key=lambda s: len(s["seen"]))
        victim = sub["seen"].pop(len(sub["seen"]) // 2)
        return o, "event_lost", "%s: event %d removed" % (sub["name"], victim[0])
    if what == "duplicate event":
        sub = max((s for s in o["subs"] if s["mode"] != "run"), key=lambda s: len(s["seen"]))
        k = len(sub["seen"]) // 3
        sub["seen"].insert(k + 1, sub["seen"][k])
        return o, "event_dup", "%s: event %d repeated" % (sub["name"], sub["seen"][k][0])
    if what == "lost webhook":
        rid = next(r for r, st in o["stored"].items()
                   if st["run"] and st["run"]["status"] in TERMINAL)
        o["hooks"] = [h for h in o["hooks"] if not (h["run_id"] == rid and h["path"] == "/hook")]
        return o, "webhook_lost", "every /hook delivery of %s removed" % rid
    if what == "overlapping execution":
        rid, procs = next((r, p) for r, p in o["execs"].items() if p and "start" in p[0])
        e = procs[0]
        end = e.get("end", e.get("gone", e["start"] + 1))
        procs.append({"pid": 999999, "start": (e["start"] + end) / 2, "end": end + 1,
                      "attempt": 2})
        return o, "overlap", "a second worker of %s inside the first one's interval" % rid
    raise ValueError(what)


def self_test(obs):
    base, _ = check(obs)
    count = lambda fs, c: sum(1 for f in fs if f[0] == c)  # noqa: E731
    ok = True
    print("=" * 72)
    print("self-test: the clean soak has %d problems; injecting faults into its observations"
          % len(base))
    for what in ("dropped event", "duplicate event", "lost webhook", "overlapping execution"):
        o, cat, how = inject(obs, what)
        fails, _ = check(o)
        new = [m for c, m in fails if c == cat]
        detected = count(fails, cat) > count(base, cat)
        print("  %-22s (%s) -> %s" % (what, how, "DETECTED" if detected else "MISSED"))
        if detected:
            print("      [%s] %s" % (cat, [m for m in new if m not in [b[1] for b in base]][0]))
        ok = ok and detected
    allin = obs
    for what in ("dropped event", "duplicate event", "lost webhook", "overlapping execution"):
        allin, _, _ = inject(allin, what)
    fails, _ = check(allin)
    print("  all four at once: the checker reports %d problems and would exit %d"
          % (len(fails), 1 if fails else 0))
    ok = ok and bool(fails)
    print("self-test %s" % ("PASSED" if ok else "FAILED"))
    return ok


# ------------------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--subscribers", type=int, default=24)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None,
                    help="time budget; runs are created over 60%% of it (default runs/150*1.5)")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--recheck", metavar="OBSERVATIONS_JSON",
                    help="run the checker again on a finished soak's observations.json")
    a = ap.parse_args()
    if a.recheck:
        with open(a.recheck) as f:
            obs = json.load(f)
        fails, fig = check(obs)
        summary(obs, fails, fig)
        return 1 if fails else 0
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1 << 31)
    if a.self_test:
        a.runs = min(a.runs, 40)
        a.kills = 0
        a.subscribers = min(a.subscribers, 8)
        if a.minutes is None:
            a.minutes = 0.5
    if a.minutes is None:
        a.minutes = max(0.5, a.runs / 150.0 * 1.5)
    if a.subscribers < 2:
        ap.error("--subscribers must be at least 2")
    print("soak: seed %d (rerun with --seed %d)" % (a.seed, a.seed), flush=True)
    soak = Soak(a)
    try:
        obs = soak.run()
    finally:
        d = getattr(soak, "d", None)
        if d is not None and d.proc is not None and d.proc.poll() is None:
            d.proc.kill()  # only on an error in the soak itself: our own daemon, by pid
            d.proc.wait()
        mon = getattr(soak, "monitor", None)
        if mon is not None:  # and our own workers, by pid
            mon.stopping = True
            for _, pid in mon.alive():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    fails, fig = check(obs)
    summary(obs, fails, fig)
    if a.self_test:
        return 0 if self_test(obs) else 1
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
