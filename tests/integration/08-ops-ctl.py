#!/usr/bin/env python3
"""sensorpipectl asks every daemon and lane for its status directly: with
two lanes it shows each lane's series (FNV-1a 64 % 2 of the keys fed in),
exits 0 when all answer, and names the lane that is down (exit 1) once
one aggd stops."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import (SANITIZER_MARKS, Failure, Platform, binary, check,  # noqa: E402
                have, main)


def fnv1a64(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def ctl(p, *extra):
    r = subprocess.run([binary("sensorpipectl"), "--rundir", p.run, "--lanes", "2",
                        "--timeout", "1s"] + list(extra), capture_output=True,
                       text=True, timeout=30)
    for mark in SANITIZER_MARKS:
        if mark in r.stderr:
            raise Failure("sensorpipectl: " + r.stderr)
    return r.returncode, r.stdout, r.stderr


def test():
    if not have("sensorpipectl") or not have("aggd"):
        print("skip: sensorpipectl or aggd not built")
        sys.exit(77)
    p = Platform(lanes=2).start()
    try:
        keys = ["m%02d" % i for i in range(20)]
        st, _, body = p.http("POST", "/api/v1/record",
                             {"data": [{"name": k, "value": 1.0} for k in keys]})
        check(st == 200 and body["accepted"] == 20, "20 series recorded")
        want = [sum(1 for k in keys if fnv1a64(k) % 2 == lane) for lane in (0, 1)]
        deadline = time.time() + 15
        while True:
            rc, out, err = ctl(p, "--json")
            j = json.loads(out) if out.strip() else {}
            got = [l.get("series") for l in j.get("aggd", [])]
            if rc == 0 and got == want:
                break
            if time.time() > deadline:
                raise Failure("sensorpipectl --json: rc %d %s %s" % (rc, out, err))
            time.sleep(0.1)
        check(True, "aggd lanes hold %s series, as FNV-1a %% 2 says" % want)
        check(all(l["up"] for d in j.values() for l in d), "every daemon lane is up")
        check(len(j["anomalyd"]) == 2 and len(j["alertd"]) == 2 and len(j["ingestd"]) == 1,
              "one ingestd, two lanes of each stage")
        rc, out, err = ctl(p)
        check(rc == 0 and "7 of 7 daemon lanes up" in out, "table: all up")
        ok = any(l.startswith("aggd") and " 1  up " in l and "series=%d" % want[1] in l
                 for l in out.splitlines())
        check(ok, "table row for aggd lane 1" + ("" if ok else ":\n" + out))
        p.stop_one("aggd.1")
        rc, out, err = ctl(p)
        check(rc == 1, "exit 1 with a lane down (got %d)" % rc)
        ok = any(l.startswith("aggd") and " 1  DOWN" in l for l in out.splitlines())
        check(ok, "aggd lane 1 shown DOWN" + ("" if ok else ":\n" + out))
        check("6 of 7 daemon lanes up" in out, "summary counts the lane down")
        rc, out, err = ctl(p, "--lanes", "0")
        check(rc == 78, "bad options exit 78 (got %d)" % rc)
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
