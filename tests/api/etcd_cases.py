"""etcd_cases.py: the etcd v3 JSON requests whose answers are recorded as fixtures.

record_etcd_fixtures.py sends them, in order, to a throwaway etcd and stores
each answer in fixtures/etcd-v3.json; test_etcd_compat.py sends the same
requests, in the same order, to confman-api and compares the SHAPE of each
answer with etcd's (status code, fields present, JSON types), never the
revision numbers. Every request starts from an empty store, so the sequence
means the same on both sides. Keys are absolute paths: that is what
confman-api accepts (see api/README in the gateway's header).
"""
import base64


def b64(s):
    return base64.b64encode(s.encode()).decode()


def prefix_end(s):
    """etcd's range_end for "every key starting with s" (clientv3.GetPrefixRangeEnd)."""
    b = bytearray(s.encode())
    while b and b[-1] == 0xFF:
        b.pop()
    b[-1] += 1
    return base64.b64encode(bytes(b)).decode()


# (name, endpoint, JSON body). Bodies are dicts, sent with json.dumps.
CASES = [
    ("range-missing", "/v3/kv/range", {"key": b64("/fx/a")}),
    ("put-new", "/v3/kv/put", {"key": b64("/fx/a"), "value": b64("one")}),
    ("range-one", "/v3/kv/range", {"key": b64("/fx/a")}),
    ("range-serializable", "/v3/kv/range", {"key": b64("/fx/a"), "serializable": True}),
    ("put-again", "/v3/kv/put", {"key": b64("/fx/a"), "value": b64("two")}),
    ("put-b", "/v3/kv/put", {"key": b64("/fx/b"), "value": b64("bee")}),
    ("put-deep", "/v3/kv/put", {"key": b64("/fx/d/e"), "value": b64("deep")}),
    ("range-prefix", "/v3/kv/range", {"key": b64("/fx/"), "range_end": prefix_end("/fx/")}),
    ("range-prefix-limit", "/v3/kv/range",
     {"key": b64("/fx/"), "range_end": prefix_end("/fx/"), "limit": 1}),
    ("range-prefix-keys-only", "/v3/kv/range",
     {"key": b64("/fx/"), "range_end": prefix_end("/fx/"), "keys_only": True}),
    ("range-prefix-count-only", "/v3/kv/range",
     {"key": b64("/fx/"), "range_end": prefix_end("/fx/"), "count_only": True}),
    ("range-prefix-empty", "/v3/kv/range", {"key": b64("/none/"), "range_end": prefix_end("/none/")}),
    ("txn-version-eq-success", "/v3/kv/txn", {
        "compare": [{"key": b64("/fx/a"), "result": "EQUAL", "target": "VERSION", "version": "2"}],
        "success": [{"request_put": {"key": b64("/fx/a"), "value": b64("three")}}],
        "failure": [{"request_range": {"key": b64("/fx/a")}}]}),
    ("txn-version-eq-failure", "/v3/kv/txn", {
        "compare": [{"key": b64("/fx/a"), "result": "EQUAL", "target": "VERSION", "version": "2"}],
        "success": [{"request_put": {"key": b64("/fx/a"), "value": b64("four")}}],
        "failure": [{"request_range": {"key": b64("/fx/a")}}]}),
    ("txn-create-if-absent", "/v3/kv/txn", {
        "compare": [{"key": b64("/fx/new"), "result": "EQUAL", "target": "VERSION", "version": "0"}],
        "success": [{"request_put": {"key": b64("/fx/new"), "value": b64("n")}}]}),
    ("txn-mod-greater", "/v3/kv/txn", {
        "compare": [{"key": b64("/fx/new"), "result": "GREATER", "target": "MOD", "mod_revision": "0"}],
        "success": [{"request_range": {"key": b64("/fx/new")}}]}),
    ("txn-delete", "/v3/kv/txn", {
        "compare": [{"key": b64("/fx/new"), "target": "VERSION", "result": "NOT_EQUAL", "version": "0"}],
        "success": [{"request_delete_range": {"key": b64("/fx/new")}}]}),
    ("deleterange-one", "/v3/kv/deleterange", {"key": b64("/fx/b")}),
    ("deleterange-missing", "/v3/kv/deleterange", {"key": b64("/fx/b")}),
    ("deleterange-prev-kv", "/v3/kv/deleterange", {"key": b64("/fx/a"), "prev_kv": True}),
    ("deleterange-prefix", "/v3/kv/deleterange", {"key": b64("/fx/"), "range_end": prefix_end("/fx/")}),
    ("bad-json", "/v3/kv/put", "{not json"),
    ("bad-base64", "/v3/kv/put", {"key": "!!!", "value": b64("x")}),
    ("put-no-key", "/v3/kv/put", {"value": b64("x")}),
    # Leases and locks (api/README.md "Leases and locks"). Ids are chosen
    # here (7000 = 0x1b58), so both sides answer with the same ones and the
    # lock key is NAME/1b58 on both; 9999 is never granted. The 2 s lease
    # comes after the list, which it could leave under load.
    ("lease-grant", "/v3/lease/grant", {"TTL": 60, "ID": 7000}),
    ("lease-grant-exists", "/v3/lease/grant", {"TTL": 60, "ID": "7000"}),
    ("lease-grant-too-large", "/v3/lease/grant", {"TTL": 99999999999}),
    ("put-lease", "/v3/kv/put", {"key": b64("/fx/l1"), "value": b64("x"), "lease": "7000"}),
    ("put-lease-unknown", "/v3/kv/put", {"key": b64("/fx/l2"), "value": b64("x"), "lease": 9999}),
    ("lease-ttl-keys", "/v3/lease/timetolive", {"ID": 7000, "keys": True}),
    ("lease-ttl", "/v3/lease/timetolive", {"ID": "7000"}),
    ("lease-ttl-unknown", "/v3/lease/timetolive", {"ID": 9999}),
    ("lease-keepalive", "/v3/lease/keepalive", {"ID": 7000}),
    ("lease-keepalive-unknown", "/v3/lease/keepalive", {"ID": 9999}),
    ("lease-leases", "/v3/lease/leases", {}),
    ("lease-grant-random-min-ttl", "/v3/lease/grant", {"TTL": "1"}),
    ("lock", "/v3/lock/lock", {"name": b64("/fx/lock"), "lease": 7000}),
    ("lock-unknown-lease", "/v3/lock/lock", {"name": b64("/fx/lock2"), "lease": 9999}),
    ("unlock", "/v3/lock/unlock", {"key": b64("/fx/lock/1b58")}),
    ("unlock-again", "/v3/lock/unlock", {"key": b64("/fx/lock/1b58")}),
    ("lease-revoke", "/v3/lease/revoke", {"ID": 7000}),
    ("range-after-revoke", "/v3/kv/range", {"key": b64("/fx/l1")}),
    ("lease-revoke-unknown", "/v3/kv/lease/revoke", {"ID": 7000}),
    ("lease-ttl-revoked", "/v3/kv/lease/timetolive", {"ID": 7000}),
]
