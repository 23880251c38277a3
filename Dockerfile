# fraudapp worker image: `faust -A fraudapp.app worker -l info` as a non-root user,
# state (RocksDB, faust's files) in the /data volume, HTTP on 6066.
#
#   docker build -t fraudapp .
#   docker run --rm -e BROKER_URL=kafka://broker:9092 \
#     -e FRAUDAPP_API_TOKEN -e FRAUDAPP_INGEST_TOKEN -p 127.0.0.1:6066:6066 fraudapp
#
# The worker refuses to start without both tokens; none is baked in here.
# docker-compose.yml runs Redpanda, the topics, three workers and Prometheus.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtualenv with fraudapp and its dependencies ------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone (a stub package and README stand in),
# so that editing fraudapp's code does not reinstall them. The stub's build output
# goes too: COPY keeps the files' old mtimes, and setuptools would keep the stub's
# newer copies in build/.
COPY pyproject.toml constraints.txt ./
RUN mkdir fraudapp && touch fraudapp/__init__.py README.md \
    && /opt/venv/bin/pip install -c constraints.txt . \
    && /opt/venv/bin/pip uninstall -y fraudapp \
    && rm -rf fraudapp README.md build ./*.egg-info
COPY README.md ./
COPY fraudapp ./fraudapp
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip uninstall -y pip setuptools

# -- runtime: the virtualenv and the reference tables, nothing else ----------------------------
FROM ${PYTHON_IMAGE}
# jemalloc instead of glibc's malloc, as RocksDB advises: with glibc a worker's RSS kept
# more freed heap (soaks in bench/RESULTS.md). One path for every architecture.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/lib/*-linux-gnu/libjemalloc.so.2 /usr/lib/libjemalloc.so.2
RUN groupadd --system --gid 10001 fraudapp \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/fraudapp --create-home \
        --shell /usr/sbin/nologin fraudapp \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
COPY tables /app/tables
ENV PATH=/opt/venv/bin:$PATH \
    LD_PRELOAD=/usr/lib/libjemalloc.so.2 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FRAUDAPP_TABLES=/app/tables \
    FRAUDAPP_DATADIR=/data \
    WEB_BIND=0.0.0.0 \
    WEB_PORT=6066
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6066
USER 10001:10001
# /health needs no token: 200 once partitions are assigned and state is recovered.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('WEB_PORT', '6066') + '/health', timeout=4)"]
ENTRYPOINT ["faust", "-A", "fraudapp.app", "worker", "-l", "info"]
