"""The deliver function: a priority queue batch in, partial-batch answer and backoffs out."""

from __future__ import annotations

import pytest

import deliver.app
from herald.channels import DeliveryFailed
from herald.domain import Channel, DeliveryState, Priority
from herald.settings import DeliverSettings
from tests.events import load_event
from tests.fakes import FakeBackoff, FakeSender, FakeStatusStore

SETTINGS = DeliverSettings(
    devices_table="herald-devices",
    status_table="herald-status",
    inbox_table="herald-inbox",
    priority=Priority.HIGH,
    queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/herald-HighQueue-7G8H9I0J1K2L",
    sender_email="notifications@example.com",
    max_receive_count=5,
    retry_base_seconds=2,
    retry_cap_seconds=60,
)


def dependencies_with(sender: FakeSender) -> deliver.app.Dependencies:
    return deliver.app.Dependencies(
        settings=SETTINGS,
        senders={Channel.IN_APP: sender},
        status=FakeStatusStore(),
        backoff=FakeBackoff(),
    )


def test_sample_event_is_delivered_and_reports_no_failures(lambda_context):
    # Given the sample in_app job and a working sender
    event = load_event("deliver")
    dependencies = dependencies_with(FakeSender())

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then it is sent, recorded sent, and nothing is delayed
    assert response == {"batchItemFailures": []}
    assert [job.user_id for job in dependencies.senders[Channel.IN_APP].sent] == ["user-42"]
    assert [attempt.state for attempt in dependencies.status.attempts] == [DeliveryState.SENT]
    assert dependencies.backoff.delays == []


@pytest.mark.parametrize(("receive_count", "delay"), [("1", 2), ("3", 8), ("5", 0)])
def test_a_failing_sender_reports_the_record_and_backs_it_off(lambda_context, receive_count, delay):
    # Given the sample job on its n-th receive and a sender that fails for now
    event = load_event("deliver")
    record = event["Records"][0]
    record["attributes"]["ApproximateReceiveCount"] = receive_count
    dependencies = dependencies_with(FakeSender(error=DeliveryFailed("inbox throttled")))

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the record is reported failed and its message hidden for the retry delay (0 on the last receive)
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert dependencies.backoff.delays == [(record["receiptHandle"], delay)]


def test_a_permanent_failure_is_not_reported_so_the_message_is_deleted(lambda_context):
    # Given a sender refusing the job for good
    event = load_event("deliver")
    dependencies = dependencies_with(FakeSender(error=DeliveryFailed("device has no inbox", permanent=True)))

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the batch succeeds, nothing is delayed, and the delivery is recorded failed
    assert response == {"batchItemFailures": []}
    assert dependencies.backoff.delays == []
    assert [attempt.state for attempt in dependencies.status.attempts] == [DeliveryState.FAILED]


def test_only_the_failing_record_of_a_batch_is_reported(lambda_context):
    # Given a batch of an in_app job that will succeed and an email job whose sender fails
    event = load_event("deliver")
    email_record = {
        **event["Records"][0],
        "messageId": "0c1d2e3f-2222-4a5b-8c7d-9e0f1a2b3c4d",
        "receiptHandle": "AQEBemailReceiptHandle",
        "body": event["Records"][0]["body"].replace('"channel":"in_app"', '"channel":"email"'),
    }
    event["Records"].append(email_record)
    failing_email = FakeSender(error=DeliveryFailed("SES throttled"))
    dependencies = dependencies_with(FakeSender())
    dependencies.senders[Channel.EMAIL] = failing_email

    # When the function handles the batch
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then only the email message is reported and backed off
    assert response == {"batchItemFailures": [{"itemIdentifier": email_record["messageId"]}]}
    assert dependencies.backoff.delays == [("AQEBemailReceiptHandle", 2)]
    assert len(dependencies.senders[Channel.IN_APP].sent) == 1
