#!/bin/sh
# make install into a temporary PREFIX, then check what it installed:
# systemd-analyze verify accepts every unit without a single warning, the
# units' confinement scores "OK" or better in systemd-analyze security,
# every example configuration passes the daemon's own -n check, and the
# runit scripts parse. Exit 0 pass, 77 skip, anything else fail.
ROOT=${SP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SP_BUILD=${SP_BUILD:-build}
cd "$ROOT" || exit 1
command -v systemd-analyze >/dev/null || { echo "skip: no systemd-analyze"; exit 77; }
for d in aggd anomalyd alertd ingestd apid; do
    [ -x "$SP_BUILD/$d" ] || { echo "skip: $SP_BUILD/$d not built"; exit 77; }
done
T=$(mktemp -d /tmp/sp-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# -o all: install what is built, never rebuild it here with other flags.
make -s --no-print-directory -o all install B="$SP_BUILD" PREFIX="$T/usr" \
    SYSCONFDIR="$T/etc" >"$T/install.log" 2>&1 || { cat "$T/install.log"; exit 1; }
ok "make install PREFIX=$T/usr"
U=$T/usr/lib/systemd/system
for f in "$T/usr/bin/aggd" "$T/usr/bin/apid" "$T/usr/bin/sensorpipe-tap" \
         "$T/usr/share/man/man8/aggd.8" "$U/aggd.service" "$U/aggd@.service" \
         "$T/usr/bin/sensorpipectl" "$T/usr/bin/sensorpipe-sim" \
         "$T/usr/share/man/man8/sensorpipectl.8" "$T/usr/share/man/man1/sensorpipe-sim.1" \
         "$T/usr/share/man/man1/sensorpipe-tap.1" \
         "$U/sensorpipe.target" "$U/mosquitto.service.d/sensorpipe.conf" \
         "$T/usr/lib/sysusers.d/sensorpipe.conf" "$T/etc/sv/aggd/run" \
         "$T/etc/sv/aggd/log/run" "$T/etc/sensorpipe/aggd.conf" \
         "$T/etc/sensorpipe/env/aggd.env" "$T/usr/lib/sensorpipe/sensorpipe_spool.so" \
         "$T/etc/mosquitto/conf.d/sensorpipe.conf"; do
    [ -e "$f" ] && ok "installed ${f#$T}" || bad "missing ${f#$T}"
done
grep -q "^ExecStart=$T/usr/bin/aggd -f $T/etc/sensorpipe/aggd.conf" "$U/aggd.service" &&
    ok "units name the installed binary and configuration" ||
    bad "ExecStart not rewritten: $(grep ExecStart "$U/aggd.service")"

# The broker configuration loads the installed plugin, the drop-in creates
# the directory ingestd.conf reads, and a real mosquitto started on that
# configuration (port and spool moved into $T) spools a telemetry PUBLISH.
MQ=$T/etc/mosquitto/conf.d/sensorpipe.conf
grep -q "^plugin $T/usr/lib/sensorpipe/sensorpipe_spool.so$" "$MQ" &&
    ok "mosquitto's sensorpipe.conf names the installed plugin" ||
    bad "plugin path in $MQ: $(grep '^plugin ' "$MQ")"
dir=$(sed -n 's/^plugin_opt_spool_dir //p' "$MQ")
grep -q "^mqtt-spool = $dir$" "$T/etc/sensorpipe/ingestd.conf" &&
    grep -q "install -d .* $dir$" "$U/mosquitto.service.d/sensorpipe.conf" &&
    grep -q "^ReadWritePaths=-$dir$" "$U/ingestd.service" &&
    grep -q "install -d .* $dir " "$T/etc/sv/mosquitto/run" &&
    ok "broker, drop-in, runit and ingestd agree on the spool $dir" ||
    bad "spool directory $dir not the same everywhere"
if command -v mosquitto >/dev/null && command -v mosquitto_pub >/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -m 0777 "$T/mq"; chmod 0755 "$T"
    sed -e "s|^listener 1883 |listener $port |" -e "s|^plugin_opt_spool_dir .*|plugin_opt_spool_dir $T/mq|" \
        "$MQ" > "$T/mq.conf"
    mosquitto -c "$T/mq.conf" >"$T/mq.log" 2>&1 &
    mqpid=$!
    i=0; while [ $i -lt 50 ] && ! mosquitto_pub -p "$port" -q 1 -t devices/d1/telemetry \
        -m '{"metrics":{"t":1}}' 2>/dev/null; do i=$((i + 1)); sleep 0.1; done
    kill "$mqpid"; wait "$mqpid"
    if ls "$T/mq" | grep -q '^mq-' && [ -s "$T/mq/$(ls "$T/mq" | grep '^mq-' | head -n 1)" ]; then
        ok "mosquitto loads the installed plugin and spools a telemetry PUBLISH"
    else
        bad "installed plugin did not spool: $(cat "$T/mq.log")"
    fi
fi

# DESTDIR stages without changing the paths inside the files.
make -s --no-print-directory -o all install B="$SP_BUILD" DESTDIR="$T/stage" \
    PREFIX=/usr >/dev/null 2>&1 && [ -x "$T/stage/usr/bin/aggd" ] &&
    grep -q "^ExecStart=/usr/bin/aggd " "$T/stage/usr/lib/systemd/system/aggd.service" &&
    ok "DESTDIR stages under $T/stage with /usr paths" || bad "DESTDIR install"

cp "$U/aggd@.service" "$U/aggd@2.service"
for u in aggd anomalyd alertd ingestd apid aggd@2; do
    out=$(systemd-analyze verify --man=no "$U/$u.service" 2>&1)
    [ -z "$out" ] && ok "systemd-analyze verify $u.service: clean" ||
        bad "verify $u.service: $out"
    level=$(systemd-analyze security --offline=yes "$U/$u.service" 2>&1 |
            sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p')
    case $level in
    *" OK"|*" SAFE") ok "$u.service exposure $level" ;;
    *) bad "$u.service exposure '$level'" ;;
    esac
    grep -q '^Type=notify' "$U/$u.service" && grep -q '^WatchdogSec=' "$U/$u.service" &&
        grep -q '^RestartPreventExitStatus=78' "$U/$u.service" &&
        ok "$u.service: notify, watchdog, no restart on 78" || bad "$u.service settings"
done
out=$(systemd-analyze verify --man=no "$U/sensorpipe.target" 2>&1)
[ -z "$out" ] && ok "systemd-analyze verify sensorpipe.target: clean" || bad "target: $out"

# The installed copies: -n makes the daemon's own checks too, so alertd
# reads the rules file its configuration names (installed beside it).
for d in aggd anomalyd alertd ingestd apid; do
    "$SP_BUILD/$d" -n -f "$T/etc/sensorpipe/$d.conf" >"$T/n.log" 2>&1 &&
        grep -q "configuration OK" "$T/n.log" && ok "$d -n accepts the installed deploy/examples/$d.conf" ||
        { bad "$d -n -f $T/etc/sensorpipe/$d.conf"; cat "$T/n.log"; }
done
for f in deploy/runit/*/run deploy/runit/*/finish deploy/runit/*/log/run; do
    sh -n "$f" && [ -x "$f" ] || bad "$f does not parse or is not executable"
done
ok "runit scripts parse and are executable"
exit $fail
