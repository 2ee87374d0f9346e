#!/usr/bin/python3
"""kill -9 of aggd while a checkpoint is in flight: nothing confirmed is
lost, nothing doubles, every value reads back bit-identical; and while
the checkpoint's files are made durable on its thread, the loop goes on
applying and confirming batches.

A checkpoint seals the heads and writes the records on the loop, starts
a new WAL segment without waiting, and hands the fdatasyncs and the
checkpoint file to a thread (aggd.c s_ckpt_start); the WAL segments it
covers are dropped once it is durable (s_ckpt_reap). The test hook
AGGD_TEST_CKPT_PAUSE_MS makes the thread sleep before its fsyncs, so
the kill lands while the checkpoint is in flight: the files hold records
no checkpoint names yet, the old checkpoint and every WAL segment since
are still on disk. Three rounds: kill just after the checkpoint began,
kill after more batches were applied and confirmed during it, kill under
load. The test plays ingestd (tests/lib/fakeingest.py): it resends from
the confirmed seq after each restart, with some overlap, as ingestd does.
"""
import glob
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, check, main  # noqa: E402

try:
    from fakeingest import Points, restart, run, status  # noqa: E402
except ImportError:
    print("python3-zmq and python3-msgpack are needed (tools/install-deps.sh)")
    sys.exit(77)

SERIES = 10
PER_BATCH = 1000  # 100 points a series a batch
T0 = 1704067200 * 10**9
PAUSE_MS = 6000  # the checkpoint thread sleeps this long before its fsyncs


P = Points("ckp", SERIES, PER_BATCH, T0)



def test():
    os.environ["AGGD_TEST_CKPT_PAUSE_MS"] = str(PAUSE_MS)
    p = Platform(daemons=("aggd",))
    # A checkpoint every MiB of WAL (about 25 batches).
    p.extra = {"aggd": ["--checkpoint-mb", "1"]}
    try:
        run(p, lambda f: _test(p, f))
    finally:
        del os.environ["AGGD_TEST_CKPT_PAUSE_MS"]


def _test(p, f):
    seq = 0

    def push_until(cond, what, limit=2000):
        """Push batches until cond() holds (checked every 5 batches)."""
        nonlocal seq
        for _ in range(limit):
            seq += 1
            f.push.send_multipart(P.batch(seq))
            if seq % 5 == 0:
                f.wait_confirmed(seq, timeout=60)
                if cond():
                    return
        raise Failure("no %s after %d batches" % (what, seq))

    def in_flight():
        return status(f).get("checkpointing")

    def kill_restart(what):
        check(in_flight(), "%s: the checkpoint is still in flight at the "
              "kill" % what)
        P.kill_resend(p, f, seq, what)

    # 1. kill -9 just after a checkpoint began (its thread sleeps before
    # any fsync: records written, no checkpoint names them).
    push_until(in_flight, "checkpoint in flight")
    kill_restart("just after a checkpoint began")

    # 2. The loop applies and confirms while the checkpoint is in flight;
    # kill -9 then.
    push_until(in_flight, "second checkpoint in flight")
    began = seq
    st0 = status(f)
    for _ in range(8):
        seq += 1
        f.push.send_multipart(P.batch(seq))
    # Confirmed well before the checkpoint's thread wakes up (a loop held
    # by the checkpoint would confirm nothing until it is durable).
    f.wait_confirmed(seq, timeout=PAUSE_MS / 1000.0 * 0.7)
    st = status(f)
    check(st.get("checkpointing") and
          st["checkpoints"] == st0["checkpoints"] and
          st["batches_in"] >= st0["batches_in"] + 8,
          "8 batches applied and confirmed (seq %d -> %d) while the "
          "checkpoint is in flight (checkpoints %d -> %d)"
          % (began, seq, st0["checkpoints"], st["checkpoints"]))
    kill_restart("after batches applied during a checkpoint")

    # 3. kill -9 under load, a checkpoint in flight.
    push_until(in_flight, "third checkpoint in flight")
    for _ in range(10):
        seq += 1
        f.push.send_multipart(P.batch(seq))
    kill_restart("under load during a checkpoint")

    # The checkpoint completes: its WAL segments go, the store answers.
    deadline = time.time() + 60
    n0 = status(f)["checkpoints"]
    while status(f)["checkpoints"] == n0:
        if time.time() > deadline:
            raise Failure("no checkpoint completes: %s" % status(f))
        seq += 1
        f.push.send_multipart(P.batch(seq))
        f.wait_confirmed(seq, timeout=60)
        time.sleep(0.2)
    st = status(f)
    check(st.get("checkpoint_ms", 0) >= PAUSE_MS and
          st.get("checkpoint_loop_max_ms", 10**9) < st["checkpoint_ms"],
          "a checkpoint took %s ms, %s ms of it on the loop at most"
          % (st.get("checkpoint_ms"), st.get("checkpoint_loop_max_ms")))
    p.stop_one("aggd")
    f.drain(200)
    restart(p)
    P.verify(f, seq, True, "after a clean restart")
    wal = glob.glob(os.path.join(p.dir, "data.0", "wal", "*.wal"))
    print("checkpoints in flight under kill -9: %d batches, %d points, "
          "%d WAL segments left" % (seq, seq * PER_BATCH, len(wal)))


if __name__ == "__main__":
    main(test)
