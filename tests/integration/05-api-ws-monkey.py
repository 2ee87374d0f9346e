#!/usr/bin/env python3
"""Random WebSocket sessions on apid's live stream never hurt apid.

Each session upgrades /api/v1/stream and sends a few frames drawn from:
subscriptions with random and hostile fields, broken JSON, text that is
not UTF-8, binary frames, pings and pongs of legal and illegal sizes,
fragments (also a continuation with nothing to continue), reserved bits
and opcodes, unmasked frames, a length that lies, close frames with any
code; then it closes, or just drops the socket. Readings are recorded
meanwhile so subscribed sessions get traffic. Afterwards apid still
serves a fresh subscriber, and every daemon stops cleanly with no
sanitizer report. Seeded (SP_SEED, printed) and bounded: 300 sessions
or 120 s, 3,000 or 900 s with SP_FULL=1.
"""
import json
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402
from ws import BINARY, CLOSE, PING, PONG, TEXT, WS, Closed  # noqa: E402

FULL = os.environ.get("SP_FULL") == "1"
COUNT, SECONDS = (3000, 900) if FULL else (300, 120)
VALUES = ["machine.*", "temp_a", "*", "", "**", "[", "a" * 3000, "\u00e9", 5, -1, None,
          True, [], {}, ["readings"], ["alerts", "anomalies", "rollups"], ["gossip"],
          {"device": "dev-1"}, {"1x": "y"}, 1e308, "temperature{device=dev-1}"]


def subscription(r):
    v = {"op": r.choice(["subscribe", "subscribe", "unsubscribe", "ping", "dance", "", 7])}
    for k in r.sample(["series", "kinds", "tags", "device", "devices", "id", "colour"],
                      r.randint(0, 4)):
        v[k] = r.choice(VALUES)
    return json.dumps(v).encode()


def frame(r, ws):
    """Send one random frame; False once the socket is unusable."""
    k = r.random()
    try:
        if k < 0.45:
            data = subscription(r)
            if r.random() < 0.15:
                data = data[:r.randint(0, len(data))]
            ws.send_frame(TEXT, data)
        elif k < 0.5:
            ws.send_frame(TEXT, b"\xc3(" + bytes(r.randrange(256) for _ in range(20)))
        elif k < 0.55:
            ws.send_frame(BINARY, bytes(r.randrange(256) for _ in range(r.randint(0, 300))))
        elif k < 0.65:
            ws.send_frame(r.choice([PING, PONG]), os.urandom(r.choice([0, 5, 125, 126, 300])))
        elif k < 0.72:  # a fragmented message, or a continuation of nothing
            if r.random() < 0.7:
                ws.send_frame(TEXT, b'{"op":"subs', fin=False)
            ws.send_frame(0, b'cribe","series":"*"}', fin=r.random() < 0.8)
        elif k < 0.77:
            ws.send_frame(TEXT, subscription(r), rsv=r.randint(1, 7))
        elif k < 0.82:
            ws.send_frame(r.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), os.urandom(4))
        elif k < 0.86:
            ws.send_frame(TEXT, subscription(r), mask=False)
        elif k < 0.9:  # the length says more than follows
            ws.send_frame(TEXT, b'{"op"', length=r.choice([100, 70000, 1 << 40]))
            return False
        elif k < 0.95:
            code = r.choice([1000, 1001, 1002, 1005, 1006, 999, 4000, 65535])
            ws.send_frame(CLOSE, struct.pack("!H", code) + os.urandom(r.randint(0, 130)))
            return False
        else:
            ws.send_frame(TEXT, b"x" * r.choice([70000, 300000]))
    except OSError:
        return False
    return True


def drain(ws, seconds):
    """Read whatever apid sends for a moment (pings answered)."""
    ws.sock.settimeout(seconds)
    try:
        while True:
            op, data = ws.recv_frame()
            if op == PING:
                ws.send_frame(PONG, data)
            elif op == CLOSE:
                return
    except (Closed, OSError):
        return


def test():
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    r = random.Random(seed)
    p = Platform(extra={"apid": ["--ws-ping", "1s"]}).start()
    try:
        t0 = time.time()
        n = refused = 0
        while n < COUNT and time.time() < t0 + SECONDS:
            if n % 20 == 0:
                p.record("machine.temp", int(time.time()) - 60, [r.random() * 40 for _ in range(5)])
                if p.procs["apid"].poll() is not None:
                    break
            n += 1
            try:
                ws = WS(p.api_port, timeout=5)
            except (Closed, OSError):
                refused += 1
                continue
            for _ in range(r.randint(1, 8)):
                if not frame(r, ws):
                    break
            drain(ws, r.choice([0.01, 0.05, 0.2]))
            if r.random() < 0.5:
                ws.close()
            ws.sock.close()
        print("%d sessions in %.0f s, %d upgrades refused" % (n, time.time() - t0, refused))
        for name, proc in p.procs.items():
            check(proc.poll() is None, "%s still running" % name)
        check(refused == 0, "every upgrade accepted (%d refused)" % refused)
        # A fresh subscriber still gets live readings.
        ws = WS(p.api_port).start()
        ws.send_json({"op": "subscribe", "series": "probe.*"})
        time.sleep(0.3)
        p.record("probe.temp", int(time.time()) - 5, [1.0, 2.0, 3.0])
        items = []
        deadline = time.time() + 15
        while len(items) < 3 and time.time() < deadline:
            m = ws.get(timeout=max(0.1, deadline - time.time()))
            if m is None:
                break
            items += [i for i in m.get("items", []) if i.get("series") == "probe.temp"]
        ws.close()
        check(len(items) == 3, "a fresh subscriber gets the 3 new readings (%d)" % len(items))
        st, _, s = p.http("GET", "/api/v1/stream/stats")
        check(st == 200, "stream stats answer: %s" % s)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
