-- Conveyor schema, version 13: a change to the API keys is announced (docs/api.md, "API keys
-- and roles").
--
-- Each API process remembers, for at most a second, the keys it has just found valid
-- (conveyor.ops.key_cache). It forgets them all when this notification arrives, on the channel
-- '<schema>.keys' (the schema's first 58 characters), sent by any statement that revokes a
-- key, changes its role, name or secret, or removes rows: from Conveyor, from psql, from
-- anywhere. It is sent in the changing transaction, so it is delivered at its commit and
-- never for a change rolled back. The payload is empty: keys change rarely, and every
-- process forgets every key. last_used_at, written once a minute by every busy key, is not
-- a change of the key and announces nothing.

CREATE FUNCTION api_keys_changed_v1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(left(TG_TABLE_SCHEMA, 58) || '.keys', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF name, role, prefix, token_hash, revoked_at OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed_v1();
CREATE TRIGGER api_keys_truncated
    AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed_v1();
