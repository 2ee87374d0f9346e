"""The ingestd side of aggd, for tests that drive aggd alone: a PUSH into
aggd's PULL, the PULL that aggd sends confirmations to, and a DEALER for
queries (msgpack rpc, docs/PROTOCOL.md)."""
import os
import struct
import sys
import time

import msgpack
import zmq

from sp import Failure


class Fake:
    """Plays ingestd producer PRODUCER on lane 0 of platform p."""

    PRODUCER = "ingestd.9"

    def __init__(self, p):
        self.ctx = zmq.Context()
        self.confirm = self.ctx.socket(zmq.PULL)
        self.confirm.bind("ipc://%s/ingestd.confirm" % p.run)
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect("ipc://%s/aggd.0.in" % p.run)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect("ipc://%s/aggd.0.query" % p.run)
        self.confirmed = 0
        self.qid = 0

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
        for s in (self.confirm, self.push, self.dealer):
            s.close(0)
        self.ctx.term()


def restart(p):
    """Start aggd again with a fresh log (start_one waits for "ready:")."""
    log = os.path.join(p.dir, "aggd.log")
    n = 0
    while os.path.exists("%s.%d" % (log, n)):
        n += 1
    os.rename(log, "%s.%d" % (log, n))
    p.start_one("aggd")


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
