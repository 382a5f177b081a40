# sp-gateway container image: one image, four roles (migrate, serve, worker, mllp); see docs/deploy.md.
#   podman build -t sp-gateway .      (or docker build)
FROM docker.io/library/python:3.11-slim-bookworm

# pg_dump for `spgw backup` on PostgreSQL
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --home-dir /srv/spgw --create-home spgw \
 && install -d -o spgw -g spgw -m 0700 /srv/spgw/data /srv/spgw/data/keys

WORKDIR /opt/sp-gateway
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY mappings ./mappings
COPY profiles ./profiles
COPY consent ./consent
COPY audit ./audit
RUN pip install --no-cache-dir . && rm -rf /root/.cache
COPY deploy/entrypoint.sh /usr/local/bin/spgw-entrypoint

USER spgw
# Keys live under the data folder: mount it (or at least data/keys) from a volume or a secret store.
ENV SPGW_DATA_DIR=/srv/spgw/data \
    SPGW_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/tmp/spgw-metrics \
    PYTHONUNBUFFERED=1
EXPOSE 8080 9108 2575
ENTRYPOINT ["/usr/local/bin/spgw-entrypoint"]
CMD ["serve"]
