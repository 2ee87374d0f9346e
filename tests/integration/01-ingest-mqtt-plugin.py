#!/usr/bin/env python3
"""The broker plugin spools every telemetry PUBLISH before the PUBACK, and
ingestd reads that spool: a reading the broker acknowledged survives
kill -9 of ingestd and kill -9 of the broker itself, exactly once."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, Failure  # noqa: E402


def publish(p, device, start, n):
    """n QoS 1 messages through one mosquitto_pub; returns when all are
    acknowledged by the broker (exit 0)."""
    lines = "".join('{"timestamp":%d,"metrics":{"temperature":%d}}\n'
                    % (1700000000000 + (start + i) * 1000, start + i) for i in range(n))
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(p.mqtt_port),
                        "-q", "1", "-t", "devices/%s/telemetry" % device, "-l"],
                       input=lines.encode(), capture_output=True, timeout=60)
    if r.returncode != 0:
        raise Failure("mosquitto_pub: %s" % r.stderr)


def count(p, device, want, timeout=30):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        st, _, b = p.http("GET", "/api/v1/stats/temperature?tag.device=%s" % device)
        got = b.get("count") if st == 200 else None
        if got == want:
            return got
        time.sleep(0.1)
    return got


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    spool, conf = p.plugin_conf()
    # Small files, so the plugin rolls to a new one every ~150 messages and
    # the kills below also land around rolls (whose fsyncs run on the
    # plugin's thread).
    conf += "plugin_opt_segment_size 16384\n"
    p.start_broker(conf)
    p.extra["ingestd"] = ["--mqtt-spool", spool]
    p.start()
    try:
        publish(p, "dev-a", 0, 200)
        got = count(p, "dev-a", 200)
        check(got == 200, "200 acknowledged readings arrive through the plugin spool (%s)" % got)

        p.procs["ingestd"].kill()
        p.procs["ingestd"].wait()
        del p.procs["ingestd"]
        publish(p, "dev-a", 200, 300)  # acknowledged while ingestd is dead
        p.start_one("ingestd")
        got = count(p, "dev-a", 500)
        check(got == 500, "after kill -9 of ingestd: %s of 500, none lost or doubled" % got)

        publish(p, "dev-b", 0, 300)
        p.broker.send_signal(signal.SIGKILL)  # right after the last PUBACK
        p.broker.wait()
        p.start_broker(conf)
        got = count(p, "dev-b", 300)
        check(got == 300, "after kill -9 of the broker: %s of 300, none lost or doubled" % got)
        st, _, s = p.http("GET", "/stats")
        check(s["ingestd"]["mqspool_records"] >= 600,
              "ingestd read the plugin's records (%d since its restart)"
              % s["ingestd"]["mqspool_records"])
        files = sorted(int(f[3:19]) for f in os.listdir(spool) if f.startswith("mq-"))
        deadline = time.time() + 10
        while len(files) > 2 and time.time() < deadline:
            time.sleep(0.2)
            files = sorted(int(f[3:19]) for f in os.listdir(spool) if f.startswith("mq-"))
        check(len(files) <= 2 and files[-1] >= 4,
              "the plugin rolled files (newest %s) and the consumed ones are deleted "
              "(%d left)" % (files[-1] if files else None, len(files)))
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
