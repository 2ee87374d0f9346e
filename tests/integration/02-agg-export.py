#!/usr/bin/env python3
"""aggd exports readings to an outside engine from its WAL, behind a
durable cursor, so nothing is lost while the engine is down.

1. A real InfluxDB (Debian's influxd, on free loopback ports): readings
   ingested while it is up, while it is stopped (aggd retries, keeps its
   WAL across checkpoints, and is itself killed with -9 and restarted
   meanwhile), then after influxd is back: per series, InfluxDB's count
   and sum equal aggd's, to the last reading. A second exporter sends
   minute rollups (--export-rollup-url, measurement NAME_1m) through the
   same outage and kill -9: per series the minutes' counts and sums add
   up to aggd's, no reading came late, and one series' minutes (count,
   sum, min, max, first, last) equal aggd's 1-minute aggregates. Hour
   and day tiers are not exported: InfluxDB's GROUP BY time(1h) and
   time(1d) over the minutes equal aggd's hourly and daily aggregates.
2. ClickHouse's HTTP insert: a recording HTTP server on a loopback port
   checks the wire form (POST to the configured
   /?query=INSERT ... FORMAT JSONEachRow URL, one JSON row per reading
   with series, name, tags, ts in ns and value) and that a 500 answer is
   retried with the same rows.
3. A real ClickHouse (Debian's clickhouse-server 18.16, on free loopback
   ports, its own data directory): readings into a ReplacingMergeTree
   table and minute rollups into another, across a kill -9 of aggd; per
   series ClickHouse's count and sum (FINAL, so a repeat after the crash
   counts once) equal aggd's, and the rollups' counts and sums too; its
   hours and day over the minutes equal aggd's 1h and 1d aggregates.
   Skipped with a note when clickhouse-server is not installed.
"""
import http.server
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, check, free_port, have, main, wait_for  # noqa: E402

T0_MS = 1704067200000
DEVICES = 5


