"""checker.py: the checkers of chaos histories.

A history is a list of operations (dicts, one JSON line each, as
tests/chaos/worker.c writes them): process, type (read | write | cas), key,
value, expect (CAS), invoke and complete (CLOCK_MONOTONIC ns), outcome
(ok | fail | unknown), version and mod_index (from the reply; -1: not known,
as for the FUSE worker), consistency (lin | follower).

check_linearizable(ops)
    Wing & Gong's search with Lowe's memoisation (the algorithm of Porcupine
    and Knossos), run per key (P-compositionality). The model is a register
    with a version, as a Confman key is: version 0 and no value when absent, a
    write makes (value, version + 1), CAS(expect) succeeds only when version ==
    expect. Which operations take part:
      - ok reads with consistency lin: must return the register's value and
        version (ENOENT: null, 0);
      - ok writes and CAS: must produce the version they report;
      - CAS that failed (ECANCELED): the version differed at some point;
      - writes and CAS with unknown outcome (timeout, broken connection) as
        Jepsen's :info ops: their completion is +infinity, so they may take
        effect at any point after their invocation, or never;
      - failed reads and writes that failed (never applied), and follower
        reads, do not.
    Returns a dict: ok, keys, ops, seconds, and on failure the key and a
    counterexample: the longest linearizable prefix found, the operation that
    could not be placed after it, the register's state there, and the other
    operations open at that moment.

check_sessions(ops)
    Per process, for follower reads: read-your-writes (a read returns at least
    the process's last acknowledged write of that key) and monotonic reads (at
    least what the process read before), against the order of writes of the
    key: their version, or for a key that a single process writes, the
    sequence number in its unique values ("p3-17", "fuse-9"). And the token
    rule across keys: once a process has seen log index I of a shard
    (mod_index of anything it wrote or read there), a read of any key of that
    shard must show at least the last change of that key at or below I that
    anyone acknowledged or read (group_of: indexes of two shards are not
    comparable).

check_staleness(ops, readers, bound_s)
    Reads through a mount (processes in readers) must not return a value
    older than a write of the key acknowledged more than bound_s
    (STALENESS_BOUND_S) before the read began; see the function.
    Returns a list of violations (dicts with kind, process, key and the ops).
    Reads marked as served offline (offline 1, or 2: the mark changed during
    the read) are check_offline's, not this one's.

check_offline(ops, readers, bound_s=None)
    The mount's offline mode (fs/README.md, "Offline"): a mount's worker
    records with each read the xattr user.confman.offline of what it read,
    before and after the read (offline: 0 online, 1 offline, 2 it changed
    during the read, None the xattr could not be read). Rules, per process
    in readers: every read is marked (kind "unmarked"); no read, online or
    offline, returns a value older than the process's own last write of
    the key acknowledged before the read began (writes go through to the
    cache once committed: kinds "online-older-than-own-write",
    "offline-older-than-own-write"); and, with bound_s, a read marked online
    is held to check_staleness's bound (kind "stale-online": a value served
    from the cache without the mark would be one).
"""
import json
import os
import re
import time

INF = float("inf")


def load(paths):
    """Every operation of the JSON-lines files given (or all *.jsonl of a dir)."""
    if isinstance(paths, str):
        paths = [os.path.join(paths, p) for p in sorted(os.listdir(paths))
                 if p.endswith(".jsonl")]
    ops = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line:
                    ops.append(json.loads(line))
    return ops


def describe(op):
    """One line for an operation in a report."""
    t = op["type"]
    if t == "read":
        what = "read %s -> %r v%s" % (op["key"], op.get("value"), op.get("version"))
    elif t == "write":
        what = "write %s := %r" % (op["key"], op.get("value"))
    else:
        what = "cas %s if v%s := %r" % (op["key"], op.get("expect"), op.get("value"))
    res = op["outcome"]
    if op["outcome"] == "ok" and t != "read":
        res += " v%s" % op.get("version")
    if op.get("err"):
        res += " (%s)" % op["err"]
    end = "inf" if op["outcome"] == "unknown" else "%.6f" % (op["complete"] / 1e9)
    return "p%s %s: %s  [%.6f, %s]" % (op["process"], what, res, op["invoke"] / 1e9, end)


# ---------------------------------------------------------------- the model

# State: (value, version). An op's model step returns the new state or None
# when the op cannot happen in that state.

