#!/usr/bin/env python3
"""A model-based randomized test of alertd's rule engine, in filter mode.

Random rule sets within alertd.8's RULE LANGUAGE (thresholds with every
comparison, arithmetic, window functions, and/or/not, glob and selector
metrics, joins of two metrics, time_to() over a window, anomaly() and
alarm() of the scores the lines carry, deadman rules with age() and
nodata(), "for", "clear when", severity steps with "back after") and
random reading
streams (values that cross and re-cross the thresholds, equal
timestamps, gaps, silences, late readings) go through
`alertd --stdin --stdout`; its events are compared with those of an
independent Python model written from alertd.8 (not from the C code).

Filter mode is in event time (alertd.8: rules are evaluated at the
timestamp of each reading, deadman rules just before a reading that moves
the stream's time on), so the test needs no sleeps and a seed gives the
same run every time. The seed is printed; ALERT_MODEL_SEED=N repeats a
run, ALERT_MODEL_RUNS, ALERT_MODEL_GROUPS and ALERT_MODEL_READINGS size
it, ALERT_MODEL_LATE=0 leaves late readings out (every other run has
them). make test runs 4 runs of 25 groups (a few seconds under ASan);
SP_FULL=1 (make test-full) 40, within 300 s. On a mismatch the group is
run alone, and its rules, files and the events around the first
difference are printed.

Each group is a few rules over a few series of its own (metric names
prefixed with the group), so many groups share one alertd process.
"""
import bisect
import fnmatch
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import binary, check, have, main  # noqa: E402

SEVERITIES = ("info", "warning", "error", "critical")
T0 = 1704067200000  # 2024-01-01T00:00:00Z, epoch ms
NS = 1000000  # the model counts nanoseconds, as alertd: a deadman tick
# is 1 ns before the reading that moves the stream's clock
FNS = ("avg", "min", "max", "sum", "count", "std", "p50", "p95", "rate",
       "delta")
OPS = (">", ">=", "<", "<=", "==", "!=")


