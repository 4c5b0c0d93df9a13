"""Senders against real files, streams and SMTP servers on loopback."""

from __future__ import annotations

import io
import shutil
import socket
import ssl
import subprocess
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import trio
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.seats import NotificationKind
from notify import Notice, Notifier, SendError, render_message, sender_from_url
from notify.senders import ConsoleSender, FileSender, SmtpSender

from .smtp_server import running_smtp_server
from .test_notify_notifier import (
    IVAN,
    MAIL_FROM,
    PASSENGER_SEATS,
    all_rows_in,
    commit_notifications,
    create_flight,
    running,
    wait_until,
)


def make_notice(outbox_id: int = 1, email: str = "ivan.petrov@example.com") -> Notice:
    return Notice(
        outbox_id=outbox_id,
        kind=NotificationKind.FLIGHT_CANCELED,
        flight_id=5,
        company="SU",
        departure="Москва",
        arrival="Стамбул",
        departure_time=datetime(2030, 5, 17, 6, 45, tzinfo=UTC),
        passenger_id=9,
        email=email,
        firstname="Иван",
        lastname="Петров",
        seats=(3, 4),
        ticket_ids=(103, 104),
        attempts=1,
    )


def make_message(outbox_id: int = 1, email: str = "ivan.petrov@example.com"):
    return render_message(make_notice(outbox_id, email), mail_from=MAIL_FROM)


def closed_loopback_port() -> int:
    """A loopback port with no listener, so connections to it are refused."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


def parse_eml(path: Path):
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())


async def test_file_sender_writes_one_eml_per_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sender = sender_from_url("file://var/mail", MAIL_FROM)
    assert isinstance(sender, FileSender)
    assert sender.folder == tmp_path / "var" / "mail"

    first = make_message(1)
    second = make_message(2)
    await sender.send(first)
    await sender.send(second)

    files = sorted((tmp_path / "var" / "mail").iterdir())
    assert len(files) == 2
    assert all(path.suffix == ".eml" for path in files)
    parsed = [parse_eml(path) for path in files]
    assert sorted(message["Message-ID"] for message in parsed) == sorted([first["Message-ID"], second["Message-ID"]])
    for message in parsed:
        assert message["Subject"] == "Рейс SU Москва → Стамбул 2030-05-17 06:45 UTC отменён"
        assert "Здравствуйте, Иван Петров!" in message.get_body(preferencelist=("plain",)).get_content()
    assert b"\r\n" in files[0].read_bytes()


async def test_file_sender_unwritable_folder_raises(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    sender = sender_from_url(f"file://{blocker}/mail", MAIL_FROM)

    with pytest.raises(SendError, match="cannot write email file"):
        await sender.send(make_message())


async def test_notifier_with_file_sender(database, tmp_path):
    flight_id = await create_flight(database)
    folder = tmp_path / "mail"
    notifier = Notifier(database, sender_from_url(f"file://{folder}", MAIL_FROM), poll_interval=0.05)

    async with running(notifier):
        await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)
        await wait_until(all_rows_in(database, "sent"))

    files = sorted(folder.iterdir())
    assert [path.suffix for path in files] == [".eml"] * 3
    addresses = sorted(parse_eml(path)["To"].addresses[0].addr_spec for path in files)
    assert addresses == sorted(passenger.email for passenger, _seats in PASSENGER_SEATS)


async def test_console_sender_prints_message():
    stream = io.StringIO()
    sender = ConsoleSender(mail_from=MAIL_FROM, stream=stream)

    await sender.send(make_message())

    text = stream.getvalue()
    assert "Subject: Рейс SU Москва → Стамбул 2030-05-17 06:45 UTC отменён" in text
    assert "To: Иван Петров <ivan.petrov@example.com>" in text
    assert "Места: 3, 4" in text


async def test_console_url_prints_to_stdout(capsys):
    sender = sender_from_url("console://", MAIL_FROM)

    await sender.send(make_message())

    assert "Здравствуйте, Иван Петров!" in capsys.readouterr().out


async def test_smtp_sender_delivers():
    with running_smtp_server() as server:
        sender = sender_from_url(f"{server.url}?timeout=5", MAIL_FROM)
        await sender.send(make_message())

        [received] = server.handler.messages
    assert received.recipients == [IVAN.email]
    assert received.message["Subject"] == "Рейс SU Москва → Стамбул 2030-05-17 06:45 UTC отменён"


async def test_smtp_rejection_is_permanent():
    with running_smtp_server() as server:
        server.handler.reject(IVAN.email, "550 mailbox unavailable")
        sender = sender_from_url(server.url, MAIL_FROM)

        with pytest.raises(SendError) as caught:
            await sender.send(make_message())

    assert caught.value.permanent
    assert caught.value.code == 550
    assert str(caught.value) == f"SMTP server rejected recipient {IVAN.email}: 550 mailbox unavailable"


async def test_smtp_temporary_rejection():
    with running_smtp_server() as server:
        server.handler.reject(IVAN.email, "451 try again later")
        sender = sender_from_url(server.url, MAIL_FROM)

        with pytest.raises(SendError) as caught:
            await sender.send(make_message())

    assert not caught.value.permanent
    assert caught.value.code == 451


async def test_smtp_connection_refused():
    sender = sender_from_url(f"smtp://127.0.0.1:{closed_loopback_port()}?timeout=5", MAIL_FROM)

    with pytest.raises(SendError, match="cannot reach SMTP server smtp://127.0.0.1") as caught:
        await sender.send(make_message())

    assert not caught.value.permanent
    assert caught.value.code is None


def password_authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    accepted = isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer" and auth_data.password == b"p@ss:w/rd"
    # handled=False makes aiosmtpd send its 535 reply on failure.
    return AuthResult(success=accepted, handled=False)


async def test_smtp_login():
    with running_smtp_server(authenticator=password_authenticator, auth_require_tls=False) as server:
        sender = sender_from_url(f"smtp://mailer:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}", MAIL_FROM)
        assert str(sender) == f"smtp://mailer@127.0.0.1:{server.port}"
        await sender.send(make_message())

        assert len(server.handler.messages) == 1


async def test_smtp_wrong_password_hidden():
    with running_smtp_server(authenticator=password_authenticator, auth_require_tls=False) as server:
        sender = sender_from_url(f"smtp://mailer:wrong-secret@127.0.0.1:{server.port}?timeout=5", MAIL_FROM)

        with pytest.raises(SendError) as caught:
            await sender.send(make_message())

        assert server.handler.messages == []
    assert caught.value.code == 535
    assert caught.value.permanent
    assert "wrong-secret" not in str(caught.value)


@pytest.fixture
def self_signed_certificate(tmp_path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to create a test certificate")
    certificate = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return certificate, key


async def test_smtps_delivers_over_tls(self_signed_certificate):
    certificate, key = self_signed_certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate, key)
    client_context = ssl.create_default_context(cafile=str(certificate))

    with running_smtp_server(ssl_context=server_context) as server:
        sender = SmtpSender(
            "127.0.0.1", server.port, mail_from=MAIL_FROM, implicit_tls=True, timeout=5, ssl_context=client_context
        )
        await sender.send(make_message())

        assert len(server.handler.messages) == 1


async def test_smtps_rejects_untrusted_certificate(self_signed_certificate):
    certificate, key = self_signed_certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate, key)

    with running_smtp_server(ssl_context=server_context) as server:
        sender = sender_from_url(f"smtps://127.0.0.1:{server.port}?timeout=5", MAIL_FROM)

        with pytest.raises(SendError, match="CERTIFICATE_VERIFY_FAILED"):
            await sender.send(make_message())

        assert server.handler.messages == []
