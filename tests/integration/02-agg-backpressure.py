#!/usr/bin/env python3
"""Backpressure along the chain (common/outq): a frozen anomalyd makes aggd
pause its intake while still answering queries; once anomalyd runs again
aggd resumes and every reading reaches both, none lost or doubled."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402

POSTS = 60
PER = 2000
T0 = 1704067200


def post(p, i):
    pts = [{"timestamp": (T0 + i * PER + k) * 1000, "value": (i * PER + k) % 97}
           for k in range(PER)]
    st, _, _ = p.http("POST", "/api/v1/ingest", {"sensor_id": "bp", "datapoints": pts},
                      port=p.ingest_port)
    return st == 200


def stats(p):
    st, _, b = p.http("GET", "/stats")
    return b if st == 200 else {}


def wait(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    return cond()


def test():
    small = ["--hwm", "1"]
    p = Platform(daemons=("aggd", "anomalyd", "ingestd", "apid"),
                 extra={"aggd": small, "anomalyd": small}).start()
    try:
        p.procs["anomalyd"].send_signal(signal.SIGSTOP)
        acked = sum(post(p, i) for i in range(POSTS))
        check(acked == POSTS, "every write acknowledged (%d of %d)" % (acked, POSTS))
        s = wait(lambda: (stats(p).get("aggd") or {}).get("paused") and stats(p), 30)
        agg = (s or {}).get("aggd", {})
        check(agg.get("paused") is True,
              "aggd pauses its intake while anomalyd is frozen")
        check(agg.get("downstream_stalls", 0) >= 1,
              "aggd counts the stall (%s)" % agg.get("downstream_stalls"))
        check(agg.get("readings_in", 0) < POSTS * PER,
              "aggd stopped reading before the end (%s of %d)"
              % (agg.get("readings_in"), POSTS * PER))
        st, _, b = p.http("GET", "/api/v1/stats/bp")
        check(st == 200 and b.get("count", 0) > 0,
              "aggd answers queries while paused (count %s)" % b.get("count"))
        p.procs["anomalyd"].send_signal(signal.SIGCONT)
        total = POSTS * PER

        def done():
            s = stats(p)
            a, n = s.get("aggd", {}), s.get("anomalyd", {})
            return (a.get("readings_in") == total and n.get("readings_in") == total
                    and not a.get("paused") and not n.get("paused")) and s
        s = wait(done, 60) or stats(p)
        check(s.get("aggd", {}).get("readings_in") == total,
              "aggd applied every reading after the resume (%s of %d)"
              % (s.get("aggd", {}).get("readings_in"), total))
        check(s.get("anomalyd", {}).get("readings_in") == total,
              "anomalyd scored every reading exactly once (%s of %d)"
              % (s.get("anomalyd", {}).get("readings_in"), total))
        check(s.get("aggd", {}).get("paused") is False, "aggd reads again")
        st, _, b = p.http("GET", "/api/v1/stats/bp")
        check(st == 200 and b.get("count") == total,
              "stats count every reading once (%s of %d)" % (b.get("count"), total))
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
