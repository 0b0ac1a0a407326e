"""Verify that a callback really came from Twilio (twilio.md §6)."""

from __future__ import annotations

from collections.abc import Mapping

from multidict import MultiDict
from twilio.request_validator import RequestValidator


def validate_signature(auth_token: str, url: str, params: Mapping[str, object], signature: str) -> bool:
    """True if `signature` (the X-Twilio-Signature header) signs `url` and `params`.

    `url` must be exactly the public URL Twilio called, query included (behind a proxy, the
    public base URL plus `request.path_qs`). `params` is the form: a plain mapping or a multidict
    such as aiohttp's `await request.post()`; every field counts, since Twilio adds fields
    without notice. A form holding a non-text value (a file upload) never validates.
    """
    if not signature:
        return False
    form: MultiDict[str] = MultiDict()
    # items() of a multidict yields every value of a repeated name; the SDK signs them all.
    for name, value in params.items():
        if not isinstance(value, str):
            return False
        form.add(name, value)
    return bool(RequestValidator(auth_token).validate(url, form, signature))
