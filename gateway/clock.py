"""The gateway's notion of "now" for the report schedule (13:30 reminders, 14:00 deadlines).

In production it is the system clock. `GATEWAY_TEST_CLOCK` names a file holding an RFC 3339
time: "now" is then that time plus however long ago the file was last written, so a test can
jump to 13:29:59 Beijing time by rewriting the file and watch the schedule run at real speed.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

_ENV = "GATEWAY_TEST_CLOCK"
_cache: tuple[float, float] | None = None  # (file mtime, offset in seconds)


def now() -> float:
    """UNIX seconds; shifted by the test clock file when `GATEWAY_TEST_CLOCK` is set. A missing
    or unreadable file means the system clock (never an exception)."""
    global _cache
    real = time.time()
    path = os.environ.get(_ENV)
    if not path:
        return real
    try:
        mtime = os.stat(path).st_mtime
        if _cache is None or _cache[0] != mtime:
            with open(path, encoding="utf-8") as f:
                fake = datetime.fromisoformat(f.read().strip().replace("Z", "+00:00")).timestamp()
            _cache = (mtime, fake - mtime)
    except (OSError, ValueError):
        return real
    return real + _cache[1]
