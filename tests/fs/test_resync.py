"""test_resync.py: inotify watchers hear what a watch RESYNC skipped.

The cluster compacts every 10 entries, keeping 2. Mount B's daemon is
stopped (SIGSTOP) while mount A changes a file B watches, removes one,
creates one and writes 60 more keys: when B runs again its watch stream has
been silent for 2 s, it subscribes again from where it was, and the server
no longer has those events (RESYNC). B must then invalidate its caches AND
tell its inotify watchers what changed: IN_MODIFY for the changed file,
IN_DELETE for the removed one, IN_CREATE for the new one (fs/resync.c).
Before, a resync only invalidated: the watcher heard nothing.
Ports: CONFMAN_IT_PORT (default 17920) and up.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, harness  # noqa: E402
from test_notify import IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_MODIFY, Inotify  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "17920"))


def wait_exists(m, rel, timeout=5.0):
    end = time.time() + timeout
    while not os.path.exists(m.p(rel)) and time.time() < end:
        time.sleep(0.02)
    assert os.path.exists(m.p(rel)), rel


def test_resync_is_replayed_to_inotify(A, B):
    c = test_fs.CLUSTER
    A.sh("mkdir -p rs; echo v0 > rs/mod; echo x > rs/del; echo k > rs/keep")
    for rel in ("rs/mod", "rs/del", "rs/keep"):
        wait_exists(B, rel)
    os.listdir(B.p("rs"))
    with open(B.p("rs/mod"), "rb") as f:
        assert f.read() == b"v0\n"
    ino = Inotify()
    try:
        ino.add(B.p("rs"))
        ino.drain(0.3)
        B.proc.send_signal(signal.SIGSTOP)
        try:
            A.sh("echo v1-longer > rs/mod; rm rs/del; echo n > rs/new")
            for k in range(60):
                c.ctl("put", "/pad/k%d" % (k % 5), "p%d" % k, check=True)
            time.sleep(2.0)  # B's stream is now silent beyond its bound
        finally:
            B.proc.send_signal(signal.SIGCONT)
        seen = ino.wait_for([(IN_MODIFY | IN_CLOSE_WRITE, "mod"), (IN_DELETE, "del"),
                             (IN_CREATE, "new")], timeout=10)
        extra = [e for e in seen if e[3] == "keep"]
    finally:
        ino.close()
    print("  after the resync B's watcher got %d events: %s" % (
        len(seen), sorted({(hex(e[1]), e[3]) for e in seen})))
    assert not extra, "an unchanged file was reported: %r" % extra
    with open(B.p("rs/mod"), "rb") as f:
        assert f.read() == b"v1-longer\n"
    assert not os.path.exists(B.p("rs/del"))


def main():
    c = harness.Cluster(base_port=PORT,
                        extra=["--snapshot-entries", "10", "--keep-entries", "2"]).up()
    test_fs.CLUSTER = c
    A = B = None
    try:
        c.leader()
        A = Mount(c, "timeout=5000")
        B = Mount(c, "timeout=5000")
        test_fs.harness_run([lambda: test_resync_is_replayed_to_inotify(A, B)])
    finally:
        for m in (A, B):
            if m is not None:
                m.down()
        c.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)


if __name__ == "__main__":
    main()
