"""SchedulerConfig refuses housekeeping intervals that would stop a step for good."""

from __future__ import annotations

import math

import pytest

from conveyor.errors import ConfigurationError
from conveyor.queue.scheduler import SchedulerConfig


@pytest.mark.parametrize(
    "name", ["retention_interval", "retention_budget", "metrics_interval", "upkeep_interval"]
)
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan])
def test_a_housekeeping_interval_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=name):
        SchedulerConfig(**{name: value})


def test_the_defaults_and_short_intervals_are_accepted() -> None:
    SchedulerConfig()
    SchedulerConfig(lease=3, tick=0.2, metrics_interval=0.5, retention_interval=1, upkeep_interval=1)
