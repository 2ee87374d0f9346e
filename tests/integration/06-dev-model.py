#!/usr/bin/env python3
"""A model-based randomized test of device management (apid's registry).

apid runs with three tenants' admin keys (and a reader key of each, made
with POST /api/keys), --mqtt-auth (per-device passwords in DIR/passwd,
a service account "svc" in passwd.static), --mqtt-host on a private
mosquitto and --device-offline-after. A seeded RNG (SP_SEED, else
random; the seed is printed) draws steps among:
- registration (the seed body and more: tags, groups, sensors, deep
  metadata; invalid bodies and ids; a taken id; the service account's
  name; registering a decommissioned id again);
- PATCH of type, metadata (location apart), tags, groups, firmware and
  status, valid and not; sensors added, replaced and removed; REST
  presence events (heartbeat, online, offline); decommissioning;
- the shadow: PATCH of desired (merge patches with nulls, nesting, the
  64-level and 64 KiB bounds), the delta apid publishes, reports the
  device publishes on MQTT;
- MQTT presence (status online/offline, heartbeats) and the offline
  timer;
- batch jobs over filters, the commands they publish, progress reports
  (forward moves only), cancellation, timeouts, and the firmware event a
  succeeded update_firmware appends; decommissioning ends the device's
  entries (removed, a cancel sent), so that a report that comes after,
  of the device or of its id registered again, changes nothing and is
  counted with the job (ignoredReports), and a batch over decommissioned
  devices is 400; a focused case (focused()) plays that story first;
- credential rotation, a reader's write (403), no key (401), globex's
  devices quota (403; a decommissioned id registered again counts);
- clean restarts and kill -9 of apid (the store is apid's devices.db).

Every answer is compared with a Python model written from
docs/DEVICES.md and apid.8: the device state (all fields; times are
taken from apid's answer and checked against the test's clock), its
replay, the event log (seq, type, data, ts; a run of heartbeats keeps its
first and last), lists with filters and pages, shadows, jobs, the MQTT
messages, the status items each tenant's WebSocket client is streamed,
the broker's passwd file, and tenants never seeing each other's devices
(the same ids live in all three). A 4xx must carry
{"error": {"code", "message", "where"}}.

Things that depend on apid's timers (the offline timer, job deadlines
and completion) are checked once they must have happened; while they
may or may not have, the device or job is left alone, or what apid shows
decides (the model then takes that branch).

Bounded: 600 steps or 12 s of steps (about 20 s in all under ASan);
6,000 steps or 240 s with SP_FULL=1. SP_VERBOSE=1 prints each step.
"""
import base64
import calendar
import copy
import hashlib
import json
import os
import random
import signal
import string
import sys
import time
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, need, write_keys  # noqa: E402
from mq import Mq  # noqa: E402
from ws import WS  # noqa: E402

FULL = os.environ.get("SP_FULL") == "1"
VERBOSE = os.environ.get("SP_VERBOSE") == "1"
STEPS, SECONDS = (6000, 240) if FULL else (600, 12)
TENANTS = ("default", "acme", "globex")
IDS = ["d0", "d1", "d2", "d3", "sensor-001", "x.y_z", "svc"]
SYNC = "sync"  # a device of the default tenant the test's MQTT syncs on
QUOTA = {"globex": 4}  # devices a tenant may have (--quotas), not decommissioned
OFFLINE_AFTER = 2.0  # --device-offline-after, seconds
HEARTBEAT_EVERY = OFFLINE_AFTER / 3  # MQTT heartbeats recorded this often
MARGIN = 2.0  # how late apid's 1 s timers may run on a loaded machine
DEPTH_MAX = 64
SIDE_MAX = 65536
NAME_CHARS = set(string.ascii_letters + string.digits + "_.-")
NOW = "@now@"  # the time of the answer that carried the change
UNKNOWN = "@unknown@"  # a time apid chose out of sight: taken when seen
JOB_STATES = ("queued", "in_progress", "succeeded", "failed", "timed_out",
              "cancelled", "removed")


class Refused(Exception):
    pass


def log(*a):
    if VERBOSE:
        print("#", *a)


# ------------------------------------------------------------- json helpers

def same(a, b):
    """Equal JSON, true and 1 apart (apid prints a whole real as an
    integer: the shortest form that reads back)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_num(a) or is_num(b):
        return is_num(a) and is_num(b) and a == b
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b)))
    return type(a) is type(b) and a == b


def depth(j):
    """dev_store_json_depth: a scalar 0, a container 1 + its deepest."""
    if isinstance(j, dict):
        return 1 + max([depth(v) for v in j.values()] or [0])
    if isinstance(j, list):
        return 1 + max([depth(v) for v in j] or [0])
    return 0


def compact(j):
    """jansson's JSON_COMPACT | JSON_SORT_KEYS text (no floats but
    binary fractions are used, which both print alike)."""
    return json.dumps(j, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).encode()


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def name_ok(s):
    return (isinstance(s, str) and 0 < len(s) <= 64 and set(s) <= NAME_CHARS
            and s not in (".", ".."))


def names(v):
    if not isinstance(v, list) or not all(name_ok(x) for x in v):
        return None
    return sorted(set(v))


def subst(j, old, new):
    if isinstance(j, dict):
        return {k: subst(v, old, new) for k, v in j.items()}
    if isinstance(j, list):
        return [subst(v, old, new) for v in j]
    return new if isinstance(j, str) and j == old else j


def epoch(t):
    """2024-01-01T00:00:00.123Z -> seconds."""
    d, frac = t.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(d, "%Y-%m-%dT%H:%M:%S")) + int(frac) / 1000


def merge(target, patch):
    """RFC 7386, as dev_shadow's s_merge."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            if not isinstance(target.get(k), dict):
                target[k] = {}
            merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


def delta(desired, reported):
    out = {}
    for k, v in desired.items():
        r = reported.get(k, UNKNOWN)
        if isinstance(v, dict) and isinstance(r, dict):
            d = delta(v, r)
            if d:
                out[k] = d
        elif r is UNKNOWN or not same(v, r):
            out[k] = v
    return out


# ---------------------------------------------------------------- the fold

def status_event(before, after):
    """What a change streams to WebSocket clients of kind status
    (PROTOCOL.md): registered (also an id registered again),
    decommissioned, online or offline, activated; else nothing."""
    if before is None or (before["status"] == "decommissioned" and
                          after["status"] != "decommissioned"):
        return "registered"
    if after["status"] == "decommissioned" != before["status"]:
        return "decommissioned"
    if before["online"] != after["online"]:
        return "online" if after["online"] else "offline"
    if before["status"] != after["status"]:
        return "activated" if after["status"] == "active" else after["status"]
    return None


def sensor(v):
    if not isinstance(v, dict) or not name_ok(v.get("name")):
        return None
    out = {"name": v["name"]}
    for f in ("type", "unit", "calibrationDate"):
        if f in v:
            if not isinstance(v[f], str):
                return None
            out[f] = v[f]
    for f in ("min", "max"):
        if f in v:
            if not is_num(v[f]):
                return None
            out[f] = float(v[f])
    if "min" in out and "max" in out and out["min"] > out["max"]:
        return None
    return out


def put_sensor(sensors, s):
    for i, e in enumerate(sensors):
        if e["name"] == s["name"]:
            sensors[i] = s
            return
    sensors.append(s)


def provision(data, ts, version):
    if not name_ok(data.get("deviceId")):
        raise Refused("deviceId")
    if not isinstance(data.get("type"), str) or data["type"] == "":
        raise Refused("type")
    if "metadata" in data and not isinstance(data["metadata"], dict):
        raise Refused("metadata")
    tags = names(data.get("tags", []))
    groups = names(data.get("groups", []))
    if tags is None or groups is None:
        raise Refused("tags")
    if "sensors" in data and not isinstance(data["sensors"], list):
        raise Refused("sensors")
    sensors = []
    for s in data.get("sensors", []):
        s = sensor(s)
        if s is None:
            raise Refused("sensor")
        put_sensor(sensors, s)
    return {"deviceId": data["deviceId"], "type": data["type"],
            "status": "provisioned", "online": False,
            "metadata": copy.deepcopy(data.get("metadata", {})),
            "tags": tags, "groups": groups, "sensors": sensors,
            "firmware": None, "lastSeen": None, "createdAt": ts,
            "updatedAt": ts, "version": version}


