#!/usr/bin/env python3
"""test_badinput.py: what a client sends must not crash confman-api: oversized
bodies (413 without reading them), malformed JSON and base64, bad paths,
unknown endpoints and methods, huge headers, garbage bytes. After all of it
the gateway must still answer, and (ASan build) report nothing.
Node ports 21140-21142, gateway 21192 (with --max-body 65536)."""
import json
import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_cases import b64  # noqa: E402
from gwlib import Gateway, check, harness, post_json, raw, request, run_tests  # noqa: E402

BASE = int(os.environ.get("CONFMAN_API_PORT", "21140"))
GWPORT = int(os.environ.get("CONFMAN_API_GW_PORT", "21192"))
MAXBODY = 65536
C = None
G = None


def status_of(resp):
    line = resp.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def alive():
    check(G.alive(), "gateway died:\n" + G.log())
    st, _, _ = request(GWPORT, "GET", "/healthz")
    check(st == 200, "healthz %d" % st)


def test_413_without_reading_body():
    for method, path in (("PUT", "/v1/kv/big"), ("POST", "/v3/kv/put")):
        s = socket.create_connection(("127.0.0.1", GWPORT), 2)
        s.settimeout(3)
        try:
            # Headers only: a gateway that waited for the 1 GB body would time out here.
            s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
                       % (method, path)).encode())
            t0 = time.time()
            resp = s.recv(4096)
            check(status_of(resp) == 413, "%s %s: %r" % (method, path, resp[:80]))
            check(time.time() - t0 < 2, "413 came late")
        finally:
            s.close()
    # Expect: 100-continue: refused before the client sends anything
    resp = raw(GWPORT, b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n"
               b"Expect: 100-continue\r\n\r\n", shut=False, timeout=2)
    check(status_of(resp) == 413 and b"100 Continue" not in resp, resp[:100])
    # Just over the limit, really sent
    st, _, b = request(GWPORT, "PUT", "/v1/kv/big", body=b"x" * (MAXBODY + 1))
    check(st == 413, (st, b))
    st, _, b = request(GWPORT, "PUT", "/v1/kv/big", body=b"x" * MAXBODY)
    check(st in (200, 201), "a body of exactly --max-body is fine: %d %r" % (st, b))
    # A body where none is taken
    st, _, b = request(GWPORT, "GET", "/v1/kv/big", body=b"x")
    check(st == 413, (st, b))
    alive()


