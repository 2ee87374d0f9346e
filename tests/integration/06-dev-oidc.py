#!/usr/bin/env python3
"""Tokens of an OAuth 2.0 / OpenID Connect provider: apid is given the
provider's keys as a JWKS file (an RSA and an EC key, each with a kid,
plus an encryption key it must ignore) and verifies RS256 and ES256
tokens minted here with openssl, taking tenant and role from configurable
(nested, array) claims. A token signed by another key, an expired one,
one for another audience or issuer, one naming an unknown kid, an HS256
token made with the public key as its secret (algorithm confusion) and
an unsigned one are each 401 with a JSON reason, never echoing the token.
Tenants stay apart. Rotating the JWKS file is picked up without a
restart. No token appears in the logs. With --jwt-keys-url apid fetches
the keys through the provider's discovery document (a local HTTP
server here), fetches again when a token names an unknown kid (the
provider rotated), and restarts from its cache while the provider is
down."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, need, wait_for  # noqa: E402

ISS = "https://idp.test/realms/sp"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(("openssl",) + args, input=data, check=True,
                          capture_output=True).stdout


class Key:
    """A key pair made by openssl, its JWK and a signer."""

    def __init__(self, d, name, kind):
        self.pem = os.path.join(d, name + ".pem")
        self.kind = kind
        if kind == "RSA":
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", self.pem)
            mod = openssl("rsa", "-in", self.pem, "-noout", "-modulus").decode()
            n = bytes.fromhex(mod.strip().split("=", 1)[1])
            text = openssl("rsa", "-in", self.pem, "-noout", "-text").decode()
            e = int(text.split("publicExponent:")[1].split()[0])
            self.jwk = {"kty": "RSA", "n": b64(n),
                        "e": b64(e.to_bytes((e.bit_length() + 7) // 8, "big"))}
        else:
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", self.pem)
            spki = openssl("pkey", "-in", self.pem, "-pubout", "-outform", "DER")
            point = spki[-65:]  # 04 || X || Y ends the SubjectPublicKeyInfo
            check(point[0] == 4, "an uncompressed P-256 point")
            self.jwk = {"kty": "EC", "crv": "P-256", "x": b64(point[1:33]),
                        "y": b64(point[33:])}
        self.public_pem = openssl("pkey", "-in", self.pem, "-pubout")

    def sign(self, data):
        sig = openssl("dgst", "-sha256", "-sign", self.pem, data=data)
        if self.kind == "RSA":
            return sig
        # ECDSA: DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each.
        i = 3 if sig[1] & 0x80 else 2
        out = b""
        for _ in range(2):
            check(sig[i] == 2, "a DER integer")
            n = sig[i + 1]
            out += sig[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
            i += 2 + n
        return out


def token(key, claims, kid=None, alg=None):
    head = {"alg": alg or ("RS256" if key.kind == "RSA" else "ES256"), "typ": "JWT"}
    if kid:
        head["kid"] = kid
    signing = ("%s.%s" % (b64(json.dumps(head).encode()),
                          b64(json.dumps(claims).encode()))).encode()
    return signing.decode() + "." + b64(key.sign(signing))


def write_jwks(path, keys):
    with open(path + ".tmp", "w") as f:
        json.dump({"keys": keys}, f)
    os.rename(path + ".tmp", path)


def test():
    need("aggd", "ingestd", "apid")
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    rsa, ec = Key(p.dir, "rsa", "RSA"), Key(p.dir, "ec", "EC")
    wrong, enc, rotated = (Key(p.dir, n, "RSA") for n in ("wrong", "enc", "rotated"))
    jwks = os.path.join(p.dir, "jwks.json")
    write_jwks(jwks, [dict(rsa.jwk, kid="rsa-1", use="sig", alg="RS256"),
                      dict(ec.jwk, kid="ec-1"),
                      dict(enc.jwk, kid="enc-1", use="enc")])
    p.extra = {"apid": ["--jwt-keys", jwks, "--jwt-issuer", ISS,
                        "--jwt-audience", "sensorpipe",
                        "--jwt-tenant-claim", "org.tenant",
                        "--jwt-role-claim", "realm_access.roles",
                        "--key-rate", "1000", "--key-burst", "1000"]}
    p.start()
    now = int(time.time())
    secret = []

    def claims(tenant, roles, **kw):
        c = {"iss": ISS, "aud": ["account", "sensorpipe"], "sub": "svc-" + tenant,
             "exp": now + 300, "iat": now, "org": {"tenant": tenant},
             "realm_access": {"roles": roles}}
        c.update(kw)
        return c

    def h(t):
        secret.append(t)
        return {"Authorization": "Bearer " + t}

    try:
        acme_w = token(rsa, claims("acme", ["offline_access", "writer"]), kid="rsa-1")
        acme_r = token(ec, claims("acme", ["reader"]), kid="ec-1")
        globex_w = token(ec, claims("globex", ["writer"]), kid="ec-1")
        st, _, d = p.http("GET", "/api/me", headers=h(acme_w))
        check(st == 200 and d == {"tenant": "acme", "role": "writer", "who": "svc-acme",
                                  "via": "jwt"}, "an RS256 token: %s %s" % (st, d))
        st, _, d = p.http("GET", "/api/me", headers=h(acme_r))
        check(st == 200 and d["tenant"] == "acme" and d["role"] == "reader",
              "an ES256 token: %s %s" % (st, d))

        # Writing and reading within the token's tenant and role.
        for tok, v in ((acme_w, 1.5), (globex_w, 99.0)):
            st, _, d = p.http("POST", "/api/v1/record",
                              {"data": [{"name": "oidc.temp", "value": v}]},
                              headers=h(tok))
            check(st in (200, 202, 204), "a writer token writes (%s %s)" % (st, d))
        st, _, d = p.http("POST", "/api/v1/record",
                          {"data": [{"name": "oidc.temp", "value": 7}]}, headers=h(acme_r))
        check(st == 403, "a reader token cannot write (%s)" % st)

        def stats(tok):
            st, _, d = p.http("GET", "/api/v1/stats/oidc.temp", headers=h(tok))
            return d if st == 200 and d.get("count") == 1 else None
        d = wait_for(lambda: stats(acme_r), "acme's reading")
        check(d["min"] == 1.5, "acme's token reads acme's series only (%s)" % d)
        d = wait_for(lambda: stats(globex_w), "globex's reading")
        check(d["min"] == 99.0, "globex's token reads globex's series only (%s)" % d)

        # Refusals, each with its reason and without the token.
        hs_confusion = "%s.%s" % (b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
                                  b64(json.dumps(claims("acme", ["admin"])).encode()))
        hs_confusion += "." + b64(hmac.new(rsa.public_pem, hs_confusion.encode(),
                                           hashlib.sha256).digest())
        unsigned = "%s.%s." % (b64(json.dumps({"alg": "none"}).encode()),
                               b64(json.dumps(claims("acme", ["admin"])).encode()))
        cases = (
            ("signed by another key", token(wrong, claims("acme", ["admin"]), kid="rsa-1"),
             "bad_signature"),
            ("expired", token(rsa, claims("acme", ["writer"], exp=now - 10), kid="rsa-1"),
             "expired"),
            ("for another audience", token(rsa, claims("acme", ["writer"], aud="other"),
                                           kid="rsa-1"), "bad_audience"),
            ("from another issuer", token(ec, claims("acme", ["writer"], iss="https://evil"),
                                          kid="ec-1"), "bad_issuer"),
            ("naming an unknown kid", token(rsa, claims("acme", ["writer"]), kid="rsa-9"),
             "unknown_kid"),
            ("naming the encryption key", token(enc, claims("acme", ["writer"]),
                                                kid="enc-1"), "unknown_kid"),
            ("RS256 naming the EC key", token(rsa, claims("acme", ["writer"]), kid="ec-1"),
             "wrong_key_type"),
            ("HS256 with the public key as secret", hs_confusion, "unsupported_alg"),
            ("unsigned", unsigned, "unsupported_alg"),
            ("without an expiry", token(rsa, {k: v for k, v in claims("acme", []).items()
                                              if k != "exp"}, kid="rsa-1"), "no_expiry"),
            ("without a tenant", token(rsa, claims("", ["writer"]), kid="rsa-1"),
             "bad_tenant"),
        )
        for what, tok, reason in cases:
            st, hd, d = p.http("GET", "/api/devices", headers=h(tok))
            body = json.dumps(d) + json.dumps(hd)
            check(st == 401 and d["error"]["reason"] == reason
                  and d["error"]["code"] == "unauthorized" and d["error"]["message"]
                  and "invalid_token" in hd.get("WWW-Authenticate", ""),
                  "a token %s -> 401 %s (%s)" % (what, reason, d["error"]))
            check(tok not in body and tok.split(".")[1][:20] not in body,
                  "the 401 does not echo the token")
        # The token's tenant is its own: another tenant's data is 404.
        st, _, _ = p.http("GET", "/api/v1/stats/oidc.temp?tag.tenant=globex",
                          headers=h(acme_r))
        check(st == 404, "acme's token cannot name globex's series (%s)" % st)

        # Key rotation: a new key in the file is used without a restart.
        new = token(rotated, claims("acme", ["admin"]), kid="rsa-2")
        st, _, d = p.http("GET", "/api/me", headers=h(new))
        check(st == 401 and d["error"]["reason"] == "unknown_kid",
              "before rotation the new kid is unknown")
        write_jwks(jwks, [dict(rotated.jwk, kid="rsa-2"), dict(ec.jwk, kid="ec-1")])

        def rotated_ok():
            st, _, d = p.http("GET", "/api/me", headers=h(new))
            return d if st == 200 else None
        d = wait_for(rotated_ok, "the rotated key", timeout=15)
        check(d["role"] == "admin", "the rotated key's token is admin (%s)" % d)
        st, _, d = p.http("GET", "/api/me", headers=h(acme_w))
        check(st == 401 and d["error"]["reason"] == "unknown_kid",
              "the retired key's tokens are refused")
        # A broken file keeps the keys in force.
        with open(jwks, "w") as f:
            f.write("{not json")
        time.sleep(6)
        st, _, d = p.http("GET", "/api/me", headers=h(new))
        check(st == 200, "a broken JWKS file keeps the keys in force (%s)" % st)
        check("keeping the 2 keys in force" in p.log("apid"),
              "apid says so in its log")
    finally:
        p.stop(secrets=secret)


class Provider(http.server.BaseHTTPRequestHandler):
    """An OpenID provider's discovery document and key set."""
    jwks = {"keys": []}
    gets = []

    def do_GET(self):
        self.gets.append(self.path)
        if self.path == "/.well-known/openid-configuration":
            body = {"issuer": ISS, "jwks_uri": "http://127.0.0.1:%d/certs"
                    % self.server.server_address[1]}
        elif self.path == "/certs":
            body = self.jwks
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_url():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    p = Platform(daemons=("apid",))
    k1, k2 = Key(p.dir, "k1", "EC"), Key(p.dir, "k2", "RSA")
    Provider.jwks = {"keys": [dict(k1.jwk, kid="k1")]}
    p.extra = {"apid": ["--jwt-keys-url", "http://127.0.0.1:%d/.well-known/openid-configuration"
                        % srv.server_address[1], "--jwt-issuer", ISS,
                        "--jwt-audience", "sensorpipe", "--jwt-keys-refresh", "10m"]}
    now = int(time.time())
    claims = {"iss": ISS, "aud": "sensorpipe", "sub": "svc", "exp": now + 300,
              "tenant": "acme", "role": "writer"}
    t1, t2 = token(k1, claims, kid="k1"), token(k2, claims, kid="k2")
    stopped = False
    try:
        p.start()
        check(Provider.gets[:2] == ["/.well-known/openid-configuration", "/certs"],
              "apid read the discovery document, then the key set (%s)" % Provider.gets)
        st, _, d = p.http("GET", "/api/me", headers={"Authorization": "Bearer " + t1})
        check(st == 200 and d["tenant"] == "acme", "a token of the fetched key (%s %s)" % (st, d))
        # The provider rotates: the unknown kid makes apid fetch again.
        Provider.jwks = {"keys": [dict(k2.jwk, kid="k2")]}
        st, _, d = p.http("GET", "/api/me", headers={"Authorization": "Bearer " + t2})
        check(st == 401 and d["error"]["reason"] == "unknown_kid", "k2 is unknown at first")

        def rotated():
            st, _, _ = p.http("GET", "/api/me", headers={"Authorization": "Bearer " + t2})
            return st == 200
        wait_for(rotated, "apid fetching the rotated keys", timeout=30, step=0.5)
        check("new JWT keys from" in p.log("apid"), "apid logs the new keys")
        st, _, d = p.http("GET", "/api/me", headers={"Authorization": "Bearer " + t1})
        check(st == 401, "the retired key's token is refused")
        # The provider is down: a restart starts from the cache.
        srv.shutdown()
        srv.server_close()
        stopped = True
        p.stop_one("apid")
        p.start_one("apid")
        st, _, d = p.http("GET", "/api/me", headers={"Authorization": "Bearer " + t2})
        check(st == 200, "after a restart without the provider, the cached keys serve (%s)" % st)
    finally:
        p.stop(secrets=[t1, t2])
        if not stopped:
            srv.shutdown()


def test_all():
    test()
    test_url()


if __name__ == "__main__":
    main(test_all)
