"""The fan-out function: an intake batch in, one partial-batch answer out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

import fanout.app
from herald.adapters.dead_letters import DeadLetterQueue
from herald.models.domain import Channel, Priority
from herald.settings import FanoutSettings
from tests.events import load_event
from tests.fakes import (
    FakeDeviceRegistry,
    FakeIntakeQueue,
    FakePublisher,
    FakeSqs,
    FakeStatusStore,
    FakeSubscribers,
    make_device,
)

OTHER_NOTIFICATION_ID = "9a8b7c6d-0000-4e1f-8a2b-3c4d5e6f7a8b"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-HighIntakeDeadLetterQueue-9Z8Y"
SETTINGS = FanoutSettings(
    priority=Priority.HIGH,
    devices_table="herald-devices",
    status_table="herald-status",
    inbox_table="herald-inbox",
    subscribers_table="herald-subscribers",
    topic_arn="arn:aws:sns:us-east-1:123456789012:herald-NotificationsTopic-1A2B",
    queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/herald-HighIntakeQueue-5F6G",
    dlq_url=DLQ_URL,
)


def dependencies_with(
    registry: FakeDeviceRegistry, topic: FakePublisher, status: FakeStatusStore, settings: FanoutSettings = SETTINGS
) -> fanout.app.Dependencies:
    sqs = FakeSqs()
    return fanout.app.Dependencies(
        settings=settings,
        registry=registry,
        subscribers=FakeSubscribers(),
        topic=topic,
        status=status,
        continuations=FakeIntakeQueue(),
        sqs=sqs,
        dead_letters=DeadLetterQueue(sqs, DLQ_URL, source="intake-high"),
    )


@pytest.fixture
def registry() -> FakeDeviceRegistry:
    return FakeDeviceRegistry(
        [
            make_device("user-42", "web-inbox", Channel.IN_APP),
            make_device("user-43", "laptop-mail", Channel.EMAIL, address="grace@example.com"),
        ]
    )


def with_second_record(event: dict[str, Any]) -> dict[str, Any]:
    """The sample event plus a second record: another notification, another message id."""
    [record] = event["Records"]
    second = json.loads(json.dumps(record))
    body = json.loads(second["body"])
    body["notification_id"] = OTHER_NOTIFICATION_ID
    second["body"] = json.dumps(body)
    second["messageId"] = "6b1f0c2e-1111-4d3e-9f8a-7b6c5d4e3f2a"
    event["Records"].append(second)
    return event


def test_sample_event_fans_out_and_reports_no_failures(registry, lambda_context):
    # Given the sample intake event and both recipients with one device each
    event = load_event("fanout")
    topic, status = FakePublisher(), FakeStatusStore()
    dependencies = dependencies_with(registry, topic, status)

    # When the function handles it
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then both deliveries are published and the record is not reported failed
    assert response == {"batchItemFailures": []}
    assert sorted((job.user_id, job.channel) for job in topic.published) == [
        ("user-42", Channel.IN_APP),
        ("user-43", Channel.EMAIL),
    ]
    notification_id = json.loads(event["Records"][0]["body"])["notification_id"]
    assert status.fanned_out[notification_id].delivery_count == 2


def test_a_failed_publish_reports_only_that_record(registry, lambda_context):
    # Given two intake records, and a topic refusing the second one's deliveries
    event = with_second_record(load_event("fanout"))
    first_id = json.loads(event["Records"][0]["body"])["notification_id"]
    topic, status = FakePublisher(failing=[OTHER_NOTIFICATION_ID]), FakeStatusStore()
    dependencies = dependencies_with(registry, topic, status)

    # When the function handles the batch
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then only the second message is reported, so SQS retries it alone; its page was recorded before the publish
    # failed, so the retry finds it recorded and publishes it
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert {job.notification_id for job in topic.published} == {first_id}
    assert set(status.fanned_out) == {first_id, OTHER_NOTIFICATION_ID}

    # When SNS takes it again and the second message returns alone
    topic.failing.clear()
    again = {"Records": [event["Records"][1]]}
    assert fanout.app.lambda_handler(again, lambda_context, dependencies=dependencies) == {"batchItemFailures": []}

    # Then its deliveries are published
    assert {job.notification_id for job in topic.published} == {first_id, OTHER_NOTIFICATION_ID}


def test_a_body_that_is_not_a_notification_goes_to_the_intake_dlq_with_its_reason(registry, lambda_context):
    # Given a batch of a good notification and a record whose body is not a notification
    event = with_second_record(load_event("fanout"))
    event["Records"][1]["body"] = '{"hello": "world"}'
    topic, status = FakePublisher(), FakeStatusStore()
    dependencies = dependencies_with(registry, topic, status)

    # When the function handles the batch
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the good one is fanned out, the bad one is parked with a reason naming the fields, and nothing loops
    assert response == {"batchItemFailures": []}
    assert len(topic.published) == 2
    [parked] = dependencies.sqs.sent
    assert parked["QueueUrl"] == DLQ_URL and parked["MessageBody"] == '{"hello": "world"}'
    reason = dependencies.sqs.reasons()[0]
    assert reason.startswith("invalid message: notification_id: Field required; accepted_at: Field required")


def test_a_duplicate_intake_message_publishes_its_page_again_and_queues_nothing_more(registry, lambda_context):
    # Given the sample notification, fanned out once
    event = load_event("fanout")
    topic, status = FakePublisher(), FakeStatusStore()
    dependencies = dependencies_with(registry, topic, status)
    fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # When SQS delivers the same intake message again
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then it succeeds and publishes the same two jobs again (it cannot tell a duplicate from the retry of a fan-out
    # that stopped before publishing; each delivery's claim sends it once), and the page's record is the first one
    assert response == {"batchItemFailures": []}
    ids = [job.delivery_id for job in topic.published]
    assert len(ids) == 4 and ids[:2] == ids[2:]
    assert len(status.fanned_out) == 1 and dependencies.continuations.sent == []


def test_an_intake_message_whose_dynamodb_write_fails_validation_is_dead_lettered_at_once(registry, lambda_context):
    # Given the sample notification on its first receive, and a status table refusing its key as invalid
    class RefusingStatusStore(FakeStatusStore):
        def record_page(self, notification: Any, page: str, outcome: Any) -> Any:
            error = {"Code": "ValidationException", "Message": "Hash primary key values must be under 2048 bytes"}
            raise ClientError({"Error": error}, "UpdateItem")

    event = load_event("fanout")
    topic = FakePublisher()
    dependencies = dependencies_with(registry, topic, RefusingStatusStore())

    # When the function handles it
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then it waits in the intake DLQ with the reason, not for four more receives, and nothing was published
    assert response == {"batchItemFailures": []}
    [reason] = dependencies.sqs.reasons()
    assert reason.startswith("failed permanently on receive 1:") and "ValidationException" in reason
    assert topic.published == []


def test_a_page_of_a_large_audience_queues_the_next_page_on_its_own_lane(lambda_context):
    # Given a notification to 3 users with an in-app device each, and pages of 2 deliveries
    registry = FakeDeviceRegistry(make_device(f"user-{n}", "web", Channel.IN_APP) for n in range(3))
    event = load_event("fanout")
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**body, "recipients": ["user-0", "user-1", "user-2"]})
    topic, status = FakePublisher(), FakeStatusStore()
    dependencies = dependencies_with(registry, topic, status, SETTINGS.model_copy(update={"page_deliveries": 2}))

    # When the function handles the intake message
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the first page published two deliveries and queued the second page (on this lane's queue)
    assert response == {"batchItemFailures": []}
    assert [job.user_id for job in topic.published] == ["user-0", "user-1"]
    [continuation] = dependencies.continuations.sent
    assert continuation.page is not None and continuation.page.index == 1 and continuation.page.cursor.user == "user-2"


def test_records_left_when_the_invocation_spent_its_share_of_time_are_queued_again_as_new_messages(
    registry, lambda_context
):
    # Given two intake records, and an invocation whose time is already almost spent
    event = with_second_record(load_event("fanout"))
    topic, status = FakePublisher(), FakeStatusStore()
    dependencies = dependencies_with(registry, topic, status)
    lambda_context.remaining_millis = 0

    # When the function handles the batch
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then no page starts, and both notifications are queued again for a fresh invocation as new messages
    # (not reported failed: each failure would count a receive, and enough of them would dead-letter a page)
    assert response == {"batchItemFailures": []}
    assert topic.published == []
    assert [n.notification_id for n in dependencies.continuations.sent] == [
        json.loads(r["body"])["notification_id"] for r in event["Records"]
    ]


def test_the_small_pages_of_a_batch_are_each_recorded_then_share_their_publish(registry, lambda_context):
    # Given a batch of two notifications, each to two recipients with one device each (two jobs a page)
    event = with_second_record(load_event("fanout"))
    journal: list[str] = []
    topic, status = FakePublisher(journal=journal), FakeStatusStore(journal=journal)
    dependencies = dependencies_with(registry, topic, status)

    # When the function handles the batch
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then each page is recorded fanned out first (what a cancel races), then the four jobs go out in one publish
    assert response == {"batchItemFailures": []}
    assert journal.count("topic.publish") == 1 and len(topic.published) == 4
    assert journal.index("topic.publish") > max(i for i, entry in enumerate(journal) if "record_page" in entry)
    assert len(status.fanned_out) == 2


def test_a_page_of_a_full_publish_or_more_publishes_alone(lambda_context):
    # Given a batch of two notifications, each to a user with 95 devices and one with one: 96 jobs a page, in 11
    # messages (a recipient's devices of a channel travel 10 a message)
    registry = FakeDeviceRegistry(
        [make_device("user-42", f"web-{n:02d}", Channel.IN_APP) for n in range(95)]
        + [make_device("user-43", "laptop-mail", Channel.EMAIL, address="grace@example.com")]
    )
    event = with_second_record(load_event("fanout"))
    journal: list[str] = []
    topic, status = FakePublisher(journal=journal), FakeStatusStore(journal=journal)
    dependencies = dependencies_with(registry, topic, status)

    # When the function handles the batch
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then each page publishes on its own: a page of a full PublishBatch or more has nothing to gain by sharing
    assert response == {"batchItemFailures": []}
    assert journal.count("topic.publish") == 2 and len(topic.published) == 192
    assert len(status.fanned_out) == 2


def test_a_page_of_many_jobs_in_few_messages_still_shares_its_publish(lambda_context):
    # Given a batch of two notifications, each to a user with 12 devices and one with one: 13 jobs a page, but
    # 3 messages (user-42's devices in two, user-43's in one)
    registry = FakeDeviceRegistry(
        [make_device("user-42", f"web-{n:02d}", Channel.IN_APP) for n in range(12)]
        + [make_device("user-43", "laptop-mail", Channel.EMAIL, address="grace@example.com")]
    )
    journal: list[str] = []
    topic, status = FakePublisher(journal=journal), FakeStatusStore(journal=journal)
    dependencies = dependencies_with(registry, topic, status)

    # When the function handles the batch
    response = fanout.app.lambda_handler(with_second_record(load_event("fanout")), lambda_context, dependencies)

    # Then the two pages share one publish: SNS bills per entry of a call, and a page's entries are its messages
    assert response == {"batchItemFailures": []}
    assert journal.count("topic.publish") == 1 and len(topic.published) == 26


def test_a_shared_publish_that_fails_lets_each_page_publish_alone_and_fail_alone(registry, lambda_context):
    # Given a batch of two notifications whose shared publish fails because SNS refuses the second's jobs
    event = with_second_record(load_event("fanout"))
    journal: list[str] = []
    topic = FakePublisher(failing=[OTHER_NOTIFICATION_ID], journal=journal)
    status = FakeStatusStore(journal=journal)
    dependencies = dependencies_with(registry, topic, status)

    # When the function handles the batch
    response = fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then after the shared publish, each page publishes alone: the first is published, the second alone comes back
    # (both were recorded before any publish: the second's retry finds its record and publishes it)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert journal.count("topic.publish") == 3
    first_id = json.loads(event["Records"][0]["body"])["notification_id"]
    assert {job.notification_id for job in topic.published} == {first_id}
    assert set(status.fanned_out) == {first_id, OTHER_NOTIFICATION_ID}
