"""Choose the store backend from its URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.store.ports import Store
from gateway.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from gateway.config import Config


def make_store(config: Config) -> Store:
    """Raises ValueError for an unsupported URL scheme."""
    url = config.store_url
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"), synchronous=config.store.synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore

        return PostgresStore(url, migrate=config.store.migrate)
    raise ValueError(f"unsupported store URL {url.split('@')[-1]!r}: use sqlite:///path or postgresql://")
