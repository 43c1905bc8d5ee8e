-- Undo 0013: key changes are no longer announced. API processes are told, at this commit, to
-- forget every key; they then see that the trigger is gone and remember nothing
-- (conveyor.ops.key_cache, C6), as one of version 12 does.

SELECT pg_notify(left(current_schema(), 58) || '.keys', '');

DROP TRIGGER api_keys_truncated ON api_keys;
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION api_keys_changed_v1();
