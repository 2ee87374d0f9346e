#!/usr/bin/env python3
"""The same input through 1 lane (ipc://) and through 4 lanes (one aggd,
anomalyd and alertd per lane, every internal endpoint on tcp://127.0.0.1,
as lanes on other hosts would be) must give identical answers; and, where
network namespaces can be made, through 4 lanes on two "hosts": lanes 0
and 1 beside ingestd and apid, lanes 2 and 3 in a namespace of their own
behind a veth pair, each lane on its own address. Compared: stats
(one series, several, tag filters, ranges, custom percentiles),
aggregation buckets, series listings, exports, anomalies and alerts,
compared as parsed JSON, doubles to the last bit. A second metric of
108,000 readings (more than aggd's 100,000-point raw limit together,
about 27,000 per lane) is answered from rollups by one aggd, so its
stats and percentile aggregates (estimated from DDSketches) are merged
from the lanes' parts and sketches; PromQL *_over_time functions and
aggregations (sum, avg by, min, max, count) across series on every lane
are compared too (PromQL runs on raw points only: past raw retention it
has no samples, for any N). With every raw
point of it expired by retention, mean, sum, count, min, max, std,
first and last per interval (merged from the lanes' per-series parts of
each bucket) must equal N=1 and the input's figures (tcp, and on two
"hosts" where namespaces can be made). The 4-lane run must
also really spread the series: every lane holds some, and each series is
on lane FNV-1a 64(key) % 4."""
import json
import math
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, NetHost, Platform, check, have, main  # noqa: E402

DEVICES = 24
POINTS = 240
T0 = 1704067200000  # 2024-01-01T00:00:00Z in ms
LOAD_SERIES = 40  # "load": 40 series x 2,700 points at 1/min = 108,000
LOAD_POINTS = 2700
RULES = ("warm: temperature > 24 for 5m\nhot: temperature > 31\n"
         "latency_high: api.latency > 50\n")


