"""Review 3 (issue 11): bad input at the entry points of results, chains and batches.

Run: .venv/bin/python tests/chaos/probes/r3_flow_bad_input.py <database url>
Prints one line per call: OK <value> or the exception's type and message (a raw psycopg
error or a hang past 10 s is a finding).
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Any

import psycopg
from psycopg import sql

from conveyor import Conveyor, JobRequest, Registry
from conveyor.db import migrations

URL = sys.argv[1]
SCHEMA = "r3_bad_input"

registry = Registry()


@registry.task
async def plain(n: int = 0) -> int:
    return n


@registry.task
async def no_batch_arg(label: str = "") -> None:
    pass


async def attempt(label: str, coro: Any) -> Any:
    try:
        value = await asyncio.wait_for(coro, 10)
        print(f"{label:55} OK {value!r}"[:300])
        return value
    except Exception as exc:
        mod = type(exc).__module__
        print(f"{label:55} {mod}.{type(exc).__name__}: {str(exc)[:160]!r}")
        return None


async def main() -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    migrations.upgrade(URL, SCHEMA)
    async with Conveyor(URL, schema=SCHEMA, registry=registry) as c:
        a = await c.enqueue(plain, {"n": 1})
        # result()
        for v in ("5", True, -1, 0, 2**63, 1.5, None):
            await attempt(f"result({v!r}, timeout=1)", c.result(v, timeout=1))  # type: ignore[arg-type]
        for t in (0, -1, float("nan"), float("inf"), "1"):
            await attempt(f"result(live, timeout={t!r})", c.result(a, timeout=t))  # type: ignore[arg-type]
        # enqueue with key / meta
        await attempt("enqueue key 10000 chars", c.enqueue(plain, key="k" * 10000))
        await attempt("enqueue key ''", c.enqueue(plain, key=""))
        await attempt("enqueue key 5", c.enqueue(plain, key=5))  # type: ignore[arg-type]
        await attempt("enqueue key with NUL", c.enqueue(plain, key="a\x00b"))
        await attempt("enqueue meta list", c.enqueue(plain, meta=[1, 2]))  # type: ignore[arg-type]
        await attempt("enqueue meta str", c.enqueue(plain, meta="x"))  # type: ignore[arg-type]
        await attempt("enqueue meta 1 MB", c.enqueue(plain, meta={"x": "y" * 1_000_000}))
        await attempt("enqueue meta non-json", c.enqueue(plain, meta={"x": object()}))
        await attempt("enqueue meta nan", c.enqueue(plain, meta={"x": float("nan")}))
        await attempt("enqueue meta NUL", c.enqueue(plain, meta={"x": "a\x00b"}))
        await attempt("enqueue_many key 10000", c.enqueue_many([JobRequest(plain, {}, key="k" * 10000)]))
        await attempt("enqueue_many meta list", c.enqueue_many([JobRequest(plain, {}, meta=[1])]))  # type: ignore[arg-type]
        # after=
        for v in (-1, 0, 2**63, "1", 1.0, True, 999999):
            await attempt(f"enqueue(after={v!r})", c.enqueue(plain, after=v))  # type: ignore[arg-type]
        for v in (-1, 2**63, "1", 999999):
            await attempt(f"enqueue(batch={v!r})", c.enqueue(plain, batch=v))  # type: ignore[arg-type]
        await attempt("enqueue_many(after=2**63)", c.enqueue_many([JobRequest(plain, {})], after=2**63))
        await attempt("chain(after=2**63)", c.chain(JobRequest(plain, {}), after=2**63))
        await attempt("chain() of one", c.chain(JobRequest(plain, {})))
        # batches
        await attempt("create_batch(no_batch_arg)", c.create_batch(no_batch_arg))
        await attempt("create_batch('unknown.task')", c.create_batch("unknown.task"))
        await attempt("create_batch(plain? no batch)", c.create_batch(plain))
        await attempt("create_batch(None, args)", c.create_batch(None, {"a": 1}))
        await attempt("create_batch meta list", c.create_batch(None, meta=[1]))  # type: ignore[arg-type]
        await attempt("create_batch meta 1MB", c.create_batch(None, meta={"x": "y" * 1_000_000}))
        await attempt("create_batch priority 9", c.create_batch(None, priority=9))
        for v in (-1, 0, 2**63, "1", 999999):
            await attempt(f"seal_batch({v!r})", c.seal_batch(v))  # type: ignore[arg-type]
            await attempt(f"get_batch({v!r})", c.get_batch(v))  # type: ignore[arg-type]
        b = await c.create_batch(None)
        await attempt("seal_batch(b)", c.seal_batch(b))
        await attempt("seal_batch(b) again", c.seal_batch(b))
        await attempt("enqueue into sealed", c.enqueue(plain, batch=b))
        await attempt("result(unknown 999999, timeout=1)", c.result(999999, timeout=1))
    # SQL entry points
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
        stmts = [
            "select create_batch(NULL, NULL)",
            "select create_batch('', '{}')",
            "select create_batch('t', '[]')",
            "select create_batch('t', '{\"batch\":1}')",
            "select create_batch('t', '{}', 'nope_queue')",
            "select create_batch(NULL, '{}', NULL, NULL, '[1]')",
            "select create_batch(NULL, '{}', NULL, NULL, jsonb_build_object('x', repeat('y', 1100000)))",
            "select seal_batch(NULL)",
            "select seal_batch(-1)",
            "select enqueue_flow(NULL)",
            "select enqueue_flow('t', after_id => -5)",
            "select enqueue_flow('t', batch_id => -5)",
            "select enqueue_flow('t', after_id => NULL, batch_id => NULL)",
            "select enqueue_flow('t', key => repeat('k', 10000))",
            "select enqueue_flow('t', meta => '\"s\"')",
            "select enqueue('t', key => repeat('k', 10000))",
            "select enqueue('t', key => '')",
            "select enqueue('t', meta => 'null'::jsonb)",
            "select enqueue('t', meta => jsonb_build_object('x', repeat('y', 70000)))",
            "select enqueue('t', key => repeat(chr(128512), 512), queue => repeat('q', 200))",
        ]
        for s in stmts:
            try:
                row = conn.execute(s).fetchone()
                print(f"{s[:80]:82} OK {row}")
            except psycopg.Error as exc:
                print(f"{s[:80]:82} {type(exc).__name__} {exc.sqlstate}: {str(exc).splitlines()[0][:150]}")
        # what is left
        print(
            conn.execute(
                "select count(*), count(*) filter (where after_id is not null or batch_id is not null) from jobs"
            ).fetchone()
        )


try:
    asyncio.run(main())
except Exception:
    traceback.print_exc()
