"""Probe O: SyncConveyor from several threads, after close(), reopened, and closed under load.
Run: PYTHONPATH=probes .venv/bin/python probes/o_sync_client.py postgresql://.../review_o"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, wait

import probe_tasks  # noqa: F401  registers the tasks
from conveyor import SyncConveyor

URL = sys.argv[1]


def step(name, fn):
    t0 = time.monotonic()
    try:
        out = fn()
        print(f"OK   {name}: {str(out)[:120]} ({time.monotonic() - t0:.2f}s)")
    except BaseException as exc:  # noqa: BLE001
        print(f"ERR  {name}: {type(exc).__name__}: {str(exc)[:200]} ({time.monotonic() - t0:.2f}s)")


c = SyncConveyor(URL)
step("enqueue before open", lambda: c.enqueue("arec", {"n": 1, "sleep": 0}))
step("queue_stats before open", lambda: c.queue_stats())
c.open()
step("create_queue p", lambda: c.create_queue("p"))
step("enqueue", lambda: c.enqueue("arec", {"n": 1, "sleep": 0}))
for name in ["queue_stats", "scheduler_status", "schedules", "retention", "dead_jobs", "list_jobs", "schedule_fires"]:
    step(name, lambda name=name: getattr(c, name)())
step("get_job 1", lambda: c.get_job(1))
step("get_job -1", lambda: c.get_job(-1))
step("get_job 2**70", lambda: c.get_job(2**70))
step("dead_job 2**70", lambda: c.dead_job(2**70))
step("retry_dead 2**70", lambda: c.retry_dead(2**70))
step("retry_dead [2**70]", lambda: c.retry_dead([2**70]))
step("purge_dead 2**70", lambda: c.purge_dead([2**70]))
step("pause_queue bad", lambda: c.pause_queue("bad queue"))
step("apply_retention", lambda: c.apply_retention())

# many threads at once
def work(i):
    for _ in range(20):
        c.enqueue("arec", {"n": i, "sleep": 0})
        c.queue_stats()
        c.get_job(1)
    return i

with ThreadPoolExecutor(16) as pool:
    futs = [pool.submit(work, i) for i in range(16)]
    done, _ = wait(futs, timeout=60)
    errs = [f.exception() for f in done if f.exception()]
    print(f"threads: {len(done)}/16 done, errors: {[repr(e)[:100] for e in errs][:3]}")

c.close()
step("enqueue after close", lambda: c.enqueue("arec", {"n": 1, "sleep": 0}))
step("queue_stats after close", lambda: c.queue_stats())
step("close twice", lambda: c.close())
step("reopen", lambda: c.open())
step("enqueue after reopen", lambda: c.enqueue("arec", {"n": 1, "sleep": 0}))
step("queue_stats after reopen", lambda: c.queue_stats())
step("close after reopen", lambda: c.close())

# close() while other threads are mid-call
c2 = SyncConveyor(URL).open()
c2.queue_stats()
stop = threading.Event()
results = {"ok": 0, "err": {}}

def hammer():
    while not stop.is_set():
        try:
            c2.queue_stats()
            results["ok"] += 1
        except Exception as exc:  # noqa: BLE001
            results["err"][type(exc).__name__ + ": " + str(exc)[:80]] = results["err"].get(type(exc).__name__ + ": " + str(exc)[:80], 0) + 1
            time.sleep(0.01)

threads = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
for t in threads:
    t.start()
time.sleep(1)
t0 = time.monotonic()
step("close while 8 threads call queue_stats", lambda: c2.close())
stop.set()
for t in threads:
    t.join(timeout=10)
alive = sum(t.is_alive() for t in threads)
print(f"after close under load: {alive} of 8 threads still stuck after 10 s; ok calls {results['ok']}, errors {results['err']}")
if alive:
    for th_id, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame))
        if "hammer" in stack:
            print("stuck thread at:\n" + "".join(traceback.format_stack(frame)[-4:]))
            break
