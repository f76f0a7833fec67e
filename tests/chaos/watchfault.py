"""watchfault.py: which node serves a FUSE mount's watch stream, and the
fault that pauses it (SIGSTOP) while writes go on through other clients.

The mount keeps one TCP connection per server it talks to, and its watch
shares one of them with ordinary requests (client/watch.c), so the
connection alone does not say which node serves the watch. What does: the
watch connection receives an event for every change under the mount's
prefix, whoever makes it, while the others only carry the replies to the
mount's own requests. watch_node() reads the byte counters of the mount's
connections (`ss -tni`, root namespace, filtered by the mount's pid), makes
a few changes with long paths through confmanctl (not through the mount),
reads them again, and names the node whose connection received the most.
Nothing in the mount or the servers is changed for it.
"""
import re
import subprocess
import time

_PEER = re.compile(r"\s(\d+\.\d+\.\d+\.\d+):(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+),")
_BYTES = re.compile(r"bytes_received:(\d+)")


def mount_conns(pid):
    """{peer ip: bytes received} of the established TCP connections of pid."""
    out = subprocess.run(["ss", "-tnpi", "state", "established"], capture_output=True,
                         text=True, timeout=10).stdout
    lines = out.splitlines()
    got = {}
    for k, line in enumerate(lines):
        m = _PEER.search(line)
        if not m or int(m.group(3)) != pid:
            continue
        info = lines[k + 1] if k + 1 < len(lines) else ""
        b = _BYTES.search(info)
        got[m.group(1)] = got.get(m.group(1), 0) + (int(b.group(1)) if b else 0)
    return got


def watch_node(c, mount_pid, probe_prefix, rounds=3, writes=6, servers=None):
    """The node (1..n) whose connection carries the mount's watch, or None.

    probe_prefix: a directory under the mount's prefix, in the shard the
    watch follows (the root shard for a mount of /); the probe keys written
    there are deleted again. Several rounds must agree (the same node
    received the most every time), else None."""
    ip_node = {c.ip(i): i for i in range(1, c.n + 1)}
    pad = "w" * 180  # events carry the path: long ones stand out
    winners = []
    for r in range(rounds):
        before = mount_conns(mount_pid)
        for k in range(writes):
            c.ctl("--timeout", "3000", "put", "%s/%s%d-%d" % (probe_prefix, pad, r, k), "x",
                  servers=servers)
        time.sleep(0.2)
        after = mount_conns(mount_pid)
        deltas = {ip: after[ip] - before.get(ip, 0) for ip in after}
        if not deltas:
            return None
        winners.append(max(deltas, key=deltas.get))
    c.ctl("--timeout", "3000", "rm", "-r", probe_prefix, servers=servers)
    if len(set(winners)) != 1:
        return None
    return ip_node.get(winners[0])
