"""test_gw_trust.py: the gateway's callers and the servers' trust in it (issue 15, item 4).

A TLS cluster whose file marks the gateway's certificate (CN confman-gw) as a
trusted proxy; a gateway with client certificates (--https-ca) and bearer
tokens. Each caller acts with its own rights: an allowed certificate gets
200, a denied one 403 (v1 and etcd v3), no credentials 401, a token works
until it is revoked. A forwarded identity sent by a plain user certificate,
or by a gateway the cluster file does not mark, is refused. The nodes'
/metrics is served over HTTPS.
"""
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Cluster  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "29800"))
API = os.environ.get("CONFMAN_API", os.path.join(harness.BUILD, "api/confman-api"))
EACCES = 13
OP_GET = 1


class Gateway:
    """confman-api over HTTPS with client certificates, talking to c's
    servers with the certificate of server_user."""

    def __init__(self, c, port, server_user):
        self.c, self.port = c, port
        self.log_path = os.path.join(c.dir, "api-%d.log" % port)
        args = [API, "--listen", "127.0.0.1:%d" % port, "--servers", c.servers(), "-j", "1",
                "--https-cert", c.certs("gateway.pem"), "--https-key", c.certs("gateway.key"),
                "--https-ca", c.certs("ca.pem"), "--server-ca", c.certs("ca.pem"),
                "--server-cert", c.certs(server_user + ".pem"),
                "--server-key", c.certs(server_user + ".key")]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        end = time.time() + 20
        while time.time() < end:
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("gateway on %d never ready" % port)

    def request(self, method, path, body=None, user=None, token=None):
        """(status, body) of one HTTPS request, with user's client certificate
        and/or a bearer token."""
        ctx = ssl.create_default_context(cafile=self.c.certs("ca.pem"))
        if user:
            ctx.load_cert_chain(self.c.certs(user + ".pem"), self.c.certs(user + ".key"))
        headers = {"Authorization": "Bearer " + token} if token else {}
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request("https://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def v3_range(self, key, **kw):
        import base64
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()})
        return self.request("POST", "/v3/kv/range", body, **kw)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open(self.log_path, "rb") as f:
            out = f.read().decode(errors="replace")
        assert "Sanitizer" not in out and "runtime error" not in out, out


# ---- raw frames: a forwarded identity straight to confmand ----

def mp_str(s):
    b = s.encode()
    assert len(b) < 256
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b


def mp_uint(v):
    assert 0 <= v < 128
    return bytes([v])


def req_frame(rid, op, path, as_=None):
    """REQ [4, id, op, group, token, consistency, flags, path, path2, value,
    version, mode, uid, gid, from_index, nil (, nil, as)]."""
    n = 18 if as_ else 16
    body = bytes([0xdc, 0, n, 4]) + mp_uint(rid) + mp_uint(op) + bytes([0, 0, 1, 0])
    body += mp_str(path) + mp_str("") + bytes([0xc4, 0]) + bytes([0, 0, 0, 0, 0, 0xc0])
    if as_:
        body += bytes([0xc0]) + mp_str(as_)
    return harness.frame(body)


def read_frame(s):
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise AssertionError("connection closed after %r" % b)
            b += chunk
        return b
    (n,) = struct.unpack(">I", exact(4))
    return exact(n)


