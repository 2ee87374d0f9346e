#!/usr/bin/env python3
"""The issue's bad inputs, on the paths devices and agents really use:
MQTT through the broker plugin's spool (malformed JSON, truncated and
non-finite msgpack, invalid UTF-8, NaN and infinite values, timestamps far
in the future and before 1970) and ingestd's own HTTP port (a 1 GB body
announced and sent chunked, a truncated gzip body). Each gets a clear
error naming what is wrong (on devices/{id}/errors for MQTT, HTTP 4xx
with a JSON body otherwise), and ingestd keeps serving: a good reading
sent after all of them is stored."""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, Failure  # noqa: E402


def mp_str(s):
    b = s.encode()
    assert len(b) < 32
    return bytes([0xa0 | len(b)]) + b


def mp_map(items):
    """msgpack of a small map of str keys to int, float or map values
    (python3-msgpack is not in the tests' interpreter)."""
    out = bytes([0x80 | len(items)])
    for k, v in items:
        out += mp_str(k)
        if isinstance(v, list):
            out += mp_map(v)
        elif isinstance(v, float):
            out += b"\xcb" + struct.pack(">d", v)
        else:
            out += b"\xd3" + struct.pack(">q", v)
    return out


def pub_bytes(p, topic, payload):
    with tempfile.NamedTemporaryFile() as f:
        f.write(payload)
        f.flush()
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(p.mqtt_port),
                            "-q", "1", "-t", topic, "-f", f.name],
                           capture_output=True, timeout=10)
    if r.returncode != 0:
        raise Failure("mosquitto_pub: %s" % r.stderr)


NOW_MS = int(time.time()) * 1000
CASES = [
    # device, payload, what the error must name
    ("bad-json", b'{"timestamp":1,"metrics":{"t":', "malformed JSON"),
    ("bad-utf8", b'{"timestamp":%d,"metrics":{"t\xff":1}}' % NOW_MS, "UTF-8"),
    ("bad-mp-trunc", mp_map([("timestamp", NOW_MS),
                             ("metrics", [("t", 1.5)])])[:-4], "msgpack"),
    ("bad-mp-nan", mp_map([("timestamp", NOW_MS),
                           ("metrics", [("t", float("nan"))])]), "finite"),
    ("bad-mp-inf", mp_map([("timestamp", NOW_MS),
                           ("metrics", [("t", float("inf"))])]), "finite"),
    ("bad-future", b'{"timestamp":%d,"metrics":{"t":1}}' % (NOW_MS + 10 * 365 * 86400000),
     "future"),
    ("bad-1969", b'{"timestamp":-1000,"metrics":{"t":1}}', "1970"),
    ("bad-empty", b"", "neither JSON nor msgpack"),
    ("bad-binary", b"\xc1" + bytes(range(256)), "neither JSON nor msgpack"),
    ("bad-scalar", b"\x2a", "must be an object"),
]


def raw_http(port, request):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        try:
            s.sendall(request)
        except OSError:
            pass  # the server may answer and close before reading it all
        resp = b""
        while b"\r\n\r\n" not in resp or not resp.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
        return resp
    finally:
        s.close()


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"ingestd": ["--body-max", "1048576"]})
    spool, conf = p.plugin_conf()
    p.start_broker(conf)
    p.extra["ingestd"] += ["--mqtt-spool", spool]
    p.start()
    try:
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(p.mqtt_port),
                                "-t", "devices/+/errors", "-v", "-C", str(len(CASES) + 1),
                                "-W", "30"], stdout=subprocess.PIPE)
        time.sleep(0.5)
        for dev, payload, _ in CASES:
            pub_bytes(p, "devices/%s/telemetry" % dev, payload)
        # Too big for a spool record (16 MiB): the plugin refuses it, so no
        # PUBACK (the broker drops the connection), and says why.
        with tempfile.NamedTemporaryFile() as f:
            f.write(b'{"timestamp":%d,"metrics":{"t":1},"pad":"' % NOW_MS
                    + b"x" * (17 << 20) + b'"}')
            f.flush()
            big = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p",
                                  str(p.mqtt_port), "-q", "1", "-t",
                                  "devices/bad-big/telemetry", "-f", f.name],
                                 capture_output=True, timeout=60)
        check(big.returncode != 0,
              "a 17 MiB message is not acknowledged (mosquitto_pub exit %d: %s)"
              % (big.returncode, big.stderr.strip()))
        out, _ = sub.communicate(timeout=40)
        errors = {}
        for line in out.decode("utf-8", "replace").splitlines():
            topic, _, body = line.partition(" ")
            errors[topic.split("/")[1]] = json.loads(body)
        for dev, _, want in CASES:
            e = errors.get(dev)
            text = json.dumps(e) if e else ""
            check(e is not None and want in text,
                  "MQTT %s: an error naming %r on devices/%s/errors (%s)"
                  % (dev, want, dev, text or "none"))
        e = errors.get("bad-big")
        check(e is not None and e["error"]["code"] == "payload_too_large",
              "MQTT bad-big: payload_too_large on devices/bad-big/errors (%s)" % e)
        st, _, s = p.http("GET", "/stats")
        check(st == 200 and s["ingestd"]["mqtt_bad"] >= len(CASES),
              "bad MQTT payloads counted (%s)" % s.get("ingestd", {}).get("mqtt_bad"))

        # ingestd's own port: a 1 GB body is refused before it is read,
        # announced (Content-Length) or not (chunked, cut at the limit).
        resp = raw_http(p.ingest_port,
                        b"POST /write HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Length: 1073741824\r\n\r\n" + b"x" * 65536)
        check(resp.startswith(b"HTTP/1.1 413") and b'"where":"body"' in resp,
              "own port: a 1 GB body gets 413 naming the body (%r)" % resp[:200])
        chunk = b"m value=1 1704067200\n" * 3000
        req = (b"POST /write HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 40 + b"0\r\n\r\n")
        resp = raw_http(p.ingest_port, req)
        check(resp.startswith(b"HTTP/1.1 413") and b"payload_too_large" in resp,
              "own port: a chunked body past --body-max gets 413 (%r)" % resp[:200])
        st, _, b = p.http("POST", "/write?precision=s", b"\x1f\x8b\x08\x00trunc",
                          port=p.ingest_port, headers={"Content-Encoding": "gzip"})
        check(st == 400 and b["error"]["where"] == "body" and "gzip" in b["error"]["message"],
              "own port: a truncated gzip body gets 400 naming it (%s)" % b)

        # Still serving, both ways.
        pub_bytes(p, "devices/good/telemetry",
                  b'{"timestamp":%d,"metrics":{"temperature":21.5}}' % NOW_MS)
        st, _, _ = p.http("POST", "/write?precision=s", b"after value=2 1704067200\n",
                          port=p.ingest_port)
        check(st == 204, "own port: a good write after the bad ones gets 204 (%s)" % st)
        deadline, got = time.time() + 20, (None, None)
        while time.time() < deadline:
            a = p.http("GET", "/api/v1/stats/temperature?tag.device=good")
            b = p.http("GET", "/api/v1/stats/after")
            got = (a[2].get("count") if a[0] == 200 else None,
                   b[2].get("count") if b[0] == 200 else None)
            if got == (1, 1):
                break
            time.sleep(0.2)
        check(got == (1, 1), "the good MQTT reading and the good write are stored (%s)"
              % (got,))
        check(p.procs["ingestd"].poll() is None, "ingestd still running")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
