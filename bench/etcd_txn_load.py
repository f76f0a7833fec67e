#!/usr/bin/env python3
"""etcd_txn_load.py: fill etcd fast for bench/backup-bench.sh.

    etcd_txn_load.py --url http://127.0.0.1:2379 --keys N --prefixes /b0,/b1,/b2

Writes the keys bench/cm_load.c writes into Confman for the same run:
N keys spread over the prefixes (N / count each, the remainder on the
last), PREFIX/k%08d from 0, each value --value-size random lowercase letters.
Puts go in etcd v3 JSON-gateway transactions (/v3/kv/txn) of --batch puts
(etcd's default limit is 128 operations per transaction), --conns keep-alive
connections with one transaction in flight each. Batching is only for
speed: a snapshot holds the keys, not the revisions that wrote them.
Exit 1 if a transaction fails after 5 tries, 2 for bad usage.
"""

import argparse
import asyncio
import base64
import json
import os
import sys
import urllib.parse

from move_writer import Conn

LETTERS = bytes(range(ord("a"), ord("a") + 26))
TABLE = bytes(LETTERS[i % 26] for i in range(256))


def value(size: int) -> str:
    return base64.b64encode(os.urandom(size).translate(TABLE)).decode()


def keys_of(n: int, prefixes):
    per = n // len(prefixes)
    for i, p in enumerate(prefixes):
        count = per if i < len(prefixes) - 1 else n - per * (len(prefixes) - 1)
        for k in range(count):
            yield f"{p}/k{k:08d}"


async def run(a, host, port, prefixes):
    it = keys_of(a.keys, prefixes)
    failed = []

    def batch():
        ops = []
        for key in it:
            ops.append({"requestPut": {"key": base64.b64encode(key.encode()).decode(),
                                       "value": value(a.value_size)}})
            if len(ops) == a.batch:
                break
        return ops

    async def worker():
        c = Conn(host, port)
        while not failed:
            ops = batch()
            if not ops:
                break
            body = json.dumps({"success": ops}).encode()
            for _ in range(5):
                try:
                    if await asyncio.wait_for(c.post("/v3/kv/txn", body), 30) == 200:
                        break
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                    pass
                c.close()
                await asyncio.sleep(0.2)
            else:
                failed.append(base64.b64decode(ops[0]["requestPut"]["key"]).decode())
        c.close()

    await asyncio.gather(*[asyncio.create_task(worker()) for _ in range(a.conns)])
    if failed:
        print(f"etcd_txn_load: cannot write the batch from {failed[0]}", file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description="fill etcd with PREFIX/k%08d keys in transactions")
    p.add_argument("--url", required=True, help="http://HOST:PORT of a member's client URL")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--prefixes", required=True, help="comma-separated")
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--conns", type=int, default=8)
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    prefixes = [x for x in a.prefixes.split(",") if x]
    if (u.scheme != "http" or not u.hostname or not u.port or a.keys < len(prefixes) or not prefixes
            or not 1 <= a.batch <= 128 or a.conns < 1 or a.value_size < 1):
        p.error("bad --url, --keys, --prefixes, --batch, --conns or --value-size")
    return asyncio.run(run(a, u.hostname, u.port, prefixes))


if __name__ == "__main__":
    sys.exit(main())
