"""test_times.py: times and directory link counts through real mounts (issue 12).

Two mounts of one 3-node cluster, both `allow_other,default_permissions`
with long kernel caches (attr_timeout=30), so what a stat shows after a
change must come from the mount's own bookkeeping or its watch, never from
a cache timing out. Each check runs as root and, where a user can do it,
as nobody (setpriv --reuid=65534 --regid=65534 --clear-groups) on a
directory that nobody owns. Where it can, a check runs the same commands
on a tmpfs directory and compares the fields stat shows.

Covered: touch moves mtime; touch -d / touch -a / touch -m / utimensat
with UTIME_NOW and UTIME_OMIT set exactly what they say, seen by the other
mount; cp -p, tar x + tar d, a second rsync -a of 200 unchanged files
(nothing transferred); ftruncate + close shows the new times at once;
creating, removing and renaming an entry moves the parent's mtime and ctime
(through a mount, confmanctl and the HTTP gateway); find -newer and a
script polling a directory's mtime on mount B notice a change made on
mount A; a remote touch reaches an inotify watch on B as IN_ATTRIB;
`stat -c %h` of a directory counts its subdirectories.
Ports: CONFMAN_IT_PORT (default 17890) and up; the gateway at +50.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "../api"))
import test_fs  # noqa: E402
from test_fs import Mount, harness  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "17890"))
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
A = B = None
TMPFS = None


def sh(cmd, cwd, user=False, check=True):
    """Run cmd with sh in cwd, as root or as nobody."""
    argv = (NOBODY if user else []) + ["sh", "-c", cmd]
    r = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("%s%s -> %d: %s" % ("(nobody) " if user else "", cmd,
                                                  r.returncode, r.stderr.decode()))
    return r


def fields(path):
    """What tools compare: mode, size, mtime (ns), nlink, uid, gid. Not atime:
    the copy's reads move the source's atime on tmpfs (relatime)."""
    st = os.lstat(path)
    return dict(mode=oct(st.st_mode), size=st.st_size, mtime=st.st_mtime_ns,
                nlink=st.st_nlink, uid=st.st_uid, gid=st.st_gid)


def wait_for(what, fn, timeout=5.0):
    """Poll fn() until it is true; fail naming what after timeout."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = fn()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError("%s: not within %.1fs (last %r)" % (what, timeout, last))


def user_dir(name):
    """A fresh directory on mount A owned by nobody, its path on A and on B."""
    os.mkdir(A.p(name))
    os.chown(A.p(name), 65534, 65534)
    return A.p(name), B.p(name)


def both(fn):
    """Run check fn(base_on_A, base_on_B, user) as root, then as nobody."""
    test = sys._getframe(1).f_code.co_name
    for user in (False, True):
        name = "%s-%s" % (test, "nobody" if user else "root")
        if user:
            a, b = user_dir(name)
        else:
            os.mkdir(A.p(name))
            a, b = A.p(name), B.p(name)
        fn(a, b, user)


def tmpfs_dir(name):
    d = os.path.join(TMPFS, name)
    os.makedirs(d)
    os.chown(d, 65534, 65534)
    return d


# ---- touch and utimensat ----

def test_touch_moves_mtime():
    def check(a, b, user):
        f = os.path.join(a, "f")
        sh("echo x > f", a, user)
        before = os.stat(f)
        time.sleep(0.05)
        sh("touch f", a, user)
        after = os.stat(f)
        assert after.st_mtime_ns > before.st_mtime_ns, (before.st_mtime_ns, after.st_mtime_ns)
        assert after.st_ctime_ns > before.st_ctime_ns
        assert after.st_atime_ns > before.st_atime_ns
        assert open(f, "rb").read() == b"x\n"
        wait_for("B sees touch's mtime",
                 lambda: os.stat(os.path.join(b, "f")).st_mtime_ns == after.st_mtime_ns)
    both(check)


