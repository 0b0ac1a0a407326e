"""Standard Webhooks signing and verification (https://www.standardwebhooks.com).

The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`, the MAC is HMAC-SHA256 keyed
with the base64-decoded secret, and the header carries `v1,<base64 MAC>`. Verification accepts a
space-separated list of signatures so a receiver keeps working while a secret is rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

# The spec recommends 24 to 64 random bytes; 32 matches the SHA-256 block-size sweet spot.
_SECRET_BYTES = 32


class SignatureError(ValueError):
    """A webhook request failed verification; the message says why (never the secret)."""


def generate_secret() -> str:
    """Return a fresh random secret in the `whsec_<base64>` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """Decode a `whsec_<base64>` secret (the prefix is optional) into the HMAC key bytes.

    Raises:
        ValueError: the secret is empty or not valid base64.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # Deliberately no secret text in the message: it ends up in logs.
        raise ValueError("webhook secret is not valid base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` header value (`v1,<base64>`) for one message.

    Raises:
        ValueError: the secret is malformed.
    """
    return _sign_with_key(secret_key(secret), msg_id, timestamp, body)


class Signer:
    """Signs with one secret: the key is decoded and its HMAC state (the keyed pads) built once,
    then copied per message; `sign` per message redid both (about half of its cost)."""

    __slots__ = ("_mac",)

    def __init__(self, secret: str) -> None:
        """Raises ValueError: the secret is malformed."""
        self._mac = hmac.new(secret_key(secret), digestmod=hashlib.sha256)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` header value, as `sign(secret, msg_id, timestamp, body)`."""
        mac = self._mac.copy()
        mac.update(f"{msg_id}.{timestamp}.".encode())
        mac.update(body)
        return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def _sign_with_key(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> None:
    """Check a request's Standard Webhooks headers against `body`.

    `headers` may be any mapping; names are matched case-insensitively. `tolerance` bounds the
    distance (seconds, either direction) between `webhook-timestamp` and `now` (default: the
    wall clock), which is what stops a captured request from being replayed later.

    Raises:
        SignatureError: a header is missing, the timestamp is malformed or outside the
            tolerance, or no `v1` signature in the header matches.
        ValueError: the secret is malformed.
    """
    key = secret_key(secret)
    msg_id = _header(headers, ID_HEADER)
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    signatures = _header(headers, SIGNATURE_HEADER)
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise SignatureError("webhook-timestamp is too old")
    if timestamp > current + tolerance:
        raise SignatureError("webhook-timestamp is too far in the future")
    expected = _sign_with_key(key, msg_id, timestamp, body).encode("ascii")
    for candidate in signatures.split():
        # Entries of other versions (e.g. `v1a,` asymmetric) are skipped, as the spec says.
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("no matching v1 signature")


def _header(headers: Mapping[str, str], name: str) -> str:
    """Fetch a header case-insensitively, also from plain dicts.

    Raises:
        SignatureError: the header is absent or empty.
    """
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value
