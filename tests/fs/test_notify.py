"""test_notify.py: two confman-fs mounts of one 3-node cluster: the watch
stream keeps each mount's caches fresh and replays changes made elsewhere so
inotify on the other mount sees them; extended attributes.

inotify is used through ctypes (libc inotify_init1/inotify_add_watch/read):
no package needed.
"""
import ctypes
import errno
import os
import select
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, harness, read, eventually_read, expect_errno  # noqa: E402

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_OPEN = 0x20
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
ALL = 0xfff

_libc = ctypes.CDLL(None, use_errno=True)


class Inotify:
    def __init__(self):
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.wds = {}

    def add(self, path, mask=ALL):
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch " + path)
        self.wds[wd] = path
        return wd

    def read(self, timeout):
        """Events ready within timeout: [(wd, mask, cookie, name)]."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out = []
        i = 0
        while i < len(buf):
            wd, mask, cookie, ln = struct.unpack_from("iIII", buf, i)
            name = buf[i + 16:i + 16 + ln].split(b"\0", 1)[0].decode()
            out.append((wd, mask, cookie, name))
            i += 16 + ln
        return out

    def wait_for(self, want, timeout=5):
        """Wait until every (mask_bit, name) in want was seen; returns all events."""
        seen = []
        need = list(want)
        end = time.time() + timeout
        while need and time.time() < end:
            for ev in self.read(max(0.0, end - time.time())):
                seen.append(ev)
                need = [(m, n) for (m, n) in need if not (ev[1] & m and ev[3] == n)]
        if need:
            raise AssertionError("inotify: missing %s; saw %s" % (
                [(hex(m), n) for m, n in need], [(hex(e[1]), e[3]) for e in seen]))
        return seen

    def drain(self, quiet=0.3):
        evs = []
        while True:
            got = self.read(quiet)
            if not got:
                return evs
            evs += got

    def close(self):
        os.close(self.fd)


CLUSTER = None
A = None
B = None


def test_write_on_a_read_on_b():
    A.sh("echo one > shared")
    assert eventually_read(B.p("shared"), b"one\n") == b"one\n"
    # B has it cached now (dentry, attrs); a change on A is fresh on B within ~1 s.
    os.stat(B.p("shared"))
    A.sh("echo two-longer > shared")
    assert eventually_read(B.p("shared"), b"two-longer\n", timeout=1.5) == b"two-longer\n"
    assert os.stat(B.p("shared")).st_size == len(b"two-longer\n")


def test_cached_attrs_fresh_after_remote_change():
    """entry/attr timeouts are long on these mounts: only the watch can
    make B's cached size change within the second."""
    A.sh("echo a > cached")
    assert eventually_read(B.p("cached"), b"a\n") == b"a\n"
    assert os.stat(B.p("cached")).st_size == 2
    CLUSTER.ctl("put", "/cached", "from-confmanctl", check=True)
    end = time.time() + 1.5
    while time.time() < end and os.stat(B.p("cached")).st_size != 15:
        time.sleep(0.02)
    assert os.stat(B.p("cached")).st_size == 15
    assert read(B.p("cached")) == b"from-confmanctl"


def test_inotify_modify_from_other_mount_and_confmanctl():
    A.sh("echo x > watched")
    assert eventually_read(B.p("watched"), b"x\n") == b"x\n"
    ino = Inotify()
    try:
        ino.add(B.dir)
        ino.add(B.p("watched"))
        time.sleep(0.2)
        ino.drain(0.2)
        A.sh("echo changed-on-a > watched")
        ino.wait_for([(IN_MODIFY, "watched"), (IN_CLOSE_WRITE, "watched")])
        assert read(B.p("watched")) == b"changed-on-a\n"
        ino.drain()
        CLUSTER.ctl("put", "/watched", "by-ctl", check=True)
        ino.wait_for([(IN_MODIFY, "watched"), (IN_CLOSE_WRITE, "watched")])
        assert read(B.p("watched")) == b"by-ctl"
        ino.drain()
        A.sh("chmod 600 watched")
        ino.wait_for([(IN_ATTRIB, "watched")])
        assert os.stat(B.p("watched")).st_mode & 0o777 == 0o600
    finally:
        ino.close()


