#!/usr/bin/env python3
"""anomalyd against the published NAB detectors on the full NAB corpus,
split into the files anomalyd was developed on and the rest.

Usage:
  compare.py --data DIR --nab NAB_DIR [--subset DIR] [--profile P]
             [--min-rest S] OURS

DIR is a NAB data directory (labels/ and <category>/*.csv) covering the
full corpus, OURS anomalyd's scores for it (tests/nab/run.sh writes them),
NAB_DIR a checkout of github.com/numenta/NAB whose results/<detector>/
hold the published detectors' scores, and --subset the 18-file data
directory (default ../shared/data/nab next to the repository). For each
detector and each file set (all files, the subset, the files not in the
subset), each scored as a corpus of its own with its own optimal
threshold: the NAB score, the windows found and the share of detections
outside every labelled window. With --min-rest, exits 1 when anomalyd's
score on the files not in the subset is below S (a regression guard on
the files no setting was chosen on).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score  # noqa: E402


def figures(files, prof):
    t, _, norm, _, _ = nab_score.score_corpus(files, prof)
    ntp = nwin = nfp = ndet = 0
    for f in files:
        _, tp, _, fp, det = f.detail(t, prof)
        ntp += tp
        nwin += len(f.windows)
        nfp += fp
        ndet += det
    return norm, ntp, nwin, nfp, ndet


def main():
    ap = nab_score.arg_parser(__doc__)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--nab", required=True)
    ap.add_argument("--subset", default=os.path.join(
        here, "../../../shared/data/nab"))
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--min-rest", type=float, default=None)
    ap.add_argument("ours")
    a = ap.parse_args()
    prof = nab_score.PROFILES[a.profile]
    subset = nab_score.label_names(a.subset)
    everything = nab_score.label_names(a.data)
    if not subset <= everything:
        raise SystemExit("compare: the subset is not part of the corpus")
    rest = everything - subset

    runs = [("anomalyd", a.ours, "")]
    res = os.path.join(a.nab, "results")
    for d in sorted(os.listdir(res)):
        if d != "null" and os.path.isdir(os.path.join(res, d)):
            runs.append((d, os.path.join(res, d), d + "_"))
    sets = [("all %d" % len(everything), None),
            ("subset %d" % len(subset), subset),
            ("rest %d" % len(rest), rest)]
    rest_score = None
    print("%s profile; per file set: NAB score, windows found, "
          "detections outside windows" % a.profile)
    print("%-18s" % "detector" + "".join(
        " | %-30s" % name for name, _ in sets))
    for name, path, prefix in runs:
        files = nab_score.load_files(a.data, path, prefix)
        row = "%-18s" % name
        for _, names in sets:
            part = [f for f in files if names is None or f.name in names]
            norm, ntp, nwin, nfp, ndet = figures(part, prof)
            if name == "anomalyd" and names is rest:
                rest_score = norm
            row += " | %5.1f %3d/%-3d %4d/%-4d %5.1f%%" % (
                norm, ntp, nwin, nfp, ndet,
                100.0 * nfp / ndet if ndet else 0.0)
        print(row)
        sys.stdout.flush()
    if a.min_rest is not None and rest_score < a.min_rest:
        print("compare: anomalyd scores %.1f on the files outside the "
              "subset, below the floor %g" % (rest_score, a.min_rest))
        sys.exit(1)


if __name__ == "__main__":
    main()
