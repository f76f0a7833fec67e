"""workloads.py: the nemesis's two-mount workloads and their end checks.

AppendWorkload: processes (python3 workloads.py append ...), half on each
mount, append unique lines ("a<P>-<seq>") to a few files with
open(O_WRONLY|O_APPEND) + write + close, as `echo LINE >> f` does. An
append is acknowledged when close(2) returned 0, failed when open(2)
failed (nothing was sent), unknown otherwise (write or close failed: EIO,
ETIMEDOUT). check(): every acknowledged line is in its file exactly once,
an unknown one at most once, a failed one and any line nobody appended not
at all.

RenameRace: mount A renames directories /chaos/r/d<K>-g<N> to
d<K>-g<N+1> while mount B creates files in them (open(O_CREAT|O_EXCL),
write a unique value, close), each in the directory's latest name B was
told of. POSIX: a file belongs to the directory it was created in, whatever
that directory is called later. check(): each directory (found by the
.id file made at setup) exists exactly once, under a name the renamer gave
it (its last one, unless that rename's outcome is unknown); no other name
it ever had exists; every acknowledged file is in its directory's final
name with its value and nowhere else; an unknown one at most there.

Both read the final state through confmanctl (linearizable), after the
nemesis restarted every node.
"""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

APPEND_DIR = "/chaos/a"
RENAME_DIR = "/chaos/r"


def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def _ls(c, path):
    """Names in a directory (linearizable), or None when it does not exist."""
    rc, out, err = c.ctl("--timeout", "5000", "ls", path)
    if rc == 3:
        return None
    if rc != 0:
        raise AssertionError("ls %s: %d %s" % (path, rc, err))
    return [n.rstrip("/") for n in out.decode(errors="replace").split("\n") if n]


def _get(c, path):
    rc, out, err = c.ctl("--timeout", "5000", "get", path)
    if rc == 3:
        return None
    if rc != 0:
        raise AssertionError("get %s: %d %s" % (path, rc, err))
    return out.decode(errors="replace")


# ---------------------------------------------------------------- appends

def append_main(argv):
    """append MOUNT_DIR PROCESS SECONDS SEED OUT FILE..."""
    mdir, proc, secs, seed, out = argv[0], int(argv[1]), float(argv[2]), int(argv[3]), argv[4]
    files = argv[5:]
    rng = random.Random(seed)
    end = time.time() + secs
    seq = 0
    with open(out, "w") as f:
        while time.time() < end:
            seq += 1
            name = rng.choice(files)
            line = "a%d-%d" % (proc, seq)
            rec = {"process": proc, "file": name, "line": line}
            try:
                fd = os.open(mdir + name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                rec.update(outcome="fail", err=_err(e))
                f.write(json.dumps(rec) + "\n")
                f.flush()
                time.sleep(0.05)
                continue
            rec["outcome"] = "ok"
            try:
                os.write(fd, (line + "\n").encode())
            except OSError as e:
                rec.update(outcome="unknown", err=_err(e))
            try:
                os.close(fd)
            except OSError as e:
                rec.update(outcome="unknown", err=_err(e))
            f.write(json.dumps(rec) + "\n")
            f.flush()
            time.sleep(rng.uniform(0, 0.03))


class AppendWorkload:
    FILES = [APPEND_DIR + "/f%d" % k for k in range(3)]

    def __init__(self, mounts, hist_dir, seconds, seed, per_mount=2):
        self.mounts, self.hist_dir, self.seconds, self.seed = mounts, hist_dir, seconds, seed
        self.per_mount = per_mount
        self.procs, self.outs = [], []

    def start(self):
        p = 200
        for m in self.mounts:
            for _ in range(self.per_mount):
                p += 1
                out = os.path.join(self.hist_dir, "append-p%d.json" % p)
                self.outs.append(out)
                self.procs.append(subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "append", m.dir, str(p),
                     str(self.seconds), str(self.seed + p), out] + self.FILES,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    start_new_session=True))

    def join(self, timeout=120):
        problems = []
        for p in self.procs:
            try:
                out, _ = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                problems.append("append: a process hung (an operation > %ds)" % timeout)
            if p.returncode != 0:
                problems.append("append: process exited %s: %s" % (p.returncode, out[-2000:]))
        return problems

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def records(self):
        recs = []
        for out in self.outs:
            if os.path.exists(out):
                with open(out) as f:
                    recs += [json.loads(ln) for ln in f if ln.strip()]
        return recs

    def check(self, c):
        """(problems, summary) from the files as the cluster serves them."""
        recs = self.records()
        summary = {"ok": 0, "unknown": 0, "fail": 0}
        for r in recs:
            summary[r["outcome"]] += 1
        problems = []
        for name in self.FILES:
            content = _get(c, name) or ""
            lines = content.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            count = {}
            for ln in lines:
                count[ln] = count.get(ln, 0) + 1
            mine = {r["line"]: r for r in recs if r["file"] == name}
            for line, r in mine.items():
                n = count.get(line, 0)
                if r["outcome"] == "ok" and n != 1:
                    problems.append("append: acknowledged %s in %s %d times" % (line, name, n))
                elif r["outcome"] == "unknown" and n > 1:
                    problems.append("append: unknown-outcome %s in %s %d times" % (line, name, n))
                elif r["outcome"] == "fail" and n:
                    problems.append("append: %s in %s although its open failed (%s)"
                                    % (line, name, r.get("err")))
            for line in count:
                if line not in mine:
                    problems.append("append: %s holds %r, which nobody appended to it"
                                    % (name, line[:80]))
        summary["lines_checked"] = len(recs)
        return problems, summary


