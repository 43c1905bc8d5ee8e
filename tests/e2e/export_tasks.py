"""The exports a `conveyor worker` under test runs: ``big`` reads the table the memory test
fills, in the schema named by CONVEYOR_TEST_EXPORT_SCHEMA (an identifier the test made)."""

from __future__ import annotations

import os

from psycopg import sql

from conveyor.contrib import exports

SCHEMA = os.environ.get("CONVEYOR_TEST_EXPORT_SCHEMA", "public")
BIG = sql.SQL("SELECT id, name, amount, at FROM {}.big WHERE id <= %(upto)s").format(sql.Identifier(SCHEMA))

exports.register_export("big", BIG.as_string(None))  # type: ignore[arg-type]  # a composed identifier
