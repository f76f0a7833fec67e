"""membership.py: the nemesis's changes of who serves the data, run by a
thread of their own while Nemesis.one() kills, pauses and partitions.

Operations (each `confmanctl` from the root namespace, with a client
timeout and a process timeout; a step that is refused or times out is
recorded as such and left: the next draw runs it again or another one):

  split  `shard split SPLIT` (a prefix the lin workers write under: one of
         their keys is below it, the others beside and above it)
  merge  `shard merge SPLIT` (folds it back: its writers get WRONGSHARD
         and retry for the copy's duration). A merge that did not finish
         leaves the child frozen, so it is the next operation until done.
  move   `shard move P --replicas R` of the split group or of the cluster
         file's nested shard, to a random 3 of the nodes (5 nodes only)

The first is a split; then one operation every 1.5-4 s, a split or merge
half the time. finish() completes a pending merge (the
workers must be able to write again) and reports the shard map.
"""
import json
import random
import threading
import time

CTL_TIMEOUT_MS = 8000   # confmanctl --timeout (ms) for a step's requests
MOVE_TIMEOUT_S = 12     # shard move --timeout (s): the whole convergence
PROC_TIMEOUT_S = 25     # the confmanctl process itself


class Membership(threading.Thread):
    def __init__(self, cluster, rng, log, split_prefix, move_prefixes, moves=True):
        super().__init__(daemon=True)
        self.c, self.rng, self.log = cluster, random.Random(rng.randrange(1 << 30)), log
        self.split = split_prefix
        self.move_prefixes = list(move_prefixes)
        self.moves = moves and cluster.n >= 5
        self.ops = []           # {"kind", "desc", "outcome", "start", "end", "rc", "err"}
        self.stopping = threading.Event()
        self.is_split = False   # as far as we know
        self.merge_pending = False

    # ---- one confmanctl step

    def _ctl(self, kind, desc, *args, done_if=None):
        start = time.time()
        try:
            rc, out, err = self.c.ctl("--timeout", str(CTL_TIMEOUT_MS), *args,
                                      timeout=PROC_TIMEOUT_S)
        except Exception as e:  # subprocess.TimeoutExpired: the process was killed
            rc, out, err = -1, b"", "confmanctl killed after %ds (%s)" % (PROC_TIMEOUT_S,
                                                                         type(e).__name__)
        outcome = "ok" if rc == 0 else "done-before" if done_if and done_if(rc, err) else \
            "timeout" if rc in (5, -1) else "refused"
        op = {"kind": kind, "desc": desc, "outcome": outcome, "rc": rc,
              "err": err.strip().splitlines()[-1] if err.strip() else "",
              "start": start, "end": time.time()}
        self.ops.append(op)
        self.log("  member %-6s %-44s %-11s %.1fs%s"
                 % (kind, desc, outcome, op["end"] - start,
                    "  (%s)" % op["err"][:90] if outcome not in ("ok", "done-before") else ""))
        return outcome in ("ok", "done-before")

    # ---- the operations

    def do_split(self):
        # "a shard already" (exit 2): an earlier split that timed out went through
        if self._ctl("split", "split %s" % self.split, "shard", "split", self.split,
                     done_if=lambda rc, err: rc == 2 and "a shard already" in err):
            self.is_split = True

    def do_merge(self):
        self.merge_pending = True
        # exit 3: no such shard (merged already by an earlier try)
        if self._ctl("merge", "merge %s" % self.split, "shard", "merge", self.split,
                     done_if=lambda rc, err: rc == 3):
            self.is_split = self.merge_pending = False

    def do_move(self, prefix):
        target = sorted(self.rng.sample(range(1, self.c.n + 1), 3))
        ids = ",".join(str(i) for i in target)
        self._ctl("move", "move %s -> %s" % (prefix, ids), "shard", "move", prefix,
                  "--replicas", ids, "--timeout", str(MOVE_TIMEOUT_S))

    def one(self):
        if self.merge_pending:
            return self.do_merge()
        if not self.ops:
            return self.do_split()  # the first one: the rest has a split group to move
        choices = ["merge" if self.is_split else "split"] * 2
        if self.moves:
            choices += ["move-nested", "move-split" if self.is_split else "move-nested"]
        what = self.rng.choice(choices)
        if what == "split":
            self.do_split()
        elif what == "merge":
            self.do_merge()
        elif what == "move-split":
            self.do_move(self.split)
        else:
            self.do_move(self.rng.choice(self.move_prefixes))

    def run(self):
        while not self.stopping.is_set():
            self.one()
            self.stopping.wait(self.rng.uniform(1.5, 4.0))

    def finish(self, deadline_s=60):
        """Stop drawing; complete a merge left half done (the child stays
        frozen until then). Returns problems (strings)."""
        self.stopping.set()
        self.join(PROC_TIMEOUT_S * 3)
        end = time.time() + deadline_s
        while self.merge_pending and time.time() < end:
            self.do_merge()
            time.sleep(0.5)
        if self.merge_pending:
            return ["membership: merge of %s still unfinished %ds after the faults"
                    % (self.split, deadline_s)]
        return []

    def counts(self):
        """{"split ok": n, "move timeout": n, ...}"""
        out = {}
        for o in self.ops:
            k = "%s %s" % (o["kind"], o["outcome"])
            out[k] = out.get(k, 0) + 1
        return out


def shard_map(c):
    """[(prefix, [replica ids])] from `confmanctl shards --json`, or None."""
    rc, out, _ = c.ctl("shards", "--json", timeout=20)
    if rc != 0:
        return None
    try:
        return [(s["prefix"], s["replicas"]) for s in json.loads(out)["shards"]]
    except (ValueError, KeyError):
        return None


def replicas_of(smap, key):
    """The replica ids of the shard serving key (longest prefix)."""
    best = None
    for prefix, reps in smap:
        if prefix == "/" or key == prefix or key.startswith(prefix + "/"):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, reps)
    return best[1] if best else []


def voter_map(c, timeout=20):
    """[(prefix, [voter ids])] of every shard, from its leader's status:
    the nodes whose replicas hold the data (a listed node that is no longer
    a member may not: see stale_listed). None if some shard has no leader."""
    end = time.time() + timeout
    smap = shard_map(c)
    while time.time() < end and smap is not None:
        found = {}
        for i in range(1, c.n + 1):
            rc, out, _ = c.ctl("--timeout", "1000", "status", "--json", servers=c.addr(i),
                               timeout=10)
            if rc != 0:
                continue
            for node in json.loads(out).get("servers", []):
                for g in node.get("groups", []):
                    if g.get("role") == "leader":
                        found[g["prefix"]] = [m for m, k in zip(g["members"], g["kinds"])
                                              if k == "voter"]
        if all(p in found for p, _ in smap):
            return [(p, found[p]) for p, _ in smap]
        time.sleep(0.5)
    return None


def stale_listed(smap, vmap):
    """Nodes the shard map lists for a shard that are not its voters."""
    voters = dict(vmap or [])
    return {p: sorted(set(reps) - set(voters.get(p, reps))) for p, reps in (smap or [])
            if set(reps) - set(voters.get(p, reps))}
