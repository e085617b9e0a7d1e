# syntax=docker/dockerfile:1
# The modelmon image: one image for every modelmon process. The command picks the role:
#   docker run modelmon:dev            -> `modelmon worker` (the default)
#   docker run modelmon:dev sink       -> `modelmon sink`    (likewise migrate, produce, ...)

# ---- build stage: resolve and install into a virtualenv that is copied as a whole ----------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A C toolchain for the few dependencies that have no wheel on some platforms (faust-streaming
# on linux/arm64 builds from source). It stays in this stage; the runtime image has none.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY modelmon/ modelmon/
COPY streams/ streams/
COPY detectors/ detectors/
COPY sinks/ sinks/
COPY retrain_trigger/ retrain_trigger/
COPY dashboards/ dashboards/

# rocksdict: the RocksDB table store of the workers (MODELMON_TABLE_STORE=rocksdb://).
RUN pip install --upgrade pip \
    && pip install . "rocksdict>=0.3.11,<4"

# ---- runtime stage ------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELMON_MODELS_PATH=/app/models \
    MODELMON_WORKER_DATA_DIR=/var/lib/modelmon/worker

# Non-root user with a fixed numeric id (works with runAsNonRoot and pre-owned volumes).
RUN groupadd --system --gid 10001 modelmon \
    && useradd --system --uid 10001 --gid modelmon --home-dir /app --shell /usr/sbin/nologin modelmon \
    && mkdir -p /app /var/lib/modelmon/worker \
    && chown -R modelmon:modelmon /app /var/lib/modelmon

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Model specs (YAML) baked into the image; mount a directory over /app/models to override.
COPY models/ /app/models/

USER 10001:10001

ENTRYPOINT ["modelmon"]
CMD ["worker"]
