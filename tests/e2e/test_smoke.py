from datetime import UTC, datetime, timedelta

from persistence.seed import seed_flights


async def test_flights_listed(live_server):
    await seed_flights(live_server.database, [("SU", "Moscow", "Berlin", datetime.now(UTC) + timedelta(days=3))], 5)
    response = await live_server.client.get("/api/v1/flights")
    assert response.status_code == 200
    assert response.json()[0]["seats_available"] == 5
