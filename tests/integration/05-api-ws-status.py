#!/usr/bin/env python3
"""Device status on the WebSocket stream (kind "status"), end to end with
the real daemons and a real mosquitto: registering, the device's own
"online" on MQTT, the broker's last will when its connection dies, a REST
heartbeat and decommissioning each reach the subscribers of the device's
tenant as {"type":"status"} messages, filtered by device and by tag;
another tenant's client and a readings-only client get none of them.
Then apid alone with --device-offline-after 2s: a device that stops
heartbeating is marked offline (and that streams) while one that keeps
heartbeating stays online."""
import os
import secrets
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, need, mqtt_len, mqtt_str, write_keys  # noqa: E402
from ws import WS  # noqa: E402

TENANTS = ("acme", "globex")


class Device:
    """An MQTT 3.1.1 device with a last will "offline" on its status topic
    (what a real device sets), that says "online" when it connects."""

    def __init__(self, port, tenant, dev):
        self.topic = ("tenants/%s/devices/%s/status" % (tenant, dev)).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        var = mqtt_str(b"MQTT") + bytes([4, 0x02 | 0x04]) + struct.pack("!H", 60)
        body = var + mqtt_str(("%s-%s" % (tenant, dev)).encode()) + mqtt_str(self.topic) + mqtt_str(b"offline")
        self.sock.sendall(bytes([0x10]) + mqtt_len(len(body)) + body)
        ack = self.sock.recv(4)
        check(len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0, "%s connects (%r)" % (dev, ack))
        m = b"online"
        self.sock.sendall(bytes([0x30]) + mqtt_len(2 + len(self.topic) + len(m))
                          + mqtt_str(self.topic) + m)

    def vanish(self):
        self.sock.close()  # no DISCONNECT: the broker publishes the last will


def status_items(ws, want, timeout=10):
    """Status items until pred-free count want arrived (or timeout); also
    checks that seq counts up by one."""
    items = []
    deadline = time.time() + timeout
    while len(items) < want and time.time() < deadline:
        m = ws.get(timeout=max(0.1, deadline - time.time()))
        if m is None:
            break
        check(m["seq"] == ws.last_seq + 1, "seq follows (%d after %d)" % (m["seq"], ws.last_seq))
        ws.last_seq = m["seq"]
        check(m["type"] == "status", "a status message (%s)" % m)
        items += m["items"]
    return items


def quiet(ws, secs, what):
    m = ws.get(timeout=secs)
    check(m is None, "%s: nothing more (got %s)" % (what, m))


