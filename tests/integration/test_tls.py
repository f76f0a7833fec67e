"""test_tls.py: TLS on every connection, with real processes and real certificates.

Each cluster gets its own CA and certificates (scripts/mkcerts, certtool)
under its directory: Cluster(tls=True). The refusals are checked on both
ends: the client's error and the server's log line that says why.
"""
import os
import subprocess
import tempfile
import time

import harness
from harness import CONFMAND, CONFMANCTL, Cluster, mounted, run

BASE = int(os.environ.get("CONFMAN_IT_PORT", "29500"))
FS = os.environ.get("CONFMAN_FS", os.path.join(harness.BUILD, "fs/confman-fs"))
API = os.environ.get("CONFMAN_API", os.path.join(harness.BUILD, "api/confman-api"))


def logs(c):
    """Every node's whole log."""
    text = ""
    for i in range(1, c.n + 1):
        try:
            with open(os.path.join(c.dir, "node%d.log" % i), "rb") as f:
                text += f.read().decode(errors="replace")
        except OSError:
            pass
    return text


def wait_log(c, needle, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if needle in logs(c):
            return
        time.sleep(0.1)
    raise AssertionError("no %r in the logs:\n%s" % (needle, logs(c)[-3000:]))


def creds(ca, pem=None, key=None):
    return ["--ca", ca] + (["--cert", pem, "--key", key] if pem else [])


def test_get_put_over_tls_and_every_refusal():
    c = Cluster(base_port=BASE, tls=True).up()
    try:
        c.leader()
        c.ctl("put", "/tls/k", "v1", check=True)
        rc, out, err = c.ctl("get", "/tls/k", check=True)
        assert out == b"v1", out
        # No client certificate: refused by the server, which says so.
        rc, out, err = c.ctl("get", "/tls/k", creds=c.client_creds(user=None))
        assert rc != 0 and "CERTREFUSED" in err and out == b"", (rc, out, err)
        wait_log(c, "the peer sent no certificate")
        # Plain TCP against a TLS cluster: told in words, at once.
        rc, out, err = c.ctl("get", "/tls/k", creds=[])
        assert rc != 0 and "(TLS)" in err and out == b"", (rc, out, err)
        wait_log(c, "this cluster requires TLS")
        # A user certificate from another CA.
        other = os.path.join(c.dir, "other")
        c.mkcert("ca", directory=other)
        c.mkcert("user", "mallory", directory=other)
        mallory = (os.path.join(other, "mallory.pem"), os.path.join(other, "mallory.key"))
        rc, out, err = c.ctl("get", "/tls/k", creds=creds(c.certs("ca.pem"), *mallory))
        assert rc != 0 and "CERTREFUSED" in err and out == b"", (rc, out, err)
        wait_log(c, "it is not signed by our CA")
        # A client that trusts another CA does not trust the servers.
        rc, out, err = c.ctl("get", "/tls/k", creds=creds(os.path.join(other, "ca.pem"), *mallory))
        assert rc != 0 and "BADCERT" in err and out == b"", (rc, out, err)
        # Expired and not yet valid certificates of our own CA.
        c.mkcert("user", "old", valid=("2020-01-01 00:00:00", "2020-06-01 00:00:00"))
        c.mkcert("user", "future", valid=("2099-01-01 00:00:00", "2099-06-01 00:00:00"))
        for user, why in (("old", "it has expired"), ("future", "it is not yet valid")):
            rc, out, err = c.ctl("get", "/tls/k", creds=c.client_creds(user))
            assert rc != 0 and "CERTREFUSED" in err and out == b"", (user, rc, out, err)
            wait_log(c, why)
        # After all that, the cluster serves its admin as before.
        c.ctl("put", "/tls/k", "v2", check=True)
        assert c.ctl("get", "/tls/k", check=True)[1] == b"v2"
    finally:
        c.down()


def test_client_certificate_cannot_act_as_a_peer():
    c = Cluster(base_port=BASE + 10, tls=True)
    # Node 3 runs with the admin's certificate (valid, same CA): not a node's.
    c.node_extra[3] = ["--cert", c.certs("admin.pem"), "--key", c.certs("admin.key")]
    try:
        c.up()
        c.ctl("put", "/peer/k", "v", check=True, servers=",".join([c.addr(1), c.addr(2)]))
        wait_log(c, "refused node 3: its certificate names 'admin', not confman-node-3")
        wait_log(c, "node 3 presents a certificate for 'admin', not confman-node-3")
        # Nor can it serve clients: a client talks to node certificates only.
        rc, out, err = c.ctl("get", "/peer/k", servers=c.addr(3))
        assert rc != 0 and "BADCERT" in err, (rc, out, err)
        # Neither end ever completed a peer handshake with it.
        text = "".join(c.log(i) for i in (1, 2))
        assert "connected to node 3" not in text, text
    finally:
        c.down()


def test_node_restarted_with_a_new_certificate_rejoins():
    c = Cluster(base_port=BASE + 20, tls=True).up()
    try:
        c.leader()
        c.ctl("put", "/rot/k", "v1", check=True)
        c.wait_value(2, "/rot/k", b"v1")
        c.stop(2)
        new = os.path.join(c.dir, "new")
        c.mkcert("node", 2, directory=new, ca=c.certs())
        assert open(os.path.join(new, "node2.pem")).read() != open(c.certs("node2.pem")).read()
        c.node_extra[2] = ["--cert", os.path.join(new, "node2.pem"),
                           "--key", os.path.join(new, "node2.key")]
        c.start(2)
        c.ctl("put", "/rot/k", "v2", check=True)
        c.wait_value(2, "/rot/k", b"v2")
        assert "refused" not in logs(c), logs(c)[-2000:]
    finally:
        c.down()


def test_join_over_tls():
    c = Cluster(base_port=BASE + 60, tls=True).up()
    try:
        c.leader()
        c.ctl("put", "/join/k", "v", check=True)
        c.ctl("node", "add", 4, "--address", c.addr(4), check=True)
        c.join(4)  # --join with its own node certificate, no cluster file
        text = ""
        end = time.time() + 15
        while "joined through" not in text and time.time() < end:
            time.sleep(0.1)
            with open(os.path.join(c.dir, "node4.log"), "rb") as f:
                text = f.read().decode(errors="replace")
        assert "joined through" in text, text[-2000:]
        # It talks TLS to clients too: its HELLO_OK names node 4.
        rc, out, err = c.ctl("status", servers=c.addr(4))
        assert rc == 0, (rc, err)
    finally:
        c.down()


def https_get(port, path, cafile, timeout=5, cert=None):
    """(status, body); cert = (pem, key): a client certificate."""
    import ssl
    import urllib.error
    import urllib.request
    ctx = ssl.create_default_context(cafile=cafile)
    if cert:
        ctx.load_cert_chain(*cert)
    try:
        with urllib.request.urlopen("https://127.0.0.1:%d%s" % (port, path), context=ctx,
                                    timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_gateway_https_over_a_tls_cluster():
    # The gateway (CN confman-gw, marked as a trusted proxy) forwards its
    # callers' identities: admin's client certificate reads, no certificate
    # is 401 (test_gw_trust.py has the rest).
    c = Cluster(base_port=BASE + 70, tls=True, proxies="confman-gw").up()
    port = BASE + 79
    gw = None
    try:
        c.leader()
        c.ctl("put", "/gw/k", "v", check=True)
        c.mkcert("host", "gateway")
        c.mkcert("user", "confman-gw")
        args = [API, "--listen", "127.0.0.1:%d" % port, "--servers", c.servers(), "-j", "1",
                "--https-cert", c.certs("gateway.pem"), "--https-key", c.certs("gateway.key"),
                "--https-ca", c.certs("ca.pem"),
                "--server-ca", c.certs("ca.pem"), "--server-cert", c.certs("confman-gw.pem"),
                "--server-key", c.certs("confman-gw.key")]
        # Its key at 0644: it does not start, and says why.
        os.chmod(c.certs("gateway.key"), 0o644)
        r = subprocess.run(args, capture_output=True, timeout=20)
        assert r.returncode == 2 and b"0644" in r.stderr, r
        os.chmod(c.certs("gateway.key"), 0o600)
        gwlog = open(os.path.join(c.dir, "api.log"), "wb")
        gw = subprocess.Popen(args, stdout=gwlog, stderr=gwlog, start_new_session=True)
        end = time.time() + 15
        status, body = None, None
        while time.time() < end:
            try:
                status, body = https_get(port, "/v1/kv/gw/k", c.certs("ca.pem"),
                                         cert=(c.certs("admin.pem"), c.certs("admin.key")))
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200 and b"v" in body, (status, body)
        status, body = https_get(port, "/v1/kv/gw/k", c.certs("ca.pem"))
        assert status == 401, (status, body)
        # Plain HTTP on the HTTPS port gets nothing it can use.
        import urllib.request
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/v1/kv/gw/k" % port, timeout=3).read()
            raise AssertionError("plain HTTP was served")
        except OSError:
            pass
    finally:
        if gw is not None:
            gw.terminate()
            try:
                gw.wait(10)
            except subprocess.TimeoutExpired:
                gw.kill()
                gw.wait()
            with open(os.path.join(c.dir, "api.log"), "rb") as f:
                out = f.read().decode(errors="replace")
            assert "Sanitizer" not in out and "runtime error" not in out, out
        c.down()


def confmand_exit(ini, node=1, extra=()):
    d = tempfile.mkdtemp(prefix="confman-tls-")
    try:
        r = subprocess.run([CONFMAND, "--id", str(node), "--cluster-file", ini, "--data",
                            os.path.join(d, "data")] + list(extra),
                           capture_output=True, timeout=20)
        return r.returncode, r.stderr.decode(errors="replace")
    finally:
        subprocess.run(["rm", "-rf", d])


def test_unsafe_keys_and_missing_ca_refuse_to_start():
    c = Cluster(base_port=BASE + 30, tls=True)  # files only, nothing started
    ini = os.path.join(c.dir, "cluster.ini")
    try:
        key = c.certs("node1.key")
        os.chmod(key, 0o644)
        rc, err = confmand_exit(ini)
        assert rc == 2 and key in err and "0644" in err and "chmod 600" in err, (rc, err)
        os.chmod(key, 0o600)
        os.chown(key, 4242, -1)
        rc, err = confmand_exit(ini)
        assert rc == 2 and key in err and "owned by uid 4242" in err, (rc, err)
        os.chown(key, os.geteuid(), -1)
        # The same rule for confmanctl's key.
        os.chmod(c.certs("admin.key"), 0o640)
        rc, out, err = c.ctl("get", "/x")
        assert rc == 2 and c.certs("admin.key") in err and "0640" in err, (rc, err)
        os.chmod(c.certs("admin.key"), 0o600)
        # Neither ca nor insecure = true: no start, and the message says both ways.
        with open(ini) as f:
            text = f.read()
        bare = os.path.join(c.dir, "bare.ini")
        with open(bare, "w") as f:
            f.write("\n".join(l for l in text.splitlines() if not l.startswith("ca = ")))
        rc, err = confmand_exit(bare)
        assert rc == 2 and "no CA" in err and "insecure = true" in err, (rc, err)
        # A CA but no certificate for this node.
        with open(bare, "w") as f:
            f.write("\n".join(l for l in text.splitlines()
                              if not l.startswith("cert = ") and not l.startswith("key = ")))
        rc, err = confmand_exit(bare)
        assert rc == 2 and "node 1 has no certificate" in err, (rc, err)
    finally:
        c.down()


def test_insecure_warns_at_every_start():
    c = Cluster(nodes=1, base_port=BASE + 40).up()
    try:
        c.stop(1)
        c.start(1)
        assert logs(c).count("insecure = true: plain TCP") == 2, logs(c)[-2000:]
    finally:
        c.down()


def test_mount_over_tls():
    c = Cluster(base_port=BASE + 50, tls=True).up()
    d = tempfile.mkdtemp(prefix="confman-tls-mnt-")
    logf = os.path.join(c.dir, "fs.log")
    p = None
    try:
        c.leader()
        c.ctl("put", "/fs/greeting", "hello", check=True)
        opts = "ca=%s,cert=%s,key=%s" % (c.certs("ca.pem"), c.certs("admin.pem"),
                                         c.certs("admin.key"))
        # A key others can read: no mount, and the reason.
        os.chmod(c.certs("admin.key"), 0o644)
        r = subprocess.run([FS, "-f", "-o", opts, c.servers(), d], capture_output=True,
                           timeout=20)
        assert r.returncode != 0 and b"0644" in r.stderr and not mounted(d), r.stderr
        os.chmod(c.certs("admin.key"), 0o600)
        with open(logf, "wb") as log:
            p = subprocess.Popen([FS, "-f", "-o", opts, c.servers(), d], stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.time() + 10
        while not os.path.ismount(d):
            assert p.poll() is None and time.time() < end, open(logf).read()
            time.sleep(0.05)
        with open(os.path.join(d, "fs/greeting")) as f:
            assert f.read() == "hello"
        with open(os.path.join(d, "fs/new"), "w") as f:
            f.write("world")
        assert c.ctl("get", "/fs/new", check=True)[1] == b"world"
    finally:
        if mounted(d):
            subprocess.run(["fusermount3", "-u", d], capture_output=True)
            if mounted(d):
                subprocess.run(["umount", "-l", d], capture_output=True)
        if p is not None:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            with open(logf, "rb") as f:
                out = f.read().decode(errors="replace")
            assert "Sanitizer" not in out and "runtime error" not in out, out
        os.rmdir(d)
        c.down()


if __name__ == "__main__":
    run([test_get_put_over_tls_and_every_refusal,
         test_client_certificate_cannot_act_as_a_peer,
         test_node_restarted_with_a_new_certificate_rejoins,
         test_unsafe_keys_and_missing_ca_refuse_to_start,
         test_insecure_warns_at_every_start,
         test_join_over_tls,
         test_gateway_https_over_a_tls_cluster,
         test_mount_over_tls])
