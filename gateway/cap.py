"""CAP intake, the reading half: parse without trusting the XML, validate against the shipped OASIS
schema of the message's own version (1.2, 1.1 or 1.0), read one alert into plain values. The
mapping to an Event is `gateway/cap_map.py`; signatures are `gateway/cap_sig.py`; the rules are
documented in deploy/cap/README.md.

Order of checks, so nothing is accepted half-way: well-formed and harmless (400), schema-valid
(422 `invalid_cap`); then (cap_map) a good signature, supported status and msgType, our remit,
a derivable level, a valid Event (422 with a CAP path in `field`); only then is it submitted.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from gateway.events import Level

if TYPE_CHECKING:
    import xmlschema

__all__ = ["CAP_NS", "CAP_VERSIONS", "DSIG_NS", "CapAlert", "CapError", "CapInfo", "Reference", "cap_schema",
           "colour_level", "event_id_for", "parse_cap", "parse_xml", "read_alert", "validate"]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"  # what the gateway writes
# Namespace -> version. 1.0 predates OASIS's URN; 1.1 is still common on national aggregators.
CAP_VERSIONS = {CAP_NS: "1.2", "urn:oasis:names:tc:emergency:cap:1.1": "1.1", "http://www.incident.com/cap/1.0": "1.0"}
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_SCHEMAS = Path(__file__).parent / "schemas"
_ID_OK = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._:\-]+")
# A CAP alert is 5 levels deep (alert/info/area/geocode/value); an xmldsig Signature a few more.
# Anything far deeper is not CAP, and refusing it early keeps the validator's recursion bounded.
MAX_DEPTH = 32
LEVEL_ORDER = {Level.BLUE: 0, Level.YELLOW: 1, Level.ORANGE: 2, Level.RED: 3}


class CapError(Exception):
    """A CAP message the gateway refuses; becomes the API error (status, code, field)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Reference:
    sender: str
    identifier: str
    sent: datetime | None  # CAP 1.0 references are sender/identifier, without the time


