#!/usr/bin/env python3
"""Memory a kept-alive HTTP connection holds: libmicrohttpd zeroes a
connection's whole memory pool after each request, so every open
connection keeps all of it resident (common/http.c, HTTP_POOL). A fleet
of devices writing over kept-alive connections must not cost 256 KiB
each (it did: 150 connections, +38 MB)."""
import http.client
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, status_kb  # noqa: E402

N = 150


def test():
    p = Platform(daemons=("aggd", "ingestd"))
    p.start()
    conns = []
    try:
        pid = p.procs["ingestd"].pid
        st, _, _ = p.http("POST", "/write?precision=s", "warm value=1 1704067200",
                          port=p.ingest_port)
        check(st == 204, "a first write (%d)" % st)
        rss0 = status_kb(pid, "VmRSS")
        codes = []
        for rnd in range(2):
            for i in range(N):
                if rnd == 0:
                    conns.append(http.client.HTTPConnection(
                        "127.0.0.1", p.ingest_port, timeout=10))
                c = conns[i]
                c.request("POST", "/write?precision=s",
                          body="cm,dev=d%d value=%d %d" % (i, rnd, 1704067200 + rnd))
                r = c.getresponse()
                r.read()
                codes.append(r.status)
        check(codes.count(204) == 2 * N,
              "%d kept-alive connections wrote twice each (%d of %d accepted)"
              % (N, codes.count(204), 2 * N))
        per = (status_kb(pid, "VmRSS") - rss0) / N
        check(per < 160, "an open connection holds %.0f KiB of ingestd's memory "
              "(under 160; the pool is 64 KiB)" % per)
    finally:
        for c in conns:
            c.close()
        p.stop()


if __name__ == "__main__":
    main(test)
