#!/usr/bin/env python3
"""move_report.py: the tables of bench/move-bench.sh, from its result directories.

    move_report.py CONFMAN_DIR [ETCD_DIR]

Each directory holds `events` ("NAME UNIX_TIME [VALUE]" lines: start,
node_added, node4_started, [promoted, transferred,] end, rchar,
write_bytes, peer_bytes), the writer's `raw.txt` (every completion) and,
for Confman, `move.txt` (shard move's JSON step lines, each prefixed with
its arrival time). Periods: before = the last 5 s before start (the
writer's first seconds are its warm-up), during = start..end, after = the
5 s from 1 s after end. Percentiles are over every put of the period.
"""

import json
import math
import sys


def load_events(d):
    ev = {}
    with open(f"{d}/events") as f:
        for line in f:
            p = line.split()
            ev[p[0]] = (float(p[1]), p[2] if len(p) > 2 else None)
    return ev


def load_raw(d):
    out = []
    with open(f"{d}/raw.txt") as f:
        for line in f:
            t, v = line.split()
            out.append((float(t), None if v == "E" else float(v)))
    return out


def pct(xs, p):
    return xs[min(len(xs) - 1, math.ceil(p * len(xs)) - 1)] if xs else float("nan")


def period(raw, t0, t1):
    lat = sorted(v for t, v in raw if t0 <= t < t1 and v is not None)
    err = sum(1 for t, v in raw if t0 <= t < t1 and v is None)
    secs = max(t1 - t0, 1e-9)
    return {"ops": len(lat) / secs, "err": err, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
            "max": lat[-1] if lat else float("nan")}


def phases(d, ev):
    """[(name, seconds)]: the same rows for both systems; None where a step does not exist."""
    t = {k: v[0] for k, v in ev.items()}
    rows = {"record node (node add / member add)": t["node_added"] - t["start"]}
    if "promoted" in t:  # etcd
        rows["start node 4 .. promoted (catch-up)"] = t["promoted"] - t["node4_started"]
        chk = t.get("leader_checked", t["promoted"])
        rows["  script's leader lookup (etcd only)"] = chk - t["promoted"]
        rows["leader transfer"] = t["transferred"] - chk
        rows["remove old member (+ registry)"] = t["end"] - t["transferred"]
    else:
        steps = {}
        with open(f"{d}/move.txt") as f:
            for line in f:
                ts, _, js = line.partition(" ")
                try:
                    o = json.loads(js)
                except ValueError:
                    continue
                steps.setdefault(o["step"], float(ts))
        prom = steps["promote"]
        rows["start node 4 .. promoted (catch-up)"] = prom - t["node4_started"]
        rows["  of which: registry + add learner"] = steps["add_learner"] - t["node4_started"]
        rows["leader transfer"] = steps["transfer"] - prom if "transfer" in steps else 0.0
        rows["remove old member (+ registry)"] = t["end"] - steps.get("transfer", prom)
    rows["total (start .. removed)"] = t["end"] - t["start"]
    return rows


def summarize(d):
    ev = load_events(d)
    raw = load_raw(d)
    s, e = ev["start"][0], ev["end"][0]
    return {
        "phases": phases(d, ev),
        "bytes": {k: int(ev[k][1]) for k in ("rchar", "peer_bytes", "write_bytes") if k in ev and ev[k][1]},
        "before": period(raw, s - 5, s), "during": period(raw, s, e), "after": period(raw, e + 1, e + 6),
        "raw": raw, "start": s, "end": e,
        "reruns": int(ev["move_reruns"][1]) if "move_reruns" in ev else 0,
    }


def fmt(x, nd=2):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def ratio(a, b):
    return "-" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}"


