#!/usr/bin/env python3
"""Line protocol as real InfluxDB clients send it: Debian's `influx` CLI
(written by none of us), gzip bodies, and every kind of bad input."""
import gzip
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402


def stats(p, path, want=None, timeout=10):
    deadline = time.time() + timeout
    while True:
        st, _, b = p.http("GET", path)
        if st == 200 and (want is None or b["count"] == want):
            return b
        if time.time() > deadline:
            return b
        time.sleep(0.05)


def test():
    if shutil.which("influx") is None:
        print("influx CLI (influxdb-client) not installed")
        sys.exit(77)
    p = Platform(daemons=("aggd", "ingestd", "apid")).start()
    try:
        for line in ("INSERT cpu,host=a usage=0.5 1704067200",
                     "INSERT cpu,host=a usage=0.7 1704067210"):
            r = subprocess.run(["influx", "-host", "127.0.0.1", "-port", str(p.ingest_port),
                                "-database", "db", "-precision", "s", "-execute", line],
                               capture_output=True, timeout=20)
            check(r.returncode == 0, "influx CLI %r exits 0 (%s)" % (line, r.stderr))
        b = stats(p, "/api/v1/stats/cpu.usage?tag.host=a", 2)
        check(b["count"] == 2 and b["mean"] == 0.6, "influx CLI writes stored: %s" % b)

        body = gzip.compress(b"gz,host=b value=1.5 1704067200\ngz,host=b value=2.5 1704067201\n")
        st, _, _ = p.http("POST", "/write?precision=s", body, port=p.ingest_port,
                          headers={"Content-Encoding": "gzip"})
        check(st == 204, "gzip body accepted")
        check(stats(p, "/api/v1/stats/gz", 2)["count"] == 2, "gzip readings stored")
        st, _, b = p.http("POST", "/write?precision=s", body[:-10], port=p.ingest_port,
                          headers={"Content-Encoding": "gzip"})
        check(st == 400 and b["error"]["message"] == "truncated gzip body",
              "truncated gzip: 400 (%s)" % b)
        bomb = gzip.compress(b"\0" * (64 << 20))
        st, _, b = p.http("POST", "/write", bomb, port=p.ingest_port,
                          headers={"Content-Encoding": "gzip"})
        check(st == 413, "a gzip bomb is refused with 413, not inflated (%d)" % st)
        st, _, b = p.http("POST", "/write", b"x value=1", port=p.ingest_port,
                          headers={"Content-Encoding": "br"})
        check(st == 415, "unknown Content-Encoding: 415")

        bad = ("bad\xff,host=a value=1 1704067200\n"
               "nan value=nan 1704067200\n"
               "inf value=+Inf 1704067200\n"
               "future value=1 5000000000\n"
               "past value=1 -5\n"
               "str value=\"hot\" 1704067200\n"
               "ok value=1 1704067200\n").encode("latin-1")
        st, _, b = p.http("POST", "/write?precision=s", bad, port=p.ingest_port)
        check(st == 400 and b["accepted"] == 1 and b["rejected"] == 6,
              "six bad lines rejected, the good one kept: %s" % b)
        reasons = [e["reason"] for e in b["errors"]]
        check(any("UTF-8" in r for r in reasons), "invalid UTF-8 named")
        check(any("future" in r for r in reasons), "far future timestamp named")
        check(any("1970" in r for r in reasons), "timestamp before 1970 named")
        st, _, _ = p.http("POST", "/write?precision=s", b"after value=3 1704067200\n",
                          port=p.ingest_port)
        check(st == 204 and p.procs["ingestd"].poll() is None,
              "ingestd still serving: a good write after the bad ones gets 204 (%s)" % st)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
