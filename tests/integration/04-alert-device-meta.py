#!/usr/bin/env python3
"""Per-device thresholds from the device registry, against the real
chain with two lanes: one rule, "temperature > device.max_temp", serves
devices whose limits differ. apid pushes each device's metadata to every
alertd lane (registration, PATCH of the metadata, decommissioning); a
device without the attribute never fires; a restarted alertd has the
thresholds from its own database before apid pushes again."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, have, main, wait_for  # noqa: E402


def test():
    for d in ("ingestd", "aggd", "anomalyd", "alertd", "apid"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    p = Platform(lanes=2)
    p.extra = {n: ["--db", os.path.join(p.dir, "alertd.%s.db" % n)]
               for n in ("alertd", "alertd.1")}
    p.start()

    def record(t0, values):
        data = [{"name": "temperature", "tags": {"device": d}, "value": v,
                 "timestamp": (t0 + i) * 1000}
                for d, v in values.items() for i in range(2)]
        st, _, _ = p.http("POST", "/api/v1/record", {"data": data})
        check(st == 200, "record %s" % values)

    def firing():
        st, _, b = p.http("GET", "/api/alerts")
        return sorted(a["scope"] for a in b["alerts"] if a["rule"] == "over")

    def known():
        lanes = p.http("GET", "/stats")[2]["alertd"]["lanes"]
        return [lane.get("devices") for lane in lanes]

    try:
        for dev, meta in (("m1", {"max_temp": 40, "location": "hall"}),
                          ("m2", {"max_temp": "60"}),
                          ("m3", {"location": "yard"})):
            st, _, _ = p.http("POST", "/api/devices/register",
                              {"deviceId": dev, "type": "machine",
                               "metadata": meta})
            check(st in (200, 201), "register %s" % dev)
        wait_for(lambda: known() == [3, 3], "both alertd lanes know the "
                 "three devices' metadata")
        st, _, b = p.http("POST", "/api/rules",
                          {"name": "over",
                           "condition": "temperature > device.max_temp"})
        check(st == 201 and b["canonical"] ==
              "temperature > device.max_temp severity warning",
              "one rule for the fleet: %s" % b)
        t0 = 1704067200
        record(t0, {"m1": 50, "m2": 50, "m3": 50})
        wait_for(lambda: firing() == ["temperature{device=m1}"],
                 "50 is over m1's 40 only")
        time.sleep(1)
        check(firing() == ["temperature{device=m1}"],
              "m2 (limit 60) and m3 (no limit) do not fire")
        # The registry changes: the pushed limit applies to the next reading.
        st, _, _ = p.http("PATCH", "/api/devices/m2",
                          {"metadata": {"max_temp": 45}})
        check(st == 200, "m2's limit lowered to 45")
        wait_for(lambda: (record(t0 + 10, {"m2": 50}) or True) and
                 "temperature{device=m2}" in firing(),
                 "m2 fires under its new limit", timeout=15)
        # Restart both lanes: the thresholds come from alertd's database.
        for n in ("alertd", "alertd.1"):
            p.stop_one(n)
        for n in ("alertd", "alertd.1"):
            p.start_one(n)
        check(known() == [3, 3], "a restarted alertd has the metadata at once")
        st, _, _ = p.http("DELETE", "/api/devices/m1")
        check(st == 200, "m1 decommissioned")
        wait_for(lambda: known() == [2, 2], "its metadata is withdrawn")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
