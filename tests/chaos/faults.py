"""Real PostgreSQL errors injected from inside the database, switched on and off by a test.

A BEFORE INSERT trigger on a table of the test's schema (``jobs``: every enqueue writes
there; ``job_history``: every completion does) consults a one-row switch table and, while a
fault is set, fails the insert the way the server would:

- ``disk_full``: SQLSTATE 53100 with the server's own words for a full disk;
- ``serialization_failure``: SQLSTATE 40001, as a concurrent update makes it;
- ``statement_timeout``: the insert sleeps 30 s, so that the session's statement_timeout
  cancels it (SQLSTATE 57014) or the client's own deadline drops the connection.

``times`` limits a fault to its next N inserts (the count is a sequence, which a rolled-back
statement does not undo); NULL keeps it on until cleared. Everything lives in the test's
schema and needs only the rights of the schema's owner.
"""

from __future__ import annotations

from typing import Literal

from ..helpers import DB

Fault = Literal["disk_full", "serialization_failure", "statement_timeout"]
Table = Literal["jobs", "job_history"]

# What each fault's error says and which SQLSTATE it carries.
SQLSTATES: dict[Fault, str] = {
    "disk_full": "53100",
    "serialization_failure": "40001",
    "statement_timeout": "57014",
}

_INSTALL = """
CREATE TABLE {schema}.chaos_switch (tbl text PRIMARY KEY, fault text NOT NULL, times int);
CREATE SEQUENCE {schema}.chaos_hits;
CREATE FUNCTION {schema}.chaos_fault() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chosen text;
    left_times int;
    hit bigint;
BEGIN
    SELECT s.fault, s.times INTO chosen, left_times FROM {schema}.chaos_switch s WHERE s.tbl = TG_ARGV[0];
    IF chosen IS NULL THEN
        RETURN NEW;
    END IF;
    hit := nextval('{schema}.chaos_hits');
    IF left_times IS NOT NULL AND hit > left_times THEN
        RETURN NEW;
    END IF;
    IF chosen = 'disk_full' THEN
        RAISE EXCEPTION 'could not extend file "base/16384/16385": No space left on device'
            USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
    ELSIF chosen = 'serialization_failure' THEN
        RAISE EXCEPTION 'could not serialize access due to concurrent update'
            USING ERRCODE = 'serialization_failure';
    ELSIF chosen = 'statement_timeout' THEN
        PERFORM pg_sleep(30);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER chaos_fault BEFORE INSERT ON {schema}.jobs
    FOR EACH ROW EXECUTE FUNCTION {schema}.chaos_fault('jobs');
-- Cloned onto every partition, present and future; TG_TABLE_NAME would name the partition.
CREATE TRIGGER chaos_fault BEFORE INSERT ON {schema}.job_history
    FOR EACH ROW EXECUTE FUNCTION {schema}.chaos_fault('job_history');
"""


class Faults:
    """The switch of one test's schema: ``faults.set("jobs", "disk_full")``, ``faults.clear()``."""

    def __init__(self, db: DB) -> None:
        self._db = db
        db.all(_INSTALL)

    def set(self, table: Table, fault: Fault, *, times: int | None = None) -> None:
        self._db.all("SELECT setval('{schema}.chaos_hits', 1, false)")
        self._db.all(
            "INSERT INTO {schema}.chaos_switch VALUES (%s, %s, %s)"
            " ON CONFLICT (tbl) DO UPDATE SET fault = excluded.fault, times = excluded.times",
            [table, fault, times],
        )

    def clear(self) -> None:
        self._db.all("DELETE FROM {schema}.chaos_switch")

    def hits(self) -> int:
        """Inserts the fault has seen since it was set (those it let through included)."""
        row = self._db.one("SELECT last_value, is_called FROM {schema}.chaos_hits")
        return int(row[0]) if row[1] else 0
