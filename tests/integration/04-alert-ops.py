#!/usr/bin/env python3
"""alertd operations in the chain, with a database: the lifecycle
(pending -> firing -> acknowledged -> resolved) with history, ack,
escalation of an unacknowledged alert to a second channel, silences,
throttle, resolve by hand; exec channels (no shell between alertd and the
command: the test's own /bin/sh -c is the command) record what they get;
queries go through "alertd --ctl"."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, binary, check, have, main, wait_for  # noqa: E402



def lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def test():
    for d in ("ingestd", "aggd", "anomalyd", "alertd", "apid"):
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="sp-04-ops.")
    log, page = os.path.join(tmp, "log.jsonl"), os.path.join(tmp, "page.jsonl")
    rules = os.path.join(tmp, "alertd.rules")
    with open(rules, "w") as f:
        f.write('channel log: exec /bin/sh -c "cat >> %s; echo >> %s"\n'
                % (log, log))
        f.write('channel page: exec /bin/sh -c "cat >> %s; echo >> %s"\n'
                % (page, page))
        f.write("hot: machine.temp > 30 severity warning, critical after 1m "
                "notify log throttle 5m escalate page after 2m\n")
    db = os.path.join(tmp, "alertd.db")
    p = Platform(extra={"alertd": ["--rules", rules, "--db", db]}).start()

    def ctl(q, ok=True):
        r = subprocess.run([binary("alertd"), "--rundir", p.run, "--ctl",
                            json.dumps(q)], capture_output=True, text=True,
                           timeout=30)
        check((r.returncode == 0) == ok,
              "ctl %s -> %s %s" % (q["op"], r.returncode, r.stdout.strip()))
        return json.loads(r.stdout) if r.stdout.strip() else None

    def record(device, t0, values, step=10):
        data = [{"name": "machine.temp", "tags": {"device": device},
                 "value": v, "timestamp": (t0 + i * step) * 1000}
                for i, v in enumerate(values)]
        st, _, body = p.http("POST", "/api/v1/record", {"data": data})
        check(st == 200, "record %d readings for %s" % (len(values), device))

    try:
        t0 = 1704067200
        # Silence device c before anything happens.
        sil = ctl({"op": "silence", "rule": "hot",
                   "scope": "machine.temp{device=c}", "duration": "1h",
                   "comment": "maintenance"})
        check(sil["id"] > 0, "a silence is created")
        check(len(ctl({"op": "silences"})["silences"]) == 1,
              "the silence is listed")
        # Three devices breach from t0; a is acknowledged at once.
        for d in ("a", "b", "c"):
            record(d, t0, [35.0] * 3)
        active = wait_for(lambda: len(ctl({"op": "alerts"})["alerts"]) == 3
                          and ctl({"op": "alerts"})["alerts"],
                          "three active alerts")
        ids = {a["scope"]: a["id"] for a in active}
        check(all(a["state"] == "firing" for a in active),
              "all three fire (no 'for')")
        acked = ctl({"op": "ack", "id": ids["machine.temp{device=a}"],
                     "by": "alice"})
        check(acked["state"] == "acknowledged" and acked["acked_by"] == "alice",
              "a is acknowledged by alice")
        ctl({"op": "ack", "id": ids["machine.temp{device=a}"]}, ok=False)
        wait_for(lambda: len(lines(log)) == 2,
                 "two firing notifications on the log channel (a, b)")
        check(sorted(n["scope"] for n in lines(log)) ==
              ["machine.temp{device=a}", "machine.temp{device=b}"],
              "c is silenced, a and b are notified")
        # Time goes on to t0+180: severity steps to critical at +60
        # (throttled: within 5 m of the last notification), b is not
        # acknowledged after 2 m: escalated to page; a is not.
        for d in ("a", "b", "c"):
            record(d, t0 + 30, [36.0] * 16)
        wait_for(lambda: len(lines(page)) == 1, "b escalated to page")
        time.sleep(2.5)  # more ticks: no second escalation, none for a
        pg = lines(page)
        check(len(pg) == 1 and pg[0]["scope"] == "machine.temp{device=b}" and
              pg[0]["state"] == "escalated" and pg[0]["escalation"],
              "exactly one escalation, for b: %s" % pg)
        check(len(lines(log)) == 2, "the severity step was throttled")
        b = ctl({"op": "alert", "id": ids["machine.temp{device=b}"]})
        notes = [h["note"] for h in b["history"] if h["note"]]
        check(any("throttled" in n for n in notes) and
              any("escalated to page" in n for n in notes),
              "b's history notes the throttle and the escalation: %s" % notes)
        check([d["channel"] for d in b["deliveries"]] == ["log", "page"] and
              all(d["status"] == "sent" for d in b["deliveries"]),
              "b's deliveries are visible: %s" % b["deliveries"])
        c = ctl({"op": "alert", "id": ids["machine.temp{device=c}"]})
        check(c["deliveries"] == [] and
              any("silence" in (h["note"] or "") for h in c["history"]),
              "c's history says it was silenced, nothing delivered")
        # Resolve b by hand: the log channel gets the resolved.
        r = ctl({"op": "resolve", "id": ids["machine.temp{device=b}"]})
        check(r["state"] == "resolved", "b resolved by hand")
        wait_for(lambda: len(lines(log)) == 3, "resolved notification for b")
        check(lines(log)[2]["state"] == "resolved", "it is a resolved")
        # a recovers: resolved after acknowledged, notified.
        record("a", t0 + 200, [20.0])
        wait_for(lambda: len(lines(log)) == 4, "resolved notification for a")
        a = ctl({"op": "alert", "id": ids["machine.temp{device=a}"]})
        states = [h["state"] for h in a["history"] if h["state"] != "note"]
        check(states == ["firing", "acknowledged", "firing", "resolved"],
              "a's lifecycle: %s" % states)
        hist = ctl({"op": "alerts", "all": True})["alerts"]
        check(len(hist) == 3 and
              sorted(x["state"] for x in hist) ==
              ["firing", "resolved", "resolved"],
              "history lists all three alerts")
        st = ctl({"op": "stats"})
        check(st["notifications_silenced"] >= 1 and
              st["notifications_throttled"] >= 1 and st["escalations"] == 1
              and st["notifications_sent"] == 5,
              "stats count silenced, throttled, escalations, sent: %s" % st)
        # The silence ends: c, still firing and unacknowledged, escalates.
        ctl({"op": "unsilence", "id": sil["id"]})
        check(ctl({"op": "silences"})["silences"] == [], "silence removed")
        wait_for(lambda: len(lines(page)) == 2,
                 "c escalates once its silence is gone")
        check(lines(page)[1]["scope"] == "machine.temp{device=c}",
              "the second escalation is c's")
        ctl({"op": "resolve", "id": 999999}, ok=False)
        ctl({"op": "nonsense"}, ok=False)
    finally:
        p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
