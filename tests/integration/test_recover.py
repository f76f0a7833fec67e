#!/usr/bin/env python3
"""Integration: a lost majority (issue 14, item 5): confmand --force-new-cluster.

Three nodes, two shards (/ and /apps) and the meta group. Node 1 leads every
group (a shorter election timeout makes it win) while a writer records every
acknowledged write; nodes 2 and 3 are killed -9 in the middle of the writes
and their data directories wiped. Restarted as it was, node 1 can commit
nothing; restarted with --force-new-cluster it is the only voter of every
group, serves reads and writes, and every acknowledged write is there (a
write node 1 acknowledged as leader was applied, so committed, on node 1).
Then two new nodes join, every group moves to 1,4,5 (3 voters), nodes 2 and
3 are removed from the table, and a restart of 1, 4, 5 keeps everything. An
empty data directory is refused with a clear message."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import CONFMAND, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "24100"))
SLOW = os.environ.get("CONFMAN_SANITIZED") == "1"
META = 0xffffffff


def groups_of(c, i):
    """{group: its status entry} as node i sees it (None if unreachable)."""
    rc, out, _ = c.ctl("status", "--json", servers=c.addr(i))
    if rc != 0:
        return None
    doc = json.loads(out)
    for node in doc.get("servers", []):
        if node.get("addr") == c.addr(i) and node.get("reachable"):
            return {g["group"]: g for g in node.get("groups", [])}
    return None


def wait_leads_all(c, i, n_groups, timeout=30):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        gs = groups_of(c, i)
        last = gs
        if gs and len(gs) == n_groups and all(g["role"] == "leader" for g in gs.values()):
            return gs
        time.sleep(0.1)
    raise AssertionError("node %d does not lead every group: %r" % (i, last))


def voters(g):
    return sorted(m for m, k in zip(g["members"], g.get("kinds") or ["voter"] * 99)
                  if k == "voter")


class Writer(threading.Thread):
    """One new key per write, alternating between the two shards; records
    which were acknowledged (exit 0) and which had another outcome."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c = c
        self.acked = []
        self.failed = []
        self.stop = threading.Event()

    def run(self):
        k = 0
        while not self.stop.is_set():
            path = ("/k/%05d" if k % 2 == 0 else "/apps/w/%05d") % k
            rc, _, _ = self.c.ctl("--timeout", "2000", "put", path, "v%d" % k, timeout=60)
            (self.acked if rc == 0 else self.failed).append((path, b"v%d" % k))
            k += 1


def check_keys(c, i, keys, every=1):
    """Each (path, value) of keys[::every] and the last ones, read from node
    i's own replica. Returns how many were checked."""
    todo = sorted(set(keys[::every] + keys[-5:]))
    for path, value in todo:
        c.wait_value(i, path, value)
    return len(todo)


def test_empty_store_refused():
    d = os.path.join("/tmp", "confman-recover-empty-%d" % os.getpid())
    shutil.rmtree(d, ignore_errors=True)
    os.mkdir(d)
    ini = os.path.join(d, "cluster.ini")
    with open(ini, "w") as f:
        f.write("[cluster]\nid = confman\ninsecure = true\n[node.1]\naddress = 127.0.0.1:%d\n"
                "[group.1]\nprefix = /\nreplicas = 1\n" % (BASE + 90))
    try:
        r = subprocess.run([CONFMAND, "--id", "1", "--cluster-file", ini, "--data",
                            os.path.join(d, "data"), "--force-new-cluster"],
                           capture_output=True, timeout=30)
        err = r.stderr.decode(errors="replace")
        # 1, the exit of a node that cannot start (not a crash: -6 was SIGABRT)
        assert r.returncode == 1, (r.returncode, err)
        assert "no data of the cluster" in err and "refusing to start" in err, err
        print("  empty store: exit %d, %r" % (r.returncode, err.strip().splitlines()[0][:160]))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def disaster(c, s1):
    """Writes while node 1 leads everything; kill -9 2 and 3 mid-way; wipe
    their data. Returns the writer (its acknowledged and failed writes)."""
    for _ in range(5):
        try:
            wait_leads_all(c, 1, 3, timeout=10)
            break
        except AssertionError:
            # Another node won an election (a loaded machine): restart it;
            # node 1's shorter timeout wins the next one.
            for i in (2, 3):
                c.kill(i)
                c.start(i)
    w = Writer(c)
    w.start()
    end = time.time() + 20
    while len(w.acked) < 20 and time.time() < end:  # a sanitized build writes slowly
        time.sleep(0.2)
    gs = groups_of(c, 1)  # node 1 still leads all: every ack was applied on it
    assert gs and all(g["role"] == "leader" for g in gs.values()), gs
    c.kill(2)
    c.kill(3)
    acked_at_kill = len(w.acked)
    for i in (2, 3):
        shutil.rmtree(os.path.join(c.dir, "node%d" % i))
    time.sleep(3)  # writes now fail (no quorum)
    w.stop.set()
    w.join(60)
    print("  writes: %d acknowledged (%d before the kill), %d not" %
          (len(w.acked), acked_at_kill, len(w.failed)))
    assert len(w.acked) >= 20, len(w.acked)
    c.stop(1)
    return w


