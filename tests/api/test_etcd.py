#!/usr/bin/env python3
"""test_etcd.py: confman-api's etcd v3 JSON-gateway subset against a real 3-node
cluster: the recorded etcd answers (fixtures/etcd-v3.json, by shape) and the
semantics of put, range, deleterange and txn. Node ports 21120-21122,
gateway 21191."""
import base64
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcd_cases  # noqa: E402
from etcd_cases import b64, prefix_end  # noqa: E402
from gwlib import Gateway, check, harness, post_json, request, run_tests  # noqa: E402

BASE = int(os.environ.get("CONFMAN_API_PORT", "21120"))
GWPORT = int(os.environ.get("CONFMAN_API_GW_PORT", "21191"))
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "etcd-v3.json")
C = None
G = None


def post(path, obj):
    return post_json(GWPORT, path, obj)


def shape(v):
    """A value's shape: dict keys with their shapes, list of shapes, or a JSON type name."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(x) for x in v]
    return type(v).__name__


def test_fixtures_shape():
    with open(FIXTURES) as f:
        fx = json.load(f)["cases"]
    bad = []
    for name, path, body in etcd_cases.CASES:
        want = fx[name]
        st, got = post(path, body)
        if st != want["status"]:
            bad.append("%s: status %d, etcd %d (%r)" % (name, st, want["status"], got))
            continue
        w, g = shape(want["body"]), shape(got)
        if isinstance(w, dict) and isinstance(g, dict) and st != 200:
            # Errors: the same fields; the messages are our own.
            if set(w) != set(g):
                bad.append("%s: error fields %s, etcd %s" % (name, sorted(g), sorted(w)))
        elif w != g:
            bad.append("%s: shape %s\n   etcd %s" % (name, json.dumps(g), json.dumps(w)))
    check(not bad, "differences from etcd:\n  " + "\n  ".join(bad))


def kv(key):
    st, doc = post("/v3/kv/range", {"key": b64(key)})
    check(st == 200, (st, doc))
    kvs = doc.get("kvs", [])
    return kvs[0] if kvs else None


def test_put_range_values():
    val = bytes(range(256))
    st, doc = post("/v3/kv/put", {"key": b64("/e/bin"),
                                  "value": base64.b64encode(val).decode()})
    check(st == 200 and int(doc["header"]["revision"]) > 0, (st, doc))
    got = kv("/e/bin")
    check(base64.b64decode(got["value"]) == val and got["version"] == "1", got)
    check(int(got["mod_revision"]) <= int(doc["header"]["revision"]), (got, doc))
    # serializable, camelCase names, integers as numbers
    st, doc = post("/v3/kv/range", {"key": b64("/e/bin"), "serializable": True,
                                    "keysOnly": True})
    check(st == 200 and "value" not in doc["kvs"][0], doc)
    st, doc = post("/v3/kv/range", {"key": b64("/e/"), "rangeEnd": prefix_end("/e/"),
                                    "limit": 1, "countOnly": True})
    check(st == 200 and doc["count"] == "1" and "kvs" not in doc, doc)
    # URL-safe base64 and missing padding, as some clients send
    st, doc = post("/v3/kv/range", {"key": base64.urlsafe_b64encode(b"/e/bin").decode().rstrip("=")})
    check(st == 200 and doc["count"] == "1", doc)
    # an empty value
    st, _ = post("/v3/kv/put", {"key": b64("/e/empty")})
    got = kv("/e/empty")
    check(got is not None and "value" not in got, got)


def test_prefix_order_and_limit():
    for k in ("/p/b/c", "/p/b-c", "/p/a", "/p/bz", "/q/x", "/p/b/d/e"):
        check(post("/v3/kv/put", {"key": b64(k), "value": b64(k)})[0] == 200, k)
    # "/p/b" is a directory now (of /p/b/c): no key, and no put either
    check(post("/v3/kv/put", {"key": b64("/p/b"), "value": b64("x")})[0] == 409, "/p/b")
    check(kv("/p/b") is None, "a directory is no key")
    st, doc = post("/v3/kv/range", {"key": b64("/p/"), "range_end": prefix_end("/p/")})
    keys = [base64.b64decode(x["key"]).decode() for x in doc["kvs"]]
    want = sorted(["/p/b/c", "/p/b-c", "/p/a", "/p/b/d/e", "/p/bz"], key=lambda s: s.encode())
    check(keys == want, keys)
    check(doc["count"] == str(len(want)), doc)
    st, doc = post("/v3/kv/range", {"key": b64("/p/b"), "range_end": prefix_end("/p/b")})
    keys = [base64.b64decode(x["key"]).decode() for x in doc["kvs"]]
    check(keys == [k for k in want if k.startswith("/p/b")], keys)
    st, doc = post("/v3/kv/range", {"key": b64("/p/"), "range_end": prefix_end("/p/"), "limit": "2"})
    check(len(doc["kvs"]) == 2 and doc.get("more") is True and doc["count"] == str(len(want)), doc)
    st, doc = post("/v3/kv/range", {"key": "AA==", "range_end": "AA=="})
    check(st == 200 and int(doc["count"]) >= len(want), "every key: %r" % (doc,))
    st, doc = post("/v3/kv/deleterange", {"key": b64("/p/b"), "range_end": prefix_end("/p/b")})
    check(st == 200 and doc["deleted"] == "4", doc)
    st, doc = post("/v3/kv/range", {"key": b64("/p/"), "range_end": prefix_end("/p/")})
    check(doc["count"] == "1", doc)


def test_non_path_keys():
    st, doc = post("/v3/kv/put", {"key": b64("foo"), "value": b64("x")})
    check(st == 400 and doc["code"] == 3 and "path" in doc["error"], (st, doc))
    for bad in ("/a//b", "/a/", "/a/../b", "/a/./b", "/" + "x" * 300):
        st, doc = post("/v3/kv/put", {"key": b64(bad), "value": b64("x")})
        check(st == 400, (bad, st, doc))
    st, doc = post("/v3/kv/range", {"key": b64("foo")})
    check(st == 200 and "kvs" not in doc, "a key that is no path names nothing: %r" % (doc,))
    st, doc = post("/v3/kv/range", {"key": b64("foo"), "range_end": prefix_end("foo")})
    check(st == 200 and "kvs" not in doc, doc)


def long_path(n, c="y"):
    """'/yyy...' of exactly n bytes: a '/' every 200, so only the length decides."""
    return "".join("/" if k % 200 == 0 else c for k in range(n))


def test_keys_up_to_4096_bytes_and_names_up_to_255():
    """A key is a path: PATH_MAX (4096) and NAME_MAX (255), literally, through
    put, range (point, prefix), txn and deleterange; one byte more is 400."""
    for n in (4095, 4096):
        k = long_path(n, "ab"[n % 2])
        st, doc = post("/v3/kv/put", {"key": b64(k), "value": b64("v%d" % n)})
        check(st == 200, "put %d bytes: %d %r" % (n, st, doc))
        got = kv(k)
        check(got is not None and base64.b64decode(got["key"]).decode() == k and
              base64.b64decode(got["value"]) == b"v%d" % n, "range %d bytes" % n)
    k = long_path(4096, "a")  # the 4096-byte key put above
    top = k[:k.index("/", 1) + 1]
    st, doc = post("/v3/kv/range", {"key": b64(top), "range_end": prefix_end(top),
                                    "keys_only": True})
    check(st == 200 and [base64.b64decode(x["key"]).decode() for x in doc["kvs"]] == [k],
          "prefix range: %r" % (st,))
    st, doc = post("/v3/kv/txn", {
        "compare": [{"key": b64(k), "target": "VALUE", "result": "EQUAL",
                     "value": b64("v4096")}],
        "success": [{"request_put": {"key": b64(k), "value": b64("t")}}]})
    check(st == 200 and doc.get("succeeded") is True, (st, doc))
    check(base64.b64decode(kv(k)["value"]) == b"t", "txn put")
    too = long_path(4097)
    for path, body in (("/v3/kv/put", {"key": b64(too), "value": b64("x")}),
                       ("/v3/kv/txn", {"success": [{"request_put": {"key": b64(too),
                                                                    "value": b64("x")}}]})):
        st, doc = post(path, body)
        check(st == 400 and "too long" in json.dumps(doc), "%s 4097: %d %r" % (path, st, doc))
    st, doc = post("/v3/kv/range", {"key": b64(too)})
    check(st == 200 and "kvs" not in doc, "a key longer than a path names nothing: %r" % (doc,))
    st, doc = post("/v3/kv/put", {"key": b64("/n" + "n" * 254), "value": b64("255")})
    check(st == 200, (st, doc))
    st, doc = post("/v3/kv/put", {"key": b64("/n" + "n" * 255), "value": b64("256")})
    check(st == 400 and "too long" in doc["error"], (st, doc))
    st, doc = post("/v3/kv/deleterange", {"key": b64(k)})
    check(st == 200 and doc.get("deleted") == "1", (st, doc))


def test_txn_cas_mod_revision():
    post("/v3/kv/put", {"key": b64("/t/m"), "value": b64("0")})
    cur = kv("/t/m")
    txn = {"compare": [{"key": b64("/t/m"), "target": "MOD", "result": "EQUAL",
                        "mod_revision": cur["mod_revision"]}],
           "success": [{"request_put": {"key": b64("/t/m"), "value": b64("1")}}],
           "failure": [{"request_range": {"key": b64("/t/m")}}]}
    st, doc = post("/v3/kv/txn", txn)
    check(st == 200 and doc.get("succeeded") is True, doc)
    st, doc = post("/v3/kv/txn", txn)  # the same mod_revision again: stale now
    check(st == 200 and "succeeded" not in doc, doc)
    got = doc["responses"][0]["response_range"]["kvs"][0]
    check(base64.b64decode(got["value"]) == b"1", got)
    # numeric enums and a value compare
    st, doc = post("/v3/kv/txn", {
        "compare": [{"key": b64("/t/m"), "target": 3, "result": 0, "value": b64("1")}],
        "success": [{"request_delete_range": {"key": b64("/t/m")}}]})
    check(st == 200 and doc.get("succeeded") is True and
          doc["responses"][0]["response_delete_range"]["deleted"] == "1", doc)
    check(kv("/t/m") is None, "txn delete")
    st, doc = post("/v3/kv/txn", {})
    check(st == 200 and doc.get("succeeded") is True, doc)


def test_txn_increments_are_atomic():
    """8 threads x 10 read-modify-write txns on one counter: no update lost."""
    post("/v3/kv/put", {"key": b64("/t/ctr"), "value": b64("0")})
    errors = []

    def worker():
        done = 0
        while done < 10:
            cur = kv("/t/ctr")
            n = int(base64.b64decode(cur["value"]))
            st, doc = post("/v3/kv/txn", {
                "compare": [{"key": b64("/t/ctr"), "target": "VERSION", "result": "EQUAL",
                             "version": cur["version"]}],
                "success": [{"request_put": {"key": b64("/t/ctr"), "value": b64(str(n + 1))}}]})
            if st != 200:
                errors.append((st, doc))
                return
            done += doc.get("succeeded") is True

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(not errors, errors[:3])
    got = kv("/t/ctr")
    check(base64.b64decode(got["value"]) == b"80" and got["version"] == "81", got)


def test_two_shards():
    """The cluster has shards "/" (group 1) and "/apps" (group 2): each request
    goes to its shard, and a prefix range crosses the boundary."""
    st, doc = post("/v3/kv/put", {"key": b64("/apps/web/port"), "value": b64("80")})
    check(st == 200 and doc["header"]["member_id"] == "2", doc)
    st, doc = post("/v3/kv/put", {"key": b64("/top"), "value": b64("t")})
    check(st == 200 and doc["header"]["member_id"] == "1", doc)
    st, doc = post("/v3/kv/range", {"key": b64("/apps/web/port"), "serializable": True})
    check(doc["header"]["member_id"] == "2" and doc["count"] == "1", doc)
    st, doc = post("/v3/kv/range", {"key": b64("/"), "range_end": prefix_end("/"),
                                    "keys_only": True})
    keys = [base64.b64decode(x["key"]).decode() for x in doc.get("kvs", [])]
    check("/apps/web/port" in keys and "/top" in keys, keys)
    st, doc = post("/v3/kv/txn", {
        "compare": [{"key": b64("/apps/web/port"), "target": "VERSION", "version": "1"}],
        "success": [{"request_put": {"key": b64("/apps/web/port"), "value": b64("81")}}]})
    check(st == 200 and doc.get("succeeded") is True and doc["header"]["member_id"] == "2", doc)
    # The shard's top directory is refused by its own group, whoever asks.
    for q in ("?recursive", "?dir"):
        st, _, body = request(GWPORT, "DELETE", "/v1/kv/apps" + q)
        check(st == 409 and b"busy" in body, (q, st, body))
    st, doc = post("/v3/kv/range", {"key": b64("/apps/web/port"), "serializable": True})
    check(doc["count"] == "1", doc)


def test_unsupported_is_501():
    cases = [
        ("/v3/kv/range", {"key": b64("/a"), "range_end": b64("/c")}),
        ("/v3/kv/range", {"key": b64("/a"), "revision": "3"}),
        ("/v3/kv/range", {"key": b64("/a"), "sort_order": "DESCEND"}),
        ("/v3/kv/txn", {"success": [{"request_put": {"key": b64("/a"), "lease": "7"}}]}),
        ("/v3/kv/put", {"key": b64("/a"), "value": b64("x"), "prev_kv": True}),
        ("/v3/kv/txn", {"compare": [{"key": b64("/a"), "version": "1"},
                                    {"key": b64("/b"), "version": "1"}]}),
        ("/v3/kv/txn", {"success": [{"request_put": {"key": b64("/a")}},
                                    {"request_put": {"key": b64("/a")}}]}),
        ("/v3/kv/txn", {"success": [{"request_txn": {}}]}),
    ]
    for path, body in cases:
        st, doc = post(path, body)
        check(st == 501 and doc["code"] == 12, (path, body, st, doc))
    # defaults of unsupported fields are fine
    st, doc = post("/v3/kv/range", {"key": b64("/a"), "revision": "0", "sort_order": "NONE",
                                    "sort_target": "KEY", "min_mod_revision": 0})
    check(st == 200, (st, doc))


def start_gateway(cluster):
    global G
    G = Gateway(cluster, GWPORT).start()
    G.wait_ready()
    return G


def main():
    global C
    C = harness.Cluster(3, base_port=BASE, prefixes=("/", "/apps"))
    run_tests(C, start_gateway,
              [test_fixtures_shape, test_put_range_values, test_prefix_order_and_limit,
               test_non_path_keys, test_keys_up_to_4096_bytes_and_names_up_to_255,
               test_txn_cas_mod_revision, test_txn_increments_are_atomic,
               test_two_shards, test_unsupported_is_501])


if __name__ == "__main__":
    main()
