#!/usr/bin/python3
"""Commands and shadow deltas accepted while apid is away from the broker
reach the device once the broker is back (apid's MQTT outbox, in
devices.db), even across a restart of apid meanwhile.

A device with a persistent session (mosquitto_sub -c, the broker with
persistence on) hears devices/+/commands/# and devices/+/shadow/delta.
Two jobs are made while the broker is up; then the broker stops, and
apid is asked to cancel one job, decommission the target of the other
(its cancel goes out with the reason) and change a desired shadow: each
answers 200. apid restarts while the broker is still down, one more
desired change is made, then the broker restarts on the same port: the
device must hear every one of them, in order, within a few seconds, and
/stats and /metrics show the outbox empty again. Before the outbox, apid
answered 200 and dropped each of them. Then the bounds, with
--mqtt-outbox-max 2 --mqtt-outbox-max-age 2s: the oldest of three is
dropped, the other two expire, all counted, and none reaches the device."""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, Subscriber, check, main, need, wait_for  # noqa: E402

DELIVERY_S = 10  # the device hears everything this soon after the broker is back


def lines_of(sub):
    """(topic, payload) of each line the subscriber printed so far."""
    out = []
    for ln in sub.out.decode("utf-8", "replace").splitlines():
        topic, _, payload = ln.partition(" ")
        try:
            out.append((topic, json.loads(payload)))
        except ValueError:
            out.append((topic, payload))
    return out


