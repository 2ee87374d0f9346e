#!/usr/bin/env python3
"""The dashboard in a real browser: Debian's chromium driven by
playwright-core (tests/browser/dashboard.mjs) against the whole chain.
Skips (77) when chromium or tests/browser/node_modules is missing; `make
browser-deps` installs the latter from the committed package-lock.json."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import ROOT, Platform, check, have, main  # noqa: E402

BROWSER = os.path.join(ROOT, "tests", "browser")


def test():
    if not shutil.which("chromium") or not shutil.which("node"):
        print("skip: chromium or node missing")
        sys.exit(77)
    if not os.path.isdir(os.path.join(BROWSER, "node_modules",
                                      "playwright-core")):
        print("skip: run make browser-deps")
        sys.exit(77)
    for d in Platform.CHAIN:
        if not have(d):
            print("skip: %s not built" % d)
            sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="sp-05-dash.")
    rules = os.path.join(tmp, "alertd.rules")
    with open(rules, "w") as f:
        f.write("hot: machine.temp > 30 severity critical\n")
    shot = os.environ.get("SP_SCREENSHOT", os.path.join(tmp, "dashboard.png"))
    p = Platform(extra={"alertd": ["--rules", rules,
                                   "--db", os.path.join(tmp, "alerts.db")],
                        "apid": ["--datadir", os.path.join(tmp, "apid")]}
                 ).start()
    try:
        r = subprocess.run(["node", os.path.join(BROWSER, "dashboard.mjs"),
                            "http://127.0.0.1:%d" % p.api_port, shot],
                           timeout=120)
        check(r.returncode == 0, "browser test passes")
        check(os.path.getsize(shot) > 10000, "screenshot saved: %s" % shot)
    finally:
        p.stop()
    # The layout survives an apid restart: it is in SQLite.
    p2 = Platform(daemons=("apid",), extra={
        "apid": ["--datadir", os.path.join(tmp, "apid")]}).start()
    try:
        st, _, b = p2.http("GET", "/api/dashboards/it")
        check(st == 200 and len(b["widgets"]) == 7,
              "layout kept across an apid restart")
    finally:
        p2.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
