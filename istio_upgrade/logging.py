"""structlog setup: readable lines on a terminal, JSON lines otherwise (for log shippers)."""

from __future__ import annotations

import logging
import sys

import structlog

_TEMPORAL_KEYS = {
    # temporalio's ``workflow.logger`` puts these under ``extra["temporal_workflow"]``
    # (sdk-python temporalio/workflow/_sandbox.py), ``activity.logger`` under
    # ``extra["temporal_activity"]`` (temporalio/activity.py).
    "temporal_workflow": {
        "workflow_id": "workflow_id",
        "run_id": "run_id",
        "workflow_type": "workflow_type",
    },
    "temporal_activity": {
        "workflow_id": "workflow_id",
        "workflow_run_id": "run_id",
        "activity_type": "activity_type",
        "activity_id": "activity_id",
        "attempt": "attempt",
    },
}


def temporal_context(
    logger: object, method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Lift the workflow and run ids temporalio's loggers attach to a record into the event,
    under the names the worker's activity logs use (``workflow_id``, ``run_id`` …)."""
    record = event_dict.get("_record")
    for attr, names in _TEMPORAL_KEYS.items():
        details = getattr(record, attr, None)
        if isinstance(details, dict):
            for source, target in names.items():
                if source in details:
                    event_dict.setdefault(target, details[source])
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Route stdlib and structlog logs through one renderer.

    Args:
        level: Minimum level name.
        json: Force JSON (True) or console (False) output; default: JSON when stderr is not a TTY.
    """
    as_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        temporal_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
