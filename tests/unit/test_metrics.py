"""Herald's CloudWatch metrics: the EMF documents the deliver, fan-out, feedback and schedule functions print.

Read as Powertools' docs test metrics: capture stdout, parse each EMF line.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

import deliver.app
import fanout.app
import feedback.app
import schedule.app
from herald.adapters.dead_letters import DeadLetterQueue
from herald.logic.preferences import DeliveryRules
from herald.models.domain import Channel, Notification, PagePosition, Priority
from herald.models.failures import DeliveryFailed
from herald.models.holds import HeldDeliveries, HeldMessage, HeldNotification
from herald.models.preferences import Preferences, QuietHours
from herald.observability import METRIC_DIMENSIONS, InvocationMetrics
from herald.settings import FeedbackSettings, ScheduleSettings
from tests.events import load_event
from tests.fakes import (
    FakeContext,
    FakeDeviceRegistry,
    FakeHolds,
    FakeIntakeQueue,
    FakeProfileStore,
    FakePublisher,
    FakeSender,
    FakeSqs,
    FakeStatusStore,
    FakeSubscribers,
    make_device,
)
from tests.unit.test_deliver_handler import dependencies_with, push_event, record_for
from tests.unit.test_fanout_handler import SETTINGS as FANOUT_SETTINGS
from tests.unit.test_fanout_handler import dependencies_with as fanout_dependencies_with
from tests.unit.test_feedback import DLQ_URL as FEEDBACK_DLQ_URL
from tests.unit.test_feedback import bounce, complaint, registry_with_email


def emf_documents(printed: str) -> list[dict[str, Any]]:
    """The EMF documents among the printed lines (the logger may print its own lines too)."""
    documents = []
    for line in printed.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def metric(documents: list[dict[str, Any]], name: str, **dimensions: str) -> list[dict[str, Any]]:
    """The documents that declare `name` with exactly these dimensions (and service)."""
    found = []
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        names = {m["Name"] for m in directive["Metrics"]}
        for declared_name in names:  # every metric printed has exactly the dimensions the dashboard reads
            assert directive["Dimensions"] == [sorted([*METRIC_DIMENSIONS[declared_name], "service"])], document
        declared = name in names and directive["Dimensions"] == [sorted([*dimensions, "service"])]
        if declared and all(document[key] == value for key, value in dimensions.items()):
            found.append(document)
    return found


def unit_of(document: dict[str, Any], name: str) -> str:
    [directive] = document["_aws"]["CloudWatchMetrics"]
    return next(m["Unit"] for m in directive["Metrics"] if m["Name"] == name)


def test_a_sent_delivery_counts_by_channel_and_priority_and_times_its_latency(capsys, lambda_context):
    # Given the sample in_app job of high priority and a working sender
    event = load_event("deliver")
    accepted_at = datetime.fromisoformat("2026-11-21T05:30:00.123456+00:00")
    before = (datetime.now(UTC) - accepted_at).total_seconds() * 1000

    # When the deliver function handles it
    deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies_with(FakeSender()))
    after = (datetime.now(UTC) - accepted_at).total_seconds() * 1000

    # Then it prints one EMF document counting the send by channel and priority in namespace Herald...
    documents = emf_documents(capsys.readouterr().out)
    [sent] = metric(documents, "DeliveriesSent", channel="in_app", priority="high")
    assert sent["DeliveriesSent"] == [1.0]
    assert unit_of(sent, "DeliveriesSent") == "Count"
    assert sent["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Herald"
    assert sent["service"] == "herald"
    # ...and one with the time from acceptance to the send, by priority only
    [latency] = metric(documents, "AcceptedToSentLatency", priority="high")
    assert unit_of(latency, "AcceptedToSentLatency") == "Milliseconds"
    [value] = latency["AcceptedToSentLatency"]
    assert before <= value <= after
    assert len(documents) == 2


def test_a_batch_writes_one_document_per_set_of_dimensions_with_its_counts_summed(capsys, lambda_context):
    # Given a batch of three in_app sends, one email refused for good and one sms that fails transiently
    event = load_event("deliver")
    event["Records"] = [
        record_for(event, 1, device_id="inbox-1"),
        record_for(event, 2, device_id="inbox-2"),
        record_for(event, 3, device_id="inbox-3"),
        record_for(event, 4, device_id="mail", channel="email", address="ada@example.com"),
        record_for(event, 5, device_id="phone", channel="sms", address="+14155550100", priority="low"),
    ]
    dependencies = dependencies_with(
        FakeSender(),
        email=FakeSender(error=DeliveryFailed("MessageRejected: address blacklisted", permanent=True)),
        sms=FakeSender(error=DeliveryFailed("Throttled")),
    )

    # When the deliver function handles the batch
    deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then each channel and priority has its own document, with the batch's count in one value
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, "DeliveriesSent", channel="in_app", priority="high")[0]["DeliveriesSent"] == [3.0]
    assert metric(documents, "DeliveriesFailed", channel="email", priority="high")[0]["DeliveriesFailed"] == [1.0]
    assert metric(documents, "DeliveriesRetried", channel="sms", priority="low")[0]["DeliveriesRetried"] == [1.0]
    # and the latency document of high priority holds one sample per send
    assert len(metric(documents, "AcceptedToSentLatency", priority="high")[0]["AcceptedToSentLatency"]) == 3
    assert not metric(documents, "AcceptedToSentLatency", priority="low")
    assert not metric(documents, "DeliveriesDeadLettered", channel="sms", priority="low")


def test_the_last_failed_attempt_counts_a_dead_letter_not_a_retry(capsys, lambda_context):
    # Given the sample job on its fifth (last) receive, and a sender still failing
    event = load_event("deliver")
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"
    dependencies = dependencies_with(FakeSender(error=DeliveryFailed("inbox throttled")))

    # When the deliver function handles it
    deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then it is counted dead-lettered, and not retried
    documents = emf_documents(capsys.readouterr().out)
    [dead] = metric(documents, "DeliveriesDeadLettered", channel="in_app", priority="high")
    assert dead["DeliveriesDeadLettered"] == [1.0]
    assert not metric(documents, "DeliveriesRetried", channel="in_app", priority="high")


class BrokenStatusStore(FakeStatusStore):
    def claim_deliveries(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("DynamoDB unreachable")


@pytest.mark.parametrize(("receive_count", "expected"), [("1", "DeliveriesRetried"), ("5", "DeliveriesDeadLettered")])
def test_a_handler_that_raises_is_counted_as_the_consumer_settles_it(capsys, lambda_context, receive_count, expected):
    # Given a push job, and a status store that cannot be reached, on a first and on a last receive
    event = push_event()
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = receive_count
    dependencies = dependencies_with(FakeSender(), push=FakeSender())
    dependencies = deliver.app.Dependencies(**{**dependencies.__dict__, "status": BrokenStatusStore()})

    # When the deliver function handles it
    deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the record counts as what the consumer made of the error: retried, or on the last receive dead-lettered
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, expected, channel="push", priority="high")[0][expected] == [1.0]


def test_fan_out_records_each_notification_size_and_the_inactive_devices_it_skipped(capsys, lambda_context):
    # Given user-42 with an in_app device and an inactive push device, and user-43 with an email device
    inactive = make_device("user-42", "old-phone", Channel.PUSH, address="token-1").model_copy(update={"active": False})
    registry = FakeDeviceRegistry(
        [
            make_device("user-42", "web-inbox", Channel.IN_APP),
            inactive,
            make_device("user-43", "laptop-mail", Channel.EMAIL, address="grace@example.com"),
        ]
    )
    dependencies = fanout_dependencies_with(registry, FakePublisher(), FakeStatusStore())

    # When the fan-out function handles the sample notification (high priority)
    fanout.app.lambda_handler(load_event("fanout"), lambda_context, dependencies=dependencies)

    # Then its size is two deliveries, and one push delivery was skipped
    documents = emf_documents(capsys.readouterr().out)
    [size] = metric(documents, "FanoutSize", priority="high")
    assert size["FanoutSize"] == [2.0]
    assert unit_of(size, "FanoutSize") == "Count"
    [skipped] = metric(documents, "DeliveriesSkipped", channel="push", priority="high")
    assert skipped["DeliveriesSkipped"] == [1.0]


def test_a_duplicate_intake_message_records_no_second_fan_out(capsys, lambda_context):
    # Given a notification already fanned out
    registry = FakeDeviceRegistry([make_device("user-42", "web-inbox", Channel.IN_APP)])
    dependencies = fanout_dependencies_with(registry, FakePublisher(), FakeStatusStore())
    fanout.app.lambda_handler(load_event("fanout"), lambda_context, dependencies=dependencies)
    capsys.readouterr()

    # When its intake message comes again
    fanout.app.lambda_handler(load_event("fanout"), lambda_context, dependencies=dependencies)

    # Then no fan-out size is recorded for it
    assert not metric(emf_documents(capsys.readouterr().out), "FanoutSize", priority="high")


def test_concurrent_invocations_each_write_only_their_own_metrics(lambda_context):
    # Given two deliver invocations in flight at once in one process, as in the local stack,
    # each send held until all three (one of one invocation, two of the other) are under way
    both_sending = threading.Barrier(3, timeout=10)

    class Waiting(FakeSender):
        def send(self, job: Any) -> str:
            both_sending.wait()
            return super().send(job)

    outputs: dict[str, list[str]] = {"one": [], "two": []}

    def invoke(name: str, records: int) -> None:
        event = load_event("deliver")
        event["Records"] = [record_for(event, i, device_id=f"{name}-{i}") for i in range(records)]
        dependencies = deliver.app.Dependencies(
            **{**dependencies_with(Waiting()).__dict__, "metrics_output": outputs[name].append}
        )
        deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # When one sends one delivery and the other two
    threads = [threading.Thread(target=invoke, args=("one", 1)), threading.Thread(target=invoke, args=("two", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)

    # Then each invocation's output holds its own count only
    for name, count in (("one", 1.0), ("two", 2.0)):
        documents = [json.loads(line) for line in outputs[name]]
        assert metric(documents, "DeliveriesSent", channel="in_app", priority="high")[0]["DeliveriesSent"] == [count]


def test_more_samples_than_emf_takes_are_split_across_documents():
    # Given 250 latency samples in one invocation
    written: list[str] = []
    metrics = InvocationMetrics(written.append)
    for value in range(250):
        metrics.sample("AcceptedToSentLatency", MetricUnit.Milliseconds, value, priority="low")
    metrics.count("DeliveriesSent", 250, channel="email", priority="low")

    # When they are flushed
    metrics.flush()

    # Then no document holds more than 99 values of a metric, and every sample is written once
    documents = [json.loads(line) for line in written]
    latencies = [v for d in documents if "AcceptedToSentLatency" in d for v in d["AcceptedToSentLatency"]]
    assert sorted(latencies) == [float(v) for v in range(250)]
    assert max(len(d["AcceptedToSentLatency"]) for d in documents if "AcceptedToSentLatency" in d) <= 99
    assert [d["DeliveriesSent"] for d in documents if "DeliveriesSent" in d] == [[250.0]]


def test_a_flush_writes_nothing_twice_and_nothing_when_metrics_are_disabled(monkeypatch):
    # Given metrics collected and flushed once
    written: list[str] = []
    metrics = InvocationMetrics(written.append)
    metrics.count("DeliveriesSent", channel="sms", priority="normal")
    metrics.flush()

    # When flushed again, Then nothing more is written
    metrics.flush()
    assert len(written) == 1

    # Given POWERTOOLS_METRICS_DISABLED, When a count is flushed, Then nothing is written
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    metrics.count("DeliveriesSent", channel="sms", priority="normal")
    metrics.flush()
    assert len(written) == 1


def test_a_metrics_failure_never_fails_the_invocation(monkeypatch):
    # Given no namespace configured: EMF cannot be serialised
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    written: list[str] = []
    metrics = InvocationMetrics(written.append)
    metrics.count("DeliveriesSent", channel="sms", priority="normal")

    # When flushed, Then it does not raise, and writes nothing
    metrics.flush()
    assert written == []


def intake_event(notification: Notification) -> dict[str, Any]:
    """The sample intake record carrying `notification` (a continuation page, a topic's notification)."""
    event = load_event("fanout")
    event["Records"][0]["body"] = notification.model_dump_json()
    return event


def test_fan_out_samples_its_size_once_per_page_of_a_paged_notification(capsys, lambda_context):
    # Given a notification to 3 users with an in-app device each, and pages of 2 deliveries
    registry = FakeDeviceRegistry(make_device(f"user-{n}", "web", Channel.IN_APP) for n in range(3))
    event = load_event("fanout")
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**body, "recipients": ["user-0", "user-1", "user-2"]})
    settings = FANOUT_SETTINGS.model_copy(update={"page_deliveries": 2})
    dependencies = fanout_dependencies_with(registry, FakePublisher(), FakeStatusStore(), settings)

    # When the first page runs, then the page it queued
    fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)
    first = emf_documents(capsys.readouterr().out)
    [continuation] = dependencies.continuations.sent
    fanout.app.lambda_handler(intake_event(continuation), lambda_context, dependencies=dependencies)
    second = emf_documents(capsys.readouterr().out)

    # Then each invocation samples the page it published: 2 deliveries, then 1
    assert [d["FanoutSize"] for d in metric(first, "FanoutSize", priority="high")] == [[2.0]]
    assert [d["FanoutSize"] for d in metric(second, "FanoutSize", priority="high")] == [[1.0]]


