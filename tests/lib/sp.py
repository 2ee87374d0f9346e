"""sp: test harness that starts the real sensorpipe daemons.

Each Platform gets a fresh temporary directory, ipc:// endpoints inside it
and free TCP ports, starts the daemons in the foreground, waits for their
"ready" log line, and on stop sends SIGTERM and requires exit status 0,
"shutdown complete" and no sanitizer report in the log.
"""
import hashlib
import http.client
import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.environ.get("SP_ROOT") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("SP_BUILD", "build"))
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def binary(name):
    return os.path.join(BUILD, name)


def have(name):
    return os.access(binary(name), os.X_OK)


def status_kb(pid, field):
    """A kB figure of /proc/PID/status (VmRSS, VmHWM, ...), or 0."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def write_keys(path, keys):
    """apid's --keys file: keys maps a key name to (tenant, secret); each
    becomes an admin key stored as its SHA-256."""
    with open(path, "w") as f:
        f.write("# name tenant role hash\n")
        for name, (tenant, k) in keys.items():
            f.write("%s %s admin sha256:%s\n"
                    % (name, tenant, hashlib.sha256(k.encode()).hexdigest()))


def mqtt_len(n):
    """MQTT's variable-length encoding of a remaining length n."""
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def mqtt_str(b):
    """An MQTT string: two length bytes, then b."""
    return struct.pack("!H", len(b)) + b


def recv_exact(sock, n):
    """Exactly n bytes from sock, or None when it ends first."""
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok:", what)


