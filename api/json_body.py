"""Decode a request body into JSON values, rejecting what the JSON grammar lets through.

Strict where RFC 8259 leaves a choice. The body must be UTF-8 without a
byte order mark. An object must not repeat a key, because parsers disagree
on which value wins. Nesting depth and integer length are capped, and NaN
and Infinity are not numbers. Strings must not contain unpaired UTF-16
surrogates, which JSON escapes can produce but UTF-8 (and PostgreSQL)
cannot store.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel
from quart import request

from .errors import ApiError

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_DEPTH = 32
# Far more digits than any id or time needs, and below Python's own limit on
# converting long digit strings (4,300 digits by default).
MAX_INTEGER_DIGITS = 1000

_SURROGATE = re.compile("[\ud800-\udfff]")


class _DuplicateKey(ValueError):
    pass


class _IntegerTooLong(ValueError):
    pass


class _NotANumber(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _IntegerTooLong(len(text))
    return int(text)


def _reject_constant(name: str) -> Any:
    raise _NotANumber(name)


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_json", message)


def parse_json(body: bytes) -> Any:
    """Return the JSON value of ``body``; raise ApiError (400) naming what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(f"request body is not valid UTF-8: invalid byte at position {error.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
        )
    except _DuplicateKey as error:
        raise _invalid(f"request body is not valid JSON: duplicate key {str(error)[:40]!r} in an object") from None
    except _IntegerTooLong as error:
        raise _invalid(
            f"request body is not valid JSON: an integer has {error} digits, more than {MAX_INTEGER_DIGITS}"
        ) from None
    except _NotANumber as error:
        raise _invalid(f"request body is not valid JSON: {error} is not a JSON number") from None
    except json.JSONDecodeError as error:
        raise _invalid(
            f"request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise _invalid(f"request body is not valid JSON: nested deeper than {MAX_DEPTH} levels") from None
    _check_nesting_and_text(value)
    return value


def validate_json(model: type[ModelT], body: bytes) -> ModelT:
    """Check ``body`` with ``parse_json``, then validate it as ``model`` (pydantic's JSON mode and messages)."""
    parse_json(body)
    return model.model_validate_json(body)


def _check_nesting_and_text(value: Any) -> None:
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise _invalid(f"request body is not valid JSON: nested deeper than {MAX_DEPTH} levels")
            for key, child in item.items():
                child_path = key if path == "body" else f"{path}.{key}"
                if _SURROGATE.search(key):
                    raise _unpaired_surrogate(path + " key")
                stack.append((child, depth + 1, child_path))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise _invalid(f"request body is not valid JSON: nested deeper than {MAX_DEPTH} levels")
            stack.extend((child, depth + 1, f"{path}.{index}") for index, child in enumerate(item))
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise _unpaired_surrogate(path)


def _unpaired_surrogate(path: str) -> ApiError:
    return _invalid(
        f"request body is not valid JSON: {path[:80]} contains an unpaired UTF-16 surrogate escape "
        "(\\ud800 to \\udfff); send valid Unicode text"
    )


async def read_json_body() -> bytes:
    """Return the raw body of a JSON POST; raise ApiError for a query string, a wrong type or an empty body."""
    if request.query_string:
        raise ApiError(
            400,
            "invalid_request",
            f"query parameters are not accepted on {request.method} {request.path}; send every field in the JSON body",
        )
    if request.mimetype != "application/json":
        shown = request.mimetype or "none"
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be application/json, got {shown}")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", f"JSON must be sent as UTF-8, got charset={charset[:40]}")
    body = await request.get_data(cache=False)
    if not body.strip():
        raise ApiError(400, "invalid_json", "request body is empty; send a JSON object")
    return body
