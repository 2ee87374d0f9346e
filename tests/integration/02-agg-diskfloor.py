#!/usr/bin/python3
"""aggd's disk floor: below --disk-floor-mb of free space aggd takes no
readings (nothing applied, nothing confirmed, "disk_low" in its status)
and resumes by itself when space returns; nothing is lost or doubled.

Part 1 works anywhere: the floor is set above the free space of the test
directory's file system in a config file, then lowered with SIGHUP.
Part 2 fills a small tmpfs for real (skipped with a note when this
process may not mount one).
Part 3, on a tmpfs too, has no floor: the disk fills up to the last byte,
a WAL write fails, aggd stops confirming ("wal_broken"); once space
returns it mends itself with a checkpoint, without a restart, confirms
the batch the WAL missed and takes more; a kill -9 and a restart then
hold every batch once.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, check, main  # noqa: E402

try:
    from fakeingest import restart, run  # noqa: E402
except ImportError:
    print("python3-zmq and python3-msgpack are needed (tools/install-deps.sh)")
    sys.exit(77)

T0 = 1704067200 * 10**9


def items(seq, n=500):
    return [["floor.s", T0 + ((seq - 1) * n + i) * 10**9, seq + i / 1000.0]
            for i in range(n)]


def status(f):
    return f.query({"op": "status"})[1]


def wait_for(what, cond, timeout=10):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise Failure("timed out waiting for " + what)
        time.sleep(0.1)


def count(f):
    st, body = f.query({"op": "stats", "series": "floor.s"})
    return body["count"] if st == 200 else 0


def held_then_resumed(f, seq, release, what):
    """Send batch seq while aggd is held: not applied, not confirmed;
    release() makes room; then it is applied once and confirmed."""
    wait_for(what + ": aggd reports disk_low", lambda: status(f)["disk_low"])
    before = count(f)
    f.send(seq, items(seq))
    time.sleep(2)
    f.drain(0)
    check(f.confirmed < seq and count(f) == before,
          "%s: batch %d neither applied nor confirmed while held "
          "(confirmed %d, points %d)" % (what, seq, f.confirmed, count(f)))
    release()
    f.wait_confirmed(seq, timeout=15)
    check(not status(f)["disk_low"] and count(f) == before + 500,
          "%s: resumed, %d points" % (what, count(f)))


def part1(p, f, conf):
    held_then_resumed(f, 1, lambda: (
        open(conf, "w").write("disk-floor-mb = 1\n"),
        p.procs["aggd"].send_signal(signal.SIGHUP)), "floor above free space")
    check("below the floor" in p.log("aggd") and "free again" in p.log("aggd"),
          "aggd logs the hold and the resume")


def part2(p, f):
    mnt = tempfile.mkdtemp(prefix="sp-floor.")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs",
                        mnt], capture_output=True, text=True)
    if r.returncode != 0:
        print("note: cannot mount a tmpfs (%s); the real full-disk part is "
              "skipped" % r.stderr.strip())
        os.rmdir(mnt)
        return
    try:
        p.stop_one("aggd")
        p.extra = {"aggd": ["--data", os.path.join(mnt, "data"),
                            "--disk-floor-mb", "16"]}
        restart(p)
        fill = os.path.join(mnt, "fill")
        with open(fill, "wb") as fh:
            fh.write(b"\0" * (40 << 20))
        held_then_resumed(f, 2, lambda: os.unlink(fill), "tmpfs nearly full")
        # Nothing half-written: a restart on the same disk holds exactly
        # the batch that was applied.
        p.stop_one("aggd")
        restart(p)
        check(count(f) == 500,
              "after a restart on the tmpfs: %d points" % count(f))
        p.stop_one("aggd")
    finally:
        subprocess.run(["umount", mnt], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def fill_up(path):
    """Write path until the file system is full."""
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    # Small writes fill the last partial block too.
    try:
        with open(path, "ab") as fh:
            while True:
                fh.write(b"\0" * 512)
                fh.flush()
    except OSError:
        pass


def part3(p, f):
    mnt = tempfile.mkdtemp(prefix="sp-walfail.")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs",
                        mnt], capture_output=True, text=True)
    if r.returncode != 0:
        print("note: cannot mount a tmpfs (%s); the WAL-failure part is "
              "skipped" % r.stderr.strip())
        os.rmdir(mnt)
        return
    try:
        if "aggd" in p.procs:
            p.stop_one("aggd")
        p.extra = {"aggd": ["--data", os.path.join(mnt, "data"),
                            "--disk-floor-mb", "0"]}
        restart(p)
        f.send(11, items(11))
        f.wait_confirmed(11)
        fill = os.path.join(mnt, "fill")
        fill_up(fill)
        f.send(12, items(12))
        wait_for("aggd reports wal_broken", lambda: status(f)["wal_broken"])
        time.sleep(2)
        f.drain(0)
        check(f.confirmed == 11 and "WAL write failed" in p.log("aggd"),
              "disk full: the WAL write failed, batch 12 not confirmed "
              "(confirmed %d)" % f.confirmed)
        time.sleep(3)  # retries while full fail and change nothing
        f.drain(0)
        check(f.confirmed == 11 and status(f)["wal_broken"] and
              status(f)["wal_recoveries"] == 0,
              "still full: still broken, nothing confirmed")
        os.unlink(fill)
        f.wait_confirmed(12, timeout=20)
        st = status(f)
        check(not st["wal_broken"] and st["wal_recoveries"] == 1 and count(f) == 1000
              and "confirmations resume" in p.log("aggd"),
              "space back: aggd mended its WAL with a checkpoint, no restart "
              "(recoveries %d), batch 12 confirmed, %d points"
              % (st["wal_recoveries"], count(f)))
        f.send(13, items(13))
        f.wait_confirmed(13)
        pid = p.procs["aggd"].pid
        p.procs["aggd"].kill()
        p.procs["aggd"].wait()
        del p.procs["aggd"]
        restart(p)
        check(count(f) == 1500 and p.procs["aggd"].pid != pid,
              "after kill -9 and a restart: %d points, every confirmed batch "
              "once" % count(f))
        p.stop_one("aggd")
    finally:
        subprocess.run(["umount", mnt], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def test():
    p = Platform(daemons=("aggd",))
    os.makedirs(p.dir, exist_ok=True)
    conf = os.path.join(p.dir, "aggd.conf")
    sv = os.statvfs(p.dir)
    free_mb = sv.f_bavail * sv.f_frsize >> 20
    with open(conf, "w") as fh:
        fh.write("disk-floor-mb = %d\n" % (2 * free_mb + 1024))
    p.extra = {"aggd": ["-f", conf]}

    def body(f):
        part1(p, f, conf)
        part2(p, f)
        part3(p, f)
    run(p, body)


if __name__ == "__main__":
    main(test)
