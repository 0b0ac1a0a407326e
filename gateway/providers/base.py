"""What generic code may know of a provider (its `Provider` record; the list is in registry.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.store.base import OutboxItem

if TYPE_CHECKING:
    from gateway.attempts import ChannelSlot
    from gateway.daemon import Gateway

# builds a provider's slots, given those built before it and every provider (the failover
# composite wraps the plain slots of the others)
Builder = Callable[["Gateway", dict[str, "ChannelSlot"], Sequence["Provider"]], Awaitable[dict[str, "ChannelSlot"]]]
# (public base URL, delivery) -> what its sends must carry for this provider (callback URLs...)
MetaFn = Callable[[str, OutboxItem], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Provider:
    """What generic code may know of a provider.

    `kinds` are the channel kinds it serves; `enabled`, `rate` (sends per second for a kind) and
    `timeout` read its config section; `default_weight` places it in a failover chain that the
    config does not spell out; `bare_refs`: its references name it by themselves and are stored
    unprefixed (Twilio's SM.../CA...), so its receipts match with or without failover;
    `failover_only`: it has no plain slot and always sends through the failover composite, whose
    `build` it is (run when `gateway.dispatch.failover.wanted`); `meta` adds to every delivery of
    its kinds what its sends need.
    """

    name: str
    kinds: tuple[str, ...]
    enabled: Callable[[Config], bool]
    rate: Callable[[Config, str], float]
    timeout: Callable[[Config], float]
    default_weight: int = 0
    bare_refs: bool = False
    failover_only: bool = False
    build: Builder | None = None
    meta: MetaFn | None = None
