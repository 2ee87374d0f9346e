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
. "$(dirname "$0")/lib.sh"
SUB=/tmp/sp-ingest-cg
ingest_bodies 40 "$SUB"
D=$(mktemp -d "$B/ingest-cg.XXXX")
ingest_aggd "$B" "$D"
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
