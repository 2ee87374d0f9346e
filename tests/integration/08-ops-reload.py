#!/usr/bin/env python3
"""SIGHUP reloads: the file is re-read, live settings change, immutable
ones are kept and reported "requires restart", and a file with errors
changes nothing (the old configuration stays in force)."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Failure, Platform, check, main  # noqa: E402


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def hup(p, name, marker, timeout=10):
    """SIGHUP name and wait for marker in its log after this point."""
    start = len(p.log(name))
    p.procs[name].send_signal(signal.SIGHUP)
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = p.log(name)[start:]
        if marker in text:
            return text
        time.sleep(0.05)
    raise Failure("%s: no '%s' after SIGHUP: %s" % (name, marker, p.log(name)[start:]))


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"))
    conf = {d: os.path.join(p.dir, d + ".conf") for d in ("aggd", "ingestd", "apid")}
    write(conf["apid"], "timeout = 5s\nbody-max = 1048576\n")
    write(conf["aggd"], "drain = 2s\nhwm = 1000\n")
    write(conf["ingestd"], "body-max = 1048576\nspool-max = 268435456\n")
    p.extra = {d: ["-f", conf[d]] for d in conf}
    p.start()
    try:
        big = {"sensor_id": "s", "datapoints": [
            {"timestamp": "2024-01-01T00:%02d:00Z" % i, "value": float(i)}
            for i in range(40)]}
        st, _, body = p.http("POST", "/api/v1/ingest", big)
        check(st == 200 and body["accepted"] == 40, "a 2 kB body is taken (%s)" % st)

        # apid: body-max and timeout live, port immutable.
        write(conf["apid"], "timeout = 3s\nbody-max = 1024\nport = 1\n")
        text = hup(p, "apid", "reloaded, ")
        check("reload: body-max 1048576 -> 1024" in text, "apid logs the new body-max")
        check("reload: timeout 5.000s -> 3.000s" in text, "apid logs the new timeout")
        check("port %d -> 1 requires restart" % p.api_port in text,
              "apid says a port change requires restart")
        st, _, body = p.http("POST", "/api/v1/ingest", big)
        check(st == 413, "the reloaded body-max refuses the same body (%s)" % st)
        st, _, body = p.http("GET", "/health")
        check(st == 200, "apid still answers on its old port")

        # A file with errors changes nothing.
        write(conf["apid"], "timeout = banana\nbody-max = 1048576\n")
        text = hup(p, "apid", "keeping the running configuration")
        check("err: reload: " in text, "apid logs the bad file at err level")
        st, _, _ = p.http("POST", "/api/v1/ingest", big)
        check(st == 413, "the old body-max stays after a bad file (%s)" % st)
        small = {"sensor_id": "s", "datapoints": [{"timestamp": "2024-01-02T00:00:00Z", "value": 1.0}]}
        st, _, _ = p.http("POST", "/api/v1/ingest", small)
        check(st == 200, "small bodies still go through")

        # The log level is live: at warning even the SIGHUP line is quiet.
        write(conf["apid"], "body-max = 1024\nlog-level = warning\n")
        text = hup(p, "apid", "reload: log-level  -> warning")
        write(conf["apid"], "body-max = 1024\nlog-level = info\n")
        start = len(p.log("apid"))
        p.procs["apid"].send_signal(signal.SIGHUP)
        time.sleep(1.0)
        check("SIGHUP" not in p.log("apid")[start:], "at warning level apid logs no info line")
        hup(p, "apid", "SIGHUP: reloading")
        check(True, "back at info level after the next reload")

        # aggd: drain live, hwm immutable.
        write(conf["aggd"], "drain = 1s\nhwm = 5\n")
        text = hup(p, "aggd", "reloaded, ")
        check("reload: drain 2.000s -> 1.000s" in text, "aggd logs the new drain")
        check("hwm 1000 -> 5 requires restart" in text, "aggd says hwm requires restart")
        deadline = time.time() + 10
        while True:
            st, _, s = p.http("GET", "/api/v1/stats/s")
            if st == 200 and s["count"] == 41:
                break
            if time.time() > deadline:
                raise Failure("stats after reload: %s %s" % (st, s))
            time.sleep(0.05)
        check(True, "aggd keeps serving after its reload")

        # ingestd: its own port's body-max is live, lanes immutable.
        lines = "".join("m,host=h%d value=%d 1704067200000000000\n" % (i, i)
                        for i in range(60)).encode()
        st, _, _ = p.http("POST", "/write?precision=ns", lines, port=p.ingest_port)
        check(st == 204 or st == 200, "ingestd takes %d bytes of line protocol (%s)" % (len(lines), st))
        write(conf["ingestd"], "body-max = 1024\nlanes = 3\n")
        text = hup(p, "ingestd", "reloaded, ")
        check("reload: body-max 1048576 -> 1024" in text, "ingestd logs the new body-max")
        check("lanes 1 -> 3 requires restart" in text, "ingestd says lanes requires restart")
        st, _, _ = p.http("POST", "/write?precision=ns", lines, port=p.ingest_port)
        check(st == 413, "ingestd refuses the same body after the reload (%s)" % st)
        st, _, body = p.http("POST", "/api/v1/ingest", small)
        check(st == 200, "ingestd still takes small bodies (%s %s)" % (st, body))
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