def _step(state, op):
    value, version = state
    t, outcome = op["type"], op["outcome"]
    if t == "read":
        if op.get("value") == value and op.get("version", 0) == version:
            return state
        return None
    if outcome == "unknown":
        # it happens here; only as the version some read saw it with, or into
        # a version nobody accounts for (see _prune_unknown)
        if "_ver" in op and op["_ver"] != version + 1:
            return None
        if "_slots" in op and version + 1 not in op["_slots"]:
            return None
        if t == "cas" and version != op["expect"]:
            return None  # a CAS that happened and failed changed nothing: as if never
        return (op["value"], version + 1)
    if t == "write":
        if op.get("version") != version + 1:
            return None
        return (op["value"], version + 1)
    # cas
    match = version == op["expect"]
    if outcome == "ok":
        if not match or op.get("version") != version + 1:
            return None
        return (op["value"], version + 1)
    return state if not match else None  # failed: the version differed


def _lin_ops(ops):
    """The ops of a history the linearizability checker takes, by key."""
    by_key = {}
    for op in ops:
        t, outcome = op["type"], op["outcome"]
        if t == "read":
            if outcome != "ok" or op.get("consistency") != "lin":
                continue
        elif outcome == "fail" and t == "write":
            continue  # never applied
        elif outcome == "fail" and op.get("err") not in ("ECANCELED", None, ""):
            continue  # a CAS refused before reaching the register
        by_key.setdefault(op["key"], []).append(op)
    return {k: _prune_unknown(v) for k, v in by_key.items()}


def _prune_unknown(ops):
    """Narrow down the writes and CAS of unknown outcome of one key.

    Every change of a key takes the next version, so versions are slots: the
    ok writes and CAS claim theirs, and a read of (value, version) claims that
    version for the write of value (values are unique). An unknown op whose
    value some read returned happened, as exactly that version (_ver). One
    whose value nobody saw can only have happened into a slot below the
    highest claimed version that nothing claims (a gap), and before the
    completion of every op that saw a version above that gap (_slots); with
    no such gap it either never happened or happened after every op that
    could see it, which no check can tell from never: it is dropped. This is
    what keeps the search fast when many writes time out.
    """
    seen = {}
    claimed = set()
    for o in ops:
        if o["outcome"] == "ok" and o.get("value") is not None:
            claimed.add(o["version"])
            seen.setdefault(o["value"], o["version"])
    top = max(claimed, default=0)
    gaps = [g for g in range(1, top + 1) if g not in claimed]
    deadline = {}
    if gaps:
        by_version = sorted((o["version"], o["complete"]) for o in ops if o["outcome"] == "ok")
        earliest = INF
        k = len(by_version) - 1
        for g in reversed(gaps):  # earliest completion of an op with version > g
            while k >= 0 and by_version[k][0] > g:
                earliest = min(earliest, by_version[k][1])
                k -= 1
            deadline[g] = earliest
    out = []
    for o in ops:
        if o["outcome"] == "unknown":
            o = dict(o)
            if o["value"] in seen:
                o["_ver"] = seen[o["value"]]
            else:
                slots = {g for g in gaps if o["invoke"] < deadline[g]}
                if not slots:
                    continue
                o["_slots"] = slots
        out.append(o)
    return out


class _Entry:
    __slots__ = ("op", "id", "is_call", "match", "prev", "next", "time")

    def __init__(self, op, oid, is_call, t):
        self.op, self.id, self.is_call, self.time = op, oid, is_call, t
        self.match = self.prev = self.next = None


def _build_list(ops):
    entries = []
    for i, op in enumerate(ops):
        call = _Entry(op, i, True, op["invoke"])
        end = INF if op["outcome"] == "unknown" else op["complete"]
        ret = _Entry(op, i, False, end)
        call.match = ret
        entries += [call, ret]
    # calls before returns at equal times: the more permissive reading
    entries.sort(key=lambda e: (e.time, 0 if e.is_call else 1))
    head = _Entry(None, -1, False, -INF)
    prev = head
    for e in entries:
        prev.next, e.prev = e, prev
        prev = e
    return head


def _lift(e):
    e.prev.next = e.next
    if e.next:
        e.next.prev = e.prev
    m = e.match
    m.prev.next = m.next
    if m.next:
        m.next.prev = m.prev


