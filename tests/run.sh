#!/bin/sh
# Run every test of every kind and end with "N passed, N failed, N skipped".
#
#   selftests   build/selftest and build-asan/selftest, one module at a time
#   integration tests/integration/NN-*.{sh,py} against the ASan binaries
#               (exit 0 pass, 77 skip, anything else fail)
#   chaos       tests/chaos/NN-*.py, the same way; their fault-by-fault
#               counts and summary line are printed
#   fuzz        build-fuzz/fuzz_* for FUZZ_SECONDS each on their corpus
#
# FULL=1 selects the long tier (longer fuzzing, SP_FULL=1 for the tests).
# ONLY=fuzz runs the fuzz targets alone (make fuzz).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
pass=0; fail=0; skip=0; failed=""
if [ -n "$FULL" ]; then FUZZ_SECONDS=${FUZZ_SECONDS:-300}; export SP_FULL=1
else FUZZ_SECONDS=${FUZZ_SECONDS:-10}; fi
LOGDIR=$(mktemp -d /tmp/sp-test-logs.XXXXXX)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

result() { # name rc logfile
    case $2 in
    0) pass=$((pass + 1)); echo "ok - $1" ;;
    77) skip=$((skip + 1)); echo "ok - $1 # SKIP $(tail -n 1 "$3" 2>/dev/null)" ;;
    *) fail=$((fail + 1)); failed="$failed $1"; echo "not ok - $1 (exit $2)";
       sed 's/^/    # /' "$3" | tail -n 40 ;;
    esac
}

SELFTEST_BUILDS="build build-asan"; TESTS="tests/integration/* tests/chaos/*"
[ "$ONLY" = fuzz ] && { SELFTEST_BUILDS=""; TESTS=""; }
for b in $SELFTEST_BUILDS; do
    [ -x $b/selftest ] || { result "$b/selftest (missing)" 1 /dev/null; continue; }
    for t in $($b/selftest -l); do
        log=$LOGDIR/selftest-$b-$t.log
        timeout 300 $b/selftest -t "$t" >"$log" 2>&1
        rc=$?
        # A sanitizer report fails the test even when the exit status is 0.
        grep -q -E 'AddressSanitizer|LeakSanitizer|runtime error' "$log" && rc=1
        result "selftest $b $t" $rc "$log"
    done
done

ttime=0
for t in $TESTS; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    kind=$(basename "$(dirname "$t")")
    log=$LOGDIR/$name.log
    t0=$(date +%s)
    SP_BUILD=${SP_BUILD:-build-asan} SP_ROOT=$ROOT timeout 900 "$t" >"$log" 2>&1
    rc=$?
    [ "$kind" = chaos ] && grep -E '^(chaos summary|http|mqtt|fault):' "$log" | sed 's/^/    # /'
    t1=$(date +%s); ttime=$((ttime + t1 - t0))
    result "$kind $name ($((t1 - t0)) s)" $rc "$log"
done

# The long tier also runs the full anomaly evaluation (make eval) on the
# plain build: the ASan build is too slow for every file of the corpus.
if [ -n "$FULL" ] && [ -z "$ONLY" ]; then
    log=$LOGDIR/eval-nab.log
    SP_BUILD=build timeout 1200 sh tests/nab/eval.sh >"$log" 2>&1
    result "eval nab (tests/nab/eval.sh)" $? "$log"
fi

for f in build-fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=${f#build-fuzz/fuzz_}
    corpus=$LOGDIR/corpus-$name
    mkdir -p "$corpus"
    [ -d tests/fixtures/fuzz/$name ] && cp tests/fixtures/fuzz/$name/* "$corpus"/ 2>/dev/null
    log=$LOGDIR/fuzz-$name.log
    "$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=0 "$corpus" >"$log" 2>&1
    rc=$?
    # UBSan in the fuzz build reports and goes on: a report fails too.
    grep -q -E 'runtime error:|AddressSanitizer|LeakSanitizer' "$log" && rc=1
    n=$(ls "$corpus" | wc -l)
    result "fuzz $name (${FUZZ_SECONDS}s, corpus $n inputs)" $rc "$log"
done

echo "logs: $LOGDIR (integration and chaos tests took $ttime s)"
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
