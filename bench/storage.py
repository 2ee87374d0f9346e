#!/usr/bin/python3
"""Storage benchmark: sensorpipe (ingestd + aggd) against VictoriaMetrics and
InfluxDB 1.x in the same run, with the peers' own generator and loader
(/work/shared/peers: gen.py, load.py), so every figure is a ratio.

For each system: a fresh server and data directory, the main set loaded
over line protocol (POST /write?precision=s) with --conns connections, the
points/s load.py reports (sensorpipe acknowledges only after its spool
fsync; VictoriaMetrics once a write is in memory, so its rate is given
also until /internal/force_flush returned after the last acknowledgement:
"on disk"), the POST latency p50/p99, CPU seconds per point of the server processes, peak RSS summed
over them (sampled every 100 ms), and disk bytes per point once the data
is flushed (sensorpipe: aggd stopped cleanly, which checkpoints its heads
into chunks and compacts small ones; VictoriaMetrics: /internal/force_flush,
its point count checked, then /internal/force_merge, each followed by a
wait until the directory's size holds still for 5 s, as
/work/shared/peers/RESULTS.md measured it; InfluxDB: as is). Disk is the
files' apparent size (the table) and their allocated blocks (du -k, in the
JSON and the by-kind lines), the same way for every system.

A peer whose binary is missing is skipped and says so. Results go to
stdout as a table and, with --json, as JSON lines.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.environ.get("SP_PEERS", "/work/shared/peers")
PY = "/usr/bin/python3"
CLK = os.sysconf("SC_CLK_TCK")
MANIFEST = {}  # the generator's manifest.json of the data loaded


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


def du_alloc(path):
    """Allocated bytes (st_blocks, as du -k counts them)."""
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


def du_stable(path, still=5, timeout=180):
    """du(path) once it has not changed for `still` seconds in a row."""
    last, same, deadline = du(path), 0, time.time() + timeout
    while same < still and time.time() < deadline:
        time.sleep(1)
        now = du(path)
        same = same + 1 if now == last else 0
        last = now
    return last


def cpu_us(pid):
    """(user, system) CPU seconds of a process."""
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) / CLK, int(parts[12]) / CLK


def cpu_s(pid):
    return sum(cpu_us(pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Peak of the summed RSS of a set of processes, and each one's own
    peak (KiB by pid)."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.stop = pids, 0, False
        self.each = {p: 0 for p in pids}

    def run(self):
        while not self.stop:
            try:
                now = {p: rss_kib(p) for p in self.pids}
                self.peak = max(self.peak, sum(now.values()))
                for p, k in now.items():
                    self.each[p] = max(self.each[p], k)
            except OSError:
                pass
            time.sleep(0.1)


def du_by_kind(path):
    """Bytes of the files under path by kind: the name up to its first
    '.' or '-' and digits (chunks, rollups, wal, checkpoint, ...)."""
    kinds = {}
    for d, _, files in os.walk(path):
        for f in files:
            k = re.match(r"[A-Za-z_]+", f)
            k = k.group(0) if k else f
            try:
                kinds[k] = kinds.get(k, 0) + os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return kinds


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return True
        except Exception:
            time.sleep(0.2)
    return False


def load(url, data, conns, pid, label, flush_url=None):
    out = subprocess.run([PY, os.path.join(PEERS, "load.py"), "--url", url,
                          "--dir", data, "--conns", str(conns), "--pid",
                          str(pid), "--label", label, "--max-seconds", "300"]
                         + (["--flush-url", flush_url] if flush_url else []),
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit("load.py failed for " + label)
    return json.loads(out.stdout[out.stdout.index("{"):])


def points_of(r):
    return r.get("points") or r.get("npoints") or 0


class Sensorpipe:
    name = "sensorpipe"

    def start(self, work):
        self.dir = tempfile.mkdtemp(prefix="sp-bench.", dir=work)
        self.port = free_port()
        run = os.path.join(self.dir, "run")
        # BENCH_BUILD: daemons from another build directory (an
        # instrumented one, or another tree's).
        b = os.environ.get("BENCH_BUILD", os.path.join(ROOT, "build"))
        self.logs = {}
        self.procs = {}
        for name, args in (
                ("aggd", ["--down", "none", "--data",
                          os.path.join(self.dir, "data.{lane}")]
                 + os.environ.get("BENCH_AGGD_ARGS", "").split()),
                ("ingestd", ["--port", str(self.port), "--mqtt-port", "0",
                             "--spool", os.path.join(self.dir, "spool")])):
            log = open(os.path.join(self.dir, name + ".log"), "wb")
            self.procs[name] = subprocess.Popen(
                [os.path.join(b, name), "--rundir", run] + args,
                stdout=log, stderr=subprocess.STDOUT)
            deadline = time.time() + 30
            while b"ready:" not in open(log.name, "rb").read():
                if time.time() > deadline or self.procs[name].poll() is not None:
                    raise SystemExit("%s did not start: %s" % (
                        name, open(log.name).read()))
                time.sleep(0.05)
        self.url = "http://127.0.0.1:%d/write?precision=s" % self.port
        return [p.pid for p in self.procs.values()]

    def caught_up(self, npoints, timeout=300):
        """Seconds until aggd holds every point (the load only waited for
        ingestd's acknowledgements)."""
        import msgpack
        import zmq
        ctx = zmq.Context()
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.connect("ipc://%s/run/aggd.0.query" % self.dir)
        t0 = time.time()
        try:
            while time.time() - t0 < timeout:
                d.send_multipart([b"\0" * 8, msgpack.packb({"op": "status"})])
                if d.poll(10000):
                    body = msgpack.unpackb(d.recv_multipart()[1])["body"]
                    if body["points"] >= npoints:
                        return time.time() - t0
                time.sleep(0.1)
            raise SystemExit("aggd did not reach %d points" % npoints)
        finally:
            d.close(0)
            ctx.term()

    def flushed_bytes(self):
        # A clean stop of aggd checkpoints: heads sealed into chunks and
        # the WAL trimmed. ingestd's spool is trimmed by confirmations.
        time.sleep(2)
        spool = du(os.path.join(self.dir, "spool"))
        self.procs["aggd"].send_signal(signal.SIGTERM)
        self.procs["aggd"].wait(timeout=120)
        self.disk_by_kind = du_by_kind(os.path.join(self.dir, "data.0"))
        self.disk_alloc = du_alloc(os.path.join(self.dir, "data.0"))
        return du(os.path.join(self.dir, "data.0")), spool

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class Victoria:
    name = "victoria-metrics"

    def start(self, work):
        self.dir = tempfile.mkdtemp(prefix="vm-bench.", dir=work)
        self.port = free_port()
        self.p = subprocess.Popen(
            ["victoria-metrics", "-storageDataPath=" + self.dir,
             "-httpListenAddr=127.0.0.1:%d" % self.port,
             "-retentionPeriod=100y"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        if not wait_http("http://127.0.0.1:%d/health" % self.port):
            raise SystemExit("victoria-metrics did not start")
        self.url = "http://127.0.0.1:%d/write?db=bench&precision=s" % self.port
        # VictoriaMetrics acknowledges once a write is buffered in memory;
        # load.py times this flush after the last acknowledgement, so its
        # rate is also given for the data on disk, as sensorpipe's is at
        # its acknowledgement (its spool fdatasync).
        self.flush_url = "http://127.0.0.1:%d/internal/force_flush" % self.port
        return [self.p.pid]

    def flushed_bytes(self):
        base = "http://127.0.0.1:%d" % self.port
        urllib.request.urlopen(base + "/internal/force_flush").read()
        du_stable(self.dir)
        self.disk_after_flush = du(self.dir)
        # Every point must be in before its size counts (the load only
        # waited for acknowledgements of buffered rows).
        q = urllib.parse.urlencode({
            "query": "sum(count_over_time(sensor_value[%ds]))" % (
                MANIFEST["main_end"] - MANIFEST["start"] + 1),
            "time": str(MANIFEST["main_end"]), "nocache": "1"})
        r = json.loads(urllib.request.urlopen(
            base + "/api/v1/query?" + q).read())
        self.stored_points = int(float(r["data"]["result"][0]["value"][1]))
        urllib.request.urlopen(base + "/internal/force_merge").read()
        time.sleep(1)
        disk = du_stable(self.dir)
        self.disk_alloc = du_alloc(self.dir)
        return disk, 0

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class Influx:
    name = "influxdb"

    def start(self, work):
        self.dir = tempfile.mkdtemp(prefix="influx-bench.", dir=work)
        self.port = free_port()
        conf = os.path.join(self.dir, "influxdb.conf")
        with open(conf, "w") as f:
            f.write('reporting-disabled = true\nbind-address = "127.0.0.1:%d"\n'
                    '[meta]\n  dir = "%s/meta"\n[data]\n  dir = "%s/data"\n'
                    '  wal-dir = "%s/wal"\n[http]\n  bind-address = '
                    '"127.0.0.1:%d"\n  log-enabled = false\n'
                    % (free_port(), self.dir, self.dir, self.dir, self.port))
        self.p = subprocess.Popen(["influxd", "-config", conf],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        if not wait_http("http://127.0.0.1:%d/ping" % self.port):
            raise SystemExit("influxd did not start")
        req = urllib.request.Request(
            "http://127.0.0.1:%d/query" % self.port,
            data=b"q=CREATE DATABASE bench", method="POST")
        urllib.request.urlopen(req).read()
        self.url = "http://127.0.0.1:%d/write?db=bench&precision=s" % self.port
        return [self.p.pid]

    def flushed_bytes(self):
        time.sleep(3)
        return du(os.path.join(self.dir, "data")) + du(
            os.path.join(self.dir, "wal")), 0

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_one(sysobj, work, data, conns, npoints):
    pids = sysobj.start(work)
    names = getattr(sysobj, "procs", None)
    names = ({p.pid: n for n, p in names.items()} if names
             else {pids[0]: sysobj.name})
    try:
        per0 = {p: cpu_us(p) for p in pids}
        cpu0 = sum(cpu_s(p) for p in pids)
        rs = RssSampler(pids)
        rs.start()
        r = load(sysobj.url, data, conns, pids[0],
                 "%s c=%d" % (sysobj.name, conns),
                 getattr(sysobj, "flush_url", None))
        lag = (sysobj.caught_up(npoints) if hasattr(sysobj, "caught_up")
               else None)
        cpu1 = sum(cpu_s(p) for p in pids)
        per1 = {p: cpu_us(p) for p in pids}
        # user and system seconds per million points, per process
        per = {names[p]: {"user": (per1[p][0] - per0[p][0]) / npoints * 1e6,
                          "sys": (per1[p][1] - per0[p][1]) / npoints * 1e6}
               for p in pids}
        rs.stop = True
        rs.join()
        disk, spool = sysobj.flushed_bytes()
        return {"system": sysobj.name, "conns": conns,
                "points_per_s": r.get("points_per_s") or r.get("pts_per_s"),
                # the rate counting until the data is on disk: the same
                # for a system that acknowledges after fsync
                "points_per_s_durable": r.get("points_per_s_incl_flush")
                or r.get("points_per_s") or r.get("pts_per_s"),
                "req_lat_ms_p50": r.get("req_lat_ms_p50"),
                "req_lat_ms_p99": r.get("req_lat_ms_p99"),
                "points": npoints, "server_cpu_s": cpu1 - cpu0,
                "cpu_us_per_point": (cpu1 - cpu0) / npoints * 1e6,
                "cpu_s_per_mpoint_by_process": per,
                "loadavg_1m_after": os.getloadavg()[0],
                "other_cores": r.get("other_cores"),
                "peak_rss_mib": rs.peak / 1024.0,
                "peak_rss_mib_by_process": {names[p]: k / 1024.0
                                            for p, k in rs.each.items()},
                "disk_bytes_by_kind": getattr(sysobj, "disk_by_kind", None),
                "disk_bytes_per_point": disk / npoints,
                "disk_alloc_bytes_per_point": (
                    getattr(sysobj, "disk_alloc", 0) / npoints),
                "disk_bytes_per_point_after_flush_only": (
                    getattr(sysobj, "disk_after_flush", disk) / npoints),
                "stored_points": getattr(sysobj, "stored_points", None),
                "spool_bytes_after": spool, "visible_after_ack_s": lag,
                "load": r}
    finally:
        sysobj.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--conns", default="2,4")
    ap.add_argument("--systems", default="sensorpipe,victoria-metrics,influxdb")
    ap.add_argument("--work", default="/tmp/sp-bench")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(a.work, "data-%dx%d" % (a.series, a.points))
    if not os.path.exists(os.path.join(data, "manifest.json")):
        subprocess.run([PY, os.path.join(PEERS, "gen.py"), "--series",
                        str(a.series), "--points", str(a.points), "--big", "0",
                        "--out", data], check=True, stdout=subprocess.DEVNULL)
    main_dir = os.path.join(data, "main")
    with open(os.path.join(data, "manifest.json")) as f:
        MANIFEST.update(json.load(f))
    npoints = a.series * a.points
    systems = {"sensorpipe": (Sensorpipe, os.path.join(ROOT, "build", "aggd")),
               "victoria-metrics": (Victoria, shutil.which("victoria-metrics")),
               "influxdb": (Influx, shutil.which("influxd"))}
    rows = []
    for c in [int(x) for x in a.conns.split(",")]:
        for name in a.systems.split(","):
            cls, binary = systems[name]
            if not binary or not os.path.exists(binary):
                print("skip %s: not installed" % name)
                continue
            row = run_one(cls(), a.work, main_dir, c, npoints)
            rows.append(row)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\n%d points (%d series x %d), machine: %s, %d cpus" % (
        npoints, a.series, a.points, os.uname().release, os.cpu_count()))
    print("| system | conns | points/s | points/s on disk | POST p50/p99 ms "
          "| all in store after last ack, s "
          "| CPU us/point | peak RSS MiB | disk B/point |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        lag = r["visible_after_ack_s"]
        print("| %s | %d | %.0f | %.0f | %s/%s | %s | %.2f | %.0f | %.3f |" % (
            r["system"], r["conns"], r["points_per_s"] or 0,
            r["points_per_s_durable"] or 0, r["req_lat_ms_p50"],
            r["req_lat_ms_p99"],
            "-" if lag is None else "%.1f" % lag,
            r["cpu_us_per_point"], r["peak_rss_mib"],
            r["disk_bytes_per_point"]))
    print("\nCPU seconds per million points (user + system) by process:")
    for r in rows:
        print("  %s c=%d: %s (load average %.1f, other work %.2f cores)" % (
            r["system"], r["conns"], ", ".join(
                "%s %.2f + %.2f" % (n, v["user"], v["sys"])
                for n, v in sorted(r["cpu_s_per_mpoint_by_process"].items())),
            r["loadavg_1m_after"], r["other_cores"] or 0))
    print("\nDisk bytes/point: apparent size, allocated blocks (du -k); "
          "VictoriaMetrics also after force_flush only, and its point count:")
    for r in rows:
        print("  %s c=%d: %.3f, allocated %.3f%s" % (
            r["system"], r["conns"], r["disk_bytes_per_point"],
            r["disk_alloc_bytes_per_point"],
            "; after force_flush only %.3f; %s points stored" % (
                r["disk_bytes_per_point_after_flush_only"],
                r["stored_points"]) if r["stored_points"] is not None
            else ""))
    print("\nPeak RSS MiB by process, and disk bytes/point by kind of file:")
    for r in rows:
        print("  %s c=%d: %s%s" % (
            r["system"], r["conns"], ", ".join(
                "%s %.0f" % (n, v) for n, v in
                sorted(r["peak_rss_mib_by_process"].items())),
            "; " + ", ".join("%s %.3f" % (k, v / r["points"]) for k, v in
                             sorted((r["disk_bytes_by_kind"] or {}).items()))
            if r["disk_bytes_by_kind"] else ""))
    vm = {r["conns"]: r for r in rows if r["system"] == "victoria-metrics"}
    for r in rows:
        if r["system"] == "sensorpipe" and r["conns"] in vm:
            v = vm[r["conns"]]
            print("sensorpipe / victoria-metrics at %d conns: ingest x%.2f "
                  "(on disk x%.2f), disk x%.2f, RSS x%.2f" % (
                      r["conns"], (r["points_per_s"] or 0) / v["points_per_s"],
                      (r["points_per_s_durable"] or 0)
                      / v["points_per_s_durable"],
                      r["disk_bytes_per_point"] / v["disk_bytes_per_point"],
                      r["peak_rss_mib"] / v["peak_rss_mib"]))


if __name__ == "__main__":
    main()
