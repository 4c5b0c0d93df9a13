"""Every failure as a JSON error with a stable code, mapped in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pydantic
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from engine.errors import EngineError, FlightNotFound, SeatRuleViolation, ServiceUnavailable
from engine.ports import StoreError, StoreUnavailable

from .rendering import bytes_response, error_body

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"error": message, "code": code}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = bytes_response(status, error_body(message, code))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


_HTTP_CODES = {
    400: ("invalid_request", "the request is malformed"),
    404: ("not_found", "no endpoint at {path}; see the API documentation for the paths"),
    405: ("method_not_allowed", "{method} is not allowed on {path}"),
    408: ("request_timeout", "the request body did not arrive in time"),
    413: ("body_too_large", "the request body is larger than the limit of {limit} bytes"),
    415: ("unsupported_media_type", "the request body must be JSON (Content-Type: application/json)"),
}


def describe_validation_error(error: pydantic.ValidationError) -> tuple[str, str]:
    """Return (code, message) naming each invalid field and its problem."""
    problems = error.errors(include_url=False)
    if problems and problems[0]["type"] == "json_invalid":
        return "invalid_json", f"request body is not valid JSON: {problems[0]['msg'].removeprefix('Invalid JSON: ')}"
    parts = []
    for problem in problems[:5]:
        field = ".".join(str(part) for part in problem["loc"]) or "body"
        parts.append(f"{field}: {problem['msg'].removeprefix('Value error, ')}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "invalid_request", "invalid request: " + "; ".join(parts) + more


def register_error_handlers(app: Quart, on_unavailable: Callable[[str], None] = lambda code: None) -> None:
    """Map every error to a JSON response; call ``on_unavailable(code)`` for each 503."""

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        if error.status == 503:
            on_unavailable(error.code)
        return error_response(error.status, error.code, error.message, error.headers)

    @app.errorhandler(pydantic.ValidationError)
    async def validation_error(error: pydantic.ValidationError) -> Response:
        code, message = describe_validation_error(error)
        return error_response(400, code, message)

    @app.errorhandler(EngineError)
    async def engine_error(error: EngineError) -> Response:
        if isinstance(error, SeatRuleViolation):
            return error_response(400, error.code, str(error))
        if isinstance(error, FlightNotFound):
            return error_response(404, error.code, str(error))
        if isinstance(error, ServiceUnavailable):
            on_unavailable(error.code)
            log.warning("%s %s responded 503 %s: %s", request.method, request.path, error.code, error)
            return error_response(503, error.code, str(error), {"Retry-After": str(error.retry_after)})
        log.error("%s %s failed: %s", request.method, request.path, error)
        return error_response(500, "internal_error", "internal error; the request was not applied")

    @app.errorhandler(StoreError)
    async def store_error(error: StoreError) -> Response:
        # Queries made by routes directly (the flight list), outside any actor.
        if isinstance(error, StoreUnavailable):
            log.warning("%s %s responded 503 database_unavailable: %s", request.method, request.path, error)
            return error_response(
                503, "database_unavailable", "the database is unavailable; retry later", {"Retry-After": "1"}
            )
        log.error("%s %s failed: %s", request.method, request.path, error)
        return error_response(500, "internal_error", "internal error; the request was not applied")

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code, template = _HTTP_CODES.get(status, ("http_error", error.description or "request failed"))
        message = template.format(
            path=request.path, method=request.method, limit=app.config.get("MAX_CONTENT_LENGTH")
        )
        response = error_response(status, code, message)
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.exception("%s %s failed with an unexpected error", request.method, request.path)
        return error_response(500, "internal_error", "internal error; the request may not have been applied")
