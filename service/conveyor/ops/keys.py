"""API keys: made, listed and revoked by an admin; checked on every request of the HTTP API.

A token is ``cvk_<prefix>_<secret>``: ``prefix`` is 12 random hex digits that find the key's
row (unique, not secret, shown in listings), ``secret`` 32 random bytes in base64url (43
characters). The token is returned once, by :func:`create_key`, and never stored: the
database keeps the SHA-256 of the secret (sql/migrations/0011_api_keys.up.sql says why a
fast hash is right for random secrets).

Contracts:

- :func:`authenticate` reads the key's row on every call (one lookup by the prefix's unique
  index) and compares hashes with :func:`hmac.compare_digest`. The API calls it through
  :class:`conveyor.ops.key_cache.KeyCache`, which remembers a valid key for a second at most
  and forgets it when any key changes (a trigger notifies), so a revoke holds from its commit
  for every process at once.
- A refusal is :class:`AuthenticationError` with a ``reason`` (``missing``, ``malformed``,
  ``unknown``, ``revoked``) and a message that never repeats the token. ``revoked`` is said
  only to the holder of the right secret; a wrong secret is ``unknown`` whatever the prefix.
- ``last_used_at`` is written at most once a minute per key, after a successful check (a
  busy key costs one write a minute, and a wrong secret never writes); the key is then read
  again, since that write may have waited for a change of the key to commit.
- Making, listing and revoking keys need the admin role (:func:`conveyor.ops.roles.require`);
  the CLI acts as :data:`conveyor.ops.roles.LOCAL_ADMIN`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from ..db.database import Database
from ..errors import AuthenticationError, ConveyorError, InvalidOptionError, NotFoundError
from .roles import Principal, Role, require

TOKEN_PREFIX = "cvk"
PREFIX_HEX_DIGITS = 12
SECRET_BYTES = 32
MAX_NAME = 64  # characters (the table's name_form rule says the same)
# How often last_used_at is written for one key, at most (touch_api_key says the same).
TOUCH_EVERY = timedelta(minutes=1)

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._@-]{0,63}")
_TOKEN = re.compile(rf"{TOKEN_PREFIX}_([0-9a-f]{{{PREFIX_HEX_DIGITS}}})_([A-Za-z0-9_-]{{43}})")
# A header longer than this is not a Bearer API key, and is not looked at further.
_MAX_HEADER = 256
# Compared against when no key has the prefix, so that a miss does the same work as a hit.
_NO_HASH = bytes(32)


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listings show it: never its token, which only its maker ever sees."""

    id: int
    name: str
    role: Role
    prefix: str  # the token starts with cvk_<prefix>_
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def as_dict(self) -> dict[str, Any]:
        """For JSON: the role by its name."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.label,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


def check_name(name: str) -> str:
    """A key's name: 1 to 64 characters, letters, digits and ``. _ @ -``, starting with a letter."""
    if not isinstance(name, str) or not name:
        raise InvalidOptionError("a key name is required")
    if len(name) > MAX_NAME:
        raise InvalidOptionError(f"a key name is at most {MAX_NAME} characters (got {len(name)})")
    if not _NAME.fullmatch(name):
        raise InvalidOptionError(
            f"bad key name {name!r}: use letters, digits and . _ @ -, starting with a letter"
        )
    return name


