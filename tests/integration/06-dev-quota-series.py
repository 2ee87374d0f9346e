#!/usr/bin/env python3
"""Per-tenant quotas from one --quotas file read by apid and ingestd.
acme may have 3 series and 1 device, globex 2 devices and the file's
default series limit. A write that would give acme a 4th series is
refused whole (HTTP 403 quota_exceeded naming the "series" quota,
nothing of it stored, even its readings of existing series), while
writes to acme's 3 series pass and globex keeps creating series. Over
MQTT the message is refused and answered on the device's errors topic.
The count survives an ingestd restart (<spool>/series.quota). Devices
are limited per tenant from the same file. Raising acme's limit in the
file takes effect without a restart."""
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, need, wait_for, write_keys  # noqa: E402


def write_quotas(path, doc):
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)


def test():
    need("aggd", "ingestd", "apid", "mosquitto", "mosquitto_pub", "mosquitto_sub")
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    keys = os.path.join(p.dir, "keys")
    key = {n: "sp_" + secrets.token_urlsafe(32) for n in ("acme", "globex")}
    write_keys(keys, {n: (n, k) for n, k in key.items()})
    quotas = os.path.join(p.dir, "quotas.json")
    write_quotas(quotas, {"default": {"series": 50, "devices": 2},
                          "tenants": {"acme": {"series": 3, "devices": 1}}})
    p.start_broker()
    p.extra = {"apid": ["--keys", keys, "--quotas", quotas, "--tenant-devices", "100",
                        "--key-rate", "1000", "--key-burst", "1000"],
               "ingestd": ["--keys", keys, "--quotas", quotas, "--tenant-series", "1"]}
    p.start()

    def h(n):
        return {"Authorization": "Bearer " + key[n]}

    def record(n, names, t0=1704067200000):
        return p.http("POST", "/api/v1/record", {"data": [
            {"name": m, "value": i, "timestamp": t0 + i} for i, m in enumerate(names)]},
            headers=h(n))

    def count(n, series):
        st, _, d = p.http("GET", "/api/v1/stats/" + urllib.parse.quote(series, safe=""),
                          headers=h(n))
        return d["count"] if st == 200 else 0

    def refused_series(st, d, what):
        check(st == 403 and d["error"]["code"] == "quota_exceeded"
              and d["error"]["quota"] == "series" and d["error"]["where"] == "series"
              and "quota is 3" in d["error"]["message"],
              "%s -> 403 quota_exceeded, quota series (%s)" % (what, d))

    try:
        st, _, d = record("acme", ["s1", "s2", "s3", "s1"])
        check(st == 200 and d["accepted"] == 4, "acme writes its 3 series (%s)" % d)
        st, _, d = record("acme", ["s4"], t0=1704067300000)
        refused_series(st, d, "a 4th series")
        st, _, d = record("acme", ["s1", "s5"], t0=1704067400000)
        refused_series(st, d, "a batch with an existing and a new series")
        st, _, d = record("globex", ["g%d" % i for i in range(10)])
        check(st == 200 and d["accepted"] == 10,
              "meanwhile globex writes 10 series (its limit is the file's default)")
        st, _, d = record("acme", ["s1", "s2", "s3"], t0=1704067500000)
        check(st == 200, "acme keeps writing its existing series (%s %s)" % (st, d))
        wait_for(lambda: count("acme", "s1") == 3 and count("globex", "g9") == 1,
                 "the accepted readings stored")
        time.sleep(0.5)
        check(count("acme", "s1") == 3, "the refused batch's s1 reading was not stored")
        check(count("acme", "s4") == 0 and count("acme", "s5") == 0,
              "no refused series exists")

        # ingestd's own port answers the same.
        st, _, d = p.http("POST", "/write?precision=ms", "s6 v=1 1704067200000\n",
                          port=p.ingest_port,
                          headers={"Authorization": "Token " + key["acme"]})
        check(st == 403 and d["error"]["quota"] == "series",
              "a new series on port 8086 -> 403 (%s)" % d)

        # MQTT: the message is refused and answered on the errors topic.
        errs = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(p.mqtt_port),
                                 "-t", "tenants/acme/devices/d1/errors", "-C", "1",
                                 "-W", "20"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        p.mqtt_pub("tenants/acme/devices/d1/telemetry",
                   json.dumps({"timestamp": 1704067600000, "metrics": {"mq": 1}}))
        p.mqtt_pub("tenants/globex/devices/d1/telemetry",
                   json.dumps({"timestamp": 1704067600000, "metrics": {"mq": 2}}))
        out, _ = errs.communicate(timeout=25)
        err = json.loads(out)["error"]
        check(err["code"] == "quota_exceeded" and err["quota"] == "series",
              "acme's device hears why on its errors topic: %s" % err)
        wait_for(lambda: count("globex", "mq{device=d1}") == 1,
                 "globex's device's new series over MQTT")
        check(count("acme", "mq{device=d1}") == 0, "acme's MQTT series was not made")
        st, _, d = p.http("GET", "/stats", headers=h("acme"))
        check(d["ingestd"]["over_series_quota"] == 5,  # 1 + 2 + 1 (8086) + 1 (MQTT)
              "ingestd counts the refused readings: %s" % d["ingestd"])

        # A restart remembers the series.
        p.stop_one("ingestd")
        p.start_one("ingestd")
        st, _, d = record("acme", ["s7"], t0=1704067700000)
        refused_series(st, d, "after an ingestd restart, a new series")
        st, _, d = record("acme", ["s2"], t0=1704067800000)
        check(st == 200, "and the existing ones still pass")

        # Devices per tenant from the same file.
        st, _, d = p.http("POST", "/api/devices/register", {"deviceId": "d1", "type": "x"},
                          headers=h("acme"))
        check(st == 201, "acme registers its one device")
        st, _, d = p.http("POST", "/api/devices/register", {"deviceId": "d2", "type": "x"},
                          headers=h("acme"))
        check(st == 403 and d["error"]["quota"] == "devices",
              "acme's second device -> 403, quota devices (%s)" % d)
        for i in (1, 2):
            st, _, _ = p.http("POST", "/api/devices/register",
                              {"deviceId": "d%d" % i, "type": "x"}, headers=h("globex"))
            check(st == 201, "globex registers d%d (default: 2)" % i)
        st, _, d = p.http("POST", "/api/devices/register", {"deviceId": "d3", "type": "x"},
                          headers=h("globex"))
        check(st == 403, "globex's third device -> 403")

        # Raising acme's limits in the file, no restart.
        write_quotas(quotas, {"default": {"series": 50, "devices": 2},
                              "tenants": {"acme": {"series": 5, "devices": 2}}})

        def raised():
            st, _, _ = record("acme", ["s4", "s5"], t0=1704067900000)
            return st == 200
        wait_for(raised, "the raised series limit", timeout=15, step=1)
        st, _, d = p.http("POST", "/api/devices/register", {"deviceId": "d2", "type": "x"},
                          headers=h("acme"))
        check(st == 201, "and the raised devices limit (%s)" % st)
        st, _, d = record("acme", ["s6"], t0=1704068000000)
        check(st == 403, "a 6th series is refused again")
        check("quotas:" in p.log("ingestd") and "re-read" in p.log("ingestd"),
              "ingestd logs that it re-read the file")
    finally:
        p.stop(secrets=list(key.values()))


if __name__ == "__main__":
    main(test)
