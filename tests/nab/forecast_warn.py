#!/usr/bin/env python3
"""Can anomalyd's forecast warn a day ahead? (issue 6's predictive-
maintenance target through the forecast path, not the anomaly score.)

Usage:
  forecast_warn.py [--data DIR] [--file REL] [--tau H] [--quantile Q]
                   [--horizon H] [--rearm H] [--ahead H] [--sweep]

The forecaster is anomalyd's (anomalyd/anomaly_forecast.c), ported line
for line: an exponentially weighted least-squares line through the
deseasonalised readings (time constant --tau hours, 12 in anomalyd), a
daily season of 288 time-of-day bins learnt from the second day on, and
the one-step residual variance. (`--check FILE` compares the port with
the C forecaster's values, one "timestamp,forecast" line per reading.)

The rule is the one an alertd rule `time_to(x, T, forecast)` can express
with a threshold learnt from the series' own history, the same for every
series: after the NAB probationary period, an alert is raised when the
forecast's expected value at any of the 25 points over the next
--horizon hours (24) leaves the normal band, i.e. falls below the
--quantile (0.01) or rises above the 1 - --quantile quantile of all the
readings seen so far; one alert per excursion: the rule re-arms once the
forecast has stayed inside the band for --rearm hours (12).

The alerts are then judged exactly as tests/nab/lead.py judges alarms:
the warning of a failure is the first alert in the 48 h before it up to
its window's end, and every other alert between failures is a false
alarm. --sweep runs a grid of time constants, quantiles and horizons and
prints, for each, the alerts, the failures warned >= --ahead hours early
(in brackets: with no false alarm in between) and the false alarms.
"""
import bisect
import datetime
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lead  # noqa: E402
import nab_score  # noqa: E402

BINS = 288
DAY = 86400.0
GAMMA_DAY = 0.4
VAR_ALPHA = 0.01
STEP_ALPHA = 0.05
MIN_COUNT = 30


