#!/usr/bin/env python3
"""Are the alarms outside NAB's labelled windows smaller excursions than
the labelled anomalies? A detector-independent check (docs/ANOMALY.md,
"A novelty alarm").

Usage:
  excursions.py [--data DIR] [--threshold T] [--subset DIR] RESULTS_DIR

RESULTS_DIR is anomalyd's CSV output (tests/nab/run.sh), whose value
column is the data. For every reading, its excursion e: the distance from the median of the
previous 1,000 readings in units of their interquartile range / 1.349
(at least 1 % of their range), from the 100th reading on (causal). For
every labelled window its peak e; for every alarm (score >= T, default
0.5, after the probationary period, as NAB counts detections) outside
the windows the peak e within 5 readings of it. Prints, per file and in
all: the alarms outside windows, how many sit on an excursion at least
as large as the smallest labelled window's peak in the same file, and
the windows whose peak beats every reading outside the windows of their
file (what a per-file threshold chosen with hindsight could find with no
alarm outside the windows at all).
"""
import bisect
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score  # noqa: E402

WINDOW = 1000


def excursion(vals):
    s, e = [], [0.0] * len(vals)
    for i, v in enumerate(vals):
        if len(s) >= 100:
            n = len(s)
            iqr = s[(3 * n) // 4] - s[n // 4]
            sc = max(iqr / 1.349, (s[-1] - s[0]) * 0.01, 1e-9)
            e[i] = abs(v - s[n // 2]) / sc
        bisect.insort(s, v)
        if i >= WINDOW:
            del s[bisect.bisect_left(s, vals[i - WINDOW])]
    return e


def main():
    ap = nab_score.arg_parser(__doc__)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--subset", default=None)
    ap.add_argument("results")
    a = ap.parse_args()
    with open(os.path.join(a.data, "labels", "combined_windows.json")) as f:
        windows = json.load(f)
    sub = nab_score.label_names(a.subset) if a.subset else None
    tot = {}
    for rel in sorted(windows):
        cat, base = rel.split("/")
        ts, sc = nab_score.read_scores(os.path.join(a.results, cat, base))
        f = nab_score.File(rel, ts, sc, windows[rel])
        _, vals = nab_score.read_scores_column(
            os.path.join(a.results, cat, base), "value")
        e = excursion(vals)
        assert len(e) == f.n
        wpk = [max(e[max(a_, f.prob):b + 1])
               for a_, b in f.windows if b >= f.prob]
        outmax = max([e[i] for i in range(f.prob, f.n) if f.win[i] < 0]
                     or [0.0])
        clear = sum(1 for p in wpk if p > outmax)
        out = [i for i in range(f.prob, f.n)
               if sc[i] >= a.threshold and f.win[i] < 0]
        lo = min(wpk) if wpk else float("inf")
        pk = [max(e[max(0, i - 5):i + 6]) for i in out]
        big = sum(1 for p in pk if p >= lo)
        sets = ["all"]
        if sub is not None:
            sets.append("subset" if rel in sub else "others")
        for k in sets:
            t = tot.setdefault(k, [0, 0, 0, 0])
            t[0] += len(out)
            t[1] += big
            t[2] += clear
            t[3] += len(f.windows)
        if out:
            print("%-58s outside %2d, as large %2d  [%s] windows [%s]"
                  % (rel, len(out), big, " ".join("%.1f" % p for p in pk),
                     " ".join("%.1f" % p for p in wpk)))
    for k, (nout, big, clear, nwin) in tot.items():
        print("%s: alarms outside windows at %g: %d, on an excursion as "
              "large as a labelled window's in the same file: %d; windows "
              "above every reading outside the windows of their file: "
              "%d of %d" % (k, a.threshold, nout, big, clear, nwin))


if __name__ == "__main__":
    main()
