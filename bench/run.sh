#!/bin/sh
# make bench: storage benchmarks of sensorpipe against VictoriaMetrics and
# InfluxDB 1.x (Debian packages, started here on free loopback ports), with
# the peers' generator and loader in /work/shared/peers (SP_PEERS).
#
#   BENCH_SERIES=1000 BENCH_POINTS=10000 BENCH_CONNS=2,4 make bench
#
# Installs the peers and python3-numpy when missing; the packages' own
# services are stopped, since they would take ports 8086 and 8428.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
missing=""
for p in victoria-metrics influxdb python3-numpy; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    for s in influxdb victoria-metrics; do
        service "$s" stop >/dev/null 2>&1 || true
    done
fi
mkdir -p "$ROOT/build/bench"
exec /usr/bin/python3 "$ROOT/bench/storage.py" \
    --series "${BENCH_SERIES:-1000}" --points "${BENCH_POINTS:-10000}" \
    --conns "${BENCH_CONNS:-2,4}" \
    --json "$ROOT/build/bench/storage.jsonl" "$@"
