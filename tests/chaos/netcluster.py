"""netcluster.py: a Confman cluster whose nodes each live in a network namespace.

Node i runs in namespace cmchaos-<run>-<i>, with one veth into a bridge in the
root namespace and its own address 10.77.<X>.<i>/24 (X picked per run among
subnets no interface uses); confmand listens on that address (the cluster
file's), so peers talk across the bridge and the workers, the FUSE mount and
confmanctl in the root namespace reach every node at 10.77.X.i:7001.

Partitions are nft rules inside a node's namespace (table inet cmchaos)
dropping packets from and/or to chosen peer addresses; healing deletes the
tables. Clients (the bridge address 10.77.X.254) are never cut.

Everything is named with the run's id (the harness's pid, hex) and removed in
down(), from atexit and on SIGTERM; cleanup_stale() removes what an earlier
run that crashed left behind (namespaces, bridges, processes, mounts) when its
pid is gone.
"""
import fcntl
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../integration"))
import harness  # noqa: E402

PORT = 7001
LOCK = "/run/confman-chaos.lock"
NS_RE = re.compile(r"^cmchaos-([0-9a-f]+)-(\d+)$")
BR_RE = re.compile(r"^cmc([0-9a-f]+)b$")


def sh(*cmd, check=True, input=None):
    r = subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s -> %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_ns_pids(ns):
    r = sh("ip", "netns", "pids", ns, check=False)
    for p in r.stdout.split():
        try:
            os.kill(int(p), 9)
        except (ProcessLookupError, ValueError):
            pass


def netns(name):
    """The command prefix that runs a program in network namespace name."""
    return ["nsenter", "--net=/run/netns/" + name]


