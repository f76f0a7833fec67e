#!/usr/bin/env python3
"""Integration: the cluster changes who serves the data, online (issue 13).

A fourth node joins (node add, then confmand --join), shards move onto it,
node 3 is removed (its replicas go to node 4), everything restarts, and
every key is intact on every replica. A removed node that comes back is
refused and disturbs nothing. Bad input is refused with a clear message and
exit code, and changes nothing."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import CONFMAND, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "13100"))
SLOW = os.environ.get("CONFMAN_SANITIZED") == "1"
KEYS = 30 if SLOW else 80


def shards(c, servers=None):
    rc, out, err = c.ctl("shards", "--json", servers=servers)
    assert rc == 0, err
    return {s["prefix"]: s for s in json.loads(out)["shards"]}


def nodes(c):
    rc, out, err = c.ctl("node", "list", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    return {n["id"]: n for n in (doc["nodes"] if isinstance(doc, dict) else doc)}


def fill(c, n):
    for k in range(n):
        c.ctl("put", "/k/%03d" % k, "v%d" % k, check=True)
        c.ctl("put", "/apps/a/%03d" % k, "a%d" % k, check=True)


def check_all(c, node_ids, n):
    """Every key, read from each node's own replica (follower reads)."""
    for i in node_ids:
        for k in range(0, n, 7):
            c.wait_value(i, "/k/%03d" % k, b"v%d" % k)
            c.wait_value(i, "/apps/a/%03d" % k, b"a%d" % k)


def meta_term(c, i):
    rc, out, _ = c.ctl("status", "--json", servers=c.addr(i))
    if rc != 0:
        return None
    for node in json.loads(out).get("servers", []):
        for g in node.get("groups", []):
            if g.get("group") == 0xffffffff:
                return g.get("term")
    return None


def join_node4(c):
    rc, _, err = c.ctl("node", "add", "4", "--address", c.addr(4), "--http", c.http(4))
    assert rc == 0, err
    # Again: converges (the table holds the same address).
    rc, _, err = c.ctl("node", "add", "4", "--address", c.addr(4), "--http", c.http(4))
    assert rc == 0, ("node add is not idempotent", rc, err)
    c.join(4)


def test_join_move_remove_restart():
    c = Cluster(base_port=BASE).up()
    try:
        c.leader()
        c.ctl("shard", "add", "/apps", "--replicas", "1,2,3", check=True)
        fill(c, KEYS)
        join_node4(c)
        # Nothing is assigned to a node that joined: it only has the map.
        assert all(4 not in s["replicas"] for s in shards(c).values())
        rc, out, err = c.ctl("shard", "move", "/", "--replicas", "1,2,4", timeout=200)
        assert rc == 0, (rc, out, err)
        assert b"promote" in out and b"remove" in out, out
        assert shards(c)["/"]["replicas"] == [1, 2, 4]
        # node remove: the rest of node 3's replicas (/apps and meta) go to 4.
        rc, out, err = c.ctl("node", "remove", "3", "--to", "4", timeout=200)
        assert rc == 0, (rc, out, err)
        for s in shards(c).values():
            assert sorted(s["replicas"]) == [1, 2, 4], s
        table = nodes(c)
        assert table[3]["state"] == "removed", table
        st, body = c.get_http(1, "/metrics")
        text = body.decode() if isinstance(body, bytes) else body
        assert st == 200 and 'confman_shard_info{group="1",prefix="/",replicas="1,2,4"' in text, \
            text[-2000:]
        assert 'confman_group_members{group="1",kind="voter"} 3' in text, text[-2000:]
        assert "confman_group_conf_pending" in text
        check_all(c, (1, 2, 4), KEYS)
        # The removed node, still running, is refused, changes nothing and
        # stops by itself (as etcd's removed members do).
        c.meant_down.add(3)
        term = meta_term(c, 1)
        end = time.time() + 10
        while c.alive(3) and time.time() < end:
            time.sleep(0.1)
        assert not c.alive(3) and "was removed from the cluster: stopping" in c.log(3), c.log(3)
        assert meta_term(c, 1) == term, "a removed node disturbed the meta group"
        # Everything restarts: the node that joined finds its table in its store.
        for i in (1, 2, 4):
            c.stop(i)
        for i in (1, 2, 4):
            c.start(i)
        c.ctl("put", "/k/after", "restart", servers=",".join(c.addr(i) for i in (1, 2, 4)),
              check=True)
        check_all(c, (1, 2, 4), KEYS)
        # A removed node that comes back with its old data is refused (a
        # clear line in its peers' logs and its own) and stops again.
        term = meta_term(c, 1)
        r = subprocess.run([CONFMAND, "--id", "3", "--cluster-file",
                            os.path.join(c.dir, "cluster.ini"), "--data",
                            os.path.join(c.dir, "node3"), "--tick-ms", "20"],
                           capture_output=True, text=True, timeout=30)
        assert "was removed from the cluster" in r.stderr, r.stderr[-2000:]
        assert any("refused removed node 3" in c.log(i) for i in (1, 2, 4))
        assert meta_term(c, 1) == term
        c.ctl("put", "/k/after2", "x", servers=",".join(c.addr(i) for i in (1, 2, 4)),
              check=True)
    finally:
        c.down()


def test_refusals():
    c = Cluster(base_port=BASE + 10).up()
    try:
        c.leader()
        c.ctl("put", "/x", "1", check=True)
        before = shards(c)
        # Moving to an unknown node, an empty set: exit 2, nothing changed.
        for reps in ("1,2,9", "", "1,1,2"):
            rc, _, err = c.ctl("shard", "move", "/", "--replicas", reps)
            assert rc == 2, (reps, rc, err)
        rc, _, err = c.ctl("shard", "move", "/nosuch", "--replicas", "1,2,3")
        assert rc == 2, (rc, err)
        # Removing a node with nowhere to move its replicas.
        rc, _, err = c.ctl("node", "remove", "3")
        assert rc == 2, (rc, err)
        # An id already in the table (ids are never reused).
        rc, _, err = c.ctl("node", "add", "2", "--address", "127.0.0.1:1")
        assert rc == 4, (rc, err)
        assert shards(c) == before
        # etcd's strict check: with node 3 down, removing node 2 would leave
        # one live voter of two: refused, with the reason.
        c.kill(3)
        time.sleep(1)  # its node is silent: no longer counted as live
        rc, out, err = c.ctl("shard", "move", "/", "--replicas", "1,3", timeout=60)
        assert rc == 2 and "NOQUORUM" in err + out.decode(), (rc, out, err)
        assert shards(c) == before
        c.start(3)
        # A node joining the wrong cluster, or one never added: clear errors.
        d = os.path.join(c.dir, "stranger")
        r = subprocess.run([CONFMAND, "--id", "7", "--join", c.addr(1), "--listen",
                            "127.0.0.1:%d" % (BASE + 9), "--data", d, "--cluster-id", "other",
                            "--insecure"],
                           capture_output=True, timeout=30)
        assert r.returncode != 0 and b"refused" in r.stderr, r
        r = subprocess.run([CONFMAND, "--id", "7", "--join", c.addr(1), "--listen",
                            "127.0.0.1:%d" % (BASE + 9), "--data", d + "2", "--insecure"],
                           capture_output=True, timeout=30)
        assert r.returncode != 0 and b"node add 7" in r.stderr, r
    finally:
        c.down()


if __name__ == "__main__":
    run([test_join_move_remove_restart, test_refusals])
