#!/usr/bin/env python3
"""Integration: access rules by path prefix over TLS identities (issue 15).

A TLS cluster whose cluster file names the first admin; users alice
(no group) and bob (group ops) get rules from the admin through
`confmanctl acl grant`, and every operation is checked: get, list (only the
way to what one may read shows), put, delete, rename across the rule's
boundary, watch (no event about what one may not read), administration
(shard add, backups, acl changes), whoami; a revoke takes effect."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import CONFMANCTL, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "29700"))
DENIED = 7


def as_user(c, user, *args, **kw):
    return c.ctl(*args, creds=c.client_creds(user), **kw)


def test_rules_on_every_operation():
    c = Cluster(base_port=BASE, tls=True, admin="admin").up()
    try:
        c.leader()
        c.mkcert("user", "alice")
        c.mkcert("user", "bob", "ops")
        for p in ("/apps/web/port", "/apps/pay/key", "/etc/motd"):
            c.ctl("put", p, "v", check=True)
        # Deny by default: a user no rule names can do nothing.
        rc, _, err = as_user(c, "alice", "get", "/apps/web/port")
        assert rc == DENIED and "EACCES" in err, (rc, err)
        rc, out, _ = as_user(c, "alice", "whoami")
        assert rc == 0 and out.strip() == b"alice", out
        rc, out, _ = as_user(c, "bob", "whoami")
        assert out.split() == [b"bob", b"ops"], out
        # Only an admin changes rules.
        rc, _, _ = as_user(c, "alice", "acl", "grant", "read user:alice /")
        assert rc == DENIED, rc
        c.ctl("acl", "grant", "read user:alice /apps/web", check=True)
        c.ctl("acl", "grant", "write", "group:ops", "/apps", check=True)
        c.ctl("acl", "grant", "write group:ops /apps", check=True)  # again: done
        rc, out, _ = c.ctl("acl", "list", "--json")
        rules = json.loads(out)["rules"]
        assert "read user:alice /apps/web" in rules and "admin user:admin /" in rules, rules
        time.sleep(0.3)  # every node applied the rules
        assert as_user(c, "alice", "get", "/apps/web/port")[0] == 0
        assert as_user(c, "alice", "put", "/apps/web/port", "x")[0] == DENIED
        assert as_user(c, "alice", "get", "/apps/pay/key")[0] == DENIED
        assert as_user(c, "alice", "get", "/etc/motd")[0] == DENIED
        # A listing shows the way to what one may read, nothing else.
        assert as_user(c, "alice", "ls", "/")[1].split() == [b"apps"]
        assert as_user(c, "alice", "ls", "/apps")[1].split() == [b"web"]
        assert as_user(c, "alice", "ls", "/etc")[0] == DENIED
        # Groups; rename needs write on both ends.
        assert as_user(c, "bob", "put", "/apps/pay/key", "k2")[0] == 0
        assert as_user(c, "bob", "mv", "/apps/pay/key", "/apps/pay/key2")[0] == 0
        assert as_user(c, "bob", "mv", "/apps/pay/key2", "/etc/key")[0] == DENIED
        assert as_user(c, "bob", "rm", "/etc/motd")[0] == DENIED
        # Administration is admin's.
        for args in (("shard", "add", "/apps/x", "--replicas", "1,2,3"),
                     ("snapshot", "save", os.path.join(c.dir, "b.snap")),
                     ("node", "add", "9", "--address", "127.0.0.1:1")):
            rc, _, err = as_user(c, "bob", *args)
            assert rc != 0 and ("EACCES" in err or "denied" in err.lower()), (args, rc, err)
        # Watch: alice hears of /apps/web only.
        cmd = [CONFMANCTL, "--servers", c.servers(), "--timeout", "5000"]
        cmd += c.client_creds("alice") + ["watch", "/"]
        w = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        c.ctl("put", "/apps/pay/secret", "s", check=True)
        c.ctl("put", "/apps/web/new", "n", check=True)
        time.sleep(1.0)
        w.terminate()
        out = w.communicate(timeout=10)[0]
        assert "/apps/web/new" in out and "secret" not in out, out
        # A revoke takes effect.
        c.ctl("acl", "revoke", "read user:alice /apps/web", check=True)
        time.sleep(0.3)
        assert as_user(c, "alice", "get", "/apps/web/port")[0] == DENIED
    finally:
        c.down()


if __name__ == "__main__":
    run([test_rules_on_every_operation])
