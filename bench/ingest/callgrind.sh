#!/bin/sh
# bench/ingest/callgrind.sh BUILD [OUT]: ingestd of BUILD under callgrind
# (aggd of BUILD plain), the peers' load.py POSTing the first 40 bodies
# of the bench's main set (200,000 points, as symlinks in
# /tmp/sp-ingest-cg) with 2 connections; prints callgrind's instruction
# total (OUT, default /tmp/sp-ingest-cg.out, keeps the profile for
# callgrind_annotate). ingestd started and left idle for 2 s is ~28 M of
# it (docs/BENCHMARKS.md, eighth session). Bounded: each body once.
B=$(cd "$1" && pwd) || exit 2
OUT=${2:-/tmp/sp-ingest-cg.out}
PEERS=${SP_PEERS:-/work/shared/peers}
SUB=/tmp/sp-ingest-cg
MAIN=$(ls -d /tmp/sp-bench/data-1000x10000/main 2>/dev/null)
[ -n "$MAIN" ] || { echo "no bench data: run sh bench/run.sh once" >&2; exit 2; }
mkdir -p "$SUB"
ls "$MAIN" | head -40 | while read -r f; do ln -sf "$MAIN/$f" "$SUB/$f"; done
D=$(mktemp -d "$B/ingest-cg.XXXX")
P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$B/aggd" --rundir "$D/run" --down none --data "$D/data.{lane}" >"$D/aggd.log" 2>&1 &
A=$!
for i in $(seq 200); do grep -q ready: "$D/aggd.log" && break; sleep 0.05; done
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$B/ingestd" --rundir "$D/run" \
    --port "$P" --mqtt-port 0 --spool "$D/spool" >"$D/ingestd.log" 2>&1 &
I=$!
for i in $(seq 600); do grep -q ready: "$D/ingestd.log" && break; sleep 0.1; done
python3 "$PEERS/load.py" --url "http://127.0.0.1:$P/write?precision=s" --dir "$SUB" \
    --conns 2 >"$D/load.json"
kill "$I"; wait "$I" 2>/dev/null
kill "$A"; wait "$A" 2>/dev/null
rm -rf "$D"
callgrind_annotate "$OUT" 2>/dev/null | grep "PROGRAM TOTALS"
