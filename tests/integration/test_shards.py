#!/usr/bin/env python3
"""Integration: shards by path prefix (meta group registry, routing, boundaries,
WRONGSHARD after `shard add`), and readiness flipping while a group has no leader."""
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, frame, raw_conn, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "17500"))
CM_EWRONGSHARD = -10007


# ---- just enough msgpack for a raw REQ and the head of its RESP ----

def mp_uint(v):
    if v < 128:
        return bytes([v])
    return b"\xcf" + struct.pack(">Q", v)


def mp_str(s):
    b = s.encode()
    return bytes([0xd9, len(b)]) + b


def mp_read(buf, i):
    """One scalar at buf[i]: (value, next index). Enough for the RESP head."""
    b = buf[i]
    if b < 0x80:
        return b, i + 1
    if b >= 0xe0:
        return b - 0x100, i + 1
    if b == 0xcc:
        return buf[i + 1], i + 2
    if b == 0xcd:
        return struct.unpack(">H", buf[i + 1:i + 3])[0], i + 3
    if b == 0xce:
        return struct.unpack(">I", buf[i + 1:i + 5])[0], i + 5
    if b == 0xcf:
        return struct.unpack(">Q", buf[i + 1:i + 9])[0], i + 9
    if b == 0xd0:
        return struct.unpack(">b", buf[i + 1:i + 2])[0], i + 2
    if b == 0xd1:
        return struct.unpack(">h", buf[i + 1:i + 3])[0], i + 3
    if b == 0xd2:
        return struct.unpack(">i", buf[i + 1:i + 5])[0], i + 5
    raise ValueError("unexpected msgpack byte %#x" % b)


def raw_request(port, group, op, path):
    """Send one REQ naming `group`; return (err, token) of the reply."""
    s = raw_conn(port)
    s.sendall(frame(bytes([0x94, 0x01, 0x01]) + bytes([0xa7]) + b"confman" + b"\x00"))
    req = bytes([0xdc, 0x00, 16]) + mp_uint(4) + mp_uint(7) + mp_uint(op) + mp_uint(group)
    req += mp_uint(0) + mp_uint(0) + mp_uint(0) + mp_str(path) + mp_str("") + b"\xc4\x00"
    req += mp_uint(0) * 5 + b"\xc0"
    s.sendall(frame(req))
    data = b""
    frames = []
    while len(frames) < 2:
        data += s.recv(65536)
        while len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            n = struct.unpack(">I", data[:4])[0]
            frames.append(data[4:4 + n])
            data = data[4 + n:]
    s.close()
    body = frames[1]  # frames[0] is HELLO_OK
    assert body[0] == 0x99 and body[1] == 0x05, body[:8]
    i = 2
    _, i = mp_read(body, i)      # id
    _, i = mp_read(body, i)      # op
    err, i = mp_read(body, i)
    _, i = mp_read(body, i)      # group
    token, i = mp_read(body, i)
    return err, token


def shards(c):
    rc, out, err = c.ctl("shards", "--json")
    assert rc == 0, err
    return json.loads(out)


def test_shards_route_fence_and_answer_wrongshard():
    c = Cluster(base_port=BASE).up()
    try:
        c.leader()
        c.ctl("put", "/top", "t", check=True)
        c.ctl("put", "/apps/web/port", "80", check=True)
        # A prefix with data in it cannot become a shard.
        rc, _, err = c.ctl("shard", "add", "/apps/web", "--replicas", "1,2,3")
        assert rc == 4, (rc, err)
        before = shards(c)["epoch"]
        for prefix in ("/apps/payments", "/apps/payments/eu"):
            c.ctl("shard", "add", prefix, "--replicas", "1,2,3", check=True)
        doc = shards(c)
        assert doc["epoch"] > before, doc
        by_prefix = {s["prefix"]: s["group"] for s in doc["shards"]}
        assert set(by_prefix) >= {"/", "/apps/payments", "/apps/payments/eu"}, doc
        # Writes land in the owning shard; listings show the child shard's top.
        c.ctl("put", "/apps/payments/limit", "100", check=True)
        c.ctl("put", "/apps/payments/eu/vat", "20", check=True)
        for path, value in (("/apps/payments/limit", b"100"), ("/apps/payments/eu/vat", b"20"),
                            ("/apps/web/port", b"80"), ("/top", b"t")):
            rc, out, err = c.ctl("get", path)
            assert rc == 0 and out == value, (path, rc, out, err)
        rc, out, _ = c.ctl("ls", "/apps")
        assert out.split() == [b"payments", b"web"], out
        rc, out, _ = c.ctl("ls", "/apps/payments")
        assert out.split() == [b"eu", b"limit"], out
        rc, _, err = c.ctl("mv", "/apps/payments/limit", "/apps/limit")
        assert rc != 0 and "EXDEV" in err, (rc, err)
        # A client whose map still says "/" owns the prefix is told so.
        err, epoch = raw_request(c.base, by_prefix["/"], 1, "/apps/payments/limit")
        assert err == CM_EWRONGSHARD and epoch == doc["epoch"], (err, epoch, doc["epoch"])
        err, _ = raw_request(c.base, by_prefix["/apps/payments"], 1, "/apps/payments/limit")
        assert err == 0, err
        # The parent refuses writes below the boundary even when asked directly.
        err, _ = raw_request(c.base, by_prefix["/"], 3, "/apps/payments/x")
        assert err == CM_EWRONGSHARD, err
        # The map and the data survive a restart of every node.
        for i in (1, 2, 3):
            c.kill(i)
        c.up()
        c.leader()
        assert shards(c)["epoch"] == doc["epoch"]
        rc, out, err = c.ctl("get", "/apps/payments/eu/vat")
        assert rc == 0 and out == b"20", (rc, out, err)
    finally:
        c.down()


