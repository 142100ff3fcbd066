"""Delivering a templated job: its rendering read before the claim, its channel's part sent."""

from __future__ import annotations

from datetime import timedelta

from herald.adapters.channels import EmailSender
from herald.logic.delivery import Outcome, RetryPolicy, deliver
from herald.logic.templates import render
from herald.models.domain import Channel, DeliveryJob, DeliveryState, Priority, now
from herald.models.templates import TemplateDocument
from tests.fakes import FakeDeviceRegistry, FakeRenderedContent, FakeSender, FakeStatusStore

POLICY = RetryPolicy(max_attempts=5, base=1, cap=1)
TEMPLATE = TemplateDocument.model_validate(
    {
        "default_locale": "en",
        "locales": {
            "en": {"email": {"subject": "Hi {{ n }}", "html": "<p>{{ n }}</p>", "text": "Hi {{ n }}"}},
            "de": {"email": {"subject": "Hallo {{ n }}", "html": "<p>{{ n }}!</p>", "text": "Hallo {{ n }}"}},
        },
    }
)


def email_job(notification_id: str, device_id: str, locale: str) -> DeliveryJob:
    return DeliveryJob(
        notification_id=notification_id,
        user_id="ada",
        device_id=device_id,
        channel=Channel.EMAIL,
        address="ada@example.com",
        title="",
        body="",
        priority=Priority.NORMAL,
        accepted_at=now(),
        content_locale=locale,
    )


def test_the_sender_gets_the_rendered_part_of_the_jobs_locale():
    # Given a notification's rendering, and a German email job of it
    content, status, sender = FakeRenderedContent(), FakeStatusStore(), FakeSender()
    content.put("n-1", render("t", TEMPLATE, {"n": "Ada"}))

    # When it is delivered
    result = deliver(
        email_job("n-1", "mail", "de"), 1, now() + timedelta(seconds=30), {Channel.EMAIL: sender},
        status, FakeDeviceRegistry(), POLICY, content=content,
    )  # fmt: skip

    # Then the provider got the German subject, text and HTML parts
    assert result.outcome is Outcome.SENT
    [sent] = sender.sent
    assert (sent.title, sent.body, sent.html) == ("Hallo Ada", "Hallo Ada", "<p>Ada!</p>")


def test_a_rendering_that_is_gone_fails_the_delivery_for_good_without_calling_the_provider():
    # Given a templated job whose rendering is not in the store (expired, say)
    status, sender = FakeStatusStore(), FakeSender()

    # When it is delivered
    result = deliver(
        email_job("n-2", "mail", "en"), 1, now() + timedelta(seconds=30), {Channel.EMAIL: sender},
        status, FakeDeviceRegistry(), POLICY, content=FakeRenderedContent(),
    )  # fmt: skip

    # Then it is recorded failed with the reason, and nothing was sent
    assert result.outcome is Outcome.FAILED
    assert sender.tried == []
    record = status.delivery("n-2", "ada#mail")
    assert record.status is DeliveryState.FAILED
    assert "rendered content of notification n-2 is missing" in (record.last_error or "")


class RecordingSes:
    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []

    def send_email(self, **request: object) -> dict[str, str]:
        self.requests.append(request)
        return {"MessageId": "ses-1"}


def test_an_email_with_html_goes_as_html_with_its_text_part_and_one_without_as_text():
    # Given SES, and two email jobs: a templated one with its HTML, a plain one
    ses = RecordingSes()
    sender = EmailSender(ses, "notifications@example.com")
    templated = email_job("n-3", "mail", "en").model_copy(
        update={"title": "Hi", "body": "Hi Ada", "html": "<p>Ada</p>"}
    )
    plain = email_job("n-4", "mail", "en").model_copy(update={"title": "Hi", "body": "Hi Ada", "content_locale": None})

    # When both are sent
    sender.send(templated)
    sender.send(plain)

    # Then the first carries Html and Text (multipart/alternative), the second Text only
    bodies = [request["Message"]["Body"] for request in ses.requests]  # type: ignore[index]
    assert bodies == [
        {"Text": {"Data": "Hi Ada", "Charset": "UTF-8"}, "Html": {"Data": "<p>Ada</p>", "Charset": "UTF-8"}},
        {"Text": {"Data": "Hi Ada", "Charset": "UTF-8"}},
    ]