def test_chunked_over_limit():
    chunk = b"%x\r\n%s\r\n" % (8192, b"y" * 8192)
    data = (b"PUT /v1/kv/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 12 + b"0\r\n\r\n")
    resp = raw(GWPORT, data, shut=False)
    check(status_of(resp) == 413, resp[:100])
    data = (b"PUT /v1/kv/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + chunk * 2 + b"0\r\n\r\n")
    resp = raw(GWPORT, data, shut=False)
    check(status_of(resp) == 201, "a small chunked body is fine: %r" % resp[:100])
    # Far over: dropped up to 4 x --max-body, then the connection is closed
    s = socket.create_connection(("127.0.0.1", GWPORT), 2)
    s.settimeout(3)
    closed = False
    try:
        s.sendall(b"PUT /v1/kv/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4000):
            s.sendall(chunk)
        closed = s.recv(100) == b""
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    finally:
        s.close()
    check(closed, "32 MB of chunks into a 64 KiB limit: the connection stays open")
    alive()


def test_malformed_json():
    bodies = ["", "{", "[]", "null", "12", '"s"', '{"key": 5}', '{"key": "L2E=", "key": "L2I="}',
              '{"key": "L2E=", "nope": 1}', '{"key": "L2E=", "limit": "x"}',
              '{"key": "L2E=", "limit": -1}', '{"key": "L2E=", "limit": 1e400}',
              '{"key": "L2E=", "serializable": "yes"}', "[" * 60000, '{"a":' * 12000,
              '{"key": "\\ud800"}', '{"key": "L2E=", "limit": 99999999999999999999999}']
    for path in ("/v3/kv/put", "/v3/kv/range", "/v3/kv/deleterange", "/v3/kv/txn"):
        for b in bodies:
            st, doc = post_json(GWPORT, path, b)
            check(st == 400 and isinstance(doc, dict) and doc.get("code") == 3,
                  "%s %r: %d %r" % (path, b[:40], st, doc))
    st, _, b = request(GWPORT, "POST", "/v3/kv/range", body=b'{"key": "\xff\xfe"}')
    check(st == 400, (st, b))
    txns = [{"compare": "x"}, {"compare": [1]}, {"success": [{}]},
            {"success": [{"request_put": {"key": b64("/a")}, "request_range": {"key": b64("/a")}}]},
            {"compare": [{"key": b64("/a"), "target": "BOGUS"}]},
            {"compare": [{"key": b64("/a"), "result": 9}]},
            {"compare": [{"key": b64("/a")}] * 17},
            {"success": [{"request_range": {"key": b64("/a")}}] * 17}]
    for t in txns:
        st, doc = post_json(GWPORT, "/v3/kv/txn", t)
        check(st == 400, (t, st, doc))
    alive()


def test_malformed_base64():
    for k in ("!!!", "L2E==", "L2E=L2E=", "L", "L2Fh=", "====", "L2E\n", "L2F="):
        st, doc = post_json(GWPORT, "/v3/kv/put", {"key": k, "value": b64("x")})
        check(st == 400 and doc["code"] == 3, (k, st, doc))
    st, doc = post_json(GWPORT, "/v3/kv/put", {"key": b64("/ok"), "value": "%%%"})
    check(st == 400, (st, doc))
    alive()


def test_bad_paths():
    for p in ("/v1/kv//a", "/v1/kv/a/", "/v1/kv/a/../b", "/v1/kv/a/./b", "/v1/kv/%2e%2e",
              "/v1/kv/a%00b", "/v1/kv/" + "x" * 256, "/v1/kv/" + "a/" * 2048 + "a",
              "/v1/watch//x"):
        st, _, b = request(GWPORT, "GET", p)
        check(st == 400 and json.loads(b)["code"] == 3, (p[:60], st, b[:80]))
    for q in ("/v1/kv/a?bogus", "/v1/kv/a?consistency=maybe", "/v1/kv/a?list=2",
              "/v1/watch/a?from=-1", "/v1/watch/a?from=99999999999999999999999"):
        st, _, b = request(GWPORT, "GET", q)
        check(st == 400, (q, st, b))
    for h in ({"If-Match": "abc"}, {"If-Match": '"1'}, {"If-None-Match": "3"},
              {"X-Confman-Token": "12"}, {"X-Confman-Token": "a:b"}, {"X-Confman-Token": ":"}):
        st, _, b = request(GWPORT, "PUT", "/v1/kv/hdr", body=b"x", headers=h)
        check(st == 400, (h, st, b))
    alive()


def test_unknown_endpoints_and_methods():
    for p in ("/", "/v1", "/v1/kvx", "/v2/keys/a", "/v3/kv/compact", "/v3/watch", "/metrics",
              "/healthz/x", "/v3/kv/put/"):
        st, _, b = request(GWPORT, "GET", p)
        check(st == 404 and json.loads(b)["code"] == 5, (p, st, b))
    for m, p, allow in (("POST", "/v1/kv/a", "GET, HEAD, PUT, DELETE"), ("GET", "/v3/kv/put", "POST"),
                        ("DELETE", "/v1/watch/a", "GET"), ("PATCH", "/v1/kv/a", None),
                        ("BREW", "/healthz", "GET, HEAD")):
        st, h, b = request(GWPORT, m, p)
        check(st == 405, (m, p, st, b))
        if allow:
            check(h.get("allow") == allow, (m, p, h))
    alive()


def test_huge_headers_and_urls():
    resp = raw(GWPORT, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    check(status_of(resp) in (431, None) or resp == b"", resp[:80])
    check(status_of(resp) == 431, "expected 431, got %r" % resp[:80])
    resp = raw(GWPORT, b"GET /v1/kv/" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(status_of(resp) in (414, 431), resp[:80])
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    resp = raw(GWPORT, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    check(status_of(resp) == 431, resp[:80])
    alive()


def test_garbage_and_broken_http():
    rnd = random.Random(6)
    for _ in range(60):
        raw(GWPORT, bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 3000))), timeout=1)
    for data in (b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\r\n\r\n\r\n",
                 b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                 b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                 b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                 b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"fffffffffffffffffff\r\n",
                 b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
                 b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"ke",
                 b"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n"):
        raw(GWPORT, data, timeout=1)
    # Connections that open and vanish mid-request, while others work
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", GWPORT), 2)
        s.sendall(b"PUT /v1/kv/vanish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        s.close()
    # Requests in flight to Confman when their client goes away
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", GWPORT), 2)
        s.sendall(b"PUT /v1/kv/gone HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
        s.close()
    time.sleep(0.5)
    alive()
    st, _, b = request(GWPORT, "PUT", "/v1/kv/after", body=b"ok")
    check(st == 201, (st, b))


def start_gateway(cluster):
    global G
    G = Gateway(cluster, GWPORT, ["--max-body", str(MAXBODY)]).start()
    return G


def main():
    global C
    C = harness.Cluster(3, base_port=BASE)
    run_tests(C, start_gateway,
              [test_413_without_reading_body, test_chunked_over_limit, test_malformed_json,
               test_malformed_base64, test_bad_paths, test_unknown_endpoints_and_methods,
               test_huge_headers_and_urls, test_garbage_and_broken_http])


if __name__ == "__main__":
    main()
