#!/usr/bin/env python3
"""A fleet of simulated devices over MQTT, each its own connection, while
ingestd is killed with -9 and restarted in the middle (and, in the full
tier, mosquitto too). Every reading the broker acknowledged must be
stored exactly once, compared device by device.

make test: 1,000 devices for 10 s. make test-full (SP_FULL=1): 10,000
devices for 60 s over 4 simulator processes (the open-file limit is
20,000 per process), plus a broker kill -9 and restart.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, binary, check, main  # noqa: E402

FULL = bool(os.environ.get("SP_FULL"))
DEVICES = 10000 if FULL else 1000
SECONDS = 60 if FULL else 10
PROCS = 4 if FULL else 1


def stored_per_device(p):
    st, _, b = p.http("GET", "/api/v1/series?match=temperature", timeout=60)
    if st != 200:
        return {}
    out = {}
    for s in b["series"]:
        dev = s["series"].split("device=", 1)[1].rstrip("}")
        out[dev] = s["points"]
    return out


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    spool, conf = p.plugin_conf()
    p.start_broker(conf)
    p.extra["ingestd"] = ["--mqtt-spool", spool]
    p.start()
    report = os.path.join(p.dir, "sim.json")
    try:
        sim = subprocess.Popen([binary("sensorpipe-sim"), "-p", str(p.mqtt_port),
                                "-n", str(DEVICES), "-r", "1", "-d", "%ds" % SECONDS,
                                "-P", str(PROCS), "-C", "50", "--drain", "30s",
                                "--report", report, "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(SECONDS / 2)
        p.procs["ingestd"].kill()
        p.procs["ingestd"].wait()
        del p.procs["ingestd"]
        print("killed ingestd with -9 at %d s" % (SECONDS / 2))
        time.sleep(1)
        p.start_one("ingestd")
        if FULL:
            time.sleep(SECONDS / 4)
            p.broker.send_signal(signal.SIGKILL)
            p.broker.wait()
            print("killed mosquitto with -9 at %d s" % (SECONDS * 3 / 4))
            p.start_broker(conf)
        out, _ = sim.communicate(timeout=SECONDS + 240)
        print(out.decode()[-600:])
        # Under a broker restart the simulator reports connection errors and
        # exits non-zero; what matters is its per-device report.
        check(os.path.exists(report), "simulator finished (exit %d) with its report"
              % sim.returncode)
        rep = json.load(open(report))
        acked = {d["device"]: d["acked"] for d in rep["per_device"]}
        sent = {d["device"]: d["sent"] for d in rep["per_device"]}
        total_acked = sum(acked.values())
        check(len(acked) == DEVICES and total_acked > DEVICES * SECONDS * 0.5,
              "%d devices, %d readings acknowledged by the broker" % (len(acked), total_acked))
        deadline = time.time() + 120
        while True:
            stored = stored_per_device(p)
            lost = sum(max(0, acked[d] - stored.get(d, 0)) for d in acked)
            if lost == 0 or time.time() > deadline:
                break
            time.sleep(1)
        extra = sum(max(0, stored.get(d, 0) - sent[d]) for d in sent)
        unacked_stored = sum(max(0, stored.get(d, 0) - acked[d]) for d in acked)
        print("report: devices=%d sent=%d acked=%d stored=%d lost=%d doubled=%d "
              "stored-but-unacknowledged=%d" % (DEVICES, sum(sent.values()), total_acked,
                                                sum(stored.values()), lost, extra,
                                                unacked_stored))
        check(lost == 0, "no acknowledged reading lost (%d missing)" % lost)
        check(extra == 0, "nothing doubled: no device has more readings than it sent")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
