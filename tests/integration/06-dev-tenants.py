#!/usr/bin/env python3
"""Tenant isolation end to end. Three tenants (default, acme, globex) write
the same sensor, metric and device names over HTTP and MQTT (each from its
own topic prefix); every read route answers each tenant from its own data
only: stats (bare name, tag filter, exact key), aggregate, series listing,
export, device telemetry, anomalies, the Prometheus API, alerts (list, one,
ack), WebSocket streams and saved dashboards. Naming another tenant's series (by key or by a
tenant tag filter) is 404, a reading naming the tenant tag is refused, and
nothing a tenant writes changes another tenant's answers."""
import json
import os
import secrets
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, need, wait_for, write_keys  # noqa: E402
from ws import WS  # noqa: E402

T0 = 1704067200  # 2024-01-01T00:00:00Z
TENANTS = ("default", "acme", "globex")
# What each tenant writes: the same names, its own values.
BASE = {"default": 10.0, "acme": 20.0, "globex": 30.0}
SPIKE = {"default": 500.0, "acme": 700.0, "globex": 900.0}


def q(s):
    return urllib.parse.quote(s, safe="")


def test():
    need("ingestd", "aggd", "anomalyd", "alertd", "apid", "mosquitto",
         "mosquitto_pub")
    p = Platform()
    key = {t: "sp_" + secrets.token_urlsafe(32) for t in TENANTS}
    keys = os.path.join(p.dir, "keys")
    write_keys(keys, {t + "-ops": (t, key[t]) for t in TENANTS})
    rules = os.path.join(p.dir, "alertd.rules")
    with open(rules, "w") as f:
        f.write("hot: temperature > 100 severity critical\n")
    spool, plugin = p.plugin_conf()
    p.start_broker(plugin)
    p.extra = {"apid": ["--keys", keys, "--key-rate", "1000", "--key-burst", "1000"],
               "ingestd": ["--mqtt-spool", spool],
               "alertd": ["--rules", rules, "--db", os.path.join(p.dir, "alerts.db")]}
    p.start()

    def h(t):
        return {"Authorization": "Bearer " + key[t]}

    def get(t, path):
        return p.http("GET", path, headers=h(t))

    streams = {}
    try:
        # Live streams first (a PUB drops what comes before the SUB).
        for t in TENANTS:
            ws = WS(p.api_port, headers=h(t)).start()
            ws.send_json({"op": "subscribe", "series": "*",
                          "kinds": ["readings", "alerts"]})
            m = ws.get()
            check(m and m["type"] == "subscribed", "%s subscribes" % t)
            streams[t] = ws
        try:
            WS(p.api_port)
            check(False, "a stream without a key is refused")
        except Exception as e:  # the handshake answers 401
            check("401" in str(e), "a stream without a key -> 401 (%s)"
                  % str(e).splitlines()[0])
        time.sleep(1.0)

        # A rule made by acme is acme's: listed, shown and evaluated for it
        # alone (humidity is over 10 in acme and globex, not in default).
        st, _, d = p.http("POST", "/api/rules", {
            "name": "acme_humid", "condition": "humidity > 10", "actions": []},
            headers=h("acme"))
        check(st == 201, "acme creates a rule (%s %s)" % (st, d))
        for t in TENANTS:
            st, _, d = get(t, "/api/rules")
            names = [r["name"] for r in d["rules"]]
            check(st == 200 and ("acme_humid" in names) == (t == "acme"),
                  "%s: rule list %s" % (t, names))
            st, _, d = get(t, "/api/rules/acme_humid")
            check(st == (200 if t == "acme" else 404),
                  "%s: GET acme's rule -> %s" % (t, st))
        st, _, d = p.http("DELETE", "/api/rules/acme_humid", headers=h("globex"))
        check(st == 404, "globex cannot delete acme's rule (%s)" % st)

        # Writes: the same names in every tenant.
        for t in TENANTS:
            b = BASE[t]
            st, _, d = p.http("POST", "/api/v1/ingest", {
                "sensor_id": "temp_sensor_001",
                "datapoints": [{"timestamp": (T0 + 60 * i) * 1000, "value": b + (i % 3)}
                               for i in range(40)]
                + [{"timestamp": (T0 + 60 * 40) * 1000, "value": SPIKE[t]}]},
                headers=h(t))
            check(st == 200 and d["accepted"] == 41, "%s ingests (%s %s)" % (t, st, d))
            st, _, d = p.http("POST", "/api/v1/record", {"data": [
                {"name": "api.latency", "value": b, "timestamp": T0 * 1000,
                 "tags": {"host": "h1"}}]}, headers=h(t))
            check(st == 200 and d["accepted"] == 1, "%s records" % t)
        st, _, d = p.http("POST", "/api/v1/record", {"data": [
            {"name": "only.globex", "value": 1, "timestamp": T0 * 1000}]},
            headers=h("globex"))
        check(st == 200, "globex writes a series of its own")
        for t in TENANTS:
            prefix = "devices/s1" if t == "default" else "tenants/%s/devices/s1" % t
            for i in range(3):
                p.mqtt_pub(prefix + "/telemetry", json.dumps({
                    "timestamp": (T0 + i) * 1000,
                    "metrics": {"temperature": BASE[t] + 100 + i,
                                "humidity": BASE[t]}}))

        # A reading naming the tenant tag is refused, whoever sends it.
        for t, other in (("acme", "globex"), ("default", "acme")):
            st, _, d = p.http("POST", "/api/v1/record", {"data": [
                {"name": "api.latency", "value": 1e6, "timestamp": T0 * 1000,
                 "tags": {"host": "h1", "tenant": other}}]}, headers=h(t))
            check(st == 400 and "reserved" in json.dumps(d),
                  "%s cannot write into %s's series (%s %s)" % (t, other, st, d))
            st, _, d = p.http("POST", "/api/v1/ingest", {
                "sensor_id": "temp_sensor_001", "tags": {"tenant": other},
                "datapoints": [{"value": 1e6}]}, headers=h(t))
            check(st == 400, "%s cannot ingest into %s's sensor" % (t, other))

        mean = {t: sum(BASE[t] + (i % 3) for i in range(40)) + SPIKE[t] for t in TENANTS}
        mean = {t: mean[t] / 41 for t in TENANTS}

        def device_stats(t):
            st, _, d = get(t, "/api/v1/stats/temperature?tag.device=s1")
            return st == 200 and d["count"] == 3 and d
        for t in TENANTS:
            wait_for(lambda: device_stats(t), "%s's MQTT readings arrive" % t)

        for t in TENANTS:
            st, _, d = get(t, "/api/v1/stats/temp_sensor_001")
            check(st == 200 and d["count"] == 41 and d["matched"] == 1
                  and abs(d["mean"] - mean[t]) < 1e-9 and d["max"] == SPIKE[t],
                  "%s: stats of temp_sensor_001 are its own (%s)" % (t, d))
            d = device_stats(t)
            check(d["min"] == BASE[t] + 100 and d["max"] == BASE[t] + 102
                  and d["matched"] == 1,
                  "%s: MQTT device s1 is its own (%s)" % (t, d))
            st, _, d = get(t, "/api/v1/stats/" + q("temperature{device=s1}"))
            check(st == 200 and d["min"] == BASE[t] + 100,
                  "%s: the exact key without a tenant tag finds its own (%s)" % (t, st))
            st, _, d = get(t, "/api/v1/stats/" + q("api.latency{host=h1}"))
            check(st == 200 and d["mean"] == BASE[t], "%s: api.latency{host=h1}" % t)
            st, _, d = p.http("POST", "/api/v1/aggregate", {
                "metric_name": "temp_sensor_001", "interval": "1h",
                "aggregation": "max"}, headers=h(t))
            check(st == 200 and [b["value"] for b in d["buckets"]] == [SPIKE[t]],
                  "%s: aggregate over its own points (%s)" % (t, d))
            st, _, d = get(t, "/api/v1/series")
            keys_seen = sorted(s["series"] if isinstance(s, dict) else s
                               for s in d.get("series", d.get("data", [])))
            tag = "" if t == "default" else "tenant=" + t
            check(st == 200 and keys_seen and all(
                ("tenant=" not in k) if t == "default" else (tag in k)
                for k in keys_seen),
                "%s: the series listing holds only its own keys: %s" % (t, keys_seen))
            check(("only.globex" in " ".join(keys_seen)) == (t == "globex"),
                  "%s: only globex lists only.globex" % t)
            st, _, d = get(t, "/api/v1/export/temperature")
            pts = [pt["value"] for s in d["series"] for pt in s["points"]]
            check(st == 200 and sorted(pts) == [BASE[t] + 100 + i for i in range(3)],
                  "%s: export of temperature is its own: %s" % (t, pts))
            st, _, d = get(t, "/api/v1/export/temperature?format=csv")
            rows = d.decode().splitlines()[1:] if isinstance(d, bytes) else []
            check(st == 200 and sorted(float(r.rsplit(",", 1)[1]) for r in rows)
                  == [BASE[t] + 100 + i for i in range(3)],
                  "%s: streamed CSV export is its own: %s" % (t, rows))
            st, _, d = get(t, "/api/telemetry/s1?metric=humidity")
            check(st == 200 and d["count"] == 3 and all(
                pt["value"] == BASE[t] for s in d["series"] for pt in s["points"]),
                "%s: device telemetry is its own (%s)" % (t, st))
            st, _, d = get(t, "/api/v1/query?query=" + q("temperature")
                           + "&time=%d" % (T0 + 2))
            vals = [float(r["value"][1]) for r in d["data"]["result"]]
            check(st == 200 and vals == [BASE[t] + 102],
                  "%s: PromQL sees its own temperature: %s" % (t, vals))

        def own_anomalies(t):
            st, _, d = get(t, "/api/v1/anomalies/temp_sensor_001?threshold=3")
            return st == 200 and d["anomalies"] and d
        for t in TENANTS:
            d = wait_for(lambda: own_anomalies(t), "%s: the spike is scored" % t)
            vals = {a["value"] for a in d["anomalies"]}
            check(vals == {SPIKE[t]}, "%s: anomalies are its own: %s" % (t, vals))

        # Forecasts and trends are the tenant's own series too.
        for t in TENANTS:
            own = "temp_sensor_001" + ("" if t == "default" else "{tenant=%s}" % t)
            st, _, d = get(t, "/api/v1/forecast/temp_sensor_001")
            check(st == 200 and d["series"] == own,
                  "%s: the forecast is of %s (%s %s)" % (t, own, st, d.get("series")))
            st, _, d = get(t, "/api/v1/trend/" + q("temperature{device=s1}"))
            check(st == 200 and abs(d.get("slope_per_hour", d.get("slope", 0))) > 0
                  and json.dumps(d).count("tenant=globex") == (t == "globex"),
                  "%s: the trend of its own device (%s)" % (t, d.get("series")))

        # Cross-tenant names: 404, never another tenant's data.
        for path in ("/api/v1/stats/" + q("temperature{device=s1,tenant=acme}"),
                     "/api/v1/stats/temperature?tag.tenant=acme",
                     "/api/v1/anomalies/" + q("temp_sensor_001{tenant=acme}"),
                     "/api/v1/export/" + q("temperature{device=s1,tenant=acme}")):
            for t in ("default", "globex"):
                st, _, d = get(t, path)
                check(st == 404, "%s GET %s -> 404 (got %s)" % (t, path, st))
        st, _, d = get("acme", "/api/v1/stats/" + q("temperature{device=s1,tenant=acme}"))
        check(st == 200 and d["min"] == 120.0, "acme may name its own tenant tag")
        for t in ("default", "acme"):
            st, _, d = get(t, "/api/v1/stats/only.globex")
            check(st == 404, "%s: globex's own series -> 404 (got %s)" % (t, st))

        # Alerts: each tenant's device crossed 100; each sees its own.
        def alerts(t):
            st, _, d = get(t, "/api/alerts")
            return st == 200 and d["alerts"]
        ids = {}
        for t in TENANTS:
            al = wait_for(lambda: alerts(t), "%s: an active alert" % t)
            if t == "acme":
                al = wait_for(lambda: [a for a in alerts(t) or []
                                       if a["rule"] == "acme_humid"]
                              and alerts(t), "acme's own rule fires")
            check(all(a["series"].startswith(("temperature{device=s1",
                                               "humidity{device=s1"))
                      and (("tenant=" not in a["series"]) if t == "default"
                           else ("tenant=" + t) in a["series"]) for a in al),
                  "%s: only its own alerts: %s" % (t, [a["series"] for a in al]))
            check(("acme_humid" in {a["rule"] for a in al}) == (t == "acme"),
                  "%s: acme's rule fired on acme's series only" % t)
            ids[t] = [a for a in al if a["rule"] == "hot"][0]["id"]
        for t in TENANTS:
            for other in TENANTS:
                st, _, d = get(t, "/api/alerts/%d" % ids[other])
                check(st == (200 if t == other else 404),
                      "%s GET alert of %s -> %s" % (t, other, st))
        st, _, d = p.http("POST", "/api/alerts/%d/ack" % ids["acme"], {"by": "x"},
                          headers=h("globex"))
        check(st == 404, "globex cannot acknowledge acme's alert")
        st, _, d = get("acme", "/api/alerts/%d" % ids["acme"])
        check(st == 200 and d["acked_at"] is None, "acme's alert stays unacknowledged")
        st, _, d = p.http("POST", "/api/alerts/%d/ack" % ids["acme"], {"by": "x"},
                          headers=h("acme"))
        check(st == 200 and d["acked_by"] == "x", "acme acknowledges its own alert")

        # Dashboards: the same name in two tenants, each its own.
        for t in ("acme", "globex"):
            st, _, d = p.http("PUT", "/api/dashboards/main", {"owner": t},
                              headers=h(t))
            check(st == 200, "%s saves dashboard main" % t)
        for t in TENANTS:
            st, _, d = get(t, "/api/dashboards/main")
            check(st == (404 if t == "default" else 200)
                  and (t == "default" or d["owner"] == t),
                  "%s: dashboard main is its own (%s %s)" % (t, st, d))
            st, _, d = get(t, "/api/dashboards")
            names = [x["name"] for x in d["dashboards"]]
            check(names == ([] if t == "default" else ["main"]),
                  "%s lists its dashboards: %s" % (t, names))

        # Streams: everything each tenant saw was its own.
        for t in TENANTS:
            ws = streams[t]
            seen = []
            while True:
                m = ws.get(timeout=1.0)
                if m is None:
                    break
                seen += [(m["type"], i["series"]) for i in m.get("items", [])]
            kinds = {k for k, _ in seen}
            check("readings" in kinds and "alerts" in kinds,
                  "%s: the stream carried readings and alerts (%s)" % (t, kinds))
            foreign = [(k, s) for k, s in seen if not (
                ("tenant=" not in s) if t == "default" else ("tenant=" + t) in s)]
            check(not foreign, "%s: every stream item is its own (%d items; "
                  "foreign: %s)" % (t, len(seen), foreign[:3]))
            n = sum(1 for k, s in seen if k == "readings")
            check(n == 41 + 1 + 6 + (1 if t == "globex" else 0),
                  "%s: the stream carried exactly its %d readings" % (t, n))
    finally:
        for ws in streams.values():
            ws.close()
        p.stop()


if __name__ == "__main__":
    main(test)
