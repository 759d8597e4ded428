"""Email over SMTP: single messages with HTML and attachments, and bulk mail in batches.

Idempotency: a message's ``Message-ID`` is derived from its idempotency key (by default
the task id, which stays the same across retries), and a run-once marker is set after
the server accepts it, so a retry or redelivery does not mail the same person twice.
Retries: connection failures, timeouts and 4xx replies are transient; 5xx replies
(unknown mailbox, rejected content) are permanent and fail at once.
"""

from __future__ import annotations

import base64
import mimetypes
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from celery import group, shared_task
from stalk_config import reveal

from stalk_worker.runtime import settings
from stalk_worker.taskkit import RETRY_TRANSIENT, PermanentError, TransientError, once

DEFAULT_BATCH_SIZE = 50


def build_message(
    *,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    sender: str | None = None,
    cc: Sequence[str] = (),
    reply_to: str | None = None,
    attachments: Sequence[dict[str, str]] = (),
    message_id: str | None = None,
) -> EmailMessage:
    """A MIME message: text, an HTML alternative if given, then attachments.

    An attachment is ``{"filename", "content_b64"}`` (optionally ``content_type``), or
    ``{"path"}`` for a file the worker can read; JSON-only task arguments cannot carry bytes.
    """
    if not to:
        raise PermanentError("an email needs at least one recipient")
    message = EmailMessage()
    message["From"] = sender or settings().mail_from
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid(domain="stalk")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        filename, data = _attachment_bytes(attachment)
        content_type = attachment.get("content_type") or (
            mimetypes.guess_type(filename)[0] or "application/octet-stream"
        )
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def _attachment_bytes(attachment: dict[str, str]) -> tuple[str, bytes]:
    if "path" in attachment:
        path = Path(attachment["path"])
        try:
            return attachment.get("filename", path.name), path.read_bytes()
        except FileNotFoundError:
            raise PermanentError(f"attachment not found: {path}") from None
    try:
        return attachment["filename"], base64.b64decode(attachment["content_b64"], validate=True)
    except (KeyError, ValueError) as exc:
        raise PermanentError(f"bad attachment: {exc}") from None


@contextmanager
def smtp_connection() -> Iterator[smtplib.SMTP]:
    """An authenticated SMTP session per the worker's settings; errors classified."""
    config = settings()
    context = ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if config.smtp_security == "tls":
            client = smtplib.SMTP_SSL(
                config.smtp_host,
                config.smtp_port,
                timeout=config.smtp_timeout_seconds,
                context=context,
            )
        else:
            client = smtplib.SMTP(
                config.smtp_host, config.smtp_port, timeout=config.smtp_timeout_seconds
            )
        with client:
            if config.smtp_security == "starttls":
                client.starttls(context=context)
            if config.smtp_username:
                client.login(config.smtp_username, reveal(config.smtp_password) or "")
            yield client
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentError(f"SMTP authentication failed: {exc.smtp_code}") from None
    except smtplib.SMTPResponseException as exc:
        raise _classify_reply(exc.smtp_code, exc.smtp_error) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if all(400 <= code < 500 for code in codes):
            raise TransientError(f"recipients deferred: {codes}") from None
        raise PermanentError(f"recipients refused: {sorted(exc.recipients)}") from None
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
        raise TransientError(f"SMTP connection failed: {exc}") from None


def _classify_reply(code: int, error: bytes | str) -> Exception:
    text = error.decode(errors="replace") if isinstance(error, bytes) else error
    if 400 <= code < 500:
        return TransientError(f"SMTP {code}: {text}")
    return PermanentError(f"SMTP {code}: {text}")


def _message_id(key: str) -> str:
    return f"<{key}@stalk>"


@shared_task(
    name="stalk_worker.tasks.email.send_email",
    rate_limit="120/m",
    soft_time_limit=60,
    time_limit=90,
    **RETRY_TRANSIENT,
)
def send_email(
    self: Any,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    sender: str | None = None,
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
    reply_to: str | None = None,
    attachments: list[dict[str, str]] | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Send one email; returns its Message-ID and whether it was sent by this run."""
    key = idempotency_key or self.request.id
    message = build_message(
        to=to,
        subject=subject,
        text=text,
        html=html,
        sender=sender,
        cc=cc or (),
        reply_to=reply_to,
        attachments=attachments or (),
        message_id=_message_id(key),
    )
    with once(f"email:{key}") as first_time:
        if first_time:
            with smtp_connection() as smtp:
                smtp.send_message(message, to_addrs=[*to, *(cc or []), *(bcc or [])])
    return {"message_id": message["Message-ID"], "sent": first_time}


@shared_task(
    name="stalk_worker.tasks.email.send_email_batch",
    rate_limit="30/m",
    soft_time_limit=300,
    time_limit=330,
    **RETRY_TRANSIENT,
)
def send_email_batch(
    self: Any,
    recipients: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    campaign: str | None = None,
) -> dict[str, int]:
    """One message per recipient over a single SMTP session.

    Each recipient has its own run-once marker, so a batch retried after a failure part
    way through resumes where it stopped instead of mailing the first ones again.
    """
    key = campaign or self.request.id
    sent = skipped = 0
    with smtp_connection() as smtp:
        for recipient in recipients:
            with once(f"email:{key}:{recipient}") as first_time:
                if first_time:
                    smtp.send_message(
                        build_message(
                            to=[recipient],
                            subject=subject,
                            text=text,
                            html=html,
                            message_id=_message_id(f"{key}.{recipient}"),
                        )
                    )
                    sent += 1
                else:
                    skipped += 1
    return {"sent": sent, "skipped": skipped}


@shared_task(
    name="stalk_worker.tasks.email.send_bulk_email", bind=True, soft_time_limit=30, time_limit=60
)
def send_bulk_email(
    self: Any,
    recipients: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    campaign: str | None = None,
) -> dict[str, Any]:
    """Split ``recipients`` into batches sent in parallel; returns the group id."""
    if batch_size < 1:
        raise PermanentError("batch_size must be at least 1")
    key = campaign or self.request.id
    unique = list(dict.fromkeys(recipients))
    batches = [unique[i : i + batch_size] for i in range(0, len(unique), batch_size)]
    result = group(
        send_email_batch.s(batch, subject, text, html, campaign=key) for batch in batches
    ).apply_async()
    result.save()
    return {"group_id": result.id, "batches": len(batches), "recipients": len(unique)}
