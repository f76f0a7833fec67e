"""test_lock.py: flock(2) and fcntl(2) locks through the mount are the
cluster's (issue 17, part 3), on two mounts A and B of one cluster and
short-lived third mounts that are killed -9.

- flock on A excludes flock on B; `flock -n` exits 1 while the other mount
  holds the lock, 0 once it closed; a blocking flock waits and proceeds
  when the other releases; `timeout -s INT` interrupts a blocked flock
  (and the interrupted waiter does not keep a place in the queue);
- a process's exit releases its flock; kill -9 of the holding mount's daemon
  frees the lock within the session TTL + about a second;
- user.confman.lock_token is the holder's fencing token (strictly higher
  for each new holder); the session lost (every server paused past the TTL)
  turns it into ENOLCK;
- user.confman.ephemeral=1 attaches a file to the mount's session lease:
  it disappears after kill -9 of that mount, and inotify on B reports it;
  a file detached again (=0) stays;
- fcntl whole-file locks exclude each other across mounts, F_GETLK sees the
  other mount's lock, a byte range is ENOLCK, close drops a POSIX lock;
- bad input: xattrs on a directory, values other than 0/1, lock_token not
  held or written.
Ports: CONFMAN_IT_PORT (12000) .. +2, HTTP +1000.
"""
import errno
import fcntl
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, harness, expect_errno  # noqa: E402
from test_notify import Inotify, IN_DELETE  # noqa: E402

TTL = 2.0  # the mounts' lock_ttl, seconds
# cache=none: locks are the cluster's, and a loaded machine must not turn a
# fresh mount offline (EROFS) before its first write.
OPTS = "timeout=5000,lock_ttl=2s,cache=none"
CLUSTER = None
A = None
B = None

XA_TOKEN = "user.confman.lock_token"
XA_EPH = "user.confman.ephemeral"


def touch(m, name):
    os.makedirs(os.path.dirname(m.p(name)), exist_ok=True)
    with open(m.p(name), "a"):
        pass


def opened(m, name, flags=os.O_RDWR):
    touch(m, name)
    return os.open(m.p(name), flags)


