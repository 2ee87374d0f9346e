#!/usr/bin/env python3
"""Rules CRUD through apid against the real chain with two lanes: the
seed body of POST /api/rules verbatim creates a rule that alertd
validates, stores in its SQLite file and applies at once (its webhook
action receives the firing of a sustained breach once per device, on
either lane); a bad condition is refused with the parser's position and
reason; PUT changes the rule live (its alerts resolve, the new condition
applies without a restart); disable and enable; the rule survives a
kill -9 of every alertd; DELETE removes it."""
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, free_port, have, main, wait_for  # noqa: E402


class Receiver(http.server.BaseHTTPRequestHandler):
    got = {}  # idempotency key -> body
    posts = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Receiver.posts += 1
        Receiver.got.setdefault(self.headers.get("Idempotency-Key"),
                                json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass



def test():
    for d in ("ingestd", "aggd", "anomalyd", "alertd", "apid"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    p = Platform(lanes=2)
    dbs = {n: os.path.join(p.dir, "alertd.%s.db" % n)
           for n in ("alertd", "alertd.1")}
    p.extra = {n: ["--db", db, "--retry-base", "200ms"]
               for n, db in dbs.items()}
    p.start()
    name = "High Temperature Alert"
    url = "/api/rules/" + urllib.parse.quote(name)
    seed = {"name": name, "condition": "temperature > 30",
            "actions": [{"type": "webhook",
                         "url": "http://127.0.0.1:%d/hook" % port}]}

    def record(t0, value, devices=("d1", "d2", "d3", "d4")):
        data = [{"name": "temperature", "tags": {"device": d}, "value": value,
                 "timestamp": (t0 + i) * 1000}
                for d in devices for i in range(3)]
        st, _, _ = p.http("POST", "/api/v1/record", {"data": data})
        check(st == 200, "record %s for %d devices" % (value, len(devices)))

    def active():
        st, _, b = p.http("GET", "/api/alerts")
        return [a for a in b["alerts"] if a["rule"] == name] if st == 200 else []

    def firing():
        return sorted(b["scope"] for b in Receiver.got.values()
                      if b["state"] == "firing")

    try:
        st, _, b = p.http("POST", "/api/rules", seed)
        check(st == 201 and b["id"] == name and b["source"] == "api" and
              b["canonical"] == "temperature > 30 severity warning" and
              b["actions"] == seed["actions"],
              "the seed body creates a rule: %s %s" % (st, b))
        # Bad input: position and reason of the parser, in SPEC's shape.
        st, _, b = p.http("POST", "/api/rules",
                          {"name": "bad", "condition": "temperature > > 30"})
        e = b.get("error", {})
        check(st == 400 and e.get("code") == "bad_rule" and
              e.get("where") == "condition:15" and e.get("position") == 15 and
              "expected a number" in e.get("message", ""),
              "a bad condition is refused with its position: %s" % b)
        for body, where, why in (
                ('{"name": "x", "condition": ', "body:", "malformed JSON"),
                ({"name": "x"}, "condition", "no condition"),
                ({"name": "x", "condition": "t > 1", "actions":
                  [{"type": "exec", "command": ["/bin/true"]}]},
                 "actions[0]", "exec through the API"),
                ({"name": "x", "condition": "t > 1", "actions":
                  [{"type": "webhook", "url": "file:///etc/passwd"}]},
                 "actions[0]", "a webhook that is not http"),
                ({"name": "x", "condition": "t > 1", "actions":
                  [{"type": "webhook", "url": "http://[::1"}]},
                 "actions[0]", "a webhook URL libcurl cannot parse"),
                ({"name": "x", "condition": "t > 1", "actions":
                  [{"type": "webhook", "url": "http://"}]},
                 "actions[0]", "a webhook URL without a host"),
                ({"name": "x", "condition": "t > 1", "colour": "red"},
                 "colour", "an unknown field")):
            st, _, b = p.http("POST", "/api/rules", body)
            check(st == 400 and b["error"]["where"].startswith(where) and
                  (why != "exec through the API" or
                   "rules file" in b["error"]["message"]),
                  "%s is refused: %s" % (why, b))
        st, _, b = p.http("POST", "/api/rules", seed)
        check(st == 409 and b["error"]["code"] == "conflict",
              "a second rule of that name is a conflict")
        st, _, b = p.http("GET", "/api/rules")
        check(st == 200 and [r["name"] for r in b["rules"]] == [name],
              "GET /api/rules lists it")
        st, _, b = p.http("GET", url)
        check(st == 200 and b["condition"] == "temperature > 30" and
              b["enabled"] is True, "GET /api/rules/{id}")
        st, _, _ = p.http("GET", "/api/rules/nope")
        check(st == 404, "an unknown rule is 404")
        st, _, _ = p.http("PATCH", "/api/rules")
        check(st == 405, "PATCH /api/rules is 405")

        # Applied at once, on both lanes: four devices breach.
        t0 = 1704067200
        record(t0, 35.0)
        wait_for(lambda: len(firing()) == 4,
                 "the webhook gets one firing per device")
        check(firing() == ["temperature{device=%s}" % d
                           for d in ("d1", "d2", "d3", "d4")] and
              all(b["rule"] == name for b in Receiver.got.values()),
              "once per device, not once per reading: %s" % firing())
        lanes = {int(p.http("GET", "/stats")[2]["alertd"]["lanes"][i]
                     ["alerts_active"]) for i in range(2)}
        check(0 not in lanes, "both lanes hold alerts of the new rule")

        # PUT: the changed rule's alerts resolve; the new threshold holds.
        st, _, b = p.http("PUT", url, {"condition": "temperature > 40"})
        check(st == 200 and b["condition"] == "temperature > 40" and
              b["actions"] == seed["actions"],
              "PUT changes the condition, keeps the actions")
        wait_for(lambda: active() == [], "the old alerts resolve")
        record(t0 + 10, 35.0)
        time.sleep(1)
        check(active() == [], "35 no longer fires under the new condition")
        record(t0 + 20, 45.0, ("d1",))
        wait_for(lambda: len(active()) == 1, "45 fires under the new one")

        # Disable, enable.
        st, _, b = p.http("POST", url + "/disable")
        check(st == 200 and b["enabled"] is False, "disable")
        wait_for(lambda: active() == [], "a disabled rule's alert resolves")
        record(t0 + 30, 45.0, ("d2",))
        time.sleep(1)
        check(active() == [], "a disabled rule does not fire")
        st, _, b = p.http("POST", url + "/enable")
        check(st == 200 and b["enabled"] is True, "enable")
        record(t0 + 40, 46.0, ("d2",))
        wait_for(lambda: len(active()) == 1, "enabled again, it fires")

        # kill -9 of every alertd: the rule is in each lane's database.
        for n in ("alertd", "alertd.1"):
            p.procs[n].kill()
            p.procs[n].wait()
        for n in ("alertd", "alertd.1"):
            p.start_one(n)
        st, _, b = p.http("GET", url)
        check(st == 200 and b["condition"] == "temperature > 40" and
              b["enabled"] is True, "the rule survives kill -9 of alertd")
        check(len(active()) == 1, "so does its firing alert")
        record(t0 + 50, 47.0, ("d3",))
        wait_for(lambda: len(active()) == 2,
                 "and it is evaluated after the restart")

        st, _, b = p.http("DELETE", url)
        check(st == 200 and b["deleted"] is True, "DELETE")
        st, _, _ = p.http("GET", url)
        check(st == 404, "deleted rule is gone")
        wait_for(lambda: active() == [], "its alerts resolve")
        st, _, b = p.http("GET", "/api/rules")
        check(b["rules"] == [], "the list is empty")
    finally:
        p.stop()
        srv.shutdown()


if __name__ == "__main__":
    main(test)
