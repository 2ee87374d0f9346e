#!/usr/bin/env python3
"""Chaos: every fault in turn under steady load, then every acknowledged
reading compared with what is stored.

The whole platform runs (ingestd, aggd, anomalyd, alertd, apid and a
mosquitto with the sensorpipe spool plugin); ingestd's spool, aggd's data
and the plugin's spool live on one small tmpfs of their own (the "disk").
Load, all the time:
  - HTTP writers, each on its own series, through apid (JSON), ingestd
    (JSON) and ingestd (line protocol); reading i of a writer has timestamp
    T0 + i s and value i, so every stored point names the reading it is;
  - sensorpipe-sim devices over MQTT QoS 1 (acknowledged = PUBACK).
Faults, one after the other with load in between: kill -9 and restart of
ingestd, aggd, anomalyd, alertd, apid and mosquitto; SIGSTOP of aggd,
anomalyd and ingestd past every timeout (apid's, ingestd's resend) and
SIGCONT; the disk filled to the last byte and freed again. The full tier
(SP_FULL=1: make test-full, make chaos) runs two lanes, more load and
every fault twice, plus a clean broker restart.

Then, after the pipeline settles: for HTTP, the exact set of points of each
series (export) against the set of acknowledged readings; for MQTT, each
device's stored count against its acked and sent counts. lost (acked but
not stored) and doubled (a reading stored twice, or counted twice by the
statistics) must both be 0; the report prints every count, per fault too.

Last, a network partition (where network namespaces can be made): aggd
alone on a second "host" (a namespace behind a veth pair, tcp
endpoints), HTTP load, the link dropping every packet both ways for
STOP_S (tc blackhole qdiscs), healed; apid must answer 503 meanwhile,
ingestd keep acknowledging, and every acknowledged reading be stored
once afterwards.
"""
import collections
import datetime
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, NetHost, Platform, binary, check, have, main  # noqa: E402

FULL = bool(os.environ.get("SP_FULL"))
LANES = 2 if FULL else 1
WRITERS = 6 if FULL else 3
BATCH = 50 if FULL else 20
DEVICES = 1000 if FULL else 100
ROUNDS = 2 if FULL else 1
GAP = 4.0 if FULL else 2.0     # seconds of plain load between faults
STOP_S = 6.0                  # SIGSTOP length: past apid's 2 s timeout and
                              # ingestd's 1 s resend
DISK_MB = 256 if FULL else 64
PACE = 0.02 if FULL else 0.05  # seconds between one writer's batches
ONLY = os.environ.get("CHAOS_FAULTS")  # run only faults whose name has this
T0_MS = 1704067200000         # 2024-01-01T00:00:00Z


class Load:
    """HTTP writers; acked[w] is the set of acknowledged reading numbers of
    writer w, phase_acked[phase] counts acknowledged readings per phase."""

    def __init__(self, p):
        self.p = p
        self.stop = threading.Event()
        self.phase = "start"
        self.lock = threading.Lock()
        self.acked = [set() for _ in range(WRITERS)]
        self.sent = [0] * WRITERS
        self.status = collections.Counter()
        self.phase_acked = collections.Counter()
        self.phase_refused = collections.Counter()
        self.restarted = []   # aggd lanes that had to mend their WAL
        self.threads = [threading.Thread(target=self.writer, args=(w,), daemon=True)
                        for w in range(WRITERS)]

    @staticmethod
    def series(w):
        return "chaos_w%d" % w

    def request(self, w, first):
        """One batch of writer w; returns the HTTP status or an error name."""
        p, name = self.p, self.series(w)
        idx = range(first, first + BATCH)
        kind = w % 3
        try:
            if kind == 2:
                body = "".join("%s value=%d %d\n" % (name, i, T0_MS + i * 1000)
                               for i in idx)
                st, _, b = p.http("POST", "/write?precision=ms", body,
                                  port=p.ingest_port, timeout=10)
                return st if st in (200, 204) or st >= 300 else "short"
            pts = [{"timestamp": T0_MS + i * 1000, "value": i} for i in idx]
            st, _, b = p.http("POST", "/api/v1/ingest",
                              {"sensor_id": name, "datapoints": pts},
                              port=p.api_port if kind == 0 else p.ingest_port,
                              timeout=10)
            if st == 200 and not (isinstance(b, dict) and b.get("accepted") == BATCH):
                return "short"
            return st
        except OSError as e:
            return type(e).__name__

    def writer(self, w):
        first = 0
        while not self.stop.is_set():
            phase = self.phase
            st = self.request(w, first)
            with self.lock:
                self.sent[w] = first + BATCH
                self.status[st] += 1
                if st in (200, 204):
                    self.acked[w].update(range(first, first + BATCH))
                    self.phase_acked[phase] += BATCH
                else:
                    self.phase_refused[phase] += BATCH
            first += BATCH
            time.sleep(PACE if st in (200, 204) else 0.2)

    def set_phase(self, name):
        self.phase = name


