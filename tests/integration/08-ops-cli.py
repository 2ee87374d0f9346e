#!/usr/bin/env python3
"""Every binary keeps the house rule for its command line, for real.

Part 1, consistency, for each daemon and tool: --help and -h exit 0 with
the usage on stdout; every option --help lists is in the man page's
OPTIONS and every option there is in --help; every environment variable
the binary reads (the $NAME of each setting in --help, <IDENT>_CONFIG,
and each getenv() literal in a module the binary links, found with nm) is
named in the man page's ENVIRONMENT; -V and --version print one line
where the man page says so; the page is clean under mandoc -Tlint -W
warning (when mandoc is installed) and groff -ww. Every mismatch is
listed, then the test fails.

Part 2, a seeded monkey of argv, environment and config file against
every binary: random good and hostile flags and values (unknown flags,
missing values, empty strings, huge, negative, non-numeric and
overflowing numbers, non-UTF-8 bytes, newlines, very long strings, bad
paths, missing, empty-named, directory and random-byte config files,
NUL bytes, long lines, duplicated keys, sections). Each run has at most
one bad input, so the oracle knows what to expect: never a signal, a
hang or a sanitizer report; a bad input exits non-zero (78 for the
table-driven binaries, 64 for the getopt tools) with an error that names
the flag, variable, key or file:line and stays one line per error (every
line starts with the binary's name or the file's path); a good one is
accepted: "configuration OK" with -n and the value of the highest
precedence source (flag > environment > file) in the dump, and without
-n the daemon starts ("ready"), and stops cleanly on SIGTERM. Runs
without -n only ever see paths inside the run's temporary directory.

A run that picks a daemon checks with -n, except every 15th, which starts
it; sensorpipectl runs without -n one time in five (against no daemons,
--timeout 200ms); tap and sensorpipe-sim have no check mode and always
run (tap is stopped with SIGTERM after 1 s, or 10 s when its input is
bad, sim publishes to a closed loopback port for 0.3 s). The cases the monkey found are kept as fixed
checks too (KNOWN).

Seeded (SP_SEED, else random; the seed is printed) and bounded: 100
runs or 30 s; 3,000 runs or 400 s with SP_FULL=1.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import (BUILD, ROOT, SANITIZER_MARKS, Failure, binary, check,  # noqa: E402
                free_port, have, main)

FULL = os.environ.get("SP_FULL") == "1"
COUNT, SECONDS = (3000, 400) if FULL else (100, 30)

DAEMONS = ["ingestd", "aggd", "anomalyd", "alertd", "apid"]
TOOLS = ["sensorpipectl", "sensorpipe-sim", "tap"]
PAGES = {d: "%s/%s.8" % (d, d) for d in DAEMONS}
PAGES.update({"sensorpipectl": "tools/sensorpipectl.8",
              "sensorpipe-sim": "tools/sensorpipe-sim.1", "tap": "tools/tap.1"})
TABLES = {d: "%s/main.c" % d for d in DAEMONS}
TABLES["sensorpipectl"] = "tools/sensorpipectl.c"
# Where each binary's own getenv() calls may be (common/ is searched for all).
SOURCES = {d: [d] for d in DAEMONS}
SOURCES["apid"] = ["apid", "aggd"]  # apid links libaggd.a (api_lanes.c)
SOURCES.update({"sensorpipectl": ["tools/sensorpipectl.c"],
                "sensorpipe-sim": ["tools/sim.c"], "tap": ["tools/tap.c"]})
OPT = re.compile(r"(?:^|(?<=[\s,\[|]))(--?[A-Za-z0-9][A-Za-z0-9-]*)")


# ---------------------------------------------------------------------
# Part 1: --help, man page and environment agree

def render(page):
    """The page as plain text (mandoc if present, else groff)."""
    if shutil.which("mandoc"):
        argv = ["mandoc", "-Tascii", "-Owidth=200", page]
    else:
        argv = ["groff", "-mandoc", "-Tascii", "-P-cbou", "-rLL=200n", page]
    out = subprocess.run(argv, capture_output=True, timeout=30).stdout
    return re.sub(r".\x08", "", out.decode("ascii", "replace")).expandtabs(8)


def sections(text):
    secs, cur = {}, None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z ]+$", line):
            cur = line.strip()
            secs[cur] = []
        elif cur:
            secs[cur].append(line)
    return secs


def man_options(lines):
    """Options named in the tags of OPTIONS: lines at the section's own
    indent that begin with a dash, up to the description."""
    body = [x for x in lines if x.strip()]
    if not body:
        return set()
    ind = min(len(x) - len(x.lstrip()) for x in body)
    out = set()
    for x in body:
        if len(x) - len(x.lstrip()) == ind and x.lstrip().startswith("-"):
            out |= set(OPT.findall(re.split(r"\s{2,}", x.strip())[0]))
    return out


def help_options(text):
    """Options of a --help text: the bracketed ones of the usage lines
    (bundled letters split) and the heads of the indented option lines."""
    out = set()
    in_usage = False
    for x in text.splitlines():
        in_usage = x.startswith("usage:") or (in_usage and x.strip().startswith("["))
        if in_usage:
            for grp in re.findall(r"\[([^\]]*)\]", x):
                for tok in OPT.findall(grp):
                    if re.fullmatch(r"-[A-Za-z]{2,}", tok):
                        out |= {"-" + c for c in tok[1:]}
                    else:
                        out.add(tok)
        elif re.match(r"^\s+-", x):
            out |= set(OPT.findall(re.split(r"\s{2,}", x.strip())[0]))
    out.discard("--option")  # the placeholder of "[--option value ...]"
    return out


def symbols(path, defined_only=True):
    argv = ["nm", "-g"] + (["--defined-only"] if defined_only else []) + [path]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return {x.split()[-1] for x in r.stdout.splitlines() if len(x.split()) >= 2}


def env_read(name, help_text):
    """Environment variables name reads: its settings', its config file's
    and the getenv() literals of the modules linked into it."""
    names = set(re.findall(r"\$([A-Z][A-Z0-9_]+)", help_text))
    if name in TABLES:
        names.add(name.upper() + "_CONFIG")
    have_syms = symbols(binary(name))
    files = []
    for src in ["common"] + SOURCES[name]:
        p = os.path.join(ROOT, src)
        files += [os.path.join(src, f) for f in os.listdir(p) if f.endswith(".c")] \
            if os.path.isdir(p) else [src]
    for f in files:
        with open(os.path.join(ROOT, f), errors="replace") as fp:
            lits = set(re.findall(r'getenv\("([A-Z_][A-Z0-9_]*)"\)', fp.read()))
        if not lits:
            continue
        # A test hook (AGGD_TEST_*) belongs to the daemon of its directory,
        # also where another binary links the module (apid, aggd's store).
        own = f.startswith("common/") or f.startswith(name + "/") or f.startswith("tools/")
        lits = {x for x in lits if own or "_TEST_" not in x}
        obj = os.path.join(BUILD, "obj", f[:-2] + ".o")
        if not os.path.exists(obj) or symbols(obj) & have_syms:
            names |= lits
    return names


def consistency(errs):
    for name in DAEMONS + TOOLS:
        page = os.path.join(ROOT, PAGES[name])
        texts = {}
        for flag in ("--help", "-h"):
            r = subprocess.run([binary(name), flag], capture_output=True, text=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            texts[flag] = r.stdout
            if r.returncode != 0 or not r.stdout.startswith("usage:") or r.stderr:
                errs.append("%s %s: exit %d, stdout %r, stderr %r" % (
                    name, flag, r.returncode, r.stdout[:60], r.stderr[:200]))
        text = texts["--help"]
        secs = sections(render(page))
        h, m = help_options(text), man_options(secs.get("OPTIONS", []))
        for o in sorted(h - m):
            errs.append("%s: %s is in --help but not in %s OPTIONS" % (name, o, PAGES[name]))
        for o in sorted(m - h):
            errs.append("%s: %s is in %s OPTIONS but not in --help" % (name, o, PAGES[name]))
        env_text = "\n".join(secs.get("ENVIRONMENT", []))
        for v in sorted(env_read(name, text)):
            if not re.search(r"(?<![A-Z0-9_])%s(?![A-Z0-9_])" % v, env_text):
                errs.append("%s: reads $%s, not in %s ENVIRONMENT" % (name, v, PAGES[name]))
        if "-V" in m or "--version" in m:
            for flag in ("-V", "--version"):
                r = subprocess.run([binary(name), flag], capture_output=True,
                                   text=True, timeout=30)
                if r.returncode != 0 or len(r.stdout.splitlines()) != 1 or \
                        not r.stdout.startswith(name + " "):
                    errs.append("%s %s: exit %d, %r" % (name, flag, r.returncode, r.stdout))
        lint = [["groff", "-mandoc", "-ww", "-z", page]]
        if shutil.which("mandoc"):
            lint.append(["mandoc", "-Tlint", "-W", "warning", page])
        for argv in lint:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if r.stdout.strip() or r.stderr.strip():
                errs.append("%s: %s: %s" % (argv[0], PAGES[name],
                                            (r.stdout + r.stderr).strip()))
    if not shutil.which("mandoc"):
        print("note: mandoc not installed; groff -ww only")


# Cases the monkey found, kept as fixed checks: (binary, argv, env, exit
# status, text stderr or stdout must hold).
KNOWN = [
    # -n makes the daemon's own checks, not only the table's
    ("aggd", ["-n", "--export-format", "bogus"], {}, 78, "export-format"),
    ("anomalyd", ["-n", "--method", "bogus"], {}, 78, "method: unknown 'bogus'"),
    ("alertd", ["-n", "--rules", "{tmp}/no-such.rules"], {}, 78, "no-such.rules"),
    ("alertd", ["-n", "--rules", "x\ny"], {}, 78, "alertd: err: x\\x0ay: No such file"),
    ("alertd", ["-n", "--drain="], {}, 78, "--drain: '' is not a duration"),
    ("apid", ["-n", "-v", "--log-level", "bogus"], {}, 78, "log-level"),
    ("sensorpipectl", ["-n", "--delete", "x", "--start", "soon"], {}, 78, "--start"),
    ("sensorpipectl", ["--rundir", "{tmp}/" + "r" * 200, "--timeout", "100ms"], {}, 78,
     "cannot connect"),
    # a directory, an empty name, a NUL byte, a long value in the file
    ("aggd", ["-n", "-f", "{tmp}"], {}, 78, "Is a directory"),
    ("aggd", ["-n"], {"AGGD_CONFIG": "{tmp}"}, 78, "Is a directory"),
    ("ingestd", ["-n", "-f", ""], {}, 78, "file name is empty"),
    ("aggd", ["-n", "-f", "{tmp}/nul.conf"], {}, 78, "nul.conf:1: NUL byte"),
    ("apid", ["-n", "-f", "{tmp}/long.conf"], {}, 0, "jwt-issuer = " + "i" * 6000 + "\n"),
    # zero durations where the range starts at 0 (0 = none, documented)
    ("anomalyd", ["-n", "--forecast-every", "0"], {}, 0, "forecast-every = 0s"),
    ("aggd", ["-n", "--drain=0s"], {}, 0, "drain = 0s"),
    # one line each, naming the flag and quoting the value
    ("aggd", ["-n", "--lane", "abc"], {}, 78, "--lane: 'abc' is not an integer in 0..1023"),
    ("aggd", ["-n", "--x\ny"], {}, 78, "unknown option '--x\\x0ay'"),
    ("tap", ["--help"], {}, 0, "usage: tap"),
    # libzmq connects tcp://127.0.0.1:99999 to port 34463, silently
    ("tap", ["tcp://127.0.0.1:99999"], {}, 1, "cannot connect 'tcp://127.0.0.1:99999'"),
    ("sensorpipectl", ["--aggd", "tcp://127.0.0.1:70000", "--timeout", "100ms"], {}, 78,
     "cannot connect"),
    ("tap", ["-n", "abc", "ipc://x"], {}, 64, "-n: not a count"),
    ("sensorpipe-sim", ["-Z"], {}, 64, "unknown option '-Z'"),
    ("sensorpipe-sim", ["-d", "1s", "--report", "{tmp}/afile/x"], {}, 78, "--report"),
    # a web root that is not a directory stops the start (it served 404s)
    ("apid", ["--port", "0", "--rundir", "{tmp}/run", "--datadir", "{tmp}/apid",
              "--webroot", "{tmp}/afile"], {}, 1, "--webroot '{tmp}/afile': not a directory"),
]


def known(errs):
    tmp = tempfile.mkdtemp(prefix="sp-cli.")
    try:
        with open(os.path.join(tmp, "nul.conf"), "wb") as f:
            f.write(b"drain = 3s\0junk\n")
        with open(os.path.join(tmp, "long.conf"), "w") as f:
            f.write("jwt_issuer = %s\n" % ("i" * 6000))
        with open(os.path.join(tmp, "afile"), "w") as f:
            f.write("not a directory\n")
        for name, argv, env, rc, text in KNOWN:
            argv = [a.replace("{tmp}", tmp) for a in argv]
            e = dict(os.environ)
            e.update({k: v.replace("{tmp}", tmp) for k, v in env.items()})
            try:
                r = subprocess.run([binary(name)] + argv, capture_output=True, text=True,
                                   errors="replace", env=e, cwd=tmp, timeout=60,
                                   stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                errs.append("%s %s: still running after 60 s (want exit %d)" % (name, argv, rc))
                continue
            out = r.stdout + r.stderr
            text = text.replace("{tmp}", tmp)
            if r.returncode != rc or text not in out or sanitizer(r.stderr.encode()):
                errs.append("%s %s: exit %d (want %d), want %r in: %r" % (
                    name, argv, r.returncode, rc, text[:60], out[:300]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------
# Part 2: the monkey

def table(name):
    """The cfg table of a binary, from its source: name -> (type, min,
    max, default)."""
    with open(os.path.join(ROOT, TABLES[name])) as f:
        src = f.read()
    num = r"([-+0-9.eE* ]+?)"
    rx = re.compile(r'\{\s*"([a-z0-9-]+)",\s*CFG_([A-Z]+),\s*offsetof\([^)]*\),\s*'
                    r'("(?:[^"\\]|\\.)*"|NULL),\s*' + num + r",\s*" + num + r"\s*,", re.S)
    out = {}
    for k, t, d, lo, hi in rx.findall(src):
        out[k] = (t, eval(lo), eval(hi), None if d == "NULL" else d[1:-1])
    n = len(re.findall(r'\{\s*"[a-z0-9-]+",\s*CFG_', src))
    if len(out) != n:
        raise Failure("%s: parsed %d of %d table rows" % (TABLES[name], len(out), n))
    return out


BIG = "9" * 5000
NONUTF8 = b"\xff\xfe\xc3("


def good_value(r, t, lo, hi):
    if t == "INT":
        lo, hi = int(lo), int(hi)
        return str(r.choice([lo, hi, r.randint(lo, min(hi, lo + 10**6))]))
    if t == "DOUBLE":
        return repr(r.choice([float(lo), float(hi), r.uniform(lo, hi)]))
    if t == "DURATION":
        s = r.choice([int(-(-lo // 1)), int(hi), r.randint(int(-(-lo // 1)), int(hi))])
        return r.choice(["%ds" % s, "%dms" % (s * 1000)] + (["%dm" % (s // 60)] if s % 60 == 0 else []))
    if t == "BOOL":
        return r.choice(["true", "false", "yes", "no", "1", "0", "on", "off"])
    return None


def bad_value(r, t, lo, hi):
    common = ["", "abc", BIG, NONUTF8, "12abc", "x\ny", "\u0663"]
    if t == "INT":
        return r.choice(common + ["99999999999999999999", "-99999999999999999999", "1.5",
                                  "1e3", str(int(hi) + 1), str(int(lo) - 1), "0x10"])
    if t == "DOUBLE":
        return r.choice(common + ["nan", "inf", "-inf", "1e309", "1,5", repr(hi * 10 + 1),
                                  repr(lo - 1 - abs(lo))])
    if t == "DURATION":
        return r.choice(common + ["5", "-5s", "5x", "s", "99999999999999999999s", "1e3s",
                                  BIG + "s", "5 s", "1h-", "%ds" % (int(hi) + 1)]
                        + (["0s"] if lo > 0 else []))
    if t == "BOOL":
        return r.choice(common + ["maybe", "2", "yes please"])
    raise AssertionError(t)


MAYBE_STR = ["", "x", BIG, NONUTF8, "../../etc/passwd", "-", "{lane}", "ipc://", "tcp://",
             "a b", "'", "\x01", "x\ny", "csv", "zscore", "none", "influx", "debug"]


def enc(v):
    return v if isinstance(v, bytes) else v.encode()


class Case:
    """One run: argv after the binary, environment, config file lines,
    what must happen (good/bad/maybe) and the names an error must carry."""

    def __init__(self, name):
        self.name = name
        self.argv, self.env, self.lines = [], {}, []
        self.kind = "good"
        self.names = []          # any of these in an error line
        self.expect = {}         # key -> value the -n dump must show
        self.cfgfile = None      # random bytes to begin the config file with
        self.path = None         # the config file's path, once written
        self.line = None         # index in lines of the bad or odd line
        self.tmp = None          # the run's directory
        self.runtime = False     # found bad at start (exit 1), not by -n
        self.hup = None          # a started daemon's file becomes this, then SIGHUP

    def bad(self, *names):
        assert self.kind == "good"
        self.kind = "bad"
        self.names = [enc(n) for n in names]

    def maybe(self, *names):
        if self.kind == "good":
            self.kind = "maybe"
            self.names = [enc(n) for n in names]

    def bad_line(self, text, maybe=False, key=None):
        """A config file line that is wrong (or may be): the error must
        name the file and this line's number (or, from the daemon's own
        checks, the key)."""
        self.line = len(self.lines)
        self.lines.append(text)
        (self.maybe if maybe else self.bad)(*([":"] + ([key] if key else [])))


def flag_args(r, key, val, t=None):
    """--key=val or --key val; a boolean takes its value only after "="
    (a word after --stdin is an argument of its own)."""
    if t == "BOOL" or r.random() < 0.3:
        return [b"--" + enc(key) + b"=" + enc(val)]
    return [b"--" + enc(key), enc(val)]


SAFE_START = {"drain", "hwm", "checkpoint-every", "checkpoint-mb", "compact-every",
              "retention-raw", "retention-day", "window", "threshold", "min-score", "keep",
              "ws-ping", "key-rate", "key-burst", "job-timeout", "session-ttl",
              "window-points", "max-series", "max-attempts", "notify-timeout", "rate-limit",
              "device-rate", "tenant-rate", "tenant-series", "resend-after",
              "forecast-every", "forecast-horizon", "query-threads"}


def gen_cfg(r, c, tab, tmp, start):
    """Mutations of a table-driven binary; start=True keeps to values
    that are safe to run with."""
    ident = c.name.upper()
    keys = sorted(tab)
    if not start:
        # Good settings from all three sources; the highest wins.
        for key in r.sample(keys, r.randint(0, 3)):
            t, lo, hi, _ = tab[key]
            vals = [good_value(r, t, lo, hi) for _ in range(3)]
            if vals[0] is None:
                continue
            if key in ("stdin", "stdout", "ctl") or t == "BOOL":
                continue  # filter/client modes change what the binary does
            srcs = r.sample(["file", "env", "flag"], r.randint(1, 3))
            if "file" in srcs:
                c.lines.append(b"%s = %s" % (enc(key.replace("-", "_") if r.random() < 0.3
                                                  else key), enc(vals[0])))
            if "env" in srcs:
                c.env[enc("%s_%s" % (ident, key.upper().replace("-", "_")))] = enc(vals[1])
            if "flag" in srcs:
                c.argv += flag_args(r, key, vals[2])
            win = vals[2] if "flag" in srcs else vals[1] if "env" in srcs else vals[0]
            if t == "INT":
                c.expect[key] = win
        if r.random() < 0.3:
            c.argv.append(r.choice([b"-v", b"-vv", b"-vvv"]))
    else:
        # Good values a real start can take (no ports, lanes, sizes of
        # files or shared memory), from any of the three sources.
        safe = sorted(SAFE_START & set(keys))
        for key in r.sample(safe, min(2, len(safe))):
            t, lo, hi, _ = tab[key]
            lo = min(hi, max(lo, 1))
            hi = min(hi, lo * 100, 10 if t == "DURATION" else hi)
            v = good_value(r, t, lo, max(lo, hi))
            where = r.choice(["file", "env", "flag"])
            if where == "file":
                c.lines.append(enc(key) + b" = " + enc(v))
            elif where == "env":
                c.env[enc("%s_%s" % (ident, key.upper().replace("-", "_")))] = enc(v)
            else:
                c.argv += flag_args(r, key, v, t)
    pick = r.random()
    if pick < 0.35:
        return  # all good
    key = r.choice(keys)
    t, lo, hi, _ = tab[key]
    if t == "STR":
        if start:
            return
        v = r.choice(MAYBE_STR)
        where = r.choice(["flag", "env", "file"])
        # The daemon's own check may name the value rather than the key
        # (alertd: "'<rules file>': No such file or directory").
        val = [enc(v)[:40]] if enc(v).strip() else []
        if where == "flag":
            c.argv += flag_args(r, key, v)
            c.maybe("--" + key, key, *val)
        elif where == "env" and b"\n" not in enc(v) and v != BIG:
            env = "%s_%s" % (ident, key.upper().replace("-", "_"))
            c.env[enc(env)] = enc(v)
            c.maybe(env, key, *val)
        elif b"\n" not in enc(v):
            c.bad_line(enc(key) + b" = " + enc(v), maybe=True, key=key)
            c.names += [enc(x) for x in val]
        return
    v = bad_value(r, t, lo, hi)
    where = r.choice(["flag", "flag", "env", "file"])
    if where == "flag":
        c.argv += flag_args(r, key, v, t)
        c.bad("--" + key)
    elif where == "env" and "\n" not in str(v):
        env = "%s_%s" % (ident, key.upper().replace("-", "_"))
        c.env[enc(env)] = enc(v)
        c.bad(env)
    else:
        c.bad_line(enc(key) + b" = " + enc(v).replace(b"\n", b""))


def gen_cfg_hostile(r, c, tab, tmp):
    """One hostile thing that is not a value of a known setting."""
    keys = sorted(tab)
    ident = c.name.upper()
    k = r.randrange(14)
    if k == 0:
        u = r.choice(["--no-such-option", "--" + r.choice(keys) + "x", "-x", "-", "--", "---",
                      "--=3", "-ff", "positional", "--\xff", "--a\nb", "-v-", "--" + BIG])
        c.argv.append(enc(u))
        c.bad(enc(u).split(b"\n")[0][:40] if u != "--" + BIG else "--999")
    elif k == 1:
        key = r.choice([x for x in keys if tab[x][0] != "BOOL"])
        c.argv.append(b"--" + enc(key))  # last: no value
        c.bad("--" + key)
    elif k == 2:
        c.argv.append(b"-f")
        c.bad("-f")
    elif k == 3:
        p = os.path.join(tmp, "no-such.conf")
        c.argv += [b"-f", enc(p)]
        c.bad(p)
    elif k == 4:
        c.argv += [b"-f", enc(tmp)]  # a directory
        c.bad(tmp)
    elif k == 5:
        c.argv += [b"-f", b""]
        c.bad("''", "\"\"", "-f")
    elif k == 6:
        data = bytes(r.getrandbits(8) for _ in range(r.randint(1, 600)))
        c.cfgfile = data
        bad_line = any(seg.split(b"#")[0].strip(b" \t\r\n\v\f") and b"=" not in seg.split(b"#")[0]
                       for seg in data.split(b"\n"))
        if b"\0" in data or bad_line:
            c.bad(":")
        else:
            c.maybe(":")
    elif k == 7:
        key = r.choice(keys)
        c.bad_line(enc(key) + b" = 1\0garbage")
    elif k == 8:
        c.bad_line(b"[" + enc(r.choice(["main", "server", c.name])) + b"]")
    elif k == 9:
        c.bad_line(r.choice([b"= 5", b"no_such_key = 1", b"justaword", b"\xff\xfe = 1",
                             b"key with spaces = 1"]))
    elif k == 10:
        c.lines.append(b"# " + b"x" * 9000)  # a long comment is fine
    elif k == 11:
        key = r.choice([x for x in keys if tab[x][0] == "STR"] or keys)
        c.bad_line(enc(key) + b" = " + b"y" * 9000, maybe=True, key=key)  # one long value
        c.names.append(b"y" * 40)  # alertd names the rules file it cannot read
    elif k == 12:
        key = r.choice([x for x in keys if tab[x][0] == "INT"] or keys)
        t, lo, hi, _ = tab[key]
        a, b = good_value(r, t, lo, hi), good_value(r, t, lo, hi)
        c.lines += [enc(key) + b" = " + enc(a), enc(key.replace("-", "_")) + b"=" + enc(b)]
        c.expect[key] = b  # the last one wins, as with flags
    else:
        path = r.choice([os.path.join(tmp, "no-such.conf"), tmp])
        c.env[enc(ident + "_CONFIG")] = enc(path)
        c.bad(path)


# getopt tools: option -> (short, long, kind, lo, hi)
SIM_OPTS = {
    "port": ("-p", "--port", "int", 1, 65535), "devices": ("-n", "--devices", "int", 1, 1000000),
    "rate": ("-r", "--rate", "pos", 0, 1000), "count": ("-c", "--count", "int", 1, 10**18),
    "batch": ("-b", "--batch", "int", 1, 1000), "procs": ("-P", "--procs", "int", 1, 64),
    "connects": ("-C", "--connects", "int", 1, 10000), "qos": (None, "--qos", "int", 0, 2),
    "keepalive": (None, "--keepalive", "int", 5, 65535),
    "fault-len": (None, "--fault-len", "int", 1, 1000000),
    "faults": (None, "--faults", "double", 0, 1), "seed": (None, "--seed", "int", 0, 2**63 - 1),
    "duration": ("-d", "--duration", "dur", 1, 7 * 86400),
    "wait-connected": ("-W", "--wait-connected", "dur", 1, 3600),
    "tick": (None, "--tick", "dur", 0.001, 1), "period": (None, "--period", "dur", 1, 10**6),
    "drain": (None, "--drain", "dur", 1, 10**6),
}


def gen_sim(r, c, tmp, port):
    c.argv = [b"-q", b"-p", enc(str(port)), b"-n", b"1", b"-d", b"300ms", b"--drain", b"200ms"]
    if r.random() < 0.5:
        c.argv += [b"--labels", enc(os.path.join(tmp, "labels")),
                   b"--report", enc(os.path.join(tmp, "report"))]
    k = r.random()
    if k < 0.3:
        return
    if k < 0.4:
        u = r.choice([b"--no-such", b"-Z", b"positional", b"--\xff", b"--a\nb"])
        c.argv.append(u)
        c.bad(u.split(b"\n")[0])
        return
    if k < 0.5:
        f = r.choice([b"--labels", b"--report"])
        c.argv += [f, enc(os.path.join(tmp, "afile", "x"))]
        c.bad(os.path.join(tmp, "afile", "x"))
        return
    if k < 0.55:
        h = r.choice(["10.1.2.3", "", "::2"])
        c.argv += [b"-H", enc(h)]
        c.bad("--host", "-H")
        return
    if k < 0.6:
        v = r.choice(["", "a b", "x" * 70, "\xff"])
        # an empty --prefix is allowed: the device ids are the numbers
        c.argv += [b"--run" if v == "" else r.choice([b"--run", b"--prefix"]), enc(v)]
        c.bad("--run", "--prefix")
        return
    name = r.choice(sorted(SIM_OPTS))
    short, lng, kind, lo, hi = SIM_OPTS[name]
    opt = r.choice([x for x in (short, lng) if x])
    if name in ("devices", "procs", "connects", "duration", "wait-connected", "drain"):
        good = None  # the run's shape stays small
    elif kind == "int":
        good = str(r.randint(lo, min(hi, 10**6)))
    elif kind in ("pos", "double"):
        good = repr(r.uniform(lo, hi) or hi)
    else:
        good = "%dms" % r.randint(int(lo * 1000) or 1, int(min(hi, 100) * 1000))
    if name == "port":
        good = None
    if good and r.random() < 0.5:
        c.argv += [enc(opt), enc(good)] if opt.startswith("--") or r.random() < 0.5 \
            else [enc(opt + good)]
        return
    bad = r.choice(["", "abc", BIG, NONUTF8, "-1", "99999999999999999999", "1e400", "x\ny"]
                   + (["0", "0s"] if kind == "dur" else [str(hi + 1)] if kind == "int" else []))
    c.argv += [enc(opt), enc(bad)]
    c.bad(lng)


def gen_tap(r, c, tmp):
    eps = [b"ipc://" + enc(os.path.join(tmp, "x.pub"))]
    k = r.random()
    if k < 0.3:
        c.argv = [b"-n", enc(str(r.randint(1, 10**9)))] if r.random() < 0.5 else []
        c.argv += [b"-s", b"temp_*"] if r.random() < 0.3 else []
        c.argv += [b"-t", r.choice([b"readings", b"alerts", b""])] if r.random() < 0.3 else []
        c.argv += eps
    elif k < 0.5:
        v = r.choice(["", "abc", "0", "-5", "99999999999999999999", BIG, "\xff"])
        c.argv = [b"-n", enc(v)] + eps
        c.bad("-n")
    elif k < 0.65:
        u = r.choice([b"--no-such", b"-Z", b"--\xff", b"-n"])
        c.argv = eps + [u] if u == b"-n" else [u] + eps
        c.bad(u if u != b"--\xff" else b"--")
    elif k < 0.75:
        c.argv = []
        c.bad("endpoint")
    else:
        e = r.choice([b"garbage", b"ipc://", b"tcp://", b"tcp://127.0.0.1:", b"inproc://",
                      b"\xff", b"tcp://127.0.0.1:99999"])
        c.argv = [e]
        c.bad(e)


def run_case(c, tmp, start):
    """Run the case; return a list of complaints."""
    argv = [binary(c.name).encode()] + c.argv
    if c.lines or c.cfgfile is not None:
        path = os.path.join(tmp, "x.conf")
        with open(path, "wb") as f:
            if c.cfgfile is not None:
                f.write(c.cfgfile)
            lines = c.lines[:]
            if lines:
                f.write(b"# monkey\n" + b"\n".join(lines) + b"\n")
        argv[1:1] = [b"-f", path.encode()]
        c.path = path.encode()
        at = c.path + b":" + (b"%d:" % (c.line + 2) if c.line is not None else b"")
        c.names = [at if x == b":" else x for x in c.names]
    if not start and c.name in TABLES:
        argv.insert(1, b"-n")
    env = {k.encode(): os.environ[k].encode() for k in
           ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS") if k in os.environ}
    env.update(c.env)
    out = subprocess.Popen(argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if not start or c.kind != "good" or c.name not in DAEMONS:
        try:
            # A good tap runs until stopped, so 1 s of it is enough; a bad
            # input must end it by itself, which under ASan on a loaded
            # machine (its exit's leak check) can take longer than that.
            so, se = out.communicate(timeout=(10 if c.kind == "bad" else 1) if c.name == "tap"
                                     else {"sensorpipe-sim": 6}.get(c.name, 60))
        except subprocess.TimeoutExpired:
            if c.name == "tap" or c.name == "sensorpipe-sim":
                out.send_signal(signal.SIGTERM)
                so, se = out.communicate(timeout=30)
                return judge(c, out.returncode, so, se, start, timed_out=True)
            out.kill()
            out.communicate()
            return ["hangs"]
        return judge(c, out.returncode, so, se, start)
    return judge_start(c, out)


def esc(b):
    """b as log_escape and cfg_quote print it: control bytes but tab, DEL
    and bytes outside valid UTF-8 as \\xNN."""
    out = b""
    for ch in b.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xdc80 <= o <= 0xdcff:
            out += b"\\x%02x" % (o - 0xdc00)
        elif (o < 0x20 and ch != "\t") or o == 0x7f:
            out += b"\\x%02x" % o
        else:
            out += ch.encode()
    return out


def lines_ok(c, se, tmp):
    bad = []
    idents = [c.name.encode() + b":", binary(c.name).encode() + b":", b"usage:", b"  ",
              tmp.encode()]
    for x in se.splitlines():
        if not any(x.startswith(i) for i in idents):
            bad.append("stderr line without the binary's name: %r" % x[:120])
    return bad


def sanitizer(se):
    return [m for m in SANITIZER_MARKS if m.encode() in se]


def judge(c, rc, so, se, start, timed_out=False):
    errs = []
    if rc < 0 and not timed_out:
        errs.append("killed by signal %d" % -rc)
    if sanitizer(se):
        errs.append("sanitizer report")
    if c.kind == "bad" or (c.kind == "maybe" and rc != 0 and not timed_out):
        if timed_out or rc == 0:
            errs.append("bad input accepted (exit %s)" % ("running" if timed_out else rc))
        elif c.name in TABLES and rc != 78 and not c.runtime:
            errs.append("exit %d, not 78" % rc)
        elif c.name in ("tap", "sensorpipe-sim") and rc not in (64, 78, 1):
            errs.append("exit %d" % rc)
        if b"configuration OK" in so:
            errs.append("prints configuration OK")
        if c.names and not any(n in x or esc(n) in x for x in se.splitlines()
                               for n in c.names):
            errs.append("no stderr line names %s" % b" or ".join(c.names)[:200])
        errs += lines_ok(c, se, c.tmp)
        # A file may have an error on every line (alertd's rules, or a
        # configuration file of random bytes); STYLE.md wants all of them,
        # each with file:line, so those lines are not counted.
        per_line = re.compile(rb"^%s:\d+: " % re.escape(c.path)) if c.path else None
        other = [x for x in se.splitlines() if not (per_line and per_line.match(x))]
        if len(other) > 8 and c.kind == "bad":
            errs.append("%d lines of errors" % len(other))
    elif c.name in TABLES and not start:
        if rc != 0 or not so.endswith(b"configuration OK\n"):
            errs.append("good input refused (exit %d)" % rc)
        for key, want in c.expect.items():
            if ("%s = %d" % (key, int(want))).encode() not in so.splitlines():
                errs.append("dump shows %r, not %s = %s" % (
                    [x for x in so.splitlines() if x.startswith(enc(key + " ="))], key, want))
    elif c.name in ("tap", "sensorpipe-sim"):
        if not timed_out and rc in (64, 78):
            errs.append("good input refused (exit %d)" % rc)
        if timed_out and rc != 0:
            errs.append("exit %d after SIGTERM" % rc)
    elif c.name == "sensorpipectl" and rc not in (0, 1):
        errs.append("exit %d" % rc)
    return [e + "\n      stderr: %r" % se[:600] for e in errs]


def judge_start(c, p):
    """A good daemon configuration starts: "ready" within a bound, then
    SIGTERM gives exit 0, "shutdown complete" and no sanitizer report."""
    se = b""
    deadline = time.time() + 30
    os.set_blocking(p.stderr.fileno(), False)
    while time.time() < deadline and b"ready" not in se:
        chunk = p.stderr.read()
        se += chunk or b""
        if p.poll() is not None:
            se += p.stderr.read() or b""
            break
        time.sleep(0.05)
    if p.poll() is not None:
        return ["exited %d before ready\n      stderr: %r" % (p.returncode, se[-800:])]
    if c.path and c.hup is not None:
        # SIGHUP with the file spoilt: the daemon keeps running on the
        # configuration it has, and says so.
        with open(c.path, "wb") as f:
            f.write(c.hup)
        mark = len(se)
        p.send_signal(signal.SIGHUP)
        deadline = time.time() + 15

        def said():  # "SIGHUP: reloading", then what came of it
            return sum(b"reload" in x for x in se[mark:].splitlines()) >= 2
        while time.time() < deadline and not said() and p.poll() is None:
            se += p.stderr.read() or b""
            time.sleep(0.05)
        if p.poll() is not None:
            return ["died on SIGHUP with a spoilt file (exit %d)\n      stderr: %r" % (
                p.returncode, se[-800:])]
        if not said():
            return ["no word on SIGHUP with a spoilt file\n      stderr: %r" % se[mark:][-800:]]
    p.send_signal(signal.SIGTERM)
    try:
        so, rest = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return ["does not stop on SIGTERM"]
    se += rest or b""
    errs = []
    if b"ready" not in se:
        errs.append("not ready in 30 s")
    if p.returncode != 0 or b"shutdown complete" not in se:
        errs.append("stop: exit %d" % p.returncode)
    if sanitizer(se):
        errs.append("sanitizer report")
    return [e + "\n      stderr: %r" % se[-800:] for e in errs]


def safe_start_args(name, tmp):
    a = [b"--rundir", enc(os.path.join(tmp, "run"))]
    if name == "apid":
        a += [b"--port", enc(str(free_port())), b"--datadir", enc(os.path.join(tmp, "apid"))]
    if name == "ingestd":
        a += [b"--port", enc(str(free_port())), b"--spool", enc(os.path.join(tmp, "spool")),
              b"--mqtt-port", enc(str(free_port()))]
    if name == "aggd":
        a += [b"--data", enc(os.path.join(tmp, "data"))]
    if name == "sensorpipectl":
        a += [b"--timeout", b"200ms"]
    return a


def gen_start_bad_path(r, c, tab, tmp):
    """A path option pointing through a regular file (ENOTDIR even for
    root) or too long for the system."""
    paths = [k for k in ("rundir", "data", "datadir", "spool", "db", "rules", "keys",
                         "quotas", "webroot") if k in tab]
    key = r.choice(paths)
    v = r.choice([os.path.join(tmp, "afile", "x"), os.path.join(tmp, "y" * 5000)])
    if c.name in ("sensorpipectl", "apid") and key == "rundir":
        # Only the daemons' sockets are there: a rundir without them is
        # daemons that are down (sensorpipectl exit 1, apid answers 503);
        # only a path no socket can have is a bad option.
        v = os.path.join(tmp, "y" * 5000)
    c.argv += [b"--" + enc(key), enc(v)]
    c.bad(v[:40], "--" + key, key)
    c.runtime = True


def monkey(seed, failures):
    r = random.Random(seed)
    tabs = {n: table(n) for n in TABLES}
    names = [n for n in DAEMONS + TOOLS if have(n)]
    t0 = time.time()
    stats = {}
    n = 0
    while n < COUNT and time.time() - t0 < SECONDS:
        n += 1
        name = r.choice(names)
        start = name in DAEMONS and n % 15 == 0 or name in TOOLS and name != "sensorpipectl" \
            or name == "sensorpipectl" and r.random() < 0.2
        tmp = tempfile.mkdtemp(prefix="sp-cli.")
        try:
            with open(os.path.join(tmp, "afile"), "w") as f:
                f.write("not a directory\n")
            c = Case(name)
            c.tmp = tmp
            if name == "sensorpipe-sim":
                gen_sim(r, c, tmp, free_port())
            elif name == "tap":
                gen_tap(r, c, tmp)
            elif start:
                c.argv = safe_start_args(name, tmp)
                k = r.random()
                if k < 0.4:
                    gen_cfg(r, c, tabs[name], tmp, True)
                elif k < 0.6:
                    gen_start_bad_path(r, c, tabs[name], tmp)
                else:
                    if r.random() < 0.5:
                        c.argv.append(b"-v")
                    if r.random() < 0.5:  # the same settings from a file
                        c.lines = [c.argv[i][2:] + b" = " + c.argv[i + 1]
                                   for i in range(0, len(c.argv) - 1, 2)
                                   if c.argv[i].startswith(b"--")]
                        c.argv = [x for x in c.argv if x == b"-v"]
                        c.hup = r.choice([
                            bytes(r.getrandbits(8) for _ in range(r.randint(1, 300))),
                            b"[section]\n", b"drain = 1s\0x\n", b"hwm = -5\n",
                            b"no_such = 1\n", b"drain = " + b"9" * 5000 + b"s\n"])
            elif r.random() < 0.5:
                gen_cfg(r, c, tabs[name], tmp, False)
            else:
                gen_cfg_hostile(r, c, tabs[name], tmp)
            if start and name in DAEMONS and c.kind == "maybe":
                continue
            t1 = time.time()
            errs = run_case(c, tmp, start)
            key = "%s %s%s" % (name, c.kind, " start" if start else "")
            st = stats.setdefault(key, [0, 0.0])
            st[0] += 1
            st[1] += time.time() - t1
            if errs:
                failures.append("run %d: %s %s, env %r, file %r:\n    %s" % (
                    n, name, [a[:80] for a in c.argv], {k: v[:60] for k, v in c.env.items()},
                    (c.cfgfile or b"")[:80] + b"|" + b"|".join(x[:80] for x in c.lines),
                    "\n    ".join(errs)))
                if len(failures) > 30:
                    break
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("monkey: %d runs in %.0f s (runs and seconds by kind): %s" % (
        n, time.time() - t0, ", ".join("%s %d %.1fs" % (k, v[0], v[1])
                                       for k, v in sorted(stats.items()))))


def test():
    missing = [n for n in DAEMONS + TOOLS if not have(n)]
    if missing:
        print("skip: not built: %s" % " ".join(missing))
        sys.exit(77)
    errs = []
    consistency(errs)
    for e in errs:
        print("mismatch:", e)
    fixed = []
    known(fixed)
    for e in fixed:
        print("known case:", e)
    seed = int(os.environ.get("SP_SEED") or random.randrange(1 << 32))
    print("seed %d (SP_SEED=%d replays this run)" % (seed, seed))
    failures = []
    monkey(seed, failures)
    for f in failures:
        print("FAIL", f)
    check(not errs, "--help, man pages and environment agree (%d mismatches)" % len(errs))
    check(not fixed, "%d fixed cases of bad and good input (%d wrong)" % (len(KNOWN), len(fixed)))
    check(not failures, "the monkey found nothing (%d failures)" % len(failures))


if __name__ == "__main__":
    main(test)
