"""The local stack's EMF collection: what the functions write is kept per function and summed like CloudWatch."""

from __future__ import annotations

import json
import threading
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

import deliver.app
from herald.observability import InvocationMetrics
from herald_local.metrics import EmfCollector, summarize
from tests.events import load_event
from tests.fakes import FakeSender
from tests.unit.test_deliver_handler import dependencies_with


def written(*records: tuple[str, float, dict[str, str]]) -> list[str]:
    """EMF lines as an invocation writes them: (metric, value, dimensions) each."""
    lines: list[str] = []
    metrics = InvocationMetrics(lines.append)
    for name, value, dimensions in records:
        if name == "AcceptedToSentLatency":
            metrics.sample(name, MetricUnit.Milliseconds, value, **dimensions)
        else:
            metrics.count(name, int(value), **dimensions)
    metrics.flush()
    return lines


def test_documents_are_kept_per_function_in_order_and_read_from_a_position():
    # Given a collector and two functions writing EMF through their own outputs
    collector = EmfCollector(clock=lambda: 1000.0)
    for line in written(("DeliveriesSent", 2, {"channel": "sms", "priority": "high"})):
        collector.output_for("DeliverHighFunction")(line)
    for line in written(("DeliveriesSkipped", 1, {"channel": "push", "priority": "low"})):
        collector.output_for("FanoutHighFunction")(line)

    # When they are read, all and after the first
    everything, later = collector.records(), collector.records(since=1)

    # Then each names its function and position, and `since` leaves out what was seen
    assert [(r.seq, r.function) for r in everything] == [(1, "DeliverHighFunction"), (2, "FanoutHighFunction")]
    assert [r.function for r in later] == ["FanoutHighFunction"]
    assert everything[0].document["DeliveriesSent"] == [2.0] and everything[0].at == 1000.0


def test_lines_that_are_not_emf_are_counted_and_kept_out():
    # Given a collector
    collector = EmfCollector()

    # When a function writes a log line, broken JSON and a JSON object without EMF metadata
    for line in ('{"level": "INFO", "message": "delivered"}', "{not json", "[1, 2]"):
        collector.collect("DeliverHighFunction", line)

    # Then none is kept, and each is counted
    assert collector.records() == [] and collector.refused == 3


def test_the_summary_sums_per_metric_and_dimensions_across_documents():
    # Given two invocations' documents: sends on two channels, and latencies of one priority
    documents = [
        json.loads(line)
        for line in written(
            ("DeliveriesSent", 2, {"channel": "email", "priority": "high"}),
            ("DeliveriesSent", 1, {"channel": "sms", "priority": "high"}),
            ("AcceptedToSentLatency", 120, {"priority": "high"}),
            ("AcceptedToSentLatency", 80, {"priority": "high"}),
        )
        + written(
            ("DeliveriesSent", 3, {"channel": "email", "priority": "high"}),
            ("AcceptedToSentLatency", 400, {"priority": "high"}),
        )
    ]

    # When they are summarised
    summaries = {(s.name, tuple(sorted(s.dimensions.items()))): s for s in summarize(documents)}

    # Then counts add up per channel, and latencies keep their number, sum and extremes
    email = summaries[("DeliveriesSent", (("channel", "email"), ("priority", "high"), ("service", "herald")))]
    assert (email.sum, email.samples, email.unit, email.namespace) == (5.0, 2, "Count", "Herald")
    sms = summaries[("DeliveriesSent", (("channel", "sms"), ("priority", "high"), ("service", "herald")))]
    assert sms.sum == 1.0
    latency = summaries[("AcceptedToSentLatency", (("priority", "high"), ("service", "herald")))]
    assert (latency.samples, latency.sum, latency.minimum, latency.maximum) == (3, 600.0, 80.0, 400.0)
    assert latency.average == 200.0 and latency.unit == "Milliseconds"


def test_the_hook_points_a_functions_metrics_at_the_collector_and_leaves_others_alone(lambda_context):
    # Given a collector's hook applied to a deliver function's dependencies and to an object without metrics
    collector = EmfCollector()
    dependencies = collector.hook("DeliverHighFunction", dependencies_with(FakeSender()))
    other: Any = object()

    # When the deliver function handles the sample event
    deliver.app.lambda_handler(load_event("deliver"), lambda_context, dependencies=dependencies)

    # Then its EMF is collected under its name, and the other object is returned as it was
    assert {r.function for r in collector.records()} == {"DeliverHighFunction"}
    assert any("DeliveriesSent" in r.document for r in collector.records())
    assert collector.hook("ApiFunction", other) is other


def test_concurrent_writers_each_get_a_distinct_position():
    # Given eight functions writing 100 documents each at once
    collector = EmfCollector()
    [line] = written(("DeliveriesSent", 1, {"channel": "email", "priority": "low"}))

    def write(name: str) -> None:
        output = collector.output_for(name)
        for _ in range(100):
            output(line)

    threads = [threading.Thread(target=write, args=(f"F{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Then all 800 are kept, numbered 1 to 800 without a gap or a repeat
    assert [r.seq for r in collector.records()] == list(range(1, 801))
