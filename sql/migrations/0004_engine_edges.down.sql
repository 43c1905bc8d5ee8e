-- Undo 0004: errors unbounded again, no hand-back count.

DROP FUNCTION append_error_v1(jsonb, jsonb);
ALTER TABLE jobs DROP COLUMN handbacks;
