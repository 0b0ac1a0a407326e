"""The HTTP callbacks of every provider (each in gateway/providers/<name>/callbacks.py), for the app."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.providers.aliyun import callbacks as aliyun
from gateway.providers.twilio import callbacks as twilio

ROUTES: tuple[web.RouteTableDef, ...] = (twilio.routes, aliyun.routes)


def openapi_paths() -> dict[str, Any]:
    """Every provider's callbacks for /openapi.json, each described by its own module."""
    return {**twilio.openapi_paths(), **aliyun.openapi_paths()}