def test_readiness_flips_while_a_group_has_no_leader():
    c = Cluster(base_port=BASE + 10).up()
    try:
        c.leader()
        end = time.time() + 10
        while c.get_http(1, "/readyz")[0] != 200 and time.time() < end:
            time.sleep(0.1)
        assert c.get_http(1, "/readyz")[0] == 200
        assert c.get_http(1, "/healthz") == (200, "ok\n")
        c.kill(2)
        c.kill(3)
        end = time.time() + 10
        while c.get_http(1, "/readyz")[0] == 200 and time.time() < end:
            time.sleep(0.1)
        status, reason = c.get_http(1, "/readyz")
        assert status == 503 and ("leader" in reason), (status, reason)
        assert c.get_http(1, "/healthz")[0] == 200, "alive, though not ready"
        # confmanctl status says the same at a glance, for people and scripts.
        rc, out, err = c.ctl("status", "--json", servers=c.addr(1))
        health = json.loads(out)["servers"][0]["health"]
        assert rc == 0 and not health["ready"] and "leader" in health["reason"], (out, err)
        peers = {p["id"]: p for p in health["peers"]}
        assert set(peers) == {2, 3} and not peers[2]["up"] and not peers[3]["up"], peers
        rc, out, _ = c.ctl("status", servers=c.addr(1))
        assert b"NOT READY: " in out and b"peer 2    DOWN" in out, out
        c.start(2)
        c.start(3)
        end = time.time() + 15
        while c.get_http(1, "/readyz")[0] != 200 and time.time() < end:
            time.sleep(0.1)
        assert c.get_http(1, "/readyz")[0] == 200, c.get_http(1, "/readyz")
        status, body = c.get_http(1, "/metrics")
        assert status == 200 and 'confman_raft_term{group="1"' in body and \
            "confman_fsync_seconds_bucket" in body and "confman_peer_bytes_sent_total" in body \
            and "confman_store_used_ratio" in body
        end = time.time() + 5
        while time.time() < end:
            rc, out, _ = c.ctl("status", "--json", servers=c.addr(1))
            health = json.loads(out)["servers"][0]["health"]
            if health["ready"] and all(p["up"] for p in health["peers"]):
                break
            time.sleep(0.1)
        assert health["ready"] and health["reason"] == "" and health["space"] == "ok", health
        assert health["fsyncs"] > 0 and health["fsync_p99_us"] >= health["fsync_p50_us"] > 0, health
        assert all(p["up"] and p["bytes_received"] > 0 for p in health["peers"]), health
    finally:
        c.down()


def full_log(c, i):
    with open(os.path.join(c.dir, "node%d.log" % i), "rb") as f:
        return f.read().decode(errors="replace")


def test_cluster_file_groups_are_read_at_first_start_only():
    """The meta group records the cluster file's groups at the first start;
    a group added to the file later must not hide the keys under its prefix."""
    c = Cluster(base_port=BASE + 20, prefixes=("/", "/apps")).up()
    try:
        c.leader()
        c.ctl("put", "/later/x", "kept", check=True)
        c.ctl("put", "/apps/y", "apps", check=True)
        end = time.time() + 15
        while time.time() < end and not all("registry: seeded" in full_log(c, i)
                                            for i in (1, 2, 3)):
            time.sleep(0.1)
        assert all("registry: seeded" in full_log(c, i) for i in (1, 2, 3)), \
            [full_log(c, i)[-800:] for i in (1, 2, 3)]
        before = shards(c)
        for i in (1, 2, 3):
            c.stop(i)
        c.prefixes = ("/", "/apps", "/later")  # an edit after the first start
        c._write_ini()
        c.up()
        c.leader()
        doc = shards(c)
        assert sorted(s["prefix"] for s in doc["shards"]) == ["/", "/apps"], doc
        assert doc["epoch"] == before["epoch"], (doc, before)
        for path, value in (("/later/x", b"kept"), ("/apps/y", b"apps")):
            rc, out, err = c.ctl("get", path)
            assert rc == 0 and out == value, (path, rc, out, err)
        for i in (1, 2, 3):
            log = full_log(c, i)
            assert "[group.3] (/later) is not in the registry" in log, log[-1500:]
            assert "read at the first start only" in log, log[-1500:]
        # Shards are added the checked way: /later holds a key, so no.
        rc, _, err = c.ctl("shard", "add", "/later", "--replicas", "1,2,3")
        assert rc == 4, (rc, err)
    finally:
        c.down()


if __name__ == "__main__":
    run([test_shards_route_fence_and_answer_wrongshard,
         test_readiness_flips_while_a_group_has_no_leader,
         test_cluster_file_groups_are_read_at_first_start_only])
