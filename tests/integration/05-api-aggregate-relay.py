#!/usr/bin/env python3
"""A long aggregate over one series travels as JSON text that aggd hands
to ZeroMQ without a copy and apid hands to the HTTP client from the
received message without a copy (rpc_reply_send_owned, rpc_reply_recv_ref,
http_req_reply_ref): a 60,000-bucket answer (about 5 MB) arrives whole,
every value printed so that it reads back to the very double recorded
(random doubles of every size and digit count), the same answer twice;
clients that hang up in the middle of it leave apid answering and every
daemon exiting clean (ASan: no leak, no use after free). With
--warm-ms, apid runs one SCHED_IDLE thread per CPU and answers the same."""
import glob
import http.client
import json
import os
import random
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main, wait_for  # noqa: E402

N = 60000
NAME = "relay_big"


def idle_threads(pid):
    """Threads of pid under SCHED_IDLE (policy 5 in /proc/PID/task/*/stat,
    field 41)."""
    n = 0
    for st in glob.glob("/proc/%d/task/*/stat" % pid):
        try:
            with open(st) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        n += fields[41 - 3] == "5"
    return n


def values():
    rnd = random.Random(4)
    out = []
    for i in range(N):
        k = i % 4
        if k == 0:  # sensor-like: two decimals
            out.append(round(rnd.uniform(-50, 150), 2))
        elif k == 1:  # 16-17 significant digits
            out.append(rnd.uniform(-1e4, 1e4) / 3)
        elif k == 2:  # any magnitude
            out.append(rnd.choice((-1, 1)) * rnd.random() *
                       10 ** rnd.randint(-9, 14))
        else:  # integers and short decimals
            out.append(float(rnd.randint(-10 ** 6, 10 ** 6)) / rnd.choice((1, 8, 10)))
    out[1] = 1e15 - 0.125  # 17 digits
    out[2] = 0.1 + 0.2
    out[3] = 5e-5
    return out


def ask(p):
    req = json.dumps({"metric_name": NAME, "interval": "1s",
                      "aggregation": "mean"}).encode()
    st, hdr, body = p.http("POST", "/api/v1/aggregate", req,
                           headers={"Content-Type": "application/json"},
                           timeout=60)
    return st, hdr, body