def parse_role(role: Role | str) -> Role:
    """A role, or its name (``viewer``, ``operator``, ``admin``); anything else is refused clearly."""
    if isinstance(role, Role):
        return role
    if not isinstance(role, str):
        raise InvalidOptionError(f"a role is one of viewer, operator, admin; got {type(role).__name__}")
    try:
        return Role.parse(role)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def new_token() -> tuple[str, str, bytes]:
    """A fresh token: (token, its prefix, the hash of its secret)."""
    prefix = secrets.token_hex(PREFIX_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{TOKEN_PREFIX}_{prefix}_{secret}", prefix, hash_secret(secret)


def _info(row: tuple[Any, ...]) -> KeyInfo:
    key_id, name, role, prefix, created_at, revoked_at, last_used_at = row[:7]
    return KeyInfo(int(key_id), name, Role.parse(role), prefix, created_at, revoked_at, last_used_at)


async def create_key(
    db: Database,
    principal: Principal,
    name: str,
    role: Role | str,
    *,
    replace: bool = False,
    now: datetime | None = None,
) -> tuple[KeyInfo, str]:
    """Make a key; returns it and its token, which is shown to no one ever again.

    A key not revoked with the same name is refused (:class:`ConveyorError`), unless
    ``replace``: then it is revoked in the same transaction as the new key is made (how
    ``conveyor dev`` makes a fresh key on each start). Replacements of one name take turns
    (a lock on the name, held to the commit), so concurrent ones all succeed, the last to
    commit leaving the one live key."""
    require(principal, Role.ADMIN, "making an API key")
    name = check_name(name)
    level = parse_role(role)
    for _ in range(3):  # a prefix taken already (once in 2**48 makings): draw again
        token, prefix, token_hash = new_token()
        params = {"name": name, "role": level.label, "prefix": prefix, "token_hash": token_hash, "now": now}
        try:
            async with db.transaction() as tx:
                if replace:
                    # Without the lock, two replacements would each revoke only the key they
                    # see, and the second insert would meet the first's uncommitted key.
                    await tx.fetch("api_key_name_lock", {"schema": db.schema, "name": name})
                    await tx.fetch("revoke_api_key", {"id": None, "name": name, "now": now})
                rows = await tx.fetch("create_api_key", params)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "api_keys_prefix":
                continue
            raise ConveyorError(
                f"a key named {name!r} exists already: revoke it first (`conveyor keys revoke {name}`) "
                "or choose another name"
            ) from None
        return _info(rows[0]), token
    raise ConveyorError("could not draw an unused key prefix; try again")  # pragma: no cover


async def list_keys(db: Database, principal: Principal, *, include_revoked: bool = False) -> list[KeyInfo]:
    """The keys not revoked (and revoked ones with ``include_revoked``), oldest first."""
    require(principal, Role.ADMIN, "listing API keys")
    rows = await db.fetch("list_api_keys", {"include_revoked": include_revoked})
    return [_info(row) for row in rows]


@dataclass(frozen=True)
class Revoked:
    key: KeyInfo
    already: bool  # it had been revoked before (its revoked_at is that earlier time)


async def revoke_key(
    db: Database, principal: Principal, id_or_name: int | str, *, now: datetime | None = None
) -> Revoked:
    """Revoke a key by id (an int, or a str of digits) or by name (the key not revoked of that
    name). It stops working at once, in every process. Revoking a revoked key by id changes
    nothing and says so (``already``); an unknown key is :class:`NotFoundError`."""
    require(principal, Role.ADMIN, "revoking an API key")
    key_id, name = _id_or_name(id_or_name)
    rows = await db.fetch("revoke_api_key", {"id": key_id, "name": name, "now": now})
    if not rows:
        what = (
            f"no API key with id {key_id}"
            if key_id is not None
            else f"no API key named {name!r} (not revoked)"
        )
        raise NotFoundError(what)
    return Revoked(_info(rows[0]), bool(rows[0][7]))


def _id_or_name(value: int | str) -> tuple[int | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidOptionError(f"a key is named by its id or its name, got {type(value).__name__}")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if not 1 <= value <= 2**63 - 1:
            raise InvalidOptionError(f"a key id is an integer from 1 to 2**63-1, got {value}")
        return value, None
    return None, check_name(value)


def parse_authorization(header_value: str | None) -> tuple[str, str]:
    """The (prefix, secret) of an ``Authorization: Bearer cvk_...`` header, or the refusal."""
    if header_value is None or not header_value.strip():
        raise AuthenticationError(
            "no credentials: send the header 'Authorization: Bearer <API key>' "
            "(make a key with `conveyor keys create`)",
            reason="missing",
        )
    if len(header_value) > _MAX_HEADER:
        raise AuthenticationError(
            "malformed Authorization header: too long for an API key", reason="malformed"
        )
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationError(
            "malformed Authorization header: expected 'Bearer <API key>'", reason="malformed"
        )
    found = _TOKEN.fullmatch(token.strip())
    if found is None:
        raise AuthenticationError(
            "malformed API key: expected cvk_<prefix>_<secret>, as `conveyor keys create` printed it",
            reason="malformed",
        )
    return found[1], found[2]


async def authenticate(db: Database, header_value: str | None, *, now: datetime | None = None) -> Principal:
    """Who sends this ``Authorization`` header value: the key's :class:`Principal`, or
    :class:`AuthenticationError` (no header, a malformed one, an unknown or revoked key)."""
    prefix, secret = parse_authorization(header_value)
    principal, last_used_at = await _check(db, prefix, secret)
    if last_used_at is None or _older_than_a_minute(last_used_at, now):
        await db.fetch("touch_api_key", {"id": principal.key_id, "now": now})
        # The write waits for a transaction that holds the key's row (one that revokes it or
        # changes its role, say) and may end after it committed: the key is read again, so
        # that a check that waited for a change is decided by it, never by the row before.
        principal, _ = await _check(db, prefix, secret)
    return principal


async def _check(db: Database, prefix: str, secret: str) -> tuple[Principal, datetime | None]:
    """The key's Principal and last_used_at, as the database has it now, or the refusal."""
    rows = await db.fetch("find_api_key", {"prefix": prefix})
    stored = bytes(rows[0][3]) if rows else _NO_HASH
    matches = hmac.compare_digest(hash_secret(secret), stored)
    if not rows or not matches:
        raise AuthenticationError("unknown API key", reason="unknown")
    key_id, name, role, _, revoked_at, last_used_at = rows[0]
    if revoked_at is not None:
        raise AuthenticationError(f"the API key {name!r} was revoked", reason="revoked")
    return Principal(Role.parse(role), name, int(key_id)), last_used_at


async def key_changes_announced(db: Database) -> bool:
    """Whether the schema announces every change to a key (the trigger of version 13 is there
    and enabled), so that a process may remember keys (conveyor.ops.key_cache)."""
    rows = await db.fetch("api_key_changes_announced", {"schema": db.schema})
    return bool(rows[0][0])


def _older_than_a_minute(last_used_at: datetime, now: datetime | None) -> bool:
    """Whether last_used_at may be due for a write. Without an injected clock this process's
    clock judges, and the statement's own condition (the database's clock) decides."""
    if now is None:
        now = datetime.now(last_used_at.tzinfo)
    return now - last_used_at >= TOUCH_EVERY
