#!/bin/sh
# NAB evaluation of anomalyd (issue 6): score every reading of every file
# of the NAB subset with `anomalyd --stdin --stdout` (one configuration for
# all files; each file is a fresh process, so nothing leaks between
# files), then score the corpus with NAB's rules (nab_score.py). The
# output carries the novelty alarm column too (tests/nab/alarms.py).
#
#   tests/nab/run.sh [anomalyd options...]    e.g. --method zscore
#
# Environment: SP_BUILD (build directory, default build), NAB_DATA (the
# data, default ../shared/data/nab next to the repository), NAB_OUT
# (where the per-file scores go, default a temporary directory),
# NAB_MIN (fail, exit 1, when the standard score is below it: the
# regression guard for make test).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${SP_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
data=${NAB_DATA:-$root/../shared/data/nab}
[ -d "$data/labels" ] || data=/work/shared/data/nab
if [ ! -d "$data/labels" ] || [ ! -x "$build/anomalyd" ]; then
    echo "nab: no data ($data) or no $build/anomalyd; skipped" >&2
    exit 77
fi
out=${NAB_OUT:-}
cleanup=
if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/nab.XXXXXX)
    cleanup=$out
fi
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT
for f in "$data"/*/*.csv; do
    cat=$(basename "$(dirname "$f")")
    [ "$cat" = reference-results ] && continue
    mkdir -p "$out/$cat"
    "$build/anomalyd" --stdin --stdout --format csv --alarm-column "$@" \
        <"$f" >"$out/$cat/$(basename "$f")" 2>/dev/null
done
python3 "$here/nab_score.py" --data "$data" "$out" | tee "$out/score.txt"
if [ -n "${NAB_MIN:-}" ]; then
    got=$(awk '$1 == "standard" { print $3 }' "$out/score.txt")
    awk -v g="$got" -v m="$NAB_MIN" 'BEGIN { exit !(g + 0 >= m + 0) }' || {
        echo "nab: standard score $got is below the floor $NAB_MIN" >&2
        exit 1
    }
fi
