#!/bin/sh
# bench/ingest/ab.sh BUILD [CONNS] [DIR]: aggd and ingestd of BUILD (a
# build directory) started on a fresh spool and data directory under
# BUILD, the peers' load.py POSTing the .lp bodies of DIR (default: the
# first 400 of the bench's main set, 2 M points, as symlinks in
# /tmp/sp-ingest-ab) with CONNS connections (2); prints load.py's rate
# and POST latency and ingestd's CPU per point, in all and per thread.
# Run it alternately on two builds to compare them on a shared machine
# (docs/BENCHMARKS.md, seventh session). Bounded: each body once,
# load.py's own --max-seconds (600).
B=$(cd "$1" && pwd) || exit 2
C=${2:-2}
SUB=${3:-}
. "$(dirname "$0")/lib.sh"
if [ -z "$SUB" ]; then
    SUB=/tmp/sp-ingest-ab
    ingest_bodies 400 "$SUB"
fi
D=$(mktemp -d "$B/ingest-ab.XXXX")
ingest_aggd "$B" "$D"
"$B/ingestd" --rundir "$D/run" --port "$P" --mqtt-port 0 --spool "$D/spool" >"$D/ingestd.log" 2>&1 &
I=$!
for i in $(seq 200); do grep -q ready: "$D/ingestd.log" && break; sleep 0.05; done
python3 "$PEERS/load.py" --url "http://127.0.0.1:$P/write?precision=s" --dir "$SUB" \
    --conns "$C" --pid "$I" >"$D/load.json"
python3 - "$I" "$D/load.json" <<'PY'
import json, os, sys
pid, r = sys.argv[1], json.load(open(sys.argv[2]))
n = r["points_acked"]
tk = os.sysconf("SC_CLK_TCK")
def cpu(stat):
    f = open(stat).read().rsplit(")", 1)
    name = f[0].split("(", 1)[1]
    v = f[1].split()
    return name, int(v[11]) / tk * 1e6 / n, int(v[12]) / tk * 1e6 / n
_, u, s = cpu("/proc/%s/stat" % pid)
print("threads (user+sys us/point):", " ".join(
    "%s %.3f+%.3f" % cpu("/proc/%s/task/%s/stat" % (pid, t))
    for t in sorted(os.listdir("/proc/%s/task" % pid), key=int)))
print("points/s %.0f POST p50 %.2f p99 %.2f ms; ingestd us/point user %.3f sys %.3f; "
      "client %.2f cores, other work %.2f cores" % (
          r["points_per_s"], r["req_lat_ms_p50"], r["req_lat_ms_p99"], u, s,
          r["client_cores"], r["other_cores"]))
PY
kill "$I"; wait "$I" 2>/dev/null
kill "$A"; wait "$A" 2>/dev/null
rm -rf "$D"
