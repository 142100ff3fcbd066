"""Dead addresses (issue 10, finding 10): SES's hard bounces and complaints, and SMS opt-outs, take their
devices out of fan-out, visibly."""

from __future__ import annotations

import json
from typing import Any

import pytest

import feedback.app
from herald.adapters.channels import OPTED_OUT, EmailSender, SmsSender
from herald.adapters.dead_letters import DeadLetterQueue
from herald.logic.delivery import Outcome, RetryPolicy, deliver
from herald.logic.fanout import FanoutResult, PageLimits, plan_page
from herald.logic.feedback import apply_email_feedback, dead_addresses
from herald.models.domain import Channel, DeliveryJob, DeviceKey, Notification, Priority, now
from herald.models.failures import DeliveryFailed
from herald.models.feedback import SES_TOPIC_CHECK, EmailFeedback, TopicCheck, parse_feedback
from herald.settings import FeedbackSettings
from tests.fakes import FakeContext, FakeDeviceRegistry, FakeSqs, FakeStatusStore, FakeSubscribers, make_device

ADDRESS = "ada@example.com"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-FeedbackDeadLetterQueue-1A2B"


def bounce(address: str = ADDRESS, bounce_type: str = "Permanent") -> dict[str, Any]:
    """An SES event-publishing bounce, as the docs show it (fields Herald does not read trimmed)."""
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
        },
        "mail": {"messageId": "0100-ses-1", "destination": [address]},
    }


def complaint(address: str = ADDRESS) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": address}], "complaintFeedbackType": "abuse"},
        "mail": {"messageId": "0100-ses-2", "destination": [address]},
    }


def registry_with_email(*owners: str, address: str = ADDRESS) -> FakeDeviceRegistry:
    return FakeDeviceRegistry([make_device(owner, "mail", Channel.EMAIL, address=address) for owner in owners])


def notification_to(*users: str) -> Notification:
    return Notification(notification_id="n-1", recipients=list(users), title="t", body="b", accepted_at=now())


def plan_deliveries(notification: Notification, registry: FakeDeviceRegistry) -> FanoutResult:
    """What fan-out would publish for the notification (its first page), and what that page would record."""
    jobs, outcome = plan_page(notification, registry, FakeSubscribers(), PageLimits())
    return FanoutResult(jobs=jobs, outcome=outcome)


# ---------------------------------------------------------------- reading SES's events


def test_an_event_publishing_bounce_a_notification_and_an_sns_envelope_all_read_alike():
    as_event = parse_feedback(json.dumps(bounce()))
    notification = {key: value for key, value in bounce().items() if key != "eventType"}
    as_notification = parse_feedback(json.dumps({**notification, "notificationType": "Bounce"}))
    in_envelope = parse_feedback(json.dumps({"Type": "Notification", "Message": json.dumps(bounce())}))
    for parsed in (as_event, as_notification, in_envelope):
        assert isinstance(parsed, EmailFeedback)
        reason = "SES reported a hard bounce (General): smtp; 550 5.1.1 user unknown"
        assert dead_addresses(parsed) == [(ADDRESS, reason)]


def test_ses_checking_it_can_publish_to_the_topic_is_not_an_event():
    assert isinstance(parse_feedback(SES_TOPIC_CHECK), TopicCheck)


@pytest.mark.parametrize("body", ["not json", json.dumps({"eventType": "Bounce"}), json.dumps([1, 2])])
def test_anything_else_is_refused_for_the_dead_letter_queue(body):
    with pytest.raises(ValueError):
        parse_feedback(body)


# ---------------------------------------------------------------- what each event does


def test_a_hard_bounce_marks_every_email_device_with_that_address_inactive_saying_why():
    # Given two users who registered the same address, and one with another address
    registry = registry_with_email("ada", "grace")
    registry.put(make_device("alan", "mail", Channel.EMAIL, address="alan@example.com"))

    # When SES reports a hard bounce for it (in another case: SES reports the address as it sent it)
    result = apply_email_feedback(EmailFeedback.model_validate(bounce("Ada@Example.com")), registry)

    # Then both devices are inactive with SES's reason, and the other address is untouched
    assert sorted(result.inactive) == [("ada", "mail"), ("grace", "mail")]
    for owner in ("ada", "grace"):
        device = registry.get(owner, "mail")
        assert device is not None and not device.active
        assert device.inactive_reason == "SES reported a hard bounce (General): smtp; 550 5.1.1 user unknown"
    alan = registry.get("alan", "mail")
    assert alan is not None and alan.active
    # and later fan-outs skip them, naming them
    planned = plan_deliveries(notification_to("ada"), registry)
    assert planned.jobs == [] and planned.inactive_skipped == ["ada/mail"]


def test_a_complaint_marks_the_device_inactive():
    registry = registry_with_email("ada")
    apply_email_feedback(EmailFeedback.model_validate(complaint()), registry)
    device = registry.get("ada", "mail")
    assert device is not None and not device.active and device.inactive_reason == "SES reported a complaint (abuse)"


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_a_soft_bounce_changes_nothing(bounce_type):
    registry = registry_with_email("ada")
    result = apply_email_feedback(EmailFeedback.model_validate(bounce(bounce_type=bounce_type)), registry)
    device = registry.get("ada", "mail")
    assert result.inactive == [] and device is not None and device.active


