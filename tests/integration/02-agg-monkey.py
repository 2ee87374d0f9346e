#!/usr/bin/python3
"""aggd's storage engine against an exact model, under a random sequence
of writes, deletes, checkpoints, kill -9, restarts and backups.

The test plays ingestd (tests/lib/fakeingest.py) and keeps in Python what
aggd must hold: per series key, {ts_ns: value}. A seeded RNG (SP_SEED,
else random; the seed is printed so a failure can be replayed) draws
steps among:
- batches (version 1 items or version 2 points) for a handful of series,
  some with tags: points in order, out of order, late ones far in the
  past (older than sealed chunks), duplicates of (series, ts) with
  another value (they overwrite, also within a batch: the later item
  wins), values with few and many decimals, huge, tiny, subnormal and
  negative values, now and then a batch of thousands of points of one
  series (a head sealed without a checkpoint), a pair sent in the wrong
  order (aggd applies the later one after a gap, unconfirmed, and the
  resend puts them in order), and a batch with a NaN or an infinity (the
  protocol refuses them: the whole batch is dropped and counted);
- deletes of a series or of a range [start, end) through the query op
  apid uses (with a glob or tags now and then) or sensorpipectl --delete;
- kill -9 with batches in flight: after the restart aggd holds exactly
  the batches up to some seq at or after every one confirmed (nothing
  confirmed lost, nothing doubled, nothing after a hole), then the
  resend of the rest gives the model again; clean restarts the same way;
- sensorpipectl --backup, then aggd restarted on the backup: it holds
  what the model held at the backup, and goes on taking the same
  producer's batches (ingestd does not resend what was confirmed);
- checks against the model: every raw point of every series (values:
  bit-identical doubles, timestamps in ns; points with ns), the series
  listing (points, last, last_value), exact stats (count, sum, min, max,
  mean, std, m2, first, last and percentiles, bit for bit with the same
  arithmetic), stats from rollups (count, min, max, first, last exact,
  sum and mean up to rounding), interval aggregation of one series from
  raw points (every bucket bit for bit) and from rollups.
aggd runs with a checkpoint every MiB of WAL and a short
--checkpoint-every, so heads are sealed into small chunks and chunk
compaction runs between the steps.

Bounded: 150 steps or 25 s of them (about 40 s in all under ASan);
1,500 steps or 240 s with SP_FULL=1. SP_VERBOSE=1 prints each step, the
status after each run of checkpoints and checks every point before each
delete.
"""
import bisect
import fnmatch
import math
import os
import random
import signal
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, binary, check, main  # noqa: E402

try:
    import msgpack
    import zmq
    from fakeingest import Fake, restart, status, stored_values  # noqa: E402
except ImportError:
    print("skip: python3 without zmq or msgpack")
    sys.exit(77)

FULL = os.environ.get("SP_FULL") == "1"
STEPS, SECONDS = (1500, 240) if FULL else (150, 25)
NS = 10**9
T0 = 1704067200 * NS  # 2024-01-01
MSG_TS_MAX = 2**63 - 1 - 4 * 366 * 86400 * NS
KEYS = ["mk.a", "mk.b{dev=1}", "mk.b{dev=2}", "mk.c{dev=x,room=k}",
        "mk.d", "mk.e{dev=1}", "mk.f"]
