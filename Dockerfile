# syntax=docker/dockerfile:1
# The vallum gateway image: `docker build -t vallum:0.1.0 .`
#
#   docker run --rm -p 8080:8080 -v "$PWD/gateway.yaml:/etc/vallum/gateway.yaml:ro" \
#     -e VALLUM_DATABASE_URL -e VALLUM_REDIS_URL -e OPENAI_API_KEY vallum:0.1.0
#
# Off loopback the gateway requires client keys: the config must list some (`vallum keygen`), or keys
# made through the admin API must already be in the database. Kubernetes manifests: deploy/kubernetes/.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the vallum wheel and wheels of everything it depends on ----------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- runtime: those wheels installed into a slim Python, run as an unprivileged user ----------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1
RUN groupadd --system --gid 10001 vallum \
 && useradd --system --uid 10001 --gid vallum --no-create-home --home-dir /var/lib/vallum \
      --shell /usr/sbin/nologin vallum \
 && install -d -o vallum -g vallum -m 0750 /var/lib/vallum \
 && install -d -m 0755 /etc/vallum
# Offline install from the wheels alone; the bind mount keeps them out of the image's layers.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels vallum
# The shipped model is package data: prove it loads and scans with no network at all.
RUN --network=none vallum scan "What is the capital of Australia?" > /dev/null

USER 10001:10001
WORKDIR /var/lib/vallum
EXPOSE 8080
# Kubernetes uses its own probes (deploy/kubernetes/deployment.yaml); this serves `docker run` and compose.
# (It assumes the default port 8080.)
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["vallum"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--config", "/etc/vallum/gateway.yaml"]
