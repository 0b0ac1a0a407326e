"""Domain errors: what a use case refuses and why, in the contract's terms (`code`, `message`,
`field`) but without HTTP. Only `gateway.api` turns them into statuses."""

from __future__ import annotations

from pydantic import ValidationError


class DomainError(Exception):
    """A refusal by a use case. `code` is the contract's error code, `field` the JSON path
    (or CAP element) of the offending input, when there is one."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class Invalid(DomainError):
    """The input is well-formed but breaks a rule (an unknown audience, a drill to the public)."""


class Conflict(DomainError):
    """The input contradicts what is already recorded (another body under the same id, a
    decision already taken)."""


class NotFound(DomainError):
    """The named thing does not exist."""


class NotAllowed(DomainError):
    """The principal may not do this (the two-person rule, an approver of the wrong level)."""


def validation_error(exc: ValidationError) -> Invalid:
    """The first pydantic error as an `Invalid` naming the field (JSON path)."""
    e = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    extra = f"; and {len(exc.errors()) - 1} more problem(s)" if len(exc.errors()) > 1 else ""
    return Invalid("invalid_field" if loc else "invalid_event", f"{loc[1:] or 'event'}: {msg}{extra}",
                   field=f"${loc}" if loc else None)
