#!/usr/bin/env python3
"""Early warning and false alarms of a scored NAB corpus (issue 6's
predictive-maintenance and false-positive targets).

Usage:
  lead.py [--data DIR] [--threshold T] [--file REL] [--ahead H] RESULTS_DIR

An alarm is a reading scored at or above the threshold (by default the
standard-profile corpus threshold that nab_score.py chooses), after the
probationary period, exactly as NAB counts detections.

For each labelled failure instant L of --file (labels/combined_labels.json,
default realKnownCause/machine_temperature_system_failure.csv):
- the warning is the first alarm in [L - 48 h, L + window end] (an alarm
  more than two days ahead is not a warning of this failure, it is a false
  alarm), and its lead is L minus its time (negative: after L);
- false alarms in between are the alarms after the previous failure's
  window and before L - 48 h, plus alarms in [L - 48 h, window start) after
  the warning (repeats that are not part of the failure's window).
The target is a lead of at least --ahead hours (24) for at least 3 of the
failures with no false alarm in between.

Also prints the corpus-wide share of alarms outside every labelled window
(the issue's "under 5 % of all alarms").
"""
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score  # noqa: E402

MACHINE = "realKnownCause/machine_temperature_system_failure.csv"


def parse(ts):
    return datetime.datetime.strptime(nab_score.norm_ts(ts),
                                      "%Y-%m-%d %H:%M:%S")


def main():
    ap = nab_score.arg_parser(__doc__)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--file", default=MACHINE)
    ap.add_argument("--ahead", type=float, default=24.0)
    ap.add_argument("results")
    a = ap.parse_args()

    files = nab_score.load_files(a.data, a.results, "")
    prof = nab_score.PROFILES["standard"]
    t = a.threshold
    if t is None:
        t = nab_score.score_corpus(files, prof)[0]

    ndet = nfp = ntp = nwin = 0
    for f in files:
        _, tp, fn, fp, det = f.detail(t, prof)
        ndet += det
        nfp += fp
        ntp += tp
        nwin += tp + fn
    # The windows found go with the share: an alarm rule that hardly ever
    # fires has a tiny share and is useless.
    print("alarms outside labelled windows: %d of %d (%.1f %%), windows "
          "found %d of %d, at threshold %.6g"
          % (nfp, ndet, 100.0 * nfp / ndet if ndet else 0.0, ntp, nwin, t))

    labels, windows = nab_score.labels(a.data, a.file)
    f = next(x for x in files if x.name == a.file)
    ts, _ = nab_score.read_scores(os.path.join(a.results, a.file))
    alarms = [parse(ts[i]) for i in range(f.prob, f.n) if f.scores[i] >= t]
    print("%s, threshold %.6g:" % (a.file, t))
    warnings(labels, windows, alarms, parse(ts[f.prob]), a.ahead)


def warnings(labels, windows, alarms, first, ahead=24.0, out=print):
    """Print the warning and the false alarms before each labelled failure
    (definitions in the module's doc) for alarm times `alarms` (sorted
    datetimes) counted from `first`; returns (failures warned >= ahead
    hours early with no false alarm in between, false alarms in all,
    failures warned >= ahead hours early whatever came before)."""
    early = datetime.timedelta(hours=48)
    prev_end = first - datetime.timedelta(seconds=1)
    met = nfalse = early_enough = 0
    for lab, (ws, we) in zip(labels, windows):
        L, ws, we = parse(lab), parse(ws), parse(we)
        lo = L - early
        warn = next((x for x in alarms if lo <= x <= we), None)
        false = [x for x in alarms if prev_end < x < lo]
        if warn is not None:
            false += [x for x in alarms if warn < x < ws]
        nfalse += len(false)
        if warn is None:
            out("  failure %s: no alarm (false alarms before it: %d)"
                % (L, len(false)))
        else:
            lead = (L - warn).total_seconds() / 3600.0
            early_enough += lead >= ahead
            ok = lead >= ahead and not false
            met += ok
            out("  failure %s: first alarm %s, %.1f h %s; false alarms "
                "before it since the previous failure: %d%s"
                % (L, warn, abs(lead), "ahead" if lead >= 0 else "late",
                   len(false), "  (met)" if ok else ""))
        prev_end = we
    after = [x for x in alarms if x > prev_end]
    nfalse += len(after)
    out("  false alarms after the last failure: %d" % len(after))
    out("warned >= %g h ahead with no false alarm in between: %d of %d "
        "failures (target 3)" % (ahead, met, len(labels)))
    return met, nfalse, early_enough

if __name__ == "__main__":
    main()