@dataclass(frozen=True, slots=True)
class CapInfo:
    index: int  # 1-based position among the alert's <info> blocks, as in XPath
    language: str
    severity: str
    parameters: tuple[tuple[str, str], ...]
    sender_name: str | None
    headline: str | None
    description: str | None
    instruction: str | None
    onset: datetime | None
    effective: datetime | None
    expires: datetime | None
    areas: tuple[str, ...]
    event: str = ""
    categories: tuple[str, ...] = ()
    event_codes: tuple[tuple[str, str], ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> str:
        return f"/alert/info[{self.index}]"


@dataclass(frozen=True, slots=True)
class CapAlert:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    references: tuple[Reference, ...]
    info: CapInfo | None
    version: str = "1.2"
    signed: bool = False  # an enveloped ds:Signature was present (verified or not: see cap_sig)


@functools.cache
def cap_schema(version: str = "1.2") -> xmlschema.XMLSchema:
    """The OASIS CAP schema of `version` shipped in gateway/schemas, built once per process (~0.2 s)."""
    import xmlschema  # on first use: ~10 MiB that a daemon receiving no CAP never needs

    return xmlschema.XMLSchema(str(_SCHEMAS / f"CAP-v{version}.xsd"))


def parse_xml(raw: bytes) -> Element:
    """Parse with defusedxml: no DTD at all, so no entity expansion and no external fetches.

    Raises:
        CapError: 400 `hostile_xml` for a DTD, entity or external reference; 400 `malformed_xml`.
    """
    try:
        root: Element = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(400, "hostile_xml", f"refused: the XML declares a DTD or entities ({type(exc).__name__});"
                       " CAP needs neither") from exc
    except ParseError as exc:
        raise CapError(400, "malformed_xml", f"the body is not well-formed XML: {exc}") from exc
    return root


def _depth(root: Element) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:  # iterative: a hostile nesting must not exhaust the Python stack
        el, d = stack.pop()
        deepest = max(deepest, d)
        if d <= MAX_DEPTH:
            stack.extend((child, d + 1) for child in el)
    return deepest


def _namespace(root: Element) -> str:
    return root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""


def _strip_ns(text: str, ns: str) -> str:
    return text.replace("{" + ns + "}", "").replace("'cap:", "'")  # xmlschema names elements {ns}tag or 'cap:tag'


def version_of(root: Element) -> str:
    """The CAP version of an <alert> root.

    Raises:
        CapError: 422 `invalid_cap` for any other root element.
    """
    version = CAP_VERSIONS.get(_namespace(root))
    if version is None or root.tag.rpartition("}")[2] != "alert":
        raise CapError(422, "invalid_cap", f"/: {root.tag} is not a CAP 1.2, 1.1 or 1.0 <alert>", field="/")
    return version


def take_signatures(root: Element) -> list[Element]:
    """Detach the enveloped ds:Signature elements that end the <alert> (the place CAP 1.2's `any`
    rule gives them; 1.0 and 1.1 name the same place in prose). They are checked by cap_sig, not
    by the schema: xmlschema would validate them against XML-DSig's, whose ID type refuses the Id
    values real signers use. A Signature anywhere else stays and fails the CAP schema."""
    taken: list[Element] = []
    while len(root) and root[-1].tag == "{" + DSIG_NS + "}Signature":
        taken.append(root[-1])
        root.remove(root[-1])
    return taken


def validate(root: Element) -> None:
    """Validate against the message's own CAP schema; location hints in the document are never
    followed. Trailing signatures must have been taken off first (take_signatures).

    Raises:
        CapError: 422 `invalid_cap` naming the first offending element's path in `field`.
    """
    if _depth(root) > MAX_DEPTH:
        raise CapError(422, "invalid_cap", f"elements nested deeper than {MAX_DEPTH} levels: not CAP", field="/")
    version = version_of(root)
    error = next(cap_schema(version).iter_errors(root, use_location_hints=False), None)
    if error is not None:
        ns = _namespace(root)
        path = _strip_ns(error.path or "/", ns)
        reason = _strip_ns(error.reason or error.message, ns)
        raise CapError(422, "invalid_cap", f"{path}: {reason} (CAP {version})", field=path)


class _Reader:
    """Element access in one CAP namespace; 1.0's name=value strings read like later pairs."""

    def __init__(self, ns: str) -> None:
        self.ns = "{" + ns + "}"

    def text(self, el: Element, name: str) -> str | None:
        child = el.find(self.ns + name)
        return child.text.strip() if child is not None and child.text and child.text.strip() else None

    def texts(self, el: Element, name: str) -> tuple[str, ...]:
        return tuple(c.text.strip() for c in el.findall(self.ns + name) if c.text and c.text.strip())

    def time(self, el: Element, name: str, path: str) -> datetime | None:
        raw = self.text(el, name)
        if raw is None:
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError as exc:
            raise CapError(422, "invalid_cap", f"{path}/{name}: not a date-time: {raw}",
                           field=f"{path}/{name}") from exc

    def pairs(self, el: Element, name: str) -> tuple[tuple[str, str], ...]:
        out = []
        for p in el.findall(self.ns + name):
            if p.find(self.ns + "valueName") is None:  # CAP 1.0: "valueName=value" in the text
                key, _, value = (p.text or "").partition("=")
                out.append((key.strip(), value.strip()))
            else:
                out.append(((p.findtext(self.ns + "valueName") or "").strip(),
                            (p.findtext(self.ns + "value") or "").strip()))
        return tuple(out)

    def info(self, el: Element, index: int) -> CapInfo:
        path = f"/alert/info[{index}]"
        areas = el.findall(self.ns + "area")
        return CapInfo(
            index=index, language=self.text(el, "language") or "en-US", severity=self.text(el, "severity") or "Unknown",
            parameters=self.pairs(el, "parameter"), sender_name=self.text(el, "senderName"),
            headline=self.text(el, "headline"), description=self.text(el, "description"),
            instruction=self.text(el, "instruction"), onset=self.time(el, "onset", path),
            effective=self.time(el, "effective", path), expires=self.time(el, "expires", path),
            areas=tuple(d for a in areas if (d := self.text(a, "areaDesc"))),
            event=self.text(el, "event") or "", categories=self.texts(el, "category"),
            event_codes=self.pairs(el, "eventCode"),
            geocodes=tuple(g for a in areas for g in self.pairs(a, "geocode")),
        )

    def pick_info(self, infos: list[Element]) -> CapInfo | None:
        """The <info> in zh-CN, else the first in any Chinese, else the first: one event per alert."""
        langs = [(i.findtext(self.ns + "language") or "en-US").strip().casefold() for i in infos]
        for n in ([n for n, lang in enumerate(langs) if lang == "zh-cn"]
                  + [n for n, lang in enumerate(langs) if lang.startswith("zh")] + [0]):
            if n < len(infos):
                return self.info(infos[n], n + 1)
        return None


def _reference(item: str, version: str) -> Reference:
    parts = item.split(",")
    if len(parts) == 3:
        return Reference(parts[0], parts[1], datetime.fromisoformat(parts[2]))
    if version == "1.0" and "/" in item:  # 1.0: sender/identifier
        sender, _, identifier = item.rpartition("/")
        return Reference(sender, identifier, None)
    raise ValueError(item)


def _references(raw: str | None, version: str) -> tuple[Reference, ...]:
    refs = []
    for item in (raw or "").split():
        try:
            refs.append(_reference(item, version))
        except ValueError as exc:
            shape = "sender/identifier" if version == "1.0" else "sender,identifier,sent"
            raise CapError(422, "invalid_cap", f"/alert/references: {item!r} is not {shape}",
                           field="/alert/references") from exc
    return tuple(refs)


def read_alert(root: Element, *, signed: bool = False) -> CapAlert:
    """The fields the gateway uses, from a schema-valid alert of any supported version.

    Raises:
        CapError: 422 `invalid_cap` for references or times the schema lets through.
    """
    version = version_of(root)
    r = _Reader(_namespace(root))
    sent = r.time(root, "sent", "/alert")
    if sent is None:  # the schema requires it; reached only when read_alert is called unvalidated
        raise CapError(422, "invalid_cap", "/alert/sent: missing", field="/alert/sent")
    return CapAlert(
        identifier=root.findtext(r.ns + "identifier") or "", sender=root.findtext(r.ns + "sender") or "",
        sent=sent, status=r.text(root, "status") or "", msg_type=r.text(root, "msgType") or "",
        references=_references(root.findtext(r.ns + "references"), version),
        info=r.pick_info(root.findall(r.ns + "info")), version=version, signed=signed,
    )


def parse_cap(raw: bytes) -> CapAlert:
    """Parse, validate and read one CAP message (CPU only; run it off the event loop).

    Raises:
        CapError: 400 hostile or malformed XML, 422 schema-invalid CAP.
    """
    root = parse_xml(raw)
    if _depth(root) > MAX_DEPTH:  # before anything walks it, signatures included
        raise CapError(422, "invalid_cap", f"elements nested deeper than {MAX_DEPTH} levels: not CAP", field="/")
    signatures = take_signatures(root)
    validate(root)
    return read_alert(root, signed=bool(signatures))


def event_id_for(identifier: str) -> str:
    """The event id of a CAP identifier: itself when it fits the id pattern; otherwise the
    offending characters become `_` and a digest of the full identifier keeps ids distinct."""
    if _ID_OK.fullmatch(identifier):
        return identifier
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:16]
    return f"cap:{_ID_BAD_CHARS.sub('_', identifier)[:96]}:{digest}"


def colour_level(value: str, table: Mapping[str, str]) -> Level | None:
    """A level from a colour word or grade: an exact entry first, then the longest entry the
    value contains (so `橙色预警` and `橙色(Ⅱ级)` are orange, `III级` is not `I级`)."""
    folded = {k.casefold(): v for k, v in table.items()}
    v = value.strip().casefold()
    if v in folded:
        return Level(folded[v])
    for key in sorted(folded, key=len, reverse=True):
        if len(key) >= 2 and key in v:
            return Level(folded[key])
    return None


