#!/usr/bin/env python3
"""test_etcd_lease.py: confman-api's etcd lease and lock endpoints against a
3-node cluster with shards "/" and "/apps": keys attached in both shards,
timetolive listing them, revoke deleting them, keepalive renewing the part of
a lease in the second shard (through another gateway than the one that put
the key), locks excluding each other in FIFO order, and bad input. The shapes
are compared with etcd's by test_etcd.py (fixtures/etcd-v3.json). Node ports
14500-14502 (admin 15500-15502), or the first free triple of 14510, 14520 ...
14580; gateways 14590 and 14594, or the next free port of each four."""
import base64
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_cases import b64  # noqa: E402
from gwlib import Gateway, check, harness, post_json, request, run_tests  # noqa: E402

BASE = int(os.environ.get("CONFMAN_API_PORT", "14500"))
GWPORT = int(os.environ.get("CONFMAN_API_GW_PORT", "14590"))
C = None
G = None


def post(path, obj, port=None):
    return post_json(port or GWPORT, path, obj)


def grant(ttl, lid=None):
    body = {"TTL": ttl}
    if lid is not None:
        body["ID"] = lid
    st, doc = post("/v3/lease/grant", body)
    check(st == 200 and int(doc["ID"]) > 0, (st, doc))
    return int(doc["ID"])


def exists(path):
    return request(GWPORT, "GET", "/v1/kv" + path)[0] == 200


