-- Invariants over the probe jobs (those in public.enqueued).
\echo '== jobs by where they are'
SELECT where_, count(*) FROM (
  SELECT e.id, CASE WHEN j.id IS NOT NULL THEN 'live:'||j.state
                    WHEN h.n = 1 AND d.id IS NULL THEN 'history'
                    WHEN h.n IS NULL AND d.id IS NOT NULL THEN 'dead'
                    WHEN h.n IS NULL AND d.id IS NULL THEN 'LOST'
                    ELSE 'DUPLICATE' END AS where_
  FROM public.enqueued e
  LEFT JOIN conveyor.jobs j ON j.id = e.id
  LEFT JOIN (SELECT id, count(*) n FROM conveyor.job_history GROUP BY id) h ON h.id = e.id
  LEFT JOIN conveyor.dead_jobs d ON d.id = e.id) x GROUP BY 1 ORDER BY 1;
\echo '== overlapping executions of one job (same pid or not)'
SELECT a.job_id, a.pid, a.attempt, a.started, a.finished, b.pid, b.attempt, b.started, b.finished
FROM public.runs a JOIN public.runs b ON a.job_id = b.job_id AND a.id < b.id
WHERE tstzrange(a.started, coalesce(a.finished, 'infinity')) && tstzrange(b.started, coalesce(b.finished, 'infinity'))
LIMIT 20;
\echo '== jobs that ran more than once'
SELECT count(*) AS jobs_ran_twice FROM (SELECT job_id FROM public.runs GROUP BY job_id HAVING count(*) > 1) x;
\echo '== dead jobs that had a finished (successful) execution (arec/arec1/srec finish = success unless timeout)'
SELECT d.id, d.task, d.attempt, left(d.errors::text, 300) FROM conveyor.dead_jobs d
JOIN public.enqueued e ON e.id = d.id
WHERE d.task IN ('arec','arec1') AND EXISTS (SELECT 1 FROM public.runs r WHERE r.job_id = d.id AND r.finished IS NOT NULL)
LIMIT 10;
