"""Handler of the schedule queue: releases held messages when due (a notification to its priority's intake
queue, deliveries to the topic), else holds them on."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.adapters.clients import client
from herald.adapters.consumer import Consumer, DeadLetter, Done, QueueRecord, Verdict
from herald.adapters.dead_letters import DeadLetterQueue
from herald.adapters.holds import ScheduleQueue
from herald.adapters.queues import DeliveryTopic, IntakeLanes
from herald.logic.failures import failure_from
from herald.logic.holds import release_or_hold
from herald.logic.ports import Holds, Intake, Publisher
from herald.models.domain import Priority, now
from herald.models.holds import HeldMessage, HeldNotification
from herald.observability import (
    DELIVERIES_RELEASED,
    HOLD_HOPS,
    HOLDS_DEAD_LETTERED,
    NOTIFICATIONS_RELEASED,
    RELEASE_LATENESS,
    EmfOutput,
    InvocationMetrics,
    inject_lambda_context,
    logger,
    to_stdout,
)
from herald.settings import ScheduleSettings


@dataclass(frozen=True)
class Dependencies:
    settings: ScheduleSettings
    holds: Holds
    intake: Intake
    topic: Publisher
    sqs: Any
    dead_letters: DeadLetterQueue
    metrics_output: EmfOutput = to_stdout  # where this function's EMF goes (the local stack collects it)
    clock: Callable[[], datetime] = now

    @classmethod
    def from_settings(cls, settings: ScheduleSettings) -> Dependencies:
        sqs = client("sqs")
        return cls(
            settings=settings,
            holds=ScheduleQueue(sqs, settings.queue_url),
            intake=IntakeLanes(sqs, {priority: settings.intake_queue_url(priority) for priority in Priority}),
            topic=DeliveryTopic(client("sns"), settings.topic_arn),
            sqs=sqs,
            dead_letters=DeadLetterQueue(sqs, settings.dlq_url, source="schedule"),
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(ScheduleSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


@inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    d = dependencies or default_dependencies()
    metrics = InvocationMetrics(d.metrics_output)

    def handle(record: QueueRecord, message: HeldMessage) -> Verdict:
        at = d.clock()
        held = message.held
        if not release_or_hold(message, d.holds, d.intake, d.topic, at=at):
            metrics.count(HOLD_HOPS, kind=held.kind)
            return Done()
        # How long after its time it went: a rising figure is a schedule queue falling behind, long before
        # its oldest message reaches the alarm's 30 minutes.
        late = max((at - held.release_at).total_seconds() * 1000, 0.0)
        metrics.sample(RELEASE_LATENESS, MetricUnit.Milliseconds, late, kind=held.kind)
        if isinstance(held, HeldNotification):
            metrics.count(NOTIFICATIONS_RELEASED, priority=held.notification.priority.value)
            what = held.notification.notification_id
        else:
            for (channel, priority), released in Counter(
                (j.channel.value, j.priority.value) for j in held.jobs
            ).items():
                metrics.count(DELIVERIES_RELEASED, released, channel=channel, priority=priority)
            what = f"{len(held.jobs)} jobs"
        logger.info("released", kind=held.kind, what=what, release_at=held.release_at.isoformat())
        return Done()

    def observe(record: QueueRecord, message: HeldMessage, verdict: Verdict) -> None:
        # What waits in the schedule DLQ is not sent until an operator redrives it.
        if isinstance(verdict, DeadLetter):
            metrics.count(HOLDS_DEAD_LETTERED, kind=message.held.kind)

    consumer = Consumer(
        parse=HeldMessage.model_validate_json,
        handle=handle,
        dead_letters=d.dead_letters,
        sqs=d.sqs,
        queue_url=d.settings.queue_url,
        max_receive_count=d.settings.max_receive_count,
        classify=failure_from,
        observe=observe,
    )
    with metrics:
        return consumer.process(event).response()