def test():
    need("ingestd", "aggd", "anomalyd", "alertd", "apid", "mosquitto")
    p = Platform()
    key = {t: "sp_" + secrets.token_urlsafe(32) for t in TENANTS}
    keys = os.path.join(p.dir, "keys")
    write_keys(keys, {t + "-ops": (t, key[t]) for t in TENANTS})
    p.start_broker()
    p.extra = {"apid": ["--keys", keys, "--mqtt-host", "127.0.0.1",
                        "--mqtt-port", str(p.mqtt_port)]}
    p.start()

    def h(t):
        return {"Authorization": "Bearer " + key[t]}

    clients = {}
    devs = []
    try:
        def sub(name, tenant, filt):
            ws = WS(p.api_port, headers=h(tenant)).start()
            ws.send_json(dict({"op": "subscribe"}, **filt))
            m = ws.get()
            check(m and m["type"] == "subscribed", "%s subscribes (%s)" % (name, m))
            ws.last_seq = m["seq"]
            clients[name] = ws
            return m

        m = sub("acme", "acme", {"kinds": ["status"]})
        check(m["kinds"] == ["status"], "the echo names the status kind")
        sub("acme_d1", "acme", {"kinds": ["status"], "device": "d1"})
        sub("acme_tag", "acme", {"kinds": ["status", "readings"], "tags": {"tag": "floor2"}})
        sub("acme_readings", "acme", {"kinds": ["readings"]})
        sub("globex", "globex", {"kinds": ["status"]})
        sub("acme_all", "acme", {})  # no kinds: every kind, status too

        bad = WS(p.api_port, headers=h("acme")).start()
        clients["bad"] = bad
        bad.send_json({"op": "subscribe", "kinds": ["statuses"]})
        m = bad.get()
        check(m and m["type"] == "error" and m["error"]["code"] == "bad_filter"
              and m["error"]["where"] == "kinds" and "status" in m["error"]["message"],
              "an unknown kind is refused, naming the known ones (%s)" % m)

        # Registering.
        for t, d, tags in (("acme", "d1", ["floor2"]), ("acme", "d2", []),
                           ("globex", "g1", ["floor2"])):
            st, _, b = p.http("POST", "/api/devices/register", {"deviceId": d, "type": "thermo",
                                                       "tags": tags}, headers=h(t))
            check(st == 201, "%s registers %s (%s %s)" % (t, d, st, b))
        got = status_items(clients["acme"], 2)
        check([(i["device"], i["event"], i["status"], i["online"]) for i in got]
              == [("d1", "registered", "provisioned", False),
                  ("d2", "registered", "provisioned", False)],
              "acme sees its two registrations (%s)" % got)
        check(got[0]["tags"] == ["floor2"] and got[0]["type"] == "thermo"
              and got[0]["timestamp"].endswith("Z"), "items carry type, tags, time: %s" % got[0])
        got = status_items(clients["globex"], 1)
        check([(i["device"], i["event"]) for i in got] == [("g1", "registered")],
              "globex sees only its own registration (%s)" % got)
        got = status_items(clients["acme_d1"], 1)
        check([i["device"] for i in got] == ["d1"], "the device filter: d1 only (%s)" % got)
        got = status_items(clients["acme_tag"], 1)
        check([i["device"] for i in got] == ["d1"], "the tag filter: floor2 of acme (%s)" % got)
        got = status_items(clients["acme_all"], 2)
        check([i["device"] for i in got] == ["d1", "d2"], "no kinds means status too (%s)" % got)

        # A device comes online over MQTT, then vanishes: the broker's last
        # will makes apid mark it offline, and that streams too.
        d1 = Device(p.mqtt_port, "acme", "d1")
        devs.append(d1)
        got = status_items(clients["acme"], 1)
        check([(i["device"], i["event"], i["online"], i["status"]) for i in got]
              == [("d1", "online", True, "active")], "d1 online over MQTT (%s)" % got)
        check(got[0]["lastSeen"], "online carries lastSeen (%s)" % got[0])
        g1 = Device(p.mqtt_port, "globex", "g1")
        devs.append(g1)
        got = status_items(clients["globex"], 1)
        check([(i["device"], i["event"]) for i in got] == [("g1", "online")],
              "globex sees g1 online (%s)" % got)
        d1.vanish()
        got = status_items(clients["acme"], 1)
        check([(i["device"], i["event"], i["online"]) for i in got]
              == [("d1", "offline", False)], "d1's last will -> offline (%s)" % got)
        got = status_items(clients["acme_d1"], 2)
        check([i["event"] for i in got] == ["online", "offline"],
              "the d1 subscriber saw both (%s)" % got)
        got = status_items(clients["acme_tag"], 2)
        check([i["event"] for i in got] == ["online", "offline"],
              "the floor2 subscriber saw both (%s)" % got)

        # A REST heartbeat brings d2 online; decommissioning d1 streams.
        st, _, b = p.http("POST", "/api/devices/d2/events", {"type": "heartbeat"},
                          headers=h("acme"))
        check(st == 200, "heartbeat d2 (%s %s)" % (st, b))
        st, _, b = p.http("POST", "/api/devices/d2/events", {"type": "heartbeat"},
                          headers=h("acme"))
        check(st == 200, "a second heartbeat d2 (%s)" % st)
        st, _, b = p.http("DELETE", "/api/devices/d1", headers=h("acme"))
        check(st == 200, "decommission d1 (%s %s)" % (st, b))
        got = status_items(clients["acme"], 2)
        check([(i["device"], i["event"], i["status"]) for i in got]
              == [("d2", "online", "active"), ("d1", "decommissioned", "decommissioned")],
              "heartbeat -> online once (the second changes nothing), then "
              "decommissioned (%s)" % got)
        quiet(clients["acme"], 1.0, "acme after the heartbeats")
        got = status_items(clients["acme_d1"], 1)
        check([i["event"] for i in got] == ["decommissioned"], "d1 subscriber: decommissioned")
        quiet(clients["acme_d1"], 0.3, "the d1 subscriber (d2 is not its device)")
        got = status_items(clients["acme_tag"], 1)
        check([(i["device"], i["event"]) for i in got] == [("d1", "decommissioned")],
              "the floor2 subscriber: d1 decommissioned, not d2 (%s)" % got)

        # globex saw nothing of acme, and acme nothing of g1.
        quiet(clients["globex"], 0.5, "globex (acme's devices are not its own)")
        quiet(clients["acme_readings"], 0.3, "a readings-only client")
        g1.vanish()
        got = status_items(clients["globex"], 1)
        check([(i["device"], i["event"]) for i in got] == [("g1", "offline")],
              "g1's last will -> offline on globex (%s)" % got)
        quiet(clients["acme"], 0.5, "acme after g1's last will")
        quiet(clients["acme_tag"], 0.3, "acme's floor2 subscriber (g1 is globex's floor2)")
        st, _, b = p.http("GET", "/api/v1/stream/stats", headers=h("acme"))
        check(st == 200 and b["clients"] == len(clients), "stream stats: %s" % b)
    finally:
        for ws in clients.values():
            ws.close()
        p.stop()
        if p.broker:
            p.broker.terminate()
            p.broker.wait(timeout=10)
    silence()


