#!/bin/sh
# Install every Debian package the build, run and tests need, only when one
# is missing (dpkg -s), with one apt-get update. Idempotent and quick.
PKGS="build-essential pkg-config clang libclang-rt-14-dev libczmq-dev libzmq3-dev
libmsgpack-dev libjansson-dev libmosquitto-dev mosquitto mosquitto-clients
mosquitto-dev libmicrohttpd-dev libwslay-dev libsqlite3-dev libcurl4-openssl-dev
libzstd-dev zlib1g-dev libsodium-dev libjwt-dev python3 python3-zmq python3-msgpack curl runit influxdb influxdb-client
chromium prometheus clickhouse-server"
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
apt-get update -qq || exit 1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing || exit 1
