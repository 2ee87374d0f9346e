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

Three platforms, one after the other: without auth; with API keys of
two tenants (then requests carry a valid key, the other tenant's as an
InfluxDB token, broken credentials or none); and with two lanes, so
apid asks both and merges their answers. ingestd's own routes
(/write with line protocol, /api/v2/write, /api/v1/ingest) are called
too. The run is seeded (SP_SEED, else random; the seed is printed so a
failure can be replayed) and bounded: 1,500 requests or 150 s in all,
20,000 or 900 s with SP_FULL=1.

Here apid runs without a broker, so the device-jobs, batch, command and
shadow routes answer 501; 05-api-monkey-mqtt.py runs these requests
against apid on a real mosquitto, with devices publishing meanwhile.
"""
import http.client
import json
import os
import random
import sys
import tempfile
import time
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, write_keys  # noqa: E402

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


def plausible(r, method, path):
    """A body the route could accept (before one field is spoilt), or
    None. Webhooks point at the discard port of loopback."""
    t = int(time.time() * 1000)
    dev = "dev-%d" % r.randint(0, 9)
    rule = {"name": "r%d" % r.randint(0, 9), "condition": r.choice([
        "temp_a > 30", "temperature > 30 for 5m", "anomaly(temp_a) > 0.9", "avg(temp_b, 5m) < 1"]),
        "severity": r.choice(["info", "warning", "critical"]),
        "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]}
    table = [
        ("/api/v1/record", {"data": [{"name": r.choice(SERIES[:3]), "value": r.random(),
                                      "timestamp": t}]}),
        ("/api/v1/ingest", {"sensor_id": "temp_a", "datapoints": [{"value": 1.5,
                                                                   "timestamp": t}]}),
        ("/api/v1/aggregate", {"metric_name": r.choice(SERIES), "interval": r.choice(
            ["5min", "1h", "30s", "1d"]), "aggregation": r.choice(["mean", "p99", "max", "count"])}),
        ("/api/devices/register", {"deviceId": dev, "type": "t", "metadata": {"location": "a"}}),
        ("/api/devices/batch", {"operation": r.choice(["update_firmware", "reboot", "tag"]),
                                "filter": {"type": "t"}, "params": {"version": "2.1.0"}}),
        ("/shadow", {"desired": {"rate": r.randint(1, 9)}, "reported": {"rate": 1}}),
        ("/events", {"type": "note", "data": {"text": "x"}}),
        ("/sensors", {"name": "temperature", "unit": "C"}),
        ("/api/rules", rule), ("/api/users", {"name": "u%d" % r.randint(0, 3),
                                              "password": "p" * 12, "role": "read"}),
        ("/api/dashboards/", {"layout": [{"widget": "chart", "series": "temp_a"}]}),
        ("/api/login", {"username": "u1", "password": "p" * 12}),
        ("/api/devices/", {"metadata": {"location": "b"}, "tags": ["x"]}),
    ]
    for frag, body in table:
        if frag in path:
            return body
    return None


def rand_body(r, method="POST", path=""):
    k = r.random()
    if k < 0.4:
        return dumps(rand_json(r)).encode()
    if k < 0.75:  # a plausible body for the route, a field spoilt now and then
        v = plausible(r, method, path)
        if v is not None:
            if r.random() < 0.3:
                key = r.choice(list(v))
                v[key] = rand_json(r, 2)
            return dumps(v).encode()
        return dumps(rand_json(r)).encode()
    if k < 0.82:
        s = dumps(rand_json(r)).encode()
        return s[:r.randint(0, len(s))]
    if k < 0.88:
        d = r.randint(100, 5000)
        return b"[" * d + b"]" * (d if r.random() < 0.5 else 0)
    if k < 0.95:
        return bytes(r.randrange(256) for _ in range(r.randint(0, 300)))
    return b""


# ingestd's own port: its routes, with the parameters InfluxDB clients send.
INGEST_OPS = [
    ("POST", "/write", [{"name": n, "in": "query"} for n in ("db", "precision", "u", "p",
                                                             "rp", "consistency")]),
    ("POST", "/api/v2/write", [{"name": n, "in": "query"} for n in ("org", "bucket",
                                                                    "precision")]),
    ("POST", "/api/v1/ingest", []), ("GET", "/health", []), ("GET", "/ping", []),
    ("GET", "/write", []), ("DELETE", "/api/v1/ingest", []), ("GET", "/nothing", [])]
LP = [b"m value=1", b"m,host=a value=1.5 1700000000000000000", b"cpu,t=x a=1,b=2i,c=\"s\"",
      b"m value=1\nm value=2 1700000000", b"m value=", b"m,=x value=1", b"m value=1e999",
      b"m value=NaN", b",x value=1", b"m v=1 99999999999999999999", b"m\\ x,a\\,b=c v=1"]


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


def make_request(r, op, auth=None):
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
    body = rand_body(r, method, path) if method in ("POST", "PUT", "PATCH") else None
    if path.endswith("/write") and method == "POST" and r.random() < 0.7:
        body = b"\n".join(r.choice(LP) for _ in range(r.randint(1, 5)))
        if r.random() < 0.3:
            body = body[:r.randint(0, len(body))]
    headers = {}
    if auth:
        k = r.random()
        if k < 0.5:
            headers["Authorization"] = "Bearer " + auth[0]
        elif k < 0.6:
            headers["Authorization"] = "Token " + auth[1]
        elif k < 0.7:
            headers["Authorization"] = r.choice(["Bearer ", "Bearer x", "Basic Zm9vOmJhcg==",
                                                 "Bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30.",
                                                 "Token", "Bearer " + "A" * 5000])
        elif k < 0.8:
            headers["Cookie"] = "sp_session=" + r.choice(["", "x", "A" * 300, "%FF"])
        # else: no credentials at all
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


def run(r, p, ops, count, seconds, auth=None, lanes=1):
    """count requests (or seconds) of random ops; failures are checked."""
    conns = {p.api_port: Conn(p.api_port), p.ingest_port: Conn(p.ingest_port)}
    statuses, bad, broken, dead = {}, [], [], []
    t0 = time.time()
    n = 0
    while n < count and time.time() < t0 + seconds and not dead:
        if n % 50 == 0:  # a daemon that died makes every later ask wait
            dead = [name for name, proc in p.procs.items() if proc.poll() is not None]
            if dead:
                print("  %s died before request %d" % (", ".join(dead), n))
        port, op = r.choice(ops)
        req = make_request(r, op, auth)
        st, resp, data = conns[port].ask(*req)
        n += 1
        statuses[st] = statuses.get(st, 0) + 1
        if st is None:
            broken.append((req[0], req[1][:120], str(resp)))
            continue
        why = None
        # 501: a feature this apid runs without (--mqtt-host for batch
        # operations, --mqtt-auth for credentials), said so.
        if st >= 500 and st != 501 and not (st == 503 and resp.getheader("Retry-After")):
            why = "status %d" % st
        elif st >= 400:
            why = error_ok(req[0], req[1], resp, data)
        if why:
            bad.append("%s %s -> %d: %s %s" % (req[0], req[1][:120], st, why, data[:160]))
    what = ("with keys" if auth else "without auth") + (", %d lanes" % lanes if lanes > 1 else "")
    print("%s: %d requests in %.0f s, statuses %s" % (
        what, n, time.time() - t0,
        ", ".join("%s: %d" % kv for kv in sorted(statuses.items(), key=str))))
    for line in bad[:20]:
        print("  " + line)
    check(n >= min(count, 300), "%s: at least 300 requests sent (%d)" % (what, n))
    check(not broken, "%s: every request answered (%d not: %s)" % (what, len(broken), broken[:3]))
    check(not bad, "%s: every answer is 2xx/3xx, or 4xx/501 with the JSON error "
          "object, or 503 with Retry-After (%d not)" % (what, len(bad)))
    if auth:
        check(statuses.get(401, 0) > 0 and statuses.get(200, 0) > 0,
              "%s: both refused and served requests" % what)
    for name, proc in p.procs.items():
        check(proc.poll() is None, "%s: %s still running" % (what, name))
    st, _, _ = p.http("GET", "/health")  # open, also with keys
    check(st == 200, "%s: /health answers 200 after the run (got %d)" % (what, st))


def phase(r, auth, lanes=1):
    """One platform, seeded, then the random run; stopped cleanly."""
    extra = {"apid": ["--body-max", "262144"]}
    keys = None
    if auth:
        keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
        keys.close()
        write_keys(keys.name, {"acme-ops": ("acme", auth[0]), "globex-ops": ("globex", auth[1])})
        extra = {"apid": ["--body-max", "262144", "--keys", keys.name,
                          "--key-rate", "100000", "--key-burst", "100000"],
                 "ingestd": ["--keys", keys.name]}
    p = Platform(extra=extra, lanes=lanes).start()
    try:
        t0 = int(time.time()) - 3600
        hdr = {"Authorization": "Bearer " + auth[0]} if auth else None
        for name in SERIES[:3]:
            data = [{"name": name, "value": 20 + (i % 7) * 0.5, "timestamp": (t0 + i * 15) * 1000}
                    for i in range(200)]
            st, _, b = p.http("POST", "/api/v1/record", {"data": data}, headers=hdr)
            check(st == 200, "record 200 readings of %s: %s" % (name, st))
        st, _, doc = p.http("GET", "/api/openapi.json", headers=hdr)
        check(st == 200 and isinstance(doc, dict), "the OpenAPI document")
        ops = [(p.api_port, op) for op in build_ops(doc)]
        check(len(ops) > 40, "%d operations to call" % len(ops))
        # ingestd's routes as often as a tenth of apid's
        ops += [(p.ingest_port, op) for op in INGEST_OPS] * max(1, len(ops) // 80)
        run(r, p, ops, COUNT // 3, SECONDS // 3, auth, lanes)
    finally:
        p.stop(secrets=list(auth or ()))
        if keys:
            os.unlink(keys.name)


def test():
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    r = random.Random(seed)
    phase(r, None)
    phase(r, ("k-" + "%032x" % r.getrandbits(128), "k-" + "%032x" % r.getrandbits(128)))
    phase(r, None, lanes=2)  # apid merges the lanes' answers


if __name__ == "__main__":
    main(test)
