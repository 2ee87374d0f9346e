#!/usr/bin/env python3
"""TLS with a CA made by deploy/mosquitto/sensorpipe-ca on loopback: apid
serves HTTPS (verified against the CA; the session cookie gets Secure; the
WebSocket stream works as wss://), ingestd's own port takes line protocol
over HTTPS, and mosquitto with deploy/examples/mosquitto-tls.conf accepts
a device's password login over TLS on its own port while the readings go
through ingestd as usual. Plain HTTP or MQTT on a TLS port gets nowhere."""
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import http.client

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import ROOT, Platform, check, free_port, main, need, wait_for  # noqa: E402
from ws import WS  # noqa: E402


def test():
    need("aggd", "ingestd", "apid", "mosquitto", "mosquitto_pub", "mosquitto_passwd",
         "openssl")
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    ca = os.path.join(p.dir, "ca")
    r = subprocess.run(["sh", os.path.join(ROOT, "deploy", "mosquitto", "sensorpipe-ca"),
                        ca, "init"], capture_output=True, text=True)
    check(r.returncode == 0, "sensorpipe-ca init (%s)" % r.stderr.strip())
    os.chmod(p.dir, 0o755)
    os.chmod(os.path.join(ca, "server.key"), 0o644)  # the broker drops root
    crt, key = os.path.join(ca, "server.crt"), os.path.join(ca, "server.key")
    ctx = ssl.create_default_context(cafile=os.path.join(ca, "ca.crt"))

    # The broker: a plain loopback listener for ingestd, TLS from the
    # example file for devices.
    auth = os.path.join(p.dir, "mqauth")
    os.makedirs(auth)
    os.chmod(auth, 0o755)
    passwd = os.path.join(auth, "passwd")
    subprocess.run(["mosquitto_passwd", "-b", "-c", passwd, "ingestd", "ingest-pw"],
                   check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", passwd, "s1", "device-pw"],
                   check=True, capture_output=True)
    os.chmod(passwd, 0o644)
    with open(os.path.join(auth, "acl"), "w") as f:
        f.write("user ingestd\ntopic read devices/#\ntopic read tenants/#\n"
                "topic write devices/+/errors\ntopic write tenants/+/devices/+/errors\n\n"
                "user s1\ntopic write devices/s1/#\n")
    os.chmod(os.path.join(auth, "acl"), 0o644)
    example = open(os.path.join(ROOT, "deploy", "examples", "mosquitto-tls.conf")).read()
    tls_port, plain_port = free_port(), free_port()
    conf = example.replace("/etc/sensorpipe/mosquitto", auth) \
        .replace("/etc/sensorpipe/ca", ca) \
        .replace("listener 8883", "listener %d 127.0.0.1" % tls_port)
    conf = "listener %d 127.0.0.1\n" % plain_port + conf
    check(re.search(r"^keyfile .*server.key$", conf, re.M) is not None,
          "the example names the broker's key")
    mconf = os.path.join(p.dir, "mosquitto.conf")
    with open(mconf, "w") as f:
        f.write(conf)
    log = open(os.path.join(p.dir, "mosquitto.log"), "wb")
    p.broker = subprocess.Popen(["mosquitto", "-c", mconf], stdout=log,
                                stderr=subprocess.STDOUT)
    log.close()
    p.mqtt_port = plain_port
    def listening():
        with socket.socket() as so:
            return so.connect_ex(("127.0.0.1", tls_port)) == 0
    wait_for(listening, "the broker listens on its TLS port", step=0.05)

    p.extra = {"apid": ["--tls-cert", crt, "--tls-key", key],
               "ingestd": ["--tls-cert", crt, "--tls-key", key,
                           "--mqtt-user", "ingestd", "--mqtt-password", "ingest-pw"]}
    p.start()

    def https(method, path, body=None, port=None, headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", port or p.api_port, context=ctx,
                                        timeout=10)
        c.request(method, path, body=body, headers=headers or {})
        resp = c.getresponse()
        data = resp.read()
        c.close()
        return resp.status, dict(resp.getheaders()), data

    try:
        check("ready: https://127.0.0.1:%d/" % p.api_port in p.log("apid"),
              "apid says it serves HTTPS")
        st, _, d = https("GET", "/health")
        check(st == 200 and b'"ok"' in d, "GET https://.../health verified by the CA")
        try:
            p.http("GET", "/health", timeout=3)
            check(False, "plain HTTP on the HTTPS port must fail")
        except (http.client.HTTPException, OSError) as e:
            check(True, "plain HTTP on the HTTPS port fails (%s)" % type(e).__name__)
        try:
            bad = ssl.create_default_context()  # the system CAs only
            c = http.client.HTTPSConnection("127.0.0.1", p.api_port, context=bad, timeout=5)
            c.request("GET", "/health")
            c.getresponse()
            check(False, "an unknown CA must fail verification")
        except ssl.SSLError as e:
            check("CERTIFICATE_VERIFY_FAILED" in str(e), "a client without the CA refuses")

        ws = WS(p.api_port, tls=ctx).start()
        ws.send_json({"op": "subscribe", "series": "over.*"})
        m = ws.get()
        check(m and m["type"] == "subscribed", "wss:// subscribes")
        time.sleep(0.5)
        st, _, d = https("POST", "/api/v1/record",
                         '{"data":[{"name":"over.https","value":7,'
                         '"timestamp":"2024-01-01T00:00:00Z"}]}')
        check(st == 200, "a record over HTTPS")
        m = ws.get()
        check(m and m["type"] == "readings" and m["items"][0]["value"] == 7,
              "the reading arrives on wss:// (%s)" % m)
        ws.close()

        st, _, d = https("POST", "/write?precision=s", "lp,host=h value=3 1704067200\n",
                         port=p.ingest_port)
        check(st == 204, "line protocol over HTTPS on ingestd's port")
        check("https=" in p.log("ingestd"), "ingestd says its port speaks HTTPS")

        # MQTT over TLS with the device's password; plain MQTT there fails.
        cafile = os.path.join(ca, "ca.crt")
        pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(tls_port), "-q", "1",
               "-u", "s1", "-P", "device-pw", "-t", "devices/s1/telemetry",
               "-m", '{"timestamp":1704067200000,"metrics":{"tls_temp":21.5}}']
        r = subprocess.run(pub + ["--cafile", cafile], capture_output=True, timeout=15)
        check(r.returncode == 0, "a device publishes over TLS (%s)" % r.stderr)
        r = subprocess.run(pub, capture_output=True, timeout=15)
        check(r.returncode != 0, "plain MQTT on the TLS port fails")
        r = subprocess.run([x if x != "device-pw" else "wrong" for x in pub]
                           + ["--cafile", cafile], capture_output=True, timeout=15)
        check(r.returncode != 0, "a wrong password over TLS is refused")

        def arrived():
            st, _, d = https("GET", "/api/v1/stats/tls_temp?tag.device=s1")
            return st == 200 and b'"count":1' in d
        wait_for(arrived, "the TLS device's reading is stored once")

        # Last (the first user turns authentication on).
        st, _, d = https("POST", "/api/users",
                         '{"user":"ann","password":"a long password","role":"reader"}')
        check(st == 201, "a user for the cookie check")
        st, hd, d = https("POST", "/api/login", '{"user":"ann","password":"a long password"}')
        attrs = [a.strip() for a in hd.get("Set-Cookie", "").split(";")]
        check(st == 200 and "Secure" in attrs and "HttpOnly" in attrs,
              "over HTTPS the session cookie is Secure: %s" % attrs[1:])

    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
