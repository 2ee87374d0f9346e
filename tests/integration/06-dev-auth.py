#!/usr/bin/env python3
"""API keys with tenant and role: 401 without a key (but /health), 404
across tenants (never 403, so existence is hidden), a reader cannot write,
only admins make keys, a key over its rate gets 429 with Retry-After, keys
survive a restart, and no key or password appears in the log."""
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, write_keys  # noqa: E402

SEED = ('{"deviceId":"sensor-001","type":"temperature","metadata":'
        '{"location":"warehouse-a","model":"DHT22"}}')


def test():
    p = Platform(daemons=("apid",))
    acme, globex = "sp_" + secrets.token_urlsafe(32), "sp_" + secrets.token_urlsafe(32)
    keys = os.path.join(p.dir, "keys")
    mq = os.path.join(p.dir, "mqtt")
    write_keys(keys, {"acme-ops": ("acme", acme), "globex-ops": ("globex", globex)})
    p.extra = {"apid": ["--keys", keys, "--key-rate", "1", "--key-burst", "40",
                        "--mqtt-auth", mq]}
    p.start()
    seen = [acme, globex]

    def h(key):
        return {"Authorization": "Bearer " + key}

    try:
        st, _, d = p.http("GET", "/health")
        check(st == 200, "/health is open")
        for path in ("/api/devices", "/stats", "/metrics", "/api/v1/stats/x"):
            st, hd, d = p.http("GET", path)
            check(st == 401 and "Bearer" in hd.get("WWW-Authenticate", ""),
                  "%s without a key -> 401" % path)
        st, _, d = p.http("GET", "/api/devices", headers=h("sp_wrong"))
        check(st == 401, "an unknown key -> 401")
        st, _, d = p.http("GET", "/api/devices", headers={"Authorization": "Basic eDp5"})
        check(st == 401, "Basic auth -> 401")

        made = {}
        for role in ("writer", "reader"):
            st, _, d = p.http("POST", "/api/keys", {"name": "acme-" + role, "role": role},
                              headers=h(acme))
            check(st == 201 and d["tenant"] == "acme" and d["role"] == role
                  and d["key"].startswith("sp_"), "admin creates a %s key" % role)
            made[role] = d["key"]
            seen.append(d["key"])
        writer, reader = made["writer"], made["reader"]
        st, _, d = p.http("POST", "/api/keys", {"name": "x", "role": "admin"},
                          headers=h(writer))
        check(st == 403, "a writer cannot make keys")

        st, _, d = p.http("POST", "/api/devices/register", SEED, headers=h(writer))
        check(st == 201 and d["credentials"]["username"] == "sensor-001@acme"
              and d["credentials"]["telemetryTopic"]
              == "tenants/acme/devices/sensor-001/telemetry",
              "writer registers; MQTT user and topics carry the tenant")
        seen.append(d["credentials"]["password"])
        st, _, d = p.http("POST", "/api/devices/register",
                          {"deviceId": "sensor-002", "type": "x"}, headers=h(reader))
        check(st == 403, "a reader cannot register")
        st, _, d = p.http("PATCH", "/api/devices/sensor-001", {"tags": ["x"]},
                          headers=h(reader))
        check(st == 403, "a reader cannot patch")
        st, _, d = p.http("DELETE", "/api/devices/sensor-001", headers=h(reader))
        check(st == 403, "a reader cannot decommission")
        st, _, d = p.http("POST", "/api/v1/ingest", {"sensor_id": "a", "datapoints": []},
                          headers=h(reader))
        check(st == 403, "a reader cannot ingest")
        st, _, d = p.http("GET", "/api/devices/sensor-001", headers=h(reader))
        check(st == 200 and d["metadata"]["location"] == "warehouse-a", "a reader reads")

        # Tenant isolation: globex sees nothing of acme's, and 404 not 403.
        for method, path, body in (("GET", "/api/devices/sensor-001", None),
                                   ("GET", "/api/devices/sensor-001/events", None),
                                   ("PATCH", "/api/devices/sensor-001", {"tags": []}),
                                   ("DELETE", "/api/devices/sensor-001", None),
                                   ("POST", "/api/devices/sensor-001/credentials", None),
                                   ("POST", "/api/devices/sensor-001/events",
                                    {"type": "heartbeat"})):
            st, _, d = p.http(method, path, body, headers=h(globex))
            check(st == 404, "globex %s %s -> 404 (got %d)" % (method, path, st))
        st, _, d = p.http("GET", "/api/devices", headers=h(globex))
        check(st == 200 and d["total"] == 0, "globex lists no devices")
        st, _, d = p.http("POST", "/api/devices/register",
                          '{"deviceId":"sensor-001","type":"pressure"}', headers=h(globex))
        check(st == 201 and d["credentials"]["username"] == "sensor-001@globex",
              "globex registers its own sensor-001")
        seen.append(d["credentials"]["password"])
        st, _, d = p.http("GET", "/api/devices/sensor-001", headers=h(acme))
        check(d["type"] == "temperature", "acme's sensor-001 is untouched")
        acl = open(os.path.join(mq, "acl")).read()
        check("user sensor-001@acme\ntopic write tenants/acme/devices/sensor-001/#" in acl
              and "user sensor-001@globex\ntopic write tenants/globex/devices/sensor-001/#"
              in acl, "the broker ACL separates the tenants' topics")

        # Rate limit per key: the burst, then 429 with Retry-After.
        codes, retry = [], None
        for _ in range(45):
            st, hd, d = p.http("GET", "/api/devices", headers=h(reader))
            codes.append(st)
            if st == 429:
                retry = hd.get("Retry-After")
        check(429 in codes and retry is not None and int(retry) >= 1,
              "a key over its rate -> 429 with Retry-After %s" % retry)
        st, _, d = p.http("GET", "/api/devices", headers=h(writer))
        check(st == 200, "another key of the same tenant is not limited")
        time.sleep(int(retry) + 0.2)
        st, _, d = p.http("GET", "/api/devices", headers=h(reader))
        check(st == 200, "after Retry-After the key works again")

        # Keys made over the API survive a restart; auth stays on.
        p.stop_one("apid")
        os.unlink(keys)
        open(keys, "w").close()
        p.start_one("apid")
        st, _, d = p.http("GET", "/api/devices")
        check(st == 401, "auth still on after a restart (keys in the store)")
        st, _, d = p.http("GET", "/api/devices/sensor-001", headers=h(writer))
        check(st == 200 and d["type"] == "temperature", "an API-made key still works")
        st, _, d = p.http("GET", "/api/devices/sensor-001", headers=h(acme))
        check(st == 401, "a key removed from the file no longer works")
    finally:
        p.stop(secrets=seen)


if __name__ == "__main__":
    main(test)
