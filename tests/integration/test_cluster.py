#!/usr/bin/env python3
"""Integration: a 3-node confmand cluster on loopback under crashes and restarts."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "17100"))


def test_basic_operations():
    c = Cluster(base_port=BASE).up()
    try:
        c.leader()
        c.ctl("put", "/app/db/host", "db1", check=True)
        rc, out, _ = c.ctl("get", "/app/db/host")
        assert rc == 0 and out == b"db1", (rc, out)
        c.ctl("mkdir", "/app/empty", check=True)
        rc, out, _ = c.ctl("ls", "/app")
        assert out.split() == [b"db", b"empty"], out
        rc, _, _ = c.ctl("put", "--if-version", "7", "/app/db/host", "x")
        assert rc == 4, "CAS conflict must exit 4, got %d" % rc
        c.ctl("mv", "/app/db/host", "/app/db/primary", check=True)
        rc, _, _ = c.ctl("get", "/app/db/host")
        assert rc == 3, "not found must exit 3, got %d" % rc
        rc, _, _ = c.ctl("rm", "/app")
        assert rc != 0, "rm of a non-empty directory without -r must fail"
        c.ctl("rm", "-r", "/app", check=True)
        rc, out, _ = c.ctl("ls", "/")
        assert out.strip() == b"", out
        # Every node serves the same data once it has applied it.
        c.ctl("put", "/k", "v", check=True)
        for i in (1, 2, 3):
            c.wait_value(i, "/k", b"v")
    finally:
        c.down()


def _writer(c, acked, stop, errors):
    k = 0
    while not stop.is_set():
        path, value = "/load/k%04d" % k, b"v%d" % k
        rc, _, err = c.ctl("put", path, value.decode(), timeout=30)
        if rc == 0:
            acked.append((path, value))
        else:
            errors.append(err)
        k += 1


def test_kill_leader_during_load_loses_no_acked_write():
    c = Cluster(base_port=BASE + 10).up()
    try:
        old = c.leader()
        acked, errors, stop = [], [], threading.Event()
        t = threading.Thread(target=_writer, args=(c, acked, stop, errors))
        t.start()
        time.sleep(1.5)
        before = len(acked)
        c.kill(old)
        new = c.leader()
        assert new != old
        time.sleep(2.0)
        stop.set()
        t.join()
        after = len(acked)
        assert before > 5, "the load did not run before the kill (%d)" % before
        assert after > before + 5, "the load did not go on after the kill (%d -> %d)" % (before, after)
        c.start(old)
        for i in (1, 2, 3):
            for path, value in acked:
                c.wait_value(i, path, value)
        print("  %d writes acknowledged, %d failed or unknown, leader %d -> %d"
              % (after, len(errors), old, new))
    finally:
        c.down()


def test_lagging_node_catches_up_by_snapshot():
    c = Cluster(base_port=BASE + 20, extra=["--snapshot-entries", "50", "--keep-entries", "10"]).up()
    try:
        c.leader()
        c.stop(3)
        for k in range(200):
            c.ctl("put", "/snap/k%03d" % k, "v%d" % k, check=True)
        c.start(3)
        c.wait_value(3, "/snap/k199", b"v199")
        for k in range(0, 200, 17):
            c.wait_value(3, "/snap/k%03d" % k, b"v%d" % k)
        assert "installed snapshot" in c.log(3), "node 3 caught up without a snapshot"
    finally:
        c.down()


def test_full_restart_loses_nothing():
    c = Cluster(base_port=BASE + 30).up()
    try:
        c.leader()
        for k in range(50):
            c.ctl("put", "/r/k%02d" % k, "v%d" % k, check=True)
        for i in (1, 2, 3):
            c.kill(i)
        c.up()
        c.leader()
        for k in range(50):
            rc, out, err = c.ctl("get", "/r/k%02d" % k)
            assert rc == 0 and out == b"v%d" % k, (k, rc, out, err)
    finally:
        c.down()


def test_one_node_hosts_several_groups():
    c = Cluster(base_port=BASE + 40, prefixes=("/", "/apps", "/apps/payments")).up()
    try:
        c.leader()
        import json
        # The shards of the cluster file show in their parents' listings
        # before anything is written (their leaders make the tops).
        end = time.time() + 10
        while time.time() < end:
            listings = [c.ctl("ls", p)[1].split() for p in ("/", "/apps", "/apps/payments")]
            if listings == [[b"apps"], [b"payments"], []]:
                break
            time.sleep(0.1)
        assert listings == [[b"apps"], [b"payments"], []], listings
        for path in ("/top", "/apps/web", "/apps/payments/limit"):
            c.ctl("put", path, path + "!", check=True)
        for path in ("/top", "/apps/web", "/apps/payments/limit"):
            rc, out, err = c.ctl("get", path)
            assert rc == 0 and out == (path + "!").encode(), (path, rc, out, err)
        rc, out, _ = c.ctl("status", "--json", servers=c.addr(1))
        groups = json.loads(out)["servers"][0]["groups"]
        assert sorted(g["prefix"] for g in groups) == ["", "/", "/apps", "/apps/payments"], groups  # "" is the meta group
        # Each group has its own log: the write to /apps/payments went to group 3.
        by_prefix = {g["prefix"]: g for g in groups}
        assert by_prefix["/apps/payments"]["commit"] >= 3, by_prefix
        rc, _, err = c.ctl("mv", "/apps/web", "/top2")
        assert rc != 0 and ("EXDEV" in err or "device" in err), (rc, err)
    finally:
        c.down()


def test_quiet_group_elects_when_its_leader_dies():
    """An idle group goes quiet (no heartbeats); node pings still tell its
    followers when the leader's node dies, and they elect a new leader."""
    import json
    c = Cluster(base_port=BASE + 50, extra=["--quiesce-ticks", "5"]).up()
    try:
        old = c.leader()
        c.ctl("put", "/q", "1", check=True)
        time.sleep(1.5)  # 5 ticks of 20 ms: quiet long since
        g = c.status(old)
        assert g is not None
        st1, m1 = c.get_http(old, "/metrics")
        time.sleep(1.0)
        st2, m2 = c.get_http(old, "/metrics")

        def sent(body):
            return sum(int(float(line.split()[-1])) for line in body.splitlines()
                       if line.startswith("confman_peer_frames_sent_total"))
        # Quiet: about one ping per tick per peer (2 peers, 50 ticks), no heartbeats.
        assert sent(m2) - sent(m1) < 2 * 50 * 1.5, (sent(m1), sent(m2))
        c.kill(old)
        new = c.leader()
        assert new != old
        rc, _, err = c.ctl("put", "/q", "2")
        assert rc == 0, err
        rc, out, _ = c.ctl("get", "/q")
        assert out == b"2"
    finally:
        c.down()


if __name__ == "__main__":
    run([test_basic_operations, test_kill_leader_during_load_loses_no_acked_write,
         test_lagging_node_catches_up_by_snapshot, test_full_restart_loses_nothing,
         test_one_node_hosts_several_groups, test_quiet_group_elects_when_its_leader_dies])
