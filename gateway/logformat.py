"""`SPGW_LOG_FORMAT=json`: one JSON object a line, for log shippers. The same rule as the text format:
the message as the gateway wrote it (route templates and ids, never patient data) and an exception's
types and frames, never its message."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

# Structured fields a record may carry (the access log passes them as `extra`).
FIELDS = ("method", "route", "status", "duration_ms", "request_id", "correlation_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[1] is not None:
            from gateway.errors import trace_without_messages

            line["trace"] = trace_without_messages(record.exc_info[1])
        return orjson.dumps(line, default=str).decode()