def try_flock_nb(m, name, kind=fcntl.LOCK_EX):
    """True if this mount got the lock at once (then released by close)."""
    fd = opened(m, name)
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def eventually_free(m, name, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        if try_flock_nb(m, name):
            return time.time()
        time.sleep(0.05)
    raise AssertionError("%s still locked after %ss" % (name, timeout))


def token(path):
    return int(os.getxattr(path, XA_TOKEN))


def setfattr(path, name, value):
    """setfattr -n NAME -v VALUE PATH (attr's tool when installed: the
    same setxattr(2) otherwise)."""
    if subprocess.run(["sh", "-c", "command -v setfattr"], capture_output=True).returncode == 0:
        subprocess.run(["setfattr", "-n", name, "-v", value, path], check=True)
    else:
        os.setxattr(path, name, value.encode())


def flock_n(m, name):
    return subprocess.run(["flock", "-n", m.p(name), "-c", "true"], timeout=20).returncode


def test_flock_excludes_across_mounts():
    fa = opened(A, "locks/one")
    try:
        fcntl.flock(fa, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t1 = token(A.p("locks/one"))
        assert t1 > 0, t1
        assert not try_flock_nb(B, "locks/one"), "B got a lock A holds"
        assert not try_flock_nb(B, "locks/one", fcntl.LOCK_SH), "B shared a lock A holds"
        # Another open file on the same mount is another owner.
        assert not try_flock_nb(A, "locks/one"), "a second open file of A got it"
        expect_errno(errno.ENODATA, os.getxattr, B.p("locks/one"), XA_TOKEN)
    finally:
        os.close(fa)  # the last close releases it (flock_release)
    eventually_free(B, "locks/one")
    fb = opened(B, "locks/one")
    try:
        fcntl.flock(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert token(B.p("locks/one")) > t1, "tokens must increase"
        fcntl.flock(fb, fcntl.LOCK_UN)
        expect_errno(errno.ENODATA, os.getxattr, B.p("locks/one"), XA_TOKEN)
    finally:
        os.close(fb)
    # Shared holds share.
    fa, fb = opened(A, "locks/one"), opened(B, "locks/one")
    try:
        fcntl.flock(fa, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fb, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert not try_flock_nb(A, "locks/one"), "exclusive beside shared holders"
    finally:
        os.close(fa)
        os.close(fb)


def test_flock_n_exit_codes():
    fa = opened(A, "locks/n")
    try:
        fcntl.flock(fa, fcntl.LOCK_EX)
        rc = flock_n(B, "locks/n")
        assert rc == 1, "flock -n on B while A holds: exit %d, not 1" % rc
    finally:
        os.close(fa)
    end = time.time() + 5
    while flock_n(B, "locks/n") != 0:
        assert time.time() < end, "flock -n on B never got it after A closed"
        time.sleep(0.05)
    # A process's exit releases its lock.
    subprocess.run(["flock", A.p("locks/n"), "-c", "true"], check=True, timeout=20)
    eventually_free(B, "locks/n")


def test_blocking_flock_waits_for_release():
    fa = opened(A, "locks/wait")
    fcntl.flock(fa, fcntl.LOCK_EX)
    out = B.p("locks/got")
    p = subprocess.Popen(["flock", B.p("locks/wait"), "-c", "echo waited > " + out])
    try:
        time.sleep(1.5)
        assert p.poll() is None, "flock on B did not wait (exit %s)" % p.returncode
        released = time.time()
        os.close(fa)
        fa = None
        rc = p.wait(10)
        waited = time.time() - released
        assert rc == 0, rc
        print("  blocked flock proceeded %.0f ms after the release" % (waited * 1000))
        assert waited < 3, waited
        with open(A.p("locks/got")) as f:
            assert f.read() == "waited\n"
    finally:
        if fa is not None:
            os.close(fa)
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigint_interrupts_a_blocked_flock():
    fa = opened(A, "locks/intr")
    fcntl.flock(fa, fcntl.LOCK_EX)
    try:
        start = time.time()
        r = subprocess.run(["timeout", "-s", "INT", "1", "flock", B.p("locks/intr"), "-c",
                            "true"], timeout=20)
        took = time.time() - start
        assert r.returncode == 124, "timeout -s INT flock: exit %d, not 124" % r.returncode
        assert took < 3, "the interrupted flock took %.1f s" % took
    finally:
        os.close(fa)
    # The interrupted waiter left the queue: the lock is free, not its.
    eventually_free(A, "locks/intr")
    assert flock_n(B, "locks/intr") == 0


def test_fcntl_whole_file_and_ranges():
    fa, fb = opened(A, "locks/posix"), opened(B, "locks/posix")
    try:
        fcntl.lockf(fa, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert token(A.p("locks/posix")) > 0
        try:
            fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("B's fcntl lock beside A's")
        except OSError as e:
            assert e.errno in (errno.EAGAIN, errno.EACCES), e
        # F_GETLK on B sees A's lock (l_pid: none, another host's).
        fl = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        got = struct.unpack("hhqqi", fcntl.fcntl(fb, fcntl.F_GETLK, fl))
        assert got[0] == fcntl.F_WRLCK, got
        # flock and fcntl name the same cluster lock.
        assert not try_flock_nb(B, "locks/posix")
        # A byte range is not a cluster lock: refused, on both.
        expect_errno(errno.ENOLCK, fcntl.lockf, fb, fcntl.LOCK_SH | fcntl.LOCK_NB, 10, 0)
        expect_errno(errno.ENOLCK, fcntl.lockf, fa, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 5)
    finally:
        os.close(fa)  # a POSIX lock goes with any close of its process (flush)
    end = time.time() + 5
    while True:
        try:
            fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            assert time.time() < end, "A's close did not drop its POSIX lock"
            time.sleep(0.05)
    fl = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    got = struct.unpack("hhqqi", fcntl.fcntl(fb, fcntl.F_GETLK, fl))
    assert got[0] == fcntl.F_UNLCK, "its own lock reported as a conflict: %r" % (got,)
    fcntl.lockf(fb, fcntl.LOCK_UN)
    os.close(fb)


def test_kill9_of_the_holder_frees_the_lock_within_ttl():
    c = Mount(CLUSTER, OPTS)
    holder = None
    try:
        touch(c, "locks/dead")
        holder = subprocess.Popen(["flock", c.p("locks/dead"), "-c", "echo in; sleep 60"],
                                  stdout=subprocess.PIPE, start_new_session=True)
        assert holder.stdout.readline() == b"in\n"
        assert not try_flock_nb(B, "locks/dead")
        c.proc.kill()
        killed = time.time()
        freed = eventually_free(B, "locks/dead", timeout=TTL + 10)
        took = freed - killed
        print("  lock free %.0f ms after kill -9 of the holder's mount (TTL %.0f ms)"
              % (took * 1000, TTL * 1000))
        assert took <= TTL + 1.5, "freed %.1f s after the kill, TTL %.1f s" % (took, TTL)
    finally:
        if holder is not None:
            os.killpg(holder.pid, 9)  # flock and its shell's sleep
            holder.wait()
        c.down()  # umount -l of the dead mount; its exit status is the kill's


def test_ephemeral_file_disappears_after_kill9():
    c = Mount(CLUSTER, OPTS)
    ino = Inotify()
    try:
        os.makedirs(c.p("svc/web"), exist_ok=True)
        subprocess.run("echo host1:8080 > %s" % c.p("svc/web/host1"), shell=True, check=True)
        subprocess.run("echo host2:8080 > %s" % c.p("svc/web/host2"), shell=True, check=True)
        assert os.getxattr(c.p("svc/web/host1"), XA_EPH) == b"0"
        setfattr(c.p("svc/web/host1"), XA_EPH, "1")
        setfattr(c.p("svc/web/host2"), XA_EPH, "1")
        assert os.getxattr(c.p("svc/web/host1"), XA_EPH) == b"1"
        # Detached again: it stays.
        setfattr(c.p("svc/web/host2"), XA_EPH, "0")
        assert os.getxattr(c.p("svc/web/host2"), XA_EPH) == b"0"
        # Attaching keeps the value; B sees the file and that it is not B's.
        with open(B.p("svc/web/host1")) as f:
            assert f.read() == "host1:8080\n"
        assert os.getxattr(B.p("svc/web/host1"), XA_EPH) == b"0"
        ino.add(B.p("svc/web"))
        ino.drain()
        c.proc.kill()
        killed = time.time()
        ino.wait_for([(IN_DELETE, "host1")], timeout=TTL + 5)
        took = time.time() - killed
        print("  ephemeral file deleted, inotify on B %.0f ms after kill -9 (TTL %.0f ms)"
              % (took * 1000, TTL * 1000))
        assert took <= TTL + 2, took
        rc, _, _ = CLUSTER.ctl("get", "/svc/web/host1")
        assert rc != 0, "host1 still in the cluster"
        rc, out, _ = CLUSTER.ctl("get", "/svc/web/host2")
        assert rc == 0 and out == b"host2:8080\n", (rc, out)
    finally:
        ino.close()
        c.down()


def leases(path):
    import json
    rc, out, err = CLUSTER.ctl("lease", "list", "--path", path, "--json")
    assert rc == 0, err
    return {x["id"] for x in json.loads(out)["leases"]}


def test_one_session_in_two_groups_kept_alive_then_freed():
    """The session lease is granted in each group the mount locks in (here
    the root shard and /shard2), with one id, kept alive in both past
    several TTLs, and both locks and the ephemeral file go after kill -9."""
    c = Mount(CLUSTER, OPTS)
    holder = None
    try:
        before1, before2 = leases("/"), leases("/shard2")
        touch(c, "locks/g1")
        touch(c, "shard2/g2")
        subprocess.run("echo up > %s" % c.p("shard2/eph"), shell=True, check=True)
        setfattr(c.p("shard2/eph"), XA_EPH, "1")
        holder = subprocess.Popen(["flock", c.p("locks/g1"), "flock", c.p("shard2/g2"), "sh",
                                   "-c", "echo in; sleep 60"], stdout=subprocess.PIPE,
                                  start_new_session=True)
        assert holder.stdout.readline() == b"in\n"
        new1, new2 = leases("/") - before1, leases("/shard2") - before2
        assert len(new1) == 1 and new1 == new2, "one id in both groups: %r %r" % (new1, new2)
        assert os.getxattr(c.p("shard2/eph"), XA_EPH) == b"1"
        time.sleep(3 * TTL)  # keepalives in both groups
        assert not try_flock_nb(B, "locks/g1") and not try_flock_nb(B, "shard2/g2")
        assert os.path.exists(B.p("shard2/eph"))
        c.proc.kill()
        killed = time.time()
        eventually_free(B, "locks/g1", timeout=TTL + 10)
        eventually_free(B, "shard2/g2", timeout=TTL + 10)
        took = time.time() - killed
        assert took <= TTL + 1.5, took
        end = time.time() + 5
        while os.path.exists(B.p("shard2/eph")):
            assert time.time() < end, "the ephemeral file of /shard2 stayed"
            time.sleep(0.1)
    finally:
        if holder is not None:
            os.killpg(holder.pid, 9)
            holder.wait()
        c.down()


def test_session_lost_when_every_server_pauses():
    c = Mount(CLUSTER, OPTS)
    fd = None
    try:
        fd = opened(c, "locks/lost")
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert token(c.p("locks/lost")) > 0
        for i in range(1, CLUSTER.n + 1):
            CLUSTER.pause(i)
        try:
            time.sleep(TTL + 1.5)  # the keepalives go unanswered past the TTL
        finally:
            for i in range(1, CLUSTER.n + 1):
                CLUSTER.resume(i)
        end = time.time() + 5
        while "session lease" not in c.output():
            assert time.time() < end, "no session loss logged:\n" + c.output()
            time.sleep(0.1)
        expect_errno(errno.ENOLCK, os.getxattr, c.p("locks/lost"), XA_TOKEN)
        # Revoked where it lived on: B gets the lock without waiting for it
        # to expire (a new leader would give it a full TTL again).
        eventually_free(B, "locks/lost", timeout=TTL + 8)
        expect_errno(errno.ENOLCK, fcntl.flock, fd, fcntl.LOCK_UN)
    finally:
        if fd is not None:
            os.close(fd)
        c.down()


def test_bad_input():
    os.makedirs(A.p("locks/dir"), exist_ok=True)
    expect_errno(errno.EISDIR, os.setxattr, A.p("locks/dir"), XA_EPH, b"1")
    touch(A, "locks/file")
    expect_errno(errno.EINVAL, os.setxattr, A.p("locks/file"), XA_EPH, b"2")
    expect_errno(errno.EINVAL, os.setxattr, A.p("locks/file"), XA_EPH, b"")
    expect_errno(errno.EPERM, os.setxattr, A.p("locks/file"), XA_TOKEN, b"5")
    expect_errno(errno.ENODATA, os.getxattr, A.p("locks/file"), XA_TOKEN)
    # A directory's flock never reaches the daemon (the kernel's FUSE has no
    # flock for directories): a lock of this kernel only, which another
    # mount does not see (fs/README.md).
    da, db = os.open(A.p("locks/dir"), os.O_RDONLY), os.open(B.p("locks/dir"), os.O_RDONLY)
    try:
        fcntl.flock(da, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(db, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(da)
        os.close(db)


def main():
    global CLUSTER, A, B
    port = int(os.environ.get("CONFMAN_IT_PORT", "12000"))
    CLUSTER = harness.Cluster(base_port=port, prefixes=("/", "/shard2")).up()
    test_fs.CLUSTER = CLUSTER
    mounts = []
    try:
        CLUSTER.leader()
        A = Mount(CLUSTER, OPTS)
        mounts.append(A)
        B = Mount(CLUSTER, OPTS)
        mounts.append(B)
        only = os.environ.get("CONFMAN_TEST_ONLY")
        tests = [
            test_flock_excludes_across_mounts,
            test_flock_n_exit_codes,
            test_blocking_flock_waits_for_release,
            test_sigint_interrupts_a_blocked_flock,
            test_fcntl_whole_file_and_ranges,
            test_bad_input,
            test_kill9_of_the_holder_frees_the_lock_within_ttl,
            test_ephemeral_file_disappears_after_kill9,
            test_one_session_in_two_groups_kept_alive_then_freed,
            test_session_lost_when_every_server_pauses,
        ]
        test_fs.harness_run([t for t in tests if not only or t.__name__ in only.split(",")])
    finally:
        try:
            test_fs.unmount_all(mounts)
        finally:
            CLUSTER.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)


if __name__ == "__main__":
    main()
