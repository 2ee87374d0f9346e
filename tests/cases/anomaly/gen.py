#!/usr/bin/env python3
"""Generate the golden anomaly cases (deterministic: fixed seed).

Each case is timestamp,value,label with readings every 5 minutes from
2024-01-01; label 1 marks where a detector is expected to fire. Run from
this directory: python3 gen.py. The CSV files are checked in, so the
selftests never depend on this script's Python version.
"""
import math
import random
import datetime

T0 = datetime.datetime(2024, 1, 1)
STEP = datetime.timedelta(minutes=5)
DAY = 288  # readings per day


def write(name, values, labels):
    with open(name, "w") as f:
        f.write("timestamp,value,label\n")
        for i, (v, l) in enumerate(zip(values, labels)):
            ts = (T0 + i * STEP).strftime("%Y-%m-%dT%H:%M:%SZ")
            vs = "" if v is None else "%.6f" % v
            f.write("%s,%s,%d\n" % (ts, vs, l))


def main():
    r = random.Random(6)
    n = 2000

    v = [20 + r.gauss(0, 0.5) for _ in range(n)]
    lab = [0] * n
    v[1500] += 10
    lab[1500] = 1
    write("spike.csv", v, lab)

    v = [20 + r.gauss(0, 0.5) + (6 if i >= 1500 else 0) for i in range(n)]
    lab = [1 if 1500 <= i < 1510 else 0 for i in range(n)]
    write("step.csv", v, lab)

    v = [20 + r.gauss(0, 0.5) + (0.02 * (i - 1200) if i >= 1200 else 0)
         for i in range(n)]
    lab = [1 if 1200 <= i < 1500 else 0 for i in range(n)]
    write("drift.csv", v, lab)

    m = 12 * DAY
    brk = 9 * DAY + 72
    v, lab = [], []
    for i in range(m):
        s = 10 * math.sin(2 * math.pi * i / DAY)
        if brk <= i < brk + 144:
            s = 0.0
        v.append(50 + s + r.gauss(0, 0.3))
        lab.append(1 if brk <= i < brk + 144 else 0)
    write("seasonal.csv", v, lab)

    write("flat.csv", [5.0] * n, [0] * n)

    v = [20 + r.gauss(0, 0.5) for _ in range(n)]
    lab = [0] * n
    for g in range(300, n - 100, 250):
        for k in range(5):
            v[g + k] = None
    v[1600] = 35
    lab[1600] = 1
    write("gaps.csv", v, lab)

    write("noise.csv", [20 + r.gauss(0, 0.5) for _ in range(n)], [0] * n)

    # A spike of 10 (20 sigma), then one of 6 (12 sigma) 600 readings
    # later: the second is held under the alarm level by the references
    # the first set, and counts by its shape (anomaly_shape.h). Its own
    # generator, so the cases above stay as they were.
    r = random.Random(11)
    v = [20 + r.gauss(0, 0.5) for _ in range(n)]
    lab = [0] * n
    v[1000] += 10
    v[1600] += 6
    lab[1000] = lab[1600] = 1
    write("aftershock.csv", v, lab)


if __name__ == "__main__":
    main()
