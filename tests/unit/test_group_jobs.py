"""One queue message per recipient and channel: a recipient's deliveries of a notification travel together (one
SNS entry, one SQS message, one receive and delete), and each is still claimed, sent and recorded as its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

import deliver.app
from herald.adapters.batches import weighed_chunks
from herald.adapters.consumer import DeadLetter, Done, Retry, one_verdict
from herald.adapters.queues import PUBLISH_BATCH_BYTES, DeliveryTopic
from herald.models.domain import (
    GROUP_DEVICES,
    Channel,
    DeliveryGroup,
    DeliveryJob,
    Priority,
    delivery_messages,
    jobs_of,
    message_count,
)
from herald.models.failures import DeliveryFailed
from tests.events import load_event
from tests.fakes import FakeInboxSender, FakeSender
from tests.unit.test_deliver_handler import dependencies_with

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def job(user: str, device: str, channel: str = "push", notification: str = "n-1", body: str = "b") -> DeliveryJob:
    return DeliveryJob(
        notification_id=notification,
        user_id=user,
        device_id=device,
        channel=Channel(channel),
        endpoint_arn=f"arn:aws:sns:us-east-1:123456789012:endpoint/APNS/h/{device}" if channel == "push" else None,
        address=f"{device}@example.com" if channel == "email" else None,
        title="Your order has shipped",
        body=body,
        priority=Priority.NORMAL,
        accepted_at=AT,
    )


def test_a_recipients_devices_of_one_channel_travel_as_one_message_and_come_back_as_the_same_jobs():
    # Given ada's three phones and one email address, and bob's phone, for one notification
    jobs = [job("ada", "p1"), job("bob", "p9"), job("ada", "p2"), job("ada", "mail", "email"), job("ada", "p3")]

    # When they become queue messages
    messages = delivery_messages(jobs)

    # Then ada's phones are one group (in the order first met), her email and bob's phone jobs alone
    assert [type(m).__name__ for m in messages] == ["DeliveryGroup", "DeliveryJob", "DeliveryJob"]
    group = messages[0]
    assert isinstance(group, DeliveryGroup)
    # And each message reads back as exactly the jobs it was made of
    read = [j for m in messages for j in jobs_of(m.model_dump_json(exclude_none=True))]
    assert sorted(read, key=lambda j: j.device_id) == sorted(jobs, key=lambda j: j.device_id)


def test_a_group_is_cut_at_ten_devices():
    jobs = [job("ada", f"p{n}") for n in range(GROUP_DEVICES * 2 + 3)]
    sizes = [len(jobs_of(m.model_dump_json())) for m in delivery_messages(jobs)]
    assert sizes == [10, 10, 3]
    # And the count fan-out judges a page's size by is the same, without making the messages
    assert message_count(jobs) == 3
    assert message_count([job("ada", "p1"), job("bob", "p9"), job("ada", "p2"), job("ada", "m", "email")]) == 3


def test_a_version_that_reads_single_jobs_refuses_a_group_instead_of_sending_to_one_device():
    # Given a group message, When the deliver function of a version before groups parses it as one job
    [group] = delivery_messages([job("ada", "p1"), job("ada", "p2")])
    body = group.model_dump_json(exclude_none=True)

    # Then it is refused (the consumer dead-letters it with the reason), never read as ada's first phone alone
    with pytest.raises(ValidationError):
        DeliveryJob.model_validate_json(body)


def test_a_body_that_is_not_json_is_refused_naming_the_body():
    with pytest.raises(ValidationError, match="Invalid JSON"):
        jobs_of("not json at all")


def test_chunks_close_at_their_count_or_their_weight():
    assert list(weighed_chunks([1, 1, 1, 1, 1], 2, lambda n: n, 100)) == [[1, 1], [1, 1], [1]]
    assert list(weighed_chunks([60, 60, 30, 200, 10], 10, lambda n: n, 100)) == [[60], [60, 30], [200], [10]]


class RecordingSns:
    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(PublishBatchRequestEntries)
        return {"Successful": [{"Id": e["Id"]} for e in PublishBatchRequestEntries], "Failed": []}


def test_the_topic_publishes_one_entry_per_group_ten_to_a_call():
    # Given 10 notifications to ada's three phones (as a fan-out batch's shared publish holds them)
    sns = RecordingSns()
    jobs = [job("ada", f"p{d}", notification=f"n-{n}") for n in range(10) for d in range(3)]

    # When they are published
    published = DeliveryTopic(sns, "arn:topic").publish(jobs)

    # Then one PublishBatch of 10 entries carries the 30 jobs, each entry with its priority for the filter
    assert published == 30
    assert [len(call) for call in sns.calls] == [10]
    entry = sns.calls[0][0]
    assert entry["MessageAttributes"]["priority"]["StringValue"] == "normal"
    assert [j.device_id for j in jobs_of(entry["Message"])] == ["p0", "p1", "p2"]


def test_the_topic_keeps_a_call_under_its_byte_limit_whatever_the_groups_weigh():
    # Given 10 groups of 10 jobs with long bodies, and a topic whose calls may carry 50,000 bytes (SNS takes 256 KB:
    # 10 groups at the largest a notification and its devices' ids may be come close to it)
    sns = RecordingSns()
    jobs = [job(f"u{u}", f"p{d}", body="é" * 2000) for u in range(10) for d in range(10)]

    # When they are published
    DeliveryTopic(sns, "arn:topic", max_bytes=50_000).publish(jobs)

    # Then each call stays under the limit, so it takes several, and every job went out once
    for call in sns.calls:
        assert sum(len(e["Message"].encode()) for e in call) <= 50_000
    assert len(sns.calls) > 1
    assert sorted(j.device_id + j.user_id for c in sns.calls for e in c for j in jobs_of(e["Message"])) == sorted(
        j.device_id + j.user_id for j in jobs
    )
    assert PUBLISH_BATCH_BYTES == 256 * 1024


def test_a_message_comes_back_if_any_of_its_deliveries_must_be_retried_else_to_the_dlq_if_any_must():
    assert one_verdict([Done(), Retry("slow", delay=4), Retry("slower", delay=30), DeadLetter("x")]) == Retry(
        "slow; slower", delay=30
    )
    assert one_verdict([Done(), DeadLetter("bad address"), DeadLetter("bad address")]) == DeadLetter("bad address")
    assert one_verdict([Done(), Done()]) == Done()
    assert one_verdict([Retry("r")]) == Retry("r")


class FailsFor(FakeSender):
    """Sends, but for the listed devices, which fail as a provider would for a while."""

    def __init__(self, failing: set[str]):
        super().__init__()
        self.failing = failing

    def send(self, job: DeliveryJob) -> str:
        if job.device_id in self.failing:
            self.tried.append(job)
            raise DeliveryFailed("APNs throttled")
        return super().send(job)


def group_event(jobs: list[DeliveryJob], receive_count: int = 1) -> dict[str, Any]:
    [message] = delivery_messages(jobs)
    return {
        "Records": [
            {
                "messageId": "group-1",
                "receiptHandle": "receipt-1",
                "body": message.model_dump_json(exclude_none=True),
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
            }
        ]
    }


def test_a_group_with_one_device_failing_comes_back_and_its_sent_devices_are_not_sent_again(lambda_context):
    # Given ada's three phones in one message, the second failing for now
    push = FailsFor({"p2"})
    dependencies = dependencies_with(FakeSender(), push=push)
    jobs = [job("ada", "p1"), job("ada", "p2"), job("ada", "p3")]

    # When the deliver function handles it, Then the message comes back with the failed delivery's backoff
    first = deliver.app.lambda_handler(group_event(jobs), lambda_context, dependencies)
    assert first == {"batchItemFailures": [{"itemIdentifier": "group-1"}]}
    assert sorted(j.device_id for j in push.sent) == ["p1", "p3"]
    assert [receipt for receipt, _ in dependencies.sqs.visibility] == ["receipt-1"]

    # When it comes back and the provider has recovered
    push.failing = set()
    again = deliver.app.lambda_handler(group_event(jobs, receive_count=2), lambda_context, dependencies)

    # Then only the one that failed is sent, and each phone got the notification once
    assert again == {"batchItemFailures": []}
    assert sorted(j.device_id for j in push.sent) == ["p1", "p2", "p3"]
    records = {device: dependencies.status.delivery("n-1", f"ada#{device}") for device in ("p1", "p2", "p3")}
    assert {device: (r.status.value, r.attempts) for device, r in records.items()} == {
        "p1": ("sent", 1),
        "p2": ("sent", 2),
        "p3": ("sent", 1),
    }


def test_a_poison_group_goes_to_the_dlq_whole_with_its_reason(lambda_context):
    # Given a group message one of whose devices is not a device (no id)
    [message] = delivery_messages([job("ada", "p1"), job("ada", "p2")])
    body = json.loads(message.model_dump_json())
    body["more"][0].pop("device_id")
    event = group_event([job("ada", "p1"), job("ada", "p2")])
    event["Records"][0]["body"] = json.dumps(body)
    push = FakeSender()
    dependencies = dependencies_with(FakeSender(), push=push)

    # When the deliver function handles it, Then nothing is sent and the whole message is parked, saying why
    assert deliver.app.lambda_handler(event, lambda_context, dependencies) == {"batchItemFailures": []}
    assert push.sent == []
    [reason] = dependencies.sqs.reasons()
    assert "more.0.device_id" in reason


def test_the_group_sample_event_is_delivered_to_both_devices(lambda_context):
    # Given the group sample event (two in-app devices of user-42) and a working inbox
    inbox = FakeInboxSender()
    dependencies = dependencies_with(inbox)

    # When the deliver function handles it, Then both inbox items are written and nothing comes back
    assert deliver.app.lambda_handler(load_event("deliver_group"), lambda_context, dependencies) == {
        "batchItemFailures": []
    }
    assert sorted(j.device_id for j in inbox.sent) == ["tablet-inbox", "web-inbox"]
