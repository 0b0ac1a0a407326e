"""Short signed links to a unit's report form: `/r/<token>`, HMAC-signed and expiring.

The token packs a digest of the report request's id (6 bytes), a digest of the unit id
(4 bytes), the expiry (4 bytes, UNIX minutes) and a truncated HMAC-SHA256 (9 bytes) into 31
URL-safe characters. Unlike an ack link it can be used again: a unit corrects its report
until the deadline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

# report.requested events whose ids start so are tracked report requests (the schedule owns
# these ids): their messages carry a report link instead of an ack link
TRACKED_PREFIXES = ("rem:", "sum:")


class BadReportLink(ValueError):
    """The token is malformed, forged or expired."""


def request_key(request_id: str) -> str:
    """The report request's digest as it appears in links (12 hex digits)."""
    return hashlib.sha256(request_id.encode()).hexdigest()[:12]


def unit_digest(unit_id: str) -> str:
    return hashlib.sha256(unit_id.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class ReportTarget:
    """What a verified token names: the request (by key) and the unit (by digest)."""

    key: str
    unit: str


class ReportLinks:
    def __init__(self, secret: bytes, base_url: str):
        # a key of its own, so an ack-link signature can never pass as a report-link one
        self._secret = hmac.new(secret, b"report-links", hashlib.sha256).digest()
        self.base_url = base_url.rstrip("/")

    def token(self, request_id: str, unit_id: str, expires_at: float) -> str:
        body = (bytes.fromhex(request_key(request_id)) + bytes.fromhex(unit_digest(unit_id))
                + struct.pack(">I", int(expires_at // 60) + 1))
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def url(self, request_id: str, unit_id: str, expires_at: float) -> str:
        return f"{self.base_url}/r/{self.token(request_id, unit_id, expires_at)}"

    def verify(self, token: str, now: float) -> ReportTarget:
        """The request key and unit digest the token names.

        Raises:
            BadReportLink: malformed, bad signature, or expired.
        """
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError) as exc:
            raise BadReportLink("malformed link") from exc
        if len(blob) != 23:
            raise BadReportLink("malformed link")
        body, mac = blob[:14], blob[14:]
        if not hmac.compare_digest(mac, hmac.new(self._secret, body, hashlib.sha256).digest()[:9]):
            raise BadReportLink("this link is not valid")
        (minutes,) = struct.unpack(">I", body[10:])
        if minutes * 60 < now:
            raise BadReportLink("this link has expired")
        return ReportTarget(body[:6].hex(), body[6:10].hex())
