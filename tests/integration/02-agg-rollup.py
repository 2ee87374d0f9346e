#!/usr/bin/python3
"""aggd's rollups and retention, across kill -9.

Two series of a 2-decimal random walk every 10 s over the last 14 days
(242,000 points) go into aggd with raw points kept 5 days and minute
rollups 10 days. Checked against numpy-style exact figures computed here:
- stats over everything come from rollups ("estimated": true, source
  "rollups"): count, sum, min, max, mean, std equal the exact ones, p50 and
  p99 within 1 %; `exact: true` answers from raw points ("estimated": false),
  which after retention cover only the last 5 days;
- hourly means over 14 days (rollups) equal the exact hourly means;
  5-minute means over the last 7 days too (minute rollups, raw is gone);
- retention dropped raw chunks, kept every hour/day bucket, and /stats
  shows it with disk bytes per kind;
- after kill -9 and a restart (rollups loaded from the rollup file plus the
  WAL replayed) every answer is the same, and nothing is counted twice;
- a deleted ragged range stays deleted across another kill -9, with
  rollups equal to the exact figures of what is left (API op and
  sensorpipectl --delete);
- sensorpipectl --backup while aggd runs gives a data directory that
  aggd restarts on with exactly the data of backup time.
"""
import math
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, binary, check, main  # noqa: E402

try:
    from fakeingest import restart, run  # noqa: E402
except ImportError:
    print("python3-zmq and python3-msgpack are needed (tools/install-deps.sh)")
    sys.exit(77)

NS = 10**9
DAY = 86400 * NS
STEP = 10 * NS
NOW = time.time_ns() // (60 * NS) * (60 * NS)
T0 = NOW - 14 * DAY
SERIES = ("roll.a", "roll.b")
PER_BATCH = 4000


def make_points():
    rng = random.Random(4)
    pts = {}
    for s in SERIES:
        x, vals = 20.0, []
        for i in range((NOW - T0) // STEP):
            x += rng.uniform(-0.5, 0.5)
            vals.append((T0 + i * STEP, round(x, 2)))
        pts[s] = vals
    return pts


def pct(sorted_v, q):
    """numpy's default percentile (linear between closest ranks)."""
    r = q / 100 * (len(sorted_v) - 1)
    lo = math.floor(r)
    hi = min(lo + 1, len(sorted_v) - 1)
    return sorted_v[lo] + (sorted_v[hi] - sorted_v[lo]) * (r - lo)


def exact(values):
    n = len(values)
    mean = sum(values) / n
    m2 = sum((v - mean) ** 2 for v in values)
    s = sorted(values)
    return {"count": n, "sum": math.fsum(values), "mean": mean,
            "std": math.sqrt(m2 / (n - 1)), "min": s[0], "max": s[-1],
            "p50": pct(s, 50), "p99": pct(s, 99)}


def near(a, b, rel):
    return abs(a - b) <= rel * max(abs(b), 1e-12)


def bucket_means(pts, step, start, end, series=SERIES):
    out = {}
    for s in series:
        for ts, v in pts[s]:
            if start <= ts < end:
                k = ts // step * step
                c = out.setdefault(k, [0, 0.0])
                c[0] += 1
                c[1] += v
    return {k: (c[0], c[1] / c[0]) for k, c in out.items()}


def iso_to_ns(t):
    # "2026-11-23T12:00:00.000Z"
    from datetime import datetime, timezone
    d = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(d.replace(tzinfo=timezone.utc).timestamp()) * NS


def check_aggregate(f, pts, interval, step, start, what, one=None):
    """Over both series, or over the one series `one` (whose whole
    intervals aggd sums in one pass, agg_rollup_sum_steps)."""
    st, body = f.query({"op": "aggregate", "series": one or "roll.*",
                        "interval": interval, "aggregation": "mean",
                        "start": start})
    check(st == 200 and body["source"] == "rollups",
          "%s: from rollups (%s, %s)" % (what, st, body.get("source")))
    want = bucket_means(pts, step, start, NOW + DAY,
                        (one,) if one else SERIES)
    got = {iso_to_ns(b["timestamp"]): (b["count"], b["value"])
           for b in body["buckets"]}
    check(set(got) == set(want), "%s: %d buckets, expected %d"
          % (what, len(got), len(want)))
    bad = [k for k in want if got[k][0] != want[k][0]
           or not near(got[k][1], want[k][1], 1e-9)]
    check(not bad, "%s: every bucket's count and mean exact (%d differ: %s)"
          % (what, len(bad), [(k, got[k], want[k]) for k in bad[:3]]))


def check_stats(f, want, what):
    st, body = f.query({"op": "stats", "series": "roll.*"})
    check(st == 200, "%s: stats answer (%s)" % (what, st))
    check(body["estimated"] is True and body["source"] == "rollups"
          and body["relative_error"] == 0.01,
          "%s: marked estimated, from rollups" % what)
    check(body["count"] == want["count"], "%s: count %d == %d"
          % (what, body["count"], want["count"]))
    for k in ("sum", "mean", "std", "min", "max"):
        check(near(body[k], want[k], 1e-9), "%s: %s %r == exact %r"
              % (what, k, body[k], want[k]))
    for k in ("p50", "p99"):
        check(near(body[k], want[k], 0.01), "%s: %s %r within 1 %% of %r"
              % (what, k, body[k], want[k]))
    return body


def test():
    p = Platform(daemons=("aggd",))
    p.extra = {"aggd": ["--checkpoint-mb", "1", "--retention-raw", "5",
                        "--retention-minute", "10", "--compact-every", "1s"]}
    run(p, lambda f: _test(p, f))


def _test(p, f):
    pts = make_points()
    items = [[s, ts, v] for s in SERIES for ts, v in pts[s]]
    seq = 0
    for i in range(0, len(items), PER_BATCH):
        seq += 1
        f.send(seq, items[i:i + PER_BATCH])
    f.wait_confirmed(seq, timeout=120)
    want = exact([v for s in SERIES for _, v in pts[s]])

    # Retention runs every second: wait until it has dropped the old raw
    # and minute buckets of everything loaded.
    deadline = time.time() + 30
    while True:
        st, status = f.query({"op": "status"})
        if status["expired_chunks"] > 0 and \
                status["rollup_minute_buckets"] <= 2 * 10 * 1440 + 2:
            break
        if time.time() > deadline:
            raise Failure("retention dropped nothing: %r" % status)
        time.sleep(0.2)
    hours = sum(len({ts // (3600 * NS) for ts, _ in pts[s]}) for s in SERIES)
    check(status["rollup_hour_buckets"] == hours,
          "every hour bucket kept: %d of %d"
          % (status["rollup_hour_buckets"], hours))
    check(status["rollup_minute_buckets"] <= 2 * 10 * 1440 + 2,
          "minute buckets past 10 days dropped: %d"
          % status["rollup_minute_buckets"])
    # Compaction runs on its own thread and is switched over to at a later
    # checkpoint (the heartbeat's, once it is done); a retention rewrite
    # meanwhile drops it and the next checkpoint starts another.
    deadline = time.time() + 30
    while status.get("chunk_compactions", 0) < 1 and time.time() < deadline:
        time.sleep(0.2)
        st, status = f.query({"op": "status"})
    check(status.get("chunk_compactions", 0) >= 1 and
          status.get("compacted_chunks", 0) > 0,
          "chunk compaction ran: %s rewrites, %s chunks merged away"
          % (status.get("chunk_compactions"), status.get("compacted_chunks")))
    for k in ("disk_chunk_bytes", "disk_rollup_bytes", "disk_wal_bytes"):
        check(k in status, "/stats shows %s = %s" % (k, status.get(k)))
    check(status["disk_rollup_bytes"] > 0 and status["disk_chunk_bytes"] > 0,
          "disk bytes of chunks and rollups")

    before = check_stats(f, want, "before kill -9")
    st, raw = f.query({"op": "stats", "series": "roll.*", "exact": True})
    # Retention cuts at its run's clock less 5 days (also inside a
    # chunk), so between NOW (before the first run) and now (after the
    # last) less 5 days.
    cut_last = time.time_ns() - 5 * DAY
    kept = [v for s in SERIES for ts, v in pts[s] if ts >= cut_last]
    most = [v for s in SERIES for ts, v in pts[s] if ts >= NOW - 5 * DAY]
    check(raw["estimated"] is False and raw["source"] == "raw",
          "exact=true answers from raw points")
    check(len(kept) <= raw["count"] <= len(most) < want["count"],
          "raw points older than 5 days dropped: %d kept of %d "
          "(%d to %d expected)" % (raw["count"], want["count"], len(kept),
                                   len(most)))
    hour0 = T0 // (3600 * NS) * (3600 * NS)
    check_aggregate(f, pts, "1h", 3600 * NS, hour0, "hourly means, 14 days")
    check_aggregate(f, pts, "5min", 300 * NS, NOW - 7 * DAY,
                    "5-minute means, 7 days")
    check_aggregate(f, pts, "5min", 300 * NS, NOW - 7 * DAY,
                    "5-minute means of roll.b, 7 days", one="roll.b")

    # More points (the newest minute) that stay in the WAL, then kill -9.
    extra = [[s, NOW + 5 * NS, 100.0] for s in SERIES]
    seq += 1
    f.send(seq, extra)
    f.wait_confirmed(seq)
    proc = p.procs.pop("aggd")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    f.drain(200)
    restart(p)
    check("replayed" in p.log("aggd"), "aggd replays its WAL")
    for s in SERIES:
        pts[s].append((NOW + 5 * NS, 100.0))
    want = exact([v for s in SERIES for _, v in pts[s]])
    after = check_stats(f, want, "after kill -9")
    check(after["count"] == before["count"] + 2, "nothing counted twice")
    st, raw2 = f.query({"op": "stats", "series": "roll.*", "exact": True})
    # Nothing dropped comes back; retention may have cut a few more
    # points meanwhile (it keeps running, at the clock less 5 days).
    cut_last = time.time_ns() - 5 * DAY
    kept = [v for s in SERIES for ts, v in pts[s] if ts >= cut_last]
    check(len(kept) <= raw2["count"] <= raw["count"] + 2,
          "raw stays dropped after the restart (%d, %d to %d expected)"
          % (raw2["count"], len(kept), raw["count"] + 2))
    check_aggregate(f, pts, "1h", 3600 * NS, hour0,
                    "hourly means after restart")
    # Late points of roll.b between the others (never on their 10 s
    # grid), then the same check.
    late = [["roll.b", NOW - 3 * DAY + i * 3607 * NS + 3 * NS // 2, 7.25 + i]
            for i in range(40)]
    seq += 1
    f.send(seq, late)
    f.wait_confirmed(seq)
    pts["roll.b"] += [(ts, v) for _, ts, v in late]
    check_aggregate(f, pts, "5min", 300 * NS, NOW - 7 * DAY,
                    "5-minute means of roll.b after late points", one="roll.b")

    # Delete a ragged range of one series; it is durable when answered:
    # after another kill -9 the points stay gone, rollups agree.
    lo, hi = NOW - 2 * DAY - 7 * NS, NOW - DAY + 3 * 3600 * NS + 13 * NS
    st, d = f.query({"op": "delete", "series": "roll.b", "start": lo,
                     "end": hi})
    n_del = sum(1 for ts, _ in pts["roll.b"] if lo <= ts < hi)
    check(st == 200 and d["deleted"] == n_del and not d["rollups_partial"],
          "delete answers %s %r (expected %d points)" % (st, d, n_del))
    pts["roll.b"] = [(ts, v) for ts, v in pts["roll.b"]
                     if not lo <= ts < hi]
    proc = p.procs.pop("aggd")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    restart(p)
    want = exact([v for s in SERIES for _, v in pts[s]])
    check_stats(f, want, "after delete and kill -9")
    st, body = f.query({"op": "stats", "series": "roll.b", "start": lo,
                        "end": hi, "exact": True})
    check(st == 200 and body["count"] == 0,
          "no point left in the deleted range (%s)" % body.get("count"))
    check_aggregate(f, pts, "1h", 3600 * NS, hour0, "hourly means after delete")
    check_aggregate(f, pts, "5min", 300 * NS, NOW - 7 * DAY,
                    "5-minute means of roll.b after delete", one="roll.b")

    # The same from the command line: sensorpipectl --delete.
    lo_ms, hi_ms = (NOW - 3 * DAY) // 10**6, (NOW - 3 * DAY + 5 * 3600 * NS) // 10**6
    out = subprocess.run([binary("sensorpipectl"), "--rundir", p.run,
                          "--timeout", "20s", "--delete", "roll.a",
                          "--start", str(lo_ms), "--end", str(hi_ms)],
                         capture_output=True, text=True)
    n_del = sum(1 for ts, _ in pts["roll.a"]
                if lo_ms * 10**6 <= ts < hi_ms * 10**6)
    check(out.returncode == 0 and '"deleted":%d' % n_del in out.stdout,
          "sensorpipectl --delete: rc %d, %s %s (expected %d)"
          % (out.returncode, out.stdout.strip(), out.stderr.strip(), n_del))
    pts["roll.a"] = [(ts, v) for ts, v in pts["roll.a"]
                     if not lo_ms * 10**6 <= ts < hi_ms * 10**6]
    check_stats(f, exact([v for s in SERIES for _, v in pts[s]]),
                "after sensorpipectl --delete")

    # A backup while running, then more data; aggd restarted on the backup
    # holds exactly what was there at backup time.
    bdir = os.path.join(p.dir, "backup")
    out = subprocess.run([binary("sensorpipectl"), "--rundir", p.run,
                          "--timeout", "20s", "--backup", bdir],
                         capture_output=True, text=True)
    check(out.returncode == 0 and '"points":' in out.stdout,
          "sensorpipectl --backup: rc %d, %s %s" % (
              out.returncode, out.stdout.strip(), out.stderr.strip()))
    # Compared from 4 days back: raw retention (5 days, at the clock)
    # goes on cutting older points while the test runs, two every 10 s,
    # which a slow run (ASan under load) saw as points missing.
    recent = {"op": "stats", "series": "roll.*", "exact": True,
              "start": NOW - 4 * DAY}
    st, raw_b = f.query(recent)
    seq += 1
    f.send(seq, [["roll.a", NOW + 60 * NS, 1.5]])
    f.wait_confirmed(seq)
    p.stop_one("aggd")
    p.extra = {"aggd": p.extra["aggd"] + ["--data",
                                          os.path.join(bdir, "aggd.0")]}
    restart(p)
    check_stats(f, exact([v for s in SERIES for _, v in pts[s]]),
                "restored from the backup")
    st, raw_r = f.query(recent)
    check(raw_r["count"] == raw_b["count"] and raw_r["sum"] == raw_b["sum"],
          "the backup holds the raw points of its time: %d == %d"
          % (raw_r["count"], raw_b["count"]))
    # ingestd's seqs went on past the backup: its next batch is
    # confirmed (the backup's seqs would have made it a gap for ever).
    seq += 1
    f.send(seq, [["roll.a", NOW + 120 * NS, 2.5]])
    f.wait_confirmed(seq, timeout=15)
    p.stop_one("aggd")


if __name__ == "__main__":
    main(test)
