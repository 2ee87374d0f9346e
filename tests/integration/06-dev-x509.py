#!/usr/bin/env python3
"""Devices log in to mosquitto with X.509 certificates from
deploy/mosquitto/sensorpipe-ca (require_certificate, CN = user name) and the
ACLs apid writes still hold: own topic delivered, another device's topic
dropped; no certificate, or one from another CA, is refused."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import ROOT, Failure, Platform, Subscriber, check, free_port, main  # noqa: E402

CA = os.path.join(ROOT, "deploy", "mosquitto", "sensorpipe-ca")


def ca(*args):
    r = subprocess.run(["sh", CA] + list(args), capture_output=True, text=True)
    if r.returncode:
        raise Failure("sensorpipe-ca %s: %s" % (args, r.stderr))


def tls(cadir, port, dev, other_ca=None):
    a = ["-h", "127.0.0.1", "-p", str(port), "--cafile", os.path.join(cadir, "ca.crt")]
    if dev:
        d = os.path.join(other_ca or cadir, "devices")
        a += ["--cert", os.path.join(d, dev + ".crt"), "--key", os.path.join(d, dev + ".key")]
    return a


def test():
    for tool in ("mosquitto", "openssl"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            print(tool + " is not installed")
            sys.exit(77)
    p = Platform(daemons=("apid",))
    mq, cadir, evil = (os.path.join(p.dir, n) for n in ("mqtt", "ca", "evil"))
    pidfile = os.path.join(p.dir, "mosquitto.pid")
    os.makedirs(mq)
    os.chmod(p.dir, 0o755)
    ca(cadir, "init")
    ca(evil, "init")
    # The broker reads its key after dropping root (production: chown).
    os.chmod(os.path.join(cadir, "server.key"), 0o644)
    for d in ("sensor-001", "sensor-002", "svc"):
        ca(cadir, "device", d)
    ca(evil, "device", "sensor-001")
    with open(os.path.join(mq, "acl.static"), "w") as f:
        f.write("user svc\ntopic read devices/#\n")
    p.extra = {"apid": ["--mqtt-auth", mq, "--mqtt-pidfile", pidfile]}
    p.start()
    port = free_port()
    conf = os.path.join(p.dir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("per_listener_settings false\nallow_anonymous false\n"
                "password_file %s/passwd\nacl_file %s/acl\nlog_type all\n"
                "listener %d 127.0.0.1\ncafile %s/ca.crt\ncertfile %s/server.crt\n"
                "keyfile %s/server.key\nrequire_certificate true\n"
                "use_identity_as_username true\n" % (mq, mq, port, cadir, cadir, cadir))
    log = os.path.join(p.dir, "mosquitto.log")
    out = open(log, "ab")
    broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=out, stderr=subprocess.STDOUT)
    out.close()
    try:
        time.sleep(0.5)
        if broker.poll() is not None:
            raise Failure("mosquitto did not start: " + open(log).read())
        with open(pidfile, "w") as f:
            f.write("%d\n" % broker.pid)
        for d in ("sensor-001", "sensor-002"):
            st, _, b = p.http("POST", "/api/devices/register", {"deviceId": d, "type": "t"})
            check(st == 201, "%s registered" % d)

        def pub(dev, topic, msg, other=None):
            return subprocess.run(["mosquitto_pub"] + tls(cadir, port, dev, other) +
                                  ["-q", "1", "-i", (dev or "anon") + "-pub", "-t", topic,
                                   "-m", msg], capture_output=True, timeout=10).returncode

        deadline = time.time() + 5
        while time.time() < deadline and pub("sensor-001", "devices/sensor-001/telemetry", "x"):
            time.sleep(0.1)
        sub = Subscriber(tls(cadir, port, "svc") + ["-q", "1", "-t", "devices/#", "-v"])
        check(sub.subscribed(lambda: pub("sensor-001", "devices/sensor-001/telemetry",
                                         "probe"), " probe"),
              "the service's subscriber is in place")
        pub("sensor-001", "devices/sensor-002/telemetry", '{"forged":1}')
        rc1 = pub("sensor-001", "devices/sensor-001/telemetry", '{"own":1}')
        sub.read_until('{"own":1}')
        got = sub.stop()
        check(rc1 == 0 and 'devices/sensor-001/telemetry {"own":1}' in got,
              "a device with its certificate publishes to its own topic")
        check("forged" not in got, "its publish to another device's topic is dropped")
        check(pub(None, "devices/sensor-001/telemetry", "x") != 0,
              "no client certificate: refused")
        check(pub("sensor-001", "devices/sensor-001/telemetry", "x", other=evil) != 0,
              "a certificate from another CA: refused")
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)
        p.stop()


if __name__ == "__main__":
    main(test)
