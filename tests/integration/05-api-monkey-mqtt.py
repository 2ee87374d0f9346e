#!/usr/bin/env python3
"""The API monkey (05-api-monkey.py) with apid on a real mosquitto.

05-api-monkey runs apid without a broker, so the device-jobs, batch,
command and shadow routes answer 501 there. Here the same random
requests (the operations of /api/openapi.json, weighted towards
/api/devices, /api/jobs and /api/rules, with path ids drawn from the
devices and jobs that exist) hit a platform whose apid talks to a real
mosquitto, in two variants:

  plain  apid --mqtt-host/--mqtt-port on an anonymous broker;
  auth   apid --mqtt-auth DIR --mqtt-pidfile (registrations and
         rotations rewrite passwd/acl and SIGHUP the broker) with a
         service account on the devices' listener (--mqtt-user), API
         keys of two tenants; ingestd and alertd on a second, service
         listener.

alertd has a rules file with an mqtt and a webhook channel (a local
receiver), and --db, so rules the monkey creates with actions (webhook to
the receiver, which sometimes refuses with hostile bytes, mqtt topics,
channels) are stored and applied. Meanwhile a simulated fleet publishes
through the broker on the devices' topics: telemetry, job progress
(answers to the commands it hears, and forged ones), shadow reports and
presence, many of them hostile (broken or deep JSON, huge, not UTF-8,
non-objects); in the auth variant also over per-device connections with
the credentials the API handed out. So the routes read state the devices
changed while they run.

Acceptance is 05-api-monkey's: every answer is 2xx/3xx, or 4xx/501 with
the JSON error object, or 503 with Retry-After; every daemon and the
broker stay up; each daemon stops cleanly with no sanitizer report and no
secret in its log. With the broker there, batch never answers 501. After
the run the platform still works: a fresh device registers (gets
credentials, which the reloaded broker accepts, in the auth variant),
publishes telemetry that GET /api/telemetry returns, gets a job's command
and completes it, and its hot reading reaches the webhook through the
rules file's rule.

Seeded (SP_SEED replays the requests and the fleet's choices; their
interleaving is the scheduler's). Bounded: 2,000 requests or 45 s per
variant, 60,000 or 600 s with SP_FULL=1; the fleet sends at most 40
messages per 100 requests.
"""
import http.server
import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import (Failure, Platform, check, free_port, main,  # noqa: E402
                need, wait_for, write_keys)
from mq import Mq  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "monkey", os.path.join(os.path.dirname(os.path.abspath(__file__)), "05-api-monkey.py"))
monkey = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(monkey)

FULL = os.environ.get("SP_FULL") == "1"
COUNT, SECONDS = (60000, 600) if FULL else (2000, 45)
DEVICES = ["dev-%d" % i for i in range(10)]
HOSTILE = b"\xff\xfe nope\r\napid: error: forged\x1b[31m"


# --- hostile payloads ----------------------------------------------------------

def deep(n, open_=b'{"a":', close=b"}", leaf=b"1"):
    return open_ * n + leaf + close * n


def hostile(r):
    k = r.randrange(16)
    if k == 0:
        return b""
    if k == 1:
        return bytes(r.randrange(256) for _ in range(r.randint(1, 300)))
    if k == 2:
        return deep(r.choice([100, 1000, 2100, 5000]))
    if k == 3:
        return b"[" * r.randint(100, 5000)
    if k == 4:
        return json.dumps({"state": {"k%d" % i: i for i in range(r.randint(100, 3000))}}).encode()
    if k == 5:
        return json.dumps({"state": {"s": "x" * r.randint(1000, 200000)}}).encode()
    if k == 6:
        return b'{"state":{"a":"\xff\xfe","b":1}}'
    if k == 7:
        return r.choice([b"null", b"5", b"\"s\"", b"[1,2]", b"true", b'{"state":null}',
                         b'{"state":[]}', b'{"state":5}', b'{"state":{"x":null}}',
                         b'{"a":NaN}', b'{"a":1e999}', b'{"a":-0}', b'{"":1}',
                         b'{"a":"x\\u0000y"}', b'{"a":"\\ud800"}', b'{"a":1,"a":2}'])
    if k == 8:
        return json.dumps({"state": deep_obj(r.randint(50, 300))}).encode()
    if k == 9:
        return json.dumps({"state": {HOSTILE.decode("latin-1"): HOSTILE.decode("latin-1")}}).encode()
    return monkey.dumps(monkey.rand_json(r)).encode()


