"""test_parity.py: inotify on mount B while mount A changes things, compared
with inotify on a local disk (tmpfs) for the same operations (issue 12, part 4).

Each case is a setup, the watches (files and directories, relative to the
case's directory) and one shell command. It runs twice:
- on tmpfs: setup, watches and command all on the same tmpfs directory;
- on confman: setup through mount A, watches on mount B (after B's kernel
  looked the paths up: the watch holds B's inodes), the command on A.
The events each watch received are normalized (below) and must be the same,
watch by watch, except where INTENDED says (fs/README.md, "inotify parity").

Normalization (each step is a difference fs/README.md explains):
- IN_OPEN, IN_ACCESS and IN_CLOSE_NOWRITE are dropped: they are what A's
  processes did on A's kernel (a read changes nothing, so it never reaches
  the server or B), and the replay of a change opens the file itself;
- runs of the same event are collapsed (IN_MODIFY per write(2) on tmpfs, one
  per commit on B: A commits a file once per close);
- rename cookies become the order of their first appearance, after checking
  that a MOVED_FROM and its MOVED_TO share one;
- sed's temporary names (sedXXXXXX) become "sed*".

Ports: CONFMAN_IT_PORT (default 17960) and up.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, harness  # noqa: E402
from test_notify import Inotify  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "17960"))
A = B = None
TMPFS = None

NAMES = [(0x1, "ACCESS"), (0x2, "MODIFY"), (0x4, "ATTRIB"), (0x8, "CLOSE_WRITE"),
         (0x10, "CLOSE_NOWRITE"), (0x20, "OPEN"), (0x40, "MOVED_FROM"),
         (0x80, "MOVED_TO"), (0x100, "CREATE"), (0x200, "DELETE"),
         (0x400, "DELETE_SELF"), (0x800, "MOVE_SELF"), (0x2000, "UNMOUNT"),
         (0x4000, "Q_OVERFLOW"), (0x8000, "IGNORED"), (0x40000000, "ISDIR")]
DROPPED = 0x1 | 0x10 | 0x20
MOVES = 0x40 | 0x80

PY_REPLACE = ("python3 -c 'import os; f = open(\"f.tmp\", \"w\"); f.write(\"b\\n\"); "
              "f.close(); os.replace(\"f.tmp\", \"f\")'")

# (name, setup, watches, command): watches are relative to the case's
# directory, "." is the directory itself.
CASES = [
    ("sed-i", "echo a > f", ["f", "."], "sed -i s/a/b/ f"),
    ("os-replace", "echo a > f", ["f", "."], PY_REPLACE),
    ("replace-by-mv", "echo a > f && echo b > g", ["f", "g", "."], "mv g f"),
    ("echo-trunc", "echo a > f", ["f", "."], "echo b > f"),
    ("echo-append", "echo a > f", ["f", "."], "echo b >> f"),
    ("chmod", "echo a > f", ["f", "."], "chmod 600 f"),
    ("touch", "echo a > f", ["f", "."], "touch f"),
    ("rm", "echo a > f", ["f", "."], "rm f"),
    ("mv-file", "echo a > f", ["f", "."], "mv f g"),
    ("mv-dir", "mkdir d && echo a > d/f", ["d/f", "d", "."], "mv d d2"),
    ("create", "true", ["."], "echo a > n"),
    ("create-empty", "true", ["."], ": > n"),
    ("touch-new", "true", ["."], "touch n"),
    ("mkdir", "true", ["."], "mkdir e"),
    ("rmdir", "mkdir d", ["d", "."], "rmdir d"),
    ("replace-dir", "mkdir d e", ["d", "e", "."], "mv -T d e"),
]

# Differences that are intended (fs/README.md explains each): case -> watch
# -> the normalized events B gets instead of tmpfs's.
INTENDED = {
    # A file created on A is committed empty at once (O_EXCL holds across
    # mounts), its content on close: B cannot tell a file that stays empty
    # from one whose content follows, and replays the empty create without
    # IN_CLOSE_WRITE, so that a watcher reading on IN_CLOSE_WRITE never reads
    # the empty file of `echo a > n` or of a temporary file being written.
    "create-empty": {".": [("CREATE", 0, "n")]},
}


def mask_str(mask):
    return "|".join(n for bit, n in NAMES if mask & bit) or hex(mask)


def normalize(events):
    """[(mask, cookie, name)] -> [(names, cookie#, name)], as the docstring says."""
    out, cookies = [], {}
    for mask, cookie, name in events:
        if mask & DROPPED and not mask & ~(DROPPED | 0x40000000):
            continue
        name = re.sub(r"^sed[A-Za-z0-9]{6}$", "sed*", name)
        c = 0
        if mask & MOVES:
            c = cookies.setdefault(cookie, len(cookies) + 1)
        ev = (mask_str(mask), c, name)
        if out and out[-1] == ev:
            continue
        out.append(ev)
    for c in set(cookies.values()):  # each cookie: one MOVED_FROM, one MOVED_TO
        kinds = sorted(e[0].split("|")[0] for e in out if e[1] == c)
        assert kinds in (["MOVED_FROM", "MOVED_TO"], ["MOVED_FROM"], ["MOVED_TO"]), out
    return out


def record(base, watches, settle):
    """Watch base/w for each w; drain until settle seconds of quiet.
    Returns ({wd: w}, the Inotify)."""
    ino = Inotify()
    try:
        wds = {}
        for w in watches:
            wds[ino.add(os.path.normpath(os.path.join(base, w)))] = w
        ino.drain(settle)
        return wds, ino
    except BaseException:
        ino.close()
        raise


def collect(ino, wds, settle, want=None, limit=6.0):
    """Events per watch, normalized: until settle seconds of quiet, or (with
    want) until they are want and then settle seconds of quiet, within limit
    (a slow machine may pause between the commits of one command)."""
    got = {w: [] for w in wds.values()}
    end = time.time() + limit
    while time.time() < end:
        evs = ino.read(settle)
        if not evs:
            now = {w: normalize(e) for w, e in got.items()}
            if want is None or now == want:
                break
            continue
        for wd, mask, cookie, name in evs:
            got[wds[wd]].append((mask, cookie, name))
    return {w: normalize(e) for w, e in got.items()}


def run_tmpfs(name, setup, watches, command):
    base = os.path.join(TMPFS, name)
    os.mkdir(base)
    subprocess.run(["sh", "-c", setup], cwd=base, check=True)
    wds, ino = record(base, watches, 0.1)
    try:
        subprocess.run(["sh", "-c", command], cwd=base, check=True)
        return collect(ino, wds, 0.3)
    finally:
        ino.close()


def run_mounts(name, setup, watches, command, want):
    os.mkdir(A.p(name))
    A.sh(setup if setup == "true" else "cd %s && %s" % (name, setup))
    end = time.time() + 5
    for w in watches:  # B's kernel knows each watched path, as A has it
        rel = os.path.normpath(os.path.join(name, w))
        a = os.stat(A.p(rel))
        while not os.path.exists(B.p(rel)) or (
                os.stat(B.p(rel)).st_size, os.stat(B.p(rel)).st_mode) != (a.st_size, a.st_mode):
            assert time.time() < end, "B never saw " + rel + " as A has it"
            time.sleep(0.02)
    wds, ino = record(B.p(name), watches, 0.3)
    try:
        A.sh("cd %s && %s" % (name, command))
        return collect(ino, wds, 0.5, want)
    finally:
        ino.close()


def show(events):
    return " ".join("%s%s%s" % (m, "(%d)" % c if c else "", " " + n if n else "")
                    for m, c, n in events) or "-"


def test_parity_with_tmpfs():
    failures = []
    for name, setup, watches, command in CASES:
        local = run_tmpfs(name, setup, watches, command)
        wants = {w: INTENDED.get(name, {}).get(w, local[w]) for w in watches}
        remote = run_mounts(name, setup, watches, command, wants)
        for w in watches:
            want = wants[w]
            mark = "ok  " if remote[w] == want else "DIFF"
            print("  %s %-13s watch %-4s tmpfs: %s" % (mark, name, w, show(local[w])))
            if remote[w] != local[w]:
                print("  %s %-13s %s      B:     %s" % (" " * 4, "", " " * 4, show(remote[w])))
            if remote[w] != want:
                failures.append("%s, watch %s: B got %s, want %s"
                                % (name, w, show(remote[w]), show(want)))
    assert not failures, "inotify on B differs from tmpfs:\n  " + "\n  ".join(failures)


def test_rewatch_after_replace():
    """What a file-watching library does: on IN_DELETE_SELF read the file
    again and watch it again. Three rounds of sed -i on A, then a write in
    place: each time B's new watch is on the new file and B reads it."""
    os.mkdir(A.p("rw"))
    A.sh("echo v0 > rw/f")
    test_fs.eventually_read(B.p("rw/f"), b"v0\n")
    IN_DELETE_SELF, IN_CLOSE_WRITE = 0x400, 0x8
    for i in range(1, 4):
        ino = Inotify()
        try:
            ino.add(B.p("rw/f"))
            ino.drain(0.2)
            A.sh("sed -i s/v%d/v%d/ rw/f" % (i - 1, i))
            ino.wait_for([(IN_DELETE_SELF, "")])
            assert test_fs.read(B.p("rw/f")) == b"v%d\n" % i
        finally:
            ino.close()
    ino = Inotify()
    try:
        ino.add(B.p("rw/f"))
        ino.drain(0.2)
        A.sh("echo in-place > rw/f")
        ino.wait_for([(IN_CLOSE_WRITE, "")])
        assert test_fs.read(B.p("rw/f")) == b"in-place\n"
    finally:
        ino.close()


def main():
    global A, B, TMPFS
    TMPFS = tempfile.mkdtemp(prefix="confman-parity-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", TMPFS], check=True)
    cluster = None
    ok = False
    try:
        cluster = harness.Cluster(base_port=PORT).up()
        test_fs.CLUSTER = cluster
        cluster.leader()
        # Long kernel cache timeouts: what B shows must come from its watch.
        opts = "timeout=5000,attr_timeout=30,entry_timeout=30"
        A = Mount(cluster, opts)
        B = Mount(cluster, opts)
        try:
            test_fs.harness_run([test_parity_with_tmpfs, test_rewatch_after_replace])
        finally:
            test_fs.unmount_all((A, B))
        ok = test_fs.RESULT[1] == 0
    finally:
        if cluster is not None:
            cluster.down()
        subprocess.run(["umount", "-l", TMPFS], capture_output=True)
        os.rmdir(TMPFS)
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