def _unlift(e):
    m = e.match
    m.prev.next = m
    if m.next:
        m.next.prev = m
    e.prev.next = e
    if e.next:
        e.next.prev = e


def _check_key(ops, budget_s, step=_step, init=(None, 0)):
    """WGL on one key, with model step and initial state init. Returns (ok,
    counterexample or None)."""
    ops = sorted(ops, key=lambda o: o["invoke"])
    head = _build_list(ops)
    state = init
    linearized = 0
    cache = set()
    stack = []
    best = (-1, None)  # (ops linearized, (stack copy, state, blocking op))
    entry = head.next
    deadline = time.time() + budget_s
    steps = 0
    while head.next is not None:
        if entry.is_call:
            new = step(state, entry.op)
            if new is not None:
                lin2 = linearized | (1 << entry.id)
                if (lin2, new) not in cache:
                    cache.add((lin2, new))
                    stack.append((entry, state))
                    state, linearized = new, lin2
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if entry.time == INF:
                return True, None  # every op that completed is placed
            if len(stack) > best[0]:
                open_ops = []
                e = head.next
                while e is not None and e.time <= entry.time:
                    if e.is_call:
                        open_ops.append(e.op)
                    e = e.next
                best = (len(stack), ([s[0].op for s in stack], state, entry.op, open_ops))
            if not stack:
                break
            entry, state = stack.pop()
            linearized &= ~(1 << entry.id)
            _unlift(entry)
            entry = entry.next
        steps += 1
        if steps % 4096 == 0 and time.time() > deadline:
            return None, {"reason": "search budget of %ss exceeded" % budget_s}
    if head.next is None:
        return True, None
    placed, st, blocked, open_ops = best[1]
    return False, {"linearized": placed, "state": st, "blocked": blocked, "open": open_ops}


def check_linearizable(ops, budget_s=120):
    start = time.time()
    by_key = _lin_ops(ops)
    n = sum(len(v) for v in by_key.values())
    for key in sorted(by_key):
        ok, cex = _check_key(by_key[key], budget_s)
        if ok is not True:
            return {"ok": False, "unknown": ok is None, "key": key, "keys": len(by_key), "ops": n,
                    "seconds": time.time() - start, "counterexample": cex}
    return {"ok": True, "keys": len(by_key), "ops": n, "seconds": time.time() - start}


def format_counterexample(res):
    cex = res["counterexample"]
    if "reason" in cex:
        return "key %s: undecided: %s" % (res["key"], cex["reason"])
    lines = ["key %s is not linearizable." % res["key"],
             "  longest linearizable prefix: %d ops; its last ones:" % len(cex["linearized"])]
    lines += ["    " + describe(o) for o in cex["linearized"][-6:]]
    lines.append("  register then: value %r version %d" % cex["state"])
    lines.append("  cannot be placed next: " + describe(cex["blocked"]))
    lines.append("  operations open at that point (none of them fits either):")
    lines += ["    " + describe(o) for o in cex["open"][:12]]
    return "\n".join(lines)


# ---------------------------------------------------------- session checks

_SEQ = re.compile(r"^(?:p\d+|fuse)-(\d+)$")


def _seq(value):
    if value is None:
        return 0
    m = _SEQ.match(value.strip())
    return int(m.group(1)) if m else None


