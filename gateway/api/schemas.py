"""The request and response bodies of the HTTP API as pydantic models; `/openapi.json` takes its
component schemas from them (`component_schemas`, `model_json_schema`), never from a second,
hand-written copy.

Request bodies are the models the handlers validate with (`gateway.events.Event`, Alertmanager's
payload, a public-message draft); the response models here describe what the handlers return.
Response models leave extra fields allowed (a response may grow one without breaking a client);
a field a response may leave out has a default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from gateway.alertmanager import AmAlert, AmPayload
from gateway.api.public import Decision, Draft
from gateway.events import Event
from gateway.providers.twilio.callbacks import TwilioForm

REF = "#/components/schemas/"
# pending_signoff until signed; a draft that is never signed ends rejected or expired
EventState = Literal["pending_signoff", "active", "superseded", "ended", "cancelled", "rejected", "expired"]
EVENT_STATES: tuple[str, ...] = get_args(EventState)
_ORIGIN = "machine intake: CAP version, sender, verified signer, unknown references"
_Count = Field(default=0, ge=0)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Response):
    """Open: an error may add details (e.g. a roster upload's `problems`)."""

    code: str = Field(pattern="^[a-z0-9_]+$")
    message: str
    field: str = Field(default="", description="JSON path, query parameter or CAP element path")


class Error(BaseModel):
    """Every 4xx: `{"error": {"code", "message", "field"?}}`."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


class Links(_Response):
    self_: str = Field(alias="self")


class EventAccepted(_Response):
    event_id: str | None = Field(description="null: a CAP Cancel of a message never received, recorded as a no-op")
    deliveries: int = Field(ge=0)
    units: int = _Count
    links: Links | None = None
    warnings: list[str] = []
    origin: dict[str, Any] = Field(default_factory=dict, description=_ORIGIN)
    recorded: str = Field(default="", description="the no-op's audit subject")
    state: Literal["pending_signoff"] | None = Field(
        default=None,
        description="held until an HQ leader signs it (POST /v1/events/{id}/sign): nothing is sent before")


class EventSummary(_Response):
    id: str
    type: str
    level: str | None = None
    status: str
    state: EventState
    supersedes: str | None = None
    chain_id: str = ""
    source: str = ""
    submitted_by: str = ""
    accepted_at: datetime
    valid_until: datetime | None = None
    headline: str | None = None
    area: str | None = None
    summary: dict[str, Any] = {}


class Delivery(_Response):
    id: str
    unit_id: str
    unit_name: str = ""
    channel: str
    address: str = Field(default="", description="masked")
    status: Literal["held", "pending", "leased", "sent", "delivered", "failed", "cancelled", "expired"] = Field(
        description="held: waiting for the warning's sign-off")
    attempts: int = Field(ge=0)
    last_error: str | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    acked_at: datetime | None = None


class EventDetail(EventSummary):
    event: dict[str, Any]
    summary: dict[str, Any]
    units: list[dict[str, Any]]
    origin: dict[str, Any] | None = Field(default=None, description=_ORIGIN)
    signoff: dict[str, Any] | None = Field(default=None, description=(
        "the sign-off (签发) of a warning that needed one: state, level, submitter, asked, decided_by, "
        "decided_at, ref (文号), reason"))
    deliveries: list[Delivery]


class PublicMessage(_Response):
    id: str
    event_id: str
    text: str = ""
    units: list[str] = []
    state: str = Field(description="pending_approval, then approved (dispatched), rejected or expired")
    requester: str
    approver: str | None = None
    reason: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    decided_at: datetime | None = None
    deliveries: list[Delivery] = []


class AckRequest(BaseModel):
    """`POST /v1/deliveries/{id}/ack`: both optional (`via` defaults to api)."""

    via: Literal["phone", "console", "api"] = "api"
    note: str = Field(default="", max_length=200)


class AckResult(_Response):
    event_id: str
    unit_id: str
    first: bool
    acknowledged: bool
    note: str | None = None


class AlertOutcome(_Response):
    fingerprint: str
    status: str
    outcome: Literal["created", "replayed", "ignored", "rejected"]
    event_id: str = ""
    type: str = ""
    detail: str = ""
    error: dict[str, Any] = {}


class AlertmanagerResult(_Response):
    receiver: str = ""
    results: list[AlertOutcome]


class Readiness(_Response):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool] = {}


# the models behind the document, and the component name where it differs from the class name
REQUESTS: dict[type[BaseModel], str] = {
    Event: "Event", Draft: "PublicMessageRequest", Decision: "PublicMessageDecision", AmPayload: "AlertmanagerPayload",
    AmAlert: "AlertmanagerAlert", AckRequest: "AckRequest", TwilioForm: "TwilioForm"}
RESPONSES: tuple[type[BaseModel], ...] = (Error, EventAccepted, EventSummary, Delivery, EventDetail, PublicMessage,
                                          AckResult, AlertmanagerResult, Readiness)


def _renamed(node: Any, names: dict[str, str], *, props: bool = False) -> Any:
    """`$ref`s renamed to component names; pydantic's generated titles dropped (not a property
    called title: `props` marks a `properties` mapping)."""
    if isinstance(node, dict):
        out = {k: _renamed(v, names, props=k == "properties" and not props) for k, v in node.items()
               if props or k != "title"}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF):
            out["$ref"] = REF + names.get(ref.removeprefix(REF), ref.removeprefix(REF))
        return out
    if isinstance(node, list):
        return [_renamed(v, names) for v in node]
    return node


def component_schemas() -> dict[str, Any]:
    """Every model's JSON schema (requests as validated, responses as serialised) with the models
    they use, keyed by component name; `$ref`s point into `#/components/schemas/`."""
    models = [(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in RESPONSES]
    top, defs = models_json_schema(models, ref_template=REF + "{model}")  # type: ignore[arg-type]
    names = {m.__name__: n for m, n in REQUESTS.items()}
    out = {names.get(k, k): v for k, v in defs.get("$defs", {}).items()}
    for (model, _mode), schema in top.items():
        if "$ref" not in schema:  # a model nothing refers to is returned inline
            out[names.get(model.__name__, model.__name__)] = schema
    return {k: _renamed(v, names) for k, v in sorted(out.items())}
