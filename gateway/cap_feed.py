"""A CAP feed's index, read: Atom (`<feed><entry>`, as the OASIS CAP feed profile and most
warning platforms publish) or RSS 2.0 (`<rss><channel><item>`). Pure: bytes in, entries out;
the polling is gateway/cap_feed_poller.py."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

from gateway.cap import CAP_VERSIONS, CapError, parse_xml

__all__ = ["FeedEntry", "FeedError", "parse_index"]

ATOM = "{http://www.w3.org/2005/Atom}"
_CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")


class FeedError(Exception):
    """The index is not a feed the poller can read (logged and counted, never fatal)."""


@dataclass(frozen=True, slots=True)
class FeedEntry:
    identifier: str  # Atom <id>, RSS <guid> (else the link)
    sent: str  # Atom <updated> (else <published>), RSS <pubDate> as RFC 3339; "" when absent
    link: str  # absolute URL of the entry's CAP message


def _atom_link(entry: Element) -> str | None:
    links = entry.findall(ATOM + "link")
    typed = [ln for ln in links if (ln.get("type") or "").split(";")[0].strip() in _CAP_TYPES]
    for ln in typed + [ln for ln in links if ln.get("rel", "alternate") in ("alternate", "enclosure")]:
        if ln.get("href"):
            return ln.get("href")
    return None


def _rss_sent(raw: str | None) -> str:
    if not raw or not raw.strip():
        return ""
    try:
        return parsedate_to_datetime(raw.strip()).isoformat()
    except (TypeError, ValueError):
        return raw.strip()  # still a stable key, as the feed writes it


def _text(el: Element, name: str) -> str:
    return (el.findtext(name) or "").strip()


def parse_index(raw: bytes, base_url: str) -> list[FeedEntry]:
    """The entries in document order, each with an absolute CAP link; entries without a link are skipped.

    Raises:
        FeedError: hostile or malformed XML, or neither Atom nor RSS.
    """
    try:
        root = parse_xml(raw)
    except CapError as exc:
        raise FeedError(exc.message) from exc
    out: list[FeedEntry] = []
    if root.tag == ATOM + "feed":
        for e in root.findall(ATOM + "entry"):
            link = _atom_link(e)
            if link:
                sent = _text(e, ATOM + "updated") or _text(e, ATOM + "published")
                out.append(FeedEntry(_text(e, ATOM + "id") or link, sent, urljoin(base_url, link)))
    elif root.tag == "rss":
        for item in root.findall("channel/item"):
            enclosure = item.find("enclosure")
            link = _text(item, "link") or (enclosure.get("url", "") if enclosure is not None else "")
            if link:
                out.append(FeedEntry(_text(item, "guid") or link, _rss_sent(item.findtext("pubDate")),
                                     urljoin(base_url, link)))
    elif root.tag.rpartition("}")[0][1:] in CAP_VERSIONS:
        raise FeedError("the feed URL serves a CAP message, not an index of them")
    else:
        raise FeedError(f"not an Atom or RSS feed: root element {root.tag}")
    return out