class Forecast:
    """anomaly_forecast.c in Python (times in seconds)."""

    def __init__(self, tau_h):
        self.tau = tau_h * 3600.0
        self.s0 = self.s1 = self.s2 = self.sy = self.sty = 0.0
        self.var = self.step = 0.0
        self.last = self.first = None
        self.count = 0
        self.season = [0.0] * BINS
        self.seen = [0] * BINS
        self.day = [0] * BINS

    @staticmethod
    def bin(t):
        return int((t % DAY) // (DAY / BINS))

    def seas(self, t):
        b = self.bin(t)
        return self.season[b] if self.seen[b] else 0.0

    def line(self):
        den = self.s0 * self.s2 - self.s1 * self.s1
        slope = ((self.s0 * self.sty - self.s1 * self.sy) / den
                 if den > 1e-9 * self.s0 * self.s2 else 0.0)
        level = (self.sy - slope * self.s1) / self.s0 if self.s0 > 0 else 0.0
        return slope, level

    def update(self, t, y):
        if self.count and t <= self.last:
            return
        b = self.bin(t)
        dt = t - self.last if self.count else 0.0
        if self.count == 1:
            self.step = dt
        elif self.count > 1:
            self.step += STEP_ALPHA * (dt - self.step)
        if self.count == 0:
            self.first = t
        if self.count >= 2:
            slope, level = self.line()
            err = y - (level + slope * dt + self.seas(t))
            a = max(VAR_ALPHA, 1.0 / self.count)
            self.var = (1 - a) * (self.var + a * err * err)
        d = math.exp(-dt / self.tau)
        self.s2 = d * (self.s2 - 2 * dt * self.s1 + dt * dt * self.s0)
        self.s1 = d * (self.s1 - dt * self.s0)
        self.sty = d * (self.sty - dt * self.sy)
        self.s0 *= d
        self.sy *= d
        self.s0 += 1
        self.sy += y - self.seas(t)
        if t - self.first >= DAY:
            slope, level = self.line()
            resid = y - level
            dayno = int(t // DAY) % 256
            if not self.seen[b]:
                self.season[b] = resid
            else:
                g = 1 - (1 - GAMMA_DAY) ** (
                    1 / max(1.0, (DAY / BINS) / max(self.step, 1e-9)))
                self.season[b] += g * (resid - self.season[b])
            if not self.seen[b] or self.day[b] != dayno:
                self.seen[b] += 1
                self.day[b] = dayno
        self.last = t
        self.count += 1

    def ready(self):
        return self.count >= MIN_COUNT and self.step > 0

    def at(self, t):
        slope, level = self.line()
        return level + slope * (t - self.last) + self.seas(t)


def epoch(d):
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def alerts(ts, v, prob, tau, q, horizon, rearm):
    """Alert times of the rule (see the module's doc)."""
    f = Forecast(tau)
    hist, out = [], []
    armed, inside_since = True, None
    for i, (d, y) in enumerate(zip(ts, v)):
        t = epoch(d)
        f.update(t, y)
        bisect.insort(hist, y)
        if i < prob or not f.ready():
            continue
        n = len(hist)
        lo = hist[int(q * n)]
        hi = hist[min(n - 1, int((1 - q) * n))]
        pts = [f.at(t + horizon * 3600.0 * k / 24) for k in range(1, 25)]
        leaves = any(p < lo or p > hi for p in pts)
        if leaves:
            inside_since = None
            if armed:
                out.append(d)
                armed = False
        elif not armed:
            if inside_since is None:
                inside_since = t
            if t - inside_since >= rearm * 3600.0:
                armed = True
    return out


def main():
    ap = nab_score.arg_parser(__doc__)
    ap.add_argument("--file", default=lead.MACHINE)
    ap.add_argument("--tau", type=float, default=12.0)
    ap.add_argument("--quantile", type=float, default=0.01)
    ap.add_argument("--horizon", type=float, default=24.0)
    ap.add_argument("--rearm", type=float, default=12.0)
    ap.add_argument("--ahead", type=float, default=24.0)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--check", metavar="FILE")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.data, "labels")):
        a.data = "/work/shared/data/nab"
    raw, v = nab_score.read_scores_column(os.path.join(a.data, a.file),
                                          "value")
    ts = [lead.parse(x) for x in raw]
    labels, windows = nab_score.labels(a.data, a.file)
    prob = nab_score.probation_len(len(ts))

    if a.check:
        # Lines "timestamp,forecast at +horizon" from the C forecaster.
        f = Forecast(a.tau)
        worst = 0.0
        with open(a.check) as fh:
            ref = [float(x.split(",")[1]) for x in fh if "," in x]
        for d, y, r in zip(ts, v, ref):
            f.update(epoch(d), y)
            if f.ready():
                p = f.at(epoch(d) + a.horizon * 3600.0)
                worst = max(worst, abs(p - r) / max(1.0, abs(r)))
        print("largest relative difference from the C forecaster: %.2g"
              % worst)
        return

    def run(tau, q, horizon, out):
        al = alerts(ts, v, prob, tau, q, horizon, a.rearm)
        out("%s: forecast %g h ahead leaves the %g..%g quantile band "
            "(time constant %g h): %d alerts" % (
                a.file, horizon, q, 1 - q, tau, len(al)))
        return lead.warnings(labels, windows, al, ts[prob], a.ahead, out)

    if not a.sweep:
        run(a.tau, a.quantile, a.horizon, print)
        return
    print("%6s %8s %8s %6s %10s %7s" % ("tau h", "quantile", "horizon",
                                        "alerts", ">= 24 h", "false"))
    for tau in (2, 6, 12, 24):
        for q in (0.001, 0.01, 0.05):
            for horizon in (6, 24):
                n = []
                met, nfalse, early = run(tau, q, horizon, n.append)
                print("%6g %8g %8g %6s %10s %7d" % (
                    tau, q, horizon, n[0].split(": ")[-1].split()[0],
                    "%d (%d)" % (early, met), nfalse))


if __name__ == "__main__":
    main()
