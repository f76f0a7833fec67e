#!/usr/bin/env python3
"""Integration: leases and locks through confmanctl (issue 17).

One 3-node cluster (ports from CONFMAN_IT_PORT, 29600, and +1000 for HTTP).
Leases: grant, keepalive, ttl, list, revoke; a file put with a lease goes
with the lease's revoke and with its expiry (not before the TTL, not long
after). Locks through `confmanctl lock`: a second holder waits and gets a
higher CONFMAN_FENCE once the first exits; --timeout exits 124; three
waiters are served in the order they asked; a holder killed with SIGKILL
frees the lock within its TTL and a second; a lease revoked under a running
holder stops its command (exit 125); shared holds overlap. Elections: a
second campaigner takes over when the leader is killed, and `elect --watch`
prints both. Bad input: TTLs out of range, unknown leases, a release of a
lock not held."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD, CONFMANCTL, Cluster, run  # noqa: E402

BASE = int(os.environ.get("CONFMAN_IT_PORT", "29600"))
CHECK = os.environ.get("LEASE_CHECK", os.path.join(BUILD, "tests/integration/lease-check"))
TIMEOUT, LOST = 124, 125
C = None      # the cluster, made by main()
TMP = None    # a scratch directory for the commands' files
_procs = []   # every confmanctl started in the background, killed at the end


def ctl(*args, **kw):
    return C.ctl(*args, **kw)


def ok(*args):
    rc, out, err = ctl(*args)
    assert rc == 0, (args, rc, err)
    return out


def check(*args):
    """lease-check: 'OK ...' or an error's name."""
    r = subprocess.run([CHECK, C.servers()] + [str(a) for a in args], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().split("\n", 1)[0].strip()


def bg(*args):
    """confmanctl in the background, in a session of its own (its command too)."""
    p = subprocess.Popen([CONFMANCTL, "--servers", C.servers()] + [str(a) for a in args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    _procs.append(p)
    return p


def kill_session(sid):
    """SIGKILL every process of session sid: confmanctl and its command,
    which runs in a process group of its own."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                os.kill(int(d), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


def kill_all():
    for p in _procs:
        kill_session(p.pid)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
    _procs.clear()


def f(name):
    return os.path.join(TMP, name)


def wait_file(path, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as fh:
                return fh.read().strip()
        time.sleep(0.02)
    raise AssertionError("%s never written" % path)


def holder_script(tag, hold_s):
    """A command that records its fence and its tenure, then holds."""
    return ["sh", "-c", 'echo $$ > %s.pid; echo "$CONFMAN_FENCE" > %s.tmp && mv %s.tmp %s; '
            'echo "%s $(date +%%s.%%N) start" >> %s; sleep %s & echo $! > %s.sleep; wait $!; '
            'echo "%s $(date +%%s.%%N) end" >> %s'
            % (f(tag), f(tag), f(tag), f(tag), tag, f("log"), hold_s, f(tag), tag, f("log"))]


def grant(ttl="5s", *more):
    return int(ok("lease", "grant", ttl, *more).strip())


def gone(path):
    return ctl("get", path)[0] == 3


def gone_soon(path, timeout=2):
    """A revoke deletes the first file in its own entry, the others in the
    entries the leader proposes right after: a few ms later."""
    end = time.time() + timeout
    while not gone(path):
        if time.time() > end:
            return False
        time.sleep(0.02)
    return True


def pid_alive(pid):
    """Alive and not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- leases ----

def test_grant_keepalive_ttl_list_revoke():
    lid = grant("5s")
    assert 1 <= lid < 2 ** 63, lid
    info = json.loads(ok("lease", "keepalive", lid, "--once", "--json"))
    assert info["id"] == lid and info["ttl_ms"] == 5000 and 0 < info["left_ms"] <= 5000, info
    ok("put", "--lease", lid, "/leased/a", "1")
    ok("put", "--lease", lid, "/leased/b", "2")
    info = json.loads(ok("lease", "ttl", lid, "--keys", "--json"))
    assert info["keys"] == 2 and sorted(info["paths"]) == ["/leased/a", "/leased/b"], info
    listed = json.loads(ok("lease", "list", "--json"))["leases"]
    assert lid in [x["id"] for x in listed], listed
    text = ok("lease", "ttl", lid).decode()
    assert text.startswith("lease %d: ttl 5000 ms" % lid), text
    ok("lease", "revoke", lid)
    assert gone_soon("/leased/a") and gone_soon("/leased/b")
    assert ok("ls", "/leased") == b""
    assert ctl("lease", "ttl", lid)[0] == 3
    assert ctl("lease", "keepalive", lid, "--once")[0] == 3
    assert lid not in [x["id"] for x in json.loads(ok("lease", "list", "--json"))["leases"]]


def test_keepalive_keeps_it_past_its_ttl():
    lid = grant("2s")
    ok("put", "--lease", lid, "/kept/a", "1")
    p = bg("lease", "keepalive", lid)
    time.sleep(4)
    assert not gone("/kept/a"), "expired while kept alive"
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=5)[0].decode()
    assert out.count("ms left") >= 3, out  # one every TTL/3
    ok("lease", "revoke", lid)


def test_expiry_after_ttl_not_before():
    t0 = time.time()
    lid = grant("2s")
    ok("put", "--lease", lid, "/exp/a", "1")
    while not gone("/exp/a"):
        assert time.time() - t0 < 6, "still there 6 s after a 2 s lease"
        time.sleep(0.05)
    took = time.time() - t0
    # Not earlier than the TTL from the grant's sending; not much later.
    assert 2.0 <= took <= 2.0 + 2.5, took
    assert ctl("lease", "ttl", lid)[0] == 3
    print("  expiry of a 2 s lease seen after %.2f s" % took)


def test_bad_input():
    assert ctl("lease", "grant", "0")[0] == 6
    assert ctl("lease", "grant", "31d")[0] == 6
    assert ctl("lease", "grant", "999ms")[0] == 6
    unknown = 2 ** 62 + 12345
    rc, _, err = ctl("lease", "keepalive", unknown, "--once")
    assert rc == 3 and "ENOENT" in err, (rc, err)
    assert ctl("lease", "revoke", unknown)[0] == 3
    assert ctl("lease", "ttl", unknown)[0] == 3
    rc, _, err = ctl("put", "--lease", unknown, "/bad/a", "v")
    assert rc == 3, (rc, err)
    assert gone("/bad/a")
    ok("mkdir", "/bad/dir")
    lid = grant("5s")
    assert ctl("put", "--lease", lid, "/bad/dir", "v")[0] == 6  # EISDIR
    # A lock released that nobody holds: ENOENT, by a lease or by none.
    assert check("release", "/locks/nobody", lid) == "ENOENT"
    assert check("release", "/locks/nobody", unknown) == "ENOENT"
    assert check("acquire", "/locks/bad", unknown) == "ENOENT"
    # Granting an id the group holds: EEXIST.
    assert ctl("lease", "grant", "5s", "--id", lid)[0] == 4
    ok("lease", "revoke", lid)


# ---- locks ----

def test_second_holder_waits_and_gets_a_higher_fence():
    first = bg("lock", "/locks/a", "--", *holder_script("a1", 2))
    f1 = int(wait_file(f("a1")))
    q = check("query", "/locks/a")
    assert q == "OK 1", q
    t = time.time()
    rc, _, err = ctl("lock", "/locks/a", "--", *holder_script("a2", 0), timeout=30)
    assert rc == 0, (rc, err)
    assert first.wait(10) == 0
    f2 = int(wait_file(f("a2")))
    assert f2 > f1, (f1, f2)
    assert time.time() - t >= 1.0, "the second did not wait"
    assert_no_overlap()
    assert check("query", "/locks/a") == "OK 0"


def assert_no_overlap():
    """The holders' tenures (start/end lines of the log) do not overlap."""
    with open(f("log")) as fh:
        lines = [x.split() for x in fh.read().split("\n") if x]
    lines.sort(key=lambda x: float(x[1]))
    inside = None
    for tag, _, what in lines:
        if what == "start":
            assert inside is None, "%s started while %s held the lock" % (tag, inside)
            inside = tag
        else:
            assert inside == tag, (inside, tag)
            inside = None


def test_lock_timeout_exits_124():
    holder = bg("lock", "/locks/t", "--", *holder_script("t1", 4))
    wait_file(f("t1"))
    t = time.time()
    rc, _, err = ctl("lock", "/locks/t", "--timeout", "1s", "--", "true")
    took = time.time() - t
    assert rc == TIMEOUT, (rc, err)
    assert 1.0 <= took < 4, took
    # It left the queue: the holder's end frees the lock for a newcomer at once.
    assert holder.wait(10) == 0
    assert ctl("lock", "/locks/t", "--timeout", "2s", "--", "true")[0] == 0


def test_three_waiters_in_fifo_order():
    bg("lock", "/locks/q", "--", *holder_script("q0", 2))
    wait_file(f("q0"))
    ws = []
    for k in (1, 2, 3):
        ws.append(bg("lock", "/locks/q", "--", *holder_script("q%d" % k, 0.2)))
        time.sleep(0.4)  # each ACQUIRE committed before the next one's
    for w in ws:
        assert w.wait(30) == 0, w.stderr.read()
    with open(f("log")) as fh:
        starts = [x.split()[0] for x in fh.read().split("\n") if x.endswith("start")]
    assert starts == ["q0", "q1", "q2", "q3"], starts
    fences = [int(wait_file(f("q%d" % k))) for k in range(4)]
    assert fences == sorted(fences) and len(set(fences)) == 4, fences
    assert_no_overlap()


def test_killed_holder_frees_the_lock_within_its_ttl():
    p = bg("lock", "/locks/k", "--ttl", "2s", "--", *holder_script("k1", 60))
    wait_file(f("k1"))
    os.kill(p.pid, signal.SIGKILL)  # confmanctl only: its lease is no longer kept
    t = time.time()
    rc, _, err = ctl("lock", "/locks/k", "--", "true", timeout=30)
    took = time.time() - t
    assert rc == 0, (rc, err)
    assert took <= 2 + 1.5, took
    print("  lock free %.2f s after its holder was killed (TTL 2 s)" % took)


def test_revoked_lease_stops_the_command():
    p = bg("lock", "/locks/r", "--ttl", "3s", "--", *holder_script("r1", 60))
    wait_file(f("r1"))
    # Whose lease: the one holding /locks/r; revoke it behind its back.
    r = subprocess.run([CHECK, C.servers(), "query", "/locks/r"], capture_output=True,
                       timeout=30)
    lines = r.stdout.decode().split("\n")
    assert lines[0] == "OK 1", lines
    lid = int(lines[1].split()[0])
    ok("lease", "revoke", lid)
    t = time.time()
    assert p.wait(10) == LOST, p.stderr.read()
    assert time.time() - t < 3, "not stopped within a TTL"
    # CMD's whole process group went: the shell and the sleep it started.
    sleeper = int(wait_file(f("r1.sleep")))
    end = time.time() + 3
    while pid_alive(sleeper):
        assert time.time() < end, "the command's children outlived the lease"
        time.sleep(0.05)
    assert b"lost" in p.stderr.read()


def test_unreachable_cluster_stops_the_holder_before_its_lease_can_expire():
    # TTL 6 s: keepalives at +2 s, +4 s..., each request given up after 2 s.
    # Every node paused at +2.3 s, after the first keepalive proved the lease
    # alive until +8 s at least: the holder must be stopped before that (at
    # +7.4 s, a tenth of the TTL early), not after a keepalive stuck in its
    # request has timed out (+8.25 s when only a failed keepalive decided).
    p = bg("lock", "/locks/p", "--ttl", "6s", "--", *holder_script("p1", 60))
    wait_file(f("p1"))
    t0 = time.time()
    sleeper = int(wait_file(f("p1.sleep")))
    time.sleep(2.3)
    for i in range(1, 4):
        C.pause(i)
    try:
        while pid_alive(sleeper) and time.time() - t0 < 15:
            time.sleep(0.02)
        took = time.time() - t0
        assert took < 8.0, "stopped %.2f s after it began to hold: the lease may have expired" % took
        rc = p.wait(20)  # its revoke tries for up to a TTL, twice
    finally:
        for i in range(1, 4):
            C.resume(i)
    assert rc == LOST, (rc, p.stderr.read())
    print("  holder stopped %.2f s after it began (lease proven until +8 s)" % took)
    C.leader()


def test_shared_holds_overlap():
    # Each waits for the other's file: only possible if both hold at once.
    a = bg("lock", "/locks/s", "--shared", "--", "sh", "-c",
           "touch %s; for i in $(seq 100); do [ -e %s ] && exit 0; sleep 0.05; done; exit 9"
           % (f("sa"), f("sb")))
    b = bg("lock", "/locks/s", "--shared", "--", "sh", "-c",
           "touch %s; for i in $(seq 100); do [ -e %s ] && exit 0; sleep 0.05; done; exit 9"
           % (f("sb"), f("sa")))
    assert a.wait(20) == 0 and b.wait(20) == 0


def test_exit_status_and_fence_of_the_command():
    rc, out, _ = ctl("lock", "/locks/e", "--", "sh", "-c", 'echo "$CONFMAN_FENCE"; exit 7')
    assert rc == 7 and int(out) > 0, (rc, out)
    assert ctl("lock", "/locks/e", "--", "/nonexistent/cmd")[0] == 127


# ---- elections ----

def test_second_campaigner_takes_over():
    w = bg("elect", "--watch", "/elect/leader")
    time.sleep(0.5)  # subscribed
    a = bg("elect", "/elect/leader", "node-a", "--ttl", "2s", "--", "sleep", "60")
    end = time.time() + 15
    while ctl("get", "/elect/leader")[1] != b"node-a":
        assert time.time() < end, "node-a never led"
        time.sleep(0.05)
    b = bg("elect", "/elect/leader", "node-b", "--ttl", "2s", "--", "sleep", "60")
    time.sleep(1)
    assert ctl("get", "/elect/leader")[1] == b"node-a"
    kill_session(a.pid)  # the leader's host dies
    t = time.time()
    while ctl("get", "/elect/leader")[1] != b"node-b":
        assert time.time() - t < 2 + 3, "node-b did not take over"
        time.sleep(0.05)
    print("  node-b leads %.2f s after node-a was killed (TTL 2 s)" % (time.time() - t))
    # b resigns: SIGTERM reaches its command, then the value goes with the lease.
    os.kill(b.pid, signal.SIGTERM)
    assert b.wait(10) == 128 + signal.SIGTERM
    assert gone_soon("/elect/leader")
    time.sleep(0.5)
    w.terminate()
    out = w.communicate(timeout=5)[0].decode().split()
    assert out[:2] == ["node-a", "node-b"], out


def main():
    global C, TMP
    TMP = tempfile.mkdtemp(prefix="confman-lease-")
    C = Cluster(base_port=BASE).up()
    try:
        C.leader()
        tests = [test_grant_keepalive_ttl_list_revoke, test_keepalive_keeps_it_past_its_ttl,
                 test_expiry_after_ttl_not_before, test_bad_input,
                 test_second_holder_waits_and_gets_a_higher_fence, test_lock_timeout_exits_124,
                 test_three_waiters_in_fifo_order,
                 test_killed_holder_frees_the_lock_within_its_ttl,
                 test_revoked_lease_stops_the_command, test_shared_holds_overlap,
                 test_exit_status_and_fence_of_the_command, test_second_campaigner_takes_over,
                 test_unreachable_cluster_stops_the_holder_before_its_lease_can_expire]
        wrapped = []
        for t in tests:
            def one(t=t):
                if os.path.exists(f("log")):
                    os.unlink(f("log"))
                try:
                    t()
                finally:
                    kill_all()
            one.__name__ = t.__name__
            wrapped.append(one)
        run(wrapped)
    finally:
        kill_all()
        C.down()
        subprocess.run(["rm", "-rf", TMP])


if __name__ == "__main__":
    main()
