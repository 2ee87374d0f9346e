#!/usr/bin/env python3
"""Forecast, trend and correlation over the API (issue 6) against the real
daemons, with two lanes so the answers go through apid's lane merging:
GET /api/v1/forecast/{series}, /api/v1/trend/{series} and
/api/v1/correlation?a=&b=, their numbers checked against series whose
slope, period and correlation are known, and their errors."""
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, have, main  # noqa: E402

T0 = 1704067200  # 2024-01-01T00:00:00Z
N = 720          # 12 hours, a reading a minute


def iso(sec):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))


def a_value(i):
    # 0.5 per hour plus an hourly cycle of amplitude 1.
    return 10 + 0.5 * i / 60 + math.sin(2 * math.pi * i / 60)


def record(p, points):
    for k in range(0, len(points), 500):
        st, _, body = p.http("POST", "/api/v1/record", {"data": points[k:k + 500]})
        check(st == 200 and body["rejected"] == 0, "record accepted: %s %s" % (st, body))


def wait_count(p, series, n, timeout=20):
    deadline = time.time() + timeout
    while True:
        st, _, body = p.http("GET", "/api/v1/stats/" + series)
        if st == 200 and body["count"] == n:
            return
        if time.time() > deadline:
            raise AssertionError("%s never reached %d readings: %s" % (series, n, body))
        time.sleep(0.1)


def error(p, path, status, where):
    st, _, body = p.http("GET", path)
    check(st == status and isinstance(body, dict) and
          body.get("error", {}).get("where") == where,
          "%s -> %d naming %s (%s %s)" % (path, status, where, st, body))


