"""`POST /v1/preview` (events:write): what an event would send, without storing anything.

The body is an event exactly as for `POST /v1/events`. The answer shows the SMS as the unit
with the longest one would get it (its segment count decides the cost), a voice text, how many
units and deliveries the policy would plan, and `messages`: every planned delivery's text. Every
SMS is fitted to the budget as at intake; what was cut is in `warnings`. With `strict_length` a
cut is the `problem` intake would answer 422 with.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contacts.resolver import UnknownAudience
from gateway.api.common import gw, json_response, read_json
from gateway.api.errors import ApiError
from gateway.api.events import parse_event
from gateway.console.pages import authenticate
from gateway.flows.signoff import APPROVAL
from gateway.planner import Planner, chain_of, utcnow
from gateway.render import RenderError, sms_segments
from gateway.store.base import UnknownEvent

routes = web.RouteTableDef()
SAMPLE_UNIT = "示例单位"


@routes.post("/v1/preview")
async def preview(request: web.Request) -> web.Response:
    """The rendered preview.

    Raises:
        ApiError: 401/403 (token, scope), 400/415 (not JSON), 422 (not a valid event, an
        audience naming unknown roles, groups or units, or `supersedes` naming no event).
    """
    principal = authenticate(request, "events:write")
    event = parse_event(await read_json(request))
    g = gw(request)
    if event.supersedes:
        # intake finds this out only when the store commits; the form should know before
        try:
            await g.store.get_event(event.supersedes)
        except UnknownEvent as exc:
            raise ApiError(422, "unknown_supersedes", f"supersedes names no known event: {event.supersedes}",
                           field="$.supersedes") from exc
    rt = g.runtime
    budget = g.renderer.max_sms_segments
    renderer = g.renderer
    planner = Planner(rt.policy, rt.resolver, renderer, g.channels.keys(), links=getattr(g, "links", None))
    event_id = event.id or "preview"
    accepted = utcnow()
    # a warning that waits for sign-off says so in every message: the budget counts that too
    hold = await g.signoff.hold_for(event, principal=principal.name, accepted=accepted.timestamp())
    approval = APPROVAL if hold is not None and hold["state"] == "pending" else ""
    chain = await chain_of(g.store, event)
    problem: dict[str, Any] | None = None
    try:
        try:
            plan = await planner.plan(event, event_id, accepted, approval=approval, chain=chain)
        except RenderError as exc:
            # strict_length would refuse this event: show what it would send without it, and why
            problem = {"code": "message_too_long", "message": str(exc), "field": exc.field}
            plan = await planner.plan(event.model_copy(update={"strict_length": None}), event_id, accepted,
                                      approval=approval, chain=chain)
    except UnknownAudience as exc:
        raise ApiError(422, "unknown_audience", str(exc), field="$.audience") from exc

    by_channel: dict[str, int] = {}
    for d in plan.deliveries:
        by_channel[d.channel] = by_channel.get(d.channel, 0) + 1
    sms = [d for d in plan.deliveries if d.channel == "sms"]
    ctx = renderer.context(event, event_id, accepted, chain, approval=approval)
    unit_id: str | None
    if sms:
        worst = max(sms, key=lambda d: (sms_segments(d.text), len(d.text)))
        unit_id, unit_name, text = worst.unit_id, worst.unit_name, worst.text
    else:
        # nobody gets an SMS under this policy: show the text a unit would get without an ack ask
        first = plan.acks[0] if plan.acks else None
        unit_id, unit_name = (first.unit_id, first.unit_name) if first else (None, SAMPLE_UNIT)
        text = renderer.sms(ctx, unit_name=unit_name, ack=None)
    segments = sms_segments(text)
    voice = next((d for d in plan.deliveries if d.channel == "voice"), None)
    voice_text = voice.text if voice else renderer.voice(ctx, unit_name=unit_name, ack=None)
    answer: dict[str, Any] = {
        "sms": {"unit_id": unit_id, "unit_name": unit_name, "text": text, "chars": len(text),
                "segments": segments, "max_segments": budget, "over_budget": segments > budget,
                "recipients": len(sms)},
        "voice": {"unit_name": voice.unit_name if voice else unit_name, "text": voice_text,
                  "recipients": by_channel.get("voice", 0)},
        "units": len(plan.acks),
        "acks_required": sum(1 for a in plan.acks if a.required),
        "deliveries": len(plan.deliveries),
        "by_channel": by_channel,
        "warnings": plan.warnings,
        "signoff": {"required": bool(approval), "signers": list(g.signoff.signers(hold["level"])) if hold else []},
        # exactly what each unit will get, one entry per planned delivery
        "messages": [{"unit_id": d.unit_id, "unit_name": d.unit_name, "channel": d.channel, "text": d.text,
                      "segments": sms_segments(d.text) if d.channel == "sms" else None}
                     for d in plan.deliveries],
    }
    if problem is not None:
        answer["problem"] = problem
    return json_response(answer)
