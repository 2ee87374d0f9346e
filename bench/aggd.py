#!/usr/bin/python3
"""aggd alone: how fast it applies msgpack batches with WAL group commit.

  python3 bench/aggd.py [--series 1000 --points 10000] [--runs 3]

Recording (once, cached in --work): the peers' data set (gen.py, as in
bench/storage.py) is loaded through a real ingestd into a real aggd that
does not checkpoint, and the batches are read back from aggd's WAL, so
they are exactly what ingestd sends (series table per batch, envelope,
seq). Each run then starts a fresh aggd (its default WAL group commit and
checkpoints, no downstream), pushes every recorded batch into its PULL
socket as fast as it takes them, and waits until its status counts every
point. Reported: points per CPU second of the aggd process (all its
threads: loop, fsync, ZeroMQ I/O), the figure that carries over from a
shared machine, and the wall rate, with the load average.

  --aggd A,B     binaries taking turns run by run (a peer under the same load)
  --subscribe    a live view subscribed to aggd's readings and draining them
  --restart      then kill -9 aggd and time its restart on the data (WAL
                 replay), then stop it cleanly and time that restart
  --perf FILE    perf record -g aggd while it applies (perf stat: FILE.stat)
  --aggd-args S  more aggd options ('--checkpoint-mb 16 --checkpoint-every
                 2s': compactions happen during the load; the run waits
                 for the last one's switch-over, then prints the longest
                 checkpoint, which is the loop's longest stall)
"""
import argparse
import glob
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import storage  # noqa: E402

ROOT = storage.ROOT


def record(work, data, npoints, out):
    """Load data through ingestd into aggd, read aggd's WAL back."""
    os.environ["BENCH_AGGD_ARGS"] = "--checkpoint-mb 65536 --checkpoint-every 1d"
    sp = storage.Sensorpipe()
    sp.start(work)
    try:
        storage.load(sp.url, data, 2, sp.procs["ingestd"].pid, "record")
        sp.caught_up(npoints)
        sp.procs["aggd"].send_signal(signal.SIGKILL)
        sp.procs["aggd"].wait()
        frames = []
        for path in sorted(glob.glob(os.path.join(sp.dir, "data.0", "wal", "*.wal"))):
            buf = open(path, "rb").read()
            off = 0
            while off + 12 <= len(buf) and buf[off:off + 4] == b"SPW1":
                n = struct.unpack_from("<I", buf, off + 4)[0]
                frames.append(buf[off + 12:off + 12 + n])
                off += 12 + n
    finally:
        sp.stop()
    with open(out + ".tmp", "wb") as f:
        for fr in frames:
            f.write(struct.pack("<I", len(fr)) + fr)
    os.rename(out + ".tmp", out)


def load_frames(path):
    buf = open(path, "rb").read()
    frames, off = [], 0
    while off < len(buf):
        n = struct.unpack_from("<I", buf, off)[0]
        frames.append(buf[off + 4:off + 4 + n])
        off += 4 + n
    return frames


def status(ctx, ep):
    import msgpack
    import zmq
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(ep)
    try:
        d.send_multipart([b"\0" * 8, msgpack.packb({"op": "status"})])
        if not d.poll(60000):
            raise SystemExit("aggd does not answer status")
        return msgpack.unpackb(d.recv_multipart()[1])["body"]
    finally:
        d.close(0)


def drain(sub, stop):
    """A live view: take every batch aggd publishes, until stop is set."""
    import zmq
    n = 0
    while not stop.is_set():
        if sub.poll(100):
            while True:
                try:
                    sub.recv_multipart(zmq.NOBLOCK)
                    n += 1
                except zmq.Again:
                    break
    return n


def start(cmd, logname, timeout=600):
    """Start aggd, wait for its ready line; returns (process, seconds)."""
    log = open(logname, "wb")
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    while b"ready:" not in open(logname, "rb").read():
        if time.time() - t0 > timeout or p.poll() is not None:
            p.kill()
            raise SystemExit("aggd did not start: " + open(logname).read())
        time.sleep(0.01)
    return p, time.time() - t0