def fnv1a64(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def dataset():
    """Readings as /api/v1/record batches, in one fixed order."""
    rnd = random.Random(20261123)
    batches = []
    for t in range(POINTS):
        data = []
        for d in range(DEVICES):
            v = 20 + d * 0.25 + 3 * math.sin(t / 17.0 + d) + rnd.gauss(0, 0.4)
            if (t, d % 5) in ((150, 1), (200, 3)):
                v += 14  # spikes for the detectors and the rule
            data.append({"name": "temperature", "tags": {"device": "d%02d" % d,
                         "site": "s%d" % (d % 3)}, "value": round(v, 3),
                         "timestamp": T0 + t * 60000})
        lat = 40 + 10 * math.sin(t / 9.0) + rnd.expovariate(0.2)
        data.append({"name": "api.latency", "value": round(lat, 2),
                     "timestamp": T0 + t * 60000})
        batches.append({"data": data})
    # "load": many points, so one aggd answers from rollups.
    for t0 in range(0, LOAD_POINTS, 50):
        data = []
        for t in range(t0, t0 + 50):
            for d in range(LOAD_SERIES):
                v = round(30 * math.sin(t / 90.0 + d) + rnd.gauss(0, 5) - 4, 1)
                data.append({"name": "load", "tags": {"host": "h%02d" % d},
                             "value": v, "timestamp": T0 + t * 60000})
        batches.append({"data": data})
    return batches


def rollup_queries():
    """Over "load": every one comes from rollups with N=1."""
    q = [("GET", "/api/v1/stats/load", None),
         ("GET", "/api/v1/stats/load?percentiles=99.9,0.5,0,100", None),
         ("GET", "/api/v1/stats/lo*?start=2024-01-01T00:07:30Z&end=2024-01-02T21:00:00Z", None)]
    for agg, ival in (("p90", "15min"), ("p99.5", "1h"), ("p50", "1d")):
        q.append(("POST", "/api/v1/aggregate",
                  {"metric_name": "load", "interval": ival, "aggregation": agg}))
    q.append(("POST", "/api/v1/aggregate",
              {"metric_name": "load", "interval": "1d", "aggregation": "p10",
               "tz": "Europe/Berlin", "start": "2024-01-01T03:00:00Z"}))
    return q


MOMENTS = ("mean", "sum", "count", "min", "max", "std", "first", "last")


def moment_queries():
    """Over "load" (40 series) with every raw point expired: interval
    aggregates other than percentiles, merged from the lanes' per-series
    parts of each bucket."""
    q = [("POST", "/api/v1/aggregate",
          {"metric_name": "load", "interval": "1h", "aggregation": agg})
         for agg in MOMENTS]
    q.append(("POST", "/api/v1/aggregate",
              {"metric_name": "load", "interval": "15min", "aggregation": "mean",
               "start": "2024-01-01T00:07:30Z", "end": "2024-01-02T21:00:00Z"}))
    q.append(("POST", "/api/v1/aggregate",
              {"metric_name": "lo*", "interval": "1d", "aggregation": "sum",
               "tz": "Europe/Berlin"}))
    q.append(("POST", "/api/v1/aggregate",
              {"metric_name": "load", "interval": "1h", "aggregation": "mean",
               "window": "3h"}))
    return q


def expected_hourly():
    """Per hour over every "load" series, from the input: count, sum, min,
    max, sum of squares (the figures the 1h answers must give)."""
    hours = {}
    for b in dataset():
        for r in b["data"]:
            if r["name"] != "load":
                continue
            h = hours.setdefault((r["timestamp"] - T0) // 3600000, [0, 0.0, math.inf, -math.inf, []])
            h[0] += 1
            h[1] += r["value"]
            h[2] = min(h[2], r["value"])
            h[3] = max(h[3], r["value"])
            h[4].append(r["value"])
    return [hours[k] for k in sorted(hours)]


def check_moments(answers, lanes):
    """The 1h answers after retention hold every reading: count, sum, min,
    max exact (sum to rounding), mean and std to rounding."""
    want = expected_hourly()
    for (m, path, body, st, out) in answers:
        q = json.loads(body) if body else {}
        if q.get("interval") != "1h" or q.get("window") or q.get("aggregation") not in MOMENTS:
            continue
        agg = q["aggregation"]
        got = [b["value"] for b in out.get("buckets", [])] if st == 200 else None
        if got is None or len(got) != len(want):
            raise Failure("%d lane(s), %s after retention: %s buckets, want %d (%s)"
                          % (lanes, agg, got and len(got), len(want), str(out)[:300]))
        for g, (n, sm, lo, hi, vals) in zip(got, want):
            mean = sm / n
            ok = {"count": lambda: g == n,
                  "sum": lambda: abs(g - sm) <= 1e-9 * max(1.0, abs(sm)),
                  "mean": lambda: abs(g - mean) <= 1e-9 * max(1.0, abs(mean)),
                  "min": lambda: g == lo,
                  "max": lambda: g == hi,
                  "std": lambda: abs(g - math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)))
                  <= 1e-9 * max(1.0, abs(g)),
                  "first": lambda: g in vals, "last": lambda: g in vals}[agg]()
            if not ok:
                raise Failure("%d lane(s), %s after retention: %r, the input says %r"
                              % (lanes, agg, g, (n, sm, lo, hi)))
        check(True, "%d lane(s), raw expired: hourly %s over %d hours equals the input's"
              % (lanes, agg, len(want)))