def test_a_topics_root_page_samples_no_size_and_its_chain_pages_do(capsys, lambda_context):
    # Given a topic with one subscriber, who has an in-app device, and a notification to the topic
    registry = FakeDeviceRegistry([make_device("ada", "web", Channel.IN_APP)])
    dependencies = fanout_dependencies_with(registry, FakePublisher(), FakeStatusStore())
    subscribers = FakeSubscribers({"news": ["ada"]})
    dependencies = fanout.app.Dependencies(**{**dependencies.__dict__, "subscribers": subscribers})
    body = json.loads(load_event("fanout")["Records"][0]["body"])
    notification = Notification.model_validate({**body, "recipients": None, "topic": "news"})

    # When the root page runs (it starts one chain per subscriber shard and publishes nothing)
    fanout.app.lambda_handler(intake_event(notification), lambda_context, dependencies=dependencies)
    root = emf_documents(capsys.readouterr().out)
    chains = list(dependencies.continuations.sent)
    # and then every chain's first page
    for page in chains:
        fanout.app.lambda_handler(intake_event(page), lambda_context, dependencies=dependencies)
    pages = emf_documents(capsys.readouterr().out)

    # Then the root sampled nothing, and each chain page one size: ada's one delivery in hers, 0 in the others
    assert not metric(root, "FanoutSize", priority="high")
    sizes = [value for d in metric(pages, "FanoutSize", priority="high") for value in d["FanoutSize"]]
    assert sorted(sizes) == [0.0] * (len(chains) - 1) + [1.0]


