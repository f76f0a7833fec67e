"""test_offline_badinput.py: the persistent cache's bad inputs (issue 16;
fs/README.md, "Offline").

- Two mounts of one identity on the same cache directory share it (LMDB's
  lock file): both run, both write through, and both serve offline what
  either cached; a third mount of another prefix on that directory gets an
  environment of its own.
- A cache directory on a full disk (a tmpfs mounted with size=): a mount
  whose cache fills the disk turns its cache off with a log line and keeps
  serving live; a mount whose cache directory cannot even be created comes
  up without a cache. Neither fails to mount.
- With the cluster down, a mount booted on a truncated data.mdb, and one
  on a data.mdb whose first pages are garbage, detects it, logs it,
  discards the environment and comes up (reads: EIO, never a value from
  the damaged file, never a crash).
Ports: CONFMAN_IT_PORT (default 28120) and up.
"""
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, expect_errno, harness  # noqa: E402
from offline_util import cat, wait_for, xattr  # noqa: E402

PORT = int(os.environ.get("CONFMAN_IT_PORT", "28120"))
S = {"tmpfs": [], "dirs": [], "mounts": []}


def mount(opts):
    m = Mount(S["cluster"], "timeout=3000,offline_after=300," + opts)
    S["mounts"].append(m)
    return m


def unmount(m):
    S["mounts"].remove(m)
    m.down()


def tmpdir():
    d = tempfile.mkdtemp(prefix="confman-cache-")
    S["dirs"].append(d)
    return d


def small_tmpfs(size):
    d = tmpdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", d], check=True)
    S["tmpfs"].append(d)
    return d


def data_files(cache_dir):
    return [os.path.join(r, "data.mdb") for r, _, fs in os.walk(cache_dir) if "data.mdb" in fs]


def test_two_mounts_share_one_directory():
    c = S["cluster"]
    d = S["shared"] = tmpdir()
    A = S["A"] = mount("cache=" + d)
    B = S["B"] = mount("cache=" + d)
    A.sh("mkdir -p app && echo a=1 > app/a")
    B.sh("echo b=1 > app/b")
    for m in (A, B):
        wait_for("prefetch", lambda: "prefetch done" in xattr(m.dir, "user.confman.status"))
        wait_for("app/b", lambda: os.path.exists(m.p("app/b")))
        assert cat(m.p("app/a")) == b"a=1\n" and cat(m.p("app/b")) == b"b=1\n"
    sa, sb = xattr(A.dir, "user.confman.status"), xattr(B.dir, "user.confman.status")
    line = [x for x in sa.splitlines() if x.startswith("cache ")]
    assert line and line[0] in sb.splitlines(), (sa, sb)  # one environment
    assert len(data_files(d)) == 1, data_files(d)
    # Another prefix on the same directory: an environment of its own.
    P = mount("cache=%s,prefix=/app" % d)
    assert cat(P.p("a")) == b"a=1\n"
    assert len(data_files(d)) == 2, data_files(d)
    unmount(P)
    c.ctl("put", "/app/c", "c=1\n", check=True)
    wait_for("A and B see app/c", lambda: all(
        os.path.exists(m.p("app/c")) and cat(m.p("app/c")) == b"c=1\n" for m in (A, B)))
    time.sleep(1.2)  # one flush
    print("  two mounts, one environment %s" % line[0], flush=True)