def loads(b):
    """b as a JSON object, else {} (the fleet hears its own hostile bytes)."""
    try:
        v = json.loads(b)
    except (ValueError, RecursionError):
        return {}
    return v if isinstance(v, dict) else {}


def deep_obj(n):
    v = 1
    for i in range(n):
        v = {"k": v}
    return v


def progress_payload(r):
    if r.random() < 0.3:
        return hostile(r)
    v = {"status": r.choice(["in_progress", "succeeded", "failed", "queued", "cancelled",
                             "timed_out", "SUCCEEDED", "", 5, None, ["succeeded"]])}
    if r.random() < 0.7:
        v["progress"] = r.choice([0, 50, 100, -1, 101, 2 ** 63, -2 ** 63, 1e300, "50", None, 3.7])
    if r.random() < 0.5:
        v["message"] = r.choice(["checksum mismatch", "x" * 70000, HOSTILE.decode("latin-1"),
                                 "\u00e9\u6f22", 5, None, {"a": 1}])
    return monkey.dumps(v).encode()


def telemetry_payload(r):
    if r.random() < 0.25:
        return hostile(r)
    v = {"timestamp": int(time.time() * 1000) - r.randint(0, 60000),
         "metrics": {"temperature": r.choice([20.5, 25.0, 31.5, 35.0, -40.0]),
                     "humidity": r.random() * 100}}
    if r.random() < 0.2:
        v["metrics"][r.choice(["a" * 300, "x y", "t{a=b}", "tenant", ""])] = 1
    return json.dumps(v).encode()


def shadow_payload(r, delta=None):
    if r.random() < 0.4:
        return hostile(r)
    state = delta if delta is not None else {"rate": r.randint(1, 9), "led": r.choice(["on", "off"])}
    return json.dumps(r.choice([{"state": state}, state])).encode()


# --- the fleet ---------------------------------------------------------------------

