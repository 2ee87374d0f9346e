#!/usr/bin/env python3
"""Device registry: register (seed body), get, list with filters and pages,
patch, sensors, decommission, and the lifecycle log whose replay gives the
stored state exactly, also after a restart of apid."""
import http.client
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402

SEED = ('{"deviceId":"sensor-001","type":"temperature","metadata":'
        '{"location":"warehouse-a","model":"DHT22"}}')


def test():
    p = Platform(daemons=("apid",)).start()
    try:
        st, _, d = p.http("POST", "/api/devices/register", SEED)
        check(st == 201, "seed registration -> 201 (got %d %s)" % (st, d))
        check(d["deviceId"] == "sensor-001" and d["type"] == "temperature"
              and d["metadata"] == {"location": "warehouse-a", "model": "DHT22"}
              and d["status"] == "provisioned", "registered state: %s" % d)
        st, _, d = p.http("POST", "/api/devices/register", SEED)
        check(st == 409, "second registration -> 409 (got %d)" % st)
        for bad in ('{"deviceId":"a/b","type":"t"}', '{"deviceId":"x"}',
                    '{"deviceId":"x","type":"t","tags":"no"}', "[1]", "{bad"):
            st, _, d = p.http("POST", "/api/devices/register", bad)
            check(st == 400 and "error" in d, "bad registration %s -> 400" % bad)

        # A small fleet for the filters.
        codes = []
        for i in range(2, 26):
            body = {"deviceId": "sensor-%03d" % i,
                    "type": "humidity" if i % 2 else "temperature",
                    "metadata": {"location": "warehouse-%s" % "ab"[i % 2],
                                 "floor": str(i % 3)},
                    "tags": ["even"] if i % 2 == 0 else ["odd"],
                    "groups": ["line-%d" % (i % 4)],
                    "sensors": [{"name": "t", "type": "temperature",
                                 "unit": "C", "min": -40, "max": 85,
                                 "calibrationDate": "2024-01-01"}]}
            codes.append(p.http("POST", "/api/devices/register", body)[0])
        check(codes == [201] * 24, "24 more devices registered")
        st, _, d = p.http("GET", "/api/devices?limit=10")
        check(st == 200 and d["total"] == 25 and len(d["devices"]) == 10,
              "list: total 25, page of 10 (got %s %s)" % (st, d.get("total")))
        ids = [x["deviceId"] for x in d["devices"]]
        st, _, d2 = p.http("GET", "/api/devices?limit=10&offset=10")
        ids2 = [x["deviceId"] for x in d2["devices"]]
        check(ids == sorted(ids) and ids[-1] < ids2[0] and not set(ids) & set(ids2),
              "pages are ordered and disjoint")
        st, _, d = p.http("GET", "/api/devices?type=humidity&limit=1000")
        check(d["total"] == 12 and all(x["type"] == "humidity" for x in d["devices"]),
              "filter type=humidity: 12")
        st, _, d = p.http("GET", "/api/devices?tag=even&metadata.floor=0")
        want = sorted("sensor-%03d" % i for i in range(2, 26) if i % 2 == 0 and i % 3 == 0)
        check(sorted(x["deviceId"] for x in d["devices"]) == want,
              "filter tag=even&metadata.floor=0: %s" % want)
        st, _, d = p.http("GET", "/api/devices?group=line-1&metadata.location=warehouse-b")
        want = sorted("sensor-%03d" % i for i in range(2, 26) if i % 4 == 1)
        check(sorted(x["deviceId"] for x in d["devices"]) == want,
              "filter group=line-1&metadata.location=warehouse-b")
        st, _, d = p.http("GET", "/api/devices?metadata.location=warehouse-a&type=temperature")
        check(d["total"] == 13, "seed device found by metadata.location (got %d)" % d["total"])
        for bad in ("limit=0", "limit=x", "offset=-1", "metadata.=x", "online=maybe"):
            st, _, d = p.http("GET", "/api/devices?" + bad)
            check(st == 400, "bad list argument %s -> 400" % bad)

        # Lifecycle of sensor-001.
        st, _, d = p.http("PATCH", "/api/devices/sensor-001",
                          {"metadata": {"location": "warehouse-c", "rack": "7"},
                           "tags": ["cold"], "groups": ["north"], "status": "active",
                           "firmware": "2.0.1"})
        check(st == 200 and d["status"] == "active" and d["firmware"] == "2.0.1"
              and d["metadata"] == {"location": "warehouse-c", "model": "DHT22",
                                    "rack": "7"} and d["tags"] == ["cold"],
              "patch applies (got %s)" % d)
        st, _, d = p.http("PATCH", "/api/devices/sensor-001", {"colour": "red"})
        check(st == 400, "patch with an unknown field -> 400")
        st, _, d = p.http("POST", "/api/devices/sensor-001/sensors",
                          {"name": "hum", "type": "humidity", "unit": "%",
                           "min": 0, "max": 100})
        check(st == 200 and [s["name"] for s in d["sensors"]] == ["hum"], "sensor added")
        st, _, d = p.http("POST", "/api/devices/sensor-001/events", {"type": "heartbeat"})
        check(st == 200 and d["online"] is True and d["lastSeen"], "heartbeat: online")
        for _ in range(3):
            st, _, d = p.http("POST", "/api/devices/sensor-001/events", {"type": "heartbeat"})
        check(st == 200 and d["online"] is True, "three more heartbeats")
        last_seen = d["lastSeen"]
        st, _, d = p.http("POST", "/api/devices/sensor-001/events", {"type": "offline"})
        check(st == 200 and d["online"] is False, "offline")
        st, _, d = p.http("GET", "/api/devices?online=false&tag=cold")
        check([x["deviceId"] for x in d["devices"]] == ["sensor-001"], "filter online=false")
        st, _, d = p.http("PATCH", "/api/devices/nope", {"tags": []})
        check(st == 404, "patch of an unknown device -> 404")

        st, _, ev = p.http("GET", "/api/devices/sensor-001/events")
        kinds = [e["type"] for e in ev["events"]]
        # A run of four heartbeats keeps its first and its last (seq 7
        # and 10; 8 and 9 gave way to the next), so a device that keeps
        # beating does not grow its log.
        check(kinds == ["provisioned", "activated", "location_updated",
                        "firmware_updated", "updated", "sensor_added",
                        "heartbeat", "heartbeat", "offline"], "event log: %s" % kinds)
        check([e["seq"] for e in ev["events"]] == list(range(1, 8)) + [10, 11],
              "seq 1..7, 10, 11 (got %s)" % [e["seq"] for e in ev["events"]])
        check(ev["events"][7]["ts"] == last_seen, "the last heartbeat is kept")
        st, _, ev2 = p.http("GET", "/api/devices/sensor-001/events?after=6&limit=1")
        check([e["seq"] for e in ev2["events"]] == [7], "events after=6 limit=1")

        st, _, cur = p.http("GET", "/api/devices/sensor-001")
        st, _, rep = p.http("GET", "/api/devices/sensor-001?replay=1")
        # 7 versions: every event but the heartbeats.
        check(cur == rep and cur["version"] == 7 and cur["lastSeen"] == last_seen,
              "replaying the log gives the stored state")

        st, _, d = p.http("DELETE", "/api/devices/sensor-001")
        check(st == 200 and d["status"] == "decommissioned", "decommissioned")
        st, _, d = p.http("PATCH", "/api/devices/sensor-001", {"tags": []})
        check(st == 400, "no change after decommissioning")
        st, _, d = p.http("PATCH", "/api/devices/sensor-001/shadow", {"desired": {"a": 1}})
        check(st == 409 and d["error"]["code"] == "conflict",
              "a decommissioned device's shadow PATCH -> 409, not 404 (got %d)" % st)
        st, _, d = p.http("GET", "/api/devices?tag=cold")
        check(d["total"] == 0, "decommissioned devices leave the default list")
        st, _, d = p.http("GET", "/api/devices?status=decommissioned")
        check(d["total"] == 1, "... and show with status=decommissioned")
        st, _, cur = p.http("GET", "/api/devices/sensor-001")

        # The registry survives a restart; the log still replays exactly.
        p.stop_one("apid")
        p.start_one("apid")
        st, _, again = p.http("GET", "/api/devices/sensor-001")
        st, _, rep = p.http("GET", "/api/devices/sensor-001?replay=true")
        check(again == cur == rep, "state and replay unchanged after a restart")
        st, _, d = p.http("GET", "/api/devices")
        check(d["total"] == 24, "24 live devices after a restart")

        # Metadata nested 2,040 deep was stored, and then SQLite's JSON
        # functions refused it in every list of the tenant (500): a state
        # may nest 64 levels.
        c = http.client.HTTPConnection("127.0.0.1", p.api_port, timeout=10)
        c.request("POST", "/api/devices/register", '{"deviceId":"deep","type":"t","metadata":'
                  + '{"a":' * 2040 + '1' + '}' * 2041)
        r = c.getresponse()
        body = r.read()
        c.close()
        check(r.status == 400 and b"64 levels" in body,
              "metadata nested 2,040 deep -> 400 (got %d %s)" % (r.status, body[:80]))
        st, _, d = p.http("POST", "/api/devices/register", {
            "deviceId": "nested", "type": "t", "metadata": {"a": {"b": {"c": [1, {"d": 2}]}}}})
        check(st == 201, "metadata nested 5 deep -> 201 (got %d)" % st)
        st, _, d = p.http("GET", "/api/devices")
        check(st == 200 and d["total"] == 25, "the list answers (got %d %s)" % (st, d))

        # A decommissioned id registered again is a new device on the
        # same log (it was 409 for good).
        st, _, old = p.http("GET", "/api/devices/sensor-001")
        st, _, d = p.http("POST", "/api/devices/register",
                          {"deviceId": "sensor-001", "type": "humidity"})
        check(st == 201 and d["status"] == "provisioned" and d["type"] == "humidity"
              and d["metadata"] == {} and d["sensors"] == [] and d["firmware"] is None
              and d["version"] == old["version"] + 1,
              "a decommissioned id registers again, its version goes on (got %d %s)" % (st, d))
        st, _, ev = p.http("GET", "/api/devices/sensor-001/events")
        check([e["type"] for e in ev["events"]][-2:] == ["decommissioned", "provisioned"],
              "... on the same event log")
        st, _, rep = p.http("GET", "/api/devices/sensor-001?replay=1")
        check(rep == d, "... whose replay is the new state")
        st, _, d = p.http("POST", "/api/devices/register",
                          {"deviceId": "sensor-001", "type": "humidity"})
        check(st == 409, "registered again, it is taken again (got %d)" % st)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
