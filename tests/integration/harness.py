"""harness.py: real confmand processes on loopback, for the integration tests.

Every test builds a Cluster in a temporary directory, uses confmanctl and raw
sockets against it, and tears it down in a finally block and at exit, so no
process outlives a test even when it fails. Ports come from the test's own
range so that meson can run the tests in parallel.
"""
import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("CONFMAN_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
CONFMAND = os.environ.get("CONFMAND", os.path.join(BUILD, "server/confmand"))
CONFMANCTL = os.environ.get("CONFMANCTL", os.path.join(BUILD, "client/confmanctl"))
MKCERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../scripts/mkcerts")

_live = []


def _cleanup_all():
    for c in list(_live):
        c.down()


atexit.register(_cleanup_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


class Cluster:
    def __init__(self, nodes=3, base_port=17000, extra=None, keep=False, prefixes=("/",),
                 node_extra=None, cluster_id="confman", tls=False, admin=None, proxies=None):
        """tls=False writes insecure = true (plain TCP); tls=True makes a CA,
        a certificate per node and one for the user "admin" (group admins)
        under DIR/certs, and every confmanctl carries admin's."""
        self.n = nodes
        self.tls = tls
        # [cluster] admin: the user the first rule makes admin of "/" (the
        # certificate every confmanctl of a TLS cluster carries).
        self.admin = admin or ("admin" if tls else None)
        self.proxies = proxies  # [cluster] proxies: CNs trusted to forward identities
        self.cluster_id = cluster_id
        self.node_extra = dict(node_extra or {})  # node id -> flags for it alone
        self.prefixes = prefixes
        self.base = base_port
        self.extra = list(extra or [])
        self.dir = tempfile.mkdtemp(prefix="confman-it-")
        self.procs = {}
        self.joined = {}  # node id -> --join addresses, for nodes not in the file
        self.meant_down = set()  # nodes the test killed or stopped on purpose
        self.keep = keep
        if tls:
            self.mkcert("ca")
            for i in range(1, nodes + 1):
                self.mkcert("node", i)
            self.mkcert("user", "admin", "admins")
        self._write_ini()
        _live.append(self)

    def addr(self, i):
        return "127.0.0.1:%d" % (self.base + i - 1)

    def http(self, i):
        # A range of its own: node ports of other tests sit at base + 10 * k.
        return "127.0.0.1:%d" % (self.base + 1000 + i - 1)

    def get_http(self, i, path):
        """(status, body) of GET path on node i's HTTP endpoint (HTTPS with
        the cluster's CA when it runs TLS)."""
        import ssl
        import urllib.error
        import urllib.request
        ctx = ssl.create_default_context(cafile=self.certs("ca.pem")) if self.tls else None
        scheme = "https" if self.tls else "http"
        try:
            with urllib.request.urlopen("%s://%s%s" % (scheme, self.http(i), path), timeout=5,
                                        context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def certs(self, name=None):
        """The certificates' directory, or the path of one of its files."""
        d = os.path.join(self.dir, "certs")
        return os.path.join(d, name) if name else d

    def mkcert(self, what, *args, directory=None, ca=None, valid=None):
        """scripts/mkcerts DIR what args: DIR defaults to certs(); ca signs
        with another CA's directory; valid = (from, until) dates."""
        env = dict(os.environ)
        if ca:
            env["CM_CERT_CA"] = ca
        if valid:
            env["CM_CERT_FROM"], env["CM_CERT_UNTIL"] = valid
        subprocess.run([MKCERTS, directory or self.certs(), what] + [str(a) for a in args],
                       check=True, env=env, capture_output=True, timeout=60)

    def client_creds(self, user="admin"):
        """confmanctl's TLS flags for user (None: the CA only, no certificate)."""
        if not self.tls:
            return []
        flags = ["--ca", self.certs("ca.pem")]
        if user:
            flags += ["--cert", self.certs(user + ".pem"), "--key", self.certs(user + ".key")]
        return flags

    def servers(self):
        return ",".join(self.addr(i) for i in range(1, self.n + 1))

    def _write_ini(self):
        with open(os.path.join(self.dir, "cluster.ini"), "w") as f:
            f.write("[cluster]\nid = %s\n" % self.cluster_id)
            if self.admin:
                f.write("admin = %s\n" % self.admin)
            if self.proxies:
                f.write("proxies = %s\n" % self.proxies)
            # Plain TCP unless asked: most tests are about something else.
            f.write("ca = %s\n" % self.certs("ca.pem") if self.tls else "insecure = true\n")
            for i in range(1, self.n + 1):
                f.write("[node.%d]\naddress = %s\nhttp = %s\n" % (i, self.addr(i), self.http(i)))
                if self.tls:
                    f.write("cert = %s\nkey = %s\n" % (self.certs("node%d.pem" % i),
                                                       self.certs("node%d.key" % i)))
            for g, prefix in enumerate(self.prefixes, 1):
                f.write("[group.%d]\nprefix = %s\nreplicas = %s\n"
                        % (g, prefix, ",".join(str(i) for i in range(1, self.n + 1))))

    def start(self, i):
        if i in self.procs and self.procs[i].poll() is None:
            return
        self.meant_down.discard(i)
        data = os.path.join(self.dir, "node%d" % i)
        log = open(os.path.join(self.dir, "node%d.log" % i), "ab")
        if i in self.joined:  # no cluster file: it joined through others
            how = ["--join", self.joined[i], "--listen", self.addr(i), "--http", self.http(i)]
            if self.tls:  # its own node certificate, made on first use
                self.mkcert("node", i)
                how += ["--ca", self.certs("ca.pem"), "--cert", self.certs("node%d.pem" % i),
                        "--key", self.certs("node%d.key" % i)]
            else:
                how += ["--insecure"]
        else:
            how = ["--cluster-file", os.path.join(self.dir, "cluster.ini")]
        self.procs[i] = subprocess.Popen(
            [CONFMAND, "--id", str(i)] + how + ["--data", data, "-v",
             "--tick-ms", "20"] + self.extra + self.node_extra.get(i, []),
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_port(i)

    def join(self, i, via=None):
        """Start node i (not in the cluster file) with --join through the
        nodes `via` (default: every node of the file); `confmanctl node add`
        must have recorded it first. Restarts of it use --join too."""
        self.joined[i] = ",".join(self.addr(j) for j in (via or range(1, self.n + 1)))
        self.start(i)

    def wait_port(self, i, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if self.procs[i].poll() is not None:
                raise RuntimeError("node %d exited with %s:\n%s"
                                   % (i, self.procs[i].returncode, self.log(i)))
            try:
                socket.create_connection(("127.0.0.1", self.base + i - 1), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("node %d does not listen" % i)

    def up(self):
        for i in range(1, self.n + 1):
            self.start(i)
        return self

    def kill(self, i):
        self.meant_down.add(i)
        p = self.procs.get(i)
        if p and p.poll() is None:
            p.kill()
            p.wait()

    def stop(self, i):
        self.meant_down.add(i)
        p = self.procs.get(i)
        if p and p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def pause(self, i):
        self.procs[i].send_signal(signal.SIGSTOP)

    def resume(self, i):
        self.procs[i].send_signal(signal.SIGCONT)

    def alive(self, i):
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def down(self):
        """Stop every node; fail if a sanitizer complained in any node's log.

        Called from a test's finally block: when the test is failing, the
        tail of every node's log is printed first, so that a failure seen
        only in CI can be understood from its output alone."""
        if sys.exc_info()[0] is not None:
            for i in sorted(self.procs):
                print("---- node %d log (tail) ----\n%s" % (i, self.log(i)[-2500:]), flush=True)
        # A node that died on its own (an assertion, a fail-stop) is a
        # failure even when every request the test made succeeded.
        crashed = [(i, p.returncode) for i, p in sorted(self.procs.items())
                   if i not in self.meant_down and p.poll() is not None]
        if crashed:
            print("node(s) exited on their own (node, exit code): %s" % crashed, flush=True)
        for i in list(self.procs):
            self.stop(i)
        if self in _live:
            _live.remove(self)
        crash_logs = ["node %d:\n%s" % (i, self.log(i)) for i, _ in crashed]
        reports = []
        for i in self.procs:
            text = self.log(i)
            if "AddressSanitizer" in text or "runtime error:" in text or "LeakSanitizer" in text:
                reports.append("node %d:\n%s" % (i, text))
        failing = sys.exc_info()[0] is not None or reports or crashed
        if failing and os.environ.get("CONFMAN_IT_KEEP"):
            print("kept for a post-mortem: %s" % self.dir, flush=True)
        elif not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if reports:
            raise AssertionError("sanitizer report:\n" + "\n".join(reports))
        if crashed and sys.exc_info()[0] is None:
            raise AssertionError("node(s) exited on their own: %s\n%s" % (
                crashed, "\n".join(crash_logs)))

    def log(self, i):
        try:
            with open(os.path.join(self.dir, "node%d.log" % i), "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def ctl(self, *args, servers=None, input=None, timeout=30, check=False, creds=None):
        """Run confmanctl; returns (exit code, stdout bytes, stderr text).
        creds: TLS flags instead of admin's (client_creds())."""
        cmd = [CONFMANCTL, "--servers", servers or self.servers(), "--timeout", "5000"]
        cmd += self.client_creds() if creds is None else creds
        if self.cluster_id != "confman":
            cmd += ["--cluster", self.cluster_id]
        cmd += [str(a) for a in args]
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("%s -> %d: %s" % (" ".join(cmd), r.returncode,
                                                     r.stderr.decode(errors="replace")))
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")

    def status(self, i):
        """Group 1's view from node i, from `confmanctl status --json`."""
        import json
        rc, out, _ = self.ctl("status", "--json", servers=self.addr(i))
        if rc != 0:
            return None
        try:
            doc = json.loads(out)
        except ValueError:
            return None
        for node in doc.get("servers", []):
            for g in node.get("groups", []):
                if g.get("group") == 1:
                    return g
        return None

    def leader(self, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            for i in range(1, self.n + 1):
                if not self.alive(i):
                    continue
                g = self.status(i)
                if g and g.get("role") == "leader":
                    return i
            time.sleep(0.1)
        raise AssertionError("no leader within %ss" % timeout)

    def read_on(self, i, path):
        """A follower read served by node i alone (no token: what it has)."""
        return self.ctl("--consistency", "follower", "get", "--from", self.addr(i), path,
                        servers=self.addr(i))

    def wait_value(self, i, path, value, timeout=20):
        end = time.time() + timeout
        last = None
        while time.time() < end:
            rc, out, err = self.read_on(i, path)
            if rc == 0 and out == value:
                return
            last = (rc, out[:60], err)
            time.sleep(0.1)
        raise AssertionError("node %d never showed %s=%r (last: %r)" % (i, path, value[:60], last))


def mounted(d):
    """Whether d is a mount point, a dead FUSE mount included (its daemon
    gone, where os.path.ismount says no: stat fails with ENOTCONN), so that
    cleanup unmounts it too."""
    d = os.path.realpath(d)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == d for line in f)


def frame(body):
    return struct.pack(">I", len(body)) + body


def raw_conn(port):
    s = socket.create_connection(("127.0.0.1", port), 2)
    s.settimeout(2)
    return s


def run(tests):
    """Run test functions; print a 'N passed, N failed' line; exit non-zero on failure."""
    passed = failed = 0
    for t in tests:
        name = t.__name__
        start = time.time()
        try:
            t()
            passed += 1
            print("ok   %s (%.1fs)" % (name, time.time() - start), flush=True)
        except Exception as e:  # a failing test must not stop the others
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
            import traceback
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
