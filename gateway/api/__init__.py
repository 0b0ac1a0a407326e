"""HTTP API route tables."""

from __future__ import annotations

from aiohttp import web


def extra_routes() -> list[web.RouteTableDef]:
    """Route tables beyond events and ops, imported here so the app has one list."""
    from gateway.api import acks, sink

    return [sink.routes, acks.routes]
