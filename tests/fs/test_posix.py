"""test_posix.py: the mount's POSIX promises on permissions, node types and
everything a call may claim to have done (issue 12, parts 3, 6 and 7).

The same script of operations, run as root and as unprivileged users
(setpriv --reuid --regid --clear-groups), is played on tmpfs and on mounts
with `-o allow_other,default_permissions` and `-o allow_other` alone; their
outcomes (errno names and the modes left behind) must be equal, except for
the node types the mount refuses on purpose (fs/README.md). A mount without
allow_other refuses every other user everything (the FUSE default).
Then each open flag, xattr call, lock, fallocate, copy_file_range and statfs
either does what it says or fails with a clear errno.
Ports: CONFMAN_IT_PORT (default 17900) and up.
"""
import ctypes
import errno
import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, expect_errno, harness  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "17900"))
NOBODY, OTHER = 65534, 65533
MOUNTS = {}  # name -> Mount

# Run by setpriv as another user: one operation, prints "ok" or the errno name.
USER_OP = r'''
import errno, os, socket, stat, sys
op, p = sys.argv[1], sys.argv[2]
a = sys.argv[3:]
def append():
    with open(p, "ab") as f:
        f.write(b"x")
def write0():
    with open(p, "r+b") as f:
        f.write(b"y")
def otrunc():
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
def bind():
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(p)
    finally:
        s.close()
OPS = {
    "stat": lambda: os.stat(p),
    "read": lambda: open(p, "rb").read(),
    "append": append, "write0": write0, "otrunc": otrunc,
    "create": lambda: open(p, "xb").close(),
    "mkdir": lambda: os.mkdir(p),
    "chmod": lambda: os.chmod(p, int(a[0], 8)),
    "chown": lambda: os.chown(p, int(a[0]), int(a[1])),
    "unlink": lambda: os.unlink(p),
    "rmdir": lambda: os.rmdir(p),
    "rename": lambda: os.rename(p, a[0]),
    "truncate": lambda: os.truncate(p, int(a[0])),
    "access_w": lambda: None if os.access(p, os.W_OK) else os._exit(print("no") or 0),
    "mknod_reg": lambda: os.mknod(p, stat.S_IFREG | 0o644),
    "mkfifo": lambda: os.mkfifo(p),
    "bind": bind,
    "link": lambda: os.link(p, a[0]),
}
try:
    OPS[op]()
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
'''


def as_user(uid, op, path, *args):
    """Outcome of op on path as uid (0: root, no setpriv)."""
    cmd = [sys.executable, "-c", USER_OP, op, path] + [str(a) for a in args]
    if uid != 0:
        cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"] + cmd
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    out = r.stdout.decode().strip()
    if r.returncode != 0 or not out:
        raise AssertionError("%s: rc %d, %s" % (cmd, r.returncode, r.stderr.decode()))
    return out


def mode_of(path):
    try:
        return oct(stat.S_IMODE(os.stat(path).st_mode))
    except OSError as e:
        return errno.errorcode[e.errno]


def content_of(path):
    try:
        return test_fs.read(path)
    except OSError as e:
        return errno.errorcode[e.errno]


def put_file(path, mode, uid=0, gid=0, data=b"data\n"):
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after chown: chown clears setuid/setgid


def setup_tree(d):
    """As root: the files and directories the script works on."""
    os.mkdir(d)
    os.chmod(d, 0o755)
    put_file(os.path.join(d, "f600"), 0o600, data=b"secret\n")
    put_file(os.path.join(d, "f644"), 0o644)
    for name, mode in (("d755", 0o755), ("sticky", 0o1777), ("open", 0o777)):
        os.mkdir(os.path.join(d, name))
        os.chmod(os.path.join(d, name), mode)
    for name, mode in (("suid", 0o4777), ("sgid", 0o2777), ("both", 0o6777),
                       ("suid_w0", 0o4777), ("suid_trunc", 0o4777), ("suid_otrunc", 0o4777),
                       ("suid_root", 0o4777), ("suid_chown", 0o4755), ("sgid_noexec", 0o2666)):
        put_file(os.path.join(d, name), mode)
    put_file(os.path.join(d, "mine"), 0o4755, uid=NOBODY, gid=NOBODY)
    sg = os.path.join(d, "sgiddir")
    os.mkdir(sg)
    os.chown(sg, 0, 100)
    os.chmod(sg, 0o2777)


