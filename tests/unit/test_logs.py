"""Log formatting: masked passport numbers and secrets, request ids, JSON lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from api.logs import REQUEST_ID, JsonFormatter, TextFormatter, configure_logging, mask_pass_number, mask_sensitive
from engine.commands import Buy
from engine.seats import Passenger

PASS_NUMBER = "4322-22-333-45"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Passenger(pass_number='4322-22-333-45')", "Passenger(pass_number='***45')"),
        ('{"passNumber": "4322 22 333 45"}', '{"passNumber": "***45"}'),
        ("passNumber=AB123456, seat=5", "passNumber=***56, seat=5"),
        ("passport_number: 12", "passport_number: ***"),
        ('{"secret_key": "a1b2c3"}', '{"secret_key": "***"}'),
        ("callback_secret=abc password=hunter2", "callback_secret=*** password=***"),
        ("smtps://user:s3cret@mail.example:465", "smtps://user:***@mail.example:465"),
        ("postgresql://postgres@127.0.0.1:5432/tickets", "postgresql://postgres@127.0.0.1:5432/tickets"),
        ("flight 3: 5 seats released", "flight 3: 5 seats released"),
    ],
)
def test_mask_sensitive(line, expected):
    assert mask_sensitive(line) == expected


def test_mask_pass_number_keeps_last_two():
    assert mask_pass_number(PASS_NUMBER) == "***45"
    assert mask_pass_number("1234") == "***"


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("tickets.test", logging.INFO, __file__, 1, message, args, None)
    entry.__dict__.update(extra)
    return entry


def test_text_format_masks_passenger_repr():
    passenger = Passenger("ivan@mail.com", PASS_NUMBER, "Ivan", "Ivanov")

    line = TextFormatter().format(record("rejected %r", Buy(5, passenger)))

    assert PASS_NUMBER not in line
    assert "pass_number='***45'" in line


def test_text_format_masks_traceback():
    passenger = Passenger("ivan@mail.com", PASS_NUMBER, "Ivan", "Ivanov")
    try:
        raise TypeError(f"unknown command {Buy(5, passenger)!r}")
    except TypeError:
        entry = logging.LogRecord("tickets.test", logging.ERROR, __file__, 1, "crashed", (), __import__("sys").exc_info())

    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(entry)
        assert "TypeError" in line
        assert PASS_NUMBER not in line


def test_text_format_appends_request_id():
    token = REQUEST_ID.set("req-42")
    try:
        line = TextFormatter().format(record("GET /healthz 200 0.1 ms"))
    finally:
        REQUEST_ID.reset(token)

    assert line.endswith("GET /healthz 200 0.1 ms request_id=req-42")


def test_json_format_fields():
    token = REQUEST_ID.set("req-42")
    try:
        line = JsonFormatter().format(
            record("GET %s", "/healthz", status=200, secret_key="x", pass_number=PASS_NUMBER, note="password=hunter2")
        )
    finally:
        REQUEST_ID.reset(token)

    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "tickets.test"
    assert entry["message"] == "GET /healthz"
    assert entry["request_id"] == "req-42"
    assert entry["status"] == 200
    assert entry["note"] == "password=***"
    assert entry["secret_key"] == "***"
    assert entry["pass_number"] == "***45"
    assert entry["time"].endswith("+00:00")


def test_configure_logging_json_writes_one_object_per_line():
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging("info", "json", stream)
        logging.getLogger("tickets.test").info("first")
        logging.getLogger("tickets.test").debug("dropped below INFO")
        logging.getLogger("tickets.test").warning("second")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)

    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["first", "second"]