class Fleet(threading.Thread):
    """Devices publishing through the broker while the API is hammered.

    The main connection (anonymous, on svc_port) hears every command and
    shadow delta and answers them, and publishes telemetry, progress,
    shadow reports and presence for any device, hostile or not. In the
    auth variant, devices also connect on dev_port with the credentials
    the API handed out (creds: user -> password, filled by the monkey)
    and publish on their own prefix."""

    def __init__(self, seed, svc_port, prefixes, dev_port=None, creds=None):
        super().__init__(daemon=True)
        self.r = random.Random(seed)
        self.svc_port, self.dev_port = svc_port, dev_port
        self.prefixes = prefixes  # known device prefixes
        self.creds = creds if creds is not None else {}
        self.budget = 0
        self.budget_lock = threading.Lock()
        self.stopping = False
        self.sent = 0
        self.commands = []   # (topic, payload) heard
        self.deltas = 0
        self.alerts = []     # alert topics heard
        self.dev_conns = {"tried": 0, "accepted": 0, "refused": 0}
        self.errors = []
        self.jobs = set()
        self.mq = self.connect()

    def connect(self):
        mq = Mq(self.svc_port, "fleet-%d" % self.r.getrandbits(32))
        if mq.rc != 0:
            raise Failure("the fleet's connection refused: %s" % mq.rc)
        mq.subscribe(["devices/+/commands/#", "tenants/+/devices/+/commands/#",
                      "devices/+/shadow/delta", "tenants/+/devices/+/shadow/delta",
                      "alerts/#", "tenants/+/alerts/#"])
        return mq

    def allow(self, n):
        with self.budget_lock:
            self.budget += n

    def take(self):
        with self.budget_lock:
            if self.budget <= 0:
                return False
            self.budget -= 1
            return True

    def hear(self):
        for topic, payload in self.mq.messages(0.01):
            if topic.startswith("alerts/") or "/alerts/" in topic:
                self.alerts.append(topic)
                continue
            parts = topic.split("/")
            prefix = "/".join(parts[:parts.index("devices") + 2])
            if topic.endswith("/shadow/delta"):
                self.deltas += 1
                state = loads(payload).get("state")
                if self.r.random() < 0.7 and self.take():
                    self.mq.publish(prefix + "/shadow/reported", shadow_payload(self.r, state),
                                    self.r.choice([0, 1]))
                    self.sent += 1
                continue
            self.commands.append((topic, payload))
            job = loads(payload).get("jobId")
            job = job if isinstance(job, str) else None
            if job:
                self.jobs.add(job)
                for _ in range(self.r.randint(0, 3)):
                    if not self.take():
                        break
                    self.mq.publish("%s/jobs/%s" % (prefix, job), progress_payload(self.r),
                                    self.r.choice([0, 1]))
                    self.sent += 1

    def act(self):
        r = self.r
        prefix = r.choice(self.prefixes) if r.random() < 0.9 else r.choice([
            "devices/nope", "devices/" + "a" * 65, "tenants/x y/devices/d", "devices/..",
            "tenants/acme/devices/dev-1", "tenants//devices/d", "devices/d\u00e9v"])
        kind = r.randrange(7)
        if kind == 0:
            topic, payload = prefix + "/telemetry", telemetry_payload(r)
        elif kind == 1:
            job = r.choice(sorted(self.jobs)) if self.jobs and r.random() < 0.8 else \
                r.choice(["nope", "j" * 200, "..", "\u6f22"])
            topic, payload = "%s/jobs/%s" % (prefix, job), progress_payload(r)
        elif kind == 2:
            topic, payload = prefix + "/shadow/reported", shadow_payload(r)
        elif kind == 3:
            topic = prefix + "/status"
            payload = r.choice([b"online", b"offline", b"onlinex", b"", HOSTILE, b"offline\x00"])
        elif kind == 4:
            topic, payload = prefix + "/heartbeat", r.choice([b"{}", b"", HOSTILE])
        elif kind == 5:
            topic = prefix + r.choice(["/jobs", "/jobs/a/b", "/shadow", "/shadow/reported/x",
                                       "/commands/reboot", "/x"])
            payload = hostile(r)
        else:
            self.device_session()
            return
        self.mq.publish(topic, payload, r.choice([0, 1]))
        self.sent += 1

    def device_session(self):
        """A device of the API's, on its own credentials (auth variant)."""
        r = self.r
        if not self.dev_port or not self.creds:
            return
        user = r.choice(sorted(self.creds))
        pw = self.creds[user] if r.random() < 0.9 else "wrong"
        dev, _, tenant = user.partition("@")
        prefix = ("tenants/%s/devices/%s" % (tenant, dev)) if tenant else "devices/" + dev
        self.dev_conns["tried"] += 1
        try:
            mq = Mq(self.dev_port, "%s-%d" % (user, r.getrandbits(16)), user, pw,
                    will=(prefix + "/status", "offline"), timeout=3)
        except OSError:
            self.dev_conns["refused"] += 1
            return
        try:
            if mq.rc != 0:
                self.dev_conns["refused"] += 1
                return
            self.dev_conns["accepted"] += 1
            mq.subscribe([prefix + "/commands/#", prefix + "/shadow/#"])
            for _ in range(r.randint(1, 4)):
                if not self.take():
                    break
                what = r.choice(["/telemetry", "/status", "/heartbeat", "/shadow/reported"])
                payload = {"/telemetry": telemetry_payload, "/shadow/reported": shadow_payload,
                           "/status": lambda r: b"online", "/heartbeat": lambda r: b"{}"}[what](r)
                mq.publish(prefix + what, payload, 1)
                self.sent += 1
            mq.poll(0.02)
        except (OSError, EOFError):
            pass
        finally:
            # Half the time no DISCONNECT: the broker sends the last will.
            if r.random() < 0.5:
                mq.close()
            else:
                mq.sock.close()

    def run(self):
        while not self.stopping:
            try:
                self.hear()
                if self.take():
                    self.act()
                else:
                    time.sleep(0.005)
            except (OSError, EOFError) as e:
                # The broker dropped us (a publish it refused): connect again.
                self.errors.append(repr(e))
                if len(self.errors) > 200:
                    return
                try:
                    self.mq.sock.close()
                    self.mq = self.connect()
                except (OSError, Failure) as e2:
                    self.errors.append(repr(e2))
                    time.sleep(0.2)

    def stop(self):
        self.stopping = True
        self.join(timeout=10)
        try:
            self.mq.close()
        except OSError:
            pass