def dur_text(ms):
    for unit, n in (("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms % n == 0:
            return "%d%s" % (ms // n, unit)
    return "%dms" % ms


def num_text(x):
    if x == int(x):
        return "%d" % x
    return repr(x)


# ---------------------------------------------------------------- the model
#
# Expressions are tuples:
#   ("num", x)  ("last", metric)  ("fn", name, metric, window_ms)
#   ("bin", op, a, b) for + - * /   ("neg", a)
#   ("cmp", op, a, b)  ("and", a, b)  ("or", a, b)  ("not", a)
# A metric is (name_or_glob, selector dict, is_glob).
# Numbers are floats or None (unknown); truth is True, False or None
# (Kleene logic, alertd.8 "Truth is three-valued").


def metric_text(m):
    name, sel, glob = m
    s = '"%s"' % name if glob else name
    if sel:
        s += "{" + ",".join("%s=%s" % kv for kv in sorted(sel.items())) + "}"
    return s


def expr_text(e):
    k = e[0]
    if k in ("num", "dur"):
        return num_text(e[1]) if k == "num" else dur_text(e[1])
    if k == "last":
        return metric_text(e[1])
    if k == "fn":
        return "%s(%s, %s)" % (e[1], metric_text(e[2]), dur_text(e[3]))
    if k == "bin":
        return "(%s %s %s)" % (expr_text(e[2]), e[1], expr_text(e[3]))
    if k == "neg":
        return "-%s" % expr_text(e[1])
    if k == "age":
        return "age(%s)" % metric_text(e[1])
    if k == "time_to":
        return "time_to(%s, %s, %s)" % (metric_text(e[1]), num_text(e[2]),
                                        dur_text(e[3]))
    if k in ("anomaly", "alarm"):
        if e[2] is None:
            return "%s(%s)" % (k, metric_text(e[1]))
        return "%s(%s, %s)" % (k, metric_text(e[1]), dur_text(e[2]))
    if k == "nodata":
        return "nodata(%s, %s)" % (metric_text(e[1]), dur_text(e[2]))

    if k == "cmp":
        return "%s %s %s" % (expr_text(e[2]), e[1], expr_text(e[3]))
    if k in ("and", "or"):
        return "(%s %s %s)" % (expr_text(e[1]), k, expr_text(e[2]))
    if k == "not":
        return "not (%s)" % expr_text(e[1])
    raise ValueError(k)


def metrics_of(e, out):
    if e[0] in ("last", "age", "nodata", "anomaly", "alarm", "time_to"):
        out.append(e[1])
    elif e[0] == "fn":
        out.append(e[2])
    else:
        for x in e[1:]:
            if isinstance(x, tuple):
                metrics_of(x, out)
    return out


def windows_of(e, out):
    if e[0] == "fn":
        out.append(e[3])
    elif e[0] in ("anomaly", "alarm") and e[2] is not None:
        out.append(e[2])
    elif e[0] == "time_to":
        out.append(e[3])
    else:
        for x in e[1:]:
            if isinstance(x, tuple):
                windows_of(x, out)
    return out


def s_deadman(e):
    if e[0] in ("age", "nodata"):
        return True
    return any(isinstance(x, tuple) and s_deadman(x) for x in e[1:])


class Rule:
    def __init__(self, name, cond, for_ms=0, clear=None, steps=None,
                 back=None):
        self.name = name
        self.cond = cond
        self.for_ms = for_ms
        self.clear = clear
        # [(severity, after_ms)], the first step's after is 0
        self.steps = steps or [("warning", 0)]
        self.back = back
        ms = metrics_of(cond, [])
        if clear is not None:
            metrics_of(clear, ms)
        self.metrics = ms
        # One metric (one name, however often and with whatever
        # selectors it is named): the scope is the series key. Several:
        # joined on equal tags, the scope is the tag set.
        self.single = len(set(m[0] for m in ms)) == 1
        self.deadman = s_deadman(cond) or (clear is not None and
                                           s_deadman(clear))

    def text(self):
        s = "%s: %s" % (self.name, expr_text(self.cond))
        if self.for_ms:
            s += " for " + dur_text(self.for_ms)
        if self.clear is not None:
            s += " clear when " + expr_text(self.clear)
        if self.steps != [("warning", 0)] or self.back is not None:
            items = [self.steps[0][0]]
            if self.steps[0][1]:
                items[0] += " after " + dur_text(self.steps[0][1])
            items += ["%s after %s" % (sev, dur_text(a))
                      for sev, a in self.steps[1:]]
            if self.back is not None:
                items.append("back after " + dur_text(self.back))
            s += " severity " + ", ".join(items)
        return s


def parse_key(key):
    """name{k=v,...} -> (name, {k: v})"""
    if "{" not in key:
        return key, {}
    name, rest = key.split("{", 1)
    tags = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if kv)
    return name, tags


def make_key(name, tags):
    if not tags:
        return name
    return name + "{" + ",".join("%s=%s" % kv
                                 for kv in sorted(tags.items())) + "}"


def metric_matches(m, name, tags):
    mname, sel, glob = m
    if glob:
        if not fnmatch.fnmatchcase(name, mname):
            return False
    elif name != mname:
        return False
    return all(tags.get(k) == v for k, v in sel.items())


class Series:
    """The points of one series: one per timestamp (a reading with the
    timestamp of an earlier one replaces it), kept in time order, those
    older than the longest window of any rule dropped (alertd.8,
    --window-points)."""

    def __init__(self):
        self.ts = []
        self.v = []
        self.sc = []  # (anomaly score, alarm) of each point, or None

    def add(self, ts, v, retain, score=None):
        i = bisect.bisect_left(self.ts, ts)
        if i < len(self.ts) and self.ts[i] == ts:
            self.v[i] = v
            if score is not None:
                self.sc[i] = score
        else:
            self.ts.insert(i, ts)
            self.v.insert(i, v)
            self.sc.insert(i, score)
        latest = self.ts[-1]
        floor = latest - retain
        j = bisect.bisect_right(self.ts, floor)
        j = min(j, len(self.ts) - 1)  # the latest point always stays
        if j > 0:
            del self.ts[:j]
            del self.v[:j]
            del self.sc[:j]

    def anomaly(self, now, w, alarm):
        """The score (alarm: 1 or 0) of the latest reading at or before
        now (w None; 0 when it has none), or the highest of the window
        (now - w, now]; unknown without a reading at or before now."""
        hi = bisect.bisect_right(self.ts, now)
        if hi == 0:
            return None
        lo = hi - 1 if w is None else bisect.bisect_right(self.ts, now - w)
        best = 0.0
        for x in self.sc[lo:hi]:
            if x is not None:
                best = max(best, (1.0 if x[1] else 0.0) if alarm else x[0])
        return best

    def last(self, now):
        """The latest value at or before now."""
        i = bisect.bisect_right(self.ts, now)
        return self.v[i - 1] if i else None

    def window(self, now, w):
        """The values of (now - w, now]."""
        lo = bisect.bisect_right(self.ts, now - w)
        hi = bisect.bisect_right(self.ts, now)
        return self.ts[lo:hi], self.v[lo:hi]


def percentile(vals, q):
    """Linear between closest ranks."""
    s = sorted(vals)
    if not s:
        return None
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def window_fn(fn, ts, vs):
    n = len(vs)
    if fn == "count":
        return float(n)
    if fn == "sum":
        return float(sum(vs))
    if n == 0:
        return None
    if fn == "avg":
        return sum(vs) / n
    if fn == "min":
        return float(min(vs))
    if fn == "max":
        return float(max(vs))
    if fn == "std":
        if n < 2:
            return None
        mean = sum(vs) / n
        return math.sqrt(sum((x - mean) ** 2 for x in vs) / (n - 1))
    if fn in ("p50", "p95"):
        return percentile(vs, int(fn[1:]) / 100.0)
    if fn == "delta":
        return None if n < 2 else vs[-1] - vs[0]
    if fn == "rate":
        if n < 2 or ts[-1] == ts[0]:
            return None
        return (vs[-1] - vs[0]) / ((ts[-1] - ts[0]) / 1e9)
    raise ValueError(fn)


def time_to(ts, vs, target, now):
    """Seconds until the least-squares line through the points reaches
    target, from the line's value now: infinite when it is flat or moves
    away, 0 when it is there, unknown below two distinct times."""
    if len(set(ts)) < 2:
        return None
    n = len(ts)
    xs = [(t - now) / 1e9 for t in ts]
    mx = sum(xs) / n
    my = sum(vs) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, vs))
    slope = sxy / sxx
    at_now = my - slope * mx
    if at_now == target:
        return 0.0
    if slope == 0 or (target - at_now) / slope < 0:
        return math.inf
    return (target - at_now) / slope


