#!/usr/bin/env python3
"""Per-client (HTTP) and per-device (MQTT) rate limits: 429 with
Retry-After, refusals reported, other clients and devices unaffected."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"ingestd": ["--rate-limit", "5", "--device-rate", "2"]})
    p.start_broker()
    p.start()
    try:
        codes, retry = [], None
        for i in range(30):
            st, hdr, _ = p.http("POST", "/write?precision=s", "rl value=%d %d" % (i, 1704067200 + i),
                                port=p.ingest_port)
            codes.append(st)
            if st == 429:
                retry = hdr.get("Retry-After")
        check(codes.count(204) >= 10 and codes.count(429) >= 10,
              "a burst of 30 requests: %d accepted, %d limited" % (codes.count(204), codes.count(429)))
        check(retry is not None and int(retry) >= 1, "429 carries Retry-After (%s)" % retry)
        st, _, _ = p.http("POST", "/write?precision=s", "rl2 value=1 1704067200",
                          port=p.ingest_port, headers={"Authorization": "Token other-client"})
        check(st == 204, "another client (by its token) is not limited")

        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, s = p.http("GET", "/stats")
            if s["ingestd"].get("mqtt_connected"):
                break
            time.sleep(0.1)
        lines = "".join('{"timestamp":%d,"metrics":{"temperature":1}}\n' % (1700000000000 + i)
                        for i in range(40))
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(p.mqtt_port), "-q", "1",
                        "-t", "devices/chatty/telemetry", "-l"], input=lines.encode(),
                       timeout=30, check=True)
        p.mqtt_pub("devices/calm/telemetry", '{"timestamp":1700000000000,"metrics":{"temperature":1}}')
        time.sleep(1)
        st, _, s = p.http("GET", "/api/v1/stats/temperature?tag.device=chatty")
        check(st == 200 and 4 <= s["count"] < 40,
              "a chatty device is held to its rate (%d of 40 stored)" % s["count"])
        st, _, s = p.http("GET", "/api/v1/stats/temperature?tag.device=calm")
        check(st == 200 and s["count"] == 1, "a calm device is not affected")
        st, _, s = p.http("GET", "/stats")
        check(s["ingestd"]["rate_limited"] >= 20, "refusals are counted (%d)" % s["ingestd"]["rate_limited"])
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
