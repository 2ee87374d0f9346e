#!/usr/bin/env python3
"""WebSocket live streams on apid (/api/v1/stream): filters by series glob,
device and kind; readings, anomalies and alerts arrive as JSON with a
per-client sequence; bad filters get an error and keep the connection;
binary, oversized and malformed frames close the connection with the
RFC 6455 code; a silent (half-open) client and a slow client are dropped
with a reason while a fast client keeps everything; apid stops cleanly
with clients connected (no leak under ASan)."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, have, main  # noqa: E402
from ws import BINARY, PING, TEXT, WS  # noqa: E402

T0 = 1704067200


def record(p, name, values, t0=T0, step=10):
    data = [{"name": name, "value": v, "timestamp": (t0 + i * step) * 1000}
            for i, v in enumerate(values)]
    st, _, body = p.http("POST", "/api/v1/record", {"data": data})
    check(st == 200, "record %d readings of %s (%s)" % (len(values), name, st))


def collect(ws, want_items, timeout=15):
    """Messages until want_items items arrived; returns (msgs, items)."""
    msgs, items = [], []
    deadline = time.time() + timeout
    while len(items) < want_items and time.time() < deadline:
        m = ws.get(timeout=max(0.1, deadline - time.time()))
        if m is None:
            break
        msgs.append(m)
        items += m.get("items", [])
    return msgs, items


def stats(p):
    st, _, b = p.http("GET", "/api/v1/stream/stats")
    check(st == 200, "GET /api/v1/stream/stats")
    return b


def wait_stat(p, key, value, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = stats(p)
        if b[key] >= value:
            return b
        time.sleep(0.2)
    check(False, "stats %s reaches %d: %s" % (key, value, stats(p)))


def test():
    for d in ("ingestd", "aggd", "anomalyd", "alertd", "apid"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="sp-05-ws.")
    rules = os.path.join(tmp, "alertd.rules")
    with open(rules, "w") as f:
        f.write("hot: machine.temp > 30 severity critical\n")
    p = Platform(extra={"alertd": ["--rules", rules,
                                   "--db", os.path.join(tmp, "alerts.db")],
                        "apid": ["--ws-ping", "2s",
                                 "--ws-queue-max", "65536"]}).start()
    clients = []
    try:
        # Not an upgrade: 426 in the error shape.
        st, hdr, b = p.http("GET", "/api/v1/stream")
        check(st == 426 and b["error"]["code"] == "upgrade_required",
              "plain GET /api/v1/stream -> 426 (%s)" % st)

        temp = WS(p.api_port).start()
        dev = WS(p.api_port).start()
        alerts = WS(p.api_port).start()
        clients += [temp, dev, alerts]
        temp.send_json({"op": "subscribe", "series": "machine.*",
                        "kinds": ["readings", "anomalies"]})
        m = temp.get()
        check(m and m["type"] == "subscribed" and m["seq"] == 1,
              "subscribe answers 'subscribed' with seq 1: %s" % m)
        dev.send_json({"op": "subscribe", "series": "temperature",
                       "device": "s1", "kinds": ["readings"]})
        check(dev.get()["type"] == "subscribed", "device filter accepted")
        alerts.send_json({"op": "subscribe", "kinds": ["alerts"]})
        check(alerts.get()["type"] == "subscribed", "alerts filter accepted")

        # Bad filters: an error naming the field, the connection stays.
        for bad, where in (({"op": "subscribe", "colour": "red"}, "colour"),
                           ({"op": "subscribe", "kinds": ["gossip"]}, "kinds"),
                           ({"op": "subscribe", "series": 5}, "series"),
                           ({"op": "subscribe", "tags": {"1x": "y"}}, "tags"),
                           ({"op": "dance"}, "op")):
            dev.send_json(bad)
            m = dev.get()
            check(m and m["type"] == "error" and m["error"]["where"] == where,
                  "bad filter %s -> error at %s: %s" % (bad, where, m))
        dev.send_frame(TEXT, b"{not json")
        m = dev.get()
        check(m and m["type"] == "error" and m["error"]["where"] == "body",
              "malformed JSON -> error at body")

        time.sleep(0.3)  # let the SUB sockets subscribe upstream
        normal = [20.0 + (i % 5) * 0.1 for i in range(40)]
        record(p, "machine.temp", normal + [45.0, 46.0, 47.0])
        record(p, "humidity", [50.0] * 5)
        lp = ("temperature,device=s1 value=1 %d\n"
              "temperature,device=s2 value=3 %d\n"
              "temperature,device=s1 value=2 %d\n" % (T0, T0, T0 + 10))
        st, _, _ = p.http("POST", "/write?precision=s", lp, port=p.ingest_port)
        check(st == 204, "tagged readings through line protocol")

        msgs, items = collect(temp, 43)
        readings = [i for m in msgs if m["type"] == "readings"
                    for i in m["items"]]
        check(len(readings) == 43 and
              all(i["series"] == "machine.temp" for i in readings),
              "glob client gets the 43 machine.temp readings only (%d)"
              % len(readings))
        check(readings[0]["timestamp"] == "2024-01-01T00:00:00.000Z" and
              readings[-1]["value"] == 47.0, "items carry timestamp and value")
        seqs = [m["seq"] for m in msgs]
        check(seqs == list(range(2, 2 + len(msgs))),
              "sequence numbers run without a gap: %s" % seqs)
        deadline = time.time() + 10
        anomalies = [m for m in msgs if m["type"] == "anomalies"]
        while not anomalies and time.time() < deadline:
            m = temp.get(timeout=1)
            if m and m["type"] == "anomalies":
                anomalies.append(m)
        check(anomalies and anomalies[0]["items"][0]["score"] > 0,
              "the spike arrives as an anomaly with a score")
        # 43 readings are within the ensemble's warm-up: no novelty alarm.
        check(anomalies and anomalies[0]["items"][0].get("alarm") is False,
              "an anomaly item carries the novelty alarm flag (false): %s"
              % (anomalies and anomalies[0]["items"][0]))

        _, items = collect(dev, 2)
        check([i["value"] for i in items] == [1.0, 2.0] and
              all(i["series"] == "temperature{device=s1}" for i in items),
              "device filter gets device s1 only: %s" % items)
        _, items = collect(alerts, 1)
        check(items and items[0]["rule"] == "hot" and
              items[0]["series"] == "machine.temp",
              "alerts client gets the rule's alert: %s" % items[:1])

        # The firing alert can be acknowledged through apid.
        st, _, b = p.http("GET", "/api/alerts")
        firing = [a for a in b["alerts"] if a["rule"] == "hot"]
        check(st == 200 and firing and "id" in firing[0],
              "GET /api/alerts lists the alert with its id")
        aid = firing[0]["id"]
        st, _, b = p.http("POST", "/api/alerts/%d/ack" % aid, {"by": "ops"})
        check(st == 200 and b["state"] == "acknowledged" and
              b["acked_by"] == "ops", "POST /api/alerts/{id}/ack: %s" % b)
        st, _, b = p.http("POST", "/api/alerts/%d/ack" % aid)
        check(st == 404, "a second ack is refused (%d)" % st)
        st, _, b = p.http("GET", "/api/alerts/%d" % aid)
        check(st == 200 and b["id"] == aid, "GET /api/alerts/{id}")
        st, _, b = p.http("POST", "/api/alerts/%d/ack" % aid, {"by": 5})
        check(st == 400 and b["error"]["where"] == "by", "bad by -> 400")

        # Frames a client must not send: each closes with its code.
        for what, frame, code in (
                ("binary frame", lambda w: w.send_frame(BINARY, b"\x00"), 1003),
                ("100 KB message", lambda w: w.send_frame(
                    TEXT, b"x" * 100000), 1009),
                ("unmasked frame", lambda w: w.send_frame(
                    TEXT, b"{}", mask=False), 1002),
                ("reserved opcode", lambda w: w.send_frame(3, b""), 1002),
                ("invalid UTF-8", lambda w: w.send_frame(TEXT, b"\xff\xfe"),
                 1007)):
            w = WS(p.api_port)
            frame(w)
            got = w.expect_close()
            w.close()
            check(got == code, "%s closes with %d (got %s)" % (what, code, got))

        # A frame header that promises 2^62 bytes, then a trickle.
        w = WS(p.api_port)
        w.send_frame(TEXT, b"x" * 16, length=1 << 62)
        check(w.expect_close() == 1009, "a 2^62-byte length closes with 1009")
        w.close()

        # Half-open: subscribed, then never reads or answers a ping.
        before = stats(p)["dropped_silent"]
        silent = WS(p.api_port)
        silent.send_json({"op": "subscribe", "kinds": ["alerts"]})
        wait_stat(p, "dropped_silent", before + 1, timeout=15)
        check(True, "a silent client is dropped as half-open")
        silent.sock.close()

        # A client that vanishes mid-handshake and one that drops the TCP
        # connection without a close frame.
        s = socket.create_connection(("127.0.0.1", p.api_port))
        s.sendall(b"GET /api/v1/stream HTTP/1.1\r\nUpgrade: web")
        s.close()
        gone = WS(p.api_port)
        gone.send_json({"op": "subscribe"})
        gone.sock.close()

        # Slow: a tiny receive window and no reading, while a fast client
        # keeps up with the same stream.
        slow = WS(p.api_port, rcvbuf=4096)
        slow.send_json({"op": "subscribe", "series": "bulk",
                        "kinds": ["readings"]})
        fast = WS(p.api_port).start()
        clients.append(fast)
        fast.send_json({"op": "subscribe", "series": "bulk",
                        "kinds": ["readings"]})
        check(fast.get()["type"] == "subscribed", "fast client subscribed")
        # The slow client stays alive (it pings) but never reads.
        n = 0
        for k in range(40):
            try:
                slow.send_frame(PING, b"alive")
            except OSError:
                pass  # already dropped
            record(p, "bulk", [float(i) for i in range(2000)],
                   t0=T0 + k * 100000)
            n += 2000
        b = wait_stat(p, "dropped_slow", 1)
        check(b["dropped_slow"] == 1, "exactly the slow client is dropped")
        _, items = collect(fast, n, timeout=30)
        check(len(items) == n, "the fast client got all %d bulk readings (%d)"
              % (n, len(items)))
        check("slow consumer" in p.log("apid"), "apid logs the slow reason")
        slow.expect_close(timeout=5)
        slow.sock.close()
        check(stats(p)["clients"] == len(clients),
              "only the well-behaved clients remain: %s" % stats(p))
        st, _, text = p.http("GET", "/metrics")
        text = text.decode()
        check(st == 200 and ("sensorpipe_apid_ws_clients %d\n" % len(clients))
              in text, "/metrics counts the WebSocket clients")
        check("sensorpipe_apid_ws_dropped_slow_total 1\n" in text and
              "sensorpipe_apid_ws_dropped_silent_total 1\n" in text,
              "/metrics has the stream's drops (slow 1, silent 1)")
        for d in ("ingestd", "aggd", "anomalyd", "alertd"):
            check('sensorpipe_up{daemon="%s"} 1\n' % d in text,
                  "/metrics: %s up" % d)
        hist = {}
        for line in text.splitlines():
            if line.startswith("sensorpipe_apid_query_duration_seconds_"):
                k, v = line.rsplit(" ", 1)
                hist[k] = float(v)
        n = hist.get('sensorpipe_apid_query_duration_seconds_count{daemon="ingestd"}', 0)
        check(n >= 40 and hist.get('sensorpipe_apid_query_duration_seconds_bucket'
                                   '{daemon="ingestd",le="+Inf"}') == n,
              "query latency histogram: %d ingest requests, +Inf bucket = count" % n)
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"], input=text,
                               capture_output=True, text=True, timeout=30)
            check(r.returncode == 0, "promtool check metrics accepts /metrics: %s"
                  % (r.stdout + r.stderr).strip()[:2000])
        # Stop with clients still connected: they get 1001, apid frees all.
    finally:
        p.stop()
    for c in clients:
        c.thread.join(5)
        check(c.close_code == 1001 or c.eof,
              "client told the server is going away (%s)" % c.close_code)
        c.sock.close()


if __name__ == "__main__":
    main(test)
