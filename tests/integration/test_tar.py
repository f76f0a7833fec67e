#!/usr/bin/env python3
"""Integration: `confmanctl export` and `import` (issue 14 item 6).

A tree (binary values with NUL bytes, nested directories, modes 0600, 0755
and 04755, numeric owners, times to the nanosecond, a symlink) that spans a
shard boundary goes out through export, is listed by GNU tar, comes back in
below another path (across a shard boundary again), and every entry's
bytes, mode, uid, gid and mtime are compared. Crafted archives (absolute
paths, '..', a device node, a FIFO, a socket-less hard link, oversized
values, a bad name, no tar at all) are refused or skipped entry by entry
with a message, and nothing is written outside PATH. Existing files are
kept unless --force (exit 4, the path named)."""
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import CONFMANCTL, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "26100"))
BIN = bytes(range(256)) * 3 + b"\0\0tail\0"


def add(tf, name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, mtime=1700000000,
        link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = kind, mode, uid, gid, mtime, link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(ti, io.BytesIO(data) if ti.size else None)


def source_tar():
    """The tree of the round trip, as a pax archive made by Python."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "etc", tarfile.DIRTYPE, mode=0o755, uid=10, gid=20, mtime=1600000000)
        add(tf, "etc/app.conf", data=b"port = 80\n", mode=0o600, uid=1000, gid=1001,
            mtime=1650000000.25)
        add(tf, "etc/bin.dat", data=BIN, mode=0o755, uid=7, gid=8)
        add(tf, "etc/empty", data=b"", mode=0o640)
        add(tf, "etc/sub/deeper/leaf", data=b"\0" * 100, mode=0o644)  # parents implicit
        add(tf, "etc/current", tarfile.SYMTYPE, mode=0o777, link="app.conf", uid=3, gid=4)
        add(tf, "sh", tarfile.DIRTYPE, mode=0o700, uid=5, gid=6, mtime=1500000000)
        add(tf, "sh/suid", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0)
        add(tf, "sh/nested", tarfile.DIRTYPE, mode=0o750, mtime=1400000000)
        add(tf, "sh/nested/v", data=b"x\0y", mode=0o600, uid=65534, gid=65534)
        add(tf, "sh/caf\u00e9", data=b"utf-8 name")
    return buf.getvalue()


def ls_json(c, path):
    rc, out, err = c.ctl("ls", "--json", path)
    assert rc == 0, (path, err)
    return {e["name"]: e for e in json.loads(out)["entries"]}


def snapshot(c, root):
    """{relative path: (kind, mode, uid, gid, mtime_ns, bytes)} of every node below root."""
    out = {}

    def walk(d, rel):
        for name, e in ls_json(c, d).items():
            r = rel + name
            if e["mode"] & 0o170000 == 0o040000:
                # A shard's top: its listing shows the parent's boundary node.
                rc, doc, err = c.ctl("get", "--json", d + "/" + name)
                assert rc == 0, (r, err)
                e = json.loads(doc)
            meta = (e["mode"], e["uid"], e["gid"], e["mtime_ns"])
            if e["mode"] & 0o170000 == 0o040000:
                out[r] = ("dir",) + meta + (b"",)
                walk(d + "/" + name, r + "/")
            else:
                rc, val, err = c.ctl("get", d + "/" + name)
                assert rc == 0, (r, err)
                out[r] = ("file",) + meta + (val,)
    walk(root, "")
    return out


def export(c, path, *more):
    rc, out, err = c.ctl("export", path, *more, timeout=120)
    assert rc == 0, (rc, err)
    assert "export:" in err and "files" in err, err  # the summary line
    return out, err


def import_(c, data, path, *opts):
    return c.ctl("import", *opts, "-", path, input=data, timeout=120)


def tar_members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/"): (m, tf.extractfile(m).read() if m.isfile() else b"")
                for m in tf.getmembers()}


def test_round_trip():
    c = Cluster(base_port=BASE).up()
    tmp = tempfile.mkdtemp(prefix="confman-tar-")
    try:
        c.leader()
        for p in ("/src/sh", "/dst/sh"):  # the tree spans a shard on both sides
            c.ctl("mkdir", os.path.dirname(p), check=True)
            c.ctl("shard", "add", "--replicas", "1,2,3", p, check=True)
        src = source_tar()
        rc, _, err = import_(c, src, "/src")
        assert rc == 0, (rc, err)
        assert "import: 7 files, 3 directories, 1 symlinks" in err, err
        # Written through the library too: a nanosecond mtime the server stamped.
        c.ctl("put", "/src/sh/nested/stamped", "now", check=True)
        want = snapshot(c, "/src")
        assert want["sh/suid"][1] == 0o104755 and want["etc/app.conf"][1:4] == (0o100600, 1000,
                                                                                1001), want
        assert want["etc/current"][1] == 0o120777 and want["etc/current"][5] == b"app.conf"
        assert want["etc/bin.dat"][5] == BIN and want["etc/app.conf"][4] == 1650000000250000000
        assert want["sh"][1:5] == (0o040700, 5, 6, 1500000000 * 10**9), want["sh"]

        # Export to stdout and to a file: the same bytes (the walk is in name order).
        out, err = export(c, "/src")
        path = os.path.join(tmp, "tree.tar")
        export(c, "/src", path)
        assert open(path, "rb").read() == out and not os.path.exists(path + ".tmp")
        names = subprocess.run(["tar", "-tf", path], capture_output=True, check=True,
                               text=True).stdout.split()
        assert sorted(n.rstrip("/") for n in names) == sorted(want), names
        listing = subprocess.run(["tar", "--numeric-owner", "-tvf", path], capture_output=True,
                                 check=True, text=True).stdout
        assert "-rwsr-xr-x 0/0" in listing and "-rw------- 1000/1001" in listing, listing
        assert "lrwxrwxrwx 3/4" in listing and "etc/current -> app.conf" in listing, listing
        assert "drwx------ 5/6" in listing, listing
        # The archive's own view (Python's reader): bytes, modes, owners, times.
        mem = tar_members(out)
        for rel, (kind, mode, uid, gid, mtime_ns, val) in want.items():
            m, data = mem[rel]
            assert (m.mode, m.uid, m.gid) == (mode & 0o7777, uid, gid), (rel, m.mode)
            assert abs(m.mtime - mtime_ns / 1e9) < 1e-6, (rel, m.mtime, mtime_ns)
            assert (m.issym() and m.linkname.encode() == val) or data == val, rel

        # Back in below another path (from FILE this time); every node equal,
        # to the nanosecond.
        rc, _, err = c.ctl("import", path, "/dst", timeout=120)
        assert rc == 0, (rc, err)
        got = snapshot(c, "/dst")
        assert got == want, {k: (want.get(k), got.get(k)) for k in set(want) | set(got)
                             if want.get(k) != got.get(k)}
        # Again without --force: every file exists (exit 4, each named), nothing changed.
        rc, _, err = import_(c, out, "/dst")
        assert rc == 4 and "/dst/etc/app.conf: exists" in err, (rc, err)
        assert snapshot(c, "/dst") == want
    finally:
        c.down()
        subprocess.run(["rm", "-rf", tmp])


def crafted_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "ok.txt", data=b"fine")
        add(tf, "/etc/abs", data=b"absolute")
        add(tf, "../escape", data=b"up")
        add(tf, "a/../../b", data=b"up")
        add(tf, "dev/null", tarfile.CHRTYPE)
        add(tf, "dev/sda", tarfile.BLKTYPE)
        add(tf, "fifo", tarfile.FIFOTYPE)
        add(tf, "hard", tarfile.LNKTYPE, link="ok.txt")
        add(tf, "big", data=b"b" * (2 << 20))   # over the cluster's 1 MiB
        add(tf, "huge", data=b"h" * (5 << 20))  # over any server's limit
        add(tf, "n" * 300, data=b"long name")   # a component over NAME_MAX
        add(tf, "./dir/./also-ok", data=b"fine too")
    return buf.getvalue()


def test_refusals():
    c = Cluster(base_port=BASE + 10).up()
    try:
        c.leader()
        c.ctl("put", "/keep/f1", "original", check=True)
        before = ls_json(c, "/")
        rc, _, err = import_(c, crafted_tar(), "/in")
        assert rc == 6, (rc, err)
        for msg in ("/etc/abs: refused: an absolute path",
                    "../escape: refused: a '..' component",
                    "a/../../b: refused: a '..' component",
                    "dev/null: skipped: a character device",
                    "dev/sda: skipped: a block device",
                    "fifo: skipped: a FIFO",
                    "hard: skipped: a hard link (to ok.txt)",
                    "/in/big: skipped: larger than the cluster's limit for a value "
                    "(the server answered EFBIG)",
                    "huge: skipped: 5242880 bytes, larger than any server takes",
                    "refused: not a valid Confman path (ENAMETOOLONG)",
                    "import: 2 files, 0 directories, 0 symlinks",
                    "0 existed, 10 skipped, 0 failed"):
            assert msg in err, (msg, err)
        # Only the two good files were written, and only below /in.
        assert set(ls_json(c, "/")) == set(before) | {"in"}, ls_json(c, "/")
        assert set(ls_json(c, "/in")) == {"ok.txt", "dir"}, ls_json(c, "/in")
        assert c.ctl("get", "/in/dir/also-ok")[1] == b"fine too"
        for p in ("/etc", "/escape", "/b", "/in/dev", "/in/big", "/in/hard", "/in/fifo"):
            assert c.ctl("get", p)[0] == 3, p

        # Not a tar at all: refused, nothing written.
        rc, _, err = import_(c, b"this is no archive\n" * 100, "/none")
        assert rc == 6 and "Unrecognized archive format" in err, (rc, err)
        assert c.ctl("ls", "/none")[0] == 3

        # An existing file: exit 4, the path named, the file untouched; the rest written.
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            add(tf, "f1", data=b"replacement", mode=0o600)
            add(tf, "f2", data=b"new")
        rc0, out0, _ = c.ctl("get", "--json", "/keep/f1")
        rc, _, err = import_(c, buf.getvalue(), "/keep")
        assert rc == 4 and "/keep/f1: exists; not replaced" in err, (rc, err)
        assert c.ctl("get", "--json", "/keep/f1")[1] == out0  # same value, version, times
        assert c.ctl("get", "/keep/f2")[1] == b"new"
        rc, _, err = import_(c, buf.getvalue(), "/keep", "--force")
        assert rc == 0, (rc, err)
        rc, out, _ = c.ctl("get", "--json", "/keep/f1")
        doc = json.loads(out)
        assert doc["value"] == "replacement" and doc["mode"] == 0o100600, doc
        # A directory in the way of a file is never replaced, even with --force.
        c.ctl("mkdir", "/keep/d", check=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            add(tf, "d", data=b"file")
        rc, _, err = import_(c, buf.getvalue(), "/keep", "--force")
        assert rc == 4 and "/keep/d: a directory is in the way" in err, (rc, err)

        # Usage: a tar is never written to a terminal or read from one; bad PATH.
        rc, _, err = c.ctl("export", "relative")
        assert rc == 6, (rc, err)
        rc, _, err = c.ctl("import", "/nonexistent.tar", "/x")
        assert rc == 3 and "nonexistent.tar" in err, (rc, err)
        rc = subprocess.run([CONFMANCTL, "import"], capture_output=True).returncode
        assert rc == 2
    finally:
        c.down()


if __name__ == "__main__":
    run([test_round_trip, test_refusals])
