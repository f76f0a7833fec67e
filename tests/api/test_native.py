#!/usr/bin/env python3
"""test_native.py: confman-api's native API (/v1/kv, /v1/watch, /healthz, /readyz)
against a real 3-node cluster. Node ports 21100-21102, gateway 21190."""
import http.client
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwlib import Gateway, check, harness, request, run_tests  # noqa: E402

BASE = int(os.environ.get("CONFMAN_API_PORT", "21100"))
GWPORT = int(os.environ.get("CONFMAN_API_GW_PORT", "21190"))
C = None
G = None


def req(method, path, body=None, headers=None):
    return request(GWPORT, method, path, body, headers)


def test_put_get_head():
    st, h, b = req("PUT", "/v1/kv/n/a", b"hello")
    check(st == 201, "create: %d %r" % (st, b))
    doc = json.loads(b)
    check(doc["version"] == 1 and doc["type"] == "file" and doc["size"] == 5, doc)
    check(h["x-confman-version"] == "1" and h["etag"] == '"1"', h)
    g, i = h["x-confman-token"].split(":")
    check(int(g) >= 1 and int(i) >= doc["mod_index"], h)
    st, h, b = req("GET", "/v1/kv/n/a")
    check(st == 200 and b == b"hello", (st, b))
    check(h["content-type"] == "application/octet-stream", h)
    check(h["x-confman-version"] == "1" and int(h["x-confman-mod-index"]) == doc["mod_index"], h)
    st, _, b = req("PUT", "/v1/kv/n/a", b"again")
    check(st == 200 and json.loads(b)["version"] == 2, (st, b))
    st, h, b = req("HEAD", "/v1/kv/n/a")
    check(st == 200 and b == b"" and h["x-confman-version"] == "2", (st, h, b))
    st, _, b = req("GET", "/v1/kv/n/a?consistency=linearizable")
    check(st == 200 and b == b"again", (st, b))
    st, _, b = req("PUT", "/v1/kv/n/empty", b"")
    check(st == 201, (st, b))
    st, _, b = req("GET", "/v1/kv/n/empty")
    check(st == 200 and b == b"", (st, b))


def test_binary_value():
    value = bytes(range(256)) * 64
    st, _, b = req("PUT", "/v1/kv/n/bin", value)
    check(st == 201, (st, b))
    st, _, b = req("GET", "/v1/kv/n/bin")
    check(st == 200 and b == value, "binary value changed")


def test_cas_if_match():
    req("PUT", "/v1/kv/n/cas", b"1")
    st, _, b = req("PUT", "/v1/kv/n/cas", b"2", {"If-Match": "5"})
    check(st == 412 and json.loads(b)["code"] == 9, (st, b))
    st, h, b = req("PUT", "/v1/kv/n/cas", b"2", {"If-Match": '"1"'})
    check(st == 200 and h["x-confman-version"] == "2", (st, b))
    st, _, b = req("PUT", "/v1/kv/n/cas", b"3", {"If-None-Match": "*"})
    check(st == 412, (st, b))
    st, _, b = req("PUT", "/v1/kv/n/cas-new", b"x", {"If-None-Match": "*"})
    check(st == 201, (st, b))
    st, _, b = req("PUT", "/v1/kv/n/cas-0", b"x", {"If-Match": "0"})
    check(st == 201, "If-Match: 0 means must not exist: %d %r" % (st, b))
    st, _, b = req("DELETE", "/v1/kv/n/cas", headers={"If-Match": "1"})
    check(st == 412, (st, b))
    st, _, b = req("DELETE", "/v1/kv/n/cas", headers={"If-Match": "2"})
    check(st == 200 and json.loads(b)["deleted"] is True, (st, b))


