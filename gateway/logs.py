"""structlog set-up: JSON lines in production, key=value on a terminal; numbers masked and
secrets redacted in every line, whatever a caller passes."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from gateway.masking import mask_text

_SECRET_KEYS = ("token", "secret", "password", "auth", "signature", "authorization")
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value so it is scrubbed wherever it would appear in a log line."""
    if value and len(value) >= 6:
        _secrets.add(value)


# keys that only ever hold our own ids or bounded labels: no need to scan their values
_SAFE_KEYS = frozenset({"event_id", "delivery_id", "unit_id", "channel", "attempt", "level", "timestamp",
                        "outcome", "provider_ref", "reason", "event"})


def _scrub_value(v: Any) -> Any:
    if isinstance(v, str):
        for s in _secrets:
            if s in v:
                v = v.replace(s, "[redacted]")
        return mask_text(v) if "+" in v else v
    return v


def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k in list(event):
        if k in _SAFE_KEYS:
            continue
        if any(s in k.lower() for s in _SECRET_KEYS):
            event[k] = "[redacted]"
        else:
            event[k] = _scrub_value(event[k])
    return event


def configure(*, json_lines: bool | None = None, level: str = "info") -> None:
    if json_lines is None:
        json_lines = not sys.stdout.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,  # the hot path logs a line per attempt
    )


def get(name: str = "gateway") -> Any:
    return structlog.get_logger(name)
