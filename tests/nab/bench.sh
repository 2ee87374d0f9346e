#!/bin/sh
# Filter-mode throughput of anomalyd (issue 6's cost target): N readings
# (default 1,000,000) over S interleaved series (default 10,000), as CSV
# with a series column and as JSON lines, through
# `anomalyd --stdin --stdout` with the default ensemble. Prints readings
# per second of CPU time (user + sys) and of wall time, with glibc's
# default heap and with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent
# huge pages for the heap, as the systemd unit and the runit script run
# anomalyd). SP_BUILD names the build.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${SP_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
[ -x "$build/anomalyd" ] || { echo "bench: no $build/anomalyd" >&2; exit 77; }
n=${N:-1000000}; s=${S:-10000}
t=$(mktemp -d /tmp/sp-anomaly-bench.XXXXXX)
trap 'rm -rf "$t"' EXIT
awk -v n="$n" -v s="$s" 'BEGIN { srand(1); print "series,timestamp,value";
    for (i = 0; i < n; i++)
        printf "s%d,%.0f,%.3f\n", i % s, 1704067200000 + int(i / s) * 60000, 20 + rand() }' > "$t/in.csv"
awk -v n="$n" -v s="$s" 'BEGIN { srand(1);
    for (i = 0; i < n; i++)
        printf "{\"series\":\"s%d\",\"timestamp\":%.0f,\"value\":%.3f}\n", i % s, 1704067200000 + int(i / s) * 60000, 20 + rand() }' > "$t/in.jsonl"
for f in in.csv in.jsonl; do
    fmt=json; [ $f = in.csv ] && fmt=csv
    for heap in default hugetlb; do
        tun=${GLIBC_TUNABLES:-}
        [ $heap = hugetlb ] && tun=glibc.malloc.hugetlb=1
        GLIBC_TUNABLES=$tun /usr/bin/time -f "%U %S %e" -o "$t/time" \
            "$build/anomalyd" --stdin --stdout --format $fmt < "$t/$f" > /dev/null 2>&1
        read -r user sys wall < "$t/time"
        awk -v f="$f" -v h="$heap" -v n="$n" -v s="$s" -v u="$user" -v y="$sys" -v w="$wall" 'BEGIN {
            c = u + y
            printf "%-9s heap %-8s %d readings, %d series: %.0f readings/s CPU (%.2f s user+sys), %.0f readings/s wall\n",
                f, h, n, s, n / (c > 0 ? c : 0.01), c, n / (w > 0 ? w : 0.01) }'
    done
done
