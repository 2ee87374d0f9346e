#!/bin/sh
# alertd's mqtt channel against a real local mosquitto broker: a firing
# alert is published at QoS 1 on alerts/{severity}/{rule} and a subscriber
# receives the alert JSON; the alert of tenant acme's series goes to
# tenants/acme/alerts/{severity}/{rule} and never to the shared topic.
# Exit 0 pass, 77 skip, anything else fail.
ROOT=${SP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=$ROOT/${SP_BUILD:-build}/alertd
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
command -v mosquitto >/dev/null && command -v mosquitto_sub >/dev/null ||
    { echo "skip: mosquitto not installed"; exit 77; }
T=$(mktemp -d /tmp/sp-04-mqtt.XXXXXX) || exit 1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" > "$T/mosq.conf"
mosquitto -c "$T/mosq.conf" > "$T/mosq.log" 2>&1 &
MOSQ=$!
SUB=
trap 'kill $MOSQ $SUB 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
for i in $(seq 50); do
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -t x -W 1 -C 1 >/dev/null 2>&1
    [ $? -ne 5 ] && grep -q "listen" "$T/mosq.log" 2>/dev/null && break
    sleep 0.1
done
mosquitto_sub -h 127.0.0.1 -p "$PORT" -q 1 -t '#' -v -C 2 -W 20 \
    > "$T/sub.out" 2>&1 &
SUB=$!
sleep 0.5
cat > "$T/rules" <<'RULES'
channel bus: mqtt
hot: temperature > 30 severity critical notify bus
RULES
printf '%s\n' '{"series":"temperature{device=s1}","timestamp":1704067200000,"value":35}' \
    '{"series":"temperature{device=s1,tenant=acme}","timestamp":1704067200000,"value":36}' |
    "$BIN" --rules "$T/rules" --db "$T/alertd.db" --mqtt-port "$PORT" \
        --stdin --stdout --drain 10s > "$T/out" 2> "$T/err"
rc=$?
wait $SUB
SUB=
fails=0
check() { d=$1; shift; if "$@"; then echo "ok - $d"; else echo "not ok - $d"; fails=$((fails+1)); fi; }
check "alertd exits 0 (got $rc)" [ $rc -eq 0 ]
echo "# received: $(cat "$T/sub.out")"
check "published on alerts/critical/hot" grep -q '^alerts/critical/hot {' "$T/sub.out"
check "acme's alert on tenants/acme/alerts/critical/hot" \
    grep -q '^tenants/acme/alerts/critical/hot {.*"scope":"temperature{device=s1,tenant=acme}"' "$T/sub.out"
check "acme's alert is not on the shared topic" \
    sh -c "! grep '^alerts/' '$T/sub.out' | grep -q tenant=acme"
check "the payload is the alert" grep -q '"rule":"hot","scope":"temperature{device=s1}".*"state":"firing"' "$T/sub.out"
check "the delivery is logged as sent" grep -q 'notify: sent rule=hot.*channel=bus' "$T/err"
[ $fails -eq 0 ] || sed 's/^/#   /' "$T/err"
[ $fails -eq 0 ]