def test_inotify_create_delete_rename_mkdir():
    ino = Inotify()
    try:
        ino.add(B.dir)
        time.sleep(0.2)
        ino.drain(0.2)
        A.sh("echo new > created")
        ino.wait_for([(IN_CREATE, "created"), (IN_CLOSE_WRITE, "created")])
        assert eventually_read(B.p("created"), b"new\n") == b"new\n"
        A.sh("mv created moved")
        evs = ino.wait_for([(IN_MOVED_FROM, "created"), (IN_MOVED_TO, "moved")])
        cookies = {e[2] for e in evs if e[1] & (IN_MOVED_FROM | IN_MOVED_TO)}
        assert len(cookies) == 1, evs
        assert read(B.p("moved")) == b"new\n"
        assert not os.path.exists(B.p("created"))
        A.sh("rm moved")
        ino.wait_for([(IN_DELETE, "moved")])
        assert not os.path.exists(B.p("moved"))
        A.sh("mkdir somedir")
        ino.wait_for([(IN_CREATE | IN_ISDIR, "somedir")])
        assert os.path.isdir(B.p("somedir"))
        CLUSTER.ctl("put", "/from-ctl", "c", check=True)
        ino.wait_for([(IN_CREATE, "from-ctl")])
        A.sh("rmdir somedir")
        ino.wait_for([(IN_DELETE, "somedir")])
        assert not os.path.exists(B.p("somedir"))
    finally:
        ino.close()


