#!/usr/bin/python3
"""kill -9 of aggd while a chunk compaction is in progress: nothing
confirmed is lost, nothing doubles, every value reads back bit-identical,
and no compaction file or old chunk generation is left behind.

Compaction runs on its own thread (agg_store.c s_compact_start) and is
switched over to at a later checkpoint (s_compact_reap). Two test hooks
make the kill land inside it deterministically:
AGGD_TEST_COMPACT_PAUSE_MS makes the thread sleep after each series it
wrote (so it lasts seconds), AGGD_TEST_COMPACT_SWITCH_MS holds the loop
right after the switch-over (new file renamed to the next generation,
chunks replaced in memory) and before the checkpoint that names it.
Three rounds: kill while the thread writes compact.tmp, kill at the
switch-over, kill under load a moment after a compaction began. The test
plays ingestd (tests/lib/fakeingest.py): it resends from the confirmed
seq after each restart, with some overlap, as ingestd does.
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

SERIES = 12
PER_BATCH = 1200  # 100 points a series a batch
T0 = 1704067200 * 10**9


P = Points("cmp", SERIES, PER_BATCH, T0)



def files(data):
    return sorted(os.path.basename(x) for x in glob.glob(
        os.path.join(data, "*.dat")) + glob.glob(os.path.join(data, "*.tmp")))


def test():
    os.environ["AGGD_TEST_COMPACT_PAUSE_MS"] = "150"
    os.environ["AGGD_TEST_COMPACT_SWITCH_MS"] = "4000"
    p = Platform(daemons=("aggd",))
    data = os.path.join(p.dir, "data.0")
    # A checkpoint every MiB of WAL (about 20 batches) seals each series'
    # head into a small chunk: a compaction starts every few checkpoints.
    p.extra = {"aggd": ["--checkpoint-mb", "1"]}
    try:
        run(p, lambda f: _test(p, f, data))
    finally:
        del os.environ["AGGD_TEST_COMPACT_PAUSE_MS"]
        del os.environ["AGGD_TEST_COMPACT_SWITCH_MS"]


def _test(p, f, data):
    seq = 0
    confirmed_total = 0

    def push_until(cond, what, limit=2000):
        """Push batches until cond() holds (checked every 5 batches)."""
        nonlocal seq
        for _ in range(limit):
            seq += 1
            f.push.send_multipart(P.batch(seq))
            if seq % 5 == 0:
                f.drain(0)
                if cond():
                    return
        raise Failure("no %s after %d batches" % (what, seq))

    def kill_restart(what):
        nonlocal confirmed_total
        P.kill_resend(p, f, seq, what)
        confirmed_total = seq

    def compacting():
        return status(f).get("compacting")

    # 1. kill -9 while the thread writes its file.
    push_until(compacting, "compaction")
    # The thread creates its file when it first runs, which on a loaded
    # machine can come after the status says it is compacting.
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(data, "compact.tmp")) and \
            time.time() < deadline:
        time.sleep(0.02)
    check(os.path.exists(os.path.join(data, "compact.tmp")),
          "the compaction's file exists while it runs: %s" % files(data))
    time.sleep(0.3)
    check(compacting(), "the compaction still runs (paused per series)")
    kill_restart("while the compaction thread writes")

    # 2. kill -9 right after the switch-over, before the checkpoint names
    # the new generation (the loop is held there for 4 s).
    switched = p.log("aggd").count("on the loop")
    push_until(compacting, "second compaction")
    deadline = time.time() + 60
    while p.log("aggd").count("on the loop") == switched:
        if time.time() > deadline:
            raise Failure("no switch-over: %s" % p.log("aggd")[-2000:])
        f.push.send_multipart(P.batch(seq + 1))  # checkpoints switch over
        seq += 1
        time.sleep(0.05)
    time.sleep(0.2)
    gens = [x for x in files(data) if x.startswith("chunks.")]
    check(len(gens) >= 2, "old and new generation both on disk: %s" % gens)
    kill_restart("between switch-over and checkpoint")

    # 3. kill -9 under load a moment after a compaction began.
    push_until(compacting, "third compaction")
    for _ in range(10):
        seq += 1
        f.push.send_multipart(P.batch(seq))
    kill_restart("under load during a compaction")

    # No orphans: after a checkpoint with no compaction running, only the
    # named generation is left; after a clean stop too.
    deadline = time.time() + 60
    while True:
        st = status(f)
        left = files(data)
        if (not st.get("compacting") and "compact.tmp" not in left and
                len([x for x in left if x.startswith("chunks.")]) == 1):
            break
        if time.time() > deadline:
            raise Failure("orphan files stay: %s" % left)
        seq += 1  # a few more batches make checkpoints (and cleanups)
        f.push.send_multipart(P.batch(seq))
        f.wait_confirmed(seq, timeout=60)
        time.sleep(0.2)
    logs = "".join(open(x, errors="replace").read() for x in
                   glob.glob(os.path.join(p.dir, "aggd.log*")))
    check(logs.count("on the loop") >= 1 and "compaction dropped" not in logs,
          "%d compactions switched over, none dropped"
          % logs.count("on the loop"))
    p.stop_one("aggd")
    left = files(data)
    check("compact.tmp" not in left and
          len([x for x in left if x.startswith("chunks.")]) == 1,
          "after a clean stop: %s" % left)
    f.drain(200)
    restart(p)
    P.verify(f, seq, True, "after a clean restart")
    print("compactions under kill -9: %d batches, %d points, files %s" % (
        seq, seq * PER_BATCH, left))


if __name__ == "__main__":
    main(test)
