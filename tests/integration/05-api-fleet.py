#!/usr/bin/env python3
"""Fleet overview and reports against the whole chain: readings of
registered and unregistered devices, an anomaly and a firing alert, then
/api/fleet and the three reports agree with what was sent."""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402

T0 = 1704067200000  # 2024-01-01T00:00:00Z in ms


def test():
    tmp = tempfile.mkdtemp(prefix="sp-05-fleet.")
    rules = os.path.join(tmp, "alertd.rules")
    with open(rules, "w") as f:
        f.write("hot: temperature > 50 severity critical\n")
    p = Platform(extra={"alertd": ["--rules", rules]}).start()
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
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
