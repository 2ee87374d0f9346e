#!/usr/bin/env python3
"""The runit service folders of deploy/runit under a real runsvdir.

Copies deploy/runit/<d> into a temporary service directory, points each
service at the build under test through its env/ folder (chpst -e), starts
runsvdir on it and checks: every daemon logs "ready" through svlogd, the
seed ingest and stats work through them, sv hup reloads, sv down stops
each with exit status 0 and "shutdown complete" in its svlogd log, and a
configuration error (exit 78) takes its service down instead of looping.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import (BUILD, ROOT, SANITIZER_MARKS, Failure, Platform, check,  # noqa: E402
                free_port, have, main)

DAEMONS = ("aggd", "anomalyd", "alertd", "ingestd", "apid")


def sv(*args, timeout=40):
    r = subprocess.run(["sv"] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def log_of(svdir, name):
    path = os.path.join(svdir, name, "log", "main", "current")
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(what, fn, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.1)
    raise Failure("timed out waiting for " + what)


def write_env(folder, values):
    env = os.path.join(folder, "env")
    os.makedirs(env, exist_ok=True)
    for k, v in values.items():
        with open(os.path.join(env, k), "w") as f:
            f.write(v + "\n")


def test():
    for tool in ("runsvdir", "sv", "svlogd", "chpst"):
        if shutil.which(tool) is None:
            print("skip: %s not installed (runit)" % tool)
            sys.exit(77)
    if not all(have(d) for d in DAEMONS):
        print("skip: not every daemon is built in %s" % BUILD)
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="sp-runit.")
    svdir = os.path.join(tmp, "service")
    run = os.path.join(tmp, "run")
    os.makedirs(svdir)
    api_port, ingest_port = free_port(), free_port()
    common = {"SP_BIN": BUILD, "SP_RUNDIR": run, "SP_USER": "-",
              "SP_CONFDIR": os.path.join(tmp, "etc")}
    for d in DAEMONS:
        dst = os.path.join(svdir, d)
        shutil.copytree(os.path.join(ROOT, "deploy", "runit", d), dst)
        env = dict(common)
        if d == "apid":
            env["APID_PORT"] = str(api_port)
        if d == "ingestd":
            env["INGESTD_PORT"] = str(ingest_port)
        write_env(dst, env)
    rsd = subprocess.Popen(["runsvdir", "-P", svdir, "log: " + "." * 100],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    ok = False
    try:
        for d in DAEMONS:
            wait_for(d + " ready in its svlogd log",
                     lambda d=d: "ready:" in log_of(svdir, d))
            print("ok: %s ready under runsv" % d)
        # sv status names the daemon's own pid: run exec'd all the way down,
        # so sv down's TERM reaches the daemon, not a shell.
        for d in DAEMONS:
            rc, out = sv("status", os.path.join(svdir, d))
            check(rc == 0 and out.startswith("run: "), "%s: %s" % (d, out.strip()))
            pid = int(out.split("(pid ")[1].split(")")[0])
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
            check(comm == d, "runsv supervises %s itself (pid %d is %s)" % (d, pid, comm))

        p = Platform()  # only for its HTTP helper; nothing started
        p.api_port = api_port
        seed = {"sensor_id": "temp_sensor_001", "datapoints": [
            {"timestamp": "2024-01-01T00:00:00Z", "value": 23.5},
            {"timestamp": "2024-01-01T00:01:00Z", "value": 23.7}]}
        st, _, body = p.http("POST", "/api/v1/ingest", seed)
        check(st == 200 and body["accepted"] == 2, "seed ingest through runit: %s" % body)
        stats = {}

        def counted():
            st, _, b = p.http("GET", "/api/v1/stats/temp_sensor_001")
            stats.update(b if st == 200 else {})
            return st == 200 and b["count"] == 2
        wait_for("stats of the seed", counted, 15)
        check(stats["mean"] == 23.6 and stats["min"] == 23.5, "seed stats through runit")
        shutil.rmtree(p.dir, ignore_errors=True)

        # sv hup is the runit way to reload.
        for d in DAEMONS:
            sv("hup", os.path.join(svdir, d))
            wait_for(d + " SIGHUP in its log",
                     lambda d=d: "SIGHUP" in log_of(svdir, d), 10)
        check(True, "every daemon saw sv hup and kept running")

        # Clean stop, front door first.
        for d in reversed(DAEMONS):
            rc, out = sv("-w", "30", "down", os.path.join(svdir, d))
            check(rc == 0 and out.startswith("ok: down"), "sv down %s: %s" % (d, out.strip()))
        for d in DAEMONS:
            wait_for(d + " finish line", lambda d=d: "exit status" in log_of(svdir, d), 10)
            text = log_of(svdir, d)
            check("shutdown complete" in text, "%s logs shutdown complete" % d)
            check("%s: exit status 0," % d in text, "%s exits 0 under sv down" % d)
            for mark in SANITIZER_MARKS:
                check(mark not in text, "%s log has no %s report" % (d, mark))

        # A configuration error is not restarted over and over.
        bad = os.path.join(svdir, "aggd-bad")
        shutil.copytree(os.path.join(ROOT, "deploy", "runit", "aggd"), bad)
        write_env(bad, dict(common, AGGD_HWM="0"))
        wait_for("aggd-bad to fail with 78",
                 lambda: "exit status 78" in log_of(svdir, "aggd-bad"), 30)
        time.sleep(2.5)
        text = log_of(svdir, "aggd-bad")
        check(text.count("exit status 78") == 1,
              "exit 78 ran once, no restart loop (%d runs)" % text.count("exit status 78"))
        rc, out = sv("status", bad)
        check(out.startswith("down: "), "78 took the service down: %s" % out.strip())
        ok = True
    finally:
        for d in os.listdir(svdir):
            sv("-w", "10", "force-shutdown", os.path.join(svdir, d), timeout=30)
        os.killpg(rsd.pid, signal.SIGHUP)
        try:
            rsd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(rsd.pid, signal.SIGKILL)
            rsd.wait()
        if not ok:
            for d in sorted(os.listdir(svdir)):
                sys.stdout.write("--- %s ---\n%s\n" % (d, log_of(svdir, d)))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
