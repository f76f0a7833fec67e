"""test_faults.py: confman-fs under a leader crash, and mounting through mount(8).

1. A loop of `echo N > kill9` in the mount (a shell per write; a write is
   acknowledged when the shell exits 0, i.e. its close(2) committed the PUT).
   The leader is killed with SIGKILL during the loop and restarted; writes
   go on. Once the cluster settles, every node (confmanctl get --from H:P)
   returns the same value, and it is >= the last acknowledged one: no
   acknowledged write is lost. (A write that failed may still have been
   committed, so a larger value is allowed.)
2. `mount -t fuse.confman-fs SERVERS DIR -o ...`, as an fstab line does.
   mount(8) runs helpers with a fixed PATH, so a temporary symlink
   /usr/local/sbin/confman-fs -> the build's binary is made if nothing is
   there, and removed afterwards. If mount(8) still cannot find the binary,
   that check is skipped with a message.
Ports: CONFMAN_IT_PORT (default 17810) and up.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import FS, Mount, harness  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "17810"))
LINK = "/usr/local/sbin/confman-fs"

CLUSTER = None
M = None


class Writer(threading.Thread):
    """echo N > FILE in the mount, N = 1, 2, ... until stopped."""

    def __init__(self, mount, name):
        super().__init__(daemon=True)
        self.mount = mount
        self.name = name
        self.stopping = threading.Event()
        self.acked = []   # (n, time) of writes whose shell exited 0
        self.failed = []  # n of writes that failed
        self.n = 0

    def run(self):
        while not self.stopping.is_set():
            self.n += 1
            r = subprocess.run("echo %d > %s" % (self.n, self.name), shell=True,
                               cwd=self.mount.dir, capture_output=True, timeout=60)
            if r.returncode == 0:
                self.acked.append((self.n, time.time()))
            else:
                self.failed.append(self.n)
                time.sleep(0.02)


def value_of(out):
    return int(out.decode().strip())


def test_leader_kill9_during_echo_loop_loses_no_acked_write():
    w = Writer(M, "kill9")
    w.start()
    try:
        end = time.time() + 10
        while len(w.acked) < 20 and time.time() < end:
            time.sleep(0.02)
        assert len(w.acked) >= 20, "writes do not go through: %d acked" % len(w.acked)
        leader = CLUSTER.leader()
        CLUSTER.kill(leader)
        killed_at = time.time()
        time.sleep(1.5)          # writes go on while a new leader is elected
        CLUSTER.start(leader)
        CLUSTER.leader()
        n_before = len([a for a in w.acked if a[1] > killed_at])
        end = time.time() + 20
        while len([a for a in w.acked if a[1] > killed_at]) < n_before + 20 and time.time() < end:
            time.sleep(0.05)
    finally:
        w.stopping.set()
        w.join(90)
    after = [n for n, t in w.acked if t > killed_at]
    assert after, "no write acknowledged after the kill (failed: %d)" % len(w.failed)
    last = w.acked[-1][0]
    print("  %d writes, %d acknowledged, %d failed, last acknowledged %d"
          % (w.n, len(w.acked), len(w.failed), last))
    # settle: the value a linearizable read returns ...
    end = time.time() + 20
    while True:
        rc, out, err = CLUSTER.ctl("--consistency", "linearizable", "get", "/kill9")
        if rc == 0 or time.time() > end:
            break
        time.sleep(0.2)
    assert rc == 0, err
    final = value_of(out)
    assert last <= final <= w.n, "final %d, last acknowledged %d, attempted %d" % (final, last, w.n)
    # ... is what every node returns (follower reads from each node alone)
    for i in range(1, CLUSTER.n + 1):
        CLUSTER.wait_value(i, "/kill9", b"%d\n" % final)
    # and the mount reads it too
    with open(M.p("kill9"), "rb") as f:
        assert value_of(f.read()) == final


def test_mount_t_fuse_confman_fs():
    made_link = False
    d = tempfile.mkdtemp(prefix="confman-fs-mount-t-")
    cache = tempfile.mkdtemp(prefix="confman-fs-cache-")  # not the machine's /var/cache
    try:
        if not os.path.lexists(LINK):
            os.symlink(os.path.abspath(FS), LINK)
            made_link = True
        elif os.path.realpath(LINK) != os.path.realpath(FS):
            print("  note: %s exists (-> %s); mount -t uses that binary"
                  % (LINK, os.path.realpath(LINK)))
        r = subprocess.run(["mount", "-t", "fuse.confman-fs", CLUSTER.servers(), d,
                            "-o", "_netdev,allow_other,default_permissions,timeout=3000,cache=" + cache],
                           capture_output=True, timeout=30)
        if r.returncode != 0 or not os.path.ismount(d):
            err = (r.stderr + r.stdout).decode(errors="replace")
            if "not found" in err or "No such file" in err:
                print("  SKIP mount -t fuse.confman-fs: mount(8) cannot find confman-fs: %s"
                      % err.strip())
                return
            raise AssertionError("mount -t fuse.confman-fs -> %d: %s" % (r.returncode, err))
        with open("/proc/mounts") as f:
            assert any(l.split()[1] == d and l.split()[2] == "fuse.confman-fs" for l in f), d
        with open(os.path.join(d, "via-mount-t"), "w") as f:
            f.write("m")
        assert CLUSTER.ctl("get", "/via-mount-t")[1] == b"m"
        assert subprocess.run(["umount", d]).returncode == 0
        assert not os.path.ismount(d)
    finally:
        test_fs.force_unmount(d)
        shutil.rmtree(cache, ignore_errors=True)
        if made_link:
            os.unlink(LINK)


def test_fstab_line_of_the_example():
    """The line of examples/confman-fs.fstab, with this cluster's servers and
    a temporary mount point, mounted by mount(8) from an fstab file
    (`mount --fstab FILE DIR`, as `mount /etc/confman` would from
    /etc/fstab): _netdev, allow_other and default_permissions included."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "../../examples/confman-fs.fstab")) as f:
        line = [l for l in f if l.strip() and not l.startswith("#")][0].split()
    assert line[2] == "fuse.confman-fs" and "_netdev" in line[3], line
    made_link = False
    d = tempfile.mkdtemp(prefix="confman-fs-fstab-")
    fstab = d + ".fstab"
    cache = tempfile.mkdtemp(prefix="confman-fs-cache-")  # not the machine's /var/cache
    try:
        if not os.path.lexists(LINK):
            os.symlink(os.path.abspath(FS), LINK)
            made_link = True
        line[0], line[1] = CLUSTER.servers(), d
        # This cluster is plain TCP: the example's TLS files are not here
        # (tests/fs/test_trust.py mounts the line with them, over TLS).
        line[3] = ",".join(o for o in line[3].split(",")
                           if not o.startswith(("ca=", "cert=", "key=")))
        line[3] += ",cache=" + cache
        with open(fstab, "w") as f:
            f.write(" ".join(line) + "\n")
        r = subprocess.run(["mount", "--fstab", fstab, d], capture_output=True, timeout=30)
        assert r.returncode == 0 and os.path.ismount(d), (r.returncode, r.stderr)
        with open("/proc/mounts") as f:
            opts = [l.split()[3] for l in f if l.split()[1] == d][0]
        assert "allow_other" in opts, opts
        with open(os.path.join(d, "via-fstab"), "w") as f:
            f.write("f")
        assert CLUSTER.ctl("get", "/via-fstab")[1] == b"f"
        assert subprocess.run(["umount", d]).returncode == 0
        assert not os.path.ismount(d)
    finally:
        test_fs.force_unmount(d)
        shutil.rmtree(cache, ignore_errors=True)
        if os.path.exists(fstab):
            os.unlink(fstab)
        if made_link:
            os.unlink(LINK)


def main():
    global CLUSTER, M
    CLUSTER = harness.Cluster(base_port=PORT).up()
    test_fs.CLUSTER = CLUSTER
    ok = False
    try:
        CLUSTER.leader()
        M = Mount(CLUSTER, "timeout=3000")
        try:
            test_fs.harness_run([
                test_leader_kill9_during_echo_loop_loses_no_acked_write,
                test_mount_t_fuse_confman_fs,
                test_fstab_line_of_the_example,
            ])
        finally:
            rc = M.down()
            if rc != 0:
                raise AssertionError("confman-fs exited with %s" % rc)
        ok = test_fs.RESULT[1] == 0
    finally:
        CLUSTER.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
