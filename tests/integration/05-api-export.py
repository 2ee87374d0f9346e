#!/usr/bin/env python3
"""Streamed exports: /api/v1/export/{series}?format=csv|ndjson pages
through aggd and sends chunks, so every point of a range larger than any
page arrives exactly once and in order (sub-millisecond timestamps
included), ranges and tag filters apply, a client that leaves mid-stream
costs nothing, and apid's memory does not grow with the export's size
(plain build: peak RSS; under ASan the allocator's quarantine hides it)."""
import csv
import io
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import BUILD, Platform, check, main, status_kb  # noqa: E402

T0 = 1704067200  # 2024-01-01T00:00:00Z
N_BIG = 120000   # points of the big series: 24 pages


def write(p, lines):
    for i in range(0, len(lines), 5000):
        st, _, b = p.http("POST", "/write?precision=ns",
                          "\n".join(lines[i:i + 5000]) + "\n",
                          port=p.ingest_port, timeout=60)
        check(st == 204 or print(b), "wrote lines %d.. (%d)" % (i, st))


def raw(p, path):
    """GET path; the status, headers and the whole (de-chunked) body."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", p.api_port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def peak_kb(pid):
    return status_kb(pid, "VmHWM")


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid")).start()
    try:
        # One big series, 2 points per ms apart by 400 us (sub-ms), and
        # small ones on two devices.
        lines = ["vib,device=m1 value=%d %d" % (i, (T0 * 1000 + i // 2) *
                                                1000000 + (i % 2) * 400000)
                 for i in range(N_BIG)]
        lines += ["temp,device=d%d value=%d.5 %d" % (d, i, (T0 + 60 * i) * 10**9)
                  for d in (1, 2) for i in range(100)]
        write(p, lines)
        deadline = time.time() + 60
        while time.time() < deadline:
            st, _, b = p.http("GET", "/api/v1/series?match=*")
            if st == 200 and sum(s["points"] for s in b["series"]) == N_BIG + 200:
                break
            time.sleep(0.3)
        check(st == 200 and sum(s["points"] for s in b["series"]) == N_BIG + 200,
              "aggd holds every point")

        # Warm up with a few pages, then export eight times as much: a
        # streamed export's peak memory is a page, whatever the total.
        pid = p.procs["apid"].pid
        st, _, body = raw(p, "/api/v1/export/vib?format=csv&end=%d" %
                          (T0 * 1000 + N_BIG // 16))
        check(st == 200 and len(body.splitlines()) == N_BIG // 8 + 1,
              "a range of %d points (warm-up)" % (N_BIG // 8))
        hwm0 = peak_kb(pid)
        st, hdr, body = raw(p, "/api/v1/export/vib?format=csv")
        check(st == 200 and hdr.get("Content-Type", "").startswith("text/csv")
              and hdr.get("Transfer-Encoding") == "chunked",
              "CSV export answers 200, text/csv, chunked")
        rows = list(csv.reader(io.StringIO(body.decode())))
        check(rows[0] == ["series", "timestamp", "value"], "CSV header line")
        vals = [float(r[2]) for r in rows[1:]]
        check(len(vals) == N_BIG and vals == [float(i) for i in range(N_BIG)],
              "all %d points once, in time order, across pages (%d rows)"
              % (N_BIG, len(vals)))
        check(all(r[0] == "vib{device=m1}" for r in rows[1:]), "series column")
        hwm1 = peak_kb(pid)
        print("apid peak RSS %d kB -> %d kB for a %d-byte export" %
              (hwm0, hwm1, len(body)))
        if os.path.basename(BUILD) == "build":
            check(hwm1 - hwm0 < len(body) // 1024 // 8,
                  "apid's peak RSS grew %d kB exporting %d kB, 8x the warm-up"
                  % (hwm1 - hwm0, len(body) // 1024))

        st, hdr, body = raw(p, "/api/v1/export/temp?format=ndjson"
                            "&start=2024-01-01T00:10:00Z&end=1704068400000")
        items = [json.loads(x) for x in body.decode().splitlines()]
        check(st == 200 and hdr["Content-Type"] == "application/x-ndjson" and
              len(items) == 2 * 10 and
              [i["series"] for i in items] == ["temp{device=d1}"] * 10 +
              ["temp{device=d2}"] * 10 and items[0] ==
              {"series": "temp{device=d1}", "timestamp": "2024-01-01T00:10:00.000Z",
               "value": 10.5},
              "NDJSON export of a range, series in key order: %d items" % len(items))
        st, _, body = raw(p, "/api/v1/export/temp?format=csv&tag.device=d2")
        check(st == 200 and len(body.decode().splitlines()) == 101,
              "a tag filter narrows the export")
        st, _, body = raw(p, "/api/telemetry/d1?metric=temp&format=csv&limit=5")
        check(st == 200 and len(body.decode().splitlines()) == 101,
              "the telemetry CSV form streams the whole range too")

        st, _, b = p.http("GET", "/api/v1/export/nothing?format=csv")
        check(st == 404 and b["error"]["where"] == "nothing",
              "unknown series: 404 before any byte of CSV")
        st, _, b = p.http("GET", "/api/v1/export/vib?format=xml")
        check(st == 400 and b["error"]["where"] == "format", "bad format 400")
        st, _, b = p.http("GET", "/api/v1/export/vib?format=csv&start=soon")
        check(st == 400 and b["error"]["where"] == "start", "bad start 400")
        st, _, b = p.http("GET", "/api/v1/export/vib?limit=3")
        check(st == 200 and b["count"] == 3 and b["truncated"],
              "without a format the JSON export is as before")

        # Clients that leave mid-stream: apid goes on answering.
        got = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", p.api_port))
            s.sendall(b"GET /api/v1/export/vib?format=ndjson HTTP/1.1\r\n"
                      b"Host: x\r\n\r\n")
            got.append(len(s.recv(65536)))
            s.close()
        check(all(got), "five clients got first bytes and left: %s" % got)
        st, _, body = raw(p, "/api/v1/export/vib?format=csv&limit=1")
        check(st == 200 and len(body.splitlines()) == N_BIG + 1,
              "after five clients left mid-export the next one gets it all")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
