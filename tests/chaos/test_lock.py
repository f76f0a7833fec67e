#!/usr/bin/env python3
"""The lock safety checker (RELIABILITY.md, "Locks"): workers take one cluster
lock again and again and, while holding it, write their fencing token to a
fenced resource, under kills of the holder, kills, pauses and partitions of
servers; then: no overlapping tenures at the resource, tokens strictly
increasing, progress after each fault. The same workers against confmand
--test-lock-no-log (locks granted without the log) must be caught.

Workers: 3 chaos-lock-workers (the library), a `confmanctl lock` loop and 2
mount workers (each a confman-fs mount of its own on the host, lock_ttl
1500ms, flock(2) on the lock's file, the token from user.confman.lock_token;
lockcheck.MountWorker). Two more faults: kill -9 of the holding mount's
daemon, and SIGSTOP past the TTL of a holding mount's daemon and its holder
(the host paused: its session is lost, its late "end" must be refused).

3 nodes in network namespaces (netcluster.py: 10.77.X.0/24 picked per run,
port 7001 inside each namespace, nothing on the host's ports). Default:
about 36 s of faults (each waits for the last one's recovery); CONFMAN_SOAK=1:
120 s.
"""
import fcntl
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lockcheck  # noqa: E402
import nemesis  # noqa: E402  (FuseMount)
import netcluster  # noqa: E402
from netcluster import harness  # noqa: E402

LOCK = "/locks/chaos"
TTL_MS = 1500
HOLD_MS = 100
SOAK = os.environ.get("CONFMAN_SOAK") == "1"
FAULT_SECONDS = 120 if SOAK else 36
MOUNTS = 2  # mount workers


def election_ms():
    # tick 20 ms (netcluster), 10 ticks; Raft randomises the timeout up to twice.
    return 2 * 10 * 20


# From the fault's end: the lease's TTL, an election, and a second of margin
# for the expiry's commit, the waiter's wake-up, TLS reconnects and the
# scheduling of 3 servers and 5 clients on 2 cores.
BOUND_MS = TTL_MS + election_ms() + 1000


def strike_holder(fence, workers, kind, k):
    """kill -9 (of a chaos-lock-worker or, every other time, of a `confmanctl
    lock`; kill-mount: of a mount worker's confman-fs) or SIGSTOP past its
    TTL (of a chaos-lock-worker; pause-mount: of a mount worker's confman-fs
    and loop; the fence must refuse the late "end") of a worker while it
    holds the lock: struck from the fence's hook, at its "begin". (time
    struck, worker) or None."""
    want = "ctl" if kind == "kill-holder" and k % 2 else "lib"
    if kind.endswith("mount"):
        want = "mount"
    struck = {}

    def hook(name):
        w = next((w for w in workers if w.name == name), None)
        if w is None or w.kind != want:
            return False
        struck["t"], struck["w"] = time.monotonic_ns(), w
        if kind in ("kill-holder", "kill-mount"):
            w.kill()
        else:
            w.pause()
        return True

    fence.arm(hook)
    end = time.time() + 5
    while "t" not in struck and time.time() < end:
        time.sleep(0.02)
    if "t" not in struck and fence.disarm():
        return None
    while "t" not in struck:  # it struck while being disarmed
        time.sleep(0.01)
    if kind.startswith("pause"):
        time.sleep(TTL_MS / 1000.0 + 0.8)
        struck["w"].resume()
    return struck["t"], struck["w"].name


def faults(c, workers, fence, seconds, rng):
    """Faults one at a time; returns (kind, start_ns, end_ns, victim)."""
    done = []
    end = time.time() + seconds
    kinds = ["kill-holder", "kill-mount", "pause-holder", "kill-leader", "pause-mount",
             "kill-holder", "pause-leader", "kill-mount", "isolate-leader", "kill-follower"]
    k = 0
    while time.time() < end - 4:
        kind = kinds[k % len(kinds)] if k < len(kinds) else rng.choice(kinds)
        k += 1
        time.sleep(rng.uniform(0.8, 1.5))  # calm: the lock moves around
        t0 = time.monotonic_ns()
        victim = None
        if kind.endswith("holder") or kind.endswith("mount"):
            struck = strike_holder(fence, workers, kind, k)
            if struck is None:
                continue
            t0, victim = struck
        else:
            leader = c.find_leader(timeout=10)
            if leader is None:
                continue
            i = leader if kind.endswith("leader") else (leader % 3) + 1
            hold = rng.uniform(1.0, 2.0)
            if kind.startswith("kill"):
                c.kill(i)
                time.sleep(hold)
                c.start(i)
            elif kind.startswith("pause"):
                c.pause(i)
                time.sleep(hold)
                c.resume(i)
            else:
                c.partition([[i], [j for j in (1, 2, 3) if j != i]])
                time.sleep(hold)
                c.heal()
        done.append((kind, t0, time.monotonic_ns(), victim))
        # One at a time: the next fault waits for this one's recovery (a
        # holder other than its victim accepted), or for the bound to pass
        # (check_progress reports that). A leader change while a killed
        # holder's lease runs out would give that lease a fresh TTL at the
        # new leader (lease.c) and charge the delay to this fault.
        since = t0 if victim else done[-1][2]
        wait_end = time.time() + BOUND_MS / 1000.0 + 0.5
        while fence.accepted_since(since, other_than=victim) is None and time.time() < wait_end:
            time.sleep(0.05)
    return done


