"""Methods a route does not serve get a JSON 405, never Quart's HTML defaults."""

import pytest


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("OPTIONS", "/api/v1/flights"),
        ("OPTIONS", "/api/v1/tickets/buy"),
        ("DELETE", "/api/v1/tickets/book"),
        ("PUT", "/api/v1/callback/events"),
        ("PATCH", "/api/v1/tickets/flight-1"),
    ],
)
async def test_unserved_method_is_json_405(live_server, method, path):
    response = await live_server.client.request(method, path)

    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == "method_not_allowed"
