#!/usr/bin/env python3
"""Integration: splitting a written prefix off its shard and merging it back
(issue 13 item 5).

A split keeps every key readable on every replica, with the same versions
and indexes, routes the prefix to a new group born at the parent's split
index, survives a restart, and a merge folds it back: the same keys
readable, and no record of the child's group left in any node's LMDB but
its tombstone. Bad input is refused with a clear message and exit code."""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "22200"))
SLOW = os.environ.get("CONFMAN_SANITIZED") == "1"
KEYS = 30 if SLOW else 60
STORE_GROUPS = os.path.join(BUILD, "tests/integration/store-groups")


def shards(c):
    rc, out, err = c.ctl("shards", "--json")
    assert rc == 0, err
    return {s["prefix"]: s for s in json.loads(out)["shards"]}


def attr_of(c, path):
    rc, out, err = c.ctl("get", "--json", path)
    assert rc == 0, (path, err)
    doc = json.loads(out)
    return {k: doc[k] for k in ("version", "mod_index", "create_index") if k in doc} or doc


def records(c, i, group):
    """The record counts (hs log meta snap stage kv events) node i's store
    holds for group (node i must be stopped)."""
    out = subprocess.run([STORE_GROUPS, os.path.join(c.dir, "node%d" % i)],
                         capture_output=True, check=True, text=True).stdout
    for line in out.splitlines():
        f = [int(x) for x in line.split()]
        if f[0] == group:
            return f[1:]
    return None


def test_split_then_merge():
    c = Cluster(base_port=BASE).up()
    try:
        c.leader()
        for k in range(KEYS):
            c.ctl("put", "/apps/pay/k%03d" % k, "p%d" % k, check=True)
            c.ctl("put", "/apps/web/k%03d" % k, "w%d" % k, check=True)
        c.ctl("put", "/apps/pay/k000", "again", check=True)  # version 2
        c.ctl("mkdir", "/apps/pay/deep/er", check=True)
        c.ctl("put", "/apps/pay/deep/er/f", "deep", check=True)
        before = {p: attr_of(c, p) for p in ("/apps/pay/k000", "/apps/pay/deep/er/f")}
        rc, out, err = c.ctl("shard", "split", "/apps/pay", "--json")
        assert rc == 0, (rc, out, err)
        doc = json.loads(out)
        sh = shards(c)["/apps/pay"]
        assert sh["group"] == doc["group"] and sorted(sh["replicas"]) == [1, 2, 3], sh
        # Same keys, same versions and indexes; both sides still written.
        after = {p: attr_of(c, p) for p in before}
        assert after == before, (before, after)
        for i in (1, 2, 3):
            c.wait_value(i, "/apps/pay/k%03d" % (KEYS - 1), b"p%d" % (KEYS - 1))
            c.wait_value(i, "/apps/pay/deep/er/f", b"deep")
            c.wait_value(i, "/apps/web/k000", b"w0")
        c.ctl("put", "/apps/pay/new", "n", check=True)
        c.ctl("put", "/apps/web/new", "n", check=True)
        rc, out, _ = c.ctl("ls", "/apps")
        assert out.split() == [b"pay", b"web"], out
        # Repeating the split is refused as "a shard already"; renames across fail.
        rc, _, err = c.ctl("shard", "split", "/apps/pay")
        assert rc == 2 and "shard already" in err, (rc, err)
        rc, _, err = c.ctl("mv", "/apps/web/k001", "/apps/pay/k001x")
        assert rc != 0, "rename across the new boundary succeeded"
        # A restart of everything: the new group recovers from its own state.
        for i in (1, 2, 3):
            c.stop(i)
        for i in (1, 2, 3):
            c.start(i)
        c.ctl("put", "/apps/pay/after", "restart", check=True)
        for i in (1, 2, 3):
            c.wait_value(i, "/apps/pay/k001", b"p1")
        gid = doc["group"]
        # The child's index runs ahead of the parent's: the merge's copies
        # must still get indexes above every one the child gave.
        for k in range(40 if SLOW else 120):
            c.ctl("put", "/apps/pay/ahead", "a%d" % k, check=True)
        child_top = attr_of(c, "/apps/pay/ahead")["mod_index"]
        rc, out, err = c.ctl("shard", "merge", "/apps/pay")
        assert rc == 0, (rc, out, err)
        assert "/apps/pay" not in shards(c)
        for i in (1, 2, 3):
            c.wait_value(i, "/apps/pay/k%03d" % (KEYS - 1), b"p%d" % (KEYS - 1))
            c.wait_value(i, "/apps/pay/deep/er/f", b"deep")
            c.wait_value(i, "/apps/pay/after", b"restart")
        for p in ("/apps/pay/ahead", "/apps/pay/k000", "/apps/pay/deep/er/f"):
            assert attr_of(c, p)["mod_index"] > child_top, (p, attr_of(c, p), child_top)
        assert attr_of(c, "/apps/pay/k000")["version"] == 2  # versions are kept
        c.ctl("put", "/apps/pay/merged", "m", check=True)
        time.sleep(0.5)  # every replica applied the retirement
        for i in (1, 2, 3):
            c.stop(i)
        for i in (1, 2, 3):
            left = records(c, i, gid)
            # At most the tombstone (one zero hard state) remains.
            assert left is None or (left[0] <= 1 and sum(left[1:]) == 0), (i, left)
        for i in (1, 2, 3):
            c.start(i)
        c.wait_value(1, "/apps/pay/merged", b"m")
    finally:
        c.down()


def test_split_refusals():
    c = Cluster(base_port=BASE + 10).up()
    try:
        c.leader()
        c.ctl("put", "/a/b/c", "1", check=True)
        c.ctl("shard", "add", "/z", "--replicas", "1,2,3", check=True)
        c.ctl("put", "/z/q/w", "1", check=True)
        before = shards(c)
        cases = [
            (("shard", "split", "/"), 2, "not allowed"),
            (("shard", "split", "/z"), 2, "a shard already"),
            (("shard", "split", "/nosuch"), 3, "no such"),
            (("shard", "split", "/a/b/c"), None, None),  # a file: ENOTDIR
            (("shard", "split", "bad"), None, None),
            (("shard", "merge", "/a"), 3, "no such"),
        ]
        for args, code, text in cases:
            rc, _, err = c.ctl(*args)
            assert rc != 0 and (code is None or rc == code), (args, rc, err)
            assert text is None or text in err, (args, err)
        assert shards(c) == before
        # /z/q splits off /z; then /z cannot merge while a shard lies below it.
        c.ctl("shard", "split", "/z/q", check=True)
        rc, _, err = c.ctl("shard", "merge", "/z")
        assert rc == 2 and "below" in err, (rc, err)
        # Two splits racing for the same prefix: one wins, the other is told.
        c.ctl("put", "/r/x/1", "1", check=True)
        results = []
        ts = [threading.Thread(target=lambda: results.append(c.ctl("shard", "split", "/r/x")))
              for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        codes = sorted(r[0] for r in results)
        assert codes[0] == 0 and codes[1] in (0, 2), results
        assert "/r/x" in shards(c)
        c.wait_value(2, "/r/x/1", b"1")
    finally:
        c.down()


if __name__ == "__main__":
    run([test_split_then_merge, test_split_refusals])
