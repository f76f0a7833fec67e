#!/usr/bin/env python3
"""move_writer.py: the writer of bench/move-bench.sh, the same for both systems.

    move_writer.py --url http://127.0.0.1:2379 put --rate 500 --out FILE
    move_writer.py --url http://127.0.0.1:2379 preload

It POSTs etcd v3 JSON-gateway puts (/v3/kv/put, key and value base64), which
etcd's gateway and confman-api's etcd subset both serve, over --conns
keep-alive HTTP/1.1 connections, one request in flight on each.

put: keys PREFIX/k%08d chosen uniformly among --keys, at --rate puts per
second in all (0: a closed loop, as fast as the server answers), until
SIGTERM/SIGINT or --duration (--raw: every completion, for move_report.py).
Request i is due at start + i/rate; its latency runs from when it was due,
not from when a connection was free to send it, so a stall shows in the latency of every put it delayed (no
coordinated omission). Every completion goes into the 1-second bucket of
its wall-clock time: --out gets one JSON line per second, {"t": unix second,
"ok", "err", "p50_ms", "p99_ms", "max_ms"}; an error (a non-200 answer, a
refused or dropped connection) is counted, the connection reopened after
50 ms and the put not retried.

preload: every key once, in order, closed loop; exits 1 if any put fails
after 5 tries. Exit 2: bad usage.
"""

import argparse
import asyncio
import base64
import json
import math
import random
import signal
import sys
import time
import urllib.parse


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


class Conn:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None

    async def post(self, path, body: bytes):
        if self.w is None:
            await self.open()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.w.write(head.encode() + body)
        await self.w.drain()
        status = int((await self.r.readuntil(b"\r\n")).split()[1])
        length, chunked = None, False
        while True:
            line = await self.r.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            k, _, v = line.decode("latin-1").partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            while True:
                n = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.r.readexactly(n + 2)
                if n == 0:
                    break
        elif length:
            await self.r.readexactly(length)
        return status


def pct(sorted_ms, p):
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, math.ceil(p * len(sorted_ms)) - 1)], 3)


class Buckets:
    def __init__(self):
        self.b = {}  # unix second -> [latencies ms], errors
        self.raw = []  # (unix time, latency ms or None for an error)

    def add(self, ms):
        t = time.time()
        self.b.setdefault(int(t), [[], 0])[0].append(ms)
        self.raw.append((t, ms))

    def err(self):
        t = time.time()
        self.b.setdefault(int(t), [[], 0])[1] += 1
        self.raw.append((t, None))

    def lines(self):
        for t in sorted(self.b):
            lat, err = self.b[t]
            lat.sort()
            yield json.dumps({"t": t, "ok": len(lat), "err": err, "p50_ms": pct(lat, 0.50),
                              "p99_ms": pct(lat, 0.99), "max_ms": round(lat[-1], 3) if lat else None})


def body(key: str, value: str) -> bytes:
    return json.dumps({"key": b64(key.encode()), "value": value}).encode()


async def run_put(a, host, port, stop):
    value = b64(b"v" * a.value_size)
    bk = Buckets()
    start = time.monotonic()
    nxt = [0]

    async def worker():
        c = Conn(host, port)
        rng = random.Random()
        while not stop.is_set():
            i = nxt[0]
            nxt[0] += 1
            due = start + i / a.rate if a.rate > 0 else time.monotonic()
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
            key = f"{a.prefix}/k{rng.randrange(a.keys):08d}"
            try:
                st = await asyncio.wait_for(c.post("/v3/kv/put", body(key, value)), a.timeout)
                if st == 200:
                    bk.add((time.monotonic() - due) * 1000)
                    continue
                bk.err()
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                bk.err()
            c.close()
            await asyncio.sleep(0.05)
        c.close()

    tasks = [asyncio.create_task(worker()) for _ in range(a.conns)]
    if a.duration > 0:
        try:
            await asyncio.wait_for(stop.wait(), a.duration)
        except asyncio.TimeoutError:
            stop.set()
    await asyncio.gather(*tasks)
    with open(a.out, "w") as f:
        for line in bk.lines():
            f.write(line + "\n")
    if a.raw:
        with open(a.raw, "w") as f:
            for t, ms in bk.raw:
                f.write(f"{t:.6f} {'E' if ms is None else f'{ms:.3f}'}\n")
    return 0


async def run_preload(a, host, port):
    value = b64(b"v" * a.value_size)
    nxt = [0]
    failed = []

    async def worker():
        c = Conn(host, port)
        while nxt[0] < a.keys and not failed:
            k = nxt[0]
            nxt[0] += 1
            key = f"{a.prefix}/k{k:08d}"
            for _ in range(5):
                try:
                    if await asyncio.wait_for(c.post("/v3/kv/put", body(key, value)), a.timeout) == 200:
                        break
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                    pass
                c.close()
                await asyncio.sleep(0.1)
            else:
                failed.append(key)
        c.close()

    await asyncio.gather(*[asyncio.create_task(worker()) for _ in range(a.conns)])
    if failed:
        print(f"move_writer: preload: cannot write {failed[0]}", file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description="etcd v3 JSON-gateway put load with 1-second buckets")
    p.add_argument("--url", required=True, help="http://HOST:PORT of the gateway")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--keys", type=int, default=100000)
    p.add_argument("--prefix", default="/move")
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("mode", choices=["put", "preload"])
    p.add_argument("--rate", type=float, default=500, help="puts/s in all; 0: closed loop")
    p.add_argument("--duration", type=float, default=0, help="seconds; 0: until SIGTERM")
    p.add_argument("--out", help="put: the per-second buckets (JSON lines)")
    p.add_argument("--raw", help="put: every completion, 'UNIX_TIME LATENCY_MS' or 'UNIX_TIME E'")
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    if u.scheme != "http" or not u.hostname or not u.port or a.conns < 1 or a.keys < 1 or a.rate < 0:
        p.error("bad --url, --conns, --keys or --rate")
    if a.mode == "put" and not a.out:
        p.error("put needs --out")

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    if a.mode == "put":
        return loop.run_until_complete(run_put(a, u.hostname, u.port, stop))
    return loop.run_until_complete(run_preload(a, u.hostname, u.port))


if __name__ == "__main__":
    sys.exit(main())
