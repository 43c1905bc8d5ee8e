"""bench/RESULTS.md from the JSON lines of a run (``bench/results/<timestamp>.jsonl``).

python bench/report.py bench/results/<timestamp>.jsonl   # rewrite the tables of a past run
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LABELS = {
    "raw": "raw SQL",
    "conveyor": "**Conveyor**",
    "pgqueuer": "PgQueuer 1.6",
    "oban": "oban-py 0.7",
    "procrastinate": "procrastinate 3.10",
    "chancy": "Chancy 0.26",
    "bullmq-postgres": "bullmq-py 3.4 (PostgreSQL)",
    "bullmq-redis": "BullMQ 6.7 (Node, Redis)",
}
PYTHON_PEERS = ["pgqueuer", "oban", "procrastinate", "chancy", "bullmq-postgres"]
POSTGRES_QUEUES = ["conveyor", *PYTHON_PEERS]
NOTES = "<!-- Everything below is written by hand and kept when the tables above are rewritten. -->"

# (workload, key, label, higher is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("enqueue", "rate", "enqueue, one per transaction (jobs/s)", True),
    ("bulk", "rate", "bulk enqueue (jobs/s)", True),
    ("drain", "rate", "drain, 1 process (jobs/s)", True),
    ("drain2", "rate", "drain, 2 processes (jobs/s)", True),
    ("latency", "p50_ms", "idle latency p50 (ms)", False),
    ("latency", "p95_ms", "idle latency p95 (ms)", False),
    ("latency", "p99_ms", "idle latency p99 (ms)", False),
    ("load", "achieved_rate", "load: enqueued (jobs/s, target 1,000)", True),
    ("load", "p50_ms", "load: latency p50 (ms)", False),
    ("load", "p99_ms", "load: latency p99 (ms)", False),
    ("load", "backlog_second_half_max", "load: largest backlog, 2nd half (jobs)", False),
    ("delayed", "rate", "drain beside 200k delayed (jobs/s)", True),
    ("soak", "jobs", "soak: jobs through", True),
    ("soak", "rate", "soak: rate (jobs/s)", True),
    ("soak", "last_to_first", "soak: last tenth / first tenth", True),
    ("soak", "size_mb", "soak: tables at the end (MB)", False),
    ("soak-xmin", "held_to_first", "held xmin: rate while held / first tenth", True),
    ("soak-xmin", "held_to_unheld", "held xmin: rate while held / same third of the soak without", True),
]


def load(path: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        result = json.loads(line)
        if "sizes" in result:
            result["size_mb"] = sum(result["sizes"].values()) / 2**20
        runs.setdefault((result["system"], result["workload"]), []).append(result)
    # The held rate against the unheld soak's rate over the same third: unlike the first tenth
    # of the same run, that leaves out how a system's rate drifts over a long run.
    for (system, workload), results in runs.items():
        unheld = value(runs, system, "soak", "middle_third_rate") if workload == "soak-xmin" else None
        for result in results if unheld else []:
            if isinstance(result.get("held_rate"), (int, float)):
                result["held_to_unheld"] = result["held_rate"] / unheld
    return runs


def value(
    runs: dict[tuple[str, str], list[dict[str, Any]]], system: str, workload: str, key: str
) -> float | None:
    values = [r[key] for r in runs.get((system, workload), []) if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def cell(runs: dict[tuple[str, str], list[dict[str, Any]]], system: str, workload: str, key: str) -> str:
    results = runs.get((system, workload), [])
    errors = [
        r for r in results if "error" in r or r.get("twice") or ("unique" in r and r["unique"] != _jobs(r))
    ]
    values = sorted(r[key] for r in results if isinstance(r.get(key), (int, float)) and r not in errors)
    if not values:
        return "failed" if errors else ""
    text = _number(statistics.median(values))
    if len(values) > 1:
        text += f" ({_number(values[0])}–{_number(values[-1])})"
    if errors:
        text += f" ⚠ {len(errors)} failed"
    return text


def _jobs(result: dict[str, Any]) -> int:
    return int(result.get("jobs") or result.get("count") or result.get("unique", 0))


def _number(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def targets(runs: dict[tuple[str, str], list[dict[str, Any]]]) -> list[tuple[str, str, bool | None]]:
    def v(system: str, workload: str, key: str) -> float | None:
        return value(runs, system, workload, key)

    best_peer = max((x for p in PYTHON_PEERS if (x := v(p, "drain", "rate")) is not None), default=None)
    best_peer_any = max(
        (x for p in PYTHON_PEERS for w in ("drain", "drain2") if (x := v(p, w, "rate")) is not None),
        default=None,
    )
    # A held snapshot cannot make a queue faster: a rate above the yardstick is the machine's
    # drift, so it counts as no loss rather than as a gain to rank by.
    losses = {
        s: max(0.0, 1 - x) for s in POSTGRES_QUEUES if (x := v(s, "soak-xmin", "held_to_first")) is not None
    }
    unheld_losses = {
        s: max(0.0, 1 - x) for s in POSTGRES_QUEUES if (x := v(s, "soak-xmin", "held_to_unheld")) is not None
    }
    rows: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        (
            "drain ≥ 0.5 × raw SQL",
            ratio(v("conveyor", "drain", "rate"), v("raw", "drain", "rate")),
            lambda r: r >= 0.5,
            "×",
        ),
        (
            "drain ≥ 3 × fastest Python peer (1 process)",
            ratio(v("conveyor", "drain", "rate"), best_peer),
            lambda r: r >= 3,
            "×",
        ),
        (
            "drain ≥ 3 × fastest Python peer (any setting run)",
            ratio(v("conveyor", "drain", "rate"), best_peer_any),
            lambda r: r >= 3,
            "×",
        ),
        (
            "drain ≥ BullMQ on Redis",
            ratio(v("conveyor", "drain", "rate"), v("bullmq-redis", "drain", "rate")),
            lambda r: r >= 1,
            "×",
        ),
        (
            "enqueue ≥ 0.9 × raw SQL",
            ratio(v("conveyor", "enqueue", "rate"), v("raw", "enqueue", "rate")),
            lambda r: r >= 0.9,
            "×",
        ),
        (
            "bulk ≥ 0.7 × raw SQL COPY",
            ratio(v("conveyor", "bulk", "rate"), v("raw", "bulk", "rate")),
            lambda r: r >= 0.7,
            "×",
        ),
        ("idle p50 ≤ 3 ms", v("conveyor", "latency", "p50_ms"), lambda r: r <= 3, " ms"),
        ("idle p99 ≤ 15 ms", v("conveyor", "latency", "p99_ms"), lambda r: r <= 15, " ms"),
        ("load p99 ≤ 50 ms", v("conveyor", "load", "p99_ms"), lambda r: r <= 50, " ms"),
        (
            "load: backlog flat (≤ 1 s of jobs in the 2nd half)",
            v("conveyor", "load", "backlog_second_half_max"),
            lambda r: r <= 1000,
            " jobs",
        ),
        (
            "delayed ≥ 0.9 × drain",
            ratio(v("conveyor", "delayed", "rate"), v("conveyor", "drain", "rate")),
            lambda r: r >= 0.9,
            "×",
        ),
        ("soak last/first ≥ 0.85", v("conveyor", "soak", "last_to_first"), lambda r: r >= 0.85, "×"),
        (
            "held xmin: smallest loss of the PostgreSQL queues (against the first tenth)",
            losses.get("conveyor"),
            lambda r: all(r <= other for other in losses.values()),
            " lost",
        ),
        (
            "held xmin: smallest loss of the PostgreSQL queues (against the same third unheld)",
            unheld_losses.get("conveyor"),
            lambda r: all(r <= other for other in unheld_losses.values()),
            " lost",
        ),
    ]
    out: list[tuple[str, str, bool | None]] = []
    for label, measured, ok, unit in rows:
        if measured is None:
            out.append((label, "not measured", None))
        else:
            out.append(
                (
                    label,
                    f"{measured:.2f}{unit}" if unit != " jobs" else f"{measured:,.0f}{unit}",
                    ok(measured),
                )
            )
    return out


def write(destination: Path, log: Path, environment: dict[str, Any] | None = None) -> None:
    runs = load(log)
    systems = [s for s in LABELS if any(key[0] == s for key in runs)]
    lines = ["# Benchmark results", ""]
    if environment:
        lines += [
            f"Run on {environment['date']}: `{environment['command']}` ({environment['seconds'] / 60:.0f} min"
            + ("; resumed: only the runs the log lacked)." if environment.get("resumed") else ")."),
            "",
            f"- Machine: {environment['cpu']}, {environment['cores']} cores, {environment['memory_gib']} GiB.",
            f"- PostgreSQL {environment['postgres']}{' (embedded)' if environment['embedded'] else ''}; "
            + ", ".join(f"{k}={v}" for k, v in sorted(environment["settings"].items())),
            f"- Python {environment['python']}, Node {environment['node']}, {environment['redis']}.",
            f"- Raw results: `{log.relative_to(log.parents[1])}`.",
            "",
        ]
    lines += ["Median of the repeats, (min–max) when repeated.", ""]
    lines.append("| workload | " + " | ".join(LABELS[s] for s in systems) + " |")
    lines.append("|---|" + "---|" * len(systems))
    for workload, key, label, _ in METRICS:
        if any((s, workload) in runs for s in systems):
            lines.append(f"| {label} | " + " | ".join(cell(runs, s, workload, key) for s in systems) + " |")
    lines += ["", "## Conveyor against the others (Conveyor ÷ other; for latencies lower is better)", ""]
    others = [s for s in systems if s != "conveyor"]
    lines.append("| workload | " + " | ".join(LABELS[s] for s in others) + " |")
    lines.append("|---|" + "---|" * len(others))
    for workload, key, label, _ in METRICS:
        mine = value(runs, "conveyor", workload, key)
        if mine is None or key in ("jobs",):
            continue
        ratios = [ratio(mine, value(runs, s, workload, key)) for s in others]
        lines.append(f"| {label} | " + " | ".join(f"{r:.2f}" if r is not None else "" for r in ratios) + " |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for label, measured, met in targets(runs):
        lines.append(f"| {label} | {measured} | {'yes' if met else 'no' if met is not None else '–'} |")
    lines += ["", "Sizes each system ran (jobs; the load in seconds at 1,000 jobs/s):", ""]
    for system in systems:
        sizes = []
        for workload, flag in (("drain", "--n"), ("delayed", "--n"), ("load", "--duration"), ("soak", "--n")):
            if (system, workload) in runs:
                arguments = runs[(system, workload)][0]["arguments"]
                sizes.append(f"{workload} {int(float(arguments[arguments.index(flag) + 1])):,}")
        repeats = max(len(runs.get((system, "drain"), [])), 1)
        lines.append(f"- {LABELS[system]}: {', '.join(sizes)}; repeats {repeats}")
    failures = [r for rs in runs.values() for r in rs if "error" in r]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {r['system']} {r['workload']}: {r['error']}" for r in failures]
    notes = ""
    if destination.exists() and NOTES in (old := destination.read_text()):
        notes = old[old.index(NOTES) :]
    destination.write_text("\n".join(lines) + "\n\n" + (notes or NOTES + "\n"))


def _main(argv: Sequence[str]) -> None:
    """``report.py LOG [LOG...]``: the tables of one run, or of runs made one after another
    on the same server (the logs are joined in bench/results/ first)."""
    logs = [Path(name) for name in argv]
    log = logs[0]
    if len(logs) > 1:
        log = logs[0].with_name("joined-" + "-".join(path.stem for path in logs) + ".jsonl")
        log.write_text("".join(path.read_text() for path in logs))
    write(Path(__file__).with_name("RESULTS-" + log.stem + ".md"), log)


if __name__ == "__main__":
    _main(sys.argv[1:])
