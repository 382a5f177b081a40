#!/bin/sh
# Entrypoint of the sp-gateway container image. The first argument is the role:
#   migrate  bring the schema up to date and create the keys if missing (run once, before the others)
#   serve    the HTTP gateway: SPGW_WORKERS processes on SPGW_PORT, metrics on SPGW_METRICS_PORT if set
#   worker   the delivery worker with SPGW_WORKER_CONCURRENCY loops
#   mllp     the HL7 v2 MLLP listener on SPGW_MLLP_PORT
# anything else is passed to `spgw` as it is (e.g. `backup`, `audit verify`, `outbox retry`).
# `exec` hands the process over to spgw, so the container's stop signal reaches it directly.
set -eu

role="${1:-serve}"
[ "$#" -gt 0 ] && shift

host="${SPGW_HOST:-0.0.0.0}"
case "$role" in
  serve)
    if [ -n "${SPGW_METRICS_PORT:-}" ]; then
      set -- --metrics-host "${SPGW_METRICS_HOST:-$host}" --metrics-port "$SPGW_METRICS_PORT" "$@"
    fi
    exec spgw serve --host "$host" --port "${SPGW_PORT:-8080}" --workers "${SPGW_WORKERS:-2}" "$@"
    ;;
  worker)
    if [ -n "${SPGW_METRICS_PORT:-}" ]; then
      set -- --metrics-host "${SPGW_METRICS_HOST:-$host}" --metrics-port "$SPGW_METRICS_PORT" "$@"
    fi
    exec spgw worker --concurrency "${SPGW_WORKER_CONCURRENCY:-4}" "$@"
    ;;
  mllp)
    exec spgw mllp --host "$host" --port "${SPGW_MLLP_PORT:-2575}" "$@"
    ;;
  *)
    exec spgw "$role" "$@"
    ;;
esac