def scenario(broken, seconds, seed=1):
    extra = ["--test-lock-no-log"] if broken else []
    c = netcluster.NetCluster(nodes=3, extra=extra)
    workers, fence = [], None
    try:
        c.up()
        assert c.find_leader(timeout=30), "no leader"
        hist = os.path.join(c.dir, "history")
        os.makedirs(hist)
        fence = lockcheck.Fence(os.path.join(c.dir, "fence.sock"))
        servers = c.servers()
        run_s = seconds + 3
        for k in range(3):
            workers.append(lockcheck.CWorker("lib%d" % k, servers, LOCK, fence.path, hist,
                                             run_s, TTL_MS, HOLD_MS, seed=seed * 10 + k))
        ctl = [harness.CONFMANCTL, "--servers", servers, "--timeout", "2000"]
        workers.append(lockcheck.CtlWorker("ctl0", ctl, LOCK, fence.path, run_s, TTL_MS,
                                           HOLD_MS))
        opts = "timeout=3000,lock_ttl=%dms" % TTL_MS
        for k in range(MOUNTS):
            workers.append(lockcheck.MountWorker(
                "fs%d" % k, lambda name: nemesis.FuseMount(c, opts, name), LOCK, fence.path,
                hist, run_s, HOLD_MS, seed=seed * 10 + 5 + k))
        for w in workers:
            w.start()
        time.sleep(1.5)
        done = faults(c, workers, fence, seconds, random.Random(seed)) if not broken else []
        if broken:
            time.sleep(seconds)
        c.heal()
        errs = []
        for w in workers:
            errs += w.wait(60)
        assert not errs, "\n".join(errs)
        log = list(fence.log)
        acquires = [a for w in workers for a in w.acquires()]
        v = lockcheck.check_fence(log) + lockcheck.check_tokens(acquires)
        v += lockcheck.check_progress(log, done, BOUND_MS)
        holds = lockcheck.holds_from_fence([e for e in log if e["accepted"]])
        by_worker = {}
        for (w, _t) in holds:
            by_worker[w] = by_worker.get(w, 0) + 1
        refused = sum(1 for e in log if not e["accepted"])
        kinds = {}
        for x in v:
            kinds[x["kind"]] = kinds.get(x["kind"], 0) + 1
        gaps = []
        for kind, t0, t1, victim in done:
            start = t0 if victim else t1
            nxt = next((e["t"] for e in log if e["t"] > start and e["accepted"]
                        and e["worker"] != victim), None)
            gaps.append("%s %s" % (kind, "%.0fms" % ((nxt - start) / 1e6) if nxt else "none"))
        print("  %s: %d holds at the fence (%s), %d writes refused, %d grants recorded, "
              "%d faults; violations %s"
              % ("--test-lock-no-log" if broken else "normal", len(holds), by_worker, refused,
                 len(acquires), len(done), kinds or "none"), flush=True)
        if done:
            print("  lock taken again after each fault (bound %d ms): %s"
                  % (BOUND_MS, ", ".join(gaps)), flush=True)
        for w in workers:
            if w.kind == "ctl":
                rcs = {}
                for _a, _b, rc in w.runs:
                    rcs[rc] = rcs.get(rc, 0) + 1
                print("  %s: confmanctl lock exit codes %s" % (w.name, rcs), flush=True)
            if w.kind == "mount":
                print("  %s: %d mounts, flock_worker exits %s, failed holds %s"
                      % (w.name, w.gen, w.exits, w.errors() or "none"), flush=True)
        mounts = [w.name for w in workers if w.kind == "mount"]
        if v:
            print("  violations involving a mount worker: %d of %d"
                  % (sum(1 for x in v if involves(x, mounts)), len(v)), flush=True)
        for x in v[:3]:
            print("    " + lockcheck.format_violation(x), flush=True)
        assert len(holds) > 20, "too few holds to mean anything"
        for name in mounts:
            assert by_worker.get(name), "mount worker %s never held the lock" % name
        if not broken:
            killed = [f for f in done if f[0] == "kill-mount"]
            assert killed, "no mount's daemon was killed while holding"
        for kind in ("pause-holder", "pause-mount"):
            victims = [f[3] for f in done if f[0] == kind]
            # the paused holder's late "end" came after another's higher token
            assert not victims or any(not e["accepted"] and e["worker"] in victims
                                      for e in log), \
                "%s: a holder paused past its TTL wrote nothing the fence refused" % kind
        return v
    finally:
        for w in workers:
            w.stop()
        if fence:
            fence.close()
        c.down()


