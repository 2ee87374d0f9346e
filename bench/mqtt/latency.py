#!/usr/bin/env python3
"""Read tap's JSON lines live from a pipe and report end-to-end latency:
the time a reading became visible in aggd (its PUB, sent right after the
store applied it, as seen here) minus the device's publish time (the
reading's timestamp, epoch ms, taken by sensorpipe-sim just before the
PUBLISH). Prints one JSON summary line at end of input.

It must read tap's stdout as it is produced: reading a file after the run
would measure the time of the reading, not of the arrival. A line is
parsed by slicing, not json.loads and strptime, so this stays cheap
enough not to fall behind (if it did, it would only overstate latency).
"""
import calendar
import json
import sys
import time

KEY = '"timestamp":"'
import os
dump = open(os.environ["LAT_DUMP"], "w") if os.environ.get("LAT_DUMP") else None
lat = []
worst = {}  # second of arrival (since the first) -> [count, max ms]
first = last = None
cache = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds
for line in sys.stdin:
    now = time.time()
    i = line.find(KEY)
    if i < 0:
        continue
    ts = line[i + len(KEY):i + len(KEY) + 24]  # 2024-01-01T00:00:00.000Z
    sec = ts[:19]
    base = cache.get(sec)
    if base is None:
        try:
            base = calendar.timegm(time.strptime(sec, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            continue
        if len(cache) > 100000:
            cache.clear()
        cache[sec] = base
    try:
        t = base + int(ts[20:23]) / 1000.0
    except ValueError:
        continue
    lat.append((now - t) * 1000.0)
    if dump:  # LAT_DUMP=file: arrival and publish time of each reading
        dump.write("%.3f %.3f\n" % (now, t))
    if first is None:
        first = now
    last = now
    w = worst.setdefault(int(now - first), [0, 0.0])
    w[0] += 1
    w[1] = max(w[1], lat[-1])
lat.sort()


def pct(p):
    return round(lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))], 2) \
        if lat else None


span = (last - first) if lat else 0
print(json.dumps({"readings": len(lat), "seconds": round(span, 2),
                  "points_per_min": round(len(lat) / span * 60) if span else 0,
                  "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
                  "max_ms": round(lat[-1], 2) if lat else None,
                  # when the slow ones arrived: [second, readings, max ms]
                  "seconds_over_100ms": [[k, v[0], round(v[1])]
                                         for k, v in sorted(worst.items())
                                         if v[1] > 100]}))
