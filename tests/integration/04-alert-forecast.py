#!/usr/bin/env python3
"""Forecast events on the wire, through the real daemons (issue 6):
anomalyd sends each series' forecast (trend plus daily season, 25 points
over 24 h) to alertd about once per --forecast-every of data time, and
alertd's time_to(x, T, forecast) reads it instead of fitting its own
line.

A bearing warms from 40 by 6 degrees an hour for 5 hours, then holds at
70 for 100 minutes. Two rules ask "90 within 12 hours?": one with
alertd's own least-squares line over the last hour, one with anomalyd's
forecast. Both fire during the warm-up; on the plateau the last hour's
line is flat and its rule resolves, while the forecast (a 12-hour
regression) still sees the trend and its rule stays firing. The
forecast rule cannot fire before the first forecast event arrives (30
readings learnt), and the forecast events are seen on anomalyd's PUB
and counted by both daemons."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, binary, check, main, need, wait_for  # noqa: E402

T0 = 1704067200  # 2024-01-01T00:00:00Z
RISE = 300       # minutes of warming, 0.1 degree a minute
HOLD = 100       # minutes at 70


def stats(p):
    st, _, b = p.http("GET", "/stats")
    return b if st == 200 else {}


def events(path, kind):
    with open(path) as f:
        return [json.loads(l) for l in f if '"type":"%s"' % kind in l]


def test():
    need("ingestd", "aggd", "anomalyd", "alertd", "apid", "tap")
    tmp = tempfile.mkdtemp(prefix="sp-04-forecast.")
    rules = os.path.join(tmp, "alertd.rules")
    with open(rules, "w") as f:
        f.write("line: time_to(bearing, 90) < 12h\n"
                "fc: time_to(bearing, 90, forecast) < 12h\n")
    p = Platform(extra={"alertd": ["--rules", rules],
                        "anomalyd": ["--forecast-every", "5m"]}).start()
    taps = []
    try:
        outs = {}
        for src in ("anomalyd", "alertd"):
            outs[src] = os.path.join(tmp, src + ".tap")
            taps.append(subprocess.Popen(
                [binary("tap"), "ipc://%s/%s.0.pub" % (p.run, src)],
                stdout=open(outs[src], "w"), stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # let the SUBs connect (PUB drops until then)

        rise = [40 + 0.1 * i for i in range(RISE)]
        for k in range(0, RISE, 50):
            p.record("bearing", T0 + k * 60, rise[k:k + 50], step=60)
        wait_for(lambda: (stats(p).get("alertd") or {}).get("readings_in")
                 == RISE, "alertd has the warm-up")
        p.record("bearing", T0 + RISE * 60, [70.0] * HOLD, step=60)
        total = RISE + HOLD
        wait_for(lambda: (stats(p).get("alertd") or {}).get("readings_in")
                 == total, "alertd has every reading")
        time.sleep(0.5)

        fcs = events(outs["anomalyd"], "forecast")
        check(len(fcs) >= 20, "forecast events on anomalyd's PUB: %d"
              % len(fcs))
        first = fcs[0]
        check(first["series"] == "bearing" and len(first["value"]) == 25 and
              first["step_s"] == 3600,
              "a forecast is 25 hourly points of the series: %s"
              % {k: first[k] for k in ("series", "timestamp", "step_s")})
        check(all(lo <= v <= hi for lo, v, hi in
                  zip(first["lower"], first["value"], first["upper"])),
              "each point lies in its 80 % interval")
        ts = [f["timestamp"] for f in fcs]
        check(ts == sorted(ts) and len(set(ts)) == len(ts),
              "one forecast per due time, in order")
        # The first one after 30 readings (minute 29), then every 5 min.
        check(first["timestamp"] == "2024-01-01T00:29:00.000Z",
              "the first forecast follows the 30th reading: %s"
              % first["timestamp"])
        check(fcs[1]["timestamp"] == "2024-01-01T00:34:00.000Z",
              "the next one 5 minutes of data later: %s"
              % fcs[1]["timestamp"])
        mid = [f for f in fcs if f["timestamp"] == "2024-01-01T04:59:00.000Z"]
        check(mid and 80 < mid[0]["value"][2] < 90,
              "at the end of the warm-up the forecast 2 h ahead rises "
              "(%s)" % (mid and mid[0]["value"][:3]))

        s = stats(p)
        check((s.get("anomalyd") or {}).get("forecasts_out") == len(fcs),
              "anomalyd counts what it sent: %s"
              % (s.get("anomalyd") or {}).get("forecasts_out"))
        check((s.get("alertd") or {}).get("forecasts_in") == len(fcs),
              "alertd applied every forecast: %s"
              % (s.get("alertd") or {}).get("forecasts_in"))

        al = events(outs["alertd"], "alert")
        for a in al:
            print("# %s %s %s" % (a["rule"], a["state"], a["timestamp"]))
        line = [a for a in al if a["rule"] == "line"]
        fc = [a for a in al if a["rule"] == "fc"]
        check(line and line[0]["state"] == "firing" and
              line[0]["timestamp"] < first["timestamp"],
              "alertd's own line fires before any forecast exists")
        check(fc and fc[0]["timestamp"] > first["timestamp"],
              "the forecast rule waits for the first forecast (%s)"
              % (fc and fc[0]["timestamp"]))
        check([a["state"] for a in line][-1:] == ["resolved"],
              "on the plateau the last hour's line is flat: 'line' "
              "resolves")
        check([a["state"] for a in fc] == ["firing"],
              "the forecast still sees the trend: 'fc' fires and stays")
        st, _, body = p.http("GET", "/api/alerts")
        check(st == 200 and [a["rule"] for a in body["alerts"]] == ["fc"],
              "GET /api/alerts: only the forecast rule is active: %s"
              % body)
    finally:
        for t in taps:
            t.terminate()
            t.wait()
        p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
