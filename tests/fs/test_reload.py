"""test_reload.py: examples/config_reload.c end to end on confman-fs.

A 3-node cluster and two mounts (A, B). config-reload runs on B's copy of
the file; the file is changed through mount A, through confmanctl, and by
write-temp-then-rename on A; each time the application prints the new
content within 2 s (it learns of the change only from inotify on B, which
the mount replays from the server's watch stream). SIGTERM ends it with 0.
Ports: CONFMAN_IT_PORT (default 17800) and up.
"""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, harness, eventually_read  # noqa: E402

APP = os.environ.get("CONFMAN_RELOAD", os.path.join(harness.BUILD, "examples/config-reload"))
PORT = int(os.environ.get("CONFMAN_IT_PORT", "17800"))

CLUSTER = None
A = None
B = None


class App:
    """config-reload PATH; its stdout lines are collected by a thread."""

    def __init__(self, path):
        self.lines = []
        self.cv = threading.Condition()
        self.proc = subprocess.Popen([APP, path], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()

    def _reader(self):
        for raw in self.proc.stdout:
            with self.cv:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cv.notify_all()

    def wait_line(self, want, timeout, start=0):
        """Index of the first line from index start equal to want."""
        end = time.time() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.lines)):
                    if self.lines[i] == want:
                        return i
                left = end - time.time()
                if left <= 0:
                    raise AssertionError("config-reload did not print %r within %ss; printed %r"
                                         % (want, timeout, self.lines[start:]))
                self.cv.wait(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.t.join(5)
        return self.proc.returncode


def test_app_reloads_on_changes_from_everywhere():
    A.sh("mkdir -p app && printf 'port=1\\nname=a\\n' > app/app.conf")
    assert eventually_read(B.p("app/app.conf"), b"port=1\nname=a\n") == b"port=1\nname=a\n"
    app = App(B.p("app/app.conf"))
    try:
        at = app.wait_line("loaded 2 keys: port=1 name=a", 5)
        time.sleep(0.3)  # the watch is in place before the first load

        # 1. through mount A
        t0 = time.time()
        A.sh("printf 'port=2\\nname=a\\n' > app/app.conf")
        at = app.wait_line("loaded 2 keys: port=2 name=a", 2, at + 1)
        print("  via mount A: %.0f ms" % ((time.time() - t0) * 1000))

        # 2. through confmanctl
        t0 = time.time()
        CLUSTER.ctl("put", "/app/app.conf", "port=3\nname=ctl\nmode=x\n", check=True)
        at = app.wait_line("loaded 3 keys: port=3 name=ctl mode=x", 2, at + 1)
        print("  via confmanctl: %.0f ms" % ((time.time() - t0) * 1000))

        # 3. write-temp-then-rename on A (as editors save)
        t0 = time.time()
        A.sh("printf 'port=4\\n' > app/.app.conf.tmp && mv app/.app.conf.tmp app/app.conf")
        at = app.wait_line("loaded 1 keys: port=4", 2, at + 1)
        print("  via rename on A: %.0f ms" % ((time.time() - t0) * 1000))

        # and once more through A after the rename (the name is a new node now)
        A.sh("printf 'port=5\\n' > app/app.conf")
        app.wait_line("loaded 1 keys: port=5", 2, at + 1)
    finally:
        rc = app.stop()
    assert rc == 0, (rc, app.lines)
    assert app.lines[-1].startswith("exiting on signal"), app.lines


def main():
    global CLUSTER, A, B
    if not os.access(APP, os.X_OK):
        print("config-reload not built: %s" % APP)
        sys.exit(1)
    CLUSTER = harness.Cluster(base_port=PORT).up()
    test_fs.CLUSTER = CLUSTER
    ok = False
    try:
        CLUSTER.leader()
        opts = "timeout=5000"
        A = Mount(CLUSTER, opts)
        B = Mount(CLUSTER, opts)
        try:
            test_fs.harness_run([test_app_reloads_on_changes_from_everywhere])
        finally:
            test_fs.unmount_all((A, B))
        ok = test_fs.RESULT[1] == 0
    finally:
        CLUSTER.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
