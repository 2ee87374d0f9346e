#!/usr/bin/python3
"""HTTP ingest end to end against a model, under a random sequence of
requests, kill -9 and clean restarts of ingestd and of aggd.

A seeded RNG (SP_SEED, else random; the seed is printed so a failure can
be replayed) draws steps among:
- requests on every HTTP ingest route: POST /api/v1/record and
  /api/v1/ingest (seed 001 and 000) on ingestd's own port and through
  apid, line protocol on /write and /api/v2/write with every precision
  (and none), now and then gzip'd, half on kept-alive connections, now
  and then a few at once. Their points mix valid readings (late, out of
  order, duplicates of (series, timestamp) across requests, routes and
  within one body, RFC 3339 with offsets, bare dates and up to twelve
  fraction digits, epoch ms, no timestamp at all; subnormal, huge and
  integer values up to int64, line protocol's 7i and booleans) with bad
  ones of every
  kind (bad names, tag keys and values, the reserved tenant tag, values
  that are missing, strings, NaN or infinite, bad, negative and far
  future timestamps, lines without fields or with trailing text);
- tenants and keys: apid and ingestd share a keys file (a writer and a
  reader of tenants default, acme and globex); each request writes as a
  tenant, with its writer's key as Authorization Bearer, Token, Basic
  (the key as the password, as InfluxDB 1 clients send it) or the u and
  p parameters, its series stamped tenant=T; now and then with no key or
  a wrong one (401 unauthorized) or a reader's (403 forbidden), naming
  Authorization, before anything else (only a body past --body-max is
  refused first). acme and globex have series quotas (--quotas): the
  model knows the series ingestd must have counted for each (and those
  it may have, written by a request of unknown outcome), so a request
  that would pass the quota must get 403 quota_exceeded naming it, whole,
  and one within it must pass; a key that gets too long with the tenant
  tag stamped in is refused as the form says; ingestd's status counts
  the readings the quota refused (over_quota, over_series_quota) as the
  model does since ingestd started. Tenant initech's keys are made with
  POST /api/keys after ingestd started, and ingestd reads them from
  apid's devices.db (--keys-db). With an Authorization header, a p
  parameter (right or wrong) is not looked at. No key is in any log;
- whole bodies that are bad (malformed JSON, duplicate keys, NaN in JSON,
  no data, a bad sensor_id, invalid UTF-8, a bad precision, a body past
  --body-max, only comments);
- kill -9 of ingestd with a request in flight, kill -9 of aggd, clean
  restarts of both; aggd stopped (SIGSTOP) until ingestd's small
  --spool-max answers 503 overloaded (nothing stored); ingestd stopped
  past apid's --timeout: the record apid answered 503 is never applied,
  and a second write of its points on ingestd's own port wins (both
  stops run once in every run, then at random);
- checks: each answer against the model (status, accepted, rejected and
  each error's index and field, per SPEC's partial-write convention and
  ingestd(8)), and, once ingestd's spool is confirmed, every raw point
  aggd stores (values query, fakeingest.stored_values) against the
  model: every acknowledged reading present exactly once with the value
  of the last write of its (series, timestamp), nothing that was never
  acknowledged. A request answered 503, or whose connection dropped, may
  or may not have stored: the model allows both, for its readings only.
  Readings without a timestamp get the receive time: one point each
  inside its request's window (one per series per request: they share
  the request's time, so the last one wins). Last, apid's statistics of
  every series (count, min, max, sum) against its stored points, asked
  as its tenant (its own key, without the tenant tag).

Odd seeds run two aggd lanes (a request spread over both), even seeds one.

Bounded: 160 steps or 10 s of them (about 20 s in all under ASan);
1,500 steps or 180 s with SP_FULL=1. SP_VERBOSE=1 prints each step.
"""
import base64
import gzip
import hashlib
import http.client
import json
import math
import os
import random
import signal
import struct
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, check, main, need_modules, wait_for  # noqa: E402

need_modules("zmq", "msgpack")
from fakeingest import Query, restart, stored_values  # noqa: E402

FULL = os.environ.get("SP_FULL") == "1"
VERBOSE = os.environ.get("SP_VERBOSE") == "1"
STEPS, SECONDS = (1500, 180) if FULL else (160, 10)
NS = 10**9
MS = 10**6
T0 = 1704067200 * NS  # 2024-01-01
YEAR = 366 * 86400 * NS
BODY_MAX = 65536
SPOOL_MAX = 40000  # unconfirmed bytes: a stopped aggd soon gets 503s
ERRORS_MAX = 100  # INGEST_ERRORS_MAX
PRECISION = {None: 1, "ns": 1, "n": 1, "u": 1000, "us": 1000, "ms": MS,
             "s": NS, "m": 60 * NS, "h": 3600 * NS}
# Series the timestamped readings go to: (name, tags).
SERIES = [("im.a", {}), ("im.b", {"dev": "1"}), ("im.b", {"dev": "2", "room": "k"}),
          ("im x", {}), ("im.\u00fc", {"site": "m\u00fcnchen"}), ("im.c", {"z": "1", "a": "2"}),
          # A key of 1,016 bytes: the default tenant's fits SERIES_KEY_MAX
          # (1,023 and the NUL), with f1 or f2 too; with another tenant's
          # tag stamped into it, it does not.
          ("imlong", {"l%d" % i: chr(96 + i) * (200 if i < 5 else 189) for i in range(1, 6)})]
KEY_MAX = 1023
PICK = SERIES[:-1] * 3 + SERIES[-1:]  # imlong a third as often as the others
# Series of readings without a timestamp (the receive time).
NOW_SERIES = [("imnow.a", {}), ("imnow.b", {"dev": "1"})]
# Tenants: each writes as its writer key's tenant, into series stamped
# with tenant=T (none for default); acme and globex have a series quota
# (--quotas), default and initech none. initech's keys are made with POST
# /api/keys: ingestd reads them from apid's devices.db (--keys-db).
TENANTS = ("default", "acme", "globex", "initech")
SERIES_QUOTA = {"acme": 20, "globex": 5}


