#!/usr/bin/env python3
"""test_etcd_txn.py: /v3/kv/txn (and deleterange with prev_kv) must evaluate
its compares on the key's state at the index where its write lands, also
when the key is deleted and re-created in between (version restarts at 1
then, mod_revision and create_revision do not). Node ports 21160-21162,
gateways 21193 (normal) and 21194 (--test-txn-sleep-ms: it blocks between
a txn's read and its write, and the test changes the key in that window
through confmanctl, straight to the servers).

Deterministic: for each compare (MOD, CREATE, VALUE, MOD LESS, VERSION),
the failure branch and prev_kv, the change made in the window must decide
the outcome as if the txn ran after it. Concurrent: deleters, creators and
CAS-by-mod_revision clients on one key; every successful CAS must have
written onto the incarnation and version it read."""
import base64
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_cases import b64  # noqa: E402
from gwlib import Gateway, check, harness, post_json, run_tests  # noqa: E402

BASE = int(os.environ.get("CONFMAN_API_PORT", "21160"))
GWPORT = int(os.environ.get("CONFMAN_API_GW_PORT", "21193"))
SLOWPORT = GWPORT + 1
SLEEP_MS = 1500
C = None


def post(path, obj, port=GWPORT):
    return post_json(port, path, obj)


def kv(key, port=GWPORT):
    st, doc = post("/v3/kv/range", {"key": b64(key)}, port)
    check(st == 200, (st, doc))
    kvs = doc.get("kvs", [])
    return kvs[0] if kvs else None


def val(kv_):
    return None if kv_ is None else base64.b64decode(kv_.get("value", "")).decode()


def put(key, value):
    st, doc = post("/v3/kv/put", {"key": b64(key), "value": b64(value)})
    check(st == 200, (st, doc))
    return kv(key)


def recreate(key, *values):
    """Delete key and write it again (value by value), through confmanctl."""
    def change():
        C.ctl("rm", key, check=True)
        for v in values:
            C.ctl("put", key, v, check=True)
    return change


def raced(path, body, change):
    """POST body to the sleeping gateway; run change() while it sleeps
    between its read and its write. Returns (status, doc)."""
    out = {}

    def send():
        out["r"] = post(path, body, SLOWPORT)

    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.3)  # the read is done (a few ms); the gateway sleeps
    start = time.time()
    change()
    took = time.time() - start
    t.join(4 * SLEEP_MS / 1000 + 10)
    check(not t.is_alive(), "the txn never answered")
    check(took < SLEEP_MS / 1000 - 0.4, "the change took %.2fs: not inside the window" % took)
    return out["r"]


def cmp(key, target, value, result="EQUAL"):
    field = {"MOD": "mod_revision", "CREATE": "create_revision", "VERSION": "version",
             "VALUE": "value"}[target]
    return {"key": b64(key), "target": target, "result": result,
            field: b64(value) if target == "VALUE" else str(value)}


def put_op(key, value):
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def expect_outcome(key, compare, change, succeeded, final, failure=None):
    st, doc = raced("/v3/kv/txn", {"compare": [compare], "success": [put_op(key, "txn")],
                                   "failure": failure or []}, change)
    check(st == 200, (st, doc))
    got = kv(key)
    check(doc.get("succeeded", False) == succeeded and val(got) == final,
          "%s %s: succeeded=%s, key now %r (want succeeded=%s, %r)"
          % (compare["target"], compare["result"], doc.get("succeeded", False), val(got),
             succeeded, final))


def test_mod_compare_fails_on_recreated_key():
    """range: mod_revision R; delete + re-create with the same value
    (version 1 again); txn{MOD == R; put} must fail."""
    r = put("/r/mod", "a")
    expect_outcome("/r/mod", cmp("/r/mod", "MOD", r["mod_revision"]),
                   recreate("/r/mod", "a"), False, "a")


def test_create_compare_fails_on_recreated_key():
    r = put("/r/create", "a")
    expect_outcome("/r/create", cmp("/r/create", "CREATE", r["create_revision"]),
                   recreate("/r/create", "a"), False, "a")


def test_value_compare_fails_on_recreated_key():
    put("/r/value", "a")
    expect_outcome("/r/value", cmp("/r/value", "VALUE", "a"), recreate("/r/value", "b"),
                   False, "b")


def test_mod_less_fails_on_recreated_key():
    r = put("/r/less", "a")
    expect_outcome("/r/less", cmp("/r/less", "MOD", int(r["mod_revision"]) + 1, "LESS"),
                   recreate("/r/less", "a"), False, "a")


def test_version_compare_follows_the_new_incarnation():
    """etcd's version counts changes since creation: a re-created key at
    version 2 fails VERSION == 1, and one at version 1 passes it."""
    put("/r/version", "a")
    expect_outcome("/r/version", cmp("/r/version", "VERSION", 1),
                   recreate("/r/version", "x", "y"), False, "y")
    put("/r/version1", "a")
    expect_outcome("/r/version1", cmp("/r/version1", "VERSION", 1),
                   recreate("/r/version1", "b"), True, "txn")


