"""test_security.py: the README's "Security" section, checked (issue 15).

Secrets at rest: a node's data directory is 0700 and its LMDB files 0600,
snapshot files and tar exports are written 0600 whatever the umask (they
were 0644: every value readable by any local user).

Rotating the cluster's CA without downtime:

A TLS cluster on CA1 moves to CA2 in three rolling restarts, one node at a
time, while a writer puts through confmanctl the whole time (every put must
succeed: a majority is up at every moment):
 1. every node restarted on a bundle file holding CA1 then CA2 (GnuTLS
    loads every certificate of the `ca` file);
 2. every node restarted with a certificate from CA2: nodes on CA1 and on
    CA2 certificates replicate with each other, and clients with a CA1 or a
    CA2 certificate are both served;
 3. CA1 dropped from the file, every node restarted: a CA1 client
    certificate is refused (CERTREFUSED), CA2's is served.
Ports: CONFMAN_IT_PORT (default 29940) .. +2 and +10 .. +12, HTTP +1000.
"""
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "29940"))


class Writer(threading.Thread):
    """confmanctl put in a loop with the given credentials until stopped."""

    def __init__(self, c, creds):
        super().__init__(daemon=True)
        self.c, self.creds = c, creds
        self.stop = threading.Event()
        self.ok, self.failed = 0, []

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            rc, _, err = self.c.ctl("put", "/rot/w", str(n), creds=self.creds())
            if rc == 0:
                self.ok += 1
            else:
                self.failed.append((n, err.strip()[-200:]))
            time.sleep(0.02)


def rolling_restart(c, step):
    """Restart each node in turn; the next only once this one has caught up."""
    for i in range(1, c.n + 1):
        c.stop(i)
        c.start(i)
        c.wait_port(i)
        c.ctl("put", "/rot/step", "%s-%d" % (step, i), check=True)
        c.wait_value(i, "/rot/step", ("%s-%d" % (step, i)).encode())


def test_ca_rotation_under_a_writer():
    c = Cluster(base_port=BASE, tls=True).up()
    w = None
    try:
        c.leader()
        ca1 = open(c.certs("ca.pem")).read()
        ca2dir = os.path.join(c.dir, "ca2")
        c.mkcert("ca", directory=ca2dir)
        ca2 = open(os.path.join(ca2dir, "ca.pem")).read()
        # Clients: the admin on CA1 (certs/) and on CA2 (ca2/), same name.
        c.mkcert("user", "admin", "admins", directory=ca2dir, ca=ca2dir)
        bundle = os.path.join(c.dir, "clients-ca.pem")

        def creds(d):
            return lambda: ["--ca", bundle, "--cert", os.path.join(d, "admin.pem"),
                            "--key", os.path.join(d, "admin.key")]
        old_admin, new_admin = creds(c.certs()), creds(ca2dir)
        with open(bundle, "w") as f:
            f.write(ca1 + ca2)
        w = Writer(c, old_admin)
        w.start()
        # 1. Every node trusts both CAs.
        with open(c.certs("ca.pem"), "w") as f:
            f.write(ca1 + ca2)
        rolling_restart(c, "bundle")
        # 2. Every node's certificate from CA2, one at a time.
        for i in range(1, c.n + 1):
            c.mkcert("node", i, directory=ca2dir, ca=ca2dir)
            c.stop(i)
            for ext in ("pem", "key"):  # where the cluster file points
                shutil.copy2(os.path.join(ca2dir, "node%d.%s" % (i, ext)),
                             c.certs("node%d.%s" % (i, ext)))
            r = subprocess.run(["certtool", "--verify", "--load-ca-certificate",
                                os.path.join(ca2dir, "ca.pem"), "--infile",
                                c.certs("node%d.pem" % i)], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr  # signed by CA2 now
            c.start(i)
            c.wait_port(i)
            c.ctl("put", "/rot/step", "new-%d" % i, check=True)
            c.wait_value(i, "/rot/step", ("new-%d" % i).encode())
            # Mixed cluster: both clients served.
            assert c.ctl("get", "/rot/step", creds=new_admin())[0] == 0
            assert c.ctl("get", "/rot/step", creds=old_admin())[0] == 0
        # 3. CA1 gone from the nodes' file.
        with open(c.certs("ca.pem"), "w") as f:
            f.write(ca2)
        # Clients move to CA2 certificates before this step (the writer, and
        # the harness's own confmanctl calls).
        w.creds = new_admin
        c.client_creds = lambda user="admin": new_admin()
        time.sleep(0.5)
        rolling_restart(c, "ca2")
        w.stop.set()
        w.join(30)
        assert not w.failed, w.failed[:5]
        assert w.ok > 20, w.ok
        rc, _, err = c.ctl("get", "/rot/w", creds=old_admin())
        assert rc != 0 and "CERTREFUSED" in err, (rc, err)
        rc, out, _ = c.ctl("get", "/rot/w", creds=new_admin())
        assert rc == 0 and int(out) >= w.ok, (rc, out, w.ok)
        rc, _, err = c.ctl("get", "/rot/w", creds=["--ca", os.path.join(ca2dir, "ca.pem"),
                                                      "--cert", c.certs("admin.pem"),
                                                      "--key", c.certs("admin.key")])
        assert rc != 0 and "CERTREFUSED" in err, (rc, err)
    finally:
        if w is not None:
            w.stop.set()
            w.join(30)
        c.down()
        shutil.rmtree(os.path.join(c.dir, "ca2"), ignore_errors=True)


def mode(path):
    return oct(os.stat(path).st_mode & 0o777)


def test_values_at_rest_are_the_users_alone():
    c = Cluster(base_port=BASE + 10, tls=True).up()
    old = os.umask(0o022)  # the usual umask: it must not decide
    try:
        c.leader()
        c.ctl("put", "/s/password", "hunter2", check=True)
        for i in range(1, c.n + 1):
            d = os.path.join(c.dir, "node%d" % i)
            assert mode(d) == "0o700", (d, mode(d))
            for f in os.listdir(d):
                if f.endswith(".mdb"):
                    assert mode(os.path.join(d, f)) == "0o600", (f, mode(os.path.join(d, f)))
        snap = os.path.join(c.dir, "backup.snap")
        c.ctl("snapshot", "save", snap, check=True)
        assert mode(snap) == "0o600", mode(snap)
        tar = os.path.join(c.dir, "s.tar")
        c.ctl("export", "/s", tar, check=True)
        assert mode(tar) == "0o600", mode(tar)
    finally:
        os.umask(old)
        c.down()


if __name__ == "__main__":
    run([test_values_at_rest_are_the_users_alone, test_ca_rotation_under_a_writer])