def involves(x, names):
    """Whether violation x names one of the workers names."""
    text = lockcheck.format_violation(x)
    return any('"%s"' % n in text for n in names)


def test_lock_without_the_log_is_caught():
    v = scenario(broken=True, seconds=6)
    kinds = ("overlap", "shared token", "token granted twice", "token not increasing",
             "refused while safe")
    assert any(x["kind"] in kinds for x in v), "the lock checker did not catch --test-lock-no-log"
    mounts = ["fs%d" % k for k in range(MOUNTS)]
    assert any(x["kind"] in kinds and involves(x, mounts) for x in v), \
        "no violation names a mount worker: the mount's holds are not checked"


def test_new_open_does_not_inherit_a_closing_files_flock():
    """The kernel names a flock's owner by its struct file, whose memory the
    next open(2) reuses at once (the same lock_owner, seen for successive
    open/flock/close rounds), while the closed file's FUSE_RELEASE (which
    gives its lock back) is a background request: with 12 of those waiting
    for the cluster (the kernel's max_background), it is not even delivered.
    The next open's flock must not find the closing file's hold and call
    it its own."""
    c = netcluster.NetCluster(nodes=3)
    m, fds, paused = None, [], []
    try:
        c.up()
        assert c.find_leader(timeout=30), "no leader"
        m = nemesis.FuseMount(c, "timeout=3000,lock_ttl=5s", "reuse")
        d = os.path.join(m.dir, "locks")
        os.makedirs(d, exist_ok=True)
        for k in range(13):
            with open(os.path.join(d, "f%d" % k), "w"):
                pass
        for k in range(12):
            fds.append(os.open(os.path.join(d, "f%d" % k), os.O_RDWR))
            fcntl.flock(fds[-1], fcntl.LOCK_EX)
        target = os.path.join(d, "f12")
        with open(target) as f:
            f.read()  # cached: the read-only open below asks no server
        fa = os.open(target, os.O_RDONLY)
        fcntl.flock(fa, fcntl.LOCK_EX)
        t1 = int(os.getxattr(fa, "user.confman.lock_token"))
        for i in (1, 2, 3):
            c.pause(i)
            paused.append(i)
        for fd in fds:
            os.close(fd)  # 12 RELEASEs wait for the paused cluster
        fds = []
        os.close(fa)  # its RELEASE waits in the kernel's background queue
        fb = os.open(target, os.O_RDONLY)
        got = {}

        def take():
            try:
                fcntl.flock(fb, fcntl.LOCK_EX)
                got["token"] = int(os.getxattr(fb, "user.confman.lock_token"))
            except OSError as e:
                got["err"] = e
            got["t"] = time.monotonic()

        th = threading.Thread(target=take, daemon=True)
        t0 = time.monotonic()
        th.start()
        th.join(1.0)
        early = "t" in got
        for i in paused:
            c.resume(i)
        paused = []
        th.join(15)
        os.close(fb)
        print("  closing file's token %d; the next open's flock: %s after %.0f ms%s"
              % (t1, got.get("token", got.get("err")), (got.get("t", t0) - t0) * 1000,
                 " (with every server paused)" if early else ""), flush=True)
        assert "token" in got, "flock after the servers resumed: %s" % got.get("err")
        assert got["token"] > t1, \
            "the new open's flock got the closing file's hold (token %d)" % t1
    finally:
        for i in paused:
            c.resume(i)
        for fd in fds:
            os.close(fd)
        if m:
            m.down()
        c.down()


def test_lock_under_faults():
    v = scenario(broken=False, seconds=FAULT_SECONDS)
    assert not v, "\n".join(lockcheck.format_violation(x) for x in v[:10])


if __name__ == "__main__":
    tests = [test_lock_without_the_log_is_caught, test_new_open_does_not_inherit_a_closing_files_flock,
             test_lock_under_faults]
    only = os.environ.get("CONFMAN_TEST_ONLY")
    harness.run([t for t in tests if not only or t.__name__ in only.split(",")])
