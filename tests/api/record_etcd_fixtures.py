#!/usr/bin/env python3
"""record_etcd_fixtures.py: record real etcd answers for the compatibility test.

Run on demand (not part of the suite) when the cases in etcd_cases.py change:

    python3 tests/api/record_etcd_fixtures.py

It starts a throwaway single-node etcd (Debian's etcd-server) on
127.0.0.1:21198 (client) and :21199 (peer) (or $CONFMAN_ETCD_PORT and the
port after it) with its data in a temporary
directory, sends every case in order to its v3 JSON gateway, writes
fixtures/etcd-v3.json ({name: {status, body}}, body parsed as JSON), and
stops etcd and removes the directory whatever happens.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcd_cases  # noqa: E402
from gwlib import terminate  # noqa: E402

_PORT = int(os.environ.get("CONFMAN_ETCD_PORT", "21198"))
CLIENT = "http://127.0.0.1:%d" % _PORT
PEER = "http://127.0.0.1:%d" % (_PORT + 1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "etcd-v3.json")


def post(path, body):
    data = body if isinstance(body, str) else json.dumps(body)
    req = urllib.request.Request(CLIENT + path, data=data.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    d = tempfile.mkdtemp(prefix="cm-etcd-fixtures-")
    log = open(os.path.join(d, "etcd.log"), "wb")
    p = subprocess.Popen(["etcd", "--name", "fx", "--data-dir", os.path.join(d, "data"),
                          "--listen-client-urls", CLIENT, "--advertise-client-urls", CLIENT,
                          "--listen-peer-urls", PEER, "--initial-advertise-peer-urls", PEER,
                          "--initial-cluster", "fx=" + PEER],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                if post("/v3/kv/range", {"key": "AA=="})[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("etcd did not start; see " + d)
        version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
        out = {"_etcd": version.splitlines()[0] if version else "?", "cases": {}}
        for name, path, body in etcd_cases.CASES:
            status, text = post(path, body)
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            out["cases"][name] = {"path": path, "status": status, "body": parsed}
            print("%-28s %d %s" % (name, status, text[:120]))
        with open(OUT, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote", OUT)
    finally:
        terminate(p)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
