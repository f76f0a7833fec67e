#!/usr/bin/env python3
"""Integration: backup and restore (issue 14).

Round trip: files over three shards (binary values with NULs, symlinks,
modes, owners), a save under a concurrent writer, then:
  - the backup holds, for every file the writer touched, exactly its last
    acknowledged write at or below the index its group was saved at (and
    none after it): what the cluster held at the snapshot's indexes;
  - a NEW cluster restored from it (another cluster id) holds the same bytes:
    a save of it right after the restore has, shard by shard, the same
    records (values, modes, owners, versions, indexes, mtimes);
  - a subtree restore into the running cluster.
Corruption: a flipped byte, a truncated file, a wrong format version, a
file of another tool: verify and restore refuse naming the section, and
nothing is written. Set CONFMAN_BACKUP_KEYS for a bigger run (the issue's
100,000: CONFMAN_SOAK does it)."""
import base64
import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD, CONFMAND, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "22300"))
SLOW = os.environ.get("CONFMAN_SANITIZED") == "1"
KEYS = int(os.environ.get("CONFMAN_BACKUP_KEYS",
                          "100000" if os.environ.get("CONFMAN_SOAK") else
                          ("2000" if SLOW else "6000")))
LOAD = os.path.join(BUILD, "tests/integration/backup-load")
STORE_GROUPS = os.path.join(BUILD, "tests/integration/store-groups")
PREFIXES = "/b/s0,/b/s1,/b/s2"


def records(c, path):
    """{(its shard's prefix, path): record} of a backup file (inspect --keys);
    the group id, renumbered by a restore, left out."""
    rc, out, err = c.ctl("snapshot", "inspect", "--json", path)
    assert rc == 0, err
    prefix = {g["group"]: g["prefix"] for g in json.loads(out)["groups"]}
    rc, out, err = c.ctl("snapshot", "inspect", "--keys", path, timeout=300)
    assert rc == 0, err
    recs = {}
    for line in out.decode().splitlines():
        r = json.loads(line)
        recs[(prefix[r.pop("group")], r["path"])] = r
    return recs


def files(recs):
    """{path: record} of the files (not the directories every group copies)."""
    return {p: r for (_, p), r in recs.items() if r["mode"] & 0o170000 != 0o040000}