def restart(ctx, cmd, d, qep, npoints, p, how):
    """Stop aggd (how: SIGKILL or SIGTERM), start it on the same data and
    time it until it is ready and answers for every point."""
    t0 = time.time()
    p.send_signal(how)
    p.wait(timeout=600)
    stop_s = time.time() - t0
    logname = os.path.join(d, "aggd-%d.log" % how)
    p, ready_s = start(cmd, logname)
    said = [ln.split("aggd: ", 1)[-1] for ln in open(logname, errors="replace")
            if "aggd: loaded" in ln]
    st = status(ctx, qep)
    if st["points"] != npoints:
        raise SystemExit("aggd restarted with %d points, not %d" % (
            st["points"], npoints))
    return p, {"stop_s": stop_s, "ready_s": ready_s,
               "cpu_s": storage.cpu_s(p.pid), "replayed": st.get("replayed_batches"),
               "rss_mib": storage.rss_kib(p.pid) / 1024.0,
               "said": said[-1].strip() if said else "?"}


def run(work, frames, npoints, cpu, perf=None, subscribe=False, aggd=None,
        restarts=False, extra=()):
    import zmq
    d = tempfile.mkdtemp(prefix="aggd-bench.", dir=work)
    run_dir = os.path.join(d, "run")
    cmd = [aggd or os.path.join(ROOT, "build", "aggd"), "--rundir", run_dir, "--down",
           "none", "--confirm", "none", "--data", os.path.join(d, "data.{lane}")]
    cmd += list(extra)
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    p, _ = start(cmd, os.path.join(d, "aggd.log"), 30)
    ctx = zmq.Context()
    try:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect("ipc://%s/aggd.0.in" % run_dir)
        qep = "ipc://%s/aggd.0.query" % run_dir
        stop, sub_thread = threading.Event(), None
        if subscribe:  # a live view, as apid keeps one in deployments
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.connect("ipc://%s/aggd.0.pub" % run_dir)
            sub.setsockopt(zmq.SUBSCRIBE, b"readings")
            sub_thread = threading.Thread(target=drain, args=(sub, stop))
            sub_thread.start()
            deadline = time.time() + 10
            while status(ctx, qep).get("live_subscriptions", 1) < 1:
                if time.time() > deadline:
                    raise SystemExit("aggd does not see the live view")
                time.sleep(0.02)
            time.sleep(0.5)  # an older aggd (PUB) does not say: let it join
        prof = None
        if perf:  # profile aggd while it applies (perf record -g)
            # FILE.stat: perf stat (instructions are not skewed by load)
            how = (["stat", "-e", "instructions,cycles,task-clock"]
                   if perf.endswith(".stat") else ["record", "-q", "-g"])
            prof = subprocess.Popen(["perf"] + how + ["-o", perf, "-p", str(p.pid)],
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        c0, t0 = storage.cpu_s(p.pid), time.time()
        for fr in frames:
            push.send_multipart([b"readings", fr])
        while True:
            st = status(ctx, qep)
            if st["points"] >= npoints:
                break
            if time.time() - t0 > 600:
                raise SystemExit("aggd did not reach %d points" % npoints)
            time.sleep(0.02)
        wall, cpu_s = time.time() - t0, storage.cpu_s(p.pid) - c0
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=120)
        # Everything applied is durable only once the WAL fsync covered it.
        while status(ctx, qep).get("wal_unsynced_bytes", 0) > 0:
            time.sleep(0.01)
        wall_durable = time.time() - t0
        st = status(ctx, qep)  # the counters once everything is durable
        if extra:  # a compaction still running: wait for its switch-over
            deadline = time.time() + 120  # (needs --checkpoint-every short)
            while st.get("compacting") and time.time() < deadline:
                time.sleep(0.1)
                st = status(ctx, qep)
        if sub_thread:
            stop.set()
            sub_thread.join()
            sub.close(0)
        push.close(0)
        rss = storage.rss_kib(p.pid) / 1024.0
        r = {"cpu_s": cpu_s, "wall_s": wall, "wall_durable_s": wall_durable,
             "group_commits": st.get("group_commits"), "rss_mib": rss,
             "checkpoints": st.get("checkpoints"),
             # the loop's longest stall: a checkpoint (with what compaction
             # does on the loop), and the last compaction's duration
             "checkpoint_max_ms": st.get("checkpoint_max_ms"),
             "checkpoint_cpu_max_ms": st.get("checkpoint_cpu_max_ms"),
             # the longest one handler held the loop (no batch applied)
             "loop_stall_max_ms": st.get("loop_stall_max_ms"),
             "loop_iteration_max_ms": st.get("loop_iteration_max_ms"),
             "compaction_loop_max_ms": st.get("compaction_loop_max_ms"),
             "compaction_ms": st.get("compaction_ms"),
             "chunk_compactions": st.get("chunk_compactions"),
             "live": st.get("live_subscriptions")}
        if restarts:  # after a crash (WAL replay), then after a clean stop
            p, r["kill9"] = restart(ctx, cmd, d, qep, npoints, p, signal.SIGKILL)
            p, r["term"] = restart(ctx, cmd, d, qep, npoints, p, signal.SIGTERM)
        return r
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
        ctx.destroy(linger=0)
        if os.environ.get("BENCH_AGGD_LOG"):  # keep aggd's log (with -v)
            shutil.copy(os.path.join(d, "aggd.log"), os.environ["BENCH_AGGD_LOG"])
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpu", type=int, help="pin aggd to this core (taskset)")
    ap.add_argument("--work", default="/tmp/sp-bench")
    ap.add_argument("--aggd", default=os.path.join(ROOT, "build", "aggd"),
                    help="aggd binary; several, comma-separated, take turns "
                    "run by run (a peer measured under the same load)")
    ap.add_argument("--restart", action="store_true",
                    help="then time aggd's restart on the data: after kill -9 "
                    "and after a clean stop")
    ap.add_argument("--aggd-args", default="",
                    help="more aggd options, e.g. '--checkpoint-mb 16' for "
                         "checkpoints (and compactions) during the load")
    ap.add_argument("--subscribe", action="store_true",
                    help="keep a live view subscribed to aggd's readings")
    ap.add_argument("--perf", metavar="FILE",
                    help="perf record -g aggd while it applies, into FILE "
                    "(perf stat when FILE ends in .stat)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(a.work, "data-%dx%d" % (a.series, a.points))
    if not os.path.exists(os.path.join(data, "manifest.json")):
        subprocess.run([storage.PY, os.path.join(storage.PEERS, "gen.py"),
                        "--series", str(a.series), "--points", str(a.points),
                        "--big", "0", "--out", data], check=True,
                       stdout=subprocess.DEVNULL)
    npoints = a.series * a.points
    rec = os.path.join(a.work, "batches-%dx%d.bin" % (a.series, a.points))
    if not os.path.exists(rec):
        record(a.work, os.path.join(data, "main"), npoints, rec)
    frames = load_frames(rec)
    print("%d recorded batches, %d points, %.1f MB; machine %s, %d cpus" % (
        len(frames), npoints, sum(map(len, frames)) / 1e6, os.uname().release,
        os.cpu_count()))
    binaries = a.aggd.split(",")
    for i in range(a.runs * len(binaries)):
        la0 = os.getloadavg()[0]
        binary = binaries[i % len(binaries)]
        r = run(a.work, frames, npoints, a.cpu, a.perf, a.subscribe, binary,
                a.restart, a.aggd_args.split())
        print("%srun %d: %.2f M points per aggd CPU second (%.2f CPU s per M points); "
              "wall %.2f M points/s (%.2f M/s durable); %s group commits, "
              "%s checkpoints, %s live views, RSS %.0f MiB; load average %.1f -> %.1f" % (
                  binary + " " if len(binaries) > 1 else "",
                  i // len(binaries) + 1, npoints / r["cpu_s"] / 1e6, r["cpu_s"] / npoints * 1e6,
                  npoints / r["wall_s"] / 1e6, npoints / r["wall_durable_s"] / 1e6,
                  r["group_commits"], r["checkpoints"], r["live"], r["rss_mib"], la0,
                  os.getloadavg()[0]))
        print("  longest loop stall %s ms (handler run with batches %s ms); "
              "longest checkpoint %s ms wall, "
              "most loop CPU in one %s ms; longest compaction step on the loop "
              "%s ms, last compaction %s ms, %s compactions" % (
                  r["loop_stall_max_ms"], r["loop_iteration_max_ms"],
                  r["checkpoint_max_ms"], r["checkpoint_cpu_max_ms"],
                  r["compaction_loop_max_ms"], r["compaction_ms"],
                  r["chunk_compactions"]))
        for k, what in (("kill9", "kill -9"), ("term", "clean stop (SIGTERM)")):
            if k in r:
                x = r[k]
                print("  restart after %s: stop %.2f s, ready with all %d points "
                      "after %.2f s wall, %.2f CPU s, %s batches replayed, RSS %.0f MiB; "
                      "load average %.1f\n    aggd: %s" % (
                          what, x["stop_s"], npoints, x["ready_s"], x["cpu_s"],
                          x["replayed"], x["rss_mib"], os.getloadavg()[0], x["said"]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