# --- the webhook receiver ---------------------------------------------------------

class Receiver(http.server.BaseHTTPRequestHandler):
    got = []  # (path, body) accepted

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        if self.path.startswith("/flaky") and random.random() < 0.5:
            self.send_response(random.choice([500, 503, 404, 302]))
            self.send_header("Content-Length", str(len(HOSTILE)))
            self.end_headers()
            self.wfile.write(HOSTILE)
            return
        Receiver.got.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


# --- request generation -------------------------------------------------------------

def make_plausible(hook_port):
    orig = monkey.plausible

    def plausible(r, method, path):
        if "/api/rules" in path and method in ("POST", "PUT", "PATCH"):
            acts = []
            for _ in range(r.randint(0, 3)):
                acts.append(r.choice([
                    {"type": "webhook", "url": "http://127.0.0.1:%d/flaky/%d" % (hook_port,
                                                                               r.randint(0, 9))},
                    {"type": "webhook", "url": "http://127.0.0.1:%d/hook?k=s3cr3t" % hook_port},
                    {"type": "mqtt"},
                    {"type": "mqtt", "topic": r.choice(["api/{severity}/{rule}", "x/{state}",
                                                        "#", "+", "a//b", "$SYS/x", "", "a" * 300,
                                                        "{rule}/{rule}/{rule}", "\u00e9"])},
                    {"type": "channel", "name": r.choice(["bus", "hook", "nope"])},
                    {"type": "exec", "path": "/bin/true"} if r.random() < 0.3 else {"type": "mqtt"},
                    {"type": "webhook", "url": r.choice(["ftp://x", "http://", "", "http://[::1"])}
                    if r.random() < 0.3 else {"type": "channel", "name": "bus"}]))
            # (severity is a clause of the condition, not a field)
            return {"name": "r%d" % r.randint(0, 9), "condition": r.choice([
                "temperature > 30", "temperature > 30 for 2s", "humidity > 50",
                "temperature{device=dev-1} > 20", "anomaly(temperature) > 0.9"]) + r.choice([
                    "", " severity info", " severity critical"]),
                "actions": acts, "enabled": r.random() < 0.9}
        if path.endswith("/batch"):
            body = {"operation": r.choice(["update_firmware", "reboot", "tag", "cancel", "a" * 65]),
                    "filter": r.choice([{}, {"type": "t"}, {"type": "sensor"},
                                        {"location": "a"}, {"online": "true"}, {"tag": "x"}]),
                    "params": {"version": r.choice(["2.1.0", "", "x" * 300])},
                    "timeoutSeconds": r.choice([0.5, 2, 30, 0.01, 1e9])}
            for k in list(body)[1:]:  # any field but the operation may be left out
                if r.random() < 0.15:
                    del body[k]
            return body
        if path.endswith("/shadow"):
            v = orig(r, method, path)
            return r.choice([{"desired": v["desired"]}, {"desired": deep_obj(r.randint(1, 40))},
                             {"desired": {"a": None}}, v])
        return orig(r, method, path)
    return plausible


