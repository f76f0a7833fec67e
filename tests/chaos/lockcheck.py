"""lockcheck.py: the lock safety checker's parts: the fenced resource, the
workers that take the lock and write to it, and the checks of what they
recorded (RELIABILITY.md, "Locks").

The fence is a small service on a Unix socket (a thread of the test): a
write "TOKEN WORKER WHAT SAFE_UNTIL_NS" is accepted when TOKEN is not lower
than the highest token it accepted so far, else rejected; every write is
logged with the fence's CLOCK_MONOTONIC time, in the order the fence decided
them (one lock serialises them: that order is the truth).

Workers are of a type with one interface (start, kill, pause, resume,
holder check, acquires): chaos-lock-worker (the client library, tests/chaos/
lock_worker.c), `confmanctl lock` (a thread running it again and again
with a command that writes $CONFMAN_FENCE) and a mount worker (flock(2) on
a file of a confman-fs mount of its own, the token from its
user.confman.lock_token xattr: tests/chaos/flock_worker.py).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../integration"))
import harness  # noqa: E402

LOCK_WORKER = os.path.join(harness.BUILD, "tests/chaos/chaos-lock-worker")
FLOCK_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flock_worker.py")


class Fence:
    """The fenced resource: rejects any token lower than the highest accepted."""

    def __init__(self, path):
        self.path = path
        self.log = []  # dicts: t, token, worker, what, safe, accepted
        self.max = 0
        self.mu = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.closed = False
        self.hook = None  # one-shot: fn(worker) -> bool, at an accepted "begin"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(256)
                    if not chunk:
                        return
                    data += chunk
                token, worker, what, safe = data.decode().split()
                token, safe = int(token), int(safe)
            except (OSError, ValueError):
                return
            with self.mu:
                ok = token >= self.max
                if ok:
                    self.max = token
                self.log.append({"t": time.monotonic_ns(), "token": token, "worker": worker,
                                 "what": what, "safe": safe, "accepted": ok})
                ans = "ok\n" if ok else "no %d\n" % self.max
                hook = self.hook if ok and what == "begin" else None
                if hook and hook(worker):
                    self.hook = None  # e.g. SIGSTOP or kill -9 of that holder, mid-hold
            try:
                conn.sendall(ans.encode())
            except OSError:
                pass

    def arm(self, hook):
        """Call hook(worker) at the next accepted "begin" (before its answer),
        until it returns True: a fault that strikes a holder while it holds."""
        with self.mu:
            self.hook = hook

    def disarm(self):
        with self.mu:
            hook, self.hook = self.hook, None
        return hook is None

    def last_holder(self):
        """(worker, token) of the last accepted write, or None."""
        with self.mu:
            for e in reversed(self.log):
                if e["accepted"]:
                    return e["worker"], e["token"]
        return None

    def accepted_since(self, t_ns, other_than=None):
        """Time of the first accepted write after t_ns (not by worker other_than)."""
        with self.mu:
            for e in self.log:
                if e["t"] > t_ns and e["accepted"] and e["worker"] != other_than:
                    return e["t"]
        return None

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class CWorker:
    """chaos-lock-worker: the client library, a keeper thread, a fence write at
    the start and at the end of each hold. Restarted (a new process, a new
    lease) after a kill."""
    kind = "lib"

    def __init__(self, name, servers, lock, fence, outdir, seconds, ttl_ms, hold_ms=100, seed=1):
        self.name, self.servers, self.lock, self.fence = name, servers, lock, fence
        self.outdir, self.seconds, self.ttl_ms, self.hold_ms = outdir, seconds, ttl_ms, hold_ms
        self.seed, self.gen, self.procs, self.end = seed, 0, [], None

    def start(self):
        if self.end is None:
            self.end = time.time() + self.seconds
        left = self.end - time.time()
        if left <= 0.5:
            return
        self.gen += 1
        out = os.path.join(self.outdir, "%s.%d.jsonl" % (self.name, self.gen))
        self.procs.append(subprocess.Popen(
            [LOCK_WORKER, "--servers", self.servers, "--worker", self.name, "--lock", self.lock,
             "--fence", self.fence, "--out", out, "--seconds", "%.1f" % left,
             "--ttl-ms", str(self.ttl_ms), "--hold-ms", str(self.hold_ms),
             "--seed", str(self.seed * 100 + self.gen)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))

    def pid(self):
        return self.procs[-1].pid if self.procs and self.procs[-1].poll() is None else None

    def kill(self):
        """kill -9 the running process (its lease is left to expire), start anew."""
        p = self.procs[-1]
        if p.poll() is None:
            p.kill()
            p.wait()
        self.start()

    def pause(self):
        os.kill(self.procs[-1].pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.procs[-1].pid, signal.SIGCONT)

    def wait(self, timeout):
        errs = []
        for p in self.procs:
            try:
                out, _ = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                errs.append("%s did not end: %s" % (self.name, out))
                continue
            if p.returncode not in (0, -9):
                errs.append("%s exited %s: %s" % (self.name, p.returncode, out))
        return errs

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def acquires(self):
        """Granted holds: dicts worker, token, invoke, complete (ns)."""
        return read_acquires(self.outdir, self.name, self.gen)


# The command `confmanctl lock` runs: begin, hold, end, as chaos-lock-worker
# does, with no safe-until (0: the checker holds it to the fence's rules only).
CTL_CMD = r"""
import os, socket, sys, time
def w(what):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    s.sendall(("%s %s %s 0\n" % (os.environ["CONFMAN_FENCE"], sys.argv[2], what)).encode())
    s.recv(64); s.close()
