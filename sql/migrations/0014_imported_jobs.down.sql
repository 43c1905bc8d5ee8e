-- Undo 0014: the import ledger goes (a later import would then import again what it lists).

DROP TABLE imported_jobs;
