"""API keys against a real PostgreSQL: made, listed, revoked and checked (conveyor.ops.keys).

The HTTP API calls :func:`authenticate` on every request; a revoke must hold at once for
every process, so these tests check through separate pools (separate connections).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from conveyor.db.database import Database
from conveyor.errors import (
    AuthenticationError,
    ConveyorError,
    ForbiddenError,
    InvalidOptionError,
    NotFoundError,
)
from conveyor.ops.keys import authenticate, create_key, list_keys, revoke_key
from conveyor.ops.roles import LOCAL_ADMIN, Principal, Role

from ..helpers import DB

ADMIN = LOCAL_ADMIN


@pytest.fixture
async def seam(database_url: str, schema: str) -> AsyncIterator[Database]:
    database = Database(database_url, schema)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def other(database_url: str, schema: str) -> AsyncIterator[Database]:
    """A second pool, as another API process has."""
    database = Database(database_url, schema)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def refusal(database: Database, header: str | None) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        await authenticate(database, header)
    return caught.value


# -- making and checking -----------------------------------------------------------------


async def test_a_new_key_authenticates_as_its_role_and_only_its_hash_is_stored(
    seam: Database, db: DB
) -> None:
    info, token = await create_key(seam, ADMIN, "deploy-bot", "operator")
    assert (info.name, info.role, info.revoked_at, info.last_used_at) == (
        "deploy-bot",
        Role.OPERATOR,
        None,
        None,
    )
    scheme, prefix, secret = token.split("_", 2)
    assert scheme == "cvk"
    assert prefix == info.prefix
    assert len(prefix) == 12
    assert len(secret) == 43

    principal = await authenticate(seam, bearer(token))
    assert principal == Principal(Role.OPERATOR, "deploy-bot", info.id)

    row = db.one("select to_jsonb(k)::text from {schema}.api_keys k where id = %s", [info.id])
    assert secret not in row
    assert token not in row
    stored = db.one("select token_hash from {schema}.api_keys where id = %s", [info.id])
    assert bytes(stored) == hashlib.sha256(secret.encode()).digest()


async def test_every_role_is_kept_and_tokens_differ(seam: Database) -> None:
    roles: list[Role | str] = ["viewer", " Operator ", Role.ADMIN]
    made = [await create_key(seam, ADMIN, f"k{number}", role) for number, role in enumerate(roles)]
    assert [info.role for info, _ in made] == [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    assert len({token for _, token in made}) == 3
    assert len({info.prefix for info, _ in made}) == 3
    for info, token in made:
        assert (await authenticate(seam, bearer(token))).role is info.role
    # The scheme's case does not matter (RFC 9110); spaces around the token do not either.
    assert (await authenticate(seam, f"bearer  {made[0][1]} ")).name == "k0"


async def test_a_wrong_secret_with_a_right_prefix_is_an_unknown_key_and_writes_nothing(
    seam: Database, db: DB
) -> None:
    info, token = await create_key(seam, ADMIN, "ci", "admin")
    stem, secret = token[:17], token[17:]
    assert stem == f"cvk_{info.prefix}_"
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    error = await refusal(seam, bearer(stem + wrong))
    assert (error.reason, str(error)) == ("unknown", "unknown API key")
    # A prefix no key has, with the right secret: the same answer.
    other_prefix = ("0" if info.prefix[0] != "0" else "1") + info.prefix[1:]
    error = await refusal(seam, bearer(f"cvk_{other_prefix}_{secret}"))
    assert (error.reason, str(error)) == ("unknown", "unknown API key")
    assert db.one("select last_used_at from {schema}.api_keys where id = %s", [info.id]) is None


@pytest.mark.parametrize(
    ("header", "reason", "start"),
    [
        (None, "missing", "no credentials"),
        ("", "missing", "no credentials"),
        ("   ", "missing", "no credentials"),
        ("Basic dXNlcjpwYXNz", "malformed", "malformed Authorization header"),
        ("Bearer", "malformed", "malformed API key"),
        ("Bearer ", "malformed", "malformed API key"),
        ("Token cvk_0123456789ab_" + "a" * 43, "malformed", "malformed Authorization header"),
        ("cvk_0123456789ab_" + "a" * 43, "malformed", "malformed Authorization header"),
        ("Bearer cvk_0123456789ab", "malformed", "malformed API key"),
        ("Bearer cvk_0123456789AB_" + "a" * 43, "malformed", "malformed API key"),
        ("Bearer cvk_0123456789ab_" + "a" * 42, "malformed", "malformed API key"),
        ("Bearer cvk_0123456789ab_" + "a" * 44, "malformed", "malformed API key"),
        ("Bearer cvk_0123456789ab_" + "a" * 42 + "=", "malformed", "malformed API key"),
        ("Bearer cvk_0123456789ab_" + "a" * 42 + "é", "malformed", "malformed API key"),
        ("Bearer cvk_0123456789ab_" + "a" * 43 + " extra", "malformed", "malformed API key"),
        ("Bearer xyz_0123456789ab_" + "a" * 43, "malformed", "malformed API key"),
        ("Bearer " + "a" * 5000, "malformed", "malformed Authorization header: too long"),
        ("Bearer \x00", "malformed", "malformed API key"),
    ],
)
async def test_malformed_headers_are_refused_with_their_reason(
    seam: Database, header: str | None, reason: str, start: str
) -> None:
    await create_key(seam, ADMIN, "present", "admin")  # a key exists: refusals are not for lack of one
    error = await refusal(seam, header)
    assert error.reason == reason
    assert str(error).startswith(start), str(error)
    if header and len(header) > 20:
        assert header.split()[-1] not in str(error)  # the credentials are never repeated


# -- revoking ------------------------------------------------------------------------------


async def test_a_revoked_key_is_refused_at_once_by_another_process(seam: Database, other: Database) -> None:
    info, token = await create_key(seam, ADMIN, "reporting", "viewer")
    assert (await authenticate(other, bearer(token))).key_id == info.id  # the other pool has used it

    revoked = await revoke_key(seam, ADMIN, "reporting")
    assert (revoked.key.id, revoked.already) == (info.id, False)
    assert revoked.key.revoked_at is not None

    error = await refusal(other, bearer(token))
    assert (error.reason, str(error)) == ("revoked", "the API key 'reporting' was revoked")
    error = await refusal(seam, bearer(token))
    assert error.reason == "revoked"


async def test_revoke_by_id_by_digits_twice_and_unknown(seam: Database, db: DB) -> None:
    first, token = await create_key(seam, ADMIN, "one", "viewer")
    second, _ = await create_key(seam, ADMIN, "two", "viewer")
    done = await revoke_key(seam, ADMIN, first.id)
    assert (done.key.name, done.already) == ("one", False)
    again = await revoke_key(seam, ADMIN, first.id)
    assert (again.already, again.key.revoked_at) == (True, done.key.revoked_at)
    assert (await revoke_key(seam, ADMIN, str(second.id))).key.name == "two"

    with pytest.raises(NotFoundError, match=r"no API key named 'one' \(not revoked\)"):
        await revoke_key(seam, ADMIN, "one")  # by name: only keys not revoked
    with pytest.raises(NotFoundError, match="no API key with id 999999"):
        await revoke_key(seam, ADMIN, 999999)
    with pytest.raises(NotFoundError, match="no API key named 'nobody'"):
        await revoke_key(seam, ADMIN, "nobody")
    for bad in (0, -1, 2**63, "bad name", True, 1.5):
        with pytest.raises(InvalidOptionError):
            await revoke_key(seam, ADMIN, bad)  # type: ignore[arg-type]
    assert db.one("select count(*) from {schema}.api_keys where revoked_at is null") == 0
    assert (await refusal(seam, bearer(token))).reason == "revoked"


async def test_a_revoked_keys_name_can_be_used_again_and_listing_shows_what_is_asked(seam: Database) -> None:
    old, old_token = await create_key(seam, ADMIN, "app", "viewer")
    with pytest.raises(ConveyorError, match="a key named 'app' exists already: revoke it first"):
        await create_key(seam, ADMIN, "app", "admin")
    await revoke_key(seam, ADMIN, "app")
    new, new_token = await create_key(seam, ADMIN, "app", "admin")
    assert new.id != old.id

    live = await list_keys(seam, ADMIN)
    assert [(k.id, k.name, k.role, k.revoked) for k in live] == [(new.id, "app", Role.ADMIN, False)]
    everything = await list_keys(seam, ADMIN, include_revoked=True)
    assert [(k.id, k.revoked) for k in everything] == [(old.id, True), (new.id, False)]
    assert everything[1].as_dict()["role"] == "admin"
    assert (await refusal(seam, bearer(old_token))).reason == "revoked"
    assert (await authenticate(seam, bearer(new_token))).role is Role.ADMIN


async def test_replace_revokes_the_old_key_and_makes_a_new_one_in_one_transaction(seam: Database) -> None:
    first, first_token = await create_key(seam, ADMIN, "dev", "admin", replace=True)  # nothing to replace
    second, second_token = await create_key(seam, ADMIN, "dev", "admin", replace=True)
    assert second.id != first.id
    assert (await refusal(seam, bearer(first_token))).reason == "revoked"
    assert (await authenticate(seam, bearer(second_token))).key_id == second.id
    # A refused replace (a bad role) leaves the old key working.
    with pytest.raises(InvalidOptionError):
        await create_key(seam, ADMIN, "dev", "root", replace=True)
    assert (await authenticate(seam, bearer(second_token))).key_id == second.id


# -- input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "a key name is required"),
        ("7", "bad key name '7': use letters, digits and . _ @ -, starting with a letter"),
        ("1abc", "bad key name"),
        ("-x", "bad key name"),
        ("two words", "bad key name"),
        ("tab\there", "bad key name"),
        ("nul\x00", "bad key name"),
        ("émile", "bad key name"),
        ("x" * 65, "a key name is at most 64 characters (got 65)"),
        (None, "a key name is required"),
    ],
)
async def test_bad_names_are_refused_and_nothing_is_written(
    seam: Database, db: DB, name: str, message: str
) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        await create_key(seam, ADMIN, name, "viewer")
    assert str(caught.value).startswith(message), str(caught.value)
    assert db.one("select count(*) from {schema}.api_keys") == 0


async def test_names_at_the_bounds_are_taken(seam: Database) -> None:
    for name in ("a", "A" + "x" * 63, "ci.deploy_bot-2", "ops@example.com"):
        info, _ = await create_key(seam, ADMIN, name, "viewer")
        assert info.name == name


@pytest.mark.parametrize("role", ["superuser", "", "Admins", "3", None])
async def test_unknown_roles_are_refused_clearly(seam: Database, db: DB, role: str) -> None:
    with pytest.raises(
        InvalidOptionError, match=r"(unknown role .*: use one of viewer, operator, admin)|(got )"
    ):
        await create_key(seam, ADMIN, "someone", role)
    assert db.one("select count(*) from {schema}.api_keys") == 0


def test_the_table_refuses_rows_the_python_side_would_not_write(db: DB) -> None:
    good = ("ok", "viewer", "0123456789ab", b"\x00" * 32)
    for column, value in [
        ("name", "1bad"),
        ("role", "root"),
        ("prefix", "XYZ"),
        ("token_hash", b"short"),
    ]:
        row = dict(zip(("name", "role", "prefix", "token_hash"), good, strict=True))
        row[column] = value
        with pytest.raises(psycopg.errors.CheckViolation):
            db.all(
                "insert into {schema}.api_keys (name, role, prefix, token_hash)"
                " values (%(name)s, %(role)s, %(prefix)s, %(token_hash)s)",
                row,
            )


# -- roles and last use -------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
async def test_only_an_admin_manages_keys(seam: Database, db: DB, role: Role) -> None:
    info, _ = await create_key(seam, ADMIN, "kept", "viewer")
    caller = Principal(role, "someone", 42)
    with pytest.raises(ForbiddenError, match="making an API key needs the admin role"):
        await create_key(seam, caller, "sneaky", "admin")
    with pytest.raises(ForbiddenError, match="listing API keys needs the admin role"):
        await list_keys(seam, caller)
    with pytest.raises(ForbiddenError, match="revoking an API key needs the admin role"):
        await revoke_key(seam, caller, info.id)
    assert db.all("select name, revoked_at from {schema}.api_keys") == [("kept", None)]
    admin = Principal(Role.ADMIN, "boss", 1)
    assert [k.name for k in await list_keys(seam, admin)] == ["kept"]


async def test_last_used_at_is_written_at_most_once_a_minute(seam: Database, db: DB) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    info, token = await create_key(seam, ADMIN, "busy", "viewer", now=start)
    assert info.created_at == start

    def last_used() -> datetime | None:
        value: datetime | None = db.one("select last_used_at from {schema}.api_keys where id = %s", [info.id])
        return value

    await authenticate(seam, bearer(token), now=start + timedelta(seconds=5))
    assert last_used() == start + timedelta(seconds=5)
    for seconds in (6, 30, 64.9):
        await authenticate(seam, bearer(token), now=start + timedelta(seconds=seconds))
    assert last_used() == start + timedelta(seconds=5)
    await authenticate(seam, bearer(token), now=start + timedelta(seconds=65))
    assert last_used() == start + timedelta(seconds=65)
    # A revoked key's last use stays what it was.
    await revoke_key(seam, ADMIN, info.id, now=start + timedelta(minutes=5))
    await refusal(seam, bearer(token))
    assert last_used() == start + timedelta(seconds=65)


async def test_many_requests_at_once_authenticate(seam: Database, db: DB) -> None:
    info, token = await create_key(seam, ADMIN, "parallel", "operator")
    principals = await asyncio.gather(*(authenticate(seam, bearer(token)) for _ in range(40)))
    assert {p.key_id for p in principals} == {info.id}
    assert db.one("select last_used_at is not null from {schema}.api_keys where id = %s", [info.id])
