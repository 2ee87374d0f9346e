#!/bin/sh
# MQTT ingest benchmark: DEVICES simulated devices (one connection each)
# publish for SECONDS through mosquitto + the sensorpipe spool plugin ->
# ingestd -> aggd; tap on aggd's PUB measures publish-to-visible latency.
#   DEVICES=10000 RATE=1 SECONDS=60 sh bench/mqtt/run.sh
set -eu
B=${B:-build}
DEVICES=${DEVICES:-10000}
RATE=${RATE:-1}
SECONDS_=${SECONDS:-60}
PROCS=${PROCS:-$(( (DEVICES + 2999) / 3000 ))}
T=$(mktemp -d /tmp/sp-bench-mqtt.XXXXXX)
chmod 755 "$T"; mkdir -p "$T/mq" "$T/run"; chmod 777 "$T/mq"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MQ=$(port); API=$(port); ING=$(port)
sed -e "s|@PORT@|$MQ|" -e "s|@PLUGIN@|$(pwd)/$B/sensorpipe_spool.so|" -e "s|@SPOOL@|$T/mq|" \
    deploy/mosquitto/sensorpipe.conf.in > "$T/mosquitto.conf"
mosquitto -c "$T/mosquitto.conf" > "$T/mosquitto.log" 2>&1 & MQP=$!
# Its own --data: aggd's default ./var/data holds the WAL of earlier runs,
# whose (producer, seq) marks would make it drop this run's batches.
$B/aggd --rundir "$T/run" --data "$T/data" --down none 2> "$T/aggd.log" & AP=$!
$B/ingestd --rundir "$T/run" --spool "$T/spool" --port "$ING" --mqtt-port "$MQ" \
    --mqtt-spool "$T/mq" 2> "$T/ingestd.log" & IP=$!
sleep 1
# latency.py stamps each line as it arrives, so it reads tap live.
mkfifo "$T/tap.fifo"
LAT_DUMP=${KEEP:+$T/latency.txt} python3 bench/mqtt/latency.py < "$T/tap.fifo" > "$T/latency.json" 2> "$T/latency.err" & LP=$!
$B/tap "ipc://$T/run/aggd.0.pub" > "$T/tap.fifo" 2> "$T/tap.err" & TP=$!
sleep 0.5
# CPU seconds (user + system) of a process so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
C0="$(cpu $MQP) $(cpu $IP) $(cpu $AP)"
# -W: the window opens once all devices are connected, so the figures are
# for the whole fleet publishing, not for the connect ramp.
$B/sensorpipe-sim -p "$MQ" -n "$DEVICES" -r "$RATE" -d "${SECONDS_}s" -P "$PROCS" -C 50 \
    -W 120s --report "$T/sim.json" -q 2>&1 | tail -2
sleep ${SETTLE:-2}
kill $TP; wait $TP 2>/dev/null || true
wait $LP || true
cat "$T/latency.json" "$T/latency.err" "$T/tap.err"
# CPU per reading stored, over the whole run (the connect ramp included).
echo "$C0 $(cpu $MQP) $(cpu $IP) $(cpu $AP) $(sed -n 's/.*"readings": \([0-9]*\).*/\1/p' "$T/latency.json")" |
    awk '{n = $7 > 0 ? $7 : 1
          printf "cpu s (user+sys) mosquitto %.2f ingestd %.2f aggd %.2f; us/reading %.2f / %.2f / %.2f\n",
                 $4-$1, $5-$2, $6-$3, ($4-$1)/n*1e6, ($5-$2)/n*1e6, ($6-$3)/n*1e6}'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
ps -o rss=,comm= -p $MQP,$AP,$IP | awk '{s+=$1; printf "rss %s %.0f MiB\n", $2, $1/1024} END {printf "rss total %.0f MiB\n", s/1024}'
kill $IP $AP $MQP; wait $IP $AP $MQP 2>/dev/null || true
# KEEP=1 leaves the run's files (plugin spool, logs) for a closer look.
if [ -n "${KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
