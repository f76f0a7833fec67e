#!/usr/bin/env python3
"""The chaos checkers on known histories: each bad one must be reported, each
good one (unknown outcomes included) must pass, and a big generated good
history must be checked in seconds."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../integration"))
from harness import run  # noqa: E402


def op(process, type_, key, value, t0, t1, outcome="ok", version=0, expect=0, err="",
       consistency="lin", mod_index=-1):
    return {"process": process, "type": type_, "key": key, "value": value, "expect": expect,
            "invoke": int(t0 * 1e9), "complete": int(t1 * 1e9), "outcome": outcome,
            "version": version, "mod_index": mod_index, "err": err, "consistency": consistency}


def W(p, v, t0, t1, ver, key="/k", **kw):
    return op(p, "write", key, v, t0, t1, version=ver, **kw)


def R(p, v, t0, t1, ver, key="/k", **kw):
    return op(p, "read", key, v, t0, t1, version=ver, **kw)


def C(p, expect, v, t0, t1, ver=0, key="/k", **kw):
    return op(p, "cas", key, v, t0, t1, version=ver, expect=expect, **kw)


def lin_ok(h):
    r = checker.check_linearizable(h)
    assert r["ok"], checker.format_counterexample(r)


def lin_bad(h, blocked_type=None):
    r = checker.check_linearizable(h)
    assert not r["ok"], "a bad history passed: %r" % h
    text = checker.format_counterexample(r)
    assert "cannot be placed" in text, text
    if blocked_type:
        assert r["counterexample"]["blocked"]["type"] == blocked_type, text
    return text


# ----- linearizability: bad histories

def test_stale_read_is_reported():
    # p1 writes a (v1) then b (v2); p2 reads a after b completed
    lin_bad([W(1, "a", 0, 1, 1), W(1, "b", 2, 3, 2), R(2, "a", 4, 5, 1)], "read")


def test_read_of_unwritten_value_is_reported():
    lin_bad([W(1, "a", 0, 1, 1), R(2, "zzz", 2, 3, 1)])


def test_lost_write_is_reported():
    # acknowledged write b, then a later read still shows a
    lin_bad([W(1, "a", 0, 1, 1), W(2, "b", 1.5, 2, 2), R(3, "a", 3, 4, 1)])


def test_lost_write_seen_as_absent_is_reported():
    lin_bad([W(1, "a", 0, 1, 1), R(2, None, 2, 3, 0)])


def test_two_cas_on_one_version_both_succeeding_is_reported():
    lin_bad([W(1, "a", 0, 1, 1), C(2, 1, "x", 2, 3, ver=2), C(3, 1, "y", 2.5, 3.5, ver=2)])


def test_cas_failing_when_version_matched_is_reported():
    lin_bad([W(1, "a", 0, 1, 1), C(2, 1, "x", 2, 3, outcome="fail", err="ECANCELED")], "cas")


def test_cas_succeeding_on_wrong_version_is_reported():
    lin_bad([W(1, "a", 0, 1, 1), W(1, "b", 1, 2, 2), C(2, 1, "x", 3, 4, ver=2)])


def test_wrong_version_in_write_reply_is_reported():
    lin_bad([W(1, "a", 0, 1, 1), W(2, "b", 2, 3, 3)])


def test_reads_going_backwards_are_reported():
    # two concurrent writes; one reader sees b then a: not linearizable
    lin_bad([W(1, "a", 0, 10, 1), W(2, "b", 0, 10, 2), R(3, "b", 1, 2, 2), R(3, "a", 3, 4, 1)])


def test_unknown_write_seen_then_unseen_is_reported():
    # an unknown write may happen, but not un-happen
    lin_bad([W(1, "a", 0, 1, 1), W(2, "u", 2, 3, 0, outcome="unknown", err="ETIMEDOUT"),
             R(3, "u", 4, 5, 2), R(3, "a", 6, 7, 1)])


def test_unknown_write_read_before_its_invocation_is_reported():
    lin_bad([R(3, "u", 0, 1, 1), W(2, "u", 2, 3, 0, outcome="unknown", err="ETIMEDOUT")])


def test_counterexample_names_the_ops():
    text = lin_bad([W(1, "a", 0, 1, 1), W(1, "b", 2, 3, 2), R(2, "a", 4, 5, 1)])
    assert "p2 read /k -> 'a'" in text and "'b'" in text, text


# ----- linearizability: good histories

def test_concurrent_ops_in_either_order_pass():
    lin_ok([W(1, "a", 0, 10, 1), W(2, "b", 0, 10, 2), R(3, "a", 1, 2, 2 - 1),
            R(3, "b", 11, 12, 2)])


def test_unknown_write_that_happened_passes():
    lin_ok([W(1, "a", 0, 1, 1), W(2, "u", 2, 3, 0, outcome="unknown", err="ETIMEDOUT"),
            R(3, "u", 50, 51, 2)])


def test_unknown_write_that_never_happened_passes():
    lin_ok([W(1, "a", 0, 1, 1), W(2, "u", 2, 3, 0, outcome="unknown", err="EIO"),
            R(3, "a", 50, 51, 1), W(1, "b", 60, 61, 2), R(3, "b", 70, 71, 2)])


def test_unknown_write_taking_effect_much_later_passes():
    # completion at +infinity: it may land after later ops
    lin_ok([W(2, "u", 0, 1, 0, outcome="unknown", err="ETIMEDOUT"), W(1, "a", 5, 6, 1),
            R(3, "a", 7, 8, 1), R(3, "u", 9, 10, 2)])


def test_unknown_cas_both_ways_passes():
    lin_ok([W(1, "a", 0, 1, 1), C(2, 1, "x", 2, 3, outcome="unknown", err="ETIMEDOUT"),
            R(3, "x", 4, 5, 2)])
    lin_ok([W(1, "a", 0, 1, 1), C(2, 1, "x", 2, 3, outcome="unknown", err="ETIMEDOUT"),
            R(3, "a", 4, 5, 1)])


def test_failed_write_and_failed_read_are_ignored():
    lin_ok([W(1, "a", 0, 1, 1), W(2, "f", 2, 3, 0, outcome="fail", err="NOLEADER"),
            R(3, "zz", 2, 3, 9, outcome="fail", err="ETIMEDOUT"), R(3, "a", 4, 5, 1)])


def test_cas_chain_passes():
    lin_ok([C(1, 0, "a", 0, 1, ver=1), C(2, 0, "b", 0.5, 1.5, outcome="fail", err="ECANCELED"),
            C(2, 1, "c", 2, 3, ver=2), R(1, "c", 4, 5, 2)])


def test_follower_reads_are_not_held_to_linearizability():
    lin_ok([W(1, "a", 0, 1, 1), W(1, "b", 2, 3, 2), R(2, "a", 4, 5, 1, consistency="follower")])


def test_big_generated_history_is_checked_in_seconds():
    h = generated_history(ops=6000, procs=5, keys=3, seed=7)
    start = time.time()
    r = checker.check_linearizable(h)
    took = time.time() - start
    assert r["ok"], checker.format_counterexample(r)
    print("  %d ops on %d keys (with unknowns) checked in %.2fs" % (r["ops"], r["keys"], took))
    assert took < 30, took
    # the same history with one read made stale must fail
    reads = [o for o in h if o["type"] == "read" and o["version"] >= 3]
    bad = reads[len(reads) // 2]
    prev = [o for o in h if o["key"] == bad["key"] and o["outcome"] == "ok" and
            o["type"] != "read" and o["version"] == bad["version"] - 2][0]
    bad["value"], bad["version"] = prev["value"], prev["version"]
    r = checker.check_linearizable(h)
    assert not r["ok"], "stale read in a big history not found"


def generated_history(ops, procs, keys, seed):
    """A linearizable history: a simulated register per key, ops with random
    overlapping windows whose linearization point lies inside; some writes time
    out (unknown), half of those never applied."""
    rng = random.Random(seed)
    state = {"/g%d" % k: (None, 0) for k in range(keys)}
    t = 0.0
    busy = [0.0] * procs
    hist = []
    seq = 0
    for _ in range(ops):
        p = rng.randrange(procs)
        t += rng.uniform(0.0001, 0.002)
        inv = max(t - rng.uniform(0, 0.004), busy[p])
        t = point = max(t, inv)  # linearization points in the order simulated
        key = "/g%d" % rng.randrange(keys)
        val, ver = state[key]
        kind = rng.random()
        seq += 1
        if kind < 0.5:
            o = R(p, val, inv, point + rng.uniform(0, 0.004), ver, key=key)
        elif kind < 0.8 or ver == 0:
            v = "p%d-%d" % (p, seq)
            if rng.random() < 0.03:
                o = W(p, v, inv, point + 0.001, 0, key=key, outcome="unknown", err="ETIMEDOUT")
                if rng.random() < 0.5:
                    state[key] = (v, ver + 1)
            else:
                state[key] = (v, ver + 1)
                o = W(p, v, inv, point + rng.uniform(0, 0.004), ver + 1, key=key)
        else:
            v = "p%d-%d" % (p, seq)
            exp = ver if rng.random() < 0.7 else max(0, ver - 1)
            if exp == ver:
                state[key] = (v, ver + 1)
                o = C(p, exp, v, inv, point + rng.uniform(0, 0.004), ver=ver + 1, key=key)
            else:
                o = C(p, exp, v, inv, point + rng.uniform(0, 0.004), key=key, outcome="fail",
                      err="ECANCELED")
        busy[p] = o["complete"] / 1e9 if o["outcome"] != "unknown" else point + 0.001
        hist.append(o)
    return hist


# ----- sessions

def F(type_, p, key, value, t0, t1, **kw):
    return op(p, type_, key, value, t0, t1, consistency="follower", **kw)


def sess_bad(h, kind):
    v = checker.check_sessions(h)
    assert v, "a bad session history passed"
    assert any(x["kind"] == kind for x in v), [x["kind"] for x in v]
    return checker.format_violation(v[0])


def test_missing_own_write_is_reported():
    text = sess_bad([F("write", 1, "/f/1", "p1-1", 0, 1, version=1, mod_index=5),
                     F("write", 1, "/f/1", "p1-2", 2, 3, version=2, mod_index=7),
                     F("read", 1, "/f/1", "p1-1", 4, 5, version=1, mod_index=5)],
                    "read-your-writes")
    assert "p1-2" in text and "p1-1" in text, text


def test_own_write_missing_entirely_is_reported():
    sess_bad([F("write", 1, "/f/1", "p1-1", 0, 1, version=1, mod_index=5),
              F("read", 1, "/f/1", None, 2, 3, version=0, mod_index=0)], "read-your-writes")


def test_non_monotonic_read_is_reported():
    sess_bad([F("write", 2, "/f/2", "p2-1", 0, 1, version=1, mod_index=5),
              F("write", 2, "/f/2", "p2-2", 1, 2, version=2, mod_index=6),
              F("read", 1, "/f/2", "p2-2", 3, 4, version=2, mod_index=6),
              F("read", 1, "/f/2", "p2-1", 5, 6, version=1, mod_index=5)], "monotonic-reads")


def test_fuse_reads_without_versions_are_ranked_by_sequence():
    sess_bad([F("write", 100, "/f/fuse", "fuse-1", 0, 1, version=-1),
              F("write", 100, "/f/fuse", "fuse-2", 2, 3, version=-1),
              F("read", 100, "/f/fuse", "fuse-1", 4, 5, version=-1)], "read-your-writes")


def test_token_rule_across_keys_is_reported():
    # p1 wrote at index 9; /f/2 changed at 8 (p2's acked write): p1 must see it
    sess_bad([F("write", 2, "/f/2", "p2-1", 0, 1, version=1, mod_index=4),
              F("write", 2, "/f/2", "p2-2", 1, 2, version=2, mod_index=8),
              F("write", 1, "/f/1", "p1-1", 3, 4, version=1, mod_index=9),
              F("read", 1, "/f/2", "p2-1", 5, 6, version=1, mod_index=4)], "token")


def test_good_sessions_pass():
    h = [F("write", 1, "/f/1", "p1-1", 0, 1, version=1, mod_index=5),
         F("read", 1, "/f/1", "p1-1", 2, 3, version=1, mod_index=5),
         F("write", 1, "/f/1", "p1-2", 3, 4, version=2, mod_index=0, outcome="unknown",
           err="ETIMEDOUT"),
         F("read", 1, "/f/1", "p1-2", 5, 6, version=2, mod_index=8),
         F("read", 1, "/f/2", None, 6, 7, version=0, mod_index=0),
         F("read", 2, "/f/1", "p1-1", 6, 7, version=1, mod_index=5),
         F("read", 2, "/f/1", "p1-2", 8, 9, version=2, mod_index=8),
         F("read", 100, "/f/1", "p1-2", 8, 9, version=-1),
         F("write", 100, "/f/fuse", "fuse-1", 9, 10, version=-1),
         F("read", 100, "/f/fuse", "fuse-1", 11, 12, version=-1)]
    v = checker.check_sessions(h)
    assert not v, "\n".join(checker.format_violation(x) for x in v)


# ----- the gateway's txn path (etcd model: value, mod_revision)

def T(p, type_, t0, t1, outcome="ok", key="/k", **kw):
    o = {"process": p, "type": type_, "key": key, "invoke": int(t0 * 1e9),
         "complete": int(t1 * 1e9), "outcome": outcome}
    o.update(kw)
    return o


def txn_ok(h):
    r = checker.check_txn_linearizable(h)
    assert r["ok"], checker.format_txn_counterexample(r)


def txn_bad(h, blocked_type=None):
    r = checker.check_txn_linearizable(h)
    assert not r["ok"], "a bad txn history passed: %r" % h
    text = checker.format_txn_counterexample(r)
    assert "cannot be placed" in text, text
    if blocked_type:
        assert r["counterexample"]["blocked"]["type"] == blocked_type, text
    return text


def test_txn_cas_on_recreated_key_is_reported():
    # The old gateway: p2 reads mod 10, the key is deleted and re-created
    # (mod 12), and p2's txn{MOD == 10; put} succeeds at 13 anyway.
    txn_bad([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
             T(2, "read", 2, 3, value="a", mod=10),
             T(3, "delete", 3.5, 4, deleted=1),
             T(1, "create", 4.5, 5, value="b", succeeded=True, mod=12),
             T(2, "cas", 3.2, 6, value="x", expect_mod=10, succeeded=True, mod=13)])


def test_txn_cas_against_a_changed_key_and_stale_read_are_reported():
    txn_bad([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
             T(1, "cas", 2, 3, value="b", expect_mod=10, succeeded=True, mod=11),
             T(2, "cas", 4, 5, value="c", expect_mod=10, succeeded=True, mod=12)], "cas")
    txn_bad([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
             T(1, "cas", 2, 3, value="b", expect_mod=10, succeeded=True, mod=11),
             T(2, "read", 4, 5, value="a", mod=10)], "read")


def test_txn_wrong_compare_outcomes_are_reported():
    # a create that succeeds on a present key; a cas that fails on a match;
    # a delete that deleted nothing from a present key
    txn_bad([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
             T(2, "create", 2, 3, value="b", succeeded=True, mod=11)])
    txn_bad([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
             T(2, "cas", 2, 3, value="b", expect_mod=10, succeeded=False)])
    txn_bad([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
             T(2, "delete", 2, 3, deleted=0)])


def test_txn_good_histories_pass():
    # concurrent cas and delete/re-create in the order the indexes allow
    txn_ok([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
            T(2, "read", 2, 3, value="a", mod=10),
            T(2, "cas", 3.2, 6, value="x", expect_mod=10, succeeded=True, mod=11),
            T(3, "delete", 3.5, 7, deleted=1),
            T(1, "create", 4.5, 8, value="b", succeeded=True, mod=12),
            T(2, "cas", 9, 10, value="y", expect_mod=11, succeeded=False),
            T(2, "read", 11, 12, value="b", mod=12)])
    # unknown outcomes: a cas seen by a read, a create never seen, a delete
    txn_ok([T(1, "create", 0, 1, value="a", succeeded=True, mod=10),
            T(2, "cas", 2, 3, "unknown", value="x", expect_mod=10),
            T(3, "read", 4, 5, value="x", mod=15),
            T(3, "delete", 6, 7, "unknown"),
            T(1, "create", 8, 9, "unknown", value="q"),
            T(1, "create", 10, 11, value="z", succeeded=False),
            T(2, "read", 12, 13, "fail"),
            T(3, "delete", 14, 15, deleted=1),
            T(3, "read", 16, 17, value=None, mod=0)])


def test_token_rule_compares_indexes_of_one_shard_only():
    # /n/* is another shard: its index 4 is not below /f/1's index 9
    h = [F("write", 2, "/n/2", "p2-1", 0, 1, version=1, mod_index=4),
         F("write", 2, "/n/2", "p2-2", 1, 2, version=2, mod_index=8),
         F("write", 1, "/f/1", "p1-1", 3, 4, version=1, mod_index=9),
         F("read", 1, "/n/2", "p2-1", 5, 6, version=1, mod_index=4)]
    shard = lambda k: "n" if k.startswith("/n/") else "/"  # noqa: E731
    v = checker.check_sessions(h, group_of=shard)
    assert not v, "\n".join(checker.format_violation(x) for x in v)
    assert checker.check_sessions(h), "one shard: the token rule applies"
    # and within the shard it still does: p1 saw /n's index 12
    h.append(F("write", 1, "/n/1", "p1-2", 6, 7, version=1, mod_index=12))
    h.append(F("read", 1, "/n/2", "p2-1", 8, 9, version=1, mod_index=4))
    v = checker.check_sessions(h, group_of=shard)
    assert [x["kind"] for x in v] == ["token"], v


# ----- staleness of reads through a mount (bound: checker.STALENESS_BOUND_S)

def stale(h, bound=2.0):
    return checker.check_staleness(h, readers={100, 101}, bound_s=bound)


def test_stale_read_through_a_mount_is_reported():
    # p11 writes p11-1 then p11-2 (acked at 2); the mount reads p11-1 at 10
    h = [F("write", 11, "/n/p11", "p11-1", 0, 1, version=1, mod_index=5),
         F("write", 11, "/n/p11", "p11-2", 1.5, 2, version=2, mod_index=9),
         F("read", 100, "/n/p11", "p11-1", 10, 10.01, version=-1)]
    v = stale(h)
    assert len(v) == 1 and v[0]["newer"]["value"] == "p11-2", v
    assert abs(v[0]["age_s"] - 8) < 1e-6, v
    assert "acknowledged 8.00s before" in checker.format_staleness(v[0])


def test_stale_read_ranked_by_time_without_versions():
    # two mount writes (no versions): the second began after the first was acked
    h = [F("write", 101, "/f/a", "fuse-1", 0, 1, version=-1),
         F("write", 101, "/f/a", "fuse-2", 2, 3, version=-1),
         F("read", 100, "/f/a", "fuse-1", 5.5, 5.6, version=-1)]
    assert len(stale(h)) == 1


def test_absent_read_after_an_acked_create_is_stale():
    h = [F("write", 11, "/n/p11", "p11-1", 0, 1, version=1),
         F("read", 100, "/n/p11", None, 4, 4.1, version=-1)]
    assert len(stale(h)) == 1


def test_reads_within_the_bound_pass():
    h = [F("write", 11, "/n/p11", "p11-1", 0, 1, version=1),
         F("write", 11, "/n/p11", "p11-2", 1.5, 2, version=2),
         # acked 1.9 s before: inside the 2 s bound
         F("read", 100, "/n/p11", "p11-1", 3.9, 4, version=-1),
         # the newest value, any time
         F("read", 100, "/n/p11", "p11-2", 30, 31, version=-1),
         # a follower-read worker (not a mount) is the session checker's
         F("read", 12, "/n/p11", "p11-1", 30, 31, version=1)]
    v = stale(h)
    assert not v, "\n".join(checker.format_staleness(x) for x in v)
    # the same read is stale with a tighter bound
    assert len(stale(h, bound=1.5)) == 1


def test_overlapping_and_unknown_writes_are_not_ordered_by_time():
    h = [F("write", 101, "/f/a", "fuse-1", 0, 3, version=-1),
         F("write", 101, "/f/a", "fuse-2", 1, 2, version=-1),  # overlaps fuse-1
         F("write", 11, "/f/a", "p11-1", 0, 1, version=-1, outcome="unknown",
           err="ETIMEDOUT"),
         F("write", 12, "/f/a", "p12-1", 1.5, 2, version=-1),  # after p11-1 began
         F("read", 100, "/f/a", "fuse-1", 9, 9.1, version=-1),
         F("read", 100, "/f/a", "p11-1", 9, 9.1, version=-1),
         F("read", 100, "/f/a", "never-written", 9, 9.1, version=-1)]
    v = stale(h)
    assert not v, "\n".join(checker.format_staleness(x) for x in v)



# ----- offline reads through a mount (check_offline)

def M(type_, p, key, value, t0, t1, offline=0, **kw):
    o = F(type_, p, key, value, t0, t1, version=-1, **kw)
    if type_ == "read":
        o["offline"] = offline
    return o


def offline_bad(h, kind, bound=2.0):
    v = checker.check_offline(h, readers={100}, bound_s=bound)
    assert any(x["kind"] == kind for x in v), [x["kind"] for x in v]
    return checker.format_offline([x for x in v if x["kind"] == kind][0])


def test_offline_read_older_than_own_write_is_reported():
    text = offline_bad([M("write", 100, "/o/fuse", "fuse-1", 0, 1),
                        M("write", 100, "/o/fuse", "fuse-2", 2, 3),
                        M("read", 100, "/o/fuse", "fuse-1", 5, 5.1, offline=1)],
                       "offline-older-than-own-write")
    assert "fuse-2" in text and "offline=1" in text, text


def test_online_read_older_than_own_write_is_reported():
    offline_bad([M("write", 100, "/o/fuse", "fuse-1", 0, 1),
                 M("read", 100, "/o/fuse", None, 2, 2.1, offline=0)],
                "online-older-than-own-write")


def test_stale_read_marked_online_is_reported():
    # p11 wrote p11-2 at 2; at 10 the mount still serves p11-1 and says online:
    # a value from the cache without the mark
    text = offline_bad([M("write", 11, "/o/p11", "p11-1", 0, 1),
                        M("write", 11, "/o/p11", "p11-2", 1.5, 2),
                        M("read", 100, "/o/p11", "p11-1", 10, 10.01, offline=0)],
                       "stale-online")
    assert "unmarked?" in text, text


def test_unmarked_read_is_reported():
    offline_bad([M("read", 100, "/o/p11", "p11-1", 1, 1.1, offline=None)], "unmarked")


def test_good_offline_history_passes():
    h = [M("write", 11, "/o/p11", "p11-1", 0, 1),
         M("write", 100, "/o/fuse", "fuse-1", 0, 1),
         M("read", 100, "/o/p11", "p11-1", 2, 2.1),
         # partitioned: p11 goes on, the mount serves its cache, marked
         M("write", 11, "/o/p11", "p11-2", 3, 3.1),
         M("write", 100, "/o/fuse", "fuse-2", 3, 3.1, outcome="fail", err="EROFS"),
         M("read", 100, "/o/p11", "p11-1", 9, 9.1, offline=1),
         M("read", 100, "/o/fuse", "fuse-1", 9, 9.1, offline=1),
         M("read", 100, "/o/p11", "p11-1", 9.5, 9.6, offline=2),  # going online
         # healed
         M("read", 100, "/o/p11", "p11-2", 10, 10.1),
         M("write", 100, "/o/fuse", "fuse-3", 11, 11.1),
         M("read", 100, "/o/fuse", "fuse-3", 12, 12.1)]
    v = checker.check_offline(h, readers={100}, bound_s=2.0)
    assert not v, "\n".join(checker.format_offline(x) for x in v)
    # the staleness checker leaves the reads marked offline alone
    assert not checker.check_staleness(h, readers={100}, bound_s=2.0)


if __name__ == "__main__":
    run([v for k, v in sorted(globals().items()) if k.startswith("test_")])
