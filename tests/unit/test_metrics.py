"""Herald's CloudWatch metrics: the EMF documents the deliver and fan-out functions print.

Read as Powertools' docs test metrics: capture stdout, parse each EMF line.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

import deliver.app
import fanout.app
from herald.models.domain import Channel
from herald.models.failures import DeliveryFailed
from herald.observability import InvocationMetrics
from tests.events import load_event
from tests.fakes import FakeDeviceRegistry, FakePublisher, FakeSender, FakeStatusStore, make_device
from tests.unit.test_deliver_handler import dependencies_with, record_for
from tests.unit.test_fanout_handler import dependencies_with as fanout_dependencies_with


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
    def claim_delivery(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("DynamoDB unreachable")


@pytest.mark.parametrize(("receive_count", "expected"), [("1", "DeliveriesRetried"), ("5", "DeliveriesDeadLettered")])
def test_a_handler_that_raises_is_counted_as_the_consumer_settles_it(capsys, lambda_context, receive_count, expected):
    # Given a status store that cannot be reached, on a first and on a last receive
    event = load_event("deliver")
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = receive_count
    dependencies = dependencies_with(FakeSender())
    dependencies = deliver.app.Dependencies(**{**dependencies.__dict__, "status": BrokenStatusStore()})

    # When the deliver function handles it
    deliver.app.lambda_handler(event, lambda_context, dependencies=dependencies)

    # Then the record counts as what the consumer made of the error: retried, or on the last receive dead-lettered
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, expected, channel="in_app", priority="high")[0][expected] == [1.0]


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