def test_list_and_dirs():
    for k in ("b", "a", "c"):
        req("PUT", "/v1/kv/l/" + k, k.encode())
    _, h, _ = req("PUT", "/v1/kv/l/sub/x", b"x")
    tok = {"X-Confman-Token": h["x-confman-token"]}  # read-your-writes across connections
    st, h, b = req("GET", "/v1/kv/l?list", headers=tok)
    check(st == 200 and "x-confman-token" in h, (st, b))
    doc = json.loads(b)
    names = [(c["name"], c["type"]) for c in doc["children"]]
    check(names == [("a", "file"), ("b", "file"), ("c", "file"), ("sub", "dir")], names)
    st, _, b = req("GET", "/v1/kv/?list", headers=tok)
    check(st == 200 and "l" in [c["name"] for c in json.loads(b)["children"]], b)
    st, _, b = req("GET", "/v1/kv/l")
    check(st == 409, "GET of a directory: %d %r" % (st, b))
    st, _, b = req("GET", "/v1/kv/l/a?list")
    check(st == 409, "list of a file: %d %r" % (st, b))
    st, _, b = req("GET", "/v1/kv/l/missing")
    check(st == 404 and json.loads(b)["code"] == 5, (st, b))
    st, _, b = req("PUT", "/v1/kv/l/made?dir", b"")
    check(st in (200, 201) and json.loads(b)["type"] == "dir", (st, b))
    st, _, b = req("DELETE", "/v1/kv/l/sub")
    check(st == 409, "delete of a directory without ?dir: %d" % st)
    st, _, b = req("DELETE", "/v1/kv/l/sub?dir")
    check(st == 409, "rmdir of a non-empty directory: %d" % st)
    st, _, b = req("DELETE", "/v1/kv/l/made?dir")
    check(st == 200, (st, b))
    st, h, b = req("DELETE", "/v1/kv/l?recursive")
    check(st == 200, (st, b))
    # Another connection may land on another gateway thread (its own client
    # and token memory): read-your-writes across connections takes the token
    # back, as api/README.md says (without it a lagging follower may answer).
    st, _, b = req("GET", "/v1/kv/l/a", headers={"X-Confman-Token": h["x-confman-token"]})
    check(st == 404, "recursive delete left /l/a: %d" % st)
    st, _, b = req("DELETE", "/v1/kv/l/a")
    check(st == 404, (st, b))


def test_token_read_your_writes():
    st, h, _ = req("PUT", "/v1/kv/t/k", b"v1")
    tok = h["x-confman-token"]
    st, h2, b = req("GET", "/v1/kv/t/k", headers={"X-Confman-Token": tok})
    check(st == 200 and b == b"v1", (st, b))
    # A token far ahead of anything this gateway saw: the read goes linearizable.
    g = tok.split(":")[0]
    st, _, b = req("GET", "/v1/kv/t/k", headers={"X-Confman-Token": g + ":99999999"})
    check(st == 200 and b == b"v1", (st, b))
    st, _, b = req("GET", "/v1/kv/t/k?list", headers={"X-Confman-Token": tok})
    check(st == 409, (st, b))
    # Through a second gateway (its own client, no tokens seen): still the write.
    g2 = Gateway(C, GWPORT + 5, ["--threads", "2"]).start()
    try:
        for n in range(20):
            st, h, _ = req("PUT", "/v1/kv/t/k", b"w%d" % n)
            st, _, b = request(GWPORT + 5, "GET", "/v1/kv/t/k",
                               headers={"X-Confman-Token": h["x-confman-token"]})
            check(st == 200 and b == b"w%d" % n, "read-your-writes broken: %d %r" % (st, b))
    finally:
        g2.stop()


def read_events(resp, n, timeout=10):
    """Parse n SSE events (dicts with id, event, data) from a streaming response."""
    events, cur = [], {}
    end = time.time() + timeout
    while len(events) < n and time.time() < end:
        line = resp.fp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line == "":
            if "event" in cur:
                events.append(cur)
            cur = {}
        elif line.startswith(":"):
            continue
        else:
            k, _, v = line.partition(": ")
            cur[k] = v
    return events


