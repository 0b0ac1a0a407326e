"""Verify Alibaba Cloud's V3 request signature (ACS3-HMAC-SHA256), as the SDK computes it.

Reference: https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
_AUTH = re.compile(rf"^{ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)$")


class SignatureError(ValueError):
    """Carries the Aliyun error code to answer with."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def access_key_id(authorization: str) -> str:
    """The AccessKeyId a request claims.

    Raises:
        SignatureError: IncompleteSignature for a missing or malformed Authorization header.
    """
    m = _AUTH.match(authorization.strip())
    if m is None:
        raise SignatureError("IncompleteSignature", "the request signature does not conform to Aliyun standards")
    return m.group(1)


def verify(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], secret: str) -> None:
    """Check the Authorization header against `secret`.

    Raises:
        SignatureError: IncompleteSignature (malformed) or SignatureDoesNotMatch.
    """
    m = _AUTH.match(headers.get("Authorization", "").strip())
    if m is None:
        raise SignatureError("IncompleteSignature", "the request signature does not conform to Aliyun standards")
    signed, signature = m.group(2), m.group(3)
    canonical_query = "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))
    names = signed.split(";")
    canonical_headers = "".join(f"{n}:{headers.get(n, '').strip()}\n" for n in names)
    payload = headers.get("x-acs-content-sha256", "")
    request = f"{method}\n{path or '/'}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload}"
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(request.encode()).hexdigest()}"
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
