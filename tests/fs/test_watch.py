"""test_watch.py: the change streams behind a mount's caches (issue 11, items
1 and 2): a mount of "/" hears changes in a shard nested below it, and a mount
whose watch replica is paused (SIGSTOP: its TCP connection stays open) stops
serving from its cache within the staleness bound. Also `confmanctl watch /`
reports changes under a nested shard.

Bound used here: the client's silence bound (1 s) + re-subscription + one
read attempt on the paused home replica (timeout/4) + margin.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, harness, read, eventually_read  # noqa: E402

CLUSTER = None
A = None
B = None
BOUND = 4.0  # seconds: see the module comment


def _fresh_within(path, want, limit):
    """Reads path (a new open each time) until it returns want; the time it took."""
    t0 = time.time()
    got = None
    while time.time() - t0 <= limit:
        got = read(path)
        if got == want:
            return time.time() - t0
        time.sleep(0.02)
    raise AssertionError("%s: %r after %.1f s, want %r" % (path, got, limit, want))


def _shard_add(prefix):
    CLUSTER.ctl("shard", "add", prefix, "--replicas", "1,2,3", check=True)


def test_nested_shard_change_reaches_other_mount():
    """Item 1: B caches /s1/cfg, whose group's index is past the root
    group's; a change by confmanctl must reach B within the bound, and stat
    must agree with cat."""
    _shard_add("/s1")
    # Push the nested group's index past the root group's.
    for k in range(40):
        CLUSTER.ctl("put", "/s1/fill%d" % k, "x", check=True)
    A.sh("echo v1 > s1/cfg")
    assert eventually_read(B.p("s1/cfg"), b"v1\n") == b"v1\n"
    for _ in range(5):
        assert read(B.p("s1/cfg")) == b"v1\n"  # cached now (old code: for ever)
    CLUSTER.ctl("put", "/s1/cfg", "v2-longer", check=True)
    took = _fresh_within(B.p("s1/cfg"), b"v2-longer", BOUND)
    print("  B saw the nested shard's change after %.2f s" % took)
    for _ in range(5):
        assert read(B.p("s1/cfg")) == b"v2-longer"
        assert os.stat(B.p("s1/cfg")).st_size == len(b"v2-longer")
    # And through the other mount too, both ways.
    B.sh("echo from-b > s1/cfg")
    _fresh_within(A.p("s1/cfg"), b"from-b\n", BOUND)


def test_confmanctl_watch_root_sees_nested_shard():
    """`confmanctl watch /` reports a change under the nested shard /s1."""
    cmd = [harness.CONFMANCTL, "--servers", CLUSTER.servers(), "watch", "/"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # subscribed, and the map fetched
        CLUSTER.ctl("put", "/s1/watched-by-ctl", "w", check=True)
        CLUSTER.ctl("put", "/root-watched", "w", check=True)
        time.sleep(1.5)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    text = out.decode(errors="replace")
    assert "/root-watched" in text, (text, err)
    assert "/s1/watched-by-ctl" in text, (text, err)


def _root_follower():
    """A node that follows (does not lead) the root group."""
    lead = CLUSTER.leader()
    return [i for i in range(1, CLUSTER.n + 1) if i != lead][0]


def test_paused_watch_replica_stops_the_cache():
    """Item 2: mount C knows one server only (a follower of the root group),
    so its watch stream is served by that replica. SIGSTOP it: a write the
    others acknowledge must be read through C within the bound."""
    f = _root_follower()
    C = Mount(CLUSTER, "timeout=5000,attr_timeout=30,entry_timeout=30",
              servers=CLUSTER.addr(f))
    others = ",".join(CLUSTER.addr(i) for i in range(1, CLUSTER.n + 1) if i != f)
    try:
        CLUSTER.ctl("put", "/paused-cfg", "old", check=True)
        assert eventually_read(C.p("paused-cfg"), b"old") == b"old"
        for _ in range(5):
            assert read(C.p("paused-cfg")) == b"old"  # cached
        time.sleep(1.5)  # C has learned the map (the other nodes' addresses)
        CLUSTER.pause(f)
        try:
            CLUSTER.ctl("put", "/paused-cfg", "new-value", servers=others, check=True)
            took = _fresh_within(C.p("paused-cfg"), b"new-value", BOUND)
            print("  C saw the change %.2f s after the write (replica %d paused)" % (took, f))
            assert os.stat(C.p("paused-cfg")).st_size == len(b"new-value")
        finally:
            CLUSTER.resume(f)
        # Live again: the cache serves and stays fresh.
        CLUSTER.ctl("put", "/paused-cfg", "after", check=True)
        _fresh_within(C.p("paused-cfg"), b"after", BOUND)
    finally:
        test_fs.unmount_all((C,))


def test_watch_resumes_from_events_kept_behind_the_snapshot():
    """The log keeps --keep-entries (50 here) behind a snapshot, and the
    events with it: a watch from an index between the compaction point and
    the snapshot gets those events, not a RESYNC (the old floor was the
    snapshot index)."""
    i = 1
    for k in range(130):
        CLUSTER.ctl("put", "/floor/k%d" % k, "v", servers=CLUSTER.addr(i), check=True)
    end = time.time() + 10
    snap = 0
    while time.time() < end:
        snap = CLUSTER.status(i)["snap_index"]
        if snap > 0:
            break
        time.sleep(0.1)
    assert snap > 0, "no snapshot taken"
    frm = snap - 20  # kept: the compaction point is snap - 50
    cmd = [harness.CONFMANCTL, "--servers", CLUSTER.addr(i), "watch", "--from", str(frm),
           "/floor"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    lines = out.decode(errors="replace").splitlines()
    assert lines, err
    first = lines[0].split()
    assert first[1] != "resync", lines[:3]
    assert int(first[0]) >= frm, (frm, lines[:3])
    assert int(first[0]) <= snap, (snap, lines[:3])


def main():
    global CLUSTER, A, B
    port = int(os.environ.get("CONFMAN_IT_PORT", "17850"))
    # Small snapshots, so that the floor of resumable events is exercised.
    CLUSTER = harness.Cluster(base_port=port, extra=["--snapshot-entries", "100",
                                                     "--keep-entries", "50"]).up()
    test_fs.CLUSTER = CLUSTER
    ok = False
    try:
        CLUSTER.leader()
        # Long kernel cache timeouts: freshness must come from the watch.
        opts = "timeout=5000,attr_timeout=30,entry_timeout=30"
        A = Mount(CLUSTER, opts)
        B = Mount(CLUSTER, opts)
        try:
            test_fs.harness_run([
                test_nested_shard_change_reaches_other_mount,
                test_confmanctl_watch_root_sees_nested_shard,
                test_paused_watch_replica_stops_the_cache,
                test_watch_resumes_from_events_kept_behind_the_snapshot,
            ])
        finally:
            test_fs.unmount_all((A, B))
        ok = test_fs.RESULT[1] == 0
    finally:
        CLUSTER.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