def request(r, op, auth, ids, jobs):
    """make_request, with path ids drawn from the devices and jobs that exist
    most of the time."""
    method, path, params = op
    # Decommissioning a known device is rarer, so the fleet's devices live on.
    if "{deviceId}" in path and r.random() < (0.05 if (method, path) == (
            "DELETE", "/api/devices/{deviceId}") else 0.7):
        path = path.replace("{deviceId}", quote(r.choice(ids), safe=""))
    if "{jobId}" in path and jobs and r.random() < 0.7:
        path = path.replace("{jobId}", quote(r.choice(sorted(jobs)), safe=""))
    if "{name}" in path and r.random() < 0.5:
        path = path.replace("{name}", "r%d" % r.randint(0, 9))
    if "{sensor}" in path and r.random() < 0.5:
        path = path.replace("{sensor}", "temperature")
    req = monkey.make_request(r, (method, path, params), auth)
    if req[2] is not None and r.random() < 0.08:
        # JSON nested deeper than anything rand_json makes (and than
        # Python's json can write): around apid's 64 levels of a device
        # state and SQLite's 2,000, and past jansson's 2,048.
        n = r.choice([30, 63, 64, 70, 1000, 1990, 2040, 2100])
        nest = '{"a":' * n + '1' + '}' * n
        body = {"/api/devices/register": '{"deviceId":"deep-%d","type":"t","metadata":%%s}' % n,
                "/api/devices/{deviceId}": '{"metadata":%s}',
                "/api/devices/{deviceId}/shadow": '{"desired":%s}',
                "/api/devices/{deviceId}/sensors": '{"name":"t","type":"temperature","x":%s}',
                "/api/devices/batch": '{"operation":"reboot","params":%s}',
                "/api/rules": '{"name":"deep","condition":"temperature > 30","x":%s}'}.get(op[1])
        if body:
            req = (req[0], req[1], (body % nest).encode(), req[3])
    if path == "/api/devices/register" and r.random() < 0.2:
        # apid's service account on the broker is svc@acme, the user a
        # device "svc" of tenant acme would get (auth variant).
        hdr = dict(req[3], **{"Authorization": "Bearer " + auth[0]} if auth else {})
        hdr["Content-Type"] = "application/json"
        req = (req[0], req[1], b'{"deviceId": "svc", "type": "t"}', hdr)
    return req


def run(r, p, ops, fleet, what, auth, creds, jobs, ids, secrets):
    conns = {p.api_port: monkey.Conn(p.api_port), p.ingest_port: monkey.Conn(p.ingest_port)}
    statuses, bad, broken, dead, batch = {}, [], [], [], {}
    t0 = time.time()
    n = 0
    count, seconds = COUNT, SECONDS
    while n < count and time.time() < t0 + seconds and not dead:
        if n % 50 == 0:
            dead = [name for name, proc in p.procs.items() if proc.poll() is not None]
            if p.broker.poll() is not None:
                dead.append("mosquitto")
            if dead:
                print("  %s died before request %d" % (", ".join(dead), n))
                break
        if n % 10 == 0:
            fleet.allow(4)
        port, op = r.choice(ops)
        req = request(r, op, auth, ids, jobs)
        st, resp, data = conns[port].ask(*req)
        n += 1
        statuses[st] = statuses.get(st, 0) + 1
        if st is None:
            broken.append((req[0], req[1][:120], str(resp)))
            continue
        path = req[1].split("?")[0]
        if path == "/api/devices/batch" and req[0] == "POST":
            batch[st] = batch.get(st, 0) + 1
        if path == "/api/rules" and req[0] == "POST" and st == 201:
            batch["rules made"] = batch.get("rules made", 0) + 1
        if st == 409 and b"service account" in data:
            batch["409 service account"] = batch.get("409 service account", 0) + 1
        why = None
        if st >= 500 and st != 501 and not (st == 503 and resp.getheader("Retry-After")):
            why = "status %d" % st
        elif st >= 400:
            why = monkey.error_ok(req[0], req[1], resp, data)
        if why:
            bad.append("%s %s -> %d: %s %s" % (req[0], req[1][:120], st, why, data[:160]))
            continue
        if 200 <= st < 300 and data[:1] == b"{":
            body = loads(data)
            c = body.get("credentials") if isinstance(body, dict) else None
            if isinstance(c, dict) and c.get("username") and c.get("password"):
                creds[c["username"]] = c["password"]
                secrets.append(c["password"])
            if isinstance(body, dict) and isinstance(body.get("jobId"), str):
                jobs.add(body["jobId"])
            if isinstance(body, dict) and isinstance(body.get("deviceId"), str) and \
                    body["deviceId"] not in ids and len(ids) < 60:
                ids.append(body["deviceId"])
    print("%s: %d requests in %.0f s, statuses %s" % (
        what, n, time.time() - t0,
        ", ".join("%s: %d" % kv for kv in sorted(statuses.items(), key=str))))
    print("%s: batch statuses (and refused service-account names, rules made) %s; fleet sent %d messages, heard %d commands, %d deltas, "
          "%d alerts; device connections %s; %d fleet reconnects" % (
              what, batch, fleet.sent, len(fleet.commands), fleet.deltas, len(fleet.alerts),
              fleet.dev_conns, len(fleet.errors)))
    for line in bad[:20]:
        print("  " + line)
    check(not dead, "%s: nothing died (%s)" % (what, dead))
    check(n >= min(count, 300), "%s: at least 300 requests sent (%d)" % (what, n))
    check(not broken, "%s: every request answered (%d not: %s)" % (what, len(broken), broken[:3]))
    check(not bad, "%s: every answer is 2xx/3xx, or 4xx/501 with the JSON error "
          "object, or 503 with Retry-After (%d not)" % (what, len(bad)))
    check(501 not in batch, "%s: batch never answers 501 with a broker" % what)
    for name, proc in p.procs.items():
        check(proc.poll() is None, "%s: %s still running" % (what, name))
    check(p.broker.poll() is None, "%s: mosquitto still running" % what)