def stamp(k, tenant):
    """The series key k of tenant's writes (series_key_stamp): tenant=T
    among the tags in their order; the default tenant's as given. None
    when it is longer than a key may be."""
    if tenant == "default":
        return k
    name, _, tl = k.partition("{")
    tags = dict(kv.split("=", 1) for kv in tl[:-1].split(",")) if tl else {}
    tags["tenant"] = tenant
    k = key(name, tags)
    return k if len(k.encode()) <= KEY_MAX else None


def unstamp(k):
    """(tenant, the key without its tenant tag) of a stored key."""
    name, _, tl = k.partition("{")
    tags = dict(kv.split("=", 1) for kv in tl[:-1].split(",")) if tl else {}
    return tags.pop("tenant", "default"), key(name, tags)


def key(name, tags):
    if not tags:
        return name
    return "%s{%s}" % (name, ",".join("%s=%s" % kv for kv in sorted(tags.items())))


def bits(v):
    return struct.pack("<d", v)


def rfc3339(ts, rng):
    """ts (ns) as RFC 3339: Z or an offset, 0, 3, 6 or 9 fraction digits
    (only as many as ts needs, or more)."""
    off = rng.choice([0, 0, 330, -420, 60])
    secs, frac = divmod(ts, NS)
    d = datetime(1970, 1, 1) + timedelta(seconds=secs, minutes=off)
    if off == 0 and ts % (86400 * NS) == 0 and rng.random() < 0.5:
        return d.strftime("%Y-%m-%d")
    s = d.strftime("%Y-%m-%d" + rng.choice("TTt ") + "%H:%M:%S")
    digits = 9 if frac % 1000 else 6 if frac % MS else 3 if frac else rng.choice([0, 3])
    if digits:
        # Digits past the ninth are below a nanosecond: dropped.
        s += "." + ("%09d" % frac)[:digits] + ("%d" % rng.randrange(1000)
                                               if digits == 9 and rng.random() < 0.2
                                               else "")
    if off == 0:
        return s + rng.choice("Zz")
    return s + "%s%02d:%02d" % ("+" if off > 0 else "-", abs(off) // 60, abs(off) % 60)


class Gen:
    """Random points; remembers the (series, ts) written so duplicates
    come often."""

    def __init__(self, rng):
        self.rng = rng
        self.used = []

    def value(self):
        r = self.rng
        k = r.randrange(8)
        if k < 3:
            return round(r.uniform(-100, 100), r.choice([0, 1, 2, 3]))
        if k == 3:
            return r.uniform(-1, 1) * 10 ** r.randint(-30, 30)
        if k == 4:
            return r.choice([0.0, -0.0, 5e-324, 2.2250738585072014e-308,
                             1.7976931348623157e308, -1e-300, 0.1, 1 / 3])
        if k == 5:
            # An integer (JSON's, line protocol's 7i), up to int64: past
            # 2^53 it rounds to the nearest double, as Python's float().
            return r.choice([r.randint(-10**6, 10**6), r.randint(-2**63, 2**63 - 1),
                             2**53 + 1, -(2**63), 2**63 - 1])
        return float(r.randint(-10**6, 10**6))

    def ts(self, unit=1):
        """A timestamp (ns, a multiple of unit): a duplicate, late (years
        back), epoch 0, or anywhere in a month from T0."""
        r = self.rng
        k = r.randrange(10)
        if k < 3 and self.used:
            t = r.choice(self.used)
            if t % unit == 0:
                return t
        if k == 3:
            t = r.randrange(0, T0 // 2)
        elif k == 9:
            t = T0 + r.randrange(30) * 86400 * NS  # midnight: a bare date
        elif k == 4:
            t = 0 if r.random() < 0.3 else T0 - r.randrange(1, 10**6) * NS
        else:
            t = T0 + r.randrange(0, 30 * 86400 * NS)
        t -= t % unit
        self.used.append(t)
        if len(self.used) > 400:
            self.used.pop(0)
        return t


class Expect:
    """What a request must do: the readings it stores ([(key, ts, value)],
    in order; ts None for the receive time), and its refusals
    ([(index, field)]) or the whole-body error's where."""

    def __init__(self, form):
        self.form = form  # "record", "ingest", "write"
        self.points = []
        self.errors = []
        self.fatal = None
        self.fatal_status = 400
        self.accepted = 0  # JSON: points; line protocol: fields of good lines
        self.tenant = "default"
        self.auth = None  # the refusal of the credential: (status, code)
        self.early = False  # refused (413) before the credential is looked at
        self.quota = None  # the series quota: "must" refuse, "may", or None
        self.too_long = False  # a key too long once the tenant tag is in


# Bad reading objects of /api/v1/record: (mutation, field).
def bad_record(g, item):
    r = g.rng
    k = r.randrange(14)
    it = dict(item)
    if "series" in it:
        # The name form, so a change of name or tags is the one problem.
        name, _, tags = it.pop("series").partition("{")
        it["name"] = name
        if tags:
            it["tags"] = dict(kv.split("=", 1) for kv in tags[:-1].split(","))
    if k == 0:
        del it["name"]
        return it, "name"
    if k == 1:
        it["name"] = r.choice(["", "a{b", "a,b", "a=b", "x" * 257, "a\u0001b"])
        return it, "name"
    if k == 2:
        it["name"] = r.choice([7, None, ["x"], {"a": 1}])
        return it, "name"
    if k == 3:
        it["tags"] = r.choice([{"1k": "v"}, {"k-x": "v"}, {"k": ""}, {"k": 3},
                               {"k": "a}b"}, "dev=1", ["dev"]])
        return it, "tags"
    if k == 4:
        it["tags"] = dict(it.get("tags") or {}, tenant="other")
        return it, "tags"
    if k == 5:
        del it["name"]
        it.pop("tags", None)
        it["series"] = r.choice(["bad{", "x{1k=v}", "x{k=}", "{a=1}", 5])
        return it, "series"
    if k in (6, 7):
        del it["value"]
        return it, "value"
    if k in (8, 9):
        it["value"] = r.choice(["hot", "1.5", None, True, [1], {"v": 1}])
        return it, "value"
    if k in (10, 11):
        it["timestamp"] = r.choice(["yesterday", "2024-02-30T00:00:00Z",
                                    "2024-01-01T25:00:00Z", "2024-01-01T00:00:00",
                                    "2024-01-01T00:00:00.Z", "1704067200000",
                                    1.5e12, True, [1], -5,
                                    "1969-12-31T23:59:59Z",
                                    (time.time_ns() + 2 * YEAR) // MS,
                                    "2999-01-01T00:00:00Z", 2**62])
        return it, "timestamp"
    return r.choice([5, "x", None, [1, 2]]), "data"


def record_item(g, nowish):
    """A valid reading of /api/v1/record and its (key, ts, value)."""
    r = g.rng
    name, tags = r.choice(NOW_SERIES if nowish else PICK)
    v = g.value()
    it = {"value": v}
    if r.random() < 0.25:
        # The series key, tags in any order.
        tl = list(tags.items())
        r.shuffle(tl)
        it["series"] = name + ("{%s}" % ",".join("%s=%s" % kv for kv in tl) if tl else "")
    else:
        it["name"] = name
        if tags or r.random() < 0.2:
            it["tags"] = dict(tags)
    if nowish:
        if r.random() < 0.5:
            it["timestamp"] = None
        return it, (key(name, tags), None, v)
    ts = g.ts(MS if r.random() < 0.6 else 1)
    it["timestamp"] = ts // MS if ts % MS == 0 and r.random() < 0.6 else rfc3339(ts, r)
    return it, (key(name, tags), ts, v)


def gen_record(g, n, bad, tenant):
    e = Expect("record")
    items = []
    for i in range(n):
        it, pt = record_item(g, g.rng.random() < 0.05)
        k = stamp(pt[0], tenant)
        if g.rng.random() < bad:
            it, field = bad_record(g, it)
            e.errors.append((i, field))
        elif k is None:  # the tenant's key would be too long
            e.errors.append((i, "tags"))
            e.too_long = True
        else:
            e.points.append((k, pt[1], pt[2]))
        items.append(it)
    e.accepted = len(e.points)
    return json.dumps({"data": items}), e


def gen_ingest(g, n, bad, tenant):
    """Seed 000's body: one series, datapoints of timestamp and value."""
    r = g.rng
    e = Expect("ingest")
    nowish = r.random() < 0.1
    name, tags = r.choice(NOW_SERIES if nowish else PICK)
    sk = stamp(key(name, tags), tenant)
    body = {"sensor_id": name, "datapoints": []}
    if tags:
        body["tags"] = dict(tags)
    for i in range(n):
        v = g.value()
        dp = {"value": v}
        ts = None
        if not nowish:
            ts = g.ts(MS if r.random() < 0.6 else 1)
            dp["timestamp"] = (ts // MS if ts % MS == 0 and r.random() < 0.6
                               else rfc3339(ts, r))
        if r.random() < bad:
            k = r.randrange(5)
            if k == 0:
                dp = r.choice([1, "x", None])
                field = "datapoints"
            elif k == 1:
                dp["value"] = r.choice(["x", None, False])
                field = "value"
            elif k == 2:
                del dp["value"]
                field = "value"
            else:
                dp["timestamp"] = r.choice(["soon", -1, 1e3, "2024-13-01"])
                field = "timestamp"
            e.errors.append((i, field))
        else:
            e.points.append((sk, ts, v))
        body["datapoints"].append(dp)
    e.accepted = len(e.points)
    if sk is None:  # the tenant's key would be too long: the whole body
        e.fatal, e.points, e.errors, e.accepted = "tags", [], [], 0
        e.too_long = True
    return json.dumps(body), e


def lp_escape(s, meas=False):
    out = s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")
    return out if meas else out.replace("=", "\\=")


def lp_num(v, r):
    if isinstance(v, int):
        return "%di" % v
    if bits(v) in (bits(0.0), bits(1.0)) and r.random() < 0.3:
        return r.choice(["f", "F", "false", "False", "FALSE"] if v == 0 else
                        ["t", "T", "true", "True", "TRUE"])
    if v == int(v) and abs(v) < 2**53 and bits(v) != bits(-0.0) and r.random() < 0.3:
        return "%di" % int(v)
    return repr(v)


def gen_write(g, n, bad, tenant):
    """Line protocol lines with a precision; blank and comment lines in
    between (they are not counted in the error index)."""
    r = g.rng
    prec = r.choice(list(PRECISION))
    unit = PRECISION[prec]
    e = Expect("write")
    e.prec = prec
    lines = []
    index = 0
    for _ in range(n):
        if r.random() < 0.05:
            lines.append(r.choice(["", "# a comment", "   ", "#x value=1 1"]))
            continue
        nowish = r.random() < 0.05
        name, tags = r.choice(NOW_SERIES if nowish else PICK)
        tl = list(tags.items())
        r.shuffle(tl)
        sect = lp_escape(name, True) + "".join(
            ",%s=%s" % (k, lp_escape(v)) for k, v in tl)
        fields = []
        pts = []
        ts = None if nowish else g.ts(unit)
        for f in r.sample(["value", "f1", "f2", "value"], r.choice([1, 1, 1, 2, 3])):
            v = g.value()
            fields.append("%s=%s" % (f, lp_num(v, r)))
            pts.append((stamp(key(name if f == "value" else name + "." + f, tags), tenant),
                        ts, v))
        tail = "" if ts is None else " %d" % (ts // unit)
        line = sect + " " + ",".join(fields) + tail
        if r.random() < bad:
            k = r.randrange(14)
            if k == 12:
                line = r.choice(["im{x", "im}x", "x" * 257]) + " value=1" + tail
            elif k == 13:
                line = sect + ",k=" + r.choice(["a{b", "a}b", "x" * 257]) + " value=1" + tail
            elif k == 0:
                line = sect
            elif k == 1:
                line = sect + " value=%s%s" % (r.choice(["nan", "NaN", "inf", "-Inf",
                                                          "1e999", "-1e400"]), tail)
            elif k == 2:
                line = sect + ' value="hot"' + tail
            elif k == 3:
                line = sect + " value=1 " + r.choice(["soon", "12x", "1.5", "--1"])
            elif k == 4:
                line = sect + " value=1 %d" % ((time.time_ns() + 2 * YEAR) // unit)
            elif k == 5:
                line = sect + " value=1 -%d" % r.randint(1, 10**6)
            elif k == 6:
                line = sect + ",tenant=x value=1" + tail
            elif k == 7:
                line = sect + ",1k=v value=1" + tail
            elif k == 8:
                line = ",k=v value=1" + tail
            elif k == 9:
                line = sect + " value=1" + (tail or " 1") + " junk"
            elif k == 10:
                line = sect + " value=1,f1=" + tail
            else:
                line = sect + " value=1" + tail + "\udcff"
            e.errors.append((index, "line"))
        elif None in [k for k, _, _ in pts]:
            e.errors.append((index, "line"))  # a key too long for the tenant
            e.too_long = True
        else:
            e.points += pts
            e.accepted += len(pts)
        lines.append(line)
        index += 1
    body = "\n".join(lines).encode("utf-8", "surrogateescape")
    return body, e


def gen_bad_body(g, form):
    """A whole body that is bad: (body, where, status)."""
    r = g.rng
    if form == "write":
        return r.choice([(b"", "body"), (b"# only a comment\n\n", "body")])
    good = {"record": '{"data":[{"name":"im.a","value":1,"timestamp":%d}]}',
            "ingest": '{"sensor_id":"im.a","datapoints":[{"value":1,"timestamp":%d}]}'}
    t = (T0 + r.randrange(86400) * NS) // MS
    cases = [(good[form] % t)[:-3], "", "[]", "7", good[form].replace("1,", "NaN,") % t,
             good[form].replace("1,", "Infinity,") % t,
             (good[form] % t)[:-1] + ',"x":1,"x":2}',
             (good[form] % t).encode().replace(b"im.a", b"im.\xff")]
    if form == "record":
        cases += [('{"data":[]}', "data"), ('{"data":{}}', "data"), ('{"rows":[]}', "data")]
    else:
        cases += [('{"datapoints":[{"value":1}]}', "sensor_id"),
                  ('{"sensor_id":5,"datapoints":[{"value":1}]}', "sensor_id"),
                  ('{"sensor_id":"a{b","datapoints":[{"value":1}]}', "sensor_id"),
                  ('{"sensor_id":"im.a","datapoints":[]}', "datapoints"),
                  ('{"sensor_id":"im.a"}', "datapoints"),
                  ('{"sensor_id":"im.a","tags":{"tenant":"x"},"datapoints":[{"value":1}]}',
                   "tags")]
    c = r.choice(cases)
    if isinstance(c, tuple):
        return c[0], c[1]
    return c, "body"


class Model:
    """What aggd must hold: {key: {ts: [must, {value bits}]}}; must is
    false while only requests of unknown outcome wrote it. Readings
    without a timestamp: [(t_sent, t_answered, {key: bits}, must)]."""

    def __init__(self):
        self.pts = {}
        self.now = []

    def apply(self, points, t0, t1, certain):
        last = {}
        nowish = {}
        for k, ts, v in points:
            if ts is None:
                nowish[k] = bits(v)
            else:
                last[(k, ts)] = bits(v)
        for (k, ts), b in last.items():
            d = self.pts.setdefault(k, {})
            if certain or ts not in d:
                d[ts] = [certain, {b}]
            else:
                d[ts][1].add(b)
        if nowish:
            self.now.append((t0, t1, nowish, certain))

    def size(self):
        return sum(len(d) for d in self.pts.values())

    def compare(self, stored):
        nowkeys = set(k for k in stored if k.startswith("imnow"))
        for k, d in stored.items():
            if k in nowkeys:
                continue
            m = self.pts.get(k, {})
            for ts, v in d.items():
                if ts not in m:
                    raise Failure("%s at %d (%r) is stored; no request that "
                                  "was acknowledged or may have stored wrote it"
                                  % (k, ts, v))
                if bits(v) not in m[ts][1]:
                    raise Failure("%s at %d reads %r; the model has %r" % (
                        k, ts, v, [struct.unpack("<d", b)[0] for b in m[ts][1]]))
        for k, m in self.pts.items():
            for ts, (must, _) in m.items():
                if must and ts not in stored.get(k, {}):
                    raise Failure("%s at %d was acknowledged and is lost" % (k, ts))
        seen = [0] * len(self.now)
        starts = [w[0] for w in self.now]
        for k in nowkeys:
            for ts, v in stored[k].items():
                i = max((j for j, s in enumerate(starts) if s <= ts), default=None)
                if i is None or ts > self.now[i][1] or k not in self.now[i][2]:
                    raise Failure("%s at %d (receive time) is in no request's "
                                  "window that wrote it" % (k, ts))
                if bits(v) != self.now[i][2][k]:
                    raise Failure("%s at %d reads %r: not the last value of its "
                                  "request" % (k, ts, v))
                seen[i] += 1
        for i, (t0, t1, keys, must) in enumerate(self.now):
            if seen[i] > len(keys) or (must and seen[i] != len(keys)):
                raise Failure("the request sent at %d wrote %d series without a "
                              "timestamp; %d points of them are stored"
                              % (t0, len(keys), seen[i]))


def post(port, path, body, headers, timeout=15, conn=None):
    """(status, headers, parsed body), or None when the connection
    failed or dropped; on conn when given (the caller closes it)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        if conn is None:
            c.close()
    ctype = r.getheader("Content-Type") or ""
    if data and ctype.startswith("application/json"):
        data = json.loads(data)
    return r.status, dict(r.getheaders()), data


def check_errors(body, e, what):
    n = len(e.errors)
    if body.get("accepted") != e.accepted or body.get("rejected") != n:
        raise Failure("%s: accepted %s rejected %s, the model %d and %d: %s" % (
            what, body.get("accepted"), body.get("rejected"), e.accepted, n,
            str(body)[:400]))
    got = [(x.get("index"), x.get("field")) for x in body.get("errors", [])]
    if got != e.errors[:ERRORS_MAX]:
        first = next(i for i in range(max(len(got), len(e.errors)))
                     if i >= len(got) or i >= len(e.errors) or got[i] != e.errors[i])
        raise Failure("%s: error %d is %s, the model %s" % (
            what, first, got[first] if first < len(got) else None,
            e.errors[first] if first < len(e.errors) else None))
    for x in body["errors"]:
        if not isinstance(x.get("reason"), str) or not x["reason"]:
            raise Failure("%s: an error without a reason: %s" % (what, x))
    if bool(body.get("errors_truncated")) != (n > ERRORS_MAX):
        raise Failure("%s: %d rejected, %d listed, errors_truncated %s" % (
            what, n, len(got), body.get("errors_truncated")))


def judge(res, e, what):
    """Check an answer against e; return True (stored), False (nothing
    stored) or None (either: 503 or a dropped connection)."""
    if res is None:
        return None
    st, hdr, body = res
    if e.auth and not e.early:
        # No key, a wrong one (401), a reader's (403): before anything
        # else, the spool's state and the body included; on ingestd's
        # port and through apid alike.
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if (st, err.get("code")) != e.auth or err.get("where") != "Authorization" \
                or not isinstance(err.get("message"), str) or not err["message"] \
                or (st == 401 and "WWW-Authenticate" not in hdr):
            raise Failure("%s: %s %s %s, the model %s naming Authorization%s" % (
                what, st, str(body)[:300], hdr.get("WWW-Authenticate"), e.auth,
                " with WWW-Authenticate" if st == 401 else ""))
        return False
    if st == 503:
        if "Retry-After" not in hdr:
            raise Failure("%s: 503 without Retry-After" % what)
        # A full spool refuses before reading the body: nothing stored.
        if isinstance(body, dict) and body.get("error", {}).get("code") == "overloaded":
            return False
        return None
    if e.fatal:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if st != e.fatal_status or err.get("where") != e.fatal or not err.get("message") \
                or not err.get("code"):
            raise Failure("%s: %s %s, the model %d naming %s" % (
                what, st, str(body)[:300], e.fatal_status, e.fatal))
        return False
    if st == 403 and e.quota:
        # The series quota: the request refused whole, nothing of it
        # stored, its good and its bad points alike.
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if err.get("code") != "quota_exceeded" or err.get("quota") != "series" or \
                err.get("where") != "series" or not err.get("message"):
            raise Failure("%s: 403 %s, the model quota_exceeded naming the series quota"
                          % (what, str(body)[:300]))
        return False
    if e.quota == "must":
        raise Failure("%s: status %d, the model 403: over %s's series quota: %s" % (
            what, st, e.tenant, str(body)[:300]))
    n = len(e.errors)
    if e.form == "write":
        if e.accepted == 0 and n == 0:
            want = 400
        else:
            want = 400 if n else 204
    else:
        want = 200 if e.accepted else 400
    if st != want:
        raise Failure("%s: status %d, the model %d (%d good, %d bad): %s" % (
            what, st, want, e.accepted, n, str(body)[:300]))
    if st == 204:
        return True
    if e.accepted == 0 and n == 0:
        if body.get("error", {}).get("where") != "body":
            raise Failure("%s: an empty body's 400 should name it: %s" % (what, body))
        return False
    if st == 400 and body.get("error", {}).get("code") != "invalid_points":
        raise Failure("%s: 400 without invalid_points: %s" % (what, str(body)[:300]))
    check_errors(body, e, what)
    return e.accepted > 0


class Run:
    def __init__(self, p, rng, keys):
        self.p = p
        self.rng = rng
        self.keys = keys  # "writer-T" and "reader": the key
        # The series quota as ingestd counts it, per tenant that has one:
        # the keys it must have counted, and those it may have (a
        # request of unknown outcome wrote them).
        self.counted = {t: set() for t in SERIES_QUOTA}
        self.maybe = {t: set() for t in SERIES_QUOTA}
        # Readings the quota refused since ingestd started (its status's
        # over_quota and over_series_quota: no rate quota here).
        self.refused = 0
        self.g = Gen(rng)
        self.m = Model()
        self.qs = [Query(p, lane) for lane in range(p.lanes)]
        self.ingestd = Query(p, daemon="ingestd")
        self.aggds = [d for d in p.daemons if d.startswith("aggd")]
        self.counts = {}
        self.conns = {}  # port: a kept-alive HTTPConnection

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def request(self, kill=None, n=None):
        """One random request; kill (a daemon name) is sent kill -9 while
        it is in flight. Returns its status (None: dropped)."""
        q = self.make(n)
        self.quota(q[4])
        t0 = time.time_ns()
        if kill:
            res = self.kill_during(kill, *q[:4])
        else:
            res = self.post(*q[:4])
        self.finish(q, res, t0, time.time_ns())
        if kill == "ingestd":
            self.refused = 0  # its answer, if any, was the killed process's
        if res and res[0] == 503:
            time.sleep(0.05)  # as a client that backs off (not the whole Retry-After)
        return res and res[0]

    def post(self, port, path, body, headers):
        """post(), now and then on a kept-alive connection (closed after a
        failure, or when the server does not keep it)."""
        if self.rng.random() < 0.5:
            return post(port, path, body, headers)
        c = self.conns.pop(port, None) or http.client.HTTPConnection(
            "127.0.0.1", port, timeout=15)
        res = post(port, path, body, headers, conn=c)
        if res is not None and res[1].get("Connection", "").lower() != "close":
            self.conns[port] = c
        else:
            c.close()
        return res

    def concurrent(self):
        """A few requests at once (the group commit answers each from its
        own report); sent one after the other instead when two of them
        write the same (series, timestamp) or any writes the receive
        time, whose order the model needs, or when two are of one tenant
        with a series quota (which of them is over it depends on their
        order)."""
        qs = [self.make() for _ in range(self.rng.randint(2, 6))]
        seen = set()
        apart = True
        quota = [q[4].tenant for q in qs if q[4].tenant in SERIES_QUOTA]
        apart = len(quota) == len(set(quota))
        for q in qs:
            keys = set((k, ts) for k, ts, _ in q[4].points)
            apart = apart and not (keys & seen) and all(ts is not None for _, ts in keys)
            seen |= keys
        if not apart:
            for q in qs:
                self.quota(q[4])
                t0 = time.time_ns()
                self.finish(q, post(*q[:4]), t0, time.time_ns())
            return
        for q in qs:
            self.quota(q[4])
        out = [None] * len(qs)
        ts = [None] * len(qs)

        def one(i):
            t0 = time.time_ns()
            out[i] = post(*qs[i][:4])
            ts[i] = (t0, time.time_ns())
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(qs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, q in enumerate(qs):
            self.finish(q, out[i], *ts[i])
        self.count("concurrent")

    def make(self, n=None):
        """A random request (of n points): (port, path, body, headers,
        expect, what)."""
        r = self.rng
        form = r.choice(["record"] * 4 + ["ingest"] * 2 + ["write"] * 3)
        if n is None:
            n = r.choice([1, 1, 3, 10, 30]) if r.random() < 0.97 else r.randint(101, 180)
        bad = r.choice([0, 0, 0.1, 0.3, 1.0])
        tenant = r.choice(["default"] * 3 + ["acme", "globex", "initech"])
        headers = {}
        apid = form != "write" and r.random() < 0.3
        port = self.p.api_port if apid else self.p.ingest_port
        if r.random() < 0.08:
            body, where = gen_bad_body(self.g, form)
            e = Expect(form)
            e.fatal = where
            e.prec = None
            self.count("bad body")
        elif form == "write":
            body, e = gen_write(self.g, n, bad, tenant)
        elif form == "record":
            body, e = gen_record(self.g, n, bad, tenant)
        else:
            body, e = gen_ingest(self.g, n, bad, tenant)
        e.tenant = tenant
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        if form == "write":
            path = r.choice(["/write", "/api/v2/write"])
            prec = e.prec
            if r.random() < 0.04:
                prec = r.choice(["fortnight", "S", "sec", ""])
                e.fatal, e.points = "precision", []
            if prec is not None:
                path += "?precision=" + prec
            if r.random() < 0.15:
                if r.random() < 0.1 and e.fatal is None:
                    # Small on the wire, past --body-max inflated: 413.
                    body += b"\n#" + b"x" * BODY_MAX
                    e.fatal, e.fatal_status, e.points = "body", 413, []
                    self.count("oversize inflated")
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
        else:
            path = "/api/v1/" + form
            headers["Content-Type"] = "application/json"
        if r.random() < 0.02 and not apid:
            # Past --body-max: 413 before it is read, nothing stored (and
            # before the credential is looked at).
            pad = b"\n" * (BODY_MAX + 1 - len(body)) if form == "write" else \
                b" " * (BODY_MAX + 1 - len(body))
            body += pad
            e.fatal, e.fatal_status, e.points = "body", 413, []
            e.early = True
            headers.pop("Content-Encoding", None)
            self.count("oversize")
        path = self.credential(e, path, headers)
        what = "%s %s%s as %s (%d points, %d bad%s)" % (
            "apid" if apid else "ingestd", path.split("?")[0], " gzip" if headers.get(
                "Content-Encoding") else "", e.tenant, len(e.points), len(e.errors),
            ", refused: %d %s" % e.auth if e.auth else "")
        return port, path, body, headers, e, what

    def credential(self, e, path, headers):
        """The key of the request's tenant (headers and path changed):
        most are its writer's key, as Authorization: Bearer or Token, or
        InfluxDB 1's u and p parameters; now and then none, a wrong one
        (401) or a reader's (403). With an Authorization header the p
        parameter is not looked at, whatever it holds. Returns the path."""
        r = self.rng
        x = r.random()
        k = self.keys["writer-" + e.tenant]
        if r.random() < 0.04:
            # The header decides: not a right p beside a wrong header, nor
            # a wrong p beside a right one.
            right = x >= 0.09
            p = r.choice(["nope", self.keys["writer-" + e.tenant]]) if right else k
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode({"u": "x", "p": p})
            if not right:
                k = "nope"
                e.auth = (401, "unauthorized")
            headers["Authorization"] = "Bearer " + k
            self.count("header and p")
            return path
        if x < 0.03:
            e.auth = (401, "unauthorized")
            self.count("no key")
            return path
        if x < 0.06:
            k = r.choice(["", "nope", k[:-1], k + "x", self.keys["writer-acme"].upper()])
            e.auth = (401, "unauthorized")
            self.count("wrong key")
        elif x < 0.09:
            k = self.keys["reader-" + e.tenant]
            e.auth = (403, "forbidden")
            self.count("reader key")
        x = r.random()
        if x < 0.1:
            return path + ("&" if "?" in path else "?") + urllib.parse.urlencode(
                {"u": "x", "p": k})
        if x < 0.25:
            # HTTP Basic, the key as the password, as InfluxDB 1 clients
            # send u and p (Telegraf, influxdb-python; InfluxDB 2's v1
            # API takes a token so): the user name is not looked at.
            user = r.choice(["", "telegraf", "root"])
            headers["Authorization"] = r.choice(["Basic ", "basic "]) + \
                base64.b64encode(("%s:%s" % (user, k)).encode()).decode()
            self.count("basic auth")
            return path
        headers["Authorization"] = r.choice(["Bearer ", "Token ", "token ", "BEARER "]) + k
        return path

    def quota(self, e):
        """Must ingestd's series quota refuse e, may it, or not? (Its
        keys against those the tenant must and may have counted.)"""
        limit = SERIES_QUOTA.get(e.tenant)
        if not limit or e.auth or e.fatal or not e.points:
            return
        ks = set(k for k, _, _ in e.points)
        if len(self.counted[e.tenant] | ks) > limit:
            e.quota = "must"
        elif len(self.counted[e.tenant] | self.maybe[e.tenant] | ks) > limit:
            e.quota = "may"

    def finish(self, q, res, t0, t1):
        """Judge the answer res to request q and update the model."""
        body, e, what = q[2], q[4], q[5]
        try:
            got = judge(res, e, what)
        except Failure:
            print("the body:", body[:3000])
            raise
        self.count("answered %s" % (res[0] if res else "dropped"))
        if e.quota and res and res[0] == 403:
            self.count("over the series quota")
            self.refused += len(e.points)
        if e.quota == "may":
            self.count("series quota unsure")
        if e.too_long and not e.auth:
            self.count("tenant key too long")
        if VERBOSE:
            print("step: %s -> %s" % (what, res[0] if res else "dropped"))
        if got is not False and e.points:
            self.m.apply(e.points, t0, t1, got is True)
            if e.tenant in SERIES_QUOTA:
                ks = set(k for k, _, _ in e.points)
                if got:
                    self.counted[e.tenant] |= ks
                else:
                    self.maybe[e.tenant] |= ks - self.counted[e.tenant]

    def kill_during(self, name, port, path, body, headers):
        """POST in a thread, kill -9 name a moment later, restart it."""
        out = []
        t = threading.Thread(target=lambda: out.append(post(port, path, body, headers)))
        t.start()
        time.sleep(self.rng.choice([0, 0.001, 0.003, 0.01, 0.03]))
        self.kill9(name)
        t.join(30)
        if t.is_alive():
            raise Failure("a request to ingestd got no end after kill -9")
        return out[0]

    def freeze(self):
        """aggd (every lane) stopped (SIGSTOP) for requests until one gets 503 (at most
        40): ingestd acknowledges from its spool until --spool-max, then
        answers 503 overloaded, which stores nothing; a record through
        apid then gets the same 503, with Retry-After as well."""
        # Every lane: a lane still confirming would bring the spool's
        # unconfirmed bytes (all lanes') back under the limit.
        procs = [self.p.procs[d] for d in self.aggds]
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(40):
                if self.request(n=self.rng.randint(50, 180)) == 503:
                    items = [record_item(self.g, False) for _ in range(3)]
                    e = Expect("record")
                    res = post(self.p.api_port, "/api/v1/record",
                               json.dumps({"data": [it for it, _ in items]}),
                               {"Content-Type": "application/json",
                                "Authorization": "Bearer " + self.keys["writer-default"]})
                    if res is None or res[0] != 503 or judge(
                            res, e, "apid while the spool is full") is not False:
                        raise Failure("a record through apid while ingestd's spool "
                                      "is full: %s" % (res and res[:3:2],))
                    self.count("freeze aggd to 503")
                    break
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGCONT)
        self.count("freeze aggd")
        if self.rng.random() < 0.7:
            self.settle()  # aggd catches up in a few tenths of a second

    def stall(self):
        """ingestd stopped (SIGSTOP) past apid's --timeout: a record sent
        through apid gets 503, then the same points with other values
        on ingestd's own port, sent before ingestd runs again, get 200.
        The first request never reached ingestd before apid gave up, so
        it must never be applied: not ever, and not after the second."""
        items = [record_item(self.g, False) for _ in range(self.rng.choice([1, 3, 10]))]
        again = [dict(it, value=self.g.value()) for it, _ in items]
        e = Expect("record")
        e.points = [(k, ts, it["value"]) for it, (k, ts, _) in zip(again, (p for _, p in items))]
        e.accepted = len(e.points)
        hdr = {"Content-Type": "application/json",
               "Authorization": "Token " + self.keys["writer-default"]}
        proc = self.p.procs["ingestd"]
        out = []
        # The second write must find ingestd taking writes: not with its
        # spool past --spool-max (a freeze, or a restart or kill -9 of
        # aggd whose resend waits for ingestd's backoff, just before).
        self.settle()
        proc.send_signal(signal.SIGSTOP)
        try:
            # One point of it the second write does not overwrite, so
            # that it shows whether the first was applied at all.
            mark = {"name": "im.a", "value": 1.0, "timestamp": rfc3339(
                T0 + 40 * 86400 * NS + self.counts.get("stall ingestd", 0), self.rng)}
            res = post(self.p.api_port, "/api/v1/record",
                       json.dumps({"data": [it for it, _ in items] + [mark]}), hdr)
            if res is None or res[0] != 503:
                raise Failure("a record through apid while ingestd is stopped: %s, "
                              "not 503" % (res and res[:3:2]))
            t = threading.Thread(target=lambda: out.append(post(
                self.p.ingest_port, "/api/v1/record", json.dumps({"data": again}), hdr)))
            t.start()
            time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGCONT)
        t.join(30)
        t0 = time.time_ns()
        if judge(out[0] if out else None, e, "stall: the second write") is not True:
            raise Failure("stall: the write on ingestd's own port was not acknowledged")
        self.m.apply(e.points, t0, t0, True)
        self.count("stall ingestd")

    def hang_up(self):
        """Close the kept-alive connections (their server is going)."""
        for c in self.conns.values():
            c.close()
        self.conns.clear()

    def kill9(self, name):
        self.hang_up()
        proc = self.p.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        restart(self.p, name)
        if name == "ingestd":
            self.refused = 0
        self.count("kill -9 " + name)

    def clean_restart(self, name):
        self.hang_up()
        self.p.stop_one(name)
        restart(self.p, name)
        if name == "ingestd":
            self.refused = 0
        self.count("restart " + name)

    def settle(self):
        """Wait until aggd confirmed all of ingestd's spool."""
        def done():
            st, s = self.ingestd.query({"op": "status"})
            return st == 200 and s.get("spool_batches") == 0
        wait_for(done, "ingestd's spool confirmed by aggd", timeout=60)

    def verify(self, what):
        self.settle()
        stored = {}
        for lane, q in enumerate(self.qs):
            part = stored_values(q, "im*")
            if set(part) & set(stored):
                raise Failure("series %s stored in more than one lane"
                              % sorted(set(part) & set(stored)))
            stored.update(part)
        self.m.compare(stored)
        st, s = self.ingestd.query({"op": "status"})
        if st != 200 or s.get("over_quota") != self.refused or \
                s.get("over_series_quota") != self.refused:
            raise Failure("ingestd's status: over_quota %s, over_series_quota %s; the "
                          "model %d readings refused by the series quota since it started"
                          % (s.get("over_quota"), s.get("over_series_quota"), self.refused))
        n = sum(len(d) for d in stored.values())
        print("ok: %s: %d points stored agree with the model (%d in it)"
              % (what, n, self.m.size()))
        return stored

    def stats(self, stored):
        """apid's statistics of each series against its stored points
        (every point read above): count, min and max exact, sum up to
        rounding (aggd adds in its own order)."""
        for k, d in sorted(stored.items()):
            # As its tenant sees it: its own key, without the tenant tag.
            tenant, bare = unstamp(k)
            st, _, b = self.p.http("GET", "/api/v1/stats/" + urllib.parse.quote(bare, safe=""),
                                   headers={"Authorization": "Bearer " +
                                            self.keys["reader-" + tenant]})
            vals = list(d.values())
            if st != 200 or b.get("count") != len(vals) or b.get("matched") != 1:
                raise Failure("stats of %s: %s %s; %d points stored"
                              % (k, st, str(b)[:300], len(vals)))
            if b["min"] != min(vals) or b["max"] != max(vals):
                raise Failure("stats of %s: min %r max %r, the points %r and %r"
                              % (k, b["min"], b["max"], min(vals), max(vals)))
            scale = sum(abs(v) for v in vals)  # inf past the largest double
            if math.isfinite(scale) and b["sum"] is not None and \
                    abs(b["sum"] - math.fsum(vals)) > 1e-12 * scale:
                raise Failure("stats of %s: sum %r, the points' %r"
                              % (k, b["sum"], math.fsum(vals)))
        print("ok: the statistics of %d series agree with their points" % len(stored))

    def step(self):
        r = self.rng.random()
        if r < 0.85:
            self.request()
        elif r < 0.90:
            self.concurrent()
        elif r < 0.93:
            self.request(kill="ingestd")
        elif r < 0.94:
            self.kill9(self.rng.choice(self.aggds))
            if self.rng.random() < 0.5:
                # Else the requests go on while ingestd waits to resend
                # (its backoff), many of them 503 with the spool full.
                self.settle()
        elif r < 0.95:
            self.freeze()
        elif r < 0.965:
            self.clean_restart("ingestd")
        elif r < 0.975:
            self.clean_restart(self.rng.choice(self.aggds))
        elif r < 0.98:
            self.stall()
        else:
            self.verify("mid-run")


def test():
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run), %d lane(s)" % (seed, seed, 1 + seed % 2))
    rng = random.Random(seed)
    # Odd seeds run two aggd lanes: a request's readings are split by
    # series into one spooled batch per lane.
    p = Platform(daemons=("aggd", "ingestd", "apid"), lanes=1 + seed % 2)
    # One keys file for apid and ingestd: a writer and a reader per tenant.
    keys = {"%s-%s" % (role, t): "%s-%s-%d-abc" % (role, t, seed)
            for t in TENANTS for role in ("writer", "reader")
            if t != "initech"}
    keys["admin-initech"] = "admin-initech-%d-abc" % seed
    kfile = os.path.join(p.dir, "keys")
    with open(kfile, "w") as f:
        for name, k in sorted(keys.items()):
            role, t = name.split("-")
            f.write("%s %s %s sha256:%s\n" % (name, t, role,
                                              hashlib.sha256(k.encode()).hexdigest()))
    qfile = os.path.join(p.dir, "quotas.json")
    with open(qfile, "w") as f:
        json.dump({"tenants": {t: {"series": n} for t, n in SERIES_QUOTA.items()}}, f)
    p.extra = {"ingestd": ["--resend-after", "1s", "--body-max", str(BODY_MAX),
                           "--spool-max", str(SPOOL_MAX), "--keys", kfile,
                           "--keys-db", os.path.join(p.dir, "apid", "devices.db"),
                           "--quotas", qfile],
               "apid": ["--timeout", "1s", "--keys", kfile, "--key-rate", "100000",
                        "--key-burst", "100000"]}
    p.start()
    for role in ("writer", "reader"):
        # Made after ingestd started, before apid's database existed.
        st, _, got = p.http("POST", "/api/keys", {"name": role + "-initech", "role": role},
                            headers={"Authorization": "Bearer " + keys["admin-initech"]})
        check(st == 201 and got.get("tenant") == "initech", "a %s key of initech made "
              "with POST /api/keys (got %d)" % (role, st))
        keys[role + "-initech"] = got["key"]
    run = None
    try:
        run = Run(p, rng, keys)
        t_end = time.time() + SECONDS
        steps = 0
        run.stall()
        run.freeze()
        while steps < STEPS and time.time() < t_end:
            run.step()
            steps += 1
        stored = run.verify("after %d steps" % steps)
        run.stats(stored)
        n = sum(len(d) for d in stored.values())
        print("counts: %s" % ", ".join("%s %d" % kv for kv in sorted(run.counts.items())))
        check(n > 0 and run.counts.get("answered 200", 0) > 0,
              "some readings were stored (%d points)" % n)
    except Failure:
        if run:
            print("# the series the model has ingestd count: %s, and may: %s"
                  % (run.counted, run.maybe))
        for name in p.logs:
            sys.stdout.write("--- %s log (tail) ---\n%s\n" % (name, p.log(name)[-3000:]))
        raise
    finally:
        if run:
            run.hang_up()
            for q in run.qs + [run.ingestd]:
                q.close()
        # No key in any log: not the u/p parameters of a URL either.
        p.stop(secrets=list(keys.values()))


if __name__ == "__main__":
    main(test)
