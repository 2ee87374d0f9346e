#!/usr/bin/env python3
"""/api/openapi.json matches the routes both ways: every documented path
and method reaches a handler (never "no such route" or 405), and every
route literal in apid's sources is documented. Also the seed telemetry
form: GET /api/telemetry/{deviceId}?start=&end=&metric= as JSON and CSV."""
import glob
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import ROOT, Platform, check, have, main  # noqa: E402

SAMPLES = {"series": "temperature", "deviceId": "sensor-001", "name": "job",
           "jobId": "j1", "alertId": "1",
           "sensor": "t1", "file": "app.js", "report": "fleet-health"}


def source_routes():
    """Route literals in apid/*.c, selftests (the bottom of each file)
    left out."""
    found = set()
    for f in glob.glob(os.path.join(ROOT, "apid", "*.c")):
        text = open(f).read()
        cut = re.search(r"\n\w+_test\(bool verbose\)", text)
        if cut:
            text = text[:cut.start()]
        for lit in re.findall(r'"(/(?:api|health|metrics|stats)[^"]*)"', text):
            found.add(lit)
    return found


def documented(lit, paths):
    for p in paths:
        pat = re.sub(r"\{[^}]+\}", "[^/]+", p)
        if re.fullmatch(pat, lit) or re.fullmatch(pat, lit.rstrip("/") + "/x") \
                or p.startswith(lit):
            return True
    return False


def test():
    for d in ("ingestd", "aggd", "apid"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    # anomalyd and alertd are not started: /stats and /metrics wait for
    # them only --timeout.
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"apid": ["--timeout", "1s"]}).start()
    try:
        st, hdr, doc = p.http("GET", "/api/openapi.json")
        check(st == 200 and doc["openapi"].startswith("3.") and
              len(doc["paths"]) > 20, "GET /api/openapi.json is OpenAPI 3")
        for path, ops in doc["paths"].items():
            url = re.sub(r"\{([^}]+)\}", lambda m: SAMPLES[m.group(1)], path)
            for method in ops:
                body = {} if method in ("post", "put", "patch") else None
                st, _, b = p.http(method.upper(), url, body)
                unrouted = (st == 404 and isinstance(b, dict) and
                            b.get("error", {}).get("message") == "no such route")
                check(not unrouted and st != 405,
                      "%s %s reaches a handler (%d)" % (method.upper(), path, st))
        for lit in sorted(source_routes()):
            check(documented(lit, doc["paths"]),
                  "route %s in the sources is documented" % lit)

        lp = ("temperature,device=sensor-001 value=21.5 1704067200\n"
              "temperature,device=sensor-001 value=22.5 1706745600\n"
              "temperature,device=sensor-002 value=30 1704067200\n"
              "humidity,device=sensor-001 value=40 1704067200\n")
        st, _, _ = p.http("POST", "/write?precision=s", lp, port=p.ingest_port)
        check(st == 204, "readings for two devices written")
        time.sleep(0.3)
        st, _, b = p.http("GET", "/api/telemetry/sensor-001?start=2024-01-01"
                          "&end=2024-01-31&metric=temperature")
        check(st == 200 and b["deviceId"] == "sensor-001" and b["count"] == 1
              and b["series"][0]["metric"] == "temperature" and
              b["series"][0]["points"][0]["value"] == 21.5,
              "seed telemetry form: January's one temperature point: %s" % b)
        st, _, b = p.http("GET", "/api/telemetry/sensor-001")
        check(st == 200 and b["count"] == 3 and len(b["series"]) == 2,
              "without metric: every metric of the device (%s)" % b.get("count"))
        st, hdr, b = p.http("GET", "/api/telemetry/sensor-001?metric=temperature"
                            "&format=csv")
        check(st == 200 and hdr["Content-Type"].startswith("text/csv") and
              b.decode().splitlines() == [
                  "series,timestamp,value",
                  'temperature{device=sensor-001},2024-01-01T00:00:00.000Z,21.5',
                  'temperature{device=sensor-001},2024-02-01T00:00:00.000Z,22.5'],
              "CSV export: %r" % b)
        st, _, b = p.http("GET", "/api/telemetry/nobody?metric=temperature")
        check(st == 404 and b["error"]["where"] == "nobody", "unknown device 404")
        st, _, b = p.http("GET", "/api/telemetry/sensor-001?start=yesterday")
        check(st == 400 and b["error"]["where"] == "start", "bad start 400")
        st, _, b = p.http("GET", "/api/telemetry/sensor-001?format=xml")
        check(st == 400 and b["error"]["where"] == "format", "bad format 400")
        st, hdr, b = p.http("GET", "/api/fleet")
        check(st == 503 and "anomalyd" in b["error"]["where"] and
              "Retry-After" in hdr,
              "fleet overview without anomalyd: 503 naming it (%s)" % b)
        for path, where in (("/api/fleet?window=soon", "window"),
                            ("/api/fleet?start=2024-02-01&end=2024-01-01",
                             "start"),
                            ("/api/reports/gossip", "/api/reports/gossip")):
            st, _, b = p.http("GET", path)
            check(st in (400, 404) and b["error"]["where"] == where,
                  "%s: %d naming %s" % (path, st, where))
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
