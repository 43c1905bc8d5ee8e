"""Compare with bd_pool_of_one.py: SyncConveyor(pool_size=1) from 3 threads at once (its own
sync pool, without the async client's spare connection). Run: .venv/bin/python probes/be_sync_pool_of_one.py $URL"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import probe_tasks  # noqa: F401
from conveyor import SyncConveyor

URL = sys.argv[1]
with SyncConveyor(URL, pool_size=1) as client:
    client.enqueue("arec", {"n": 0, "sleep": 0})
    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as ex:
        futures = [ex.submit(client.enqueue, "arec", {"n": i, "sleep": 0}) for i in range(3)]
        errors = [type(f.exception()).__name__ for f in futures if f.exception()]
    print(f"SyncConveyor pool_size=1, 3 threads: {time.monotonic() - t0:.2f} s, errors: {errors or 'none'}")
