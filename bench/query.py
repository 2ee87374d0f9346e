#!/usr/bin/python3
"""Query benchmark: sensorpipe (ingestd + aggd + apid) against
VictoriaMetrics and InfluxDB 1.x in one run, with the peers' own harness
(/work/shared/peers): gen.py's 1 M-point series `id=dev_big` (10 s step,
115.7 days) loaded with load.py, then the peers' query_bench.py procedure
(its `bench()`: one warm-up, blocks of N timed requests on one kept-alive
loopback connection, the block with the least other load reported) for
the same questions: mean, max, count, p99, all four in one request, and a
5-minute mean over the whole range.

sensorpipe answers each question twice: as it does by default (rollups and
sketches for a range this long: percentiles "estimated", within 1 %) and
with exact=true (the raw points, numpy-exact). Every answer is checked
against numpy on gen.py's big_values.npy. Only dev_big is loaded into each
system (not the 10 M main set), the same for all three.

  bench/query.py [--runs 10] [--systems sensorpipe,victoria-metrics,influxdb]
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from urllib.parse import quote, urlencode

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import storage  # noqa: E402  (servers, load, RSS and CPU helpers)

sys.path.insert(0, storage.PEERS)
import query_bench as qb  # noqa: E402  (the peers' timing procedure)

KEY = "sensor{id=dev_big}"


class PostConn:
    """An HTTPConnection whose GET of a registered path is sent as a POST
    with a JSON body, so qb.bench() times POST /api/v1/aggregate the same
    way as every GET."""

    def __init__(self, host, port):
        self.c = http.client.HTTPConnection(host, port, timeout=300)
        self.posts = {}

    def request(self, method, path):
        if path in self.posts:
            self.c.request("POST", path.split("#")[0], body=self.posts[path],
                           headers={"Content-Type": "application/json"})
        else:
            self.c.request(method, path)

    def getresponse(self):
        return self.c.getresponse()


def sp_queries(exact):
    stats = "/api/v1/stats/%s%s" % (quote(KEY, safe=""),
                                    "?exact=true" if exact else "")
    agg = {"metric_name": KEY, "interval": "5min", "aggregation": "mean"}
    if exact:
        agg["exact"] = True
    # One stats request answers mean, max, count and p99 together.
    return {"mean": stats, "max": stats, "count": stats, "p99": stats,
            "mean+max+count+p99": stats,
            "rollup_5m_mean": ("/api/v1/aggregate#%d" % exact, agg)}


class Sensorpipe(storage.Sensorpipe):
    warm_ms = 0  # apid --warm-ms (common/warm.h); 0 = off, its default

    def start(self, work):
        pids = super().start(work)
        self.api_port = storage.free_port()
        log = open(os.path.join(self.dir, "apid.log"), "wb")
        self.procs["apid"] = subprocess.Popen(
            [os.path.join(storage.ROOT, "build", "apid"), "--rundir",
             os.path.join(self.dir, "run"), "--port", str(self.api_port),
             "--datadir", os.path.join(self.dir, "apid"),
             "--warm-ms", str(self.warm_ms)],
            stdout=log, stderr=subprocess.STDOUT)
        if not storage.wait_http("http://127.0.0.1:%d/health" % self.api_port):
            raise SystemExit("apid did not start: " + open(log.name).read())
        return pids + [self.procs["apid"].pid]

    def queries(self, a, ref):
        out = {}
        for exact in (False, True):
            c = PostConn("127.0.0.1", self.api_port)
            for name, q in sp_queries(exact).items():
                path = q
                if isinstance(q, tuple):
                    path = q[0]
                    c.posts[path] = json.dumps(q[1])
                r, body = qb.bench(c, path, a.runs)
                b = json.loads(body)
                if name == "rollup_5m_mean":
                    bk = b["buckets"]
                    r["answer"] = "%d buckets, first=%s" % (
                        len(bk), [bk[0]["timestamp"], bk[0]["value"]])
                    r["check"] = check_rollup(bk, ref)
                else:
                    r["answer"] = {k: b.get(k) for k in
                                   ("mean", "max", "count", "p99", "estimated",
                                    "source")}
                    r["check"] = check_stats(b, ref)
                label = name + (" exact" if exact else "")
                out[label] = r
                print(self.name, label, r["median_ms"], "ms", r["check"],
                      flush=True)
        if self.warm_ms:
            # What the latency cost: CPU the spinners burnt in all.
            st = json.loads(storage.urllib.request.urlopen(
                "http://127.0.0.1:%d/stats" % self.api_port).read())
            out["_warm_spin_ms"] = st["apid"]["warm_spin_ms"]
            print(self.name, "warm: spinners used %d ms of CPU in all the "
                  "queries" % st["apid"]["warm_spin_ms"], flush=True)
        return out


def check_stats(b, ref):
    errs = {k: abs(b[k] - ref[k]) / abs(ref[k]) for k in ("mean", "max", "p99")}
    ok = b["count"] == ref["count"] and errs["mean"] < 1e-9 and \
        errs["max"] == 0 and errs["p99"] <= (0.01 if b.get("estimated") else 1e-9)
    return "%s (p99 off by %.3g %%)" % ("ok" if ok else "WRONG",
                                        100 * errs["p99"])


def check_rollup(bk, ref):
    want = ref["rollup"]
    got = np.array([x["value"] for x in bk])
    ok = len(got) == len(want) and np.allclose(got, want, rtol=1e-9, atol=0)
    return "%s (%d buckets)" % ("ok" if ok else "WRONG", len(got))


class Victoria(storage.Victoria):
    def start(self, work):
        # As the peers' run_all.sh: no result cache, and room for the
        # 33,334 points of the 5-minute rollup.
        self.dir = storage.tempfile.mkdtemp(prefix="vm-bench.", dir=work)
        self.port = storage.free_port()
        self.p = subprocess.Popen(
            ["victoria-metrics", "-storageDataPath=" + self.dir,
             "-httpListenAddr=127.0.0.1:%d" % self.port,
             "-retentionPeriod=100y", "-search.disableCache",
             "-search.maxPointsPerTimeseries=100000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not storage.wait_http("http://127.0.0.1:%d/health" % self.port):
            raise SystemExit("victoria-metrics did not start")
        self.url = "http://127.0.0.1:%d/write?db=bench&precision=s" % self.port
        return [self.p.pid]

    def queries(self, a, m):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        out = {}
        for name, q in qb.vm_queries(m).items():
            path = "/api/v1/query?" + urlencode({"query": q, "time": m["big_end"],
                                                 "nocache": 1})
            r, body = qb.bench(c, path, a.runs)
            res = json.loads(body)["data"]["result"]
            r["answer"] = {x["metric"].get("stat", name): x["value"][1] for x in res}
            out[name] = r
            print(self.name, name, r["median_ms"], "ms", r["answer"], flush=True)
        q = 'avg_over_time(sensor_value{id="dev_big"}[5m])'
        path = "/api/v1/query_range?" + urlencode(
            {"query": q, "start": m["start"], "end": m["big_end"], "step": "5m",
             "nocache": 1})
        r, body = qb.bench(c, path, a.runs)
        res = json.loads(body)["data"]["result"]
        r["answer"] = "%d buckets" % len(res[0]["values"])
        out["rollup_5m_mean"] = r
        print(self.name, "rollup_5m_mean", r["median_ms"], "ms", flush=True)
        return out


class Influx(storage.Influx):
    def queries(self, a, m):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        out = {}
        for name, q in qb.influx_queries(m).items():
            path = "/query?" + urlencode({"db": "bench", "epoch": "s", "q": q})
            r, body = qb.bench(c, path, a.runs)
            vals = json.loads(body)["results"][0]["series"][0]["values"]
            r["answer"] = vals[0][1:] if len(vals) == 1 else "%d buckets" % len(vals)
            out[name] = r
            print(self.name, name, r["median_ms"], "ms", r["answer"], flush=True)
        return out


def reference(data, m):
    x = np.load(os.path.join(data, "big_values.npy"))
    n = len(x) // 30 * 30
    roll = x[:n].reshape(-1, 30).mean(axis=1)
    if n < len(x):
        roll = np.append(roll, x[n:].mean())
    return {"mean": float(x.mean()), "max": float(x.max()), "count": len(x),
            "p99": float(np.percentile(x, 99)), "rollup": roll}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--systems", default="sensorpipe,victoria-metrics,influxdb")
    ap.add_argument("--work", default="/tmp/sp-bench")
    ap.add_argument("--json")
    ap.add_argument("--warm-ms", type=int, default=0,
                    help="apid --warm-ms (CPU spinners after each request)")
    a = ap.parse_args()
    Sensorpipe.warm_ms = a.warm_ms
    data = os.path.join(a.work, "data-big")
    if not os.path.exists(os.path.join(data, "manifest.json")):
        subprocess.run([storage.PY, os.path.join(storage.PEERS, "gen.py"),
                        "--series", "1", "--points", "1", "--big", "1000000",
                        "--out", data],
                       check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(data, "manifest.json")) as f:
        m = json.load(f)
    ref = reference(data, m)
    systems = {"sensorpipe": (Sensorpipe, os.path.join(storage.ROOT, "build", "aggd")),
               "victoria-metrics": (Victoria, shutil.which("victoria-metrics")),
               "influxdb": (Influx, shutil.which("influxd"))}
    rows = {}
    for name in a.systems.split(","):
        cls, binary = systems[name]
        if not binary or not os.path.exists(binary):
            print("skip %s: not installed" % name)
            continue
        s = cls()
        pids = s.start(a.work)
        try:
            t0 = time.time()
            storage.load(s.url, os.path.join(data, "big"), 2, pids[0],
                         name + " big")
            if hasattr(s, "caught_up"):
                s.caught_up(ref["count"])
            if name == "victoria-metrics":
                # Its buffered rows on disk before the queries (not
                # flushed_bytes(): that also counts the main set's points).
                storage.urllib.request.urlopen(
                    "http://127.0.0.1:%d/internal/force_flush" % s.port).read()
            print("%s: loaded in %.1f s" % (name, time.time() - t0), flush=True)
            qb.PID = pids[0]
            rows[name] = s.queries(a, m) if name != "sensorpipe" else s.queries(a, ref)
            rss = sum(storage.rss_kib(p) for p in pids) / 1024.0
            rows[name]["_rss_mib_after"] = rss
        finally:
            s.stop()
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"ts": time.time(), "loadavg": os.getloadavg(),
                                "rows": rows}, default=str) + "\n")
    names = ["mean", "max", "count", "p99", "mean+max+count+p99", "rollup_5m_mean"]
    print("\nmedian ms, loadavg %.1f %.1f %.1f" % os.getloadavg())
    print("| query | sensorpipe | sensorpipe exact=true | VictoriaMetrics | "
          "InfluxDB | VM / sensorpipe |")
    print("| --- | --- | --- | --- | --- | --- |")
    for q in names:
        def ms(sysname, key):
            r = rows.get(sysname, {}).get(key)
            return r["median_ms"] if r else None
        sp, spx = ms("sensorpipe", q), ms("sensorpipe", q + " exact")
        vm, ix = ms("victoria-metrics", q), ms("influxdb", q)
        ratio = "%.1fx" % (vm / sp) if vm and sp else "-"
        print("| %s | %s | %s | %s | %s | %s |" % (q, sp, spx, vm, ix, ratio))


if __name__ == "__main__":
    main()
