#!/usr/bin/env python3
"""What precedes each labelled failure of a NAB file, from the data alone
(no detector): the episodes in which the causal 2-hour mean of the
readings stays below a level, and how deep each one was at the moment a
warning would have to fire to be early enough (docs/ANOMALY.md,
"Predictive maintenance").

Usage:
  precursor.py [--data DIR] [--file REL] [--below V] [--ahead H]
               [--merge H] [--min H]

Episodes closer than --merge hours (3) are one; shorter than --min hours
(1) are not listed. For each episode: start, end, length, the lowest
2-hour mean 2.4 h and 6 h after it started and overall, and the next
labelled failure within 8 days. Then, for each failure L, the episode
containing L - --ahead hours (24), if any, with its age and depth at that
instant, and how many episodes that ended without a failure within 8 days
that are no failure's precursor (none overlaps the --ahead hours before a
failure) were at least that deep at the same age: each is an alarm that a
rule early enough for L would also raise, a false alarm by the target.
"""
import argparse
import collections
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score  # noqa: E402

H = datetime.timedelta(hours=1)


def parse(ts):
    return datetime.datetime.strptime(nab_score.norm_ts(ts),
                                      "%Y-%m-%d %H:%M:%S")


def mean2h(ts, v):
    out, q, s = [], collections.deque(), 0.0
    for t, x in zip(ts, v):
        q.append((t, x))
        s += x
        while q[0][0] <= t - 2 * H:
            s -= q.popleft()[1]
        out.append(s / len(q))
    return out


def episodes(ts, m, below, merge, least):
    eps, i, n = [], 0, len(ts)
    while i < n:
        if m[i] >= below:
            i += 1
            continue
        j = i
        while j + 1 < n and m[j + 1] < below:
            j += 1
        if eps and ts[i] - ts[eps[-1][1]] < merge * H:
            eps[-1] = (eps[-1][0], j)
        else:
            eps.append((i, j))
        i = j + 1
    return [(a, b) for a, b in eps if ts[b] - ts[a] >= least * H]


def depth(ts, m, a, b, until):
    """Lowest 2-hour mean of episode (a, b) up to time until."""
    return min(m[k] for k in range(a, b + 1) if ts[k] <= until)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get(
        "NAB_DATA", os.path.join(here, "../../../shared/data/nab")))
    ap.add_argument("--file", default="realKnownCause/"
                    "machine_temperature_system_failure.csv")
    ap.add_argument("--below", type=float, default=80.0)
    ap.add_argument("--ahead", type=float, default=24.0)
    ap.add_argument("--merge", type=float, default=3.0)
    ap.add_argument("--min", type=float, default=1.0)
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.data, "labels")):
        a.data = "/work/shared/data/nab"
    ts, v = nab_score.read_scores_column(os.path.join(a.data, a.file),
                                         "value")
    ts = [parse(t) for t in ts]
    with open(os.path.join(a.data, "labels", "combined_labels.json")) as fh:
        labels = [parse(x) for x in json.load(fh)[a.file]]
    m = mean2h(ts, v)
    eps = episodes(ts, m, a.below, a.merge, a.min)
    horizon = 8 * 24 * H

    def next_failure(i):
        after = [L for L in labels if L >= ts[i]]
        return after[0] if after and after[0] - ts[i] <= horizon else None

    print("%s: episodes of the 2 h mean below %g" % (a.file, a.below))
    print("%-16s  %-16s  %6s  %6s  %6s  %6s  %s" % (
        "start", "end", "hours", "@2.4h", "@6h", "lowest", "next failure"))
    for i, j in eps:
        L = next_failure(i)
        print("%-16s  %-16s  %6.1f  %6.1f  %6.1f  %6.1f  %s" % (
            ts[i].strftime("%Y-%m-%d %H:%M"), ts[j].strftime("%Y-%m-%d %H:%M"),
            (ts[j] - ts[i]) / H, depth(ts, m, i, j, ts[i] + 2.4 * H),
            depth(ts, m, i, j, ts[i] + 6 * H), min(m[i:j + 1]),
            "%s, %.1f h later" % (L.strftime("%Y-%m-%d %H:%M"),
                                  (L - ts[i]) / H) if L else "-"))
    def precursor(i, j):
        """Does episode (i, j) overlap [L - ahead, L] of some failure L?"""
        return any(ts[i] <= L and ts[j] >= L - a.ahead * H for L in labels)

    print("at the last moment a warning %g h ahead could fire:" % a.ahead)
    for L in labels:
        t = L - a.ahead * H
        hit = [(i, j) for i, j in eps if ts[i] <= t <= ts[j]]
        if not hit:
            print("  failure %s: no episode under way at %s" % (
                L.strftime("%Y-%m-%d %H:%M"), t.strftime("%Y-%m-%d %H:%M")))
            continue
        i, j = hit[0]
        age, d = t - ts[i], depth(ts, m, i, j, t)
        alike = [(p, q) for p, q in eps if not precursor(p, q) and
                 depth(ts, m, p, q, ts[p] + age) <= d]
        print("  failure %s: episode of %s, %.1f h old, 2 h mean down to "
              "%.1f; %d episode(s) followed by no failure within %g h were "
              "as deep at that age: %s" % (
                  L.strftime("%Y-%m-%d %H:%M"),
                  ts[i].strftime("%Y-%m-%d %H:%M"), age / H, d, len(alike),
                  a.ahead,
                  ", ".join(ts[p].strftime("%m-%d %H:%M")
                            for p, _ in alike) or "none"))


if __name__ == "__main__":
    main()