class Alert:
    def __init__(self):
        self.state = None  # None, "pending", "firing"
        self.resolved = None  # time of the evaluation that resolved it


class Model:
    def __init__(self, rules):
        self.rules = rules
        ws = [w for r in rules for e in (r.cond, r.clear) if e is not None
              for w in windows_of(e, [])]
        self.retain = max(ws) if ws else 0
        self.series = {}
        self.alerts = {}
        self.events = []
        self.clock = None  # the latest reading time seen
        self.tick = None  # the latest deadman tick
        self.dead = [(r, []) for r in rules if r.deadman]  # and its series

    # -- evaluation
    def num(self, e, env, now):
        k = e[0]
        if k == "num":
            return e[1]
        if k == "dur":
            return e[1] / 1000.0  # a duration in an expression: seconds
        if k == "last":
            s = self.series.get(env(e[1]))
            return s.last(now) if s else None
        if k == "fn":
            s = self.series.get(env(e[2]))
            if s is None or s.last(now) is None:
                return None  # no data for the series yet (at now)
            ts, vs = s.window(now, e[3] * NS)
            return window_fn(e[1], ts, vs)
        if k in ("anomaly", "alarm"):
            s = self.series.get(env(e[1]))
            if s is None:
                return None
            return s.anomaly(now, None if e[2] is None else e[2] * NS,
                             k == "alarm")
        if k == "time_to":
            s = self.series.get(env(e[1]))
            if s is None or s.last(now) is None:
                return None
            ts, vs = s.window(now, e[3] * NS)
            return time_to(ts, vs, e[2], now)
        if k == "age":
            s = self.series.get(env(e[1]))
            i = bisect.bisect_right(s.ts, now) if s else 0
            return (now - s.ts[i - 1]) / 1e9 if i else None
        if k == "neg":
            a = self.num(e[1], env, now)
            return None if a is None else -a
        if k == "bin":
            a = self.num(e[2], env, now)
            b = self.num(e[3], env, now)
            if a is None or b is None:
                return None
            op = e[1]
            if op == "+":
                r = a + b
            elif op == "-":
                r = a - b
            elif op == "*":
                r = a * b
            else:
                if b == 0:
                    return None
                r = a / b
            return None if math.isnan(r) else r
        raise ValueError(k)

    def truth(self, e, env, now):
        k = e[0]
        if k == "cmp":
            a = self.num(e[2], env, now)
            b = self.num(e[3], env, now)
            if a is None or b is None:
                return None
            return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b,
                    "==": a == b, "!=": a != b}[e[1]]
        if k == "nodata":
            a = self.num(("age", e[1]), env, now)
            return None if a is None else a > e[2] / 1000.0
        if k == "not":
            a = self.truth(e[1], env, now)
            return None if a is None else not a
        if k == "and":
            a = self.truth(e[1], env, now)
            b = self.truth(e[2], env, now)
            if a is False or b is False:
                return False
            return None if a is None or b is None else True
        if k == "or":
            a = self.truth(e[1], env, now)
            b = self.truth(e[2], env, now)
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        raise ValueError(k)

    # -- the stream
    def reading(self, key, ts, value, score=None):
        ts *= NS
        # Deadman rules: when the stream's time moves on (at most once a
        # second), every series they match is evaluated just before the
        # reading (alertd.8, age and nodata).
        if self.clock is not None and ts > self.clock and (
                self.tick is None or ts - self.tick >= 1000 * NS):
            self.tick = ts - 1
            self.deadman(ts - 1)
        self.clock = ts if self.clock is None else max(self.clock, ts)
        if key not in self.series:
            self.series[key] = Series()
            name, tags = parse_key(key)
            for r, keys in self.dead:  # a series is known from now on
                if metric_matches(r.metrics[0], name, tags):
                    keys.append(key)
        s = self.series[key]
        latest = s.ts[-1] if s.ts else None
        s.add(ts, value, self.retain * NS, score)
        if latest is not None and ts < latest:
            return  # late: kept for the windows, not evaluated
        name, tags = parse_key(key)
        for r in self.rules:
            if not any(metric_matches(m, name, tags) for m in r.metrics):
                continue
            if r.single:
                scope = key

                def env(m, key=key, name=name, tags=tags):
                    # A selector the series does not have: unknown.
                    return key if metric_matches(m, name, tags) else None
            else:
                scope = make_key("", tags)

                def env(m, tags=tags):
                    n, sel, _ = m
                    if any(tags.get(k) != v for k, v in sel.items()):
                        return None
                    return make_key(n, tags)
            self.evaluate(r, scope, key, ts, value, env)

    def deadman(self, now):
        for r, keys in self.dead:
            for key in keys:
                self.evaluate(r, key, key, now, self.series[key].last(now),
                              lambda m, key=key: key)

    def emit(self, r, scope, key, state, a, ts, value):
        self.events.append({"rule": r.name, "scope": scope, "series": key,
                            "state": state, "severity": r.steps[a.step][0],
                            "ts": ts // NS, "value": value,
                            "since": a.since // NS})

    def evaluate(self, r, scope, key, now, value, env):
        a = self.alerts.setdefault((r.name, scope), Alert())
        c = self.truth(r.cond, env, now)
        if a.state is not None:
            # A reading older than the alert's latest evaluation (of a
            # joined rule, from another series) does not change it.
            if now < a.updated:
                return
            a.updated = now
        if a.state is None:
            if c is not True:
                return
            # Nor does one raise again, in the past, a joined rule's
            # alert resolved by a later evaluation (alertd.8).
            if not r.single and a.resolved is not None and now < a.resolved:
                return
            a.updated = now
            a.since = now
            a.step = 0
            if r.for_ms == 0:
                self.fire(r, scope, key, a, now, value)
            else:
                a.state = "pending"
                self.emit(r, scope, key, "pending", a, now, value)
            return
        if a.state == "pending":
            if c is None:
                return
            if c is False:
                self.emit(r, scope, key, "resolved", a, now, value)
                a.state, a.resolved = None, now
            elif now - a.since >= r.for_ms * NS:
                self.fire(r, scope, key, a, now, value)
            return
        # firing
        if r.clear is not None:
            if self.truth(r.clear, env, now) is True:
                self.emit(r, scope, key, "resolved", a, now, value)
                a.state, a.resolved = None, now
                return
        elif c is False:
            self.emit(r, scope, key, "resolved", a, now, value)
            a.state, a.resolved = None, now
            return
        if r.back is not None:
            # With "back after" a firing alert does not step up while its
            # condition is false; once false for "back" it goes back to
            # the first step, and its steps count anew from the moment
            # the condition holds again.
            if c is False:
                if a.false_since is None:
                    a.false_since = now
                if now - a.false_since >= r.back * NS:
                    a.backed = True
                    if a.step > 0:
                        was = r.steps[a.step][0]
                        a.step = 0
                        if was != r.steps[0][0]:
                            self.emit(r, scope, key, "firing", a, now, value)
                return
            if c is True and a.false_since is not None:
                a.false_since = None
                if a.backed:
                    a.backed = False
                    a.base = now
            if a.backed:
                return  # unknown since it went back: no step counts yet
        j = a.step
        while j + 1 < len(r.steps) and \
                now - a.base >= r.steps[j + 1][1] * NS:
            j += 1
        if j > a.step:
            # Several steps passed since the last evaluation: one
            # announcement, of the latest; a step to the severity it
            # already has is none.
            was = r.steps[a.step][0]
            a.step = j
            if r.steps[j][0] == was:
                return
            self.emit(r, scope, key, "firing", a, now, value)

    def fire(self, r, scope, key, a, now, value):
        a.state = "firing"
        a.step = 0
        a.base = now
        a.false_since = None
        a.backed = False
        self.emit(r, scope, key, "firing", a, now, value)


# ------------------------------------------------------------ generation

class Gen:
    def __init__(self, rng, gid, late):
        self.rng = rng
        self.gid = gid
        self.late = late
        self.names = ["g%d_temp" % gid, "g%d_hum" % gid, "g%d_tank" % gid]
        self.devices = [("d1", "a"), ("d2", "a"), ("d3", "b")]

    def dur(self, choices):
        return self.rng.choice(choices)

    def metric(self, name=None, allow_glob=True, allow_sel=True):
        rng = self.rng
        if allow_glob and name is None and rng.random() < 0.12:
            pat = rng.choice(["g%d_t*" % self.gid, "g%d_?um" % self.gid,
                              "g%d_*" % self.gid])
            return (pat, self.selector() if allow_sel else {}, True)
        name = name or rng.choice(self.names)
        return (name, self.selector() if allow_sel else {}, False)

    def selector(self):
        r = self.rng.random()
        if r < 0.15:
            return {"device": self.rng.choice(self.devices)[0]}
        if r < 0.25:
            return {"site": self.rng.choice(["a", "b"])}
        return {}

    def threshold(self, lo, hi):
        rng = self.rng
        if lo == hi == 0:  # seconds, for time_to
            return float(rng.choice([10, 30, 60, 300, 3600]))
        if hi - lo <= 1:  # a score: in steps of 0.05
            return lo + rng.randint(0, 20) / 20.0
        x = rng.randint(lo, hi)
        if rng.random() < 0.15:
            x += 0.5
        return float(x)

    def atom(self, m):
        """(expression, low, high): a numeric term over metric m and the
        range its thresholds are drawn from."""
        rng = self.rng
        if rng.random() < 0.55:
            return ("last", m), 4, 16
        if rng.random() < 0.1:
            w = self.dur([10000, 30000, 60000, 120000])
            return ("time_to", m, float(rng.randint(0, 20)), w), 0, 0
        if rng.random() < 0.25:
            kind = "anomaly" if rng.random() < 0.7 else "alarm"
            w = None
            if rng.random() < 0.5:
                w = self.dur([5000, 10000, 30000, 60000])
            return (kind, m, w), 0, 1
        fn = rng.choice(FNS)
        w = self.dur([2000, 5000, 10000, 30000, 60000, 120000])
        rng_of = {"count": (0, 6), "sum": (10, 80), "std": (0, 4),
                  "rate": (-1, 1), "delta": (-4, 4)}
        lo, hi = rng_of.get(fn, (4, 16))
        return ("fn", fn, m, w), lo, hi

    def term(self, m):
        rng = self.rng
        e, lo, hi = self.atom(m)
        r = rng.random()
        if r < 0.08:
            k = float(rng.randint(1, 5))
            return ("bin", "+", e, ("num", k)), lo + k, hi + k
        if r < 0.14:
            return ("bin", "*", e, ("num", 2.0)), 2 * lo, 2 * hi
        if r < 0.18:
            k = float(rng.choice([0, 2]))  # 0: unknown, always
            return ("bin", "/", e, ("num", k)), lo / 2, hi / 2
        if r < 0.22:
            return ("neg", e), -hi, -lo
        if r < 0.30 and e[0] == "last":
            w = self.dur([5000, 10000, 30000])
            return ("bin", "-", e, ("fn", "avg", m, w)), -4, 4
        return e, lo, hi

    def cmp(self, m, op=None):
        rng = self.rng
        t, lo, hi = self.term(m)
        op = op or rng.choice(OPS)
        k = ("num", self.threshold(int(math.floor(lo)), int(math.ceil(hi))))
        if rng.random() < 0.1:  # the number on the left
            flip = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==",
                    "!=": "!="}
            return ("cmp", flip[op], k, t)
        return ("cmp", op, t, k)

    def cond(self, join):
        rng = self.rng
        if join:
            a = self.metric(self.names[0], False, rng.random() < 0.3)
            b = self.metric(self.names[1], False, rng.random() < 0.3)
            r = rng.random()
            if r < 0.5:
                return ("and", self.cmp(a), self.cmp(b)), a
            if r < 0.75:
                return ("or", self.cmp(a), self.cmp(b)), a
            return ("cmp", rng.choice([">", "<", ">="]),
                    ("bin", "-", ("last", a), ("last", b)),
                    ("num", float(rng.randint(-5, 5)))), a
        m = self.metric()
        r = rng.random()
        if r < 0.7:
            return self.cmp(m), m
        if r < 0.8:
            return ("not", self.cmp(m)), m
        op = rng.choice(["and", "or"])
        m2 = m
        if rng.random() < 0.4:  # the same name, another selector
            m2 = (m[0], self.selector(), m[2])
        return (op, self.cmp(m), self.cmp(m2)), m

    def deadman(self):
        """A deadman condition: nodata(m, d), or age(m) against a number
        or a duration, and a "clear when" for it."""
        rng = self.rng
        m = self.metric()
        d = self.dur([5000, 10000, 30000, 60000, 120000])
        if rng.random() < 0.5:
            cond = ("nodata", m, d)
        else:
            k = ("dur", d) if rng.random() < 0.5 else ("num", d / 1000.0)
            cond = ("cmp", rng.choice([">", ">="]), ("age", m), k)
        clear = ("cmp", "<", ("age", m), ("num", float(rng.randint(1, 5))))
        return cond, m, clear

    def rule(self, i):
        rng = self.rng
        join = rng.random() < 0.2
        if rng.random() < 0.12:
            cond, m, dclear = self.deadman()
        else:
            cond, m = self.cond(join)
            dclear = None
        for_ms = 0
        if rng.random() < 0.5:
            for_ms = self.dur([1000, 1500, 5000, 10000, 30000, 60000])
        clear = None
        if dclear is not None:
            if rng.random() < 0.3:
                clear = dclear
        elif rng.random() < 0.35:
            # Usually the other side of the threshold (hysteresis), now
            # and then anything.
            if cond[0] == "cmp" and cond[2][0] != "num" \
                    and cond[1] in (">", ">=", "<", "<=") \
                    and rng.random() < 0.8:
                op, t, k = cond[1], cond[2], cond[3][1]
                gap = float(rng.randint(1, 4))
                if op in (">", ">="):
                    clear = ("cmp", rng.choice(["<", "<="]), t,
                             ("num", k - gap))
                else:
                    clear = ("cmp", rng.choice([">", ">="]), t,
                             ("num", k + gap))
            else:
                mm = m if not join else self.metric(self.names[1], False,
                                                    False)
                clear = self.cmp(mm)
        steps = None
        back = None
        if rng.random() < 0.5:
            n = rng.randint(1, 4)
            sevs = sorted(rng.sample(range(4), n))
            afters = sorted(rng.sample([5000, 10000, 20000, 30000, 60000,
                                        90000, 120000], n - 1))
            if rng.random() < 0.2:  # any order, repeats too
                sevs = [rng.randrange(4) for _ in sevs]
            steps = [(SEVERITIES[sevs[0]], 0)] + \
                [(SEVERITIES[s], a) for s, a in zip(sevs[1:], afters)]
            if rng.random() < 0.1:
                # An "after" on the first step is accepted and ignored.
                steps[0] = (steps[0][0], rng.choice([1000, afters[0] - 1000]
                                                    if afters else [1000]))
            if n > 1 and rng.random() < 0.4:
                back = self.dur([2000, 5000, 10000, 30000])
        return Rule("g%d_r%d" % (self.gid, i), cond, for_ms, clear, steps,
                    back)

    def rules(self):
        return [self.rule(i) for i in range(self.rng.randint(1, 4))]

    def stream(self, n, t):
        """n readings from time t (ms); returns (readings, end time)."""
        rng = self.rng
        keys = ["%s{device=%s,site=%s}" % (nm, d, s)
                for nm in self.names for d, s in self.devices]
        keys = rng.sample(keys, rng.randint(2, len(keys)))
        val = {k: float(rng.randint(0, 20)) for k in keys}
        out = []
        for _ in range(n):
            r = rng.random()
            if r < 0.1:
                pass  # an equal timestamp
            elif r < 0.15:
                t += rng.randint(60000, 240000)  # a gap
            elif r < 0.25:
                t += rng.randint(1, 3000)
            else:
                t += rng.choice([1000, 2000, 5000, 5000, 10000])
            k = rng.choice(keys)
            r = rng.random()
            if r < 0.15:
                val[k] = float(rng.randint(0, 20))
            elif r < 0.85:
                val[k] = min(20.0, max(0.0, val[k] + rng.choice(
                    [-3, -2, -1, -1, 0, 1, 1, 2, 3])))
            v = val[k] + (0.5 if rng.random() < 0.1 else 0.0)
            ts = t
            if self.late and rng.random() < 0.1:
                ts = t - rng.choice([1, 1000, 5000, 20000, 90000])
            sc = None
            if rng.random() < 0.3:  # anomalyd's score, now and then alarm
                sc = (rng.randint(0, 20) / 20.0, rng.random() < 0.1)
            out.append((k, ts, v, sc))
        return out, t


# ------------------------------------------------------------- comparison

def iso_of(ms):
    """epoch ms -> 2024-01-01T00:02:40.123Z"""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + \
        ".%03dZ" % (ms % 1000)


def ms_of(iso):
    """2024-01-01T00:02:40.000Z -> epoch ms."""
    import calendar
    date, rest = iso.rstrip("Z").split("T")
    hms, frac = rest.split(".")
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, s = (int(x) for x in hms.split(":"))
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + int(frac[:3])


def canon(events):
    """Runs of events of one time in a fixed order: alertd.8 orders the
    changes by reading, not by rule or scope within a reading (or a
    deadman tick). The sort is stable: the changes of one alert keep
    their order."""
    out, run, key = [], [], None
    for e in events:
        k = e["ts"]
        if k != key and run:
            out += sorted(run, key=lambda x: (x["rule"], x["scope"]))
            run = []
        key = k
        run.append(e)
    out += sorted(run, key=lambda x: (x["rule"], x["scope"]))
    return out


def fmt(e):
    if e is None:
        return "(nothing)"
    return "%s %s %s sev=%s t=%+.3fs v=%s since=%+.3fs series=%s" % (
        e["rule"], e["scope"], e["state"], e["severity"],
        (e["ts"] - T0) / 1000.0, num_text(e["value"]),
        (e["since"] - T0) / 1000.0, e["series"])


def run_alertd(rules, readings, tmp, tag):
    rpath = os.path.join(tmp, "%s.rules" % tag)
    ipath = os.path.join(tmp, "%s.jsonl" % tag)
    with open(rpath, "w") as f:
        for r in rules:
            f.write(r.text() + "\n")
    with open(ipath, "w") as f:
        for i, (k, ts, v, sc) in enumerate(readings):
            # alertd.8: the timestamp may be RFC 3339 or epoch ms, and
            # "name" plus "tags" may replace "series".
            j = {"series": k, "timestamp": ts, "value": v}
            if i % 5 == 1:
                j["timestamp"] = iso_of(ts)
            if i % 7 == 2:
                name, tags = parse_key(k)
                j = {"name": name, "tags": tags, "timestamp": j["timestamp"],
                     "value": v}
            if sc is not None:
                j["score"] = sc[0]
                if sc[1] or ts % 2:
                    j["alarm"] = sc[1]
            f.write(json.dumps(j) + "\n")
    with open(ipath) as fin:
        p = subprocess.run([binary("alertd"), "--rules", rpath, "--stdin",
                            "--stdout"], stdin=fin, capture_output=True,
                           text=True, timeout=300)
    if p.returncode != 0 or any(m in p.stderr for m in (
            "AddressSanitizer", "LeakSanitizer", "runtime error:")):
        print(p.stderr[-3000:])
        check(False, "alertd (%s) exits 0 without a sanitizer report "
              "(got %d; rules %s)" % (tag, p.returncode, rpath))
    evs = []
    for line in p.stdout.splitlines():
        e = json.loads(line)
        evs.append({"rule": e["rule"], "scope": e["scope"],
                    "series": e["series"], "state": e["state"],
                    "severity": e["severity"], "ts": ms_of(e["timestamp"]),
                    "value": e["value"], "since": ms_of(e["since"])})
    return evs


def model_events(rules, readings):
    m = Model(rules)
    for k, ts, v, sc in readings:
        m.reading(k, ts, v, sc)
    return m.events


def compare(got, want):
    """Index of the first difference, or None."""
    got, want = canon(got), canon(want)
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else None
        w = want[i] if i < len(want) else None
        if g != w:
            return i, got, want
    return None


def test():
    if not have("alertd"):
        print("skip: alertd not built")
        sys.exit(77)
    full = bool(os.environ.get("SP_FULL"))
    seed = int(os.environ.get("ALERT_MODEL_SEED") or
               random.SystemRandom().randrange(1, 2 ** 31))
    runs = int(os.environ.get("ALERT_MODEL_RUNS") or (40 if full else 4))
    groups = int(os.environ.get("ALERT_MODEL_GROUPS") or 25)
    nread = int(os.environ.get("ALERT_MODEL_READINGS") or 200)
    budget = 300.0 if full else 20.0
    print("# seed %d (ALERT_MODEL_SEED=%d repeats it): %d runs of %d groups"
          " of %d readings" % (seed, seed, runs, groups, nread))
    tmp = tempfile.mkdtemp(prefix="sp-04-alert-model.")
    start = time.monotonic()
    total_events = 0
    deadman_events = 0
    states = {}
    for run in range(runs):
        if time.monotonic() - start > budget:
            print("# time budget reached after %d runs" % run)
            break
        rng = random.Random(seed * 1000 + run)
        late = run % 2 == 1 and os.environ.get("ALERT_MODEL_LATE") != "0"
        rules, readings, per_group = [], [], []
        t = T0
        for g in range(groups):
            gen = Gen(rng, g, late)
            rs = gen.rules()
            rd, t = gen.stream(rng.randint(nread // 2, nread), t)
            t += 600000
            rules += rs
            readings += rd
            per_group.append((rs, rd))
        want = model_events(rules, readings)
        got = run_alertd(rules, readings, tmp, "run%d" % run)
        total_events += len(got)
        dead = set(r.name for r in rules if r.deadman)
        deadman_events += sum(1 for e in got if e["rule"] in dead)
        for e in got:
            states[e["state"]] = states.get(e["state"], 0) + 1
        diff = compare(got, want)
        if diff is not None:
            i, g, w = diff
            bad = (g[i] if i < len(g) else w[i])["rule"]
            gid = int(bad.split("_")[0][1:])
            rs, rd = per_group[gid]
            # The group alone (retention is the longest window of its own
            # rules then, which only late readings can tell apart).
            gw = model_events(rs, rd)
            gg = run_alertd(rs, rd, tmp, "group%d" % gid)
            d2 = compare(gg, gw)
            if d2 is not None:
                i, g, w = d2
            print("# group %d%s, rules:" % (
                gid, "" if d2 is not None else " (passes alone)"))
            for r in rs:
                print("#   " + r.text())
            print("# events around the first difference (alertd | model):")
            for j in range(max(0, i - 4), i + 3):
                a = g[j] if j < len(g) else None
                b = w[j] if j < len(w) else None
                print("# %s %s\n#   %s" % ("!=" if a != b else "  ",
                                          fmt(a), fmt(b)))
            print("# files: %s/group%d.rules, .jsonl" % (tmp, gid))
            check(False, "alertd and the model agree (seed %d, run %d, "
                  "late readings %s)" % (seed, run, late))
        print("# run %d: %d readings, %d rules, %d events agree%s" % (
            run, len(readings), len(rules), len(got),
            " (late readings)" if late else ""))
    check(total_events > 0, "alertd emitted events (%s)" % ", ".join(
        "%s %d" % kv for kv in sorted(states.items())))
    for s in ("pending", "firing", "resolved"):
        check(states.get(s, 0) > 0, "some %s events" % s)
    check(deadman_events > 0, "some events of deadman rules (%d)"
          % deadman_events)
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
