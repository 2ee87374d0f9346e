#!/bin/sh
# Install every Debian package the build, run and tests need, only when one
# is missing (dpkg -s), with one apt-get update. Idempotent and quick.
PKGS="build-essential pkg-config clang libclang-rt-14-dev libczmq-dev libzmq3-dev
libmsgpack-dev libjansson-dev libmosquitto-dev mosquitto mosquitto-clients
mosquitto-dev libmicrohttpd-dev libwslay-dev libsqlite3-dev libcurl4-openssl-dev
libzstd-dev zlib1g-dev libsodium-dev libjwt-dev python3 python3-zmq python3-msgpack python3-numpy curl runit influxdb influxdb-client
chromium prometheus clickhouse-server mandoc"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: not root; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
# mosquitto, influxdb, prometheus and clickhouse-server come with services
# that would start on their well-known ports; make run and the tests start
# their own on loopback, so keep the packages' services from starting
# (policy-rc.d, Debian's way), unless the machine already has a policy.
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && ours=1
fi
rc=0
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing || rc=1
[ -n "$ours" ] && rm -f "$policy"
exit $rc