def open_watch(path):
    c = http.client.HTTPConnection("127.0.0.1", GWPORT, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return c, r


def test_watch_sse():
    c, r = open_watch("/v1/watch/w")
    try:
        check(r.status == 200 and r.getheader("Content-Type") == "text/event-stream", r.status)
        time.sleep(0.3)
        req("PUT", "/v1/kv/w/a", b"1")
        req("PUT", "/v1/kv/other", b"x")  # not under /w
        req("DELETE", "/v1/kv/w/a")
        ev = read_events(r, 2)
        check([e["event"] for e in ev] == ["put", "delete"], ev)
        d = json.loads(ev[0]["data"])
        check(d["path"] == "/w/a" and d["kind"] == "put" and d["version"] == 1, d)
        check(int(ev[0]["id"]) == d["index"] and int(ev[1]["id"]) > d["index"], ev)
        first = d["index"]
    finally:
        c.close()
    # From an index: the same history again.
    c, r = open_watch("/v1/watch/w?from=%d" % first)
    try:
        ev = read_events(r, 2)
        check([e["event"] for e in ev] == ["put", "delete"], "replay from %d: %r" % (first, ev))
    finally:
        c.close()


def test_watch_sse_sees_nested_shard():
    """GET /v1/watch/ reports a change under a shard nested below the path
    (issue 11, item 1), with that shard's group in the data."""
    C.ctl("shard", "add", "/nest", "--replicas", "1,2,3", check=True)
    c, r = open_watch("/v1/watch/")
    try:
        time.sleep(1.0)  # subscribed, the map fetched
        req("PUT", "/v1/kv/nest/k", b"1")
        req("PUT", "/v1/kv/top-k", b"1")
        # A shard the gateway's map did not have yet is streamed from its
        # first index: its own top directory's mkdir may come first.
        groups = {}
        end = time.time() + 10
        while not {"/nest/k", "/top-k"} <= set(groups) and time.time() < end:
            for e in read_events(r, 1):
                d = json.loads(e["data"])
                groups[d["path"]] = d["group"]
        check({"/nest/k", "/top-k"} <= set(groups), groups)
        check(groups["/nest/k"] != groups["/top-k"], groups)
    finally:
        c.close()


def test_watch_clients_leave():
    # Many watchers that come and go, some mid-stream: the gateway forgets them.
    for n in range(40):
        c, r = open_watch("/v1/watch/churn")
        if n % 2:
            req("PUT", "/v1/kv/churn/k", b"%d" % n)
            read_events(r, 1, timeout=5)
        c.close()
    st, _, _ = req("GET", "/healthz")
    check(st == 200, st)
    st, _, b = req("GET", "/v1/watch/w?from=x")
    check(st == 400, (st, b))


def test_departed_watchers_free_their_slots_at_once():
    """1,100 watchers come and go on one gateway thread within seconds: a
    client that left must not hold its watch slot (1,024 per thread) until
    the next 15 s keepalive. Every one of them must get its stream."""
    g = Gateway(C, GWPORT + 8, ["--threads", "1"]).start()
    refused = []
    start = time.time()
    try:
        for n in range(1100):
            c = http.client.HTTPConnection("127.0.0.1", GWPORT + 8, timeout=10)
            c.request("GET", "/v1/watch/leave/%d" % n)
            r = c.getresponse()
            if r.status != 200:
                refused.append((n, r.status, r.read()[:80]))
            c.close()
    finally:
        g.stop()
    print("  1100 watchers came and went in %.1f s: %d refused"
          % (time.time() - start, len(refused)))
    check(not refused, refused[:3])


def test_sigterm_with_streams_and_requests_in_flight():
    g3 = Gateway(C, GWPORT + 6, ["--threads", "2"]).start()
    conns = []
    try:
        for n in range(4):
            c = http.client.HTTPConnection("127.0.0.1", GWPORT + 6, timeout=10)
            c.request("GET", "/v1/watch/sig%d" % n)
            conns.append((c, c.getresponse()))
        # writes in flight while it stops (their answers may be 503 or never come)
        ts = [threading.Thread(target=lambda: _quiet(lambda: request(
            GWPORT + 6, "PUT", "/v1/kv/sig/x", b"v", timeout=5))) for _ in range(8)]
        for t in ts:
            t.start()
        g3.stop()  # fails on a hang, a non-zero exit or a sanitizer report
        for t in ts:
            t.join(10)
        for c, r in conns:
            try:
                rest = r.read()  # the stream ends, with a last event
            except http.client.IncompleteRead as e:
                rest = e.partial
            check(b"shutting down" in rest, rest[-200:])
    finally:
        for c, _ in conns:
            c.close()
        if g3.alive():
            g3.stop()


def _quiet(f):
    try:
        f()
    except Exception:
        pass


def test_healthz_readyz():
    st, h, b = req("GET", "/healthz")
    check(st == 200 and b == b"ok\n", (st, b))
    G.wait_ready()
    C.kill(1)
    C.kill(2)
    time.sleep(2.5)
    st, _, b = req("GET", "/readyz")
    check(st == 200, "one replica of the only shard is up: ready, got %d %r" % (st, b))
    C.kill(3)
    end = time.time() + 10
    while time.time() < end and req("GET", "/readyz")[0] == 200:
        time.sleep(0.2)
    st, _, b = req("GET", "/readyz")
    check(st == 503 and len(b) > 1, "no replica reachable: not ready, got %d %r" % (st, b))
    check(req("GET", "/healthz")[0] == 200, "healthz follows the process, not the cluster")
    # Nothing to serve: a clean 503/504, not a hang or a crash.
    st, _, b = req("GET", "/v1/kv/n/a")
    check(st in (503, 504), (st, b))
    for i in (1, 2, 3):
        C.start(i)
    G.wait_ready(20)


def long_path(n, c="y"):
    """'/yyy...' of exactly n bytes: a '/' every 200, so only the length decides."""
    return "".join("/" if k % 200 == 0 else c for k in range(n))


def pct(path):
    """Every byte but '/' percent-encoded: the longest URL a path can need."""
    return "".join(ch if ch == "/" else "%%%02X" % ord(ch) for ch in path)


def test_paths_up_to_4096_bytes_and_names_up_to_255():
    """PATH_MAX (4096) and NAME_MAX (255), literally, also when every byte
    of the path is percent-encoded (a 12 KiB request line); one byte more
    is 400 "path too long"."""
    for n in (4095, 4096):
        p = long_path(n, "ab"[n % 2])
        st, _, b = req("PUT", "/v1/kv" + p, b"v%d" % n)
        check(st == 201, "PUT %d bytes: %d %r" % (n, st, b[:200]))
        st, _, b = req("GET", "/v1/kv" + pct(p) + "?consistency=linearizable")
        check(st == 200 and b == b"v%d" % n, "GET %d bytes, encoded: %d %r" % (n, st, b[:200]))
        parent = p[:p.rindex("/")]
        st, _, b = req("GET", "/v1/kv" + pct(parent) + "?list")
        check(st == 200 and json.loads(b)["children"][0]["name"] == p[p.rindex("/") + 1:],
              (st, b[:200]))
    p = long_path(4096, "d")
    st, _, b = req("PUT", "/v1/kv" + pct(p) + "?dir", b"")
    check(st == 201, "mkdir 4096 bytes: %d %r" % (st, b[:200]))
    st, _, b = req("DELETE", "/v1/kv" + pct(p) + "?dir")
    check(st == 200, "rmdir 4096 bytes: %d %r" % (st, b[:200]))
    too = long_path(4097)
    for method, url in (("PUT", "/v1/kv" + too), ("GET", "/v1/kv" + too),
                        ("GET", "/v1/kv" + pct(too)), ("DELETE", "/v1/kv" + too),
                        ("GET", "/v1/watch" + too)):
        st, _, b = req(method, url, b"x" if method == "PUT" else None)
        check(st == 400 and b"path too long" in b, "%s %d-byte url: %d %r"
              % (method, len(url), st, b[:200]))
    name = "/n" + "n" * 254
    st, _, b = req("PUT", "/v1/kv" + name, b"255")
    check(st == 201, (st, b))
    st, _, b = req("PUT", "/v1/kv" + name + "n", b"256")
    check(st == 400 and b"path too long" in b, (st, b))


def test_watch_of_a_4096_byte_prefix():
    p = long_path(4096, "w")
    c, r = open_watch("/v1/watch" + pct(p))
    try:
        check(r.status == 200, r.status)
        time.sleep(0.3)
        st, _, b = req("PUT", "/v1/kv" + p, b"w")
        check(st == 201, (st, b[:200]))
        # An event this long spans several HTTP chunks: read de-chunked
        # (read_events reads the raw socket, fine for short events only).
        buf, end = b"", time.time() + 10
        while not re.search(rb"\ndata: [^\n]*\n\n", buf) and time.time() < end:
            buf += r.read1(65536)
        data = [ln for ln in buf.decode().split("\n") if ln.startswith("data: ")]
        check(len(data) == 1 and json.loads(data[0][6:])["path"] == p,
              "event of a 4096-byte path: %r" % (buf[:100],))
    finally:
        c.close()


def start_gateway(cluster):
    global G
    G = Gateway(cluster, GWPORT).start()
    harness.run.__globals__["sys"] = sys
    return G


def main():
    global C
    C = harness.Cluster(3, base_port=BASE)
    run_tests(C, start_gateway,
              [test_put_get_head, test_binary_value, test_cas_if_match, test_list_and_dirs,
               test_token_read_your_writes, test_watch_sse, test_watch_sse_sees_nested_shard,
               test_watch_clients_leave, test_departed_watchers_free_their_slots_at_once,
               test_paths_up_to_4096_bytes_and_names_up_to_255, test_watch_of_a_4096_byte_prefix,
               test_sigterm_with_streams_and_requests_in_flight, test_healthz_readyz],
              show_traceback=True)


if __name__ == "__main__":
    threading.stack_size(1 << 20)
    main()