class Influx:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sp-influx.")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "influxdb.conf")
        with open(self.conf, "w") as f:
            f.write('reporting-disabled = true\nbind-address = "127.0.0.1:%d"\n'
                    '[meta]\n  dir = "%s/meta"\n[data]\n  dir = "%s/data"\n'
                    '  wal-dir = "%s/wal"\n  query-log-enabled = false\n'
                    '[http]\n  bind-address = "127.0.0.1:%d"\n  log-enabled = false\n'
                    '[monitor]\n  store-enabled = false\n'
                    % (free_port(), self.dir, self.dir, self.dir, self.port))
        self.p = None

    def start(self):
        log = open(os.path.join(self.dir, "influxd.log"), "ab")
        self.p = subprocess.Popen(["influxd", "-config", self.conf], stdout=log,
                                  stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/ping" % self.port,
                                       timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        raise Failure("influxd did not start")

    def stop(self):
        if self.p:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(timeout=60)
            self.p = None

    def query(self, q):
        url = "http://127.0.0.1:%d/query?db=sp&q=%s" % (self.port, urllib.parse.quote(q))
        return json.loads(urllib.request.urlopen(url, timeout=30).read())

    def counts(self):
        """{series key: (count, sum)} as InfluxDB has them."""
        out = {}
        r = self.query('SELECT count("value"), sum("value") FROM "exp" GROUP BY "dev"')
        for s in r["results"][0].get("series", []):
            _, c, sm = s["values"][0]
            out["exp{dev=%s}" % s["tags"]["dev"]] = (c, sm)
        r = self.query('SELECT count("value"), sum("value") FROM "exp_plain"')
        for s in r["results"][0].get("series", []):
            _, c, sm = s["values"][0]
            out["exp_plain"] = (c, sm)
        return out

    def rollups(self):
        """{series key: (sum of counts, sum of sums, minutes)} of NAME_1m."""
        out = {}
        for meas, group in (("exp_1m", ' GROUP BY "dev"'), ("exp_plain_1m", "")):
            r = self.query('SELECT sum("count"), sum("sum"), count("count") FROM "%s"%s'
                           % (meas, group))
            for s in r["results"][0].get("series", []):
                _, c, sm, n = s["values"][0]
                key = "exp{dev=%s}" % s["tags"]["dev"] if group else "exp_plain"
                out[key] = (c, sm, n)
        return out

    def minutes(self, dev):
        """[[time ns, count, sum, min, max, first, last]] of one series."""
        url = ("http://127.0.0.1:%d/query?db=sp&epoch=ns&q=%s"
               % (self.port, urllib.parse.quote(
                   'SELECT "count", "sum", "min", "max", "first", "last" FROM '
                   '"exp_1m" WHERE "dev" = \'%s\'' % dev)))
        r = json.loads(urllib.request.urlopen(url, timeout=30).read())
        return r["results"][0]["series"][0]["values"]

    def coarser(self, dev, ival):
        """[[time ns, count, sum, min, max, first, last]] of one series per
        hour or day, computed by InfluxDB from the minute rollups."""
        q = ('SELECT sum("count"), sum("sum"), min("min"), max("max"), '
             'first("first"), last("last") FROM "exp_1m" WHERE "dev" = \'%s\' '
             "AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-03T00:00:00Z' "
             'GROUP BY time(%s) fill(none)' % (dev, ival))
        url = ("http://127.0.0.1:%d/query?db=sp&epoch=ns&q=%s"
               % (self.port, urllib.parse.quote(q)))
        r = json.loads(urllib.request.urlopen(url, timeout=30).read())
        return r["results"][0]["series"][0]["values"]

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def ingest(p, start, n):
    """n readings per series, numbered from start; all acknowledged."""
    lines = []
    for i in range(start, start + n):
        ts = T0_MS + i * 1000
        for d in range(DEVICES):
            lines.append("exp,dev=d%d value=%d.25 %d" % (d, i * (d + 1), ts))
        lines.append("exp_plain value=%d.5 %d" % (i, ts))
    # 360 lines are one minute of every series: with start a multiple of
    # 60 each request holds whole minutes, so a pause between two never
    # splits a minute for the rollup export.
    for k in range(0, len(lines), 360):
        st, _, b = p.http("POST", "/write?precision=ms", "\n".join(lines[k:k + 360]),
                          port=p.ingest_port)
        if st != 204:
            raise Failure("write: %s %s" % (st, b))


def ours(p):
    out = {}
    for d in range(DEVICES):
        st, _, b = p.http("GET", "/api/v1/stats/exp?tag.dev=d%d" % d)
        out["exp{dev=d%d}" % d] = (b["count"], b["sum"])
    st, _, b = p.http("GET", "/api/v1/stats/exp_plain")
    out["exp_plain"] = (b["count"], b["sum"])
    return out


def agg_status(p):
    st, _, b = p.http("GET", "/stats")
    return b.get("aggd") or {}


def same(a, b):
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and abs(a[k][1] - b[k][1]) <= 1e-9 * max(1, abs(a[k][1]))
        for k in a)


def wait_same(p, influx, want_total, timeout=90):
    deadline = time.time() + timeout
    theirs, mine = {}, {}
    while time.time() < deadline:
        mine = ours(p)
        if sum(c for c, _ in mine.values()) == want_total:
            try:
                theirs = influx.counts()
            except OSError:
                theirs = {}
            if same(mine, theirs):
                return mine, theirs
        time.sleep(0.5)
    return mine, theirs


def rollups_same(mine, theirs):
    """aggd's (count, sum) per series against the rollups' sums."""
    return mine.keys() == theirs.keys() and all(
        mine[k][0] == theirs[k][0] and
        abs(mine[k][1] - theirs[k][1]) <= 1e-9 * max(1, abs(mine[k][1]))
        for k in mine)


