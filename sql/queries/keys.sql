-- API keys (docs/api.md, "API keys and roles"). The table is in
-- sql/migrations/0011_api_keys.up.sql; conveyor.ops.keys makes tokens and checks them.

-- name: create_api_key
-- A new key; fails with unique_violation if a key not revoked has the name (or, once in
-- 2**48 makings, the prefix).
INSERT INTO {schema}.api_keys (name, role, prefix, token_hash, created_at)
VALUES (%(name)s, %(role)s, %(prefix)s, %(token_hash)s, coalesce(%(now)s, now()))
RETURNING id, name, role, prefix, created_at, revoked_at, last_used_at;

-- name: api_key_name_lock
-- Take the lock of one key name in one schema for this transaction: makings that replace the
-- key of a name take turns, so each one's revoke sees the key the one before it made (the
-- two-key form: a lock space of its own, apart from the one-key locks of retention and
-- migrations). %(schema)s: the schema's name.
SELECT pg_advisory_xact_lock(hashtext('conveyor api key ' || %(schema)s), hashtext(%(name)s));

-- name: list_api_keys
-- Keys in the order they were made, revoked ones too when asked.
SELECT id, name, role, prefix, created_at, revoked_at, last_used_at
FROM {schema}.api_keys
WHERE %(include_revoked)s OR revoked_at IS NULL
ORDER BY id;

-- name: revoke_api_key
-- Revoke a key by id, or the key not revoked of that name; a key revoked already keeps its
-- time. Returns the key and whether it was revoked before, or nothing if none matches.
WITH target AS (
    SELECT k.id, k.revoked_at AS revoked_before FROM {schema}.api_keys k
    WHERE k.id = %(id)s OR (k.name = %(name)s AND k.revoked_at IS NULL)
    FOR UPDATE
)
UPDATE {schema}.api_keys k SET revoked_at = coalesce(k.revoked_at, coalesce(%(now)s, now()))
FROM target t
WHERE k.id = t.id
RETURNING k.id, k.name, k.role, k.prefix, k.created_at, k.revoked_at, k.last_used_at,
          t.revoked_before IS NOT NULL AS revoked_before;

-- name: find_api_key
-- The key a token's prefix names (the lookup of every authenticated request, by a unique
-- index): its hash is compared in Python, in constant time.
SELECT id, name, role, token_hash, revoked_at, last_used_at
FROM {schema}.api_keys
WHERE prefix = %(prefix)s;

-- name: touch_api_key
-- Record that a key was used, at most once a minute per key (so a busy key costs one write a
-- minute, however many requests it makes).
UPDATE {schema}.api_keys SET last_used_at = coalesce(%(now)s, now())
WHERE id = %(id)s AND revoked_at IS NULL
  AND (last_used_at IS NULL OR last_used_at <= coalesce(%(now)s, now()) - interval '1 minute');

-- name: api_key_changes_announced
-- Whether a change to a key is announced on '<schema>.keys' (the trigger of schema version 13
-- is there and enabled): the API remembers keys only then. %(schema)s: the schema's name.
SELECT EXISTS (
    SELECT FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = 'api_keys'
      AND t.tgname = 'api_keys_changed' AND t.tgenabled <> 'D'
);

-- name: probe_keys_channel
-- Ask for a 'probe' on the keys channel: an API process trusts its LISTEN connection only once
-- a notification has come back on it (conveyor.ops.key_cache, C7). %(channel)s: the channel.
SELECT pg_notify(%(channel)s, 'probe');

-- name: listen_keys
-- Subscribe to the channel where any change to a key is announced (payload empty; the trigger
-- is in sql/migrations/0013_api_key_changes.up.sql): API processes forget the keys they remember.
LISTEN {channel};
