#!/usr/bin/env python3
"""The seed examples of SPEC.md, verbatim, against the real daemons."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, have, main  # noqa: E402

SEED = {"sensor_id": "temp_sensor_001", "datapoints": [
    {"timestamp": "2024-01-01T00:00:00Z", "value": 23.5},
    {"timestamp": "2024-01-01T00:01:00Z", "value": 23.7}]}


def wait_stats(p, path, want_count, timeout=10):
    deadline = time.time() + timeout
    while True:
        st, _, body = p.http("GET", path)
        if st == 200 and body["count"] == want_count:
            return body
        if time.time() > deadline:
            raise AssertionError("stats never reached %d: %s" % (want_count, body))
        time.sleep(0.05)


def test():
    p = Platform().start()
    try:
        st, _, body = p.http("POST", "/api/v1/ingest", SEED)
        check(st == 200 and body == {"accepted": 2, "rejected": 0, "errors": []},
              "seed ingest accepted: %s %s" % (st, body))
        s = wait_stats(p, "/api/v1/stats/temp_sensor_001", 2)
        check(s["mean"] == 23.6, "mean 23.6 (%r)" % s["mean"])
        check(abs(s["std"] - 0.1414213562373095) < 1e-12, "sample std 0.1414 (%r)" % s["std"])
        check(s["min"] == 23.5 and s["max"] == 23.7, "min 23.5, max 23.7")
        for k in ("p50", "p90", "p95", "p99"):
            check(k in s, "stats has %s" % k)
        # Idempotent: the same batch again changes nothing.
        st, _, _ = p.http("POST", "/api/v1/ingest", SEED)
        check(st == 200, "second ingest of the same batch accepted")
        time.sleep(0.3)
        s2 = wait_stats(p, "/api/v1/stats/temp_sensor_001", 2)
        check(s2 == s, "stats unchanged after a duplicate batch")
        # Time range: start inclusive, end exclusive.
        s3 = wait_stats(p, "/api/v1/stats/temp_sensor_001?start=2024-01-01T00:01:00Z", 1)
        check(s3["mean"] == 23.7, "start is inclusive")
        s4 = wait_stats(p, "/api/v1/stats/temp_sensor_001?end=2024-01-01T00:01:00Z", 1)
        check(s4["mean"] == 23.5, "end is exclusive")

        rec = {"data": [{"name": "api.latency", "value": v,
                         "timestamp": "2024-01-01T00:0%d:00Z" % i}
                        for i, v in enumerate([23.5, 30.1, 12.0, 18.25, 40.0, 22.0])]}
        st, _, body = p.http("POST", "/api/v1/record", rec)
        check(st == 200 and body["accepted"] == 6, "record accepted 6")
        wait_stats(p, "/api/v1/stats/api.latency", 6)
        st, _, agg = p.http("POST", "/api/v1/aggregate",
                            {"metric_name": "api.latency", "interval": "5min",
                             "aggregation": "mean"})
        check(st == 200, "aggregate answers 200: %s" % agg)
        b = agg["buckets"]
        check(len(b) == 2 and b[0]["count"] == 5 and b[1]["count"] == 1,
              "two 5-minute buckets of 5 and 1 points")
        check(abs(b[0]["value"] - (23.5 + 30.1 + 12.0 + 18.25 + 40.0) / 5) < 1e-12,
              "first bucket mean")
        st, _, agg = p.http("POST", "/api/v1/aggregate",
                            {"metric_name": "api.latency", "interval": "1h",
                             "aggregation": "p90"})
        vals = sorted([23.5, 30.1, 12.0, 18.25, 40.0, 22.0])
        rank = 0.9 * 5
        lo = int(rank)
        want = vals[lo] + (vals[lo + 1] - vals[lo]) * (rank - lo)
        check(st == 200 and abs(agg["buckets"][0]["value"] - want) < 1e-9,
              "p90 aggregation interpolates like numpy")

        # MQTT-style tagged series, selected by tag.
        st, _, _ = p.http("POST", "/api/v1/record", {"data": [
            {"name": "temperature", "tags": {"device": "sensor-001"}, "value": 22.5},
            {"name": "temperature", "tags": {"device": "sensor-002"}, "value": 30.5}]})
        s = wait_stats(p, "/api/v1/stats/temperature?tag.device=sensor-001", 1)
        check(s["mean"] == 22.5 and s["matched"] == 1, "tag filter selects one device")
        s = wait_stats(p, "/api/v1/stats/temperature", 2)
        check(s["matched"] == 2 and s["mean"] == 26.5, "bare name matches every device")
        s = wait_stats(p, "/api/v1/stats/temperature%7Bdevice%3Dsensor-002%7D", 1)
        check(s["mean"] == 30.5, "canonical key in the URL")

        if have("anomalyd"):
            pts = [{"timestamp": "2024-02-01T00:%02d:00Z" % i,
                    "value": 20.0 + (0.1 if i % 2 else -0.1)} for i in range(50)]
            pts.append({"timestamp": "2024-02-01T00:50:00Z", "value": 100.0})
            st, _, _ = p.http("POST", "/api/v1/ingest",
                              {"sensor_id": "steady", "datapoints": pts})
            check(st == 200, "steady series ingested")
            deadline = time.time() + 10
            found = None
            while time.time() < deadline and not found:
                st, _, body = p.http("GET", "/api/v1/anomalies/steady?threshold=3.0")
                if st == 200:
                    found = [a for a in body.get("anomalies", []) if a["value"] == 100.0]
                time.sleep(0.1)
            check(found, "the reading of 100 is reported as an anomaly")
        else:
            print("note: anomalyd not built yet; anomaly check not run")

        st, _, text = p.http("GET", "/metrics")
        text = text.decode() if isinstance(text, bytes) else text
        check(st == 200 and 'sensorpipe_up{daemon="aggd"} 1' in text,
              "/metrics reports aggd up")
        check("sensorpipe_aggd_readings_in" in text, "/metrics has aggd counters")
        # Every aggd query so far (stats polls, two aggregates) is in the
        # latency histogram, whether relayed as JSON or as text.
        n = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(
            'sensorpipe_apid_query_duration_seconds_count{daemon="aggd"}')]
        check(n and n[0] >= 4, "/metrics: aggd query latency histogram counts %s" % n)
        st, _, body = p.http("GET", "/stats")
        check(st == 200 and body["aggd"]["series"] >= 4, "/stats has the store's series")
        st, _, body = p.http("GET", "/health")
        check(st == 200 and body["status"] == "ok", "/health ok")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