def fold(st, kind, data, ts):
    """dev_state_apply as docs/DEVICES.md tells it: the state after one
    event, or Refused."""
    if not isinstance(data, dict):
        raise Refused("data")
    if st is None:
        if kind != "provisioned":
            raise Refused("first")
        new = provision(data, ts, 0)
    elif kind == "provisioned":
        if st["status"] != "decommissioned":
            raise Refused("already provisioned")
        # Registered again: a new device, the versions go on.
        new = provision(data, ts, st["version"])
    elif st["status"] == "decommissioned":
        raise Refused("decommissioned")
    else:
        new = copy.deepcopy(st)
        if kind == "activated":
            new["status"] = "active"
        elif kind == "updated":
            if "type" in data:
                if not isinstance(data["type"], str) or not data["type"]:
                    raise Refused("type")
                new["type"] = data["type"]
            if "metadata" in data:
                if not isinstance(data["metadata"], dict):
                    raise Refused("metadata")
                for k, v in data["metadata"].items():
                    if v is None:
                        new["metadata"].pop(k, None)
                    else:
                        new["metadata"][k] = copy.deepcopy(v)
            for f in ("tags", "groups"):
                if f in data:
                    n = names(data[f])
                    if n is None:
                        raise Refused(f)
                    new[f] = n
        elif kind == "location_updated":
            if not isinstance(data.get("location"), str):
                raise Refused("location")
            new["metadata"]["location"] = data["location"]
        elif kind == "sensor_added":
            s = sensor(data.get("sensor"))
            if s is None:
                raise Refused("sensor")
            put_sensor(new["sensors"], s)
        elif kind == "sensor_removed":
            i = [k for k, e in enumerate(new["sensors"])
                 if e["name"] == data.get("name")]
            if not i:
                raise Refused("no such sensor")
            del new["sensors"][i[0]]
        elif kind == "firmware_updated":
            v = data.get("version")
            if not isinstance(v, str) or not v:
                raise Refused("version")
            new["firmware"] = v
        elif kind in ("heartbeat", "online"):
            new["online"] = True
            new["lastSeen"] = ts
        elif kind == "offline":
            new["online"] = False
        elif kind == "decommissioned":
            new["status"] = "decommissioned"
            new["online"] = False
        else:
            raise Refused("kind")
    new["updatedAt"] = ts
    if kind != "heartbeat":  # a heartbeat is no new version
        new["version"] += 1
    return new


class Dev:
    def __init__(self):
        self.state = None
        self.events = []  # {"seq", "type", "data", "ts"}
        self.seq = 0
        self.desired, self.reported = {}, {}
        self.dv = self.rv = 0
        self.shadow_at = None
        self.user = self.password = None  # MQTT credentials
        self.commands = []  # (topic, payload) apid must have published

    def live(self):
        return self.state is not None and self.state["status"] != "decommissioned"

    def online_since(self):
        """lastSeen in seconds while online, else None."""
        st = self.state
        if st is None or not st["online"] or st["lastSeen"] in (NOW, UNKNOWN):
            return None
        return epoch(st["lastSeen"])


class Job:
    def __init__(self, jid, tenant, op, params, flt, devices, created, timeout):
        self.id, self.tenant, self.op, self.params = jid, tenant, op, params
        self.filter = flt
        self.state = "in_progress"
        self.devices = {d: {"state": "queued", "progress": 0, "message": None}
                        for d in devices}
        self.created = created
        self.deadline = epoch(created) + timeout
        self.ignored = 0  # reports on it of its tenant that changed nothing
        # When every device was done (completion is due then).
        self.done_at = None if devices else epoch(created)

    def open(self):
        return [d for d, v in self.devices.items()
                if v["state"] in ("queued", "in_progress")]


# ---------------------------------------------------------------- the test