def silence():
    p = Platform(daemons=("apid",), extra={"apid": ["--device-offline-after", "2s"]}).start()
    ws = None
    try:
        ws = WS(p.api_port).start()
        ws.send_json({"op": "subscribe", "kinds": ["status"]})
        m = ws.get()
        check(m and m["type"] == "subscribed", "subscribed (%s)" % m)
        ws.last_seq = m["seq"]
        for d in ("quiet", "chatty"):
            st, _, _ = p.http("POST", "/api/devices/register", {"deviceId": d, "type": "t"})
            check(st == 201, "register %s" % d)

        def beat(d):
            st, _, _ = p.http("POST", "/api/devices/%s/events" % d, {"type": "heartbeat"})
            check(st == 200, "heartbeat %s" % d)
        t0 = time.time()
        beat("quiet")
        beat("chatty")
        got = status_items(ws, 4)
        check([(i["device"], i["event"]) for i in got] ==
              [("quiet", "registered"), ("chatty", "registered"),
               ("quiet", "online"), ("chatty", "online")], "both online (%s)" % got)
        # chatty beats every 0.5 s for 6 s; quiet says nothing.
        events = []
        while time.time() < t0 + 6:
            beat("chatty")
            m = ws.get(timeout=0.5)
            if m:
                ws.last_seq = m["seq"]
                events += [(i["device"], i["event"], time.time() - t0) for i in m["items"]]
        check([e[:2] for e in events] == [("quiet", "offline")],
              "only the silent device went offline (%s)" % events)
        check(2.0 <= events[0][2] <= 5.5, "after 2 s of silence, within the 1 s look "
              "(%.1f s)" % events[0][2])
        st, _, ev = p.http("GET", "/api/devices/quiet/events")
        last = ev["events"][-1]
        check(last["type"] == "offline" and last["data"].get("reason") == "no heartbeat for 2s",
              "the log says why: %s" % last)
        st, _, d = p.http("GET", "/api/devices/chatty")
        check(d["online"] is True, "chatty is still online")
        got = status_items(ws, 1, timeout=6)
        check([(i["device"], i["event"]) for i in got] == [("chatty", "offline")],
              "chatty offline once it stops (%s)" % got)
        check("devices: default/quiet offline: no heartbeat for 2s" in p.log("apid"),
              "apid logs it")
    finally:
        if ws:
            ws.close()
        p.stop()


if __name__ == "__main__":
    main(test)
