#!/usr/bin/env python3
"""Per-device MQTT credentials enforced by a real mosquitto: apid writes the
broker's password and ACL files from the registry and SIGHUPs it. A device
publishes to its own topic, is dropped on another device's topic, cannot read
another device's commands; a wrong, rotated or decommissioned password is
refused; no password appears in any log."""
import base64
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, Subscriber, check, free_port, main  # noqa: E402


def mosq_hash(pw):
    """mosquitto_passwd's $7$ format, computed independently of apid."""
    salt = secrets.token_bytes(12)
    dk = hashlib.pbkdf2_hmac("sha512", pw.encode(), salt, 101)
    return "$7$101$%s$%s" % (base64.b64encode(salt).decode(),
                             base64.b64encode(dk).decode())


class Broker:
    def __init__(self, d, mq):
        self.port = free_port()
        self.conf = os.path.join(d, "mosquitto.conf")
        self.log = os.path.join(d, "mosquitto.log")
        with open(self.conf, "w") as f:
            f.write("per_listener_settings false\nlistener %d 127.0.0.1\n"
                    "allow_anonymous false\npassword_file %s/passwd\n"
                    "acl_file %s/acl\npersistence false\nlog_type all\n"
                    % (self.port, mq, mq))
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=out,
                                     stderr=subprocess.STDOUT)
        out.close()
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise Failure("mosquitto did not start: " + open(self.log).read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)

    def text(self):
        return open(self.log, errors="replace").read()


def pub(b, user, pw, topic, msg):
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port),
                        "-V", "5", "-q", "1", "-i", user + "-pub", "-u", user, "-P", pw, "-t", topic,
                        "-m", msg], capture_output=True, timeout=10)
    return r.returncode


def sub_start(b, user, pw, topic, probe=None):
    """A subscriber; with probe (user, password, topic), published to until
    it arrives, so the subscription is known to be in place."""
    s = Subscriber(["-h", "127.0.0.1", "-p", str(b.port), "-q", "1", "-u", user,
                    "-P", pw, "-t", topic, "-v"])
    if probe:
        check(s.subscribed(lambda: pub(b, *probe, "probe"), " probe"),
              "%s subscribed to %s" % (user, topic))
    else:
        time.sleep(0.5)
    return s