class Monkey:
    def __init__(self, p, r, seed, mqdir):
        self.p, self.r, self.seed, self.mqdir = p, r, seed, mqdir
        self.devs = {t: {} for t in TENANTS}
        self.keys = {t: "key-%s-%d" % (t, seed) for t in TENANTS}
        self.readers = {}
        self.jobs = {}  # id -> Job
        self.started = time.time()
        self.counts = {}
        self.mq = None
        self.sync_n = 0
        self.delta_seen = {}  # (tenant, id) -> [(topic, payload)]
        self.ws = {}  # tenant -> a WebSocket client of kind status
        # (tenant, id) -> the status items streamed, as (event, status,
        # online) and, in the model, whether apid's timer made it.
        self.ws_want, self.ws_got = {}, {}
        # Job reports apid heard since it started, as its /metrics counts.
        self.reports = {"applied": 0, "ignored": 0}

    # -- plumbing
    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def dev(self, t, i):
        return self.devs[t].setdefault(i, Dev())

    def req(self, tenant, method, path, body=None, key=None):
        hdr = {"Authorization": "Bearer " + (key or self.keys[tenant])}
        if key == "":
            hdr = {}
        t0 = time.time()
        st, _, d = self.p.http(method, path, body, headers=hdr)
        return st, d, t0, time.time()

    def error(self, st, d, want_st, code, what):
        check(st == want_st, "%s -> %d (got %d %s)" % (what, want_st, st,
                                                       str(d)[:300]))
        e = d.get("error") if isinstance(d, dict) else None
        check(isinstance(e, dict) and all(isinstance(e.get(k), str) for k in
                                          ("code", "message", "where"))
              and (code is None or e["code"] == code),
              "%s: the error body {code %s, message, where} (got %s)"
              % (what, code, str(d)[:300]))

    def stamp(self, ts, t0, t1, what):
        """A time apid chose while the test waited from t0 to t1."""
        ok = isinstance(ts, str) and t0 - 0.01 <= epoch(ts) <= t1 + 0.01
        if not ok:
            check(False, "%s: time %s within [%.3f, %.3f]" % (what, ts, t0, t1))

    # -- the model's appends
    def predict(self, t, i, events):
        """(state, log, seq) after events, each {"type", "data"} at NOW,
        or Refused; the model is not changed."""
        d = self.dev(t, i)
        st, evs, seq = d.state, list(d.events), d.seq
        for e in events:
            if e["type"] == "provisioned" and st is not None \
                    and st["status"] != "decommissioned":
                raise Refused("exists")
            if e["type"] != "provisioned" and st is None:
                raise Refused("not found")
            st = fold(st, e["type"], e["data"], NOW)
            if e["type"] == "heartbeat" and len(evs) >= 2 and \
                    evs[-1]["type"] == evs[-2]["type"] == "heartbeat":
                evs.pop()  # a run of heartbeats keeps its first and last
            seq += 1
            evs.append({"seq": seq, "type": e["type"],
                        "data": copy.deepcopy(e["data"]), "ts": NOW})
        if st is not None and depth(st) > DEPTH_MAX:
            raise Refused("depth")
        return st, evs, seq

    def commit(self, t, i, pred, ts, timer=False):
        d = self.dev(t, i)
        st, evs, seq = pred
        ev = status_event(d.state, st) if st is not None else None
        if ev is not None:
            self.ws_want.setdefault((t, i), []).append(
                (ev, st["status"], st["online"], timer))
        d.state = subst(st, NOW, ts)
        d.events = [subst(e, NOW, ts) for e in evs]
        d.seq = seq

    def write(self, t, i, method, path, body, events, what, ok_status=200):
        """A REST change whose events the model knows: the answer must be
        the model's state (or its refusal)."""
        try:
            pred = self.predict(t, i, events)
            want = None
        except Refused as e:
            pred, want = None, str(e)
        st, got, t0, t1 = self.req(t, method, path, body)
        if pred is None:
            code = {"exists": 409, "not found": 404}.get(want, 400)
            self.error(st, got, code, None, "%s refused (%s)" % (what, want))
            self.count(what + " refused")
            return None
        check(st == ok_status, "%s -> %d (got %d %s)" % (what, ok_status, st,
                                                         str(got)[:300]))
        ts = got.get("updatedAt")
        if events:
            self.stamp(ts, t0, t1, what)
        else:
            ts = self.dev(t, i).state["updatedAt"]
        self.commit(t, i, pred, ts)
        self.same_state(t, i, {k: v for k, v in got.items()
                               if k != "credentials"}, what)
        self.count(what)
        return got

    def same_state(self, t, i, got, what):
        d = self.dev(t, i)
        for f in ("updatedAt", "lastSeen", "createdAt"):
            if d.state.get(f) == UNKNOWN and isinstance(got.get(f), str):
                d.state[f] = got[f]
        if not same(d.state, got):
            print("# model: %s\n# apid:  %s" % (json.dumps(d.state, sort_keys=True),
                                              json.dumps(got, sort_keys=True)))
            check(False, "%s: %s/%s as the model has it" % (what, t, i))

    # -- offline timer
    def timer_due(self, d):
        L = d.online_since()
        return None if L is None else L + OFFLINE_AFTER

    def frozen(self, t, i):
        """Might apid's offline timer, or not, have marked it offline?"""
        now = time.time()
        self.settle_dev(t, i, now)
        d = self.devs[t].get(i)
        due = self.timer_due(d) if d else None
        return due is not None and due - 0.5 <= now < max(due, self.started) + MARGIN

    def timer_event(self, t, i, ts):
        self.dev(t, i)  # the model's entry, made if it is new
        pred = self.predict(t, i, [{"type": "offline", "data": {
            "reason": "no heartbeat for %gs" % OFFLINE_AFTER}}])
        self.commit(t, i, pred, ts, timer=True)
        self.count("offline by the timer")

    def settle_dev(self, t, i, now):
        """The offline timer's event, in the model once it must have come."""
        d = self.devs[t].get(i)
        due = self.timer_due(d) if d else None
        if due is not None and now >= max(due, self.started) + MARGIN:
            self.timer_event(t, i, UNKNOWN)

    def settle_job(self, j, now):
        """A job's deadline and completion, once they must have come."""
        if j.state != "in_progress":
            return
        if j.open() and now >= max(j.deadline, self.started) + MARGIN:
            for dv in j.open():
                j.devices[dv]["state"] = "timed_out"
            j.done_at = j.deadline
        if not j.open() and j.done_at is not None and \
                now >= max(j.done_at, self.started) + MARGIN:
            j.state = "completed"

    def settle(self):
        """What apid's timers must have done by now, done in the model."""
        now = time.time()
        for t in TENANTS:
            for i in list(self.devs[t]):
                self.settle_dev(t, i, now)
        for j in self.jobs.values():
            self.settle_job(j, now)

    def resolve(self, t, i, got):
        """A device the timer may or may not have taken offline: apid's
        state says which."""
        d = self.devs[t].get(i)
        if d is None or d.state is None or not d.state["online"] or \
                not isinstance(got, dict) or got.get("online") is not False:
            return
        if self.timer_due(d) is not None and time.time() >= self.timer_due(d) - 0.5:
            self.timer_event(t, i, got.get("updatedAt", UNKNOWN))

    # -- MQTT
    def prefix(self, t, i):
        return "devices/%s" % i if t == "default" else "tenants/%s/devices/%s" % (t, i)

    def pump(self, wait=0.0):
        for topic, payload in self.mq.messages(wait):
            f = topic.split("/")
            if f[0] == "tenants":
                t, f = f[1], f[2:]
            else:
                t = "default"
            i = f[1]
            self.delta_seen.setdefault((t, i), []).append(
                ("/".join(f[2:]), json.loads(payload)))

    def published(self, what):
        """Every message the model expects apid to have published has come,
        and nothing else."""
        deadline = time.time() + 10
        want = {(t, i): d.commands for t in TENANTS for i, d in self.devs[t].items()
                if d.commands}
        while True:
            self.pump(0.02)
            got = {k: v for k, v in self.delta_seen.items() if v}
            if all(len(got.get(k, [])) >= len(v) for k, v in want.items()) \
                    or time.time() > deadline:
                break
        for k in set(want) | set(got):
            if sorted(json.dumps(x, sort_keys=True) for x in got.get(k, [])) != \
                    sorted(json.dumps(x, sort_keys=True) for x in want.get(k, [])):
                print("# apid published %s\n# model wants   %s" % (got.get(k), want.get(k)))
                check(False, "%s: the MQTT messages to %s/%s" % (what, k[0], k[1]))

    def sync(self):
        """Wait until apid has handled every MQTT message published before:
        a shadow report of the sync device, published after them, shows."""
        deadline = time.time() + 20
        while time.time() < deadline:
            self.sync_n += 1
            self.mq.publish("devices/%s/shadow/reported" % SYNC,
                            json.dumps({"state": {"n": self.sync_n}}), qos=1)
            until = time.time() + 1.0
            while time.time() < until:
                st, sh, _, _ = self.req("default", "GET",
                                        "/api/devices/%s/shadow" % SYNC)
                if st == 200 and sh["reported"].get("n") == self.sync_n:
                    return
                self.pump(0.02)
        check(False, "apid handles MQTT (the sync device's report shows)")

    # -- steps
    def pick(self):
        """A tenant and a device id not frozen by a pending timer; mostly
        one that is registered (live, or now and then decommissioned)."""
        r = self.r
        known = [(t, i) for t in TENANTS for i in IDS
                 if self.devs[t].get(i) and self.devs[t][i].state is not None]
        for _ in range(20):
            if known and r.random() < 0.75:
                t, i = r.choice(known)
                if not self.devs[t][i].live() and r.random() < 0.6:
                    continue
            else:
                t, i = r.choice(TENANTS), r.choice(IDS)
            if not self.frozen(t, i):
                return t, i
        return None, None

    def value(self, depth_=0):
        r = self.r
        x = r.random()
        if x < 0.3:
            return r.choice(["warehouse-a", "warehouse-b", "n\u00e4he", "", "x y"])
        if x < 0.5:
            return r.randint(-5, 5)
        if x < 0.6:
            return r.choice([0.5, -2.75, 1e-3, 3.25])
        if x < 0.7:
            return r.random() < 0.5
        if x < 0.8 and depth_ < 3:
            return {r.choice("abc"): self.value(depth_ + 1) for _ in range(r.randint(0, 2))}
        if x < 0.85 and depth_ < 3:
            return [self.value(depth_ + 1) for _ in range(r.randint(0, 2))]
        return "v%d" % r.randint(0, 3)

    def meta(self, nulls=False):
        r = self.r
        m = {}
        for _ in range(r.randint(0, 3)):
            k = r.choice(["location", "model", "floor", "rack", "k-1"])
            if k == "location" and r.random() < 0.8:
                m[k] = r.choice(["warehouse-a", "warehouse-b", "warehouse-c"])
            elif nulls and r.random() < 0.25:
                m[k] = None
            else:
                m[k] = self.value()
        if r.random() < 0.04:  # about the 64-level bound of a state
            n = r.choice([61, 62, 63, 64])
            v = 1
            for _ in range(n):
                v = {"a": v}
            m["deep"] = v
        return m

    def name_list(self):
        r = self.r
        pool = ["cold", "hot", "a", "b.c", "line-1", "line-2"]
        v = [r.choice(pool) for _ in range(r.randint(0, 3))]
        if r.random() < 0.05:
            v.append(r.choice(["a/b", "", 5, "x" * 65, None]))
        if r.random() < 0.02:
            return r.choice(["cold", {"a": 1}, None])
        return v

    def a_sensor(self):
        r = self.r
        s = {"name": r.choice(["t", "hum", "p1"])}
        for f in ("type", "unit", "calibrationDate"):
            if r.random() < 0.5:
                s[f] = r.choice(["temperature", "C", "2024-01-01"])
        if r.random() < 0.6:
            s["min"] = r.choice([-40, 0, 0.5])
        if r.random() < 0.6:
            s["max"] = r.choice([85, 100.25, -50])
        if r.random() < 0.1:
            s[r.choice(["unit", "min", "name"])] = r.choice([5, "x", None, "a/b"])
        if r.random() < 0.1:
            s["extra"] = "dropped"
        return s

    def step_register(self, t, i):
        r = self.r
        gone = [(t, i) for t in TENANTS for i, d in sorted(self.devs[t].items())
                if d.state is not None and not d.live() and not self.frozen(t, i)]
        free = [(t, i) for t in TENANTS for i in IDS
                if (self.devs[t].get(i) is None or self.devs[t][i].state is None)
                and (t, i) != ("default", "svc")]
        if gone and r.random() < 0.3:
            t, i = r.choice(gone)  # registered again
        elif free and self.devs[t].get(i) and self.devs[t][i].live() and r.random() < 0.7:
            t, i = r.choice(free)  # mostly not one that is taken
        d = self.dev(t, i)
        body = {"deviceId": i, "type": r.choice(["temperature", "sensor", "valve"])}
        if r.random() < 0.7:
            body["metadata"] = self.meta()
        if r.random() < 0.5:
            body["tags"] = self.name_list()
        if r.random() < 0.3:
            body["groups"] = self.name_list()
        if r.random() < 0.3:
            body["sensors"] = [self.a_sensor() for _ in range(r.randint(0, 3))]
        x = r.random()
        if x < 0.05:
            body["type"] = r.choice(["", 5, None])
        elif x < 0.08:
            body["metadata"] = r.choice([[1], "m", None])
        elif x < 0.10:
            body["sensors"] = {"name": "t"}
        elif x < 0.12:
            body["unknown"] = "ignored"
        if r.random() < 0.05:
            bad = r.choice(["a/b", "", "register", "batch", "x" * 65, "..", 7, "d\u00e9"])
            st, got, _, _ = self.req(t, "POST", "/api/devices/register",
                                     dict(body, deviceId=bad))
            self.error(st, got, 400, "bad_request", "registration of id %r" % bad)
            self.count("register: bad id")
            return
        if r.random() < 0.03:
            st, got, _, _ = self.req(t, "POST", "/api/devices/register",
                                     r.choice(["{bad", "[1]", '"s"', ""]))
            self.error(st, got, 400, "invalid_body", "registration, not an object")
            self.count("register: not JSON")
            return
        if t == "default" and i == "svc":
            st, got, _, _ = self.req(t, "POST", "/api/devices/register", body)
            self.error(st, got, 409, "conflict",
                       "registration of the broker's service account svc")
            self.count("register: service account")
            return
        if t in QUOTA and not d.live() and \
                sum(1 for x in self.devs[t].values() if x.live()) >= QUOTA[t]:
            st, got, _, _ = self.req(t, "POST", "/api/devices/register", body)
            self.error(st, got, 403, "quota_exceeded", "registration of %s/%s over the "
                       "tenant's devices quota" % (t, i))
            check(got["error"].get("quota") == "devices", "the refusal names the devices quota")
            self.count("register: over quota")
            return
        self.do_register(t, i, body)

    def do_register(self, t, i, body):
        """Register (again) with body, as the model has it."""
        d = self.dev(t, i)
        data = {k: v for k, v in body.items() if k in (
            "deviceId", "type", "metadata", "tags", "groups", "sensors")}
        again = d.state is not None
        got = self.write(t, i, "POST", "/api/devices/register", body,
                         [{"type": "provisioned", "data": data}],
                         "register" + (" again" if again else ""), 201)
        if got is None:
            return
        c = got.get("credentials") or {}
        user = i if t == "default" else "%s@%s" % (i, t)
        check(c.get("username") == user and isinstance(c.get("password"), str)
              and c.get("topicPrefix") == self.prefix(t, i)
              and c.get("telemetryTopic") == self.prefix(t, i) + "/telemetry",
              "registration of %s/%s gives its MQTT credentials" % (t, i))
        d.user, d.password = user, c["password"]
        if again:  # a new device: its shadow starts empty
            d.desired, d.reported, d.dv, d.rv, d.shadow_at = {}, {}, 0, 0, None
        return got

    def step_patch(self, t, i):
        r = self.r
        d = self.dev(t, i)
        body = {}
        for _ in range(r.randint(0, 4)):
            k = r.choice(["type", "metadata", "metadata", "tags", "groups",
                          "firmware", "status"])
            if k == "type":
                body[k] = r.choice(["sensor", "valve", "", 3])
            elif k == "metadata":
                body[k] = self.meta(nulls=True)
                if r.random() < 0.05:
                    body[k] = r.choice(["x", [1]])
            elif k in ("tags", "groups"):
                body[k] = self.name_list()
            elif k == "firmware":
                body[k] = r.choice(["2.1.0", "3.0", {"version": "4.0", "url": "u"},
                                    {"version": ""}, ""])
            else:
                body[k] = r.choice(["active", "active", "provisioned"])
        if r.random() < 0.03:
            body[r.choice(["colour", "online", "deviceId"])] = "x"
        if d.state is None:
            st, got, _, _ = self.req(t, "PATCH", "/api/devices/" + quote(i), body)
            self.error(st, got, 404, "not_found", "PATCH of unknown %s/%s" % (t, i))
            self.count("patch: unknown device")
            return
        # s_patch_events: the body, key by key, as events.
        events, upd = [], {}
        cur = d.state
        for k, v in body.items():
            if k in ("type", "tags", "groups"):
                upd[k] = v
            elif k == "metadata" and isinstance(v, dict):
                rest = dict(v)
                loc = v.get("location")
                if isinstance(loc, str):
                    del rest["location"]
                    now = cur["metadata"].get("location")
                    if not isinstance(now, str) or now != loc:
                        events.append({"type": "location_updated",
                                       "data": {"location": loc}})
                if rest:
                    upd["metadata"] = rest
            elif k == "firmware" and isinstance(v, (str, dict)):
                events.append({"type": "firmware_updated", "data":
                               {"version": v} if isinstance(v, str) else v})
            elif k == "status" and v == "active":
                if cur["status"] != "active":
                    events.insert(0, {"type": "activated", "data": {}})
            else:
                st, got, _, _ = self.req(t, "PATCH", "/api/devices/" + quote(i), body)
                self.error(st, got, 400, "bad_request", "PATCH with field %s" % k)
                self.count("patch: bad field")
                return
        if upd:
            events.append({"type": "updated", "data": upd})
        self.write(t, i, "PATCH", "/api/devices/" + quote(i), body, events, "patch")

    def step_sensor(self, t, i):
        r = self.r
        path = "/api/devices/%s/sensors" % quote(i)
        if r.random() < 0.6:
            s = self.a_sensor()
            if self.dev(t, i).state is None:
                st, got, _, _ = self.req(t, "POST", path, s)
                self.error(st, got, 404, "not_found", "sensor of unknown %s/%s" % (t, i))
                return
            self.write(t, i, "POST", path, s,
                       [{"type": "sensor_added", "data": {"sensor": s}}], "sensor added")
        else:
            d = self.dev(t, i)
            have = [x["name"] for x in d.state["sensors"]] if d.state else []
            n = r.choice(have) if have and r.random() < 0.7 else \
                r.choice(["t", "hum", "p1", "none"])
            self.write(t, i, "DELETE", path + "/" + n,
                       None, [{"type": "sensor_removed", "data": {"name": n}}],
                       "sensor removed")

    def step_presence(self, t, i):
        """POST /api/devices/{id}/events: heartbeat, online, offline."""
        r = self.r
        kind = r.choice(["heartbeat"] * 4 + ["online", "offline"])
        path = "/api/devices/%s/events" % quote(i)
        if r.random() < 0.04:
            st, got, _, _ = self.req(t, "POST", path, {"type": r.choice(["reboot", 5])})
            self.error(st, got, 400, "bad_request", "a presence event of no known type")
            return
        d = self.dev(t, i)
        events = [{"type": kind, "data": {}}]
        if d.state is not None and d.state["status"] == "provisioned" and kind != "offline":
            events.insert(0, {"type": "activated", "data": {}})
        self.write(t, i, "POST", path, {"type": kind}, events, "rest " + kind)

    def step_decommission(self, t, i):
        """Decommissioning ends the device's entries in jobs still under
        way: each becomes removed (its progress kept, the message says
        why), and the device is sent the job's cancel command."""
        d = self.dev(t, i)
        ended = [j for j in self.jobs.values() if j.tenant == t and
                 j.state == "in_progress" and i in j.open()]
        if any(self.job_frozen(j) for j in ended):
            return  # the deadline may be timing the entry out now
        got = self.write(t, i, "DELETE", "/api/devices/" + quote(i), None,
                         [{"type": "decommissioned", "data": {}}], "decommission")
        if got is None:
            return
        d.user = d.password = None
        for j in ended:
            j.devices[i]["state"] = "removed"
            j.devices[i]["message"] = "device decommissioned"
            if not j.open():
                j.done_at = time.time()
            d.commands.append(("commands/cancel", {
                "jobId": j.id, "operation": "cancel", "reason": "device decommissioned"}))
            self.count("job entry removed")
        if ended:
            self.published("decommission")
            for j in ended:
                if not self.job_frozen(j):
                    self.check_job(j)

    def step_get(self, t, i):
        self.check_device(t, i)

    def check_device(self, t, i):
        d = self.devs[t].get(i)
        path = "/api/devices/" + quote(i)
        st, got, _, _ = self.req(t, "GET", path)
        if d is None or d.state is None:
            self.error(st, got, 404, "not_found", "GET of unknown %s/%s" % (t, i))
            for sub in ("/events", "/shadow"):
                st, got, _, _ = self.req(t, "GET", path + sub)
                self.error(st, got, 404, "not_found", "GET %s of unknown %s/%s" % (sub, t, i))
            return
        check(st == 200, "GET %s/%s -> 200 (got %d)" % (t, i, st))
        self.resolve(t, i, got)
        self.same_state(t, i, got, "GET")
        st, rep, _, _ = self.req(t, "GET", path + "?replay=1")
        check(st == 200 and same(rep, got), "%s/%s: the replay of the log is the state"
              % (t, i))
        self.check_events(t, i)
        self.check_shadow(t, i)

    def check_events(self, t, i, after=0, limit=None):
        d = self.dev(t, i)
        q = "?after=%d" % after + ("&limit=%d" % limit if limit else "")
        st, got, _, _ = self.req(t, "GET", "/api/devices/%s/events%s" % (quote(i), q))
        check(st == 200 and got.get("deviceId") == i, "events of %s/%s" % (t, i))
        want = [e for e in d.events if e["seq"] > after][:limit or 1000]
        evs = got["events"]
        ok = len(evs) == len(want)
        for w, g in zip(want, evs):
            if w["ts"] == UNKNOWN and isinstance(g.get("ts"), str):
                w["ts"] = g["ts"]
            ok = ok and same({k: g.get(k) for k in w}, w) and \
                isinstance(g.get("tsNs"), int) and \
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(g["tsNs"] // 10**9)) + \
                ".%03dZ" % (g["tsNs"] // 10**6 % 1000) == g["ts"]
        if not ok:
            print("# model: %s\n# apid:  %s" % (json.dumps(want), json.dumps(evs)))
            check(False, "the event log of %s/%s as the model has it" % (t, i))
        self.count("events checked")

    def step_events(self, t, i):
        r = self.r
        d = self.devs[t].get(i)
        if d is None or d.state is None:
            st, got, _, _ = self.req(t, "GET", "/api/devices/%s/events" % quote(i))
            self.error(st, got, 404, "not_found", "events of unknown %s/%s" % (t, i))
            return
        if r.random() < 0.1:
            bad = r.choice(["after=-1", "limit=0", "limit=x", "limit=10001"])
            st, got, _, _ = self.req(t, "GET", "/api/devices/%s/events?%s" % (quote(i), bad))
            self.error(st, got, 400, "bad_request", "events?%s" % bad)
            return
        self.check_events(t, i, r.randint(0, d.seq + 1), r.choice([None, 1, 2, 5]))

    # -- lists
    def matches(self, st, f, meta):
        if "status" in f:
            if st["status"] != f["status"]:
                return False
        elif st["status"] == "decommissioned":
            return False
        if "type" in f and st["type"] != f["type"]:
            return False
        if "tag" in f and f["tag"] not in st["tags"]:
            return False
        if "group" in f and f["group"] not in st["groups"]:
            return False
        if "online" in f and st["online"] != (f["online"] == "true"):
            return False
        for k, v in meta.items():
            if st["metadata"].get(k) != v or not isinstance(st["metadata"].get(k), str):
                return False
        return True

    def a_filter(self, online_ok=True):
        r = self.r
        f, meta = {}, {}
        for _ in range(r.randint(0, 3)):
            k = r.choice(["type", "status", "tag", "group", "online", "meta"])
            if k == "type":
                f[k] = r.choice(["temperature", "sensor", "valve"])
            elif k == "status":
                f[k] = r.choice(["provisioned", "active", "decommissioned"])
            elif k in ("tag", "group"):
                f[k] = r.choice(["cold", "hot", "a", "line-1"])
            elif k == "online" and online_ok:
                f[k] = r.choice(["true", "false"])
            elif k == "meta":
                meta[r.choice(["location", "model", "k-1"])] = r.choice(
                    ["warehouse-a", "warehouse-b", "v1", "v2"])
        return f, meta

    def step_list(self, t=None, limit=None, offset=0):
        r = self.r
        t = t or r.choice(TENANTS)
        frozen = any(self.frozen(t, i) for i in self.devs[t])
        f, meta = self.a_filter(online_ok=not frozen)
        q = dict(f)
        q.update({"metadata." + k: v for k, v in meta.items()})
        if limit is None and r.random() < 0.5:
            limit = r.choice([1, 2, 3])
            offset = r.randint(0, 4)
        if limit:
            q["limit"], q["offset"] = limit, offset
        if r.random() < 0.04:
            bad = r.choice(["limit=0", "limit=x", "limit=1001", "offset=-1",
                            "online=maybe", "metadata.=x", "metadata.a%2Fb=x"])
            st, got, _, _ = self.req(t, "GET", "/api/devices?" + bad)
            self.error(st, got, 400, "bad_request", "list with %s" % bad)
            return
        path = "/api/devices?" + "&".join("%s=%s" % (k, quote(str(v))) for k, v in q.items())
        st, got, _, _ = self.req(t, "GET", path)
        check(st == 200, "list %s -> 200 (got %d %s)" % (path, st, str(got)[:200]))
        for e in got["devices"]:
            self.resolve(t, e.get("deviceId"), e)
        want = sorted((i for i, d in self.devs[t].items()
                       if d.state is not None and self.matches(d.state, f, meta)))
        page = want[offset:offset + (limit or 100)]
        ok = got["total"] == len(want) and [e["deviceId"] for e in got["devices"]] == page
        if ok:
            for e in got["devices"]:
                self.same_state(t, e["deviceId"], e, "list " + path)
        else:
            print("# model: %d %s\n# apid:  %d %s" % (len(want), page, got["total"],
                                                      [e["deviceId"] for e in got["devices"]]))
            check(False, "%s of %s as the model has it" % (path, t))
        check(got["limit"] == (limit or 100) and got["offset"] == offset,
              "the list says its limit and offset")
        self.count("list")

    # -- shadow
    def shadow_of(self, d, i):
        return {"deviceId": i, "desired": d.desired, "reported": d.reported,
                "version": {"desired": d.dv, "reported": d.rv},
                "updatedAt": d.shadow_at, "delta": delta(d.desired, d.reported)}

    def check_shadow(self, t, i, got=None):
        d = self.dev(t, i)
        if got is None:
            st, got, _, _ = self.req(t, "GET", "/api/devices/%s/shadow" % quote(i))
            check(st == 200, "shadow of %s/%s -> 200" % (t, i))
        if d.shadow_at == UNKNOWN and isinstance(got.get("updatedAt"), str):
            d.shadow_at = got["updatedAt"]
        want = self.shadow_of(d, i)
        if i == SYNC:  # the sync reports: not the model's
            want["reported"], want["version"]["reported"] = got["reported"], got[
                "version"]["reported"]
            want["updatedAt"] = got["updatedAt"]
            want["delta"] = delta(d.desired, got["reported"])
        if not same(want, got):
            print("# model: %s\n# apid:  %s" % (json.dumps(want, sort_keys=True),
                                              json.dumps(got, sort_keys=True)))
            check(False, "the shadow of %s/%s as the model has it" % (t, i))

    def a_patch(self, lvl=0):
        r = self.r
        out = {}
        for _ in range(r.randint(1, 3)):
            k = r.choice(["led", "rate", "cfg", "mode", "blob"])
            x = r.random()
            if x < 0.2 or k == "blob":
                out[k] = None
            elif x < 0.4 and lvl < 2:
                out[k] = self.a_patch(lvl + 1)
            elif x < 0.6:
                out[k] = r.randint(0, 3)
            elif x < 0.7:
                out[k] = r.choice([True, 0.5])
            else:
                out[k] = r.choice(["on", "off", "eco"])
        return out

    def step_shadow(self, t, i):
        r = self.r
        d = self.dev(t, i)
        patch = self.a_patch()
        x = r.random()
        body = {"desired": patch}
        if x < 0.03:
            body = r.choice([{"reported": patch}, {"desired": 5},
                             {"desired": patch, "x": 1}])
        elif x < 0.06:  # about the 64-level bound
            v = 1
            for _ in range(r.choice([63, 64, 65])):
                v = {"n": v}
            body = {"desired": v}
            patch = v
        elif x < 0.09:  # about the 64 KiB bound of a side
            base = len(compact(dict(d.desired, blob="")))
            body = {"desired": {"blob": "b" * (SIDE_MAX - base + r.choice([-1, 0, 1]))}}
            patch = body["desired"]
        path = "/api/devices/%s/shadow" % quote(i)
        st, got, t0, t1 = self.req(t, "PATCH", path, body)
        if not (isinstance(body.get("desired"), dict) and len(body) == 1) or \
                depth(patch) > DEPTH_MAX:
            self.error(st, got, 400, "bad_request", "shadow PATCH %s" % str(body)[:60])
            self.count("shadow: bad patch")
            return
        if d.state is None:
            self.error(st, got, 404, "not_found", "shadow PATCH of unknown %s/%s" % (t, i))
            return
        if d.state["status"] == "decommissioned":
            self.error(st, got, 409, "conflict", "shadow PATCH of decommissioned %s/%s"
                       % (t, i))
            self.count("shadow: decommissioned")
            return
        new = copy.deepcopy(d.desired)
        merge(new, patch)
        if len(compact(new)) > SIDE_MAX:
            self.error(st, got, 413, "payload_too_large", "shadow PATCH over 64 KiB")
            self.count("shadow: too large")
            return
        check(st == 200, "shadow PATCH of %s/%s -> 200 (got %d %s)" % (t, i, st, str(got)[:200]))
        self.stamp(got.get("updatedAt"), t0, t1, "shadow PATCH")
        d.desired, d.dv, d.shadow_at = new, d.dv + 1, got["updatedAt"]
        dl = delta(d.desired, d.reported)
        if dl:
            d.commands.append(("shadow/delta", {"version": d.dv, "state": dl}))
        self.check_shadow(t, i, got)
        self.published("shadow PATCH")
        self.count("shadow desired")

    def step_report(self, t, i):
        """A device reports its state on MQTT."""
        r = self.r
        d = self.dev(t, i)
        if r.random() < 0.5 and d.desired:
            patch = copy.deepcopy(delta(d.desired, d.reported)) or self.a_patch()
        else:
            patch = self.a_patch()
        x = r.random()
        payload = {"state": patch}
        if x < 0.1:
            payload = patch  # without "state": the whole message
        elif x < 0.15:
            payload = r.choice([[1], {"state": 5}, "nope"])
            patch = None
        self.mq.publish("%s/shadow/reported" % self.prefix(t, i),
                        payload if isinstance(payload, str) else json.dumps(payload), qos=1)
        self.sync()
        if patch is not None and d.live():
            new = copy.deepcopy(d.reported)
            merge(new, patch)
            if len(compact(new)) <= SIDE_MAX:
                d.reported, d.rv, d.shadow_at = new, d.rv + 1, UNKNOWN
        if d.state is not None:
            self.check_shadow(t, i)
        self.count("shadow reported")

    def step_mqtt_presence(self, t, i):
        r = self.r
        d = self.dev(t, i)
        what = r.choice(["heartbeat", "heartbeat", "status"])
        payload = r.choice(["online", "offline"]) if what == "status" else "{}"
        L = d.online_since()
        # apid records the heartbeat of a device online once its lastSeen
        # is HEARTBEAT_EVERY old when apid handles it, a little after it is
        # sent: near that age, what apid then shows decides.
        close = what == "heartbeat" and d.live() and L is not None and \
            HEARTBEAT_EVERY - 0.6 <= time.time() - L <= HEARTBEAT_EVERY + 0.3
        kind = None
        if d.live() and not close:
            st = d.state
            if what == "status":
                if payload == "online" and not st["online"]:
                    kind = "online"
                elif payload == "offline" and st["online"]:
                    kind = "offline"
            elif not st["online"] or L is None or time.time() - L > HEARTBEAT_EVERY:
                kind = "heartbeat"
        self.mq.publish("%s/%s" % (self.prefix(t, i), what), payload, qos=1)
        self.sync()
        if close:
            _, got, _, _ = self.req(t, "GET", "/api/devices/" + quote(i))
            if got.get("lastSeen") != d.state["lastSeen"]:
                kind = "heartbeat"
        if kind is not None:
            events = [{"type": kind, "data": {}}]
            if d.state["status"] == "provisioned" and kind != "offline":
                events.insert(0, {"type": "activated", "data": {}})
            self.commit(t, i, self.predict(t, i, events), UNKNOWN)
        self.check_device(t, i)
        self.count("mqtt " + (kind or "ignored"))

    # -- credentials and auth
    def step_credentials(self, t, i):
        d = self.devs[t].get(i)
        st, got, _, _ = self.req(t, "POST", "/api/devices/%s/credentials" % quote(i))
        if d is None or d.state is None:
            self.error(st, got, 404, "not_found", "credentials of unknown %s/%s" % (t, i))
        elif not d.live():
            self.error(st, got, 409, "conflict", "credentials of decommissioned %s/%s" % (t, i))
        else:
            c = got.get("credentials") or {}
            check(st == 201 and c.get("username") == d.user and c.get("password")
                  and c["password"] != d.password,
                  "credentials of %s/%s rotated (got %d)" % (t, i, st))
            d.password = c["password"]
            self.count("credentials rotated")

    def check_passwd(self):
        """DIR/passwd holds the static account and a line per device that
        is not decommissioned, whose password matches its hash."""
        users = {}
        with open(os.path.join(self.mqdir, "passwd")) as f:
            for line in f:
                if ":" in line:
                    u, h = line.strip().split(":", 1)
                    users[u] = h
        want = {d.user: d.password for t in TENANTS for d in self.devs[t].values()
                if d.live()}
        check(set(users) == set(want) | {"svc"}, "the broker's passwd lists svc and the "
              "devices not decommissioned (got %s, want %s)" % (sorted(users), sorted(want)))
        for u, pw in want.items():
            _, it, salt, dk = users[u].split("$")[1:]
            mine = hashlib.pbkdf2_hmac("sha512", pw.encode(), base64.b64decode(salt),
                                       int(it), 64)
            check(base64.b64encode(mine).decode() == dk, "%s's password matches its hash" % u)

    def step_auth(self, t, i):
        r = self.r
        x = r.random()
        if x < 0.5:
            method, path, body = r.choice([
                ("POST", "/api/devices/register", {"deviceId": i, "type": "t"}),
                ("PATCH", "/api/devices/" + i, {"tags": []}),
                ("DELETE", "/api/devices/" + i, None),
                ("PATCH", "/api/devices/%s/shadow" % i, {"desired": {"a": 1}})])
            st, got, _, _ = self.req(t, method, path, body, key=self.readers[t])
            self.error(st, got, 403, "forbidden", "a reader's %s %s" % (method, path))
            st, got, _, _ = self.req(t, "GET", "/api/devices/" + i, key=self.readers[t])
            check(st == (200 if self.dev(t, i).state else 404),
                  "a reader may GET %s/%s (got %d)" % (t, i, st))
        else:
            st, got, _, _ = self.req(t, "GET", "/api/devices/" + i, key="")
            self.error(st, got, 401, "unauthorized", "a GET without a key")
        self.count("auth refusals")

    # -- jobs
    def step_batch(self):
        r = self.r
        t = r.choice(TENANTS)
        frozen = any(self.frozen(t, i) for i in self.devs[t])
        f, meta = self.a_filter(online_ok=not frozen)
        flt = dict(f)
        for k, v in meta.items():
            flt[k if r.random() < 0.5 else "metadata." + k] = v
        op = r.choice(["update_firmware", "update_firmware", "reboot"])
        params = {"version": r.choice(["5.0", "5.1"])} if op == "update_firmware" else {}
        timeout = r.choice([3600, 3600, 1.5])
        body = {"operation": op, "filter": flt, "timeoutSeconds": timeout}
        if params or r.random() < 0.5:
            body["params"] = params
        if r.random() < 0.04:
            bad = r.choice([{"operation": "a/b"}, {"operation": "x", "filter": []},
                            {"operation": "x", "timeoutSeconds": 0.01},
                            {"operation": "x", "filter": {"type": 5}},
                            # as GET /api/devices refuses them
                            {"operation": "x", "filter": {"online": "yes"}},
                            {"operation": "x", "filter": {'a"b': "x"}},
                            {"operation": "x", "filter": {"metadata.": "x"}},
                            {"operation": "x", "filter": {"rack.x": "1"}}])
            st, got, _, _ = self.req(t, "POST", "/api/devices/batch", bad)
            self.error(st, got, 400, "bad_request", "batch %s" % bad)
            return
        self.do_batch(t, body, f, meta)

    def do_batch(self, t, body, f, meta):
        """POST /api/devices/batch; the job in the model, or None."""
        op, params, timeout = body["operation"], body.get("params", {}), body["timeoutSeconds"]
        if f.get("status") == "decommissioned":
            # A decommissioned device takes no jobs (it was sent the
            # command, and a report of it, or of its id registered again,
            # then moved the entry).
            st, got, _, _ = self.req(t, "POST", "/api/devices/batch", body)
            self.error(st, got, 400, "bad_request", "batch over decommissioned devices")
            self.count("batch: decommissioned refused")
            return None
        deadline = time.time() + 15
        while True:
            st, got, t0, t1 = self.req(t, "POST", "/api/devices/batch", body)
            if st != 503 or time.time() > deadline:
                break
            time.sleep(0.1)  # apid connecting to the broker again
        ids = sorted(i for i, d in self.devs[t].items()
                     if d.state is not None and self.matches(d.state, f, meta))
        check(st == 202, "batch -> 202 (got %d %s)" % (st, str(got)[:200]))
        self.stamp(got.get("createdAt"), t0, t1, "job createdAt")
        j = Job(got["jobId"], t, op, params, body["filter"], ids, got["createdAt"], timeout)
        self.jobs[j.id] = j
        check(abs(epoch(got["deadline"]) - j.deadline) < 0.002, "the job's deadline")
        self.check_job(j, got, counts_only=True)
        for i in ids:
            self.dev(t, i).commands.append(("commands/" + op, {
                "jobId": j.id, "operation": op, "params": params}))
        self.published("batch")
        self.count("jobs")
        return j

    def job_frozen(self, j):
        """Might a timer of apid's, or not, have changed the job?"""
        now = time.time()
        self.settle_job(j, now)
        if j.state != "in_progress":
            return False
        if j.open() and j.deadline - 0.5 <= now < max(j.deadline, self.started) + MARGIN:
            return True
        return not j.open() and j.done_at is not None and \
            now < max(j.done_at, self.started) + MARGIN

    def check_job(self, j, got=None, counts_only=False, state=None):
        self.settle()  # a full check takes a while: a deadline may pass
        if got is None:
            st, got, _, _ = self.req(j.tenant, "GET", "/api/jobs/%s%s" % (
                j.id, "?state=" + state if state else ""))
            check(st == 200, "GET job %s -> 200 (got %d)" % (j.id, st))
        if j.state == "in_progress" and not j.open() and got.get("state") == "completed":
            j.state = "completed"  # apid's timer completed it: its next tick
        counts = {s: 0 for s in JOB_STATES}
        for v in j.devices.values():
            counts[v["state"]] += 1
        want = {"jobId": j.id, "operation": j.op, "params": j.params,
                "filter": j.filter, "state": j.state, "createdAt": j.created,
                "counts": counts, "total": len(j.devices),
                "ignoredReports": j.ignored}
        g = {k: got.get(k) for k in want}
        ok = same(g, want)
        if not counts_only:
            devs = [{"deviceId": i, "state": v["state"], "progress": v["progress"]}
                    for i, v in sorted(j.devices.items()) if state in (None, v["state"])]
            for w, v in zip(devs, [j.devices[x["deviceId"]] for x in devs]):
                if v["message"] is not None:
                    w["message"] = v["message"]
            gd = [{k: v for k, v in x.items() if k != "updatedAt"}
                  for x in got.get("devices", [])]
            ok = ok and same(gd, devs)
        if not ok:
            print("# model: %s\n# apid:  %s" % (json.dumps(want, sort_keys=True),
                                              json.dumps(got, sort_keys=True)))
            check(False, "job %s as the model has it" % j.id)

    def pick_job(self, open_=False):
        """A job no timer of apid's may be changing now (one with devices
        still to report, when open_), or None."""
        jobs = [j for j in self.jobs.values() if not self.job_frozen(j)
                and (not open_ or j.open())]
        return self.r.choice(jobs) if jobs else None

    def step_progress(self):
        r = self.r
        j = None
        if r.random() < 0.3:
            # A report for an entry that decommissioning ended, from the
            # device, or from its id registered again.
            jobs = [j for j in self.jobs.values() if not self.job_frozen(j) and
                    any(v["state"] == "removed" for v in j.devices.values())]
            j = r.choice(jobs) if jobs else None
        j = j or self.pick_job(open_=r.random() < 0.8)
        if j is None:
            return
        removed = sorted(x for x, v in j.devices.items() if v["state"] == "removed")
        if not j.devices or r.random() < 0.1:
            i = r.choice(IDS)
        elif removed and r.random() < 0.5:
            i = r.choice(removed)
        elif j.open() and r.random() < 0.8:
            i = r.choice(sorted(j.open()))
        else:
            i = r.choice(sorted(j.devices))
        status = r.choice(["in_progress", "in_progress", "succeeded", "failed",
                           "queued", "bogus"])
        msg = {"status": status}
        if r.random() < 0.7:
            msg["progress"] = r.choice([0, 50, 33.5, 100, 150, -5, "x"])
        if r.random() < 0.5:
            msg["message"] = r.choice(["ok", "checksum mismatch"])
        t = j.tenant if r.random() < 0.9 else r.choice(TENANTS)
        self.do_report(j, t, i, msg)

    def do_report(self, j, t, i, msg):
        """Device t/i publishes msg on its topic of job j; whether it
        took, or None when it was not sent (a timer of apid's might be
        changing the device)."""
        r = self.r
        status = msg.get("status")
        d = self.devs[t].get(i)
        # Only an entry under way moves: one that is over (decommissioning
        # ended it, as it ended every entry of the registrations before the
        # device's current one) ignores the report, and the job counts it.
        takes = (t == j.tenant and j.state == "in_progress" and i in j.devices
                 and status in ("in_progress", "succeeded", "failed")
                 and (j.devices[i]["state"] == "queued" or
                      (j.devices[i]["state"] == "in_progress")))
        check(not takes or (d is not None and d.live()),
              "the model: an entry under way is of a device not decommissioned")
        fw = takes and status == "succeeded" and j.op == "update_firmware"
        if fw and self.frozen(t, i):
            return None
        self.mq.publish("%s/jobs/%s" % (self.prefix(t, i), j.id), json.dumps(msg), qos=1)
        self.sync()
        if not takes and t == j.tenant:
            j.ignored += 1
        self.reports["applied" if takes else "ignored"] += 1
        if takes:
            # A number is clamped to 0..100, none keeps the last, and a
            # succeeded device is at 100; a message stays until another.
            old = j.devices[i]
            p = msg.get("progress")
            p = (max(0, min(100, int(p))) if is_num(p) else old["progress"]) \
                if status != "succeeded" else 100
            j.devices[i] = {"state": status, "progress": p,
                            "message": msg.get("message", old["message"])}
            if not j.open():
                j.done_at = time.time()
        if fw:
            self.commit(t, i, self.predict(t, i, [{"type": "firmware_updated", "data": {
                "version": j.params["version"], "job": j.id}}]), UNKNOWN)
            self.check_device(t, i)
        if not self.job_frozen(j):
            self.check_job(j, state=r.choice([None, None, status]) if status in JOB_STATES
                           else None)
        self.count("job progress" if takes else "job progress ignored")
        if not takes and i in j.devices and j.devices[i]["state"] == "removed":
            self.count("job progress of a removed entry")
        return takes

    def step_cancel(self):
        r = self.r
        j = self.pick_job()
        if j is None:
            return
        t = j.tenant if r.random() < 0.9 else r.choice(TENANTS)
        st, got, _, _ = self.req(t, "POST", "/api/jobs/%s/cancel" % j.id)
        if t != j.tenant:
            self.error(st, got, 404, "not_found", "another tenant's job cancelled")
            return
        check(st == 200, "cancel -> 200 (got %d)" % st)
        for i in j.open():
            j.devices[i]["state"] = "cancelled"
            self.dev(t, i).commands.append(("commands/cancel", {
                "jobId": j.id, "operation": "cancel"}))
        if j.state == "in_progress":
            j.state = "cancelled"
        self.check_job(j, got, state="cancelled")
        self.published("cancel")
        self.count("job cancelled")

    def check_jobs(self):
        self.settle()
        for t in TENANTS:
            st, got, _, _ = self.req(t, "GET", "/api/jobs")
            mine = sorted((j for j in self.jobs.values() if j.tenant == t),
                          key=lambda j: (-epoch(j.created), j.id))
            ok = st == 200 and len(got["jobs"]) == len(mine)
            for g, j in zip(got.get("jobs", []), mine):
                ok = ok and g["jobId"] == j.id and g["operation"] == j.op and \
                    g["createdAt"] == j.created and (self.job_frozen(j) or g["state"] == j.state)
            if not ok:
                print("# model: %s" % [(j.id, j.op, j.state, j.created) for j in mine])
                check(False, "the jobs of %s as the model has them (got %s)" % (t, got))
        for j in self.jobs.values():
            if not self.job_frozen(j):
                self.check_job(j)
            other = [x for x in TENANTS if x != j.tenant][0]
            st, got, _, _ = self.req(other, "GET", "/api/jobs/" + j.id)
            self.error(st, got, 404, "not_found", "another tenant's job")

    # -- restarts
    # -- WebSocket status stream
    def ws_connect(self):
        for t in TENANTS:
            ws = WS(self.p.api_port, headers={
                "Authorization": "Bearer " + self.keys[t]}).start()
            ws.send_json({"op": "subscribe", "kinds": ["status"]})
            m = ws.get()
            check(m is not None and m.get("type") == "subscribed",
                  "%s subscribes to kind status (%s)" % (t, m))
            self.ws[t] = ws

    def ws_drain(self, wait):
        """What the clients were streamed, after waiting up to wait for the
        first of it."""
        for t, ws in self.ws.items():
            while True:
                m = ws.get(timeout=wait)
                wait = 0.001
                if m is None:
                    break
                for it in m.get("items", []) if m.get("type") == "status" else []:
                    self.ws_got.setdefault((t, it["device"]), []).append(
                        (it["event"], it["status"], it["online"]))

    def ws_match(self, k):
        """Do the items of device k match the model's? Those of apid's
        timer may be missing (made while no client was connected, around a
        restart); one the model has not made yet, while the timer may or
        may not have fired, is taken into the model."""
        got, want = self.ws_got.get(k, []), self.ws_want.get(k, [])
        j = 0
        for w in want:
            if j < len(got) and got[j] == w[:3]:
                j += 1
            elif not w[3]:
                return False
        if j == len(got) - 1 and got[j][0] == "offline" and self.frozen(*k):
            self.timer_event(k[0], k[1], UNKNOWN)
            return self.ws_match(k)
        return j == len(got)

    def ws_check(self, what):
        deadline = time.time() + 5
        while True:
            self.ws_drain(0.05)
            bad = [k for k in set(self.ws_want) | set(self.ws_got) if not self.ws_match(k)]
            if not bad or time.time() > deadline:
                break
        for k in bad:
            print("# apid streamed %s\n# model wants   %s" % (self.ws_got.get(k),
                                                            self.ws_want.get(k)))
        check(not bad, "%s: the status items of %s as the model has them" % (what, bad))
        self.count("status streams checked")

    def restart(self, kill):
        self.settle()
        self.ws_check("before a restart")
        if kill:
            proc = self.p.procs.pop("apid")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            self.p.stop_one("apid")
        self.p.start_one("apid")
        self.started = time.time()
        self.reports = {"applied": 0, "ignored": 0}
        self.ws_drain(0.05)  # the old clients' last items, if any
        for ws in self.ws.values():
            ws.close()
        self.ws_connect()
        self.sync()  # apid is on the broker again (a delta it cannot send is lost)
        self.count("kill -9" if kill else "clean restart")
        self.check_all("after a %s" % ("kill -9" if kill else "clean restart"))

    def check_all(self, what):
        log("full check", what)
        self.settle()
        for t in TENANTS:
            for i in IDS + ([SYNC] if t == "default" else []):
                if not self.frozen(t, i):
                    self.check_device(t, i)
            self.step_list(t, limit=1000)
        self.check_jobs()
        self.check_metrics()
        self.check_passwd()
        self.ws_check(what)
        self.count("full checks")

    def check_metrics(self):
        """apid's /metrics counts the job reports it applied and ignored."""
        st, _, text = self.p.http("GET", "/metrics", headers={
            "Authorization": "Bearer " + self.keys["default"]})
        text = text.decode() if isinstance(text, bytes) else str(text)
        got = {}
        for line in text.splitlines():
            if line.startswith("sensorpipe_apid_job_reports_total{result="):
                got[line.split('"')[1]] = int(line.split()[-1])
        check(st == 200 and got == self.reports, "/metrics: job reports %s (got %d %s)"
              % (self.reports, st, got))

    def step_check(self):
        self.check_all("now and then")


def test():
    need("apid", "mosquitto")
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    r = random.Random(seed)
    p = Platform(daemons=("apid",))
    p.start_broker()
    mqdir = os.path.join(p.dir, "mqauth")
    os.makedirs(mqdir)
    with open(os.path.join(mqdir, "passwd.static"), "w") as f:
        f.write("svc:$7$1000$c2FsdA==$aGFzaA==\n")
    keys = os.path.join(p.dir, "keys")
    quotas = os.path.join(p.dir, "quotas.json")
    with open(quotas, "w") as f:
        json.dump({"tenants": {t: {"devices": n} for t, n in QUOTA.items()}}, f)
    m = Monkey(p, r, seed, mqdir)
    write_keys(keys, {"admin-" + t: (t, m.keys[t]) for t in TENANTS})
    p.extra = {"apid": ["--keys", keys, "--key-rate", "100000", "--key-burst", "100000",
                        "--mqtt-auth", mqdir, "--mqtt-host", "127.0.0.1",
                        "--mqtt-port", str(p.mqtt_port),
                        "--device-offline-after", "%gs" % OFFLINE_AFTER,
                        "--quotas", quotas,
                        # no daemon behind apid: /metrics asks them all
                        "--timeout", "300ms"]}
    p.start()
    try:
        run(m, seed)
    except BaseException:
        print("seed %d failed" % seed)
        for name in p.logs:
            sys.stdout.write("--- %s log (tail) ---\n%s\n" % (name, p.log(name)[-3000:]))
        p.kill_all()
        raise
    p.stop(secrets=[m.keys[t] for t in TENANTS] + list(m.readers.values()) +
           [d.password for t in TENANTS for d in m.devs[t].values() if d.password])


def focused(m):
    """A job's entries outlive no registration of their device: acme/d0
    is in a firmware job (in progress at 40 %) and a reboot job (queued)
    when it is decommissioned; the device's late reports, and then those
    of its id registered again, change neither job, and append no
    firmware event to the new registration's log (each did: the old job's
    state applied to the new device). A job of the new registration takes
    its reports. Returns the jobs whose completion run() checks at its end."""
    t, i = "acme", "d0"
    body = {"deviceId": i, "type": "focus"}
    m.do_register(t, i, body)

    def batch(op, params):
        j = m.do_batch(t, {"operation": op, "filter": {"type": "focus"},
                           "params": params, "timeoutSeconds": 3600}, {"type": "focus"}, {})
        check(j is not None and list(j.devices) == [i], "a %s job over %s/%s" % (op, t, i))
        return j

    fw = batch("update_firmware", {"version": "9.0"})
    check(m.do_report(fw, t, i, {"status": "in_progress", "progress": 40,
                                 "message": "downloading"}),
          "the first registration's progress applies")
    boot = batch("reboot", {})
    m.step_decommission(t, i)
    check(fw.devices[i]["state"] == boot.devices[i]["state"] == "removed",
          "decommissioning removed both entries")
    check(m.do_report(boot, t, i, {"status": "in_progress"}) is False,
          "a late report of the decommissioned device is ignored")
    m.do_register(t, i, body)
    check(m.do_report(fw, t, i, {"status": "succeeded", "progress": 100}) is False,
          "a report of the old firmware job, from the id registered again, is ignored")
    m.check_device(t, i)  # no firmware_updated in the new registration's log
    check(m.do_report(boot, t, i, {"status": "succeeded"}) is False,
          "a report of the old reboot job, from the id registered again, is ignored")
    m.check_job(fw)
    m.check_job(boot)
    new = batch("update_firmware", {"version": "9.1"})
    check(m.do_report(new, t, i, {"status": "succeeded"}),
          "a job of the new registration takes its report")
    m.check_device(t, i)  # firmware 9.1, by that job
    check(m.devs[t][i].state["firmware"] == "9.1", "the new registration's firmware")
    check(m.reports == {"applied": 2, "ignored": 3}, "the model counted the reports")
    m.check_metrics()
    check("jobs: acme/d0: report on job %s ignored: its entry is over (removed) "
          "(1 ignored since start)" % boot.id in m.p.log("apid"),
          "apid's log notes the first report ignored, and why")
    return [fw, boot, new]


def run(m, seed):
    p = m.p
    for t in TENANTS:
        st, got, _, _ = m.req(t, "POST", "/api/keys", {"name": "reader-" + t, "role": "reader"})
        check(st == 201, "a reader key of %s" % t)
        m.readers[t] = got["key"]
    m.ws_connect()
    m.mq = Mq(p.mqtt_port, "devmodel-%d" % seed)
    check(m.mq.rc == 0, "the test's MQTT connection")
    m.mq.subscribe(["devices/+/commands/#", "tenants/+/devices/+/commands/#",
                    "devices/+/shadow/delta", "tenants/+/devices/+/shadow/delta"])
    got = m.write("default", SYNC, "POST", "/api/devices/register",
                  {"deviceId": SYNC, "type": "sync"},
                  [{"type": "provisioned", "data": {"deviceId": SYNC, "type": "sync"}}],
                  "register", 201)
    m.dev("default", SYNC).user = SYNC
    m.dev("default", SYNC).password = got["credentials"]["password"]
    m.sync()
    done = focused(m)
    # (step, weight); those of one device get a tenant and an id no timer
    # of apid's may be changing now.
    one = [(m.step_register, 12), (m.step_patch, 14), (m.step_sensor, 6),
           (m.step_presence, 10), (m.step_decommission, 4), (m.step_get, 8),
           (m.step_events, 5), (m.step_shadow, 8), (m.step_report, 4),
           (m.step_mqtt_presence, 4), (m.step_credentials, 2), (m.step_auth, 2)]
    other = [(m.step_list, 6), (m.step_batch, 3), (m.step_progress, 6),
             (m.step_cancel, 1)]
    fns = [(f, k) for k, steps in enumerate((other, one)) for f, w in steps
           for _ in range(w)]
    start = time.time()
    n = 0
    while n < STEPS and time.time() - start < SECONDS:
        n += 1
        m.settle()
        x = m.r.random()
        if x < 0.006:
            m.restart(kill=True)
        elif x < 0.010:
            m.restart(kill=False)
        elif x < 0.02:
            m.step_check()
        else:
            f, of_one = m.r.choice(fns)
            log(n, f.__name__)
            if not of_one:
                f()
                continue
            t, i = m.pick()
            if t is not None:
                f(t, i)
    m.restart(kill=True)
    for j in done:  # nothing open since focused(): apid completed them
        deadline = time.time() + 10
        while m.job_frozen(j) and time.time() < deadline:
            time.sleep(0.1)  # MARGIN after the restart
        m.check_job(j)
        check(j.state == "completed", "focused job %s completed" % j.id)
    print("seed %d: %d steps in %.1f s; %s" % (
        seed, n, time.time() - start,
        ", ".join("%s %d" % kv for kv in sorted(m.counts.items()))))
    # What every run does; a run the time bound cut short (a loaded
    # machine) need not have done the rarer things.
    musts = ["register", "patch", "rest heartbeat", "shadow desired", "jobs"]
    if n >= 400:
        musts += ["decommission", "register again", "shadow reported", "job progress",
                  "offline by the timer", "kill -9"]
    for what in musts:
        check(m.counts.get(what, 0) > 0, "the run did some %s" % what)
    m.mq.close()
    for ws in m.ws.values():
        ws.close()


if __name__ == "__main__":
    main(test)
