"""The ingestd side of aggd, for tests that drive aggd alone: a PUSH into
aggd's PULL, the PULL that aggd sends confirmations to, and a DEALER for
queries (msgpack rpc, docs/PROTOCOL.md)."""
import math
import os
import signal
import struct
import sys
import time

import msgpack
import zmq

from sp import Failure, check


class Query:
    """A DEALER on the query socket of lane (0) of platform p's aggd, or
    of daemon (e.g. "ingestd"), as apid's: for tests that run the real
    ingestd but read aggd's store or a daemon's status directly
    (stored_values, status)."""

    def __init__(self, p, lane=0, daemon=None):
        self.ctx = zmq.Context()
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect("ipc://%s/%s.query" % (
            p.run, daemon or "aggd.%d" % lane))
        self.qid = 0

    def query(self, req, timeout_ms=10000):
        self.qid += 1
        self.dealer.send_multipart([struct.pack("<Q", self.qid),
                                    msgpack.packb(req)])
        if not self.dealer.poll(timeout_ms):
            raise Failure("aggd did not answer %r" % req)
        _, body = self.dealer.recv_multipart()
        r = msgpack.unpackb(body)
        return r["status"], r["body"]

    def close(self):
        self.dealer.close(0)
        self.ctx.term()


class Fake(Query):
    """Plays ingestd producer PRODUCER on lane 0 of platform p."""

    PRODUCER = "ingestd.9"

    def __init__(self, p):
        super().__init__(p)
        self.confirm = self.ctx.socket(zmq.PULL)
        self.confirm.bind("ipc://%s/ingestd.confirm" % p.run)
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect("ipc://%s/aggd.0.in" % p.run)
        self.confirmed = 0

    def send(self, seq, items):
        """PUSH one readings batch: items are [series, ts_ns, value]."""
        self.push.send_multipart([b"readings", msgpack.packb({
            "type": 1, "v": 1, "producer": self.PRODUCER, "lane": 0,
            "seq": seq, "ts": time.time_ns(), "items": items})])

    def drain(self, timeout_ms=0):
        """Read confirmations; return the highest seq seen for us."""
        while self.confirm.poll(timeout_ms):
            topic, body = self.confirm.recv_multipart()
            m = msgpack.unpackb(body)
            assert topic == b"confirm" and m["type"] == 4, m
            for producer, lane, seq in m["items"]:
                if producer == self.PRODUCER and lane == 0:
                    self.confirmed = max(self.confirmed, seq)
            timeout_ms = 0
        return self.confirmed

    def wait_confirmed(self, want, timeout=30):
        deadline = time.time() + timeout
        while self.drain(100) < want:
            if time.time() > deadline:
                raise Failure("confirmed %d, wanted %d"
                              % (self.confirmed, want))
        return self.confirmed

    def close(self):
        for s in (self.confirm, self.push):
            s.close(0)
        super().close()


def restart(p, name="aggd"):
    """Start daemon name (aggd) again with a fresh log (start_one waits
    for "ready:"); the old log stays as name.log.N."""
    log = os.path.join(p.dir, name + ".log")
    n = 0
    while os.path.exists("%s.%d" % (log, n)):
        n += 1
    os.rename(log, "%s.%d" % (log, n))
    p.start_one(name)


def run(p, body):
    """Start platform p with a Fake ingestd, run body(f), print aggd's log
    on failure, stop everything."""
    os.makedirs(p.run, exist_ok=True)
    f = Fake(p)
    p.start()
    try:
        body(f)
    except Failure:
        sys.stdout.write(p.log("aggd"))
        raise
    finally:
        f.close()
        p.stop()