def test_touch_d_and_utimensat_set_exactly():
    def check(a, b, user):
        f = os.path.join(a, "f")
        sh("echo x > f && touch -d '2001-02-03 04:05:06.123456789' f", a, user)
        want = int(time.mktime(time.strptime("2001-02-03 04:05:06", "%Y-%m-%d %H:%M:%S")))
        want = want * 10**9 + 123456789
        st = os.stat(f)
        assert st.st_mtime_ns == want and st.st_atime_ns == want, (st.st_mtime_ns, want)
        out = sh("stat -c '%y' f", a, user).stdout.decode()
        assert out.startswith("2001-02-03 04:05:06.123456789"), out
        wait_for("B sees touch -d", lambda: os.stat(os.path.join(b, "f")).st_mtime_ns == want)
        # touch -a: atime only (mtime is UTIME_OMIT); touch -m: mtime only.
        sh("touch -a -d '2002-01-01' f", a, user)
        st2 = os.stat(f)
        assert st2.st_mtime_ns == want and st2.st_atime_ns != want, (st2.st_mtime_ns, st2.st_atime_ns)
        assert st2.st_ctime_ns >= st.st_ctime_ns
        sh("touch -m -d '2003-01-01' f", a, user)
        st3 = os.stat(f)
        assert st3.st_atime_ns == st2.st_atime_ns and st3.st_mtime_ns not in (want, st2.st_mtime_ns)
        # utimensat with explicit ns and UTIME_NOW through a handle (futimens).
        fd = os.open(f, os.O_RDONLY)
        try:
            os.utime(fd, ns=(5 * 10**9 + 7, 6 * 10**9 + 9))
        finally:
            os.close(fd)
        st4 = os.stat(f)
        assert (st4.st_atime_ns, st4.st_mtime_ns) == (5 * 10**9 + 7, 6 * 10**9 + 9), st4
        wait_for("B sees futimens",
                 lambda: os.stat(os.path.join(b, "f")).st_atime_ns == 5 * 10**9 + 7)
        # Directories too.
        sh("mkdir d && touch -d '2001-02-03' d", a, user)
        day = int(time.mktime(time.strptime("2001-02-03", "%Y-%m-%d"))) * 10**9
        assert os.stat(os.path.join(a, "d")).st_mtime_ns == day
    both(check)


def test_ftruncate_then_close_shows_new_times_at_once():
    def check(a, b, user):
        f = os.path.join(a, "f")
        sh("echo hello > f && touch -d '2001-02-03' f", a, user)
        old = os.stat(f)
        script = ("import os,sys; fd=os.open('f', os.O_RDWR); os.fstat(fd); os.ftruncate(fd, 2); "
                  "os.fstat(fd); os.close(fd)")
        sh("python3 -c \"%s\"" % script, a, user)
        st = os.stat(f)
        assert st.st_size == 2
        assert st.st_mtime_ns > old.st_mtime_ns and st.st_ctime_ns > old.st_ctime_ns, \
            (old.st_mtime_ns, st.st_mtime_ns)
        assert st.st_mtime_ns > (time.time() - 60) * 1e9
        # A write in place too.
        sh("touch -d '2001-02-03' f && printf 'ab' >> f", a, user)
        assert os.stat(f).st_mtime_ns > (time.time() - 60) * 1e9
    both(check)


# ---- tools that preserve times ----

def test_cp_p_and_tar_d_see_no_difference():
    def check(a, b, user):
        src = tmpfs_dir(os.path.basename(a) + "-src")
        sh("mkdir -p t/sub && echo one > t/a && echo two > t/sub/b && chmod 0640 t/a && "
           "touch -d '2001-02-03' t/a t/sub/b t/sub && tar cf t.tar t", src, user)
        tarball = os.path.join(src, "t.tar")
        sh("cp -p %s/t/a a.copy" % src, a, user)
        assert fields(os.path.join(a, "a.copy")) == fields(os.path.join(src, "t/a")), \
            (fields(os.path.join(a, "a.copy")), fields(os.path.join(src, "t/a")))
        sh("tar xf %s" % tarball, a, user)
        r = sh("tar df %s" % tarball, a, user, check=False)
        assert r.returncode == 0 and r.stdout == b"", (r.returncode, r.stdout, r.stderr)
        for rel in ("t/a", "t/sub/b"):
            fa, fs = fields(os.path.join(a, rel)), fields(os.path.join(src, rel))
            assert fa == fs, (rel, fa, fs)
        assert os.stat(os.path.join(a, "t/sub")).st_mtime_ns == \
            os.stat(os.path.join(src, "t/sub")).st_mtime_ns
    both(check)