def check_sessions(ops, group_of=None):
    """Read-your-writes, monotonic reads and the token rule, per process
    (follower reads). Log indexes are per shard: group_of(key) names the
    key's shard (default: one shard for every key), and the token rule
    compares a read's index only with indexes of the same shard."""
    group_of = group_of or (lambda key: 0)
    writers = {}
    changes = {}  # key -> sorted mod_indexes of changes known to have happened
    for op in ops:
        if op["type"] != "read":
            writers.setdefault(op["key"], set()).add(op["process"])
        if op["outcome"] == "ok" and op.get("mod_index", -1) > 0:
            changes.setdefault(op["key"], set()).add(op["mod_index"])
    changes = {k: sorted(v) for k, v in changes.items()}
    versions = {}  # (key, value) -> version, where some reply said it
    for op in ops:
        if op["outcome"] == "ok" and op.get("version", -1) >= 0 and op.get("value") is not None:
            versions[(op["key"], op["value"])] = op["version"]

    def rank(op):
        """The position of the op's value in its key's order of writes, or None."""
        if len(writers.get(op["key"], ())) <= 1:
            return _seq(op.get("value"))
        if op.get("value") is None:
            return 0
        if op.get("version", -1) >= 0:
            return op["version"]
        return versions.get((op["key"], op["value"]))

    violations = []
    procs = {}
    for op in ops:
        procs.setdefault(op["process"], []).append(op)
    for p, pops in sorted(procs.items()):
        pops.sort(key=lambda o: o["invoke"])
        floor = {}    # key -> (rank, op that set it, "write" | "read")
        seen = {}     # shard -> (highest mod_index this process has seen there, where)
        for op in pops:
            if op["outcome"] != "ok":
                continue
            r = rank(op)
            if op["type"] == "read" and op.get("consistency") == "follower":
                f = floor.get(op["key"])
                if r is not None and f is not None and r < f[0]:
                    kind = "read-your-writes" if f[2] == "write" else "monotonic-reads"
                    violations.append({"kind": kind, "process": p, "key": op["key"],
                                       "before": f[1], "read": op})
                mi = op.get("mod_index", -1)
                index = seen.get(group_of(op["key"]), (0, None))
                if mi >= 0 and index[0] > 0:
                    past = [c for c in changes.get(op["key"], ()) if c <= index[0]]
                    if past and mi < past[-1]:
                        violations.append({"kind": "token", "process": p, "key": op["key"],
                                           "before": index[1], "read": op,
                                           "missed_index": past[-1]})
            if r is not None and (op["key"] not in floor or r >= floor[op["key"]][0]):
                floor[op["key"]] = (r, op, "read" if op["type"] == "read" else "write")
            g = group_of(op["key"])
            if op.get("mod_index", -1) > seen.get(g, (0, None))[0]:
                seen[g] = (op["mod_index"], op)
    return violations


def format_violation(v):
    s = "%s violated by process %s on %s:\n    %s\n  then\n    %s" % (
        v["kind"], v["process"], v["key"], describe(v["before"]), describe(v["read"]))
    if v["kind"] == "token":
        s += "\n  (the process had seen log index %d; %s changed at %d)" % (
            v["before"]["mod_index"], v["key"], v["missed_index"])
    return s


# ------------------------------------------- the gateway's txn path (etcd v3)

# Histories of tests/chaos/txn_workload.py: one key, operations through the
# gateway's /v3 endpoints. Each op: process, type (read | create | cas |
# delete), key, value (read: what it returned, None if absent; create, cas:
# what it writes; values are unique), mod (read: mod_revision, 0 if absent;
# a create or cas that succeeded: the mod_revision its write produced, from
# a range after the put in the same txn), expect_mod (cas: txn{MOD ==
# expect_mod; put}), succeeded (create, cas: which branch), deleted (delete:
# 0 or 1), invoke, complete, outcome (ok | fail | unknown).
#
# The model is the key as etcd defines it: (value, mod_revision), absent as
# (None, 0), plus the highest change index placed so far (floor): mod
# revisions are log indexes, so changes that report one must be linearized
# in their order. create = txn{VERSION == 0; put}: succeeds only when
# absent; cas succeeds only when mod == expect_mod. A txn that succeeded
# against a key deleted and re-created since its compare held (the bug a
# CAS on the version let through) has no place: the re-creation's index is
# below the txn's, and the compare does not hold after it.

def _txn_step(state, op):
    value, mod, floor = state
    t, outcome = op["type"], op["outcome"]
    present = mod != 0
    if t == "read":
        return state if (op.get("value"), op.get("mod", 0)) == (value, mod) else None
    if t == "delete":
        if outcome == "unknown":
            return (None, 0, floor)  # deletes if present; else changes nothing
        if (op.get("deleted") == 1) != present:
            return None
        return (None, 0, floor)
    if t == "create":
        holds = not present
    else:
        holds = present and mod == op["expect_mod"]
    if outcome == "unknown":
        if not holds:
            return state  # the compare failed: nothing written
        new = op["_mod"]  # pinned by a read, or a unique unknown (< 0)
        if new > 0 and new <= floor:
            return None
        return (op["value"], new, max(floor, new))
    if not op.get("succeeded"):
        return None if holds else state
    new = op.get("mod", -1)
    if not holds or new <= floor:
        return None
    return (op["value"], new, new)


