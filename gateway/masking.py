"""Masking of addresses for logs and API answers: numbers keep country code and last 4 digits,
URLs lose their query string and credentials."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from contacts.numbers import mask as mask_number

_PHONE = re.compile(r"\+\d{7,15}")


def mask_address(address: str) -> str:
    if address.startswith("+"):
        return mask_number(address)
    if "://" in address:
        u = urlsplit(address)
        host = u.hostname or ""
        netloc = f"{host}:{u.port}" if u.port else host
        return urlunsplit((u.scheme, netloc, u.path, "", ""))
    return address


def mask_text(text: str) -> str:
    """Mask every E.164 number inside free text."""
    return _PHONE.sub(lambda m: mask_number(m.group(0)), text)
