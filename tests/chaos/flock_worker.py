#!/usr/bin/env python3
"""flock_worker.py: the lock checker's mount worker loop (lockcheck.MountWorker).

Again and again: open FILE (a file of a confman-fs mount), flock(LOCK_EX)
it (a cluster lock: waits in the lock's FIFO), read user.confman.lock_token
(the hold's fencing token), write "TOKEN WORKER begin 0" to the fence, hold,
write "... end 0", close (the kernel's FUSE_RELEASE gives the lock back).
Both writes are sent whatever happened meanwhile: a stale holder's write is
what the fence is for. No safe-until (0): the mount's lease is the daemon's,
this process cannot prove it alive.

Each grant is a JSON line of --out: ev "acquire", worker, token, invoke and
complete (CLOCK_MONOTONIC ns: before open, after the token was read), err
(an errno name, "" when granted). Exit: 0 ran its time; 3 the mount is gone
(its daemon was killed: ENOTCONN); 1 anything unexpected.
"""
import argparse
import errno
import fcntl
import json
import os
import random
import signal
import socket
import sys
import time

XA_TOKEN = "user.confman.lock_token"
# The mount's daemon is dead (kill -9) or the mount was detached.
GONE = (errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV)


class Waited(Exception):
    pass


def on_alarm(_sig, _frame):
    raise Waited()  # interrupts a blocked flock (the mount answers EINTR)


def fence_write(path, token, worker, what):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(path)
        s.sendall(("%d %s %s 0\n" % (token, worker, what)).encode())
        return s.recv(64).decode().strip()
    except OSError as e:
        return "error %s" % e
    finally:
        s.close()


def one_hold(a, rng, out):
    """One open/flock/token/begin/hold/end/close. Raises OSError on a gone mount."""
    rec = {"ev": "acquire", "worker": a.worker, "token": 0, "err": "",
           "invoke": time.monotonic_ns()}
    fd = os.open(a.file, os.O_RDWR)
    try:
        signal.setitimer(signal.ITIMER_REAL, a.wait_s)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except Waited:
            rec["err"] = "waited"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if not rec["err"]:
            rec["token"] = int(os.getxattr(fd, XA_TOKEN))
        rec["complete"] = time.monotonic_ns()
        out.write(json.dumps(rec) + "\n")
        out.flush()
        if rec["err"]:
            return
        fence_write(a.fence, rec["token"], a.worker, "begin")
        time.sleep(rng.uniform(a.hold_ms / 2000.0, a.hold_ms / 1000.0))
        fence_write(a.fence, rec["token"], a.worker, "end")
    finally:
        os.close(fd)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--file", required=True)
    p.add_argument("--fence", required=True)
    p.add_argument("--worker", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--hold-ms", type=int, default=100)
    p.add_argument("--wait-s", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    signal.signal(signal.SIGALRM, on_alarm)
    end = time.time() + a.seconds
    with open(a.out, "a") as out:
        while time.time() < end:
            try:
                one_hold(a, rng, out)
            except OSError as e:
                if e.errno in GONE:
                    return 3
                # A fault: the cluster did not answer within the mount's
                # timeout (EIO), the session was lost (ENOLCK), ...
                out.write(json.dumps({"ev": "error", "worker": a.worker,
                                      "err": errno.errorcode.get(e.errno, str(e.errno)),
                                      "t": time.monotonic_ns()}) + "\n")
                out.flush()
                time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
