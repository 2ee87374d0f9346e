#!/usr/bin/env python3
"""sensorpipe-sim against a private mosquitto: 50 devices over 2 worker
processes for 3 s while mosquitto_sub counts what the broker delivered.

Checks that the broker delivered exactly what the simulator counts as
acknowledged, per device; that every payload is the seed format with
plausible values and strictly increasing timestamps; that the labelled
faults are really in the data (spikes stand out, stuck values repeat);
that the batch form is an array; and that a non-loopback broker is
refused.
"""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import (SANITIZER_MARKS, Failure, binary, check, free_port,  # noqa: E402
                have, main)

SEED_KEYS = {"timestamp", "metrics"}


class Broker:
    """A private, plain, anonymous mosquitto on a free loopback port."""

    def __init__(self, d):
        self.port = free_port()
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n"
                    "persistence false\n" % self.port)
        self.log = open(os.path.join(d, "mosquitto.log"), "wb")
        self.proc = subprocess.Popen(["mosquitto", "-c", conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise Failure("mosquitto did not listen on %d" % self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


class Sub:
    """mosquitto_sub -q 1 on the telemetry topics, ready once subscribed."""

    def __init__(self, d, port):
        self.path = os.path.join(d, "sub.out")
        self.out = open(self.path, "wb")
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
             "-t", "devices/+/telemetry", "-v", "-d", "-i", "it-sub"],
            stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            if b"SUBACK" in self.read_raw():
                return
            time.sleep(0.05)
        raise Failure("mosquitto_sub did not subscribe: %r" % self.read_raw())

    def read_raw(self):
        with open(self.path, "rb") as f:
            return f.read()

    def messages(self):
        """(topic, payload) of every message; -d lines start with Client."""
        out = []
        for line in self.read_raw().decode().splitlines():
            if line.startswith("devices/"):
                topic, _, payload = line.partition(" ")
                out.append((topic, payload))
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def wait_count(sub, n, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(sub.messages()) >= n:
            break
        time.sleep(0.05)
    return sub.messages()


def run_sim(args, timeout=30):
    r = subprocess.run([binary("sensorpipe-sim")] + args,
                       capture_output=True, timeout=timeout)
    err = r.stderr.decode(errors="replace")
    for mark in SANITIZER_MARKS:
        if mark in err:
            raise Failure("sanitizer report from sensorpipe-sim:\n" + err)
    return r.returncode, err


def check_readings(msgs, run):
    """Parse every payload; return {device: [(ts, temp, hum), ...]}."""
    now_ms = time.time() * 1000
    by_dev = {}
    for topic, payload in msgs:
        parts = topic.split("/")
        check_ok = (len(parts) == 3 and parts[2] == "telemetry"
                    and parts[1].startswith("sim-%s-" % run))
        if not check_ok:
            raise Failure("topic %r is devices/{id}/telemetry" % topic)
        doc = json.loads(payload)
        items = doc if isinstance(doc, list) else [doc]
        for o in items:
            if set(o) != SEED_KEYS or set(o["metrics"]) != {"temperature",
                                                            "humidity"}:
                raise Failure("payload is not the seed format: %s" % payload)
            ts, t, h = o["timestamp"], o["metrics"]["temperature"], \
                o["metrics"]["humidity"]
            if not (isinstance(ts, int) and abs(ts - now_ms) < 120000):
                raise Failure("timestamp is epoch ms of now: %s" % payload)
            if not (isinstance(t, (int, float)) and isinstance(h, (int, float))
                    and -20 < t < 60 and 0 <= h <= 100):
                raise Failure("plausible values: %s" % payload)
            by_dev.setdefault(parts[1], []).append((ts, t, h))
    return by_dev


def test():
    for tool in ("mosquitto", "mosquitto_sub"):
        if shutil.which(tool) is None:
            print("%s is not installed" % tool)
            sys.exit(77)
    if not have("sensorpipe-sim"):
        print("sensorpipe-sim is not built")
        sys.exit(77)

    r = subprocess.run([binary("sensorpipe-sim"), "--help"],
                       capture_output=True, timeout=10)
    check(r.returncode == 0 and b"--allow-remote" in r.stdout,
          "--help exits 0 and lists the options")
    rc, err = run_sim(["-H", "192.0.2.1", "-n", "1", "-d", "1s"])
    check(rc == 64 and "loopback" in err,
          "a non-loopback broker is refused without --allow-remote (%d)" % rc)
    rc, err = run_sim(["-n", "0"])
    check(rc == 64, "bad option values exit 64")

    d = tempfile.mkdtemp(prefix="sp-sim.")
    broker = sub = None
    try:
        broker = Broker(d)
        sub = Sub(d, broker.port)

        report = os.path.join(d, "report.json")
        labels = os.path.join(d, "labels.jsonl")
        t0 = time.time()
        rc, err = run_sim(["-p", str(broker.port), "-n", "50", "-d", "3s",
                           "-P", "2", "--run", "it07", "--seed", "7",
                           "--faults", "0.1", "--fault-len", "2",
                           "--labels", labels, "--report", report])
        took = time.time() - t0
        sys.stdout.write(err)
        check(rc == 0, "simulator exits 0 (got %d)" % rc)
        check(took < 10, "50 devices for 3 s finish in %.1f s" % took)
        check(err.count("connected") >= 3,
              "a progress line every second on stderr")
        with open(report) as f:
            rep = json.load(f)
        per = {x["device"]: x for x in rep["per_device"]}
        check(len(per) == 50 and rep["devices"] == 50,
              "report lists 50 devices")
        check(sum(x["acked"] for x in per.values()) == rep["acked"] and
              sum(x["sent"] for x in per.values()) == rep["sent"],
              "per-device counts add up to the totals")
        check(rep["sent"] == rep["acked"] and rep["errors"] == 0,
              "every message acknowledged, no errors (%d/%d)"
              % (rep["acked"], rep["sent"]))
        check(all(2 <= x["acked"] <= 3 for x in per.values()),
              "each device sent 2-3 messages at 1/s in 3 s")

        msgs = wait_count(sub, rep["acked"])
        check(len(msgs) == rep["acked"],
              "mosquitto_sub received exactly the acked total (%d vs %d)"
              % (len(msgs), rep["acked"]))
        by_dev = check_readings(msgs, "it07")
        check(all(len(by_dev.get(dev, [])) == x["acked"]
                  for dev, x in per.items()),
              "per device, the subscriber saw exactly what was acked")
        check(all(all(a[0] < b[0] for a, b in zip(v, v[1:]))
                  for v in by_dev.values()),
              "timestamps strictly increase per device")

        with open(labels) as f:
            labs = [json.loads(line) for line in f]
        check(len(labs) == rep["faults"] and len(labs) > 0,
              "label file holds every injected fault (%d)" % len(labs))
        per_dev_labels = {}
        for lab in labs:
            per_dev_labels.setdefault(lab["device"], []).append(lab)
        spikes = stuck = 0
        for lab in labs:
            if lab["device"] not in by_dev or lab["start"] > lab["end"] or \
                    lab["kind"] not in ("spike", "step", "stuck"):
                raise Failure("label is well formed: %s" % lab)
            col = 1 if lab["metric"] == "temperature" else 2
            rows = by_dev[lab["device"]]
            inside = [r[col] for r in rows
                      if lab["start"] <= r[0] <= lab["end"]]
            outside = [r[col] for r in rows
                       if not lab["start"] <= r[0] <= lab["end"]]
            if not inside:
                raise Failure("label covers sent readings: %s" % lab)
            if lab["kind"] == "spike" and outside and \
                    len(per_dev_labels[lab["device"]]) == 1:
                floor = 5 if col == 1 else 12
                if abs(inside[0] - statistics.median(outside)) < floor:
                    raise Failure("spike stands out: %s %s %s"
                                  % (lab, inside, outside))
                spikes += 1
            if lab["kind"] == "stuck" and len(inside) > 1:
                if len(set(inside)) != 1:
                    raise Failure("stuck value repeats: %s %s" % (lab, inside))
                stuck += 1
        print("checked %d spikes and %d stuck runs against the data"
              % (spikes, stuck))

        # The batch form: one message carries an array of readings.
        before = len(sub.messages())
        rc, err = run_sim(["-p", str(broker.port), "-n", "5", "-d", "2s",
                           "-b", "4", "--run", "it07b", "-r", "2",
                           "--report", report])
        with open(report) as f:
            rep = json.load(f)
        check(rc == 0 and rep["readings_per_message"] == 4 and
              rep["readings"] == 4 * rep["acked"],
              "batch run: readings = 4 x acked messages")
        msgs = wait_count(sub, before + rep["acked"])[before:]
        arrays = [json.loads(p) for _, p in msgs]
        check(len(msgs) == rep["acked"] and
              all(isinstance(a, list) and len(a) == 4 for a in arrays),
              "batch payloads are arrays of 4 seed objects")
        by_dev = check_readings(msgs, "it07b")
        check(all(all(a[0] < b[0] for a, b in zip(v, v[1:]))
                  for v in by_dev.values()),
              "batch timestamps strictly increase per device")

        # Signals: with a 2 s "day" a 2 s run at 20 msg/s covers a whole
        # cycle, so temperature swings by degrees and humidity moves
        # against it. -W holds publishing until all 4 are connected.
        before = len(sub.messages())
        rc, err = run_sim(["-p", str(broker.port), "-n", "4", "-d", "2s",
                           "-r", "20", "--period", "2s", "-W", "10s",
                           "--run", "it07c", "--report", report])
        with open(report) as f:
            rep = json.load(f)
        check(rc == 0 and "4 of 4 devices connected" in err,
              "-W: publishing starts once the fleet is connected")
        msgs = wait_count(sub, before + rep["acked"])[before:]
        by_dev = check_readings(msgs, "it07c")
        for dev, rows in sorted(by_dev.items()):
            temp = [r[1] for r in rows]
            hum = [r[2] for r in rows]
            corr = statistics.correlation(temp, hum)
            print("%s: %d readings, temperature %.2f..%.2f, corr(t, h) %.2f"
                  % (dev, len(rows), min(temp), max(temp), corr))
            if not (len(rows) >= 30 and max(temp) - min(temp) > 2.0 and
                    corr < -0.5):
                raise Failure("%s: a daily cycle with humidity against "
                              "temperature" % dev)
        check(len(by_dev) == 4, "4 devices show the cycle, humidity "
              "anti-correlated with temperature")
    finally:
        if sub:
            sub.stop()
        if broker:
            broker.stop()
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(test)
