"""Small builders for the OpenAPI document's pieces (schemas, operations, parameters), shared by
`gateway/api/openapi.py` and the route modules that describe their own paths
(`reports_openapi.py`), so that neither imports the other."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
REF = "#/components/schemas/"
JSON = "application/json"
CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")
ERRORS = {400: "malformed request or parameter", 401: "no or bad token", 403: "missing scope or two-person rule",
           404: "no such resource", 409: "idempotency or state conflict", 413: "body over the configured limit",
           415: "unsupported content type", 422: "valid syntax, invalid content"}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def ref(name: str) -> Schema:
    return {"$ref": REF + name}


def string(**kw: Any) -> Schema:
    return {"type": "string", **kw}


def nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def obj(props: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = False) -> Schema:
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def array(items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "items": items, **kw}


TIME = string(format="date-time")
NTIME = nullable(TIME)
NSTR = nullable(string())
INT = {"type": "integer", "minimum": 0}


def content(schema: Schema, *types: str, example: Any = None) -> dict[str, Any]:
    extra = {} if example is None else {"example": example}
    return {t: {"schema": schema, **extra} for t in (types or (JSON,))}


def ok(description: str, schema: Schema, *types: str) -> dict[str, Any]:
    return {"description": description, "content": content(schema, *types)}


def op(op_id: str, summary: str, responses: dict[int, Any], *, errors: tuple[int, ...] = (),
        security: list[dict[str, list[str]]] | None = None, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, scope: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary + (f" (scope `{scope}`)" if scope else "")}
    if params:
        out["parameters"] = params
    if body:
        out["requestBody"] = body
    out["security"] = security if security is not None else (BEARER if scope else [])
    all_errors = ((401, 403) if scope else ()) + errors
    out["responses"] = {str(k): v for k, v in responses.items()} | {
        str(code): {"$ref": f"#/components/responses/E{code}"} for code in sorted(set(all_errors))}
    return out


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": string()}


def query_param(name: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def json_body(name: str, *, required: bool = True, example: Any = None) -> dict[str, Any]:
    return {"required": required, "content": content(ref(name), example=example)}


BODY_ERRORS = (400, 413, 415, 422)
