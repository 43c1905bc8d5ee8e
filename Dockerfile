# The image for Conveyor's processes (worker, scheduler, API).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY sql ./sql
COPY alembic ./alembic
RUN pip install --no-cache-dir .
COPY tasks ./tasks
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["conveyor", "worker"]
