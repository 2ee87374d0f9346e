#!/usr/bin/python3
"""aggd's write-ahead log: kill -9 mid-load loses nothing it confirmed and
doubles nothing; a torn WAL tail is cut off, logged and never applied.

The test plays ingestd: it PUSHes readings batches (producer "ingestd.9",
seq 1..N) into aggd's PULL, binds the confirm PULL aggd reports to, and
resends after a restart from the confirmed seq, as ingestd does.
"""
import glob
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402

try:
    import msgpack
    from fakeingest import restart, run  # noqa: E402
except ImportError:
    print("python3-zmq and python3-msgpack are needed (tools/install-deps.sh)")
    sys.exit(77)

PER_BATCH = 500
SERIES = 7
T0 = 1704067200 * 10**9


def batch(seq):
    """Batch seq holds PER_BATCH distinct points; value = seq + i/1000."""
    items = []
    for i in range(PER_BATCH):
        n = (seq - 1) * PER_BATCH + i
        items.append(["wal.s%d" % (n % SERIES), T0 + n * 10**9,
                      seq + i / 1000.0])
    return [b"readings", msgpack.packb({
        "type": 1, "v": 1, "producer": "ingestd.9", "lane": 0, "seq": seq,
        "ts": time.time_ns(), "items": items})]


def expected(seqs):
    return (len(seqs) * PER_BATCH,
            sum(s + i / 1000.0 for s in seqs for i in range(PER_BATCH)))


def totals(f):
    st, body = f.query({"op": "stats", "series": "wal.*"})
    if st == 404:
        return 0, 0.0
    check(st == 200, "stats answers: %s %s" % (st, body))
    return body["count"], body["sum"]


def test():
    p = Platform(daemons=("aggd",))
    data = os.path.join(p.dir, "data.0")
    # Checkpoints every MiB of WAL: the kill -9 lands between them, so a
    # restart loads sealed chunks and replays the WAL after them.
    p.extra = {"aggd": ["--checkpoint-mb", "1"]}
    run(p, lambda f: _test(p, f, data))