def script(d):
    """Play the script in d (setup_tree done); returns [(step, outcome)]."""
    out = []

    def run(uid, op, name, *args):
        shown = " ".join(str(a).replace(d, "D") for a in args)
        out.append(("%s %s %s %s" % (uid, op, name, shown),
                    as_user(uid, op, os.path.join(d, name), *args)))

    def mode(name):
        out.append(("mode " + name, mode_of(os.path.join(d, name))))

    def owner(name):
        try:
            st = os.lstat(os.path.join(d, name))
            out.append(("owner " + name, "%d:%d %s" % (st.st_uid, st.st_gid,
                                                      oct(stat.S_IMODE(st.st_mode)))))
        except OSError as e:
            out.append(("owner " + name, errno.errorcode[e.errno]))

    # Other users and root's files.
    run(NOBODY, "stat", "f600")
    run(NOBODY, "read", "f600")
    run(NOBODY, "read", "f644")
    run(NOBODY, "append", "f644")
    run(NOBODY, "write0", "f644")
    run(NOBODY, "truncate", "f644", 0)
    run(NOBODY, "otrunc", "f644")
    run(NOBODY, "access_w", "f644")
    run(NOBODY, "create", "d755/new")
    run(NOBODY, "mkdir", "d755/newdir")
    run(NOBODY, "mknod_reg", "d755/node")
    run(NOBODY, "unlink", "f644")
    run(NOBODY, "rename", "f644", os.path.join(d, "open/stolen"))
    run(NOBODY, "chmod", "f644", "777")
    run(NOBODY, "chown", "f644", NOBODY, NOBODY)
    run(NOBODY, "chown", "mine", 0, 0)
    mode("f644")
    out.append(("content f644", content_of(os.path.join(d, "f644"))))
    # Root may do all of it.
    run(0, "read", "mine")
    run(0, "append", "mine")
    run(0, "chmod", "mine", "4755")
    # An owner may chmod its own file, and create where it may write.
    run(NOBODY, "chmod", "mine", "4750")
    mode("mine")
    run(NOBODY, "create", "open/by-nobody")
    run(NOBODY, "chmod", "open/by-nobody", "600")
    run(OTHER, "read", "open/by-nobody")
    # Sticky directory: only the owner of a file (or of the directory) removes it.
    run(NOBODY, "create", "sticky/n")
    run(OTHER, "create", "sticky/o")
    run(OTHER, "unlink", "sticky/n")
    run(OTHER, "rename", "sticky/n", os.path.join(d, "sticky/moved"))
    run(OTHER, "rename", "sticky/o", os.path.join(d, "sticky/n"))
    run(NOBODY, "unlink", "sticky/n")
    run(0, "unlink", "sticky/o")
    # setuid/setgid: cleared by another user's write, truncate, O_TRUNC, chown.
    run(NOBODY, "append", "suid")
    run(NOBODY, "append", "sgid")
    run(NOBODY, "append", "both")
    run(NOBODY, "append", "sgid_noexec")
    run(NOBODY, "write0", "suid_w0")
    run(NOBODY, "truncate", "suid_trunc", 1)
    run(NOBODY, "otrunc", "suid_otrunc")
    run(0, "append", "suid_root")
    run(0, "chown", "suid_chown", NOBODY, NOBODY)
    run(NOBODY, "chown", "mine", NOBODY, NOBODY)  # the owner's own no-op chown
    for name in ("suid", "sgid", "both", "sgid_noexec", "suid_w0", "suid_trunc",
                 "suid_otrunc", "suid_root", "suid_chown", "mine"):
        mode(name)
    out.append(("content suid", content_of(os.path.join(d, "suid"))))
    out.append(("content suid_trunc", content_of(os.path.join(d, "suid_trunc"))))
    # A setgid directory gives its group to what is created in it, and its
    # setgid bit to subdirectories.
    run(NOBODY, "create", "sgiddir/f")
    run(NOBODY, "mkdir", "sgiddir/sub")
    run(NOBODY, "mknod_reg", "sgiddir/node")
    run(NOBODY, "create", "sgiddir/sub/deeper")
    for name in ("sgiddir/f", "sgiddir/sub", "sgiddir/node", "sgiddir/sub/deeper"):
        owner(name)
    # Node types (root and nobody); hard links.
    for uid in (0, NOBODY):
        tag = "u%d" % uid
        run(uid, "mknod_reg", "open/reg-" + tag)
        mode("open/reg-" + tag)
        run(uid, "mkfifo", "open/fifo-" + tag)
        run(uid, "bind", "open/sock-" + tag)
        run(uid, "link", "open/reg-" + tag, os.path.join(d, "open/link-" + tag))
    return out


