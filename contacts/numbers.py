"""Phone-number normalisation for the roster (via the `phonenumbers` library)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from contacts.model import Contact

__all__ = ["mask", "parse_number"]

# Separators people type inside a number ("0356-2026736", "0356 202 6736"); removed only to
# recognise a bare local number, phonenumbers itself copes with them.
_SEPARATORS = str.maketrans("", "", " -\u00a0")


def _with_area_code(raw: str, area_code: str) -> str:
    # The plan's directory prints Jincheng fixed lines as 7-digit local numbers, which only
    # make sense with the city's area code in front (0356 for Jincheng).
    digits = raw.translate(_SEPARATORS)
    if len(digits) == 7 and digits.isdigit():
        return area_code + digits
    return raw


def _kind(number: phonenumbers.PhoneNumber) -> str:
    number_type = phonenumbers.number_type(number)
    if number_type == PhoneNumberType.MOBILE:
        return "mobile"
    if number_type == PhoneNumberType.FIXED_LINE:
        return "fixed"
    if number_type == PhoneNumberType.FIXED_LINE_OR_MOBILE:
        # Some regions' metadata can't tell the two apart; in China mobiles are the 1xx range.
        return "mobile" if str(number.national_number).startswith("1") else "fixed"
    name = PhoneNumberType.to_string(number_type)
    raise ValueError(f"unsupported number type {name} (not a mobile or fixed line)")


def parse_number(raw: str, *, region: str = "CN", area_code: str = "0356") -> Contact:
    """Parse a phone number as printed in a directory into a `Contact` (E.164 address).

    A bare 7-digit number is a local fixed line and gets `area_code` prefixed; 11-digit numbers
    starting with 1 are mobiles. `raw` is kept in the contact for audit.

    Raises:
        ValueError: the number is empty, unparsable, invalid for its region, or neither a
            mobile nor a fixed line (e.g. a premium or toll-free number).
    """
    text = raw.strip()
    if not text:
        raise ValueError("empty phone number")
    try:
        number = phonenumbers.parse(_with_area_code(text, area_code), region)
    except NumberParseException as exc:
        raise ValueError(f"malformed phone number {raw!r}: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"invalid phone number {raw!r} (not a valid number for region {region})")
    try:
        kind = _kind(number)
    except ValueError as exc:
        raise ValueError(f"phone number {raw!r}: {exc}") from exc
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return Contact(kind=kind, address=e164, raw=raw)


def mask(e164: str) -> str:
    """Mask a phone number for logs, keeping the country code and the last 4 digits.

    "+863562026736" -> "+86******6736". Never raises: anything unparsable is masked
    except for its last 4 characters, so a bad value can't leak into logs either.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return "*" * max(len(e164) - 4, 0) + e164[-4:] if len(e164) > 4 else "*" * len(e164)
    national = phonenumbers.national_significant_number(number)
    hidden = max(len(national) - 4, 0)
    return f"+{number.country_code}{'*' * hidden}{national[hidden:]}"
