#!/usr/bin/env python3
"""alertd inhibition, in filter mode with a database: while a gateway's
alert fires, the alerts of the devices behind it (same "site" tag) are
recorded but not notified; devices of another site are notified. An exec
channel records the notifications."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import binary, check, have, main  # noqa: E402


def test():
    if not have("alertd"):
        print("skip: alertd not built")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="sp-04-inhibit.")
    log = os.path.join(tmp, "log.jsonl")
    rules = os.path.join(tmp, "alertd.rules")
    db = os.path.join(tmp, "alertd.db")
    with open(rules, "w") as f:
        f.write('channel log: exec /bin/sh -c "cat >> %s; echo >> %s"\n'
                % (log, log))
        f.write("gw_down: gateway.up < 1 severity critical notify log\n")
        f.write("hot: temperature > 30 notify log "
                "inhibited by gw_down on site\n")
    t0 = 1704067200000

    def r(series, t, v):
        return json.dumps({"series": series, "timestamp": t0 + t * 1000,
                           "value": v}) + "\n"
    inp = (r("gateway.up{site=a}", 0, 0) +           # gateway a down
           r("temperature{device=d1,site=a}", 10, 35) +  # behind it: muted
           r("temperature{device=d2,site=b}", 10, 35) +  # other site
           r("gateway.up{site=a}", 20, 1) +          # gateway a back
           r("temperature{device=d3,site=a}", 30, 35))   # now notified
    p = subprocess.run([binary("alertd"), "--rules", rules, "--db", db,
                        "--stdin", "--stdout", "--drain", "10s"],
                       input=inp, capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "alertd exits 0: %s" % p.stderr[-500:])
    events = [json.loads(l) for l in p.stdout.splitlines()]
    check(sum(1 for e in events if e["state"] == "firing") == 4,
          "four alerts fire (inhibition does not stop alerts, only "
          "notifications)")
    with open(log) as f:
        notes = [json.loads(l) for l in f if l.strip()]
    got = [(n["rule"], n["scope"], n["state"]) for n in notes]
    print("# notified:", got)
    check(("hot", "temperature{device=d1,site=a}", "firing") not in got,
          "the device behind the down gateway is not notified")
    check(("hot", "temperature{device=d2,site=b}", "firing") in got,
          "a device of another site is notified")
    check(("hot", "temperature{device=d3,site=a}", "firing") in got,
          "after the gateway is back, its devices are notified again")
    check(("gw_down", "gateway.up{site=a}", "firing") in got and
          ("gw_down", "gateway.up{site=a}", "resolved") in got,
          "the gateway alert itself is notified, firing and resolved")
    check(len(got) == 4, "four notifications in all")
    c = sqlite3.connect(db)
    note = c.execute("SELECT h.note FROM alert_history h JOIN alerts a ON"
                     " a.id=h.alert_id WHERE a.scope=? AND h.note IS NOT"
                     " NULL", ("temperature{device=d1,site=a}",)).fetchall()
    c.close()
    check(len(note) == 1 and "inhibited by alert 1" in note[0][0],
          "d1's history says which alert inhibited it: %s" % note)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
