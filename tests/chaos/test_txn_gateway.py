#!/usr/bin/env python3
"""The gateway's txn path under faults, checked for linearizability.

A 3-node cluster (loopback), two confman-api gateways: one for the churn
(deleters and creators of one key), one for the CAS-by-mod_revision clients
(tests/chaos/txn_workload.py). The CAS gateway sleeps a few ms between a
txn's read and its write (--test-txn-sleep-ms), which widens the window a
delete and re-create must fall into, so a short run meets it often. During
the run the leader is paused (1.5 s) and a follower killed and restarted.
checker.check_txn_linearizable must pass; and with --test-txn-cas-version
(the gateway's CAS on the version, as before CM_PUT_IF_MOD) the same run
must fail. Nodes 21300-21302 and 21310-21312, gateways 21395-21396.

CONFMAN_TXN_CHAOS_SECONDS (default 8) sets each run's length.
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "api"))
import checker  # noqa: E402
import txn_workload  # noqa: E402
from gwlib import Gateway, harness  # noqa: E402

BASE = int(os.environ.get("CONFMAN_TXN_CHAOS_PORT", "21300"))
GW = 21395
SECONDS = float(os.environ.get("CONFMAN_TXN_CHAOS_SECONDS", "8"))
SLEEP_MS = 15


def faults(c, start, log):
    """Pause the leader for 1.5 s, then kill -9 a follower and restart it."""
    time.sleep(max(0.0, start + SECONDS * 0.25 - time.time()))
    ld = c.leader()
    c.pause(ld)
    log.append("pause node %d (leader)" % ld)
    time.sleep(1.5)
    c.resume(ld)
    time.sleep(max(0.0, start + SECONDS * 0.6 - time.time()))
    ld = c.leader()
    f = [i for i in (1, 2, 3) if i != ld][0]
    c.kill(f)
    log.append("kill -9 node %d (follower)" % f)
    time.sleep(1.0)
    c.start(f)


def scenario(old, base):
    c = harness.Cluster(3, base_port=base)
    gws = []
    try:
        c.up()
        c.leader()
        churn = Gateway(c, GW).start()
        gws.append(churn)
        extra = ["--threads", "2", "--test-txn-sleep-ms", str(SLEEP_MS)]
        cas = Gateway(c, GW + 1, extra + (["--test-txn-cas-version"] if old else [])).start()
        gws.append(cas)
        cas.wait_ready()
        log = []
        start = time.time()
        ft = threading.Thread(target=faults, args=(c, start, log))
        ft.start()
        ops, stats = txn_workload.run(GW + 1, GW, "/chaos/txn", SECONDS)
        ft.join(60)
        res = checker.check_txn_linearizable(ops)
        print("  %s: %d ops in %.0f s, faults: %s\n    %s\n    checker: %s (%d ops, %.2f s)"
              % ("--test-txn-cas-version" if old else "normal", len(ops), SECONDS,
                 "; ".join(log), ", ".join("%s %d" % kv for kv in sorted(stats.items())),
                 "linearizable" if res["ok"] else "NOT linearizable", res["ops"],
                 res["seconds"]), flush=True)
        if not res["ok"]:
            print("    " + checker.format_txn_counterexample(res).replace("\n", "\n    "),
                  flush=True)
        assert stats.get("cas ok succeeded", 0) >= 10, "too few successful CAS: %s" % stats
        assert stats.get("delete ok", 0) > 20, "too few deletes: %s" % stats
        return res
    finally:
        for g in gws:
            if g.alive():
                g.stop()
        c.down()


def test_txn_path_is_linearizable_under_faults():
    res = scenario(old=False, base=BASE)
    assert res["ok"], checker.format_txn_counterexample(res)


def test_cas_on_version_is_caught():
    res = scenario(old=True, base=BASE + 10)
    assert not res["ok"] and not res.get("unknown"), \
        "the checker did not catch the CAS on the version: %r" % res


if __name__ == "__main__":
    harness.run([test_txn_path_is_linearizable_under_faults, test_cas_on_version_is_caught])
