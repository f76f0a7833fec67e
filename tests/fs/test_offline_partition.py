"""test_offline_partition.py: offline mode under a network partition rather
than dead nodes (issue 16; fs/README.md, "Offline").

The nemesis's cluster (tests/chaos/netcluster.py): 4 nodes, each in a
network namespace behind a bridge; the root shard on nodes 1-4, /b on node
4 alone. Mount A runs in the root namespace (the host's side). Partitions
are the nemesis's nft drop rules, here against the bridge address the host
reaches the nodes from (NetCluster.cut_clients): packets vanish, nothing is
refused, so only the probes' deadlines decide.

1. Node 4 cut from the host: /b is offline on A (served from the cache,
   EROFS), /a live. A client on the cluster's side changes /b/conf. Healed:
   /b comes back, A's inotify watcher hears the change, cat returns it.
2. Every node cut from the host: A is offline as a whole (state offline),
   serves /a and /b from its cache, refuses changes. /a/conf is changed
   on the cluster's side. Healed: A online, the change is heard and read.
Ports: CONFMAN_IT_PORT (default 28150) inside the namespaces, HTTP +1000.
"""
import errno
import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "../chaos"))
import test_fs  # noqa: E402
from test_fs import Mount, expect_errno  # noqa: E402
from test_notify import IN_CLOSE_WRITE, Inotify  # noqa: E402
import netcluster  # noqa: E402
from offline_util import cat, wait_for, xattr  # noqa: E402

netcluster.PORT = int(os.environ.get("CONFMAN_IT_PORT", "28150"))
S = {}


def heard(ino, name, t0, timeout=15):
    """Wait for IN_CLOSE_WRITE of name; (ms since t0, writes seen in all)."""
    seen = ino.wait_for([(IN_CLOSE_WRITE, name)], timeout=timeout)
    ms = (time.time() - t0) * 1000
    seen += ino.drain(0.5)
    return ms, [e for e in seen if e[3] == name and e[1] & IN_CLOSE_WRITE]


def test_shard_partitioned_from_the_host():
    c, A = S["cluster"], S["A"]
    A.sh("mkdir -p a b && echo live=1 > a/conf && echo shard=b > b/conf")
    wait_for("A's prefetch", lambda: "prefetch done" in xattr(A.dir, "user.confman.status"))
    assert cat(A.p("b/conf")) == b"shard=b\n"
    time.sleep(1.2)  # one flush of the environment
    ino = Inotify()
    try:
        ino.add(A.p("b"))
        ino.drain(0.3)
        t = time.time()
        c.cut_clients([4])
        assert cat(A.p("b/conf")) == b"shard=b\n"
        first = time.time() - t
        assert xattr(A.p("b/conf"), "user.confman.offline") == "1"
        assert xattr(A.p("a/conf"), "user.confman.offline") == "0"
        expect_errno(errno.EROFS, lambda p: open(p, "w"), A.p("b/conf"))
        A.sh("echo live=2 > a/conf")  # the other shard is live
        status = xattr(A.dir, "user.confman.status")
        assert "state online" in status and "offline_shards /b\n" in status, status
        c.ctl_in(1, "put", "/b/conf", "shard=b2\n")  # on the cluster's side
        assert cat(A.p("b/conf")) == b"shard=b\n"  # still the cached value
        t_heal = time.time()
        c.heal()
        wait_for("/b online", lambda: xattr(A.p("b/conf"), "user.confman.offline") == "0", 30)
        online = (time.time() - t_heal) * 1000
        ms, writes = heard(ino, "conf", t_heal)
    finally:
        ino.close()
    assert len(writes) == 1, writes
    assert cat(A.p("b/conf")) == b"shard=b2\n"
    assert c.ctl_in(2, "get", "/a/conf") == b"live=2\n"
    print("  node 4 cut -> first cat of /b %.0f ms; healed -> /b online %.0f ms, the "
          "change heard %.0f ms" % (first * 1000, online, ms), flush=True)
    assert first < 2.0, first


def test_host_partitioned_from_the_cluster():
    c, A = S["cluster"], S["A"]
    ino = Inotify()
    try:
        ino.add(A.p("a"))
        ino.drain(0.3)
        t = time.time()
        c.cut_clients([1, 2, 3, 4])
        assert cat(A.p("a/conf")) == b"live=2\n"
        first = time.time() - t
        wait_for("A offline", lambda: "state offline" in xattr(A.dir, "user.confman.status"),
                 5)
        assert cat(A.p("b/conf")) == b"shard=b2\n"
        assert xattr(A.p("a/conf"), "user.confman.offline") == "1"
        assert sorted(os.listdir(A.p("a"))) == ["conf"]
        s = time.time()
        expect_errno(errno.EROFS, lambda p: open(p, "w"), A.p("a/conf"))
        refuse = time.time() - s
        c.ctl_in(1, "put", "/a/conf", "live=3\n")
        t_heal = time.time()
        c.heal()
        wait_for("A online", lambda: "state online" in xattr(A.dir, "user.confman.status"), 30)
        online = (time.time() - t_heal) * 1000
        ms, writes = heard(ino, "conf", t_heal)
    finally:
        ino.close()
    assert len(writes) == 1, writes
    assert cat(A.p("a/conf")) == b"live=3\n"
    A.sh("echo live=4 > a/conf")
    assert c.ctl_in(3, "get", "/a/conf") == b"live=4\n"
    assert "online again" in A.output()
    print("  host cut -> first cat %.0f ms, refusal %.1f ms; healed -> online %.0f ms, the "
          "change heard %.0f ms" % (first * 1000, refuse * 1000, online, ms), flush=True)
    assert first < 2.0, first


def logged(t):
    def run():
        try:
            t()
        except Exception:
            print("---- mount A log ----\n%s" % S["A"].output(), flush=True)
            raise
    run.__name__ = t.__name__
    return run


def main():
    c = S["cluster"] = netcluster.NetCluster(nodes=4, tls=False)
    test_fs.CLUSTER = c
    d = tempfile.mkdtemp(prefix="confman-cache-")
    A = None
    try:
        c.up()
        c.leader()
        c.ctl("shard", "add", "/b", "--replicas", "4", check=True)
        A = S["A"] = Mount(c, "timeout=5000,offline_after=300,cache=%s" % d)
        test_fs.harness_run([logged(t) for t in (
            test_shard_partitioned_from_the_host,
            test_host_partitioned_from_the_cluster)])
    finally:
        try:
            c.heal()
            if A is not None:
                if A.proc.poll() is None:
                    A.proc.send_signal(signal.SIGCONT)
                A.down()
        finally:
            c.down()
            shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)


if __name__ == "__main__":
    main()
