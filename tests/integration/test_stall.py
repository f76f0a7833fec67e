#!/usr/bin/env python3
"""Integration: a follower stalled (SIGSTOP) while its group compacts.

While the follower is stopped the leader writes past a snapshot and drops the
log the follower needs; on SIGCONT the follower reads the APPENDs that waited in
its socket, applies them (which makes its own snapshot due) and then receives
the leader's snapshot. The core installs it at once; the server's own view of
the applied index moves only with the next batch. A server that snapshots
before taking that batch asks the core for a snapshot below the one it now
holds: that must be nothing to do, never a fail-stop. Each round checks that
the follower is still running and that it shows every key written so far.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "18100"))
SOAK = os.environ.get("CONFMAN_SOAK") == "1"
# Under ASan a round takes ~14 s instead of ~1.6: 6 rounds there (the plain
# build's 16 are the reproduction: about one round in four failed).
SANITIZED = os.environ.get("CONFMAN_SANITIZED") == "1"
SNAP_EVERY = 50
KEEP = 10
# One value of this size is what the snapshot holds besides the small keys:
# it stays one chunk (256 KiB), so the leader's snapshot installs on arrival.
# Writing BIG_WRITES of them after the small keys, while the follower is
# stopped, is what opens the window: on the old code the follower died in
# about one round in four (6 deaths in 23 rounds, 14 of 14 runs failed);
# with the big values first, or none, in no round of 48 and of 16.
BIG = 120 * 1024
BIG_WRITES = 40
# Small writes while the follower is stopped: 40-200, as in the report.
SMALL = [40, 63, 87, 111, 150, 200, 47, 73, 99, 131, 177, 58, 121, 90, 160, 45]


def _group(c, i):
    g = c.status(i)
    assert g is not None, "node %d does not answer status:\n%s" % (i, c.log(i))
    return g


def _caught_up(c, f, leader, timeout=30):
    """Wait until f applied all the leader has and is idle: (applied, snap)."""
    end = time.time() + timeout
    while time.time() < end:
        assert c.alive(f), "node %d exited:\n%s" % (f, c.log(f))
        lg, fg = _group(c, leader), _group(c, f)
        if fg["applied"] == lg["commit"] == fg["commit"]:
            return fg["applied"], fg["snap_index"]
        time.sleep(0.05)
    raise AssertionError("node %d does not catch up: %r vs %r" % (f, fg, lg))


def _ls_on(c, i, path):
    """The names below path as node i alone has them (a follower read)."""
    rc, out, err = c.ctl("--consistency", "follower", "ls", path, servers=c.addr(i))
    return set(out.split()) if rc == 0 else None


def _wait_keys(c, i, path, want, timeout=30):
    end = time.time() + timeout
    have = None
    while time.time() < end:
        assert c.alive(i), "node %d exited:\n%s" % (i, c.log(i))
        have = _ls_on(c, i, path)
        if have == want:
            return
        time.sleep(0.1)
    missing = sorted(want - (have or set()))
    raise AssertionError("node %d lacks %d of %d keys under %s (first: %s)"
                         % (i, len(missing), len(want), path, missing[:5]))


def _round(c, f, leader, others, r, n):
    """Bring f one entry short of its own snapshot, stop it, let the leader
    write past a snapshot of its own, continue f; n small keys in /stall/rNN."""
    applied, snap = _caught_up(c, f, leader)
    for k in range(snap + SNAP_EVERY - 1 - applied):
        c.ctl("put", "/stall/pad", "p%d" % k, servers=others, check=True)
    _caught_up(c, f, leader)
    c.pause(f)
    try:
        for k in range(n):
            c.ctl("put", "/stall/r%02d/k%03d" % (r, k), "v%d" % k, servers=others, check=True)
        # The big values last (see BIG): the follower's APPEND window (64
        # in flight) is full of small entries by then.
        for k in range(BIG_WRITES):
            c.ctl("put", "/stall/big", "-", input=(b"%02d.%02d." % (r, k)) * (BIG // 6),
                  servers=others, check=True)
    finally:
        c.resume(f)
    _wait_keys(c, f, "/stall/r%02d" % r, {b"k%03d" % k for k in range(n)})
    assert c.alive(f), "round %d: node %d exited:\n%s" % (r, f, c.log(f))


def test_follower_stalled_across_compaction_survives():
    c = Cluster(base_port=BASE, extra=["--snapshot-entries", str(SNAP_EVERY),
                                       "--keep-entries", str(KEEP)]).up()
    try:
        leader = c.leader()
        f = next(i for i in (1, 2, 3) if i != leader)
        # The stopped follower would hold a client's request until its
        # timeout: write through the other two only.
        others = ",".join(c.addr(i) for i in (1, 2, 3) if i != f)
        # 8 rounds (3 sanitized) in the default suite: the old server died in
        # about one round in four, so 8 catch it 9 times in 10; a soak runs 64.
        rounds = SMALL * 4 if SOAK else SMALL[:3] if SANITIZED else SMALL[:8]
        for r, n in enumerate(rounds):
            print("round %d: %d keys, node %d stopped" % (r, n, f), flush=True)
            _round(c, f, leader, others, r, n)
        # Every round's keys, once more, at the end: nothing went missing
        # with a later snapshot either.
        for r, n in enumerate(rounds):
            _wait_keys(c, f, "/stall/r%02d" % r, {b"k%03d" % k for k in range(n)}, 5)
        rc, out, err = c.read_on(f, "/stall/big")
        want = (b"%02d.%02d." % (len(rounds) - 1, BIG_WRITES - 1)) * (BIG // 6)
        assert rc == 0 and out == want, (rc, out[:20], err)
        assert "installed snapshot" in c.log(f), "never fell behind a compaction"
        for i in (1, 2, 3):
            assert c.alive(i), "node %d exited:\n%s" % (i, c.log(i))
    finally:
        c.down()


if __name__ == "__main__":
    run([test_follower_stalled_across_compaction_survives])