def test():
    need("apid", "mosquitto", "mosquitto_sub", "mosquitto_pub")
    p = Platform(daemons=("apid",))
    os.chmod(p.dir, 0o755)  # mosquitto drops root for its own user
    pdir = os.path.join(p.dir, "mqpersist")
    os.makedirs(pdir)
    os.chmod(pdir, 0o777)
    broker_conf = "persistence true\npersistence_location %s/\n" % pdir
    p.start_broker(broker_conf)
    p.extra = {"apid": ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(p.mqtt_port)]}
    p.start()
    sub = None
    try:
        for dev, tag in (("d1", "a"), ("d2", "b"), ("d3", "c")):
            st, _, _ = p.http("POST", "/api/devices/register",
                              {"deviceId": dev, "type": "sensor", "tags": [tag]})
            check(st == 201, "%s registered" % dev)
        # The device: a persistent session (clean session off, a fixed
        # id), so that what the broker gets while it reconnects waits for it.
        sub = Subscriber(["-h", "127.0.0.1", "-p", str(p.mqtt_port), "-c", "-i", "dev-sim",
                          "-q", "1", "-v", "-t", "devices/+/commands/#",
                          "-t", "devices/+/shadow/delta"])
        check(sub.subscribed(lambda: p.mqtt_pub("devices/probe/commands/x", "{}"), "probe"),
              "the device is subscribed")

        jobs = {}
        for tag in ("a", "b"):
            deadline = time.time() + 10
            while time.time() < deadline:
                st, _, d = p.http("POST", "/api/devices/batch",
                                  {"operation": "reboot", "filter": {"tag": tag},
                                   "timeoutSeconds": 600})
                if st != 503:
                    break
                time.sleep(0.2)  # apid still connecting to the broker
            check(st == 202 and d["total"] == 1, "job over tag %s -> 202 (got %s)" % (tag, st))
            jobs[tag] = d["jobId"]
        check(sub.read_until('"jobId":"%s"' % jobs["b"]), "the device got both job commands")

        # The broker goes away; apid notices (its socket closes).
        p.broker.terminate()
        p.broker.wait(timeout=10)
        p.broker = None
        wait_for(lambda: p.log("apid").count("mqtt: lost the broker") >= 1,
                 "apid noticed the broker is gone")
        st, _, j = p.http("POST", "/api/jobs/%s/cancel" % jobs["a"])
        check(st == 200 and j["state"] == "cancelled",
              "job a cancelled with the broker down -> 200 (got %s)" % st)
        st, _, d = p.http("DELETE", "/api/devices/d2")
        check(st == 200 and d["status"] == "decommissioned",
              "d2 decommissioned with the broker down -> 200 (got %s)" % st)
        st, _, sh = p.http("PATCH", "/api/devices/d3/shadow", {"desired": {"led": "on"}})
        check(st == 200 and sh["delta"] == {"led": "on"},
              "d3's desired shadow changed with the broker down -> 200 (got %s)" % st)

        # apid restarts while the broker is still down: what it accepted
        # is in devices.db, not in its memory.
        p.stop_one("apid")
        p.start_one("apid")
        st, _, sh = p.http("PATCH", "/api/devices/d3/shadow", {"desired": {"rate": 5}})
        check(st == 200 and sh["version"]["desired"] == 2,
              "a second desired change after apid's restart -> 200 (got %s)" % st)

        # The broker comes back on the same port; the device reconnects
        # (mosquitto_sub retries) and must hear everything, in order.
        t0 = time.time()
        p.start_broker(broker_conf)
        want = [
            ("devices/d1/commands/cancel", {"jobId": jobs["a"], "operation": "cancel"}),
            ("devices/d2/commands/cancel", {"jobId": jobs["b"], "operation": "cancel",
                                            "reason": "device decommissioned"}),
            ("devices/d3/shadow/delta", {"version": 1, "state": {"led": "on"}}),
            ("devices/d3/shadow/delta", {"version": 2, "state": {"led": "on", "rate": 5}}),
        ]

        def heard():
            sub.read_until("\x00", 0.2)  # take what was printed
            got = [m for m in lines_of(sub) if m in want]
            return got if len(got) >= len(want) else None
        got = wait_for(heard, "the device heard the cancels and the deltas within %d s "
                       "of the broker's return (heard %s)" % (DELIVERY_S, lines_of(sub)[-6:]),
                       timeout=DELIVERY_S)
        print("delivered %.1f s after the broker restarted" % (time.time() - t0))
        check(got == want, "... once each, in the order they were accepted (got %s)" % got)

        # The outbox is empty again, and says what it did.
        def drained():
            st, _, s = p.http("GET", "/stats")
            m = s.get("apid", {}).get("mqtt", {})
            return m if m.get("outbox_depth") == 0 and m.get("connected") else None
        m = wait_for(drained, "/stats: apid connected, outbox empty", timeout=10)
        check(m["outbox_sent"] == 4 and m["outbox_queued"] == 1 and m["outbox_dropped"] == 0
              and m["outbox_expired"] == 0,
              "/stats: 4 sent by this apid, 1 queued by it (got %s)" % m)
        check("mqtt outbox: 3 message(s) waiting for the broker from before"
              in p.log("apid"), "apid's log: the 3 messages found at its restart")
        st, _, text = p.http("GET", "/metrics")
        text = text.decode() if isinstance(text, bytes) else str(text)
        check(re.search(r"^sensorpipe_apid_mqtt_outbox_messages 0$", text, re.M)
              and re.search(r'^sensorpipe_apid_mqtt_outbox_total\{result="sent"\} 4$', text,
                            re.M)
              and re.search(r"^sensorpipe_apid_mqtt_connected 1$", text, re.M),
              "/metrics: outbox empty, 4 sent, connected")

        # The bounds: an outbox of 2 messages of at most 2 s. Three desired
        # changes with the broker down: the oldest is dropped for the third
        # (counted, logged), the other two expire; the device hears none.
        p.broker.terminate()
        p.broker.wait(timeout=10)
        p.broker = None
        p.stop_one("apid")
        p.extra["apid"] += ["--mqtt-outbox-max", "2", "--mqtt-outbox-max-age", "2s"]
        p.start_one("apid")
        for v in (1, 2, 3):
            st, _, _ = p.http("PATCH", "/api/devices/d3/shadow", {"desired": {"bound": v}})
            check(st == 200, "desired bound=%d with the broker down -> 200" % v)
        st, _, s = p.http("GET", "/stats")
        m = s["apid"]["mqtt"]
        check(not m["connected"] and m["outbox_depth"] == 2 and m["outbox_queued"] == 3
              and m["outbox_dropped"] == 1,
              "/stats: 2 waiting, the oldest of 3 dropped (got %s)" % m)
        check("mqtt outbox: full (2 messages): dropped the oldest, for default/d3 on "
              "devices/d3/shadow/delta" in p.log("apid"), "apid's log: the drop")

        def expired():
            m = p.http("GET", "/stats")[2]["apid"]["mqtt"]
            return m if m["outbox_depth"] == 0 else None
        m = wait_for(expired, "the 2 messages expire after 2 s", timeout=10)
        check(m["outbox_expired"] == 2, "/stats: 2 expired (got %s)" % m)
        text = p.http("GET", "/metrics")[2].decode()
        check(re.search(r'^sensorpipe_apid_mqtt_outbox_total\{result="dropped"\} 1$', text, re.M)
              and re.search(r'^sensorpipe_apid_mqtt_outbox_total\{result="expired"\} 2$',
                            text, re.M)
              and re.search(r"^sensorpipe_apid_mqtt_connected 0$", text, re.M),
              "/metrics: 1 dropped, 2 expired, not connected")
        p.start_broker(broker_conf)
        wait_for(lambda: p.http("GET", "/stats")[2]["apid"]["mqtt"]["connected"],
                 "apid reconnected")
        check(sub.subscribed(lambda: p.mqtt_pub("devices/probe/commands/y", "{}"),
                             "devices/probe/commands/y"), "the device is back")
        check('"bound"' not in sub.out.decode("utf-8", "replace"),
              "the device heard none of the dropped or expired deltas")
    finally:
        if sub:
            sub.stop()
        p.stop()


if __name__ == "__main__":
    main(test)
