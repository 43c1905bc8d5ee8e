"""bench/sustained.py, the long-run load command, run for a few seconds: the same code that runs
for ten minutes (``conveyor api``, a ``conveyor worker``, enqueues through the API and inside
application transactions, a dashboard tab, the sampler, a vacuum pass and a held xmin) must
end with no error, every job completed, and samples that add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.sustained import LoadConfig, run

pytestmark = pytest.mark.processes


async def test_a_short_sustained_run_completes_every_job_and_samples_sanely(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    config = LoadConfig(
        url=database_url,
        schema=schema,
        seconds=5.0,
        rate=40.0,
        out=tmp_path / "run",
        sample_seconds=0.5,
        dashboard_seconds=0.4,
        scrape_seconds=1.0,
        workers=1,
        hold_xmin=1.5,
        hold_after=1.0,
        vacuum_seconds=1.0,
        drain_seconds=30.0,
        quiet=True,
    )
    summary = await run(config)

    assert summary["errors"] == {"api": 0, "sql": 0, "dashboard": 0, "metrics": 0}, summary["first_errors"]
    assert set(summary["log_error_lines"].values()) == {0}, summary["log_error_lines"]
    assert set(summary["exit_codes"].values()) == {0}, summary["exit_codes"]
    enqueued = summary["enqueued"]
    assert enqueued["api"] > 0
    assert enqueued["sql"] > 0
    drain = summary["drain"]
    assert drain["drained"], drain
    assert drain["enqueued"] == enqueued["api"] + enqueued["sql"]
    assert drain["completed"] == drain["enqueued"], drain
    assert drain["dead"] == drain["still_live"] == drain["ended_otherwise"] == 0, drain
    # The overview, the jobs page and at least one poll of the overview's live table.
    assert summary["dashboard_loads"] >= 3, summary["dashboard_loads"]
    assert summary["metrics_scrapes"] >= 1

    # The sampler saw every job exactly once, and its numbers hold together.
    lines = [line for line in (tmp_path / "run.jsonl").read_text().splitlines() if line]
    records = [json.loads(line) for line in lines]
    samples = [r for r in records if r["kind"] == "sample"]
    assert len(samples) >= 3
    assert sum(s["finished"] for s in samples) == drain["enqueued"]
    overall = summary["latency_ms"]["overall"]
    assert overall["jobs"] == drain["enqueued"]
    assert 0 <= overall["p50"] <= overall["p99"] <= overall["max"]
    by_source = summary["latency_ms"]["by_source"]
    assert {name: by_source[name]["jobs"] for name in ("api", "sql")} == enqueued
    for sample in samples:
        assert set(sample["tables"]) == {"jobs", "job_history", "dead_jobs"}
        assert all(t["total_bytes"] >= t["index_bytes"] >= 0 for t in sample["tables"].values())
        assert all(kib and kib > 1024 for kib in sample["rss_kib"].values()), sample["rss_kib"]
        assert set(sample["rss_kib"]) == {"api", "worker1", "driver"}
        assert set(sample["driver_loop_lag_ms"]) == {"p50", "p99"}
        if sample["finished"]:
            assert 0 <= sample["latency_p50_ms"] <= sample["latency_p99_ms"] <= sample["latency_max_ms"]
    assert samples[-1]["tables"]["job_history"]["total_bytes"] > 0
    assert summary["rss"]["worker1"]["first_mib"] > 1

    # The hold took place, lasted as long as asked, and the phases follow one another.
    assert summary["hold_seconds"] >= config.hold_xmin
    order = ["before", "during", "after", "drained"]
    phases = [order.index(s["phase"]) for s in samples]
    assert phases == sorted(phases)
    assert summary["vacuums"] >= 1
    assert set(summary["phases"]) == {"before", "during", "after"}
