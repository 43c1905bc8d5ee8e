"""The placement team's tables, in the schema ``placement``, on SQLAlchemy 2 (async, psycopg 3).

Students, the drives companies run, and which students each drive found eligible; the
nightly evaluation's rows; and ``placement.department_stats``, a materialized view the
analytics page reads, refreshed every hour by a schedule (``examples.placement.tasks``).

Conveyor enqueues on the psycopg connection under a SQLAlchemy session, so the engine uses
the psycopg 3 driver, on the connection string Conveyor uses (whatever its form: a
``postgresql://`` URL, SQLAlchemy's ``postgresql+psycopg://``, libpq's ``key=value``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import psycopg
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    MetaData,
    Numeric,
    String,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conveyor import ConfigurationError
from conveyor.settings import Settings, normalize_database_url

SCHEMA = "placement"
DEPARTMENTS = ("CSE", "ECE", "EEE", "IT", "MECH", "CIVIL")


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class Student(Base):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    roll_no: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    department: Mapped[str] = mapped_column(String(16))
    cgpa: Mapped[Decimal] = mapped_column(Numeric(4, 2))
    tenth_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    twelfth_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    backlogs: Mapped[int]


class Drive(Base):
    """A company's recruitment drive and who may apply: published, it is filtered by a job."""

    __tablename__ = "drives"
    __table_args__ = (
        CheckConstraint("min_cgpa BETWEEN 0 AND 10", name="cgpa_in_range"),
        CheckConstraint("max_backlogs >= 0", name="backlogs_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    company: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(100))
    min_cgpa: Mapped[Decimal] = mapped_column(Numeric(4, 2))
    min_tenth_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    min_twelfth_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    max_backlogs: Mapped[int]
    departments: Mapped[list[str]] = mapped_column(ARRAY(String(16)))  # empty: every department
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    eligibility_job: Mapped[int | None] = mapped_column(BigInteger)  # Conveyor's job id
    filtered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Eligibility(Base):
    __tablename__ = "eligibility"

    drive_id: Mapped[int] = mapped_column(ForeignKey(Drive.id, ondelete="CASCADE"), primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey(Student.id, ondelete="CASCADE"), primary_key=True)


class Evaluation(Base):
    """One student's nightly evaluation: how many open drives they are eligible for."""

    __tablename__ = "evaluations"

    student_id: Mapped[int] = mapped_column(ForeignKey(Student.id, ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    eligible_drives: Mapped[int]


# Analytics the staff look at all day, computed once an hour rather than on every page view.
# The unique index lets the refresh run CONCURRENTLY: readers are never blocked by it.
DEPARTMENT_STATS = "placement.department_stats"
_DEPARTMENT_STATS_DDL = (
    """CREATE MATERIALIZED VIEW IF NOT EXISTS placement.department_stats AS
    SELECT s.department,
           count(*) AS students,
           count(*) FILTER (WHERE EXISTS (SELECT FROM placement.eligibility e WHERE e.student_id = s.id))
               AS eligible,
           round(avg(s.cgpa), 2) AS average_cgpa
    FROM placement.students s
    GROUP BY s.department""",
    "CREATE UNIQUE INDEX IF NOT EXISTS department_stats_department ON placement.department_stats (department)",
)


def sample_students() -> list[Student]:
    """48 students, spread over the departments and the marks a drive filters on (made up,
    and the same on every run)."""
    first = ("Aarav", "Diya", "Ishaan", "Meera", "Kabir", "Ananya", "Rohan", "Saanvi")
    last = ("Sharma", "Iyer", "Nair", "Reddy", "Khan", "Das")
    students = []
    for i in range(48):
        name = f"{first[i % 8]} {last[(i // 8) % 6]}"
        students.append(
            Student(
                roll_no=f"21{DEPARTMENTS[i % 6]}{i:03d}",
                name=name,
                email=f"{name.lower().replace(' ', '.')}.{i}@students.example.edu",
                department=DEPARTMENTS[i % 6],
                cgpa=Decimal(60 + (i * 37) % 40) / 10,  # 6.0 to 9.9
                tenth_percent=Decimal(60 + (i * 13) % 40),
                twelfth_percent=Decimal(55 + (i * 17) % 45),
                backlogs=(i * 7) % 4 if i % 4 == 1 else 0,
            )
        )
    return students


_sessions: async_sessionmaker[AsyncSession] | None = None


def use_database(url: str) -> AsyncEngine:
    """Make the placement engine on ``url``; :func:`sessions` hands out its sessions."""
    global _sessions
    conninfo = normalize_database_url(url)  # what Conveyor reads, read the same way here
    engine = create_async_engine(
        "postgresql+psycopg://", async_creator=lambda: psycopg.AsyncConnection.connect(conninfo), pool_size=5
    )
    _sessions = async_sessionmaker(engine, expire_on_commit=False)
    return engine


def sessions() -> async_sessionmaker[AsyncSession]:
    """Sessions on the placement tables (in a worker that runs the tasks alone, on an engine
    made on first use from the database Conveyor's settings name: DATABASE_URL)."""
    if _sessions is None:
        url = Settings.from_env().database_url
        if url is None:
            raise ConfigurationError("no database for the placement tables: set DATABASE_URL")
        use_database(url)
    assert _sessions is not None
    return _sessions


async def create_tables(engine: AsyncEngine) -> None:
    """The schema, its tables, the view and the sample students, if not there yet (a real
    application has migrations for this)."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS placement"))
        await conn.run_sync(Base.metadata.create_all)
    async with async_sessionmaker(engine)() as session, session.begin():
        if await session.scalar(select(func.count()).select_from(Student)) == 0:
            session.add_all(sample_students())
    async with engine.begin() as conn:
        for statement in _DEPARTMENT_STATS_DDL:
            await conn.execute(text(statement))
