#!/usr/bin/env python3
"""A firmware job (seed body of POST /api/devices/batch) across 1,000
simulated devices on a real mosquitto: 800 report progress and succeed,
100 fail, 100 are offline and time out; the job shows per-device state,
succeeded devices carry the new firmware in their event log, devices outside
the filter get nothing, and a second job can be cancelled."""
import json
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, mqtt_len, mqtt_str, recv_exact  # noqa: E402

N = 1000


class Fleet(threading.Thread):
    """One MQTT 3.1.1 connection (QoS 0) that plays every device: it hears
    devices/+/commands/# and answers on devices/{id}/jobs/{job}."""

    def __init__(self, port, behave):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.behave = behave
        self.commands = {}
        self.stop = False
        self.lock = threading.Lock()
        var = mqtt_str(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
        self.send(0x10, var + mqtt_str(b"fleet-sim"))
        self.read_packet()  # CONNACK
        self.send(0x82, struct.pack("!H", 1) + mqtt_str(b"devices/+/commands/#") + b"\x00")
        self.read_packet()  # SUBACK
        self.send(0x82, struct.pack("!H", 2) + mqtt_str(b"devices/+/shadow/delta") + b"\x00")
        self.read_packet()  # SUBACK
        self.deltas = {}

    def send(self, head, body):
        with self.lock:
            self.sock.sendall(bytes([head]) + mqtt_len(len(body)) + body)

    def publish(self, topic, payload):
        self.send(0x30, mqtt_str(topic.encode()) + payload.encode())

    def recv_exact(self, n):
        buf = recv_exact(self.sock, n)
        if buf is None:
            raise EOFError
        return buf

    def read_packet(self):
        head = self.recv_exact(1)[0]
        n, mult = 0, 1
        while True:
            b = self.recv_exact(1)[0]
            n += (b & 127) * mult
            mult *= 128
            if not b & 128:
                break
        return head, self.recv_exact(n)

    def run(self):
        while not self.stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                head, body = self.read_packet()
            except (EOFError, OSError):
                return
            if head >> 4 != 3:
                continue
            tl = struct.unpack("!H", body[:2])[0]
            topic = body[2:2 + tl].decode()
            off = 2 + tl + (2 if head & 0x06 else 0)
            msg = json.loads(body[off:])
            dev = topic.split("/")[1]
            if topic.endswith("/shadow/delta"):
                self.deltas.setdefault(dev, []).append(msg)
                if int(dev.split("-")[1]) % 10:  # offline devices do not report
                    self.publish("devices/%s/shadow/reported" % dev,
                                 json.dumps({"state": msg["state"]}))
                continue
            self.commands.setdefault(dev, []).append(msg)
            self.behave(self, dev, msg)

    def close(self):
        self.stop = True
        self.join(timeout=5)
        self.sock.close()


def behave(fleet, dev, msg):
    i = int(dev.split("-")[1])
    if msg["operation"] != "update_firmware" or i % 10 == 0:
        return  # offline devices never answer; other jobs are not answered
    t = "devices/%s/jobs/%s" % (dev, msg["jobId"])
    fleet.publish(t, json.dumps({"status": "in_progress", "progress": 50}))
    if i % 10 == 1:
        fleet.publish(t, json.dumps({"status": "failed", "message": "checksum mismatch"}))
    else:
        fleet.publish(t, json.dumps({"status": "succeeded", "progress": 100}))


def test():
    p = Platform(daemons=("apid",))
    p.start_broker()
    p.extra = {"apid": ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(p.mqtt_port)]}
    p.start()
    fleet = None
    try:
        codes = []
        for i in range(N + 20):
            codes.append(p.http("POST", "/api/devices/register", {
                "deviceId": "dev-%04d" % i, "type": "sensor",
                "metadata": {"location": "warehouse-a" if i < N else "warehouse-b",
                             "model": "DHT22"}})[0])
        check(codes == [201] * (N + 20), "%d devices registered" % (N + 20))
        fleet = Fleet(p.mqtt_port, behave)
        fleet.start()
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, d = p.http("POST", "/api/devices/batch",
                              '{"operation":"update_firmware","filter":{"type":"sensor",'
                              '"location":"warehouse-a"},"params":{"version":"2.1.0",'
                              '"url":"https://example.invalid/fw/2.1.0.bin"},'
                              '"timeoutSeconds":15}')
            if st != 503:
                break
            time.sleep(0.2)  # apid still connecting to the broker
        check(st == 202 and d["total"] == N and d["counts"]["queued"] == N,
              "seed batch body -> 202, %d devices queued (got %s %s)" % (N, st, d))
        job = d["jobId"]

        # 15 s per device: a loaded CI machine (load 16) has let a Python
        # fleet of 1,000 answer later than 8 s.
        deadline = time.time() + 60
        while time.time() < deadline:
            st, _, j = p.http("GET", "/api/jobs/" + job)
            if j["state"] == "completed":
                break
            time.sleep(0.5)
        c = j["counts"]
        check(j["state"] == "completed" and c["succeeded"] == 800 and c["failed"] == 100
              and c["timed_out"] == 100 and c["queued"] == 0 and c["in_progress"] == 0,
              "job completed: 800 succeeded, 100 failed, 100 timed out (got %s %s)"
              % (j["state"], c))
        check(len(fleet.commands) == N and "dev-%04d" % N not in fleet.commands,
              "every targeted device got the command, none outside the filter")
        cmd = fleet.commands["dev-0002"][0]
        check(cmd["params"]["version"] == "2.1.0" and cmd["jobId"] == job,
              "the command carries the job and its params")
        st, _, j = p.http("GET", "/api/jobs/%s?state=failed" % job)
        check(len(j["devices"]) == 100 and all(d["message"] == "checksum mismatch"
                                               for d in j["devices"]),
              "failed devices listed with their message")
        st, _, j = p.http("GET", "/api/jobs/%s?state=timed_out" % job)
        check(sorted(d["deviceId"] for d in j["devices"])
              == ["dev-%04d" % i for i in range(0, N, 10)], "the offline devices timed out")
        st, _, d = p.http("GET", "/api/devices/dev-0002")
        check(d["firmware"] == "2.1.0", "a succeeded device has firmware 2.1.0")
        st, _, ev = p.http("GET", "/api/devices/dev-0002/events")
        check(ev["events"][-1]["type"] == "firmware_updated"
              and ev["events"][-1]["data"]["job"] == job, "... and it is in its log")
        st, _, rep = p.http("GET", "/api/devices/dev-0002?replay=1")
        check(rep == d, "... and replaying the log gives that state")
        st, _, d = p.http("GET", "/api/devices/dev-0001")
        check(d["firmware"] is None, "a failed device keeps its firmware")
        st, _, d = p.http("GET", "/api/devices?metadata.location=warehouse-a&limit=1")
        st, _, lst = p.http("GET", "/api/jobs")
        check(lst["jobs"][0]["jobId"] == job, "GET /api/jobs lists the job")

        # A job nobody answers, cancelled.
        st, _, d = p.http("POST", "/api/devices/batch",
                          {"operation": "reboot", "filter": {"location": "warehouse-b"},
                           "params": {}})
        check(st == 202 and d["total"] == 20, "reboot job over 20 devices")
        st, _, j = p.http("POST", "/api/jobs/%s/cancel" % d["jobId"])
        check(st == 200 and j["state"] == "cancelled" and j["counts"]["cancelled"] == 20,
              "job cancelled")
        time.sleep(0.5)
        check(all(m[-1]["operation"] == "cancel" for k, m in fleet.commands.items()
                  if k >= "dev-%04d" % N), "devices got the cancel command")
        # A batch body without params (apid crashed on it): the job and
        # its command carry {}, not the filter's metadata.
        st, _, d = p.http("POST", "/api/devices/batch",
                          {"operation": "ping", "filter": {"location": "warehouse-b"}})
        check(st == 202 and d["total"] == 20 and d["params"] == {},
              "a batch without params -> 202 over 20 devices, params {} (got %s %s)" % (st, d))
        ping = d["jobId"]
        deadline = time.time() + 10
        while time.time() < deadline and fleet.commands.get("dev-%04d" % N, [{}])[-1].get(
                "jobId") != ping:
            time.sleep(0.1)
        cmd = fleet.commands["dev-%04d" % N][-1]
        check(cmd == {"jobId": ping, "operation": "ping", "params": {}},
              "its command carries params {} (got %s)" % cmd)
        st, _, j = p.http("POST", "/api/jobs/%s/cancel" % ping)
        check(st == 200, "the job without params cancelled")
        # Shadow: a desired change reaches the device as a delta; its
        # report clears it; an offline device's delta stays.
        want = {"led": "on", "cfg": {"rate": 5}}
        for dev in ("dev-0002", "dev-0010"):
            st, _, sh = p.http("PATCH", "/api/devices/%s/shadow" % dev, {"desired": want})
            check(st == 200 and sh["delta"] == want and sh["version"]["desired"] == 1,
                  "%s: desired set, delta pending" % dev)
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, sh = p.http("GET", "/api/devices/dev-0002/shadow")
            if sh["delta"] == {}:
                break
            time.sleep(0.2)
        check(sh["delta"] == {} and sh["reported"] == want and sh["version"]["reported"] == 1,
              "the device's report cleared the delta (got %s)" % sh)
        check(fleet.deltas.get("dev-0002") == [{"version": 1, "state": want}],
              "the delta went out on devices/dev-0002/shadow/delta")
        st, _, sh = p.http("GET", "/api/devices/dev-0010/shadow")
        check(sh["delta"] == want and sh["reported"] == {}, "an offline device's delta stays")
        st, _, sh = p.http("PATCH", "/api/devices/dev-0002/shadow",
                           {"desired": {"cfg": {"rate": 7}}})
        check(sh["delta"] == {"cfg": {"rate": 7}} and sh["version"]["desired"] == 2,
              "a partial change: only it is in the delta")
        # A side is at most 64 KiB: every change rewrites it whole on apid's
        # loop, so one that grew without bound slowed every report.
        big = {"k%d" % i: "v" * 20 for i in range(4000)}
        st, _, d = p.http("PATCH", "/api/devices/dev-0002/shadow", {"desired": big})
        check(st == 413 and d["error"]["code"] == "payload_too_large",
              "a desired side over 64 KiB -> 413 (got %d)" % st)
        fleet.publish("devices/dev-0002/shadow/reported", json.dumps({"state": big}))
        fleet.publish("devices/dev-0002/shadow/reported", json.dumps({"state": {"after": 1}}))
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, sh = p.http("GET", "/api/devices/dev-0002/shadow")
            if "after" in sh["reported"]:
                break
            time.sleep(0.2)
        check(sh["reported"].get("after") == 1 and "k0" not in sh["reported"],
              "a report that would make reported over 64 KiB is refused, the next one taken")
        st, _, sh = p.http("PATCH", "/api/devices/dev-0002/shadow", {"reported": {}})
        check(st == 400, "only desired can be patched over REST")
        st, _, sh = p.http("GET", "/api/devices/nope/shadow")
        check(st == 404, "shadow of an unknown device -> 404")

        # Presence: status and heartbeats, and the broker's last will for a
        # device that vanishes.
        def state_of(dev, pred, what):
            deadline = time.time() + 10
            while time.time() < deadline:
                st, _, d = p.http("GET", "/api/devices/" + dev)
                if pred(d):
                    break
                time.sleep(0.1)
            check(pred(d), what + " (got online=%s status=%s)" % (d["online"], d["status"]))

        fleet.publish("devices/dev-0003/status", "online")
        state_of("dev-0003", lambda d: d["online"] and d["status"] == "active",
                 "status online: online and active")
        fleet.publish("devices/dev-0003/status", "offline")
        state_of("dev-0003", lambda d: not d["online"], "status offline")
        fleet.publish("devices/dev-0003/heartbeat", "{}")
        fleet.publish("devices/dev-0003/heartbeat", "{}")
        state_of("dev-0003", lambda d: d["online"] and d["lastSeen"], "heartbeat: online")
        time.sleep(0.3)
        st, _, ev = p.http("GET", "/api/devices/dev-0003/events")
        kinds = [e["type"] for e in ev["events"]]
        check(kinds[-4:] == ["activated", "online", "offline", "heartbeat"],
              "only changes reach the log, one heartbeat a minute (got %s)" % kinds)
        lw = socket.create_connection(("127.0.0.1", p.mqtt_port))
        var = mqtt_str(b"MQTT") + bytes([4, 0x02 | 0x04]) + struct.pack("!H", 60)
        body = var + mqtt_str(b"dev-0004") + mqtt_str(b"devices/dev-0004/status") + mqtt_str(b"offline")
        lw.sendall(bytes([0x10]) + mqtt_len(len(body)) + body)
        lw.recv(4)  # CONNACK
        t, m = b"devices/dev-0004/status", b"online"
        lw.sendall(bytes([0x30]) + mqtt_len(2 + len(t) + len(m)) + mqtt_str(t) + m)
        state_of("dev-0004", lambda d: d["online"], "dev-0004 online")
        lw.close()  # no DISCONNECT: the broker sends the last will
        state_of("dev-0004", lambda d: not d["online"], "the last will marks dev-0004 offline")

        st, _, d = p.http("POST", "/api/devices/batch", {"operation": "a/b"})
        check(st == 400, "bad batch body -> 400")
        st, _, d = p.http("GET", "/api/jobs/nope")
        check(st == 404, "unknown job -> 404")
    finally:
        if fleet:
            fleet.close()
        p.stop()
        if p.broker:
            p.broker.terminate()
            p.broker.wait(timeout=10)


if __name__ == "__main__":
    main(test)
