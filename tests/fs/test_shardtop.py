"""test_shardtop.py: a shard's top directory through a real mount.

A shard's top directory ties the shard into the tree, as a mount point ties
a filesystem: rmdir of it, rm -r of a directory above it, a rename of it or
over it must fail with EBUSY (what rmdir(2) and rename(2) give for a mount
point) and leave the name both listed and stat-able. Before the shard's own
group refused it, rmdir of an empty top returned 0 and left a name that ls
listed (the parent shard's boundary) and stat said did not exist (the
child group had deleted its top).
Ports: CONFMAN_IT_PORT (default 17880) and up.
"""
import errno
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, expect_errno, harness  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "17880"))
M = None


def wait_stat(path, timeout=15):
    """The shard's own leader makes its top once elected: wait for it."""
    end = time.time() + timeout
    while True:
        try:
            return os.stat(path)
        except FileNotFoundError:
            if time.time() > end:
                raise
            time.sleep(0.1)


def assert_top_intact(rel):
    """rel is listed in its parent, stat-able, and still a directory to confmanctl."""
    parent, name = os.path.split(rel)
    assert name in os.listdir(M.p(parent) if parent else M.dir), (rel, os.listdir(M.p(parent)))
    st = os.stat(M.p(rel))
    assert st.st_mode & 0o170000 == 0o040000, oct(st.st_mode)
    rc, out, err = test_fs.CLUSTER.ctl("ls", "/" + rel)
    assert rc == 0, ("confmanctl ls", rel, rc, err)


def test_rmdir_of_an_empty_top_is_ebusy():
    wait_stat(M.p("s1"))
    expect_errno(errno.EBUSY, os.rmdir, M.p("s1"))
    assert_top_intact("s1")
    r = M.sh("rmdir s1", check=False)
    assert r.returncode != 0 and b"busy" in r.stderr, (r.returncode, r.stderr)
    assert_top_intact("s1")


def test_rm_r_above_a_top_fails_and_keeps_it():
    wait_stat(M.p("parent/s1"))
    M.sh("echo keep > parent/sibling && mkdir parent/d && echo x > parent/d/f")
    r = M.sh("rm -r parent", check=False)
    assert r.returncode != 0, r
    assert b"parent/s1" in r.stderr and b"busy" in r.stderr, r.stderr
    assert_top_intact("parent/s1")
    assert os.listdir(M.p("parent")) == ["s1"], os.listdir(M.p("parent"))
    # The shard still works below its top.
    M.sh("echo v > parent/s1/f")
    assert test_fs.read(M.p("parent/s1/f")) == b"v\n"


def test_rename_of_or_over_a_top_is_ebusy():
    wait_stat(M.p("m1"))
    expect_errno(errno.EBUSY, os.rename, M.p("m1"), M.p("m2"))
    assert not os.path.exists(M.p("m2"))
    os.mkdir(M.p("empty"))
    expect_errno(errno.EBUSY, os.rename, M.p("empty"), M.p("m1"))
    assert os.path.isdir(M.p("empty"))
    os.rmdir(M.p("empty"))
    # mv gives up without copying (EXDEV would make it copy, then fail to delete).
    r = M.sh("mv m1 m3", check=False)
    assert r.returncode != 0 and b"busy" in r.stderr, (r.returncode, r.stderr)
    assert not os.path.exists(M.p("m3"))
    assert_top_intact("m1")


def test_confmanctl_rm_r_and_rename_of_a_top_are_ebusy():
    c = test_fs.CLUSTER
    wait_stat(M.p("c1"))
    c.ctl("put", "/c1/inner/f", "x", check=True)
    for args in (("rm", "-r", "/c1"), ("rm", "-d", "/c1"), ("mv", "/c1", "/c9"),
                 ("mv", "/c1/inner", "/c1")):
        rc, _, err = c.ctl(*args)
        assert rc != 0 and "EBUSY" in err, (args, rc, err)
    rc, out, err = c.ctl("get", "/c1/inner/f")
    assert rc == 0 and out == b"x", (rc, out, err)
    c.ctl("rm", "-r", "/c1/inner", check=True)
    assert_top_intact("c1")


def main():
    global M
    c = harness.Cluster(base_port=PORT).up()
    test_fs.CLUSTER = c
    try:
        c.leader()
        for prefix in ("/s1", "/parent/s1", "/m1", "/c1"):
            c.ctl("shard", "add", prefix, "--replicas", "1,2,3", check=True)
        M = Mount(c, "timeout=5000")
        try:
            test_fs.harness_run([test_rmdir_of_an_empty_top_is_ebusy,
                                 test_rm_r_above_a_top_fails_and_keeps_it,
                                 test_rename_of_or_over_a_top_is_ebusy,
                                 test_confmanctl_rm_r_and_rename_of_a_top_are_ebusy])
        finally:
            rc = M.down()
            if rc != 0:
                raise AssertionError("confman-fs exited with %s" % rc)
    finally:
        c.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)


if __name__ == "__main__":
    main()
