"""A schedule declared in code, for tests/e2e/dashboard/test_dashboard_review3.py: a
``conveyor scheduler --tasks tests.e2e.dashboard.review3_tasks`` writes it when it starts."""

from __future__ import annotations

from conveyor import schedule

from .. import api_tasks

schedule("coded", "0 9 * * *", api_tasks.api_add, {"a": 1, "b": 1}, timezone="Europe/Paris")