def wait_gone(path, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if not exists(path):
            return True
        time.sleep(0.1)
    return False


def test_put_ttl_revoke_two_shards():
    lid = grant(30)
    for k in ("/l/a", "/apps/l/b"):
        st, doc = post("/v3/kv/put", {"key": b64(k), "value": b64("v"), "lease": str(lid)})
        check(st == 200, (k, st, doc))
    st, doc = post("/v3/lease/timetolive", {"ID": lid, "keys": True})
    keys = sorted(base64.b64decode(k).decode() for k in doc.get("keys", []))
    check(st == 200 and keys == ["/apps/l/b", "/l/a"], (st, doc))
    check(doc["grantedTTL"] == "30" and 25 <= int(doc["TTL"]) <= 30, doc)
    st, doc = post("/v3/lease/keepalive", {"ID": str(lid)})
    check(st == 200 and doc["result"]["TTL"] == "30" and doc["result"]["ID"] == str(lid), doc)
    st, doc = post("/v3/lease/leases", {})
    check(st == 200 and {"ID": str(lid)} in doc["leases"], doc)
    st, doc = post("/v3/lease/revoke", {"ID": lid})
    check(st == 200 and "header" in doc, (st, doc))
    for k in ("/l/a", "/apps/l/b"):
        check(wait_gone(k, 3), "%s outlived the revoke" % k)
        st, doc = post("/v3/kv/range", {"key": b64(k)})
        check(st == 200 and "kvs" not in doc, doc)
    st, doc = post("/v3/lease/timetolive", {"ID": lid})
    check(st == 200 and doc["TTL"] == "-1", doc)
    st, doc = post("/v3/lease/keepalive", {"ID": lid})
    check(st == 200 and "TTL" not in doc["result"], doc)
    st, doc = post("/v3/lease/revoke", {"ID": lid})
    check(st == 404 and doc["code"] == 5, (st, doc))
    st, doc = post("/v3/kv/put", {"key": b64("/apps/l/c"), "value": b64("v"), "lease": lid})
    check(st == 404 and doc["code"] == 5, "put with a revoked lease: %r" % ((st, doc),))


def test_keepalive_renews_second_shard():
    """A 3 s lease with a key in /apps, kept alive through ANOTHER gateway
    (which never saw the put: nothing is remembered) every second for 6 s:
    the key stays (the keepalive reached the /apps group too). Keepalives
    stopped: it goes within TTL + a few seconds."""
    lid = grant(3)
    st, doc = post("/v3/kv/put", {"key": b64("/apps/eph"), "value": b64("x"), "lease": lid})
    check(st == 200, (st, doc))
    g2 = start_gateway_near(C, GWPORT + 4)
    try:
        end = time.time() + 6
        while time.time() < end:
            st, doc = post("/v3/lease/keepalive", {"ID": lid}, port=g2.port)
            check(st == 200 and doc["result"].get("TTL") == "3", doc)
            time.sleep(1)
    finally:
        g2.stop()
    check(exists("/apps/eph"), "the /apps part of the lease expired despite keepalives")
    t0 = time.time()
    check(wait_gone("/apps/eph", 10), "the key outlived its lease")
    print("   key gone %.1f s after the last keepalive period" % (time.time() - t0 + 1))


def lock(name, lid, out=None, timeout=30):
    st, _, data = request(GWPORT, "POST", "/v3/lock/lock",
                          body=('{"name": "%s", "lease": %d}' % (b64(name), lid)).encode(),
                          timeout=timeout)
    import json
    doc = json.loads(data)
    if out is not None:
        out.append((time.time(), st, doc))
    return st, doc


def test_lock_excludes_and_is_fifo():
    l1, l2, l3 = grant(30), grant(30), grant(30)
    st, doc = lock("/locks/m", l1)
    key1 = base64.b64decode(doc["key"]).decode()
    check(st == 200 and key1 == "/locks/m/%x" % l1, (st, doc))
    got2, got3 = [], []
    t2 = threading.Thread(target=lock, args=("/locks/m", l2, got2))
    t2.start()
    time.sleep(0.5)
    t3 = threading.Thread(target=lock, args=("/locks/m", l3, got3))
    t3.start()
    time.sleep(4)  # past the gateway's --timeout 3000: the waits are sent again
    check(not got2 and not got3, "a second holder while the first holds: %r %r" % (got2, got3))
    t_unlock = time.time()
    st, doc = post("/v3/lock/unlock", {"key": b64(key1)})
    check(st == 200, (st, doc))
    t2.join(10)
    check(got2 and got2[0][1] == 200 and not got3, "FIFO: l2 first: %r %r" % (got2, got3))
    print("   waiter granted %.0f ms after the unlock" % ((got2[0][0] - t_unlock) * 1000))
    st, doc = post("/v3/lock/unlock", {"key": got2[0][2]["key"]})
    check(st == 200, (st, doc))
    t3.join(10)
    check(got3 and got3[0][1] == 200, got3)
    # revoking the holder's lease frees the lock too
    st, doc = post("/v3/lease/revoke", {"ID": l3})
    st, doc = lock("/locks/m", l1, timeout=10)
    check(st == 200, (st, doc))
    post("/v3/lock/unlock", {"key": doc["key"]})
    for lid in (l1, l2):
        post("/v3/lease/revoke", {"ID": lid})


def test_lock_in_second_shard():
    """A lock named in /apps: the lease is granted there first (ensure), and
    the lock excludes there as in the root."""
    l1, l2 = grant(30), grant(30)
    st, doc = lock("/apps/locks/x", l1)
    check(st == 200, (st, doc))
    got = []
    t = threading.Thread(target=lock, args=("/apps/locks/x", l2, got))
    t.start()
    time.sleep(1)
    check(not got, "second holder in /apps: %r" % got)
    post("/v3/lock/unlock", {"key": doc["key"]})
    t.join(10)
    check(got and got[0][1] == 200, got)
    post("/v3/lock/unlock", {"key": got[0][2]["key"]})
    for lid in (l1, l2):
        check(post("/v3/lease/revoke", {"ID": lid})[0] == 200, lid)


def test_waiter_that_leaves_gives_its_place_up():
    """A caller waiting for a lock closes its connection: the gateway notices
    at its next resend (--timeout 3000), and the pair leaves the queue, so a
    later caller gets the lock as soon as the holder lets go."""
    l1, l2, l3 = grant(30), grant(30), grant(30)
    st, doc1 = lock("/locks/w", l1)
    check(st == 200, doc1)
    s = socket.create_connection(("127.0.0.1", GWPORT))
    body = ('{"name": "%s", "lease": %d}' % (b64("/locks/w"), l2)).encode()
    s.sendall(b"POST /v3/lock/lock HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    time.sleep(0.5)
    s.close()
    time.sleep(4)
    got = []
    t = threading.Thread(target=lock, args=("/locks/w", l3, got))
    t.start()
    time.sleep(0.5)
    post("/v3/lock/unlock", {"key": doc1["key"]})
    t.join(10)
    check(got and got[0][1] == 200, got)
    # l2 holds nothing: an unlock of its key is a no-op, and l3 still holds
    st, _ = post("/v3/lock/unlock", {"key": b64("/locks/w/%x" % l2)})
    check(st == 200, st)
    for lid in (l1, l2, l3):
        post("/v3/lease/revoke", {"ID": lid})


def test_lock_wait_is_bounded():
    """A gateway with --lock-wait-ms 1000: a waiter gets 504 code 4 at its
    first resend after 1 s (--timeout 3000), having left the queue, so the
    next caller gets the lock at once when the holder lets go."""
    l1, l2, l3 = grant(30), grant(30), grant(30)
    st, doc1 = lock("/locks/t", l1)
    check(st == 200, doc1)
    g3 = start_gateway_near(C, GWPORT + 4, extra=["--lock-wait-ms", "1000"])
    try:
        t0 = time.time()
        st, doc = post_json(g3.port, "/v3/lock/lock", {"name": b64("/locks/t"), "lease": l2})
        took = time.time() - t0
        check(st == 504 and doc["code"] == 4 and 0.9 < took < 8, (st, doc, took))
        print("   504 after %.1f s" % took)
    finally:
        g3.stop()
    got = []
    t = threading.Thread(target=lock, args=("/locks/t", l3, got))
    t.start()
    time.sleep(0.5)
    post("/v3/lock/unlock", {"key": doc1["key"]})
    t.join(5)
    check(got and got[0][1] == 200, "l2 still queued: %r" % (got,))
    for lid in (l1, l2, l3):
        post("/v3/lease/revoke", {"ID": lid})


def test_lock_wait_past_idle_timeout():
    """CONFMAN_SOAK=1 only: a wait of 70 s, past MHD's 60 s idle timeout
    of a connection, is still answered (a suspended connection is not timed
    out)."""
    if os.environ.get("CONFMAN_SOAK") != "1":
        print("   skipped (CONFMAN_SOAK=1 runs it)")
        return
    l1, l2 = grant(120), grant(120)
    st, doc1 = lock("/locks/long", l1)
    got = []
    t = threading.Thread(target=lock, args=("/locks/long", l2, got, 120))
    t.start()
    for _ in range(7):  # keep both leases alive meanwhile
        time.sleep(10)
        for lid in (l1, l2):
            post("/v3/lease/keepalive", {"ID": lid})
    check(not got, got)
    post("/v3/lock/unlock", {"key": doc1["key"]})
    t.join(10)
    check(got and got[0][1] == 200, got)
    for lid in (l1, l2):
        post("/v3/lease/revoke", {"ID": lid})


def test_bad_input():
    cases = [
        ("/v3/lease/grant", {"TTL": 99999999999}, 400, 11),
        ("/v3/lease/grant", {"TTL": 5, "ID": -3}, 400, 3),
        ("/v3/lease/grant", {"TTL": 5, "bogus": 1}, 400, 3),
        ("/v3/lease/revoke", {}, 404, 5),
        ("/v3/lock/lock", {"name": b64("/locks/z")}, 400, 3),
        ("/v3/lock/lock", {"name": b64("rel/path"), "lease": 5}, 400, 3),
        ("/v3/lock/lock", {"lease": 5}, 400, 3),
        ("/v3/lock/lock", {"name": b64("/locks/z"), "lease": 123456789}, 500, 2),
        ("/v3/lock/unlock", {"key": b64("/locks/z")}, 400, 3),
        ("/v3/lock/unlock", {"key": b64("/locks/z/xyz")}, 400, 3),
        ("/v3/lock/unlock", {"key": b64("/locks/z/8000000000000000")}, 400, 3),
        ("/v3/kv/put", {"key": b64("/l/x"), "lease": -1}, 400, 3),
    ]
    for path, body, want, code in cases:
        st, doc = post(path, body)
        check(st == want and doc["code"] == code, (path, body, st, doc))
    bodies = ["{", "[]", "null", "12", '"s"', '{"ID": 1, "ID": 2}', '{"ID": "x"}',
              '{"ID": 1e400}', '{"ID": 99999999999999999999999}', '{"ID": -1}',
              '{"nope": 1}', "[" * 60000, '{"a":' * 12000, '{"ID": "\\ud800"}']
    for path in ("/v3/lease/grant", "/v3/lease/revoke", "/v3/lease/keepalive",
                 "/v3/lease/timetolive", "/v3/lease/leases", "/v3/lock/lock",
                 "/v3/lock/unlock"):
        for b in bodies:
            st, doc = post(path, b)
            check(st == 400 and isinstance(doc, dict) and doc.get("code") == 3,
                  "%s %r: %d %r" % (path, b[:40], st, doc))
    st, doc = post("/v3/lease/timetolive", {"ID": 0})
    check(st == 200 and doc["TTL"] == "-1", doc)
    st, doc = post("/v3/lease/grant", {"TTL": 0})
    check(st == 200 and doc["TTL"] == "2", "etcd's minimum TTL: %r" % (doc,))
    post("/v3/lease/revoke", {"ID": doc["ID"]})


def start_gateway_near(cluster, port, extra=None):
    """A gateway on port, or on one of the next few ports of the range if a
    connection of another process holds it."""
    for p in range(port, port + 4):
        try:
            g = Gateway(cluster, p, extra=extra).start()
            g.wait_ready()
            return g
        except RuntimeError as e:
            if "Address already in use" not in str(e):
                raise
    raise RuntimeError("no free gateway port from %d" % port)


def start_gateway(cluster):
    global G, GWPORT
    G = start_gateway_near(cluster, GWPORT)
    GWPORT = G.port
    return G


def bindable(port):
    """Whether port can be bound without SO_REUSEADDR, as a node binds it:
    a connection of an earlier run (or its TIME-WAIT, 60 s) may hold one."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_base(base):
    """The first of base, base + 10, ... (up to base + 80) whose node and admin
    ports are all free."""
    for b in range(base, base + 81, 10):
        if all(bindable(b + i) and bindable(b + 1000 + i) for i in range(3)):
            return b
    return base


def cluster_up():
    """A started cluster on the first base whose ports bind: a port free at
    the probe may still be taken by another test's connection before the
    node binds it, so a node failing with EADDRINUSE moves on too."""
    base = BASE
    while True:
        c = harness.Cluster(3, base_port=free_base(base), prefixes=("/", "/apps"))
        try:
            return c.up()
        except RuntimeError as e:
            c.down()
            if "Address already in use" not in str(e) or c.base + 10 > BASE + 80:
                raise
            print("   ports of base %d taken: next" % c.base)
            base = c.base + 10


def main():
    global C
    C = cluster_up()
    run_tests(C, start_gateway,
              [test_put_ttl_revoke_two_shards, test_keepalive_renews_second_shard,
               test_lock_excludes_and_is_fifo, test_lock_in_second_shard,
               test_waiter_that_leaves_gives_its_place_up, test_lock_wait_is_bounded,
               test_lock_wait_past_idle_timeout, test_bad_input],
              show_traceback=True)


if __name__ == "__main__":
    main()
