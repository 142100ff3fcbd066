"""The deliver function: a priority queue batch in; partial-batch answer, backoffs and dead letters out."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

import deliver.app
from herald.adapters.dead_letters import DeadLetterQueue
from herald.logic.delivery import RetryPolicy
from herald.models.domain import Channel, DeliveryJob, DeliveryState, Priority
from herald.models.failures import DeliveryFailed
from herald.settings import DeliverSettings
from tests.events import load_event
from tests.fakes import FakeDeviceRegistry, FakeInboxSender, FakeSender, FakeSqs, FakeStatusStore

DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-HighDeadLetterQueue-1A2B3C"
SETTINGS = DeliverSettings(
    devices_table="herald-devices",
    status_table="herald-status",
    inbox_table="herald-inbox",
    priority=Priority.HIGH,
    queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/herald-HighQueue-7G8H9I0J1K2L",
    dlq_url=DLQ_URL,
    sender_email="notifications@example.com",
    max_receive_count=5,
    retry_base_seconds=2,
    retry_cap_seconds=60,
)


def dependencies_with(sender: FakeSender, **more: FakeSender) -> deliver.app.Dependencies:
    """`sender` for in_app (a FakeInboxSender's items are read back as the status reads the inbox), `more` by
    channel name."""
    sqs = FakeSqs()
    return deliver.app.Dependencies(
        settings=SETTINGS,
        senders={Channel.IN_APP: sender, **{Channel(name): s for name, s in more.items()}},
        status=FakeStatusStore(inbox=sender if isinstance(sender, FakeInboxSender) else None),
        devices=FakeDeviceRegistry(),
        sqs=sqs,
        dead_letters=DeadLetterQueue(sqs, DLQ_URL, source="high"),
        policy=RetryPolicy(max_attempts=5, base=2, cap=60, draw=lambda: 0.999999),
    )


def record_for(event: dict[str, Any], index: int, **job_changes: Any) -> dict[str, Any]:
    """A copy of the sample record with its own message id, for another device of the same notification."""
    record = copy.deepcopy(event["Records"][0])
    job = json.loads(record["body"])
    job.update(job_changes)
    record["body"] = json.dumps(job)
    record["messageId"] = f"message-{index}"
    record["receiptHandle"] = f"receipt-{index}"
    return record


PUSH = {"channel": "push", "device_id": "pixel", "endpoint_arn": "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/h/7"}


def push_event() -> dict[str, Any]:
    """The sample event's job through mobile push: claimed and recorded on every try, as every channel but
    in_app (whose first try is recorded by its inbox item)."""
    event = load_event("deliver")
    event["Records"] = [record_for(event, 1, **PUSH)]
    return event


def test_sample_event_is_delivered_and_reports_no_failures(lambda_context):
    # Given the sample in_app job and a working inbox
    event = load_event("deliver")
    dependencies = dependencies_with(FakeInboxSender())

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then it is sent (its inbox item is its record: no status write), and nothing is delayed or dead-lettered
    assert response == {"batchItemFailures": []}
    assert [job.user_id for job in dependencies.senders[Channel.IN_APP].sent] == ["user-42"]
    assert dependencies.status.delivery_writes == []
    job = DeliveryJob.model_validate_json(event["Records"][0]["body"])
    assert dependencies.status.delivery(job.notification_id, job.delivery_id).status is DeliveryState.SENT
    assert dependencies.sqs.visibility == [] and dependencies.sqs.sent == []


def test_a_sample_push_job_is_claimed_sent_and_recorded(lambda_context):
    # Given the sample job through push, and a working provider
    event = push_event()
    push = FakeSender()
    dependencies = dependencies_with(FakeInboxSender(), push=push)

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then it is sent once, and recorded sent in the status (a claim, then its outcome)
    assert response == {"batchItemFailures": []}
    assert len(push.sent) == 1
    assert [attempt.state for attempt in dependencies.status.attempts] == [DeliveryState.SENT]
    assert [kind for kind, _, _ in dependencies.status.delivery_writes] == ["claim", "record"]


def test_a_failing_sender_reports_the_record_and_backs_it_off_longer_each_time(lambda_context):
    # Given the sample job and a sender that keeps failing for now
    dependencies = dependencies_with(FakeSender(error=DeliveryFailed("inbox throttled")))

    # When the function handles its first, second and third receive
    for receive_count in ("1", "2", "3"):
        event = load_event("deliver")
        record = event["Records"][0]
        record["attributes"]["ApproximateReceiveCount"] = receive_count
        response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)
        # Then each time the record is reported failed
        assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}

    # and hidden for its (longest-drawn) backoff: 2, 4, then 8 seconds
    assert dependencies.sqs.visibility == [(record["receiptHandle"], delay) for delay in (2, 4, 8)]


def test_the_last_failed_attempt_goes_to_the_dlq_with_its_reason_and_is_not_reported(lambda_context):
    # Given the sample job on its fifth and last receive, and a sender still failing
    event = load_event("deliver")
    record = event["Records"][0]
    record["attributes"]["ApproximateReceiveCount"] = "5"
    dependencies = dependencies_with(FakeSender(error=DeliveryFailed("inbox throttled")))

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the job sits in the DLQ with the reason and its original attributes, and the source message is done
    assert response == {"batchItemFailures": []}
    [parked] = dependencies.sqs.sent
    assert parked["QueueUrl"] == DLQ_URL
    assert parked["MessageBody"] == record["body"]
    assert dependencies.sqs.reasons() == ["last attempt failed: inbox throttled"]
    assert parked["MessageAttributes"]["priority"] == {"DataType": "String", "StringValue": "high"}
    assert parked["MessageAttributes"]["herald-source-queue"]["StringValue"] == "high"
    assert [attempt.state for attempt in dependencies.status.attempts] == [DeliveryState.DEAD_LETTERED]


def test_if_the_dlq_cannot_take_the_last_attempt_the_record_is_reported_so_nothing_is_lost(lambda_context):
    # Given the last receive of a failing job and a DLQ that is unavailable
    event = load_event("deliver")
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"
    dependencies = dependencies_with(FakeSender(error=DeliveryFailed("inbox throttled")))
    dependencies.sqs.failing_sends = True

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the record goes back to the queue, whose redrive policy is the backstop
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "invalid message: body: Invalid JSON"),
        ('{"hello": "world"}', "invalid message: notification_id: Field required"),
        (None, "invalid message: channel: Input should be 'email', 'sms', 'push' or 'in_app'"),
    ],
)
def test_a_poison_record_goes_straight_to_the_dlq_with_its_reason_while_its_batch_mates_succeed(
    lambda_context, body, reason
):
    # Given a batch of a good job and a record no deliver function can parse
    event = load_event("deliver")
    poison = record_for(event, 2, device_id="tablet", channel="carrier-pigeon")
    if body is not None:
        poison["body"] = body
    event["Records"].append(poison)
    dependencies = dependencies_with(FakeSender())

    # When the function handles the batch
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the good job is sent, the poison record is parked with its reason, and no record fails the batch
    assert response == {"batchItemFailures": []}
    assert len(dependencies.senders[Channel.IN_APP].sent) == 1
    [parked] = dependencies.sqs.sent
    assert parked["MessageBody"] == poison["body"]
    assert dependencies.sqs.reasons()[0].startswith(reason)


def test_only_the_failing_record_of_a_batch_is_reported(lambda_context):
    # Given a batch of an in_app job that will succeed and an email job whose sender fails
    event = load_event("deliver")
    email_record = record_for(event, 2, channel="email", device_id="laptop", address="ada@example.com")
    event["Records"].append(email_record)
    dependencies = dependencies_with(FakeSender(), email=FakeSender(error=DeliveryFailed("SES throttled")))

    # When the function handles the batch
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then only the email message is reported and backed off
    assert response == {"batchItemFailures": [{"itemIdentifier": "message-2"}]}
    assert dependencies.sqs.visibility == [("receipt-2", 2)]
    assert len(dependencies.senders[Channel.IN_APP].sent) == 1


def test_an_sqs_duplicate_in_the_same_batch_is_sent_once(lambda_context):
    # Given a batch holding the same job twice, under two message ids (SQS delivers at least once)
    event = load_event("deliver")
    event["Records"].append(record_for(event, 2))
    dependencies = dependencies_with(FakeInboxSender())

    # When the function handles the batch
    deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the provider got it once; the other copy either found it sent or waits for the claim and then will
    assert len(dependencies.senders[Channel.IN_APP].sent) == 1


class GatedSender:
    """A provider that holds every call until `expected` calls are in flight at once, recording the peak."""

    def __init__(self, expected: int):
        self.expected = expected
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.all_in = threading.Event()

    def send(self, job: DeliveryJob) -> str:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.expected:
                self.all_in.set()
        self.all_in.wait(timeout=5)
        with self.lock:
            self.in_flight -= 1
        return f"provider-{job.device_id}"


def test_a_batch_calls_its_providers_concurrently_within_the_channel_limit(lambda_context):
    # Given a batch of 10 jobs for 10 devices, and a channel limit of 4 concurrent sends
    event = load_event("deliver")
    event["Records"] = [record_for(event, i, **{**PUSH, "device_id": f"device-{i}"}) for i in range(10)]
    sender = GatedSender(expected=4)
    dependencies = dependencies_with(FakeSender())
    settings = SETTINGS.model_copy(update={"push_parallel_sends": 4})
    dependencies = deliver.app.Dependencies(**{**dependencies.__dict__, "settings": settings})
    dependencies.senders[Channel.PUSH] = sender  # type: ignore[index]

    # When the function handles the batch
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then all are sent, 4 at a time: never more than the limit, never one by one
    assert response == {"batchItemFailures": []}
    assert sender.peak == 4
    assert len(dependencies.status.attempts) == 10


def test_a_crash_fails_the_whole_invocation_as_when_the_runtime_dies(lambda_context):
    # Given a provider call that ends the process
    class Crash(BaseException):
        pass

    event = load_event("deliver")
    dependencies = dependencies_with(FakeSender(error=Crash()))

    # When the function handles the batch, Then the crash is not swallowed as a failed record
    with pytest.raises(Crash):
        deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)


class StatusStoreRefusingTheKey(FakeStatusStore):
    """DynamoDB's answer to a write whose sort key is over 1,024 bytes: a ValidationException."""

    def claim_deliveries(self, requests: Any, until: Any, fresh: bool = True) -> Any:
        self.journal.append("status.claim_deliveries")
        raise ClientError(
            {
                "Error": {
                    "Code": "ValidationException",
                    "Message": "One or more parameter values were invalid: Aggregated size of all range keys has"
                    " exceeded the size limit of 1024 bytes",
                }
            },
            "UpdateItem",
        )


def test_a_job_whose_dynamodb_write_fails_validation_is_dead_lettered_on_its_first_receive_with_the_reason(
    lambda_context,
):
    # Given the sample job through push on its first receive, and a status table that refuses its key as invalid
    event = push_event()
    dependencies = dataclasses.replace(
        dependencies_with(FakeSender(), push=FakeSender()), status=StatusStoreRefusingTheKey()
    )

    # When the function handles it
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then it is not handed back for a retry: it is in the DLQ at once, saying why, and nothing was sent
    assert response == {"batchItemFailures": []}
    assert dependencies.sqs.visibility == []
    [reason] = dependencies.sqs.reasons()
    assert reason.startswith("failed permanently on receive 1: ClientError:")
    assert "ValidationException" in reason and "1024 bytes" in reason
    assert dependencies.senders[Channel.PUSH].tried == []


def test_a_transient_aws_error_outside_the_provider_call_is_still_retried(lambda_context):
    # Given the sample job through push, and a status table that is throttling
    class ThrottledStatusStore(FakeStatusStore):
        def claim_deliveries(self, requests: Any, until: Any, fresh: bool = True) -> Any:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            raise ClientError({"Error": error}, "UpdateItem")

    event = push_event()
    dependencies = dataclasses.replace(
        dependencies_with(FakeSender(), push=FakeSender()), status=ThrottledStatusStore()
    )

    # When the function handles its first receive
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the record comes back later, and nothing is dead-lettered
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert dependencies.sqs.sent == []


class TallyOutage(FakeStatusStore):
    """A status store whose tally writes fail (a throttled table, say)."""

    def record_tally(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected: the status table is throttling")


def broadcast_event() -> dict[str, Any]:
    """Three deliveries of one broadcast page: two in-app devices and one email that keeps failing for good."""
    event = load_event("deliver")
    page = {"page": "05.000002"}
    event["Records"] = [
        record_for(event, 1, device_id="web", **page),
        record_for(event, 2, device_id="tablet", **page),
        record_for(event, 3, device_id="mail", channel="email", address="ada@example.com", **page),
    ]
    return event


def test_a_broadcast_batch_writes_one_tally_per_page_after_its_records(lambda_context):
    # Given three deliveries of one broadcast page, the email one refused for good
    event = broadcast_event()
    dependencies = dependencies_with(FakeSender(), email=FakeSender(error=DeliveryFailed("rejected", permanent=True)))

    # When the function handles the batch
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then every record is done and one tally of that page holds the batch's changes, after its records' writes
    assert response == {"batchItemFailures": []}
    [(key, tally)] = dependencies.status.tallies.items()
    assert key[1] == "05.000002" and key[2] == lambda_context.aws_request_id
    assert tally == {"counts": {"sent": 2, "failed": 1}, "recovered": {}}
    assert dependencies.status.journal[-1] == "status.record_tally"


def test_records_whose_tally_could_not_be_written_come_back_to_be_counted_then(lambda_context):
    # Given a broadcast batch, one record of which is parked in the DLQ (it cannot be parsed), and a status
    # store that refuses tally writes
    event = broadcast_event()
    event["Records"].append(record_for(event, 4) | {"body": "{}"})
    dependencies = dataclasses.replace(dependencies_with(FakeSender(), email=FakeSender()), status=TallyOutage())

    # When the function handles the batch
    response = deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the records whose changes that tally held are reported back (not the parked one), so that whoever
    # claims them after this invocation's deadline makes those changes up
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["message-1", "message-2", "message-3"]
    assert len(dependencies.sqs.sent) == 1
