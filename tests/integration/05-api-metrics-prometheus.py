#!/usr/bin/env python3
"""apid's /metrics scraped by a real Prometheus (Debian's prometheus): the
target is up with no scrape error, every daemon is up, the query latency
histogram gives a p99 through histogram_quantile, and every query of the
Grafana dashboard's platform panels evaluates without error (the ones
over apid's own counters with data)."""
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, free_port, main, need  # noqa: E402

DASH = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "grafana",
                    "sensorpipe.json")


def test():
    need("ingestd", "aggd", "anomalyd", "alertd", "apid", "prometheus")
    p = Platform().start()
    prom = None
    try:
        port = free_port()
        conf = os.path.join(p.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: sensorpipe\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % p.api_port)
        log = open(os.path.join(p.dir, "prometheus.log"), "ab")
        prom = subprocess.Popen(["prometheus", "--config.file=" + conf,
                                 "--storage.tsdb.path=" + os.path.join(p.dir, "tsdb"),
                                 "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def q(expr):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(expr))
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)

        def targets():
            url = "http://127.0.0.1:%d/api/v1/targets" % port
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)["data"]["activeTargets"]

        # Traffic for the histogram while Prometheus scrapes a few times.
        deadline = time.time() + 30
        up = None
        n = 0
        while time.time() < deadline:
            st, _, _ = p.http("POST", "/api/v1/record", {"data": [
                {"name": "m", "value": n, "timestamp": 1704067200000 + n}]})
            p.http("GET", "/api/v1/stats/m")
            n += 1
            time.sleep(0.05)
            if n % 20:
                continue
            try:
                t = targets()
                up = t[0] if t else None
                r = q("sum(rate(sensorpipe_apid_query_duration_seconds_count[5s]))")
                if (up and up["health"] == "up" and r["data"]["result"] and
                        float(r["data"]["result"][0]["value"][1]) > 0 and n > 100):
                    break
            except OSError:
                pass  # Prometheus still starting
        check(up and up["health"] == "up" and up["lastError"] == "",
              "Prometheus scrapes /metrics without error (%s)" % up)
        r = q("sum(sensorpipe_up)")
        check(r["status"] == "success" and r["data"]["result"][0]["value"][1] == "4",
              "all four daemons up as Prometheus sees them (%s)" % r["data"])
        r = q('histogram_quantile(0.99, sum by (le, daemon) '
              '(rate(sensorpipe_apid_query_duration_seconds_bucket[10s])))')
        vals = {s["metric"].get("daemon"): float(s["value"][1])
                for s in r["data"]["result"] if s["value"][1] not in ("NaN",)}
        check(r["status"] == "success" and 0 < vals.get("aggd", 0) < 10 and
              0 < vals.get("ingestd", 0) < 10,
              "p99 query latency by daemon from the histogram: %s" % vals)
        dash = json.load(open(DASH))
        bad, empty = [], []
        for pn in dash["panels"]:
            if pn["datasource"]["uid"] != "${DS_PLATFORM}":
                continue
            for t in pn["targets"]:
                r = q(t["expr"])
                if r["status"] != "success":
                    bad.append((t["expr"], r))
                elif not r["data"]["result"]:
                    empty.append(t["expr"])
        check(not bad, "Prometheus evaluates every platform panel query: %s" % bad)
        # Panels over apid's own series have data now; anomaly and alert
        # rates may be empty (no alert fires here) but must not fail.
        check(not [e for e in empty if "apid" in e or "ingestd_accepted" in e],
              "the apid and ingest panels have data (empty: %s)" % empty)
        # A daemon that is down shows as down after 300 ms, not after
        # apid's --timeout (5 s): apid watches whether its DEALER is
        # connected. Prometheus sees it too.
        p.stop_one("alertd")
        for path in ("/metrics", "/stats", "/metrics"):
            t0 = time.time()
            st, _, body = p.http("GET", path)
            took = time.time() - t0
            down = (body["alertd"].get("up") is False if path == "/stats" else
                    'sensorpipe_lane_up{daemon="alertd",lane="0"} 0' in body.decode())
            check(st == 200 and down and took < 2.5,
                  "%s with alertd stopped: %s in %.3f s, alertd down" % (path, st, took))
        deadline = time.time() + 20
        while time.time() < deadline:
            r = q("sum(sensorpipe_up)")
            if r["data"]["result"] and r["data"]["result"][0]["value"][1] == "3":
                break
            time.sleep(0.5)
        check(r["data"]["result"] and r["data"]["result"][0]["value"][1] == "3",
              "Prometheus sees three daemons up, alertd down (%s)" % r["data"])
    finally:
        if prom:
            prom.terminate()
            prom.wait(timeout=20)
        p.stop()


if __name__ == "__main__":
    main(test)
