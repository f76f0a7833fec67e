"""test_fs.py: confman-fs on a real FUSE mount against a 3-node local cluster.

Each check runs real commands (shell tools, or os calls where the errno is
the point) in the mount and, where it matters, reads back with confmanctl.
The cluster and every mount are torn down in finally blocks and at exit, and
each confman-fs's output is checked for sanitizer reports.
"""
import atexit
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../integration"))
import harness  # noqa: E402

FS = os.environ.get("CONFMAN_FS", os.path.join(harness.BUILD, "fs/confman-fs"))
PORT = int(os.environ.get("CONFMAN_IT_PORT", "17600"))

_mounts = []


mounted = harness.mounted


class Mount:
    """confman-fs -f SERVERS DIR in the background; down() unmounts it."""

    def __init__(self, cluster, opts=None, servers=None):
        self.dir = tempfile.mkdtemp(prefix="confman-fs-")
        self.logpath = os.path.join(tempfile.gettempdir(), os.path.basename(self.dir) + ".log")
        self.log = open(self.logpath, "wb")
        cmd = [FS, "-f"]
        # The persistent cache is on by default: in a directory of this
        # mount's own, not the machine's /var/cache, unless the test names one.
        self.cachedir = None
        if "cache=" not in (opts or ""):
            self.cachedir = tempfile.mkdtemp(prefix="confman-fs-cache-")
            opts = "cache=%s" % self.cachedir + ("," + opts if opts else "")
        if opts:
            cmd += ["-o", opts]
        cmd += [servers or cluster.servers(), self.dir]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        _mounts.append(self)
        end = time.time() + 10
        while not os.path.ismount(self.dir):
            if self.proc.poll() is not None or time.time() > end:
                out = self.output()
                self.down()
                raise AssertionError("confman-fs did not mount:\n" + out)
            time.sleep(0.05)

    def p(self, name):
        return os.path.join(self.dir, name)

    def sh(self, cmd, check=True):
        r = subprocess.run(cmd, shell=True, cwd=self.dir, capture_output=True, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError("%s -> %d: %s" % (cmd, r.returncode, r.stderr.decode()))
        return r

    def output(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def down(self):
        """Unmount (fusermount3 -u, then umount -l), reap, check the log."""
        if self in _mounts:
            _mounts.remove(self)
        if mounted(self.dir):
            r = subprocess.run(["fusermount3", "-u", self.dir], capture_output=True)
            if r.returncode != 0:
                print("  note: fusermount3 -u %s: %s; lazy unmount"
                      % (self.dir, r.stderr.decode(errors="replace").strip()), flush=True)
                subprocess.run(["umount", "-l", self.dir], capture_output=True)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        out = self.output()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.cachedir:
            shutil.rmtree(self.cachedir, ignore_errors=True)
        try:
            os.unlink(self.logpath)
        except OSError:
            pass
        if "Sanitizer" in out or "runtime error:" in out:
            raise AssertionError("confman-fs sanitizer report:\n" + out)
        return self.proc.returncode


def _cleanup():
    for m in list(_mounts):
        try:
            m.down()
        except Exception as e:  # keep unmounting the others
            print("cleanup: %s" % e, file=sys.stderr)


atexit.register(_cleanup)

CLUSTER = None
M = None


def force_unmount(d):
    """Unmount d whatever state it is in, then remove it (test cleanup)."""
    if mounted(d):
        subprocess.run(["fusermount3", "-u", d], capture_output=True)
    if mounted(d):
        subprocess.run(["umount", "-l", d], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def unmount_all(mounts):
    """Take every mount down; fail if a daemon did not exit cleanly."""
    for m in mounts:
        rc = m.down()
        if rc != 0:
            raise AssertionError("confman-fs exited with %s" % rc)


def expect_errno(code, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        if e.errno != code:
            raise AssertionError("%s%r: errno %s, expected %s"
                                 % (fn.__name__, args, errno.errorcode.get(e.errno),
                                    errno.errorcode[code]))
        return
    raise AssertionError("%s%r succeeded, expected %s" % (fn.__name__, args,
                                                          errno.errorcode[code]))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def eventually_read(path, want, timeout=10):
    """A change made elsewhere (confmanctl) reaches a mount's follower reads
    once the replica it asks has applied it: bounded staleness, not
    read-your-writes, so poll. Returns the last content seen."""
    end = time.time() + timeout
    got = None
    while time.time() < end:
        try:
            got = read(path)
        except FileNotFoundError:
            got = None
        if got == want:
            break
        time.sleep(0.05)
    return got


def test_echo_cat_and_append():
    M.sh("echo hello > greeting")
    assert M.sh("cat greeting").stdout == b"hello\n"
    M.sh("echo world >> greeting")
    assert M.sh("cat greeting").stdout == b"hello\nworld\n"
    M.sh("echo new > greeting")  # O_TRUNC
    assert read(M.p("greeting")) == b"new\n"


def test_cat_missing_is_enoent():
    r = M.sh("cat no-such-file", check=False)
    assert r.returncode != 0 and b"No such file" in r.stderr, r
    expect_errno(errno.ENOENT, os.stat, M.p("no-such-file"))
    expect_errno(errno.ENOENT, os.unlink, M.p("no-such-file"))


def test_mkdir_and_ls_l():
    M.sh("mkdir -m 750 conf && printf 12345 > conf/five")
    st = os.stat(M.p("conf"))
    assert oct(st.st_mode & 0o7777) == "0o750", oct(st.st_mode)
    out = M.sh("ls -l conf").stdout.decode()
    line = [l for l in out.splitlines() if l.endswith(" five")][0]
    assert line.startswith("-rw-r--r--") and " 5 " in line, line
    expect_errno(errno.EEXIST, os.mkdir, M.p("conf"))
    assert CLUSTER.ctl("get", "/conf/five")[1] == b"12345"


def test_rename_within_shard():
    M.sh("mkdir -p mv && echo a > mv/one && mv mv/one mv/two")
    expect_errno(errno.ENOENT, os.stat, M.p("mv/one"))
    assert read(M.p("mv/two")) == b"a\n"
    M.sh("echo b > mv/three && mv -f mv/three mv/two")  # over an existing file
    assert read(M.p("mv/two")) == b"b\n"
    assert CLUSTER.ctl("get", "/mv/two")[1] == b"b\n"
    M.sh("mv mv mv2")  # a directory, with what is below it
    assert read(M.p("mv2/two")) == b"b\n"


def test_rm_and_rmdir():
    M.sh("mkdir full && echo x > full/f")
    expect_errno(errno.ENOTEMPTY, os.rmdir, M.p("full"))
    M.sh("rm full/f && rmdir full")
    expect_errno(errno.ENOENT, os.stat, M.p("full"))
    M.sh("mkdir -p tree/a/b && echo 1 > tree/a/b/c && rm -r tree")
    assert CLUSTER.ctl("get", "/tree")[0] == 3


def test_symlink_readlink():
    M.sh("echo target > real && ln -s real link")
    assert os.readlink(M.p("link")) == "real"
    assert read(M.p("link")) == b"target\n"
    assert os.lstat(M.p("link")).st_mode & 0o170000 == 0o120000


def test_chmod_shows_in_stat():
    M.sh("echo m > modes && chmod 640 modes")
    assert os.stat(M.p("modes")).st_mode & 0o7777 == 0o640
    assert read(M.p("modes")) == b"m\n"  # value kept
    M.sh("chown 12:34 modes")
    st = os.stat(M.p("modes"))
    assert (st.st_uid, st.st_gid) == (12, 34), (st.st_uid, st.st_gid)


def test_truncate():
    M.sh("printf 0123456789 > trunc && truncate -s 4 trunc")
    assert read(M.p("trunc")) == b"0123"
    M.sh("truncate -s 6 trunc")
    assert read(M.p("trunc")) == b"0123\0\0"
    M.sh("truncate -s 0 trunc")
    assert read(M.p("trunc")) == b""
    with open(M.p("trunc"), "r+b") as f:  # ftruncate on an open file
        f.write(b"abcdef")
        f.truncate(2)
    assert read(M.p("trunc")) == b"ab"


def test_cp():
    data = bytes(range(256)) * 100
    src = os.path.join(tempfile.gettempdir(), "confman-fs-cp-%d" % os.getpid())
    with open(src, "wb") as f:
        f.write(data)
    try:
        M.sh("cp %s copied && cp copied copied2" % src)
    finally:
        os.unlink(src)
    assert read(M.p("copied")) == data and read(M.p("copied2")) == data
    assert CLUSTER.ctl("get", "/copied2")[1] == data


def test_sed_i_and_write_temp_then_rename():
    M.sh("printf 'port=1\\nhost=a\\n' > app.conf && sed -i s/port=1/port=2/ app.conf")
    assert read(M.p("app.conf")) == b"port=2\nhost=a\n"
    M.sh("printf 'port=3\\n' > .app.conf.tmp && mv .app.conf.tmp app.conf")
    assert read(M.p("app.conf")) == b"port=3\n"
    assert CLUSTER.ctl("get", "/app.conf")[1] == b"port=3\n"
    assert ".app.conf.tmp" not in os.listdir(M.dir)


def test_mount_and_confmanctl_see_each_other():
    M.sh("echo from-mount > shared")
    assert CLUSTER.ctl("get", "/shared")[1] == b"from-mount\n"
    CLUSTER.ctl("put", "/shared", "from-ctl-longer", check=True)
    assert eventually_read(M.p("shared"), b"from-ctl-longer") == b"from-ctl-longer"
    CLUSTER.ctl("put", "/fresh", "new", check=True)
    assert eventually_read(M.p("fresh"), b"new") == b"new"


def test_value_over_limit_is_efbig_on_close():
    M.sh("echo keep > limited")
    f = open(M.p("limited"), "wb")
    f.write(b"x" * ((1 << 20) + 1))  # buffered until close
    try:
        f.close()
    except OSError as e:
        assert e.errno == errno.EFBIG, e
    else:
        raise AssertionError("close of a 1 MiB + 1 file succeeded")
    assert CLUSTER.ctl("get", "/limited")[1] == b"keep\n"  # nothing changed
    with open(M.p("exact"), "wb") as g:  # the limit itself is fine
        g.write(b"y" * (1 << 20))
    assert os.stat(M.p("exact")).st_size == 1 << 20


def test_tar_find_cp_a_touch_and_unlink_while_open():
    src = tempfile.mkdtemp(prefix="confman-fs-tar-")
    tarball = src + ".tar"
    try:
        subprocess.run("mkdir -p t/a/b && echo 1 > t/a/b/c && ln -s c t/a/b/l && chmod 700 t/a"
                       " && tar cf %s t" % tarball, shell=True, cwd=src, check=True)
        M.sh("tar xf %s" % tarball)
    finally:
        shutil.rmtree(src, ignore_errors=True)
        os.unlink(tarball) if os.path.exists(tarball) else None
    found = M.sh("find t | sort").stdout.decode().split()
    assert found == ["t", "t/a", "t/a/b", "t/a/b/c", "t/a/b/l"], found
    assert os.stat(M.p("t/a")).st_mode & 0o777 == 0o700
    M.sh("cp -a t t2 && touch t2/new && touch t2/a/b/c")
    assert os.readlink(M.p("t2/a/b/l")) == "c" and read(M.p("t2/a/b/c")) == b"1\n"
    assert os.stat(M.p("t2/new")).st_size == 0
    M.sh("rm -r t t2")
    # A file unlinked while open stays readable through the open descriptor.
    M.sh("echo gone > vanishing")
    with open(M.p("vanishing"), "rb") as f:
        os.unlink(M.p("vanishing"))
        assert f.read() == b"gone\n"
    expect_errno(errno.ENOENT, os.stat, M.p("vanishing"))


def test_prefix_and_ro_mounts():
    CLUSTER.ctl("put", "/sub/inner", "in-sub", check=True)
    sub = Mount(CLUSTER, "prefix=/sub,ro")
    try:
        assert eventually_read(sub.p("inner"), b"in-sub") == b"in-sub"
        assert "inner" in os.listdir(sub.dir)
        expect_errno(errno.EROFS, os.mkdir, sub.p("d"))
        expect_errno(errno.EROFS, open, sub.p("inner"), "wb")
    finally:
        assert sub.down() == 0


def test_linearizable_mount_reads_latest_write():
    lin = Mount(CLUSTER, "consistency=linearizable")
    try:
        for i in range(10):
            CLUSTER.ctl("put", "/lin", "v%d" % i, check=True)
            assert read(lin.p("lin")) == b"v%d" % i  # no polling: linearizable
    finally:
        assert lin.down() == 0


def test_sigterm_unmounts_cleanly():
    m = Mount(CLUSTER)
    try:
        m.sh("echo t > sigterm-file")
        m.proc.send_signal(signal.SIGTERM)
        m.proc.wait(15)
        assert not os.path.ismount(m.dir)
        assert m.proc.returncode == 0, m.output()
    finally:
        m.down()
    assert CLUSTER.ctl("get", "/sigterm-file")[1] == b"t\n"


def test_mount_fuse3_helper_and_umount():
    """What mount -t fuse.confman-fs / fstab run: mount.fuse3 with the type;
    confman-fs daemonizes, umount stops it. (mount(8) itself resets PATH, so
    it needs confman-fs installed; the helper is called directly here.)"""
    d = tempfile.mkdtemp(prefix="confman-fs-helper-")
    cache = tempfile.mkdtemp(prefix="confman-fs-cache-")  # not the machine's /var/cache
    env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(FS)) + ":" + os.environ["PATH"])
    try:
        r = subprocess.run(["mount.fuse3", CLUSTER.servers(), d, "-t", "fuse.confman-fs",
                            "-o", "_netdev,allow_other,default_permissions,timeout=3000,"
                            "cache=" + cache],
                           env=env, capture_output=True, timeout=30)
        assert r.returncode == 0 and os.path.ismount(d), r.stderr
        with open("/proc/mounts") as f:
            assert any(l.split()[1] == d and l.split()[2] == "fuse.confman-fs" for l in f), d
        with open(os.path.join(d, "via-helper"), "w") as f:
            f.write("h")
        assert CLUSTER.ctl("get", "/via-helper")[1] == b"h"
        assert subprocess.run(["umount", d]).returncode == 0
        assert not os.path.ismount(d)
    finally:
        force_unmount(d)
        shutil.rmtree(cache, ignore_errors=True)


def main():
    global CLUSTER, M
    CLUSTER = harness.Cluster(base_port=PORT).up()
    ok = False
    try:
        CLUSTER.leader()
        M = Mount(CLUSTER, "timeout=5000")
        try:
            harness_run([
                test_echo_cat_and_append,
                test_cat_missing_is_enoent,
                test_mkdir_and_ls_l,
                test_rename_within_shard,
                test_rm_and_rmdir,
                test_symlink_readlink,
                test_chmod_shows_in_stat,
                test_truncate,
                test_cp,
                test_sed_i_and_write_temp_then_rename,
                test_mount_and_confmanctl_see_each_other,
                test_value_over_limit_is_efbig_on_close,
                test_tar_find_cp_a_touch_and_unlink_while_open,
                test_prefix_and_ro_mounts,
                test_linearizable_mount_reads_latest_write,
                test_sigterm_unmounts_cleanly,
                test_mount_fuse3_helper_and_umount,
            ])
        finally:
            rc = M.down()
            if rc != 0:
                raise AssertionError("confman-fs exited with %s" % rc)
        ok = RESULT[1] == 0
    finally:
        CLUSTER.down()
    print("%d passed, %d failed" % tuple(RESULT))
    sys.exit(0 if ok else 1)


RESULT = [0, 0]


def harness_run(tests):
    """harness.run without its exit: the mount and cluster go down first."""
    import traceback
    for t in tests:
        start = time.time()
        try:
            t()
            RESULT[0] += 1
            print("ok   %s (%.1fs)" % (t.__name__, time.time() - start), flush=True)
        except Exception as e:
            RESULT[1] += 1
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            traceback.print_exc()


if __name__ == "__main__":
    main()
