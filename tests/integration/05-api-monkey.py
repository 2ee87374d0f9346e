#!/usr/bin/env python3
"""Random requests against every route apid documents never hurt a daemon.

Every operation in /api/openapi.json is called with path and query
parameters drawn from plausible and hostile values, and (for POST, PUT
and PATCH) with random JSON bodies built from the API's field names,
broken JSON and raw bytes. Every answer must be a success or a 4xx, a
501 (a feature this apid was started without) or a 503 with
Retry-After; every error must be the API's JSON error object (code,
message, where), or Prometheus's on the Prometheus routes. At the end every daemon is still up, /health
answers, and each stops cleanly on SIGTERM with no sanitizer report.

The run is seeded (SP_SEED, else random; the seed is printed so a failure
can be replayed) and bounded: 1,500 requests or 150 s, 20,000 or 900 s
with SP_FULL=1.
"""
import http.client
import json
import os
import random
import sys
import time
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402

FULL = os.environ.get("SP_FULL") == "1"
COUNT, SECONDS = (20000, 900) if FULL else (1500, 150)

SERIES = ["temp_a", "temp_b", "api.latency", "temperature{device=dev-1}"]
GOOD = ["temp_a", "temp_*", "dev-1", "1h", "5min", "30s", "1d", "2024-01-01",
        "2024-01-01T00:00:00Z", "1700000000000", "0.5", "3.0", "99", "10", "0",
        "true", "false", "csv", "json", "zscore", "ensemble", "mean", "p99",
        "Europe/Berlin", "temp_a{}", "up", "sum(temp_a)", "rate(temp_a[5m])"]
