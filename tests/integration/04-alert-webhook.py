#!/usr/bin/env python3
"""alertd notifications through a real local HTTP receiver.

A webhook channel, a receiver that answers 500 three times before it
accepts, and alertd killed with -9 after the firing notification was
queued and its first attempt failed. The receiver must see every
notification exactly once by idempotency key (firing, then resolved),
with a valid HMAC-SHA256 signature on every attempt, and the restart must
neither lose the queued notification nor fire the alert again."""
import hashlib
import hmac
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import binary, check, free_port, have, main  # noqa: E402

SECRET = "it-s3cret"
HOSTILE = b"\xff\xfe busy\r\nalertd: error: forged\x1b[31m line"


class Receiver(http.server.BaseHTTPRequestHandler):
    attempts = []      # (key, status answered, signature ok, body)
    accepted = {}      # key -> body, first acceptance
    failures_left = 3

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        key = self.headers.get("Idempotency-Key")
        sig = self.headers.get("X-Sensorpipe-Signature", "")
        want = "sha256=" + hmac.new(SECRET.encode(), body,
                                    hashlib.sha256).hexdigest()
        if Receiver.failures_left > 0:
            Receiver.failures_left -= 1
            status = 500
        else:
            status = 200
            Receiver.accepted.setdefault(key, json.loads(body))
        Receiver.attempts.append((key, status, hmac.compare_digest(sig, want),
                                  body))
        # A refusal's body is hostile: bytes that are not UTF-8, and a
        # line break before what looks like a log line of alertd's.
        reply = HOSTILE if status == 500 else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *a):
        pass


def readings(t0, values, step=10):
    return "".join(json.dumps({"series": "temperature{device=s1}",
                               "timestamp": (t0 + i * step) * 1000,
                               "value": v}) + "\n"
                   for i, v in enumerate(values))


def wait_for(fn, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    check(False, what)


def test():
    if not have("alertd"):
        print("skip: alertd not built")
        sys.exit(77)
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="sp-04-webhook.")
    rules = os.path.join(tmp, "alertd.rules")
    db = os.path.join(tmp, "alertd.db")
    with open(rules, "w") as f:
        f.write("channel hook: webhook http://127.0.0.1:%d/hook\n" % port)
        f.write("hot: temperature > 30 for 1m severity critical notify hook\n")
    args = [binary("alertd"), "--rules", rules, "--db", db,
            "--webhook-secret", SECRET, "--retry-base", "300ms",
            "--retry-max", "1s", "--drain", "20s", "--stdin", "--stdout"]
    logs = []

    def start():
        log = open(os.path.join(tmp, "alertd.%d.log" % len(logs)), "w+")
        logs.append(log)
        return subprocess.Popen(args, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log,
                                text=True)

    def queued():
        c = sqlite3.connect(db)
        try:
            return c.execute("SELECT count(*) FROM outbox WHERE "
                             "status='queued'").fetchone()[0]
        finally:
            c.close()

    t0 = 1704067200
    a = start()
    # A sustained breach: pending at t=0, firing at t=60.
    a.stdin.write(readings(t0, [35.0] * 10))
    a.stdin.flush()
    wait_for(lambda: len(Receiver.attempts) >= 1,
             "the firing notification is attempted")
    check(Receiver.attempts[0][1] == 500, "the receiver refused attempt 1")
    check(queued() == 1, "the notification stays queued in the outbox")

    def attempts():
        c = sqlite3.connect(db)
        try:
            return c.execute("SELECT attempts FROM outbox").fetchone()[0]
        finally:
            c.close()
    # The receiver answers before alertd records the attempt: kill only
    # once it is recorded, so the count below is exact.
    wait_for(lambda: attempts() == 1, "the failed attempt is recorded")
    c = sqlite3.connect(db)
    c.text_factory = bytes
    err = c.execute("SELECT last_error FROM outbox").fetchone()[0]
    c.close()
    check(b"HTTP 500" in err and b"busy" in err and
          all(0x20 <= ch <= 0x7e for ch in err),
          "the refusal's body is kept as printable ASCII: %r" % err)
    a.send_signal(signal.SIGKILL)
    a.wait()
    check(a.returncode == -signal.SIGKILL, "alertd killed with -9")
    n_before = len(Receiver.attempts)

    # Restart on the same database; the breach goes on, then ends.
    b = start()
    wait_for(lambda: len(Receiver.accepted) == 1,
             "the queued notification is delivered after the restart")
    b.stdin.write(readings(t0 + 100, [36.0] * 5))      # still breaching
    b.stdin.write(readings(t0 + 150, [20.0] * 2))      # resolves at t=150
    b.stdin.close()
    out = b.stdout.read()
    b.wait(timeout=30)
    check(b.returncode == 0, "alertd exits 0 at the end of its input")
    events = [json.loads(l) for l in out.splitlines()]
    check([e["state"] for e in events] == ["resolved"],
          "after the restart the alert is not raised again, only "
          "resolved: %s" % [e["state"] for e in events])
    wait_for(lambda: len(Receiver.accepted) == 2,
             "the resolved notification is delivered")

    keys = [k for k, _, _, _ in Receiver.attempts]
    states = [Receiver.accepted[k]["state"] for k in Receiver.accepted]
    check(sorted(states) == ["firing", "resolved"],
          "the receiver accepted firing and resolved: %s" % states)
    check(all(ok for _, _, ok, _ in Receiver.attempts),
          "every attempt carries a valid HMAC-SHA256 signature")
    firing_key = [k for k in Receiver.accepted
                  if Receiver.accepted[k]["state"] == "firing"][0]
    check(keys.count(firing_key) == 4,
          "the firing notification took 4 attempts (500 x3, then 200), "
          "all with one key: %d" % keys.count(firing_key))
    check(n_before == 1, "one attempt happened before the kill")
    check(len(set(keys)) == 2, "two idempotency keys in all")
    check(sum(1 for _, s, _, _ in Receiver.attempts if s == 200) == 2,
          "each notification accepted once")
    body = Receiver.accepted[firing_key]
    check(body["rule"] == "hot" and body["severity"] == "critical" and
          body["scope"] == "temperature{device=s1}" and
          body["timestamp"] == "2024-01-01T00:01:00.000Z",
          "the firing body names rule, scope, severity, time: %s" % body)

    c = sqlite3.connect(db)
    rows = c.execute("SELECT status, attempts FROM outbox ORDER BY id"
                     ).fetchall()
    hist = c.execute("SELECT state FROM alert_history ORDER BY id"
                     ).fetchall()
    c.close()
    check(rows == [("sent", 4), ("sent", 1)],
          "the outbox shows both sent, with their attempts: %s" % rows)
    check([h[0] for h in hist] == ["pending", "firing", "resolved"],
          "the history: pending, firing, resolved: %s" % hist)
    for log in logs:
        log.seek(0)
        text = log.buffer.read().decode("utf-8")  # fails on bytes not UTF-8
        check(not any(ln.startswith("alertd: error: forged")
                      for ln in text.splitlines()),
              "a receiver cannot forge a log line")
        check("busy" in text, "the refusal is logged")
        check(SECRET not in text, "the secret is never logged")
        for mark in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            check(mark not in text, "no %s report" % mark)
    srv.shutdown()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