def test_second_rsync_transfers_nothing():
    def check(a, b, user):
        src = tmpfs_dir(os.path.basename(a) + "-rs")
        for k in range(200):
            d = os.path.join(src, "d%d" % (k % 10))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "f%d" % k), "w") as f:
                f.write("value %d\n" % k)
        sh("chown -R 65534:65534 %s" % src, "/")
        sh("rsync -a %s/ dst/" % src, a, user)
        r = sh("rsync -a --stats %s/ dst/" % src, a, user)
        out = r.stdout.decode()
        assert "Number of regular files transferred: 0" in out, out
        r = sh("rsync -a --stats %s/ dst/" % src, b, user)
        out = r.stdout.decode()
        assert "Number of regular files transferred: 0" in out, ("mount B", out)
    both(check)


# ---- directories: parent times, nlink ----

def parent_moves(a, what, op, stat_of=None):
    """Run op(); the directory a's mtime and ctime must have moved."""
    d = stat_of or a
    before = os.stat(d)
    time.sleep(0.02)
    op()
    after = os.stat(d)
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns, \
        (what, before.st_mtime_ns, after.st_mtime_ns)
    return after


def test_create_remove_rename_move_parent_times():
    def check(a, b, user):
        sh("mkdir d1 d2", a, user)
        d1, d2 = os.path.join(a, "d1"), os.path.join(a, "d2")
        parent_moves(d1, "create", lambda: sh("echo x > d1/f", a, user))
        parent_moves(d1, "mkdir", lambda: sh("mkdir d1/sub", a, user))
        parent_moves(d1, "symlink", lambda: sh("ln -s f d1/l", a, user))
        parent_moves(d1, "rename within", lambda: sh("mv d1/l d1/l2", a, user))
        s2 = os.stat(d2)
        parent_moves(d1, "rename across", lambda: sh("mv d1/f d2/f", a, user))
        after2 = os.stat(d2)
        assert after2.st_mtime_ns > s2.st_mtime_ns and after2.st_ctime_ns > s2.st_ctime_ns
        parent_moves(d2, "unlink", lambda: sh("rm d2/f", a, user))
        parent_moves(d1, "rmdir", lambda: sh("rmdir d1/sub", a, user))
        parent_moves(d1, "rm -r", lambda: sh("mkdir -p d1/x/y && touch -d 2001-01-01 d1 && "
                                             "rm -r d1/x", a, user))
        # A content change does not move the parent (tmpfs neither).
        sh("echo 1 > d1/g", a, user)
        s = os.stat(d1)
        sh("echo 2 > d1/g", a, user)
        assert os.stat(d1).st_mtime_ns == s.st_mtime_ns
    both(check)


def test_confmanctl_and_gateway_move_parent_times():
    import gwlib
    os.mkdir(A.p("remote"))
    gw = gwlib.Gateway(test_fs.CLUSTER, PORT + 50).start()

    def http(method, path, body=None):
        st = gwlib.request(gw.port, method, path, body)[0]
        assert st < 300, (method, path, st)

    try:
        gw.wait_ready()
        for what, op in (
                ("confmanctl put", lambda: test_fs.CLUSTER.ctl("put", "/remote/c", "v",
                                                               check=True)),
                ("confmanctl rm", lambda: test_fs.CLUSTER.ctl("rm", "/remote/c", check=True)),
                ("gateway put", lambda: http("PUT", "/v1/kv/remote/g", b"v")),
                ("gateway delete", lambda: http("DELETE", "/v1/kv/remote/g"))):
            before = {m: os.stat(m.p("remote")) for m in (A, B)}
            time.sleep(0.02)
            op()
            for m in (A, B):
                name = "%s moves /remote's mtime and ctime on mount %s" % (
                    what, "A" if m is A else "B")
                wait_for(name, lambda: os.stat(m.p("remote")).st_mtime_ns >
                         before[m].st_mtime_ns and os.stat(m.p("remote")).st_ctime_ns >
                         before[m].st_ctime_ns)
    finally:
        gw.stop()


