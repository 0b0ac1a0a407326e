"""Human durations in config files: `90s`, `15m`, `1h`, `2d`, or a bare number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str | float | int) -> timedelta:
    """Parse a duration.

    Raises:
        ValueError: the text is not a non-negative number with an optional s/m/h/d unit.
    """
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text}")
        return timedelta(seconds=float(text))
    m = _RE.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 2d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])
