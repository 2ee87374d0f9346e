#!/usr/bin/env python3
"""WebSocket fan-out bench: N clients on apid's /api/v1/stream, each
subscribed to one device's readings, while R readings/s (spread over the N
devices) are written to ingestd as line protocol stamped with the send
time. Reports delivered readings, lag from ingest to client (p50, p99,
max) and apid's RSS. Usage: run.py [clients] [rate] [seconds]
(defaults 1000 100000 10); SP_BUILD picks the build (default build)."""
import asyncio
import base64
import http.client
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..",
                                "tests", "lib"))
from sp import Platform, status_kb  # noqa: E402

CLIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
RATE = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 10
BATCH = 2000  # readings per HTTP write


async def client(port, dev, lags, counts, ready):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write(("GET /api/v1/stream HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    await r.readuntil(b"\r\n\r\n")
    sub = json.dumps({"op": "subscribe", "series": "bench",
                      "device": "d%d" % dev, "kinds": ["readings"]}).encode()
    mask = os.urandom(4)
    head = (struct.pack("!BB", 0x81, 0x80 | len(sub)) if len(sub) < 126 else
            struct.pack("!BBH", 0x81, 0x80 | 126, len(sub)))
    w.write(head + mask +
            bytes(c ^ mask[i % 4] for i, c in enumerate(sub)))
    ready.append(dev)
    try:
        while True:
            b0, b1 = await r.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await r.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await r.readexactly(8))[0]
            data = await r.readexactly(n)
            now = time.time()
            if b0 & 0x0F == 9:  # ping: answer
                m = os.urandom(4)
                w.write(bytes([0x8A, 0x80 | len(data)]) + m +
                        bytes(c ^ m[i % 4] for i, c in enumerate(data)))
                continue
            if b0 & 0x0F != 1:
                break
            msg = json.loads(data)
            for it in msg.get("items", ()):
                counts[0] += 1
                lags.append(now - float(it["value"]))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


def writer(p, stop_at, sent):
    c = http.client.HTTPConnection("127.0.0.1", p.ingest_port, timeout=30)
    per_batch_s = BATCH / RATE
    dev = 0
    next_t = time.time()
    while time.time() < stop_at:
        now = time.time()
        lines = []
        for _ in range(BATCH):
            # The value carries the send time, so lag needs no clock sync.
            lines.append("bench,device=d%d value=%.6f" % (dev, now))
            dev = (dev + 1) % CLIENTS
        c.request("POST", "/write", "\n".join(lines) + "\n")
        resp = c.getresponse()
        resp.read()
        if resp.status == 204:
            sent[0] += BATCH
        next_t += per_batch_s
        delay = next_t - time.time()
        if delay > 0:
            time.sleep(delay)
    c.close()


def rss_kb(pid):
    return status_kb(pid, "VmRSS")


async def main():
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"apid": ["--ws-queue-max", "67108864"]}).start()
    lags, counts, sent, ready = [], [0], [0], []
    try:
        tasks = [asyncio.create_task(client(p.api_port, d, lags, counts,
                                            ready)) for d in range(CLIENTS)]
        while len(ready) < CLIENTS:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        rss0 = rss_kb(p.procs["apid"].pid)
        t0 = time.time()
        await asyncio.to_thread(writer, p, t0 + SECONDS, sent)
        elapsed = time.time() - t0
        await asyncio.sleep(2)  # drain
        rss1 = rss_kb(p.procs["apid"].pid)
        st = p.http("GET", "/api/v1/stream/stats")[2]
        for t in tasks:
            t.cancel()
    finally:
        p.stop()
    lags.sort()
    q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))] * 1000 \
        if lags else float("nan")
    print(json.dumps({
        "clients": CLIENTS, "target_rate": RATE,
        "written_per_s": round(sent[0] / elapsed),
        "delivered": counts[0], "written": sent[0],
        "lag_ms_p50": round(q(0.5), 2), "lag_ms_p99": round(q(0.99), 2),
        "lag_ms_max": round(lags[-1] * 1000, 2) if lags else None,
        "apid_rss_kb_idle": rss0, "apid_rss_kb_loaded": rss1,
        "dropped_slow": st["dropped_slow"], "upstream_gaps": st["upstream_gaps"],
    }, indent=1))


asyncio.run(main())
