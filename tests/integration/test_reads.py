#!/usr/bin/env python3
"""Integration: session guarantees of follower reads (read-your-writes, monotonic
reads) per client across replicas, with a follower paused and the leader killed;
a partitioned follower refuses reads instead of serving old data."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "17300"))
CHECK = os.environ.get("SESSION_CHECK", os.path.join(BUILD, "tests/integration/session-check"))


def test_sessions_keep_their_guarantees_under_pause_and_leader_kill():
    c = Cluster(base_port=BASE).up()
    try:
        leader = c.leader()
        follower = [i for i in (1, 2, 3) if i != leader][0]
        # The follower first: sessions read from it until it stops answering.
        order = [follower] + [i for i in (1, 2, 3) if i != follower]
        servers = ",".join(c.addr(i) for i in order)
        procs = [subprocess.Popen([CHECK, servers, a, b, "10"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for a, b in (("/s/a", "/s/b"), ("/s/b", "/s/a"))]
        try:
            time.sleep(2)
            c.pause(follower)      # a lagging replica: reads must not go back
            time.sleep(1.5)
            c.resume(follower)
            time.sleep(1)
            c.kill(leader)         # a leader change mid-session
            time.sleep(2)
            c.start(leader)
            outs = [p.communicate(timeout=60) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        for p, (out, err) in zip(procs, outs):
            print("  " + out.strip())
            assert p.returncode == 0, "session violated its guarantees: %s %s" % (out, err)
            writes = int(out.split()[1])
            assert writes > 50, "too little load to mean anything: %s" % out
    finally:
        c.down()


def test_partitioned_follower_refuses_reads():
    c = Cluster(base_port=BASE + 10, extra=["--max-staleness-ms", "300"]).up()
    try:
        leader = c.leader()
        c.ctl("put", "/p", "1", check=True)
        others = [i for i in (1, 2, 3) if i != leader]
        f = others[0]
        c.wait_value(f, "/p", b"1")
        # Without a leader (both others gone), f cannot know it is current.
        c.kill(leader)
        c.kill(others[1])
        time.sleep(1.0)
        rc, out, err = c.read_on(f, "/p")
        assert rc != 0 and ("STALE" in err or "NOLEADER" in err or "ETIMEDOUT" in err), \
            (rc, out, err)
    finally:
        c.down()


if __name__ == "__main__":
    run([test_sessions_keep_their_guarantees_under_pause_and_leader_kill,
         test_partitioned_follower_refuses_reads])
