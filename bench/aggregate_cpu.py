#!/usr/bin/python3
"""CPU per request of the 5-minute mean over the 1 M-point series, for
builds alternated on the same data (what bench/query.py's wall times do
not separate on a shared machine).

Loads gen.py's dev_big (as bench/query.py, into --work) once with this
tree's build, stops aggd cleanly (a checkpoint) and keeps its data
directory. Then, for each round and each build directory given: a copy
of that data, aggd and apid from the build, 5 warm-up requests, then
--requests timed POST /api/v1/aggregate {"metric_name": KEY, "interval":
"5min", "aggregation": "mean"} on one kept-alive connection, with aggd's
and apid's CPU (user + system, /proc/PID/stat, 10 ms ticks) and minor
faults before and after (and apart, the CPU of each one's main thread,
its loop, and the client's own); then as many requests straight to
aggd's ROUTER (a DEALER, "text": true, as apid asks), timed to the last byte. Prints one
line per build and round; the body of the first build's last answer goes
to --save (to cmp against another build's).

  bench/aggregate_cpu.py --builds /tmp/old/build,build[:AGGD_QUERY_THREADS=1] [--rounds 3]
      [--requests 200] [--work /tmp/sp-bench] [--save answer.json]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import storage  # noqa: E402
import query  # noqa: E402

BODY = json.dumps({"metric_name": query.KEY, "interval": "5min",
                   "aggregation": "mean"})


def stat(pid):
    """(CPU seconds, minor faults) of a process."""
    with open("/proc/%d/stat" % pid) as f:
        p = f.read().rsplit(")", 1)[1].split()
    return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK"), int(p[7])


def loop_cpu(pid):
    """CPU seconds of a process's main thread (its loop); the rest of
    stat(pid)'s figure is its other threads (ZeroMQ's I/O thread)."""
    with open("/proc/%d/task/%d/stat" % (pid, pid)) as f:
        p = f.read().rsplit(")", 1)[1].split()
    return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid):
    """CPU seconds per thread name (comm; same names summed) of a process:
    the loop, ZeroMQ's I/O thread (ZMQbg/IO/0), aggd's query worker."""
    out = {}
    tdir = "/proc/%d/task" % pid
    for tid in os.listdir(tdir):
        try:
            with open("%s/%s/stat" % (tdir, tid)) as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        p = raw.rsplit(")", 1)[1].split()
        cpu = (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")
        out[name] = out.get(name, 0.0) + cpu
    return out


def delta(a, b, n):
    return ", ".join("%s %.2f" % (k, (b[k] - a.get(k, 0.0)) * 1000 / n)
                     for k in sorted(b) if b[k] - a.get(k, 0.0) > 0)


def load(work):
    data = os.path.join(work, "data-big")
    if not os.path.exists(os.path.join(data, "manifest.json")):
        subprocess.run([storage.PY, os.path.join(storage.PEERS, "gen.py"),
                        "--series", "1", "--points", "1", "--big", "1000000",
                        "--out", data], check=True, stdout=subprocess.DEVNULL)
    s = query.Sensorpipe()
    pids = s.start(work)
    try:
        storage.load(s.url, os.path.join(data, "big"), 2, pids[0], "big")
        s.caught_up(1000000)
    finally:
        for p in s.procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=120)
    keep = os.path.join(work, "aggregate-cpu-data")
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(os.path.join(s.dir, "data.0"), keep)
    shutil.rmtree(s.dir, ignore_errors=True)
    return keep


def run(spec, data, work, n, save, burst=0):
    # "DIR" or "DIR:NAME=VALUE": aggd from DIR with that in its environment
    # (AGGD_QUERY_THREADS=1: the loop alone).
    build, _, env_kv = spec.partition(":")
    env = dict(os.environ)
    if env_kv:
        k, _, v = env_kv.partition("=")
        env[k] = v
    d = os.path.join(work, "aggregate-cpu-run")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "run"))
    shutil.copytree(data, os.path.join(d, "data.0"))
    port = storage.free_port()
    procs = []
    try:
        log = open(os.path.join(d, "aggd.log"), "wb")
        ag = subprocess.Popen([os.path.join(build, "aggd"), "--rundir",
                               os.path.join(d, "run"), "--down", "none",
                               "--data", os.path.join(d, "data.{lane}")],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
        procs.append(ag)
        t = time.time()
        while b"ready:" not in open(log.name, "rb").read():
            if time.time() - t > 60 or ag.poll() is not None:
                raise SystemExit("aggd did not start: " + open(log.name).read())
            time.sleep(0.05)
        ap = subprocess.Popen([os.path.join(build, "apid"), "--rundir",
                               os.path.join(d, "run"), "--port", str(port),
                               "--datadir", os.path.join(d, "apid")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(ap)
        if not storage.wait_http("http://127.0.0.1:%d/health" % port):
            raise SystemExit("apid did not start")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def one():
            t0 = time.perf_counter()
            c.request("POST", "/api/v1/aggregate", body=BODY,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            b = r.read()
            if r.status != 200:
                raise SystemExit("%d %r" % (r.status, b[:300]))
            return (time.perf_counter() - t0) * 1000, b

        for _ in range(5):
            _, body = one()
        a0, p0 = stat(ag.pid), stat(ap.pid)
        al0, pl0, c0 = loop_cpu(ag.pid), loop_cpu(ap.pid), os.times()
        at0, pt0 = threads(ag.pid), threads(ap.pid)
        if burst:
            # The peers' procedure (query_bench.bench): an idle second,
            # then one warm-up and `burst` timed requests, over and over.
            ms = []
            while len(ms) < n:
                time.sleep(1.0)
                one()
                ms += [one()[0] for _ in range(burst)]
            n = len(ms) + len(ms) // burst
        else:
            ms = [one()[0] for _ in range(n)]
        a1, p1 = stat(ag.pid), stat(ap.pid)
        al1, pl1, c1 = loop_cpu(ag.pid), loop_cpu(ap.pid), os.times()
        at1, pt1 = threads(ag.pid), threads(ap.pid)

        import msgpack
        import zmq
        ctx = zmq.Context()
        dl = ctx.socket(zmq.DEALER)
        dl.setsockopt(zmq.LINGER, 0)
        dl.connect("ipc://%s/run/aggd.0.query" % d)
        q = msgpack.packb({"op": "aggregate", "series": query.KEY,
                           "interval": "5min", "aggregation": "mean",
                           "text": True})
        direct = []
        for i in range(n + 3):
            t0 = time.perf_counter()
            dl.send_multipart([b"\0" * 8, q])
            dl.recv_multipart(copy=False)
            if i >= 3:
                direct.append((time.perf_counter() - t0) * 1000)
        dl.close(0)
        ctx.term()
        if save:
            with open(save, "wb") as f:
                f.write(body)
        print("%s: aggd %.2f ms CPU (loop %.2f), %.1f faults; apid %.2f ms "
              "CPU (loop %.2f), %.1f faults; client %.2f ms CPU a request; "
              "wall median %.2f, min %.2f ms; aggd direct "
              "median %.2f, min %.2f ms; %d bytes; load %.1f" % (
                  spec, (a1[0] - a0[0]) * 1000 / n, (al1 - al0) * 1000 / n,
                  (a1[1] - a0[1]) / n,
                  (p1[0] - p0[0]) * 1000 / n, (pl1 - pl0) * 1000 / n,
                  (p1[1] - p0[1]) / n,
                  (c1.user - c0.user + c1.system - c0.system) * 1000 / n,
                  statistics.median(ms), min(ms), statistics.median(direct),
                  min(direct), len(body), os.getloadavg()[0]), flush=True)
        print("  threads, ms CPU a request: aggd %s; apid %s" % (
            delta(at0, at1, n), delta(pt0, pt1, n)), flush=True)
        if burst:
            meds = [statistics.median(ms[i:i + burst])
                    for i in range(0, len(ms), burst)]
            print("  bursts of %d after an idle second: block medians %s" % (
                burst, " ".join("%.2f" % m for m in meds)), flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builds", default=os.path.join(storage.ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--work", default="/tmp/sp-bench")
    ap.add_argument("--save")
    ap.add_argument("--burst", type=int, default=0,
                    help="time bursts of N requests after an idle second "
                    "(as bench/query.py) instead of one stream")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    data = load(a.work)
    builds = [os.path.abspath(b) for b in a.builds.split(",")]  # DIR[:K=V]
    for r in range(a.rounds):
        for i, b in enumerate(builds):
            run(b, data, a.work, a.requests, a.save if i == 0 else None,
                a.burst)


if __name__ == "__main__":
    main()
