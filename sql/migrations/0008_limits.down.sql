-- Undo 0008: the limit functions go, and rate windows hold one entry per start again.

DROP FUNCTION set_queue_limits(text, integer, interval, integer, integer, interval, integer);
DROP FUNCTION set_queue_limits_v1(text, integer, interval, integer, integer, interval, integer);
DROP FUNCTION claim_limited_v1(text, integer, uuid, interval, timestamptz, smallint[], timestamptz[], bigint[]);
DROP FUNCTION window_reopens_v1(timestamptz[], integer[], timestamptz, interval, integer);
DROP FUNCTION window_push_v1(timestamptz[], integer[], timestamptz, integer, interval, integer);
DROP FUNCTION window_used_v1(timestamptz[], integer[], timestamptz, interval);
-- Back to one entry per start.
UPDATE rate_windows w
SET starts = (SELECT coalesce(array_agg(u.s ORDER BY u.i), '{}')
              FROM unnest(w.starts, w.counts) WITH ORDINALITY AS u (s, c, i), generate_series(1, u.c));
ALTER TABLE rate_windows DROP COLUMN counts;