def check_rollups(p, influx, total):
    """Every reading in InfluxDB's minute rollups, none late; one series'
    minutes equal aggd's 1-minute aggregates."""
    deadline = time.time() + 90
    mine, theirs = ours(p), {}
    while time.time() < deadline:
        try:
            theirs = influx.rollups()
        except OSError:
            theirs = {}
        if rollups_same(mine, theirs):
            break
        time.sleep(0.5)
    print("aggd:", mine)
    print("influxdb rollups (count, sum, minutes):", theirs)
    check(rollups_same(mine, theirs),
          "InfluxDB's minute rollups add up to aggd's count and sum per series: "
          "%d of %d readings" % (sum(v[0] for v in theirs.values()), total))
    check(all(v[2] == (total // (DEVICES + 1) + 59) // 60 for v in theirs.values()),
          "one rollup per series per minute (%s)" % sorted({v[2] for v in theirs.values()}))
    s = agg_status(p)
    check(s.get("export_rollup_late") == 0 and s.get("export_rollup_minutes", 0) > 0,
          "no reading came after its minute closed (late %s, minutes sent %s)"
          % (s.get("export_rollup_late"), s.get("export_rollup_minutes")))
    got = influx.minutes("d3")
    check(buckets_equal(got, aggd_buckets(p, "1min"), "minute"),
          "exp{dev=d3}: %d minutes of count, sum, min, max, first and last "
          "equal aggd's 1-minute aggregates" % len(got))
    # Hour and day tiers are not exported: the minutes compose exactly.
    for ival in ("1h", "1d"):
        got = influx.coarser("d3", ival)
        check(buckets_equal(got, aggd_buckets(p, ival), ival),
              "exp{dev=d3}: %d %s buckets computed by InfluxDB from the exported "
              "minutes (sum of counts and sums, min, max, first, last) equal aggd's "
              "%s aggregates" % (len(got), ival, ival))


FIELDS = ("count", "sum", "min", "max", "first", "last")


def aggd_buckets(p, ival):
    """{RFC 3339 start: {count, sum, min, max, first, last}} of exp{dev=d3}
    per interval, as aggd aggregates it (raw points, exact)."""
    want = {}
    for f in FIELDS:
        st, _, b = p.http("POST", "/api/v1/aggregate",
                          {"metric_name": "exp", "tags": {"dev": "d3"},
                           "interval": ival, "aggregation": f, "exact": True})
        if st != 200:
            raise Failure("aggregate %s %s: %s %s" % (ival, f, st, b))
        for bk in b["buckets"]:
            want.setdefault(bk["timestamp"], {})[f] = bk["value"]
    return want


def buckets_equal(rows, want, what):
    """rows [[start ns, count, sum, min, max, first, last]] from an engine
    against aggd_buckets(): the same buckets, values to rounding."""
    ok = len(rows) == len(want) and len(rows) >= 1
    for row in rows:
        t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(int(row[0]) // 10**9))
        w = want.get(t, {})
        vals = dict(zip(FIELDS, (float(x) for x in row[1:])))
        if set(w) != set(vals) or any(abs(vals[k] - w[k]) > 1e-9 * max(1, abs(w[k]))
                                      for k in w):
            print("%s %s: engine %s, aggd %s" % (what, t, vals, w))
            ok = False
    return ok


def test_influx():
    influx = Influx()
    influx.start()
    urllib.request.urlopen(urllib.request.Request(
        "http://127.0.0.1:%d/query" % influx.port, data=b"q=CREATE DATABASE sp"),
        timeout=30).read()
    url = "http://127.0.0.1:%d/write?db=sp&precision=ns" % influx.port
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"aggd": ["--export-url", url, "--checkpoint-mb", "1",
                                 "--export-rollup-url", url,
                                 "--export-rollup-idle", "2s"]})
    try:
        p.start()
        per = DEVICES + 1
        ingest(p, 0, 1980)
        mine, theirs = wait_same(p, influx, 1980 * per)
        check(same(mine, theirs), "InfluxDB holds what aggd holds: %d series, "
              "%d readings (count and sum per series)" % (len(mine), 1980 * per))

        influx.stop()
        # Enough to pass --checkpoint-mb 1 of WAL (about 22 bytes a
        # reading since batches carry each series key once).
        ingest(p, 1980, 12000)
        deadline = time.time() + 30
        while time.time() < deadline and (agg_status(p).get("export_failures", 0) == 0
                                          or agg_status(p).get("checkpoints", 0) == 0):
            time.sleep(0.2)
        s = agg_status(p)
        check(s.get("export_failures", 0) > 0, "aggd retries while InfluxDB is down "
              "(%d failed posts)" % s.get("export_failures", 0))
        # A checkpoint (every 1 MiB of WAL here) drops the WAL segments it
        # covers, except those the exporter has not sent yet.
        wal = os.path.join(p.dir, "data.0", "wal")
        segs = sorted(f for f in os.listdir(wal) if f.endswith(".wal"))
        check(s.get("checkpoints", 0) > 0 and len(segs) > 1 and
              int(segs[0][:16], 16) <= s.get("export_segment", -1),
              "after %d checkpoints the WAL keeps %d segments from the export "
              "cursor's (segment %d) on" % (s.get("checkpoints", 0), len(segs),
                                            s.get("export_segment", -1)))
        p.procs["aggd"].kill()
        p.procs["aggd"].wait()
        del p.procs["aggd"]
        p.start_one("aggd")
        ingest(p, 13980, 1020)
        influx.start()
        mine, theirs = wait_same(p, influx, 15000 * per, timeout=180)
        print("aggd:", mine)
        print("influxdb:", theirs)
        if not same(mine, theirs):
            print("".join(ln + "\n" for ln in p.log("aggd").splitlines() if "export" in ln))
            print(agg_status(p))
        check(same(mine, theirs), "after the outage and a kill -9 of aggd, InfluxDB "
              "again holds every reading: %d of %d" % (
                  sum(c for c, _ in theirs.values()), 15000 * per))
        s = agg_status(p)
        print("aggd export counters:", {k: v for k, v in s.items() if k.startswith("export")})
        check(s.get("export_readings", 0) > 0 and s.get("export_rejected") == 0,
              "nothing refused by the engine")
        check_rollups(p, influx, 15000 * per)
    finally:
        try:
            p.stop()
        finally:
            influx.remove()


class Recorder(http.server.BaseHTTPRequestHandler):
    posts = []         # (path, content type, body)
    fail_first = [True]

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.fail_first[0]:
            self.fail_first[0] = False
            self.send_response(500)
            self.end_headers()
            self.posts.append(("500", self.path, body))
            return
        self.posts.append(("200", self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_clickhouse():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    q = "INSERT INTO sp.readings FORMAT JSONEachRow"
    secret = secrets.token_hex(12)  # ClickHouse's ?password=, kept out of logs
    url = "http://127.0.0.1:%d/?query=%s&password=%s" % (srv.server_address[1],
                                                         urllib.parse.quote(q), secret)
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"aggd": ["--export-url", url, "--export-format", "clickhouse"]})
    try:
        p.start()
        ingest(p, 0, 10)
        want = {}
        for i in range(10):
            for d in range(DEVICES):
                want[("exp{dev=d%d}" % d, i)] = i * (d + 1) + 0.25
            want[("exp_plain", i)] = i + 0.5
        deadline = time.time() + 30
        rows = []
        while time.time() < deadline:
            rows = [json.loads(ln) for st, _, b in list(Recorder.posts) if st == "200"
                    for ln in b.decode().splitlines()]
            if len(rows) >= len(want):
                break
            time.sleep(0.2)
        paths = {path for _, path, _ in Recorder.posts}
        check(paths == {"/?query=%s&password=%s" % (urllib.parse.quote(q), secret)},
              "every POST goes to the configured INSERT URL: %s" % paths)
        failed = [b for st, _, b in Recorder.posts if st == "500"]
        check(len(failed) == 1 and failed[0] in [b for st, _, b in Recorder.posts
                                                  if st == "200"],
              "the rows of the POST answered 500 are sent again unchanged")
        got = {}
        for r in rows:
            check(set(r) == {"series", "name", "tags", "ts", "value"},
                  "row fields %s" % sorted(r)) if not got else None
            i = (r["ts"] // 1000000 - T0_MS) // 1000
            got[(r["series"], i)] = r["value"]
            tags = {} if r["series"] == "exp_plain" else {"dev": r["series"][8:-1]}
            if r["tags"] != tags or r["name"] != r["series"].split("{")[0]:
                raise Failure("row %s: name or tags do not match the series" % r)
        check(got == want and len(rows) == len(want),
              "JSONEachRow rows: %d, one per reading, ts in ns, exact values" % len(rows))
        check("password=***" in p.log("aggd"), "aggd logs the URL with its password masked")
    finally:
        p.stop(secrets=[secret])
        srv.shutdown()


class ClickHouse:
    """clickhouse-server on free loopback ports, data in a temporary dir,
    from Debian's config with paths and ports replaced."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sp-clickhouse.")
        self.port = free_port()
        with open("/etc/clickhouse-server/config.xml") as f:
            conf = f.read()
        for a, b in (("/var/log/clickhouse-server/", self.dir + "/log/"),
                     ("/var/lib/clickhouse/", self.dir + "/data/"),
                     ("<http_port>8123<", "<http_port>%d<" % self.port),
                     ("<tcp_port>9000<", "<tcp_port>%d<" % free_port()),
                     ("<interserver_http_port>9009<",
                      "<interserver_http_port>%d<" % free_port()),
                     ("<listen_host>::1</listen_host>", ""),
                     ("<users_config>users.xml<",
                      "<users_config>/etc/clickhouse-server/users.xml<")):
            if a not in conf:
                raise Failure("clickhouse config.xml has no %s" % a)
            conf = conf.replace(a, b)
        self.conf = os.path.join(self.dir, "config.xml")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.p = None

    def start(self):
        log = open(os.path.join(self.dir, "server.out"), "ab")
        self.p = subprocess.Popen([shutil.which("clickhouse-server"),
                                   "--config-file=" + self.conf],
                                  stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                return self.sql("SELECT version()").strip()
            except OSError:
                time.sleep(0.3)
        raise Failure("clickhouse-server did not start in 60 s")

    def sql(self, q, body=None):
        url = "http://127.0.0.1:%d/?query=%s" % (self.port, urllib.parse.quote(q))
        return urllib.request.urlopen(url, data=body or b"", timeout=30).read().decode()

    def insert_url(self, table):
        return ("http://127.0.0.1:%d/?query=%s&input_format_skip_unknown_fields=1"
                % (self.port, urllib.parse.quote("INSERT INTO %s FORMAT JSONEachRow"
                                                 % table)))

    def rows(self, q):
        return json.loads(self.sql(q + " FORMAT JSON"))["data"]

    def remove(self):
        if self.p:
            self.p.terminate()
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_clickhouse_real():
    if shutil.which("clickhouse-server") is None or \
            not os.path.exists("/etc/clickhouse-server/config.xml"):
        print("note: clickhouse-server not installed (tools/install-deps.sh); "
              "real ClickHouse part skipped")
        return
    ch = ClickHouse()
    p = None
    try:
        t0 = time.time()
        version = ch.start()
        check(True, "clickhouse-server %s answers on 127.0.0.1:%d after %.1f s"
              % (version, ch.port, time.time() - t0))
        ch.sql("CREATE DATABASE sp")
        ch.sql("CREATE TABLE sp.readings (series String, name String, ts Int64, "
               "value Float64) ENGINE = ReplacingMergeTree ORDER BY (series, ts)")
        ch.sql("CREATE TABLE sp.rollups (series String, name String, ts Int64, "
               "count UInt64, sum Float64, min Float64, max Float64, first Float64, "
               "last Float64) ENGINE = ReplacingMergeTree ORDER BY (series, ts)")
        p = Platform(daemons=("aggd", "ingestd", "apid"),
                     extra={"aggd": ["--export-format", "clickhouse",
                                     "--export-url", ch.insert_url("sp.readings"),
                                     "--export-rollup-url", ch.insert_url("sp.rollups"),
                                     "--export-rollup-idle", "2s"]})
        p.start()
        per = DEVICES + 1
        ingest(p, 0, 1200)
        # Applied (in the WAL) before the kill: batches ingestd resent
        # after it would reach the WAL after newer minutes, which the
        # rollup export counts as late (documented in aggd.8).
        wait_for(lambda: sum(c for c, _ in ours(p).values()) == 1200 * per,
                 "aggd applied the first 1,200 readings per series", timeout=60)
        p.procs["aggd"].kill()
        p.procs["aggd"].wait()
        del p.procs["aggd"]
        p.start_one("aggd")
        ingest(p, 1200, 600)
        total = 1800 * per

        def theirs():
            out, roll = {}, {}
            for r in ch.rows("SELECT series, count() AS c, sum(value) AS s FROM "
                             "sp.readings FINAL GROUP BY series"):
                out[r["series"]] = (int(r["c"]), r["s"])
            for r in ch.rows("SELECT series, sum(count) AS c, sum(sum) AS s, "
                             "count() AS n FROM sp.rollups FINAL GROUP BY series"):
                roll[r["series"]] = (int(r["c"]), r["s"], int(r["n"]))
            return out, roll
        deadline = time.time() + 90
        got, roll, mine = {}, {}, {}
        while time.time() < deadline:
            mine = ours(p)
            got, roll = theirs()
            if sum(c for c, _ in mine.values()) == total and same(mine, got) \
                    and rollups_same(mine, roll):
                break
            time.sleep(0.5)
        if not rollups_same(mine, roll):
            print("exp_plain minutes (ts, count; FINAL then all rows):",
                  [(r["ts"], r["count"]) for r in ch.rows(
                      "SELECT ts, count FROM sp.rollups FINAL WHERE series = "
                      "'exp_plain' ORDER BY ts")],
                  [(r["ts"], r["count"]) for r in ch.rows(
                      "SELECT ts, count FROM sp.rollups WHERE series = "
                      "'exp_plain' ORDER BY ts")])
            print("".join(ln + "\n" for ln in p.log("aggd").splitlines()
                          if "export" in ln))
            print({k: v for k, v in agg_status(p).items() if k.startswith("export")})
        print("aggd:", mine)
        print("clickhouse readings:", got)
        print("clickhouse rollups (count, sum, minutes):", roll)
        check(sum(c for c, _ in mine.values()) == total and same(mine, got),
              "after a kill -9 of aggd, ClickHouse holds every reading once "
              "(FINAL): count and sum per series equal aggd's, %d readings"
              % sum(c for c, _ in got.values()))
        check(rollups_same(mine, roll) and all(v[2] == 30 for v in roll.values()),
              "ClickHouse's minute rollups add up to aggd's count and sum per "
              "series, 30 minutes each")
        for ival, ns in (("1h", 3600 * 10**9), ("1d", 86400 * 10**9)):
            rows = [[r["b"], r["c"], r["s"], r["lo"], r["hi"], r["f"], r["l"]]
                    for r in ch.rows(
                        "SELECT intDiv(ts, %d) * %d AS b, sum(count) AS c, "
                        "sum(sum) AS s, min(min) AS lo, max(max) AS hi, "
                        "argMin(first, ts) AS f, argMax(last, ts) AS l "
                        "FROM sp.rollups FINAL WHERE series = 'exp{dev=d3}' "
                        "GROUP BY b ORDER BY b" % (ns, ns))]
            check(buckets_equal(rows, aggd_buckets(p, ival), ival),
                  "exp{dev=d3}: %d %s buckets computed by ClickHouse from the "
                  "exported minutes equal aggd's %s aggregates" % (len(rows), ival, ival))
        raw = int(ch.rows("SELECT count() AS c FROM sp.readings")[0]["c"])
        print("clickhouse rows before FINAL: %d (repeats after the kill -9: %d)"
              % (raw, raw - total))
    finally:
        if p:
            p.stop()
        ch.remove()


def test():
    if not have("aggd") or not have("ingestd") or not have("apid"):
        print("skip: daemons not built")
        sys.exit(77)
    test_clickhouse()
    test_clickhouse_real()
    if shutil.which("influxd") is None:
        print("skip: influxd (Debian's influxdb) not installed")
        sys.exit(77)
    test_influx()


if __name__ == "__main__":
    main(test)
