-- Conveyor schema, version 4: a job's errors are bounded, and so are its hand-backs.
--
-- Every attempt appends an entry (with a traceback of up to 16 kB) to a job's errors, and
-- the whole array is written again each time. append_error_v1 keeps the first 3 entries and
-- the last 7, and stands one entry in for those between: {"dropped": n, "attempt": ...,
-- "at": ..., "error": "..."}, n counting every entry it replaced. Every statement that
-- appends an error goes through it (retry, bury, hand-back, rescue). It never raises, whatever
-- JSON it finds (errors can be written by hand): errors that are not an array start a fresh
-- array, and an entry whose "dropped" is not a positive number counts as one entry.
--
-- jobs.handbacks counts a job's graceful hand-backs (a worker stopping hands back what it
-- could not finish, without counting the attempt). From the sixth on a hand-back counts as
-- an attempt, so a job longer than every grace period on a service deployed often does not
-- come back forever (see release_jobs in sql/queries/execute.sql).

ALTER TABLE jobs ADD COLUMN handbacks integer NOT NULL DEFAULT 0;

CREATE FUNCTION append_error_v1(errors jsonb, entry jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
DECLARE
    kept_first CONSTANT integer := 3;
    kept_last CONSTANT integer := 7;
    entries jsonb := CASE WHEN jsonb_typeof(errors) = 'array' THEN errors ELSE '[]'::jsonb END
                     || jsonb_build_array(entry);
    total integer := jsonb_array_length(entries);
    marked boolean := coalesce(jsonb_typeof(entries -> kept_first -> 'dropped') = 'number', false);
    last_dropped jsonb;
    dropped numeric;
BEGIN
    IF total - marked::integer <= kept_first + kept_last THEN
        RETURN entries;
    END IF;
    -- Entries kept_first .. total - kept_last - 1 (0-based) give way to one.
    last_dropped := entries -> (total - kept_last - 1);
    SELECT sum(CASE WHEN jsonb_typeof(e -> 'dropped') = 'number' AND (e ->> 'dropped')::numeric >= 1
                    THEN trunc((e ->> 'dropped')::numeric) ELSE 1 END)
    INTO dropped
    FROM jsonb_array_elements(entries) WITH ORDINALITY AS x (e, position)
    WHERE position - 1 BETWEEN kept_first AND total - kept_last - 1;
    RETURN jsonb_path_query_array(entries, '$[0 to $last]', jsonb_build_object('last', kept_first - 1))
        || jsonb_build_array(jsonb_build_object(
               'dropped', dropped,
               'attempt', last_dropped -> 'attempt',
               'at', last_dropped -> 'at',
               'error', format('%s earlier errors not kept, up to this attempt: a job keeps its first %s '
                               'and its last %s errors', dropped, kept_first, kept_last)))
        || jsonb_path_query_array(entries, '$[$first to last]', jsonb_build_object('first', total - kept_last));
END;
$$;

COMMENT ON FUNCTION append_error_v1(jsonb, jsonb) IS
    'A job''s errors with one more entry: the first 3 and the last 7 are kept, one {"dropped": n} entry stands for the rest.';
