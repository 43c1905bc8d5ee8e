# The image for Conveyor's processes (worker, scheduler; the API joins later).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY sql ./sql
COPY alembic ./alembic
RUN pip install --no-cache-dir .
COPY tasks ./tasks
ENV PYTHONUNBUFFERED=1
CMD ["conveyor", "worker"]