def load(c):
    r = subprocess.run([LOAD, "load", c.servers(), str(KEYS), PREFIXES],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def group_indexes(c, path):
    rc, out, err = c.ctl("snapshot", "inspect", "--json", path)
    assert rc == 0, err
    return {g["prefix"]: g["index"] for g in json.loads(out)["groups"]}


def owner(prefixes, path):
    best = "/"
    for p in prefixes:
        if p != "meta" and (path == p or path.startswith(p.rstrip("/") + "/")) and len(p) > len(best):
            best = p
    return best


def check_against_writer(log, recs, idx):
    """Each file the writer touched: the backup has its last acknowledged
    write at or below its group's saved index (or the loaded value when
    every write came after)."""
    by_path = {}
    unknown = set()
    for line in log.splitlines():
        f = line.split()
        if f[1] == "?":
            unknown.add(f[0])
        else:
            by_path.setdefault(f[0], []).append((int(f[1]), bytes.fromhex(f[2]) if len(f) > 2 else b""))
    checked = 0
    for path, writes in by_path.items():
        if path in unknown:
            continue
        saved_at = idx[owner(idx, path)]
        rec = recs[path]
        before = [w for w in writes if w[0] <= saved_at]
        after = [w for w in writes if w[0] > saved_at]
        assert all(rec["mod_index"] != m for m, _ in after), (path, "a write after the save is in it")
        if before:
            m, v = max(before)
            assert rec["mod_index"] == m and base64.b64decode(rec["value"]) == v, (path, rec, m)
        else:
            assert rec["mod_index"] < min(w[0] for w in writes), (path, rec)
        checked += 1
    return checked


def new_cluster_from(c, f, base):
    n = Cluster(base_port=base, cluster_id="restored", extra=["--restore", f])
    n.up()
    n.extra = []  # restarts start from their store
    n.leader()
    return n


def test_round_trip():
    c = Cluster(base_port=BASE, prefixes=("/", "/b/s1")).up()
    n = None
    try:
        c.leader()
        load(c)
        c.ctl("shard", "split", "/b/s2", check=True)  # the third shard: split off, written
        writer = subprocess.Popen([LOAD, "write", c.servers(), "4", str(KEYS), PREFIXES],
                                  stdout=subprocess.PIPE, text=True)
        f = os.path.join(c.dir, "all.snap")
        rc, out, err = c.ctl("snapshot", "save", "--json", f, timeout=300)
        log = writer.communicate(timeout=60)[0]
        assert rc == 0, (rc, out, err)
        doc = json.loads(out)
        assert doc["groups"] == 4 and doc["keys"] >= KEYS, doc
        recs, idx = records(c, f), group_indexes(c, f)
        checked = check_against_writer(log, files(recs), idx)
        print("  %d files, %d written during the save and checked" % (len(recs), checked))
        assert checked > 10, "the writer barely ran: %d" % checked
        n = new_cluster_from(c, f, BASE + 50)
        g = os.path.join(n.dir, "again.snap")
        rc, _, err = n.ctl("snapshot", "save", g, timeout=300)
        assert rc == 0, err
        again = records(n, g)
        diff = sorted(k for k in recs if recs[k] != again.get(k))
        assert not diff, "the restored cluster differs: %s" % [(recs[k], again.get(k)) for k in diff[:3]]
        # Subtree restore into the running (old) cluster, under another path.
        rc, out, err = c.ctl("snapshot", "restore", f, "--path", "/b/s1", "--to", "/copy",
                             timeout=600)
        assert rc == 0, (rc, out, err)
        fs = files(recs)
        some = sorted(p for p in fs if p.startswith("/b/s1/") and fs[p]["mode"] & 0o170000 == 0o100000)[0]
        rc, out, _ = c.ctl("get", "/copy" + some[len("/b/s1"):])
        assert rc == 0 and out == base64.b64decode(fs[some]["value"]), some
    finally:
        c.down()
        if n:
            n.down()


def test_corruption_refused():
    c = Cluster(base_port=BASE + 10).up()
    try:
        c.leader()
        for k in range(50):
            c.ctl("put", "/x/k%d" % k, "v%d" % k, check=True)
        f = os.path.join(c.dir, "good.snap")
        c.ctl("snapshot", "save", f, check=True)
        data = open(f, "rb").read()
        bad = {
            "flip": (data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x40]) +
                     data[len(data) // 2 + 1:], "checksum mismatch"),
            "trunc": (data[:len(data) * 2 // 3], "truncated"),
            "version": (data[:7] + b"\x09" + data[8:], "format 9"),
            "other": (open(CONFMAND, "rb").read(4096), "not a Confman snapshot"),
        }
        for name, (blob, text) in bad.items():
            p = os.path.join(c.dir, name + ".snap")
            open(p, "wb").write(blob)
            rc, _, err = c.ctl("snapshot", "verify", p)
            assert rc != 0 and text in err, (name, rc, err)
            if name == "flip":
                assert "section" in err, err
            d = os.path.join(c.dir, "restored-" + name)
            r = subprocess.run([CONFMAND, "--id", "1", "--cluster-file",
                                os.path.join(c.dir, "cluster.ini"), "--data", d,
                                "--restore", p, "--restore-keep-cluster-id"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode != 0 and "nothing written" in r.stderr, (name, r.stderr)
            out = subprocess.run([STORE_GROUPS, d], capture_output=True, text=True).stdout
            assert out.strip() == "", (name, "restore wrote", out)
        # The backup's own cluster id is refused for a new cluster.
        d = os.path.join(c.dir, "same-id")
        r = subprocess.run([CONFMAND, "--id", "1", "--cluster-file",
                            os.path.join(c.dir, "cluster.ini"), "--data", d, "--restore", f],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "another id" in r.stderr, r.stderr
        # A subtree restore with a damaged file writes nothing either.
        rc, _, err = c.ctl("snapshot", "restore", os.path.join(c.dir, "flip.snap"), "--path",
                           "/x", "--to", "/y")
        assert rc != 0 and c.ctl("ls", "/y")[0] == 3, err
    finally:
        c.down()


if __name__ == "__main__":
    run([test_round_trip, test_corruption_refused])
