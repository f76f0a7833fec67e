"""test_offline_shard.py: offline per shard (issue 16; fs/README.md, "Offline").

A 4-node cluster; the root shard on nodes 1-4, the shard /b on node 4 alone
(`confmanctl shard add /b --replicas 4`). Mount A (persistent cache,
prefetch) has read both. Node 4 is killed: /b is served from A's cache
(xattr user.confman.offline 1 on its files, changes below it EROFS), while
/a stays live (offline 0, reads and writes go to the cluster, a change made
by confmanctl is seen), and the root's user.confman.status lists /b among
offline_shards with the mount's state online. Node 4 comes back: /b is
online again and writable.
Ports: CONFMAN_IT_PORT (default 28110) and up (4 nodes, HTTP +1000).
"""
import errno
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, expect_errno, harness  # noqa: E402
from offline_util import cat, wait_for, xattr  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "28110"))
S = {}


def setup():
    c, A = S["cluster"], S["A"]
    A.sh("mkdir -p a b/sub && echo live=1 > a/conf && echo shard=b > b/conf"
         " && echo deep > b/sub/f")
    wait_for("A's prefetch", lambda: "prefetch done" in xattr(A.dir, "user.confman.status"))
    assert cat(A.p("b/conf")) == b"shard=b\n"
    assert cat(A.p("b/sub/f")) == b"deep\n"
    time.sleep(1.2)  # one flush of the environment
    rc, out, _ = c.ctl("shards")
    assert b"/b" in out, out


def test_one_shard_gone_others_live():
    c, A = S["cluster"], S["A"]
    setup()
    t_kill = time.time()
    c.kill(4)
    assert cat(A.p("b/conf")) == b"shard=b\n"
    first = time.time() - t_kill
    wait_for("/b offline", lambda: xattr(A.p("b/conf"), "user.confman.offline") == "1", 10)
    detect = time.time() - t_kill
    lat = []
    for _ in range(100):
        s = time.time()
        assert cat(A.p("b/conf")) == b"shard=b\n"
        lat.append((time.time() - s) * 1000)
    assert sorted(os.listdir(A.p("b"))) == ["conf", "sub"]
    assert cat(A.p("b/sub/f")) == b"deep\n"
    assert xattr(A.p("b/sub/f"), "user.confman.offline") == "1"
    assert int(xattr(A.p("b/conf"), "user.confman.age_ms")) > 0
    # The other shard: live, not marked.
    assert xattr(A.p("a/conf"), "user.confman.offline") == "0"
    assert xattr(A.p("a/conf"), "user.confman.age_ms") == "0"
    status = xattr(A.dir, "user.confman.status")
    assert "state online" in status and "offline_shards /b\n" in status, status
    lat.sort()
    print("  kill node 4 -> first cat of /b %.0f ms, offline xattr %.0f ms; cached cat "
          "p50 %.2f ms p99 %.2f ms" % (first * 1000, detect * 1000, lat[len(lat) // 2],
                                       lat[int(len(lat) * 0.99)]), flush=True)
    assert first < 2.0, first


def test_changes_refused_only_in_the_offline_shard():
    c, A = S["cluster"], S["A"]
    for fn, args in ((lambda p: open(p, "w"), (A.p("b/conf"),)),
                     (lambda p: open(p, "x"), (A.p("b/new"),)),
                     (os.mkdir, (A.p("b/d"),)),
                     (os.unlink, (A.p("b/conf"),)),
                     (os.rename, (A.p("b/conf"), A.p("b/c2"))),
                     (os.rename, (A.p("a/conf"), A.p("b/c3"))),
                     (os.chmod, (A.p("b/conf"), 0o600))):
        s = time.time()
        expect_errno(errno.EROFS, fn, *args)
        assert time.time() - s < 1.0
    assert "refused (EROFS" in A.output()
    assert "offline: shard /b" in A.output(), A.output()
    # Live shard: writes go through, a change made elsewhere is seen.
    s = time.time()
    A.sh("echo live=2 > a/conf && mkdir a/newdir")
    w_ms = (time.time() - s) * 1000
    rc, out, _ = c.ctl("get", "/a/conf", check=True)
    assert out == b"live=2\n", out
    c.ctl("put", "/a/other", "x\n", check=True)
    wait_for("a/other", lambda: os.path.exists(A.p("a/other")), 10)
    assert cat(A.p("a/other")) == b"x\n"
    assert xattr(A.p("a/other"), "user.confman.offline") == "0"
    print("  live shard write %.0f ms while /b is offline" % w_ms, flush=True)


def test_shard_back_online():
    c, A = S["cluster"], S["A"]
    t = time.time()
    c.start(4)
    wait_for("/b online", lambda: xattr(A.p("b/conf"), "user.confman.offline") == "0", 30)
    back = time.time() - t
    assert "offline_shards -" in xattr(A.dir, "user.confman.status")
    A.sh("echo shard=b2 > b/conf")
    rc, out, _ = c.ctl("get", "/b/conf", check=True)
    assert out == b"shard=b2\n", out
    assert "shard /b (group" in A.output() and "online again" in A.output()
    print("  node 4 restarted -> /b online after %.0f ms" % (back * 1000), flush=True)


def test_moved_shard_stays_online_when_its_old_node_dies():
    """The mount's shard map must not send it offline: /b moved from node 4
    to node 3, then node 4 killed; reads below /b go on live (the chaos
    nemesis found a mount serving a moved shard from its cache for most of
    a run: it probed the replicas of its old map)."""
    c, A = S["cluster"], S["A"]
    A.sh("cat b/conf > /dev/null")
    time.sleep(1.5)  # the mount's map is older than what follows
    c.ctl("shard", "move", "/b", "--replicas", "3", "--timeout", "30", check=True)
    c.kill(4)
    c.ctl("put", "/b/conf", "moved=1\n", check=True)
    end = time.time() + 3
    while time.time() < end:
        v = cat(A.p("b/conf"))
        assert xattr(A.p("b/conf"), "user.confman.offline") == "0", (v, A.output())
        time.sleep(0.05)
    wait_for("the new value", lambda: cat(A.p("b/conf")) == b"moved=1\n", 10)
    A.sh("echo moved=2 > b/conf")
    assert "offline_shards -" in xattr(A.dir, "user.confman.status")


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
    c = harness.Cluster(nodes=4, base_port=PORT).up()
    test_fs.CLUSTER = c
    S["cluster"] = c
    d = tempfile.mkdtemp(prefix="confman-cache-")
    A = None
    try:
        c.leader()
        c.ctl("shard", "add", "/b", "--replicas", "4", check=True)
        A = S["A"] = Mount(c, "timeout=5000,offline_after=300,cache=%s" % d)
        test_fs.harness_run([logged(t) for t in (
            test_one_shard_gone_others_live,
            test_changes_refused_only_in_the_offline_shard,
            test_shard_back_online,
            test_moved_shard_stays_online_when_its_old_node_dies)])
    finally:
        try:
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
