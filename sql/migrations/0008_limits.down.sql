-- Undo 0008: the limit functions go (the columns and tables they use belong to 0007).

DROP FUNCTION set_queue_limits(text, integer, interval, integer, integer, interval, integer);
DROP FUNCTION set_queue_limits_v1(text, integer, interval, integer, integer, interval, integer);
DROP FUNCTION claim_limited_v1(text, integer, uuid, interval, timestamptz);
DROP FUNCTION window_push_v1(timestamptz[], timestamptz, integer, interval, integer);
