#!/bin/sh
# alertd bench (issue 7): RULES rules over SERIES series at RATE readings/s
# for SECONDS, p99 from sending a breaching reading to receiving its
# "firing" event. One rule per device ("rN: temperature{device=dN} > 100"),
# as a fleet with per-device rules has. Prints the bench's JSON line, the
# CPU time alertd used (user+sys per million readings), its peak RSS and
# the load average. Usage: [SERIES=10000] [RATE=100000] [SECONDS=30]
# [B=build] sh bench/alertd/run.sh
set -e
cd "$(dirname "$0")/../.."
B=${B:-build}
SERIES=${SERIES:-10000}
RULES=${RULES:-$SERIES}
RATE=${RATE:-100000}
SECONDS_=${SECONDS:-30}
[ -x "$B/alertd" ] && [ -f "$B/libcommon.a" ] || make -j2 all
T=$(mktemp -d /tmp/alertd-bench.XXXXXX)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$T"' EXIT
cc -std=gnu11 -O2 -I. $(pkg-config --cflags libczmq) -D_GNU_SOURCE \
    -o "$T/alertd_bench" bench/alertd/alertd_bench.c "$B/libcommon.a" \
    $(pkg-config --libs libczmq libzmq msgpack jansson) -lm
i=0
while [ $i -lt "$RULES" ]; do
    echo "r$i: temperature{device=d$((i % SERIES))} > 100"
    i=$((i + 1))
done > "$T/alertd.rules"
"$B/alertd" --rundir "$T" --rules "$T/alertd.rules" --hwm 100 \
    2> "$T/alertd.log" &
PID=$!
n=0
until grep -q "ready:" "$T/alertd.log"; do
    n=$((n + 1)); [ $n -lt 200 ] || { cat "$T/alertd.log"; exit 1; }
    sleep 0.1
done
cpu() { awk '{print $14 + $15}' /proc/$PID/stat; }
TCK=$(getconf CLK_TCK)
C0=$(cpu)
"$T/alertd_bench" --in "ipc://$T/alertd.0.in" --pub "ipc://$T/alertd.0.pub" \
    --series "$SERIES" --rate "$RATE" --seconds "$SECONDS_" | tee "$T/out"
C1=$(cpu)
READ=$(sed 's/.*"readings":\([0-9]*\).*/\1/' "$T/out")
awk -v c="$((C1 - C0))" -v t="$TCK" -v r="$READ" -v n="$RULES" 'BEGIN {
    printf "alertd: %d rules, cpu %.2f s (user+sys) = %.2f s per million readings\n",
        n, c / t, (c / t) / (r / 1e6) }'
grep VmHWM /proc/$PID/status | sed 's/^/alertd: /'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
