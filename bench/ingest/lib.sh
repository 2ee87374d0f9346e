# Sourced by bench/ingest/ab.sh and callgrind.sh: what both set up.
#
#   ingest_bodies N SUB   the first N .lp bodies of the bench's main set
#                         (sh bench/run.sh makes it) as symlinks in SUB
#   ingest_aggd B D       aggd of build B on a fresh directory D, with no
#                         downstream; sets A (its pid), P (a free port for
#                         ingestd) and PEERS; returns once aggd is ready
PEERS=${SP_PEERS:-/work/shared/peers}

ingest_bodies() {
    main=$(ls -d /tmp/sp-bench/data-1000x10000/main 2>/dev/null)
    [ -n "$main" ] || { echo "no bench data: run sh bench/run.sh once" >&2; exit 2; }
    mkdir -p "$2"
    ls "$main" | head -"$1" | while read -r f; do ln -sf "$main/$f" "$2/$f"; done
}

ingest_aggd() {
    P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    "$1/aggd" --rundir "$2/run" --down none --data "$2/data.{lane}" >"$2/aggd.log" 2>&1 &
    A=$!
    for i in $(seq 200); do grep -q ready: "$2/aggd.log" && break; sleep 0.05; done
}