class Disk:
    """A tmpfs of its own for every file the daemons write."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="sp-chaos-disk.")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0755" % DISK_MB,
                            "tmpfs", self.path], capture_output=True, text=True)
        self.mounted = r.returncode == 0
        if not self.mounted:
            print("note: cannot mount a tmpfs (%s); the disk-full fault is skipped"
                  % r.stderr.strip())
        self.filler = os.path.join(self.path, "filler")

    def fill(self):
        """Write until ENOSPC; returns the bytes written."""
        n = 0
        chunk = b"\0" * (1 << 20)
        with open(self.filler, "wb", buffering=0) as f:
            while True:
                try:
                    n += f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[:len(chunk) // 16 or 1]
        return n

    def free(self):
        os.unlink(self.filler)

    def remove(self):
        if self.mounted:
            subprocess.run(["umount", self.path], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


class ChaosPlatform(Platform):
    """Spool and data on the chaos disk."""

    def __init__(self, disk, **kw):
        super().__init__(**kw)
        self.disk = disk

    def base_args(self, name):
        a = super().base_args(name)
        return [x.replace(self.dir, self.disk.path) if x.startswith(
            (os.path.join(self.dir, "spool"), os.path.join(self.dir, "data")))
            else x for x in a]


def broker_conf(p):
    spool = os.path.join(p.disk.path, "mqspool")
    os.makedirs(spool, exist_ok=True)
    os.chmod(spool, 0o777)  # mosquitto drops root for its own user
    os.chmod(p.dir, 0o755)
    return spool, ("plugin %s\nplugin_opt_spool_dir %s\n"
                   % (binary("sensorpipe_spool.so"), spool))


def kill9(p, name):
    if name == "mosquitto":
        p.broker.kill()
        p.broker.wait()
        time.sleep(0.5)
        p.start_broker(p.broker_conf_extra)
        return
    proc = p.procs.pop(name)
    proc.kill()
    proc.wait()
    time.sleep(0.5)
    p.start_one(name, timeout=60)


def pause(p, name):
    proc = p.procs[name]
    proc.send_signal(signal.SIGSTOP)
    time.sleep(STOP_S)
    proc.send_signal(signal.SIGCONT)


def broker_restart(p):
    p.broker.terminate()
    p.broker.wait(timeout=20)
    p.start_broker(p.broker_conf_extra)


def faults(p, disk, load):
    """(name, action) in the order they run."""
    out = []
    lanes = ["", ".1"] if LANES > 1 else [""]
    for d in ("ingestd", "aggd", "anomalyd", "alertd", "apid"):
        for ln in (lanes if d in Platform.LANED else [""]):
            out.append(("kill -9 %s%s" % (d, ln), lambda n=d + ln: kill9(p, n)))
    out.append(("kill -9 mosquitto", lambda: kill9(p, "mosquitto")))
    for d in ("aggd", "anomalyd", "ingestd"):
        out.append(("SIGSTOP %s %gs" % (d, STOP_S), lambda n=d: pause(p, n)))
    if disk.mounted:
        out.append(("disk full", lambda: disk_full(p, disk, load)))
    if FULL:
        out.append(("restart mosquitto", lambda: broker_restart(p)))
    if ONLY:
        out = [f for f in out if ONLY in f[0]]
    return out * ROUNDS


def disk_full(p, disk, load):
    before = sum(load.status[s] for s in load.status if s not in (200, 204))
    n = disk.fill()
    print("  disk filled: %d MiB of filler, hold %gs" % (n >> 20, STOP_S))
    time.sleep(STOP_S)
    during = sum(load.status[s] for s in load.status if s not in (200, 204)) - before
    disk.free()
    print("  disk freed; %d requests refused while full" % during)
    # aggd stops confirming once a WAL or chunk write failed (it cannot
    # tell what of its page cache reached the disk) and mends itself with
    # a checkpoint once space returns: no restart. Wait for that (bounded).
    for name in [d for d in list(p.procs) if d.startswith("aggd")]:
        log = p.log(name)
        if "until a checkpoint succeeds" not in log:
            continue
        print("  %s: %s" % (name, [ln for ln in log.splitlines()
                                   if "until a checkpoint succeeds" in ln][0]))
        deadline = time.time() + 60
        while "confirmations resume" not in p.log(name):
            if time.time() > deadline:
                raise Failure("%s did not mend its WAL within 60 s of the disk "
                              "being freed" % name)
            time.sleep(0.2)
        print("  %s mended its WAL by itself (checkpoint), no restart" % name)
        load.restarted.append(name)


def index_of(stamp):
    t = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    ms = round(t.timestamp() * 1000) - T0_MS
    return ms // 1000 if ms % 1000 == 0 else None


def get_settled(p, q):
    """GET q once the pipeline has settled: after the faults aggd may still
    be replaying or catching up, and apid answers 503 when aggd does not
    reply within its backend timeout (2 s). Retried, bounded to 30 tries
    a second apart; any other answer is returned as it is."""
    for attempt in range(30):
        st, h, b = p.http("GET", q, timeout=60)
        if st != 503:
            return st, h, b
        print("  %s: 503 (aggd busy), retry %d" % (q, attempt + 1))
        time.sleep(1)
    return st, h, b


def stored_points(p, w, upto):
    """Every stored point of writer w: a list of (index, value)."""
    out = []
    page = 50000
    for lo in range(0, upto + 1, page):
        q = "/api/v1/export/%s?start=%d&end=%d&limit=100000" % (
            Load.series(w), T0_MS + lo * 1000, T0_MS + (lo + page) * 1000)
        st, _, b = get_settled(p, q)
        if st == 404:
            continue
        if st != 200 or b.get("truncated"):
            raise Failure("export %s: %s %s" % (q, st, str(b)[:200]))
        for s in b["series"]:
            out += [(index_of(x["timestamp"]), x["value"]) for x in s["points"]]
    return out


def check_http(p, load):
    """Returns (acked, stored, lost, doubled, unacked_stored, per-phase lost)."""
    tot = collections.Counter()
    lost_idx = []
    for w in range(WRITERS):
        pts = stored_points(p, w, load.sent[w])
        idx = [i for i, _ in pts]
        bad = [(i, v) for i, v in pts if i is None or v != i]
        if bad:
            raise Failure("writer %d: stored points that were never sent: %s" % (w, bad[:5]))
        have_ = set(idx)
        st, _, s = get_settled(p, "/api/v1/stats/%s" % Load.series(w))
        count = s.get("count", 0) if st == 200 else 0
        ssum = s.get("sum", 0) if st == 200 else 0
        lost = load.acked[w] - have_
        lost_idx += [(w, i) for i in lost]
        # Doubled: the same reading twice among the raw points, or the
        # statistics counting more points (or a larger sum) than there are.
        doubled = (len(idx) - len(have_)) + max(0, count - len(have_))
        if st == 200 and abs(ssum - sum(have_)) > 1e-6 * max(1, sum(have_)):
            doubled += 1
            print("writer %d: stats sum %s, stored points sum %d" % (w, ssum, sum(have_)))
        tot["acked"] += len(load.acked[w])
        tot["sent"] += load.sent[w]
        tot["stored"] += len(have_)
        tot["lost"] += len(lost)
        tot["doubled"] += doubled
        tot["unacked_stored"] += len(have_ - load.acked[w])
    return tot, lost_idx


def check_mqtt(p, report):
    rep = json.load(open(report))
    sent = {d["device"]: d["sent"] for d in rep["per_device"]}
    acked = {d["device"]: d["acked"] for d in rep["per_device"]}
    st, _, b = get_settled(p, "/api/v1/series?match=temperature")
    stored = {}
    if st == 200:
        for s in b["series"]:
            stored[s["series"].split("device=", 1)[1].rstrip("}")] = s["points"]
    st, _, s = get_settled(p, "/api/v1/stats/temperature")
    count = s.get("count", 0) if st == 200 else 0
    tot = collections.Counter()
    tot["devices"] = len(sent)
    tot["sent"] = sum(sent.values())
    tot["acked"] = sum(acked.values())
    tot["stored"] = sum(stored.values())
    tot["lost"] = sum(max(0, acked[d] - stored.get(d, 0)) for d in acked)
    tot["doubled"] = (sum(max(0, stored.get(d, 0) - sent[d]) for d in sent)
                      + max(0, count - tot["stored"]))
    return tot


def settle(p, load, report, timeout):
    """Wait until every acknowledged reading is stored (or the deadline)."""
    deadline = time.time() + timeout
    while True:
        h, lost_idx = check_http(p, load)
        m = check_mqtt(p, report)
        if (h["lost"] == 0 and m["lost"] == 0) or time.time() > deadline:
            return h, m, lost_idx
        time.sleep(2)


def unconfirmed(p):
    """ingestd's spooled bytes aggd has not confirmed yet, once they
    drain to 0 (or the last value after 60 s)."""
    deadline = time.time() + 60
    while True:
        st, _, s = p.http("GET", "/stats", timeout=30)
        left = (s.get("ingestd") or {}).get("spool_bytes") if st == 200 else None
        if left == 0 or time.time() > deadline:
            return left
        time.sleep(1)


def partition_test():
    """The network between ingestd/apid and aggd cut for STOP_S under HTTP
    load, then healed: every acknowledged reading stored once."""
    net = NetHost("chaos", 214, here=(1,), there=(10,)).__enter__()
    if net is None:
        print("note: no network namespace or veth here (needs root and ip); "
              "the partition fault was not run")
        return
    p = Platform(daemons=("aggd", "ingestd", "apid"), tcp=True,
                 lane_host=net.net + ".10", host=net.net + ".1",
                 wrap={"aggd": net.wrap},
                 extra={"ingestd": ["--resend-after", "1s"],
                        "apid": ["--timeout", "2s"]})
    try:
        p.start()
        theirs = os.readlink("/proc/%d/ns/net" % p.procs["aggd"].pid)
        check(theirs != os.readlink("/proc/self/ns/net"),
              "partition: aggd runs in network namespace %s (%s)" % (net.ns, theirs))
        load = Load(p)
        for t in load.threads:
            t.start()
        time.sleep(GAP)
        load.set_phase("partition")
        if not net.cut():
            load.stop.set()
            print("note: no tc blackhole qdisc here; the partition fault was not run")
            return
        try:
            time.sleep(1.5)
            st, _, _ = p.http("GET", "/api/v1/stats/%s" % Load.series(0), timeout=10)
            cut_query = st
            cut_spool = (p.http("GET", "/stats", timeout=10)[2].get("ingestd") or {}
                         ).get("spool_bytes", 0)
            time.sleep(STOP_S - 1.5)
        finally:
            check(net.heal(), "partition: healed")
        load.set_phase("end")
        time.sleep(2 * GAP)
        load.stop.set()
        for t in load.threads:
            t.join(timeout=30)
        deadline = time.time() + 120
        while True:
            h, lost_idx = check_http(p, load)
            if h["lost"] == 0 or time.time() > deadline:
                break
            time.sleep(2)
        if lost_idx:
            print("partition: lost (writer, reading):", sorted(lost_idx)[:20])
        print("chaos partition: %.0fs cut, sent=%d acked=%d (%d while cut) stored=%d "
              "lost=%d doubled=%d" % (STOP_S, h["sent"], h["acked"],
                                      load.phase_acked["partition"], h["stored"],
                                      h["lost"], h["doubled"]))
        check(cut_query == 503, "partition: apid cannot reach aggd while cut "
              "(stats answered %s)" % cut_query)
        check(cut_spool > 0, "partition: ingestd holds unconfirmed readings while "
              "cut (%d spooled bytes)" % cut_spool)
        check(load.phase_acked["partition"] > 0 and load.phase_acked["end"] > 0,
              "partition: writes acknowledged while cut (%d) and after (%d)"
              % (load.phase_acked["partition"], load.phase_acked["end"]))
        left = unconfirmed(p)
        check(left == 0, "partition: aggd confirms everything after the heal "
              "(%s unconfirmed bytes)" % left)
        check(h["lost"] == 0, "partition: no acknowledged reading lost")
        check(h["doubled"] == 0, "partition: no reading stored or counted twice")
    finally:
        try:
            p.stop()
        finally:
            net.__exit__()


def test():
    if not all(have(d) for d in Platform.CHAIN) or not have("sensorpipe-sim") \
            or not have("sensorpipe_spool.so") or shutil.which("mosquitto") is None:
        print("skip: needs every daemon, sensorpipe-sim, the plugin and mosquitto")
        sys.exit(77)
    disk = Disk()
    p = ChaosPlatform(disk, lanes=LANES, extra={
        "ingestd": ["--resend-after", "1s", "--segment", "1048576"],
        "apid": ["--timeout", "2s"]})
    sim = None
    try:
        spool, conf = broker_conf(p)
        p.start_broker(conf)
        p.extra["ingestd"] += ["--mqtt-spool", spool]
        p.start()
        load = Load(p)
        plan = faults(p, disk, load)
        report = os.path.join(p.dir, "sim.json")
        sim = subprocess.Popen([binary("sensorpipe-sim"), "-p", str(p.mqtt_port),
                                "-n", str(DEVICES), "-r", "1", "-d", "3600s",
                                "-C", "50", "--drain", "60s", "--report", report, "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for t in load.threads:
            t.start()
        time.sleep(GAP)
        timeline = []
        per_round = len(plan) // ROUNDS
        for i, (fault, action) in enumerate(plan):
            # Counted per round: the same fault again is its own phase.
            name = fault if i < per_round else "%s (round %d)" % (fault, i // per_round + 1)
            load.set_phase(name)
            t = time.time()
            action()
            time.sleep(GAP)
            timeline.append((name, time.time() - t))
            print("fault: %-22s %5.1fs  acked %6d  refused %5d" % (
                name, timeline[-1][1], load.phase_acked[name], load.phase_refused[name]))
        load.set_phase("end")
        time.sleep(GAP)
        load.stop.set()
        for t in load.threads:
            t.join(timeout=30)
        sim.send_signal(signal.SIGINT)  # stop publishing, wait for the acks
        out, _ = sim.communicate(timeout=120)
        sim = None
        print("sim:", out.decode()[-300:].strip())
        check(os.path.exists(report), "the simulator wrote its per-device report")
        print("HTTP statuses:", dict(load.status))
        h, m, lost_idx = settle(p, load, report, 180)
        if lost_idx:
            print("lost (writer, reading):", sorted(lost_idx)[:20])
        print("http: sent=%d acked=%d stored=%d lost=%d doubled=%d stored-unacked=%d"
              % (h["sent"], h["acked"], h["stored"], h["lost"], h["doubled"],
                 h["unacked_stored"]))
        print("mqtt: devices=%d sent=%d acked=%d stored=%d lost=%d doubled=%d"
              % (m["devices"], m["sent"], m["acked"], m["stored"], m["lost"],
                 m["doubled"]))
        print("chaos summary: %d faults (%s), sent=%d acked=%d stored=%d lost=%d doubled=%d"
              % (len(plan), ", ".join(n for n, _ in plan[:len(plan) // ROUNDS]),
                 h["sent"] + m["sent"], h["acked"] + m["acked"], h["stored"] + m["stored"],
                 h["lost"] + m["lost"], h["doubled"] + m["doubled"]))
        if load.restarted:
            print("mended themselves after the full disk (WAL stopped): %s"
                  % ", ".join(load.restarted))
        left = unconfirmed(p)
        check(left == 0, "aggd confirms everything again: ingestd's spool drains "
              "(%s unconfirmed bytes)" % left)
        check(h["acked"] > 0 and m["acked"] > 0, "load was acknowledged over HTTP and MQTT")
        for name, _ in timeline:
            check(load.phase_acked[name] > 0 or name.startswith(("SIGSTOP ingestd", "disk")),
                  "writes were acknowledged around '%s' (%d)" % (name, load.phase_acked[name]))
        check(load.phase_acked["end"] > 0, "the pipeline takes writes after every fault")
        check(h["lost"] + m["lost"] == 0, "no acknowledged reading lost")
        check(h["doubled"] + m["doubled"] == 0, "no reading stored or counted twice")
    finally:
        if sim is not None:
            sim.kill()
            sim.wait()
        try:
            p.stop()
        finally:
            disk.remove()
    if not ONLY or ONLY in "network partition":
        partition_test()


if __name__ == "__main__":
    main(test)