def test_force_new_cluster_and_rebuild():
    c = Cluster(base_port=BASE, node_extra={1: ["--election-ticks", "3"]}).up()
    s1 = c.addr(1)
    s145 = ",".join(c.addr(i) for i in (1, 4, 5))
    try:
        c.leader()
        c.ctl("shard", "add", "/apps", "--replicas", "1,2,3", check=True)
        c.ctl("put", "/apps/first", "1", check=True)
        w = disaster(c, s1)
        # Restarted as it was, node 1 alone commits nothing.
        c.start(1)
        rc, _, err = c.ctl("--timeout", "1500", "put", "/k/nope", "x", servers=s1)
        assert rc != 0, "a write committed without a quorum"
        c.stop(1)
        # --force-new-cluster: the only voter of every group.
        c.node_extra[1] = ["--force-new-cluster"]
        t0 = time.time()
        c.start(1)
        c.node_extra[1] = []
        gs = wait_leads_all(c, 1, 3)
        print("  node 1 leads every group %.1fs after its start" % (time.time() - t0))
        for g in gs.values():
            assert voters(g) == [1], g
        with open(os.path.join(c.dir, "node1.log"), errors="replace") as f:
            forced = [ln.strip() for ln in f if "FORCED NEW CLUSTER" in ln]
        assert len(forced) == 3 and all("resumes from index" in ln for ln in forced), forced
        for ln in forced:
            print("  " + ln.split(" WARN ", 1)[-1][:230])
        c.ctl("put", "/k/after", "force", servers=s1, check=True)
        c.ctl("put", "/apps/after", "force", servers=s1, check=True)
        n = check_keys(c, 1, w.acked)
        print("  node 1 alone: all %d acknowledged writes read back" % n)
        # Two new nodes; every group back to three voters; 2 and 3 removed.
        for i in (4, 5):
            c.ctl("node", "add", str(i), "--address", c.addr(i), "--http", c.http(i),
                  servers=s1, check=True)
            c.join(i, via=[1])
        for prefix in ("meta", "/", "/apps"):
            rc, out, err = c.ctl("shard", "move", prefix, "--replicas", "1,4,5",
                                 servers=s145, timeout=300)
            assert rc == 0, (prefix, rc, out, err)
        for i in (2, 3):
            rc, out, err = c.ctl("node", "remove", str(i), "--to", "4", servers=s145,
                                 timeout=120)
            assert rc == 0, (i, rc, out, err)
        rc, out, err = c.ctl("node", "list", "--json", servers=s145)
        assert rc == 0, err
        doc = json.loads(out)
        table = {x["id"]: x for x in (doc["nodes"] if isinstance(doc, dict) else doc)}
        assert table[2]["state"] == table[3]["state"] == "removed", table
        rc, out, err = c.ctl("shards", "--json", servers=s145)
        for s in json.loads(out)["shards"]:
            assert sorted(s["replicas"]) == [1, 4, 5], s
        gs = groups_of(c, 1)
        for g in gs.values():
            assert voters(g) == [1, 4, 5], g
        for i in (4, 5):
            check_keys(c, i, w.acked, every=5)
        # A restart of all three keeps everything; one voter down, writes go on.
        for i in (1, 4, 5):
            c.stop(i)
        for i in (1, 4, 5):
            c.start(i)
        c.ctl("put", "/k/restarted", "yes", servers=s145, check=True)
        for i in (1, 4, 5):
            n = check_keys(c, i, w.acked, every=3)
        c.wait_value(5, "/k/restarted", b"yes")
        c.kill(5)
        c.ctl("put", "/apps/two-of-three", "yes", servers=s145, check=True)
        print("  after the rebuild and a restart: %d keys checked on each of 1, 4, 5; "
              "a write with node 5 down commits" % n)
    finally:
        c.down()


if __name__ == "__main__":
    run([test_empty_store_refused, test_force_new_cluster_and_rebuild])
