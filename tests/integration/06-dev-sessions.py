#!/usr/bin/env python3
"""People and tokens: an admin key makes users in its tenant; a user logs
in and gets an HttpOnly, SameSite=Strict session cookie that works for the
API and the WebSocket stream within the user's tenant and role, ends at
logout, at expiry and when the user is deleted; the dashboard's page and
login page are open. HS256 JWTs carry tenant and role in their claims;
expired, wrong-audience, badly signed and unsigned ("none") tokens are
401. InfluxDB's u/p parameters carry a key. Guessing a password is rate
limited. No password, cookie, token or key appears in the log."""
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, need, write_keys  # noqa: E402
from ws import WS  # noqa: E402

JWT_KEY = secrets.token_urlsafe(32)
TTL = 6


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, key=JWT_KEY, alg="HS256"):
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b""
    if alg == "HS256":
        sig = hmac.new(key.encode(), ("%s.%s" % (head, body)).encode(),
                       hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


def cookie_of(headers):
    c = headers.get("Set-Cookie", "")
    return c, c.split(";")[0]


def test():
    need("aggd", "ingestd", "apid")
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    keys = os.path.join(p.dir, "keys")
    key = {t: "sp_" + secrets.token_urlsafe(32) for t in ("acme", "globex")}
    write_keys(keys, {t + "-ops": (t, k) for t, k in key.items()})
    p.extra = {"apid": ["--keys", keys, "--jwt-secret", JWT_KEY,
                        "--jwt-audience", "sensorpipe",
                        "--session-ttl", "%ds" % TTL,
                        "--key-rate", "1000", "--key-burst", "1000"]}
    p.start()
    secret = [JWT_KEY] + list(key.values())
    pw = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}
    secret += list(pw.values())

    def h(k):
        return {"Authorization": "Bearer " + k}

    def login(user, password):
        return p.http("POST", "/api/login", {"user": user, "password": password})

    try:
        for t in ("acme", "globex"):
            st, _, d = p.http("POST", "/api/devices/register",
                              {"deviceId": "dev-" + t, "type": "x"}, headers=h(key[t]))
            check(st == 201, "%s registers a device" % t)

        # Users are made by an admin, in its tenant.
        for user, role in (("alice", "writer"), ("bob", "reader")):
            st, _, d = p.http("POST", "/api/users", {"user": user, "password": pw[user],
                                                     "role": role}, headers=h(key["acme"]))
            check(st == 201 and d["tenant"] == "acme" and "password" not in d,
                  "acme's admin creates %s (%s)" % (user, d))
        st, _, d = p.http("POST", "/api/users", {"user": "carol", "password": "short",
                                                 "role": "reader"}, headers=h(key["acme"]))
        check(st == 400 and d["error"]["where"] == "password", "a short password -> 400 (%s %s)" % (st, d))
        st, _, d = p.http("POST", "/api/users", {"user": "alice", "password": "x" * 12,
                                                 "role": "reader"}, headers=h(key["globex"]))
        check(st == 409, "a taken name -> 409")
        st, _, d = p.http("GET", "/api/users", headers=h(key["globex"]))
        check(st == 200 and d["users"] == [], "globex lists none of acme's users")

        # Open without credentials: the pages; closed: the API.
        for path in ("/", "/web/login.html", "/web/login.js"):
            st, _, _ = p.http("GET", path)
            check(st == 200, "GET %s is open" % path)
        st, hd, _ = p.http("GET", "/api/devices")
        check(st == 401 and "Bearer" in hd.get("WWW-Authenticate", ""),
              "the API without credentials -> 401")

        # Logging in.
        st, _, d = login("alice", "wrong password")
        check(st == 401 and d["error"]["message"] == "wrong user or password",
              "a wrong password -> 401")
        st, _, d2 = login("nobody", "wrong password")
        check(st == 401 and d2 == d, "an unknown user gets the same answer")
        # A password typed into the name field is not logged (the secrets
        # check at the end greps for it).
        st, _, d2 = login(pw["bob"], "wrong password")
        check(st == 401 and d2 == d, "a password as the user name gets the same answer")
        st, hd, d = login("alice", pw["alice"])
        raw, alice = cookie_of(hd)
        check(st == 200 and d["tenant"] == "acme" and d["role"] == "writer",
              "alice logs in (%s)" % d)
        attrs = [a.strip() for a in raw.split(";")]
        check(alice.startswith("sp_session=") and len(alice) > 40
              and "HttpOnly" in attrs and "SameSite=Strict" in attrs
              and "Path=/" in attrs and "Max-Age=%d" % TTL in attrs,
              "the cookie is HttpOnly, SameSite=Strict, Path=/, Max-Age=%d: %s"
              % (TTL, attrs[1:]))
        secret.append(alice.split("=", 1)[1])
        ck = {"Cookie": alice}
        st, _, d = p.http("GET", "/api/me", headers=ck)
        check(st == 200 and d == {"tenant": "acme", "role": "writer", "who": "alice",
                                  "via": "session"}, "GET /api/me: %s" % d)
        st, _, d = p.http("GET", "/api/devices", headers=ck)
        ids = [x["deviceId"] for x in d["devices"]]
        check(st == 200 and ids == ["dev-acme"], "alice sees acme's devices: %s" % ids)
        st, _, d = p.http("POST", "/api/v1/record", {"data": [
            {"name": "by.alice", "value": 1.5, "timestamp": 1704067200000}]}, headers=ck)
        check(st == 200 and d["accepted"] == 1, "a writer's session writes")
        st, _, d = p.http("GET", "/api/users", headers=ck)
        check(st == 403, "a writer cannot manage users")

        # The stream uses the session cookie (a browser cannot set headers).
        ws = WS(p.api_port, headers=ck).start()
        ws.send_json({"op": "subscribe", "series": "by.*"})
        m = ws.get()
        check(m and m["type"] == "subscribed", "the WebSocket opens with the cookie")
        time.sleep(0.5)
        for t in ("globex", "acme"):
            st, _, _ = p.http("POST", "/api/v1/record", {"data": [
                {"name": "by." + t, "value": 2, "timestamp": 1704067260000}]},
                headers=h(key[t]))
        m = ws.get()
        check(m and m["type"] == "readings"
              and [i["series"] for i in m["items"]] == ["by.acme{tenant=acme}"],
              "the stream carries acme's reading only: %s" % m)
        ws.close()

        st, hd, d = login("bob", pw["bob"])
        bob = {"Cookie": cookie_of(hd)[1]}
        secret.append(cookie_of(hd)[1].split("=", 1)[1])
        st, _, d = p.http("POST", "/api/v1/record", {"data": [
            {"name": "by.bob", "value": 1}]}, headers=bob)
        check(st == 403, "a reader's session cannot write")
        st, _, d = p.http("GET", "/api/v1/stats/by.alice", headers=bob)
        check(st == 200 and d["count"] == 1, "a reader's session reads its tenant")

        # Logout ends the session at once.
        st, hd, d = p.http("POST", "/api/logout", headers=ck)
        raw, cleared = cookie_of(hd)
        check(st == 200 and cleared == "sp_session=" and "Max-Age=0" in raw,
              "logout clears the cookie: %s" % raw)
        st, _, _ = p.http("GET", "/api/me", headers=ck)
        check(st == 401, "the session is gone after logout")

        # Expiry.
        st, hd, _ = login("alice", pw["alice"])
        again = {"Cookie": cookie_of(hd)[1]}
        secret.append(cookie_of(hd)[1].split("=", 1)[1])
        st, _, _ = p.http("GET", "/api/me", headers=again)
        check(st == 200, "a new session works")
        time.sleep(TTL + 0.5)
        st, _, _ = p.http("GET", "/api/me", headers=again)
        check(st == 401, "a session past --session-ttl -> 401")

        # Deleting a user ends its sessions; another tenant cannot.
        st, _, _ = p.http("GET", "/api/me", headers=bob)
        st2, hd, _ = login("bob", pw["bob"])
        bob = {"Cookie": cookie_of(hd)[1]}
        secret.append(cookie_of(hd)[1].split("=", 1)[1])
        st, _, _ = p.http("DELETE", "/api/users/bob", headers=h(key["globex"]))
        check(st == 404, "globex cannot delete acme's user")
        st, _, _ = p.http("DELETE", "/api/users/bob", headers=h(key["acme"]))
        check(st == 200, "acme deletes bob")
        st, _, _ = p.http("GET", "/api/me", headers=bob)
        check(st == 401, "bob's session ended with bob")

        # JWTs: tenant and role from the claims.
        now = int(time.time())
        good = {"tenant": "globex", "role": "writer", "sub": "ci", "aud": "sensorpipe",
                "exp": now + 60}
        tok = jwt(good)
        secret.append(tok)
        st, _, d = p.http("GET", "/api/me", headers=h(tok))
        check(st == 200 and d == {"tenant": "globex", "role": "writer", "who": "ci",
                                  "via": "jwt"}, "a JWT: %s" % d)
        st, _, d = p.http("GET", "/api/devices", headers=h(tok))
        check([x["deviceId"] for x in d["devices"]] == ["dev-globex"],
              "the JWT's tenant scopes the answer")
        st, _, d = p.http("GET", "/api/v1/stats/by.alice", headers=h(tok))
        check(st == 404, "the JWT's tenant cannot read acme's series")
        for what, t in (("expired", jwt(dict(good, exp=now - 5))),
                        ("for another audience", jwt(dict(good, aud="other"))),
                        ("signed with another key", jwt(good, key="not-the-key")),
                        ("unsigned (alg none)", jwt(good, alg="none")),
                        ("without a tenant", jwt({k: v for k, v in good.items()
                                                  if k != "tenant"}))):
            st, _, d = p.http("GET", "/api/me", headers=h(t))
            check(st == 401, "a JWT %s -> 401 (%s)" % (what, d["error"]["message"]))
        st, _, _ = p.http("POST", "/api/v1/record", {"data": [{"name": "x", "value": 1}]},
                          headers=h(jwt(dict(good, role="reader"))))
        check(st == 403, "a reader JWT cannot write")

        # InfluxDB 1 clients: u and p.
        st, _, d = p.http("GET", "/api/devices?u=ops&p=" + key["acme"])
        check(st == 200 and [x["deviceId"] for x in d["devices"]] == ["dev-acme"],
              "?u=&p=<key> authenticates")

        # Guessing a password is slowed down.
        codes, retry = [], None
        for _ in range(12):
            st, hd, _ = login("alice", "guess")
            codes.append(st)
            retry = hd.get("Retry-After") or retry
        check(429 in codes and retry and int(retry) >= 1,
              "password guessing -> 429 with Retry-After (%s)" % codes)
    finally:
        p.stop(secrets=secret)


if __name__ == "__main__":
    main(test)
