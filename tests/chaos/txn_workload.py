"""txn_workload.py: CAS by mod_revision under delete/re-create churn, through
confman-api's etcd v3 endpoints, recorded for checker.check_txn_linearizable.

run(cas_port, churn_port, key, seconds) starts threads, each with its own
keep-alive HTTP connection, all on one key:
  - deleters (churn_port): /v3/kv/deleterange of the key; "deleted" 0 or 1;
  - creators (churn_port): txn{VERSION == 0; put "cP-N"; range}: create if
    absent, the range after the put giving the write's mod_revision;
    both wait 0 to `pace` ms after each request, so that the key lives long
    enough for CAS to succeed, and still dies and comes back often;
  - CAS clients (cas_port): a linearizable range (recorded as a read), then
    txn{MOD == the mod_revision read; put "xP-N"; range}.
Every written value is unique. Outcomes: 200 is ok; a txn answered 503 with
code 10 (every compare-and-set round lost: nothing written) failed; a write
that got no answer, 502, 504 or another error is unknown (it may have
happened); a read that did not get 200 failed (not checked). Times are
time.monotonic_ns() around each request. Returns (ops, stats).
"""
import base64
import http.client
import json
import random
import threading
import time


def b64(s):
    return base64.b64encode(s.encode()).decode()


class _Conn:
    def __init__(self, port, timeout):
        self.port, self.timeout, self.c = port, timeout, None

    def post(self, path, obj):
        """(status, parsed body) or (None, None) when no answer came."""
        try:
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.c.request("POST", path, body=json.dumps(obj).encode(),
                           headers={"Content-Type": "application/json"})
            r = self.c.getresponse()
            data = r.read()
            try:
                return r.status, json.loads(data)
            except ValueError:
                return r.status, {}
        except (OSError, http.client.HTTPException):
            if self.c is not None:
                self.c.close()
            self.c = None
            return None, None

    def close(self):
        if self.c is not None:
            self.c.close()


def _cmp(key, target, field, value):
    return {"key": b64(key), "target": target, "result": "EQUAL", field: str(value)}


def _txn(key, compare, value):
    return {"compare": [compare],
            "success": [{"request_put": {"key": b64(key), "value": b64(value)}},
                        {"request_range": {"key": b64(key)}}]}


def _write_outcome(st, doc, op):
    if st == 200:
        op["outcome"] = "ok"
        return
    op["outcome"] = "fail" if st == 503 and doc.get("code") == 10 else "unknown"
    op["err"] = "http %s" % st


def _txn_result(st, doc, op):
    _write_outcome(st, doc, op)
    if op["outcome"] != "ok":
        return
    op["succeeded"] = bool(doc.get("succeeded"))
    if op["succeeded"]:
        kv = doc["responses"][1]["response_range"]["kvs"][0]
        op["mod"] = int(kv["mod_revision"])


class _Recorder:
    def __init__(self):
        self.ops, self.lock = [], threading.Lock()

    def add(self, op):
        with self.lock:
            self.ops.append(op)


def _timed(rec, conn, op, path, body):
    op["invoke"] = time.monotonic_ns()
    st, doc = conn.post(path, body)
    op["complete"] = time.monotonic_ns()
    rec.add(op)
    return st, doc or {}


def _deleter(rec, conn, p, key, stop, pace):
    while time.time() < stop:
        time.sleep(random.uniform(0, pace))
        op = {"process": p, "type": "delete", "key": key}
        st, doc = _timed(rec, conn, op, "/v3/kv/deleterange", {"key": b64(key)})
        _write_outcome(st, doc, op)
        if op["outcome"] == "ok":
            op["deleted"] = int(doc.get("deleted", "0"))


def _creator(rec, conn, p, key, stop, pace):
    n = 0
    while time.time() < stop:
        time.sleep(random.uniform(0, pace))
        n += 1
        op = {"process": p, "type": "create", "key": key, "value": "c%d-%d" % (p, n)}
        st, doc = _timed(rec, conn, op, "/v3/kv/txn",
                         _txn(key, _cmp(key, "VERSION", "version", 0), op["value"]))
        _txn_result(st, doc, op)


def _read(rec, conn, p, key):
    op = {"process": p, "type": "read", "key": key}
    st, doc = _timed(rec, conn, op, "/v3/kv/range", {"key": b64(key)})
    if st != 200:
        op["outcome"] = "fail"
        return None
    op["outcome"] = "ok"
    kvs = doc.get("kvs", [])
    op["value"] = base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None
    op["mod"] = int(kvs[0]["mod_revision"]) if kvs else 0
    return op


def _casser(rec, conn, p, key, stop, pace):
    n = 0
    while time.time() < stop:
        r = _read(rec, conn, p, key)
        if r is None or r["mod"] == 0:
            time.sleep(0.005)  # absent: wait for a creator
            continue
        n += 1
        op = {"process": p, "type": "cas", "key": key, "value": "x%d-%d" % (p, n),
              "expect_mod": r["mod"]}
        st, doc = _timed(rec, conn, op, "/v3/kv/txn",
                         _txn(key, _cmp(key, "MOD", "mod_revision", r["mod"]), op["value"]))
        _txn_result(st, doc, op)


def run(cas_port, churn_port, key, seconds, deleters=2, creators=2, cassers=6, pace=0.05,
        timeout=10):
    rec = _Recorder()
    stop = time.time() + seconds
    conns, threads = [], []
    plan = [(_deleter, churn_port)] * deleters + [(_creator, churn_port)] * creators + \
        [(_casser, cas_port)] * cassers
    for p, (fn, port) in enumerate(plan, 1):
        c = _Conn(port, timeout)
        conns.append(c)
        threads.append(threading.Thread(target=fn, args=(rec, c, p, key, stop, pace)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 4 * timeout)
    for c in conns:
        c.close()
    stats = {}
    for o in rec.ops:
        k = "%s %s" % (o["type"], o["outcome"])
        if o["outcome"] == "ok" and o["type"] in ("create", "cas"):
            k += " succeeded" if o["succeeded"] else " compare-failed"
        stats[k] = stats.get(k, 0) + 1
    return rec.ops, stats
