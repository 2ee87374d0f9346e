#!/usr/bin/env python3
"""Fleet overview and reports against the whole chain: readings of
registered and unregistered devices, an anomaly and a firing alert, then
/api/fleet and the three reports agree with what was sent. With aggd,
anomalyd or alertd stopped, each answers 503 within apid's --timeout, with
Retry-After and a JSON body naming the daemon, and 200 again once it is
back."""
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402

T0 = 1704067200000  # 2024-01-01T00:00:00Z in ms
TIMEOUT = 2  # apid --timeout, seconds
PATHS = ("/api/fleet", "/api/reports/device-performance",
         "/api/reports/anomaly-summary", "/api/reports/fleet-health")


def all_paths(p, rng):
    """GET every fleet route at once; {path: (status, headers, body, secs)}."""
    out = {}

    def one(path):
        t = time.time()
        try:
            st, hdr, b = p.http("GET", path + "?" + rng, timeout=TIMEOUT + 15)
        except Exception as e:  # a hang shows as the client's timeout
            st, hdr, b = None, {}, repr(e)
        out[path] = (st, hdr, b, time.time() - t)
    threads = [threading.Thread(target=one, args=(path,)) for path in PATHS]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def daemon_down(p, rng, daemon):
    """Stop daemon: every fleet route answers 503 naming it, in time; then
    start it again and wait for 200s."""
    p.stop_one(daemon)
    for path, (st, hdr, b, secs) in all_paths(p, rng).items():
        err = b.get("error", {}) if isinstance(b, dict) else {}
        check(st == 503 and err.get("code") == "unavailable"
              and err.get("where", "").startswith(daemon) and err.get("message"),
              "%s down: %s -> 503 naming it (%s %s)" % (daemon, path, st, b))
        check(hdr.get("Retry-After"), "%s down: %s has Retry-After" % (daemon, path))
        check(secs < TIMEOUT + 3, "%s down: %s answered in %.1f s (timeout %d s)"
              % (daemon, path, secs, TIMEOUT))
    st, _, b = p.http("GET", "/health")
    check(st == 200, "%s down: apid's /health still answers (%s)" % (daemon, st))
    p.start_one(daemon)
    deadline = time.time() + 20
    while time.time() < deadline:
        res = all_paths(p, rng)
        if all(r[0] == 200 for r in res.values()):
            break
        time.sleep(0.3)
    check(all(r[0] == 200 for r in res.values()), "%s back: every fleet route 200 (%s)"
          % (daemon, {k: v[0] for k, v in res.items()}))


def test():
    tmp = tempfile.mkdtemp(prefix="sp-05-fleet.")
    rules = os.path.join(tmp, "alertd.rules")
    with open(rules, "w") as f:
        f.write("hot: temperature > 50 severity critical\n")
    p = Platform(extra={"alertd": ["--rules", rules],
                        "apid": ["--timeout", "%ds" % TIMEOUT]}).start()
    try:
        for dev, meta in (("s1", {"location": "hall-a"}), ("s2", {}),
                          ("s3", {"lat": 48.1, "lon": 11.5})):
            st, _, b = p.http("POST", "/api/devices/register",
                              {"deviceId": dev, "type": "temp",
                               "metadata": meta})
            check(st == 201, "register %s" % dev)
        st, _, _ = p.http("POST", "/api/devices/s1/events", {"type": "online"})
        check(st < 300, "s1 online")
        data = [{"name": "temperature", "tags": {"device": "s1"},
                 "value": 20 + (i % 3) / 10, "timestamp": T0 + i * 60000}
                for i in range(60)]
        data += [{"name": "temperature", "tags": {"device": "s1"},
                  "value": 95, "timestamp": T0 + 60 * 60000}]
        data += [{"name": "humidity", "tags": {"device": "s1"}, "value": 40,
                  "timestamp": T0}]
        data += [{"name": "temperature", "tags": {"device": "rogue"},
                  "value": 21, "timestamp": T0 + i * 60000} for i in range(5)]
        st, _, b = p.http("POST", "/api/v1/record", {"data": data})
        check(st == 200 and b["accepted"] == 67, "67 readings recorded")
        rng = "start=2024-01-01&end=2024-01-02"
        deadline = time.time() + 20
        while time.time() < deadline:
            st, _, b = p.http("GET", "/api/fleet?" + rng)
            if st == 200 and b["alerts"]["active"] and b["readings"]["count"] == 67:
                break
            time.sleep(0.3)
        check(st == 200 and b["readings"] == {"count": 67, "series": 3},
              "overview: 67 readings in 3 series (%s)" % b.get("readings"))
        check(b["devices"]["total"] == 3 and b["devices"]["online"] == 1,
              "overview: 3 registered devices, 1 online (%s)" % b["devices"])
        check(b["anomalies"]["count"] >= 1 and
              b["anomalies"]["by_severity"]["critical"] >= 1,
              "overview: the 95 is a critical anomaly (%s)" % b["anomalies"])
        check(b["alerts"]["active"] == 1 and
              b["alerts"]["by_severity"] == {"critical": 1},
              "overview: the alert fires (%s)" % b["alerts"])

        st, _, b = p.http("GET", "/api/reports/device-performance?" + rng)
        rows = {d["deviceId"]: d for d in b["devices"]}
        check(st == 200 and set(rows) == {"s1", "s2", "s3", "rogue"},
              "device performance: registered and unregistered devices")
        s1 = rows["s1"]
        check(s1["readings"] == 62 and s1["series"] == 2 and
              s1["anomalies"] >= 1 and s1["last_reading"] ==
              "2024-01-01T01:00:00.000Z" and s1["metadata"]["location"] ==
              "hall-a", "s1: 62 readings, 2 series, its anomaly (%s)" % s1)
        check(rows["rogue"]["registered"] is False and
              rows["rogue"]["readings"] == 5, "rogue sends unregistered")
        st, _, b = p.http("GET", "/api/reports/anomaly-summary?" + rng)
        check(st == 200 and b["top_series"][0]["series"] ==
              "temperature{device=s1}", "anomaly summary: s1 on top")
        st, _, b = p.http("GET", "/api/reports/fleet-health?" + rng)
        check(st == 200 and b["status"] == "critical" and
              sorted(b["silent"]) == ["s2", "s3"] and
              b["critical_firing"] == 1,
              "fleet health: critical, s2 and s3 silent (%s)" % b)
        st, _, b = p.http("GET", "/api/fleet?start=2030-01-01&end=2030-01-02")
        check(st == 200 and b["readings"]["count"] == 0 and
              b["anomalies"]["count"] == 0, "an empty window counts nothing")

        for daemon in ("anomalyd", "alertd", "aggd"):
            daemon_down(p, rng, daemon)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
