-- Undo the results, chains and batches functions (the columns and the batches table belong
-- to version 7 and stay).

DROP FUNCTION enqueue_flow(text, jsonb, text, integer, timestamptz, integer, bigint, bigint, text, jsonb);
DROP FUNCTION seal_batch(bigint);
DROP FUNCTION create_batch(text, jsonb, text, integer, jsonb);
DROP FUNCTION enqueue_flow_v1(text, jsonb, text, integer, timestamptz, integer, bigint, bigint, text, jsonb);
DROP FUNCTION link_jobs_v1(bigint[], bigint, bigint, timestamptz);
DROP FUNCTION seal_batch_v1(bigint, timestamptz);
DROP FUNCTION create_batch_v1(text, jsonb, text, integer, jsonb);
DROP FUNCTION settle_v1(text, bigint[], bigint[], bigint[], timestamptz);
DROP FUNCTION finish_batch_v1(bigint, timestamptz);
