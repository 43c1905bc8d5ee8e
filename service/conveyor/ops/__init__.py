"""The service layer: every operation on queues, jobs, dead letters, schedules, retention,
workers and API keys written once, with the role it needs, and used by the Python client's
callers, the CLI, the HTTP API and the dashboard alike."""