def _txn_ops(ops):
    """The ops the txn checker takes, by key; unknown writes pinned to the
    mod_revision a read saw their value at, or given a unique unknown one."""
    by_key = {}
    for op in ops:
        if op["outcome"] == "fail":
            continue  # a read that failed, or a write that certainly did nothing
        by_key.setdefault(op["key"], []).append(op)
    out = {}
    for key, kops in by_key.items():
        seen = {o["value"]: o["mod"] for o in kops
                if o["type"] == "read" and o["outcome"] == "ok" and o.get("value") is not None}
        lst = []
        for i, o in enumerate(kops):
            if o["outcome"] == "unknown" and o["type"] in ("create", "cas"):
                o = dict(o)
                o["_mod"] = seen.get(o["value"], -(i + 1))
            lst.append(o)
        out[key] = lst
    return out


def check_txn_linearizable(ops, budget_s=120):
    """Linearizability of a txn workload's history (see above): the same
    search as check_linearizable, with the etcd key model."""
    start = time.time()
    by_key = _txn_ops(ops)
    n = sum(len(v) for v in by_key.values())
    for key in sorted(by_key):
        ok, cex = _check_key(by_key[key], budget_s, step=_txn_step, init=(None, 0, 0))
        if ok is not True:
            return {"ok": False, "unknown": ok is None, "key": key, "keys": len(by_key), "ops": n,
                    "seconds": time.time() - start, "counterexample": cex}
    return {"ok": True, "keys": len(by_key), "ops": n, "seconds": time.time() - start}


def describe_txn(op):
    t = op["type"]
    if t == "read":
        what = "range %s -> %r mod %s" % (op["key"], op.get("value"), op.get("mod"))
    elif t == "delete":
        what = "delete %s -> deleted %s" % (op["key"], op.get("deleted"))
    elif t == "create":
        what = "txn{%s absent; put %r}" % (op["key"], op.get("value"))
    else:
        what = "txn{%s mod == %s; put %r}" % (op["key"], op.get("expect_mod"), op.get("value"))
    res = op["outcome"]
    if t in ("create", "cas") and res == "ok":
        res = "succeeded mod %s" % op.get("mod") if op.get("succeeded") else "compare failed"
    end = "inf" if op["outcome"] == "unknown" else "%.6f" % (op["complete"] / 1e9)
    return "p%s %s: %s  [%.6f, %s]" % (op["process"], what, res, op["invoke"] / 1e9, end)


def format_txn_counterexample(res):
    cex = res["counterexample"]
    if "reason" in cex:
        return "key %s: undecided: %s" % (res["key"], cex["reason"])
    lines = ["key %s is not linearizable (etcd txn model)." % res["key"],
             "  longest linearizable prefix: %d ops; its last ones:" % len(cex["linearized"])]
    lines += ["    " + describe_txn(o) for o in cex["linearized"][-6:]]
    lines.append("  key then: value %r mod %s (last change index %s)" % cex["state"])
    lines.append("  cannot be placed next: " + describe_txn(cex["blocked"]))
    lines.append("  operations open at that point (none of them fits either):")
    lines += ["    " + describe_txn(o) for o in cex["open"][:12]]
    return "\n".join(lines)


# ---------------------------------------------------------- staleness

# The staleness bound of reads through a mount (README, "Consistency"): a
# read that begins more than this long after a write was acknowledged (by
# any client) must not return a value older than that write. 2 s: the
# liveness bound of the mount's watch stream (a replica silent for 1 s is
# given up and the value cache dropped) plus slack for a loaded 2-core
# machine. test_nemesis.py --staleness-bound overrides it.
STALENESS_BOUND_S = 2.0


def _write_order(ops):
    """key -> (writes that may have happened, a function newer(a, b): True
    when write a certainly took effect after write b)."""
    writes = {}
    for op in ops:
        if op["type"] != "read" and op["outcome"] in ("ok", "unknown"):
            writes.setdefault(op["key"], []).append(op)

    def newer(a, b):
        va, vb = a.get("version", -1), b.get("version", -1)
        if a["outcome"] == "ok" and b["outcome"] == "ok" and va > 0 and vb > 0:
            return va > vb  # the store's own order of changes
        # else real time: b was acknowledged before a was invoked
        return b["outcome"] == "ok" and b["complete"] < a["invoke"]
    return writes, newer


