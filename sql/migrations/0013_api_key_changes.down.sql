-- Undo 0013: key changes are no longer announced (an API process of this version would
-- remember a revoked key for up to a second; one of version 12 remembers nothing).

DROP TRIGGER api_keys_truncated ON api_keys;
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION api_keys_changed_v1();
