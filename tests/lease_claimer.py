"""A worker's claim loop in a process of its own, for the lease tests.

`python -m aura.tests.lease_claimer DATABASE_URL WORKER_ID LIMIT` opens the log, prints `ready`,
waits for a line on stdin (so that every claimer starts at once), then claims up to LIMIT jobs at
a time until a claim finds none, and prints what it claimed as one JSON line:
`[[job_id, token], ...]`.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aura.store.pg.log import PgEventLog

__all__ = ["LEASE_SECONDS"]

#: long enough that no claimed lease expires during a test
LEASE_SECONDS = 600.0


async def _claim_until_none(url: str, worker_id: str, limit: int) -> None:
    async with await PgEventLog.open(url) as log:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        claimed: list[tuple[str, int]] = []
        while found := await log.leases.claim(worker_id, LEASE_SECONDS, limit):
            claimed += found
    print(json.dumps(claimed), flush=True)


if __name__ == "__main__":
    asyncio.run(_claim_until_none(sys.argv[1], sys.argv[2], int(sys.argv[3])))
