#!/usr/bin/env python3
"""MQTT ingest through a real mosquitto: the seed payload, batches,
msgpack, bad payloads answered on devices/{id}/errors, and readings
published while ingestd is down delivered after it returns (persistent
session, shared subscription)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402


def wait_count(p, path, want, timeout=15):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        st, _, b = p.http("GET", path)
        got = b.get("count") if st == 200 else None
        if got == want:
            return got
        time.sleep(0.1)
    return got


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    p.start_broker()
    p.start()
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, s = p.http("GET", "/stats")
            if s["ingestd"].get("mqtt_connected"):
                break
            time.sleep(0.1)
        check(s["ingestd"].get("mqtt_connected"), "ingestd subscribed to the broker")
        p.mqtt_pub("devices/sensor-001/telemetry",
                   '{"timestamp":1634567890000,"metrics":{"temperature":22.5,"humidity":65.0}}')
        got = wait_count(p, "/api/v1/stats/temperature?tag.device=sensor-001", 1)
        check(got == 1, "seed MQTT payload stored as temperature{device=sensor-001}")
        st, _, s = p.http("GET", "/api/v1/stats/humidity%7Bdevice%3Dsensor-001%7D")
        check(st == 200 and s["mean"] == 65.0, "humidity stored too")
        batch = [{"timestamp": 1634567891000 + i * 1000, "metrics": {"temperature": 20 + i}}
                 for i in range(10)]
        p.mqtt_pub("devices/sensor-002/telemetry", json.dumps(batch))
        got = wait_count(p, "/api/v1/stats/temperature?tag.device=sensor-002", 10)
        check(got == 10, "batch form: 10 readings")

        # A bad payload is answered on devices/{id}/errors.
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(p.mqtt_port),
                                "-t", "devices/sensor-003/errors", "-C", "1", "-W", "10"],
                               stdout=subprocess.PIPE)
        time.sleep(0.5)
        p.mqtt_pub("devices/sensor-003/telemetry", '{"metrics": {"temperature": "hot"}')
        out, _ = sub.communicate(timeout=15)
        err = json.loads(out)
        check(err["error"]["where"] == "payload", "error published for a malformed payload: %s" % err)
        p.mqtt_pub("devices/sensor-003/telemetry", '{"metrics": {"temperature": "hot"}}')
        st, _, s = p.http("GET", "/stats")
        check(s["ingestd"]["mqtt_bad"] >= 1, "bad payloads counted")
        check(p.procs["ingestd"].poll() is None, "ingestd still running")

        # Published while ingestd is stopped: delivered when it is back.
        p.stop_one("ingestd")
        for i in range(20):
            p.mqtt_pub("devices/sensor-004/telemetry",
                       '{"timestamp":%d,"metrics":{"temperature":%d}}' % (1634567900000 + i * 1000, i))
        p.start_one("ingestd")
        got = wait_count(p, "/api/v1/stats/temperature?tag.device=sensor-004", 20)
        check(got == 20, "20 readings published while ingestd was down arrived (%s)" % got)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
