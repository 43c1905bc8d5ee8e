"""Unit tests for conveyor.db.queries: the named SQL in sql/queries and the names the code uses."""

import re
from pathlib import Path

import pytest
from psycopg import sql

from conveyor.db import queries as queries_module
from conveyor.db.queries import Queries, for_schema, load, parse
from conveyor.paths import sql_dir

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "service" / "conveyor"
QUERY_DIR = sql_dir() / "queries"
QUERY_FILES = sorted(QUERY_DIR.glob("*.sql"))
HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
FIELDS = r"\{(schema|view|control|channel|jobs|events|relation|table|column|query)\}"


def test_the_query_folder_is_the_checkout_one() -> None:
    assert QUERY_DIR.resolve() == (REPO / "sql" / "queries").resolve()
    assert [p.name for p in QUERY_FILES] == [
        "browse.sql",
        "control.sql",
        "enqueue.sql",
        "execute.sql",
        "exports.sql",
        "flows.sql",
        "grants.sql",
        "health.sql",
        "housekeeping.sql",
        "imports.sql",
        "inspect.sql",
        "keys.sql",
        "limits.sql",
        "maintain.sql",
        "matviews.sql",
        "metrics.sql",
        "retention.sql",
        "schedule.sql",
        "throughput.sql",
    ]


# -- every file parses ------------------------------------------------------------------


