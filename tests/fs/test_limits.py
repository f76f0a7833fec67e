"""test_limits.py: path and name limits through a real mount (issue 12).

Confman's limits are the kernel's: a path of up to PATH_MAX (4096) bytes,
names of up to NAME_MAX (255); one byte more is ENAMETOOLONG. The numbers
here are literal on purpose. What counts is the Confman path, "/" + the
path below the mount root (with a prefix mount, the prefix + it): the
kernel's own PATH_MAX counts the NUL, so one absolute path string through
a mount at DIR reaches a Confman path of at most 4095 - len(DIR) bytes,
and the whole 4096 is reached relative to an open directory (openat, cd).

Covered: pathconf and statvfs; 255/256-byte names (create, mkdir, symlink,
rename); 4095/4096/4097-byte Confman paths through *at calls (create,
write, read back with confmanctl, mkdir, symlink, rename onto, a directory
rename that would push a descendant past 4096); a 4096-byte path written
by confmanctl read through the mount (its watch carries the event); the
longest absolute path string; a 4095-byte symlink target; a prefix mount.
Ports: CONFMAN_IT_PORT (default 17930) and up.
"""
import errno
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, expect_errno, harness  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "17930"))
M = None
C = None


def comps_for(n, top, last_char="f"):
    """Names whose Confman path "/" + "/".join(names) is exactly n bytes:
    top, 199-byte directories, then a last name of what is left (56..255)."""
    names, length = [top], 1 + len(top)
    while length + 1 + 255 < n:
        names.append("y" * 199)
        length += 200
    last = n - length - 1
    assert 1 <= last <= 255, (n, last)
    names.append(last_char * last)
    assert len("/" + "/".join(names)) == n
    return names


