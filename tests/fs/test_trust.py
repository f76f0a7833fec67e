"""test_trust.py: the mount on a shared host, over TLS with an identity
(issue 15, item 3).

Two layers, each checked on a real mount of a 3-node TLS cluster:
- the kernel's (`allow_other,default_permissions`): an unprivileged local
  user (setpriv --reuid=65534 --regid=65534 --clear-groups) gets the same
  errno on the mount as on a tmpfs directory set up identically (a root
  0600 file unreadable, a 0644 one readable, no writes in a root 0755
  directory, no chmod of root's file);
- the cluster's (the certificate's identity and its access rules): a mount
  as user `web` (group webhosts) with `read user:web /app` reads /app and
  nothing else, whoever asks, root included: EACCES (not EIO) for a read
  outside /app and for any write; ls shows only the way to /app; the
  mount's log names the operation, the path and the identity, one line
  per refusal, rate-limited under a loop of refusals;
- the persistent cache is per identity: what an admin mount cached is
  never served offline by a mount of another identity.
Ports: CONFMAN_IT_PORT (default 28200) .. +2, HTTP +50 .. +52.
"""
import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, expect_errno, harness  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "28200"))
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
C = None

# One operation as the unprivileged user: prints "ok" or the errno's name.
USER_OP = r'''
import errno, os, sys
op, p = sys.argv[1], sys.argv[2]
def append():
    with open(p, "ab") as f:
        f.write(b"x")
OPS = {"read": lambda: open(p, "rb").read(), "stat": lambda: os.stat(p),
       "append": append, "create": lambda: open(p, "xb").close(),
       "mkdir": lambda: os.mkdir(p), "unlink": lambda: os.unlink(p),
       "chmod": lambda: os.chmod(p, 0o666), "ls": lambda: os.listdir(p)}
try:
    OPS[op]()
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
'''


class TrustCluster(harness.Cluster):
    def http(self, i):  # the ports this test was given, not base + 1000
        return "127.0.0.1:%d" % (self.base + 50 + i - 1)


def nobody(op, path):
    r = subprocess.run(NOBODY + [sys.executable, "-c", USER_OP, op, path],
                       capture_output=True, timeout=30)
    out = r.stdout.decode().strip()
    assert r.returncode == 0 and out, (op, path, r.stderr)
    return out


def tls_opts(user, extra=""):
    o = "ca=%s,cert=%s,key=%s" % (C.certs("ca.pem"), C.certs(user + ".pem"),
                                  C.certs(user + ".key"))
    return o + ("," + extra if extra else "")


def setup_tree(d):
    """As root: the files the unprivileged user tries."""
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    for name, mode in (("f600", 0o600), ("f644", 0o644)):
        with open(os.path.join(d, name), "wb") as f:
            f.write(b"secret\n" if mode == 0o600 else b"open\n")
        os.chmod(os.path.join(d, name), mode)
    os.mkdir(os.path.join(d, "d755"))
    os.chmod(os.path.join(d, "d755"), 0o755)


SCRIPT = [("read", "f600"), ("read", "f644"), ("stat", "f600"), ("append", "f644"),
          ("append", "f600"), ("create", "new"), ("create", "d755/new"),
          ("mkdir", "d755/sub"), ("unlink", "f644"), ("chmod", "f644"), ("ls", "d755")]


def play(d):
    return [(op, name, nobody(op, os.path.join(d, name))) for op, name in SCRIPT]


def test_unprivileged_user_gets_the_errnos_of_tmpfs():
    t = tempfile.mkdtemp(prefix="confman-trust-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", t], check=True)
    m = None
    try:
        setup_tree(os.path.join(t, "t"))
        want = play(os.path.join(t, "t"))
        m = Mount(C, tls_opts("admin", "allow_other,default_permissions"))
        setup_tree(m.p("shared"))
        got = play(m.p("shared"))
        assert got == want, "\n".join("%s %s: mount %s, tmpfs %s" % (a[0], a[1], a[2], b[2])
                                      for a, b in zip(got, want) if a != b)
        # What the comparison stands on: the kernel refused, the files stand.
        outcome = {(op, name): r for op, name, r in got}
        assert outcome[("read", "f600")] == "EACCES" and outcome[("read", "f644")] == "ok"
        assert outcome[("create", "d755/new")] == "EACCES"
        assert outcome[("chmod", "f644")] == "EPERM"
        assert C.ctl("get", "/shared/f600", check=True)[1] == b"secret\n"
    finally:
        if m is not None:
            m.down()
        subprocess.run(["umount", t], capture_output=True)
        os.rmdir(t)