def until(fn, what, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            check(True, what)
            return
        time.sleep(0.1)
    check(False, what)


def test():
    if subprocess.run(["which", "mosquitto"], capture_output=True).returncode:
        print("mosquitto is not installed")
        sys.exit(77)
    p = Platform(daemons=("apid",))
    mq = os.path.join(p.dir, "mqtt")
    pidfile = os.path.join(p.dir, "mosquitto.pid")
    os.makedirs(mq)
    os.chmod(p.dir, 0o755)  # mosquitto drops root for its own user
    svc_pw = secrets.token_urlsafe(16)
    with open(os.path.join(mq, "passwd.static"), "w") as f:
        f.write("svc:%s\n" % mosq_hash(svc_pw))
    with open(os.path.join(mq, "acl.static"), "w") as f:
        f.write("user svc\ntopic read devices/#\ntopic write devices/+/commands/#\n")
    p.extra = {"apid": ["--mqtt-auth", mq, "--mqtt-pidfile", pidfile]}
    p.start()
    b = None
    secrets_seen = [svc_pw]
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()
        with open(pidfile, "w") as f:
            f.write("%d\n" % gone.pid)
        st, _, d = p.http("POST", "/api/devices/register", {"deviceId": "early", "type": "t"})
        check(st == 201 and "password" in d.get("credentials", {}),
              "registration works while the broker is down (files written)")
        secrets_seen.append(d["credentials"]["password"])
        b = Broker(p.dir, mq)
        with open(pidfile, "w") as f:
            f.write("%d\n" % b.proc.pid)
        creds = {}
        for dev in ("sensor-001", "sensor-002"):
            st, _, d = p.http("POST", "/api/devices/register",
                              {"deviceId": dev, "type": "temperature"})
            c = d.get("credentials", {})
            check(st == 201 and c.get("username") == dev and len(c.get("password", "")) >= 32
                  and c.get("telemetryTopic") == "devices/%s/telemetry" % dev,
                  "%s registered with MQTT credentials" % dev)
            creds[dev] = c["password"]
            secrets_seen.append(c["password"])
        st, _, d = p.http("GET", "/api/devices/sensor-001")
        check("credentials" not in d and creds["sensor-001"] not in str(d),
              "the password is shown once, never on GET")
        hashes = open(os.path.join(mq, "passwd")).read()
        check("sensor-001:$7$" in hashes and creds["sensor-001"] not in hashes,
              "passwd file holds only the hash")

        # apid signals the broker once per registration; wait for the
        # reload that carries both devices, not only the first.
        for dev in ("sensor-001", "sensor-002"):
            until(lambda: pub(b, dev, creds[dev],
                              "devices/%s/telemetry" % dev, "{}") == 0,
                  "the broker reloaded and accepts %s's password" % dev)
        check(pub(b, "sensor-001", "wrong-password", "devices/sensor-001/telemetry",
                  "x") != 0, "a wrong password is refused")
        check(pub(b, "nobody", creds["sensor-001"], "devices/nobody/telemetry",
                  "x") != 0, "an unknown user is refused")

        # A device named like a service account of passwd.static would
        # take it over: mosquitto keeps a user's last line.
        st, _, d = p.http("POST", "/api/devices/register", {"deviceId": "svc", "type": "t"})
        if isinstance(d, dict) and "credentials" in d:
            secrets_seen.append(d["credentials"]["password"])
        check(st == 409 and "credentials" not in d,
              "a device named like the service account svc -> 409 (got %s)" % st)
        check(open(os.path.join(mq, "passwd")).read().count("\nsvc:") +
              open(os.path.join(mq, "passwd")).read().startswith("svc:") == 1,
              "the passwd file has svc once")
        s = sub_start(b, "svc", svc_pw, "devices/#",
                      ("sensor-001", creds["sensor-001"], "devices/sensor-001/telemetry"))
        pub(b, "sensor-001", creds["sensor-001"], "devices/sensor-001/telemetry",
            '{"timestamp":1634567890000,"metrics":{"temperature":22.5}}')
        pub(b, "sensor-001", creds["sensor-001"], "devices/sensor-002/telemetry",
            '{"forged":true}')
        check(pub(b, "sensor-002", creds["sensor-002"], "devices/sensor-002/telemetry",
                  '{"own":true}') == 0, "sensor-002's publish acknowledged")
        s.read_until('{"own":true}')
        out = s.stop()
        check('devices/sensor-001/telemetry {"timestamp":1634567890000' in out,
              "own topic delivered")
        check("devices/sensor-002/telemetry {\"own\":true}" in out,
              "sensor-002's own publish delivered")
        check("forged" not in out, "publish to another device's topic dropped (got %r)" % out)
        lines = [l for l in b.text().splitlines() if "sensor-002/telemetry" in l]
        check(any("Denied PUBLISH from sensor-001-pub" in l for l in lines),
              "the broker logs the denied publish: %s" % lines)

        # Commands: a device reads its own, not another device's.
        # The denied subscription cannot be probed: it starts first, and
        # the allowed one is probed after it.
        other = sub_start(b, "sensor-001", creds["sensor-001"], "devices/sensor-002/commands/#")
        own = sub_start(b, "sensor-001", creds["sensor-001"], "devices/sensor-001/commands/#",
                        ("svc", svc_pw, "devices/sensor-001/commands/probe"))
        pub(b, "svc", svc_pw, "devices/sensor-002/commands/reboot", "now-2")
        pub(b, "svc", svc_pw, "devices/sensor-001/commands/reboot", "now-1")
        own.read_until("now-1")
        o1, o2 = own.stop(), other.stop()
        check("now-1" in o1, "a device reads its own commands")
        check("now-2" not in o2, "a device cannot read another device's commands")

        # Rotation: the old password stops working after the reload.
        st, _, d = p.http("POST", "/api/devices/sensor-001/credentials")
        check(st == 201 and d["credentials"]["password"] != creds["sensor-001"],
              "new credentials issued")
        old, creds["sensor-001"] = creds["sensor-001"], d["credentials"]["password"]
        secrets_seen.append(creds["sensor-001"])
        until(lambda: pub(b, "sensor-001", old, "devices/sensor-001/telemetry", "x") != 0,
              "the rotated password is refused")
        check(pub(b, "sensor-001", creds["sensor-001"], "devices/sensor-001/telemetry",
                  "x") == 0, "the new password works")

        # Decommissioning revokes the credentials.
        st, _, d = p.http("DELETE", "/api/devices/sensor-002")
        check(st == 200, "sensor-002 decommissioned")
        until(lambda: pub(b, "sensor-002", creds["sensor-002"],
                          "devices/sensor-002/telemetry", "x") != 0,
              "a decommissioned device is refused")
        st, _, d = p.http("POST", "/api/devices/sensor-002/credentials")
        check(st == 409, "no new credentials for a decommissioned device")
    finally:
        if b:
            b.stop()
        logs = "".join(p.log(n) for n in p.logs) + (b.text() if b else "")
        for s in secrets_seen:
            check(s not in logs, "secret %s... not in any log" % s[:4])
        p.stop()


if __name__ == "__main__":
    main(test)