def cleanup_stale():
    """Remove namespaces, bridges and mounts of runs whose harness died."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NS_RE.match(name)
        if m and not _pid_alive(int(m.group(1), 16)):
            _kill_ns_pids(name)
            sh("ip", "netns", "del", name, check=False)
    r = sh("ip", "-o", "link", "show", "type", "bridge", check=False)
    for line in r.stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            m = BR_RE.match(parts[1].strip())
            if m and not _pid_alive(int(m.group(1), 16)):
                sh("ip", "link", "del", parts[1].strip(), check=False)
    with open("/proc/mounts") as f:
        mounts = [l.split()[1] for l in f]
    for d in mounts:
        m = re.search(r"/confman-chaos-([0-9a-f]+)-mnt", d)
        if m and not _pid_alive(int(m.group(1), 16)):
            subprocess.run(["umount", "-l", d], capture_output=True)


class NetCluster(harness.Cluster):
    def __init__(self, nodes=3, extra=None, keep=False, prefixes=("/",), tls=None):
        """tls: TLS on every connection (the default, as for a real cluster;
        CONFMAN_CHAOS_TLS=0 turns it off). The admin's certificate goes to
        this process's environment (CONFMAN_CA/CERT/KEY), so that every
        worker, confmanctl and mount it starts carries it."""
        if tls is None:
            tls = os.environ.get("CONFMAN_CHAOS_TLS", "1") == "1"
        self.rid = "%x" % os.getpid()
        self.ns_names = {}
        self.paused = set()
        self.cut = set()      # namespaces with partition rules
        self.subnet = None
        self.bridge = "cmc%sb" % self.rid
        cleanup_stale()
        self._net_up(nodes)
        super().__init__(nodes=nodes, base_port=PORT, extra=extra, keep=keep,
                         prefixes=prefixes, tls=tls)
        for k in ("CONFMAN_CA", "CONFMAN_CERT", "CONFMAN_KEY"):
            os.environ.pop(k, None)
        if tls:
            os.environ.update(CONFMAN_CA=self.certs("ca.pem"),
                              CONFMAN_CERT=self.certs("admin.pem"),
                              CONFMAN_KEY=self.certs("admin.key"))

    # ---- network

    def _pick_subnet(self):
        used = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route").stdout
        start = os.getpid() % 240
        for k in range(240):
            x = 1 + (start + k) % 240
            if ("10.77.%d." % x) not in used:
                return x
        raise RuntimeError("no free 10.77.X.0/24")

    def _net_up(self, nodes):
        with open(LOCK, "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)  # subnet choice and bridge creation, atomically
            self.subnet = self._pick_subnet()
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", "10.77.%d.254/24" % self.subnet, "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
        for i in range(1, nodes + 1):
            ns = "cmchaos-%s-%d" % (self.rid, i)
            self.ns_names[i] = ns
            host, peer = "cmc%sv%d" % (self.rid, i), "cmc%sp%d" % (self.rid, i)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", peer, "netns", ns)
            sh("ip", "link", "set", host, "master", self.bridge, "up")
            sh("ip", "-n", ns, "link", "set", peer, "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", "%s/24" % self.ip(i), "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def _net_down(self):
        for ns in self.ns_names.values():
            _kill_ns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    def ip(self, i):
        return "10.77.%d.%d" % (self.subnet, i)

    def addr(self, i):
        return "%s:%d" % (self.ip(i), PORT)

    def http(self, i):
        return "%s:%d" % (self.ip(i), PORT + 1000)

    # ---- processes

    def start(self, i):
        if i in self.procs and self.procs[i].poll() is None:
            return
        data = os.path.join(self.dir, "node%d" % i)
        log = open(os.path.join(self.dir, "node%d.log" % i), "ab")
        # nsenter execs confmand itself (the pid is confmand's) in the node's
        # network namespace ONLY. Not `ip netns exec`: it also gives the
        # process a mount namespace of its own, holding a copy of every FUSE
        # mount that exists at that moment (this test's or a parallel
        # test's), and an unmounted confman-fs then never sees its
        # connection end while the copy lives (root's mounts are private).
        self.procs[i] = subprocess.Popen(
            netns(self.ns_names[i]) + [harness.CONFMAND, "--id", str(i),
             "--cluster-file", os.path.join(self.dir, "cluster.ini"), "--data", data, "-v",
             "--tick-ms", "20"] + self.extra,
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.paused.discard(i)
        self.wait_port(i)

    def wait_port(self, i, timeout=20):
        import socket
        end = time.time() + timeout
        while time.time() < end:
            if self.procs[i].poll() is not None:
                raise RuntimeError("node %d exited with %s:\n%s"
                                   % (i, self.procs[i].returncode, self.log(i)))
            try:
                socket.create_connection((self.ip(i), PORT), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("node %d does not listen" % i)

    def pause(self, i):
        super().pause(i)
        self.paused.add(i)

    def resume(self, i):
        super().resume(i)
        self.paused.discard(i)

    def up_nodes(self):
        """Nodes running and not paused."""
        return [i for i in range(1, self.n + 1) if self.alive(i) and i not in self.paused]

    def find_leader(self, timeout=15):
        """The leader of group 1 among running nodes (None if none in time)."""
        import json
        end = time.time() + timeout
        while time.time() < end:
            for i in self.up_nodes():
                rc, out, _ = self.ctl("--timeout", "800", "status", "--json",
                                      servers=self.addr(i), timeout=5)
                if rc != 0:
                    continue
                try:
                    doc = json.loads(out)
                except ValueError:
                    continue
                for node in doc.get("servers", []):
                    for g in node.get("groups", []):
                        if g.get("group") == 1 and g.get("role") == "leader":
                            return i
            time.sleep(0.1)
        return None

    # ---- partitions

    def cut_links(self, i, drop_from=(), drop_to=()):
        """In node i's namespace, drop packets from / to the given peers."""
        if not drop_from and not drop_to:
            return
        ns = self.ns_names[i]
        lines = ["table inet cmchaos {",
                 " chain input { type filter hook input priority 0; policy accept;"]
        lines += ["  ip saddr %s drop" % self.ip(j) for j in drop_from]
        lines += [" }", " chain output { type filter hook output priority 0; policy accept;"]
        lines += ["  ip daddr %s drop" % self.ip(j) for j in drop_to]
        lines += [" }", "}"]
        sh(*netns(ns), "nft", "-f", "-", input="\n".join(lines) + "\n")
        self.cut.add(i)

    def client_ip(self):
        """The address clients of the root namespace (mounts, workers,
        confmanctl) reach the nodes from: the bridge's."""
        return "10.77.%d.254" % self.subnet

    def cut_clients(self, nodes):
        """The host's side apart from these nodes: each drops packets from
        and to the bridge address (the nemesis itself never does this;
        tests/fs/test_offline_partition.py does). Nodes still talk to each
        other; heal() ends it."""
        for i in nodes:
            self.cut_links(i, drop_from=[254], drop_to=[254])

    def ctl_in(self, i, *args, timeout=30):
        """confmanctl run inside node i's namespace, against node i: what a
        client on the cluster's side of a cut_clients() partition does."""
        cmd = netns(self.ns_names[i]) + [harness.CONFMANCTL, "--servers", self.addr(i),
                                         "--timeout", "5000"] + self.client_creds()
        cmd += [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError("%s -> %d: %s" % (" ".join(cmd), r.returncode,
                                                     r.stderr.decode(errors="replace")))
        return r.stdout

    def partition(self, groups):
        """Symmetric partition: nodes in different groups cannot talk."""
        for g in groups:
            others = [j for h in groups if h is not g for j in h]
            for i in g:
                self.cut_links(i, drop_from=others, drop_to=others)

    def heal(self):
        for i in list(self.cut):
            sh(*netns(self.ns_names[i]), "nft", "delete", "table", "inet",
               "cmchaos", check=False)
            self.cut.discard(i)

    # ---- teardown

    def down(self):
        try:
            for i in list(self.paused):
                try:
                    self.resume(i)
                except Exception:
                    pass
            super().down()
        finally:
            self._net_down()


def read_json_on(c, i, path):
    """(value, version) node i alone serves (follower read, no token), or None."""
    import json
    rc, out, err = c.ctl("--json", "--timeout", "2000", "--consistency", "follower", "get",
                         "--from", c.addr(i), path, servers=c.addr(i))
    if rc == 3:
        return (None, 0)
    if rc != 0:
        return None
    d = json.loads(out)
    return (d["value"], d["version"])
