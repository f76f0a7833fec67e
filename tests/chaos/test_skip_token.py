#!/usr/bin/env python3
"""The session checker catches a server that breaks read-your-writes.

Two follower-read workers (chaos-worker, each writing its own key and reading
both) are given one follower only (the client library learns the others
from the shard map and redirects, but a client doing one request at a
time reads from the server it was given while that one answers; with all
three listed it picks one at random, and both workers may miss the lagging
one), which is made to lag: cut from its peers (clients
still reach it; --max-staleness-ms is high so it does not refuse reads as
stale) and briefly paused with SIGSTOP, twice. With --test-skip-token-wait the
followers serve reads without waiting for the client's token, and the session
checker must report violations; the same scenario without the switch must
pass (the replica waits, answers STALE, the client goes elsewhere).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
import netcluster  # noqa: E402
from nemesis import WORKER  # noqa: E402
from netcluster import harness  # noqa: E402

KEYS = ["/s/p1", "/s/p2"]


def scenario(skip):
    extra = ["--max-staleness-ms", "60000"] + (["--test-skip-token-wait"] if skip else [])
    c = netcluster.NetCluster(nodes=3, extra=extra)
    procs = []
    try:
        c.up()
        leader = c.find_leader(timeout=30)
        assert leader, "no leader"
        f = [i for i in (1, 2, 3) if i != leader][0]
        servers = c.addr(f)
        hist = os.path.join(c.dir, "history")
        os.makedirs(hist)
        for p, key in ((1, KEYS[0]), (2, KEYS[1])):
            procs.append(subprocess.Popen(
                [WORKER, "--servers", servers, "--process", str(p), "--consistency",
                 "follower", "--keys", ",".join(KEYS), "--write-keys", key, "--mix", "60,40,0",
                 "--seconds", "9", "--timeout-ms", "3000", "--seed", str(p),
                 "--out", os.path.join(hist, "p%d.jsonl" % p)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(1.5)
        for _ in range(2):
            others = [i for i in (1, 2, 3) if i != f]
            c.partition([[f], others])   # f falls behind; clients still reach it
            time.sleep(1.5)
            c.pause(f)                   # and is slowed
            time.sleep(0.3)
            c.resume(f)
            time.sleep(0.5)
            c.heal()
            time.sleep(1.0)
        for p in procs:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0, out
        ops = checker.load(hist)
        v = checker.check_sessions(ops)
        reads = sum(1 for o in ops if o["type"] == "read" and o["outcome"] == "ok")
        writes = sum(1 for o in ops if o["type"] == "write" and o["outcome"] == "ok")
        print("  %s: %d ops (%d reads, %d writes ok), %d session violations"
              % ("with --test-skip-token-wait" if skip else "normal", len(ops), reads, writes,
                 len(v)), flush=True)
        kinds = {}
        for x in v:
            kinds[x["kind"]] = kinds.get(x["kind"], 0) + 1
        if v:
            print("  by kind: %s; first:\n    %s" % (kinds, checker.format_violation(v[0])
                                                    .replace("\n", "\n    ")), flush=True)
        assert writes > 20 and reads > 20, "too little load to mean anything"
        return v
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        c.down()


def test_skipping_the_token_wait_is_caught():
    v = scenario(skip=True)
    assert v, "the session checker did not catch --test-skip-token-wait"


def test_same_scenario_without_the_switch_passes():
    v = scenario(skip=False)
    assert not v, "\n".join(checker.format_violation(x) for x in v[:5])


if __name__ == "__main__":
    harness.run([test_skipping_the_token_wait_is_caught,
                 test_same_scenario_without_the_switch_passes])
