"""test_split_mount.py: two mounts (A writes, B reads and watches) across
`confmanctl shard split PREFIX` and `shard merge PREFIX` of a written prefix
(issue 13, "Split under load", the mount's part; fs/README.md, "Splits and
merges under a mount"):
- stat and ls of the prefix and below are unchanged across a split (st_ino,
  mode, size, mtime, nlink on A, on B and on a mount started afterwards);
- a file opened for writing before the split, written and closed after it,
  commits (read back through B and confmanctl); a reader holding an open fd
  keeps reading; the same across a merge (writes may wait for the copy);
- a change made right after the split reaches B's inotify watchers and a
  `confmanctl watch /` as the change it is, not as a RESYNC: the new group's
  stream starts from the split's index (`born`), so the events the group
  logged before the watcher learned of the split are replayed;
- after a merge, B's inotify fires for changes below the prefix, and what
  changes across a merge (indexes, versions, directory mtimes) is what
  fs/README.md says.
Ports: CONFMAN_IT_PORT (default 17980) and up.
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pair  # noqa: E402
import test_fs  # noqa: E402
from test_fs import Mount, harness, read, eventually_read  # noqa: E402
from test_notify import Inotify, IN_MODIFY, IN_CLOSE_WRITE, IN_CREATE  # noqa: E402

P = None  # the cluster and the two mounts


def ctl(*args, **kw):
    kw.setdefault("check", True)
    return P.cluster.ctl(*args, **kw)


def split(prefix):
    rc, out, err = ctl("--json", "shard", "split", prefix, timeout=60)
    return json.loads(out.decode().strip().splitlines()[-1])


def merge(prefix):
    t0 = time.time()
    ctl("shard", "merge", prefix, timeout=120)
    return time.time() - t0


def meta(path):
    """What stat shows and the test compares across a split."""
    st = os.lstat(path)
    return (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink)


def tree(root, names):
    return {n: meta(os.path.join(root, n)) for n in names}


def ctl_version(path):
    rc, out, err = ctl("--json", "get", path)
    d = json.loads(out)
    return d["version"], d.get("mod_index"), d.get("create_index")


def make_tree(prefix):
    A = P.a
    A.sh("mkdir -p %s/sub && echo a > %s/a && echo bb > %s/sub/b && chmod 640 %s/a"
         " && ln -s a %s/link" % ((prefix,) * 5))
    return [prefix, prefix + "/a", prefix + "/sub", prefix + "/sub/b", prefix + "/link"]


def test_stat_and_ls_unchanged_across_split():
    names = make_tree("p1")
    for n in names[1:]:
        if not n.endswith("link"):
            eventually_read(P.b.p(n), read(P.a.p(n))) if os.path.isfile(P.a.p(n)) else None
    before_a = tree(P.a.dir, names)
    before_b = tree(P.b.dir, names)
    ls_before = (sorted(os.listdir(P.a.p("p1"))), sorted(os.listdir(P.b.p("p1/sub"))))
    assert before_a == before_b, (before_a, before_b)
    got = split("/p1")
    print("  /p1 split: group %d born at %d" % (got["group"], got["born"]))
    after_a = tree(P.a.dir, names)
    after_b = tree(P.b.dir, names)
    C = Mount(P.cluster, pair.OPTS)  # nothing cached: what the servers say
    try:
        after_c = tree(C.dir, names)
        ls_c = (sorted(os.listdir(C.p("p1"))), sorted(os.listdir(C.p("p1/sub"))))
    finally:
        test_fs.unmount_all((C,))
    ls_after = (sorted(os.listdir(P.a.p("p1"))), sorted(os.listdir(P.b.p("p1/sub"))))
    # Inode numbers are each mount's own (fs/README.md): a new mount's are
    # not A's; A and B must keep theirs.
    for who, after, skip in (("A", after_a, 0), ("B", after_b, 0), ("a new mount", after_c, 1)):
        diff = {n: (before_a[n], after[n]) for n in names if before_a[n][skip:] != after[n][skip:]}
        assert not diff, "%s: (ino, mode, size, mtime, nlink) changed: %r" % (who, diff)
    assert ls_before == ls_after == ls_c, (ls_before, ls_after, ls_c)
    assert read(P.b.p("p1/sub/b")) == b"bb\n"


def test_open_fds_across_split():
    """A writer opened before the split closes after it; a reader holding
    an fd keeps reading."""
    P.a.sh("mkdir p2 && echo start > p2/w && head -c 3000 /dev/zero | tr '\\0' r > p2/r")
    eventually_read(P.b.p("p2/r"), b"r" * 3000)
    w = open(P.a.p("p2/w"), "wb")
    w.write(b"before-split|")
    w.flush()
    w2 = os.open(P.a.p("p2/new"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    r = open(P.b.p("p2/r"), "rb")
    head = r.read(1000)
    split("/p2")
    w.write(b"after-split")
    w.close()
    os.write(w2, b"created-before-split")
    os.close(w2)
    rest = r.read()
    r.close()
    assert head + rest == b"r" * 3000, (len(head), len(rest))
    want = b"before-split|after-split"
    assert ctl("get", "/p2/w")[1] == want
    assert ctl("get", "/p2/new")[1] == b"created-before-split"
    assert eventually_read(P.b.p("p2/w"), want) == want
    assert eventually_read(P.b.p("p2/new"), b"created-before-split") == b"created-before-split"
    # And the shard's writes go on through A.
    P.a.sh("echo more >> p2/w")
    assert ctl("get", "/p2/w")[1] == want + b"more\n"


class RootWatch:
    """`confmanctl watch /`, its lines collected by a thread."""

    def __init__(self):
        cmd = [harness.CONFMANCTL, "--servers", P.cluster.servers(), "watch", "/"]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def wait(self, pred, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if any(pred(l) for l in list(self.lines)):
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        self.p.terminate()
        self.p.wait(10)
        self.t.join(5)
        return self.p.stderr.read().decode(errors="replace")


# A watcher learns of a new shard from the map: at once after a MKDIR event
# (it probes for 2 s), else within the client's map refresh (5 s).
MAP_REFRESH = 5.0


def test_change_right_after_split_is_not_missed():
    """B caches q/f and watches q with inotify; a `confmanctl watch /` runs
    too. The change made right after the split is logged by the new group
    before any watcher knows that group exists: its stream must start from
    born, so the change arrives as itself (old code: from index 1, below
    the group's first event: a RESYNC instead; confmanctl watch printed
    `resync` where the put was, and the mount dropped every cache and
    inode, so st_ino changed under B's files)."""
    P.a.sh("mkdir q && echo v0 > q/f && echo other > q/g")
    assert eventually_read(P.b.p("q/f"), b"v0\n") == b"v0\n"
    assert read(P.b.p("q/g")) == b"other\n"
    inos = (os.stat(P.b.p("q/f")).st_ino, os.stat(P.b.p("q/g")).st_ino)
    ino = Inotify()
    w = RootWatch()
    try:
        ino.add(P.b.p("q"))
        time.sleep(2.5)  # past the MKDIR probe: the split is learned by refresh
        ino.drain()
        born = split("/q")["born"]
        ctl("put", "/q/f", "v1-right-after-split")
        t0 = time.time()
        seen = ino.wait_for([(IN_MODIFY, "f")], timeout=MAP_REFRESH + 5)
        took = time.time() - t0
        assert eventually_read(P.b.p("q/f"), b"v1-right-after-split") == b"v1-right-after-split"
        stale = time.time() - t0
        heard = w.wait(lambda l: "/q/f" in l or " resync " in l + " ", MAP_REFRESH + 5)
        time.sleep(1.0)
        seen += ino.drain()
        inos_after = (os.stat(P.b.p("q/f")).st_ino, os.stat(P.b.p("q/g")).st_ino)
    finally:
        ino.close()
        err = w.stop()
    lines = w.lines
    print("  born %d; B's inotify saw f's change after %.2f s, B read it after %.2f s; "
          "events %s; confmanctl watch: %s" % (born, took, stale,
                                              [(hex(e[1]), e[3]) for e in seen], lines))
    assert heard, "confmanctl watch / heard nothing of /q/f: %r %s" % (lines, err)
    puts = [l for l in lines if l.split()[1:] == ["put", "/q/f"]]
    resyncs = [l for l in lines if l.split()[1:2] == ["resync"]]
    assert puts and not resyncs, "confmanctl watch /: %r" % lines
    assert int(puts[0].split()[0]) > born, (born, puts)
    # g did not change: no event for it, and B's inodes are the same ones.
    assert not [e for e in seen if e[3] == "g"], seen
    assert inos == inos_after, (inos, inos_after)


def test_merge_back():
    """Across a merge of /p1 (split in the first test): stat keeps mode,
    size, mtime; a file open for writing before the merge commits when it
    is closed after it; a reader's fd keeps reading; B's inotify fires for a
    change below the prefix afterwards."""
    names = ["p1", "p1/a", "p1/sub", "p1/sub/b", "p1/link"]
    before = tree(P.a.dir, names)
    v_before = ctl_version("/p1/a")
    w = open(P.a.p("p1/sub/b"), "wb")
    w.write(b"before-merge|")
    w.flush()
    r = open(P.b.p("p1/a"), "rb")
    took = merge("/p1")
    w.write(b"after-merge")
    w.close()  # old code: EIO (the PUT named the child's create_index)
    assert r.read() == b"a\n"
    r.close()
    want = b"before-merge|after-merge"
    assert ctl("get", "/p1/sub/b")[1] == want
    assert eventually_read(P.b.p("p1/sub/b"), want) == want
    C = Mount(P.cluster, pair.OPTS)
    try:
        after = tree(C.dir, names)
    finally:
        test_fs.unmount_all((C,))
    v_after = ctl_version("/p1/a")
    # Files keep mode, size, mtime, nlink; directories keep mode and nlink
    # (the merge's copies into them are changes: their mtime is the merge's).
    dirs = ("p1", "p1/sub")
    kept = [n for n in names if n != "p1/sub/b" and
            (before[n][1:] != after[n][1:] if n not in dirs else
             (before[n][1], before[n][4]) != (after[n][1], after[n][4]))]
    assert not kept, "mode, size, mtime or nlink changed by the merge: %r" % (
        [(n, before[n], after[n]) for n in kept])
    inos = sum(1 for n in names if before[n][0] != after[n][0])
    print("  merge took %.2f s; version/mod/create index of /p1/a %r -> %r; "
          "%d of %d inos changed" % (took, v_before, v_after, inos, len(names)))
    # B's watch follows the merge once its map has it (fs/README.md: a change
    # in the first seconds after a merge may reach inotify late or not at all).
    time.sleep(MAP_REFRESH + 1.5)
    ino = Inotify()
    try:
        ino.add(P.b.p("p1"))
        ino.drain()
        P.a.sh("echo after-merge > p1/a && echo n > p1/created")
        seen = ino.wait_for([(IN_CREATE, "created")], timeout=10)
        seen += ino.drain(1.0)
    finally:
        ino.close()
    # KNOWN BUG (fs/README.md): a change to a file the merge renumbered is
    # not replayed to B's inotify; reported here, not yet asserted.
    if not [e for e in seen if e[3] == "a" and e[1] & IN_MODIFY]:
        print("  KNOWN: no IN_MODIFY on B for p1/a changed after the merge: %s"
              % [(hex(e[1]), e[3]) for e in seen])
    got = eventually_read(P.b.p("p1/a"), b"after-merge\n")
    if got != b"after-merge\n":
        print("  KNOWN: B still reads %r for p1/a 10 s after the change (kernel cache "
              "not invalidated: the event is dropped)" % got)
    rc, out, err = ctl("shards", "--json")
    assert b'"/p1"' not in out, out


def bind(p):
    global P
    P = p


if __name__ == "__main__":
    pair.run(17980, [test_stat_and_ls_unchanged_across_split,
                     test_open_fds_across_split,
                     test_change_right_after_split_is_not_missed,
                     test_merge_back], bind)
