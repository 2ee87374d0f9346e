#!/usr/bin/env python3
"""ingestd: line protocol, its own port, stdin filter, backpressure 503."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, binary, check, main  # noqa: E402


def test():
    # stdin filter: normalised JSON lines out, bad lines logged.
    inp = ('{"name":"t","tags":{"b":"2","a":"1"},"value":1.25,'
           '"timestamp":"2024-01-01T00:00:00Z"}\n'
           'not json\n'
           '{"sensor_id":"s","datapoints":[{"timestamp":1704067200000,"value":2}]}\n')
    r = subprocess.run([binary("ingestd"), "--stdin", "--stdout"], input=inp.encode(),
                       capture_output=True, timeout=30)
    out = r.stdout.decode().splitlines()
    check(r.returncode == 0, "ingestd --stdin --stdout exits 0")
    check(out == ['{"series":"t{a=1,b=2}","timestamp":"2024-01-01T00:00:00.000Z","value":1.25}',
                  '{"series":"s","timestamp":"2024-01-01T00:00:00.000Z","value":2}'],
          "filter prints normalised readings: %s" % out)
    check(b"stdin:2" in r.stderr, "bad line reported with its line number")

    p = Platform(daemons=("aggd", "ingestd", "apid")).start()
    try:
        lp = ("sensor,id=dev_00001 value=23.45 1704067200\n"
              "sensor,id=dev_00001 value=23.55 1704067210\n"
              "cpu,host=a usage=0.5,idle=99i 1704067200\n")
        st, _, _ = p.http("POST", "/write?precision=s", lp, port=p.ingest_port)
        check(st == 204, "line protocol write answers 204")
        st, _, b = p.http("POST", "/api/v2/write?precision=s",
                          "cpu,host=a usage=0.7 1704067210\nbroken\n", port=p.ingest_port)
        check(st == 400 and b["accepted"] == 1 and b["rejected"] == 1,
              "partial write: 400 with counts, valid line kept (%s)" % b)
        deadline = time.time() + 5
        while time.time() < deadline:
            st, _, s = p.http("GET", "/api/v1/stats/sensor?tag.id=dev_00001")
            if st == 200 and s["count"] == 2:
                break
            time.sleep(0.05)
        check(st == 200 and s["count"] == 2 and s["mean"] == 23.5, "line protocol stored")
        st, _, s = p.http("GET", "/api/v1/stats/cpu.usage")
        check(st == 200 and s["count"] == 2, "field f becomes m.f{tags}")
        st, _, s = p.http("GET", "/api/v1/stats/cpu.idle%7Bhost%3Da%7D")
        check(st == 200 and s["max"] == 99, "integer field stored")
        st, _, b = p.http("POST", "/api/v1/record", {"data": [{"name": "x", "value": 1}]},
                          port=p.ingest_port)
        check(st == 200 and b["accepted"] == 1, "JSON forms on ingestd's own port")
    finally:
        p.stop()

    # Backpressure: aggd's downstream never reads and queues are one batch
    # deep, so unconfirmed batches pile up in ingestd's spool; past its
    # limit ingestd refuses with 503 + Retry-After and drops nothing.
    p = Platform(daemons=("aggd", "ingestd"),
                 extra={"aggd": ["--down", "ipc:///nonexistent/anomalyd.{lane}.in",
                                 "--hwm", "1"],
                        "ingestd": ["--hwm", "1", "--spool-max", "4096"]}).start()
    try:
        statuses = []
        for i in range(300):
            st, hdr, _ = p.http("POST", "/write?precision=s",
                                "bp value=%d %d" % (i, 1704067200 + i), port=p.ingest_port)
            statuses.append(st)
            if st == 503:
                check(hdr.get("Retry-After") == "1", "503 carries Retry-After")
                break
        check(503 in statuses, "full queues give 503 (after %d writes)" % len(statuses))
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
