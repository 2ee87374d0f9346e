#!/usr/bin/env python3
"""Prometheus-compatible query API on apid, checked with a client none of
us wrote: `promtool query instant|range|series|labels` from Debian's
prometheus package, plus Grafana's health-check request shapes (GET and
form POST of 1+1, buildinfo) and Prometheus-shaped errors."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, have, main  # noqa: E402

T0 = 1704067200


def promtool(p, *args):
    r = subprocess.run(["promtool", "query"] + list(args),
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test():
    if not shutil.which("promtool"):
        print("skip: promtool missing (apt-get install prometheus)")
        sys.exit(77)
    for d in ("ingestd", "aggd", "apid"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    p = Platform(daemons=("aggd", "ingestd", "apid")).start()
    url = "http://127.0.0.1:%d" % p.api_port
    try:
        # A counter per job (+2/s and +1/s) and a gauge, every 10 s for 10 min.
        lp = []
        for i in range(61):
            t = T0 + 10 * i
            lp.append("http_requests,job=api value=%d %d" % (20 * i, t))
            lp.append("http_requests,job=db value=%d %d" % (10 * i, t))
            lp.append("machine.temp,room=a value=%s %d" % (20 + (i % 3), t))
        st, _, _ = p.http("POST", "/write?precision=s", "\n".join(lp) + "\n",
                          port=p.ingest_port)
        check(st == 204, "183 readings written")
        time.sleep(0.5)
        at = str(T0 + 600)

        rc, out = promtool(p, "instant", "--time", at, url,
                           'http_requests{job="api"}')
        check(rc == 0 and 'http_requests{job="api"} => 1200' in out,
              "promtool instant selector: %s" % out.strip())
        rc, out = promtool(p, "instant", "--time", at, url,
                           "sum by (job) (rate(http_requests[5m]))")
        check(rc == 0 and '{job="api"} => 2 @' in out and
              '{job="db"} => 1 @' in out,
              "promtool rate + sum by: %s" % out.strip())
        rc, out = promtool(p, "instant", "--time", at, url,
                           "increase(http_requests{job=~\"d.*\"}[1m]) * 2")
        check(rc == 0 and '{job="db"} => 120 @' in out,
              "increase, regex matcher, scalar arithmetic: %s" % out.strip())
        rc, out = promtool(p, "instant", "--time", at, url,
                           "max_over_time(machine_temp[10m])")
        check(rc == 0 and '{room="a"} => 22 @' in out,
              "dotted name as machine_temp, max_over_time: %s" % out.strip())
        rc, out = promtool(p, "instant", "--time", at, url,
                           "quantile_over_time(0.5, machine_temp[10m])")
        check(rc == 0 and '=> 21 @' in out,
              "quantile_over_time: %s" % out.strip())
        rc, out = promtool(p, "instant", "--time", at, url,
                           "count(http_requests) + avg(machine_temp) - min(machine_temp)")
        check(rc == 0 and "{} => 2 @" in out,
              "count/avg/min and vector-scalar: %s" % out.strip())
        rc, out = promtool(p, "range", "--start", str(T0 + 300), "--end", at,
                           "--step", "60s", url, "sum(rate(http_requests[2m]))")
        check(rc == 0 and out.count("3 @[") == 6,
              "promtool range: 6 steps of 3/s: %s" % out.strip())
        rc, out = promtool(p, "series", "--match", "http_requests",
                           "--start", str(T0), "--end", at, url)
        check(rc == 0 and out.count("http_requests") == 2,
              "promtool series: %s" % out.strip())
        rc, out = promtool(p, "labels", "--start", str(T0), "--end", at,
                           url, "job")
        check(rc == 0 and out.split() == ["api", "db"],
              "promtool labels job: %s" % out.strip())
        rc, out = promtool(p, "instant", url, "rate(http_requests)")
        check(rc != 0 and "range" in out, "a bad query is refused: %s"
              % out.strip()[:120])

        # Grafana's data source health check and label browser.
        st, _, b = p.http("GET", "/api/v1/query?query=1%2B1&time=" + at)
        check(st == 200 and b["data"] == {"resultType": "scalar",
                                          "result": [T0 + 600, "2"]},
              "GET query=1+1 -> scalar 2: %s" % b)
        st, _, b = p.http("POST", "/api/v1/query", "query=1%2B1&time=" + at,
                          headers={"Content-Type":
                                   "application/x-www-form-urlencoded"})
        check(st == 200 and b["data"]["result"][1] == "2",
              "form POST query=1+1: %s" % b)
        st, _, b = p.http("GET", "/api/v1/status/buildinfo")
        check(st == 200 and b["status"] == "success" and b["data"]["version"],
              "buildinfo")
        st, _, b = p.http("GET", "/api/v1/labels")
        check(st == 200 and b["data"] == ["__name__", "job", "room"],
              "labels: %s" % b)
        st, _, b = p.http("GET", "/api/v1/label/__name__/values")
        check(st == 200 and b["data"] == ["http_requests", "machine_temp"],
              "__name__ values: %s" % b)
        st, _, b = p.http("GET", "/api/v1/query?query=sum(")
        check(st == 400 and b["status"] == "error" and
              b["errorType"] == "bad_data", "parse error in Prometheus shape")
        # The parser's message quotes one byte of a multi-byte character:
        # the error still goes out (apid once crashed building it).
        for q in ("/api/v1/label/x/values?match%5B%5D=%C3%A9", "/api/v1/query?query=%E6%BC%A2"):
            st, _, b = p.http("GET", q)
            check(st == 400 and b["status"] == "error" and b["errorType"] == "bad_data"
                  and "\ufffd" in b["error"], "%s: 400 with the byte replaced: %s" % (q, b))
        st, _, b = p.http("GET", "/api/v1/query_range?query=1&start=1&end=2")
        check(st == 400 and "step" in b["error"], "missing step: %s" % b)
        # Every query of the Grafana dashboard in deploy/ is in the subset.
        import json
        import urllib.parse
        dash = json.load(open(os.path.join(os.path.dirname(__file__), "..",
                                           "..", "deploy", "grafana",
                                           "sensorpipe.json")))
        exprs = [t["expr"] for pn in dash["panels"] for t in pn["targets"]]
        bad = []
        for e in exprs:
            e = e.replace("$metric", "http_requests")
            st, _, b = p.http("GET", "/api/v1/query?time=%s&query=%s" % (
                at, urllib.parse.quote(e)))
            if st != 200:
                bad.append((e, b))
        check(not bad, "apid answers all %d dashboard queries: %s"
              % (len(exprs), bad))
        # Without match[] /api/v1/series stays the sensorpipe listing.
        st, _, b = p.http("GET", "/api/v1/series")
        check(st == 200 and b.get("matched") == 3,
              "plain /api/v1/series is still the listing: %s" % b.get("matched"))
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
