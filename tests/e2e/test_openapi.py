"""The OpenAPI document, /docs, and schemathesis against the live app over loopback HTTP."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from api.app import create_app
from persistence.seed import seed_flights

pytestmark = pytest.mark.trio

# The checks that find 5xx responses and responses the document does not
# describe, plus invalid input that is accepted and methods that are not rejected.
SCHEMATHESIS_CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
]


async def test_openapi_document_lists_every_route(live_server):
    response = await live_server.client.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    app_paths = set()
    for rule in create_app(live_server.runtime).url_map.iter_rules():
        path = rule.rule.replace("<flight_ref>", "{flight_ref}")
        app_paths.add(path)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], f"{method} {path} is not documented"
    assert set(document["paths"]) == app_paths


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/v1/flights", "get", {"200", "400", "503"}),
        ("/api/v1/tickets/flight-{flight_ref}", "get", {"200", "400", "404", "503"}),
        ("/api/v1/tickets/buy", "post", {"201", "400", "413", "415", "503"}),
        ("/api/v1/tickets/book", "post", {"201", "400", "413", "415", "503"}),
        ("/api/v1/tickets/cancel-reservation", "post", {"200", "400", "413", "415", "503"}),
        ("/api/v1/callback/events", "post", {"200", "400", "403", "404", "413", "415", "503"}),
        ("/healthz", "get", {"200"}),
        ("/readyz", "get", {"200", "503"}),
        ("/metrics", "get", {"200"}),
    ],
)
async def test_openapi_operation_statuses(live_server, path, method, statuses):
    document = (await live_server.client.get("/openapi.json")).json()

    responses = document["paths"][path][method]["responses"]

    assert set(responses) == statuses
    for status, response in responses.items():
        assert "X-Request-ID" in response["headers"]
        if status >= "400" and path not in ("/readyz",):
            assert response["content"]["application/json"]["schema"]["title"] == "ErrorBody"
    if "503" in responses:
        assert responses["503"]["headers"]["Retry-After"]["required"] is True


async def test_openapi_uses_route_models(live_server):
    document = (await live_server.client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    paths = document["paths"]

    buy = paths["/api/v1/tickets/buy"]["post"]
    assert buy["requestBody"]["content"]["application/json"]["schema"]["required"] == ["ticketId", "passenger"]
    assert set(schemas["PassengerIn"]["required"]) == {"email", "firstname", "lastname", "passNumber"}
    webhook = paths["/api/v1/callback/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert webhook["required"] == ["data"]
    flight_parameters = {parameter["name"] for parameter in paths["/api/v1/flights"]["get"]["parameters"]}
    assert flight_parameters == {"departure", "arrival", "date", "limit", "cursor", "X-Request-ID"}
    assert "Link" in paths["/api/v1/flights"]["get"]["responses"]["200"]["headers"]
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


async def test_docs_page_loads_document(live_server):
    response = await live_server.client.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert 'url: "/openapi.json"' in response.text
    assert "swagger-ui-bundle.js" in response.text


async def test_keep_alive_survives_unread_bodies(live_server):
    # The app responds to each of these without reading the body. Before it
    # waited for such bodies, the next request on the connection could hang.
    requests = [
        ("PUT", "/api/v1/tickets/book", "application/json"),
        ("OPTIONS", "/api/v1/tickets/buy", "application/json"),
        ("POST", "/api/v1/tickets/buy", "text/plain"),
        ("GET", "/api/v1/flights", "application/json"),
    ]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=5, limits=limits) as client:
        for round_number in range(10):
            for method, path, content_type in requests:
                response = await client.request(method, path, content=b'{"ticketId": 1}', headers={"Content-Type": content_type})
                assert response.status_code < 500, (round_number, method, path)


async def test_schemathesis_finds_no_failures(live_server, tmp_path: Path):
    departure = datetime.now(UTC) + timedelta(days=5)
    await seed_flights(live_server.database, [("SU", "Moscow", "Berlin", departure), ("LH", "Berlin", "Paris", departure)], 20)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{live_server.base_url}/openapi.json",
        "--checks",
        ",".join(SCHEMATHESIS_CHECKS),
        "--max-examples",
        "25",
        "--seed",
        "20261204",
        "--workers",
        "1",
        "--request-timeout",
        "10",
    ]

    with trio.fail_after(300):
        result = await trio.run_process(command, cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False)

    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, output
    assert "No issues found" in output or " passed" in output, output