# What the mount does on purpose otherwise than tmpfs (fs/README.md, "Node types").
INTENDED = {
    "0 mkfifo open/fifo-u0 ": "EPERM",
    "0 bind open/sock-u0 ": "EPERM",
    "65534 mkfifo open/fifo-u65534 ": "EPERM",
    "65534 bind open/sock-u65534 ": "EPERM",
}


def intended(step):
    if step in INTENDED:
        return INTENDED[step]
    if " link open/reg-" in step:
        return "EPERM"
    return None


def tmpfs_outcomes(cache={}):
    if "tmpfs" in cache:
        return cache["tmpfs"]
    d = tempfile.mkdtemp(prefix="confman-posix-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", d], check=True)
    try:
        os.chmod(d, 0o755)
        setup_tree(os.path.join(d, "t"))
        cache["tmpfs"] = script(os.path.join(d, "t"))
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)
    return cache["tmpfs"]


def compare_with_tmpfs(mount_name):
    m = MOUNTS[mount_name]
    d = m.p("t-" + mount_name.replace(",", "-"))
    setup_tree(d)
    got = script(d)
    want = tmpfs_outcomes()
    bad = []
    assert len(want) == len(got), (len(want), len(got))
    for (step, w), (step2, g) in zip(want, got):
        assert step == step2, (step, step2)
        w = intended(step) or w
        if w != g:
            bad.append("%s: tmpfs %s, mount %s" % (step, w, g))
    assert not bad, "%s differs from tmpfs:\n  %s" % (mount_name, "\n  ".join(bad))


def test_allow_other_default_permissions_is_tmpfs():
    compare_with_tmpfs("allow_other,default_permissions")


def test_allow_other_alone_checks_permissions_too():
    compare_with_tmpfs("allow_other")
    log = MOUNTS["allow_other"].output()
    assert "default_permissions" in log, log


def test_without_allow_other_other_users_get_eacces():
    m = MOUNTS["private"]
    d = m.p("t-private")
    setup_tree(d)
    for op, name, args in (("stat", "", ()), ("stat", "f644", ()), ("read", "f644", ()),
                           ("create", "open/x", ()), ("chmod", "f644", ("777",))):
        assert as_user(NOBODY, op, os.path.join(d, name), *args) == "EACCES", (op, name)
    assert as_user(NOBODY, "stat", m.dir) == "EACCES"
    assert as_user(0, "read", os.path.join(d, "f600")) == "ok"
    assert mode_of(os.path.join(d, "f644")) == "0o644"


def test_setuid_cleared_on_the_server_too():
    """What the mount shows is what the server keeps (confmanctl stat)."""
    m = MOUNTS["allow_other,default_permissions"]
    d = m.p("srv")
    os.mkdir(d)
    os.chmod(d, 0o755)
    put_file(os.path.join(d, "s"), 0o6755)
    assert mode_of(os.path.join(d, "s")) == "0o6755"
    # A 0o4777 file written by another user (the case).
    put_file(os.path.join(d, "w"), 0o4777)
    assert as_user(NOBODY, "append", os.path.join(d, "w")) == "ok"
    rc, out, err = test_fs.CLUSTER.ctl("--json", "get", "/srv/w")
    assert rc == 0, err
    assert stat.S_IMODE(json.loads(out)["mode"]) == 0o777, out
    assert test_fs.CLUSTER.ctl("get", "/srv/w")[1] == b"data\nx"


