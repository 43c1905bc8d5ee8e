"""The placement team's web application: drives, their eligible students, an analytics page,
a CSV export, and Conveyor's API and dashboard under ``/jobs``.

    python -m examples.placement          # the whole thing, on the embedded PostgreSQL

or, on a database of your own, ``uvicorn examples.placement.app:create_placement --factory``
beside ``conveyor worker`` and ``conveyor scheduler`` with ``--tasks examples.placement.tasks``.
The application's own pages are open, as the example has no users; ``/jobs`` needs an API key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from conveyor import Conveyor, NotFoundError
from conveyor.api import create_app
from conveyor.contrib.exports import EXPORT_TASK as EXPORT
from conveyor.settings import Settings

from .db import DEPARTMENTS, Drive, Eligibility, Student, sessions, use_database
from .tasks import ELIGIBILITY_EXPORT, filter_eligible

JOBS = "/jobs"  # where Conveyor's API and dashboard are mounted
MAX_ID = 2**63 - 1  # ids are bigint
Department = Annotated[str, Field(pattern="^(" + "|".join(DEPARTMENTS) + ")$")]


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (PostgreSQL text cannot hold them)")
    return value


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_storable)]
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(default=True)
)


class DriveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company: Name
    role: Name
    min_cgpa: Decimal = Field(ge=0, le=10, decimal_places=2)
    min_tenth_percent: Decimal = Field(default=Decimal(0), ge=0, le=100, decimal_places=2)
    min_twelfth_percent: Decimal = Field(default=Decimal(0), ge=0, le=100, decimal_places=2)
    max_backlogs: int = Field(default=0, ge=0, le=20)
    departments: list[Department] = Field(default=[], description="Empty: every department.")


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(jobs=JOBS, **context), status_code=status_code)


def is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("application/json")


async def read_drive(request: Request) -> DriveIn:
    """A drive from a JSON body or the page's form (urlencoded; ``departments`` repeats)."""
    body = await request.body()
    if is_json(request):
        return DriveIn.model_validate_json(body)
    fields = parse_qs(body.decode(errors="replace"))
    values: dict[str, Any] = {key: found[0] for key, found in fields.items() if key != "departments"}
    return DriveIn.model_validate({**values, "departments": fields.get("departments", [])})


def create_placement(database_url: str | None = None, *, conveyor_schema: str | None = None) -> Starlette:
    """The application, on ``database_url`` (default: DATABASE_URL) for its tables and
    Conveyor alike; ``conveyor_schema``: Conveyor's schema (default CONVEYOR_SCHEMA, else
    ``conveyor``)."""
    url = Settings.from_env(database_url).database_url
    if url is None:
        raise SystemExit("set DATABASE_URL, or run `python -m examples.placement`")
    engine = use_database(url)
    conveyor = Conveyor(url, schema=conveyor_schema)

    async def job_or_none(job_id: int | None) -> dict[str, Any] | None:
        """The job wherever it is, or None (never enqueued, or removed by retention)."""
        try:
            return await conveyor.get_job(job_id) if job_id is not None else None
        except NotFoundError:
            return None

    async def home(request: Request) -> Response:
        return RedirectResponse("/drives")

    async def drives(request: Request) -> Response:
        async with sessions()() as session:
            listed = (
                await session.execute(
                    select(Drive, func.count(Eligibility.student_id))
                    .outerjoin(Eligibility)
                    .group_by(Drive.id)
                    .order_by(Drive.id.desc())
                )
            ).all()
        return page("drives.html", drives=listed, departments=DEPARTMENTS)

    async def publish(request: Request) -> Response:
        """Write the drive and enqueue its eligibility filter in one transaction: the job
        exists if and only if the drive does (no other queue to be down, nothing to fall back to)."""
        try:
            wanted = await read_drive(request)
        except ValidationError as exc:
            errors = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
            if is_json(request):
                return JSONResponse({"detail": errors}, status_code=422)
            return page("message.html", 422, title="Not published", lines=errors)
        async with sessions()() as session, session.begin():
            drive = Drive(**wanted.model_dump())
            session.add(drive)
            await session.flush()  # the drive's id, for its job
            drive.eligibility_job = await conveyor.enqueue(
                filter_eligible, {"drive_id": drive.id}, conn=session
            )
        if is_json(request):
            return JSONResponse({"id": drive.id, "eligibility_job": drive.eligibility_job}, status_code=201)
        return RedirectResponse(f"/drives/{drive.id}", status_code=303)

    async def show_drive(request: Request) -> Response:
        drive_id = request.path_params["drive_id"]
        if drive_id > MAX_ID:  # no such row, and more than a query's bigint can hold
            return page("message.html", 404, title="No such drive")
        async with sessions()() as session:
            drive = await session.get(Drive, drive_id)
            if drive is None:
                return page("message.html", 404, title="No such drive")
            eligible = list(
                await session.scalars(
                    select(Student)
                    .join(Eligibility)
                    .where(Eligibility.drive_id == drive.id)
                    .order_by(Student.roll_no)
                )
            )
        return page(
            "drive.html", drive=drive, eligible=eligible, job=await job_or_none(drive.eligibility_job)
        )

    async def start_export(request: Request) -> Response:
        job_id = await conveyor.enqueue(
            EXPORT, {"export": ELIGIBILITY_EXPORT, "format": "csv", "gzip": False}
        )
        return RedirectResponse(f"/exports/{job_id}", status_code=303)

    async def show_export(request: Request) -> Response:
        job = await job_or_none(request.path_params["job_id"])
        if job is None or job["task"] != EXPORT:
            return page("message.html", 404, title="No such export")
        return page("export.html", job=job)

    async def analytics(request: Request) -> Response:
        async with sessions()() as session:
            rows = (
                await session.execute(text("SELECT * FROM placement.department_stats ORDER BY department"))
            ).all()
        return page("analytics.html", rows=rows)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with conveyor:  # the app's client; the mounted API and dashboard use it too
            yield
        await engine.dispose()

    return Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/drives", drives, methods=["GET"]),
            Route("/drives", publish, methods=["POST"]),
            Route("/drives/{drive_id:int}", show_drive, methods=["GET"]),
            Route("/exports", start_export, methods=["POST"]),
            Route("/exports/{job_id:int}", show_export, methods=["GET"]),
            Route("/analytics", analytics, methods=["GET"]),
            Mount(JOBS, app=create_app(conveyor)),  # API at /jobs/api/v1, dashboard at /jobs/
        ],
        lifespan=lifespan,
    )