def _strip_literals_and_comments(statement: str) -> str:
    """The statement without '...' strings, "..." identifiers and -- comments."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*", " ", statement)


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.name)
def test_every_query_file_parses_into_well_formed_blocks(path: Path) -> None:
    text = path.read_text()
    parsed = parse(text)
    headers = HEADER.findall(text)

    assert parsed, f"{path.name} defines no query"
    assert list(parsed) == headers  # every header became one query, in file order
    for name, statement in parsed.items():
        where = f"{path.name}: {name}"
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), where
        assert statement, f"{where} is empty"
        assert statement == statement.strip(), where
        assert not statement.endswith(";"), where
        assert not any(line.startswith("--") for line in statement.splitlines()), where

        code = _strip_literals_and_comments(statement)
        assert ";" not in code, f"{where} holds more than one statement"
        depth = 0
        for char in code:
            depth += {"(": 1, ")": -1}.get(char, 0)
            assert depth >= 0, f"{where}: ')' without '('"
        assert depth == 0, f"{where}: unbalanced parentheses"
        assert code.count("'") == 0, f"{where}: unterminated string literal"
        # Parameters are psycopg's %(name)s; a stray % would break execution.
        assert "%" not in re.sub(r"%\(\w+\)s|%%", "", code), f"{where}: stray %"
        # Template fields are identifiers: {schema}, {view} for the view a refresh names,
        # {control} and {channel} for the channels a worker or a waiting client listens on,
        # {jobs} and {events} for the procrastinate tables an import reads, {relation},
        # {table} and {column} for what an export or housekeeping names; and one statement,
        # {query}: the SELECT an export wraps in COPY (declared in code).
        assert re.sub(FIELDS, "", code).count("{") == 0, f"{where}: unknown template field"
        assert re.sub(FIELDS, "", code).count("}") == 0, f"{where}: stray }}"
        # Tables are always schema-qualified through the template, never by a literal name.
        assert not re.search(r"\bconveyor\.", code), f"{where} hard-codes the conveyor schema"


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.name)
def test_every_query_has_a_comment_saying_what_it_does(path: Path) -> None:
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if HEADER.match(line):
            following = lines[number + 1] if number + 1 < len(lines) else ""
            assert following.startswith("-- "), f"{path.name}:{number + 2}"
            assert len(following) > 10, f"{path.name}:{number + 2}"


def test_load_holds_every_query_of_every_file() -> None:
    loaded = load()
    expected: dict[str, str] = {}
    for path in QUERY_FILES:
        expected.update(parse(path.read_text()))
    assert dict(loaded) == expected
    total_headers = sum(len(HEADER.findall(p.read_text())) for p in QUERY_FILES)
    assert len(loaded) == total_headers
    assert load() is loaded  # cached


# -- parse ----------------------------------------------------------------------------------


def test_parse_splits_blocks_and_drops_comments() -> None:
    text = (
        "-- File header, dropped.\n"
        "\n"
        "-- name: first\n"
        "-- What it does.\n"
        "SELECT 1\n"
        "FROM {schema}.jobs;\n"
        "\n"
        "-- name: second\n"
        "-- Another.\n"
        "-- Over two lines.\n"
        "UPDATE {schema}.jobs SET x = %(x)s;\n"
        "-- A trailing comment.\n"
    )
    assert parse(text) == {
        "first": "SELECT 1\nFROM {schema}.jobs",
        "second": "UPDATE {schema}.jobs SET x = %(x)s",
    }


def test_parse_of_text_without_names_is_empty() -> None:
    assert parse("-- just a comment\nSELECT 1;\n") == {}


def test_parse_rejects_a_duplicated_name() -> None:
    text = "-- name: twice\nSELECT 1;\n\n-- name: other\nSELECT 2;\n\n-- name: twice\nSELECT 3;\n"
    with pytest.raises(ValueError, match=r"^query 'twice' is defined twice$"):
        parse(text)


def test_load_rejects_a_name_defined_in_two_files(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: shared\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: shared\nSELECT 2;\n")
    with pytest.raises(ValueError, match=r"^query 'shared' is defined in two files$"):
        load(tmp_path)


def test_load_reads_a_given_folder(tmp_path: Path) -> None:
    (tmp_path / "one.sql").write_text("-- name: a\nSELECT 1;\n")
    (tmp_path / "two.sql").write_text("-- name: b\nSELECT 2;\n")
    (tmp_path / "notes.txt").write_text("-- name: c\nSELECT 3;\n")
    assert dict(load(tmp_path)) == {"a": "SELECT 1", "b": "SELECT 2"}


# -- composing for a schema ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "quoted"),
    [("conveyor", b'"conveyor"'), ("t_0123abcd", b'"t_0123abcd"'), ('odd"name', b'"odd""name"')],
)
def test_composed_queries_carry_the_quoted_schema(schema: str, quoted: bytes) -> None:
    composed = Queries(schema)
    assert composed.schema == schema
    assert composed.channel == schema
    assert composed.jobs_table == quoted.decode() + ".jobs"
    names = list(load())
    # Only these touch no table of the schema by name (prepare_bulk takes the table as a
    # parameter; the materialized-view queries name the view, composed per use; two are
    # settings).
    assert {name for name in names if "{schema}" not in load()[name]} == {
        "prepare_bulk",
        "notify_queues",
        "wake_queues",
        "ping",
        "matview_info",
        "matview_try_lock",
        "refresh_matview",
        "refresh_matview_concurrently",
        "matview_rows",
        "use_generic_plans",
        "allow_follow_ups_time",
        "listen_control",  # the control channel, "<schema>.control", composed per use
        "listen_done",
        "read_limits",  # settings
        "retention_lock",  # the schema's retention lock: its key is the schema's name, a parameter
        "api_key_name_lock",  # likewise: one key name's lock in the schema named by a parameter
        "api_key_changes_announced",  # the catalog, for the schema named by a parameter
        "listen_keys",  # the keys channel, "<schema>.keys", composed per use
        "probe_keys_channel",  # a notification on the keys channel, named by a parameter
        "no_jit",
        "clock_minus",  # a cut-off time by the database's clock
        "procrastinate_tables",  # an import's source: procrastinate's tables, named by a parameter
        "start_import_batch",  # an import's lock, keyed by the source's name, and search_path
        "cancel_procrastinate_jobs",  # procrastinate's table, composed per use as {jobs}
        "delete_procrastinate_jobs",
        # Exports and housekeeping read an application's tables, named per use.
        "export_settings",
        "export_relation_info",
        "export_relation_rows",
        "export_estimate",
        "export_csv",
        "export_jsonl",
        "housekeeping_table_info",
        "housekeeping_column_type",
        "housekeeping_cutoff",
        "housekeeping_batch_timeout",
        "housekeeping_delete_batch",
    }
    for name in names:
        if "{control}" in load()[name]:
            channel = schema + ".control"
            text = composed.compose(name, control=(channel,))
            assert text == b'LISTEN "' + channel.replace('"', '""').encode() + b'"', name
            continue
        if "{view}" in load()[name]:
            text = composed.compose(name, view=("analytics", 'odd"view'))
            assert b'"analytics"."odd""view"' in text, name
            continue
        if "{relation}" in load()[name]:
            text = composed.compose(name, relation=("app", 'odd"table'))
            assert text == b'SELECT * FROM "app"."odd""table"', name
            continue
        if "{table}" in load()[name]:
            text = composed.compose(name, table=("app", "t"), column=('odd"col',))
            assert b'DELETE FROM "app"."t"' in text, name
            assert b'"odd""col" < %(cutoff)s' in text, name
            continue
        if "{query}" in load()[name]:
            text = composed.compose_around(name, sql.SQL("SELECT 1"))
            assert b"(SELECT 1\n)" in text or text.rstrip().endswith(b" SELECT 1"), name
            continue
        if "{channel}" in load()[name]:
            text = composed.compose(name, channel=("conveyor.done",))
            assert text == b'LISTEN "conveyor.done"', name
            continue
        if "{jobs}" in load()[name]:
            tables = {
                "jobs": ('odd"src', "procrastinate_jobs"),
                "events": ('odd"src', "procrastinate_events"),
            }
            text = composed.compose(name, **tables)
            assert b'"odd""src"."procrastinate_jobs"' in text, name
            continue
        text = composed[name]
        assert isinstance(text, bytes)
        if "{schema}" in load()[name]:
            # A table of the schema, or the schema's own name as the LISTEN channel.
            assert quoted + b"." in text or text == b"LISTEN " + quoted, name
        assert b"{" not in text, name
        assert b"}" not in text, name
        assert name in composed
        # Exactly the template with the identifier put in.
        assert text == load()[name].replace("{schema}", quoted.decode()).encode()


def test_unknown_query_name_is_a_key_error() -> None:
    composed = for_schema("conveyor")
    assert "no_such_query" not in composed
    with pytest.raises(KeyError):
        composed["no_such_query"]


def test_for_schema_is_cached_per_schema() -> None:
    assert for_schema("conveyor") is for_schema("conveyor")
    assert for_schema("conveyor") is not for_schema("other")
    assert for_schema("other").jobs_table == '"other".jobs'


def test_schema_enters_only_as_an_identifier() -> None:
    hostile = 'x"; DROP TABLE jobs; --'
    composed = Queries(hostile)
    expected = sql.Identifier(hostile).as_string(None)
    assert expected == '"x""; DROP TABLE jobs; --"'
    assert composed.jobs_table == expected + ".jobs"
    assert composed["find_unique_job"].startswith(b'SELECT id FROM "x""; DROP TABLE jobs; --".jobs')


# -- every name the code uses exists ------------------------------------------------------

# queries["x"], fetch("x"), fetch_dicts("x"), Query("x"), Copy("x"), _call("x"); the
# string may start on the next line.
_DIRECT = re.compile(
    r"""(?:\bqueries\[|\bfetch\(|\bfetch_dicts\(|\bQuery\(|\bCopy\(|\b_call\()\s*(['"])(\w+)\1"""
)
# for query in ("a", "b"): ... fetch(query ...)
_LOOP = re.compile(r"""\bfor\s+(\w+)\s+in\s+[(\[]([^)\]]*)[)\]]""")
_STRING = re.compile(r"""(['"])(\w+)\1""")


def referenced_query_names(source: str) -> list[tuple[str, int]]:
    """(name, line) for every query name the source passes to the query runners."""
    found = [(m.group(2), source.count("\n", 0, m.start()) + 1) for m in _DIRECT.finditer(source)]
    for loop in _LOOP.finditer(source):
        var = re.escape(loop.group(1))
        used = re.compile(rf"(?:\bqueries\[|\bfetch\(|\bfetch_dicts\(|\b_call\()\s*{var}\b")
        if used.search(source, loop.end()):
            line = source.count("\n", 0, loop.start()) + 1
            found.extend((m.group(2), line) for m in _STRING.finditer(loop.group(2)))
    return found


def test_the_scanner_finds_names_in_every_form() -> None:
    source = """
        rows = await self.fetch(
            "claim_jobz",
            {"now": now},
        )
        await self.db.fetch_dicts('queue_stat', {})
        yield Query("enqueue_jobs", params)
        yield Copy("copy_job", records)
        cur.execute(queries["complete_job"], {})
        await self._call("retry_dead", {})
        for query in ("get_live", "get_dead"):
            rows = await self.db.fetch_dicts(query, {"id": 1})
        for name in ("not", "queries"):
            print(name)
        self.fetch(name_variable)
    """
    assert sorted(name for name, _ in referenced_query_names(source)) == sorted(
        [
            "claim_jobz",
            "queue_stat",
            "enqueue_jobs",
            "copy_job",
            "complete_job",
            "retry_dead",
            "get_live",
            "get_dead",
        ]
    )
    assert ("claim_jobz", 2) in referenced_query_names(source)  # the line of the call


def _references() -> list[tuple[str, str]]:
    """(name, "file:line") for every query name used under service/conveyor."""
    refs = []
    for path in sorted(SERVICE.rglob("*.py")):
        for name, line in referenced_query_names(path.read_text()):
            refs.append((name, f"{path.relative_to(REPO)}:{line}"))
    return refs


def test_every_query_name_the_code_uses_exists() -> None:
    refs = _references()
    names = {name for name, _ in refs}
    # The scan must actually see the code: these are used on the hot path and by the client.
    assert {
        "enqueue_job",
        "copy_jobs",
        "claim_jobs",
        "complete_jobs",
        "retry_jobs",
        "bury_jobs",
        "queue_stats",
        "get_job",
        "get_dead_job",
        "retry_dead_job",
        "purge_dead_jobs",
        "ensure_history_partitions",
    } <= names
    assert len(names) >= 30

    loaded = set(load())
    missing = sorted(f"{name} ({where})" for name, where in refs if name not in loaded)
    assert missing == [], "queries used in the code but not defined in sql/queries: " + ", ".join(missing)


def test_the_composed_registry_has_every_used_name() -> None:
    composed = for_schema("conveyor")
    assert all(name in composed for name, _ in _references())


def test_queries_module_reads_the_packaged_folder() -> None:
    assert queries_module.sql_dir() == sql_dir()
