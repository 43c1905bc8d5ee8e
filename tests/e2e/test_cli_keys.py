"""`conveyor keys create|list|revoke` and the development key of `conveyor dev`, run as a
user runs them: real processes against real PostgreSQL. Each token a command prints is
checked the way the HTTP API checks it (conveyor.ops.keys.authenticate)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import pytest

from conveyor.db.database import Database
from conveyor.errors import AuthenticationError
from conveyor.ops.roles import Principal, Role

from ..helpers import DB, wait_until_sync
from .test_cli import TASKS, conveyor, conveyor_many, env_for, expect_error, ok, started

pytestmark = pytest.mark.processes

TOKEN = re.compile(r"cvk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def env(database_url: str, schema: str) -> dict[str, str]:
    return env_for(database_url, schema)


def check(database_url: str, schema: str, token: str) -> Principal | str:
    """Who the token is, or the reason it is refused."""
    from conveyor.ops.keys import authenticate

    async def run() -> Principal | str:
        seam = Database(database_url, schema)
        await seam.open()
        try:
            return await authenticate(seam, f"Bearer {token}")
        except AuthenticationError as exc:
            return exc.reason
        finally:
            await seam.close()

    return asyncio.run(run())


def test_create_prints_the_token_once_list_never_shows_it_and_revoke_stops_it(
    env: dict[str, str], database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    made = conveyor("keys", "create", "--name", "deploy-bot", "--role", "Operator", env=env, cwd=tmp_path)
    token = ok(made).strip()
    assert TOKEN.fullmatch(token), str(made)  # stdout is the token alone
    assert "will not be shown again" in made.stderr, str(made)
    assert "Authorization: Bearer" in made.stderr, str(made)
    assert token not in made.stderr
    key_id = db.one("select id from {schema}.api_keys where name = 'deploy-bot'")
    assert check(database_url, schema, token) == Principal(Role.OPERATOR, "deploy-bot", key_id)

    as_json = json.loads(
        ok(
            conveyor(
                "keys", "create", "--name", "reader", "--role", "viewer", "--json", env=env, cwd=tmp_path
            )
        )
    )
    assert as_json["key"]["role"] == "viewer"
    assert as_json["key"]["revoked_at"] is None
    assert check(database_url, schema, as_json["token"]) == Principal(
        Role.VIEWER, "reader", as_json["key"]["id"]
    )

    listing, listing_json = conveyor_many(
        [["keys", "list"], ["keys", "list", "--json"]], env=env, cwd=tmp_path
    )
    text = ok(listing)
    secret = token.split("_", 2)[2]
    assert secret not in text
    assert secret not in ok(listing_json)
    lines = text.splitlines()
    assert lines[0].split() == ["id", "name", "role", "token", "created_at", "last_used_at", "revoked_at"]
    assert [line.split()[:4] for line in lines[1:]] == [
        [str(key_id), "deploy-bot", "operator", f"{token[:17]}..."],
        [str(as_json["key"]["id"]), "reader", "viewer", f"{as_json['token'][:17]}..."],
    ]
    assert [k["name"] for k in json.loads(listing_json.stdout)] == ["deploy-bot", "reader"]

    revoked = ok(conveyor("keys", "revoke", "deploy-bot", env=env, cwd=tmp_path))
    assert (
        revoked.strip() == f"API key {key_id} 'deploy-bot' revoked: requests with it are refused from now on"
    )
    assert check(database_url, schema, token) == "revoked"
    assert check(database_url, schema, as_json["token"]) != "revoked"

    again, live, everything = conveyor_many(
        [
            ["keys", "revoke", str(key_id), "--json"],
            ["keys", "list", "--json"],
            ["keys", "list", "--all", "--json"],
        ],
        env=env,
        cwd=tmp_path,
    )
    assert json.loads(ok(again))["already_revoked"] is True
    assert [k["name"] for k in json.loads(ok(live))] == ["reader"]
    assert [(k["name"], k["revoked_at"] is not None) for k in json.loads(ok(everything))] == [
        ("deploy-bot", True),
        ("reader", False),
    ]


def test_key_commands_refuse_bad_input_with_one_line_and_change_nothing(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    ok(conveyor("keys", "create", "--name", "taken", "--role", "admin", env=env, cwd=tmp_path))
    before = db.all("select id, name, revoked_at from {schema}.api_keys order by id")
    taken, numeric, spaced, unknown, no_key = conveyor_many(
        [
            ["keys", "create", "--name", "taken", "--role", "viewer"],
            ["keys", "create", "--name", "42", "--role", "viewer"],
            ["keys", "create", "--name", "two words", "--role", "viewer"],
            ["keys", "revoke", "nobody"],
            ["keys", "revoke", "999999"],
        ],
        env=env,
        cwd=tmp_path,
    )
    expect_error(taken, "a key named 'taken' exists already: revoke it first")
    expect_error(numeric, "bad key name '42': use letters, digits and . _ @ -, starting with a letter")
    expect_error(spaced, "bad key name 'two words'")
    expect_error(unknown, "no API key named 'nobody' (not revoked)")
    expect_error(no_key, "no API key with id 999999")

    role, missing = conveyor_many(
        [["keys", "create", "--name", "x", "--role", "root"], ["keys", "create", "--name", "x"]],
        env=env,
        cwd=tmp_path,
    )
    assert role.returncode == 2, str(role)
    assert "'root' is not one of 'viewer', 'operator', 'admin'" in role.stderr, str(role)
    assert missing.returncode == 2, str(missing)
    assert "Missing option '--role'" in missing.stderr, str(missing)
    assert db.all("select id, name, revoked_at from {schema}.api_keys order by id") == before


def test_dev_prints_a_fresh_admin_key_on_each_start_and_revokes_the_one_before(
    env: dict[str, str], database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    env = {**env, "PYTHONUNBUFFERED": "1"}
    args = ["dev", "--tasks", TASKS, "--poll-interval", "0.2", "--grace", "5", "--api-port", "0"]
    tokens = []
    for run in range(2):
        with started(*args, env=env, cwd=tmp_path, name=f"dev{run}") as dev:
            # Its worker serving: the process answers signals from then on.
            wait_until_sync(lambda dev=dev: dev.alive() and " serving " in dev.stderr(), within=60)
            out = dev.stdout()
            found = TOKEN.findall(out)
            assert found, str(dev)
            assert set(found) == {found[0]}, str(dev)  # one token, printed with how to use it
            assert f"Authorization: Bearer {found[0]}" in out, str(dev)
            tokens.append(found[0])
            assert dev.stop(signal.SIGINT) == 0, str(dev)
    first, second = tokens
    assert first != second
    assert check(database_url, schema, first) == "revoked"
    principal = check(database_url, schema, second)
    assert isinstance(principal, Principal)
    assert (principal.role, principal.name) == (Role.ADMIN, "dev")
    assert db.all("select name, revoked_at is null from {schema}.api_keys order by id") == [
        ("dev", False),
        ("dev", True),
    ]
