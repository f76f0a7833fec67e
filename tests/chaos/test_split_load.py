#!/usr/bin/env python3
"""Split and merge under load: no write lost, none on the wrong side.

  test_split_load.py [--rounds N] [--seconds S] [--seed X] [--base-port P]

A 3-node cluster on loopback (ports P.. and P+1000..: 24400 by default,
a range no other test uses). 4 chaos-worker processes do linearizable
reads, writes and CAS on keys on both sides of the boundary /s/b:
/s/a/k0 (a sibling directory, stays in the parent), /s/k3 (in the
boundary's parent directory itself), /s/b/k1 and /s/b/c/k2 (below the
prefix, moved to the new group); 2 more do follower reads and write their
own key on each side (/s/a/fP, /s/b/fP). Meanwhile, --rounds times:
`confmanctl shard split /s/b`, ~2 s of load, `confmanctl shard merge /s/b`,
~2 s of load. A step that fails (timeout, refusal) is run again until it
is done (a split that finds the shard there already, a merge that finds
it gone, were done by the run before).

Checked afterwards, on the recorded histories plus a linearizable read of
every key: linearizability of the lin keys (the register with a version:
a split keeps versions, and so must a merge); the session checker on the
follower keys (read-your-writes and monotonic reads throughout; the token
rule for the keys below /s/b only until the first merge: the merge's
copies take the parent's log indexes, a different index space); and every
node serving each key's final value and version. Writes that time out
while the merge freezes the child (WRONGSHARD retried until the client's
timeout) are recorded as of unknown outcome, as every timeout is.
First, merge_after_move (4 nodes on P+10..): a merge whose child lives
only on nodes other than the parent's leader must finish.
Prints one line per run: operations, acknowledged writes, ops/s, splits
and merges with their durations, anomalies. Exits 1 on any anomaly.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
from nemesis import WORKER, mono_ns, summarize  # noqa: E402
from netcluster import harness  # noqa: E402

PREFIX = "/s/b"
LIN_KEYS = ["/s/a/k0", "/s/k3", PREFIX + "/k1", PREFIX + "/c/k2"]
FOLLOWERS = [11, 12]
FOL_KEYS = ["/s/a/f%d" % p for p in FOLLOWERS] + [PREFIX + "/f%d" % p for p in FOLLOWERS]


def group_of(key):
    return PREFIX if key.startswith(PREFIX + "/") else "/"


def ctl_step(c, log, what, *args, done_codes=(), deadline_s=30):
    """Run a confmanctl step until it exits 0 (or an exit code in done_codes:
    the step was done before). Returns (seconds, attempts)."""
    start, tries = time.time(), 0
    while True:
        tries += 1
        rc, out, err = c.ctl("--timeout", "3000", *args, timeout=20)
        if rc == 0 or rc in done_codes:
            took = time.time() - start
            log("  %s: %s (%.3fs, %d attempt%s)" % (what, (out.decode().strip() or err.strip()),
                                                   took, tries, "s" if tries > 1 else ""))
            return took, tries
        if time.time() - start > deadline_s:
            raise AssertionError("%s: still failing after %ds: %d %s" % (what, deadline_s, rc, err))
        time.sleep(0.2)


def final_reads(c, keys):
    ops = []
    for key in keys:
        for _ in range(50):
            inv = mono_ns()
            rc, out, _ = c.ctl("--json", "--timeout", "3000", "get", key)
            if rc in (0, 3):
                d = json.loads(out) if rc == 0 else {"value": None, "version": 0}
                ops.append({"process": 0, "type": "read", "key": key, "value": d["value"],
                            "expect": 0, "invoke": inv, "complete": mono_ns(), "outcome": "ok",
                            "version": d["version"], "mod_index": -1, "err": "",
                            "consistency": "lin"})
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no final read of %s" % key)
    return ops


def durability(c, final):
    problems = []
    for f in final:
        for i in range(1, c.n + 1):
            end = time.time() + 15
            while True:
                rc, out, _ = c.ctl("--json", "--timeout", "2000", "--consistency", "follower",
                                   "get", "--from", c.addr(i), f["key"], servers=c.addr(i))
                got = (None, 0) if rc == 3 else \
                    (lambda d: (d["value"], d["version"]))(json.loads(out)) if rc == 0 else None
                if got == (f["value"], f["version"]):
                    break
                if time.time() > end:
                    problems.append("node %d has %s = %r, the cluster %r"
                                    % (i, f["key"], got, (f["value"], f["version"])))
                    break
                time.sleep(0.2)
    return problems


def session_ops(history, first_merge_ns):
    """The follower keys' ops for the session checker; below the prefix, the
    mod_index (token rule) only of ops invoked before the first merge."""
    out = []
    for o in history:
        if o["key"] not in FOL_KEYS:
            continue
        if group_of(o["key"]) == PREFIX and first_merge_ns is not None and \
                o["invoke"] >= first_merge_ns:
            o = dict(o, mod_index=-1)
        out.append(o)
    return out


def run(rounds, seconds, seed, base_port, log=print):
    c = harness.Cluster(nodes=3, base_port=base_port)
    hist = os.path.join(c.dir, "history")
    os.makedirs(hist)
    procs, report = [], {"anomalies": [], "splits": [], "merges": []}
    t0 = time.time()
    try:
        c.up()
        c.leader(timeout=30)
        for d in ("/s/a/.keep", PREFIX + "/c/.keep"):  # the directories, not checked keys
            c.ctl("put", d, "", check=True)
        for p in (1, 2, 3, 4) + tuple(FOLLOWERS):
            args = [WORKER, "--servers", ",".join(c.addr(i) for i in (p % 3 + 1, (p + 1) % 3 + 1,
                                                                     (p + 2) % 3 + 1)),
                    "--process", str(p), "--out", os.path.join(hist, "p%d.jsonl" % p),
                    "--seconds", str(seconds), "--seed", str(seed + p), "--timeout-ms", "2500"]
            if p in FOLLOWERS:
                args += ["--consistency", "follower", "--keys", ",".join(FOL_KEYS),
                         "--write-keys", "/s/a/f%d,%s/f%d" % (p, PREFIX, p), "--mix", "60,40,0"]
            else:
                args += ["--consistency", "lin", "--keys", ",".join(LIN_KEYS), "--mix", "40,30,30"]
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, start_new_session=True))
        pace = max((seconds - 2.0) / (2 * rounds + 1), 0.5)
        first_merge = None
        time.sleep(pace)
        for _ in range(rounds):
            took, _n = ctl_step(c, log, "split", "shard", "split", PREFIX, done_codes=(2,))
            report["splits"].append(took)
            time.sleep(pace)
            if first_merge is None:
                first_merge = mono_ns()
            took, _n = ctl_step(c, log, "merge", "shard", "merge", PREFIX, done_codes=(3,))
            report["merges"].append(took)
            time.sleep(pace)
        for p in procs:
            out, _ = p.communicate(timeout=120)
            if p.returncode != 0:
                report["anomalies"].append("worker exited %d: %s" % (p.returncode, out))
        history = checker.load(hist)
        final = final_reads(c, LIN_KEYS + FOL_KEYS)
        report["anomalies"] += ["durability: " + p for p in durability(c, final)]
        lin = checker.check_linearizable([o for o in history + final if o["key"] in LIN_KEYS])
        report["lin"] = lin
        if not lin["ok"]:
            report["anomalies"].append("linearizability: " + checker.format_counterexample(lin))
        viol = checker.check_sessions(session_ops(history, first_merge), group_of=group_of)
        report["session_violations"] = len(viol)
        report["anomalies"] += ["session: " + checker.format_violation(v) for v in viol[:10]]
        report["ops"] = summarize(history)
        report["acked_writes"] = sum(1 for o in history
                                     if o["type"] != "read" and o["outcome"] == "ok")
        report["unknown"] = sum(1 for o in history if o["outcome"] == "unknown")
        report["seconds"] = seconds
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        c.keep = bool(report["anomalies"])
        c.down()
    report["wall"] = time.time() - t0
    report["dir"] = c.dir
    return report


def leader_of(c, group):
    for i in range(1, c.n + 1):
        rc, out, _ = c.ctl("status", "--json", servers=c.addr(i))
        if rc != 0:
            continue
        for node in json.loads(out).get("servers", []):
            for g in node.get("groups", []):
                if g.get("group") == group and g.get("role") == "leader":
                    return node.get("id", i)
    return None


def merge_after_move(base_port, log=print):
    """A merge whose child was moved off the parent's leader: the copies go
    to the parent's leader, which does not host the child. The server took
    the child's WRONGSHARD for the parent's: the merge hung (exit 5,
    WRONGSHARD), the child frozen, its writers refused. Meta voters are moved
    off that node first (shard move meta): a shard cannot be moved off the
    meta leader (its own stale copy of the group's configuration makes the
    registry refuse the shrink with EBUSY; not fixed here)."""
    c = harness.Cluster(nodes=4, base_port=base_port)
    try:
        c.up()
        c.leader(timeout=30)
        c.ctl("put", PREFIX + "/y", "A", check=True)
        lead = leader_of(c, 1)
        others = ",".join(str(i) for i in range(1, 5) if i != lead)
        c.ctl("shard", "move", "meta", "--replicas", others, "--timeout", "30", check=True)
        c.ctl("shard", "split", PREFIX, check=True)
        c.ctl("shard", "move", PREFIX, "--replicas", others, "--timeout", "30", check=True)
        lead2 = leader_of(c, 1)
        t = time.time()
        rc, out, err = c.ctl("--timeout", "8000", "shard", "merge", PREFIX, timeout=30)
        log("merge of a child moved off the parent's leader (node %s, now %s; child on %s): "
            "exit %d %s(%.2fs)" % (lead, lead2, others, rc, err.strip() + " " if rc else "",
                                   time.time() - t))
        assert rc == 0, "merge failed: %d %s" % (rc, err)
        rc, out, _ = c.ctl("get", PREFIX + "/y", check=True)
        assert out == b"A", out
    finally:
        c.down()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--base-port", type=int, default=24400)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    if os.environ.get("CONFMAN_SOAK") == "1":
        a.rounds, a.seconds, a.runs = max(a.rounds, 6), max(a.seconds, 40), max(a.runs, 3)
    merge_after_move(a.base_port + 10, log=lambda s: print(s, flush=True))
    bad = 0
    for k in range(a.runs):
        r = run(a.rounds, a.seconds, a.seed + 100 * k, a.base_port,
                log=lambda s: print(s, flush=True))
        ops = r.get("ops", {}).get("total", 0)
        print("split-load run %d (seed %d): %d ops (%.0f/s), %d acknowledged writes, "
              "%d of unknown outcome, splits %s s, merges %s s, linearizable: %s (%d ops), "
              "%d session violations, %d anomalies, %.0fs wall"
              % (k + 1, a.seed + 100 * k, ops, ops / a.seconds, r.get("acked_writes", 0),
                 r.get("unknown", 0), ",".join("%.3f" % s for s in r["splits"]),
                 ",".join("%.3f" % s for s in r["merges"]),
                 r.get("lin", {}).get("ok"), r.get("lin", {}).get("ops", 0),
                 r.get("session_violations", -1), len(r["anomalies"]), r["wall"]), flush=True)
        for x in r["anomalies"]:
            print("ANOMALY " + x, flush=True)
        if r["anomalies"]:
            print("  histories and node logs kept in %s" % r["dir"], flush=True)
            bad += 1
        elif ops < 500:
            print("too little load to mean anything", flush=True)
            bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