class Points:
    """The points of numbered batches for kill -9 tests: batch seq holds
    per_batch points over series PREFIX.s00.., one a second from t0,
    2-decimal values (scaled integer coding) on even series and full
    doubles (XOR coding) on odd ones; verify() reads them back."""

    def __init__(self, prefix, series, per_batch, t0):
        self.prefix, self.series = prefix, series
        self.per_batch, self.t0 = per_batch, t0

    def key(self, n):
        return ("%s.s%02d" % (self.prefix, n % self.series),
                self.t0 + n * 10**9)

    def value(self, n):
        s = n % self.series
        if s % 2 == 0:
            return round(20.0 + (n % 997) / 100.0 - s, 2)
        return math.sin(n) * 1e3 + 1.0 / (n + 3)

    def batch(self, seq):
        items = []
        for i in range(self.per_batch):
            n = (seq - 1) * self.per_batch + i
            items.append(list(self.key(n)) + [self.value(n)])
        return [b"readings", msgpack.packb({
            "type": 1, "v": 1, "producer": Fake.PRODUCER, "lane": 0,
            "seq": seq, "ts": time.time_ns(), "items": items})]

    def stored(self, f):
        """{(series, ts): value bits} of every stored point, asserting
        that no (series, ts) appears twice."""
        return {(k, t): _bits(v)
                for k, d in stored_values(f, self.prefix + ".*").items()
                for t, v in d.items()}

    def verify(self, f, upto, exact, what):
        """Every point of batches 1..upto is stored once, bit-identical;
        when exact, nothing else is stored (else only whole later
        batches). Returns the number of points stored."""
        pts = self.stored(f)
        for n in range(upto * self.per_batch):
            got = pts.get(self.key(n))
            if got is None:
                raise Failure("%s: point %d (%s) of a confirmed batch is lost"
                              % (what, n, self.key(n)))
            if got != _bits(self.value(n)):
                raise Failure("%s: point %d reads %r, wrote %r" % (
                    what, n, struct.unpack("<d", got)[0], self.value(n)))
        extra = len(pts) - upto * self.per_batch
        if exact:
            check(extra == 0, "%s: %d points beyond the %d batches"
                  % (what, extra, upto))
        else:
            check(extra >= 0 and extra % self.per_batch == 0,
                  "%s: %d points beyond the confirmed, whole batches only"
                  % (what, extra))
        return len(pts)

    def kill_resend(self, p, f, seq, what):
        """kill -9 aggd, restart it: every batch confirmed before is read
        back (P.verify), then ingestd's resend from the confirmed seq (with
        an overlap) up to seq leaves each point of batches 1..seq once."""
        f.drain(0)
        before = f.confirmed
        proc = p.procs.pop("aggd")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        f.drain(0)
        f.confirmed = 0
        restart(p)
        after = f.wait_confirmed(1)
        check(after >= before, "%s: confirmed %d after the restart, %d before"
              % (what, after, before))
        n = self.verify(f, before, False, "after kill -9 " + what)
        for s in range(max(1, after - 10), seq + 1):
            f.push.send_multipart(self.batch(s))
        f.wait_confirmed(seq, timeout=60)
        self.verify(f, seq, True, "after the resend, " + what)
        print("%s: %d confirmed before, %d points after the restart, %d "
              "batches in all, none lost or doubled" % (what, before, n, seq))


def stored_values(f, glob):
    """{series: {ts: value}} of every point aggd stores in the series
    matching glob, asserting that no (series, ts) appears twice."""
    st, body = f.query({"op": "values", "series": glob, "max": 10**7},
                       timeout_ms=60000)
    if st == 404:
        return {}
    if st != 200:
        raise Failure("values answers %s %s" % (st, str(body)[:300]))
    out = {}
    for s in body["series"]:
        if len(s["ts"]) != len(s["v"]):
            raise Failure("ts and v of %s differ in length" % s["series"])
        d = {}
        for t, v in zip(s["ts"], s["v"]):
            if t in d:
                raise Failure("%s at %d stored twice" % (s["series"], t))
            d[t] = v
        if d:
            out[s["series"]] = d
    return out


def _bits(x):
    return struct.pack("<d", x)


def status(f):
    """aggd's status answer."""
    st, body = f.query({"op": "status"})
    if st != 200:
        raise Failure("status answers %s %s" % (st, body))
    return body