def test_mknod_regular_and_refused_types():
    m = MOUNTS["allow_other,default_permissions"]
    p = m.p("nodes")
    os.mkdir(p)
    os.mknod(os.path.join(p, "reg"), stat.S_IFREG | 0o640)
    st = os.stat(os.path.join(p, "reg"))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 & ~current_umask()
    assert test_fs.CLUSTER.ctl("get", "/nodes/reg")[1] == b""
    expect_errno(errno.EEXIST, os.mknod, os.path.join(p, "reg"), stat.S_IFREG | 0o644)
    expect_errno(errno.EPERM, os.mkfifo, os.path.join(p, "fifo"))
    expect_errno(errno.EPERM, os.mknod, os.path.join(p, "chr"), stat.S_IFCHR | 0o600,
                 os.makedev(1, 3))
    expect_errno(errno.EPERM, os.mknod, os.path.join(p, "blk"), stat.S_IFBLK | 0o600,
                 os.makedev(7, 0))
    s = socket.socket(socket.AF_UNIX)
    try:
        expect_errno(errno.EPERM, s.bind, os.path.join(p, "sock"))
    finally:
        s.close()
    expect_errno(errno.EPERM, os.link, os.path.join(p, "reg"), os.path.join(p, "hard"))
    assert sorted(os.listdir(p)) == ["reg"], os.listdir(p)
    r = m.sh("mknod nodes/viatool p", check=False)
    assert r.returncode != 0 and b"not permitted" in r.stderr, r


def current_umask():
    u = os.umask(0)
    os.umask(u)
    return u


# ---- part 7: nothing returns success for something it did not do ----

libc = ctypes.CDLL(None, use_errno=True)


def test_xattrs_refused_clearly():
    m = MOUNTS["allow_other,default_permissions"]
    p = m.p("xa")
    test_fs.CLUSTER.ctl("put", "/xa", "v", check=True)
    test_fs.eventually_read(p, b"v")
    expect_errno(errno.ENOTSUP, os.setxattr, p, "user.other", b"1")
    expect_errno(errno.ENOTSUP, os.setxattr, p, "trusted.other", b"1")
    expect_errno(errno.ENOTSUP, os.setxattr, p, "security.other", b"1")
    expect_errno(errno.EPERM, os.setxattr, p, "user.confman.version", b"1")
    expect_errno(errno.ENODATA, os.getxattr, p, "user.other")
    expect_errno(errno.ENODATA, os.removexattr, p, "user.other")
    expect_errno(errno.EPERM, os.removexattr, p, "user.confman.token")
    # An ACL (user::rw- group::r-- other::r--): no ACLs here (an empty one
    # removes, and there is nothing to remove: ENODATA, as on tmpfs).
    acl = b"\x02\x00\x00\x00" + b"".join(
        tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + (0xffffffff).to_bytes(4, "little")
        for tag, perm in ((1, 6), (4, 4), (0x20, 4)))
    expect_errno(errno.EOPNOTSUPP, os.setxattr, p, "system.posix_acl_access", acl)
    expect_errno(errno.ENODATA, os.removexattr, p, "system.posix_acl_access")
    assert int(os.getxattr(p, "user.confman.version")) >= 1