w("begin"); time.sleep(float(sys.argv[3])); w("end")
"""


class CtlWorker:
    """`confmanctl lock PATH --ttl T -- python3 -c CTL_CMD`, again and again,
    from a thread; kill() is kill -9 of the running confmanctl (its command
    lives on, orphaned, and writes its "end" late: the fence must refuse it
    once another holder wrote)."""
    kind = "ctl"

    def __init__(self, name, ctl_prefix, lock, fence, seconds, ttl_ms, hold_ms=100):
        self.name, self.prefix, self.lock, self.fence = name, ctl_prefix, lock, fence
        self.seconds, self.ttl_ms, self.hold_ms = seconds, ttl_ms, hold_ms
        self.proc, self.runs, self.errs = None, [], []
        self.mu = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        if not self.thread.is_alive() and not self.stopping:
            self.thread.start()

    def _loop(self):
        end = time.time() + self.seconds
        while not self.stopping and time.time() < end:
            cmd = self.prefix + ["lock", self.lock, "--ttl", "%dms" % self.ttl_ms,
                                 "--timeout", "5s", "--", sys.executable, "-c", CTL_CMD,
                                 self.fence, self.name, "%.3f" % (self.hold_ms / 1000.0)]
            t0 = time.monotonic_ns()
            with self.mu:
                self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True)
            out, _ = self.proc.communicate()
            rc = self.proc.returncode
            self.runs.append((t0, time.monotonic_ns(), rc))
            # 0 held; 124 waited too long; 125 lost the lease; -9 killed by
            # the test; 1-7 a request failed (a fault): all expected here.
            if rc not in (0, 124, 125, -9) and not 1 <= rc <= 7:
                self.errs.append("confmanctl lock exited %s: %s" % (rc, out[-400:]))

    def pid(self):
        with self.mu:
            return self.proc.pid if self.proc and self.proc.poll() is None else None

    def kill(self):
        with self.mu:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()

    def pause(self):
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGSTOP)
        self._paused = pid

    def resume(self):
        if getattr(self, "_paused", None):
            try:
                os.kill(self._paused, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.stop()
            return ["%s did not end" % self.name] + self.errs
        return self.errs

    def stop(self):
        self.stopping = True
        self.kill()
        self.thread.join(10)

    def acquires(self):
        return []  # no client-side record: its holds are the fence's


class MountWorker:
    """A confman-fs mount of its own (mount_factory(name): an object with
    .dir, .proc (the daemon) and .down(), e.g. nemesis.FuseMount with
    lock_ttl set) and flock_worker.py looping on the lock's file there, from
    a supervisor thread. kill() is kill -9 of the mount's daemon (its
    session lease is left to expire; its loop writes its "end" and then
    finds the mount gone): the thread then unmounts the dead mount (umount
    -l) and starts a new mount and loop, as a restarted host would."""
    kind = "mount"

    def __init__(self, name, mount_factory, lock, fence, outdir, seconds, hold_ms=100, seed=1):
        self.name, self.factory, self.lock, self.fence = name, mount_factory, lock, fence
        self.outdir, self.seconds, self.hold_ms, self.seed = outdir, seconds, hold_ms, seed
        self.gen, self.mount, self.proc, self.errs = 0, None, None, []
        self.killed_gen = None  # the mount generation kill() struck
        self.exits = {}  # loop exit status -> count
        self.mu = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        if not self.thread.is_alive() and not self.stopping:
            self.thread.start()

    def _file(self, m):
        """The lock's file on mount m (created if missing), or None."""
        path = os.path.join(m.dir, self.lock.lstrip("/"))
        end = time.time() + 10
        while not self.stopping:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "a"):
                    pass
                return path
            except OSError as e:  # a server fault: the create timed out
                if time.time() > end:
                    self.errs.append("%s: cannot create %s: %s" % (self.name, path, e))
                    return None
                time.sleep(0.2)
        return None

    def _loop(self):
        end = time.time() + self.seconds
        while not self.stopping and time.time() < end - 0.5:
            self.gen += 1
            try:
                m = self.factory("%s.%d" % (self.name, self.gen))
            except RuntimeError as e:
                self.errs.append("%s: %s" % (self.name, e))
                return
            with self.mu:
                self.mount = m
            path = self._file(m)
            rc = None
            if path:
                out = os.path.join(self.outdir, "%s.%d.jsonl" % (self.name, self.gen))
                p = subprocess.Popen(
                    [sys.executable, FLOCK_WORKER, "--file", path, "--fence", self.fence,
                     "--worker", self.name, "--out", out,
                     "--seconds", "%.1f" % max(0.1, end - time.time()),
                     "--hold-ms", str(self.hold_ms), "--seed", str(self.seed * 100 + self.gen)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                with self.mu:
                    self.proc = p
                text, _ = p.communicate()
                rc = p.returncode
                self.exits[rc] = self.exits.get(rc, 0) + 1
                # 0 ran its time; 3 its mount's daemon was killed; -9 stopped.
                if rc not in (0, 3, -9):
                    self.errs.append("%s: flock_worker exited %s: %s" % (self.name, rc, text[-600:]))
            killed = m.proc.poll() is not None
            if killed and self.killed_gen != self.gen:
                self.errs.append("%s: confman-fs exited by itself (%s), see %s"
                                 % (self.name, m.proc.returncode, m.logpath))
            san = m.down()  # fusermount3 -u, or umount -l of a dead mount
            if san:
                self.errs.append("%s: confman-fs sanitizer report:\n%s" % (self.name, san[-3000:]))
            if rc != 3 and not killed:
                return

    def pid(self):
        with self.mu:
            return self.proc.pid if self.proc and self.proc.poll() is None else None

    def kill(self):
        """kill -9 of the mount's daemon (fast: the fence's hook calls it)."""
        with self.mu:
            if self.mount and self.mount.proc.poll() is None:
                self.killed_gen = self.gen
                self.mount.proc.kill()

    def pause(self):
        """SIGSTOP of the host: the mount's daemon (its keepalives stop, the
        session lease runs out) and the loop (its "end" comes late)."""
        with self.mu:
            m, p = self.mount, self.proc
        self._paused = [x.pid for x in (m.proc if m else None, p)
                        if x is not None and x.poll() is None]
        for pid in self._paused:
            os.kill(pid, signal.SIGSTOP)

    def resume(self):
        for pid in getattr(self, "_paused", []):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._paused = []

    def wait(self, timeout):
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.stop()
            return ["%s did not end" % self.name] + self.errs
        return self.errs

    def stop(self):
        self.stopping = True
        self.resume()
        with self.mu:
            p = self.proc
        if p and p.poll() is None:
            p.kill()
        self.thread.join(30)
        with self.mu:
            m = self.mount
        if self.thread.is_alive() and m is not None:
            m.proc.kill()  # the thread is stuck on it: the unmount below frees it
            m.down()

    def acquires(self):
        return read_acquires(self.outdir, self.name, self.gen)

    def errors(self):
        """errno name -> count of failed holds (faults: EIO, ENOLCK, waited)."""
        out = {}
        for g in range(1, self.gen + 1):
            for e in _jsonl(os.path.join(self.outdir, "%s.%d.jsonl" % (self.name, g))):
                if e.get("err"):
                    out[e["err"]] = out.get(e["err"], 0) + 1
        return out


def _jsonl(path):
    try:
        with open(path) as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # the last line of a killed process
    except OSError:
        return


def read_acquires(outdir, name, gens):
    """Granted holds in NAME.1.jsonl .. NAME.GENS.jsonl: dicts worker, token,
    invoke, complete (ns)."""
    out = []
    for g in range(1, gens + 1):
        for e in _jsonl(os.path.join(outdir, "%s.%d.jsonl" % (name, g))):
            if e["ev"] == "acquire" and not e["err"]:
                out.append({"worker": e["worker"], "token": e["token"],
                            "invoke": e["invoke"], "complete": e["complete"]})
    return out


# ---- the checks

def holds_from_fence(log):
    """Holds as the fence saw them: (worker, token) -> first and last write."""
    holds = {}
    for e in log:
        h = holds.setdefault((e["worker"], e["token"]), {"first": e["t"], "last": e["t"]})
        h["last"] = e["t"]
    return holds


def check_fence(log):
    """Violations in the fence's log:
    - shared token: two workers accepted with the same token (two grants
      with one token, or one token given to two holders at once);
    - overlap: holder X accepted, then another holder, then X again: the
      resource saw their tenures overlap;
    - refused while safe: a write rejected although its holder's lease was
      provably alive (the fence time is before its safe-until: a keepalive
      answered with that much time left), so the lock went to a higher
      token while its holder still held it."""
    v = []
    owner = {}
    seen_after = {}  # holder -> whether another holder was accepted since
    last = None
    for e in log:
        h = (e["worker"], e["token"])
        if e["accepted"]:
            o = owner.setdefault(e["token"], e["worker"])
            if o != e["worker"]:
                v.append({"kind": "shared token", "e": e, "other": o})
            if last is not None and last != h:
                seen_after[last] = True
            if seen_after.get(h):
                v.append({"kind": "overlap", "e": e, "other": last})
            last = h
        elif e["safe"] and e["t"] < e["safe"]:
            v.append({"kind": "refused while safe", "e": e,
                      "safe_left_ms": (e["safe"] - e["t"]) / 1e6})
    return v


def check_tokens(acquires):
    """Tokens strictly increase across grants: a grant that completed before
    another was asked for has a lower token; no token is granted twice."""
    v = []
    byt = {}
    for a in acquires:
        byt.setdefault(a["token"], []).append(a)
    for t, grants in byt.items():
        if len(grants) > 1:
            v.append({"kind": "token granted twice", "token": t,
                      "workers": [g["worker"] for g in grants]})
    done = sorted(acquires, key=lambda a: a["complete"])
    by_invoke = sorted(acquires, key=lambda a: a["invoke"])
    k, best = 0, None
    for b in by_invoke:
        while k < len(done) and done[k]["complete"] < b["invoke"]:
            if best is None or done[k]["token"] > best["token"]:
                best = done[k]
            k += 1
        if best is not None and best["token"] >= b["token"]:
            v.append({"kind": "token not increasing", "before": best, "after": b})
    return v


def check_progress(log, faults, bound_ms):
    """After each fault (kind, start_ns, end_ns, worker killed or None) the
    lock is taken again within bound_ms: a write accepted from another holder
    than a killed one, counted from the kill (its lease then ends within its
    TTL) or from the end of a server fault (TTL + election time)."""
    v = []
    for kind, t0, t1, victim in faults:
        start = t0 if victim else t1
        nxt = next((e["t"] for e in log if e["t"] > start and e["accepted"]
                    and e["worker"] != victim), None)
        gap = (nxt - start) / 1e6 if nxt else None
        if gap is None or gap > bound_ms:
            v.append({"kind": "no progress", "fault": kind, "gap_ms": gap, "bound_ms": bound_ms})
    return v


def format_violation(x):
    return json.dumps(x, sort_keys=True)
