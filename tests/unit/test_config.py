"""Settings: every one documented with a unit and default; `tickets config`; invalid values stop start-up."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from api.cli import main
from api.config import Settings
from api.config_report import settings_markdown_table, unit_of, variable_name


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch) -> Iterator[None]:
    """No TICKETS_* variable from the caller's shell, and logging restored after main() reconfigures it."""
    import os

    for name in list(os.environ):
        if name.startswith("TICKETS_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_setting_documented(name):
    field = Settings.model_fields[name]

    assert field.description, f"{name} has no description"
    assert unit_of(field), f"{name} has no unit"
    assert not field.is_required(), f"{name} has no default"


def test_config_prints_defaults(capsys):
    assert main(["config"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["variable", "value", "unit", "source"]
    assert len(lines) == 1 + len(Settings.model_fields)
    port = next(line for line in lines if line.startswith("TICKETS_PORT "))
    assert port.split() == ["TICKETS_PORT", "8000", "port", "default"]


def test_config_masks_secrets(capsys, monkeypatch):
    monkeypatch.setenv("TICKETS_CALLBACK_SECRET", "webhook-secret-4242")
    monkeypatch.setenv("TICKETS_DATABASE_URL", "postgresql://tickets:db-password-77@db:5432/tickets")
    monkeypatch.setenv("TICKETS_MAIL_URL", "smtps://mailer:mail-password-99@smtp.example:465")

    assert main(["config"]) == 0

    out = capsys.readouterr().out
    for secret in ("webhook-secret-4242", "db-password-77", "mail-password-99"):
        assert secret not in out
    assert "postgresql://tickets:***@db:5432/tickets" in out
    assert "smtps://mailer:***@smtp.example:465" in out
    secret_line = next(line for line in out.splitlines() if line.startswith("TICKETS_CALLBACK_SECRET "))
    assert secret_line.split()[1] == "***"
    assert secret_line.split()[-1] == "environment"


def test_empty_variable_means_default(capsys, monkeypatch):
    monkeypatch.setenv("TICKETS_PORT", "")

    assert main(["config"]) == 0

    port_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("TICKETS_PORT "))
    assert port_line.split()[1] == "8000"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TICKETS_PORT", "70000", "expected a whole number from 0 to 65535 (port)"),
        ("TICKETS_PORT", "http", "expected a whole number from 0 to 65535 (port)"),
        ("TICKETS_BOOKING_TTL", "15m", "expected a whole number from 1 to 604800 (seconds)"),
        ("TICKETS_REQUEST_DEADLINE", "0", "expected a number greater than 0 and at most 120 (seconds)"),
        ("TICKETS_MAX_BODY_BYTES", "100", "expected a whole number from 256 to 16777216 (bytes)"),
        ("TICKETS_MAIL_LOCALE", "de", "expected ru or en"),
        ("TICKETS_LOG_FORMAT", "xml", "expected text or json"),
        ("TICKETS_LOG_LEVEL", "loud", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("TICKETS_DATABASE_URL", "mysql://root@db/tickets", "must start with postgresql:// or postgres://"),
        ("TICKETS_MAIL_URL", "http://mail", "must start with one of smtp://, smtps://, file://, console://"),
    ],
)
def test_invalid_setting_stops_start(capsys, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)

    assert main(["serve"]) == 2

    err = capsys.readouterr().err
    assert f"invalid setting {variable}='{value}'" in err
    assert expected in err
    assert "not started" in err


def test_invalid_pool_sizes_named(capsys, monkeypatch):
    monkeypatch.setenv("TICKETS_POOL_MIN_SIZE", "20")

    assert main(["migrate"]) == 2

    err = capsys.readouterr().err
    assert "TICKETS_POOL_MIN_SIZE (20) must not exceed TICKETS_POOL_MAX_SIZE (10)" in err


def test_invalid_secret_not_echoed(capsys, monkeypatch):
    monkeypatch.setenv("TICKETS_PORT", "none")
    monkeypatch.setenv("TICKETS_DATABASE_URL", "mysql://root:root-password-5@db/x")

    assert main(["config"]) == 2

    err = capsys.readouterr().err
    assert "root-password-5" not in err
    assert "mysql://root:***@db/x" in err


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["serve"], ["--demo", "--host ADDRESS", "--port PORT", "0 to 65535"]),
        (["migrate"], ["Takes no options"]),
        (["seed"], ["--flights N", "--seats M", "1 to 100,000", "seats (tickets) per generated flight"]),
        (["config"], ["secrets and URL passwords masked"]),
        ([], ["serve", "migrate", "seed", "config", "TICKETS_*"]),
    ],
)
def test_help_lists_options(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])

    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in expected:
        assert text in out


@pytest.mark.parametrize("arguments", [["serve", "--port", "99999"], ["seed", "--flights", "0"], ["seed", "--flights", "5", "--seats", "-1"]])
def test_invalid_option_rejected(capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)

    assert exit_info.value.code == 2
    assert "expected a whole number from" in capsys.readouterr().err


def test_markdown_table_lists_every_setting():
    table = settings_markdown_table().splitlines()

    assert table[0] == "| variable | default | unit | meaning |"
    assert [row.split(" | ")[0].strip("| `") for row in table[2:]] == [variable_name(name) for name in Settings.model_fields]
