#!/usr/bin/env python3
"""fs_bench.py: the timing loops of bench/fs-bench.sh (no process per op
unless the point is a process per op). Each subcommand prints one line:
    NAME n=N p50_us=.. p99_us=.. mean_us=.. [extra]

  read PATH N                 open+read+close of PATH, N times (after 20 warm-up reads)
  remote-read CTL SERVERS KEY PATH N
                              per round: `confmanctl put KEY vI` (not timed), then
                              time the first open+read+close of PATH; extra: how
                              many of those reads already returned vI, and the time
                              until vI was read (polling)
  write PATH N                open(O_WRONLY|O_TRUNC)+write+close, N times
  proc-put N CMD...           run CMD N times (a process per op); CMD's '{}' -> i
  event WRITE_PATH WATCH_PATH N
                              write WRITE_PATH (open/write/close), time until
                              inotify on WATCH_PATH's directory reports
                              IN_MODIFY (first event) and IN_CLOSE_WRITE for
                              its name; N rounds, 50 ms apart
"""
import ctypes
import os
import select
import struct
import subprocess
import sys
import time

ns = time.perf_counter_ns


def stats(name, samples_ns, extra=""):
    s = sorted(samples_ns)
    n = len(s)
    p = lambda q: s[min(n - 1, int(q * n))] / 1000.0  # noqa: E731
    print("%s n=%d p50_us=%.1f p99_us=%.1f mean_us=%.1f%s"
          % (name, n, p(0.50), p(0.99), sum(s) / n / 1000.0, (" " + extra) if extra else ""),
          flush=True)


def read_once(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def cmd_read(path, n):
    for _ in range(20):
        read_once(path)
    out = []
    for _ in range(n):
        t = ns()
        read_once(path)
        out.append(ns() - t)
    stats("read", out)


def cmd_remote_read(ctl, servers, key, path, n):
    first, fresh_t, fresh = [], [], 0
    pad = b"x" * 1000
    for i in range(n):
        val = b"v%06d-" % i + pad
        subprocess.run([ctl, "--servers", servers, "put", key, "-"], input=val, check=True,
                       stdout=subprocess.DEVNULL)
        t = ns()
        got = read_once(path)
        first.append(ns() - t)
        if got == val:
            fresh += 1
        while got != val:
            if ns() - t > 5e9:
                raise SystemExit("remote-read: %s never showed round %d" % (path, i))
            got = read_once(path)
        fresh_t.append(ns() - t)
    stats("remote-read-first", first, "fresh=%d/%d" % (fresh, n))
    stats("remote-read-until-new", fresh_t)


def cmd_write(path, n):
    data = b"y" * 1023 + b"\n"
    out = []
    for i in range(n):
        t = ns()
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
        os.write(fd, data[:-8] + b"%07d\n" % i)
        os.close(fd)
        out.append(ns() - t)
    stats("write", out)


def cmd_proc_put(n, argv):
    out = []
    for i in range(n):
        a = [x.replace("{}", str(i)) for x in argv]
        t = ns()
        subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(ns() - t)
    stats("proc-put", out)


IN_MODIFY, IN_CLOSE_WRITE = 0x2, 0x8


def cmd_event(wpath, watch, n):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0o4000)  # IN_NONBLOCK
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(os.path.dirname(watch)),
                                        IN_MODIFY | IN_CLOSE_WRITE) < 0:
        raise SystemExit("inotify: errno %d" % ctypes.get_errno())
    name = os.path.basename(watch)
    first, close, missed = [], [], 0

    def drain():
        while select.select([fd], [], [], 0.05)[0]:
            try:
                os.read(fd, 65536)
            except BlockingIOError:
                return

    drain()
    for i in range(n):
        t = ns()
        f = os.open(wpath, os.O_WRONLY | os.O_TRUNC)
        os.write(f, b"event %d\n" % i)
        os.close(f)
        t_first = t_close = None
        end = time.time() + 2
        while t_close is None and time.time() < end:
            if not select.select([fd], [], [], max(0.0, end - time.time()))[0]:
                break
            now = ns()
            try:
                buf = os.read(fd, 65536)
            except BlockingIOError:
                continue
            j = 0
            while j < len(buf):
                _, mask, _, ln = struct.unpack_from("iIII", buf, j)
                nm = buf[j + 16:j + 16 + ln].split(b"\0", 1)[0].decode()
                j += 16 + ln
                if nm != name:
                    continue
                if t_first is None:
                    t_first = now
                if mask & IN_CLOSE_WRITE:
                    t_close = now
        if t_close is None:
            missed += 1
        else:
            first.append(t_first - t)
            close.append(t_close - t)
        time.sleep(0.05)
        drain()
    stats("event-first", first, "missed=%d" % missed)
    stats("event-close-write", close, "missed=%d" % missed)


def main():
    a = sys.argv[1:]
    if not a:
        raise SystemExit(__doc__)
    c = a[0]
    if c == "read":
        cmd_read(a[1], int(a[2]))
    elif c == "remote-read":
        cmd_remote_read(a[1], a[2], a[3], a[4], int(a[5]))
    elif c == "write":
        cmd_write(a[1], int(a[2]))
    elif c == "proc-put":
        cmd_proc_put(int(a[1]), a[2:])
    elif c == "event":
        cmd_event(a[1], a[2], int(a[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
