#!/bin/sh
# anomalyd --stdin --stdout: a spike is flagged and a steady series is
# not (z-score and ensemble, JSON lines and CSV); NaN gaps and bad lines
# are skipped without a crash; a bad method exits 78; the daemon starts,
# logs "ready", and on SIGTERM logs "shutdown complete" and exits 0.
# Exit 0 pass, 77 skip, anything else fail. SP_BUILD names the build dir.
ROOT=${SP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=$ROOT/${SP_BUILD:-build}/anomalyd
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
T=$(mktemp -d /tmp/sp-03-anomaly.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok - $1"; }
no() { echo "not ok - $1"; fails=$((fails + 1)); }
check() { # description, then a command
    d=$1; shift
    if "$@"; then ok "$d"; else no "$d"; fi
}

# Two series a minute apart from 2024-01-01: "steady" is 23.5..23.7 all
# along; "spiky" is the same and reads 100 at minute 1500 only.
awk 'BEGIN {
    srand(3);
    for (i = 0; i < 2000; i++) {
        ms = 1704067200000 + i * 60000;
        printf "{\"series\":\"steady\",\"timestamp\":%.0f,\"value\":%.2f}\n", ms, 23.5 + 0.2 * rand();
        v = (i == 1500) ? 100 : 23.5 + 0.2 * rand();
        printf "{\"name\":\"spiky\",\"timestamp\":%.0f,\"value\":%.2f}\n", ms, v;
    }
}' > "$T/in.jsonl"
spike_ts='"timestamp":"2024-01-02T01:00:00.000Z"'

for m in zscore ensemble; do
    "$BIN" --stdin --stdout --method $m < "$T/in.jsonl" > "$T/out.$m" 2> "$T/err.$m"
    check "$m: exit 0" [ $? -eq 0 ]
    check "$m: one line per reading" [ "$(wc -l < "$T/out.$m")" -eq 4000 ]
    check "$m: the spike is flagged" \
        grep -q "\"series\":\"spiky\",$spike_ts,\"value\":100,.*\"anomaly\":true" "$T/out.$m"
    n=$(grep '"series":"steady"' "$T/out.$m" | grep -c '"anomaly":true')
    check "$m: the steady series is never flagged ($n)" [ "$n" -eq 0 ]
    n=$(grep '"series":"spiky"' "$T/out.$m" | grep -c '"anomaly":true')
    check "$m: only the spike is flagged in spiky ($n)" [ "$n" -eq 1 ]
done
# The z of the spike is huge whatever the method (threshold is in z units).
check "ensemble: z of the spike > 100" \
    awk -F'"z":' '/"value":100,/ { split($2, a, ","); exit !(a[1] > 100) }' "$T/out.ensemble"

# CSV in, CSV out, with NaN gaps and a bad line in the middle.
awk 'BEGIN {
    srand(5); print "timestamp,value";
    for (i = 0; i < 1500; i++) {
        t = 1704067200 + i * 300;
        ts = strftime("%Y-%m-%d %H:%M:%S", t, 1);
        if (i % 200 == 7) { print ts ","; continue }
        if (i == 900) { print "not,a,reading"; continue }
        v = (i == 1200) ? 90 : 20 + rand();
        printf "%s,%.3f\n", ts, v;
    }
}' > "$T/in.csv"
"$BIN" --stdin --stdout --format csv < "$T/in.csv" > "$T/out.csv" 2> "$T/err.csv"
check "csv: exit 0 despite gaps and a bad line" [ $? -eq 0 ]
check "csv: the bad line is reported" grep -q "stdin:902" "$T/err.csv"
check "csv: header" [ "$(head -n 1 "$T/out.csv")" = "timestamp,value,anomaly_score,z,method" ]
check "csv: gaps score 0" grep -q '^2024-01-01T00:35:00.000Z,null,0,null,' "$T/out.csv"
check "csv: the spike scores >= 0.5" \
    awk -F, '$2 == 90 { found = 1; exit !($3 >= 0.5) } END { if (!found) exit 1 }' "$T/out.csv"
n=$(awk -F, 'NR > 1 && $2 != 90 && $3 >= 0.5' "$T/out.csv" | wc -l)
check "csv: nothing else scores >= 0.5 ($n)" [ "$n" -eq 0 ]

# CSV with a series column: two interleaved series, a spike in one.
awk 'BEGIN {
    srand(9); print "series,timestamp,value";
    for (i = 0; i < 1500; i++) {
        t = 1704067200000 + i * 60000;
        printf "a,%d,%.3f\n", t, (i == 1300) ? 50 : 20 + rand();
        printf "b{k=v},%d,%.3f\n", t, 20 + rand();
    }
}' > "$T/in2.csv"
"$BIN" --stdin --stdout --format csv < "$T/in2.csv" > "$T/out2.csv" 2>/dev/null
check "csv series column: header" [ "$(head -n 1 "$T/out2.csv")" = "series,timestamp,value,anomaly_score,z,method" ]
check "csv series column: the spike in a is flagged" \
    awk -F, '$1 == "a" && $3 == "50.000" { f = 1; exit !($4 >= 0.5) } END { if (!f) exit 1 }' "$T/out2.csv"
n=$(awk -F, 'NR > 1 && $3 != "50.000" && $4 >= 0.5' "$T/out2.csv" | wc -l)
check "csv series column: nothing else is ($n)" [ "$n" -eq 0 ]

"$BIN" --stdin --stdout --method astrology < /dev/null > /dev/null 2> "$T/err.bad"
check "unknown method: exit 78" [ $? -eq 78 ]
check "unknown method: says why" grep -q "method" "$T/err.bad"

# The daemon: ready, SIGHUP reloads what can change (and keeps the
# running configuration when the file is bad), then a clean stop.
wait_log() { # pattern
    i=0
    while ! grep -q "$1" "$T/daemon.log" && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i + 1))
    done
    grep -q "$1" "$T/daemon.log"
}
printf 'threshold = 3\nmin-score = 0.5\n' > "$T/anomalyd.conf"
"$BIN" -f "$T/anomalyd.conf" --rundir "$T/run" --down none -v > "$T/daemon.log" 2>&1 &
pid=$!
check "daemon: logs ready" wait_log "ready"
check "daemon: binds its endpoints" [ -S "$T/run/anomalyd.0.in" -a -S "$T/run/anomalyd.0.query" ]
printf 'threshold = 5\nmin-score = 0.8\n' > "$T/anomalyd.conf"
kill -HUP $pid
check "daemon: SIGHUP applies threshold and min-score" wait_log "reload: threshold=5 min-score=0.8"
printf 'threshold = banana\n' > "$T/anomalyd.conf"
kill -HUP $pid
check "daemon: a bad file on SIGHUP keeps the running configuration" \
    wait_log "keeping the running configuration"
printf 'method = zscore\n' > "$T/anomalyd.conf"
kill -HUP $pid
check "daemon: a method change on SIGHUP requires a restart" wait_log "require restart"
kill -TERM $pid
wait $pid
check "daemon: SIGTERM exits 0" [ $? -eq 0 ]
check "daemon: shutdown complete" grep -q "shutdown complete" "$T/daemon.log"

echo "# $fails failed"
[ $fails -eq 0 ]
