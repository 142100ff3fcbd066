"""Handler of the schedule queue: releases held messages when due (a notification to its priority's intake
queue, deliveries to the topic), else holds them on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.adapters.clients import client
from herald.adapters.consumer import Consumer, Done, QueueRecord, Verdict
from herald.adapters.dead_letters import DeadLetterQueue
from herald.adapters.holds import ScheduleQueue
from herald.adapters.queues import DeliveryTopic, IntakeLanes
from herald.logic.failures import failure_from
from herald.logic.holds import release_or_hold
from herald.logic.ports import Holds, Intake, Publisher
from herald.models.domain import Priority
from herald.models.holds import HeldMessage, HeldNotification
from herald.observability import inject_lambda_context, logger
from herald.settings import ScheduleSettings


@dataclass(frozen=True)
class Dependencies:
    settings: ScheduleSettings
    holds: Holds
    intake: Intake
    topic: Publisher
    sqs: Any
    dead_letters: DeadLetterQueue

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

    def handle(record: QueueRecord, message: HeldMessage) -> Verdict:
        released = release_or_hold(message, d.holds, d.intake, d.topic)
        held = message.held
        if released:
            what = held.notification.notification_id if isinstance(held, HeldNotification) else f"{len(held.jobs)} jobs"
            logger.info("released", kind=held.kind, what=what, release_at=held.release_at.isoformat())
        return Done()

    consumer = Consumer(
        parse=HeldMessage.model_validate_json,
        handle=handle,
        dead_letters=d.dead_letters,
        sqs=d.sqs,
        queue_url=d.settings.queue_url,
        max_receive_count=d.settings.max_receive_count,
        classify=failure_from,
    )
    return consumer.process(event).response()