def prom_queries():
    """PromQL over series on every lane (apid evaluates on merged raw
    points): *_over_time and aggregations across series."""
    at = "&time=%d" % (T0 // 1000 + 239 * 60)
    rng = "&start=%d&end=%d&step=900" % (T0 // 1000 + 3600, T0 // 1000 + 239 * 60)
    q = []
    for e in ("quantile_over_time(0.9, temperature[1h])",
              "max(quantile_over_time(0.5, temperature[30m]))",
              "avg by (site) (avg_over_time(temperature[30m]))",
              "sum(sum_over_time(temperature[1h])) - count(count_over_time(temperature[1h]))",
              "stddev_over_time(temperature{site=\"s1\"}[1h])",
              "min(min_over_time(temperature[20m])) + max(max_over_time(temperature[20m]))"):
        enc = urllib.parse.quote(e)
        q.append(("GET", "/api/v1/query?query=" + enc + at, None))
        q.append(("GET", "/api/v1/query_range?query=" + enc + rng, None))
    return q


def queries():
    q = [("GET", "/api/v1/stats/temperature", None),
         ("GET", "/api/v1/stats/temperature?percentiles=99.9,12.5,0,100", None),
         ("GET", "/api/v1/stats/temperature?tag.site=s1", None),
         ("GET", "/api/v1/stats/temperature?start=2024-01-01T01:00:00Z&end=2024-01-01T02:30:00Z", None),
         ("GET", "/api/v1/stats/api.latency", None),
         ("GET", "/api/v1/stats/temp*", None),
         ("GET", "/api/v1/stats/nothing_here", None),
         ("GET", "/api/v1/series?match=*", None),
         ("GET", "/api/v1/series?match=temperature&tag.site=s2", None),
         ("GET", "/api/v1/export/temperature?limit=50", None),
         ("GET", "/api/v1/export/temperature?format=csv", None),
         ("GET", "/api/v1/export/temp*?format=ndjson&tag.site=s1&start=2024-01-01T01:00:00Z", None),
         ("GET", "/api/v1/export/temperature%7Bdevice%3Dd07%2Csite%3Ds1%7D", None),
         ("GET", "/api/v1/anomalies/temperature?threshold=3.0", None),
         ("GET", "/api/v1/anomalies/temperature?min_score=0.5&limit=7", None),
         ("GET", "/api/v1/anomalies/api.latency?threshold=2.5", None),
         ("GET", "/api/alerts", None),
         ("GET", "/api/rules", None)]
    for d in (0, 5, 13, 23):
        key = "temperature%%7Bdevice%%3Dd%02d%%2Csite%%3Ds%d%%7D" % (d, d % 3)
        q.append(("GET", "/api/v1/stats/" + key, None))
        q.append(("GET", "/api/v1/anomalies/" + key + "?threshold=2.0", None))
    for agg in ("mean", "p90", "max", "count", "std", "first", "last", "sum", "p99.5"):
        q.append(("POST", "/api/v1/aggregate",
                  {"metric_name": "temperature", "interval": "15min", "aggregation": agg}))
    q.append(("POST", "/api/v1/aggregate",
              {"metric_name": "temperature", "interval": "1h", "aggregation": "mean",
               "tags": {"site": "s0"}, "start": "2024-01-01T00:30:00Z"}))
    q.append(("POST", "/api/v1/aggregate",
              {"metric_name": "api.latency", "interval": "5min", "aggregation": "p50"}))
    return q + rollup_queries() + prom_queries()


def wait_until(p, what, fn, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        ok, last = fn()
        if ok:
            return
        time.sleep(0.2)
    raise Failure("timed out waiting for %s: %s" % (what, last))


def lane_total(body, key):
    """A counter over every lane of a daemon in /stats."""
    if "lanes" in body:
        return sum(l.get(key, 0) for l in body["lanes"] if l.get("up", True))
    return body.get(key, 0)


def run(lanes, tcp, rules, **kw):
    p = Platform(lanes=lanes, tcp=tcp,
                 extra={"alertd": ["--rules", rules], "anomalyd": []}, **kw)
    p.start()
    try:
        total = 0
        for b in dataset():
            st, _, body = p.http("POST", "/api/v1/record", b)
            if st != 200 or body["rejected"]:
                raise Failure("record: %s %s" % (st, body))
            total += body["accepted"]

        def settled():
            st, _, s = p.http("GET", "/stats")
            n = (lane_total(s["aggd"], "points"), lane_total(s["anomalyd"], "readings_in"),
                 lane_total(s["alertd"], "readings_in"))
            return st == 200 and n == (total, total, total), n
        wait_until(p, "every reading through aggd, anomalyd and alertd", settled)
        check(True, "%d lane(s)%s: %d readings through every stage"
              % (lanes, " over tcp" if tcp else "", total))
        for name, argv in p.wrap.items():
            theirs = os.readlink("/proc/%d/ns/net" % p.procs[name].pid)
            check(p.procs[name].poll() is None and theirs != os.readlink("/proc/self/ns/net"),
                  "%s runs in network namespace %s (%s)" % (name, argv[-1], theirs))
        answers = []
        for method, path, body in queries():
            st, _, out = p.http(method, path, body)
            answers.append((method, path, body and json.dumps(body), st, out))
        st, _, stats = p.http("GET", "/stats")
        st, _, metrics = p.http("GET", "/metrics")
        return answers, stats, metrics.decode() if isinstance(metrics, bytes) else metrics
    finally:
        p.stop()


def run_thinned(lanes, **kw):
    """"load" alone, with raw retention of one day: every raw chunk of
    2024 is dropped, so each lane (and one aggd) answers from rollups
    whatever its point count, and "values" could not rebuild the range.
    Returns the answers to rollup_queries() and moment_queries()."""
    p = Platform(daemons=("aggd", "ingestd", "apid"), lanes=lanes, tcp=lanes > 1,
                 extra={"aggd": ["--checkpoint-mb", "1", "--checkpoint-every", "1s",
                                 "--retention-raw", "1", "--compact-every", "1s"]},
                 **kw)
    p.start()
    try:
        total = 0
        for b in dataset():
            if b["data"][0]["name"] != "load":
                continue
            st, _, body = p.http("POST", "/api/v1/record", b)
            if st != 200 or body["rejected"]:
                raise Failure("record: %s %s" % (st, body))
            total += body["accepted"]

        def thinned():
            st, _, s = p.http("GET", "/stats")
            a = s["aggd"]
            each = [l.get("expired_chunks", 0) for l in a.get("lanes", [a])]
            return (st == 200 and lane_total(a, "points") == 0 and all(each),
                    (lane_total(a, "points"), each))
        wait_until(p, "every raw point of every lane dropped by retention", thinned)
        for name, argv in p.wrap.items():
            if name in p.procs:
                theirs = os.readlink("/proc/%d/ns/net" % p.procs[name].pid)
                check(p.procs[name].poll() is None and
                      theirs != os.readlink("/proc/self/ns/net"),
                      "%s runs in network namespace %s" % (name, argv[-1]))
        answers = [(m, path, body and json.dumps(body)) + p.http(m, path, body)[::2]
                   for m, path, body in rollup_queries() + moment_queries()]
        check_moments(answers, lanes)
        # The rollups still hold every reading.
        check(answers[0][3] == 200 and answers[0][4]["count"] == total,
              "%d lane(s): raw points expired, rollups count %s of %d readings"
              % (lanes, answers[0][4].get("count"), total))
        return answers
    finally:
        p.stop()


class TwoHosts(NetHost):
    """Lanes 0 and 1 get NET.10 and NET.11 here, lanes 2 and 3 NET.12 and
    NET.13 in the namespace."""

    def __init__(self):
        super().__init__("lanes", 213, here=(10, 11), there=(12, 13))

    def platform_args(self):
        return {"lane_host": self.net + ".1{lane}", "host": self.net + ".10",
                "wrap": {"%s.%d" % (d, l): self.wrap for d in Platform.LANED
                         for l in (2, 3)}}


def estimated(out):
    """Percentiles of a rollup answer, all numbers (none null)."""
    if not isinstance(out, dict) or out.get("source") != "rollups" or \
            out.get("estimated") is not True:
        return 0
    if "buckets" in out:
        vals = [b["value"] for b in out["buckets"]]
    else:
        vals = [v for k, v in out.items() if k[:1] == "p" and k[1:2].isdigit()]
    return len(vals) if vals and all(isinstance(v, float) for v in vals) else 0


def prom_points(out):
    """Samples in a Prometheus answer."""
    if not isinstance(out, dict) or out.get("status") != "success":
        return 0
    res = out["data"]["result"]
    return sum(len(r.get("values", [])) + ("value" in r) for r in res)


def compare(one, other, label):
    saw = {"anomalies": 0, "alerts": 0, "merged": 0, "estimated": 0, "prom": 0}
    for a, b in zip(one, other):
        method, path, body, st1, out1 = a
        st4, out4 = b[3], b[4]
        what = "%s %s %s" % (method, path, body or "")
        if st1 != st4 or out1 != out4:
            print("N=1:", st1, json.dumps(out1, sort_keys=True)[:3000])
            print("%s:" % label, st4, json.dumps(out4, sort_keys=True)[:3000])
            raise Failure("N=1 and %s differ: %s" % (label, what))
        if isinstance(out1, dict):
            saw["anomalies"] += len(out1.get("anomalies", []))
            saw["alerts"] += len(out1.get("alerts", []))
            saw["merged"] += out1.get("matched", 0) > 1
            saw["estimated"] += estimated(out1) > 0
            saw["prom"] += prom_points(out1)
            if path.startswith("/api/v1/query") and not prom_points(out1):
                raise Failure("PromQL answered no sample: %s %s" % (st1, str(out1)[:300]))
        print("ok: identical with %s (%d): %s" % (label, st1, what))
    return saw


def test():
    if not all(have(d) for d in ("aggd", "anomalyd", "alertd", "ingestd", "apid")):
        print("skip: the whole chain is not built")
        sys.exit(77)
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
        f.write(RULES)
        rules = f.name
    try:
        one, _, _ = run(1, False, rules)
        four, stats4, metrics4 = run(4, True, rules)
        hosts = TwoHosts().__enter__()
        if hosts:
            try:
                two, _, _ = run(4, True, rules, **hosts.platform_args())
            finally:
                hosts.__exit__()
            compare(one, two, "N=4 on two hosts")
        else:
            print("note: no network namespace (needs root and ip netns); "
                  "two-host run not done")
    finally:
        os.unlink(rules)

    # The 4-lane run spread the series over every lane, by FNV-1a 64.
    keys = ["temperature{device=d%02d,site=s%d}" % (d, d % 3) for d in range(DEVICES)]
    keys.append("api.latency")
    keys += ["load{host=h%02d}" % d for d in range(LOAD_SERIES)]
    want = [0] * 4
    for k in keys:
        want[fnv1a64(k) % 4] += 1
    lanes = stats4["aggd"]["lanes"]
    got = [l["series"] for l in sorted(lanes, key=lambda l: l["daemon"])]
    check(got == want and all(got), "series per aggd lane %s match FNV-1a %% 4 %s" % (got, want))
    check(stats4["aggd"]["series"] == len(keys), "/stats sums the lanes' series")
    check('sensorpipe_lane_up{daemon="aggd",lane="3"} 1' in metrics4,
          "/metrics reports every lane")

    # Raw points gone (retention), rollups left: the same answers again,
    # over tcp and on two "hosts".
    thin1 = run_thinned(1)
    thin = compare(thin1, run_thinned(4), "N=4, raw expired")
    check(thin["estimated"] == len(rollup_queries()),
          "after retention, percentiles estimated from rollups compared (%d of %d)"
          % (thin["estimated"], len(rollup_queries())))
    check(thin["merged"] == len(rollup_queries()) + len(moment_queries()),
          "after retention, %d answers merged over 40 series compared" % thin["merged"])
    hosts = TwoHosts().__enter__()
    if hosts:
        try:
            compare(thin1, run_thinned(4, **hosts.platform_args()),
                    "N=4 on two hosts, raw expired")
        finally:
            hosts.__exit__()

    saw = compare(one, four, "N=4 over tcp")
    # The comparison means something only if there was something to compare.
    check(saw["anomalies"] > 0, "anomalies compared (%d)" % saw["anomalies"])
    check(saw["alerts"] > 0, "alerts compared (%d)" % saw["alerts"])
    check(saw["merged"] >= 10, "answers over several series compared (%d)" % saw["merged"])
    # Every rollup query was answered from rollups with numbers as
    # percentiles (not null) and merged from several lanes' sketches.
    check(saw["estimated"] == len(rollup_queries()),
          "percentiles estimated from rollups compared (%d of %d answers)"
          % (saw["estimated"], len(rollup_queries())))
    check(saw["prom"] > 0, "Prometheus samples compared (%d, every query answered)" % saw["prom"])


if __name__ == "__main__":
    main(test)
