#!/usr/bin/env python3
"""offline_bench.py: the measuring part of bench/offline-bench.sh.

  offline_bench.py CLUSTER_CMD CTL SERVERS MOUNT MOUNT_PID SHM READS ROUNDS

CLUSTER_CMD is the scripts/cluster command line (space-separated) that
kill/start act on. Prints one line per figure:
    NAME n=N p50_us=.. p99_us=.. mean_us=..
  cat-online, cat-tmpfs, cat-offline  open+read+close of 1 KiB (20 warm-up)
  back-online   nodes started again (all three, ports open) -> the mount's
                user.confman.offline says 0
  resume-online, resume-event
                the mount SIGSTOPped while offline, the cluster restarted
                and the file changed meanwhile (a change it missed); from
                SIGCONT (the cluster is back as far as the mount can tell)
                to online, and to inotify's IN_CLOSE_WRITE for that file
"""
import ctypes
import os
import select
import signal
import struct
import subprocess
import sys
import time

ns = time.perf_counter_ns
IN_CLOSE_WRITE = 0x8
_libc = ctypes.CDLL(None, use_errno=True)


def stats(name, samples_ns):
    s = sorted(samples_ns)
    n = len(s)
    p = lambda q: s[min(n - 1, int(q * n))] / 1000.0  # noqa: E731
    print("%s n=%d p50_us=%.1f p99_us=%.1f mean_us=%.1f"
          % (name, n, p(0.50), p(0.99), sum(s) / n / 1000.0), flush=True)


def read_once(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def reads(path, n):
    for _ in range(20):
        read_once(path)
    out = []
    for _ in range(n):
        t = ns()
        read_once(path)
        out.append(ns() - t)
    return out


def offline(mount):
    try:
        return os.getxattr(mount, "user.confman.offline") == b"1"
    except OSError:
        return None


def wait(what, fn, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if fn():
            return
        time.sleep(0.002)
    sys.exit("offline_bench: timed out waiting for " + what)


def cluster(cmd, verb, ids):
    for i in ids:
        subprocess.run(cmd + [verb, str(i)], check=True, capture_output=True)


def put(ctl, servers, key, value):
    for _ in range(300):
        if subprocess.run([ctl, "--servers", servers, "put", key, value],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    sys.exit("offline_bench: put %s failed" % key)


def main():
    cmd, ctl, servers, mount, pid, shm, n, rounds = sys.argv[1:9]
    cmd, pid, n, rounds = cmd.split(), int(pid), int(n), int(rounds)
    f = os.path.join(mount, "ob/cat1k")
    stats("cat-online", reads(f, n))
    stats("cat-tmpfs", reads(os.path.join(shm, "cat1k"), n))
    cluster(cmd, "kill", (1, 2, 3))
    wait("offline", lambda: read_once(f) and offline(mount))
    stats("cat-offline", reads(f, n))
    back, resume, event = [], [], []
    fd = _libc.inotify_init1(os.O_NONBLOCK)
    wd = _libc.inotify_add_watch(fd, os.fsencode(os.path.join(mount, "ob")), IN_CLOSE_WRITE)
    assert fd >= 0 and wd >= 0
    try:
        for r in range(rounds):
            # (1) nodes back -> the mount online (nothing missed)
            t = ns()
            cluster(cmd, "start", (1, 2, 3))
            wait("online", lambda: offline(mount) is False)
            back.append(ns() - t)
            cluster(cmd, "kill", (1, 2, 3))
            wait("offline", lambda: read_once(f) and offline(mount))
            # (2) a change the mount misses while stopped, then its return
            os.kill(pid, signal.SIGSTOP)
            try:
                cluster(cmd, "start", (1, 2, 3))
                value = "round-%d\n" % r
                put(ctl, servers, "/ob/ev", value)
                while True:  # drain
                    try:
                        os.read(fd, 65536)
                    except BlockingIOError:
                        break
            finally:
                t = ns()
                os.kill(pid, signal.SIGCONT)
            got, online = None, None
            end = time.time() + 30
            while got is None and time.time() < end:
                if online is None and offline(mount) is False:
                    online = ns() - t
                rd, _, _ = select.select([fd], [], [], 0.002)
                if rd:
                    buf = os.read(fd, 65536)
                    i = 0
                    while i < len(buf):
                        _, mask, _, ln = struct.unpack_from("iIII", buf, i)
                        name = buf[i + 16:i + 16 + ln].split(b"\0", 1)[0]
                        if mask & IN_CLOSE_WRITE and name == b"ev":
                            got = ns() - t
                        i += 16 + ln
            if got is None:
                sys.exit("offline_bench: no IN_CLOSE_WRITE for ev in round %d" % r)
            if online is None:
                wait("online", lambda: offline(mount) is False)
                online = ns() - t
            assert read_once(os.path.join(mount, "ob/ev")).decode() == value
            resume.append(online)
            event.append(got)
            if r + 1 < rounds:
                cluster(cmd, "kill", (1, 2, 3))
                wait("offline", lambda: read_once(f) and offline(mount))
    finally:
        os.close(fd)
    stats("back-online", back)
    stats("resume-online", resume)
    stats("resume-event", event)


if __name__ == "__main__":
    main()