def test_inotifywait_on_b_sees_every_kind():
    """inotifywait(1) (inotify-tools) watching B, recursively, while A and
    confmanctl change things: modify, close_write, create, delete, moves."""
    import subprocess
    A.sh("mkdir -p iw && echo 0 > iw/f")
    assert eventually_read(B.p("iw/f"), b"0\n") == b"0\n"
    log = open(B.dir + ".iw", "w+")
    p = subprocess.Popen(["inotifywait", "-m", "-r", "--format", "%e|%w%f", B.p("iw")],
                         stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.time() + 10
        while "Watches established" not in open(log.name).read():
            assert p.poll() is None and time.time() < end, open(log.name).read()
            time.sleep(0.05)
        A.sh("echo 1 > iw/f")
        CLUSTER.ctl("put", "/iw/g", "by-ctl", check=True)
        A.sh("mv iw/g iw/h")
        A.sh("rm iw/h")
        want = [("MODIFY", "iw/f"), ("CLOSE_WRITE", "iw/f"), ("CREATE", "iw/g"),
                ("MOVED_FROM", "iw/g"), ("MOVED_TO", "iw/h"), ("DELETE", "iw/h")]
        end = time.time() + 10
        while True:
            lines = [l.split("|", 1) for l in open(log.name).read().splitlines() if "|" in l]
            got = [(e, os.path.relpath(path, B.dir)) for e, path in lines]
            missing = [w for w in want
                       if not any(w[0] in e.split(",") and w[1] == f for e, f in got)]
            if not missing:
                break
            assert time.time() < end, "inotifywait missed %r; saw %r" % (missing, got)
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait()
        log.close()
        os.unlink(log.name)


def test_remote_tree_unknown_to_b():
    """A tree B never looked at: created, then removed with rm -r on A. B's
    watcher on the root sees the directory come and go, and what B then
    stats are the server's attributes, not the replay's guesses."""
    ino = Inotify()
    try:
        ino.add(B.dir)
        time.sleep(0.2)
        ino.drain(0.2)
        A.sh("mkdir -p tree/sub && chmod 700 tree && echo deep > tree/sub/f")
        ino.wait_for([(IN_CREATE | IN_ISDIR, "tree")])
        end = time.time() + 2
        while time.time() < end and not os.path.exists(B.p("tree/sub/f")):
            time.sleep(0.05)
        assert os.stat(B.p("tree")).st_mode & 0o777 == 0o700
        assert read(B.p("tree/sub/f")) == b"deep\n"
        ino.drain(0.3)
        A.sh("rm -r tree")
        ino.wait_for([(IN_DELETE | IN_ISDIR, "tree")])
        assert not os.path.exists(B.p("tree"))
    finally:
        ino.close()


def test_own_writes_are_not_replayed():
    """A change made through B itself gives B's watchers one IN_CLOSE_WRITE,
    not a second one from the replay."""
    B.sh("echo first > own")
    ino = Inotify()
    try:
        ino.add(B.p("own"))
        time.sleep(0.2)
        ino.drain(0.2)
        B.sh("echo second > own")
        evs = ino.drain(1.0)
        closes = [e for e in evs if e[1] & IN_CLOSE_WRITE]
        assert len(closes) == 1, [(hex(e[1]), e[3]) for e in evs]
    finally:
        ino.close()


def _fresh_within(path, want, limit):
    """Reads path (a new open each time) until it returns want; the time it took."""
    t0 = time.time()
    while True:
        got = read(path)
        if got == want:
            return time.time() - t0
        if time.time() - t0 > limit:
            raise AssertionError("%s: %r after %.1f s, want %r" % (path, got, limit, want))
        time.sleep(0.01)


def test_cached_cat_sees_changes():
    """Repeated cats of an unchanged file are served from the value cache
    (they work with the cluster paused); a change through the other mount or
    confmanctl is seen within 2 s, an own write at once (also through another
    fd while a cached one is open), with longer and shorter values."""
    A.sh("echo base > cc")
    assert eventually_read(B.p("cc"), b"base\n") == b"base\n"
    for _ in range(20):
        assert read(B.p("cc")) == b"base\n"
    # served without the server: still readable with every node stopped
    nodes = list(CLUSTER.procs)
    for i in nodes:
        CLUSTER.pause(i)
    try:
        t0 = time.time()
        for _ in range(20):
            assert read(B.p("cc")) == b"base\n"
        assert time.time() - t0 < 1.0, time.time() - t0
    finally:
        for i in nodes:
            CLUSTER.resume(i)
    A.sh("echo changed-on-a-longer > cc")
    _fresh_within(B.p("cc"), b"changed-on-a-longer\n", 2)
    for _ in range(20):
        assert read(B.p("cc")) == b"changed-on-a-longer\n"
    CLUSTER.ctl("put", "/cc", "ctl", check=True)
    _fresh_within(B.p("cc"), b"ctl", 2)
    for _ in range(20):
        assert read(B.p("cc")) == b"ctl"
    # own writes: visible to the very next open, whatever was cached
    for i, v in enumerate([b"own-1-long-value\n", b"o2\n", b"own-three\n"]):
        with open(B.p("cc"), "rb") as held:  # a cached fd stays open meanwhile
            assert held.read() in (b"ctl", b"own-1-long-value\n", b"o2\n")
            with open(B.p("cc"), "wb") as w:
                w.write(v)
            assert read(B.p("cc")) == v, i
        for _ in range(5):
            assert read(B.p("cc")) == v
    B.sh("printf 'shell\n' > cc")
    assert read(B.p("cc")) == b"shell\n"
    B.sh("echo tmp > cc.tmp && mv cc.tmp cc")
    assert read(B.p("cc")) == b"tmp\n"
    # and the other mount sees B's writes within 2 s too
    _fresh_within(A.p("cc"), b"tmp\n", 2)


def test_no_cut_or_mixed_value_while_it_changes():
    """A reader on B never sees part of a value while A rewrites it with
    values of other sizes (3 pages, 1 byte, 5000 bytes, ...): every read is
    one whole value. Page-cached reads failed this (a 5000-byte value cut to
    the 3 bytes of the kernel's older i_size) about 1 read in 400."""
    vals = [bytes([65 + i]) * n for i, n in enumerate((1, 5000, 3, 9000, 200, 4096))]
    def put(v):
        with open(A.p("torn"), "wb") as f:
            f.write(v)
    put(vals[0])
    eventually_read(B.p("torn"), vals[0])
    import threading
    stop = threading.Event()
    writes = [0]

    def writer():
        k = 1
        while not stop.is_set():
            put(vals[k % len(vals)])
            k += 1
            writes[0] += 1
    t = threading.Thread(target=writer)
    t.start()
    bad, reads, start = [], 0, time.time()
    try:
        while len(bad) < 3 and time.time() - start < 20 and (
                time.time() - start < 4 or writes[0] < 100):
            d = read(B.p("torn"))
            reads += 1
            if d not in vals:
                bad.append((len(d), d[:1], d[-1:]))
    finally:
        stop.set()
        t.join()
    print("  %d reads during %d rewrites" % (reads, writes[0]))
    assert not bad, "cut or mixed values read (size, first, last byte): %r" % bad
    assert writes[0] >= 20, writes[0]


def test_xattrs():
    A.sh("echo v1 > xa")
    v1 = int(os.getxattr(A.p("xa"), "user.confman.version"))
    t1 = int(os.getxattr(A.p("xa"), "user.confman.token"))
    A.sh("echo v2 > xa")
    assert int(os.getxattr(A.p("xa"), "user.confman.version")) == v1 + 1
    assert int(os.getxattr(A.p("xa"), "user.confman.token")) > t1
    names = os.listxattr(A.p("xa"))
    assert set(names) == {"user.confman.version", "user.confman.token", "user.confman.offline",
                          "user.confman.age_ms"}, names
    expect_errno(errno.EPERM, os.setxattr, A.p("xa"), "user.confman.version", b"7")
    expect_errno(errno.ENOTSUP, os.setxattr, A.p("xa"), "user.other", b"7")
    expect_errno(errno.ENODATA, os.getxattr, A.p("xa"), "user.other")
    # CAS through confmanctl with the version read from the mount
    v = os.getxattr(B.p("xa"), "user.confman.version").decode()
    if v != str(v1 + 1):  # follower read on B may lag: wait for it
        time.sleep(0.5)
        v = os.getxattr(B.p("xa"), "user.confman.version").decode()
    rc, out, err = CLUSTER.ctl("put", "--if-version", v, "/xa", "cas")
    assert rc == 0, err


def main():
    global CLUSTER, A, B
    port = int(os.environ.get("CONFMAN_IT_PORT", "17700"))
    CLUSTER = harness.Cluster(base_port=port).up()
    test_fs.CLUSTER = CLUSTER
    ok = False
    try:
        CLUSTER.leader()
        # Long kernel cache timeouts: freshness must come from the watch.
        opts = "timeout=5000,attr_timeout=30,entry_timeout=30"
        A = Mount(CLUSTER, opts)
        B = Mount(CLUSTER, opts)
        try:
            test_fs.harness_run([
                test_write_on_a_read_on_b,
                test_cached_attrs_fresh_after_remote_change,
                test_inotify_modify_from_other_mount_and_confmanctl,
                test_inotify_create_delete_rename_mkdir,
                test_inotifywait_on_b_sees_every_kind,
                test_remote_tree_unknown_to_b,
                test_own_writes_are_not_replayed,
                test_cached_cat_sees_changes,
                test_no_cut_or_mixed_value_while_it_changes,
                test_xattrs,
            ])
        finally:
            test_fs.unmount_all((A, B))
        ok = test_fs.RESULT[1] == 0
    finally:
        CLUSTER.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
