"""Mail URL parsing and sender selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from notify.senders import ConsoleSender, FileSender, MailUrl, SmtpSender, parse_mail_url, sender_from_url
from notify.senders.url import redact_mail_url

MAIL_FROM = "Tickets <no-reply@tickets.example>"

VALID = [
    ("smtp://mail.example.com:2525", MailUrl("smtp", host="mail.example.com", port=2525)),
    ("smtp://mail.example.com", MailUrl("smtp", host="mail.example.com", port=25)),
    ("SMTP://127.0.0.1:1025/", MailUrl("smtp", host="127.0.0.1", port=1025)),
    ("smtps://mail.example.com", MailUrl("smtps", host="mail.example.com", port=465)),
    (
        "smtps://user:secret@mail.example.com:465",
        MailUrl("smtps", host="mail.example.com", port=465, username="user", password="secret"),
    ),
    (
        "smtp://us%40er:p%40ss%3Aword@mail.example.com:587?timeout=2.5",
        MailUrl("smtp", host="mail.example.com", port=587, username="us@er", password="p@ss:word", timeout=2.5),
    ),
    ("smtp://user@mail.example.com:25", MailUrl("smtp", host="mail.example.com", port=25, username="user")),
    ("smtp://[::1]:25", MailUrl("smtp", host="::1", port=25)),
    ("file://var/mail", MailUrl("file", folder=Path("var/mail"))),
    ("file:///var/spool/tickets", MailUrl("file", folder=Path("/var/spool/tickets"))),
    ("file://mail%20box", MailUrl("file", folder=Path("mail box"))),
    ("console://", MailUrl("console")),
]


@pytest.mark.parametrize(("url", "expected"), VALID)
def test_parse_valid_url(url, expected):
    parsed = parse_mail_url(url)

    assert parsed == expected
    assert parsed.password == expected.password


INVALID = [
    ("mailpit:1025", "invalid mail URL 'mailpit:1025': missing scheme"),
    ("http://mail.example.com", "unsupported mail URL scheme 'http': expected smtp://host:port"),
    ("smtp://", "invalid mail URL 'smtp://': smtp:// needs a host"),
    ("smtp://:25", "smtp:// needs a host"),
    ("smtp://mail.example.com:port", "invalid port"),
    ("smtp://mail.example.com:70000", "invalid port"),
    ("smtp://mail.example.com:0", "port must be 1-65535"),
    ("smtp://mail.example.com:25/inbox", "takes no path"),
    ("smtp://mail.example.com:25#top", "takes no fragment"),
    ("smtp://mail.example.com:25?tls=yes", "unknown option 'tls', the only option is timeout"),
    ("smtp://mail.example.com:25?timeout=0", "timeout must be a positive number of seconds, got '0'"),
    ("smtp://mail.example.com:25?timeout=soon", "timeout must be a positive number of seconds, got 'soon'"),
    ("smtp://mail.example.com:25?timeout=nan", "timeout must be a positive number"),
    ("file://", "file:// needs a folder"),
    ("console://stdout", "console:// takes no host or path"),
]


@pytest.mark.parametrize(("url", "message"), INVALID)
def test_parse_invalid_url(url, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace(".", r"\.")):
        parse_mail_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://alice:hunter2secret@mail.example.com:port",
        "smtp://alice:hunter2secret@:25",
        "smtps://alice:hunter2secret@mail.example.com:25/path",
        "smtp://alice:hunter2secret@mail.example.com:25?timeout=-1",
        "smtp://alice:hunter2/secret@mail.example.com:25",
    ],
)
def test_invalid_url_error_hides_password(url):
    with pytest.raises(ValueError) as caught:
        parse_mail_url(url)

    assert "hunter2" not in str(caught.value)
    assert "alice" not in str(caught.value)


def test_redact_mail_url():
    assert redact_mail_url("smtp://user:secret@mail.example.com:25") == "smtp://***@mail.example.com:25"
    assert redact_mail_url("smtp://mail.example.com:25") == "smtp://mail.example.com:25"


def test_password_not_in_repr():
    parsed = parse_mail_url("smtp://user:hunter2@mail.example.com:25")

    assert "hunter2" not in repr(parsed)


def test_sender_from_smtp_url():
    sender = sender_from_url("smtps://user:hunter2@mail.example.com:465", MAIL_FROM)

    assert isinstance(sender, SmtpSender)
    assert sender.mail_from == MAIL_FROM
    assert str(sender) == "smtps://user@mail.example.com:465"


def test_sender_from_file_url_resolves_relative_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    sender = sender_from_url("file://var/mail", MAIL_FROM)

    assert isinstance(sender, FileSender)
    assert sender.folder == tmp_path / "var" / "mail"
    assert not sender.folder.exists()


def test_sender_from_console_url():
    sender = sender_from_url("console://", MAIL_FROM)

    assert isinstance(sender, ConsoleSender)
    assert str(sender) == "console://"


@pytest.mark.parametrize("mail_from", ["", "Tickets", "Tickets <no-reply>", "@example.com"])
def test_sender_from_url_rejects_invalid_from(mail_from):
    with pytest.raises(ValueError, match="invalid From address"):
        sender_from_url("console://", mail_from)
