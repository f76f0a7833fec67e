#!/usr/bin/env python3
"""A nemesis run on a real cluster (tests/chaos/nemesis.py), checked.

  test_nemesis.py [--nodes N] [--seconds S] [--seed X] [--runs R] [--no-fuse]
                  [--combined] [--staleness] [--staleness-bound S] [--members]

Seconds of faults: --seconds, else $CONFMAN_CHAOS_SECONDS, else 300 with
CONFMAN_SOAK=1, else 30 (3 nodes) / 20 (5 nodes). Runs: --runs, else 1.
Exits 1 if any run found an anomaly (printed, with the kept histories'
directory), 0 otherwise. --combined: the nemesis sometimes overlaps a second
fault with the first (never more than a minority affected; see nemesis.py);
without it the schedule is the usual one-at-a-time one. Unless
CONFMAN_CHAOS_STALENESS=0: the mount also reads nested-shard keys others
write, the nemesis also pauses the replica serving the mount's watch, and
stale reads through the mount are anomalies (issue 11 items 1 and 2). --staleness-bound: the checker's bound
(default checker.STALENESS_BOUND_S). --members (or CONFMAN_CHAOS_MEMBERSHIP=1):
a thread also splits /chaos/l/s off and merges it back, and on 5 nodes moves
it and the nested shard between sets of 3 nodes (tests/chaos/membership.py).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nemesis  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--no-fuse", action="store_true")
    ap.add_argument("--combined", action="store_true",
                    help="sometimes overlap two faults (opt-in; soak.sh: CONFMAN_CHAOS_COMBINED=1)")
    ap.add_argument("--staleness", action="store_true",
                    help="nested reads through the mount, watch-replica pauses, stale reads "
                         "are anomalies (also CONFMAN_CHAOS_STALENESS=1)")
    ap.add_argument("--members", action="store_true",
                    help="shard splits, merges and moves during the faults "
                         "(also CONFMAN_CHAOS_MEMBERSHIP=1)")
    ap.add_argument("--staleness-bound", type=float, default=nemesis.checker.STALENESS_BOUND_S)
    a = ap.parse_args()
    secs = a.seconds
    if secs is None and os.environ.get("CONFMAN_CHAOS_SECONDS"):
        secs = float(os.environ["CONFMAN_CHAOS_SECONDS"])
    if secs is None:
        secs = 300 if os.environ.get("CONFMAN_SOAK") == "1" else (30 if a.nodes == 3 else 20)
    bad = 0
    for k in range(a.runs):
        seed = a.seed + k if a.seed is not None else None
        r = nemesis.run(nodes=a.nodes, seconds=secs, seed=seed, fuse=not a.no_fuse,
                        log=lambda s: print(s, flush=True), combined=a.combined,
                        staleness=True if a.staleness else None,
                        staleness_bound=a.staleness_bound,
                        members=a.members or os.environ.get("CONFMAN_CHAOS_MEMBERSHIP") == "1")
        nemesis.print_report(r, log=lambda s: print(s, flush=True))
        if r["anomalies"]:
            bad += 1
        elif r["ops"]["total"] < 200:
            print("too little load to mean anything", flush=True)
            bad += 1
    print("%d runs, %d with anomalies" % (a.runs, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