def deny_lines(m):
    with open(m.logpath, "rb") as f:
        return [ln for ln in f.read().decode(errors="replace").splitlines()
                if "access denied by the cluster's rules" in ln]


def test_acl_denials_are_eacces_and_logged():
    a = Mount(C, tls_opts("admin"))  # the tree, with modes, as root through admin's mount
    try:
        for p, v, mode in (("app/conf", b"port=80\n", 0o644), ("app/key", b"k\n", 0o600),
                           ("secret/x", b"s\n", 0o644), ("etc/motd", b"hi\n", 0o644)):
            os.makedirs(os.path.dirname(a.p(p)), exist_ok=True)
            with open(a.p(p), "wb") as f:
                f.write(v)
            os.chmod(a.p(p), mode)
    finally:
        a.down()
    C.ctl("acl", "grant", "read user:web /app", check=True)
    time.sleep(0.5)  # every node applied the rule
    m = Mount(C, tls_opts("web", "allow_other,default_permissions"))
    try:
        assert "identity user web groups webhosts" in m.output(), m.output()
        # What the rule allows, and the kernel's modes on top of it.
        assert test_fs.read(m.p("app/conf")) == b"port=80\n"
        assert test_fs.read(m.p("app/key")) == b"k\n"
        assert nobody("read", m.p("app/conf")) == "ok"
        assert nobody("read", m.p("app/key")) == "EACCES"
        # Root on this host is refused what the identity may not read.
        expect_errno(errno.EACCES, test_fs.read, m.p("secret/x"))
        expect_errno(errno.EACCES, os.stat, m.p("secret"))
        expect_errno(errno.EACCES, test_fs.read, m.p("etc/motd"))
        assert nobody("read", m.p("secret/x")) == "EACCES"
        # Writes: a new file, an existing one, a directory, a removal.
        expect_errno(errno.EACCES, lambda: open(m.p("app/x"), "xb").close())
        expect_errno(errno.EACCES, os.mkdir, m.p("app/d"))
        expect_errno(errno.EACCES, os.unlink, m.p("app/conf"))

        def overwrite():
            with open(m.p("app/conf"), "wb") as f:
                f.write(b"port=81\n")
        expect_errno(errno.EACCES, overwrite)
        expect_errno(errno.EACCES, os.chmod, m.p("app/conf"), 0o600)
        expect_errno(errno.EACCES, os.rename, m.p("app/conf"), m.p("app/conf2"))
        expect_errno(errno.EACCES, os.symlink, "conf", m.p("app/link"))
        assert C.ctl("get", "/app/conf", check=True)[1] == b"port=80\n"
        # ls shows the way to what the identity may read, nothing else.
        assert sorted(os.listdir(m.dir)) == ["app"], os.listdir(m.dir)
        assert sorted(os.listdir(m.p("app"))) == ["conf", "key"]
        lines = deny_lines(m)
        for want in ("lookup /secret for user web groups webhosts",
                     "lookup /etc for user web groups webhosts",
                     "create /app/x for user web groups webhosts",
                     "mkdir /app/d for user web", "unlink /app/conf for user web",
                     "rename /app/conf -> /app/conf2 for user web"):
            assert any(want in ln for ln in lines), (want, lines)
        # A loop of refusals: a bounded number of lines, the rest counted.
        time.sleep(1.5)
        before = len(deny_lines(m))
        start = time.time()
        for _ in range(300):
            try:
                os.stat(m.p("secret/x"))
            except PermissionError:
                pass
        spent = time.time() - start
        burst = len(deny_lines(m)) - before
        assert 1 <= burst <= 10 + int(spent) + 1, (burst, spent)
        time.sleep(1.1)
        expect_errno(errno.EACCES, os.stat, m.p("secret/y"))
        last = deny_lines(m)[-1]
        assert "lookup /secret" in last and re.search(r"\((\d+) more refusals", last), last
        # Every refusal is either a line or counted in the next line's "more".
        after = deny_lines(m)[before:]
        told = len(after) + sum(int(x) for ln in after
                                for x in re.findall(r"\((\d+) more refusals", ln))
        assert told >= 301, (told, after)
    finally:
        m.down()


