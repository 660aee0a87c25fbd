"""Write keys to a SQLite store until killed, printing each one once its write is acknowledged.

The durability test runs this as a process of its own (`python store_writer.py DB`)
and kills it with SIGKILL: every line printed here names a write the store
acknowledged, which must therefore be in the file after the kill. Several
writers run at once so that kills land inside batched commits too.
"""

from __future__ import annotations

import asyncio
import sys

from switchboard.store import sqlite

LANES = 4


async def write_forever(store: sqlite.SQLiteStore, lane: int) -> None:
    index = 0
    while True:
        key = f"/durable/{lane}/{index:08d}"
        kv = await store.create(key, key.encode())
        # Only after the await returned: the line is the acknowledgement.
        sys.stdout.write(f"{key} {kv.mod_revision}\n")
        sys.stdout.flush()
        index += 1


async def main(path: str) -> None:
    store = await sqlite.SQLiteStore.open(path)
    await asyncio.gather(*(write_forever(store, lane) for lane in range(LANES)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
