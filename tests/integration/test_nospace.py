#!/usr/bin/env python3
"""Integration: a node whose LMDB map or disk is nearly full says ENOSPC to
client writes, keeps serving reads, lets clients delete, and accepts writes
again once there is room; no node stops."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "21000"))
MiB = 1 << 20


def says_no_space(rc, err):
    return rc != 0 and "no space" in err.lower() and "ENOSPC" in err


def all_alive(c):
    for i in (1, 2, 3):
        assert c.alive(i), "node %d died: %s" % (i, c.log(i))


def reads_go_on(c, path, value):
    rc, out, err = c.ctl("get", path)
    assert rc == 0 and out == value, "linearizable read failed: %d %r" % (rc, err)
    for i in (1, 2, 3):
        rc, out, err = c.read_on(i, path)
        assert rc == 0 and out == value, "follower read on node %d failed: %d %r" % (i, rc, err)


def wait_put_ok(c, path, value, timeout=15):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        rc, _, err = c.ctl("put", path, value)
        if rc == 0:
            return
        last = err
        time.sleep(0.1)
    raise AssertionError("writes never came back: %s" % last)


def fill_until_enospc(c, value, most=400):
    """Put value under /fill until a put gets ENOSPC: (puts that went through, its error)."""
    for k in range(most):
        rc, _, err = c.ctl("put", "/fill/k%d" % k, "-", input=value)
        if rc != 0:
            assert says_no_space(rc, err), err
            assert k > 0, "the first put was refused: %s" % err
            return k, err
    raise AssertionError("writes were never refused (%d puts)" % most)


def test_full_map_refuses_writes_and_recovers_after_rm():
    # Snapshots on: they are what truncates the log once the tree shrank.
    c = Cluster(base_port=BASE, extra=["--map-size", "4", "--snapshot-entries", "40",
                                       "--keep-entries", "5"]).up()
    try:
        c.leader()
        c.ctl("put", "/canary", "alive", check=True)
        value = b"y" * (32 * 1024)
        filled, err = fill_until_enospc(c, value)
        print("  ENOSPC after %d puts of 32 KiB: %s" % (filled, err.strip()))
        reads_go_on(c, "/canary", b"alive")
        reads_go_on(c, "/fill/k0", value)
        # Deleting is what a full store must still accept.
        c.ctl("rm", "-r", "/fill", check=True)
        wait_put_ok(c, "/after", "ok")
        # Really recovered, not just below the mark: twice what filled the
        # map goes through it, a few values live at a time. That only fits
        # if deleted pages are reused and snapshots truncate the log.
        for k in range(2 * filled):
            c.ctl("put", "/churn/k%d" % k, "-", input=value, check=True)
            if k >= 4:
                c.ctl("rm", "/churn/k%d" % (k - 4), check=True)
        reads_go_on(c, "/churn/k%d" % (2 * filled - 1), value)
        all_alive(c)
    finally:
        c.down()


def test_a_short_follower_stops_writes_before_it_fills():
    """Node 3 has a map 256 times smaller than the others: the leader must
    refuse writes once node 3 is short of space, not replicate until node 3's
    store fills and it stops (etcd's cluster-wide NOSPACE alarm)."""
    c = Cluster(base_port=BASE + 20, extra=["--snapshot-entries", "40", "--keep-entries", "5"],
                node_extra={3: ["--map-size", "4"]})
    try:
        c.start(1)
        c.start(2)
        leader = c.leader()
        assert leader in (1, 2), leader
        c.start(3)
        c.ctl("put", "/canary", "alive", check=True)
        c.wait_value(3, "/canary", b"alive")
        value = b"z" * (32 * 1024)
        filled, err = fill_until_enospc(c, value)
        print("  ENOSPC after %d puts of 32 KiB, leader %d: %s" % (filled, leader, err.strip()))
        assert c.leader() == leader
        end = time.time() + 5  # said at the leader's next tick
        while True:
            with open(os.path.join(c.dir, "node%d.log" % leader), errors="replace") as f:
                log = f.read()
            if "node 3's store is " in log or time.time() > end:
                break
            time.sleep(0.05)
        assert "node 3's store is " in log, log[-1500:]
        all_alive(c)
        reads_go_on(c, "/fill/k0", value)
        c.ctl("rm", "-r", "/fill", check=True)
        wait_put_ok(c, "/after", "ok")
        reads_go_on(c, "/after", b"ok")
        all_alive(c)
    finally:
        c.down()


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """Grow path/junk until only `leave` bytes are free on its filesystem."""
    with open(os.path.join(path, "junk"), "ab") as f:
        while free_bytes(path) > leave:
            f.write(b"\0" * min(MiB, free_bytes(path) - leave))
            f.flush()
            os.fsync(f.fileno())


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path], check=True)


def test_full_disk_refuses_writes_and_recovers_after_space_is_freed():
    if os.geteuid() != 0:
        print("  skipped: mounting a small tmpfs needs root")
        return
    # The map could hold far more than the disk: the disk is what runs out.
    c = Cluster(base_port=BASE + 10, extra=["--min-free-mb", "16", "--map-size", "256"])
    disks = [os.path.join(c.dir, "node%d" % i) for i in (1, 2, 3)]
    mounted = []
    try:
        for d in disks:
            mount_tmpfs(d, "64m")
            mounted.append(d)
        c.up()
        c.leader()
        c.ctl("put", "/canary", "alive", check=True)
        c.ctl("put", "/victim", "x", check=True)
        # Below the reserve: writes refused, deletes and reads go on.
        for d in disks:
            fill(d, 10 * MiB)
        time.sleep(0.3)  # a few ticks: every node samples its disk
        rc, _, err = c.ctl("put", "/more", "data")
        assert says_no_space(rc, err), (rc, err)
        print("  disk low: %s" % err.strip())
        reads_go_on(c, "/canary", b"alive")
        c.ctl("rm", "/victim", check=True)
        # Below half the reserve: deletes refused too.
        for d in disks:
            fill(d, 4 * MiB)
        time.sleep(0.3)
        rc, _, err = c.ctl("rm", "/canary")
        assert says_no_space(rc, err), (rc, err)
        reads_go_on(c, "/canary", b"alive")
        for d in disks:
            os.unlink(os.path.join(d, "junk"))
        wait_put_ok(c, "/more", "data", timeout=5)
        reads_go_on(c, "/more", b"data")
        all_alive(c)
        log = "".join(c.log(i) for i in (1, 2, 3))
        assert "client writes refused" in log and "accepted again" in log, log[-2000:]
    finally:
        try:
            c.down()
        finally:
            for d in mounted:
                subprocess.run(["umount", "-l", d])
            shutil.rmtree(c.dir, ignore_errors=True)


if __name__ == "__main__":
    run([test_full_map_refuses_writes_and_recovers_after_rm,
         test_a_short_follower_stops_writes_before_it_fills,
         test_full_disk_refuses_writes_and_recovers_after_space_is_freed])
