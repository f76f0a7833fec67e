"""gwlib.py: a confman-api process next to a harness.Cluster, for the api tests.

Gateway(cluster, port) starts build/api/confman-api listening on
127.0.0.1:port against the cluster's nodes, waits until it answers /healthz,
and stops it in stop() (SIGTERM, then SIGKILL), also at exit. stop() fails
if the gateway died on its own or a sanitizer wrote to its log. Small HTTP
helpers (http.client, one connection per call unless given one) return
(status, headers dict with lower-case names, body bytes). run_tests() is the
main of every test file: cluster and gateway up, each test, both down.
"""
import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import shutil
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402,F401  (re-exported for the tests)

API = os.environ.get("CONFMAN_API", os.path.join(harness.BUILD, "api/confman-api"))

_live = []


@atexit.register
def _cleanup():
    for g in list(_live):
        try:
            g.stop()
        except Exception:
            pass


class Gateway:
    def __init__(self, cluster, port, extra=None):
        self.cluster = cluster
        self.port = port
        self.extra = list(extra or [])
        self.logpath = os.path.join(tempfile.mkdtemp(prefix="confman-api-"), "gw.log")
        self.proc = None

    def start(self):
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(
            [API, "--listen", "127.0.0.1:%d" % self.port, "--servers", self.cluster.servers(),
             "--timeout", "3000", "-v"] + self.extra,
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        _live.append(self)
        end = time.time() + 10
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("confman-api exited %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                if request(self.port, "GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("confman-api does not answer")

    def wait_ready(self, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            if request(self.port, "GET", "/readyz")[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError("gateway never ready: %r" % (request(self.port, "GET", "/readyz"),))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-6000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self in _live:
            _live.remove(self)
        if self.proc is None:
            return
        died = self.proc.poll()
        code = 0
        if died is None:
            code = terminate(self.proc)
            if code is None:
                raise AssertionError("confman-api ignored SIGTERM:\n" + self.log())
        text = self.log()
        self.proc = None
        shutil.rmtree(os.path.dirname(self.logpath), ignore_errors=True)
        if died is not None:
            raise AssertionError("confman-api died on its own (%s):\n%s" % (died, text))
        if "AddressSanitizer" in text or "runtime error:" in text or "LeakSanitizer" in text:
            raise AssertionError("sanitizer report from confman-api:\n" + text)
        if code != 0:
            raise AssertionError("confman-api exited %d on SIGTERM:\n%s" % (code, text))


def terminate(proc, timeout=10):
    """SIGTERM proc and wait for it: its exit code, or None if it outlasted
    timeout and had to be killed."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def _run_each(tests, show_traceback):
    """Run each test function in turn; (passed, failed)."""
    passed = failed = 0
    for t in tests:
        start = time.time()
        try:
            t()
            passed += 1
            print("ok   %s (%.1fs)" % (t.__name__, time.time() - start), flush=True)
        except Exception as e:
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            if show_traceback:
                traceback.print_exc()
    return passed, failed


def run_tests(cluster, start_gateway, tests, show_traceback=False):
    """A test file's main: bring cluster (a harness.Cluster) up and wait for
    its leader, start_gateway(cluster) -> a started Gateway, run tests, then
    stop the gateway (a failed stop counts as a failure: a crash or a
    sanitizer report) and take the cluster down, also on errors. Exits 1 if
    anything failed."""
    gw = None
    passed = failed = 0
    try:
        cluster.up()
        cluster.leader()
        gw = start_gateway(cluster)
        passed, failed = _run_each(tests, show_traceback)
        try:
            gw.stop()
        except AssertionError as e:
            failed += 1
            print("FAIL gateway: %s" % e)
    finally:
        if gw is not None and gw.alive():
            gw.stop()
        cluster.down()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def request(port, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def post_json(port, path, obj):
    """POST a JSON body (a dict, or a raw string); (status, parsed JSON or text)."""
    body = obj if isinstance(obj, str) else json.dumps(obj)
    st, _, data = request(port, "POST", path, body=body.encode(),
                          headers={"Content-Type": "application/json"})
    try:
        return st, json.loads(data)
    except ValueError:
        return st, data.decode(errors="replace")


def raw(port, data, timeout=3, shut=True):
    """Send raw bytes; return what the gateway answers until it closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), 2)
    s.settimeout(timeout)
    out = b""
    try:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway closed first: read what it answered
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return out


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)