def test_open_flags():
    m = MOUNTS["allow_other,default_permissions"]
    d = m.p("flags")
    os.mkdir(d)
    # O_TMPFILE: unsupported, said so.
    expect_errno(errno.EOPNOTSUPP, os.open, d, os.O_TMPFILE | os.O_RDWR, 0o600)
    # O_DIRECT: every handle is direct already; works with any alignment.
    f = os.path.join(d, "direct")
    fd = os.open(f, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o644)
    assert os.write(fd, b"abc") == 3
    os.close(fd)
    fd = os.open(f, os.O_RDONLY | os.O_DIRECT)
    assert os.read(fd, 100) == b"abc"
    os.close(fd)
    # O_SYNC / O_DSYNC: each write is on the server when write(2) returns.
    for flag, name in ((os.O_SYNC, "sync"), (os.O_DSYNC, "dsync")):
        f = os.path.join(d, name)
        fd = os.open(f, os.O_CREAT | os.O_WRONLY | flag, 0o644)
        try:
            os.write(fd, b"one")
            assert test_fs.CLUSTER.ctl("get", "/flags/" + name)[1] == b"one", name
            os.write(fd, b"two")
            assert test_fs.CLUSTER.ctl("get", "/flags/" + name)[1] == b"onetwo", name
        finally:
            os.close(fd)
        assert test_fs.read(f) == b"onetwo"
    # O_NOATIME: the owner (or root) only, as everywhere; atime is not kept.
    os.close(os.open(f, os.O_RDONLY | os.O_NOATIME))
    os.chmod(f, 0o644)
    code = ("import os,errno\ntry:\n os.open(%r, os.O_RDONLY|os.O_NOATIME)\n print('ok')\n"
            "except OSError as e:\n print(errno.errorcode[e.errno])" % f)
    r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                        "--clear-groups", sys.executable, "-c", code], capture_output=True)
    assert r.stdout.strip() == b"EPERM", r
    # O_PATH: no open reaches the mount; fstat works.
    fd = os.open(f, os.O_PATH)
    try:
        assert os.fstat(fd).st_size == 6
        expect_errno(errno.EBADF, os.read, fd, 1)
    finally:
        os.close(fd)
    # A directory's fsync: every namespace change is committed before it returns.
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_fallocate_locks_copy_file_range_statfs():
    m = MOUNTS["allow_other,default_permissions"]
    d = m.p("misc")
    os.mkdir(d)
    f = os.path.join(d, "f")
    with open(f, "wb") as fh:
        fh.write(b"0123456789")
    # fallocate(2): EOPNOTSUPP; glibc's posix_fallocate then writes zeros itself.
    fd = os.open(f, os.O_RDWR)
    try:
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        rc = libc.fallocate(fd, 0, 0, 8192)
        assert rc == -1 and ctypes.get_errno() == errno.EOPNOTSUPP, (rc, ctypes.get_errno())
        rc = libc.fallocate(fd, 3, 0, 4)  # PUNCH_HOLE | KEEP_SIZE
        assert rc == -1 and ctypes.get_errno() == errno.EOPNOTSUPP, (rc, ctypes.get_errno())
        os.posix_fallocate(fd, 0, 8192)
    finally:
        os.close(fd)
    data = test_fs.read(f)
    assert len(data) == 8192 and data[:10] == b"0123456789" and data[10:] == bytes(8182)
    # flock and fcntl locks: the kernel keeps them (this machine only).
    fd1, fd2 = os.open(f, os.O_RDWR), os.open(f, os.O_RDWR)
    try:
        fcntl.flock(fd1, fcntl.LOCK_EX | fcntl.LOCK_NB)
        expect_errno(errno.EWOULDBLOCK, fcntl.flock, fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd1, fcntl.LOCK_UN)
        fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd2, fcntl.LOCK_UN)
    finally:
        os.close(fd1)
        os.close(fd2)
    code = ("import fcntl,os,sys\nfd=os.open(%r,os.O_RDWR)\nfcntl.lockf(fd,fcntl.LOCK_EX)\n"
            "print('held',flush=True)\nsys.stdin.read()" % f)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        fd = os.open(f, os.O_RDWR)
        try:
            expect_errno(errno.EAGAIN, fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        holder.stdin.close()
        holder.wait(10)
    # copy_file_range: the bytes are copied (the kernel splices through the mount).
    g = os.path.join(d, "g")
    src, dst = os.open(f, os.O_RDONLY), os.open(g, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert os.copy_file_range(src, dst, 10) == 10
    finally:
        os.close(src)
        os.close(dst)
    assert test_fs.read(g) == b"0123456789"
    assert test_fs.CLUSTER.ctl("get", "/misc/g")[1] == b"0123456789"
    # statfs: the name limit is the protocol's; the space figures are fixed.
    sv = os.statvfs(d)
    assert sv.f_namemax == 255 and sv.f_bsize == 4096, sv


def main():
    c = harness.Cluster(base_port=PORT).up()
    test_fs.CLUSTER = c
    try:
        c.leader()
        MOUNTS["allow_other,default_permissions"] = Mount(
            c, "timeout=5000,allow_other,default_permissions")
        MOUNTS["allow_other"] = Mount(c, "timeout=5000,allow_other")
        MOUNTS["private"] = Mount(c, "timeout=5000")
        try:
            test_fs.harness_run([
                test_allow_other_default_permissions_is_tmpfs,
                test_allow_other_alone_checks_permissions_too,
                test_without_allow_other_other_users_get_eacces,
                test_setuid_cleared_on_the_server_too,
                test_mknod_regular_and_refused_types,
                test_xattrs_refused_clearly,
                test_open_flags,
                test_fallocate_locks_copy_file_range_statfs,
            ])
        finally:
            test_fs.unmount_all(list(MOUNTS.values()))
    finally:
        c.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)


if __name__ == "__main__":
    main()