# ---------------------------------------------------------------- renames

class RenameRace:
    """Renames on mount a, creates/writes/closes on mount b (two threads)."""
    DIRS = 3

    def __init__(self, mount_a, mount_b, seconds, seed):
        self.a, self.b, self.seconds = mount_a.dir, mount_b.dir, seconds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.gen = {k: 0 for k in range(self.DIRS)}       # latest name B is told of
        self.names = {k: ["d%d-g0" % k] for k in range(self.DIRS)}  # every name given
        self.unknown_rename = {k: False for k in range(self.DIRS)}
        self.never = []   # names of renames known not to have happened (none now:
        #                   an unknown rename freezes its directory instead)
        self.log = []     # (start, end, old, new, outcome) of every rename (wall clock)
        self.renames = {"ok": 0, "fail": 0, "unknown": 0}
        self.files = []   # {dir, name, value, outcome, err}
        self.stopping = threading.Event()
        self.quiet = threading.Event()  # set: the renamer (mount A) holds still
        self.threads = []

    def setup(self, c):
        self.c = c
        for k in range(self.DIRS):
            c.ctl("mkdir", "%s/d%d-g0" % (RENAME_DIR, k), check=True)
            c.ctl("put", "%s/d%d-g0/.id" % (RENAME_DIR, k), str(k), check=True)

    def start(self):
        self.threads = [threading.Thread(target=self._renamer, daemon=True),
                        threading.Thread(target=self._creator, daemon=True)]
        for t in self.threads:
            t.start()

    def _renamer(self):
        end = time.time() + self.seconds
        while time.time() < end and not self.stopping.is_set():
            if self.quiet.is_set():
                time.sleep(0.05)
                continue
            k = self.rng.randrange(self.DIRS)
            with self.lock:
                old = self.names[k][-1]
                new = "d%d-g%d" % (k, len(self.names[k]))
            if self.unknown_rename[k]:
                # A rename of unknown outcome may still take effect at any
                # later time (Jepsen's :info): an entry in flight can commit
                # after any check. The directory is not renamed again, and
                # the check allows either name.
                time.sleep(0.05)
                continue
            t0 = time.time()
            try:
                os.rename("%s%s/%s" % (self.a, RENAME_DIR, old),
                          "%s%s/%s" % (self.a, RENAME_DIR, new))
                outcome = "ok"
            except OSError as e:
                outcome = "fail" if e.errno in (errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY) \
                    else "unknown"
            self.renames[outcome] += 1
            self.log.append((t0, time.time(), old, new, outcome))
            if outcome != "fail":
                with self.lock:
                    self.names[k].append(new)
                    if outcome == "ok":
                        self.gen[k] = len(self.names[k]) - 1
                self.unknown_rename[k] = outcome == "unknown"
            time.sleep(self.rng.uniform(0.02, 0.15))

    def _creator(self):
        end = time.time() + self.seconds
        seq = 0
        while time.time() < end and not self.stopping.is_set():
            seq += 1
            k = self.rng.randrange(self.DIRS)
            with self.lock:
                dname = self.names[k][self.gen[k]]
            fname, value = "w%d" % seq, "v%d-%d" % (seq, self.rng.randrange(1 << 30))
            rec = {"dir": k, "name": fname, "value": value, "opened_in": dname,
                   "t_open": time.time()}
            try:
                fd = os.open("%s%s/%s/%s" % (self.b, RENAME_DIR, dname, fname),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as e:
                # the create is a PUT of its own: sent unless the lookup failed
                gone = e.errno in (errno.ENOENT, errno.EEXIST)
                rec.update(outcome="fail" if gone else "unknown", err=_err(e))
                self.files.append(rec)
                continue
            rec["outcome"] = "ok"
            try:
                os.write(fd, value.encode())
                time.sleep(self.rng.uniform(0, 0.05))  # renames land in here
            except OSError as e:
                rec.update(outcome="unknown", err=_err(e))
            try:
                rec["t_close"] = time.time()
                os.close(fd)
            except OSError as e:
                rec.update(outcome="unknown", err=_err(e))
            rec["t_end"] = time.time()
            self.files.append(rec)

    def _story(self, r):
        """When the file's open and close ran, and its directory's renames then."""
        t0, t1 = r["t_open"], r.get("t_end", r["t_open"])
        rn = ["%s->%s %s [%.3f, %.3f]" % (o, n, oc, a, b) for a, b, o, n, oc in self.log
              if o.startswith("d%d-" % r["dir"]) and b >= t0 - 0.5 and a <= t1 + 0.5]
        return ("\n    opened in %s at %.3f, close from %.3f to %.3f; renames of its"
                " directory around then: %s" % (r["opened_in"], t0, r.get("t_close", 0), t1,
                                                "; ".join(rn) or "none"))

    def join(self, timeout=120):
        for t in self.threads:
            t.join(timeout)
        if any(t.is_alive() for t in self.threads):
            self.stopping.set()
            return ["rename race: a thread hung (an operation > %ds)" % timeout]
        return []

    def dump(self, path):
        with open(path, "w") as f:
            json.dump({"names": self.names, "never": self.never, "renames": self.log,
                       "files": self.files}, f)

    def check(self, c):
        problems = []
        top = _ls(c, RENAME_DIR) or []
        final = {}
        for n in top:
            got = _get(c, "%s/%s/.id" % (RENAME_DIR, n))
            k = int(got) if got is not None and got.strip().isdigit() else None
            if k is None or n not in self.names.get(k, ()) or n in self.never:
                problems.append("rename: %s/%s exists; no directory was given that name"
                                " (.id %r)" % (RENAME_DIR, n, got))
                continue
            if k in final:
                problems.append("rename: directory %d exists twice: %s and %s"
                                % (k, final[k], n))
            final[k] = n
        for k in range(self.DIRS):
            if k not in final:
                problems.append("rename: directory %d (names %s) is gone" % (k, self.names[k]))
                continue
            last = self.names[k][-1]
            allowed = {last} | ({self.names[k][-2]} if self.unknown_rename[k] else set())
            if final[k] not in allowed:
                problems.append("rename: directory %d is %s, its last name is %s"
                                % (k, final[k], last))
        # every file where POSIX says, and nowhere else
        where = {}
        for k, n in final.items():
            for f in _ls(c, "%s/%s" % (RENAME_DIR, n)) or []:
                if f != ".id":
                    where.setdefault(f, []).append((k, n))
        acked = 0
        for r in self.files:
            places = where.pop(r["name"], [])
            if r["outcome"] == "fail":
                if places:
                    problems.append("rename: %s exists in %s although its open failed"
                                    % (r["name"], places))
                continue
            want = (r["dir"], final.get(r["dir"]))
            if r["outcome"] == "ok":
                acked += 1
                if places != [want]:
                    problems.append("rename: acknowledged %s (created in %s, dir %d) is in %s,"
                                    " POSIX says %s" % (r["name"], r["opened_in"], r["dir"],
                                                        places, want[1]))
                    continue
            elif places and places != [want]:
                problems.append("rename: unknown-outcome %s is in %s (dir %d is %s)"
                                % (r["name"], places, r["dir"], want[1]))
                continue
            if places:
                got = _get(c, "%s/%s/%s" % (RENAME_DIR, want[1], r["name"]))
                if r["outcome"] == "ok" and got != r["value"]:
                    problems.append("rename: acknowledged %s/%s holds %r, not %r%s"
                                    % (want[1], r["name"], got, r["value"], self._story(r)))
                elif r["outcome"] == "unknown" and got not in (r["value"], ""):
                    problems.append("rename: unknown-outcome %s/%s holds %r"
                                    % (want[1], r["name"], got))
        for f, places in where.items():
            problems.append("rename: %s in %s, which nobody created" % (f, places))
        summary = dict(self.renames)
        summary.update(files_ok=acked, files=len(self.files))
        return problems, summary


if __name__ == "__main__":
    if sys.argv[1] == "append":
        append_main(sys.argv[2:])
    else:
        sys.exit("usage: workloads.py append MOUNT_DIR PROCESS SECONDS SEED OUT FILE...")


class TwoMountWorkloads:
    """A second mount (B) and the append and rename-race workloads on the
    nemesis's mount (A) and B. make_mount(name) mounts one more."""

    def __init__(self, c, mount_a, make_mount, hist_dir, seconds, seed):
        self.c, self.a = c, mount_a
        self.b = make_mount("2")
        self.appends = AppendWorkload([mount_a, self.b], hist_dir, seconds, seed)
        # On unless CONFMAN_CHAOS_RENAME_RACE=0 (it found acknowledged files
        # left empty: RELIABILITY.md, anomaly 5, fixed).
        self.race = RenameRace(mount_a, self.b, seconds, seed) \
            if os.environ.get("CONFMAN_CHAOS_RENAME_RACE", "1") == "1" else None

    def start(self):
        self.c.ctl("mkdir", APPEND_DIR, check=True)
        if self.race:
            self.race.setup(self.c)
            self.race.start()
        self.appends.start()

    def join(self):
        return self.appends.join() + (self.race.join() if self.race else [])

    def check(self):
        """(problems, summary) on the final state (after every node restarted)."""
        p1, s1 = self.appends.check(self.c)
        if not self.race:
            return p1, {"appends": s1}
        self.race.dump(os.path.join(self.appends.hist_dir, "rename-race.json"))
        p2, s2 = self.race.check(self.c)
        return p1 + p2, {"appends": s1, "renames": s2}

    def hold_a(self, on):
        """Stop (on) or resume what works on mount A: its appenders
        (SIGSTOP) and the renamer (watchfault.watch_node wants A quiet)."""
        if self.race:
            (self.race.quiet.set if on else self.race.quiet.clear)()
        for p in self.appends.procs[:self.appends.per_mount]:  # mount A's
            if p.poll() is None:
                os.kill(p.pid, signal.SIGSTOP if on else signal.SIGCONT)

    def down(self):
        """Stop everything; returns the second mount's sanitizer output or ''."""
        self.appends.kill()
        if self.race:
            self.race.stopping.set()
        return self.b.down()
