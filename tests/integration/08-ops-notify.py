#!/usr/bin/env python3
"""What systemd sees of each daemon (Type=notify, WatchdogSec=).

Each daemon starts with a fake $NOTIFY_SOCKET and $WATCHDOG_USEC, as
systemd would set them: it must send READY=1 once its sockets are up, then
WATCHDOG=1 well inside the interval (the units say WatchdogSec=10s; here
the interval is 0.6 s so the test is quick), and STOPPING=1 on SIGTERM
before it exits 0 with "shutdown complete".
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import (SANITIZER_MARKS, binary, check, free_port, have,  # noqa: E402
                main)

WATCHDOG_USEC = 600000


def args(d, run):
    a = [binary(d), "--rundir", run]
    if d in ("aggd", "anomalyd"):
        a += ["--down", "none"]
    if d in ("ingestd", "apid"):
        a += ["--port", str(free_port())]
    return a


def one(d, tmp):
    path = os.path.join(tmp, d + ".notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    log = os.path.join(tmp, d + ".log")
    with open(log, "wb") as f:
        p = subprocess.Popen(args(d, os.path.join(tmp, "run-" + d)), env=env,
                             stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    got = []
    stamps = []
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            try:
                msg = s.recv(4096).decode()
            except socket.timeout:
                if p.poll() is not None:
                    break
                continue
            got.append(msg)
            if msg == "WATCHDOG=1":
                stamps.append(time.monotonic())
            if len(stamps) >= 4:
                break
        check("READY=1" in got, "%s sends READY=1" % d)
        check(got.index("READY=1") < got.index("WATCHDOG=1") if "WATCHDOG=1" in got else False,
              "%s pings WATCHDOG=1 after READY=1" % d)
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        check(len(stamps) >= 4 and max(gaps) < WATCHDOG_USEC / 1e6,
              "%s pings inside the interval (gaps %s s)"
              % (d, ", ".join("%.2f" % g for g in gaps)))
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20)
        rest = []
        try:
            while True:
                rest.append(s.recv(4096).decode())
        except socket.timeout:
            pass
        check("STOPPING=1" in rest, "%s sends STOPPING=1 on SIGTERM" % d)
        with open(log, errors="replace") as f:
            text = f.read()
        check(rc == 0 and "shutdown complete" in text,
              "%s exits 0 with shutdown complete (rc %s)" % (d, rc))
        for mark in SANITIZER_MARKS:
            check(mark not in text, "%s log has no %s report" % (d, mark))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        s.close()


def test():
    daemons = [d for d in ("aggd", "anomalyd", "alertd", "ingestd", "apid") if have(d)]
    if not daemons:
        print("skip: no daemon built")
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix="sp-notify.") as tmp:
        for d in daemons:
            one(d, tmp)


if __name__ == "__main__":
    main(test)