# --- after the run: the platform still works -------------------------------------

def still_works(p, what, seed, hdr, dev_port, tenant):
    dev = "fresh-%d" % (seed % 100000)
    st, _, d = p.http("POST", "/api/devices/register",
                      {"deviceId": dev, "type": "fresh", "metadata": {"location": "x"}},
                      headers=hdr)
    check(st == 201, "%s: a fresh device registers (%s %s)" % (what, st, d))
    prefix = ("tenants/%s/devices/%s" % (tenant, dev)) if tenant else "devices/" + dev
    secrets = []
    if dev_port:
        c = d.get("credentials", {})
        check(c.get("topicPrefix") == prefix and c.get("password"),
              "%s: ... and gets credentials for %s" % (what, prefix))
        secrets.append(c["password"])

        def connect():
            mq = Mq(dev_port, dev + "-c", c["username"], c["password"])
            if mq.rc == 0:
                return mq
            mq.sock.close()
            return None
        mq = wait_for(connect, "%s: the broker reloaded and accepts the fresh device" % what)
    else:
        mq = Mq(p.mqtt_port, dev + "-c")
    mq.subscribe([prefix + "/commands/#"])
    mq.poll(0.3)  # SUBACK
    ts = int(time.time() * 1000)
    mq.publish(prefix + "/telemetry", json.dumps(
        {"timestamp": ts, "metrics": {"temperature": 36.5}}), 1)

    def telemetry():
        st, _, t = p.http("GET", "/api/telemetry/%s?metric=temperature" % dev, headers=hdr)
        return st == 200 and "36.5" in json.dumps(t)
    wait_for(telemetry, "%s: its telemetry is queryable" % what, timeout=30, step=0.3)
    wait_for(lambda: any(("device=%s" % dev).encode() in b for _, b in Receiver.got),
             "%s: its hot reading reached the webhook" % what, timeout=30, step=0.3)
    check(True, "%s: its hot reading reached the webhook" % what)

    def job():
        st, _, j = p.http("POST", "/api/devices/batch", {
            "operation": "reboot", "filter": {"type": "fresh"}, "params": {"why": "check"},
            "timeoutSeconds": 30}, headers=hdr)
        return j if st == 202 else None
    j = wait_for(job, "%s: a job to it is created" % what, timeout=10, step=0.3)
    check(j["total"] == 1, "%s: the job has one device (%s)" % (what, j))
    got = []
    deadline = time.time() + 15
    while not got and time.time() < deadline:
        got = [(t, m) for t, m in mq.messages(0.2) if t == prefix + "/commands/reboot"]
    check(got and json.loads(got[0][1])["jobId"] == j["jobId"],
          "%s: the job's command is delivered (%s)" % (what, got))
    mq.publish("%s/jobs/%s" % (prefix, j["jobId"]), json.dumps({"status": "succeeded",
                                                                "progress": 100}), 1)

    def done():
        st, _, x = p.http("GET", "/api/jobs/" + j["jobId"], headers=hdr)
        return st == 200 and x["state"] == "completed" and x["counts"]["succeeded"] == 1
    wait_for(done, "%s: the device's report completes the job" % what, timeout=15, step=0.2)
    mq.close()
    return secrets