def test_inactive_email_and_sms_devices_count_as_skipped_by_channel(capsys, lambda_context):
    # Given user-42's email device retired by a hard bounce, user-43's phone retired by an SMS opt-out
    bounced = make_device("user-42", "mail", Channel.EMAIL, address="ada@example.com")
    opted_out = make_device("user-43", "phone", Channel.SMS, address="+14155550199")
    registry = FakeDeviceRegistry(
        [
            bounced.model_copy(update={"active": False}),
            opted_out.model_copy(update={"active": False}),
            make_device("user-43", "web", Channel.IN_APP),
        ]
    )
    dependencies = fanout_dependencies_with(registry, FakePublisher(), FakeStatusStore())

    # When the sample notification (to both users, high priority) is fanned out
    fanout.app.lambda_handler(load_event("fanout"), lambda_context, dependencies=dependencies)

    # Then one email and one SMS delivery are counted skipped, and the page's size is the one in-app delivery
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, "DeliveriesSkipped", channel="email", priority="high")[0]["DeliveriesSkipped"] == [1.0]
    assert metric(documents, "DeliveriesSkipped", channel="sms", priority="high")[0]["DeliveriesSkipped"] == [1.0]
    assert metric(documents, "FanoutSize", priority="high")[0]["FanoutSize"] == [1.0]


