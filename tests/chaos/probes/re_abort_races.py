"""Abort/cancel racing claims, completions, retries, a SIGTERM and a SIGKILL (run by re_abort_races.sh).

Argument: database URL. Enqueues jobs into p (limited: concurrency 6) and aborts/cancels them
at random moments for ~25 s while the .sh stops workers. Prints the ids it acted on with the
answer and the time (into public.acts) for check.sql and the extra checks in the .sh."""
import asyncio, random, sys, time
import psycopg
import probe_tasks  # noqa: F401  (registers the tasks for enqueue)
from conveyor import Conveyor
from conveyor.errors import ConveyorError

URL = sys.argv[1]

async def main() -> None:
    random.seed(7)
    with psycopg.connect(URL, autocommit=True) as c:
        c.execute("create table if not exists public.acts(job_id bigint, what text, answer text, at timestamptz default clock_timestamp())")
    async with Conveyor(URL) as cv:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            ids = []
            for i in range(20):
                task = random.choice(["arec", "arec", "flaky", "srec"])
                args = {"n": i} if task == "flaky" else {"n": i, "sleep": random.choice([0, 0.05, 0.3, 1.5])}
                ids.append(await cv.enqueue(task, args, queue="p"))
            with psycopg.connect(URL, autocommit=True) as c:
                c.execute("insert into public.enqueued select unnest(%s::bigint[])", (ids,))
            await asyncio.sleep(random.random() * 0.5)
            for jid in random.sample(ids, 8):
                what = random.choice(["abort", "cancel"])
                try:
                    ans = await (cv.abort(jid, reason="probe") if what == "abort" else cv.cancel(jid, reason="probe"))
                except ConveyorError as e:
                    ans = f"{type(e).__name__}: {e}"
                with psycopg.connect(URL, autocommit=True) as c:
                    c.execute("insert into public.acts(job_id, what, answer) values (%s,%s,%s)", (jid, what, ans[:200]))
                await asyncio.sleep(random.random() * 0.1)

asyncio.run(main())
