#!/usr/bin/env python3
"""Random MQTT publishes through the broker and its spool plugin never
hurt the broker or a daemon, and never stop good readings arriving.

A raw MQTT 3.1.1 client (one socket, made again whenever the broker
drops it) publishes at QoS 0 and 1 to device topics with odd device ids
and to other topics, with payloads drawn from telemetry JSON with spoilt
fields, random JSON, msgpack-looking bytes, cut messages, raw bytes and
large bodies. Afterwards the broker and every daemon are still up, a
good reading still arrives, and each daemon stops cleanly with no
sanitizer report. Seeded (SP_SEED, printed) and bounded: 1,500 messages
or 120 s, 20,000 or 900 s with SP_FULL=1.
"""
import json
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, mqtt_len, mqtt_str, recv_exact  # noqa: E402

FULL = os.environ.get("SP_FULL") == "1"
COUNT, SECONDS = (20000, 900) if FULL else (1500, 120)
NOW_MS = int(time.time()) * 1000

IDS = ["dev-1", "dev-2", "\u00fc\u6f22", "a" * 300, "x y", "", ".", "..", "+", "#",
       "dev\x00x", "dev/1", "$x", "-", "a{b=c}", "a,b", "\ufffd", "\U0001f600"]
TOPICS = ["devices/%s/telemetry", "devices/%s/errors", "devices/%s/telemetry/x",
          "devices/%s", "%s/telemetry", "devices//telemetry", "$SYS/%s", "x/%s"]
METRICS = ["temperature", "humidity", "t", "", "a.b", "x{y}", "\u00e9", "m" * 300]


def scalar(r):
    return r.choice([r.random() * 100, -r.random(), r.randint(-2**63, 2**63 - 1), 1e308,
                     "22.5", None, True, [], {}, "", 10 ** 30])


def telemetry(r):
    m = {r.choice(METRICS): scalar(r) if r.random() < 0.3 else r.random() * 50
         for _ in range(r.randint(0, 5))}
    v = {"timestamp": r.choice([NOW_MS - r.randint(0, 10**7), NOW_MS, -1, 0, 2**63,
                                "2024-01-01T00:00:00Z", "now", 1.5, None]),
         "metrics": m}
    if r.random() < 0.2:
        del v[r.choice(list(v))]
    if r.random() < 0.2:
        v[r.choice(["tags", "seq", "x"])] = scalar(r)
    return json.dumps(v).encode()


def payload(r):
    k = r.random()
    if k < 0.5:
        return telemetry(r)
    if k < 0.6:
        s = telemetry(r)
        return s[:r.randint(0, len(s))]
    if k < 0.7:  # a msgpack map header and whatever follows
        return bytes([0x80 | r.randint(0, 15)]) + bytes(
            r.randrange(256) for _ in range(r.randint(0, 60)))
    if k < 0.8:
        return bytes(r.randrange(256) for _ in range(r.randint(0, 200)))
    if k < 0.85:
        return b"[" * r.randint(1, 5000)
    if k < 0.9:  # large, valid
        n = r.randint(1000, 20000)
        return json.dumps({"timestamp": NOW_MS, "metrics": {
            "m%d" % i: float(i) for i in range(n // 10)}}).encode()
    return b""


class Client:
    """A raw MQTT 3.1.1 publisher; None from publish when the broker
    closed the connection (then the next publish connects again)."""

    def __init__(self, port, cid):
        self.port, self.cid, self.sock, self.pid = port, cid, None, 0
        self.connects = 0

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        body = mqtt_str(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + \
            mqtt_str(self.cid.encode())
        self.sock.sendall(bytes([0x10]) + mqtt_len(len(body)) + body)
        ack = recv_exact(self.sock, 4)
        if ack is None or ack[0] != 0x20 or ack[3] != 0:
            raise OSError("CONNACK %r" % ack)
        self.connects += 1

    def publish(self, topic, data, qos):
        """'ack', 'sent' (QoS 0) or None (the broker closed the link)."""
        try:
            if self.sock is None:
                self._connect()
            self.pid = self.pid % 65535 + 1
            var = mqtt_str(topic) + (struct.pack("!H", self.pid) if qos else b"")
            self.sock.sendall(bytes([0x30 | (qos << 1)]) + mqtt_len(len(var) + len(data))
                              + var + data)
            if not qos:
                return "sent"
            ack = recv_exact(self.sock, 4)
            if ack == bytes([0x40, 2]) + struct.pack("!H", self.pid):
                return "ack"
        except OSError:
            pass
        self.close()
        return None

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None


def stats_count(p, device):
    st, _, b = p.http("GET", "/api/v1/stats/temperature?tag.device=%s" % device)
    return b.get("count") if st == 200 else None


def test():
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    r = random.Random(seed)
    p = Platform()
    spool, conf = p.plugin_conf()
    p.start_broker(conf)
    p.extra["ingestd"] = ["--mqtt-spool", spool]
    p.start()
    try:
        c = Client(p.mqtt_port, "monkey")
        outcome = {}
        t0 = time.time()
        n = 0
        while n < COUNT and time.time() < t0 + SECONDS:
            topic = r.choice(TOPICS)
            if "%s" in topic:
                topic = topic % r.choice(IDS)
            res = c.publish(topic.encode(), payload(r), r.choice([0, 1, 1]))
            outcome[res] = outcome.get(res, 0) + 1
            n += 1
            if n % 100 == 0 and (p.broker.poll() is not None or any(
                    proc.poll() is not None for proc in p.procs.values())):
                break
        c.close()
        print("%d messages in %.0f s: %s; %d connections" % (
            n, time.time() - t0, ", ".join("%s %d" % kv for kv in sorted(
                outcome.items(), key=str)), c.connects))
        check(p.broker.poll() is None, "the broker (with the spool plugin) is still up")
        for name, proc in p.procs.items():
            check(proc.poll() is None, "%s still running" % name)
        check(outcome.get("ack", 0) > n // 10, "the broker acknowledged publishes (%d)"
              % outcome.get("ack", 0))
        # A good reading still arrives, end to end.
        good = Client(p.mqtt_port, "probe-pub")
        res = good.publish(b"devices/probe/telemetry",
                           b'{"timestamp":%d,"metrics":{"temperature":42.5}}' % NOW_MS, 1)
        good.close()
        check(res == "ack", "a good reading is acknowledged after the run (%s)" % res)
        deadline = time.time() + 30
        got = None
        while time.time() < deadline and got != 1:
            got = stats_count(p, "probe")
            time.sleep(0.2)
        check(got == 1, "the good reading is stored (count %s)" % got)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
