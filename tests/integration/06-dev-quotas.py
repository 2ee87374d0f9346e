#!/usr/bin/env python3
"""Per-tenant quotas and ingestd's own port. apid --tenant-devices: a
tenant past its device count gets 403 quota_exceeded (others are not
affected; a decommissioned device frees its place). ingestd
--tenant-rate: a tenant over its readings per second gets 429
quota_exceeded with Retry-After (through apid and on ingestd's port), a
request larger than the burst 413, MQTT messages over it are refused on
the device's error topic, and what was refused is not stored. ingestd
--keys: writes on port 8086 need a writer's key (Token, Bearer or u/p)
and land in that key's tenant."""
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, need, wait_for  # noqa: E402

RATE = 20  # readings per second per tenant; the burst is 2 s of it


def test():
    need("aggd", "ingestd", "apid", "mosquitto", "mosquitto_pub", "mosquitto_sub")
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    keys = os.path.join(p.dir, "keys")
    key = {n: "sp_" + secrets.token_urlsafe(32)
           for n in ("acme", "globex", "acme-reader")}
    with open(keys, "w") as f:
        for n, k in key.items():
            tenant, _, role = n.partition("-")
            f.write("%s %s %s sha256:%s\n" % (n, tenant, role or "admin",
                                               hashlib.sha256(k.encode()).hexdigest()))
    p.start_broker()
    p.extra = {"apid": ["--keys", keys, "--tenant-devices", "2",
                        "--key-rate", "1000", "--key-burst", "1000"],
               "ingestd": ["--keys", keys, "--tenant-rate", str(RATE)]}
    p.start()

    def h(n):
        return {"Authorization": "Bearer " + key[n]}

    def record(n, count, name="m", t0=1704067200000):
        return p.http("POST", "/api/v1/record", {"data": [
            {"name": name, "value": i, "timestamp": t0 + i} for i in range(count)]},
            headers=h(n))

    def count(n, series):
        st, _, d = p.http("GET", "/api/v1/stats/" + urllib.parse.quote(series, safe=""),
                          headers=h(n))
        return d["count"] if st == 200 else 0

    try:
        # Devices.
        for i in (1, 2):
            st, _, d = p.http("POST", "/api/devices/register",
                              {"deviceId": "d%d" % i, "type": "x"}, headers=h("acme"))
            check(st == 201, "acme registers d%d" % i)
        st, _, d = p.http("POST", "/api/devices/register", {"deviceId": "d3", "type": "x"},
                          headers=h("acme"))
        check(st == 403 and d["error"]["code"] == "quota_exceeded",
              "a third device -> 403 quota_exceeded (%s)" % d)
        for i in (1, 2):
            st, _, _ = p.http("POST", "/api/devices/register",
                              {"deviceId": "d%d" % i, "type": "x"}, headers=h("globex"))
            check(st == 201, "globex has its own quota (d%d)" % i)
        st, _, _ = p.http("DELETE", "/api/devices/d1", headers=h("acme"))
        check(st == 200, "acme decommissions d1")
        st, _, _ = p.http("POST", "/api/devices/register", {"deviceId": "d3", "type": "x"},
                          headers=h("acme"))
        check(st == 201, "then d3 fits")

        # Ingest rate through apid.
        st, _, d = record("acme", 30)
        check(st == 200 and d["accepted"] == 30, "30 readings within the burst")
        st, hd, d = record("acme", 30, t0=1704067300000)
        check(st == 429 and d["error"]["code"] == "quota_exceeded"
              and int(hd.get("Retry-After", "0")) >= 1,
              "30 more at once -> 429 with Retry-After %s (%s)"
              % (hd.get("Retry-After"), d))
        st, _, d = record("globex", 30)
        check(st == 200, "globex is not slowed by acme")
        st, _, d = record("acme", 3 * RATE, t0=1704067400000)
        check(st == 413 and d["error"]["code"] == "quota_exceeded",
              "more than the burst in one request -> 413")
        time.sleep(2.2)
        st, _, d = record("acme", 30, t0=1704067500000)
        check(st == 200, "after the wait acme writes again")
        wait_for(lambda: count("acme", "m") == 60, "acme's accepted readings stored")
        time.sleep(0.5)
        check(count("acme", "m") == 60, "refused readings were not stored")

        # ingestd's own port: keys.
        url = "/write?precision=ms"
        line = "lp,host=h1 value=1 1704067200000\n"
        st, _, d = p.http("POST", url, line, port=p.ingest_port)
        check(st == 401, "port 8086 without a key -> 401")
        st, _, d = p.http("POST", url, line, port=p.ingest_port,
                          headers={"Authorization": "Token " + key["acme-reader"]})
        check(st == 403, "a reader's key cannot write on 8086")
        st, _, d = p.http("POST", url, line, port=p.ingest_port,
                          headers={"Authorization": "Token " + key["acme"]})
        check(st == 204, "Token <acme key> writes on 8086 (%s)" % st)
        st, _, d = p.http("POST", url + "&u=ops&p=" + key["globex"],
                          "lp,host=h1 value=2 1704067200000\n", port=p.ingest_port)
        check(st == 204, "u/p with globex's key writes on 8086")
        st, _, d = p.http("POST", url, "lp,host=h1,tenant=globex value=3 1704067200001\n",
                          port=p.ingest_port, headers={"Authorization": "Token " + key["acme"]})
        check(st == 400, "acme cannot name globex's tenant on 8086")
        wait_for(lambda: count("acme", "lp") == 1 and count("globex", "lp") == 1,
                 "each tenant's 8086 write is in its own series")
        st, _, d = p.http("GET", "/api/v1/stats/lp", headers=h("acme"))
        check(d["min"] == 1 and d["max"] == 1, "acme's lp holds acme's value only")
        time.sleep(2.2)
        body = "".join("burst v=%d 1704067200%03d\n" % (i, i) for i in range(30))
        codes = []
        for _ in range(2):
            st, hd, d = p.http("POST", url, body, port=p.ingest_port,
                               headers={"Authorization": "Token " + key["globex"]})
            codes.append((st, hd.get("Retry-After")))
        check(codes[0][0] == 204 and codes[1][0] == 429 and codes[1][1],
              "8086 honours the tenant rate too: %s" % codes)

        # MQTT: messages over the tenant's rate are refused on the error topic.
        time.sleep(2.2)
        errs = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(p.mqtt_port),
                                 "-t", "tenants/acme/devices/d2/errors", "-C", "1",
                                 "-W", "20"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        msgs = "".join(json.dumps({"timestamp": 1704067600000 + i,
                                   "metrics": {"mq": i}}) + "\n" for i in range(60))
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(p.mqtt_port),
                        "-q", "1", "-t", "tenants/acme/devices/d2/telemetry", "-l"],
                       input=msgs, text=True, timeout=20, check=True)
        out, _ = errs.communicate(timeout=25)
        check("quota_exceeded" in out, "a refused MQTT message is answered: %s" % out.strip())
        time.sleep(1.0)
        n = count("acme", "mq{device=d2}")
        check(40 <= n < 60, "MQTT readings past the burst were refused (%d of 60 kept)" % n)
        st, _, d = p.http("GET", "/stats", headers=h("acme"))
        check(d["ingestd"]["over_quota"] >= 60 - n + 30 + 30,
              "ingestd counts what it refused: %s" % d["ingestd"]["over_quota"])
    finally:
        p.stop(secrets=list(key.values()))


if __name__ == "__main__":
    main(test)
