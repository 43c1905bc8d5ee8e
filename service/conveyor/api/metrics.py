"""``GET /metrics``: Prometheus metrics, computed from the database at scrape time.

The endpoint reads a :class:`~conveyor.ops.metrics.MetricsSnapshot` through the client on
``request.app.state.conveyor`` and renders it with a collector of its own, in a registry of
its own made for the request (never prometheus-client's global one, nor any state of this
process: every number is the database's, so every process answers alike). What each number
means, and how the counters' totals are kept, is written in ``conveyor.ops.metrics`` and
docs/operations.md.
Labels are queue, task, state and schedule names only: never job ids.

Answers 200 with the text format (or OpenMetrics when the scraper asks for it), and 503
with a problem document when the database cannot be read (Prometheus then records the
target as down). No authentication here: the application decides who may reach it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..ops.metrics import EVENTS, KINDS, MetricsSnapshot, MetricsUnavailable, reader_for
from .problems import COUNTS

_EVENT_HELP = {
    "started": "Attempts started (each claim of a job).",
    "completed": "Jobs completed.",
    "cancelled": "Jobs cancelled (never started, or aborted while running).",
    "dead": "Jobs moved to the dead-letter table.",
    "failed": "Attempts that failed and are tried again (an error with attempts left, or a lease that ran out).",
}
_COUNTED = " Running total kept in the database since Conveyor's schema 12 (see the _created samples)."


class SnapshotCollector(Collector):
    """The metric families of one snapshot."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield from self._queues()

        workers = GaugeMetricFamily(
            "conveyor_workers", "Live workers (heartbeat within 30 s, or a lease held)."
        )
        workers.add_metric([], s.workers)
        yield workers
        slots = GaugeMetricFamily(
            "conveyor_worker_slots", "Jobs the live workers can run at once (their concurrency)."
        )
        slots.add_metric([], s.worker_slots)
        yield slots

        up = GaugeMetricFamily("conveyor_scheduler_up", "1 if a scheduler ticked within its lease, else 0.")
        up.add_metric([], 1 if s.scheduler.running else 0)
        yield up
        tick = GaugeMetricFamily(
            "conveyor_scheduler_last_tick_age_seconds",
            "Seconds since the scheduler last ticked (absent: never).",
        )
        if s.scheduler.last_tick_age is not None:
            tick.add_metric([], max(s.scheduler.last_tick_age.total_seconds(), 0.0))
        yield tick
        active = GaugeMetricFamily("conveyor_schedules_active", "Schedules not paused.")
        active.add_metric([], s.scheduler.active_schedules)
        yield active
        lag = GaugeMetricFamily(
            "conveyor_schedule_lag_seconds",
            "Seconds since a schedule's next fire time passed without a fire (0: not due yet).",
            labels=["schedule"],
        )
        for name, seconds in sorted(s.schedule_lags.items()):
            lag.add_metric([name], seconds)
        yield lag

        yield from self._counters()
        yield from self._histograms()

        counted = GaugeMetricFamily(
            "conveyor_metrics_counted_to_timestamp_seconds",
            "The database time up to which the counters and histograms have counted.",
        )
        counted.add_metric([], s.counted_to.timestamp())
        yield counted

    def _queues(self) -> Iterator[Metric]:
        queues = self.snapshot.queues
        depth = GaugeMetricFamily(
            "conveyor_queue_jobs",
            "Unfinished jobs by state: available (due, waiting to start), scheduled (due later), "
            "running, blocked (waiting for another job to end).",
            labels=["queue", "state"],
        )
        gauges = {
            "dead": GaugeMetricFamily(
                "conveyor_queue_dead_jobs", "Jobs in the dead-letter table.", labels=["queue"]
            ),
            "retrying": GaugeMetricFamily(
                "conveyor_queue_retrying_jobs",
                "Unfinished jobs waiting to run again after an attempt (failed, or its lease lost).",
                labels=["queue"],
            ),
            "completed": GaugeMetricFamily(
                "conveyor_queue_completed_24h",
                "Jobs completed in the last 24 hours (to 5 minutes).",
                labels=["queue"],
            ),
            "oldest": GaugeMetricFamily(
                "conveyor_queue_oldest_waiting_seconds",
                "Seconds the oldest available job has waited since it was due (0: none waiting).",
                labels=["queue"],
            ),
            "paused": GaugeMetricFamily(
                "conveyor_queue_paused", "1 if the queue is paused.", labels=["queue"]
            ),
            "workers": GaugeMetricFamily(
                "conveyor_queue_workers", "Live workers serving the queue.", labels=["queue"]
            ),
            "held": GaugeMetricFamily(
                "conveyor_queue_limit_held_jobs",
                "Available jobs the queue's limits hold back now (rate, concurrency, per key); "
                "limited queues only.",
                labels=["queue"],
            ),
        }
        for q in queues:
            for state, count in (
                ("available", q.available),
                ("scheduled", q.scheduled),
                ("running", q.running),
                ("blocked", q.blocked),
            ):
                depth.add_metric([q.queue, state], count)
            gauges["dead"].add_metric([q.queue], q.dead)
            gauges["retrying"].add_metric([q.queue], q.retrying)
            gauges["completed"].add_metric([q.queue], q.completed_24h)
            gauges["oldest"].add_metric([q.queue], q.oldest_waiting or 0.0)
            gauges["paused"].add_metric([q.queue], 1 if q.paused else 0)
            gauges["workers"].add_metric([q.queue], q.workers)
            if q.limit_held is not None:
                gauges["held"].add_metric([q.queue], q.limit_held)
        yield depth
        yield from gauges.values()

    def _counters(self) -> Iterator[Metric]:
        s = self.snapshot
        for event in EVENTS:
            family = CounterMetricFamily(
                f"conveyor_jobs_{event}", _EVENT_HELP[event] + _COUNTED, labels=["queue", "task"]
            )
            for (kind, queue, task), total in sorted(s.counters.items()):
                if kind == event:
                    family.add_metric([queue, task], total, created=s.counting_since)
            yield family

    def _histograms(self) -> Iterator[Metric]:
        s = self.snapshot
        helps = {
            "wait": "Seconds from a completed job's due time (enqueued, or its delay or backoff over) "
            "to the start of its last attempt.",
            "run": "Seconds from the start of a completed job's last attempt to its outcome written.",
        }
        for kind in KINDS:
            name = f"conveyor_job_{kind}_seconds"
            family = HistogramMetricFamily(name, helps[kind] + _COUNTED, labels=["queue"])
            for (which, queue), histogram in sorted(s.histograms.items()):
                if which != kind:
                    continue
                buckets = [(_le(bound), float(count)) for bound, count in histogram.cumulative()]
                family.add_metric([queue], buckets, histogram.total)
                family.samples.append(Sample(f"{name}_created", {"queue": queue}, s.counting_since))
            yield family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def render(snapshot: MetricsSnapshot, accept: str | None) -> tuple[bytes, str]:
    """The exposition of a snapshot in the format the scraper accepts: (body, content type)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    registry.register(COUNTS)  # the API's problem documents, counted in this process
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


async def metrics(request: Request) -> Response:
    """``GET /metrics``; needs a :class:`~conveyor.Conveyor` client on ``app.state.conveyor``."""
    client = getattr(request.app.state, "conveyor", None)
    if client is None:  # the application was put together without one
        return _unavailable("this service has no Conveyor client (app.state.conveyor)")
    try:
        snapshot = await reader_for(client).read(client)
    except MetricsUnavailable as exc:
        return _unavailable(str(exc))
    body, content_type = render(snapshot, request.headers.get("accept"))
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _unavailable(detail: str) -> Response:
    """503 as an RFC 9457 problem document."""
    return JSONResponse(
        {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": detail},
        status_code=503,
        media_type="application/problem+json",
        headers={"Cache-Control": "no-store", "Retry-After": "5"},
    )