def test():
    for d in ("ingestd", "aggd", "anomalyd", "apid"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    p = Platform(lanes=2).start()
    try:
        pts = []
        for i in range(N):
            t = iso(T0 + 60 * i)
            a = a_value(i)
            pts.append({"name": "an.a", "value": a, "timestamp": t})
            pts.append({"name": "an.b", "value": 5 - 2 * a, "timestamp": t})
            # c: a's values 30 s later, so no timestamp is shared.
            pts.append({"name": "an.c", "value": a, "timestamp": iso(T0 + 60 * i + 30)})
        for dev in ("1", "2"):
            pts += [{"name": "an.t", "tags": {"device": dev}, "value": float(i),
                     "timestamp": iso(T0 + 60 * i)} for i in range(20)]
        record(p, pts)
        for s in ("an.a", "an.b", "an.c"):
            wait_count(p, s, N)

        # Trend: slope 0.5 per hour, period one hour, moving averages.
        st, _, tr = p.http("GET", "/api/v1/trend/an.a?window=1h&points=5")
        check(st == 200, "trend answers 200: %s %s" % (st, tr))
        check(tr["series"] == "an.a" and tr["count"] == N and not tr["truncated"],
              "trend over every reading of an.a")
        check(abs(tr["slope_per_hour"] - 0.5) < 0.02,
              "slope 0.5 per hour (%r)" % tr["slope_per_hour"])
        check(0.8 < tr["r2"] < 0.9, "r2 of a line with an hourly swing (%r)" % tr["r2"])
        season = tr["seasonality"]
        check(season and abs(season["period_seconds"] - 3600) <= 60 and
              season["autocorrelation"] > 0.5,
              "hourly seasonality found (%r)" % season)
        ma = tr["moving_averages"]
        check(len(ma) == 5 and ma[-1]["timestamp"] == "2024-01-01T11:59:00.000Z",
              "5 moving-average samples, the last at the last reading (%r)" % ma[-1])
        # The 1 h moving average of the last hour cancels the cycle.
        want = sum(a_value(i) for i in range(N - 60, N)) / 60
        check(abs(ma[-1]["moving_average"] - want) < 1e-9,
              "moving average of the last hour (%r vs %r)" % (ma[-1]["moving_average"], want))
        # A sub-range: start inclusive, end exclusive.
        st, _, tr2 = p.http("GET", "/api/v1/trend/an.a?start=2024-01-01T06:00:00Z"
                                   "&end=2024-01-01T09:00:00Z")
        check(st == 200 and tr2["count"] == 180 and
              tr2["start"] == "2024-01-01T06:00:00.000Z",
              "trend over a range (%s)" % tr2.get("count"))

        # Correlation: b = 5 - 2a is -1; c pairs only by buckets.
        st, _, co = p.http("GET", "/api/v1/correlation?a=an.a&b=an.b")
        check(st == 200 and co["pairs"] == N and abs(co["pearson"] + 1) < 1e-9,
              "a and 5-2a correlate -1 over %d pairs: %s" % (N, co))
        st, _, co = p.http("GET", "/api/v1/correlation?a=an.a&b=an.c")
        check(st == 200 and co["pairs"] == 0 and co["pearson"] is None and
              "reason" in co, "no shared timestamp: no correlation (%s)" % co)
        st, _, co = p.http("GET", "/api/v1/correlation?a=an.a&b=an.c&interval=5min")
        check(st == 200 and co["pairs"] == N // 5 and co["pearson"] > 0.99,
              "5-minute buckets pair a and c (%s)" % co)

        # Forecast from anomalyd: learnt from the pipeline.
        deadline = time.time() + 20
        while True:
            st, _, fc = p.http("GET", "/api/v1/forecast/an.a?horizon=12h&points=4"
                                      "&threshold=20")
            if st == 200 and fc.get("ready") and \
                    fc["last"] == "2024-01-01T11:59:00.000Z":
                break
            check(time.time() < deadline, "forecast ready: %s %s" % (st, fc))
            time.sleep(0.2)
        check(len(fc["forecast"]) == 4 and fc["interval"] == 0.8,
              "4 forecast points with 80 % intervals")
        last = fc["forecast"][-1]
        check(last["lower"] < last["value"] < last["upper"],
              "interval around the forecast (%r)" % last)
        # The line alone reaches 20 at hour 20, 8 h after the last reading.
        check(abs(fc["trend_per_hour"] - 0.5) < 0.15,
              "forecast trend about 0.5 per hour (%r)" % fc["trend_per_hour"])
        cr = fc["crossing"]
        check(cr and cr["at"] is not None and
              "2024-01-01T17:00" <= cr["at"] <= "2024-01-02T00:00",
              "crosses 20 about 8 h ahead (%r)" % cr)

        # One series needed; tags narrow a name to one.
        error(p, "/api/v1/trend/an.t", 400, "series")
        st, _, tr = p.http("GET", "/api/v1/trend/an.t?tag.device=2")
        check(st == 200 and tr["count"] == 20 and abs(tr["slope_per_hour"] - 60) < 1e-9,
              "tag filter selects one series (slope 60 per hour)")
        error(p, "/api/v1/correlation?a=an.t&b=an.a", 400, "a")
        # Errors name what is wrong.
        error(p, "/api/v1/trend/an.none", 404, "series")
        error(p, "/api/v1/trend/an.a?window=abc", 400, "window")
        error(p, "/api/v1/trend/an.a?points=0", 400, "points")
        error(p, "/api/v1/trend/an.a?start=yesterday", 400, "start")
        error(p, "/api/v1/correlation?a=an.a", 400, "b")
        error(p, "/api/v1/correlation?a=an.a&b=an.b&interval=-5min", 400, "interval")
        error(p, "/api/v1/forecast/an.a?horizon=soon", 400, "horizon")
        error(p, "/api/v1/forecast/an.a?points=5000", 400, "points")
        error(p, "/api/v1/forecast/an.a?threshold=hot", 400, "threshold")
        error(p, "/api/v1/forecast/an.none", 404, "an.none")
        # Anomalies across both lanes say whether anomalyd's novelty alarm
        # went off; 720 readings are within its warm-up, so ?alarm=true
        # finds none.
        st, _, an = p.http("GET", "/api/v1/anomalies/an.*?min_score=0")
        check(st == 200 and all(a["alarm"] is False for a in an["anomalies"]),
              "anomalies carry alarm false (%s %d)"
              % (st, len(an.get("anomalies", []))))
        st, _, an = p.http("GET", "/api/v1/anomalies/an.*?alarm=true")
        check(st == 200 and an["anomalies"] == [],
              "?alarm=true: no alarm during the warm-up (%s %s)" % (st, an))
        error(p, "/api/v1/anomalies/an.a?alarm=maybe", 400, "alarm")
        st, _, _ = p.http("POST", "/api/v1/trend/an.a", {})
        check(st == 405, "POST on a trend is 405")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