def hang_up(p, after):
    """Ask for the long answer and close after reading `after` bytes."""
    req = json.dumps({"metric_name": NAME, "interval": "1s",
                      "aggregation": "mean"}).encode()
    s = socket.create_connection(("127.0.0.1", p.api_port), timeout=30)
    s.sendall(b"POST /api/v1/aggregate HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(req) + req)
    got = 0
    while got < after:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # a reset, with most of the answer unsent
    return got


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid")).start()
    try:
        vals = values()
        t0 = int(time.time()) - N - 60
        for i in range(0, N, 5000):
            data = [{"name": NAME, "value": v, "timestamp": (t0 + i + j) * 1000}
                    for j, v in enumerate(vals[i:i + 5000])]
            st, _, b = p.http("POST", "/api/v1/record", {"data": data},
                              timeout=60)
            check(st == 200, "record %d readings: %s %s" % (len(data), st, b))

        def all_in():
            st, _, b = ask(p)
            return st == 200 and b.get("count") == N
        wait_for(all_in, "all %d readings queryable" % N, timeout=120)
        st, hdr, b = ask(p)
        bk = b["buckets"]
        check(st == 200 and len(bk) == N and b["source"] == "raw",
              "%d buckets from raw points (%s, %s)" % (N, len(bk), b["source"]))
        bad = [(i, x["value"], vals[i]) for i, x in enumerate(bk)
               if not (x["value"] == vals[i] and x["count"] == 1)]
        check(not bad, "every value reads back to the double recorded "
              "(first wrong: %s)" % bad[:3])
        c = http.client.HTTPConnection(
            "127.0.0.1", p.api_port, timeout=60)
        body = json.dumps({"metric_name": NAME, "interval": "1s",
                           "aggregation": "mean"})
        arena0 = p.http("GET", "/stats")[2]["apid"]["arena_answers"]
        answers = []
        for _ in range(2):
            c.request("POST", "/api/v1/aggregate", body=body,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            answers.append((r.status, r.getheader("Content-Type"), r.read()))
        c.close()
        arena1 = p.http("GET", "/stats")[2]["apid"]["arena_answers"]
        check(arena1 == arena0 + 2, "both were printed into apid's arena "
              "(shared memory lent with the query, arena.h), not sent "
              "through ZeroMQ: %d answers from it, was %d" % (arena1, arena0))
        check(answers[0] == answers[1] and answers[0][0] == 200 and
              answers[0][1] == "application/json" and
              answers[0][2].endswith(b"}\n") and len(answers[0][2]) > 4000000,
              "the same %d-byte answer twice on one connection, ending "
              "with a newline" % len(answers[0][2]))
        check(json.loads(answers[0][2]) == b, "it is the answer parsed above")
        for after in (0, 1, 20000, 1000000):
            for _ in range(3):
                hang_up(p, after)
        st, _, b2 = ask(p)
        check(st == 200 and b2 == b, "apid answers whole after 12 clients "
              "hung up mid-answer")
        # Every slot is back once the clients have their answers or hung up.
        busy = p.http("GET", "/stats")[2]["apid"]["arena_busy"]
        check(busy == 0, "no slot of the arena lent out now (%d)" % busy)
        c = http.client.HTTPConnection("127.0.0.1", p.api_port, timeout=30)
        c.request("GET", "/metrics")
        prom = c.getresponse().read().decode()
        c.close()
        answers = p.http("GET", "/stats")[2]["apid"]["arena_answers"]
        check("\nsensorpipe_apid_arena_busy 0\n" in prom and
              "\nsensorpipe_apid_arena_answers_total %d\n" % answers in prom,
              "/metrics has the arena's answers (%d, as /stats) and busy "
              "slots (0)" % answers)
        # A query aggd does not answer in time (stopped) is a 503; its slot
        # stays lent for a grace period (aggd might still be writing it),
        # the next query gets another one, and the slot comes back after.
        agg = p.procs["aggd"]
        os.kill(agg.pid, signal.SIGSTOP)
        try:
            st, hdr, _ = ask(p)
        finally:
            os.kill(agg.pid, signal.SIGCONT)
        busy = p.http("GET", "/stats")[2]["apid"]["arena_busy"]
        check(st == 503 and busy == 1, "a query that timed out: %s, its "
              "slot kept (%d busy)" % (st, busy))
        st, _, b4 = ask(p)
        check(st == 200 and b4 == b, "the next query is answered whole "
              "from another slot")

        def slot_back():
            return p.http("GET", "/stats")[2]["apid"]["arena_busy"] == 0
        wait_for(slot_back, "the slot lent again after its grace", timeout=30)
        shm = glob.glob("/dev/shm/sensorpipe-apid.%d.*" % p.procs["apid"].pid)
        check(len(shm) == 1, "apid's arena is in /dev/shm: %s" % shm)
        # An apid killed leaves its arena behind; the next one removes it,
        # and aggd writes into the new one.
        p.procs["apid"].kill()
        p.procs.pop("apid").wait()
        check(os.path.exists(shm[0]), "a killed apid's arena stays")
        p.start_one("apid")
        check(not os.path.exists(shm[0]) and "left by an apid that is gone"
              in p.log("apid"), "the next apid removes it when it starts")
        a0 = p.http("GET", "/stats")[2]["apid"]["arena_answers"]
        st, _, b5 = ask(p)
        a1 = p.http("GET", "/stats")[2]["apid"]["arena_answers"]
        check(st == 200 and b5 == b and a1 == a0 + 1, "the answer whole, "
              "printed into the new apid's arena")
        shm = glob.glob("/dev/shm/sensorpipe-apid.%d.*" % p.procs["apid"].pid)
        check(len(shm) == 1, "the new apid's arena is in /dev/shm: %s" % shm)
        p.stop_one("apid")
        check(not os.path.exists(shm[0]), "apid removes it when it stops")
        # Without an arena every part travels as a frame: the same answer.
        p.extra["apid"] = ["--reply-arena", "0"]
        p.start_one("apid")
        st, _, b3 = ask(p)
        st2, _, stats = p.http("GET", "/stats")
        check(st == 200 and b3 == b and stats["apid"]["arena_answers"] == 0,
              "with --reply-arena 0 the same answer, through ZeroMQ "
              "(arena answers %d)" % stats["apid"]["arena_answers"])
        check(idle_threads(p.procs["apid"].pid) == 0 and
              stats["apid"]["warm_spin_ms"] == 0,
              "no warm thread by default (--warm-ms 0)")
        # --warm-ms: one SCHED_IDLE thread per CPU apid may run on, and
        # the same answers.
        p.stop_one("apid")
        p.extra["apid"] = ["--warm-ms", "30"]
        p.start_one("apid")
        ncpu = len(os.sched_getaffinity(p.procs["apid"].pid))
        wait_for(lambda: idle_threads(p.procs["apid"].pid) == ncpu,
                 "%d SCHED_IDLE threads in apid with --warm-ms" % ncpu)
        for _ in range(5):
            st, _, b6 = ask(p)
            check(st == 200 and b6 == b, "with --warm-ms 30 the same answer")
        st, _, stats = p.http("GET", "/stats")
        check(st == 200 and isinstance(stats["apid"]["warm_spin_ms"], int),
              "/stats counts the warm threads' CPU (%s ms)"
              % stats["apid"]["warm_spin_ms"])
        c = http.client.HTTPConnection("127.0.0.1", p.api_port, timeout=30)
        c.request("GET", "/metrics")
        prom = c.getresponse().read().decode()
        c.close()
        check("\nsensorpipe_apid_warm_cpu_seconds_total " in prom,
              "/metrics has the warm threads' CPU seconds")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