def test_failure_branch_is_not_applied_when_compare_now_holds():
    """The compare fails on what the txn read, but holds once the key is
    re-created: the txn must take the success branch (empty here), and its
    failure branch's put must not land on the new incarnation."""
    put("/r/fail", "a")
    st, doc = raced("/v3/kv/txn", {"compare": [cmp("/r/fail", "VALUE", "b")],
                                   "failure": [put_op("/r/fail", "f")]},
                    recreate("/r/fail", "b"))
    check(st == 200, (st, doc))
    check(doc.get("succeeded") is True and val(kv("/r/fail")) == "b",
          "failure branch applied to the new incarnation: %r, key %r"
          % (doc, val(kv("/r/fail"))))


def test_prev_kv_reports_what_was_deleted():
    put("/r/prev", "a")
    st, doc = raced("/v3/kv/deleterange", {"key": b64("/r/prev"), "prev_kv": True},
                    recreate("/r/prev", "b"))
    check(st == 200 and doc.get("deleted") == "1", (st, doc))
    prev = doc["prev_kvs"][0]
    check(val(prev) == "b" and kv("/r/prev") is None,
          "deleted the re-created key but reported %r as its previous value" % val(prev))


def test_deterministic():
    """The cases above, against a gateway that sleeps between read and write."""
    sg = Gateway(C, SLOWPORT, ["--threads", "1", "--test-txn-sleep-ms", str(SLEEP_MS)]).start()
    failed = []
    try:
        sg.wait_ready()
        for t in (test_mod_compare_fails_on_recreated_key,
                  test_create_compare_fails_on_recreated_key,
                  test_value_compare_fails_on_recreated_key,
                  test_mod_less_fails_on_recreated_key,
                  test_version_compare_follows_the_new_incarnation,
                  test_failure_branch_is_not_applied_when_compare_now_holds,
                  test_prev_kv_reports_what_was_deleted):
            try:
                t()
                print("  ok   %s" % t.__name__, flush=True)
            except AssertionError as e:
                failed.append("%s: %s" % (t.__name__, e))
                print("  FAIL %s: %s" % (t.__name__, e), flush=True)
    finally:
        sg.stop()
    check(not failed, "\n".join(failed))


def test_concurrent_cas_under_churn():
    """3 deleters, 3 creators and 8 CAS clients (range, then txn{MOD == R;
    put; range}) on one key for a few seconds. A successful CAS applied
    right after the state it read (mod R) must leave the incarnation it read
    (create_revision) at the next version: anything else means the compare
    passed against another incarnation."""
    key = "/r/churn"
    stop = time.time() + float(os.environ.get("CONFMAN_TXN_CHURN_SECONDS", "6"))
    bad, errors = [], []
    counts = {"cas_ok": 0, "cas_failed": 0, "cas_gave_up": 0, "deletes": 0, "creates": 0}
    lock = threading.Lock()

    def count(k):
        with lock:
            counts[k] += 1

    def deleter():
        while time.time() < stop:
            st, doc = post("/v3/kv/deleterange", {"key": b64(key)})
            if st != 200:
                errors.append((st, doc))
            elif doc.get("deleted") == "1":
                count("deletes")
            # Leave the key alive for a moment: with no pause, a slow
            # (sanitized) build saw no CAS win a single round in 6 s.
            time.sleep(0.01)

    def creator(i):
        n = 0
        while time.time() < stop:
            n += 1
            st, doc = post("/v3/kv/txn", {"compare": [cmp(key, "VERSION", 0)],
                                          "success": [put_op(key, "c%d-%d" % (i, n))]})
            if st == 503 and "kept changing" in str(doc):
                continue  # documented contention: nothing applied, as for the CAS clients
            if st != 200:
                errors.append((st, doc))
            elif doc.get("succeeded"):
                count("creates")

    def casser(i):
        n = 0
        while time.time() < stop:
            cur = kv(key)
            if cur is None:
                continue
            n += 1
            st, doc = post("/v3/kv/txn", {
                "compare": [cmp(key, "MOD", cur["mod_revision"])],
                "success": [put_op(key, "x%d-%d" % (i, n)), {"request_range": {"key": b64(key)}}]})
            if st == 503 and "kept changing" in str(doc):
                count("cas_gave_up")       # documented: contention, nothing applied
                continue
            if st != 200:
                errors.append((st, doc))
                continue
            if not doc.get("succeeded"):
                count("cas_failed")
                continue
            count("cas_ok")
            after = doc["responses"][1]["response_range"]["kvs"][0]
            if (after["create_revision"] != cur["create_revision"] or
                    int(after["version"]) != int(cur["version"]) + 1):
                bad.append("read create %s version %s mod %s, wrote create %s version %s mod %s"
                           % (cur["create_revision"], cur["version"], cur["mod_revision"],
                              after["create_revision"], after["version"],
                              after["mod_revision"]))

    ts = [threading.Thread(target=deleter) for _ in range(3)]
    ts += [threading.Thread(target=creator, args=(i,)) for i in range(3)]
    ts += [threading.Thread(target=casser, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    print("  %s, %d bad" % (counts, len(bad)), flush=True)
    check(not errors, errors[:3])
    check(not bad, "%d txns succeeded against another incarnation or version:\n  %s"
          % (len(bad), "\n  ".join(bad[:5])))
    check(counts["cas_ok"] > 0 and counts["deletes"] > 20, "too little contention: %s" % counts)


def start_gateway(cluster):
    g = Gateway(cluster, GWPORT).start()
    g.wait_ready()
    return g


def main():
    global C
    C = harness.Cluster(3, base_port=BASE)
    run_tests(C, start_gateway, [test_deterministic, test_concurrent_cas_under_churn])


if __name__ == "__main__":
    main()
