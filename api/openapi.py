"""The OpenAPI 3.1 document at /openapi.json and Swagger UI at /docs.

quart-schema builds the document from the pydantic models the routes use
(request bodies and query parameters) and the response models that describe
what they render. Only its document builder is used: ``QuartSchema.init_app``
would also wrap every response in a conversion step (about 8 us per response
measured with quart-schema 0.25 on a 2-core machine), and the routes already
render their JSON in one encode. The document is built once, on its first
request, because the routes do not change after start-up.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from pydantic import BaseModel, Field
from quart import Response
from quart_schema import Info, QuartSchema, Tag, document_querystring, document_request, document_response
from quart_schema.openapi import OpenAPIProvider
from quart_trio import QuartTrio

from .models import (
    MAX_ID,
    CancelResponse,
    ErrorBody,
    FlightOnSale,
    NotReady,
    SeatRequest,
    SeatResponse,
    StatusOk,
    TicketOnSale,
)
from .rendering import JSON_CONTENT_TYPE
from .search import FlightQuery, TicketQuery
from .webhook import EventRequest

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"

# Swagger UI 5 (the first major version that reads OpenAPI 3.1) from the
# CDN that quart-schema 0.25 uses by default. The browser fetches it, so
# /docs needs a browser with Internet access; /openapi.json does not.
_SWAGGER_UI = "https://cdnjs.cloudflare.com/ajax/libs/swagger-ui/5.4.2"
_DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tickets API</title>
  <link rel="stylesheet" href="{_SWAGGER_UI}/swagger-ui.min.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{_SWAGGER_UI}/swagger-ui-bundle.js"></script>
  <script>
    SwaggerUIBundle({{url: "{OPENAPI_PATH}", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""

_STATUS_DESCRIPTIONS = {
    200: "Success.",
    201: "Created: the ticket is now sold or booked.",
    400: "Invalid query parameter, body or field, or a seat rule forbids the operation.",
    403: "The webhook secret does not match.",
    404: "No flight has this id, or no endpoint has this path.",
    413: "The body is larger than TICKETS_MAX_BODY_BYTES.",
    415: "The body is not JSON: Content-Type must be application/json.",
    503: "Overloaded, deadline passed, database unavailable or webhook not configured. "
    "The request was not applied; retry after Retry-After seconds.",
}

_REQUEST_ID_HEADER = {
    "description": "The request's X-Request-ID if it was valid, otherwise an id made for it; "
    "every log line of the request carries it.",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}
_RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_LINK_HEADER = {
    "description": 'The next page, as `</path?query&cursor=...>; rel="next"`; absent on the last page '
    "and when no `limit` is given.",
    "required": False,
    "schema": {"type": "string"},
}


class _OpenApiDocument(BaseModel):
    """The OpenAPI 3.1 document of this API."""

    openapi: str = Field(pattern=r"^3\.1\.")
    info: dict[str, Any]
    paths: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """The document's description of one route: its models, statuses and media type."""

    tag: str
    responses: dict[int, Any]
    errors: tuple[int, ...] = ()
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    paged: bool = False
    # The media type of the success response (a string) when it is not JSON;
    # its status maps to None in ``responses``.
    media_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_SEAT_ERRORS = (400, 413, 415, 503)

# Keyed by endpoint name, which is the route function's name.
OPERATIONS: dict[str, Operation] = {
    "list_flights": Operation("flights", {200: list[FlightOnSale]}, (400, 503), query=FlightQuery, paged=True),
    "list_tickets": Operation("tickets", {200: list[TicketOnSale]}, (400, 404, 503), query=TicketQuery, paged=True),
    "buy": Operation("tickets", {201: SeatResponse}, _SEAT_ERRORS, body=SeatRequest),
    "book": Operation("tickets", {201: SeatResponse}, _SEAT_ERRORS, body=SeatRequest),
    "cancel_reservation": Operation("tickets", {200: CancelResponse}, _SEAT_ERRORS, body=SeatRequest),
    "callback_event": Operation("webhook", {200: StatusOk}, (400, 403, 404, 413, 415, 503), body=EventRequest),
    "healthz": Operation("operations", {200: StatusOk}),
    "readyz": Operation("operations", {200: StatusOk, 503: NotReady}),
    "prometheus_metrics": Operation("operations", {200: None}, media_type="text/plain"),
    "openapi_document": Operation("operations", {200: _OpenApiDocument}),
    "api_docs": Operation("operations", {200: None}, media_type="text/html"),
}

