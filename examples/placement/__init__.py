"""A campus placement office's application on Conveyor: publishing a drive writes its row and
enqueues its eligibility filter in one transaction; a nightly fan-out evaluates every student
and e-mails a summary; an hourly materialized-view refresh; a CSV export with progress; the
Conveyor API and dashboard under ``/jobs``. ``python -m examples.placement`` runs it all
(docs/examples.md)."""
