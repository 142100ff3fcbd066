"""Logging, metrics and tracing for every function, configured by the POWERTOOLS_* variables."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

logger = Logger()

Handler = TypeVar("Handler", bound=Callable[..., Any])

# The metrics Herald emits (namespace: POWERTOOLS_METRICS_NAMESPACE; Powertools adds `service`).
# The dashboard in template.yaml is built on exactly these names and dimensions.
DELIVERIES_SENT = "DeliveriesSent"  # Count; channel, priority
DELIVERIES_FAILED = "DeliveriesFailed"  # Count; channel, priority: refused for good, or outcome unknown
DELIVERIES_RETRIED = "DeliveriesRetried"  # Count; channel, priority: the message went back to its queue
DELIVERIES_DEAD_LETTERED = "DeliveriesDeadLettered"  # Count; channel, priority
DELIVERIES_SKIPPED = "DeliveriesSkipped"  # Count; channel, priority: devices fan-out left out (inactive, opted out)
DELIVERIES_DEFERRED = "DeliveriesDeferred"  # Count; channel, priority: held at fan-out until quiet hours end
ACCEPTED_TO_SENT_LATENCY = "AcceptedToSentLatency"  # Milliseconds; priority
FANOUT_SIZE = "FanoutSize"  # Count, one sample per fan-out page recorded: the deliveries it published; priority
DEVICES_DEACTIVATED = "DevicesDeactivated"  # Count; channel, reason: SES feedback (bounce, complaint)
# The schedule function's: what the schedule queue held, released, sent on for another hop or gave up on.
NOTIFICATIONS_RELEASED = "NotificationsReleased"  # Count; priority: scheduled notifications, now due, to intake
DELIVERIES_RELEASED = "DeliveriesReleased"  # Count; channel, priority: deferred deliveries, now due, to the topic
HOLD_HOPS = "HoldHops"  # Count; kind: held messages not due yet, sent on with the next delay (at most 15 min)
RELEASE_LATENESS = "ReleaseLateness"  # Milliseconds; kind: from a held message's release time to its release
HOLDS_DEAD_LETTERED = "HoldsDeadLettered"  # Count; kind: held messages sent to the schedule DLQ
# Each metric's own dimensions (Powertools adds `service`): tests/unit/test_operations.py holds the
# dashboard to exactly these, and tests/unit/test_metrics.py every document the functions print.
METRIC_DIMENSIONS: dict[str, tuple[str, ...]] = {
    DELIVERIES_SENT: ("channel", "priority"),
    DELIVERIES_FAILED: ("channel", "priority"),
    DELIVERIES_RETRIED: ("channel", "priority"),
    DELIVERIES_DEAD_LETTERED: ("channel", "priority"),
    DELIVERIES_SKIPPED: ("channel", "priority"),
    DELIVERIES_DEFERRED: ("channel", "priority"),
    ACCEPTED_TO_SENT_LATENCY: ("priority",),
    FANOUT_SIZE: ("priority",),
    DEVICES_DEACTIVATED: ("channel", "reason"),
    NOTIFICATIONS_RELEASED: ("priority",),
    DELIVERIES_RELEASED: ("channel", "priority"),
    HOLD_HOPS: ("kind",),
    RELEASE_LATENESS: ("kind",),
    HOLDS_DEAD_LETTERED: ("kind",),
}

# EMF takes at most 100 values per metric in one document; Powertools prints a full set on its own,
# past our output, so each document gets fewer.
_VALUES_PER_DOCUMENT = 99

EmfOutput = Callable[[str], None]


def to_stdout(line: str) -> None:
    """Where a Lambda function's EMF goes: its stdout, which CloudWatch Logs turns into metrics."""
    print(line, flush=True)


class InvocationMetrics:
    """One invocation's metrics, written as EMF when it ends: one document per set of dimensions.

    Powertools' `Metrics` keeps one metric set and one set of dimensions per process, shared by
    every instance. Herald's records each carry their own dimensions (a delivery's channel and
    priority), and the local stack runs several invocations at once in one process; so each
    invocation collects its own here (thread-safe: a batch's records are handled concurrently),
    and each dimension set is serialised by its own EphemeralMetrics, Powertools' unshared Metrics.
    Counts of one dimension set are summed; samples (a latency, a fan-out size) are kept each.
    """

    def __init__(self, output: EmfOutput = to_stdout):
        self._output = output
        self._lock = threading.Lock()
        self._sets: dict[tuple[tuple[str, str], ...], dict[str, tuple[MetricUnit, list[float]]]] = {}

    def count(self, name: str, value: int = 1, **dimensions: str) -> None:
        with self._lock:
            values = self._metric(name, MetricUnit.Count, dimensions)[1]
            if values:
                values[0] += value
            else:
                values.append(value)

    def sample(self, name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
        with self._lock:
            self._metric(name, unit, dimensions)[1].append(value)

    def _metric(self, name: str, unit: MetricUnit, dimensions: dict[str, str]) -> tuple[MetricUnit, list[float]]:
        metrics = self._sets.setdefault(tuple(sorted(dimensions.items())), {})
        return metrics.setdefault(name, (unit, []))

    def flush(self) -> None:
        """Writes what was collected and starts afresh. Never raises: metrics must not fail a delivery."""
        with self._lock:
            sets, self._sets = self._sets, {}
        if not sets or is_metrics_disabled():
            return
        try:
            for dimensions, metrics in sets.items():
                for document in _documents(dimensions, metrics):
                    self._output(json.dumps(document, separators=(",", ":")))
        except Exception:
            logger.exception("metrics not written")

    def __enter__(self) -> InvocationMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def _documents(
    dimensions: tuple[tuple[str, str], ...], metrics: dict[str, tuple[MetricUnit, list[float]]]
) -> list[dict[str, Any]]:
    longest = max(len(values) for _, values in metrics.values())
    documents = []
    for start in range(0, longest, _VALUES_PER_DOCUMENT):
        emf = EphemeralMetrics()
        for dimension, label in dimensions:
            emf.add_dimension(name=dimension, value=label)
        for name, (unit, values) in metrics.items():
            for value in values[start : start + _VALUES_PER_DOCUMENT]:
                emf.add_metric(name=name, unit=unit, value=value)
        documents.append(dict(emf.serialize_metric_set()))
    return documents


def inject_lambda_context(handler: Handler) -> Handler:
    """Logger.inject_lambda_context(clear_state=True), with the context's keys also kept per thread.

    Powertools keeps appended keys on the one formatter every Logger of the service shares. On
    Lambda one invocation runs at a time; the local stack runs every function in one process at
    once, and each invocation would overwrite the others' function_name. Keys appended with
    thread_safe_append_keys live in a context variable (per thread, and copied into the
    consumer's worker threads) and win over the shared ones, so each line names its own
    function. On Lambda they hold the same values as the shared keys.
    """

    @functools.wraps(handler)
    def with_own_keys(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        logger.thread_safe_append_keys(
            function_name=context.function_name,
            function_memory_size=context.memory_limit_in_mb,
            function_arn=context.invoked_function_arn,
            function_request_id=context.aws_request_id,
        )
        return handler(event, context, *args, **kwargs)

    decorated: Handler = logger.inject_lambda_context(clear_state=True)(with_own_keys)  # type: ignore[assignment]
    return decorated


@lru_cache(maxsize=1)
def tracer() -> Tracer:
    """The X-Ray tracer, created on first use: loading the X-Ray SDK costs 0.2 s of cold start."""
    from aws_lambda_powertools import Tracer

    return Tracer()
