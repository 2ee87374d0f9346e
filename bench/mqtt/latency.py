#!/usr/bin/env python3
"""Read tap's JSON lines from stdin and report end-to-end latency: the
time a reading became visible in aggd (its PUB, sent right after the
store applied it) minus the device's publish time (the reading's
timestamp, epoch ms). Prints one JSON summary line at end of input."""
import json
import sys
import time
from datetime import datetime, timezone

lat = []
first = last = None
for line in sys.stdin:
    now = time.time()
    try:
        r = json.loads(line)
    except ValueError:
        continue
    ts = datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()
    lat.append((now - ts) * 1000.0)
    first = first or now
    last = now
lat.sort()


def pct(p):
    return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))] if lat else None


print(json.dumps({"readings": len(lat), "seconds": (last - first) if lat else 0,
                  "points_per_min": len(lat) / (last - first) * 60 if lat and last > first else 0,
                  "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
                  "max_ms": lat[-1] if lat else None}))