def test_full_disk_degrades_to_no_cache():
    c = S["cluster"]
    # A tmpfs of 64 kB: the environment's first pages fit, 40 values of
    # 4 kB do not.
    small = small_tmpfs("64k")
    F = mount("cache=" + small)
    F.sh("mkdir -p full")
    for i in range(40):
        with open(F.p("full/v%d" % i), "wb") as f:
            f.write(bytes([97 + i % 26]) * 4000)
    wait_for("F's cache off", lambda: "cache: write failed" in F.output(), 10)
    for i in (0, 39):  # still served, live
        assert cat(F.p("full/v%d" % i)) == bytes([97 + i % 26]) * 4000
    F.sh("echo after=1 > full/after")
    assert c.ctl("get", "/full/after", check=True)[1] == b"after=1\n"
    status = xattr(F.dir, "user.confman.status")
    assert "cache off" in status, status
    # A disk already full: the cache directory cannot be made.
    full = small_tmpfs("16k")
    with open(os.path.join(full, "filler"), "wb") as f:
        try:
            f.write(b"x" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    G = mount("cache=" + full)
    assert cat(G.p("full/after")) == b"after=1\n"
    assert "running without a cache" in G.output(), G.output()
    assert "cache none" in xattr(G.dir, "user.confman.status")
    said = [x for x in F.output().splitlines() + G.output().splitlines()
            if "write failed" in x or "without a cache" in x]
    unmount(F)
    unmount(G)
    print("  full tmpfs: cache off, mount live: %s" % said, flush=True)


def test_shared_directory_serves_offline_in_both():
    c = S["cluster"]
    for i in (1, 2, 3):
        c.kill(i)
    A, B = S["A"], S["B"]
    for m in (A, B):
        wait_for("offline", lambda: cat(m.p("app/c")) == b"c=1\n" and
                 xattr(m.p("app/c"), "user.confman.offline") == "1", 10)
        assert sorted(os.listdir(m.p("app"))) == ["a", "b", "c"]
    unmount(A)
    unmount(B)


def damage_and_boot(how, damage):
    """Copy the shared environment, damage its data.mdb, boot a mount on it
    with the cluster down: it must come up, discard, and serve nothing."""
    d = tmpdir()
    shutil.rmtree(d)
    shutil.copytree(S["shared"], d)
    (path,) = [p for p in data_files(d)
               if "prefix /\n" in open(os.path.join(os.path.dirname(p), "identity")).read()]
    size = os.path.getsize(path)
    damage(path, size)
    m = mount("cache=" + d)
    out = m.output()
    try:
        wait_for("offline", lambda: xattr(m.dir, "user.confman.offline") == "1", 5)
        for name in ("app/a", "app/c"):
            try:
                v = cat(m.p(name))
                raise AssertionError("%s: %s served %r" % (how, name, v))
            except OSError as e:
                assert e.errno in (errno.EIO, errno.ENOENT), e
        out = m.output()
        assert "discarded" in out, out
        if how == "truncated":
            assert "cut short" in out, out
    finally:
        unmount(m)
    print("  %s data.mdb (%d bytes): %s" % (how, size, [x for x in out.splitlines()
                                                       if "discarded" in x][:1]), flush=True)


def test_truncated_cache_discarded():
    def cut(path, size):
        with open(path, "r+b") as f:
            f.truncate(max(3 * 4096, size // 2))
    damage_and_boot("truncated", cut)


def test_garbage_cache_discarded():
    def garble(path, size):
        with open(path, "r+b") as f:
            f.write(os.urandom(2 * 4096))  # both meta pages
    damage_and_boot("garbage in the first pages of", garble)


def test_cache_of_zeros_discarded():
    def zero(path, size):
        with open(path, "r+b") as f:
            f.write(b"\0" * size)
    damage_and_boot("zeroed", zero)


def main():
    c = harness.Cluster(base_port=PORT).up()
    test_fs.CLUSTER = c
    S["cluster"] = c
    try:
        c.leader()
        test_fs.harness_run([
            test_two_mounts_share_one_directory,
            test_full_disk_degrades_to_no_cache,
            test_shared_directory_serves_offline_in_both,
            test_truncated_cache_discarded,
            test_garbage_cache_discarded,
            test_cache_of_zeros_discarded])
    finally:
        try:
            for m in list(S["mounts"]):
                if m.proc.poll() is None:
                    m.proc.send_signal(signal.SIGCONT)
                try:
                    print("---- mount %s log ----\n%s" % (m.dir, m.output())
                          if test_fs.RESULT[1] else "", end="", flush=True)
                finally:
                    m.down()
        finally:
            c.down()
            for d in S["tmpfs"]:
                subprocess.run(["umount", d], capture_output=True)
            for d in S["dirs"]:
                shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)


if __name__ == "__main__":
    main()