class LaggingIndex(FakeDeviceRegistry):
    """An index that still lists a device under the address it had before (DynamoDB's lag a moment)."""

    def devices_with_contact(self, channel: Channel, address: str) -> list[DeviceKey]:
        return [DeviceKey("ada", "mail")]


def test_a_device_that_registered_another_address_since_is_left_alone():
    # Given ada's device, moved to a new address, which the index still lists under the old one
    registry = LaggingIndex([make_device("ada", "mail", Channel.EMAIL, address="new@example.com")])

    # When the old address bounces, Then the device, now with another address, stays active
    result = apply_email_feedback(EmailFeedback.model_validate(bounce()), registry)
    device = registry.get("ada", "mail")
    assert result.inactive == [] and device is not None and device.active


# ---------------------------------------------------------------- the feedback function


def test_the_feedback_function_marks_devices_skips_the_topic_check_and_dead_letters_garbage():
    # Given a batch: a hard bounce, SES's topic check, and something that is not SES feedback
    registry, sqs = registry_with_email("ada"), FakeSqs()
    settings = FeedbackSettings(
        devices_table="herald-devices",
        status_table="herald-status",
        inbox_table="herald-inbox",
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/herald-FeedbackQueue-1A2B",
        dlq_url=DLQ_URL,
    )
    dependencies = feedback.app.Dependencies(settings, registry, sqs, DeadLetterQueue(sqs, DLQ_URL, "feedback"))
    bodies = [json.dumps(bounce()), SES_TOPIC_CHECK, '{"hello": "world"}']
    records = [
        {"messageId": f"m-{n}", "receiptHandle": f"r-{n}", "body": body, "attributes": {"ApproximateReceiveCount": "1"}}
        for n, body in enumerate(bodies)
    ]
    event = {"Records": records}

    # When the function handles it
    response = feedback.app.lambda_handler(event, FakeContext(), dependencies)

    # Then nothing comes back, the device is inactive, and only the garbage waits in the DLQ saying why
    assert response == {"batchItemFailures": []}
    device = registry.get("ada", "mail")
    assert device is not None and not device.active
    [reason] = sqs.reasons()
    assert reason.startswith("invalid message: eventType: Field required")


# ---------------------------------------------------------------- SMS opt-outs and the configuration set


class FakeSns:
    def __init__(self, opted_out: set[str]):
        self.opted_out = opted_out
        self.published: list[dict[str, Any]] = []

    def check_if_phone_number_is_opted_out(self, phoneNumber: str) -> dict[str, Any]:
        return {"isOptedOut": phoneNumber in self.opted_out}

    def publish(self, **request: Any) -> dict[str, Any]:
        self.published.append(request)
        return {"MessageId": f"sms-{len(self.published)}"}


def sms_job(number: str) -> DeliveryJob:
    return DeliveryJob(
        notification_id="n-1",
        user_id="ada",
        device_id="phone",
        channel=Channel.SMS,
        address=number,
        title="Code",
        body="1234",
        priority=Priority.HIGH,
        accepted_at=now(),
    )


def test_an_sms_to_an_opted_out_number_is_not_sent_and_its_device_goes_inactive():
    # Given ada's phone number, which replied STOP to an earlier SMS
    number = "+14155550199"
    sns, registry, status = FakeSns(opted_out={number}), FakeDeviceRegistry(), FakeStatusStore()
    registry.put(make_device("ada", "phone", Channel.SMS, address=number))
    policy = RetryPolicy(max_attempts=5, base=2, cap=60)

    # When an SMS delivery to it runs
    result = deliver(sms_job(number), 1, now(), {Channel.SMS: SmsSender(sns)}, status, registry, policy)

    # Then nothing is published, the delivery failed for good saying why, and the device is inactive
    assert sns.published == []
    assert (result.outcome, result.reason) == (Outcome.FAILED, OPTED_OUT)
    device = registry.get("ada", "phone")
    assert device is not None and not device.active and device.inactive_reason == OPTED_OUT
    assert plan_deliveries(notification_to("ada"), registry).inactive_skipped == ["ada/phone"]


def test_an_sms_to_a_number_still_opted_in_is_published():
    sns = FakeSns(opted_out=set())
    assert SmsSender(sns).send(sms_job("+14155550100")) == "sms-1"
    assert sns.published[0]["PhoneNumber"] == "+14155550100"


def test_an_opted_out_number_is_a_device_gone_failure():
    with pytest.raises(DeliveryFailed) as raised:
        SmsSender(FakeSns(opted_out={"+14155550199"})).send(sms_job("+14155550199"))
    assert raised.value.device_gone and raised.value.permanent


def test_every_email_names_the_configuration_set_whose_events_reach_the_feedback_function():
    class FakeSes:
        def __init__(self) -> None:
            self.requests: list[dict[str, Any]] = []

        def send_email(self, **request: Any) -> dict[str, Any]:
            self.requests.append(request)
            return {"MessageId": "ses-1"}

    ses = FakeSes()
    job = sms_job("+1").model_copy(update={"channel": Channel.EMAIL, "address": ADDRESS})
    EmailSender(ses, "notifications@example.com", "herald-email").send(job)
    assert ses.requests[0]["ConfigurationSetName"] == "herald-email"
