#!/usr/bin/env python3
"""The novelty alarm of a scored NAB corpus (issue 6's false-alarm
target): how many alarms, how many outside every labelled window, how many
windows they find, and how many fall on artificialNoAnomaly files.

Usage:
  alarms.py [--data DIR] [--subset DIR] [--max-outside PCT] RESULTS_DIR

RESULTS_DIR holds anomalyd's CSV output with the alarm column
(`--alarm-column`, tests/nab/run.sh passes it). An alarm counts as NAB
counts detections: after the file's probationary period. The alarm is a
decision of its own, not a threshold on the score, so no threshold is
chosen here. With --subset (a NAB data directory covering some of the
files, e.g. the 18 of ../shared/data/nab), the subset and the other files
are also counted apart. With --max-outside, exits 1 when the share of
alarms outside every labelled window over all the files is above PCT
percent, or any alarm falls on an artificialNoAnomaly file (issue 6's
target; make eval-full passes 5).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score  # noqa: E402


def counts(files):
    """(alarms, outside windows, windows found, windows, on NoAnomaly)."""
    nal = nout = nfound = nwin = nnone = 0
    for f in files:
        found = set()
        for i in range(f.prob, f.n):
            if f.scores[i] < 0.5:
                continue
            nal += 1
            if f.win[i] < 0:
                nout += 1
            else:
                found.add(f.win[i])
            if "NoAnomaly" in f.name:
                nnone += 1
        nfound += len(found)
        nwin += len(f.windows)
    return nal, nout, nfound, nwin, nnone


def line(name, c):
    nal, nout, nfound, nwin, nnone = c
    return ("novelty alarms, %s: %d, outside labelled windows %d (%.1f %%), "
            "windows found %d of %d, on artificialNoAnomaly %d"
            % (name, nal, nout, 100.0 * nout / nal if nal else 0.0, nfound,
               nwin, nnone))


def main():
    ap = nab_score.arg_parser(__doc__)
    ap.add_argument("--subset", default=None)
    ap.add_argument("--max-outside", type=float, default=None)
    ap.add_argument("results")
    a = ap.parse_args()
    with open(os.path.join(a.data, "labels", "combined_windows.json")) as f:
        import json
        windows = json.load(f)
    files = []
    for rel in sorted(windows):
        cat, base = rel.split("/")
        ts, al = nab_score.read_scores_column(
            os.path.join(a.results, cat, base), "alarm")
        files.append(nab_score.File(rel, ts, al, windows[rel]))
    every = counts(files)
    print(line("all %d files" % len(files), every))
    if a.subset:
        sub = nab_score.label_names(a.subset)
        inside = [f for f in files if f.name in sub]
        rest = [f for f in files if f.name not in sub]
        print(line("the %d files of the subset" % len(inside), counts(inside)))
        print(line("the %d others" % len(rest), counts(rest)))
    if a.max_outside is not None:
        nal, nout, _, _, nnone = every
        share = 100.0 * nout / nal if nal else 0.0
        if share > a.max_outside or nnone:
            print("novelty alarms: %.1f %% outside labelled windows (at most "
                  "%g %%), %d on artificialNoAnomaly (none)"
                  % (share, a.max_outside, nnone), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