def test_offline_cache_is_per_identity():
    """A host booting while the cluster is down mounts from its cache: the
    web identity's, never what an admin mount of the same servers and
    prefix cached there (the environment was keyed by servers and prefix
    alone: user web was served admin's /secret/x)."""
    cache = tempfile.mkdtemp(prefix="confman-trust-cache-")
    opts = "cache=%s,offline_after=300" % cache
    try:
        for user, path, want in (("web", "app/conf", b"port=80\n"), ("admin", "secret/x", b"s\n")):
            m = Mount(C, tls_opts(user, opts))
            try:
                assert test_fs.read(m.p(path)) == want
                time.sleep(1.5)  # prefetch done, the environment flushed
            finally:
                m.down()
        for i in range(1, C.n + 1):
            C.kill(i)
        w = Mount(C, tls_opts("web", opts))  # boots offline, from its cache
        try:
            assert test_fs.read(w.p("app/conf")) == b"port=80\n"
            try:
                got = test_fs.read(w.p("secret/x"))
            except OSError as e:
                got = errno.errorcode[e.errno]
            assert got != b"s\n", "an admin mount's cached secret served to user web"
            assert "offline" in w.output(), w.output()
        finally:
            w.down()
        envs = os.listdir(cache)
        assert len(envs) == 2, envs  # one environment each
        said = sorted(open(os.path.join(cache, e, "identity")).read().splitlines()[-1]
                      for e in envs)
        assert said == ["identity admin admins", "identity web webhosts"], said
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_fstab_example_over_tls():
    """examples/confman-fs.fstab's line, its TLS files replaced by this
    cluster's (user web), through mount.fuse3 as mount(8) would run it
    (the binary found on a PATH of our own: no machine-wide symlink):
    allow_other and default_permissions reach the kernel, and both layers
    hold on it."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "../../examples/confman-fs.fstab")) as f:
        line = [ln for ln in f if ln.strip() and not ln.startswith("#")][0].split()
    files = {"ca": C.certs("ca.pem"), "cert": C.certs("web.pem"), "key": C.certs("web.key")}
    opts = []
    for o in line[3].split(","):
        k = o.split("=", 1)[0]
        opts.append("%s=%s" % (k, files[k]) if k in files else o)
    assert sorted(k for k in files if any(o.startswith(k + "=") for o in line[3].split(","))) \
        == ["ca", "cert", "key"], line[3]
    d = tempfile.mkdtemp(prefix="confman-trust-fstab-")
    bindir = tempfile.mkdtemp(prefix="confman-trust-bin-")
    cache = tempfile.mkdtemp(prefix="confman-trust-cache-")
    os.symlink(os.path.abspath(test_fs.FS), os.path.join(bindir, "confman-fs"))
    try:
        env = dict(os.environ, PATH=bindir + ":/usr/sbin:/usr/bin:/sbin:/bin")
        r = subprocess.run(["mount.fuse3", "confman-fs#" + C.servers(), d, "-o",
                            ",".join(opts + ["cache=" + cache])],
                           env=env, capture_output=True, timeout=30)
        assert r.returncode == 0 and os.path.ismount(d), (r.returncode, r.stderr)
        with open("/proc/mounts") as f:
            mo = [ln.split()[3] for ln in f if ln.split()[1] == d][0]
        assert "allow_other" in mo and "default_permissions" in mo, mo
        assert nobody("read", os.path.join(d, "app/conf")) == "ok"
        assert nobody("read", os.path.join(d, "app/key")) == "EACCES"
        expect_errno(errno.EACCES, test_fs.read, os.path.join(d, "secret/x"))
    finally:
        test_fs.force_unmount(d)
        for x in (bindir, cache):
            shutil.rmtree(x, ignore_errors=True)


def main():
    global C
    C = TrustCluster(base_port=PORT, tls=True)
    ok = False
    try:
        C.up()
        C.leader()
        C.mkcert("user", "web", "webhosts")
        test_fs.harness_run([test_unprivileged_user_gets_the_errnos_of_tmpfs,
                             test_acl_denials_are_eacces_and_logged,
                             test_fstab_example_over_tls,
                             test_offline_cache_is_per_identity])
        ok = test_fs.RESULT[1] == 0
    finally:
        C.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
