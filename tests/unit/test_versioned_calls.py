"""Conveyor's runtime queries call SQL functions by their versioned names only (``name_v1``),
so a fix shipped as ``name_v2`` never changes a function under workers that still run the
release before (see docs/sql.md, "Versions")."""

import re

from conveyor.paths import sql_dir

CALL = re.compile(r"\{schema\}\.(\w+)\(")
VERSIONED = re.compile(r"_v\d+$")


def test_every_function_a_runtime_query_calls_has_a_versioned_name() -> None:
    calls = {
        (path.name, name)
        for path in sorted((sql_dir() / "queries").glob("*.sql"))
        for name in CALL.findall(path.read_text())
    }
    assert calls  # the pattern finds the calls there are
    assert sorted(call for call in calls if not VERSIONED.search(call[1])) == []