class Platform:
    CHAIN = ("aggd", "anomalyd", "alertd", "ingestd", "apid")

    LANED = ("aggd", "anomalyd", "alertd")

    def __init__(self, daemons=None, extra=None, lanes=1, tcp=False,
                 lane_host=None, host="127.0.0.1", wrap=None):
        """lanes > 1 starts one aggd, anomalyd and alertd per lane (named
        "aggd" for lane 0, then "aggd.1", ...) and passes --lanes to
        ingestd and apid; tcp=True puts every internal endpoint on
        tcp://127.0.0.1 instead of ipc:// files. lane_host (e.g.
        "10.1.2.1{lane}") gives each lane's daemons an address of their
        own, host the address of ingestd's sockets; wrap maps a daemon
        name to a command prefix (e.g. ip netns exec NS)."""
        self.lane_host = lane_host
        self.host = host
        self.wrap = wrap or {}
        self.dir = tempfile.mkdtemp(prefix="sp-it.")
        self.run = os.path.join(self.dir, "run")
        self.procs = {}
        self.logs = {}
        self.api_port = free_port()
        self.ingest_port = free_port()
        wanted = daemons or self.CHAIN
        self.lanes = lanes
        self.daemons = []
        for d in self.CHAIN:
            if d in wanted and have(d):
                self.daemons.append(d)
                if d in self.LANED:
                    self.daemons += ["%s.%d" % (d, i) for i in range(1, lanes)]
        self.extra = extra or {}
        self.ep = self.tcp_endpoints() if tcp else None
        self.mqtt_port = None
        self.broker = None

    def plugin_conf(self):
        """mosquitto lines loading our spool plugin, and the spool dir."""
        d = os.path.join(self.dir, "mqspool")
        os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)  # mosquitto drops root for its own user
        os.chmod(d, 0o777)
        return d, ("plugin %s\nplugin_opt_spool_dir %s\n"
                   % (binary("sensorpipe_spool.so"), d))

    def start_broker(self, conf_extra=""):
        """A private mosquitto on a free loopback port (before start())."""
        self.broker_conf_extra = conf_extra
        self.mqtt_port = self.mqtt_port or free_port()
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n"
                    "max_queued_messages 100000\n%s" % (self.mqtt_port, conf_extra))
        log = open(os.path.join(self.dir, "mosquitto.log"), "ab")
        self.broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=log,
                                       stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.mqtt_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.broker.kill()
        self.broker.wait()
        self.broker = None
        raise Failure("mosquitto did not start")

    def mqtt_pub(self, topic, payload, qos=1):
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p",
                            str(self.mqtt_port), "-q", str(qos), "-t", topic,
                            "-m", payload], capture_output=True, timeout=10)
        if r.returncode != 0:
            raise Failure("mosquitto_pub failed: %s" % r.stderr)

    def tcp_endpoints(self):
        """tcp:// templates on 127.0.0.1: "{lane}" becomes the last digit
        of the port, so each template needs lanes (<= 10) free ports, all
        taken from 11000-32709, below Linux's ephemeral port range."""
        assert self.lanes <= 10
        used = set()

        def ok(port):
            if port in used or not 1024 < port < 65536:
                return False
            try:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                s.close()
            except OSError:
                return False
            return True

        def template():
            while True:
                # Below the ephemeral range, so no outgoing connection takes
                # a port between this check and the daemon's bind.
                prefix = random.randint(1100, 3270)
                ports = [prefix * 10 + i for i in range(self.lanes)]
                if all(ok(x) for x in ports):
                    used.update(ports)
                    return "tcp://127.0.0.1:%d{lane}" % prefix

        def single(host):
            port = free_port()
            while port in used:
                port = free_port()
            used.add(port)
            return "tcp://%s:%d" % (host, port)

        if self.lane_host:
            ep = {"%s.%s" % (d, w): single(self.lane_host) for d in self.LANED
                  for w in ("in", "query", "pub")}
        else:
            ep = {"%s.%s" % (d, w): template() for d in self.LANED
                  for w in ("in", "query", "pub")}
        for name in ("ingestd.query", "ingestd.confirm"):
            ep[name] = single(self.host)
        return ep

    def tcp_args(self, base):
        ep = self.ep
        if base in self.LANED:
            a = ["--in", ep[base + ".in"], "--query", ep[base + ".query"],
                 "--pub", ep[base + ".pub"]]
            down = {"aggd": "anomalyd", "anomalyd": "alertd"}.get(base)
            if down and down in self.daemons:
                a += ["--down", ep[down + ".in"]]
            if base == "aggd":
                a += ["--confirm", ep["ingestd.confirm"]]
            return a
        if base == "ingestd":
            return ["--down", ep["aggd.in"], "--query", ep["ingestd.query"],
                    "--confirm", ep["ingestd.confirm"]]
        if base == "apid":
            return ["--ingestd", ep["ingestd.query"], "--aggd", ep["aggd.query"],
                    "--anomalyd", ep["anomalyd.query"], "--alertd", ep["alertd.query"]]
        return []

    def args(self, name):
        base, _, lane = name.partition(".")
        a = self.base_args(base)
        if self.lanes > 1 and base in self.LANED:
            a += ["--lane", lane or "0"]
        if self.lanes > 1 and base in ("ingestd", "apid"):
            a += ["--lanes", str(self.lanes)]
        if self.ep:
            a += self.tcp_args(base)
        return a + self.extra.get(name, self.extra.get(base, []) if lane else [])

    def base_args(self, name):
        a = [binary(name), "--rundir", self.run]
        if name == "apid":
            a += ["--port", str(self.api_port),
                  "--datadir", os.path.join(self.dir, "apid")]
        if name == "ingestd":
            a += ["--port", str(self.ingest_port),
                  "--spool", os.path.join(self.dir, "spool"),
                  "--mqtt-port", str(self.mqtt_port or 0)]
        if name == "aggd":
            a += ["--data", os.path.join(self.dir, "data.{lane}")]
        if name == "aggd" and "anomalyd" not in self.daemons:
            a += ["--down", "none"]
        if name == "anomalyd" and "alertd" not in self.daemons:
            a += ["--down", "none"]
        return a

    def start(self):
        try:
            for name in self.daemons:
                self.start_one(name)
        except BaseException:
            self.kill_all()
            raise
        return self

    def kill_all(self):
        """Leave nothing running after a failed start."""
        for p in self.procs.values():
            p.kill()
            p.wait()
        self.procs.clear()
        if self.broker:
            self.broker.kill()
            self.broker.wait()
            self.broker = None

    def start_one(self, name, timeout=20):
        log = os.path.join(self.dir, name + ".log")
        self.logs[name] = log
        start = os.path.getsize(log) if os.path.exists(log) else 0
        f = open(log, "ab")
        self.procs[name] = subprocess.Popen(self.wrap.get(name, []) + self.args(name),
                                            stdout=f,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        f.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.procs[name].poll() is not None:
                raise Failure("%s exited early: %s" % (name, self.log(name)))
            if "ready:" in self.log(name)[start:]:
                return
            time.sleep(0.05)
        raise Failure("%s not ready: %s" % (name, self.log(name)))

    def log(self, name):
        with open(self.logs[name], errors="replace") as f:
            return f.read()

    def stop_one(self, name):
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            raise Failure("%s did not stop on SIGTERM" % name)
        text = self.log(name)
        check(rc == 0, "%s exits 0 on SIGTERM (got %s)" % (name, rc))
        check("shutdown complete" in text, "%s logs shutdown complete" % name)
        for mark in SANITIZER_MARKS:
            check(mark not in text, "%s log has no %s report" % (name, mark))

    def stop(self, secrets=()):
        """Stop every daemon (each must exit 0, clean), then check that no
        secret (key, password, token, cookie) is in any daemon's log, the
        shutdown lines included. Daemons stop even when a check fails."""
        errors = []
        for name in reversed(list(self.procs)):
            try:
                self.stop_one(name)
            except Failure as e:
                errors.append(str(e))
        if self.broker:
            self.broker.terminate()
            self.broker.wait(timeout=10)
        if secrets:
            try:
                self.check_no_secrets(secrets)
            except Failure as e:
                errors.append(str(e))
        if errors:
            for name in self.logs:
                sys.stdout.write("--- %s log ---\n%s\n" % (name, self.log(name)))
            raise Failure("; ".join(errors))
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_no_secrets(self, secrets):
        """No secret (key, password, token, cookie) in any daemon's log."""
        logs = "".join(self.log(n) for n in self.logs)
        for s in secrets:
            check(s not in logs, "secret %s... not in the log" % s[:6])

    def http(self, method, path, body=None, port=None, headers=None,
             timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", port or self.api_port,
                                       timeout=timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        ctype = r.getheader("Content-Type") or ""
        if data and ctype.startswith("application/json"):
            data = json.loads(data)
        return r.status, dict(r.getheaders()), data

    def record(self, name, t0, values, step=10):
        """POST values of series name to /api/v1/record, one every step
        seconds from t0 (epoch seconds); a failure unless all 200."""
        data = [{"name": name, "value": v,
                 "timestamp": (t0 + i * step) * 1000}
                for i, v in enumerate(values)]
        st, _, body = self.http("POST", "/api/v1/record", {"data": data})
        check(st == 200, "record %d readings of %s: %s %s"
              % (len(values), name, st, body))


def sh(*argv):
    """Run a command quietly; True when it exits 0."""
    return subprocess.run(list(argv), capture_output=True).returncode == 0


class NetHost:
    """A second "host": a network namespace behind a veth pair, addresses
    NET.x for each x of here on this side and of there in the namespace
    (NET = 10.<octet>.<random>). `with` or __enter__() sets it up and
    returns it, or None where that cannot be done (not root, no ip);
    __exit__ removes it. wrap is the command prefix that runs a daemon
    in there. cut() drops every packet both ways (a tc blackhole qdisc on
    each end: TCP sees silence, not an error), heal() undoes it."""

    def __init__(self, tag, octet, here, there):
        n = os.getpid() % 100000
        self.ns = "sp-%s-%d" % (tag, n)
        self.a, self.b = "sp%sa%d" % (tag[0], n), "sp%sb%d" % (tag[0], n)
        self.net = "10.%d.%d" % (octet, random.randint(1, 250))
        self.here, self.there = here, there
        self.wrap = ["ip", "netns", "exec", self.ns]

    def __enter__(self):
        ns, net = self.ns, self.net
        ok = (os.geteuid() == 0 and shutil.which("ip") and
              sh("ip", "netns", "add", ns) and
              sh("ip", "link", "add", self.a, "type", "veth", "peer", "name", self.b) and
              sh("ip", "link", "set", self.b, "netns", ns) and
              all(sh("ip", "addr", "add", "%s.%d/24" % (net, x), "dev", self.a)
                  for x in self.here) and
              sh("ip", "link", "set", self.a, "up") and
              all(sh("ip", "-n", ns, "addr", "add", "%s.%d/24" % (net, x), "dev", self.b)
                  for x in self.there) and
              sh("ip", "-n", ns, "link", "set", self.b, "up") and
              sh("ip", "-n", ns, "link", "set", "lo", "up"))
        if not ok:
            self.__exit__()
            return None
        return self

    def __exit__(self, *exc):
        sh("ip", "netns", "del", self.ns)
        sh("ip", "link", "del", self.a)

    def cut(self):
        return (sh("tc", "qdisc", "add", "dev", self.a, "root", "blackhole") and
                sh(*self.wrap, "tc", "qdisc", "add", "dev", self.b, "root", "blackhole"))

    def heal(self):
        a = sh("tc", "qdisc", "del", "dev", self.a, "root")
        return sh(*self.wrap, "tc", "qdisc", "del", "dev", self.b, "root") and a


def wait_for(fn, what, timeout=20, step=0.1):
    """fn's first true value within timeout seconds, else a failure."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    check(False, what)


class Subscriber:
    """A mosquitto_sub child (argv after the program name) whose output is
    read as it comes, so a test waits for a message instead of sleeping a
    fixed time and hoping the broker was quick enough."""

    def __init__(self, argv):
        self.p = subprocess.Popen(["mosquitto_sub"] + list(argv),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""

    def read_until(self, text, timeout=10.0):
        """True once text has been printed, False after timeout."""
        want = text.encode()
        deadline = time.time() + timeout
        while want not in self.out and time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.05)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.out += chunk
        return want in self.out

    def subscribed(self, probe, text, timeout=10.0):
        """Call probe() (which publishes text where this subscriber
        listens) until the subscriber prints it: from then on nothing
        published is missed for want of a subscription."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            probe()
            if self.read_until(text, 0.3):
                return True
        return False

    def stop(self):
        """Everything printed, the rest read after SIGTERM."""
        self.p.terminate()
        rest, _ = self.p.communicate(timeout=10)
        self.out += rest
        return self.out.decode("utf-8", "replace")


def need(*names):
    """Skip (exit 77) unless every binary or command is there."""
    for n in names:
        if not have(n) and not shutil.which(n):
            print("skip: %s not available" % n)
            sys.exit(77)


def need_modules(*names):
    """Skip (exit 77) unless every Python module imports (python3-zmq,
    python3-msgpack are packages of their own)."""
    import importlib
    for n in names:
        try:
            importlib.import_module(n)
        except ImportError:
            print("skip: python3 without %s" % n)
            sys.exit(77)


def main(test):
    """Run test(platform-factory); exit 0, 1 on failure, 77 to skip."""
    try:
        test()
    except Failure as e:
        if e.__context__ is not None:
            print("FAIL (first):", repr(e.__context__))
        print("FAIL:", e)
        sys.exit(1)
    sys.exit(0)
