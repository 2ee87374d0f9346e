#!/usr/bin/env python3
"""Acknowledged readings survive kill -9 of ingestd and of aggd.

Every 200 means the readings were in ingestd's fsync'd spool; the spool is
resent after ingestd restarts and whenever aggd stops confirming, and
aggd's writes are idempotent, so the final count is exact: nothing lost,
nothing doubled.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402

BATCHES = 40
PER = 25


def post(p, i):
    pts = [{"timestamp": (1704067200 + i * PER + k) * 1000, "value": i * PER + k}
           for k in range(PER)]
    st, _, _ = p.http("POST", "/api/v1/ingest", {"sensor_id": "k9", "datapoints": pts},
                      port=p.ingest_port)
    return st == 200


def wait_count(p, want, timeout=30):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        st, _, b = p.http("GET", "/api/v1/stats/k9")
        got = b.get("count") if st == 200 else None
        if got == want:
            return got
        time.sleep(0.2)
    return got


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"ingestd": ["--resend-after", "1s"]}).start()
    try:
        # 1. aggd frozen: acknowledged batches sit in ingestd's queues when
        # ingestd is killed; the restarted ingestd resends them.
        p.procs["aggd"].send_signal(signal.SIGSTOP)
        acked = sum(post(p, i) for i in range(BATCHES // 2))
        check(acked == BATCHES // 2, "every write acknowledged while aggd is frozen")
        p.procs["ingestd"].kill()
        p.procs["ingestd"].wait()
        del p.procs["ingestd"]
        p.procs["aggd"].send_signal(signal.SIGCONT)
        p.start_one("ingestd")
        got = wait_count(p, acked * PER)
        check(got == acked * PER, "after kill -9 of ingestd: %s of %d readings, "
              "none lost or doubled" % (got, acked * PER))
        # 2. kill -9 aggd: its memory is gone, the spool is not.
        acked2 = sum(post(p, i) for i in range(BATCHES // 2, BATCHES))
        p.procs["aggd"].kill()
        p.procs["aggd"].wait()
        del p.procs["aggd"]
        p.start_one("aggd")
        got = wait_count(p, (acked + acked2) * PER, timeout=60)
        check(got == (acked + acked2) * PER,
              "after kill -9 of aggd: %s of %d readings, none lost or doubled"
              % (got, (acked + acked2) * PER))
        st, _, s = p.http("GET", "/stats")
        # What aggd had applied came back either from ingestd's resends or,
        # once aggd has a write-ahead log, from its own replay.
        replayed = (s.get("aggd") or {}).get("replayed_batches", 0)
        check(s["ingestd"]["resends"] > 0 or replayed > 0,
              "ingestd resent unconfirmed batches (%d) or aggd replayed its "
              "WAL (%d)" % (s["ingestd"]["resends"], replayed))
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
