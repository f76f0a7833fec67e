#!/usr/bin/env python3
"""Integration: bad input gets a clear error, loses nothing, and the node keeps serving."""
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import CONFMAND, Cluster, frame, raw_conn, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "17200"))


def mp_str(s):
    b = s.encode()
    assert len(b) < 32
    return bytes([0xa0 | len(b)]) + b


def hello(cluster="confman", node=0):
    return frame(bytes([0x94, 0x01, 0x01]) + mp_str(cluster) + bytes([node]))


def recv_all(s):
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def still_serves(c):
    rc, out, err = c.ctl("get", "/canary")
    assert rc == 0 and out == b"alive", "node stopped serving: %r %r" % (rc, err)


def test_garbage_frames_are_refused_and_the_node_keeps_serving():
    c = Cluster(base_port=BASE).up()
    try:
        c.leader()
        c.ctl("put", "/canary", "alive", check=True)
        rnd = random.Random(42)
        port = c.base
        for _ in range(50):  # random bytes
            s = raw_conn(port)
            s.sendall(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300))))
            s.close()
        s = raw_conn(port)  # a length beyond the frame limit
        s.sendall(struct.pack(">I", 0x7fffffff) + b"x" * 16)
        assert recv_all(s) != b"" or True
        s.close()
        s = raw_conn(port)  # a truncated frame, then the peer goes away
        s.sendall(struct.pack(">I", 100) + b"\x94\x01")
        s.close()
        s = raw_conn(port)  # a 5-byte body declaring a 2^31-element array
        s.sendall(frame(b"\xdd\x7f\xff\xff\xff"))
        reply = recv_all(s)
        s.close()
        assert reply, "a malformed frame must get an ERROR frame before the close"
        s = raw_conn(port)  # says nothing: closed after the HELLO deadline (5 s)
        s.settimeout(8)
        t0 = time.time()
        try:
            data = s.recv(65536)
        except socket.timeout:
            data = None
        s.close()
        assert data is not None and time.time() - t0 < 7.5, "a silent connection was kept"
        s = raw_conn(port)  # the right hello, then garbage
        s.sendall(hello())
        s.sendall(frame(b"\xc1"))
        recv_all(s)
        s.close()
        still_serves(c)
    finally:
        c.down()


def test_wrong_cluster_and_unknown_node_are_refused_and_logged():
    c = Cluster(base_port=BASE + 10).up()
    try:
        c.leader()
        c.ctl("put", "/canary", "alive", check=True)
        s = raw_conn(c.base)
        s.sendall(hello(cluster="other"))
        reply = recv_all(s)
        s.close()
        assert reply and reply[4] == 0x93 and reply[5] == 0x07, "want an ERROR frame: %r" % reply
        s = raw_conn(c.base)
        s.sendall(hello(node=42))
        reply = recv_all(s)
        s.close()
        assert reply and reply[5] == 0x07, reply
        log = c.log(1)
        assert "cluster id" in log and "unknown node 42" in log, log
        still_serves(c)
    finally:
        c.down()


def test_bad_values_and_paths_get_clear_errors():
    c = Cluster(base_port=BASE + 20).up()
    try:
        c.leader()
        c.ctl("put", "/canary", "alive", check=True)
        big = b"x" * (1024 * 1024 + 1)
        rc, _, err = c.ctl("put", "/big", "-", input=big)
        assert rc == 6 and ("EFBIG" in err or "too large" in err), (rc, err)
        for bad in ("/a/../b", "/a//b", "relative", "/a/", "/" + "n" * 256):
            rc, _, err = c.ctl("put", bad, "v")
            assert rc == 6, "path %r: exit %d (%s)" % (bad, rc, err)
        rc, _, _ = c.ctl("get", "/big")
        assert rc == 3
        still_serves(c)
    finally:
        c.down()


def test_full_store_says_enospc_and_reads_go_on():
    c = Cluster(base_port=BASE + 30, extra=["--map-size", "4", "--snapshot-entries", "1000000"]).up()
    try:
        c.leader()
        c.ctl("put", "/canary", "alive", check=True)
        value = b"y" * (32 * 1024)
        codes = []
        for k in range(400):
            rc, _, err = c.ctl("put", "/fill/k%d" % k, "-", input=value)
            codes.append(rc)
            if rc != 0:
                assert "ENOSPC" in err or "space" in err.lower(), err
                break
        assert codes[-1] != 0, "the store never filled up"
        print("  ENOSPC after %d puts of 32 KiB" % (len(codes) - 1))
        still_serves(c)
        for i in (1, 2, 3):
            assert c.alive(i), "node %d died: %s" % (i, c.log(i))
        rc, out, _ = c.ctl("get", "/fill/k0")
        assert rc == 0 and out == value
    finally:
        c.down()


def test_port_in_use_is_a_clear_error_not_an_abort():
    """A node whose address is taken says so and exits 1 (it used to close
    its listener twice on that path and abort in libuv)."""
    import subprocess
    import tempfile
    port = BASE + 90
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("127.0.0.1", port))
    hold.listen()
    d = tempfile.mkdtemp(prefix="confman-port-")
    try:
        ini = os.path.join(d, "cluster.ini")
        with open(ini, "w") as f:
            f.write("[cluster]\nid = confman\ninsecure = true\n[node.1]\naddress = 127.0.0.1:%d\n"
                    "http = 127.0.0.1:%d\n[group.1]\nprefix = /\nreplicas = 1\n"
                    % (port, port + 1))
        r = subprocess.run([CONFMAND, "--id", "1", "--cluster-file", ini, "--data",
                            os.path.join(d, "data")], capture_output=True, timeout=20)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 1, "exit %d: %s" % (r.returncode, err[-400:])
        assert "address already in use" in err.lower(), err[-400:]
    finally:
        hold.close()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run([test_garbage_frames_are_refused_and_the_node_keeps_serving,
         test_wrong_cluster_and_unknown_node_are_refused_and_logged,
         test_bad_values_and_paths_get_clear_errors,
         test_full_store_says_enospc_and_reads_go_on,
         test_port_in_use_is_a_clear_error_not_an_abort])