BAD = ["", "-1", "1e309", "NaN", "inf", "%00", "\x00", "a" * 5000, "{", "}",
       "x{y=", "x{y=1,", "\u00e9\u6f22", "../../etc/passwd", "99999999999999999999",
       "1d1h", "*", "**", "[", "'", "\"", "\\", "-0", "0x10", "1e-400", " 1",
       "2024-13-45", "1h-", "9223372036854775807", "-9223372036854775808",
       "Mars/Olympus", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")]
FIELDS = ["metric_name", "interval", "aggregation", "data", "name", "value",
          "timestamp", "sensor_id", "datapoints", "deviceId", "type", "metadata",
          "condition", "actions", "operation", "filter", "params", "desired",
          "reported", "username", "password", "role", "url", "severity", "for",
          "labels", "tags", "version", "query", "layout", "widgets", "percentiles",
          "exact", "start", "end", "tz", "window", "state", "sensors", "group"]


def rand_scalar(r):
    return r.choice([
        lambda: r.choice(GOOD), lambda: r.choice(BAD), lambda: r.randint(-2**63, 2**63),
        lambda: r.random() * 10 ** r.randint(-5, 20), lambda: None, lambda: True,
        lambda: r.choice(SERIES), lambda: 10 ** 400 if r.random() < 0.1 else -0.0])()


def rand_json(r, depth=0):
    k = r.random()
    if depth > 4 or k < 0.4:
        return rand_scalar(r)
    if k < 0.7:
        return {r.choice(FIELDS) if r.random() < 0.9 else r.choice(BAD):
                rand_json(r, depth + 1) for _ in range(r.randint(0, 6))}
    return [rand_json(r, depth + 1) for _ in range(r.randint(0, 5))]


def dumps(v):
    # Python prints 10**400 as a long integer and keeps NaN out with
    # allow_nan=False; both are inputs a client can send.
    try:
        return json.dumps(v, allow_nan=False)
    except ValueError:
        return "null"


def rand_body(r):
    k = r.random()
    if k < 0.55:
        return dumps(rand_json(r)).encode()
    if k < 0.7:  # a plausible body for the common writes, one field spoilt
        t = int(time.time() * 1000)
        v = r.choice([
            {"data": [{"name": r.choice(SERIES), "value": r.random(), "timestamp": t}]},
            {"sensor_id": "temp_a", "datapoints": [{"value": 1.5, "timestamp": t}]},
            {"metric_name": "temp_a", "interval": "5min", "aggregation": "mean"},
            {"deviceId": "dev-%d" % r.randint(0, 9), "type": "t", "metadata": {"a": "b"}},
            {"name": "r%d" % r.randint(0, 9), "condition": "temp_a > 30",
             "actions": [{"type": "log"}]},
            {"desired": {"rate": 5}}, {"operation": "update_firmware",
                                       "filter": {"type": "t"}, "params": {"version": "1"}}])
        key = r.choice(list(v))
        v[key] = rand_json(r, 2) if r.random() < 0.5 else v[key]
        return dumps(v).encode()
    if k < 0.8:
        s = dumps(rand_json(r)).encode()
        return s[:r.randint(0, len(s))]
    if k < 0.87:
        d = r.randint(100, 5000)
        return b"[" * d + b"]" * (d if r.random() < 0.5 else 0)
    if k < 0.94:
        return bytes(r.randrange(256) for _ in range(r.randint(0, 300)))
    return b""


def build_ops(doc):
    ops = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = [p for p in op.get("parameters", []) if isinstance(p, dict)]
            ops.append((method.upper(), path, params))
    return ops


# Percent-encoded bytes that are not UTF-8 (a lead byte alone, a cut
# sequence, a surrogate, 0xff), put into the URL as they are.
RAW = ["%C3", "%E6%BC", "%ED%A0%80", "%FF%FE", "a%C3", "%C0%80", "%00"]


def qval(r, val):
    if r.random() < 0.1:
        return r.choice(RAW) + quote(str(val)[:20], safe="")
    return quote(str(val), safe="")


def make_request(r, op):
    method, path, params = op
    url = path
    query = []
    for p in params:
        name, where = p.get("name", ""), p.get("in")
        val = r.choice(SERIES + GOOD) if r.random() < 0.6 else r.choice(BAD)
        if where == "path":
            url = url.replace("{%s}" % name, qval(r, val))
        elif where == "query" and r.random() < 0.6:
            name = name.replace("{key}", r.choice(["device", "x", ""]))
            query.append("%s=%s" % (quote(name), qval(r, val)))
    for _ in range(r.randint(0, 2) if r.random() < 0.2 else 0):
        query.append("%s=%s" % (quote(r.choice(BAD + FIELDS)), quote(r.choice(BAD))))
    if query:
        url += "?" + "&".join(query)
    body = rand_body(r) if method in ("POST", "PUT", "PATCH") else None
    headers = {}
    if body is not None:
        headers["Content-Type"] = r.choice(["application/json"] * 6 + [
            "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"])
    return method, url, body, headers


class Conn:
    """One kept-alive connection, made again whenever apid closes it."""

    def __init__(self, port):
        self.port, self.c = port, None

    def ask(self, method, url, body, headers):
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.c.request(method, url, body=body, headers=headers)
                resp = self.c.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.c.close()
                    self.c = None
                return resp.status, resp, data
            except (http.client.HTTPException, ConnectionError) as e:
                self.c.close()
                self.c = None
                if attempt:
                    return None, e, b""
        return None, None, b""


# The Prometheus HTTP API's routes answer errors as Prometheus does
# ({"status": "error", "errorType", "error"}), which Grafana reads.
PROM = ("/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels",
        "/api/v1/label/", "/api/v1/status/buildinfo", "/api/v1/metadata")


def error_ok(method, url, resp, data):
    """The API's error object, or why not."""
    ctype = resp.getheader("Content-Type") or ""
    if not ctype.startswith("application/json"):
        return "Content-Type %r" % ctype
    try:
        body = json.loads(data)
        e = body["error"]
    except (ValueError, KeyError, TypeError):
        return "body %r" % data[:120]
    path = url.split("?")[0]
    if (path in PROM or path.startswith("/api/v1/label/")) and \
            not (path == "/api/v1/series" and method == "DELETE"):
        if body.get("status") == "error" and isinstance(body.get("errorType"), str) \
                and isinstance(e, str):
            return None
    if not isinstance(e, dict) or not all(isinstance(e.get(k), str)
                                          for k in ("code", "message", "where")):
        return "error object %r" % e
    return None


def test():
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    r = random.Random(seed)
    p = Platform(extra={"apid": ["--body-max", "262144"]}).start()
    try:
        t0 = int(time.time()) - 3600
        for name in SERIES[:3]:
            p.record(name, t0, [20 + (i % 7) * 0.5 for i in range(200)], step=15)
        st, _, doc = p.http("GET", "/api/openapi.json")
        check(st == 200 and isinstance(doc, dict), "the OpenAPI document")
        ops = build_ops(doc)
        check(len(ops) > 40, "%d operations to call" % len(ops))
        conn = Conn(p.api_port)
        statuses, bad, broken = {}, [], []
        deadline = time.time() + SECONDS
        n = 0
        dead = []
        while n < COUNT and time.time() < deadline and not dead:
            if n % 50 == 0:  # a daemon that died makes every later ask wait
                dead = [name for name, proc in p.procs.items() if proc.poll() is not None]
                if dead:
                    print("  %s died before request %d" % (", ".join(dead), n))
            req = make_request(r, r.choice(ops))
            st, resp, data = conn.ask(*req)
            n += 1
            statuses[st] = statuses.get(st, 0) + 1
            if st is None:
                broken.append((req[0], req[1][:120], str(resp)))
                continue
            why = None
            # 501: a feature this apid runs without (--mqtt-host for
            # batch operations, --mqtt-auth for credentials), said so.
            if st >= 500 and st != 501 and not (st == 503 and resp.getheader("Retry-After")):
                why = "status %d" % st
            elif st >= 400:
                why = error_ok(req[0], req[1], resp, data)
            if why:
                bad.append("%s %s -> %d: %s %s" % (req[0], req[1][:120], st, why,
                                                   data[:160]))
        print("%d requests in %.0f s, statuses %s" % (
            n, SECONDS - max(0, deadline - time.time()),
            ", ".join("%s: %d" % kv for kv in sorted(statuses.items(), key=str))))
        for line in bad[:20]:
            print("  " + line)
        check(n >= min(COUNT, 300), "at least 300 requests sent (%d)" % n)
        check(not broken, "apid answered every request (%d without an answer: %s)"
              % (len(broken), broken[:3]))
        check(not bad, "every answer is 2xx/3xx, or 4xx/501 with the JSON error "
              "object, or 503 with Retry-After (%d not)" % len(bad))
        for name, proc in p.procs.items():
            check(proc.poll() is None, "%s still running" % name)
        st, _, _ = p.http("GET", "/health")
        check(st == 200, "/health answers 200 after the run (got %d)" % st)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