def raw_request(c, user, op, path, as_=None):
    """The err of one REQ sent to node 1 over TLS with user's certificate."""
    ctx = ssl.create_default_context(cafile=c.certs("ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(c.certs(user + ".pem"), c.certs(user + ".key"))
    raw = socket.create_connection(("127.0.0.1", BASE), 5)
    with ctx.wrap_socket(raw) as s:
        s.settimeout(5)
        s.sendall(harness.frame(bytes([0x94, 1, 1]) + mp_str(c.cluster_id) + bytes([0])))
        hello = read_frame(s)
        assert hello[1] == 2, "want HELLO_OK: %r" % hello
        s.sendall(req_frame(7, op, path, as_))
        resp = read_frame(s)
        # [5, id, op, err, ...]: small values are one byte each
        assert resp[1] == 5 and resp[2] == 7, resp
        err = resp[4]
        return err - 256 if err >= 0xe0 else err


# ---- the tests ----

def setup(proxies="confman-gw"):
    c = Cluster(base_port=BASE, tls=True, proxies=proxies).up()
    c.leader()
    for user, groups in (("alice", ["devs"]), ("bob", []), ("confman-gw", []),
                         ("gw-unmarked", [])):
        c.mkcert("user", user, *groups)
    c.mkcert("host", "gateway")
    c.ctl("acl", "grant", "write user:alice /app", check=True)
    c.ctl("acl", "grant", "read group:ops /app", check=True)
    c.ctl("put", "/app/x", "hello", check=True)
    return c


def test_certificates_tokens_and_denials():
    c = setup()
    gw = None
    try:
        gw = Gateway(c, BASE + 50, "confman-gw")
        # A certificate the rules allow: 200 on both APIs.
        st, body = gw.request("GET", "/v1/kv/app/x", user="alice")
        assert st == 200 and "hello" in body, (st, body)
        st, body = gw.request("PUT", "/v1/kv/app/y", "v1", user="alice")
        assert st in (200, 201), (st, body)
        st, body = gw.v3_range("/app/x", user="alice")
        assert st == 200 and json.loads(body).get("kvs"), (st, body)
        # Several requests on one kept-alive connection: its certificate is
        # verified at the first and remembered for the others.
        import http.client
        for user, want in (("alice", 200), ("bob", 403)):
            ctx = ssl.create_default_context(cafile=c.certs("ca.pem"))
            ctx.load_cert_chain(c.certs(user + ".pem"), c.certs(user + ".key"))
            conn = http.client.HTTPSConnection("127.0.0.1", gw.port, context=ctx, timeout=10)
            try:
                for _ in range(3):
                    conn.request("GET", "/v1/kv/app/x")
                    resp = conn.getresponse()
                    resp.read()
                    assert resp.status == want, (user, resp.status)
            finally:
                conn.close()
        # One they do not: 403, etcd's shape on /v3.
        st, body = gw.request("GET", "/v1/kv/app/x", user="bob")
        assert st == 403, (st, body)
        st, body = gw.request("PUT", "/v1/kv/app/x", "no", user="bob")
        assert st == 403, (st, body)
        st, body = gw.v3_range("/app/x", user="bob")
        assert st == 403 and json.loads(body)["code"] == 7, (st, body)
        assert "permission denied" in json.loads(body)["message"], body
        # A watch the rules refuse ends with an error event, before any change.
        st, body = gw.request("GET", "/v1/watch/app", user="bob")
        assert st == 200 and "event: error" in body and "denied" in body.lower(), (st, body)
        # The gateway's own rights do not leak: it has none, alice's write held.
        rc, out, _ = c.ctl("get", "/app/y")
        assert rc == 0 and out.decode().strip() == "v1", (rc, out)
        # No credentials: 401 on both.
        st, body = gw.request("GET", "/v1/kv/app/x")
        assert st == 401, (st, body)
        st, body = gw.v3_range("/app/x")
        assert st == 401 and json.loads(body)["code"] == 16, (st, body)
        # A bearer token for a member of ops: reads, cannot write.
        rc, token, err = c.ctl("token", "create", "tok-user", "--group", "ops", "--ttl", "1h")
        assert rc == 0, (rc, err)
        token = token.decode().strip()
        tid = token.split(".")[0]
        st, body = gw.request("GET", "/v1/kv/app/x", token=token)
        assert st == 200 and "hello" in body, (st, body)
        st, body = gw.request("PUT", "/v1/kv/app/x", "no", token=token)
        assert st == 403, (st, body)
        st, body = gw.request("GET", "/v1/kv/app/x", token=token[:-1] + "0")
        assert st == 401, ("a wrong token", st, body)
        # token list: the id and identity, never the token or its hash
        rc, out, _ = c.ctl("token", "list", "--json")
        out = out.decode()
        listed = json.loads(out)["tokens"]
        assert [t["user"] for t in listed] == ["tok-user"] and listed[0]["id"] == tid, out
        assert listed[0]["groups"] == ["ops"], out
        assert token.split(".")[1] not in out, out
        # Managing tokens is admin on "/": alice may not.
        rc, _, err = c.ctl("token", "list", creds=c.client_creds("alice"))
        assert rc != 0 and "denied" in err.lower(), (rc, err)
        # Revoked: 401 once the gateway's cache entry expires (5 s).
        rc, _, err = c.ctl("token", "revoke", tid)
        assert rc == 0, (rc, err)
        t0 = time.time()
        while time.time() - t0 < 15:
            st, body = gw.request("GET", "/v1/kv/app/x", token=token)
            if st == 401:
                break
            time.sleep(0.5)
        assert st == 401, ("still served after revoke", st, body)
        print("revoke took %.1fs to bite" % (time.time() - t0))
    finally:
        if gw is not None:
            gw.stop()
        c.down()


def test_forwarded_identity_needs_the_proxy_mark():
    c = setup()
    gw = None
    try:
        # The marked gateway's certificate may forward alice straight to a node.
        assert raw_request(c, "confman-gw", OP_GET, "/app/x", "alice devs") == 0
        # A plain user certificate may not: bob claiming to be alice (or admin).
        assert raw_request(c, "bob", OP_GET, "/app/x", "alice") == -EACCES
        assert raw_request(c, "bob", OP_GET, "/app/x", "admin admins") == -EACCES
        # bob as himself is refused by the rules too; the log names the refusal.
        assert raw_request(c, "bob", OP_GET, "/app/x") == -EACCES
        assert "not a trusted proxy" in c.log(1), c.log(1)[-2000:]
        # A gateway the cluster file does not mark: its callers are refused.
        gw = Gateway(c, BASE + 51, "gw-unmarked")
        st, body = gw.request("GET", "/v1/kv/app/x", user="alice")
        assert st == 403, (st, body)
        st, body = gw.v3_range("/app/x", user="alice")
        assert st == 403, (st, body)
        rc, token, _ = c.ctl("token", "create", "alice")
        st, body = gw.request("GET", "/v1/kv/app/x", token=token.decode().strip())
        assert st == 403, ("an unmarked gateway resolved a token", st, body)
    finally:
        if gw is not None:
            gw.stop()
        c.down()


def test_metrics_over_https():
    c = Cluster(base_port=BASE + 20, tls=True).up()
    try:
        c.leader()
        st, body = c.get_http(1, "/metrics")  # https with the cluster's CA
        assert st == 200 and "confman_" in body, (st, body[:200])
        try:
            urllib.request.urlopen("http://%s/metrics" % c.http(1), timeout=3).read()
            raise AssertionError("a TLS node served /metrics over plain HTTP")
        except OSError:
            pass
    finally:
        c.down()


if __name__ == "__main__":
    harness.run([test_certificates_tokens_and_denials,
                 test_forwarded_identity_needs_the_proxy_mark,
                 test_metrics_over_https])
