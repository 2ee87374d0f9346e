#!/usr/bin/env python3
"""NAB scoring, implemented from the description in
../shared/data/nab/README.md and NAB's whitepaper (Lavin & Ahmad 2015).

Usage:
  nab_score.py [--data DIR] [--prefix P] [--profile NAME|all] [--json]
               [--threshold T] [--only-in DIR] [--not-in DIR] RESULTS_DIR

RESULTS_DIR holds <category>/<P><name>.csv for every file in the labels,
each with a header naming at least "timestamp" and "anomaly_score" columns
(anomalyd's harness writes exactly those; NAB's reference results have
more columns, which are ignored).

How a corpus is scored (one threshold for every file):
- windows come from labels/combined_windows.json, as index ranges;
- the first min(floor(0.15 n), 750) readings of a file are probationary
  and never count as detections;
- a reading is a detection when its score >= threshold;
- inside a window of width W ending at index b, a detection at i weighs
  sigma(-(b - i + 1) / W) / sigma(-1) * A_tp, sigma(x) = 2/(1+e^{5x}) - 1,
  and only the best (= first) detection of a window counts;
- a window without a detection costs A_fn;
- a detection outside every window costs A_fp, scaled after a window by
  sigma(|i - b_prev| / (W_prev - 1)) (small just after the window);
- the threshold maximising the corpus total is chosen (exhaustive sweep
  over every distinct score);
- normalised = 100 (raw - null) / (perfect - null), where null is the
  never-firing detector (-A_fn per window) and perfect is A_tp per window.
"""
import argparse
import bisect
import csv
import json
import math
import os
import sys

PROFILES = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
PROBATION = 0.15


def sigmoid(x):
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_len(n):
    return int(min(math.floor(PROBATION * n), PROBATION * 5000))


def norm_ts(s):
    # "2014-04-10 07:15:00.000000" and "2014-04-10 07:15:00" compare equal.
    s = s.strip().replace("T", " ").rstrip("Z")
    return s.split(".")[0]


def read_scores(path):
    return read_scores_column(path, "anomaly_score")


def read_scores_column(path, column):
    """Timestamps and the float column of a CSV file."""
    with open(path, newline="") as f:
        rd = csv.reader(f)
        hdr = next(rd)
        ti, si = hdr.index("timestamp"), hdr.index(column)
        ts, sc = [], []
        for row in rd:
            if not row:
                continue
            ts.append(norm_ts(row[ti]))
            sc.append(float(row[si]))
    return ts, sc


class File:
    """One scored file: per-reading scores and window geometry."""

    def __init__(self, name, ts, scores, windows):
        self.name = name
        self.n = len(ts)
        self.scores = scores
        self.prob = probation_len(self.n)
        index = {t: i for i, t in enumerate(ts)}
        self.windows = []
        for a, b in windows:
            a, b = norm_ts(a), norm_ts(b)
            if a not in index or b not in index:
                # Windows always fall on readings in NAB; be strict.
                raise SystemExit("%s: window %s..%s not on a reading"
                                 % (name, a, b))
            self.windows.append((index[a], index[b]))
        # Window id (or -1) and unweighted sigmoid factor per reading.
        self.win = [-1] * self.n
        self.unw = [0.0] * self.n
        maxtp = sigmoid(-1.0)
        prev_b, prev_w = None, None
        k = 0
        for i in range(self.n):
            if k < len(self.windows) and self.windows[k][0] <= i <= \
                    self.windows[k][1]:
                a, b = self.windows[k]
                width = b - a + 1
                self.win[i] = k
                self.unw[i] = sigmoid(-(b - i + 1) / width) / maxtp
                if i == b:
                    prev_b, prev_w = b, width
                    k += 1
            else:
                if prev_b is None:
                    self.unw[i] = -1.0
                else:
                    self.unw[i] = sigmoid(abs(prev_b - i) / (prev_w - 1))

    def sweep(self, prof):
        """Return (thresholds desc, score at each): the file's raw score
        when the threshold is each distinct score value."""
        pts = sorted(range(self.prob, self.n), key=lambda i: -self.scores[i])
        nwin = len(self.windows)
        best = [None] * nwin
        tp = 0.0
        fp = 0.0
        missed = nwin
        thr, val = [], []
        j = 0
        while j < len(pts):
            s = self.scores[pts[j]]
            while j < len(pts) and self.scores[pts[j]] == s:
                i = pts[j]
                k = self.win[i]
                if k >= 0:
                    w = self.unw[i] * prof["tp"]
                    if best[k] is None:
                        best[k] = w
                        tp += w
                        missed -= 1
                    elif w > best[k]:
                        tp += w - best[k]
                        best[k] = w
                else:
                    fp += self.unw[i] * prof["fp"]
                j += 1
            thr.append(s)
            val.append(tp + fp - missed * prof["fn"])
        return thr, val

    def detail(self, t, prof):
        """Counts at threshold t: (raw, tp windows, fn windows, fp count,
        detections)."""
        nwin = len(self.windows)
        best = [None] * nwin
        fp = 0.0
        nfp = 0
        ndet = 0
        for i in range(self.prob, self.n):
            if self.scores[i] < t:
                continue
            ndet += 1
            k = self.win[i]
            if k >= 0:
                w = self.unw[i] * prof["tp"]
                if best[k] is None or w > best[k]:
                    best[k] = w
            else:
                nfp += 1
                fp += self.unw[i] * prof["fp"]
        tp = sum(b for b in best if b is not None)
        ntp = sum(1 for b in best if b is not None)
        raw = tp + fp - (nwin - ntp) * prof["fn"]
        return raw, ntp, nwin - ntp, nfp, ndet


