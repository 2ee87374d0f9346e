#!/usr/bin/env python3
"""WebSocket fan-out bench: aggd, ingestd and apid on free ports, then
build/wsbench (C: wslay clients in one epoll loop, a libcurl writer)
with N clients each subscribed to one device's readings while R
readings/s spread over the N devices go to ingestd as line protocol
stamped with their send time. Reports delivered readings, lag from
ingest to client (p50, p90, p99, max), CPU seconds of each daemon (user
+ sys) per million deliveries, apid's RSS and the load average.
Usage: run.py [clients] [rate] [seconds] (defaults 1000 100000 10);
SP_BUILD picks the build (default build); BENCH_PERF=file records a
perf profile of apid during the run."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..",
                                "tests", "lib"))
from sp import Platform, binary, status_kb  # noqa: E402

CLIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
RATE = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 10


def cpu_s(pid):
    """user + sys CPU seconds of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"apid": ["--ws-queue-max", "67108864"]}).start()
    try:
        pids = {d: p.procs[d].pid for d in ("aggd", "ingestd", "apid")}
        rss0 = status_kb(pids["apid"], "VmRSS")
        cpu0 = {d: cpu_s(pid) for d, pid in pids.items()}
        load0 = os.getloadavg()
        t0 = time.time()
        perf = None
        if os.environ.get("BENCH_PERF"):  # a profile of apid to this file
            perf = subprocess.Popen(["perf", "record", "-g", "-o",
                                     os.environ["BENCH_PERF"], "-p",
                                     str(pids["apid"])],
                                    stderr=subprocess.DEVNULL)
        r = subprocess.run([binary("wsbench"), str(p.api_port),
                            str(p.ingest_port), str(CLIENTS), str(RATE),
                            str(SECONDS)], capture_output=True, text=True,
                           timeout=SECONDS * 10 + 120)
        wall = time.time() - t0
        if perf:
            perf.send_signal(2)
            perf.wait()
        cpu1 = {d: cpu_s(pid) for d, pid in pids.items()}
        load1 = os.getloadavg()
        rss1 = status_kb(pids["apid"], "VmRSS")
        st = p.http("GET", "/api/v1/stream/stats")[2]
    finally:
        p.stop()
    if r.returncode != 0:
        sys.exit("wsbench failed: %s" % r.stderr)
    out = json.loads(r.stdout)
    per_m = max(out["delivered"], 1) / 1e6
    out.update({
        "cpu_s": {d: round(cpu1[d] - cpu0[d], 2) for d in cpu0},
        "cpu_s_per_million_delivered": {
            d: round((cpu1[d] - cpu0[d]) / per_m, 2) for d in cpu0},
        "wall_s": round(wall, 1),
        "apid_rss_kb_idle": rss0, "apid_rss_kb_loaded": rss1,
        "dropped_slow": st["dropped_slow"],
        "upstream_gaps": st["upstream_gaps"],
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in load1],
    })
    print(json.dumps(out, indent=1))


main()