def open_dirs(root, names, create=True):
    """An fd on root/names[0]/.../names[-1], each reached with openat (and
    made with mkdirat when create); the caller closes it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for name in names:
        if create:
            try:
                os.mkdir(name, dir_fd=fd)
            except FileExistsError:
                pass
        nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def ctl_ok(*args):
    rc, out, err = C.ctl(*args)
    assert rc == 0, "confmanctl %s -> %d: %s" % (args[0], rc, err[-200:])
    return out


def test_pathconf_and_statvfs_say_4096_and_255():
    assert os.pathconf(M.dir, "PC_PATH_MAX") == 4096
    assert os.pathconf(M.dir, "PC_NAME_MAX") == 255
    assert os.statvfs(M.dir).f_namemax == 255


def test_names_of_255_bytes_work_and_256_are_enametoolong():
    os.mkdir(M.p("names"))
    ok, bad = "n" * 255, "n" * 256
    with open(M.p("names/" + ok), "w") as f:
        f.write("255")
    ctl_ok("get", "/names/" + ok)
    os.mkdir(M.p("names/d" + "d" * 254))
    os.symlink("target", M.p("names/s" + "s" * 254))
    expect_errno(errno.ENAMETOOLONG, open, M.p("names/" + bad), "w")
    expect_errno(errno.ENAMETOOLONG, os.mkdir, M.p("names/" + bad))
    expect_errno(errno.ENAMETOOLONG, os.symlink, "t", M.p("names/" + bad))
    expect_errno(errno.ENAMETOOLONG, os.rename, M.p("names/" + ok), M.p("names/" + bad))
    assert sorted(len(n) for n in os.listdir(M.p("names"))) == [255, 255, 255]


def test_confman_paths_of_4095_and_4096_bytes_work_4097_is_enametoolong():
    for n in (4095, 4096):
        names = comps_for(n, "P%d" % n)
        fd = open_dirs(M.dir, names[:-1])
        try:
            wfd = os.open(names[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
            os.write(wfd, b"v%d" % n)
            os.close(wfd)
            assert os.stat(names[-1], dir_fd=fd).st_size == len(b"v%d" % n)
            lfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            got = os.listdir(lfd)  # a new opendir: lists what is there now
            os.close(lfd)
            assert got == [names[-1]], [len(x) for x in got]
        finally:
            os.close(fd)
        assert ctl_ok("get", "/" + "/".join(names)) == b"v%d" % n
    # 4097: every way of making such a path
    names = comps_for(4097, "P4097")
    fd = open_dirs(M.dir, names[:-1])
    try:
        leaf = names[-1]
        expect_errno(errno.ENAMETOOLONG,
                     lambda: os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        expect_errno(errno.ENAMETOOLONG, lambda: os.mkdir(leaf, dir_fd=fd))
        expect_errno(errno.ENAMETOOLONG, lambda: os.symlink("t", leaf, dir_fd=fd))
        with open(M.p("short"), "w") as f:
            f.write("s")
        expect_errno(errno.ENAMETOOLONG,
                     lambda: os.rename(M.p("short"), leaf, dst_dir_fd=fd))
        # one byte less is fine, for each of them
        os.mkdir(leaf[:-1], dir_fd=fd)
        os.rename(M.p("short"), leaf[:-2], dst_dir_fd=fd)
        os.symlink("t", leaf[:-3], dir_fd=fd)
        assert os.readlink(leaf[:-3], dir_fd=fd) == "t"
    finally:
        os.close(fd)
    # a directory rename that would push a 4096-byte path to 4097
    expect_errno(errno.ENAMETOOLONG, os.rename, M.p("P4096"), M.p("P4096x"))
    os.rename(M.p("P4096"), M.p("Q4096"))  # same length: fine
    names = comps_for(4096, "Q4096")
    assert ctl_ok("get", "/" + "/".join(names)) == b"v4096"


def test_a_4096_byte_path_written_elsewhere_is_seen_through_the_mount():
    names = comps_for(4096, "R4096")
    path = "/" + "/".join(names)
    ctl_ok("put", path, "remote")
    fd = open_dirs(M.dir, names[:-1], create=False)
    try:
        rfd = os.open(names[-1], os.O_RDONLY, dir_fd=fd)
        try:
            assert os.read(rfd, 100) == b"remote"
        finally:
            os.close(rfd)
        ctl_ok("rm", path)
        # the delete's event (a 4096-byte path) reaches the mount's watch
        end = time.time() + 5
        while time.time() < end:
            try:
                os.close(os.open(names[-1], os.O_RDONLY, dir_fd=fd))
            except FileNotFoundError:
                break
            time.sleep(0.05)
        expect_errno(errno.ENOENT, lambda: os.open(names[-1], os.O_RDONLY, dir_fd=fd))
    finally:
        os.close(fd)
    # the mount's watch stream took that event and goes on
    ctl_ok("put", "/after-long", "a")
    assert test_fs.eventually_read(M.p("after-long"), b"a") == b"a"


def test_longest_absolute_path_string_is_4095_bytes():
    """The kernel refuses a path string of 4096 bytes (4097 with its NUL)
    before the mount sees it; 4095 bytes (4096 with the NUL) get through."""
    rel_len = 4095 - len(M.dir)  # "/" + rel below the mount: the Confman path
    names = comps_for(rel_len, "A")
    os.close(open_dirs(M.dir, names[:-1]))
    p = M.dir + "/" + "/".join(names)
    assert len(p) == 4095
    with open(p, "w") as f:
        f.write("abs")
    with open(p) as f:
        assert f.read() == "abs"
    expect_errno(errno.ENAMETOOLONG, open, p + "x", "w")
    print("  mount at %s (%d bytes): the longest absolute path string is 4095 bytes, a "
          "Confman path of %d" % (M.dir, len(M.dir), rel_len))


def test_symlink_targets_up_to_4095_bytes():
    target = "".join("/" if k % 200 == 0 else "t" for k in range(4095))
    os.symlink(target, M.p("longlink"))
    assert os.readlink(M.p("longlink")) == target
    got = ctl_ok("get", "/longlink")
    assert got == target.encode(), (len(got), got[:40])
    # the kernel's own limit: a 4096-byte target never reaches the mount
    expect_errno(errno.ENAMETOOLONG, os.symlink, target + "x", M.p("longlink2"))


def test_prefix_mount_counts_the_prefix():
    """Under prefix=/pfx the Confman path is "/pfx" + the path below the
    mount root: 4092 bytes below it is the most."""
    ctl_ok("mkdir", "/pfx")
    sub = Mount(C, "prefix=/pfx,timeout=5000")
    try:
        for n, ok in ((4092, True), (4093, False)):
            names = comps_for(n, "S%d" % n)
            fd = open_dirs(sub.dir, names[:-1])
            try:
                if ok:
                    os.close(os.open(names[-1], os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
                else:
                    expect_errno(errno.ENAMETOOLONG, lambda: os.open(
                        names[-1], os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            finally:
                os.close(fd)
        ctl_ok("get", "/pfx/" + "/".join(comps_for(4092, "S4092")))
    finally:
        assert sub.down() == 0


def main():
    global M, C
    C = harness.Cluster(base_port=PORT).up()
    test_fs.CLUSTER = C
    try:
        C.leader()
        M = Mount(C, "timeout=5000")
        try:
            test_fs.harness_run([
                test_pathconf_and_statvfs_say_4096_and_255,
                test_names_of_255_bytes_work_and_256_are_enametoolong,
                test_confman_paths_of_4095_and_4096_bytes_work_4097_is_enametoolong,
                test_a_4096_byte_path_written_elsewhere_is_seen_through_the_mount,
                test_longest_absolute_path_string_is_4095_bytes,
                test_symlink_targets_up_to_4095_bytes,
                test_prefix_mount_counts_the_prefix,
            ])
        finally:
            rc = M.down()
            if rc != 0:
                raise AssertionError("confman-fs exited with %s" % rc)
    finally:
        C.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)


if __name__ == "__main__":
    main()