def score_corpus(files, prof, fixed=None):
    sweeps = []
    cands = set()
    for f in files:
        thr, val = f.sweep(prof)
        # bisect wants ascending keys.
        sweeps.append((thr[::-1], val[::-1], -prof["fn"] * len(f.windows)))
        cands.update(thr)
    null = sum(-prof["fn"] * len(f.windows) for f in files)
    perfect = sum(prof["tp"] * len(f.windows) for f in files)

    def total(t):
        s = 0.0
        for thr, val, nullf in sweeps:
            # Score of the smallest distinct value >= t (all points at or
            # above t are detections).
            k = bisect.bisect_left(thr, t)
            s += val[k] if k < len(thr) else nullf
        return s

    if fixed is not None:
        best_t, best = fixed, total(fixed)
    else:
        best_t, best = math.inf, null
        for t in sorted(cands, reverse=True):
            v = total(t)
            if v > best:
                best_t, best = t, v
    norm = 100.0 * (best - null) / (perfect - null)
    return best_t, best, norm, null, perfect


def label_names(data):
    """The files a NAB data directory labels (category/name.csv)."""
    with open(os.path.join(data, "labels", "combined_windows.json")) as f:
        return set(json.load(f))


def load_files(data, results, prefix, only=None, exclude=None):
    """The scored files of results: every file data labels, restricted to
    the names in only (a set) and without those in exclude, if given."""
    with open(os.path.join(data, "labels", "combined_windows.json")) as f:
        windows = json.load(f)
    files = []
    for rel in sorted(windows):
        if only is not None and rel not in only:
            continue
        if exclude is not None and rel in exclude:
            continue
        cat, base = rel.split("/")
        path = os.path.join(results, cat, prefix + base)
        ts, sc = read_scores(path)
        files.append(File(rel, ts, sc, windows[rel]))
    return files


def arg_parser(doc):
    """An ArgumentParser described by doc's first line, with --data (the
    NAB data: $NAB_DATA, else ../shared/data/nab next to the repository)."""
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get(
        "NAB_DATA", os.path.join(here, "../../../shared/data/nab")))
    return ap


def labels(data, rel):
    """The labelled instants and the windows of file rel."""
    with open(os.path.join(data, "labels", "combined_labels.json")) as f:
        lab = json.load(f)[rel]
    with open(os.path.join(data, "labels", "combined_windows.json")) as f:
        win = json.load(f)[rel]
    return lab, win


def main():
    ap = arg_parser(__doc__)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--profile", default="all")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--only-in", metavar="DIR",
                    help="score only the files another NAB data directory "
                    "labels (e.g. the 18-file subset)")
    ap.add_argument("--not-in", metavar="DIR",
                    help="leave out the files another NAB data directory "
                    "labels (e.g. score the full corpus without the subset)")
    ap.add_argument("results")
    a = ap.parse_args()
    files = load_files(a.data, a.results, a.prefix,
                       label_names(a.only_in) if a.only_in else None,
                       label_names(a.not_in) if a.not_in else None)
    if not files:
        raise SystemExit("nab_score: no file left to score")
    names = list(PROFILES) if a.profile == "all" else [a.profile]
    out = {}
    for p in names:
        prof = PROFILES[p]
        t, raw, norm, null, perfect = score_corpus(files, prof, a.threshold)
        rows = []
        for f in files:
            r, ntp, nfn, nfp, ndet = f.detail(t, prof)
            rows.append({"file": f.name, "raw": r, "windows": len(f.windows),
                         "tp": ntp, "fn": nfn, "fp": nfp,
                         "detections": ndet})
        out[p] = {"threshold": t, "raw": raw, "score": norm, "null": null,
                  "perfect": perfect, "files": rows}
    if a.json:
        json.dump(out, sys.stdout, indent=1)
        print()
        return
    for p in names:
        o = out[p]
        if not a.quiet and p == names[0]:
            print("%-55s %4s %3s %3s %4s %5s %8s" % (
                "file (" + p + ")", "win", "tp", "fn", "fp", "det", "raw"))
            for r in o["files"]:
                print("%-55s %4d %3d %3d %4d %5d %8.3f" % (
                    r["file"], r["windows"], r["tp"], r["fn"], r["fp"],
                    r["detections"], r["raw"]))
            nfp = sum(r["fp"] for r in o["files"])
            ndet = sum(r["detections"] for r in o["files"])
            print("detections outside windows: %d of %d (%.1f %%)" % (
                nfp, ndet, 100.0 * nfp / ndet if ndet else 0.0))
        print("%-20s score %6.1f  (raw %.3f, threshold %.6g)" % (
            p, o["score"], o["raw"], o["threshold"]))


if __name__ == "__main__":
    main()
