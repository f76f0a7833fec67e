#!/usr/bin/env python3
"""Integration: what a write's answer says when its leader lost its place.

A leader proposes a write, cannot commit it (its followers are down), and
is then paused itself while the followers elect a new leader, whose no-op
takes the index of that write. When the old leader resumes, it learns the
new term, drops its uncommitted entry and applies the no-op at that index:
the write was provably never applied, so the answer must say "not leader,
retry" (the client then sends it to the new leader and it succeeds), never
"outcome unknown" (exit 5), which obliges the caller to re-read to learn
nothing. (issue 11: the server answered -EIO when a no-op or configuration
entry took a write's index.)
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import CONFMANCTL, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "21500"))


def test_write_displaced_by_a_new_leaders_noop_is_retried_not_unknown():
    c = Cluster(base_port=BASE).up()
    results = []
    try:
        for k in range(3):
            old = c.leader()
            c.ctl("put", "/w", "before%d" % k, check=True)
            others = [i for i in (1, 2, 3) if i != old]
            # Killed, not paused: a paused node would still find the
            # old leader's APPEND in its socket when it resumes.
            for i in others:
                c.kill(i)
            # To the old leader only first; the client learns the others
            # from its NOTLEADER answer (the cluster file's addresses).
            cmd = [CONFMANCTL, "--servers", c.addr(old) + "," + c.servers(),
                   "--timeout", "20000", "put", "/w", "displaced%d" % k]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.3)  # proposed on the old leader, not committable
            c.pause(old)
            for i in others:
                c.start(i)
            new = None
            end = time.time() + 20
            while new is None and time.time() < end:
                for i in others:
                    g = c.status(i)
                    if g and g.get("role") == "leader":
                        new = i
                time.sleep(0.05)
            assert new is not None, "no new leader among %r:\n%s" % (
                others, "\n".join(c.log(i)[-1500:] for i in others))
            c.resume(old)
            out, err = p.communicate(timeout=30)
            end = time.time() + 15
            while True:  # the resumed node may disturb the group a moment
                rc, val, gerr = c.ctl("get", "/w")
                if rc == 0 or time.time() > end:
                    break
                time.sleep(0.2)
            assert rc == 0, "get /w: %s\n%s" % (gerr, "\n".join(c.log(i)[-2500:] for i in (1, 2, 3)))
            results.append((p.returncode, err.decode().strip(), val))
    finally:
        for i in (1, 2, 3):
            if c.alive(i):
                c.resume(i)
        c.down()
    print("  3 writes displaced by a new leader's no-op: exit codes %r"
          % [r[0] for r in results])
    for k, (rc, err, val) in enumerate(results):
        assert rc == 0, "round %d: exit %d (%s): the write was never applied, " \
                        "it must be retried" % (k, rc, err)
        assert val == b"displaced%d" % k, (k, val)


if __name__ == "__main__":
    run([test_write_displaced_by_a_new_leaders_noop_is_retried_not_unknown])