def check_staleness(ops, readers, bound_s=STALENESS_BOUND_S):
    """Reads by the processes in readers (the mounts) that returned a value
    older than a write of the same key acknowledged more than bound_s before
    the read was invoked. The value read names its write (values are
    unique); a read of nothing (ENOENT) is older than every write (the
    workloads never delete these keys). Values no recorded write made (the
    initial ones) are skipped. Returns a list of violations: dicts with
    key, read, wrote (the write whose value was read, None for ENOENT),
    newer (the latest such acknowledged write), age_s (how long before
    the read that write was acknowledged) and superseded_s (how long before
    the read the first newer write was acknowledged: how old the value was)."""
    writes, newer = _write_order(ops)
    by_value = {}
    for key, ws in writes.items():
        for w in ws:
            by_value[(key, w["value"])] = w
    bound_ns = int(bound_s * 1e9)
    out = []
    for r in ops:
        if r["type"] != "read" or r["outcome"] != "ok" or r["process"] not in readers:
            continue
        if r.get("offline") in (1, 2):
            continue  # said to be served offline: check_offline's
        key = r["key"]
        if r.get("value") is None:
            wv = None
        else:
            wv = by_value.get((key, r["value"]))
            if wv is None:
                continue
        before = [w for w in writes.get(key, ()) if w["outcome"] == "ok" and
                  w["complete"] < r["invoke"] - bound_ns and w is not wv and
                  (wv is None or newer(w, wv))]
        if before:
            w = max(before, key=lambda o: o["complete"])
            first = min(o["complete"] for o in before)
            out.append({"key": key, "read": r, "wrote": wv, "newer": w,
                        "age_s": (r["invoke"] - w["complete"]) / 1e9,
                        "superseded_s": (r["invoke"] - first) / 1e9})
    return out


def format_staleness(v):
    return ("stale read on %s (a write acknowledged %.2fs before the read began was newer;"
            " the value read was superseded %.2fs before):"
            "\n    read   %s\n    its value from %s\n    newer  %s"
            % (v["key"], v["age_s"], v["superseded_s"], describe(v["read"]),
               describe(v["wrote"]) if v["wrote"] else "(no write: absent)",
               describe(v["newer"])))


# ---------------------------------------------------------- offline reads

def check_offline(ops, readers, bound_s=None):
    """The offline rules (see the module's text) on the reads of the
    processes in readers that carry an "offline" mark. Returns violations:
    dicts with kind, process, key, read, and before (the own write it is
    older than) or the staleness fields."""
    writes, newer = _write_order(ops)
    by_value = {(k, w["value"]): w for k, ws in writes.items() for w in ws}
    out = []
    marked = [r for r in ops if r["type"] == "read" and r["outcome"] == "ok" and
              r["process"] in readers and "offline" in r]
    for r in marked:
        p, key = r["process"], r["key"]
        if r["offline"] is None:
            out.append({"kind": "unmarked", "process": p, "key": key, "read": r,
                        "before": r})
            continue
        own = [w for w in writes.get(key, ()) if w["process"] == p and
               w["outcome"] == "ok" and w["complete"] < r["invoke"]]
        if not own:
            continue
        last = max(own, key=lambda o: o["complete"])
        if r.get("value") == last["value"]:
            continue
        wv = by_value.get((key, r["value"])) if r.get("value") is not None else None
        if r.get("value") is not None and wv is None:
            continue  # a value no recorded write made: not ranked
        if wv is None or newer(last, wv):
            kind = "offline" if r["offline"] else "online"
            out.append({"kind": kind + "-older-than-own-write", "process": p, "key": key,
                        "read": r, "before": last})
    if bound_s is not None:
        online = [r for r in marked if r["offline"] == 0]
        rest = [o for o in ops if not (o["type"] == "read" and o["process"] in readers)]
        for v in check_staleness(rest + online, readers, bound_s):
            v.update(kind="stale-online", process=v["read"]["process"], before=v["newer"])
            out.append(v)
    return out


def format_offline(v):
    if v["kind"] == "stale-online":
        return ("a read marked online returned a stale value (served from the cache "
                "unmarked?): " + format_staleness(v))
    if v["kind"] == "unmarked":
        return "a read without its offline mark: " + describe(v["read"])
    return ("%s by process %s on %s:\n    own write %s\n  then\n    read (offline=%s) %s"
            % (v["kind"], v["process"], v["key"], describe(v["before"]),
               v["read"].get("offline"), describe(v["read"])))