ORDERED = "mk.f"  # written in time order only: chunk compaction takes it
INTERVALS = [("250ms", NS // 4), ("1s", NS), ("7s", 7 * NS),
             ("1min", 60 * NS), ("5min", 300 * NS), ("1h", 3600 * NS),
             ("1d", 86400 * NS)]
FNS = ["mean", "min", "max", "sum", "count", "std", "first", "last",
       "p50", "p90", "p99", "p0", "p100"]


def bits(x):
    return struct.pack("<d", x)


def fmt(ts):
    """clock_format: UTC to the millisecond."""
    s, r = divmod(ts, NS)
    d = datetime.fromtimestamp(s, timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (r // 10**6)


def iso_ns(text):
    d = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(d.replace(tzinfo=timezone.utc).timestamp()) * NS + d.microsecond * 1000


def num(x):
    """agg_query_num: a finite double, else null."""
    return x if math.isfinite(x) else None


def lerp(a, b, frac):
    """agg_stats.c s_lerp (numpy's _lerp)."""
    d = b - a
    return b - d * (1 - frac) if frac >= 0.5 else a + d * frac


def pct(s, p):
    """agg_stats_percentile of sorted s."""
    n = len(s)
    rank = p / 100.0 * (n - 1)
    lo = math.floor(rank)
    if lo + 1 >= n:
        return s[lo]
    return lerp(s[lo], s[lo + 1], rank - lo)


def same(a, b):
    """Equal as the wire gives them: None for a non-finite value, doubles
    bit for bit (but 0 and -0, which sorting may swap)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b) and (a == 0 or bits(float(a)) == bits(float(b)))
    return a == b


def fsum(vals):
    """math.fsum, inf where it overflows."""
    try:
        return math.fsum(vals)
    except OverflowError:
        return math.inf


def moments(vals):
    """s_stats's sums: in order, then M2 in a second pass."""
    s, mn, mx = 0.0, math.inf, -math.inf
    for v in vals:
        s += v
        mn = v if v < mn else mn
        mx = v if v > mx else mx
    n = len(vals)
    mean = s / n if n else 0.0
    m2 = 0.0
    for v in vals:
        m2 += (v - mean) * (v - mean)
    std = math.sqrt(m2 / (n - 1)) if n >= 2 and m2 >= 0 else math.nan
    if n >= 2 and math.isnan(m2):
        std = math.nan
    return {"count": n, "sum": s, "min": mn, "max": mx, "mean": mean,
            "m2": m2, "std": std}


def welford(vals):
    """agg_stats_add over vals in order: (mean, std, sum)."""
    n, mean, m2, sm = 0, 0.0, 0.0, 0.0
    for v in vals:
        n += 1
        sm += v
        d = v - mean
        mean += d / n
        m2 += d * (v - mean)
    return mean, (math.sqrt(m2 / (n - 1)) if n >= 2 else math.nan), sm


def bucket_value(fn, vals, welf):
    """One interval's value from raw points as aggd computes it: sums in
    one pass (s_raw_steps) or agg_stats_add's (welf, the bounded path:
    windows and local days)."""
    if fn in ("min", "max"):
        return min(vals) if fn == "min" else max(vals)
    if fn == "count":
        return float(len(vals))
    if fn == "first":
        return vals[0]
    if fn == "last":
        return vals[-1]
    if fn[0] == "p":
        return pct(sorted(vals), float(fn[1:]))
    if welf:
        mean, std, sm = welford(vals)
        return {"mean": mean, "std": std, "sum": sm}[fn]
    mo = moments(vals)
    return mo["sum"] / len(vals) if fn == "mean" else mo[fn]


class Model:
    def __init__(self):
        self.data = {}  # key -> {ts: value}

    def apply(self, items, undo=None):
        for k, ts, v in items:
            d = self.data.setdefault(k, {})
            if undo is not None:
                undo.append((k, ts, d.get(ts), k in self.data and len(d) == 0))
            d[ts] = v

    def revert(self, undo):
        for k, ts, old, fresh in reversed(undo):
            d = self.data[k]
            if old is None:
                del d[ts]
            else:
                d[ts] = old
            if fresh and not d:
                del self.data[k]

    def snapshot(self):
        return {k: dict(d) for k, d in self.data.items() if d}

    def series(self, glob="mk.*", tags=None):
        """Keys with points that series_match selects: the key itself, or
        a name or glob (no braces) matching the name; tags filter."""
        out = []
        for k in sorted(self.data):
            name = k.split("{")[0]
            if not self.data[k]:
                continue
            if k != glob and ("{" in glob or not fnmatch.fnmatchcase(name, glob)):
                continue
            if tags and any(tag_of(k, t) != v for t, v in tags.items()):
                continue
            out.append(k)
        return out

    def points(self, k, start=None, end=None):
        d = self.data.get(k, {})
        return [(t, d[t]) for t in sorted(d)
                if (start is None or t >= start) and (end is None or t < end)]


def tag_of(key, tag):
    """The value of tag in a canonical key, "" when absent."""
    if "{" not in key:
        return ""
    for kv in key[key.index("{") + 1:-1].split(","):
        k, _, v = kv.partition("=")
        if k == tag:
            return v
    return ""


class Monkey:
    def __init__(self, p, r, seed):
        self.p, self.r = p, r
        self.f = Fake(p)
        self.m = Model()
        self.seq = 0           # last seq sent
        self.confirmed = 0     # highest seq confirmed (and so durable)
        self.pending = []      # [(seq, items, undo)] sent, not yet confirmed
        self.batches = {}      # seq -> wire frames, for resends
        self.cursor = {k: T0 + r.randrange(3600) * NS for k in KEYS}
        self.gapped = False    # a batch went out after a gap since the sync
        self.producer = "ingestd.%d" % (seed % 100)
        self.f.PRODUCER = self.producer  # whose confirmations drain() takes
        self.bad = 0           # refused batches sent
        self.counts = {}

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    # ---- values and timestamps ----
    def value(self):
        r = self.r
        c = r.randrange(12)
        if c == 0:
            return round(r.uniform(-100, 100), 2)
        if c == 1:
            return round(r.uniform(-1, 1) * 10 ** r.randint(-6, 12),
                         r.randint(0, 12))
        if c == 2:
            return r.uniform(-1e6, 1e6)
        if c == 3:
            return r.choice([1e300, -1e300, 1.7976931348623157e308,
                             -1.7976931348623157e308, 1e-300, -1e-300,
                             5e-324, -5e-324, 2.2250738585072014e-308])
        if c == 4:
            return r.choice([0.0, -0.0, 1.0, -1.0, 0.1, 0.3, 1e-9, 9.999999999,
                             123456789.123456789, 2**53 + 0.0, -(2**53) + 0.0,
                             9.2e18, -9.2e18, 1e15 + 0.3])
        if c == 5:
            return struct.unpack("<d", struct.pack(
                "<Q", r.getrandbits(64) & ~(0x7ff << 52) | (r.randint(1, 2046) << 52)))[0]
        if c == 6:
            return float(r.randint(-10**6, 10**6))
        return round(20 + r.gauss(0, 5), r.choice([0, 1, 2, 2, 3, 6, 9]))

    def ts(self, k):
        r = self.r
        c = r.randrange(20)
        d = self.m.data.get(k)
        if c < 11 or k == ORDERED:  # in order
            self.cursor[k] += r.choice([NS, 10 * NS, r.randrange(1, 90 * NS),
                                        r.randrange(1, 10**6)])
            return self.cursor[k]
        if c < 14 and d:  # a duplicate of a stored one
            return r.choice(list(d))
        if c < 17:  # out of order, among the recent ones
            return r.randint(T0, self.cursor[k])
        if c < 19:  # late: days before everything
            return T0 - r.randrange(1, 400 * 86400) * NS - r.randrange(NS)
        return r.choice([0, 1, 86400 * NS - 1, MSG_TS_MAX, MSG_TS_MAX - 1])

    # ---- batches ----
    def frames(self, seq, items, producer=None):
        r = self.r
        # acked: the confirmed seq when the batch is made, as ingestd
        # spools it (PROTOCOL.md, "Confirmations and resends").
        env = {"type": 1, "producer": producer or self.producer, "lane": 0,
               "seq": seq, "ts": time.time_ns(), "acked": self.confirmed}
        keys = sorted({k for k, _, _ in items})
        idx = {k: i for i, k in enumerate(keys)}
        if r.random() < 0.5:
            env.update(v=1, keys=keys,
                       items=[[idx[k] if r.random() < 0.7 else k, t, v]
                              for k, t, v in items])
        else:
            env.update(v=2, keys=keys, points=b"".join(
                struct.pack("<Iqd", idx[k], t, v) for k, t, v in items))
        return [b"readings", msgpack.packb(env)]

    def items(self, n):
        ks = self.r.sample(KEYS, self.r.randint(1, len(KEYS)))
        out = []
        for _ in range(n):
            k = self.r.choice(ks)
            out.append((k, self.ts(k), self.value()))
        if self.r.random() < 0.2 and out:  # the same (series, ts) twice
            k, t, _ = self.r.choice(out)
            if k == ORDERED:
                return out
            out.append((k, t, self.value()))
        return out

    def send(self, items):
        self.seq += 1
        undo = []
        self.m.apply(items, undo)
        self.batches[self.seq] = self.frames(self.seq, items)
        self.pending.append((self.seq, items, undo))
        self.f.push.send_multipart(self.batches[self.seq])
        return self.seq

    def step_batch(self):
        r = self.r
        n = r.choice([1, 2, 5, 20, 100, 300])
        if r.random() < 0.04:  # a head fills past 2,048 points
            k = r.choice(KEYS)
            items = []
            for _ in range(r.randint(2100, 5000)):
                self.cursor[k] += r.randrange(1, 20 * NS)
                items.append((k, self.cursor[k], round(r.uniform(0, 50), 2)))
            self.send(items)
            self.count("bulk batch")
            return
        if r.random() < 0.05:  # two batches the wrong way round
            a, b = self.items(n), self.items(n)
            self.seq += 2
            ua, ub = [], []
            self.m.apply(a, ua)
            self.m.apply(b, ub)
            self.batches[self.seq - 1] = self.frames(self.seq - 1, a)
            self.batches[self.seq] = self.frames(self.seq, b)
            self.pending += [(self.seq - 1, a, ua), (self.seq, b, ub)]
            self.f.push.send_multipart(self.batches[self.seq])
            self.f.push.send_multipart(self.batches[self.seq - 1])
            self.gapped = True
            self.count("gap")
            return
        if r.random() < 0.03:  # a NaN or an infinity: the batch is refused
            items = self.items(n)
            i = r.randrange(len(items))
            items[i] = (items[i][0], items[i][1],
                        r.choice([math.nan, math.inf, -math.inf]))
            self.bad += 1
            self.f.push.send_multipart(self.frames(1, items, "monkey.bad"))
            self.count("refused batch")
            return
        self.send(self.items(n))
        self.count("batch")

    # ---- confirmation, resends ----
    def sync(self, timeout=60):
        """Every batch sent is confirmed: resend what is not (in order,
        from the confirmed seq on, as ingestd does) when confirmations
        stall for a second."""
        deadline = time.time() + timeout
        last = time.time()
        while True:
            self.confirmed = max(self.confirmed, self.f.drain(50))
            self.pending = [b for b in self.pending if b[0] > self.confirmed]
            if not self.pending:
                break
            if time.time() > deadline:
                raise Failure("aggd confirmed %d of %d batches in %d s"
                              % (self.confirmed, self.seq, timeout))
            if time.time() - last > 1.0:
                for s in range(self.confirmed + 1, self.seq + 1):
                    self.f.push.send_multipart(self.batches[s])
                last = time.time()
                self.count("resend")
        for s in [s for s in self.batches if s <= self.confirmed]:
            del self.batches[s]
        self.gapped = False

    # ---- kill -9 and restarts ----
    def new_push(self):
        """A fresh PUSH: the old one's queue died with aggd's socket."""
        self.f.push.close(0)
        self.f.push = self.f.ctx.socket(zmq.PUSH)
        self.f.push.setsockopt(zmq.LINGER, 0)
        self.f.push.connect("ipc://%s/aggd.0.in" % self.p.run)

    def stored(self):
        return stored_values(self.f, "mk.*")

    def equal(self, got, want):
        if set(got) != set(want):
            return "series %s, want %s" % (sorted(got), sorted(want))
        for k in want:
            g, w = got[k], want[k]
            if set(g) != set(w):
                extra = sorted(set(g) - set(w))[:3]
                lost = sorted(set(w) - set(g))[:3]
                return "%s: %d points, want %d (extra %s, lost %s)" % (
                    k, len(g), len(w), extra, lost)
            for t in w:
                if bits(g[t]) != bits(w[t]):
                    return "%s at %d: %r, want %r" % (k, t, g[t], w[t])
        return None

    def restart(self, kill):
        """kill -9 (or SIGTERM) aggd with the batches in flight, start it
        again: it holds exactly batches 1..j for a j at or after every
        confirmed one; then the resend gives the model again."""
        self.confirmed = max(self.confirmed, self.f.drain(0))
        proc = self.p.procs.pop("aggd")
        if kill:
            proc.send_signal(signal.SIGKILL)
            rc = proc.wait()
        else:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            log = self.p.log("aggd")
            check(rc == 0 and "shutdown complete" in log,
                  "aggd stops cleanly (%s)" % rc)
            for mark in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                if mark in log:
                    raise Failure("aggd log has %s" % mark)
        self.new_push()
        self.confirmed = max(self.confirmed, self.f.drain(0))
        restart(self.p)
        self.bad = 0  # aggd's counters start again
        got = self.stored()
        if not self.gapped:
            # Undo the unconfirmed batches from the newest back until
            # the model equals what aggd holds.
            undone = []
            why = self.equal(got, self.m.snapshot())
            j = self.seq
            while why and self.pending and self.pending[-1][0] > self.confirmed:
                b = self.pending.pop()
                self.m.revert(b[2])
                undone.append(b)
                j = b[0] - 1
                why = self.equal(got, self.m.snapshot())
            for b in reversed(undone):
                self.m.apply(b[1])
                self.pending.append(b)
            # pending's undo lists were taken against the full model;
            # re-applied in order they are valid again.
            if why:
                raise Failure("after %s aggd holds no prefix of the batches "
                              "from the %d confirmed to the %d sent: %s"
                              % ("kill -9" if kill else "a clean stop",
                                 self.confirmed, self.seq, why))
            print("%s: %d confirmed, %d sent, aggd holds 1..%d" % (
                "kill -9" if kill else "restart", self.confirmed, self.seq, j))
        self.sync()
        self.check_raw("after the restart")

    def step_kill(self, kill):
        r = self.r
        for _ in range(r.randint(0, 6)):
            self.send(self.items(r.choice([1, 20, 300])))
        if r.random() < 0.5:
            time.sleep(r.uniform(0, 0.2))
        self.restart(kill)
        self.count("kill -9" if kill else "clean restart")

    # ---- deletes ----
    def step_delete(self):
        r = self.r
        self.sync()
        if os.environ.get("SP_VERBOSE"):
            self.check_raw("before a delete")
        keys = self.m.series()
        if not keys:
            return
        k = r.choice(keys)
        pts = self.m.points(k)
        whole = r.random() < 0.25
        if whole:
            start = end = None
        elif r.random() < 0.15:  # a range holding every point: it goes
            start, end = pts[0][0] - r.randrange(NS), pts[-1][0] + 1
        else:
            a, b = r.choice(pts)[0], r.choice(pts)[0]
            start, end = min(a, b), max(a, b) + r.choice([0, 1, 10 * NS])
            if r.random() < 0.3:
                start -= r.randrange(86400 * NS)
            end = max(end, start + 1)
        sel, tags = k, None
        if "{" in k and r.random() < 0.3:  # by name and tags
            sel, tags = k[:k.index("{")], {}
            for kv in k[k.index("{") + 1:-1].split(","):
                a_, _, b_ = kv.partition("=")
                tags[a_] = b_
        elif r.random() < 0.2:
            sel = k[:4] + "*"
            if r.random() < 0.5:  # only the series without a room tag
                tags = {"room": ""}
        targets = self.m.series(sel, tags)
        ctl = r.random() < 0.25 and tags is None and targets
        if ctl:
            if start is not None:
                start, end = start // 10**6 * 10**6, -(-end // 10**6) * 10**6
            gone = sum(len(self.m.points(x, start, end)) for x in targets)
            argv = [binary("sensorpipectl"), "--rundir", self.p.run,
                    "--timeout", "30s", "--delete", sel]
            if start is not None:
                argv += ["--start", str(start // 10**6), "--end", str(end // 10**6)]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            check(out.returncode == 0 and '"deleted":%d' % gone in out.stdout,
                  "sensorpipectl --delete %s [%s, %s): %s %s (%d points)"
                  % (sel, start, end, out.stdout.strip(), out.stderr.strip(), gone))
        else:
            gone = sum(len(self.m.points(x, start, end)) for x in targets)
            # Every matched series left empty goes (a whole-series
            # delete, or a range that held all of its points), unless
            # some rollup bucket could not be rebuilt and keeps it.
            emptied = all(len(self.m.points(x)) == len(
                self.m.points(x, start, end)) for x in targets)
            req = {"op": "delete", "series": sel}
            if tags:
                req["tags"] = tags
            if start is not None:
                req.update(start=start, end=end)
            st, body = self.f.query(req, 30000)
            if targets and emptied and start is not None:
                self.count("range delete emptying its series")
            check((st == 200 and body["deleted"] == gone and targets and
                   body["matched"] == len(targets) and
                   (body["rollups_partial"] or
                    body["series_removed"] == emptied)) or
                  (st == 404 and not targets),
                  "delete %s %s [%s, %s): %s %s (%d points of %d series)"
                  % (sel, tags or "", start, end, st, body, gone, len(targets)))
        for x in targets:
            d = self.m.data[x]
            for t in [t for t in d if (start is None or t >= start) and
                      (end is None or t < end)]:
                del d[t]
            if not d:
                del self.m.data[x]
        self.count("delete")

    def step_checkpoints(self):
        """A run of checkpoints, each sealing the heads of every series
        into small chunks (chunk compaction merges runs of 16): a few
        points of each series, then a delete of an empty range, which
        answers after a checkpoint (aggd.8 DELETING)."""
        r = self.r
        for i in range(r.randint(4, 24)):
            items = []
            for k in KEYS:
                for _ in range(r.randint(1, 30)):
                    self.cursor[k] += r.randrange(1, 20 * NS)
                    items.append((k, self.cursor[k], self.value()))
            self.send(items)
            self.sync()
            if r.random() < 0.8:  # a backup (not restored) checkpoints too
                n = self.counts.get("throwaway backup", 0)
                self.count("throwaway backup")
                st, body = self.f.query({"op": "backup", "dir": os.path.join(
                    self.p.dir, "tmpbackup%d" % n)}, 30000)
                if st != 200:
                    raise Failure("backup: %s %s" % (st, body))
                continue
            t = r.randrange(T0 - 86400 * NS, T0)
            gone = sum(len(self.m.points(x, t, t + 1)) for x in self.m.series())
            st, body = self.f.query({"op": "delete", "series": "mk.*",
                                     "start": t, "end": t + 1}, 30000)
            if st != 200 or body["deleted"] != gone:
                raise Failure("delete [%d, %d): %s %s, want %d deleted"
                              % (t, t + 1, st, body, gone))
            for x in self.m.series():
                self.m.data[x].pop(t, None)
                if not self.m.data[x]:
                    del self.m.data[x]
        self.count("checkpoint runs")
        if os.environ.get("SP_VERBOSE"):
            st = status(self.f)
            print("after checkpoints: %s" % {k: st.get(k) for k in (
                "checkpoints", "chunks", "chunk_compactions", "compacting",
                "compactions_dropped")})

    # ---- backup ----
    def step_backup(self):
        self.sync()
        bdir = os.path.join(self.p.dir, "backup%d" % self.counts.get("backup", 0))
        want = self.m.snapshot()
        out = subprocess.run([binary("sensorpipectl"), "--rundir", self.p.run,
                              "--timeout", "30s", "--backup", bdir],
                             capture_output=True, text=True, timeout=60)
        check(out.returncode == 0 and '"points":' in out.stdout,
              "sensorpipectl --backup: %s %s" % (out.stdout.strip(),
                                                  out.stderr.strip()))
        # More batches, confirmed, that the backup does not hold.
        for _ in range(self.r.randint(0, 3)):
            self.send(self.items(20))
        self.sync()
        self.p.stop_one("aggd")
        self.new_push()
        self.p.extra = {"aggd": self.p.extra["aggd"] +
                        ["--data", os.path.join(bdir, "aggd.0")]}
        restart(self.p)
        self.bad = 0
        self.m.data = want
        self.check_raw("restored from the backup")
        self.count("backup")

    # ---- checks ----
    def check_raw(self, what):
        why = self.equal(self.stored(), self.m.snapshot())
        if why:
            raise Failure("%s: aggd's points differ from the model: %s"
                          % (what, why))

    def check_range(self):
        """The raw points of a range [start, end) of some series (values,
        as apid's lane merge reads them): a read of part of a series
        merges the head's late points and resealed chunks from a start
        of its own."""
        r = self.r
        keys = self.m.series()
        if not keys:
            return
        for _ in range(r.randint(1, 8)):
            k = r.choice(keys)
            pts = self.m.points(k)
            a, b = r.choice(pts)[0], r.choice(pts)[0]
            start = min(a, b) - r.choice([0, 0, 1, r.randrange(1, 3600 * NS)])
            end = max(a, b) + r.choice([1, 1, 2, r.randrange(1, 3600 * NS)])
            start = max(start, 0)
            sel = k if r.random() < 0.7 else "mk.*"
            st, body = self.f.query({"op": "values", "series": sel,
                                     "start": start, "end": end, "max": 10**7})
            want = {x: dict(self.m.points(x, start, end))
                    for x in self.m.series(sel)}
            got = {x["series"]: dict(zip(x["ts"], x["v"]))
                   for x in body.get("series", [])} if st == 200 else None
            want = {x: d for x, d in want.items() if d}
            got = {x: d for x, d in (got or {}).items() if d}
            why = self.equal(got, want) if st == 200 else "status %s" % st
            if why:
                raise Failure("values of %s in [%d, %d): %s" % (sel, start, end, why))
        self.count("ranges")

    def check_series(self):
        st, body = self.f.query({"op": "series", "series": "mk.*"})
        keys = self.m.series()
        # A series is listed while it has points: one whose every point
        # a range delete took is gone at once, as after a restart.
        got = {s["series"]: s for s in body.get("series", [])}
        check(st == 200 and sorted(got) == keys,
              "series lists %s, model %s" % (sorted(got), keys))
        for k in keys:
            pts = self.m.points(k)
            s = got[k]
            if not (s["points"] == len(pts) and s["last"] == fmt(pts[-1][0])
                    and same(s["last_value"], num(pts[-1][1]))):
                raise Failure("series %s: %s, want %d points, last %s %r"
                              % (k, s, len(pts), fmt(pts[-1][0]), pts[-1][1]))

    def check_points(self):
        keys = self.m.series()
        if not keys:
            return
        k = self.r.choice(keys)
        st, body = self.f.query({"op": "points", "series": k, "ns": True})
        pts = self.m.points(k)
        got = body["series"][0]["points"] if st == 200 else []
        ok = len(got) == len(pts) and all(
            g["ns"] == t and g["timestamp"] == fmt(t) and same(g["value"], num(v))
            for g, (t, v) in zip(got, pts))
        check(ok, "points of %s with ns: %d, model %d" % (k, len(got), len(pts)))

    def check_stats(self):
        r = self.r
        keys = self.m.series()
        if not keys:
            return
        k = r.choice(keys)
        pts = self.m.points(k)
        start = end = None
        req = {"op": "stats", "series": k, "exact": True}
        if r.random() < 0.5:
            a, b = r.choice(pts)[0], r.choice(pts)[0]
            start, end = min(a, b), max(a, b) + r.choice([1, NS])
            req.update(start=start, end=end)
            pts = self.m.points(k, start, end)
        ps = r.sample([0, 1, 12.5, 25, 33.3, 75, 99.9, 100], r.randint(0, 4))
        if ps:
            req["percentiles"] = ps
        st, body = self.f.query(req)
        check(st == 200, "stats %s: %s" % (k, st))
        vals = [v for _, v in pts]
        mo = moments(vals)
        want = {"count": mo["count"]}
        if vals:
            s = sorted(vals)
            want.update(sum=num(mo["sum"]), min=num(mo["min"]),
                        max=num(mo["max"]), mean=num(mo["mean"]),
                        m2=num(mo["m2"]), std=num(mo["std"]),
                        first=fmt(pts[0][0]), last=fmt(pts[-1][0]))
            for p in [50, 90, 95, 99] + ps:
                key = "p%s" % (("%d" % p) if p == int(p) else repr(p))
                want[key] = num(pct(s, p))
        bad = {x: (body.get(x), w) for x, w in want.items()
               if not same(body.get(x), w)}
        if bad:
            raise Failure("exact stats of %s [%s, %s) (%d points): %s"
                          % (k, start, end, len(vals), bad))
        self.count("stats")

    def check_rollup_stats(self):
        r = self.r
        keys = self.m.series()
        if not keys:
            return
        k = r.choice(keys)
        pts = self.m.points(k)
        req = {"op": "stats", "series": k, "rollups": True}
        start = end = None
        if r.random() < 0.5:
            a, b = r.choice(pts)[0], r.choice(pts)[0]
            start, end = min(a, b), max(a, b) + r.choice([1, NS, 3600 * NS])
            req.update(start=start, end=end)
            pts = self.m.points(k, start, end)
        st, body = self.f.query(req)
        vals = [v for _, v in pts]
        check(st == 200, "stats from rollups %s: %s" % (k, st))
        if not vals:
            check(body["count"] == 0, "rollup stats %s: count 0" % k)
            return
        mo = moments(vals)
        want = {"count": mo["count"], "min": num(mo["min"]),
                "max": num(mo["max"]), "first": fmt(pts[0][0]),
                "last": fmt(pts[-1][0])}
        bad = {x: (body.get(x), w) for x, w in want.items()
               if not same(body.get(x), w)}
        mag = fsum(abs(v) for v in vals)
        if math.isfinite(mag) and mag < 1e300:
            exact = fsum(vals)
            if body.get("sum") is None or \
                    abs(body["sum"] - exact) > 1e-9 * mag + 1e-300:
                bad["sum"] = (body.get("sum"), exact)
        if bad:
            raise Failure("stats from rollups of %s [%s, %s) (%d points): %s"
                          % (k, start, end, len(vals), bad))
        self.count("rollup stats")

    def check_aggregate(self):
        r = self.r
        keys = self.m.series()
        if not keys:
            return
        k = r.choice(keys)
        pts = self.m.points(k)
        name, step = r.choice(INTERVALS)
        fn = r.choice(FNS)
        # A range of at most 100,000 intervals around some points.
        a = r.choice(pts)[0]
        start = a - r.randrange(50000) * step // 2
        end = min(a + r.randrange(1, 50000) * step, 2**63 - 1)
        start = max(start, 0)
        rollups = step % (60 * NS) == 0 and r.random() < 0.4
        req = {"op": "aggregate", "series": k, "interval": name,
               "aggregation": fn, "start": start, "end": end}
        if rollups:
            req["rollups"] = True
        st, body = self.f.query(req, 30000)
        pts = self.m.points(k, start, end)
        if st != 200:
            raise Failure("aggregate %s %s %s: %s %s" % (k, name, fn, st,
                                                       str(body)[:300]))
        buckets = {}
        for t, v in pts:
            buckets.setdefault(t // step * step, []).append((t, v))
        got = body["buckets"]
        if [b["timestamp"] for b in got] != [fmt(t) for t in sorted(buckets)]:
            raise Failure("aggregate %s %s %s [%d, %d): buckets %s, want %s"
                          % (k, name, fn, start, end,
                             [b["timestamp"] for b in got][:5],
                             [fmt(t) for t in sorted(buckets)][:5]))
        for b, t in zip(got, sorted(buckets)):
            bp = buckets[t]
            vals = [v for _, v in bp]
            mo = moments(vals)
            if b["count"] != len(vals):
                raise Failure("aggregate %s %s %s bucket %s: count %s, want %d"
                              % (k, name, fn, fmt(t), b["count"], len(vals)))
            if rollups:
                want = {"min": mo["min"], "max": mo["max"], "count": float(len(vals)),
                        "first": vals[0], "last": vals[-1]}.get(fn)
                if fn in ("sum", "mean"):
                    w = mo["sum"] if fn == "sum" else mo["sum"] / len(vals)
                    mag = fsum(abs(v) for v in vals)
                    if math.isfinite(mag) and mag < 1e300 and (
                            b["value"] is None or
                            abs(b["value"] - w) > 1e-9 * mag / (1 if fn == "sum" else len(vals)) + 1e-300):
                        raise Failure("aggregate from rollups %s %s %s bucket %s: %r, want %r"
                                      % (k, name, fn, fmt(t), b["value"], w))
                if want is None:
                    continue
                want = num(want)
            else:
                if fn == "mean":
                    want = mo["sum"] / len(vals)
                elif fn in ("min", "max", "sum", "std"):
                    want = mo[fn]
                elif fn == "count":
                    want = float(len(vals))
                elif fn == "first":
                    want = vals[0]
                elif fn == "last":
                    want = vals[-1]
                else:
                    want = pct(sorted(vals), float(fn[1:]))
                want = num(want)
            if not same(b["value"], want):
                raise Failure("aggregate %s %s %s%s bucket %s (%d points): %r, want %r"
                              % (k, name, fn, " (rollups)" if rollups else "",
                                 fmt(t), len(vals), b["value"], want))
        self.count("aggregate")

    def check_bounded(self):
        """Aggregation of one series from raw points over a rolling window
        or local days (agg_interval.c s_bounded)."""
        r = self.r
        keys = self.m.series()
        if not keys:
            return
        k = r.choice(keys)
        allpts = self.m.points(k)
        fn = r.choice(FNS)
        a = r.choice(allpts)[0]
        day = 86400 * NS
        # The intervals run to the end of the (UTC) day of the series'
        # last point (its rollup span): stay inside it.
        span_end = allpts[-1][0] // day * day + day
        if r.random() < 0.5:
            name, step = r.choice(INTERVALS[:5])
            wname, window = r.choice([("10s", 10 * NS), ("1min", 60 * NS),
                                      ("10min", 600 * NS), ("1h", 3600 * NS)])
            if window < step:
                wname, window = name, step
            tz = None
            start = max(0, a - r.randrange(1, 3000) * step)
            end = min(span_end, a + r.randrange(1, 3000) * step)
        else:
            from zoneinfo import ZoneInfo
            name, step, wname, window = "1d", day, None, 0
            tz = r.choice(["Europe/Berlin", "America/New_York",
                           "Asia/Kolkata", "Australia/Lord_Howe", "UTC"])
            start = max(0, a - r.randrange(1, 40) * day)
            end = min(span_end, a + r.randrange(1, 40) * day)
            if start >= end or end > 4102444800 * NS:
                return
        req = {"op": "aggregate", "series": k, "interval": name,
               "aggregation": fn, "start": start, "end": end, "exact": True}
        if wname:
            req["window"] = wname
        if tz:
            req["tz"] = tz
        st, body = self.f.query(req, 30000)
        if st != 200:
            raise Failure("aggregate %s: %s %s" % (req, st, str(body)[:300]))
        pts = self.m.points(k, start, end)
        want = []
        if tz:
            z = ZoneInfo(tz)
            days = {}
            for t, v in pts:
                d = datetime.fromtimestamp(t // NS, z).replace(
                    hour=0, minute=0, second=0, microsecond=0, fold=0)
                b = int(d.timestamp()) * NS
                days.setdefault(b, []).append(v)
            for b in sorted(days):
                want.append((fmt(b), days[b]))
        else:
            lo = max(start, allpts[0][0] // (60 * NS) * 60 * NS)
            b = lo // step * step
            tss = [t for t, _ in pts]
            while b < end:
                wa, wz = max(b + step - window, start), min(b + step, end)
                vals = [v for _, v in pts[bisect.bisect_left(tss, wa):
                                          bisect.bisect_left(tss, wz)]]
                if vals:
                    want.append((fmt(b), vals))
                b += step
                if len(want) > 200000 or b - lo > 10**7 * step:
                    return
        got = body["buckets"]
        gts = [x["timestamp"] for x in got]
        if gts != [w[0] for w in want]:
            raise Failure("aggregate %s: buckets %s, want %s"
                          % (req, gts[:4], [w[0] for w in want][:4]))
        for x, (t, vals) in zip(got, want):
            # A window of one interval is the plain case (s_raw_steps).
            w = num(bucket_value(fn, vals, bool(tz) or window != step))
            if (x["count"] != len(vals) or not same(x["value"], w)) and \
                    os.environ.get("SP_VERBOSE"):
                print("model points of the bucket: %s" % [
                    (t_, v_) for t_, v_ in pts if t_ // step * step == iso_ns(t)])
            if x["count"] != len(vals) or not same(x["value"], w):
                raise Failure("aggregate %s bucket %s (%d points): %r, %r "
                              "points, want %r" % (req, t, len(vals), x["value"],
                                                   x["count"], w))
        self.count("window" if wname else "local days")

    def check_aggregate_multi(self):
        """Aggregation over several series, from raw points or rollups:
        count, min, max and (raw) percentiles exact, first and last where
        one series alone holds the earliest or latest time, sum and mean
        up to rounding (the order of the series' points at one time is
        not fixed)."""
        r = self.r
        sel, tags = r.choice([("mk.*", None), ("mk.b", None),
                              ("mk.*", {"dev": "1"}), ("mk.?", {"room": ""})])
        keys = self.m.series(sel, tags)
        if not keys:
            return
        pts = sorted(p for k in keys for p in self.m.points(k))
        name, step = r.choice(INTERVALS[1:])
        fn = r.choice(FNS)
        a = r.choice(pts)[0]
        start = max(0, a - r.randrange(20000) * step)
        end = min(a + r.randrange(1, 20000) * step, 2**63 - 1)
        rollups = step % (60 * NS) == 0 and r.random() < 0.5
        req = {"op": "aggregate", "series": sel, "interval": name,
               "aggregation": fn, "start": start, "end": end}
        if tags:
            req["tags"] = tags
        if rollups:
            req["rollups"] = True
        st, body = self.f.query(req, 30000)
        if st != 200:
            raise Failure("aggregate %s: %s %s" % (req, st, str(body)[:300]))
        buckets = {}
        for t, v in pts:
            if start <= t < end:
                buckets.setdefault(t // step * step, []).append((t, v))
        got = body["buckets"]
        if [b["timestamp"] for b in got] != [fmt(t) for t in sorted(buckets)]:
            raise Failure("aggregate %s: buckets %s, want %s" % (
                req, [b["timestamp"] for b in got][:5],
                [fmt(t) for t in sorted(buckets)][:5]))
        for b, t in zip(got, sorted(buckets)):
            bp = buckets[t]
            vals = [v for _, v in bp]
            want = None
            if fn in ("min", "max", "count"):
                want = bucket_value(fn, vals, False)
            elif fn[0] == "p" and not rollups:
                want = bucket_value(fn, vals, False)
            elif fn == "first" and (len(bp) == 1 or bp[0][0] != bp[1][0]):
                want = bp[0][1]
            elif fn == "last" and (len(bp) == 1 or bp[-1][0] != bp[-2][0]):
                want = bp[-1][1]
            ok = b["count"] == len(vals)
            if want is not None:
                ok = ok and same(b["value"], num(want))
            elif fn in ("sum", "mean"):
                w = fsum(vals) / (1 if fn == "sum" else len(vals))
                mag = fsum(abs(v) for v in vals) / (1 if fn == "sum" else len(vals))
                if math.isfinite(mag) and mag < 1e300:
                    ok = ok and b["value"] is not None and \
                        abs(b["value"] - w) <= 1e-9 * mag + 1e-300
                want = w
            if not ok:
                raise Failure("aggregate %s bucket %s (%d points): %r, %r "
                              "points, want %r" % (req, fmt(t), len(vals),
                                                   b["value"], b["count"], want))
        self.count("aggregate of several")

    def check_multi(self):
        """Exact stats over a glob or tags: count, min, max, first, last
        and percentiles exact whatever the order of the series; sum and
        mean up to rounding."""
        r = self.r
        sel, tags = r.choice([("mk.*", None), ("mk.b", None), ("mk.*", {"dev": "1"}),
                              ("mk.*", {"room": ""}), ("mk.?", {"dev": "2"})])
        keys = self.m.series(sel, tags)
        req = {"op": "stats", "series": sel, "exact": True,
               "percentiles": [10, 33.3]}
        if tags:
            req["tags"] = tags
        st, body = self.f.query(req)
        if not keys:
            check(st == 404, "stats of %s %s: 404 (%s)" % (sel, tags, st))
            return
        pts = [p for k in keys for p in self.m.points(k)]
        vals = sorted(v for _, v in pts)
        want = {"count": len(vals), "matched": len(keys), "min": num(vals[0]),
                "max": num(vals[-1]), "first": fmt(min(pts)[0]),
                "last": fmt(max(pts)[0])}
        for p in (10, 33.3, 50, 90, 95, 99):
            want["p%s" % ("%d" % p if p == int(p) else p)] = num(pct(vals, p))
        bad = {x: (body.get(x), w) for x, w in want.items()
               if not same(body.get(x), w)}
        mag = fsum(abs(v) for v in vals)
        if math.isfinite(mag) and mag < 1e300 and (
                body.get("sum") is None or
                abs(body["sum"] - fsum(vals)) > 1e-9 * mag + 1e-300):
            bad["sum"] = (body.get("sum"), fsum(vals))
        if st != 200 or bad:
            raise Failure("stats of %s %s (%d series, %d points): %s %s"
                          % (sel, tags, len(keys), len(vals), st, bad))
        self.count("stats of several")

    def step_check(self):
        self.sync()
        r = self.r
        c = r.randrange(10)
        if c == 9:
            self.check_aggregate_multi()
        elif c == 8:
            self.check_range()
        elif c == 6:
            self.check_bounded()
        elif c == 7:
            self.check_multi()
        elif c == 0:
            self.check_raw("step %d" % self.seq)
            self.check_series()
        elif c == 1:
            self.check_points()
        elif c == 2:
            self.check_stats()
        elif c == 3:
            self.check_rollup_stats()
        else:
            self.check_aggregate()


def test():
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    r = random.Random(seed)
    p = Platform(daemons=("aggd",))
    p.extra = {"aggd": ["--checkpoint-mb", "1", "--checkpoint-every",
                        r.choice(["1s", "1s", "3s"])]}
    # Now and then a checkpoint's fsyncs or a compaction's thread last
    # (aggd.8 ENVIRONMENT), so that kills and restarts land inside them.
    hooks = r.choice([{}, {}, {"AGGD_TEST_CKPT_PAUSE_MS": "300"},
                      {"AGGD_TEST_COMPACT_PAUSE_MS": "40"},
                      {"AGGD_TEST_COMPACT_PAUSE_MS": "20",
                       "AGGD_TEST_CKPT_PAUSE_MS": "100"}])
    print("aggd %s %s" % (" ".join(p.extra["aggd"]), hooks))
    os.environ.update(hooks)
    os.makedirs(p.run, exist_ok=True)
    m = Monkey(p, r, seed)
    p.start()
    try:
        run(m, seed, hooks)
    except BaseException as e:
        if isinstance(e, Failure) and "aggd" in p.logs:
            sys.stdout.write(p.log("aggd")[-6000:])
        print("seed %d failed" % seed)
        p.kill_all()  # leave no aggd running
        raise
    finally:
        m.f.close()
    p.stop()


def run(m, seed, hooks):
    r = m.r
    t_end = time.time() + SECONDS
    steps = 0
    while steps < STEPS and time.time() < t_end:
        steps += 1
        c = r.randrange(100)
        if os.environ.get("SP_VERBOSE"):
            print("step %d: %d (seq %d)" % (steps, c, m.seq))
        if c < 55:
            m.step_batch()
        elif c < 80:
            m.step_check()
        elif c < 86:
            m.step_delete()
        elif c < 91:
            m.step_checkpoints()
        elif c < 96:
            m.step_kill(True)
        elif c < 98:
            m.step_kill(False)
        else:
            m.step_backup()
    m.sync()
    m.check_raw("at the end")
    m.check_series()
    for _ in range(3):
        m.check_bounded()
        m.check_multi()
        m.check_aggregate_multi()
        m.check_stats()
        m.check_aggregate()
        m.check_rollup_stats()
    st = status(m.f)
    check(st["bad_batches"] == m.bad, "aggd refused the %d batches with a "
          "NaN or an infinity (bad_batches %d)" % (m.bad, st["bad_batches"]))
    m.restart(False)
    for k in hooks:
        del os.environ[k]
    npts = sum(len(d) for d in m.m.data.values())
    print("seed %d: %d steps, %d batches, %d points in %d series; %s"
          % (seed, steps, m.seq, npts, len(m.m.series()),
             ", ".join("%s %d" % kv for kv in sorted(m.counts.items()))))
    print("aggd before the last restart: %s" % ", ".join(
        "%s %s" % (k, st.get(k)) for k in (
            "checkpoints", "chunks", "chunk_compactions", "compacted_chunks",
            "compactions_dropped", "reseals", "head_merge_points")))


if __name__ == "__main__":
    main(test)