def _test(p, f, data):
    if True:
        # Load, and kill -9 once some of it is confirmed.
        n_total = 400
        for seq in range(1, 251):
            f.push.send_multipart(batch(seq))
            if seq == 150:
                f.wait_confirmed(100)
        f.drain(0)
        before = f.confirmed
        proc = p.procs.pop("aggd")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check(before >= 100, "confirmed %d batches before kill -9" % before)
        f.drain(0)

        # Restart: the WAL holds at least what was confirmed, exactly once.
        restart(p)
        check("replayed" in p.log("aggd"), "aggd logs its WAL replay")
        f.confirmed = 0
        after = f.wait_confirmed(1)
        count, total = totals(f)
        want_n, want_sum = expected(range(1, after + 1))
        check(after >= before, "confirmed after restart %d >= before %d"
              % (after, before))
        # Batches after a gap (lost in the old process' receive queue) may
        # be applied but not confirmed, so at least the confirmed ones.
        check(count >= want_n and count % PER_BATCH == 0,
              "count %d >= %d points of seqs 1..%d, whole batches only"
              % (count, want_n, after))
        check(total >= want_sum - 1e-6 * want_sum,
              "sum %.3f covers the confirmed %.3f" % (total, want_sum))

        # ingestd resends from the confirmed seq, plus some it already
        # had confirmed (a resend overlap): nothing doubles.
        for seq in range(max(1, after - 20), n_total + 1):
            f.push.send_multipart(batch(seq))
        f.wait_confirmed(n_total)
        count, total = totals(f)
        want_n, want_sum = expected(range(1, n_total + 1))
        check(count == want_n and abs(total - want_sum) < 1e-6 * want_sum,
              "after the resend: %d points, sum %.3f" % (count, total))
        st, status = f.query({"op": "status"})
        check(status["resent_batches"] >= 20,
              "resent batches skipped: %d" % status["resent_batches"])
        # A checkpoint counts once durable (its fsyncs run on a thread).
        deadline = time.time() + 30
        while status["checkpoints"] == 0 and time.time() < deadline:
            time.sleep(0.1)
            st, status = f.query({"op": "status"})
        check(status["checkpoints"] > 0 and status["chunks"] > 0,
              "checkpoints %d, chunks %d" % (status["checkpoints"],
                                             status["chunks"]))
        p.stop_one("aggd")

        # A clean stop checkpoints: the restart loads chunks only. Then no
        # checkpoints, so the next batch stays in the WAL for tearing.
        p.extra = {"aggd": ["--checkpoint-mb", "1000"]}
        f.drain(200)
        restart(p)
        count, total = totals(f)
        check(count == n_total * PER_BATCH, "after a clean restart: %d" % count)
        f.push.send_multipart(batch(n_total + 1))
        f.wait_confirmed(n_total + 1)

        def kill_and_damage(damage):
            proc = p.procs.pop("aggd")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            segs = [s for s in sorted(glob.glob(os.path.join(
                data, "wal", "*.wal"))) if os.path.getsize(s) > 0]
            check(len(segs) > 0, "the WAL holds the last batch")
            size = os.path.getsize(segs[-1])
            with open(segs[-1], "r+b") as fh:
                damage(fh, size)
            f.drain(200)
            f.confirmed = 0
            restart(p)
            return segs[-1], size

        # Tear the last record: restart cuts it off and never applies it.
        last, size = kill_and_damage(lambda fh, size: fh.truncate(size - 7))
        check("torn or corrupt tail" in p.log("aggd"),
              "aggd logs the torn tail")
        check(os.path.getsize(last) < size - 7, "the torn record was cut off")
        f.wait_confirmed(1)
        count, total = totals(f)
        want_n, want_sum = expected(range(1, n_total + 1))
        check(f.confirmed == n_total,
              "confirmed %d after the torn tail" % f.confirmed)
        check(count == want_n and abs(total - want_sum) < 1e-6 * want_sum,
              "the torn batch is not applied: %d points" % count)

        # Flip a byte inside the last record's payload.
        f.push.send_multipart(batch(n_total + 1))
        f.wait_confirmed(n_total + 1)

        def flip(fh, size):
            fh.seek(size - 100)
            b = fh.read(1)
            fh.seek(size - 100)
            fh.write(bytes([b[0] ^ 0x40]))
        kill_and_damage(flip)
        check("torn or corrupt tail" in p.log("aggd"),
              "aggd logs the corrupt record")
        count, _ = totals(f)
        check(count == n_total * PER_BATCH,
              "the corrupt batch is not applied: %d points" % count)

        # Late and duplicate points into sealed chunks: 100 new points half
        # a second after old ones, and 100 old timestamps with new values.
        # A clean stop seals them into chunks that overlap older ones; the
        # restart must read the newest value once per timestamp.
        items = []
        for n in range(0, 20000, 200):
            items.append(["wal.s%d" % (n % SERIES), T0 + n * 10**9 + 5 * 10**8,
                          1000.0])
        for n in range(100, 20000, 200):
            items.append(["wal.s%d" % (n % SERIES), T0 + n * 10**9, 2000.0])
        f.push.send_multipart([b"readings", msgpack.packb({
            "type": 1, "v": 1, "producer": "ingestd.9", "lane": 0,
            "seq": n_total + 1, "ts": time.time_ns(), "items": items})])
        f.wait_confirmed(n_total + 1)
        dup_vals = sum((n // PER_BATCH + 1) + (n % PER_BATCH) / 1000.0
                       for n in range(100, 20000, 200))
        want_n = n_total * PER_BATCH + 100
        want_sum = expected(range(1, n_total + 1))[1] + 100 * 1000.0 \
            + 100 * 2000.0 - dup_vals
        for phase in ("in memory", "after a restart"):
            count, total = totals(f)
            check(count == want_n and abs(total - want_sum) < 1e-6 * want_sum,
                  "late and duplicate points %s: %d points (want %d), sum "
                  "%.3f (want %.3f)" % (phase, count, want_n, total, want_sum))
            if phase == "in memory":
                p.stop_one("aggd")
                f.drain(200)
                restart(p)
        st, status = f.query({"op": "stats", "series": "wal.s2",
                              "start": T0 + 100 * 10**9,
                              "end": T0 + 100 * 10**9 + 1})
        check(st == 200 and status["count"] == 1 and status["max"] == 2000.0,
              "the duplicate's newest value wins: %s" % status)


if __name__ == "__main__":
    main(test)