# --- the variants ---------------------------------------------------------------------

def start_auth_broker(p, mq_dir, svc_pw):
    """mosquitto with a service listener (anonymous: ingestd, alertd, the
    fleet) and a devices' listener (passwd and acl that apid writes), where
    apid is svc@acme, of passwd.static."""
    import base64
    import hashlib
    import secrets as pysecrets
    salt = pysecrets.token_bytes(12)
    dk = hashlib.pbkdf2_hmac("sha512", svc_pw.encode(), salt, 101)
    with open(os.path.join(mq_dir, "passwd.static"), "w") as f:
        f.write("svc@acme:$7$101$%s$%s\n" % (base64.b64encode(salt).decode(),
                                        base64.b64encode(dk).decode()))
    with open(os.path.join(mq_dir, "acl.static"), "w") as f:
        f.write("user svc@acme\ntopic readwrite #\n")
    for n in ("passwd", "acl"):
        with open(os.path.join(mq_dir, n), "w") as f:
            f.write(open(os.path.join(mq_dir, n + ".static")).read())
    p.mqtt_port = free_port()
    dev_port = free_port()
    conf = os.path.join(p.dir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("per_listener_settings true\nmax_queued_messages 100000\npersistence false\n"
                "listener %d 127.0.0.1\nallow_anonymous true\n"
                "listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s/passwd\n"
                "acl_file %s/acl\n" % (p.mqtt_port, dev_port, mq_dir, mq_dir))
    log = open(os.path.join(p.dir, "mosquitto.log"), "ab")
    p.broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    for port in (p.mqtt_port, dev_port):
        wait_for(lambda: sh_connect(port), "mosquitto listens on %d" % port, timeout=10, step=0.05)
    return dev_port


def sh_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def phase(r, seed, auth_variant, hook_port):
    what = "auth" if auth_variant else "plain"
    p = Platform()
    os.chmod(p.dir, 0o755)  # mosquitto drops root for its own user
    rules = os.path.join(p.dir, "alert.rules")
    with open(rules, "w") as f:
        f.write("channel bus: mqtt\nchannel hook: webhook http://127.0.0.1:%d/hook\n"
                "hot: temperature > 30 severity critical notify bus, hook\n" % hook_port)
    keys, auth, hdr, tenant, dev_port = None, None, None, None, None
    secrets = []
    if auth_variant:
        mq_dir = os.path.join(p.dir, "mqtt")
        os.makedirs(mq_dir)
        os.chmod(mq_dir, 0o755)
        svc_pw = "svc-%032x" % r.getrandbits(128)
        dev_port = start_auth_broker(p, mq_dir, svc_pw)
        pidfile = os.path.join(p.dir, "mosquitto.pid")
        with open(pidfile, "w") as f:
            f.write("%d\n" % p.broker.pid)
        auth = ("k-%032x" % r.getrandbits(128), "k-%032x" % r.getrandbits(128))
        keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
        keys.close()
        write_keys(keys.name, {"acme-ops": ("acme", auth[0]), "globex-ops": ("globex", auth[1])})
        hdr = {"Authorization": "Bearer " + auth[0]}
        tenant = "acme"
        secrets += [svc_pw, auth[0], auth[1]]
        apid_mqtt = ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(dev_port),
                     "--mqtt-user", "svc@acme", "--mqtt-password", svc_pw,
                     "--mqtt-auth", mq_dir, "--mqtt-pidfile", pidfile,
                     "--keys", keys.name, "--key-rate", "100000", "--key-burst", "100000"]
    else:
        p.start_broker("persistence false\n")
        apid_mqtt = ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(p.mqtt_port)]
    p.extra = {"apid": ["--body-max", "262144", "--job-timeout", "5s"] + apid_mqtt,
               "alertd": ["--db", os.path.join(p.dir, "alertd.db"), "--rules", rules,
                          "--mqtt-port", str(p.mqtt_port), "--retry-base", "200ms"]}
    if keys:
        p.extra["ingestd"] = ["--keys", keys.name]
    fleet = None
    try:
        p.start()
        prefixes = []
        ids = list(DEVICES)
        creds = {}
        for dev in DEVICES:
            st, _, d = p.http("POST", "/api/devices/register",
                              {"deviceId": dev, "type": "t", "metadata": {"location": "a"}},
                              headers=hdr)
            check(st == 201, "%s: %s registered (%s %s)" % (what, dev, st, d))
            prefixes.append(("tenants/acme/devices/" if tenant else "devices/") + dev)
            c = d.get("credentials")
            if c:
                creds[c["username"]] = c["password"]
                secrets.append(c["password"])
        if auth_variant:
            check(len(creds) == len(DEVICES), "%s: every device got credentials" % what)
        prefixes += ["devices/dev-1", "tenants/globex/devices/dev-2"]
        # A job before the run: the fleet answers its commands, and its id
        # is among those the monkey asks about.
        jobs = set()
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, d = p.http("POST", "/api/devices/batch", {
                "operation": "update_firmware", "filter": {"type": "t"},
                "params": {"version": "2.1.0"}, "timeoutSeconds": 5}, headers=hdr)
            if st != 503:
                break
            time.sleep(0.2)
        check(st == 202, "%s: a first job (%s %s)" % (what, st, d))
        jobs.add(d["jobId"])
        fleet = Fleet(r.getrandbits(64), p.mqtt_port, prefixes, dev_port, creds)
        fleet.jobs.add(d["jobId"])
        fleet.start()
        st, _, doc = p.http("GET", "/api/openapi.json", headers=hdr)
        check(st == 200 and isinstance(doc, dict), "%s: the OpenAPI document" % what)
        ops = [(p.api_port, op) for op in monkey.build_ops(doc)]
        mine = [o for o in ops if any(s in o[1][1] for s in ("/api/devices", "/api/jobs",
                                                             "/api/rules", "/api/telemetry",
                                                             "/api/alerts"))]
        check(len(mine) > 20, "%s: %d device, job, rule and alert operations" % (what, len(mine)))
        ops += mine * 3
        ops += [(p.ingest_port, op) for op in monkey.INGEST_OPS] * max(1, len(ops) // 120)
        run(r, p, ops, fleet, what, auth, creds, jobs, ids, secrets)
        fleet.stop()
        check(fleet.commands, "%s: the fleet heard commands" % what)
        if auth_variant:
            check(fleet.dev_conns["accepted"] > 0 or fleet.dev_conns["tried"] == 0,
                  "%s: devices connected with the API's credentials (%s)" % (what, fleet.dev_conns))
        secrets += still_works(p, what, seed, hdr, dev_port, tenant)
        for name, proc in p.procs.items():
            check(proc.poll() is None, "%s: %s still running at the end" % (what, name))
        check(p.broker.poll() is None, "%s: mosquitto still running at the end" % what)
    finally:
        if fleet and fleet.is_alive():
            fleet.stop()
        p.stop(secrets=secrets)
        if keys:
            os.unlink(keys.name)


def test():
    need("mosquitto", "apid", "alertd", "ingestd", "aggd")
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    r = random.Random(seed)
    random.seed(seed)
    hook_port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkey.plausible = make_plausible(hook_port)
    try:
        phase(r, seed, False, hook_port)
        phase(r, seed, True, hook_port)
    finally:
        srv.shutdown()


if __name__ == "__main__":
    main(test)
