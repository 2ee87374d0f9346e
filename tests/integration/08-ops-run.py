#!/usr/bin/env python3
"""`make run`'s script, tools/sensorpipe-run, as a user drives it.

Three runs on free ports with data in one temporary ./var:
1. It prints where everything is; the two curl commands it suggests work
   verbatim (the seed ingest, then stats of both points); a device's MQTT
   reading through the broker it started reaches the API. Ctrl-C (SIGINT
   to its process group, as a terminal sends it) stops every daemon
   cleanly: "all stopped (status 0)", no process left.
2. Started again on the same ./var the readings are still there. SIGTERM
   sent twice to its group (what `timeout make run` does: make passes the
   signal on) still stops everything; before the fix the second signal
   killed the script mid-stop and left four daemons running.
3. With the API port taken, apid cannot start: the script says so, stops
   the rest and exits non-zero instead of claiming to be running.
No sanitizer report in any output (the daemons are the ASan build).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import (BUILD, ROOT, SANITIZER_MARKS, check, free_port,  # noqa: E402
                main, need, wait_for)

NAMES = ("aggd", "anomalyd", "alertd", "ingestd", "apid", "mosquitto")


def ours(var):
    """Pids of the processes started with this ./var in their arguments."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(var.encode() in a for a in argv) and \
                os.path.basename(argv[0]).decode(errors="replace") in NAMES:
            found.append(int(d))
    return found


class Run:
    def __init__(self, var, ports, log):
        self.var, self.log = var, log
        env = dict(os.environ, B=os.path.relpath(BUILD, ROOT), VAR=var,
                   API_PORT=str(ports[0]), INGEST_PORT=str(ports[1]),
                   MQTT_PORT=str(ports[2]))
        self.out = open(log, "wb")
        # Its own process group, as a shell gives a foreground job.
        self.p = subprocess.Popen(["sh", "tools/sensorpipe-run"], cwd=ROOT,
                                  env=env, stdout=self.out,
                                  stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL,
                                  start_new_session=True)

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        os.killpg(self.p.pid, sig)

    def wait(self, timeout=60):
        try:
            return self.p.wait(timeout=timeout)
        finally:
            self.out.close()

    def kill(self):
        """Whatever is left, for a failed test's sake."""
        pids = ours(self.var) + ([self.p.pid] if self.p.poll() is None else [])
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def http_json(url, body=None):
    req = urllib.request.Request(url, data=body and body.encode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def clean_output(run, what):
    t = run.text()
    for m in SANITIZER_MARKS:
        check(m not in t, "%s: no %s report" % (what, m))
    return t


def stopped_cleanly(run, what, how):
    """run exits 0 after how, says so, and leaves no process behind."""
    rc = run.wait(60)
    text = clean_output(run, what)
    check(rc == 0, "%s exits 0 after %s, got %d: %s" % (what, how, rc, text[-1500:]))
    check("all stopped (status 0)" in text, "%s says all stopped" % what)
    wait_for(lambda: not ours(run.var), "no process of %s left after %s" % (what, how), 10)


def test():
    need("mosquitto", "mosquitto_pub", "curl", "aggd", "anomalyd", "alertd",
         "ingestd", "apid")
    top = tempfile.mkdtemp(prefix="sp-run-")
    os.chmod(top, 0o755)  # mosquitto, started as root, drops to its user
    var = os.path.join(top, "var")
    runs = []
    try:
        # 1. Start, follow the printed hints, Ctrl-C.
        ports = (free_port(), free_port(), free_port())
        r = Run(var, ports, os.path.join(top, "run1.log"))
        runs.append(r)
        wait_for(lambda: "sensorpipe is running" in r.text()
                 or r.p.poll() is not None, "run 1 says it is running", 60)
        text = r.text()
        check("sensorpipe is running" in text, "run 1 started: " + text[-2000:])
        check("http://127.0.0.1:%d/" % ports[0] in text, "the API address printed")
        check("127.0.0.1:%d" % ports[2] in text, "the MQTT port printed")
        hints = [ln.strip() for ln in text.splitlines()
                 if ln.strip().startswith("curl ")]
        check(len(hints) == 2, "two curl hints printed: %r" % hints)
        # The daemons answer once ready; retry the first hint until then.
        ing = wait_for(lambda: subprocess.run(
            ["sh", "-c", hints[0]], capture_output=True, text=True,
            timeout=20).stdout, "the printed ingest command answers", 30)
        check(json.loads(ing).get("accepted") == 2, "ingest hint: " + ing)

        def stats():
            out = subprocess.run(["sh", "-c", hints[1]], capture_output=True,
                                 text=True, timeout=20).stdout
            try:
                s = json.loads(out)
            except ValueError:
                return None
            return s if s.get("count") == 2 else None
        s = wait_for(stats, "the printed stats command shows both points", 30)
        check(abs(s["mean"] - 23.6) < 1e-9, "stats mean 23.6: %r" % s)

        api = "http://127.0.0.1:%d" % ports[0]

        def telemetry():
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p",
                            str(ports[2]), "-q", "1", "-t",
                            "devices/run-dev-1/telemetry", "-m",
                            '{"timestamp":1700000000000,"metrics":{"temperature":21.5}}'],
                           capture_output=True, timeout=10)
            try:
                t = http_json(api + "/api/telemetry/run-dev-1?metric=temperature")
            except OSError:  # 404 until the first reading is stored
                return False
            return t.get("count", 0) >= 1
        wait_for(telemetry, "an MQTT reading through the broker reaches the API", 30, 0.5)

        daemons = ours(var)
        check(len(daemons) == 6, "six processes running: %r" % daemons)
        r.signal(signal.SIGINT)
        stopped_cleanly(r, "run 1", "Ctrl-C")

        # 2. Restart on the same data; SIGTERM twice.
        ports = (free_port(), free_port(), free_port())
        r = Run(var, ports, os.path.join(top, "run2.log"))
        runs.append(r)
        wait_for(lambda: "sensorpipe is running" in r.text()
                 or r.p.poll() is not None, "run 2 says it is running", 60)
        api = "http://127.0.0.1:%d" % ports[0]

        def kept():
            try:
                return http_json(api + "/api/v1/stats/temp_sensor_001").get("count") == 2
            except OSError:
                return False
        wait_for(kept, "run 2 still has the two readings", 30, 0.2)
        r.signal(signal.SIGTERM)
        time.sleep(0.05)
        r.signal(signal.SIGTERM)
        stopped_cleanly(r, "run 2", "two SIGTERMs")

        # 3. The API port is taken: no "running", a non-zero exit, nothing left.
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        ports = (taken.getsockname()[1], free_port(), free_port())
        r = Run(var, ports, os.path.join(top, "run3.log"))
        runs.append(r)
        try:
            rc = r.wait(60)
        finally:
            taken.close()
        text = clean_output(r, "run 3")
        check(rc != 0, "run 3 exits non-zero with the API port taken: " + text[-1500:])
        check("sensorpipe is running" not in text, "run 3 does not claim to run")
        check("apid exited on its own" in text, "run 3 names apid: " + text[-1500:])
        wait_for(lambda: not ours(var), "no process of run 3 left", 10)
    finally:
        for r in runs:  # what a failed run left behind, daemons included
            r.kill()
        shutil.rmtree(top, ignore_errors=True)


main(test)
