"""Short signed acknowledgement links for SMS: `/a/<token>`, HMAC-signed, expiring, single-use.

The token packs the delivery id (10 bytes), the expiry (4 bytes, UNIX minutes) and a truncated
HMAC-SHA256 (9 bytes) into 32 URL-safe characters, so the link costs few SMS characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct


class BadLink(ValueError):
    """The token is malformed, forged or expired."""


class AckLinks:
    def __init__(self, secret: bytes, base_url: str):
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def token(self, delivery_id: str, expires_at: float) -> str:
        """Raises ValueError for a delivery id not of the form dl_<20 hex>."""
        raw = bytes.fromhex(delivery_id.removeprefix("dl_"))
        if len(raw) != 10:
            raise ValueError(f"not a delivery id: {delivery_id}")
        body = raw + struct.pack(">I", int(expires_at // 60) + 1)
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def url(self, delivery_id: str, expires_at: float) -> str:
        return f"{self.base_url}/a/{self.token(delivery_id, expires_at)}"

    def verify(self, token: str, now: float) -> str:
        """The delivery id the token acknowledges.

        Raises:
            BadLink: malformed, bad signature, or expired.
        """
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError) as exc:
            raise BadLink("malformed link") from exc
        if len(blob) != 23:
            raise BadLink("malformed link")
        body, mac = blob[:14], blob[14:]
        if not hmac.compare_digest(mac, hmac.new(self._secret, body, hashlib.sha256).digest()[:9]):
            raise BadLink("this link is not valid")
        (minutes,) = struct.unpack(">I", body[10:])
        if minutes * 60 < now:
            raise BadLink("this link has expired")
        return "dl_" + body[:10].hex()
