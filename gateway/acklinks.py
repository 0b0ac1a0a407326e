"""Short signed acknowledgement links for SMS: `/a/<token>`, HMAC-signed, expiring, single-use.

The token packs the delivery id (10 bytes) and a truncated HMAC-SHA256 (5 bytes) into 20
URL-safe characters: every character of the link is one less for the unit's own instruction in a
two-segment SMS. The expiry is not in the token: the gateway derives it from the delivery (when
its event was accepted and the unit's ack window), so the link stays as short as the id allows.
Forging a token means guessing 40 bits of MAC for an 80-bit random delivery id, online, one HTTP
request per guess.

Links sent before 2026-12-03 carry their expiry (4 bytes, UNIX minutes) and a 9-byte MAC in 32
characters; they are still accepted until they expire, and links whose expiry the delivery does not
imply (sign-off links) are still made that way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

_MAC_BYTES = 5
_LEGACY_MAC_BYTES = 9


class BadLink(ValueError):
    """The token is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class Link:
    """A verified token: its delivery, and its expiry when the token carries one (legacy)."""

    delivery_id: str
    expires_at: float | None


class AckLinks:
    def __init__(self, secret: bytes, base_url: str):
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def _mac(self, body: bytes, n: int) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:n]

    def token(self, delivery_id: str, expires_at: float | None = None) -> str:
        """The short token, or with `expires_at` the one that carries its expiry (`legacy_token`).
        Raises ValueError for a delivery id not of the form dl_<20 hex>."""
        if expires_at is not None:
            return self.legacy_token(delivery_id, expires_at)
        raw = bytes.fromhex(delivery_id.removeprefix("dl_"))
        if len(raw) != 10:
            raise ValueError(f"not a delivery id: {delivery_id}")
        return base64.urlsafe_b64encode(raw + self._mac(b"ack1" + raw, _MAC_BYTES)).decode().rstrip("=")

    def url(self, delivery_id: str, expires_at: float | None = None) -> str:
        """The link as it goes into a message: the short form, or with `expires_at` the 32-character
        form that carries its expiry (for links whose expiry the delivery does not imply, such as
        sign-off links). Raises ValueError like `token`."""
        return f"{self.base_url}/a/{self.token(delivery_id, expires_at)}"

    def verify(self, token: str, now: float) -> str:
        """The delivery id a token names (`check`, for callers that need no expiry of their own).

        Raises:
            BadLink: malformed, bad signature, or an embedded expiry that has passed.
        """
        return self.check(token, now).delivery_id

    def url_length(self) -> int:
        """The characters a link takes in a message (the same for every delivery)."""
        return len(self.base_url) + len("/a/") + len(self.token("dl_" + "0" * 20))

    def check(self, token: str, now: float) -> Link:
        """The delivery the token names.

        Raises:
            BadLink: malformed, bad signature, or (legacy tokens) expired.
        """
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError) as exc:
            raise BadLink("malformed link") from exc
        if len(blob) == 10 + _MAC_BYTES:
            raw, mac = blob[:10], blob[10:]
            if not hmac.compare_digest(mac, self._mac(b"ack1" + raw, _MAC_BYTES)):
                raise BadLink("this link is not valid")
            return Link("dl_" + raw.hex(), None)
        if len(blob) != 14 + _LEGACY_MAC_BYTES:
            raise BadLink("malformed link")
        body, mac = blob[:14], blob[14:]
        if not hmac.compare_digest(mac, self._mac(body, _LEGACY_MAC_BYTES)):
            raise BadLink("this link is not valid")
        (minutes,) = struct.unpack(">I", body[10:])
        if minutes * 60 < now:
            raise BadLink("this link has expired")
        return Link("dl_" + body[:10].hex(), minutes * 60.0)

    def legacy_token(self, delivery_id: str, expires_at: float) -> str:
        """A token that carries its expiry (the pre-2026-12-03 format of every ack link). Raises
        ValueError like `token`."""
        raw = bytes.fromhex(delivery_id.removeprefix("dl_"))
        if len(raw) != 10:
            raise ValueError(f"not a delivery id: {delivery_id}")
        body = raw + struct.pack(">I", int(expires_at // 60) + 1)
        return base64.urlsafe_b64encode(body + self._mac(body, _LEGACY_MAC_BYTES)).decode().rstrip("=")