def test_a_broadcasts_delivery_counts_as_any_other(capsys, lambda_context):
    # Given the sample job as a page of a broadcast planned it (its job names its fan-out page)
    event = load_event("deliver")
    event["Records"] = [record_for(event, 1, page=PagePosition(chain=3).key)]

    # When it is delivered
    deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies_with(FakeSender()))

    # Then it counts sent, with its latency, as a notification to a list of users does
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, "DeliveriesSent", channel="in_app", priority="high")[0]["DeliveriesSent"] == [1.0]
    assert metric(documents, "AcceptedToSentLatency", priority="high")


def test_a_stray_copy_of_a_dead_letter_is_parked_without_counting_the_delivery_dead_lettered_again(
    capsys, lambda_context
):
    # Given the sample job dead-lettered by its last attempt
    dependencies = dependencies_with(FakeSender(error=DeliveryFailed("inbox throttled")))
    last = load_event("deliver")
    last["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"
    deliver.app.lambda_handler(last, lambda_context, dependencies=dependencies)
    dead = metric(emf_documents(capsys.readouterr().out), "DeliveriesDeadLettered", channel="in_app", priority="high")
    assert dead and dead[0]["DeliveriesDeadLettered"] == [1.0]

    # When an SQS copy of it that Herald never parked comes in
    deliver.app.lambda_handler(load_event("deliver"), lambda_context, dependencies=dependencies)

    # Then it is parked (in the DLQ beside the first) but the delivery is not counted dead-lettered twice
    assert len(dependencies.sqs.sent) == 2
    again = emf_documents(capsys.readouterr().out)
    assert not metric(again, "DeliveriesDeadLettered", channel="in_app", priority="high")


def test_the_feedback_function_counts_the_devices_it_deactivated_per_reason(capsys):
    # Given ada's and grace's email devices on one address, and alan's on another
    registry = registry_with_email("ada", "grace")
    registry.put(make_device("alan", "mail", Channel.EMAIL, address="alan@example.com"))
    sqs = FakeSqs()
    settings = FeedbackSettings(
        devices_table="herald-devices",
        status_table="herald-status",
        inbox_table="herald-inbox",
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/herald-FeedbackQueue-1A2B",
        dlq_url=FEEDBACK_DLQ_URL,
    )
    dead_letters = DeadLetterQueue(sqs, FEEDBACK_DLQ_URL, "feedback")
    dependencies = feedback.app.Dependencies(settings, registry, sqs, dead_letters)
    bodies = [bounce(), complaint("alan@example.com"), bounce("nobody@example.com", bounce_type="Transient")]
    records = [
        {"messageId": f"m-{n}", "receiptHandle": f"r-{n}", "body": json.dumps(b), "attributes": {}}
        for n, b in enumerate(bodies)
    ]

    # When the feedback function handles a hard bounce, a complaint and a soft bounce
    feedback.app.lambda_handler({"Records": records}, FakeContext(), dependencies)

    # Then it counts two email devices deactivated by the bounce and one by the complaint, none by the soft bounce
    documents = emf_documents(capsys.readouterr().out)
    [bounced] = metric(documents, "DevicesDeactivated", channel="email", reason="bounce")
    [complained] = metric(documents, "DevicesDeactivated", channel="email", reason="complaint")
    assert (bounced["DevicesDeactivated"], complained["DevicesDeactivated"]) == ([2.0], [1.0])
    assert len(documents) == 2


def test_preference_skips_count_as_skipped_and_quiet_hours_as_deferred(capsys, lambda_context):
    # Given user-42 (in-app) in quiet hours until 13:30, user-43 with email turned off, and a normal notification
    noon = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    preferences = {
        "user-42": Preferences(time_zone="UTC", quiet_hours=QuietHours(start="11:00", end="13:30")),
        "user-43": Preferences(channels={Channel.EMAIL: False}),
    }
    registry = FakeDeviceRegistry(
        [
            make_device("user-42", "web-inbox", Channel.IN_APP),
            make_device("user-43", "laptop-mail", Channel.EMAIL, address="grace@example.com"),
        ]
    )
    dependencies = dataclasses.replace(
        fanout_dependencies_with(registry, FakePublisher(), FakeStatusStore()),
        rules=DeliveryRules(FakeProfileStore(preferences), frozenset(), clock=lambda: noon),
        holds=FakeHolds(),
    )
    event = load_event("fanout")
    body = json.loads(event["Records"][0]["body"]) | {"priority": "normal"}
    event["Records"][0]["body"] = json.dumps(body)

    # When it is fanned out
    fanout.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the opted-out email counts as skipped, the in-app delivery as deferred, and the page published none
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, "DeliveriesSkipped", channel="email", priority="normal")[0]["DeliveriesSkipped"] == [1.0]
    deferred = metric(documents, "DeliveriesDeferred", channel="in_app", priority="normal")
    assert deferred[0]["DeliveriesDeferred"] == [1.0]
    assert metric(documents, "FanoutSize", priority="normal")[0]["FanoutSize"] == [0.0]


