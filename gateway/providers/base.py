"""What generic code may know of a provider (its `Provider` record; the list is in registry.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import Config


@dataclass(frozen=True, slots=True)
class Provider:
    """What generic code may know of a provider.

    `kinds` are the channel kinds it serves; `enabled`, `rate` (sends per second for a kind) and
    `timeout` read its config section; `default_weight` places it in a failover chain that the
    config does not spell out; `bare_refs`: its references name it by themselves and are stored
    unprefixed (Twilio's SM.../CA...), so its receipts match with or without failover;
    `failover_only`: it has no plain slot and always sends through the failover composite.
    """

    name: str
    kinds: tuple[str, ...]
    enabled: Callable[[Config], bool]
    rate: Callable[[Config, str], float]
    timeout: Callable[[Config], float]
    default_weight: int = 0
    bare_refs: bool = False
    failover_only: bool = False
