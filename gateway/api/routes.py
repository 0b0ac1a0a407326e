"""Every route table the daemon mounts, in one list (`Gateway.make_app` in gateway/daemon.py): the API's
resources, the console's pages and the providers' callbacks."""

from __future__ import annotations

from aiohttp import web

from gateway.api import (
    ack_page,
    acks,
    audit,
    documents,
    events,
    openapi,
    ops,
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

ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (
    events.routes, ops.routes, sink.routes, acks.routes, ack_page.routes, standards.routes, openapi.routes,
    public.routes, audit.routes, pages.routes, stream.routes, preview.routes, reports.routes, signoff.routes,
    documents.routes, people.routes, *PROVIDER_CALLBACKS)
