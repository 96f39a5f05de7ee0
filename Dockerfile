# Production image: non-root, read-only-root-FS friendly, Python 3.12 (trio-asyncio ceiling: 3.13).
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY actors ./actors
COPY edge ./edge
COPY ledger ./ledger
COPY schemas ./schemas
COPY ops ./ops
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.12-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home bff
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BFF_MODE=production PORT=8080
USER 10001
EXPOSE 8080
# Cloud Run sends SIGTERM; the service drains and exits 0 within BFF_SHUTDOWN_GRACE_S.
CMD ["sh", "-c", "python -m edge.migrations && exec python -m edge"]
