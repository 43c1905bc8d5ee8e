-- Undo 0015: the partition functions run with their callers' rights again, callable by
-- anyone; grant_access_v1 goes (privileges it granted stay with their roles).

DROP FUNCTION grant_access_v1(name, text);

GRANT EXECUTE ON FUNCTION ensure_history_partitions_v1(integer, timestamptz) TO PUBLIC;
GRANT EXECUTE ON FUNCTION drop_partition_v1(text, integer) TO PUBLIC;
ALTER FUNCTION ensure_history_partitions_v1(integer, timestamptz) SECURITY INVOKER SET search_path FROM CURRENT;
ALTER FUNCTION drop_partition_v1(text, integer) SECURITY INVOKER SET search_path FROM CURRENT;