_TAGS = [
    Tag(name="flights", description="Flights on sale."),
    Tag(name="tickets", description="Seats of a flight: list, book, buy, cancel a reservation."),
    Tag(name="webhook", description="Airline events: sales closed, flight canceled."),
    Tag(name="operations", description="Health, readiness, metrics and this document."),
]


class _Provider(OpenAPIProvider):
    """quart-schema's document builder with the project's operations and headers filled in."""

    def build_path_parameter(self, name: str, converter: Any) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if name == "flight_ref":
            parameter["description"] = "Flight id."
            parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        return parameter

    def build_querystring_parameters(self, model: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters, components = super().build_querystring_parameters(model)
        for parameter in parameters:
            # An absent parameter is the default; null is not a value a query string can carry.
            if parameter["schema"].get("default", "") is None:
                del parameter["schema"]["default"]
        return parameters, components

    def generate_rules(self) -> Any:
        return (rule for rule in super().generate_rules() if rule.endpoint in OPERATIONS)

    def build_paths(self, rule: Any) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        operation = OPERATIONS[rule.endpoint]
        for path_item in paths.values():
            for method_object in path_item.values():
                _complete(method_object, operation)
        return paths, components


def _complete(method_object: dict[str, Any], operation: Operation) -> None:
    method_object["tags"] = [operation.tag]
    method_object["parameters"].append(
        {
            "name": "X-Request-ID",
            "in": "header",
            "required": False,
            "description": "An id to find this request in the logs; one is made if it is missing or invalid.",
            "schema": {"type": "string"},
        }
    )
    responses = method_object["responses"]
    for status, model in operation.responses.items():
        if model is None:
            responses[status] = {"content": {operation.media_type: {"schema": {"type": "string"}}}}
    for status, response in responses.items():
        response["description"] = _STATUS_DESCRIPTIONS[status]
        headers = {"X-Request-ID": _REQUEST_ID_HEADER}
        if status == 503:
            headers["Retry-After"] = _RETRY_AFTER_HEADER
        if operation.paged and status == 200:
            headers["Link"] = _LINK_HEADER
        response["headers"] = headers


def _document_view(function: Any, operation: Operation) -> None:
    """Attach quart-schema's documentation attributes to a route function."""
    if operation.query is not None:
        document_querystring(operation.query)(function)
    if operation.body is not None:
        document_request(operation.body)(function)
    for status, model in operation.responses.items():
        if model is not None:
            document_response(model, status)(function)
    for status in operation.errors:
        document_response(ErrorBody, status)(function)


def register_openapi(app: QuartTrio) -> None:
    """Add /openapi.json and /docs; call after every other route is added."""
    extension = QuartSchema(
        info=Info(
            title="Tickets",
            version=importlib.metadata.version("tickets"),
            description="Flight-ticket sales: list flights and seats, book, buy, cancel a reservation; airline webhook.",
        ),
        tags=_TAGS,
    )
    # The settings quart-schema's builder reads; init_app would set them.
    app.config.setdefault("QUART_SCHEMA_CONVERSION_PREFERENCE", None)
    app.config.setdefault("QUART_SCHEMA_CONVERT_CASING", False)
    provider = _Provider(app, extension)
    cached: list[bytes] = []

    @app.get(OPENAPI_PATH)
    async def openapi_document() -> Response:
        """Return the OpenAPI 3.1 document of this API."""
        if not cached:
            cached.append(pydantic_core.to_json(provider.schema()))
        return Response(cached[0], status=200, content_type=JSON_CONTENT_TYPE)

    @app.get(DOCS_PATH)
    async def api_docs() -> Response:
        """Return the interactive API documentation (Swagger UI)."""
        return Response(_DOCS_PAGE, status=200, content_type="text/html; charset=utf-8")

    for rule in app.url_map.iter_rules():
        operation = OPERATIONS.get(rule.endpoint)
        if operation is None:
            raise RuntimeError(f"route {rule.rule} ({rule.endpoint}) is missing from api.openapi.OPERATIONS")
        _document_view(app.view_functions[rule.endpoint], operation)
