"""HTTP API route tables."""

from __future__ import annotations

from aiohttp import web


def extra_routes() -> list[web.RouteTableDef]:
    """Route tables beyond events and ops, imported here so the app has one list."""
    from gateway.api import (
        ack_page,
        acks,
        audit,
        documents,
        openapi,
        people,
        preview,
        public,
        reports,
        signoff,
        sink,
        standards,
        stream,
    )
    from gateway.console import pages
    from gateway.providers.callbacks import ROUTES as PROVIDER_CALLBACKS

    return [sink.routes, acks.routes, ack_page.routes, standards.routes, openapi.routes, public.routes,
            audit.routes, pages.routes, stream.routes, preview.routes, reports.routes,
            signoff.routes, documents.routes, people.routes, *PROVIDER_CALLBACKS]
