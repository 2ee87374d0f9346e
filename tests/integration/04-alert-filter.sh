#!/bin/sh
# alertd --stdin --stdout: a sustained breach fires once (not once per
# reading), only after "for", resolves when the value drops; a blip shorter
# than "for" never fires; "clear when" holds a firing alert (hysteresis);
# devices are separate scopes; a bad rules file exits 78 naming
# file:line:column. Exit 0 pass, 77 skip, anything else fail.
ROOT=${SP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=$ROOT/${SP_BUILD:-build}/alertd
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
T=$(mktemp -d /tmp/sp-04-alert.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok - $1"; }
no() { echo "not ok - $1"; fails=$((fails + 1)); }
check() { # description, then a command
    d=$1; shift
    if "$@"; then ok "$d"; else no "$d"; fi
}

cat > "$T/rules" <<'RULES'
# 04-alert-filter
high_temp: temperature > 30 for 1m severity critical
humid: humidity > 80 clear when humidity < 60
RULES

# Readings every 10 s from 2024-01-01T00:00:00Z (epoch ms 1704067200000):
# s1 is 20 until t=100, 35 from t=100 to t=400, 20 after: a sustained
# breach. s2 is 35 only at t=200 and t=210: a blip shorter than "for".
# h1 humidity: 90 at t=100..150, 70 at t=160..200 (between the limits),
# 50 from t=210.
awk 'BEGIN {
    for (t = 0; t < 600; t += 10) {
        ms = 1704067200000 + t * 1000;
        v = (t >= 100 && t <= 400) ? 35 : 20;
        printf "{\"series\":\"temperature{device=s1}\",\"timestamp\":%.0f,\"value\":%d}\n", ms, v;
        v = (t == 200 || t == 210) ? 35 : 20;
        printf "{\"series\":\"temperature{device=s2}\",\"timestamp\":%.0f,\"value\":%d}\n", ms, v;
        v = (t >= 100 && t <= 150) ? 90 : (t > 150 && t <= 200) ? 70 : 50;
        printf "{\"series\":\"humidity{device=h1}\",\"timestamp\":%.0f,\"value\":%d}\n", ms, v;
    }
    print "this line is not JSON";
}' > "$T/in.jsonl"

"$BIN" --rules "$T/rules" --stdin --stdout < "$T/in.jsonl" > "$T/out" 2> "$T/err"
rc=$?
check "filter exits 0 (got $rc)" [ $rc -eq 0 ]
echo "# events:"; sed 's/^/#   /' "$T/out"

count() { grep -c "$1" "$T/out"; }
S1='"rule":"high_temp","scope":"temperature{device=s1}"'
S2='"rule":"high_temp","scope":"temperature{device=s2}"'
H1='"rule":"humid","scope":"humidity{device=h1}"'
check "s1: pending once" [ "$(count "$S1.*\"state\":\"pending\"")" -eq 1 ]
check "s1: fires once for 30 breaching readings" \
    [ "$(count "$S1.*\"state\":\"firing\"")" -eq 1 ]
check "s1: pending at the first breach (t=100)" \
    grep -q "$S1.*\"state\":\"pending\".*\"timestamp\":\"2024-01-01T00:01:40.000Z\"" "$T/out"
check "s1: firing only after 'for 1m' (t=160)" \
    grep -q "$S1.*\"state\":\"firing\",\"severity\":\"critical\",\"timestamp\":\"2024-01-01T00:02:40.000Z\"" "$T/out"
check "s1: resolves once when the value drops (t=410)" \
    [ "$(count "$S1.*\"state\":\"resolved\".*\"timestamp\":\"2024-01-01T00:06:50.000Z\"")" -eq 1 ]
check "s2: a 20 s blip never fires" [ "$(count "$S2.*\"state\":\"firing\"")" -eq 0 ]
check "s2: the blip goes pending and back" \
    [ "$(count "$S2.*\"state\":\"pending\"")" -eq 1 -a "$(count "$S2.*\"state\":\"resolved\"")" -eq 1 ]
check "h1: fires at once without 'for'" \
    grep -q "$H1.*\"state\":\"firing\".*\"timestamp\":\"2024-01-01T00:01:40.000Z\"" "$T/out"
check "h1: 'clear when' holds the alert at 70 and resolves below 60 (t=210)" \
    [ "$(count "$H1.*\"state\":\"resolved\"")" -eq 1 ] && \
    check "h1: resolved at t=210" \
    grep -q "$H1.*\"state\":\"resolved\".*\"timestamp\":\"2024-01-01T00:03:30.000Z\"" "$T/out"
check "exactly 7 events in all" [ "$(wc -l < "$T/out")" -eq 7 ]
check "each change is logged once at info" \
    [ "$(grep -c 'info: alert firing: rule=high_temp' "$T/err")" -eq 1 ]
check "the bad input line is reported with its line number" \
    grep -q 'stdin:181' "$T/err"
check "shutdown complete is logged" grep -q 'shutdown complete' "$T/err"

# Deadman: d1 reports every 10 s but is silent from t=100 to t=400 while
# d2 keeps the stream's clock moving. nodata(x, 2m) fires once, at the
# first tick after 120 s of silence (just before t=220), and resolves
# when d1 reports again at t=400.
printf 'silent: nodata(power, 2m) severity error\n' > "$T/dead.rules"
awk 'BEGIN {
    for (t = 0; t < 500; t += 10) {
        ms = 1704067200000 + t * 1000;
        if (t < 100 || t >= 400)
            printf "{\"series\":\"power{device=d1}\",\"timestamp\":%.0f,\"value\":1}\n", ms;
        printf "{\"series\":\"power{device=d2}\",\"timestamp\":%.0f,\"value\":1}\n", ms;
    }
}' > "$T/dead.jsonl"
"$BIN" --rules "$T/dead.rules" --stdin --stdout < "$T/dead.jsonl" > "$T/dead.out" 2>/dev/null
sed 's/^/#   /' "$T/dead.out"
D1='"rule":"silent","scope":"power{device=d1}"'
check "deadman: two events, both for the silent device" \
    [ "$(wc -l < "$T/dead.out")" -eq 2 -a "$(grep -c "$D1" "$T/dead.out")" -eq 2 ]
check "deadman: fires after 2 minutes of silence" \
    grep -q "$D1.*\"state\":\"firing\",\"severity\":\"error\",\"timestamp\":\"2024-01-01T00:03:39.999Z\"" "$T/dead.out"
check "deadman: resolves when data returns (t=400)" \
    grep -q "$D1.*\"state\":\"resolved\".*\"timestamp\":\"2024-01-01T00:06:40.000Z\"" "$T/dead.out"

# A bad rules file: exit 78, every error with file:line:column.
printf 'ok: temperature > 30\nbad: temperature >> 30\nworse: avg(temperature) > 1\n' > "$T/bad"
"$BIN" --rules "$T/bad" --stdin --stdout < /dev/null > /dev/null 2> "$T/err2"
rc=$?
check "bad rules file exits 78 (got $rc)" [ $rc -eq 78 ]
check "first error names file:line:column" grep -q "$T/bad:2:19: " "$T/err2"
check "second error is reported too" grep -q "$T/bad:3:" "$T/err2"

[ $fails -eq 0 ] || { echo "# stderr:"; sed 's/^/#   /' "$T/err" "$T/err2"; }
echo "$fails failed"
[ $fails -eq 0 ]
