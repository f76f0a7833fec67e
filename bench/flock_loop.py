#!/usr/bin/env python3
"""flock_loop.py FILE ROUNDS: cluster lock round trips through a confman-fs
mount, uncontended (bench/lock-bench.sh).

ROUNDS times: open(FILE), flock(LOCK_EX) (an ACQUIRE by the mount, under its
session lease), flock(LOCK_UN) (a RELEASE), close. Then ROUNDS times
open/flock(LOCK_EX)/close, the lock given back by the close (the kernel's
FUSE_RELEASE, which close(2) does not wait for: the next round's flock does,
in the lock's queue). Prints one JSON object: rounds; unlock: round_trips_per_s
(open to close), acquire_us and release_us p50/p90/p99 (the flock calls);
close: round_trips_per_s, acquire_us (includes waiting for the previous
round's release).

Each round also reads user.confman.lock_token (answered by the mount, no
server request) after the acquire, outside the timed call: the tokens must
strictly increase, or the round did not get a hold of its own (exit 1).
"""
import fcntl
import json
import os
import sys
import time


def pct(v, p):
    v = sorted(v)
    return round(v[min(len(v) - 1, (len(v) - 1) * p // 100)] / 1000)


def rounds(path, n, unlock, last):
    acq, rel = [], []
    start = time.monotonic_ns()
    for _ in range(n):
        fd = os.open(path, os.O_RDWR)
        t0 = time.monotonic_ns()
        fcntl.flock(fd, fcntl.LOCK_EX)
        t1 = time.monotonic_ns()
        acq.append(t1 - t0)
        token = int(os.getxattr(fd, "user.confman.lock_token"))
        if token <= last:
            raise SystemExit("flock_loop: token %d after %d: not a hold of its own" % (token, last))
        last = token
        t1 = time.monotonic_ns()
        if unlock:
            fcntl.flock(fd, fcntl.LOCK_UN)
            rel.append(time.monotonic_ns() - t1)
        os.close(fd)
    secs = (time.monotonic_ns() - start) / 1e9
    out = {"round_trips_per_s": round(n / secs, 1),
           "acquire_us": {"p50": pct(acq, 50), "p90": pct(acq, 90), "p99": pct(acq, 99)}}
    if unlock:
        out["release_us"] = {"p50": pct(rel, 50), "p90": pct(rel, 90), "p99": pct(rel, 99)}
    return out, last


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit() or int(sys.argv[2]) < 1:
        sys.stderr.write("usage: flock_loop.py FILE ROUNDS\n")
        return 2
    path, n = sys.argv[1], int(sys.argv[2])
    with open(path, "a"):
        pass
    unlock, last = rounds(path, n, True, 0)
    close, _ = rounds(path, n, False, last)
    print(json.dumps({"rounds": n, "unlock": unlock, "close": close}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
