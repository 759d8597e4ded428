"""Email tasks deliver to a real SMTP server (aiosmtpd) through a real worker."""

from __future__ import annotations

import base64
import ssl
import time

import pytest
from servers import SMTPServer
from stalk_devenv.pki import CertificateAuthority
from workers import client_app, wait_for

pytestmark = pytest.mark.integration

SEND = "stalk_worker.tasks.email.send_email"


@pytest.fixture
def smtp():
    with SMTPServer() as server:
        yield server


@pytest.fixture
def mail_env(broker_env, smtp):
    return {
        **broker_env,
        "STALK_SMTP_HOST": "127.0.0.1",
        "STALK_SMTP_PORT": str(smtp.port),
        "STALK_MAIL_FROM": "noreply@example.test",
    }


def test_html_email_with_attachment_is_delivered(workers, mail_env, smtp):
    workers.start(mail_env, queues=["email"])
    attachment = {"filename": "invoice.txt", "content_b64": base64.b64encode(b"total: 42").decode()}
    with client_app(mail_env) as app:
        result = app.send_task(
            SEND,
            kwargs={
                "to": ["ada@example.test"],
                "cc": ["bob@example.test"],
                "bcc": ["audit@example.test"],
                "subject": "Your invoice",
                "text": "Plain body",
                "html": "<p>HTML <b>body</b></p>",
                "attachments": [attachment],
            },
        )
        outcome = result.get(timeout=30)
    assert outcome["sent"] is True
    [message] = smtp.recorder.messages
    [(sender, recipients)] = smtp.recorder.envelopes
    assert sender == "noreply@example.test"
    assert sorted(recipients) == ["ada@example.test", "audit@example.test", "bob@example.test"]
    assert "audit@example.test" not in str(message), "Bcc must not appear in the headers"
    assert message["Subject"] == "Your invoice"
    assert message["Message-ID"] == outcome["message_id"]
    body = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert body is not None and body.get_content().strip() == "Plain body"
    assert html is not None and "<b>body</b>" in html.get_content()
    [part] = list(message.iter_attachments())
    assert part.get_filename() == "invoice.txt"
    assert part.get_content() == "total: 42"


def test_same_idempotency_key_mails_once(workers, mail_env, smtp):
    workers.start(mail_env, queues=["email"])
    with client_app(mail_env) as app:
        kwargs = {
            "to": ["ada@example.test"],
            "subject": "Once",
            "text": "x",
            "idempotency_key": "order-7-confirmation",
        }
        first = app.send_task(SEND, kwargs=kwargs).get(timeout=30)
        second = app.send_task(SEND, kwargs=kwargs).get(timeout=30)
    assert (first["sent"], second["sent"]) == (True, False)
    assert len(smtp.recorder.messages) == 1


def test_bulk_email_is_sent_in_batches_without_duplicates(workers, mail_env, smtp):
    workers.start(mail_env, queues=["email"], concurrency=3)
    recipients = [f"user{i}@example.test" for i in range(7)] + ["user0@example.test"]
    with client_app(mail_env) as app:
        summary = app.send_task(
            "stalk_worker.tasks.email.send_bulk_email",
            kwargs={
                "recipients": recipients,
                "subject": "News",
                "text": "Hello",
                "batch_size": 3,
            },
        ).get(timeout=30)
        assert summary["batches"] == 3 and summary["recipients"] == 7
        batches = app.GroupResult.restore(summary["group_id"]).get(timeout=30)
    assert sum(b["sent"] for b in batches) == 7
    delivered = sorted(to for _, tos in smtp.recorder.envelopes for to in tos)
    assert delivered == sorted(set(recipients))


def test_permanent_smtp_rejection_fails_without_retry(workers, mail_env, smtp):
    smtp.recorder.refuse["ghost@example.test"] = "550 5.1.1 No such user"
    workers.start(mail_env, queues=["email"])
    with client_app(mail_env) as app:
        result = app.send_task(
            SEND, kwargs={"to": ["ghost@example.test"], "subject": "s", "text": "t"}
        )
        with pytest.raises(Exception, match="recipients refused"):
            result.get(timeout=30)
    time.sleep(3)  # longer than the first retry's backoff would be
    assert smtp.recorder.refused == ["ghost@example.test"], "a 5xx must not be retried"


def test_transient_smtp_deferral_is_retried_until_accepted(workers, mail_env, smtp):
    smtp.recorder.refuse["busy@example.test"] = "451 4.7.1 Try again later"
    workers.start(mail_env, queues=["email"])
    with client_app(mail_env) as app:
        result = app.send_task(
            SEND, kwargs={"to": ["busy@example.test"], "subject": "s", "text": "t"}
        )
        wait_for(lambda: len(smtp.recorder.refused) >= 1, 20, "the first, deferred attempt")
        del smtp.recorder.refuse["busy@example.test"]
        assert result.get(timeout=60)["sent"] is True
    assert len(smtp.recorder.messages) == 1


def test_starttls_and_auth(workers, broker_env, tmp_path):
    ca = CertificateAuthority(tmp_path / "pki")
    issued = ca.issue("smtp", common_name="127.0.0.1", ip_addresses=("127.0.0.1",), server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    with SMTPServer(tls_context=context, credentials=("mailer", "s3cret")) as server:
        env = {
            **broker_env,
            "STALK_SMTP_HOST": "127.0.0.1",
            "STALK_SMTP_PORT": str(server.port),
            "STALK_SMTP_SECURITY": "starttls",
            "STALK_SMTP_USERNAME": "mailer",
            "STALK_SMTP_PASSWORD": "s3cret",
            "SSL_CERT_FILE": str(ca.cert_path),
        }
        workers.start(env, queues=["email"])
        with client_app(env) as app:
            assert app.send_task(
                SEND, kwargs={"to": ["a@example.test"], "subject": "tls", "text": "secure"}
            ).get(timeout=30)["sent"]
        assert len(server.recorder.messages) == 1

        bad = {**env, "STALK_SMTP_PASSWORD": "wrong"}
        workers.start(bad, queues=["email_bad"], hostname="bad-auth")
        with client_app(bad) as app, pytest.raises(Exception, match="authentication failed"):
            app.send_task(
                SEND,
                queue="email_bad",
                kwargs={"to": ["a@example.test"], "subject": "tls", "text": "x"},
            ).get(timeout=30)
