"""JSON log lines: one object per line, with the call's request id and trace id when there is one."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from common.observability.tracing import current_ids

RPC_LOGGER = "ogpgy.rpc"


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object; the `fields` extra is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id, span_id = current_ids()
        if trace_id:
            line["trace_id"], line["span_id"] = trace_id, span_id
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


def log_fields(logger: logging.Logger, message: str, **fields: Any) -> None:
    """An INFO line whose `fields` the JSON formatter merges into the object."""
    logger.info(message, extra={"fields": fields})
