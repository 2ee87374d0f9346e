#!/usr/bin/env python3
"""alertd in the chain: ingestd -> aggd -> anomalyd -> alertd, apid in
front. A sustained breach posted over HTTP fires once (seen on alertd's
PUB through tap, and in GET /api/alerts), respects "for", resolves; the
stats query counts it; SIGHUP with a broken rules file keeps the rules,
with a good one swaps them; anomalyd's novelty alarm fires an alarm()
rule and is found by GET /api/v1/anomalies/{series}?alarm=true;
SIGTERM exits 0 with "shutdown complete"."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, binary, check, have, main, wait_for  # noqa: E402


def test():
    for d in ("ingestd", "aggd", "anomalyd", "alertd", "apid", "tap"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    import tempfile
    tmp = tempfile.mkdtemp(prefix="sp-04-chain.")
    rules = os.path.join(tmp, "alertd.rules")
    with open(rules, "w") as f:
        f.write("high_temp: machine.temp > 30 for 1m severity critical\n")
    p = Platform(extra={"alertd": ["--rules", rules]}).start()
    tap = atap = None
    try:
        tap_out = os.path.join(tmp, "tap.out")
        tap = subprocess.Popen([binary("tap"),
                                "ipc://%s/alertd.0.pub" % p.run],
                               stdout=open(tap_out, "w"),
                               stderr=subprocess.DEVNULL)
        atap_out = os.path.join(tmp, "atap.out")
        atap = subprocess.Popen([binary("tap"),
                                 "ipc://%s/anomalyd.0.pub" % p.run],
                                stdout=open(atap_out, "w"),
                                stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let the SUB connect (PUB drops until then)
        t0 = 1704067200
        # 10 normal, then 30 breaching (5 minutes), then 5 normal.
        p.record("machine.temp", t0, [20.0] * 10)
        p.record("machine.temp", t0 + 100, [35.0] * 30)
        p.record("machine.temp", t0 + 400, [20.0] * 5)

        def events():
            with open(tap_out) as f:
                return [l for l in f if '"type":"alert"' in l]
        ev = wait_for(lambda: len(events()) >= 3 and events(),
                      "three alert events on alertd's PUB")
        time.sleep(0.5)
        ev = events()
        for l in ev:
            print("# " + l.strip())
        firing = [l for l in ev if '"firing"' in l]
        check(len(ev) == 3, "exactly three events (pending, firing, "
                            "resolved): %d" % len(ev))
        check(len(firing) == 1, "fires once for 30 breaching readings")
        check("2024-01-01T00:02:40.000Z" in firing[0],
              "fires after 'for 1m' (t=160 s)")
        check('"pending"' in ev[0] and '"resolved"' in ev[2],
              "pending first, resolved last")

        log = p.log("alertd")
        check(log.count("alert firing: rule=high_temp") == 1,
              "one info line for the firing change")

        st, _, body = p.http("GET", "/api/alerts")
        check(st == 200 and body.get("alerts") == [],
              "GET /api/alerts: no active alert after resolve: %s" % body)
        st, _, body = p.http("GET", "/api/rules")
        check(st == 200 and body["rules"][0]["name"] == "high_temp",
              "GET /api/rules lists the rule: %s" % body)

        # A breach that stays: active in /api/alerts.
        p.record("machine.temp", t0 + 1000, [40.0] * 8)
        def active():
            st, _, body = p.http("GET", "/api/alerts")
            return st == 200 and body["alerts"] and body
        body = wait_for(active, "an active alert in GET /api/alerts")
        a = body["alerts"][0]
        check(a["state"] == "firing" and a["severity"] == "critical" and
              a["scope"] == "machine.temp", "the firing alert: %s" % a)
        check(body["total"] == 1 and body["limit"] == 1000 and
              body["offset"] == 0, "the page says total, limit, offset: %s" % body)
        st, _, body = p.http("GET", "/api/alerts?limit=1&offset=1")
        check(st == 200 and body["alerts"] == [] and body["total"] == 1,
              "GET /api/alerts?offset=1: past the one alert: %s" % body)
        for bad in ("limit=0", "limit=1001", "offset=-1", "offset=x"):
            st, _, body = p.http("GET", "/api/alerts?" + bad)
            check(st == 400 and body["error"]["where"] == bad.split("=")[0],
                  "GET /api/alerts?%s: 400 naming it: %s" % (bad, body))

        # SIGHUP: a broken file is refused whole, a good one applies.
        with open(rules, "w") as f:
            f.write("high_temp: machine.temp >\n")
        p.procs["alertd"].send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the 1 current rules" in p.log("alertd"),
                 "a broken rules file is refused on SIGHUP")
        check("alertd.rules:1:" in p.log("alertd"),
              "the reload error names file:line")
        with open(rules, "w") as f:
            f.write("cold: machine.temp < 0\n")
        p.procs["alertd"].send_signal(signal.SIGHUP)
        wait_for(lambda: p.log("alertd").count(
                     "alert resolved: rule=high_temp") == 2,
                 "the removed rule's alert resolves on reload")
        st, _, body = p.http("GET", "/api/rules")
        check([r["name"] for r in body["rules"]] == ["cold"],
              "the new rule set is in place: %s" % body)

        # anomalyd's novelty alarm reaches a rule: 850 readings of a
        # noisy cycle (past the ensemble's 750-reading warm-up), then a
        # spike far beyond anything the series had: one anomaly event
        # with "alarm": true, so alarm() fires, and resolves at the next
        # reading (no event). The anomalies API finds it by ?alarm=true.
        with open(rules, "w") as f:
            f.write("cold: machine.temp < 0\n"
                    "novel: alarm(machine.vib) > 0 severity warning\n")
        p.procs["alertd"].send_signal(signal.SIGHUP)
        wait_for(lambda: "loaded 2 rules" in p.log("alertd"),
                 "the alarm rule loads on SIGHUP")
        import math
        import random
        rnd = random.Random(7)
        vib = [20 + math.sin(i / 10.0) + rnd.gauss(0, 0.3) for i in range(870)]
        vib[850] = 60.0
        for i in range(0, 860, 215):
            p.record("machine.vib", t0 + 2000 + 10 * i, vib[i:i + 215])

        def novel():
            with open(tap_out) as f:
                return [l for l in f if '"rule":"novel"' in l]
        # The readings after the spike may be applied before its event
        # (alertd pairs them only when both are queued), so the resolve
        # waits for readings sent after the firing is seen.
        wait_for(novel, "the alarm rule fires on alertd's PUB")
        p.record("machine.vib", t0 + 2000 + 8600, vib[860:])
        ev = wait_for(lambda: len(novel()) >= 2 and novel(),
                      "the alarm rule resolves on alertd's PUB")
        time.sleep(0.5)
        ev = novel()
        for l in ev:
            print("# " + l.strip())
        check(len(ev) == 2 and '"firing"' in ev[0] and '"resolved"' in ev[1],
              "the alarm fires once and resolves: %d events" % len(ev))
        check("2024-01-01T02:55:00.000Z" in ev[0],
              "it fires at the spike (t=2000+8500 s)")
        with open(atap_out) as f:
            vib_ev = [l for l in f if '"series":"machine.vib"' in l and
                      '"type":"anomaly"' in l]
        alarms = [l for l in vib_ev if '"alarm":true' in l]
        check(len(alarms) == 1 and '"value":60,' in alarms[0] and
              all('"alarm":false' in l for l in vib_ev if l not in alarms),
              "anomalyd's PUB: the one alarm among %d machine.vib anomaly "
              "events: %s" % (len(vib_ev), alarms))
        st, _, body = p.http("GET", "/api/v1/anomalies/machine.vib?alarm=true")
        hits = body.get("anomalies", []) if st == 200 else []
        check(len(hits) == 1 and hits[0]["alarm"] is True and
              hits[0]["value"] == 60 and
              hits[0]["timestamp"] == "2024-01-01T02:55:00.000Z",
              "GET /api/v1/anomalies/...?alarm=true: the one alarm: %s %s"
              % (st, body))
        st, _, body = p.http("GET", "/api/v1/anomalies/machine.vib?min_score=0")
        check(st == 200 and body["anomalies"] and
              all(a["alarm"] is (a["value"] == 60) for a in body["anomalies"]),
              "every anomaly of the %d says whether it alarmed"
              % len(body.get("anomalies", [])))
        st, _, body = p.http("GET", "/api/v1/anomalies/machine.vib?alarm=yes")
        check(st == 400 and body["error"]["where"] == "alarm",
              "?alarm=yes: 400 naming it: %s" % body)
    finally:
        for t in (tap, atap):
            if t:
                t.terminate()
                t.wait()
        p.stop()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
