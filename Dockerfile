# syntax=docker/dockerfile:1
# Production image (#15). The runtime stage holds a virtualenv with the service only (actors, edge,
# ledger, schemas: no ops/, no tests/) on a distroless Python: no shell, no package manager, no
# pip, a non-root user, and nothing written outside /tmp, so it runs with a read-only root file
# system (mount /tmp as a tmpfs/emptyDir where the platform does not provide one).
#
# Python. distroless ships Debian's Python: python3-debian13 is Debian 13's Python 3.13
# (python3-debian12, Debian 12's 3.11, was retired in 2026); 3.13 is the newest this service runs
# on (trio-asyncio 0.16 does not import on 3.14). The build stage is debian:13-slim with the SAME
# Debian python3.13, so the virtualenv is made by the interpreter that will run it: its
# bin/python3 -> /usr/bin/python3 link, the stdlib and the ABI all resolve in the runtime image.
# The dependencies come from requirements/runtime.lock: a universal, hash-pinned lock (uv
# --universal, one set of pins for 3.11-3.13 on every platform, the hashes of every wheel), so the
# lock made and tested on CI's 3.11 installs the same releases here; --only-binary because the
# build stage has no compiler. `./ops/stack smoke-image` runs these steps (and the service, as
# below) without Docker, in CI; `--python /path/to/python3.13` there uses the image's Python.
# For byte-reproducible builds, pin both bases by digest (FROM image@sha256:...).
#
# Migrations are NOT run at start: they are their own step, once per release, before the new
# revision takes traffic - the same image with another command (a Cloud Run job):
#   gcloud run jobs deploy bff-backoffice-migrate --image "$IMAGE" \
#     --command python --args=-m,edge.migrations [--set-env-vars / --set-secrets BFF_DATABASE_URL]
#   gcloud run jobs execute bff-backoffice-migrate --wait
# (locally: docker run --rm -e BFF_DATABASE_URL=... --entrypoint python IMAGE -m edge.migrations).
#
# There is no shell in the runtime image: a `command: ["sh", "-c", ...]` override cannot work;
# give settings as environment variables (Cloud Run: env or secretKeyRef).

ARG BUILD_BASE=debian:13-slim
ARG RUNTIME_BASE=gcr.io/distroless/python3-debian13:nonroot

FROM ${BUILD_BASE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The wheel: built from the service's sources only, with the locked build backend.
COPY requirements/build.lock requirements/runtime.lock requirements/
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY actors ./actors
COPY edge ./edge
COPY ledger ./ledger
COPY schemas ./schemas
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .
# The runtime virtualenv: the locked dependencies (hash-checked), the wheel without resolving
# anything more, then pip removed (nothing installs at run time).
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements/runtime.lock \
    && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip uninstall --yes pip

FROM ${RUNTIME_BASE}
COPY --from=build /opt/venv /opt/venv
# Bytecode was compiled at install time; nothing may be written next to the code at run time.
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    BFF_MODE=production \
    PORT=8080
# distroless's "nonroot" user (65532), by number so that runAsNonRoot can verify it.
USER 65532:65532
# A read-only working directory (python -m puts it first on sys.path).
WORKDIR /
EXPOSE 8080
# The service listens on $PORT. Cloud Run sends SIGTERM: it fails readiness, drains its SSE
# streams and in-flight requests within BFF_SHUTDOWN_GRACE_S, and exits 0 (edge/server.py).
ENTRYPOINT ["/opt/venv/bin/python", "-m", "edge"]