SCHEDULE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-ScheduleQueue-1A2B"
SCHEDULE_DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-ScheduleDeadLetterQueue-1A2B"
NOON = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def schedule_dependencies(topic: FakePublisher, sqs: FakeSqs) -> schedule.app.Dependencies:
    """The schedule function on fakes, its clock at noon."""
    settings = ScheduleSettings(
        queue_url=SCHEDULE_URL,
        dlq_url=SCHEDULE_DLQ_URL,
        topic_arn="arn:aws:sns:us-east-1:123456789012:herald-notifications",
        **{f"{p.value}_intake_queue_url": f"{SCHEDULE_URL}-{p.value}-intake" for p in Priority},
    )
    dead_letters = DeadLetterQueue(sqs, SCHEDULE_DLQ_URL, "schedule")
    return schedule.app.Dependencies(
        settings, FakeHolds(), FakeIntakeQueue(), topic, sqs, dead_letters, clock=lambda: NOON
    )


def held_records(*held: HeldMessage, receive_count: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{n}",
                "receiptHandle": f"r-{n}",
                "body": message.model_dump_json(),
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
            }
            for n, message in enumerate(held)
        ]
    }


def test_the_schedule_function_counts_what_it_released_what_hopped_on_and_how_late(capsys, lambda_context, job):
    # Given, at noon: a high notification due 90 s ago, a low one due in an hour, and three deliveries held through
    # quiet hours that ended 2 s ago (two in-app, one email, of a normal notification)
    due = Notification(
        notification_id="n-due", recipients=["ada"], title="t", body="b", priority=Priority.HIGH, accepted_at=NOON
    )
    later = due.model_copy(update={"notification_id": "n-later", "priority": Priority.LOW})
    email = job.model_copy(update={"channel": Channel.EMAIL, "device_id": "mail"})
    jobs = [job, job.model_copy(update={"device_id": "tab"}), email]
    held = [
        HeldMessage(held=HeldNotification(release_at=NOON - timedelta(seconds=90), notification=due)),
        HeldMessage(held=HeldNotification(release_at=NOON + timedelta(hours=1), notification=later)),
        HeldMessage(held=HeldDeliveries(release_at=NOON - timedelta(seconds=2), jobs=jobs)),
    ]
    dependencies = schedule_dependencies(FakePublisher(), FakeSqs())

    # When the schedule function handles them
    result = schedule.app.lambda_handler(held_records(*held), lambda_context, dependencies)

    # Then one notification and three deliveries were released, by priority and channel, and one held on for a hop
    assert result == {"batchItemFailures": []}
    documents = emf_documents(capsys.readouterr().out)
    [notifications] = metric(documents, "NotificationsReleased", priority="high")
    assert notifications["NotificationsReleased"] == [1.0]
    assert metric(documents, "NotificationsReleased", priority="low") == []
    [in_app] = metric(documents, "DeliveriesReleased", channel="in_app", priority=job.priority.value)
    [mail] = metric(documents, "DeliveriesReleased", channel="email", priority=job.priority.value)
    assert (in_app["DeliveriesReleased"], mail["DeliveriesReleased"]) == ([2.0], [1.0])
    [hops] = metric(documents, "HoldHops", kind="notification")
    assert hops["HoldHops"] == [1.0] and metric(documents, "HoldHops", kind="deliveries") == []
    # And each release says how long after its time it went, in milliseconds
    [late_notification] = metric(documents, "ReleaseLateness", kind="notification")
    [late_deliveries] = metric(documents, "ReleaseLateness", kind="deliveries")
    assert (late_notification["ReleaseLateness"], late_deliveries["ReleaseLateness"]) == ([90000.0], [2000.0])
    assert unit_of(late_notification, "ReleaseLateness") == "Milliseconds"
    assert metric(documents, "HoldsDeadLettered", kind="deliveries") == []


def test_a_release_that_fails_its_last_try_counts_a_dead_letter_and_no_release(capsys, lambda_context, job):
    # Given deliveries now due whose publish SNS refuses, on their last allowed receive
    held = HeldMessage(held=HeldDeliveries(release_at=NOON, jobs=[job]))
    sqs = FakeSqs()
    dependencies = schedule_dependencies(FakePublisher(failing=[job.notification_id]), sqs)

    # When the schedule function handles them
    schedule.app.lambda_handler(held_records(held, receive_count=5), lambda_context, dependencies)

    # Then the message went to the schedule DLQ with its reason, counted as such, and nothing counts as released
    assert len(sqs.reasons()) == 1
    documents = emf_documents(capsys.readouterr().out)
    [dead] = metric(documents, "HoldsDeadLettered", kind="deliveries")
    assert dead["HoldsDeadLettered"] == [1.0]
    assert metric(documents, "DeliveriesReleased", channel="in_app", priority=job.priority.value) == []
    assert metric(documents, "ReleaseLateness", kind="deliveries") == []