def test_find_newer_and_dir_polling_see_other_mount():
    os.mkdir(A.p("poll"))
    sh("echo x > ref && touch -d '2001-01-01' ref", A.p("poll"))
    wait_for("B sees ref", lambda: os.path.exists(B.p("poll/ref")))
    # B looks first, so that its kernel holds the directory's attributes.
    before = os.stat(B.p("poll")).st_mtime_ns
    assert sh("find . -newer ref -type f", B.p("poll")).stdout == b""
    sh("echo new > f", A.p("poll"))
    wait_for("find -newer on B lists the file made on A",
             lambda: b"./f" in sh("find . -newer ref -type f", B.p("poll")).stdout)
    wait_for("B's poll of the directory's mtime sees A's create",
             lambda: os.stat(B.p("poll")).st_mtime_ns > before)
    before = os.stat(B.p("poll")).st_mtime_ns
    poller = subprocess.Popen(
        ["sh", "-c", "m=$(stat -c %Y.%y .); while [ \"$(stat -c %Y.%y .)\" = \"$m\" ]; do "
         "sleep 0.05; done; echo changed"], cwd=B.p("poll"), stdout=subprocess.PIPE)
    try:
        time.sleep(0.3)
        os.unlink(A.p("poll/f"))
        out, _ = poller.communicate(timeout=5)
        assert out == b"changed\n", out
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
    assert os.stat(B.p("poll")).st_mtime_ns > before


def test_remote_touch_is_in_attrib():
    os.mkdir(A.p("watched"))
    sh("echo x > f", A.p("watched"))
    wait_for("B sees f", lambda: os.path.exists(B.p("watched/f")))
    w = subprocess.Popen(["inotifywait", "-m", "-e", "attrib,modify", "--format", "%e %f",
                          B.p("watched/f")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # inotifywait sets its watch
        sh("touch f", A.p("watched"))
        time.sleep(1.0)
    finally:
        w.terminate()
        out, _ = w.communicate(timeout=5)
    lines = out.decode().split("\n")
    assert "ATTRIB " in lines, lines
    assert not any(ln.startswith("MODIFY") for ln in lines), lines
    wait_for("B stats the new mtime", lambda: os.stat(B.p("watched/f")).st_mtime_ns ==
             os.stat(A.p("watched/f")).st_mtime_ns)


def nlinks(base):
    return {rel: os.stat(os.path.join(base, rel)).st_nlink for rel in ("", "a", "a/b", "c")}


def test_directory_nlink_counts_subdirectories():
    def ops(d, user):
        out = []
        for cmd in ("mkdir -p a/b c && echo x > a/f",
                    "mkdir a/b2 a/b3 && mkdir a/b/x",
                    "rmdir a/b3",
                    "mv a/b2 c/b2",
                    "mv c/b2 a/b2 && mv a/b c/ && mv c/b a/",
                    "mkdir -p c/z/y && rm -r c/z",
                    "mkdir c/m && mv -T a/b2 c/m"):
            sh(cmd, d, user)
            out.append((cmd, nlinks(d)))
        return out

    def check(a, b, user):
        t = tmpfs_dir(os.path.basename(a) + "-nl")
        want = ops(t, user)
        got = ops(a, user)
        assert got == want, "\n".join("%s: mount %s tmpfs %s" % (g[0], g[1], w[1])
                                      for g, w in zip(got, want) if g != w)
        r = sh("stat -c %h a", a, user).stdout.decode().strip()
        assert r == str(want[-1][1]["a"]), r
        wait_for("B's nlink", lambda: nlinks(b) == want[-1][1])
    both(check)


def main():
    global A, B, TMPFS
    TMPFS = tempfile.mkdtemp(prefix="confman-times-tmpfs-")
    os.chmod(TMPFS, 0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", TMPFS], check=True)
    cluster = None
    ok = False
    try:  # the tmpfs goes even when the cluster cannot start
        cluster = harness.Cluster(base_port=PORT)
        cluster.up()
        test_fs.CLUSTER = cluster
        cluster.leader()
        opts = "timeout=5000,attr_timeout=30,entry_timeout=30,allow_other,default_permissions"
        A = Mount(cluster, opts)
        B = Mount(cluster, opts)
        try:
            test_fs.harness_run([
                test_touch_moves_mtime,
                test_touch_d_and_utimensat_set_exactly,
                test_ftruncate_then_close_shows_new_times_at_once,
                test_cp_p_and_tar_d_see_no_difference,
                test_second_rsync_transfers_nothing,
                test_create_remove_rename_move_parent_times,
                test_confmanctl_and_gateway_move_parent_times,
                test_find_newer_and_dir_polling_see_other_mount,
                test_remote_touch_is_in_attrib,
                test_directory_nlink_counts_subdirectories,
            ])
        finally:
            test_fs.unmount_all((A, B))
        ok = test_fs.RESULT[1] == 0
    finally:
        if cluster is not None:
            cluster.down()
        subprocess.run(["umount", TMPFS])
        shutil.rmtree(TMPFS, ignore_errors=True)
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