def main():
    dirs = sys.argv[1:]
    names = ["confman", "etcd"][:len(dirs)]
    S = [summarize(d) for d in dirs]
    cols = " | ".join(f"{n:>9}" for n in names) + (" | confman/etcd" if len(S) == 2 else "")
    print(f"Move: seconds per phase\n\n| {'phase':<38} | {cols} |")
    print("|" + "-" * 40 + "|" + "|".join(["-" * 10 + ":"] * len(S)) + ("|-------------:" if len(S) == 2 else "") + "|")
    keys = list(S[0]["phases"])
    for s in S[1:]:
        for k in s["phases"]:
            if k not in keys:
                keys.insert(len(keys) - 1, k)  # before the total
    for k in keys:
        vals = [s["phases"].get(k) for s in S]
        r = f" | {ratio(vals[0], vals[1]):>12}" if len(S) == 2 and vals[1] is not None and vals[1] > 0.005 else (" | " + " " * 11 + "-" if len(S) == 2 else "")
        print(f"| {k:<38} | " + " | ".join(f"{fmt(v):>9}" for v in vals) + r + " |")
    print("\nBytes of node 4 during the move (MB = 10^6 B)\n")
    print(f"| {'measure':<38} | {cols} |")
    print("|" + "-" * 40 + "|" + "|".join(["-" * 10 + ":"] * len(S)) + ("|-------------:" if len(S) == 2 else "") + "|")
    for k, label in (("rchar", "read(2) bytes of its process (rchar)"),
                     ("peer_bytes", "received from peers (its own counter)"),
                     ("write_bytes", "written to disk (write_bytes)")):
        vals = [s["bytes"].get(k) for s in S]
        r = f" | {ratio(vals[0], vals[1]):>12}" if len(S) == 2 and all(vals) else (" | " + " " * 11 + "-" if len(S) == 2 else "")
        print(f"| {label:<38} | " + " | ".join(f"{fmt(v / 1e6 if v else None, 1):>9}" for v in vals) + r + " |")
    print("\nWriter: puts/s, p50 and p99 in ms over each period (before: 5 s; after: 5 s from 1 s after the end)\n")
    hdr = " | ".join(f"{n + ' ' + m:>14}" for n in names for m in ("ops/s", "p50", "p99", "max"))
    print(f"| {'period':<8} | {hdr} |")
    print("|----------|" + "|".join(["-" * 15 + ":"] * (4 * len(S))) + "|")
    for per in ("before", "during", "after"):
        cells = []
        for s in S:
            p = s[per]
            cells += [fmt(p["ops"], 0), fmt(p["p50"]), fmt(p["p99"]), fmt(p["max"])]
        print(f"| {per:<8} | " + " | ".join(f"{c:>14}" for c in cells) + " |")
    reruns = S[0].get("reruns")
    if reruns:
        print(f"\nconfman: shard move stopped and was run again {reruns} time(s) (see move.txt)")
    errs = [sum(1 for _, v in s["raw"] if v is None) for s in S]
    print("\nwriter errors over the whole run: " + ", ".join(f"{n} {e}" for n, e in zip(names, errs)))
    if len(S) == 2:
        print("during/before ratios: " + "; ".join(
            f"{n} ops {ratio(s['during']['ops'], s['before']['ops'])}, p99 {ratio(s['during']['p99'], s['before']['p99'])}"
            for n, s in zip(names, S)))
    print("\nWriter per second (s = seconds from the move's start; * = during the move)\n")
    print("| " + " | ".join(f"{n:>7} s | {'ops':>5} | {'err':>3} | {'p50 ms':>7} | {'p99 ms':>7}" for n in names) + " |")
    print("|" + "|".join(["--------:|------:|----:|--------:|--------:"] * len(S)) + "|")
    rows = []
    for s in S:
        b = {}
        for t, v in s["raw"]:
            b.setdefault(math.floor(t - s["start"]), []).append(v)
        lo, hi = -5, math.ceil(s["end"] - s["start"]) + 5
        r = []
        for k in range(lo, hi + 1):
            xs = b.get(k, [])
            lat = sorted(v for v in xs if v is not None)
            mark = "*" if k + 1 > 0 and k < s["end"] - s["start"] else " "
            r.append(f"{k:>6}{mark} | {len(lat):>5} | {len(xs) - len(lat):>3} | {fmt(pct(lat, 0.5)):>7} | {fmt(pct(lat, 0.99)):>7}")
        rows.append(r)
    n = max(len(r) for r in rows)
    blank = f"{'':>7} | {'':>5} | {'':>3} | {'':>7} | {'':>7}"
    for i in range(n):
        print("| " + " | ".join(r[i] if i < len(r) else blank for r in rows) + " |")


if __name__ == "__main__":
    main()
