"""Send through an SMTP server with the standard library's smtplib, on a worker thread."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import trio

from .base import SendError


class SmtpSender:
    """An SMTP client that opens one connection per message: connect, optional login, send, QUIT.

    smtplib blocks, so each send runs in ``trio.to_thread.run_sync``. The
    thread is not abandoned on cancellation, because an abandoned thread
    could still deliver a message that the notifier then retries. Instead
    ``timeout`` bounds every socket operation (connect, each command and
    reply), so a send returns or fails within a few multiples of it.
    Plain ``smtp://`` never upgrades with STARTTLS.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        mail_from: str,
        implicit_tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.mail_from = mail_from
        self._host = host
        self._port = port
        self._implicit_tls = implicit_tls
        self._username = username
        self._password = password
        self._timeout = timeout
        self._ssl_context = ssl_context

    def __str__(self) -> str:
        scheme = "smtps" if self._implicit_tls else "smtp"
        user = f"{self._username}@" if self._username else ""
        return f"{scheme}://{user}{self._host}:{self._port}"

    async def send(self, message: EmailMessage) -> None:
        await trio.to_thread.run_sync(self._send_blocking, message)

    def _connect(self) -> smtplib.SMTP:
        if self._implicit_tls:
            context = self._ssl_context or ssl.create_default_context()
            return smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=context)
        return smtplib.SMTP(self._host, self._port, timeout=self._timeout)

    def _send_blocking(self, message: EmailMessage) -> None:
        try:
            with self._connect() as client:
                if self._username is not None:
                    client.login(self._username, self._password or "")
                refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            raise _refused_error(error.recipients) from None
        except smtplib.SMTPResponseException as error:
            # Sender refused, data rejected, authentication failed, greeting refused.
            reply = _decode(error.smtp_error)
            raise SendError(
                f"SMTP server {self} replied {error.smtp_code} {reply}",
                permanent=500 <= error.smtp_code < 600,
                code=error.smtp_code,
            ) from None
        except smtplib.SMTPException as error:
            # A dropped connection or a missing extension (such as AUTH) has no reply code.
            raise SendError(f"SMTP with {self} failed: {type(error).__name__}: {error}") from None
        except OSError as error:
            # Connection refused, DNS failure, timeout, TLS handshake failure.
            raise SendError(f"cannot reach SMTP server {self}: {type(error).__name__}: {error}") from None
        if refused:
            # send_message returns the refused recipients only when others were accepted.
            raise _refused_error(refused)


def _refused_error(recipients: dict[str, tuple[int, bytes]]) -> SendError:
    address, (code, reply) = next(iter(recipients.items()))
    return SendError(
        f"SMTP server rejected recipient {address}: {code} {_decode(reply)}",
        permanent=500 <= code < 600,
        code=code,
    )


def _decode(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply
